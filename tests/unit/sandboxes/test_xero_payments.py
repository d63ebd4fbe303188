"""The Xero sandbox's payments and contact balances, over real HTTP (credit notes:
test_xero_credit_notes.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

from local.sandboxes.base import SandboxServer
from local.sandboxes.xero_payments import EXCEEDS_DUE, NOT_AUTHORISED
from tests.unit.sandboxes.test_xero_sandbox import (
    Harness,
    Receiver,
    contact_id,
    errors_of,
    invoice_body,
    line,
    ms_datetime,
)

BANK = {"Code": "090"}  # the seeded Business Bank Account


def approved(xero: Harness, amount: int = 100, *, due: date | None = None, **fields: Any) -> str:
    """An AUTHORISED, untaxed invoice for ABC Furniture: its id."""
    body = invoice_body(
        contact_id(xero, "ABC Furniture"),
        line(Quantity=1, UnitAmount=amount),
        **{
            "Status": "AUTHORISED",
            "LineAmountTypes": "NoTax",
            "DueDate": (due or date.today() + timedelta(days=30)).isoformat(),
            **fields,
        },
    )
    return str(xero.one(xero.put("Invoices", body), "Invoices")["InvoiceID"])


def pay(xero: Harness, invoice_id: str, amount: Any, **fields: Any) -> Any:
    return xero.api(
        "PUT",
        "Payments",
        body={"Invoice": {"InvoiceID": invoice_id}, "Account": BANK, "Amount": amount, **fields},
    )


def invoice(xero: Harness, invoice_id: str) -> dict[str, Any]:
    return xero.one(xero.api("GET", f"Invoices/{invoice_id}"), "Invoices")


def ms_day(value: str) -> date:
    return ms_datetime(value).date()


def test_a_part_then_a_full_payment_mark_the_invoice_paid_on_the_last_day(xero: Harness) -> None:
    invoice_id = approved(xero)

    first = xero.one(pay(xero, invoice_id, 40, Date="2026-03-02", Reference="Deposit"), "Payments")
    part = invoice(xero, invoice_id)
    # The documented single-object form, POSTed as xero-python's create_payment does.
    xero.one(
        xero.api(
            "POST",
            "Payments",
            body={"Invoice": {"InvoiceID": invoice_id}, "Account": BANK, "Amount": 60.0},
        ),
        "Payments",
    )
    paid = invoice(xero, invoice_id)

    assert (first["PaymentType"], first["Status"], first["Amount"]) == (
        "ACCRECPAYMENT",
        "AUTHORISED",
        40,
    )
    assert (first["Account"]["Code"], first["Invoice"]["InvoiceID"]) == ("090", invoice_id)
    assert first["Invoice"]["Contact"]["Name"] == "ABC Furniture"
    assert ms_day(first["Date"]) == date(2026, 3, 2)
    assert (part["Status"], part["AmountPaid"], part["AmountDue"]) == ("AUTHORISED", 40, 60)
    assert "FullyPaidOnDate" not in part
    assert (paid["Status"], paid["AmountPaid"], paid["AmountDue"]) == ("PAID", 100, 0)
    # The second payment went undated: today in the organisation's time zone.
    assert ms_day(paid["FullyPaidOnDate"]) == xero.sandbox.org.today()
    assert [p["Amount"] for p in paid["Payments"]] == [40, 60]


def test_what_xero_refuses_to_pay_changes_nothing(xero: Harness) -> None:
    invoice_id = approved(xero)
    draft = approved(xero, Status="DRAFT")
    settled = approved(xero, 5)
    xero.one(pay(xero, settled, 5), "Payments")

    refusals = {
        "draft": errors_of(pay(xero, draft, 10)),
        "paid": errors_of(pay(xero, settled, 1)),
        "over": errors_of(pay(xero, invoice_id, 100.01)),
        "zero": errors_of(pay(xero, invoice_id, 0)),
        "sales account": errors_of(pay(xero, invoice_id, 10, Account={"Code": "200"})),
        "unknown": errors_of(pay(xero, "5f0c0c6e-0b1a-4c2d-8e3f-00000000dead", 10)),
    }

    assert refusals["draft"] == [NOT_AUTHORISED]
    assert refusals["paid"] == [NOT_AUTHORISED, EXCEEDS_DUE]
    assert refusals["over"] == [EXCEEDS_DUE]
    assert refusals["zero"] == ["Payment amount must be greater than zero."]
    assert refusals["sales account"] == [
        "Account 200 is not a bank account and does not have payments enabled."
    ]
    assert refusals["unknown"] == ["Invoice could not be found."]
    assert invoice(xero, invoice_id)["AmountDue"] == 100
    assert len(xero.sandbox.entities("Payments")) == 1  # the settling one only


def test_an_account_with_payments_enabled_takes_payments(xero: Harness) -> None:
    invoice_id = approved(xero)
    xero.put(
        "Accounts",
        {"Code": "615", "Name": "Clearing", "Type": "CURRENT", "EnablePaymentsToAccount": True},
    )

    paid = xero.one(pay(xero, invoice_id, 100, Account={"Code": "615"}), "Payments")

    assert paid["Account"]["Name"] == "Clearing"
    assert invoice(xero, invoice_id)["Status"] == "PAID"


def test_a_payment_is_deleted_not_modified_and_then_the_invoice_can_be_voided(
    xero: Harness,
) -> None:
    invoice_id = approved(xero)
    payment_id = xero.one(pay(xero, invoice_id, 100), "Payments")["PaymentID"]
    path = f"Invoices/{invoice_id}"
    refused_void = errors_of(xero.post(path, {"Status": "VOIDED"}))

    changed = errors_of(xero.post(f"Payments/{payment_id}", {"Amount": 1}))
    deleted = xero.one(xero.post(f"Payments/{payment_id}", {"Status": "DELETED"}), "Payments")
    reopened = invoice(xero, invoice_id)
    voided = xero.one(xero.post(path, {"Status": "VOIDED"}), "Invoices")

    assert "VOIDED cannot be applied" in refused_void[0]
    assert changed == ["Payments cannot be modified, only created and deleted."]
    assert deleted["Status"] == "DELETED"
    assert (reopened["Status"], reopened["AmountDue"], reopened["Payments"]) == (
        "AUTHORISED",
        100,
        [],
    )
    assert "FullyPaidOnDate" not in reopened
    assert voided["Status"] == "VOIDED"


def test_balances_come_with_one_contact_or_a_page_and_leave_its_date_alone(
    xero: Harness,
) -> None:
    abc = contact_id(xero, "ABC Furniture")
    before = xero.one(xero.api("GET", f"Contacts/{abc}"), "Contacts")
    xero.clock.advance(5)
    late = approved(xero, 100, due=date.today() - timedelta(days=3))
    approved(xero, 50)
    pay(xero, late, 30)

    single = xero.one(xero.api("GET", f"Contacts/{abc}"), "Contacts")
    listed = xero.api("GET", "Contacts").json()["Contacts"]
    paged = xero.api("GET", "Contacts", params={"page": "1"}).json()["Contacts"]

    receivable = single["Balances"]["AccountsReceivable"]
    # The seeded INV-0001 (220.00, due in 10 days) is owed too; only the late one is overdue.
    assert (receivable["Outstanding"], receivable["Overdue"]) == (340, 70)
    assert single["Balances"]["AccountsPayable"] == {"Outstanding": 0, "Overdue": 0}
    assert all("Balances" not in c for c in listed)
    assert next(c for c in paged if c["ContactID"] == abc)["Balances"] == single["Balances"]
    assert single["UpdatedDateUTC"] == before["UpdatedDateUTC"]


def test_if_modified_since_lists_payments_and_their_invoices(xero: Harness) -> None:
    invoice_id = approved(xero)
    xero.clock.advance(60)
    since = datetime.fromtimestamp(xero.clock(), UTC).strftime("%Y-%m-%dT%H:%M:%S")
    payment_id = xero.one(pay(xero, invoice_id, 10), "Payments")["PaymentID"]

    def changed(kind: str, stamp: str) -> list[str]:
        key = "PaymentID" if kind == "Payments" else "InvoiceID"
        headers = xero.headers(**{"If-Modified-Since": stamp})
        rows = xero.api("GET", kind, headers=headers).json()[kind]
        return [row[key] for row in rows]

    later = datetime.fromtimestamp(xero.clock() + 60, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    assert changed("Payments", since) == [payment_id]
    assert changed("Invoices", since) == [invoice_id]
    assert changed("Payments", later) == []
    where = xero.api(
        "GET", "Payments", params={"where": f'Invoice.InvoiceID==Guid("{invoice_id}")'}
    )
    assert [p["PaymentID"] for p in where.json()["Payments"]] == [payment_id]


@contextmanager
def webhooks(xero: Harness) -> Iterator[Receiver]:
    """Inside, the sandbox's webhooks go to a receiver that has answered Xero's Intent to
    Receive; on leaving, every one has been delivered."""
    recv = Receiver(xero.config.webhook_key)
    server = SandboxServer(recv.app(), 0).start()
    try:
        xero.sandbox.webhook_url = f"{server.url}/hook"
        assert xero.sandbox.intent_to_receive().ok
        yield recv
        assert xero.sandbox.wait_for_webhooks_idle(10)
    finally:
        server.stop()


def test_a_payment_is_an_invoice_update_webhook(xero: Harness) -> None:
    invoice_id = approved(xero)
    with webhooks(xero) as recv:
        pay(xero, invoice_id, 100)

    events = [e for body, _ in recv.received for e in json.loads(body)["events"]]
    assert [(e["eventCategory"], e["eventType"], e["resourceId"]) for e in events] == [
        ("INVOICE", "UPDATE", invoice_id)
    ]
