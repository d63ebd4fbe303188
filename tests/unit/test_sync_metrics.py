"""The sync counts what became of each event, and times the applied ones (issue 11).

A real engine over in-memory stores behind the router and the queue consumer, as the
sync function wires them; the metrics port is an in-memory fake that keeps what it
was told.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from infra.resources import DESCRIPTION
from local.memory import (
    MemoryAuditLog,
    MemoryConnections,
    MemoryDeferralCounter,
    MemoryLinkStore,
    MemoryQueue,
)
from shared.bootstrap import mapper_of
from shared.errors import RateLimited, Retryable
from shared.models import (
    ChangeEvent,
    ChangeKind,
    Connection,
    ObjectType,
    Outcome,
    Party,
    SourceRecord,
)
from shared.ports import SyncMetrics, Tally, TargetRef
from shared.sync.consume import Consumer, QueueMessage
from shared.sync.engine import SyncEngine
from shared.sync.route import TALLY_OF, ConnectionRouter
from tests.fakes import DEFAULT_MAPPING, FakeCrm, FakeLedger, epoch_ms

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
SPEC = DESCRIPTION.queue("Events")
CONNECTION = Connection(
    id="acme",
    crm="hubspot",
    accounting="quickbooks",
    mapping_name=DEFAULT_MAPPING.name,
    mapping=DEFAULT_MAPPING.read_text(),
)


class MemorySyncMetrics:
    """``SyncMetrics`` that keeps what it was told."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, ObjectType, Tally]] = Counter()
        self.freshness_ms: list[tuple[str, float]] = []

    def count(self, event: ChangeEvent, tally: Tally) -> None:
        self.counts[(event.connection_id, event.object_type, tally)] += 1

    def freshness(self, event: ChangeEvent, ms: float) -> None:
        self.freshness_ms.append((event.event_id, ms))


class ThrottledLedger(FakeLedger):
    """Answers every customer write with the vendor's 429 and a long Retry-After."""

    def upsert_customer(
        self, party: Party, *, existing: TargetRef | None, idempotency_key: str
    ) -> TargetRef:
        raise RateLimited("quickbooks POST /customer → 429", retry_after_s=60)


class Rig:
    """``metrics``: where the router and the consumer report (else ``self.metrics``)."""

    def __init__(
        self, ledger: FakeLedger | None = None, *, metrics: SyncMetrics | None = None
    ) -> None:
        self.crm = FakeCrm()
        self.ledger = ledger or FakeLedger()
        self.metrics = MemorySyncMetrics()
        reported = metrics or self.metrics
        self.queue = MemoryQueue.from_spec(SPEC)
        self.audit = MemoryAuditLog()
        self.links = MemoryLinkStore()
        self.router = ConnectionRouter(
            connections=MemoryConnections([CONNECTION]),
            engine_for=self.engine,
            audit=self.audit,
            metrics=reported,
            clock=lambda: NOW,
        )
        self.consumer = Consumer(
            apply=self.router.handle,
            queue=self.queue,
            deferrals=MemoryDeferralCounter(),
            max_failed_attempts=SPEC.max_failed_attempts or 1,
            retry_delay_s=SPEC.retry_delay_s,
            metrics=reported,
        )

    def engine(self, connection: Connection) -> SyncEngine:
        return SyncEngine(
            connection_id=connection.id,
            crm=self.crm,
            ledger=self.ledger,
            mapper=mapper_of(connection),
            links=self.links,
            audit=self.audit,
            queue=self.queue,
            clock=lambda: NOW,
        )

    def deliver(self, event: ChangeEvent) -> Any:
        """Queue the event and hand its delivery to the consumer, as the sync does."""
        self.queue.send([event])
        (received,) = self.queue.receive(1)
        return self.consumer.process(
            QueueMessage(
                message_id=received.message_id,
                receipt=received.receipt,
                body=received.body,
                receive_count=received.receive_count,
            )
        )


def contact(record_id: str, **properties: str) -> SourceRecord:
    return SourceRecord(
        object_type=ObjectType.CONTACT,
        id=record_id,
        version=epoch_ms("2026-11-25T11:58:00"),
        properties=properties,
    )


