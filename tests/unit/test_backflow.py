"""The way back on in-memory fakes: an accounting change written into the CRM records
it reaches, once, and only what the mapping sends back."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from local.memory import MemoryAuditLog, MemoryLinkStore, MemoryQueue
from shared.mapping import Mapper, parse_mapping
from shared.models import (
    BackState,
    ChangeEvent,
    ChangeKind,
    Invoice,
    ObjectType,
    Outcome,
    SourceRecord,
)
from shared.ports import TargetChange
from shared.sync.backflow import ECHO_OF_WRITE_BACK
from shared.sync.engine import SyncEngine
from tests.fakes import FakeCrm, FakeLedger, epoch_ms

T0 = epoch_ms("2026-11-20T10:00:00")
TODAY = datetime(2026, 11, 25, 12, tzinfo=UTC)
CONNECTION = "acme"

MAPPING = """
version: 1
objects:
  company:
    fields:
      display_name: {from: name, required: true}
    back:
      open_balance: {from: open_balance, label: Open balance, kind: number}
      overdue_amount: {from: overdue_amount, label: Overdue, kind: number}
  deal:
    filter: [{field: dealstage, in: [closedwon]}]
    fields:
      name: {from: dealname, required: true}
      status: {from: dealstage, value_map: {closedwon: won}, default: open}
      currency: {default: USD}
      due_date: {from: due_date, transforms: [date], direction: both, conflict: hold}
    line_items:
      fields:
        name: {from: name, required: true}
        quantity: {from: quantity, transforms: [decimal], required: true}
        unit_price: {from: price, transforms: [decimal], required: true}
    back:
      invoice_status:
        from: status
        label: Invoice status
        kind: enumeration
        value_map: {paid: Paid, partly_paid: Partly paid, overdue: Overdue, open: Open,
                    voided: Voided}
      amount_paid: {from: amount_paid, label: Amount paid, kind: number}
      balance_due: {from: balance, label: Balance due, kind: number}
