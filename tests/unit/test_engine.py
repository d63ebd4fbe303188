"""The sync engine on in-memory fakes: state in, state out."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from local.memory import (
    MemoryAuditLog,
    MemoryCursorStore,
    MemoryCustomerDirectory,
    MemoryLinkStore,
    MemoryQueue,
)
from shared.errors import Retryable
from shared.mapping import Mapper, load_mapping
from shared.models import (
    ChangeEvent,
    ChangeKind,
    Invoice,
    InvoiceLine,
    ObjectType,
    Outcome,
    Party,
    RecordLink,
    SourceRecord,
    System,
)
from shared.ports import KnownCustomer
from shared.sync.engine import DIRECTORY_SKEW, SyncEngine
from shared.sync.reconcile import Reconciler
from tests.fakes import DEFAULT_MAPPING, FakeBatchLedger, FakeCrm, FakeLedger, epoch_ms

T0 = epoch_ms("2026-11-20T10:00:00")
CONNECTION = "acme"


@pytest.fixture
def crm() -> FakeCrm:
    return FakeCrm()


@pytest.fixture
def ledger() -> FakeLedger:
    return FakeLedger()


@pytest.fixture
def links() -> MemoryLinkStore:
    return MemoryLinkStore()


@pytest.fixture
def audit() -> MemoryAuditLog:
    return MemoryAuditLog()


@pytest.fixture
def queue() -> MemoryQueue:
    return MemoryQueue()


class Clock:
    """Our clock, and the target's where a test gives it to the ledger (``ms``)."""

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
def directory() -> MemoryCustomerDirectory | None:
    """No customer directory: every customer create looks its email up."""
    return None


@pytest.fixture
def engine(
    crm: FakeCrm,
    ledger: FakeLedger,
    links: MemoryLinkStore,
    audit: MemoryAuditLog,
    queue: MemoryQueue,
    clock: Clock,
    directory: MemoryCustomerDirectory | None,
) -> SyncEngine:
    return SyncEngine(
        connection_id=CONNECTION,
        crm=crm,
        ledger=ledger,
        mapper=Mapper(load_mapping(DEFAULT_MAPPING)),
        links=links,
        audit=audit,
        queue=queue,
        clock=clock,
        directory=directory,
    )


def contact(record_id: str = "1", version: int = T0, **props: str | None) -> SourceRecord:
    properties: dict[str, str | None] = {
        "firstname": "Ada",
        "lastname": "Lovelace",
        "email": "ada@example.com",
    }
    properties.update(props)
    return SourceRecord(
        object_type=ObjectType.CONTACT, id=record_id, version=version, properties=properties
    )


def line(record_id: str, name: str, quantity: str, price: str, **props: str) -> SourceRecord:
    return SourceRecord(
        object_type=ObjectType.LINE_ITEM,
        id=record_id,
        version=T0,
        properties={"name": name, "quantity": quantity, "price": price, **props},
    )


def deal(
    record_id: str = "9",
    version: int = T0,
    stage: str = "closedwon",
    lines: list[SourceRecord] | None = None,
    contacts: list[str] | None = None,
) -> SourceRecord:
    return SourceRecord(
        object_type=ObjectType.DEAL,
        id=record_id,
        version=version,
        properties={
            "dealname": "Website redesign",
            "dealstage": stage,
            "pipeline": "default",
            "closedate": "2026-11-20T15:00:00Z",
            "hs_object_id": record_id,
        },
        associations={ObjectType.CONTACT: contacts if contacts is not None else ["1"]},
        children={
            ObjectType.LINE_ITEM: lines
            if lines is not None
            else [
                line("501", "Services", "10", "150.00"),
                line("502", "Hours", "2.5", "80", hs_total_discount="20"),
            ]
        },
    )


def event(
    record: SourceRecord,
    *,
    kind: ChangeKind = ChangeKind.UPDATED,
    version: int | None = None,
    event_id: str | None = None,
    source: System = "hubspot",
) -> ChangeEvent:
    version = record.version if version is None else version
    return ChangeEvent(
        connection_id=CONNECTION,
        source=source,
        object_type=record.object_type,
        record_id=record.id,
        event_id=event_id or f"evt-{record.object_type}-{record.id}-{version}",
        kind=kind,
        occurred_at=datetime.fromtimestamp(version / 1000, UTC),
        version=version,
    )


