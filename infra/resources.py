"""The one description of crmsync's AWS resources.

The CDK constructs build the cloud resources from it, and the local runtime
creates the same tables, queues and secrets in moto from it, so the two can
never drift apart. Plain data: importing this module does not import CDK.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from shared.connectors.registry import vendors

KeyType = Literal["S", "N"]
# SQS attribute values (CloudFormation takes the same strings).
DeduplicationScope = Literal["messageGroup", "queue"]
FifoThroughputLimit = Literal["perMessageGroupId", "perQueue"]


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True)


class Key(_Spec):
    name: str
    type: KeyType = "S"


class IndexSpec(_Spec):
    name: str
    partition_key: Key
    sort_key: Key | None = None


class TableSpec(_Spec):
    id: str
    setting: str  # the Settings field (and CRMSYNC_* env var) that carries its name
    partition_key: Key
    sort_key: Key | None = None
    ttl_attribute: str | None = None
    indexes: tuple[IndexSpec, ...] = ()


class QueueSpec(_Spec):
    id: str
    setting: str
    fifo: bool = True
    # FIFO only. Dedup and throughput per message group (= one record) let a backfill
    # of many records run at FIFO high-throughput rates while each record stays in order.
    deduplication_scope: DeduplicationScope = "messageGroup"
    fifo_throughput_limit: FifoThroughputLimit = "perMessageGroupId"
    visibility_timeout_s: int
    retention_days: int
    # A dead-letter queue of its own: its consumer moves a message there after this many
    # failed attempts (deferrals at a vendor's request are not failures) ...
    max_failed_attempts: int | None = None
    dead_letter_setting: str | None = None  # the Settings field that carries its URL
    # A failed message is back after this, doubled on each failure (not after the
    # visibility timeout, which must cover the longest invocation).
    retry_delay_s: int = 30
    # ... and SQS itself after this many receives, as a backstop for a consumer that
    # cannot run at all (SQS allows at most 1,000).
    max_receive_count: int | None = None


class FunctionSpec(_Spec):
    id: str
    handler: str  # dotted path of the callable, as Lambda takes it
    memory_mb: int
    timeout_s: int
    tables_rw: tuple[str, ...] = ()
    tables_read: tuple[str, ...] = ()
    queues_send: tuple[str, ...] = ()
    queues_consume: tuple[str, ...] = ()  # also sends to each one's dead-letter queue
    # Dead-letter queues it reads and clears (by the id of the queue they belong to).
    dead_letters_sweep: tuple[str, ...] = ()
    # Concurrent invocations the queue may drive (SQS event sources allow 2 to 1000).
    max_concurrency: int | None = None
    # Every connection's vendor secrets (``crmsync/<connection>/<vendor>``) ...
    secrets_read: bool = False
    # ... and writing back those of the vendors that rotate them (refresh tokens).
    secrets_rotate: bool = False


class ScheduleSpec(_Spec):
    id: str
    function: str
    rate_minutes: int


class ServiceDescription(_Spec):
    tables: tuple[TableSpec, ...]
    queues: tuple[QueueSpec, ...]
    functions: tuple[FunctionSpec, ...]
    schedules: tuple[ScheduleSpec, ...]
    # The function behind the webhook routes; the other wiring (schedules, queue
    # consumers, grants) is spelled out in the specs themselves.
    webhook_function: str

    def table(self, table_id: str) -> TableSpec:
        return next(t for t in self.tables if t.id == table_id)

    def queue(self, queue_id: str) -> QueueSpec:
        return next(q for q in self.queues if q.id == queue_id)

    def function(self, function_id: str) -> FunctionSpec:
        return next(f for f in self.functions if f.id == function_id)

    def webhook_vendors(self) -> tuple[str, ...]:
        """One webhook route per registered vendor."""
        return tuple(spec.name for spec in vendors())

    def rotating_vendors(self) -> tuple[str, ...]:
        """The vendors whose secrets the sync function writes back."""
        return tuple(spec.name for spec in vendors() if spec.rotates_secret)


DESCRIPTION = ServiceDescription(
    tables=(
        # The connections this deployment serves, in one partition read through
        # powertools Parameters (``id`` = "connections", ``sk`` = connection id).
        TableSpec(
            id="Connections",
            setting="connections_table",
            partition_key=Key(name="id"),
            sort_key=Key(name="sk"),
        ),
        TableSpec(
            id="Links",
            setting="links_table",
            partition_key=Key(name="pk"),
            indexes=(IndexSpec(name="by_target", partition_key=Key(name="target_pk")),),
        ),
        # Powertools idempotency: partition key `id`, TTL `expiration` (its defaults).
        TableSpec(
            id="Idempotency",
            setting="idempotency_table",
            partition_key=Key(name="id"),
            ttl_attribute="expiration",
        ),
        TableSpec(
            id="Audit",
            setting="audit_table",
            partition_key=Key(name="pk"),
            sort_key=Key(name="sk"),
            # One record's history (`crmsync audit`): connection and record key, by time.
            indexes=(
                IndexSpec(
                    name="by_record", partition_key=Key(name="record_pk"), sort_key=Key(name="sk")
                ),
            ),
            ttl_attribute="expires_at",
        ),
        # Watermarks, OAuth refresh leases and rate-limit windows; the last two expire.
        TableSpec(
            id="Cursors",
            setting="cursors_table",
            partition_key=Key(name="pk"),
            ttl_attribute="expires_at",
        ),
    ),
    queues=(
        QueueSpec(
            id="Events",
            setting="events_queue_url",
            visibility_timeout_s=360,  # ≥ 6 × the sync function's timeout is AWS's advice for
            retention_days=14,  # batches; 360 s = 6 × 60 s
            max_failed_attempts=5,
            dead_letter_setting="events_dlq_url",
            max_receive_count=1000,
        ),
    ),
    functions=(
        FunctionSpec(
            id="Webhook",
            handler="functions.webhook.handler.handler",
            memory_mb=512,
            timeout_s=10,  # vendors give up after 3–5 s; never hold a webhook longer
            tables_read=("Connections",),
            queues_send=("Events",),
            secrets_read=True,
        ),
        FunctionSpec(
            id="Sync",
            handler="functions.sync.handler.handler",
            memory_mb=512,
            # Room for a vendor's short rate-limit waits (≤ 20 s inline, then the
            # message is deferred) without the batch timing out mid-way.
            timeout_s=60,
            tables_rw=("Links", "Idempotency", "Audit", "Cursors"),
            tables_read=("Connections",),
            queues_consume=("Events",),
            # The call budget deals a vendor's pace into lanes a call apart (~0.4 s):
            # an accounting company's 500 calls/min is 3 lanes, one busy worker each.
            # bench/bench_quota.py at 250 ms a call: 2 workers use 65 % of the quota,
            # 3 or 4 use 97–98 %. Four: the fourth covers the time a worker spends on
            # other calls (the CRM, DynamoDB) between accounting calls; more would
            # only queue.
            max_concurrency=4,
            secrets_read=True,
            secrets_rotate=True,
        ),
        FunctionSpec(
            id="Reconcile",
            handler="functions.reconcile.handler.handler",
            memory_mb=512,
            timeout_s=300,
            tables_rw=("Links", "Cursors", "Audit"),
            tables_read=("Connections",),
            queues_send=("Events",),
            dead_letters_sweep=("Events",),
            secrets_read=True,
            secrets_rotate=True,  # its CRM may be one that rotates
        ),
    ),
    schedules=(ScheduleSpec(id="ReconcileSchedule", function="Reconcile", rate_minutes=60),),
    webhook_function="Webhook",
)


def local_name(stack: str, resource_id: str, *, fifo: bool = False) -> str:
    """Physical name of a resource in the local stack (CloudFormation names them in AWS)."""
    name = f"crmsync-{stack}-{resource_id.lower()}"
    return f"{name}.fifo" if fifo else name


def webhook_route(vendor: str) -> str:
    """The route a vendor POSTs its webhooks to, on API Gateway and on the local API."""
    return f"/webhooks/{vendor}/{{connection}}"


def webhook_path(vendor: str, connection_id: str) -> str:
    """One connection's webhook path for ``vendor``: what its webhook settings point at."""
    return webhook_route(vendor).replace("{connection}", connection_id)
