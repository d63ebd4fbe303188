"""The composition root: the one place that wires adapters into the core.

Handlers call these builders once, at import (Lambda cold start), so AWS clients
and HTTP connection pools are reused across invocations.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import boto3

from shared.connectors.http import Deadline
from shared.connectors.registry import (
    ConnectorContext,
    accounting_connector,
    crm_connector,
)
from shared.mapping import Mapper, load_mapping
from shared.models import ChangeEvent, ObjectType
from shared.queues.sqs import SqsDeadLetters, SqsEventQueue
from shared.secrets.secrets_manager import SecretsManagerStore
from shared.settings import Settings
from shared.stores import (
    DynamoAuditLog,
    DynamoCallBudget,
    DynamoCursorStore,
    DynamoDeferralCounter,
    DynamoLinkStore,
    DynamoLock,
)
from shared.sync.consume import Consumer
from shared.sync.engine import SyncEngine
from shared.sync.ingest import WebhookIngest
from shared.sync.reconcile import Reconciler

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
        return SqsEventQueue(self.sqs, self.settings.events_queue_url, self.settings.events_dlq_url)

    @cached_property
    def links(self) -> DynamoLinkStore:
        return DynamoLinkStore(self.dynamodb, self.settings.links_table)

    @cached_property
    def audit(self) -> DynamoAuditLog:
        return DynamoAuditLog(
            self.dynamodb, self.settings.audit_table, self.settings.audit_ttl_days
        )

    @cached_property
    def lock(self) -> DynamoLock:
        owner = f"{os.environ.get('AWS_LAMBDA_LOG_STREAM_NAME', 'local')}:{uuid.uuid4().hex[:8]}"
        return DynamoLock(self.dynamodb, self.settings.cursors_table, owner)

    @cached_property
    def deadline(self) -> Deadline:
        """The invocation's time left; the handler starts it on every invocation."""
        return Deadline()

    @cached_property
    def context(self) -> ConnectorContext:
        return ConnectorContext(
            settings=self.settings,
            secrets=self.secrets,
            lock=self.lock,
            budget=DynamoCallBudget(self.dynamodb, self.settings.cursors_table),
            properties={t: self.mapper.source_properties(t) for t in CRM_OBJECTS},
            deadline=self.deadline,
        )

    def ingest(self) -> WebhookIngest:
        crm = crm_connector(self.settings.crm)
        accounting = accounting_connector(self.settings.accounting)
        return WebhookIngest(
            connection_id=self.settings.connection_id,
            receivers={
                self.settings.crm: crm.webhooks(self.settings, self.secrets),
                self.settings.accounting: accounting.webhooks(self.settings, self.secrets),
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
            audit=self.audit,
            queue=self.queue,
            lock=self.lock,
        )

    def consumer(self, apply: Callable[[ChangeEvent], Any]) -> Consumer:
        return Consumer(
            apply=apply,
            queue=self.queue,
            deferrals=DynamoDeferralCounter(self.dynamodb, self.settings.cursors_table),
            max_failed_attempts=self.settings.max_failed_attempts,
            retry_delay_s=self.settings.retry_delay_s,
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
            dead_letters=(
                SqsDeadLetters(self.sqs, self.settings.events_dlq_url)
                if self.settings.events_dlq_url
                else None
            ),
            audit=self.audit,
        )