def changed(record_id: str, *, ago: timedelta, connection_id: str = "acme") -> ChangeEvent:
    return ChangeEvent(
        connection_id=connection_id,
        source="hubspot",
        object_type=ObjectType.CONTACT,
        record_id=record_id,
        event_id=f"e-{record_id}",
        kind=ChangeKind.UPDATED,
        occurred_at=NOW - ago,
        version=epoch_ms("2026-11-25T11:58:00"),
    )


ADA = {"firstname": "Ada", "lastname": "Lovelace", "email": "ada@example.com"}


def test_given_an_applied_event_then_it_is_counted_and_timed_from_the_vendors_change() -> None:
    rig = Rig()
    rig.crm.put(contact("1", **ADA))

    entry = rig.deliver(changed("1", ago=timedelta(seconds=90)))

    assert entry.outcome is Outcome.CREATED
    assert rig.metrics.counts == {("acme", ObjectType.CONTACT, Tally.APPLIED): 1}
    assert rig.metrics.freshness_ms == [("e-1", 90_000.0)]


def test_given_a_skipped_event_then_it_is_counted_and_not_timed() -> None:
    rig = Rig()  # the CRM no longer has the record

    entry = rig.deliver(changed("1", ago=timedelta(seconds=5)))

    assert entry.outcome is Outcome.SKIPPED
    assert rig.metrics.counts == {("acme", ObjectType.CONTACT, Tally.SKIPPED): 1}
    assert rig.metrics.freshness_ms == []


def test_given_an_invalid_record_then_it_is_counted_invalid_and_not_timed() -> None:
    rig = Rig()
    rig.crm.put(contact("1", firstname="Ada", lastname="Lovelace"))  # no email: required

    entry = rig.deliver(changed("1", ago=timedelta(seconds=5)))

    assert entry.outcome is Outcome.INVALID
    assert rig.metrics.counts == {("acme", ObjectType.CONTACT, Tally.INVALID): 1}
    assert rig.metrics.freshness_ms == []


def test_given_an_unknown_connection_then_the_event_is_counted_rejected_under_it() -> None:
    rig = Rig()

    entry = rig.deliver(changed("1", ago=timedelta(seconds=5), connection_id="gone"))

    assert entry.outcome is Outcome.REJECTED
    assert rig.metrics.counts == {("gone", ObjectType.CONTACT, Tally.REJECTED): 1}


def test_given_an_outage_then_the_attempt_is_counted_failed_and_nothing_else() -> None:
    rig = Rig(FakeLedger(lose_responses=1))
    rig.crm.put(contact("1", **ADA))

    with pytest.raises(Retryable):
        rig.deliver(changed("1", ago=timedelta(seconds=5)))

    assert rig.metrics.counts == {("acme", ObjectType.CONTACT, Tally.FAILED): 1}
    assert rig.metrics.freshness_ms == []


def test_given_a_vendor_limit_then_the_event_is_counted_deferred_not_failed() -> None:
    rig = Rig(ThrottledLedger())
    rig.crm.put(contact("1", **ADA))

    with pytest.raises(RateLimited):
        rig.deliver(changed("1", ago=timedelta(seconds=5)))

    assert rig.metrics.counts == {("acme", ObjectType.CONTACT, Tally.DEFERRED): 1}


def test_given_a_record_a_scan_found_then_it_is_counted_but_not_timed() -> None:
    rig = Rig()
    record = rig.crm.put(contact("1", **ADA))
    found = ChangeEvent.found("acme", "hubspot", ObjectType.CONTACT, "1", record.version, by="x")

    entry = rig.deliver(found)

    assert entry.outcome is Outcome.CREATED
    assert rig.metrics.counts == {("acme", ObjectType.CONTACT, Tally.APPLIED): 1}
    assert rig.metrics.freshness_ms == []


def test_given_a_vendor_clock_ahead_of_ours_then_freshness_is_zero_not_negative() -> None:
    rig = Rig()
    rig.crm.put(contact("1", **ADA))

    rig.deliver(changed("1", ago=timedelta(seconds=-2)))

    assert rig.metrics.freshness_ms == [("e-1", 0.0)]


def test_every_outcome_is_counted_under_some_metric() -> None:
    assert set(TALLY_OF) == set(Outcome)
