"""The drift check on in-memory fakes: what the two systems disagree on although the
links say they agree, found with both values, repaired through the queue where the
mapping's policy allows it, reported where not, and persistent from one run to the next."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from local.memory import (
    MemoryAuditLog,
    MemoryCursorStore,
    MemoryDriftStore,
    MemoryLinkStore,
    MemoryQueue,
)
from shared.mapping import Mapper, parse_mapping
from shared.models import (
    ChangeEvent,
    ChangeKind,
    Connection,
    Invoice,
    ObjectType,
    Outcome,
    SourceRecord,
)
from shared.models.drift import Done, DriftKind, DriftReport, Finding
from shared.ports import TargetChange
from shared.sync.drift import CHECKED_TYPES, IN_DOUBT, DriftCheck, drift_all
from shared.sync.engine import SyncEngine
from shared.sync.preview import Previewer
from tests.fakes import FakeCrm, FakeLedger, epoch_ms
from tests.unit.test_backflow import MAPPING as TWO_WAY
from tests.unit.test_backflow import deleted, ledger_event

T0 = epoch_ms("2026-11-20T10:00:00")
TODAY = datetime(2026, 11, 25, 12, tzinfo=UTC)
CONNECTION = "acme"

ONE_WAY = """
version: 1
objects:
  company:
    fields:
      display_name: {from: name, required: true}
      phone: {from: phone}
  deal:
    filter: [{field: dealstage, in: [closedwon]}]
    fields:
      name: {from: dealname, required: true}
      status: {from: dealstage, value_map: {closedwon: won}, default: open}
      currency: {default: USD}
    line_items:
      fields:
        name: {from: name, required: true}
        quantity: {from: quantity, transforms: [decimal], required: true}
        unit_price: {from: price, transforms: [decimal], required: true}
"""


@dataclass
class World:
    """Both systems, the service's state, and the engine that syncs between them."""

    mapping: str
    two_way: bool
    crm: FakeCrm = field(default_factory=FakeCrm)
    ledger: FakeLedger = field(default_factory=FakeLedger)
    links: MemoryLinkStore = field(default_factory=MemoryLinkStore)
    cursors: MemoryCursorStore = field(default_factory=MemoryCursorStore)
    queue: MemoryQueue = field(default_factory=MemoryQueue)
    reports: MemoryDriftStore = field(default_factory=MemoryDriftStore)

    def __post_init__(self) -> None:
        self.mapper = Mapper(parse_mapping(self.mapping, "drift.yaml"))
        self.engine = SyncEngine(
            connection_id=CONNECTION,
            crm=self.crm,
            ledger=self.ledger,
            mapper=self.mapper,
            links=self.links,
            audit=MemoryAuditLog(),
            queue=self.queue,
            clock=lambda: TODAY,
            standings=self.ledger if self.two_way else None,
            crm_writer=self.crm if self.two_way else None,
        )
        self.crm.put(
            SourceRecord(
                object_type=ObjectType.COMPANY, id="5", version=T0, properties={"name": "Acme"}
            )
        )
        self.crm.put(
            SourceRecord(
                object_type=ObjectType.DEAL,
                id="9",
                version=T0,
                properties={
                    "dealname": "Redesign",
                    "dealstage": "closedwon",
                    "due_date": "2026-12-20",
                },
                associations={ObjectType.COMPANY: ["5"]},
                children={
                    ObjectType.LINE_ITEM: [
                        SourceRecord(
                            object_type=ObjectType.LINE_ITEM,
                            id="71",
                            version=T0,
                            properties={"name": "Services", "quantity": "2", "price": "500"},
                        )
                    ]
                },
            )
        )

    def check(self) -> DriftCheck:
        return DriftCheck(
            connection_id=CONNECTION,
            crm=self.crm,
            target=self.ledger,
            mapper=self.mapper,
            links=self.links,
            cursors=self.cursors,
            queue=self.queue,
            store=self.reports,
            previewer=Previewer(
                connection_id=CONNECTION,
                crm=self.crm,
                ledger=self.ledger,
                mapper=self.mapper,
                links=self.links,
                today=TODAY.date(),
            ),
            clock=lambda: TODAY,
            overlap_s=0,
            standings=self.ledger if self.two_way else None,
        )

    def sync(self, object_type: ObjectType, record_id: str) -> None:
        record = self.crm.records[(object_type, record_id)]
        self.engine.handle(
            ChangeEvent(
                connection_id=CONNECTION,
                source=self.crm.system,
                object_type=object_type,
                record_id=record_id,
                event_id=f"webhook-{object_type}-{record_id}-{record.version}",
                kind=ChangeKind.UPDATED,
                occurred_at=TODAY,
                version=record.version,
            )
        )

    def drained(self) -> list[ChangeEvent]:
        """What is on the queue, taken off it."""
        events = []
        while received := self.queue.receive():
            for message in received:
                events.append(message.event)
                self.queue.delete(message.receipt)
        return events

    def apply_queued(self) -> list[Outcome]:
        return [self.engine.handle(event).outcome for event in self.drained()]

    def customer(self) -> str:
        link = self.links.get(CONNECTION, "hubspot:company:5")
        assert link is not None
        return link.target_id

    def invoice(self) -> str:
        link = self.links.get(CONNECTION, "hubspot:deal:9")
        assert link is not None
        return link.target_id


