"""Interleavings that broke the foundation, each named, on the in-memory fakes.

Random chaos passed while these targeted orders of events did not: an undone
line-item edit, two invocations at once, a lost response followed by a rename, a
vendor refusal retried like an outage, and a missed line-item change that
reconciliation never saw.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from local.memory import (
    MemoryAuditLog,
    MemoryCursorStore,
    MemoryLinkStore,
    MemoryQueue,
)
from shared.errors import Permanent, Retryable
from shared.mapping import Mapper, load_mapping
from shared.models import (
    ChangeEvent,
    ChangeKind,
    Invoice,
    ObjectType,
    Outcome,
    Party,
    SourceRecord,
)
from shared.ports import TargetRef
from shared.sync.engine import SyncEngine
from shared.sync.reconcile import Reconciler, sweep_dead_letters
from tests.fakes import DEFAULT_MAPPING, FakeCrm, FakeLedger
from tests.unit.test_engine import CONNECTION, T0, contact, deal, event, line, only_invoice


def company(record_id: str = "7", version: int = T0, name: str = "Acme") -> SourceRecord:
    return SourceRecord(
        object_type=ObjectType.COMPANY, id=record_id, version=version, properties={"name": name}
    )


def deal_with(quantity: str, *, version: int = T0) -> SourceRecord:
    """Deal 9 (won, contact 1) with one line item 501 of ``quantity`` Services at 150."""
    item = line("501", "Services", quantity, "150.00").model_copy(
        update={"associations": {ObjectType.DEAL: ["9"]}}
    )
    return deal(version=version, lines=[item])


@dataclass
class Rig:
    """One connection's engine on fakes, with the queue the engine hands work to."""

    crm: FakeCrm = field(default_factory=FakeCrm)
    ledger: FakeLedger = field(default_factory=FakeLedger)
    links: MemoryLinkStore = field(default_factory=MemoryLinkStore)
    audit: MemoryAuditLog = field(default_factory=MemoryAuditLog)
    queue: MemoryQueue = field(default_factory=MemoryQueue)
    mapper: Mapper = field(default_factory=lambda: Mapper(load_mapping(DEFAULT_MAPPING)))

    def engine(self) -> SyncEngine:
        """A fresh engine over the shared state: another Lambda invocation."""
        return SyncEngine(
            connection_id=CONNECTION,
            crm=self.crm,
            ledger=self.ledger,
            mapper=self.mapper,
            links=self.links,
            audit=self.audit,
            queue=self.queue,
            clock=lambda: datetime(2026, 11, 25, 12, tzinfo=UTC),
        )

    def reconciler(self, **options: Any) -> Reconciler:
        """Reconciliation over the same state, with its own cursors."""
        return Reconciler(
            connection_id=CONNECTION,
            crm=self.crm,
            mapper=self.mapper,
            links=self.links,
            cursors=MemoryCursorStore(),
            queue=self.queue,
            overlap_s=300,
            **options,
        )

    def apply(self, change: ChangeEvent) -> Outcome:
        """Handle ``change``, then every event it handed on, as the queue would."""
        outcome = self.engine().handle(change).outcome
        self.drain()
        return outcome

    def drain(self) -> None:
        while received := self.queue.receive(10):
            for message in received:
                self.engine().handle(message.event)
                self.queue.delete(message.receipt)

    def line_item_changed(self, item: SourceRecord) -> ChangeEvent:
        self.crm.put(item)
        return event(item, event_id=f"line-{item.id}-{item.properties['quantity']}")


@pytest.fixture
def rig() -> Rig:
    return Rig()


def quantities(rig: Rig) -> list[Decimal]:
    return [ln.quantity for ln in only_invoice(rig.ledger).lines]


