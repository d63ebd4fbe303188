"""The composition root: the one place that wires adapters into the core.

Handlers call these builders once, at import (Lambda cold start), so AWS clients
and HTTP connection pools are reused across invocations.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from functools import cached_property

import boto3
import botocore.exceptions

from shared.connectors.registry import (
    ConnectorContext,
    accounting_connector,
    crm_connector,
)
from shared.mapping import Mapper, load_mapping
from shared.models import ObjectType
from shared.observability import logger
from shared.settings import Settings
from shared.stores import (
    DynamoAuditLog,
    DynamoCallBudget,
    DynamoCursorStore,
    DynamoLinkStore,
    DynamoLock,
    SecretsManagerStore,
    SqsEventQueue,
)
from shared.sync.engine import SyncEngine
from shared.sync.ingest import WebhookIngest
from shared.sync.reconcile import Reconciler

# SQS allows 12 h after a receive; keep a margin for the time this invocation has run.
MAX_DEFER_S = 43_200 - 900

CRM_OBJECTS = (ObjectType.CONTACT, ObjectType.COMPANY, ObjectType.DEAL, ObjectType.LINE_ITEM)


@dataclass
class Container:
    """Lazily built adapters for one settings object; each built at most once."""

    settings: Settings

    @cached_property
    def dynamodb(self):  # type: ignore[no-untyped-def]  # boto3 client types are stubs-only
        return boto3.client("dynamodb")

    @cached_property
    def sqs(self):  # type: ignore[no-untyped-def]
        return boto3.client("sqs")

    @cached_property
    def secretsmanager(self):  # type: ignore[no-untyped-def]
        return boto3.client("secretsmanager")

    @cached_property
    def mapper(self) -> Mapper:
        return Mapper(load_mapping(self.settings.mapping_file))

    @cached_property
    def secrets(self) -> SecretsManagerStore:
        return SecretsManagerStore(self.secretsmanager)

    @cached_property
    def queue(self) -> SqsEventQueue:
        return SqsEventQueue(self.sqs, self.settings.events_queue_url)

    @cached_property
    def links(self) -> DynamoLinkStore:
        return DynamoLinkStore(self.dynamodb, self.settings.links_table)

    @cached_property
    def context(self) -> ConnectorContext:
        owner = f"{os.environ.get('AWS_LAMBDA_LOG_STREAM_NAME', 'local')}:{uuid.uuid4().hex[:8]}"
        return ConnectorContext(
            settings=self.settings,
            secrets=self.secrets,
            lock=DynamoLock(self.dynamodb, self.settings.cursors_table, owner),
            budget=DynamoCallBudget(self.dynamodb, self.settings.cursors_table),
            properties={t: self.mapper.source_properties(t) for t in CRM_OBJECTS},
        )

    def ingest(self) -> WebhookIngest:
        crm = crm_connector(self.settings.crm)
        accounting = accounting_connector(self.settings.accounting)
        return WebhookIngest(
            connection_id=self.settings.connection_id,
            receivers={
                self.settings.crm: crm.webhooks(self.context),
                self.settings.accounting: accounting.webhooks(self.context),
            },
            queue=self.queue,
            max_body_bytes=self.settings.max_webhook_body_bytes,
        )

    def engine(self) -> SyncEngine:
        return SyncEngine(
            connection_id=self.settings.connection_id,
            crm=crm_connector(self.settings.crm).source(self.context),
            ledger=accounting_connector(self.settings.accounting).target(self.context),
            mapper=self.mapper,
            links=self.links,
            audit=DynamoAuditLog(
                self.dynamodb, self.settings.audit_table, self.settings.audit_ttl_days
            ),
        )

    def reconciler(self) -> Reconciler:
        return Reconciler(
            connection_id=self.settings.connection_id,
            crm=crm_connector(self.settings.crm).source(self.context),
            mapper=self.mapper,
            links=self.links,
            cursors=DynamoCursorStore(self.dynamodb, self.settings.cursors_table),
            queue=self.queue,
            overlap_s=self.settings.reconcile_overlap_s,
        )

    def defer_message(self, receipt_handle: str, seconds: float) -> None:
        """Hide a message for ``seconds`` (a vendor asked us to wait) before it returns.

        SQS refuses a visibility timeout ending more than 12 h after this receive
        (moments ago, in this invocation), so the wait is capped below that; if SQS
        still refuses, the message returns after the queue's own visibility timeout.
        """
        try:
            self.sqs.change_message_visibility(
                QueueUrl=self.settings.events_queue_url,
                ReceiptHandle=receipt_handle,
                VisibilityTimeout=min(int(seconds) + 1, MAX_DEFER_S),
            )
        except botocore.exceptions.ClientError as error:
            logger.warning("could not defer a rate-limited message", extra={"error": str(error)})