@pytest.fixture
def one_way() -> World:
    world = World(ONE_WAY, two_way=False)
    world.sync(ObjectType.DEAL, "9")  # its company with it
    world.drained()
    return world


@pytest.fixture
def two_way() -> World:
    world = World(TWO_WAY, two_way=True)
    world.sync(ObjectType.DEAL, "9")
    world.drained()
    return world


def kinds(report: DriftReport) -> list[tuple[DriftKind, str]]:
    return sorted((f.kind, f.crm_key) for f in report.findings)


def test_given_records_in_sync_when_checked_then_nothing_is_found_or_queued(
    one_way: World,
) -> None:
    report = one_way.check().run()

    assert report.findings == []
    assert report.checked == 2
    assert one_way.drained() == []


def test_given_a_name_edited_in_accounting_under_one_way_then_found_with_both_values_and_repaired(
    one_way: World,
) -> None:
    one_way.ledger.edit(ObjectType.CUSTOMER, one_way.customer(), display_name="Acme Corp")

    report = one_way.check().run()

    assert report.findings == [
        Finding(
            kind=DriftKind.FIELD,
            crm_key="hubspot:company:5",
            target_key=f"quickbooks:customer:{one_way.customer()}",
            field="display_name",
            crm_value="Acme",
            accounting_value="Acme Corp",
            done=Done.QUEUED,
            reason="differs from what the sync wrote",
        )
    ]
    assert report.counts[DriftKind.FIELD] == 1
    link = one_way.links.get(CONNECTION, "hubspot:company:5")
    assert link is not None and link.writing == IN_DOUBT  # not trusted until written
    assert one_way.apply_queued() == [Outcome.UPDATED]
    assert one_way.ledger.customers[one_way.customer()].body.display_name == "Acme"
    assert one_way.check().run().findings == []


def test_given_a_linked_customer_deleted_in_accounting_then_found_and_made_anew(
    one_way: World,
) -> None:
    gone = one_way.customer()
    del one_way.ledger.customers[gone]

    report = one_way.check().run()

    assert [(f.kind, f.crm_key, f.target_key, f.done) for f in report.findings] == [
        (DriftKind.TARGET_GONE, "hubspot:company:5", f"quickbooks:customer:{gone}", Done.QUEUED)
    ]
    assert one_way.apply_queued() == [Outcome.CREATED]
    assert one_way.customer() != gone
    assert one_way.customer() in one_way.ledger.customers


def test_given_a_crm_change_no_webhook_announced_then_found_and_queued(one_way: World) -> None:
    record = one_way.crm.records[(ObjectType.COMPANY, "5")]
    one_way.crm.edit(record, {"phone": "+1 555 0100"})  # and its webhook is lost

    report = one_way.check().run()

    (finding,) = report.findings
    assert (finding.kind, finding.field, finding.crm_value, finding.accounting_value) == (
        DriftKind.FIELD,
        "phone",
        "+1 555 0100",
        None,
    )
    assert one_way.apply_queued() == [Outcome.UPDATED]
    assert one_way.ledger.customers[one_way.customer()].body.phone == "+1 555 0100"


def test_given_a_company_never_synced_then_it_is_found_unsynced_and_queued(
    one_way: World,
) -> None:
    one_way.crm.put(
        SourceRecord(
            object_type=ObjectType.COMPANY, id="6", version=T0 + 5, properties={"name": "Initech"}
        )
    )

    report = one_way.check().run()

    assert kinds(report) == [(DriftKind.UNSYNCED, "hubspot:company:6")]
    assert one_way.apply_queued() == [Outcome.CREATED]


