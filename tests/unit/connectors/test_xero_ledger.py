"""The Xero ledger against the sandbox: its change feed pages (pages shrunk to 2 rows)
and names deletions, refunds and credit notes; a customer's totals and refunds come in
the organisation's base currency; approved sales invoices falling due are read over
every page."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from local.sandboxes.base import SandboxServer
from local.sandboxes.xero import XeroBooks, XeroSandbox, XeroSandboxConfig
from shared.connectors.xero import ledger
from shared.models import ObjectType
from shared.ports import AccountingLedger
from tests.contracts.kits.base import SandboxConnection
from tests.fakes import OffsetClock

TODAY = date.today()


@pytest.fixture
def organisation() -> Iterator[tuple[XeroSandbox, str, OffsetClock]]:
    clock = OffsetClock()
    sandbox = XeroSandbox(XeroSandboxConfig(clock=clock, rate_per_minute=10_000))
    server = SandboxServer(sandbox.app, 0).start()
    yield sandbox, server.url, clock
    server.stop()
    sandbox.close()


def ledger_of(sandbox: XeroSandbox, url: str) -> AccountingLedger:
    target = SandboxConnection("xero", sandbox, url).accounting_target()
    assert isinstance(target, AccountingLedger)
    return target


# Xero's Type of a sales document, by its kind.
SALES_TYPE = {"Invoice": "ACCREC", "CreditNote": "ACCRECCREDIT"}


def approved(
    sandbox: XeroSandbox, contact_id: str, amount: int, kind: str = "Invoice", **fields: object
) -> str:
    """An approved, untaxed sales document of one line, an invoice unless ``kind`` is
    "CreditNote" (a bill with Type ACCPAY): its id."""
    document = sandbox.ui_create(
        f"{kind}s",
        {
            "Type": SALES_TYPE[kind],
            "Contact": {"ContactID": contact_id},
            "Status": "AUTHORISED",
            "LineAmountTypes": "NoTax",
            "LineItems": [{"Description": "Work", "UnitAmount": amount, "AccountCode": "200"}],
            **fields,
        },
    )
    return str(document[f"{kind}ID"])


def test_the_feed_pages_and_names_deleted_payments_and_archived_contacts(
    organisation: tuple[XeroSandbox, str, OffsetClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox, url, clock = organisation
    monkeypatch.setattr(ledger, "PAGE_SIZE", 2)
    books = XeroBooks(sandbox, url)
    since_ms = int(clock() * 1000)
    clock.advance(5)
    contact = str(sandbox.ui_create("Contacts", {"Name": "Paged Ltd"})["ContactID"])
    invoice_id = approved(sandbox, contact, 100)
    payments = []
    for _ in range(3):
        clock.advance(5)
        payments.append(books.record_payment(invoice_id, Decimal(10), received_on=TODAY))
    clock.advance(5)
    books.api().post(f"Payments/{payments[0]}", json={"Status": "DELETED"}).raise_for_status()
    sandbox.ui_update("Contacts", contact, {"ContactStatus": "ARCHIVED"})

    changes = list(
        ledger_of(sandbox, url).changed_since([ObjectType.CUSTOMER, ObjectType.PAYMENT], since_ms)
    )

    paid = [
        (c.target_id, c.deleted, c.invoice_ids, c.customer_id)
        for c in changes
        if c.object_type is ObjectType.PAYMENT
    ]
    # Three payments over two pages; the deleted one changed last.
    assert paid == [
        (payments[1], False, (invoice_id,), contact),
        (payments[2], False, (invoice_id,), contact),
        (payments[0], True, (invoice_id,), contact),
    ]
    customers = [c for c in changes if c.object_type is ObjectType.CUSTOMER]
    assert [(c.target_id, c.deleted) for c in customers] == [(contact, True)]
    assert [c.changed_at_ms for c in changes] == sorted(c.changed_at_ms for c in changes)


def test_a_customer_stands_in_the_base_currency(
    organisation: tuple[XeroSandbox, str, OffsetClock],
) -> None:
    sandbox, url, _ = organisation
    sandbox.ui_create("Currencies", {"Code": "EUR"})
    contact = str(sandbox.ui_create("Contacts", {"Name": "Euro GmbH"})["ContactID"])
    late = (TODAY - timedelta(days=5)).isoformat()
    approved(sandbox, contact, 100, CurrencyCode="EUR", CurrencyRate=2, DueDate=late)
    local = approved(sandbox, contact, 30)
    sandbox.ui_pay_invoice(local, Decimal(30), on=TODAY - timedelta(days=1))

    standing = ledger_of(sandbox, url).customer_standing(contact, today=TODAY)

    assert standing is not None
    assert standing.currency == "USD"
    # 100 EUR at 2 EUR to the dollar is 50 USD, all of it owed and overdue.
    assert (standing.open_balance, standing.overdue_amount) == (Decimal(50), Decimal(50))
    assert (standing.invoiced_to_date, standing.paid_to_date) == (Decimal(80), Decimal(30))
    assert standing.last_payment_date == TODAY - timedelta(days=1)


def credit_note(sandbox: XeroSandbox, contact_id: str, amount: int, **fields: object) -> str:
    """An approved, untaxed sales credit note (a bill's with Type ACCPAYCREDIT): its id."""
    return approved(sandbox, contact_id, amount, "CreditNote", **fields)


def refund(books: XeroBooks, note_id: str, amount: int, on: date) -> str:
    response = books.api().put(
        "Payments",
        json={
            "CreditNote": {"CreditNoteID": note_id},
            "Account": {"Code": "090"},
            "Date": on.isoformat(),
            "Amount": amount,
        },
    )
    response.raise_for_status()
    return str(response.json()["Payments"][0]["PaymentID"])


def test_refunds_stand_in_the_base_currency_and_only_live_sales_ones_count(
    organisation: tuple[XeroSandbox, str, OffsetClock],
) -> None:
    sandbox, url, _ = organisation
    books = XeroBooks(sandbox, url)
    sandbox.ui_create("Currencies", {"Code": "EUR"})
    contact = str(sandbox.ui_create("Contacts", {"Name": "Refunded Ltd"})["ContactID"])
    euro = credit_note(sandbox, contact, 100, CurrencyCode="EUR", CurrencyRate=2)
    refund(books, euro, 40, TODAY - timedelta(days=4))
    local = credit_note(sandbox, contact, 10)
    refund(books, local, 5, TODAY - timedelta(days=3))
    undone = refund(books, local, 5, TODAY - timedelta(days=1))
    books.api().post(f"Payments/{undone}", json={"Status": "DELETED"}).raise_for_status()
    # A credit from the contact as a supplier, paid back to us: no refund to a customer.
    bill_credit = credit_note(
        sandbox,
        contact,
        7,
        Type="ACCPAYCREDIT",
        LineItems=[{"Description": "Returned", "UnitAmount": 7, "AccountCode": "429"}],
    )
    refund(books, bill_credit, 7, TODAY)

    standing = ledger_of(sandbox, url).customer_standing(contact, today=TODAY)

    assert standing is not None
    # 40 EUR at 2 EUR to the dollar, and 5 USD; the deleted refund and the bill's left out.
    assert standing.refunded_to_date == Decimal(25)
    assert standing.last_refund_date == TODAY - timedelta(days=3)


def test_the_feed_names_a_refund_and_its_deletion_by_customer_alone(
    organisation: tuple[XeroSandbox, str, OffsetClock],
) -> None:
    sandbox, url, clock = organisation
    books = XeroBooks(sandbox, url)
    since_ms = int(clock() * 1000)
    clock.advance(5)
    contact = str(sandbox.ui_create("Contacts", {"Name": "Feed Refunds"})["ContactID"])
    note_id = credit_note(sandbox, contact, 20)
    kept = refund(books, note_id, 5, TODAY)
    clock.advance(5)
    undone = refund(books, note_id, 5, TODAY)
    clock.advance(5)
    books.api().post(f"Payments/{undone}", json={"Status": "DELETED"}).raise_for_status()

    changes = list(ledger_of(sandbox, url).changed_since([ObjectType.PAYMENT], since_ms))

    named = [(c.target_id, c.deleted, c.invoice_ids, c.customer_id) for c in changes]
    # The refunds, and the credit note they paid out (it changed with each of them).
    assert [n for n in named if n[0] != f"CreditNote-{note_id}"] == [
        (kept, False, (), contact),
        (undone, True, (), contact),
    ]
    assert (f"CreditNote-{note_id}", False, (), contact) in named


def allocate(books: XeroBooks, note_id: str, invoice_id: str, amount: int) -> None:
    allocation = {"Invoice": {"InvoiceID": invoice_id}, "Amount": amount}
    books.api().put(
        f"CreditNotes/{note_id}/Allocations", json={"Allocations": [allocation]}
    ).raise_for_status()


def test_the_feed_names_sales_credit_notes_by_the_invoices_they_credit_and_customer(
    organisation: tuple[XeroSandbox, str, OffsetClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox, url, clock = organisation
    monkeypatch.setattr(ledger, "PAGE_SIZE", 2)
    books = XeroBooks(sandbox, url)
    since_ms = int(clock() * 1000)
    clock.advance(5)
    contact = str(sandbox.ui_create("Contacts", {"Name": "Credited Ltd"})["ContactID"])
    first, second = approved(sandbox, contact, 100), approved(sandbox, contact, 100)
    clock.advance(5)
    voided = credit_note(sandbox, contact, 10)
    sandbox.ui_update("CreditNotes", voided, {"Status": "VOIDED"})
    clock.advance(5)
    unused = credit_note(sandbox, contact, 10)
    clock.advance(5)
    bill_credit = credit_note(
        sandbox,
        contact,
        7,
        Type="ACCPAYCREDIT",
        LineItems=[{"Description": "Returned", "UnitAmount": 7, "AccountCode": "429"}],
    )
    clock.advance(5)
    allocated = credit_note(sandbox, contact, 50)
    for invoice_id, amount in ((second, 10), (first, 20), (second, 5)):
        allocate(books, allocated, invoice_id, amount)

    changes = list(ledger_of(sandbox, url).changed_since([ObjectType.PAYMENT], since_ms))

    # Three sales credit notes over two pages, each a PAYMENT named apart; the bill's
    # credit note left out.
    assert [
        (c.object_type, c.target_id, c.deleted, c.invoice_ids, c.customer_id) for c in changes
    ] == [
        (ObjectType.PAYMENT, f"CreditNote-{voided}", True, (), contact),
        (ObjectType.PAYMENT, f"CreditNote-{unused}", False, (), contact),
        (ObjectType.PAYMENT, f"CreditNote-{allocated}", False, (second, first), contact),
    ]
    assert f"CreditNote-{bill_credit}" not in {c.target_id for c in changes}


def test_approved_sales_invoices_falling_due_are_read_over_every_page(
    organisation: tuple[XeroSandbox, str, OffsetClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox, url, _ = organisation
    monkeypatch.setattr(ledger, "PAGE_SIZE", 2)
    contact = str(sandbox.ui_create("Contacts", {"Name": "Due Soon Ltd"})["ContactID"])
    due = {day: approved(sandbox, contact, 10, DueDate=f"2031-03-{day:02d}") for day in (31, 5, 17)}
    approved(sandbox, contact, 10, DueDate="2031-03-10", Status="DRAFT")  # not yet owed
    approved(sandbox, contact, 10, DueDate="2031-03-10", Type="ACCPAY")  # a bill
    approved(sandbox, contact, 10, DueDate="2031-04-01")  # the window's end, excluded

    changes = list(ledger_of(sandbox, url).falling_due(date(2031, 3, 1), date(2031, 4, 1)))

    assert [(c.target_id, c.customer_id) for c in changes] == [
        (due[day], contact) for day in (5, 17, 31)
    ]
    assert changes[0].changed_at_ms == int(datetime(2031, 3, 5, tzinfo=UTC).timestamp()) * 1000