class TestUndoneLineItemEdit:
    """Issue item 1: quantity 2 → 3 → 2 must leave the invoice at 2."""

    def test_given_an_edit_undone_then_the_invoice_follows_back(self, rig: Rig) -> None:
        rig.apply(event(rig.crm.put(contact())))
        rig.apply(event(rig.crm.put(deal_with("2"))))
        for quantity in ("3", "2"):
            # Only the line item moves: the deal's own version stays where it was.
            rig.crm.put(deal_with(quantity))
            item = rig.crm.records[(ObjectType.DEAL, "9")].children[ObjectType.LINE_ITEM][0]
            rig.apply(rig.line_item_changed(item))

            assert quantities(rig) == [Decimal(quantity)]


class TestConcurrentInvocations:
    """Issue item 3: a deal event and a line-item event handled at the same moment."""

    def test_given_deal_and_line_item_events_at_once_then_one_invoice(self, rig: Rig) -> None:
        rig.apply(event(rig.crm.put(contact())))
        rig.crm.put(deal_with("2"))
        first_lookup = threading.Event()
        release = threading.Event()
        original_find = rig.ledger.find_invoice

        def find_invoice(doc_number: str) -> TargetRef | None:
            # The deal's invocation looks the invoice up and waits there while the
            # line item changes and the second invocation runs.
            found = original_find(doc_number)
            if not first_lookup.is_set():
                first_lookup.set()
                release.wait(5)
            return found

        rig.ledger.find_invoice = find_invoice  # type: ignore[method-assign]
        deal_run = threading.Thread(target=lambda: rig.engine().handle(event(deal_with("2"))))
        deal_run.start()
        assert first_lookup.wait(5)
        rig.crm.put(deal_with("3"))
        item = rig.crm.records[(ObjectType.DEAL, "9")].children[ObjectType.LINE_ITEM][0]
        line_run = threading.Thread(target=lambda: rig.engine().handle(rig.line_item_changed(item)))
        line_run.start()
        line_run.join(1)
        release.set()
        for run in (deal_run, line_run):
            run.join(10)
        rig.drain()

        assert len(rig.ledger.invoices) == 1
        assert quantities(rig) == [Decimal("3")]


class TestLostResponseThenRename:
    """Issue item 4: every create commits but its answer is lost, then a rename."""

    def test_given_lost_creates_and_a_rename_then_one_customer_with_the_new_name(
        self, rig: Rig
    ) -> None:
        rig.ledger.lose_responses = 2
        for attempt in range(2):
            with pytest.raises(Retryable):
                rig.engine().handle(event(rig.crm.put(company(version=T0 + attempt))))
        renamed = rig.crm.put(company(version=T0 + 5000, name="Acme Corporation"))

        outcome = rig.apply(event(renamed))

        assert outcome is not Outcome.FAILED
        assert len(rig.ledger.customers) == 1
        [customer] = rig.ledger.customers.values()
        assert customer.body.display_name == "Acme Corporation"