def test_given_an_invoice_whose_lines_were_changed_then_its_total_differs_from_the_deals(
    two_way: World,
) -> None:
    invoice = two_way.ledger.invoices[two_way.invoice()].body
    assert isinstance(invoice, Invoice)
    lines = [line.model_copy(update={"quantity": Decimal("3")}) for line in invoice.lines]
    two_way.ledger.edit(ObjectType.INVOICE, two_way.invoice(), lines=lines)

    report = two_way.check().run()

    (total,) = [f for f in report.findings if f.kind is DriftKind.TOTAL]
    assert (total.crm_value, total.accounting_value, total.done) == (
        "1000.00 USD",
        "1500 USD",
        Done.QUEUED,
    )
    (line,) = [f for f in report.findings if f.kind is DriftKind.FIELD]
    assert (line.field, line.crm_value, line.accounting_value) == ("lines[0].quantity", "2", "3")
    two_way.apply_queued()
    assert two_way.check().run().findings == []


def test_given_a_two_way_field_both_sides_moved_under_hold_then_reported_not_repaired(
    two_way: World,
) -> None:
    deal = two_way.crm.records[(ObjectType.DEAL, "9")]
    two_way.crm.edit(deal, {"due_date": "2027-01-10"})
    two_way.ledger.edit(ObjectType.INVOICE, two_way.invoice(), due_date=date(2027, 1, 20))

    report = two_way.check().run()

    (finding,) = [f for f in report.findings if f.kind is DriftKind.TWO_WAY]
    assert (finding.field, finding.crm_value, finding.accounting_value, finding.done) == (
        "due_date",
        "2027-01-10",
        "2027-01-20",
        Done.REPORTED,
    )
    assert [f for f in report.findings if f.done is Done.QUEUED] == []
    assert two_way.drained() == []


def test_given_a_two_way_field_moved_only_in_accounting_then_the_crm_is_given_its_value(
    two_way: World,
) -> None:
    two_way.ledger.edit(ObjectType.INVOICE, two_way.invoice(), due_date=date(2027, 1, 20))

    report = two_way.check().run()

    (finding,) = [f for f in report.findings if f.kind is DriftKind.TWO_WAY]
    assert finding.done is Done.QUEUED
    two_way.apply_queued()
    assert two_way.crm.records[(ObjectType.DEAL, "9")].properties["due_date"] == "2027-01-20"


def test_given_a_back_field_overwritten_in_the_crm_then_it_is_written_back_again(
    two_way: World,
) -> None:
    deal = two_way.crm.records[(ObjectType.DEAL, "9")]
    assert deal.properties["invoice_status"] == "Open"
    two_way.crm.edit(deal, {"invoice_status": "Paid"})  # a person, in the CRM

    report = two_way.check().run()

    (finding,) = report.findings
    assert (finding.kind, finding.field, finding.crm_value, finding.accounting_value) == (
        DriftKind.BACK,
        "invoice_status",
        "Paid",
        "Open",
    )
    two_way.apply_queued()
    assert two_way.crm.records[(ObjectType.DEAL, "9")].properties["invoice_status"] == "Open"


def test_given_a_deal_deleted_in_the_crm_when_its_invoice_is_paid_then_reported_only(
    two_way: World,
) -> None:
    del two_way.crm.records[(ObjectType.DEAL, "9")]
    two_way.ledger.pay({two_way.invoice(): Decimal("100")}, date(2026, 11, 24))

    report = two_way.check().run()

    assert [(f.kind, f.done) for f in report.findings if f.crm_key == "hubspot:deal:9"] == [
        (DriftKind.CRM_GONE, Done.REPORTED)
    ]
    assert all(event.record_key != "hubspot:deal:9" for event in two_way.drained())


def test_given_a_company_deleted_in_the_crm_when_nothing_else_changed_then_reported_only(
    one_way: World,
) -> None:
    customer = one_way.customer()
    one_way.crm.delete(ObjectType.COMPANY, "5")  # its webhook changes nothing

    report = one_way.check().run()

    assert [(f.kind, f.crm_key, f.target_key, f.done) for f in report.findings] == [
        (DriftKind.CRM_GONE, "hubspot:company:5", f"quickbooks:customer:{customer}", Done.REPORTED)
    ]
    assert one_way.drained() == []
    assert customer in one_way.ledger.customers


def test_given_a_company_never_synced_deleted_in_the_crm_then_nothing_is_found_nor_read(
    one_way: World,
) -> None:
    one_way.check().run()
    reads = one_way.crm.fetches
    one_way.check().run()
    unchanged = one_way.crm.fetches - reads  # what a run reads again (the overlap)
    one_way.crm.put(
        SourceRecord(
            object_type=ObjectType.COMPANY, id="6", version=T0 + 5, properties={"name": "Initech"}
        )
    )
    one_way.crm.delete(ObjectType.COMPANY, "6")
    reads = one_way.crm.fetches

    report = one_way.check().run()

    assert report.findings == []
    assert one_way.crm.fetches - reads == unchanged


