"""The composition root: the one place that wires adapters into the core.

Each adapter is built on first use and kept, so AWS clients and HTTP connection pools
are reused across invocations and a cold start makes none. What pulls in vendor code
(httpx) or the mapping is imported where it is built: a function's cold start loads
only what its handler uses on every invocation.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache, cached_property
from typing import TYPE_CHECKING, Any

import boto3

from shared.connectors.registry import vendor
from shared.connectors.spec import (
    INVOICE_CUSTOM_FIELDS,
    ConnectorContext,
    WebhookContext,
    secret_id,
)
from shared.models import ChangeEvent, Connection, ObjectType
from shared.ports import AccountingLedger, CrmWriter, SyncMetrics, Unmeasured
from shared.queues.sqs import SqsDeadLetters, SqsEventQueue
from shared.secrets.secrets_manager import SecretsManagerStore
from shared.settings import Settings
from shared.stores import (
    DynamoAuditLog,
    DynamoCallBudget,
    DynamoConnections,
    DynamoCursorStore,
    DynamoCustomerDirectory,
    DynamoDeferralCounter,
    DynamoLinkStore,
    DynamoLock,
)
from shared.sync.consume import Consumer
from shared.sync.ingest import WebhookIngest

if TYPE_CHECKING:
    from shared.connectors.http import Deadline
    from shared.mapping import Mapper
    from shared.ports import AccountingTarget, CrmSource, WebhookReceiver
    from shared.stores.drift import DynamoDriftStore
    from shared.sync.drift import DriftCheck
    from shared.sync.engine import SyncEngine
    from shared.sync.preview import Previewer
    from shared.sync.reconcile import Reconciler
    from shared.sync.route import ConnectionRouter

CRM_OBJECTS = (ObjectType.CONTACT, ObjectType.COMPANY, ObjectType.DEAL, ObjectType.LINE_ITEM)


def mapper_of(connection: Connection) -> Mapper:
    """The connection's mapping; a file naming other systems than the connection's is
    refused (its property names are another vendor's)."""
    from shared.mapping import Mapper, parse_mapping

    mapping = parse_mapping(connection.mapping, connection.mapping_name)
    for side, named, actual in (
        ("source", mapping.source, connection.crm),
        ("target", mapping.target, connection.accounting),
    ):
        if named is not None and named != actual:
            raise ValueError(
                f"{connection.mapping_name}: written for {side} {named!r}, but connection "
                f"{connection.id!r} uses {actual!r}"
            )
    mapper = Mapper(mapping)
    target = vendor(connection.accounting)
    if mapper.uses_custom_fields() and INVOICE_CUSTOM_FIELDS not in target.capabilities:
        raise ValueError(
            f"{connection.mapping_name}: maps invoice custom fields, which {target.label} "
            "invoices do not have"
        )
    return mapper


@dataclass(eq=False)  # hashed by identity: its per-connection builders are cached
class Container:
    """Lazily built adapters for one settings object; each built at most once, and
    each connection's engine once per version of the connection."""

    settings: Settings
    # The functions use boto3's default session; the operator's CLI passes its own (a
    # profile, or a running local stack's endpoint) and, locally, the sandboxes' URLs
    # as vendor settings ({vendor: {field: value}}) instead of the environment's.
    session: boto3.session.Session | None = None
    endpoint_url: str | None = None
    vendor_settings: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # The sync function's metrics; nobody else's runs are measured (the CLI's included).
    sync_metrics: SyncMetrics = field(default_factory=Unmeasured)

    def _client(self, service: str) -> Any:
        if self.session is None:  # boto3's default session: made once per process
            return boto3.client(service)  # type: ignore[call-overload]
        return self.session.client(service, endpoint_url=self.endpoint_url)  # type: ignore[call-overload]

    @cached_property
    def dynamodb(self):  # type: ignore[no-untyped-def]  # boto3 client types are stubs-only
        return self._client("dynamodb")

    @cached_property
    def sqs(self):  # type: ignore[no-untyped-def]
        return self._client("sqs")

    @cached_property
    def secretsmanager(self):  # type: ignore[no-untyped-def]
        return self._client("secretsmanager")

    @cached_property
    def connections(self) -> DynamoConnections:
        resource = (
            boto3.resource("dynamodb")
            if self.session is None
            else self.session.resource("dynamodb", endpoint_url=self.endpoint_url)
        )
        return DynamoConnections(
            self.dynamodb,
            resource,
            self.settings.connections_table,
        )

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
    def directory(self) -> DynamoCustomerDirectory:
        return DynamoCustomerDirectory(self.dynamodb, self.settings.links_table)

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
    def budget(self) -> DynamoCallBudget:
        return DynamoCallBudget(
            self.dynamodb, self.settings.cursors_table, margin=self.settings.call_pacing_margin
        )

    @cached_property
    def deadline(self) -> Deadline:
        """The invocation's time left; the handler starts it on every invocation."""
        from shared.connectors.http import Deadline

        return Deadline()

    # --- per connection ----------------------------------------------------------------

    def _context(self, connection: Connection, system: str, mapper: Mapper) -> ConnectorContext:
        return ConnectorContext(
            connection_id=connection.id,
            secrets=self.secrets,
            secret_id=secret_id(connection.id, system),
            lock=self.lock,
            budget=self.budget,
            properties={t: mapper.source_properties(t) for t in CRM_OBJECTS},
            written_back={t: [p.name for p in mapper.back.properties(t)] for t in CRM_OBJECTS},
            deadline=self.deadline,
            vendor_settings=self.vendor_settings.get(system),
        )

    @cache  # noqa: B019 - one container per process; connections are few and frozen
    def _crm(self, connection: Connection) -> tuple[CrmSource, Mapper]:
        mapper = mapper_of(connection)
        crm = vendor(connection.crm).crm_source(self._context(connection, connection.crm, mapper))
        return crm, mapper

    @cache  # noqa: B019
    def _ledger(self, connection: Connection) -> AccountingTarget:
        mapper = self._crm(connection)[1]
        spec = vendor(connection.accounting)
        return spec.accounting_target(self._context(connection, connection.accounting, mapper))

    @cache  # noqa: B019
    def engine(self, connection: Connection) -> SyncEngine:
        from shared.sync.engine import SyncEngine

        crm, mapper = self._crm(connection)
        ledger = self._ledger(connection)
        return SyncEngine(
            connection_id=connection.id,
            crm=crm,
            ledger=ledger,
            mapper=mapper,
            links=self.links,
            audit=self.audit,
            queue=self.queue,
            # A connector that can read back or write back says so by what it implements.
            standings=ledger if isinstance(ledger, AccountingLedger) else None,
            crm_writer=crm if isinstance(crm, CrmWriter) else None,
            directory=self.directory,
        )

    @cache  # noqa: B019
    def receiver(self, system: str, connection_id: str) -> WebhookReceiver:
        return vendor(system).webhook_receiver(
            WebhookContext(
                secrets=self.secrets,
                secret_id=secret_id(connection_id, system),
                tolerance_s=self.settings.webhook_tolerance_s,
            )
        )

    def reconciler(self, connection: Connection) -> Reconciler:
        from shared.sync.reconcile import Reconciler

        crm, mapper = self._crm(connection)
        return Reconciler(
            connection_id=connection.id,
            crm=crm,
            mapper=mapper,
            links=self.links,
            cursors=DynamoCursorStore(self.dynamodb, self.settings.cursors_table),
            queue=self.queue,
            overlap_s=self.settings.reconcile_overlap_s,
            start_ms=connection.start_ms,
            audit=self.audit,
            batch_writer=self.engine(connection).backfill,
            refresh_directory=self.engine(connection).refresh_directory,
        )

    def previewer(self, connection: Connection) -> Previewer:
        """What a sync of the connection would write, read without writing (the CLI)."""
        from shared.sync.preview import Previewer

        crm, mapper = self._crm(connection)
        return Previewer(
            connection_id=connection.id,
            crm=crm,
            ledger=self._ledger(connection),
            mapper=mapper,
            links=self.links,
            today=datetime.now(UTC).date(),
        )

    @cached_property
    def drift_reports(self) -> DynamoDriftStore:
        from shared.stores.drift import DynamoDriftStore

        return DynamoDriftStore(self.dynamodb, self.settings.cursors_table)

    def drift_check(self, connection: Connection) -> DriftCheck:
        """The connection's drift check; two-way fields are compared when its
        connectors read and write back, as the engine does them."""
        from shared.sync.drift import DriftCheck

        crm, mapper = self._crm(connection)
        ledger = self._ledger(connection)
        return DriftCheck(
            connection_id=connection.id,
            crm=crm,
            target=ledger,
            mapper=mapper,
            links=self.links,
            cursors=DynamoCursorStore(self.dynamodb, self.settings.cursors_table),
            queue=self.queue,
            store=self.drift_reports,
            previewer=self.previewer(connection),
            clock=lambda: datetime.now(UTC),
            overlap_s=self.settings.reconcile_overlap_s,
            start_ms=connection.start_ms,
            standings=ledger
            if isinstance(ledger, AccountingLedger) and isinstance(crm, CrmWriter)
            else None,
        )

    @cached_property
    def dead_letters(self) -> SqsDeadLetters | None:
        """The events' dead-letter queue, when this function may read it."""
        if not self.settings.events_dlq_url:
            return None
        return SqsDeadLetters(self.sqs, self.settings.events_dlq_url)

    # --- what the handlers run ---------------------------------------------------------

    def ingest(self) -> WebhookIngest:
        return WebhookIngest(
            connections=self.connections,
            receiver_for=self.receiver,
            queue=self.queue,
            max_body_bytes=self.settings.max_webhook_body_bytes,
        )

    def router(self) -> ConnectionRouter:
        from shared.sync.route import ConnectionRouter

        return ConnectionRouter(
            connections=self.connections,
            engine_for=self.engine,
            audit=self.audit,
            metrics=self.sync_metrics,
        )

    def consumer(self, apply: Callable[[ChangeEvent], Any]) -> Consumer:
        return Consumer(
            apply=apply,
            queue=self.queue,
            deferrals=DynamoDeferralCounter(self.dynamodb, self.settings.cursors_table),
            max_failed_attempts=self.settings.max_failed_attempts,
            retry_delay_s=self.settings.retry_delay_s,
            metrics=self.sync_metrics,
        )