def only_customer(ledger: FakeLedger) -> Party:
    assert len(ledger.customers) == 1
    party = next(iter(ledger.customers.values())).body
    assert isinstance(party, Party)
    return party


def only_invoice(ledger: FakeLedger) -> Invoice:
    assert len(ledger.invoices) == 1
    invoice = next(iter(ledger.invoices.values())).body
    assert isinstance(invoice, Invoice)
    return invoice


class TestContacts:
    def test_given_a_new_contact_when_handled_then_one_customer_is_created_and_linked(
        self, engine: SyncEngine, crm: FakeCrm, ledger: FakeLedger, links: MemoryLinkStore
    ) -> None:
        record = crm.put(contact())

        entry = engine.handle(event(record, kind=ChangeKind.CREATED))

        assert entry.outcome is Outcome.CREATED
        assert only_customer(ledger).display_name == "Ada Lovelace"
        link = links.get(CONNECTION, "hubspot:contact:1")
        assert link is not None
        assert link.target_key == f"quickbooks:customer:{entry.target_key.split(':')[-1]}"  # type: ignore[union-attr]
        assert link.source_version == T0

    def test_given_the_same_event_twice_then_still_one_customer(
        self, engine: SyncEngine, crm: FakeCrm, ledger: FakeLedger
    ) -> None:
        record = crm.put(contact())

        engine.handle(event(record))
        second = engine.handle(event(record))

        assert second.outcome is Outcome.UNCHANGED
        assert len(ledger.customers) == 1

    def test_given_an_existing_customer_with_that_email_then_it_is_linked_not_duplicated(
        self, engine: SyncEngine, crm: FakeCrm, ledger: FakeLedger
    ) -> None:
        existing = ledger.upsert_customer(
            Party(kind="person", display_name="A. Lovelace", email="ada@example.com"),
            existing=None,
            idempotency_key="seed",
        )
        record = crm.put(contact())

        entry = engine.handle(event(record))

        assert entry.outcome is Outcome.LINKED
        assert list(ledger.customers) == [existing.id]
        # the mapping owns display_name: the linked customer now carries HubSpot's value
        assert only_customer(ledger).display_name == "Ada Lovelace"

    def test_given_a_changed_contact_then_the_same_customer_is_updated(
        self, engine: SyncEngine, crm: FakeCrm, ledger: FakeLedger
    ) -> None:
        engine.handle(event(crm.put(contact())))
        changed = crm.put(contact(version=T0 + 1000, phone="+1 555 0100"))

        entry = engine.handle(event(changed))

        assert entry.outcome is Outcome.UPDATED
        assert only_customer(ledger).phone == "+1 555 0100"
        assert next(iter(ledger.customers.values())).sync_token == 1

    def test_given_an_event_older_than_the_applied_version_then_it_is_skipped_as_stale(
        self, engine: SyncEngine, crm: FakeCrm, ledger: FakeLedger, audit: MemoryAuditLog
    ) -> None:
        engine.handle(event(crm.put(contact(version=T0 + 5000))))

        entry = engine.handle(event(contact(), version=T0 + 1000))

        assert entry.outcome is Outcome.SKIPPED
        assert "stale" in entry.reason
        assert audit.entries(CONNECTION)[0] == entry

    def test_given_a_contact_without_email_then_it_is_audited_as_invalid_and_not_written(
        self, engine: SyncEngine, crm: FakeCrm, ledger: FakeLedger
    ) -> None:
        record = crm.put(contact(email=None))

        entry = engine.handle(event(record))

        assert entry.outcome is Outcome.INVALID
        assert (entry.field, entry.rule) == ("email", "required")
        assert ledger.customers == {}

    def test_given_a_deleted_contact_then_the_customer_is_kept(
        self, engine: SyncEngine, crm: FakeCrm, ledger: FakeLedger
    ) -> None:
        engine.handle(event(crm.put(contact())))

        entry = engine.handle(event(contact(version=T0 + 1), kind=ChangeKind.DELETED))

        assert entry.outcome is Outcome.SKIPPED
        assert len(ledger.customers) == 1