def test_given_a_finding_left_unrepaired_then_the_next_run_marks_it_persistent(
    two_way: World,
) -> None:
    deal = two_way.crm.records[(ObjectType.DEAL, "9")]
    two_way.crm.edit(deal, {"due_date": "2027-01-10"})
    two_way.ledger.edit(ObjectType.INVOICE, two_way.invoice(), due_date=date(2027, 1, 20))

    first = two_way.check().run()
    second = two_way.check().run()  # nothing changed since: re-checked as last run's finding

    assert [f.persistent for f in first.findings] == [False]
    assert [f.persistent for f in second.findings] == [True]
    assert second.persistent[DriftKind.TWO_WAY] == 1
    assert two_way.reports.latest(CONNECTION) == second


def test_given_a_repaired_finding_then_the_next_run_does_not_find_it_again(
    one_way: World,
) -> None:
    one_way.ledger.edit(ObjectType.CUSTOMER, one_way.customer(), display_name="Acme Corp")
    one_way.check().run()
    one_way.apply_queued()

    again = one_way.check().run()

    assert again.findings == []
    assert sum(again.persistent.values()) == 0


@dataclass
class Recorded:
    calls: list[tuple[str, dict[str, int], dict[str, int]]] = field(default_factory=list)

    def drift(
        self, connection_id: str, found: Mapping[str, int], persistent: Mapping[str, int]
    ) -> None:
        self.calls.append((connection_id, dict(found), dict(persistent)))


def test_given_connections_when_all_checked_then_each_reports_every_kind_and_a_failure_is_kept(
    one_way: World,
) -> None:
    one_way.ledger.edit(ObjectType.CUSTOMER, one_way.customer(), display_name="Acme Corp")
    ok = Connection.model_validate(
        {
            "id": CONNECTION,
            "crm": "hubspot",
            "accounting": "quickbooks",
            "mapping_name": "drift.yaml",
            "mapping": ONE_WAY,
        }
    )
    broken = ok.model_copy(update={"id": "broken"})
    metrics = Recorded()

    def check_for(connection: Connection) -> DriftCheck:
        if connection.id == "broken":
            raise RuntimeError("its CRM is down")
        return one_way.check()

    fleet = drift_all([ok, broken], check_for, metrics)

    assert fleet.failed == {"broken": "RuntimeError: its CRM is down"}
    ((connection, found, persistent),) = metrics.calls
    assert connection == CONNECTION
    assert found == {kind.value: int(kind is DriftKind.FIELD) for kind in DriftKind}
    assert persistent == dict.fromkeys(found, 0)


def test_given_a_voided_invoice_then_its_customer_is_not_reported_gone(two_way: World) -> None:
    two_way.cursors.put(f"{CONNECTION}:drift:quickbooks", T0)  # a feed read before
    invoice, customer = two_way.invoice(), two_way.customer()
    two_way.ledger.voided.add(invoice)
    two_way.ledger.feed.append(
        TargetChange(
            object_type=ObjectType.INVOICE,
            target_id=invoice,
            changed_at_ms=T0 + 10,
            deleted=True,
            customer_id=customer,
        )
    )

    report = two_way.check().run()

    gone = {f.crm_key for f in report.findings if f.kind is DriftKind.TARGET_GONE}
    assert gone == {"hubspot:deal:9"}  # the deal's invoice; the company's customer stays


def test_given_a_deleted_payment_then_its_invoice_is_not_reported_gone(two_way: World) -> None:
    two_way.cursors.put(f"{CONNECTION}:drift:quickbooks", T0)
    invoice, customer = two_way.invoice(), two_way.customer()
    two_way.ledger.feed.append(  # as Xero lists a deleted payment: its invoice and contact
        TargetChange(
            object_type=ObjectType.PAYMENT,
            target_id="p1",
            changed_at_ms=T0 + 10,
            deleted=True,
            invoice_ids=(invoice,),
            customer_id=customer,
        )
    )

    report = two_way.check().run()

    assert [f for f in report.findings if f.kind is DriftKind.TARGET_GONE] == []


