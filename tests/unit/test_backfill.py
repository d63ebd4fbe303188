"""Backfill through batch writes: what a reconcile run finds unsynced is created a batch
at a time where that is as safe as one by one, and left to the queue otherwise."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from local.memory import (
    MemoryAuditLog,
    MemoryCursorStore,
    MemoryLinkStore,
    MemoryQueue,
)
from shared.errors import Retryable
from shared.mapping import Mapper, load_mapping
from shared.models import ObjectType, Outcome, Party, SourceRecord
from shared.sync.engine import SyncEngine
from shared.sync.reconcile import Reconciler
from tests.fakes import DEFAULT_MAPPING, FakeBatchLedger, FakeCrm
from tests.unit.test_engine import T0, contact, deal, line

CONNECTION = "acme"


class Rig:
    def __init__(self, ledger: FakeBatchLedger | None = None) -> None:
        self.crm = FakeCrm()
        self.ledger = ledger or FakeBatchLedger()
        self.links = MemoryLinkStore()
        self.audit = MemoryAuditLog()
        self.queue = MemoryQueue()
        mapper = Mapper(load_mapping(DEFAULT_MAPPING))
        self.engine = SyncEngine(
            connection_id=CONNECTION,
            crm=self.crm,
            ledger=self.ledger,
            mapper=mapper,
            links=self.links,
            audit=self.audit,
            queue=self.queue,
            clock=lambda: datetime(2026, 11, 25, 12, tzinfo=UTC),
        )
        self.reconciler = Reconciler(
            connection_id=CONNECTION,
            crm=self.crm,
            mapper=mapper,
            links=self.links,
            cursors=MemoryCursorStore(),
            queue=self.queue,
            overlap_s=60,
            batch_writer=self.engine.backfill,
        )

    def contacts_and_deals(self, n: int) -> None:
        for i in range(n):
            self.crm.put(contact(str(i), email=f"p{i}@example.com", lastname=f"Person{i}"))
            lines = [line(f"{i}01", "Services", "1", "100.00")]
            self.crm.put(deal(f"9{i}", lines=lines, contacts=[str(i)]))

    def drain(self) -> None:
        while batch := self.queue.receive(10):
            for message in batch:
                self.engine.handle(message.event)
                self.queue.delete(message.receipt)


def test_given_a_backfill_then_customers_and_invoices_are_created_a_batch_at_a_time() -> None:
    rig = Rig()
    rig.contacts_and_deals(40)

    report = rig.reconciler.run()

    assert len(rig.ledger.customers) == len(rig.ledger.invoices) == 40
    assert rig.ledger.batch_calls == 4, "40 customers in two calls, then 40 invoices in two"
    assert rig.ledger.lookups == 1, "the target's customers read once, not a query a record"
    assert len(rig.queue) == 0
    assert report.batched["contact"] == report.batched["deal"] == 40
    deal_link = rig.links.get(CONNECTION, "hubspot:deal:90")
    assert deal_link is not None and deal_link.target_type is ObjectType.INVOICE
    entries = rig.audit.entries(CONNECTION, limit=1000)
    assert {e.outcome for e in entries} == {Outcome.CREATED} and len(entries) == 80
    # Linked as the one-by-one path would have: a webhook of the same content is a no-op.
    rig.reconciler.run()
    assert len(rig.queue) == 0 and rig.ledger.batch_calls == 4


def test_given_a_party_the_books_already_have_then_it_is_left_to_the_matching_path() -> None:
    rig = Rig()
    rig.contacts_and_deals(3)
    rig.ledger.upsert_customer(
        Party(kind="person", display_name="Someone Else", email="p1@example.com"),
        existing=None,
        idempotency_key="by-hand",
    )

    report = rig.reconciler.run()
    rig.drain()

    assert report.batched["contact"] == 2 and report.enqueued["contact"] == 1
    assert len(rig.ledger.customers) == 3, "p1 linked to the customer it had, not a second"
    linked = [e for e in rig.audit.entries(CONNECTION, limit=100) if e.outcome is Outcome.LINKED]
    assert [e.record_key for e in linked] == ["hubspot:contact:1"]
    assert len(rig.ledger.invoices) == 3


def test_given_two_parties_sharing_an_email_then_only_the_first_is_batched() -> None:
    rig = Rig()
    rig.crm.put(contact("1", email="shared@example.com", lastname="One"))
    rig.crm.put(contact("2", email="shared@example.com", lastname="Two"))

    report = rig.reconciler.run()
    rig.drain()

    assert report.batched["contact"] == 1 and report.enqueued["contact"] == 1
    assert len(rig.ledger.customers) == 1, "the second is matched by email, not made again"
    [refused] = [
        e for e in rig.audit.entries(CONNECTION, limit=100) if e.outcome is Outcome.INVALID
    ]
    assert (refused.record_key, refused.rule) == ("hubspot:contact:2", "unique_match")


def test_given_a_write_the_batch_refuses_then_the_queue_takes_it_and_says_why() -> None:
    rig = Rig()
    rig.crm.put(contact("1", email="a@example.com"))
    rig.crm.put(contact("2", email="b@example.com"))  # the same display name as "1"

    report = rig.reconciler.run()
    rig.drain()

    assert report.batched["contact"] == 1 and report.enqueued["contact"] == 1
    [refused] = [
        e for e in rig.audit.entries(CONNECTION, limit=100) if e.outcome is Outcome.INVALID
    ]
    assert (refused.record_key, refused.rule) == ("hubspot:contact:2", "unique_match")
    assert len(rig.ledger.customers) == 1


def test_given_line_items_their_deals_just_read_then_the_scan_reads_nothing_from_the_crm() -> None:
    rig = Rig()
    for i in range(3):
        rig.crm.put(contact(str(i), email=f"p{i}@example.com", lastname=f"Person{i}"))
        item = line(f"{i}01", "Services", "1", "100.00")
        rig.crm.put(deal(f"9{i}", lines=[item], contacts=[str(i)]))
        rig.crm.put(item.model_copy(update={"associations": {ObjectType.DEAL: [f"9{i}"]}}))

    report = rig.reconciler.run()

    assert report.batched["deal"] == 3 and report.enqueued["line_item"] == 0
    assert rig.crm.fetches == 0, "line items found in sync through their deals' links"


def test_given_a_target_that_cannot_refuse_duplicates_then_nothing_is_batched() -> None:
    rig = Rig(FakeBatchLedger(checked_on_create=frozenset()))
    rig.contacts_and_deals(2)

    report = rig.reconciler.run()

    assert rig.ledger.batch_calls == 0
    assert report.enqueued["contact"] == report.enqueued["deal"] == 2


def test_given_a_batch_answer_lost_when_the_run_is_retried_then_nothing_is_duplicated() -> None:
    rig = Rig(FakeBatchLedger(lose_batch_answers=1))
    rig.contacts_and_deals(3)

    with pytest.raises(Retryable):
        rig.reconciler.run()  # the customers were written; their answer never came
    rig.reconciler.run()
    rig.drain()

    assert len(rig.ledger.customers) == len(rig.ledger.invoices) == 3
    outcomes = {e.record_key: e.outcome for e in rig.audit.entries(CONNECTION, limit=100)}
    assert {outcomes[f"hubspot:contact:{i}"] for i in range(3)} == {Outcome.LINKED}


def test_given_a_deal_and_its_new_contact_then_the_contact_is_batched_before_the_deal() -> None:
    rig = Rig()
    rig.crm.put(deal("95", contacts=["7"], lines=[line("1", "Services", "1", "1")]))
    rig.crm.put(SourceRecord.model_validate({**contact("7").model_dump(), "version": T0 + 1}))

    report = rig.reconciler.run()

    # Contacts are reconciled first and batched; the deal finds its customer linked.
    assert (report.batched["contact"], report.batched["deal"]) == (1, 1)
    assert rig.ledger.batch_calls == 2
