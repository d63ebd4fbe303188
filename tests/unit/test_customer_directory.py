"""The customer directory: a customer create looks up its email only where some
customer of the target may hold it, and the directory follows the target's listing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from local.memory import (
    MemoryAuditLog,
    MemoryCursorStore,
    MemoryCustomerDirectory,
    MemoryLinkStore,
    MemoryQueue,
)
from shared.mapping import Mapper, load_mapping
from shared.models import ChangeEvent, ChangeKind, ObjectType, Outcome, Party
from shared.sync.engine import DIRECTORY_SKEW, SyncEngine
from shared.sync.reconcile import Reconciler
from tests.fakes import DEFAULT_MAPPING, FakeBatchLedger, FakeCrm
from tests.unit.test_engine import CONNECTION, contact, event


class Clock:
    """Our clock and the target's, one and the same here."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 25, 12, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def ms(self) -> int:
        return int(self.now.timestamp() * 1000)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def crm() -> FakeCrm:
    return FakeCrm()


@pytest.fixture
def ledger(clock: Clock) -> FakeBatchLedger:
    return FakeBatchLedger(clock=clock.ms)


@pytest.fixture
def directory() -> MemoryCustomerDirectory:
    return MemoryCustomerDirectory()


@pytest.fixture
def links() -> MemoryLinkStore:
    return MemoryLinkStore()


@pytest.fixture
def engine(
    crm: FakeCrm,
    ledger: FakeBatchLedger,
    links: MemoryLinkStore,
    directory: MemoryCustomerDirectory,
    clock: Clock,
) -> SyncEngine:
    return SyncEngine(
        connection_id=CONNECTION,
        crm=crm,
        ledger=ledger,
        mapper=Mapper(load_mapping(DEFAULT_MAPPING)),
        links=links,
        audit=MemoryAuditLog(),
        queue=MemoryQueue(),
        clock=clock,
        directory=directory,
    )


def seed(ledger: FakeBatchLedger, name: str, email: str) -> str:
    """A customer a person typed into the target."""
    return ledger.upsert_customer(
        Party(kind="person", display_name=name, email=email), existing=None, idempotency_key=name
    ).id


def customer_event(target_id: str, at: datetime) -> ChangeEvent:
    """The target's notice that one of its customers changed (not by us)."""
    record = contact(target_id, version=int(at.timestamp() * 1000))
    return event(
        record.model_copy(update={"object_type": ObjectType.CUSTOMER}), source="quickbooks"
    )


class TestCreates:
    def test_an_email_no_customer_holds_is_created_with_no_lookup(
        self, engine: SyncEngine, crm: FakeCrm, ledger: FakeBatchLedger
    ) -> None:
        seed(ledger, "Grace Hopper", "grace@example.com")
        engine.refresh_directory()
        lookups = ledger.lookups

        entry = engine.handle(event(crm.put(contact()), kind=ChangeKind.CREATED))

        assert entry.outcome is Outcome.CREATED
        assert ledger.lookups == lookups
        assert len(ledger.customers) == 2

    def test_an_email_a_customer_holds_is_looked_up_and_linked(
        self, engine: SyncEngine, crm: FakeCrm, ledger: FakeBatchLedger
    ) -> None:
        existing = seed(ledger, "A. Lovelace", "ada@example.com")
        engine.refresh_directory()

        entry = engine.handle(event(crm.put(contact())))

        assert ledger.lookups == 2  # the listing, then the email
        assert entry.outcome is Outcome.LINKED
        assert entry.target_key == f"quickbooks:customer:{existing}"

    def test_a_directory_never_filled_looks_every_email_up(
        self, engine: SyncEngine, crm: FakeCrm, ledger: FakeBatchLedger
    ) -> None:
        existing = seed(ledger, "A. Lovelace", "ada@example.com")

        entry = engine.handle(event(crm.put(contact())))

        assert entry.outcome is Outcome.LINKED
        assert entry.target_key == f"quickbooks:customer:{existing}"
        assert ledger.lookups == 1

    def test_a_customer_made_here_is_found_for_the_next_party_with_its_email(
        self, engine: SyncEngine, crm: FakeCrm, ledger: FakeBatchLedger
    ) -> None:
        engine.refresh_directory()
        engine.handle(event(crm.put(contact())))
        lookups = ledger.lookups

        second = engine.handle(event(crm.put(contact("2", firstname="Augusta"))))

        # Looked up (the directory has the email now) and refused as another's customer,
        # as before the directory: never a second customer with one email.
        assert ledger.lookups == lookups + 1
        assert second.outcome is Outcome.INVALID
        assert len(ledger.customers) == 1


