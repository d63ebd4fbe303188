"""The Xero sandbox's credit notes: raised, allocated to invoices and refunded, over
real HTTP."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import httpx

from local.sandboxes.xero_org import INVOICE, LOCKED
from local.sandboxes.xero_payments import (
    EXCEEDS_DUE,
    NOT_ALLOCATABLE,
    NOT_AUTHORISED,
    OTHER_CONTACT,
    OTHER_CURRENCY,
    OVER_ALLOCATED,
    PAID_OFF,
    TWO_DOCUMENTS,
    WRONG_INVOICE_TYPE,
)
from tests.fakes import OffsetClock
from tests.unit.sandboxes.test_xero_payments import BANK, approved, invoice, ms_day, pay, webhooks
from tests.unit.sandboxes.test_xero_sandbox import (
    Harness,
    contact_id,
    errors_of,
    line,
    start_harness,
    stop_harness,
)


def raise_note(
    xero: Harness, amount: Any = 100, *, contact: str = "ABC Furniture", **fields: Any
) -> Any:
    """PUT /CreditNotes: an AUTHORISED, untaxed sales credit note for the contact."""
    body = {
        "Type": "ACCRECCREDIT",
        "Contact": {"ContactID": contact_id(xero, contact)},
        "Status": "AUTHORISED",
        "LineAmountTypes": "NoTax",
        "LineItems": [line(Quantity=1, UnitAmount=amount)],
        **fields,
    }
    return xero.put("CreditNotes", body)


def note_id(response: httpx.Response) -> str:
    return str(response.json()["CreditNotes"][0]["CreditNoteID"])


def allocate(xero: Harness, credit_note: str, invoice_id: str, amount: Any, **fields: Any) -> Any:
    allocation = {"Invoice": {"InvoiceID": invoice_id}, "Amount": amount, **fields}
    return xero.api(
        "PUT", f"CreditNotes/{credit_note}/Allocations", body={"Allocations": [allocation]}
    )


def refund(xero: Harness, credit_note: str, amount: Any, **fields: Any) -> Any:
    body = {"CreditNote": {"CreditNoteID": credit_note}, "Account": BANK, "Amount": amount}
    return xero.api("PUT", "Payments", body={**body, **fields})


def note(xero: Harness, credit_note: str) -> dict[str, Any]:
    return xero.one(xero.api("GET", f"CreditNotes/{credit_note}"), "CreditNotes")


def test_a_credit_note_is_priced_numbered_and_listed_as_invoices_are(xero: Harness) -> None:
    taxed = {
        "Type": "ACCRECCREDIT",
        "Contact": {"ContactID": contact_id(xero, "ABC Furniture")},
        "Date": "2026-03-02",
        "LineItems": [line(Quantity=2, UnitAmount=12.5, TaxType="OUTPUT")],
    }

    draft = xero.one(xero.put("CreditNotes", taxed), "CreditNotes")
    approved_ = xero.one(raise_note(xero, 30), "CreditNotes")
    listed = xero.api("GET", "CreditNotes").json()["CreditNotes"]
    paged = xero.api("GET", "CreditNotes", params={"page": "1"}).json()["CreditNotes"]

    # Exclusive by default: 10% tax on top of the 25.00 line, as on an invoice.
    assert (draft["SubTotal"], draft["TotalTax"], draft["Total"]) == (25, 2.5, 27.5)
    assert (draft["Status"], draft["RemainingCredit"]) == ("DRAFT", 27.5)
    assert (draft["CreditNoteNumber"], approved_["CreditNoteNumber"]) == ("CN-0001", "CN-0002")
    assert ms_day(draft["Date"]) == date(2026, 3, 2)
    assert draft["ID"] == draft["CreditNoteID"]
    assert (draft["Allocations"], draft["Payments"]) == ([], [])
    assert approved_["Status"] == "AUTHORISED"
    assert all("LineItems" not in row for row in listed)
    assert [len(row["LineItems"]) for row in paged] == [1, 1]


def test_what_xero_refuses_to_raise(xero: Harness) -> None:
    contact = {"ContactID": contact_id(xero, "ABC Furniture")}
    lines = [line(Quantity=1, UnitAmount=5)]

    as_invoice = xero.put("CreditNotes", {"Type": "ACCREC", "Contact": contact, "LineItems": lines})
    unknown = xero.post(
        "CreditNotes",
        {"CreditNoteID": "5f0c0c6e-0b1a-4c2d-8e3f-00000000dead", "Reference": "x"},
    )
    paid_status = xero.put(
        "CreditNotes",
        {"Type": "ACCRECCREDIT", "Contact": contact, "LineItems": lines, "Status": "PAID"},
    )

    # ACCREC is an InvoiceType, no CreditNoteType: the body cannot be read at all.
    assert (as_invoice.status_code, as_invoice.json()["ErrorNumber"]) == (400, 14)
    assert errors_of(unknown) == [
        "An existing Credit Note with the specified CreditNoteID could not be found"
    ]
    assert errors_of(paid_status) == ["Credit Note not of valid status for creation"]
    assert xero.sandbox.entities("CreditNotes") == []


def test_an_allocation_credits_the_invoice_until_both_are_paid(xero: Harness) -> None:
    invoice_id = approved(xero)
    credit_note = note_id(raise_note(xero, 100))

    first = allocate(xero, credit_note, invoice_id, 30, Date="2026-03-02")
    part, part_note = invoice(xero, invoice_id), note(xero, credit_note)
    void = errors_of(xero.post(f"Invoices/{invoice_id}", {"Status": "VOIDED"}))
    allocate(xero, credit_note, invoice_id, 70)
    whole, whole_note = invoice(xero, invoice_id), note(xero, credit_note)

    allocation = xero.one(first, "Allocations")
    assert allocation["Amount"] == 30 and ms_day(allocation["Date"]) == date(2026, 3, 2)
    assert allocation["Invoice"]["InvoiceID"] == invoice_id
    assert allocation["CreditNote"]["CreditNoteID"] == credit_note
    assert (part["Status"], part["AmountCredited"], part["AmountPaid"], part["AmountDue"]) == (
        "AUTHORISED",
        30,
        0,
        70,
    )
    assert [(c["CreditNoteID"], c["AppliedAmount"]) for c in part["CreditNotes"]] == [
        (credit_note, 30)
    ]
    assert void == [INVOICE.void_refused]  # a credited invoice cannot be voided
    assert (part_note["Status"], part_note["RemainingCredit"]) == ("AUTHORISED", 70)
    assert [a["Amount"] for a in part_note["Allocations"]] == [30]
    assert (whole["Status"], whole["AmountDue"], whole["Payments"]) == ("PAID", 0, [])
    # Undated, the second went on today in the organisation's time zone.
    assert ms_day(whole["FullyPaidOnDate"]) == xero.sandbox.org.today()
    assert (whole_note["Status"], whole_note["RemainingCredit"]) == ("PAID", 0)
    assert ms_day(whole_note["FullyPaidOnDate"]) == xero.sandbox.org.today()


def test_what_xero_refuses_to_allocate_changes_nothing(xero: Harness) -> None:
    invoice_id = approved(xero)
    settled = approved(xero, 5)
    pay(xero, settled, 5)
    others = approved(xero, Contact={"ContactID": contact_id(xero, "Bayside Club")})
    bill = approved(xero, Type="ACCPAY")
    xero.put("Currencies", {"Code": "EUR"})
    in_euros = approved(xero, CurrencyCode="EUR", CurrencyRate=2)
    credit_note = note_id(raise_note(xero, 50))
    draft = note_id(raise_note(xero, 50, Status="DRAFT"))

    refusals = {
        "draft": errors_of(allocate(xero, draft, invoice_id, 10)),
        "paid": errors_of(allocate(xero, credit_note, settled, 1)),
        "over credit": errors_of(allocate(xero, credit_note, invoice_id, 50.01)),
        "other contact": errors_of(allocate(xero, credit_note, others, 10)),
        "bill": errors_of(allocate(xero, credit_note, bill, 10)),
        "other currency": errors_of(allocate(xero, credit_note, in_euros, 10)),
        "zero": errors_of(allocate(xero, credit_note, invoice_id, 0)),
    }
    unknown = allocate(xero, "5f0c0c6e-0b1a-4c2d-8e3f-00000000dead", invoice_id, 10)
    read = xero.api("GET", f"CreditNotes/{credit_note}/Allocations")

    assert refusals == {
        "draft": [NOT_ALLOCATABLE],
        # Both at once for a paid invoice, as integrators quote Xero's answer.
        "paid": [PAID_OFF, OVER_ALLOCATED],
        "over credit": [OVER_ALLOCATED],
        "other contact": [OTHER_CONTACT],
        "bill": [WRONG_INVOICE_TYPE],
        "other currency": [OTHER_CURRENCY],
        "zero": ["Allocation amount must be greater than zero."],
    }
    assert unknown.status_code == 404
    assert read.status_code == 501
    assert (note(xero, credit_note)["RemainingCredit"], note(xero, credit_note)["Allocations"]) == (
        50,
        [],
    )
    assert invoice(xero, invoice_id)["AmountDue"] == 100


def test_a_refund_pays_out_the_credit_note_and_names_it_as_its_invoice(xero: Harness) -> None:
    credit_note = note_id(raise_note(xero, 50))

    part = xero.one(refund(xero, credit_note, 20, Date="2026-03-02", Reference="Cash"), "Payments")
    part_note = note(xero, credit_note)
    xero.one(refund(xero, credit_note, 30), "Payments")
    whole_note = note(xero, credit_note)
    listed = xero.api("GET", "Payments", params={"where": 'PaymentType=="ARCREDITPAYMENT"'})

    assert (part["PaymentType"], part["Status"], part["Amount"]) == (
        "ARCREDITPAYMENT",
        "AUTHORISED",
        20,
    )
    assert part["Invoice"]["Type"] == "ACCRECCREDIT"
    assert (part["Invoice"]["InvoiceID"], part["Invoice"]["InvoiceNumber"]) == (
        credit_note,
        "CN-0001",
    )
    assert part["Invoice"]["Contact"]["ContactID"] == contact_id(xero, "ABC Furniture")
    assert (part_note["Status"], part_note["RemainingCredit"]) == ("AUTHORISED", 30)
    assert [(p["PaymentID"], p["Amount"]) for p in part_note["Payments"]] == [
        (part["PaymentID"], 20)
    ]
    assert ms_day(part_note["Payments"][0]["Date"]) == date(2026, 3, 2)
    assert (whole_note["Status"], whole_note["RemainingCredit"]) == ("PAID", 0)
    assert len(listed.json()["Payments"]) == 2


def test_what_xero_refuses_to_refund_and_a_refund_deleted(xero: Harness) -> None:
    invoice_id = approved(xero)
    credit_note = note_id(raise_note(xero, 50))
    draft = note_id(raise_note(xero, 50, Status="DRAFT"))
    refund_id = xero.one(refund(xero, credit_note, 50), "Payments")["PaymentID"]

    refusals = {
        "draft": errors_of(refund(xero, draft, 10)),
        "paid out": errors_of(refund(xero, credit_note, 1)),
        "both": errors_of(refund(xero, draft, 10, Invoice={"InvoiceID": invoice_id})),
        "unknown": errors_of(refund(xero, "5f0c0c6e-0b1a-4c2d-8e3f-00000000dead", 10)),
    }
    edited = errors_of(
        xero.post(f"CreditNotes/{credit_note}", {"Reference": "x", "Date": "2026-01-01"})
    )
    deleted = xero.one(xero.post(f"Payments/{refund_id}", {"Status": "DELETED"}), "Payments")
    reopened = note(xero, credit_note)

    assert refusals == {
        "draft": [NOT_AUTHORISED],
        "paid out": [NOT_AUTHORISED, EXCEEDS_DUE],
        "both": [TWO_DOCUMENTS, NOT_AUTHORISED],
        "unknown": ["Credit Note could not be found."],
    }
    assert edited == [LOCKED]
    assert deleted["Status"] == "DELETED"
    assert (reopened["Status"], reopened["RemainingCredit"], reopened["Payments"]) == (
        "AUTHORISED",
        50,
        [],
    )
    assert "FullyPaidOnDate" not in reopened


def test_credit_notes_list_by_contact_and_since_a_time(xero: Harness) -> None:
    abc = contact_id(xero, "ABC Furniture")
    raise_note(xero, 10, contact="Bayside Club")
    xero.clock.advance(60)
    since = datetime.fromtimestamp(xero.clock(), UTC).strftime("%Y-%m-%dT%H:%M:%S")
    mine = note_id(raise_note(xero, 20))

    def ids(**query: str) -> list[str]:
        headers = xero.headers(**({"If-Modified-Since": since} if "since" in query else {}))
        params = {k: v for k, v in query.items() if k != "since"}
        rows = xero.api("GET", "CreditNotes", params=params, headers=headers).json()["CreditNotes"]
        return [row["CreditNoteID"] for row in rows]

    where = f'Type=="ACCRECCREDIT" AND Contact.ContactID==Guid("{abc}")'
    assert ids(where=where) == [mine]
    assert ids(since="yes") == [mine]


def test_credit_note_events_carry_their_type_and_status(xero: Harness) -> None:
    invoice_id = approved(xero)
    with webhooks(xero) as recv:
        credit_note = note_id(raise_note(xero, 50))
        allocate(xero, credit_note, invoice_id, 20)
        refund(xero, credit_note, 30)

    deliveries = [json.loads(body)["events"] for body, _ in recv.received]
    assert [
        [(e["eventCategory"], e["eventType"], e["resourceId"], e.get("data")) for e in events]
        for events in deliveries
    ] == [
        [("CREDITNOTE", "CREATE", credit_note, {"Type": "ACCRECCREDIT", "Status": "AUTHORISED"})],
        # An allocation moves the credit note and its invoice.
        [
            ("CREDITNOTE", "UPDATE", credit_note, {"Type": "ACCRECCREDIT", "Status": "AUTHORISED"}),
            ("INVOICE", "UPDATE", invoice_id, None),
        ],
        # A refund moves the credit note only: a payment has no event of its own.
        [("CREDITNOTE", "UPDATE", credit_note, {"Type": "ACCRECCREDIT", "Status": "PAID"})],
    ]


def test_only_the_categories_subscribed_to_are_sent() -> None:
    harness = start_harness(OffsetClock(), webhook_categories=("INVOICE",))
    try:
        invoice_id = approved(harness)
        with webhooks(harness) as recv:
            allocate(harness, note_id(raise_note(harness, 50)), invoice_id, 20)
    finally:
        stop_harness(harness)

    events = [e for body, _ in recv.received for e in json.loads(body)["events"]]
    assert [(e["eventCategory"], e["resourceId"]) for e in events] == [("INVOICE", invoice_id)]