class TestVendorRefusals:
    """Issue item 6: a refusal that will never succeed ends, audited once."""

    def test_given_the_ledger_refuses_the_invoice_then_one_audit_and_no_retry(
        self, rig: Rig, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        rig.apply(event(rig.crm.put(contact())))

        def refuse(*args: object, **kwargs: object) -> TargetRef:
            raise Permanent("Discount amount is greater than the price (6000)", code="6000")

        monkeypatch.setattr(rig.ledger, "upsert_invoice", refuse)
        entry = rig.engine().handle(event(rig.crm.put(deal())))

        assert entry.outcome is Outcome.REJECTED
        assert "Discount amount is greater than the price" in entry.reason
        assert [e.outcome for e in rig.audit.entries(CONNECTION)] == [
            Outcome.REJECTED,  # said once
            Outcome.CREATED,  # the contact's customer, before
        ]

    def test_given_credentials_refused_then_it_is_retried_for_a_person_to_fix(
        self, rig: Rig, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from shared.errors import AuthFailed

        def refuse(*args: object, **kwargs: object) -> TargetRef:
            raise AuthFailed("token refresh refused (400 invalid_grant)")

        monkeypatch.setattr(rig.ledger, "upsert_customer", refuse)
        with pytest.raises(AuthFailed):
            rig.engine().handle(event(rig.crm.put(contact())))


class TestReconcileSeesLineItems:
    """Issue item 2: a line-item change whose webhook never came is repaired."""

    @pytest.fixture
    def reconciler(self, rig: Rig) -> Reconciler:
        return rig.reconciler()

    def test_given_a_missed_line_item_change_then_reconcile_repairs_the_invoice(
        self, rig: Rig, reconciler: Reconciler
    ) -> None:
        rig.apply(event(rig.crm.put(contact())))
        rig.apply(event(rig.crm.put(deal_with("2"))))
        reconciler.run()
        rig.drain()
        # The line item changes; its webhook is lost. The deal's version does not move.
        item = deal_with("4").children[ObjectType.LINE_ITEM][0]
        item = rig.crm.put(item.model_copy(update={"version": T0 + 90_000}))
        rig.crm.put(deal(lines=[item]))

        reconciler.run()
        rig.drain()

        assert quantities(rig) == [Decimal("4")]


class TestDeadLettersRepairedSince:
    """Issue item 8: dead letters whose record was repaired since leave the DLQ."""

    def test_given_a_repaired_record_then_its_dead_letter_is_resolved_and_others_stay(
        self, rig: Rig
    ) -> None:
        reconciler = rig.reconciler(audit=rig.audit)
        repaired = event(rig.crm.put(contact("1")))
        broken = event(rig.crm.put(contact("2", email=None)))  # invalid: nothing written
        for dead in (repaired, broken):
            rig.queue.dead_letter(dead, message_id=f"m-{dead.record_id}")
        rig.apply(repaired)  # e.g. a later webhook of contact 1 went through

        resolved = sweep_dead_letters(rig.queue, {CONNECTION: reconciler})

        assert resolved == {CONNECTION: 1}
        assert [m.event.record_id for m in rig.queue.dead_letters] == ["2"]
        [resolved] = [e for e in rig.audit.entries(CONNECTION) if e.outcome is Outcome.RESOLVED]
        assert resolved.record_key == "hubspot:contact:1"


class TestCreateRefusedBeforeSending:
    """A create the connector refuses before sending (e.g. unknown payment terms) leaves
    no written-down create behind: once the record is fixed, its new content is sent."""

    def test_given_a_record_refused_then_fixed_then_the_fixed_content_is_created(
        self, rig: Rig, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from shared.errors import RecordInvalid, Violation

        original = rig.ledger.upsert_customer
        calls: list[str] = []

        def refuse_once(party: Party, **kwargs: object) -> TargetRef:
            calls.append(party.display_name)
            if len(calls) == 1:
                raise RecordInvalid([Violation("payment_terms", "terms_exist", "no such terms")])
            return original(party, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(rig.ledger, "upsert_customer", refuse_once)
        assert rig.apply(event(rig.crm.put(company(name="Acme")))) is Outcome.INVALID

        fixed = rig.crm.put(company(version=T0 + 1000, name="Acme Fixed"))
        assert rig.apply(event(fixed)) is Outcome.CREATED

        [customer] = rig.ledger.customers.values()
        assert customer.body.display_name == "Acme Fixed"
        assert calls == ["Acme", "Acme Fixed"], "the refused body is not replayed"


class TestUndoAfterALostUpdate:
    """Found by the chaos run: an update commits but its answer is lost, then the edit
    is undone in the CRM. The link still says the old content was written, so the undo
    looked unchanged and the target kept the undone value for good."""

    def test_given_a_lost_update_then_an_undo_then_the_target_follows_the_crm(
        self, rig: Rig
    ) -> None:
        rig.apply(event(rig.crm.put(contact(version=T0, email="ada@example.com"))))
        edited = rig.crm.put(contact(version=T0 + 1, email="ada@new.example.com"))
        rig.ledger.lose_responses = 1  # the update commits; its answer is lost
        with pytest.raises(Retryable):
            rig.engine().handle(event(edited))
        undone = rig.crm.put(contact(version=T0 + 2, email="ada@example.com"))

        rig.apply(event(undone))
        rig.apply(event(edited))  # the failed event, redelivered: stale by now

        [customer] = rig.ledger.customers.values()
        assert customer.body.email == "ada@example.com"


class TestLineItemDeleted:
    """Found by the chaos run: a deleted line item's webhook names only the line item,
    which can no longer be read; its deal kept invoicing it."""

    def test_given_a_line_item_deleted_then_its_deal_is_invoiced_without_it(self, rig: Rig) -> None:
        rig.apply(event(rig.crm.put(contact())))
        services = line("501", "Services", "2", "150.00")
        hours = line("502", "Hours", "1", "80.00")
        rig.apply(event(rig.crm.put(deal(lines=[services, hours]))))
        rig.crm.put(deal(lines=[services]))  # 502 deleted: the deal's version does not move

        deleted = event(hours, kind=ChangeKind.DELETED, version=T0 + 5000)
        outcome = rig.apply(deleted)

        assert outcome is Outcome.FORWARDED
        assert [ln.name for ln in only_invoice(rig.ledger).lines] == ["Services"]


def invoice_of(rig: Rig, deal_id: str) -> Invoice:
    [invoice] = [
        s.body
        for s in rig.ledger.invoices.values()
        if isinstance(s.body, Invoice) and s.body.doc_number == f"HS-{deal_id}"
    ]
    return invoice


class TestReconcileWalksDeals:
    """Found by the chaos run: a lost association-change webhook (the deal associated to
    a company, or a line item deleted) does not move the deal's last-modified time, so
    the incremental scan never sees the deal again; the daily walk reads it."""

    def reconciler(self, rig: Rig, day: list[float]) -> Reconciler:
        return rig.reconciler(clock=lambda: day[0])

    def test_given_lost_association_webhooks_then_the_next_days_walk_repairs_the_invoice(
        self, rig: Rig
    ) -> None:
        day = [0.0]
        reconciler = self.reconciler(rig, day)
        rig.apply(event(rig.crm.put(contact())))
        rig.apply(event(rig.crm.put(company())))
        services, hours = line("501", "Services", "2", "150.00"), line("502", "Hours", "1", "80")
        rig.apply(event(rig.crm.put(deal(lines=[services, hours]))))
        # A later deal moves the watermark past the first one's overlap.
        rig.apply(event(rig.crm.put(deal("10", version=T0 + 3_600_000, lines=[services]))))
        reconciler.run()
        rig.drain()
        # No webhook, no version moved: the deal is now billed to the company, without 502.
        rig.crm.put(
            deal(lines=[services]).model_copy(
                update={"associations": {ObjectType.CONTACT: ["1"], ObjectType.COMPANY: ["7"]}}
            )
        )
        reconciler.run()  # the same day: the walk is done, the incremental scan sees nothing
        rig.drain()
        assert [ln.name for ln in invoice_of(rig, "9").lines] == ["Services", "Hours"]

        day[0] += 24 * 3600
        report = reconciler.run()
        rig.drain()

        assert report.enqueued["deal (walk)"] == 1
        invoice = invoice_of(rig, "9")
        [company_customer] = [
            i for i, c in rig.ledger.customers.items() if c.body.display_name == "Acme"
        ]
        assert invoice.customer_ref == company_customer
        assert [ln.name for ln in invoice.lines] == ["Services"]


class TestTargetDeletedMeanwhile:
    """A customer deleted in the accounting system is made anew on the next change,
    once, and the link follows it (an update in doubt on the deleted one included)."""

    def test_given_the_linked_customer_deleted_then_the_next_change_creates_one(
        self, rig: Rig
    ) -> None:
        rig.apply(event(rig.crm.put(contact())))
        [deleted] = list(rig.ledger.customers)
        del rig.ledger.customers[deleted]

        outcome = rig.apply(event(rig.crm.put(contact(version=T0 + 1, phone="+1 555 0100"))))

        assert outcome is Outcome.CREATED
        [(recreated, customer)] = rig.ledger.customers.items()
        assert recreated != deleted and customer.body.phone == "+1 555 0100"
        link = rig.links.get(CONNECTION, "hubspot:contact:1")
        assert link is not None and link.target_id == recreated and link.writing is None