"""

# The company's forward fields only: nothing flows back.
ONE_WAY = MAPPING[: MAPPING.index("    back:")]


@pytest.fixture
def crm() -> FakeCrm:
    crm = FakeCrm()
    crm.put(
        SourceRecord(
            object_type=ObjectType.COMPANY, id="5", version=T0, properties={"name": "Acme"}
        )
    )
    crm.put(
        SourceRecord(
            object_type=ObjectType.DEAL,
            id="9",
            version=T0,
            properties={"dealname": "Redesign", "dealstage": "closedwon", "due_date": "2026-12-20"},
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
    return crm


@pytest.fixture
def ledger() -> FakeLedger:
    return FakeLedger()


@pytest.fixture
def audit() -> MemoryAuditLog:
    return MemoryAuditLog()


def make_engine(
    crm: FakeCrm,
    ledger: FakeLedger,
    audit: MemoryAuditLog,
    mapping: str = MAPPING,
    links: MemoryLinkStore | None = None,
) -> SyncEngine:
    return SyncEngine(
        connection_id=CONNECTION,
        crm=crm,
        ledger=ledger,
        mapper=Mapper(parse_mapping(mapping, "two-way.yaml")),
        links=links or MemoryLinkStore(),
        audit=audit,
        queue=MemoryQueue(),
        clock=lambda: TODAY,
        standings=ledger,
        crm_writer=crm,
    )


@pytest.fixture
def engine(crm: FakeCrm, ledger: FakeLedger, audit: MemoryAuditLog) -> SyncEngine:
    return make_engine(crm, ledger, audit)


def crm_event(crm: FakeCrm, object_type: ObjectType, record_id: str) -> ChangeEvent:
    record = crm.records[(object_type, record_id)]
    return ChangeEvent(
        connection_id=CONNECTION,
        source=crm.system,
        object_type=object_type,
        record_id=record_id,
        event_id=f"crm-{object_type}-{record_id}-{record.version}",
        kind=ChangeKind.UPDATED,
        occurred_at=TODAY,
        version=record.version,
    )


def ledger_event(ledger: FakeLedger, change: TargetChange) -> ChangeEvent:
    return ChangeEvent(
        connection_id=CONNECTION,
        source=ledger.system,
        object_type=change.object_type,
        record_id=change.target_id,
        event_id=f"acc-{change.object_type}-{change.target_id}-{change.changed_at_ms}",
        kind=ChangeKind.UPDATED,
        occurred_at=TODAY,
        version=change.changed_at_ms,
    )


def deal_props(crm: FakeCrm) -> dict[str, str | None]:
    return dict(crm.records[(ObjectType.DEAL, "9")].properties)


def invoice_id(ledger: FakeLedger) -> str:
    (found,) = ledger.invoices
    return found


def test_given_a_won_deal_when_invoiced_then_where_its_invoice_stands_is_written_back(
    crm: FakeCrm, engine: SyncEngine
) -> None:
    engine.handle(crm_event(crm, ObjectType.DEAL, "9"))

    props = deal_props(crm)
    assert (props["invoice_status"], props["amount_paid"], props["balance_due"]) == (
        "Open",
        "0",
        "1000",
    )


def test_given_a_payment_when_applied_then_the_deal_fields_are_written_once(
    crm: FakeCrm, ledger: FakeLedger, engine: SyncEngine, audit: MemoryAuditLog
) -> None:
    engine.handle(crm_event(crm, ObjectType.DEAL, "9"))
    writes = len(crm.writes)
    payment = ledger.pay({invoice_id(ledger): Decimal("400")}, date(2026, 11, 24))

    entry = engine.handle(ledger_event(ledger, payment))
    again = engine.handle(ledger_event(ledger, payment))

    props = deal_props(crm)
    assert (props["invoice_status"], props["amount_paid"], props["balance_due"]) == (
        "Partly paid",
        "400",
        "600",
    )
    assert [w for w in crm.writes[writes:] if "invoice_status" in w] == [
        {"invoice_status": "Partly paid", "amount_paid": "400", "balance_due": "600"}
    ]
    assert entry.outcome is Outcome.FORWARDED
    invoice_key = f"quickbooks:invoice:{invoice_id(ledger)}"
    (reached, repeated) = audit.history(CONNECTION, invoice_key, limit=2)[::-1]
    assert reached.outcome is Outcome.UPDATED
    assert "invoice_status, amount_paid, balance_due" in reached.reason
    assert reached.target_key == "hubspot:deal:9"
    assert again.outcome is Outcome.FORWARDED
    assert repeated.outcome is Outcome.UNCHANGED


def test_given_a_webhook_timed_after_its_payment_changed_then_the_payment_is_still_found(
    crm: FakeCrm, ledger: FakeLedger, engine: SyncEngine
) -> None:
    """No vendor documents that a webhook's time is not after the record's change time
    (the event's version); seconds apart, the payment must still be found."""
    engine.handle(crm_event(crm, ObjectType.DEAL, "9"))
    payment = ledger.pay({invoice_id(ledger): Decimal("400")}, date(2026, 11, 24))
    late = payment.model_copy(update={"changed_at_ms": payment.changed_at_ms + 2_000})

    entry = engine.handle(ledger_event(ledger, late))

    assert entry.outcome is Outcome.FORWARDED
    assert deal_props(crm)["invoice_status"] == "Partly paid"


def test_given_a_payment_then_the_customers_picture_reaches_its_company_in_the_same_event(
    crm: FakeCrm, ledger: FakeLedger, engine: SyncEngine, audit: MemoryAuditLog
) -> None:
    engine.handle(crm_event(crm, ObjectType.DEAL, "9"))
    (customer,) = ledger.customers
    payment = ledger.pay({invoice_id(ledger): Decimal("400")}, date(2026, 11, 24))
    event = ledger_event(ledger, payment)

    entry = engine.handle(event)
    writes = len(crm.writes)
    engine.handle(ledger_event(ledger, payment))

    company = crm.records[(ObjectType.COMPANY, "5")].properties
    assert (company["open_balance"], company["overdue_amount"]) == ("600", "0")
    assert f"quickbooks:customer:{customer}" in entry.reason
    first, repeated = audit.history(CONNECTION, f"quickbooks:customer:{customer}", limit=2)[::-1]
    assert (first.outcome, first.target_key, first.event_id) == (
        Outcome.UPDATED,
        "hubspot:company:5",
        event.event_id,
    )
    assert repeated.outcome is Outcome.UNCHANGED
    assert len(crm.writes) == writes


def deleted(ledger: FakeLedger, payment: TargetChange) -> ChangeEvent:
    """Someone deletes the payment in the books; the change feed lists it as QuickBooks'
    CDC does, ``{"status": "Deleted", "Id"}``: neither its invoices nor its customer."""
    del ledger.payments[payment.target_id]
    tombstone = TargetChange(
        object_type=ObjectType.PAYMENT,
        target_id=payment.target_id,
        changed_at_ms=payment.changed_at_ms + 1_000,
        deleted=True,
    )
    ledger.feed.append(tombstone)
    return ledger_event(ledger, tombstone).model_copy(update={"kind": ChangeKind.DELETED})


def test_given_a_paid_deal_when_its_payment_is_deleted_naming_nothing_then_it_reopens(
    crm: FakeCrm, ledger: FakeLedger, engine: SyncEngine, audit: MemoryAuditLog
) -> None:
    engine.handle(crm_event(crm, ObjectType.DEAL, "9"))
    (customer,) = ledger.customers
    paid = ledger.pay({invoice_id(ledger): Decimal("1000")}, date(2026, 11, 24))
    engine.handle(ledger_event(ledger, paid))
    assert deal_props(crm)["invoice_status"] == "Paid"

    entry = engine.handle(deleted(ledger, paid))

    props = deal_props(crm)
    assert (props["invoice_status"], props["amount_paid"], props["balance_due"]) == (
        "Open",
        "0",
        "1000",
    )
    assert crm.records[(ObjectType.COMPANY, "5")].properties["open_balance"] == "1000"
    assert entry.outcome is Outcome.FORWARDED
    for reached in (f"quickbooks:invoice:{invoice_id(ledger)}", f"quickbooks:customer:{customer}"):
        assert reached in entry.reason
        assert audit.history(CONNECTION, reached)[0].outcome is Outcome.UPDATED


def test_given_a_payment_applied_to_another_invoice_then_the_one_it_left_is_written_too(
    crm: FakeCrm, ledger: FakeLedger, engine: SyncEngine
) -> None:
    """The payment's change names only the invoice it pays now; the one it left was paid
    by it, and in QuickBooks a payment changes no invoice (no webhook, no CDC entry)."""
    nine = crm.records[(ObjectType.DEAL, "9")]
    crm.put(nine.model_copy(update={"id": "10"}))
    engine.handle(crm_event(crm, ObjectType.DEAL, "9"))
    engine.handle(crm_event(crm, ObjectType.DEAL, "10"))
    first, second = ledger.invoices
    paid = ledger.pay({first: Decimal("1000")}, date(2026, 11, 24))
    engine.handle(ledger_event(ledger, paid))

    ledger.payments[paid.target_id].amounts = {second: Decimal("1000")}
    moved = paid.model_copy(
        update={"changed_at_ms": paid.changed_at_ms + 1_000, "invoice_ids": (second,)}
    )
    ledger.feed.append(moved)
    engine.handle(ledger_event(ledger, moved))

    assert deal_props(crm)["invoice_status"] == "Open"
    assert crm.records[(ObjectType.DEAL, "10")].properties["invoice_status"] == "Paid"
    assert crm.records[(ObjectType.COMPANY, "5")].properties["open_balance"] == "1000"


class Remembering(MemoryLinkStore):
    """Counts the writes of what accounting records reached."""

    def __init__(self) -> None:
        super().__init__()
        self.remembered: list[str] = []

    def remember_reach(self, connection_id: str, target_key: str, reached: Sequence[str]) -> None:
        self.remembered.append(target_key)
        super().remember_reach(connection_id, target_key, reached)


def test_given_a_payment_changed_again_then_what_it_reaches_is_written_down_once(
    crm: FakeCrm, ledger: FakeLedger, audit: MemoryAuditLog
) -> None:
    links = Remembering()
    engine = make_engine(crm, ledger, audit, links=links)
    engine.handle(crm_event(crm, ObjectType.DEAL, "9"))
    paid = ledger.pay({invoice_id(ledger): Decimal("400")}, date(2026, 11, 24))
    later = paid.model_copy(update={"changed_at_ms": paid.changed_at_ms + 1_000})

    engine.handle(ledger_event(ledger, paid))
    engine.handle(ledger_event(ledger, paid))
    ledger.feed.append(later)
    engine.handle(ledger_event(ledger, later))

    assert links.remembered == [f"quickbooks:payment:{paid.target_id}"]


def test_given_a_voided_invoice_then_its_customers_open_balance_drops(
    crm: FakeCrm, ledger: FakeLedger, engine: SyncEngine
) -> None:
    engine.handle(crm_event(crm, ObjectType.DEAL, "9"))
    engine.handle(
        ledger_event(ledger, ledger.pay({invoice_id(ledger): Decimal("1")}, TODAY.date()))
    )
    ledger.voided.add(invoice_id(ledger))

    entry = engine.handle(
        ledger_event(ledger, ledger.touch(ObjectType.INVOICE, invoice_id(ledger)))
    )

    assert deal_props(crm)["invoice_status"] == "Voided"
    assert entry.outcome is Outcome.UPDATED
    assert crm.records[(ObjectType.COMPANY, "5")].properties["open_balance"] == "0"


def test_given_back_fields_on_the_company_only_then_a_payment_still_reaches_it(
    crm: FakeCrm, ledger: FakeLedger, audit: MemoryAuditLog
) -> None:
    deal_back = MAPPING.index("    back:\n      invoice_status:")
    one_way_deal = MAPPING[:deal_back].replace(", direction: both, conflict: hold", "")
    engine = make_engine(crm, ledger, audit, one_way_deal)
    engine.handle(crm_event(crm, ObjectType.DEAL, "9"))
    payment = ledger.pay({invoice_id(ledger): Decimal("250")}, date(2026, 11, 24))

    entry = engine.handle(ledger_event(ledger, payment))

    assert entry.outcome is Outcome.FORWARDED
    assert crm.writes[-1] == {"open_balance": "750", "overdue_amount": "0"}
    assert "invoice_status" not in deal_props(crm)


class Racing(MemoryLinkStore):
    """Once ``armed``: another invocation saves the company's back state just before
    ours, and its write of an older picture reaches the CRM after ours."""

    def __init__(self, crm: FakeCrm) -> None:
        super().__init__()
        self.crm = crm
        self.armed = False

    def save_back_state(self, state: BackState) -> None:
        if self.armed and state.source_key == "hubspot:company:5":
            self.armed = False
            super().save_back_state(state)
            self.crm.edit(self.crm.records[(ObjectType.COMPANY, "5")], {"open_balance": "1000"})
        super().save_back_state(state)


def test_given_two_writes_of_one_company_at_once_then_the_later_one_writes_it_again(
    crm: FakeCrm, ledger: FakeLedger, audit: MemoryAuditLog
) -> None:
    links = Racing(crm)
    engine = make_engine(crm, ledger, audit, links=links)
    engine.handle(crm_event(crm, ObjectType.DEAL, "9"))
    payment = ledger.pay({invoice_id(ledger): Decimal("400")}, date(2026, 11, 24))
    links.armed = True

    entry = engine.handle(ledger_event(ledger, payment))

    assert entry.outcome is Outcome.FORWARDED
    company = crm.records[(ObjectType.COMPANY, "5")].properties
    assert (company["open_balance"], company["overdue_amount"]) == ("600", "0")
    assert crm.writes[-2:] == [{"open_balance": "600"}] * 2  # the same write, once more


def test_given_an_unchanged_standing_when_the_invoice_changes_then_nothing_is_written(
    crm: FakeCrm, ledger: FakeLedger, engine: SyncEngine
) -> None:
    engine.handle(crm_event(crm, ObjectType.DEAL, "9"))
    writes = len(crm.writes)

    entry = engine.handle(
        ledger_event(ledger, ledger.touch(ObjectType.INVOICE, invoice_id(ledger)))
    )

    assert len(crm.writes) == writes
    assert entry.outcome is Outcome.UNCHANGED
    assert "invoice_status, amount_paid, balance_due, due_date" in entry.reason


def test_given_a_customer_change_then_its_financial_picture_reaches_the_company(
    crm: FakeCrm, ledger: FakeLedger, engine: SyncEngine
) -> None:
    engine.handle(crm_event(crm, ObjectType.DEAL, "9"))
    (customer,) = ledger.customers
    ledger.edit(ObjectType.INVOICE, invoice_id(ledger), due_date=date(2026, 11, 1))
    change = ledger.touch(ObjectType.CUSTOMER, customer)

    entry = engine.handle(ledger_event(ledger, change))

    company = crm.records[(ObjectType.COMPANY, "5")].properties
    assert (company["open_balance"], company["overdue_amount"]) == ("1000", "1000")
    assert entry.outcome is Outcome.UPDATED
    assert entry.target_key == "hubspot:company:5"


def test_given_back_fields_then_the_crm_properties_are_made_once_per_connection(
    crm: FakeCrm, ledger: FakeLedger, engine: SyncEngine
) -> None:
    made: list[ObjectType] = []
    ensure = crm.ensure_properties

    def counting(object_type: ObjectType, properties: object) -> list[str]:
        made.append(object_type)
        return ensure(object_type, properties)  # type: ignore[arg-type]

    crm.ensure_properties = counting  # type: ignore[method-assign]
    engine.handle(crm_event(crm, ObjectType.DEAL, "9"))
    for _ in range(2):
        engine.handle(ledger_event(ledger, ledger.touch(ObjectType.INVOICE, invoice_id(ledger))))

    assert made == [ObjectType.DEAL, ObjectType.COMPANY]
    status = crm.properties[ObjectType.DEAL]["invoice_status"]
    assert (status.kind, status.options) == (
        "enumeration",
        ("Paid", "Partly paid", "Overdue", "Open", "Voided"),
    )


def test_given_both_sides_moved_under_hold_then_the_conflict_is_audited_not_written(
    crm: FakeCrm, ledger: FakeLedger, engine: SyncEngine
) -> None:
    engine.handle(crm_event(crm, ObjectType.DEAL, "9"))
    crm.edit(crm.records[(ObjectType.DEAL, "9")], {"due_date": "2026-12-24"})
    change = ledger.edit(ObjectType.INVOICE, invoice_id(ledger), due_date=date(2026, 12, 31))

    held = engine.handle(ledger_event(ledger, change))
    engine.handle(crm_event(crm, ObjectType.DEAL, "9"))

    assert held.outcome is Outcome.SKIPPED
    assert "due_date (CRM '2026-12-24', accounting '2026-12-31')" in held.reason
    assert deal_props(crm)["due_date"] == "2026-12-24"
    invoice = ledger.invoices[invoice_id(ledger)].body
    assert isinstance(invoice, Invoice)
    assert invoice.due_date == date(2026, 12, 31)


def test_given_a_due_date_moved_in_accounting_then_the_crm_takes_it_and_the_echo_stops(
    crm: FakeCrm, ledger: FakeLedger, engine: SyncEngine
) -> None:
    engine.handle(crm_event(crm, ObjectType.DEAL, "9"))
    change = ledger.edit(ObjectType.INVOICE, invoice_id(ledger), due_date=date(2027, 1, 15))
    version = ledger.invoices[invoice_id(ledger)].sync_token

    back = engine.handle(ledger_event(ledger, change))
    echo = engine.handle(crm_event(crm, ObjectType.DEAL, "9"))

    assert back.outcome is Outcome.UPDATED
    assert crm.writes[-1] == {"due_date": "2027-01-15"}
    assert (echo.outcome, echo.reason) == (Outcome.SKIPPED, ECHO_OF_WRITE_BACK)
    assert ledger.invoices[invoice_id(ledger)].sync_token == version


def test_given_a_back_write_when_its_echo_comes_then_nothing_is_written_forward(
    crm: FakeCrm, ledger: FakeLedger, engine: SyncEngine
) -> None:
    engine.handle(crm_event(crm, ObjectType.DEAL, "9"))
    version = ledger.invoices[invoice_id(ledger)].sync_token

    echo = engine.handle(crm_event(crm, ObjectType.DEAL, "9"))

    assert (echo.outcome, echo.reason) == (Outcome.SKIPPED, ECHO_OF_WRITE_BACK)
    assert ledger.invoices[invoice_id(ledger)].sync_token == version


def test_given_no_back_section_then_accounting_changes_are_only_noted(
    crm: FakeCrm, ledger: FakeLedger, audit: MemoryAuditLog
) -> None:
    engine = make_engine(crm, ledger, audit, ONE_WAY)
    change = TargetChange(object_type=ObjectType.INVOICE, target_id="77", changed_at_ms=T0)

    entry = engine.handle(ledger_event(ledger, change))

    assert entry.outcome is Outcome.SKIPPED
    assert entry.reason == "no two-way fields configured for quickbooks invoice"
    assert crm.writes == []