class TestRefresh:
    def test_the_first_refresh_reads_everything_then_only_what_changed_since(
        self,
        engine: SyncEngine,
        ledger: FakeBatchLedger,
        directory: MemoryCustomerDirectory,
        clock: Clock,
    ) -> None:
        seed(ledger, "Grace Hopper", "GRACE@example.com")  # held casefolded
        engine.refresh_directory()
        first = clock.now
        clock.now += timedelta(hours=1)
        seed(ledger, "Ada Lovelace", "ada@example.com")
        listed: list[datetime | None] = []
        known = ledger.known_customers

        def spy(*, changed_since: datetime | None = None):  # type: ignore[no-untyped-def]
            listed.append(changed_since)
            return known(changed_since=changed_since)

        ledger.known_customers = spy  # type: ignore[method-assign]
        engine.refresh_directory()

        assert listed == [first - DIRECTORY_SKEW]
        assert directory.holds(CONNECTION, "ada@example.com") is True
        assert directory.holds(CONNECTION, "grace@example.com") is True
        assert directory.holds(CONNECTION, "linus@example.com") is False
        assert directory.filled_at(CONNECTION) == clock.now

    def test_a_customer_typed_into_the_target_refreshes_the_directory(
        self, engine: SyncEngine, crm: FakeCrm, ledger: FakeBatchLedger, clock: Clock
    ) -> None:
        engine.refresh_directory()
        clock.now += timedelta(hours=1)
        typed = seed(ledger, "A. Lovelace", "ada@example.com")

        engine.handle(customer_event(typed, clock.now))
        entry = engine.handle(event(crm.put(contact())))

        assert entry.outcome is Outcome.LINKED
        assert entry.target_key == f"quickbooks:customer:{typed}"

    def test_a_notice_older_than_the_last_refresh_reads_nothing(
        self, engine: SyncEngine, ledger: FakeBatchLedger, clock: Clock
    ) -> None:
        typed = seed(ledger, "A. Lovelace", "ada@example.com")
        changed = clock.now
        clock.now += DIRECTORY_SKEW * 2
        engine.refresh_directory()
        lookups = ledger.lookups

        engine.handle(customer_event(typed, changed))

        assert ledger.lookups == lookups

    def test_a_notice_before_any_fill_is_left_to_the_reconcile(
        self,
        engine: SyncEngine,
        ledger: FakeBatchLedger,
        directory: MemoryCustomerDirectory,
        clock: Clock,
    ) -> None:
        typed = seed(ledger, "A. Lovelace", "ada@example.com")

        engine.handle(customer_event(typed, clock.now))

        assert ledger.lookups == 0
        assert directory.filled_at(CONNECTION) is None

    def test_a_reconcile_run_refreshes_before_it_scans(
        self,
        engine: SyncEngine,
        crm: FakeCrm,
        links: MemoryLinkStore,
        directory: MemoryCustomerDirectory,
        clock: Clock,
    ) -> None:
        reconciler = Reconciler(
            connection_id=CONNECTION,
            crm=crm,
            mapper=Mapper(load_mapping(DEFAULT_MAPPING)),
            links=links,
            cursors=MemoryCursorStore(),
            queue=MemoryQueue(),
            overlap_s=60,
            refresh_directory=engine.refresh_directory,
        )

        reconciler.run()

        assert directory.filled_at(CONNECTION) == clock.now