def test_given_a_payment_deleted_naming_nothing_when_its_webhook_is_lost_then_its_deal_reopens(
    two_way: World,
) -> None:
    paid = two_way.ledger.pay({two_way.invoice(): Decimal("1000")}, date(2026, 11, 24))
    two_way.engine.handle(ledger_event(two_way.ledger, paid))
    assert two_way.crm.records[(ObjectType.DEAL, "9")].properties["invoice_status"] == "Paid"
    # Drift checks read both sides since: only the tombstone is new to the next one.
    newest = max(record.version for record in two_way.crm.records.values())
    for object_type in CHECKED_TYPES:
        two_way.cursors.put(f"{CONNECTION}:drift:hubspot:{object_type}", newest + 1)
    two_way.cursors.put(f"{CONNECTION}:drift:quickbooks", paid.changed_at_ms + 1)
    deleted(two_way.ledger, paid)  # and its webhook is lost

    report = two_way.check().run()

    status = [f for f in report.findings if f.field == "invoice_status"]
    assert [(f.crm_key, f.crm_value, f.accounting_value, f.done) for f in status] == [
        ("hubspot:deal:9", "Paid", "Open", Done.QUEUED)
    ]
    two_way.apply_queued()
    assert two_way.crm.records[(ObjectType.DEAL, "9")].properties["invoice_status"] == "Open"


def test_given_a_payment_only_the_drift_check_saw_when_deleted_naming_nothing_then_reached(
    two_way: World,
) -> None:
    two_way.cursors.put(f"{CONNECTION}:drift:quickbooks", T0)
    paid = two_way.ledger.pay({two_way.invoice(): Decimal("1000")}, date(2026, 11, 24))
    two_way.check().run()  # its webhook was lost: the drift check finds it
    two_way.apply_queued()
    assert two_way.crm.records[(ObjectType.DEAL, "9")].properties["invoice_status"] == "Paid"

    two_way.engine.handle(deleted(two_way.ledger, paid))

    assert two_way.crm.records[(ObjectType.DEAL, "9")].properties["invoice_status"] == "Open"


def test_given_a_deal_deleted_and_its_invoice_voided_then_reported_but_never_persistent(
    two_way: World,
) -> None:
    """What a person did on purpose is reported while it holds, but the alarm, which
    watches persistent findings, must be able to clear."""
    two_way.ledger.pay({two_way.invoice(): Decimal("100")}, date(2026, 11, 24))
    two_way.crm.delete(ObjectType.DEAL, "9")
    two_way.check().run()
    two_way.ledger.voided.add(two_way.invoice())  # all the books allow for a paid invoice
    two_way.check().run()

    third = two_way.check().run()

    assert third.counts[DriftKind.CRM_GONE] == 1
    assert third.persistent[DriftKind.CRM_GONE] == 0


def test_given_an_invoice_dated_when_made_then_a_later_check_does_not_redate_it(
    two_way: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = two_way.ledger.invoices[two_way.invoice()].body
    a_month_later = datetime(2027, 1, 15, 12, tzinfo=UTC)
    monkeypatch.setattr(sys.modules[__name__], "TODAY", a_month_later)
    two_way.ledger.pay({two_way.invoice(): Decimal("100")}, date(2027, 1, 14))

    two_way.check().run()
    two_way.apply_queued()

    after = two_way.ledger.invoices[two_way.invoice()].body
    assert isinstance(made, Invoice) and isinstance(after, Invoice)
    assert after.txn_date == made.txn_date


def test_given_an_invoice_whose_due_date_passed_then_its_deal_and_company_turn_overdue(
    two_way: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing changes in the books when a due date passes: no feed names the invoice."""
    assert two_way.crm.records[(ObjectType.DEAL, "9")].properties["invoice_status"] == "Open"
    two_way.check().run()  # a first check: every record compared, all agree
    later = epoch_ms("2030-01-01T00:00:00")  # no change on either side since
    for key in ("quickbooks", "hubspot:company", "hubspot:deal"):
        two_way.cursors.put(f"{CONNECTION}:drift:{key}", later)
    two_days_past_due = datetime(2026, 12, 22, 12, tzinfo=UTC)  # due 2026-12-20
    monkeypatch.setattr(sys.modules[__name__], "TODAY", two_days_past_due)

    two_way.check().run()
    two_way.apply_queued()

    deal = two_way.crm.records[(ObjectType.DEAL, "9")]
    company = two_way.crm.records[(ObjectType.COMPANY, "5")]
    assert (deal.properties["invoice_status"], company.properties["overdue_amount"]) == (
        "Overdue",
        "1000",
    )
    again = two_way.check().run()  # the same day: read once a day
    assert again.counts[DriftKind.BACK] == 0