class TestDeals:
    def test_given_a_won_deal_then_an_invoice_is_written_for_its_contacts_customer(
        self, engine: SyncEngine, crm: FakeCrm, ledger: FakeLedger
    ) -> None:
        crm.put(contact())
        record = crm.put(deal())

        entry = engine.handle(event(record))

        assert entry.outcome is Outcome.CREATED
        invoice = only_invoice(ledger)
        customer_id = next(iter(ledger.customers))
        assert invoice.customer_ref == customer_id
        assert [(ln.item_ref, ln.quantity, ln.unit_price) for ln in invoice.lines] == [
            ("1", Decimal("10"), Decimal("150.00")),
            ("2", Decimal("2.5"), Decimal("80.00")),
        ]
        assert [ln.discount_amount for ln in invoice.lines] == [Decimal("0"), Decimal("20.00")]
        assert invoice.txn_date == date(2026, 11, 20)
        assert invoice.payment_terms == "Net 30"  # the ledger gives its due date

    def test_given_a_changed_won_deal_then_the_invoice_is_updated_not_duplicated(
        self, engine: SyncEngine, crm: FakeCrm, ledger: FakeLedger
    ) -> None:
        crm.put(contact())
        engine.handle(event(crm.put(deal())))
        changed = crm.put(deal(version=T0 + 60_000, lines=[line("501", "Services", "12", "150")]))

        entry = engine.handle(event(changed))

        assert entry.outcome is Outcome.UPDATED
        invoice = only_invoice(ledger)
        assert [ln.quantity for ln in invoice.lines] == [Decimal("12")]

    def test_given_a_deal_without_a_close_date_then_dated_today_once_and_not_redated(
        self, engine: SyncEngine, crm: FakeCrm, ledger: FakeLedger, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        crm.put(contact())
        undated = deal()
        undated.properties["closedate"] = None
        engine.handle(event(crm.put(undated)))
        changed = deal(version=T0 + 60_000, lines=[line("501", "Services", "12", "150")])
        changed.properties["closedate"] = None
        a_week_later = datetime(2026, 12, 2, 12, tzinfo=UTC)
        monkeypatch.setattr(engine, "_clock", lambda: a_week_later)

        entry = engine.handle(event(crm.put(changed)))

        assert entry.outcome is Outcome.UPDATED
        invoice = only_invoice(ledger)
        assert [ln.quantity for ln in invoice.lines] == [Decimal("12")]
        # Dated the day it was made; an update, on whatever day, sends no date.
        assert invoice.txn_date == date(2026, 11, 25)

    def test_given_a_deal_updated_with_the_same_line_items_then_their_parent_is_not_rewritten(
        self,
        engine: SyncEngine,
        crm: FakeCrm,
        links: MemoryLinkStore,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        written: list[list[str]] = []
        set_parent = links.set_parent

        def counted(connection_id: str, child_keys: list[str], parent_key: str) -> None:
            written.append(list(child_keys))
            set_parent(connection_id, child_keys, parent_key)

        monkeypatch.setattr(links, "set_parent", counted)
        engine.handle(event(crm.put(contact())))
        engine.handle(event(crm.put(deal())))
        engine.handle(
            event(crm.put(deal(version=T0 + 1, lines=[line("501", "Services", "9", "1")])))
        )
        engine.handle(
            event(crm.put(deal(version=T0 + 2, lines=[line("501", "Services", "8", "1")])))
        )

        assert written == [
            ["hubspot:line_item:501", "hubspot:line_item:502"],
            ["hubspot:line_item:501"],  # one line item less: written again; then unchanged
        ]
        assert links.parent_of(CONNECTION, "hubspot:line_item:501") == "hubspot:deal:9"

    def test_given_an_open_deal_then_it_is_filtered_with_the_rule_named(
        self, engine: SyncEngine, crm: FakeCrm, ledger: FakeLedger
    ) -> None:
        entry = engine.handle(event(crm.put(deal(stage="appointmentscheduled"))))

        assert entry.outcome is Outcome.SKIPPED
        assert "dealstage" in entry.reason
        assert ledger.invoices == {}

    def test_given_an_unknown_item_then_the_deal_is_invalid_with_the_line_named(
        self, engine: SyncEngine, crm: FakeCrm, ledger: FakeLedger
    ) -> None:
        crm.put(contact())
        record = crm.put(deal(lines=[line("501", "Gold plating", "1", "10")]))

        entry = engine.handle(event(record))

        assert entry.outcome is Outcome.INVALID
        assert (entry.field, entry.rule) == ("line_items[0].name", "item_exists")
        assert ledger.invoices == {}

    def test_given_a_deal_without_contact_or_company_then_it_is_invalid(
        self, engine: SyncEngine, crm: FakeCrm
    ) -> None:
        entry = engine.handle(event(crm.put(deal(contacts=[]))))

        assert entry.outcome is Outcome.INVALID
        assert entry.field == "associations"

    def test_given_a_response_lost_after_the_write_then_the_retry_creates_nothing_new(
        self, engine: SyncEngine, crm: FakeCrm, ledger: FakeLedger, audit: MemoryAuditLog
    ) -> None:
        crm.put(contact())
        engine.handle(event(crm.put(contact())))
        record = crm.put(deal())
        ledger.lose_responses = 1

        with pytest.raises(Retryable):
            engine.handle(event(record))
        retried = engine.handle(event(record))

        assert audit.entries(CONNECTION)[1].outcome is Outcome.FAILED
        # The create was written down before it was sent: repeated, answered, not redone.
        assert retried.outcome is Outcome.CREATED
        assert len(ledger.invoices) == 1


class TestAccountingEvents:
    def test_given_the_echo_of_our_own_write_then_it_is_dropped(
        self, engine: SyncEngine, crm: FakeCrm, ledger: FakeLedger
    ) -> None:
        engine.handle(event(crm.put(contact())))
        [(customer_id, customer)] = ledger.customers.items()

        def notified(event_id: str) -> ChangeEvent:
            return ChangeEvent(
                connection_id=CONNECTION,
                source="quickbooks",
                object_type=ObjectType.CUSTOMER,
                record_id=customer_id,
                event_id=event_id,
                kind=ChangeKind.UPDATED,
                occurred_at=datetime.now(UTC),
                version=customer.changed_at_ms,
            )

        fetches = crm.fetches
        assert engine.handle(notified("qbo-1")).reason == "echo of our own write"

        ledger.touch(ObjectType.CUSTOMER, customer_id)  # a person edits it in QuickBooks
        assert "no two-way fields" in engine.handle(notified("qbo-2")).reason
        assert ledger.reads == 0  # recognised from what the write returned, no read-back
        assert crm.fetches == fetches


class TestMatchingSafety:
    def test_given_two_contacts_with_one_display_name_then_the_second_does_not_take_over(
        self, engine: SyncEngine, crm: FakeCrm, ledger: FakeLedger
    ) -> None:
        engine.handle(event(crm.put(contact("1", email="john.a@example.com"))))
        second = crm.put(contact("2", email="john.b@example.com"))

        entry = engine.handle(event(second))

        assert entry.outcome is Outcome.INVALID
        assert entry.rule == "unique_match"
        assert "hubspot:contact:1" in entry.reason
        assert only_customer(ledger).email == "john.a@example.com"

    @pytest.mark.parametrize("checked", [frozenset(), frozenset({"display_name"})])
    def test_given_a_name_the_target_checks_on_create_then_a_second_contact_cannot_take_it(
        self, engine: SyncEngine, crm: FakeCrm, ledger: FakeLedger, checked: frozenset[str]
    ) -> None:
        ledger.checked_on_create = checked
        engine.handle(event(crm.put(contact("1", email="john.a@example.com"))))
        lookups = ledger.lookups

        entry = engine.handle(event(crm.put(contact("2", email="john.b@example.com"))))

        assert (entry.outcome, entry.rule) == (Outcome.INVALID, "unique_match")
        assert "hubspot:contact:1" in entry.reason
        assert only_customer(ledger).email == "john.a@example.com"
        # Looked up by email, and by name only where the create would not find it.
        assert ledger.lookups - lookups == (1 if checked else 2)

    def test_given_an_invoice_numbered_outside_when_the_target_refuses_the_number_then_linked(
        self, engine: SyncEngine, crm: FakeCrm, ledger: FakeLedger
    ) -> None:
        ledger.checked_on_create = frozenset({"doc_number"})
        engine.handle(event(crm.put(contact())))
        record = crm.put(deal())
        made_by_hand = ledger.upsert_invoice(
            Invoice(
                customer_ref="x",
                currency="USD",
                lines=[InvoiceLine(name="Hours", item_ref="2", quantity=1, unit_price=1)],
                doc_number="HS-9",
            ),
            existing=None,
            idempotency_key="by-hand",
        )
        lookups = ledger.lookups

        entry = engine.handle(event(record))

        assert entry.outcome is Outcome.LINKED
        assert list(ledger.invoices) == [made_by_hand.id]
        assert len(only_invoice(ledger).lines) == 2
        assert ledger.lookups == lookups, "no lookup before the create"

    def test_given_a_lost_create_and_a_newer_version_on_retry_then_one_invoice(
        self, engine: SyncEngine, crm: FakeCrm, ledger: FakeLedger
    ) -> None:
        engine.handle(event(crm.put(contact())))
        ledger.lose_responses = 1
        with pytest.raises(Retryable):
            engine.handle(event(crm.put(deal())))
        # HubSpot recalculated the deal after it closed: the retry fetches a newer version.
        newer = crm.put(deal(version=T0 + 30_000, lines=[line("501", "Services", "11", "150")]))

        entry = engine.handle(event(newer))

        assert entry.outcome is Outcome.CREATED  # the first create repeated, then updated
        assert [ln.quantity for ln in only_invoice(ledger).lines] == [Decimal("11")]

    def test_given_an_association_change_without_a_new_version_then_content_decides(
        self, engine: SyncEngine, crm: FakeCrm, ledger: FakeLedger
    ) -> None:
        engine.handle(event(crm.put(contact())))
        engine.handle(event(crm.put(deal())))
        # a line item removed: the deal's own last-modified time does not move
        crm.put(deal(lines=[line("501", "Services", "10", "150.00")]))

        entry = engine.handle(event(deal(), kind=ChangeKind.ASSOCIATION))

        assert entry.outcome is Outcome.UPDATED
        assert len(only_invoice(ledger).lines) == 1

    def test_given_a_line_item_removed_unannounced_when_reconcile_finds_the_deal_then_applied(
        self, engine: SyncEngine, crm: FakeCrm, ledger: FakeLedger
    ) -> None:
        # Found by the chaos run: a deal's link counts its line items' versions, which
        # are newer than the deal's own; reconcile's event carries the deal's version,
        # yet it exists because the content differs now (a line item removed, its
        # webhook lost): it must not be taken for a stale event.
        first = line("501", "Services", "10", "150.00").model_copy(update={"version": T0 + 1})
        second = line("502", "Hours", "2", "80").model_copy(update={"version": T0 + 2})
        engine.handle(event(crm.put(contact())))
        engine.handle(event(crm.put(deal(lines=[first, second]))))
        crm.put(deal(lines=[first]))  # the deal's own version does not move

        entry = engine.handle(event(deal(), kind=ChangeKind.RECONCILE, event_id="reconcile:1"))

        assert entry.outcome is Outcome.UPDATED
        assert len(only_invoice(ledger).lines) == 1

    def test_given_line_item_events_the_deals_sync_already_read_then_skipped_unfetched(
        self, engine: SyncEngine, crm: FakeCrm, ledger: FakeLedger, queue: MemoryQueue
    ) -> None:
        # A deal made with two line items: its sync read both, the second made last.
        first = line("501", "Services", "10", "150.00").model_copy(update={"version": T0 + 1})
        second = line("502", "Hours", "2", "80").model_copy(update={"version": T0 + 2})
        engine.handle(event(crm.put(contact())))
        engine.handle(event(crm.put(deal(lines=[first, second]))))
        for item in (first, second):
            crm.put(item.model_copy(update={"associations": {ObjectType.DEAL: ["9"]}}))
        fetches = crm.fetches

        engine.handle(event(first, kind=ChangeKind.CREATED))  # queued before the sync ran
        [handed] = queue.receive(10)
        entry = engine.handle(handed.event)

        assert entry.outcome is Outcome.SKIPPED
        assert "stale event" in entry.reason
        assert crm.fetches == fetches + 1, "the line item is read to find its deal, not the deal"
        assert len(ledger.invoices) == 1

    def test_given_a_line_item_change_then_it_is_handed_to_its_deal_and_content_decides(
        self, engine: SyncEngine, crm: FakeCrm, ledger: FakeLedger, queue: MemoryQueue
    ) -> None:
        engine.handle(event(crm.put(contact())))
        engine.handle(event(crm.put(deal())))
        changed_line = line("501", "Services", "12", "150.00")
        crm.put(deal(lines=[changed_line]))  # same deal version: only the line changed
        crm.put(changed_line.model_copy(update={"associations": {ObjectType.DEAL: ["9"]}}))

        forwarded = engine.handle(event(changed_line))
        [handed] = queue.receive(10)
        applied = engine.handle(handed.event)

        assert forwarded.outcome is Outcome.FORWARDED
        assert handed.event.record_key == "hubspot:deal:9", "the deal's message group"
        assert applied.outcome is Outcome.UPDATED
        assert [ln.quantity for ln in only_invoice(ledger).lines] == [Decimal("12")]


class CountingLinks(MemoryLinkStore):
    """Counts the link reads a triage or a sync makes."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def get(self, connection_id: str, source_key: str) -> RecordLink | None:
        self.reads += 1
        return super().get(connection_id, source_key)

    def get_by_target(self, connection_id: str, target_key: str) -> RecordLink | None:
        self.reads += 1
        return super().get_by_target(connection_id, target_key)


class TestTriage:
    @pytest.fixture
    def links(self) -> CountingLinks:
        return CountingLinks()

    def test_an_event_older_than_the_applied_one_is_settled_and_audited(
        self, engine: SyncEngine, crm: FakeCrm, audit: MemoryAuditLog
    ) -> None:
        record = crm.put(contact(version=T0 + 10))
        engine.handle(event(record))

        triage = engine.triage(event(record, version=T0))

        assert triage.settled is not None
        assert triage.settled.outcome is Outcome.SKIPPED
        assert "stale event" in triage.settled.reason
        assert audit.entries(CONNECTION, limit=10)[0] == triage.settled

    def test_our_own_echo_is_settled_from_the_link(
        self, engine: SyncEngine, crm: FakeCrm, links: CountingLinks
    ) -> None:
        created = engine.handle(event(crm.put(contact())))
        assert created.target_key is not None
        link = links.get(CONNECTION, "hubspot:contact:1")
        assert link is not None and link.target_changed_at_ms is not None
        customer = SourceRecord(
            object_type=ObjectType.CUSTOMER,
            id=link.target_id,
            version=link.target_changed_at_ms,
            properties={},
        )

        triage = engine.triage(event(customer, source="quickbooks"))

        assert triage.settled is not None
        assert triage.settled.reason == "echo of our own write"

    def test_only_an_event_that_may_write_to_a_vendor_is_marked_so(
        self, engine: SyncEngine, crm: FakeCrm
    ) -> None:
        record = crm.put(contact())

        assert engine.triage(event(record)).writes
        assert not engine.triage(event(line("501", "Services", "1", "100"))).writes

    def test_an_unsettled_event_is_handled_with_the_link_triage_read(
        self, engine: SyncEngine, crm: FakeCrm, ledger: FakeLedger, links: CountingLinks
    ) -> None:
        engine.handle(event(crm.put(contact())))
        changed = crm.put(contact(version=T0 + 10, lastname="Byron"))
        reads = links.reads

        triage = engine.triage(event(changed))
        entry = engine.handle(event(changed), triage)

        assert triage.settled is None and triage.link is not None
        assert entry.outcome is Outcome.UPDATED
        assert only_customer(ledger).display_name == "Ada Byron"
        assert links.reads == reads + 1  # the triage's read, not a second


class TestCreateLease:
    def test_a_create_that_failed_leaves_no_lease_behind(
        self, engine: SyncEngine, crm: FakeCrm, ledger: FakeLedger, links: MemoryLinkStore
    ) -> None:
        record = crm.put(contact())
        ledger.lose_responses = 1  # made, its answer lost: the event is retried

        with pytest.raises(Retryable):
            engine.handle(event(record))

        # Released on the way out: the retry (or anyone) takes the lease at once.
        now = datetime(2026, 11, 25, 12, tzinfo=UTC).timestamp()
        assert links.claim_create(CONNECTION, event(record).record_key, "x", now=now, lease_s=1)
        links.release_create(CONNECTION, event(record).record_key, "x")
        assert engine.handle(event(record)).outcome is Outcome.CREATED
        assert len(ledger.customers) == 1

    def test_a_saved_link_ends_the_lease(
        self, engine: SyncEngine, crm: FakeCrm, links: MemoryLinkStore
    ) -> None:
        record = crm.put(contact())

        engine.handle(event(record))

        now = datetime(2026, 11, 25, 12, tzinfo=UTC).timestamp()
        state = links.claim_create(CONNECTION, event(record).record_key, "x", now=now, lease_s=1)
        assert state is not None and state.link is not None


# --- the customer directory: a create looks its email up only where a customer may hold it


class WithCustomerDirectory:
    """A target that lists its customers (``CustomerListing``), on the test's clock,
    and the engine keeping their emails."""

    @pytest.fixture
    def ledger(self, clock: Clock) -> FakeBatchLedger:
        return FakeBatchLedger(clock=clock.ms)

    @pytest.fixture
    def directory(self) -> MemoryCustomerDirectory:
        return MemoryCustomerDirectory()


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


class TestCustomerDirectoryCreates(WithCustomerDirectory):
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
        listed = ledger.lookups

        entry = engine.handle(event(crm.put(contact())))

        assert ledger.lookups == listed + 1  # the email
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

    def test_an_email_our_update_wrote_is_found_for_the_next_party(
        self, engine: SyncEngine, crm: FakeCrm, ledger: FakeBatchLedger
    ) -> None:
        engine.refresh_directory()
        engine.handle(event(crm.put(contact(email="old@example.com"))))
        moved = crm.put(contact(version=T0 + 10, email="new@example.com"))
        assert engine.handle(event(moved)).outcome is Outcome.UPDATED

        other = contact("2", firstname="Augusta", email="new@example.com")
        second = engine.handle(event(crm.put(other)))

        # Its webhook is our echo and refreshes nothing: the update noted the email.
        assert second.outcome is Outcome.INVALID
        assert len(ledger.customers) == 1


class TestCustomerDirectoryRefresh(WithCustomerDirectory):
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

    def test_the_first_fill_reads_again_what_changed_while_it_was_read(
        self,
        engine: SyncEngine,
        ledger: FakeBatchLedger,
        directory: MemoryCustomerDirectory,
        clock: Clock,
    ) -> None:
        seed(ledger, "Grace Hopper", "grace@example.com")
        whole = ledger.known_customers

        def paged(*, changed_since: datetime | None = None) -> Iterator[KnownCustomer]:
            yield from whole(changed_since=changed_since)
            if changed_since is None:  # typed in after its page was read
                clock.now += timedelta(seconds=5)
                seed(ledger, "A. Lovelace", "ada@example.com")

        ledger.known_customers = paged  # type: ignore[method-assign]
        engine.refresh_directory()

        assert directory.holds(CONNECTION, "ada@example.com") is True
        assert directory.holds(CONNECTION, "grace@example.com") is True

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
