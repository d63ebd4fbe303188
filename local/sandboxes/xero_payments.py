"""The money side of the Xero sandbox: payments against invoices, credit notes
allocated to invoices or refunded, and what they leave on invoices, credit notes and
contacts.

Built from Xero's pages on developer.xero.com:

* Payments (https://developer.xero.com/documentation/api/accounting/payments): ``PUT``
  applies "payments to approved AR and AP invoices or refund AR or AP credit notes",
  named by ``Invoice`` (``InvoiceID``/``InvoiceNumber``) or ``CreditNote``
  (``CreditNoteID``/``CreditNoteNumber``), from an ``Account`` (by ``AccountID`` or
  ``Code``) that "needs to be either an account of type BANK or have enable payments
  to this accounts switched on"; its ``Amount`` "must be less than or equal to the
  outstanding amount owing on the invoice". ``POST /Payments/{id}`` with ``Status:
  DELETED`` deletes (reverses) one: "Payments cannot be modified, only created and
  deleted". GET Payments takes ``If-Modified-Since``, ``where``, ``order``,
  ``page``/``pageSize``; the default order is "UpdatedDateUTC ASC, PaymentId ASC". A
  refund's ``PaymentType`` is ARCREDITPAYMENT (APCREDITPAYMENT for a bill's credit),
  and it names its credit note under ``Invoice`` (``Type`` ACCRECCREDIT, the credit
  note's id and number), as the OpenAPI spec's GET Payments example shows.
* Credit notes (https://developer.xero.com/documentation/api/accounting/creditnotes
  and the OpenAPI spec XeroAPI/Xero-OpenAPI ``xero_accounting.yaml``): ``RemainingCredit``
  is "the remaining credit balance on the Credit Note"; ``PUT
  /CreditNotes/{id}/Allocations`` allocates an ``Amount`` to an ``Invoice`` on a
  ``Date``; the credit note lists its ``Allocations`` and its refunds under
  ``Payments``, and is PAID with a ``FullyPaidOnDate`` once nothing remains.
* Invoices (https://developer.xero.com/documentation/api/accounting/invoices):
  ``AmountPaid`` is the "sum of payments received", ``AmountCredited`` the "sum of all
  credit notes, over-payments and pre-payments applied", ``AmountDue`` what remains;
  ``FullyPaidOnDate`` is "only returned on fully paid invoices".
* Contacts (https://developer.xero.com/documentation/api/accounting/contacts):
  ``Balances`` ("the raw AccountsReceivable (sales invoices) and AccountsPayable (bills)
  outstanding and overdue amounts") come only with a single contact or a page, and
  "changes to the Balances ... will not trigger a contact to be returned with the
  Modified-After filter".

xero-python's own test fixtures and integrators' reports give the refusals' wording
(obs): "Payments can only be made against Authorised documents", "Payment amount
exceeds the amount outstanding on this document" and "Payment is applied to more than
one document."; for allocations "The invoice you are trying to allocate to has already
been paid off" and "Credit Note cannot be allocated as amount is greater than amount
outstanding" (an ApiException quoted in waynerobinson/xeroizer#320). docs/vendors/xero.md
lists what had to be chosen.
"""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any

# The module, not its names: xero_org imports this module while it loads.
from local.sandboxes import xero_org

if TYPE_CHECKING:
    from local.sandboxes.xero_org import Changes, Document, JsonObj, Organisation

AUTHORISED = "AUTHORISED"
PAID = "PAID"
DELETED = "DELETED"
# A payment's type by the type of the document it pays (spec's PaymentType).
PAYMENT_TYPES = {
    "ACCREC": "ACCRECPAYMENT",
    "ACCPAY": "ACCPAYPAYMENT",
    "ACCRECCREDIT": "ARCREDITPAYMENT",
    "ACCPAYCREDIT": "APCREDITPAYMENT",
}
REFUNDS = frozenset({"ARCREDITPAYMENT", "APCREDITPAYMENT"})
NOT_AUTHORISED = "Payments can only be made against Authorised documents"  # (obs)
EXCEEDS_DUE = "Payment amount exceeds the amount outstanding on this document"  # (obs)
TWO_DOCUMENTS = "Payment is applied to more than one document."  # (obs)
PAID_OFF = "The invoice you are trying to allocate to has already been paid off"  # (obs)
OVER_ALLOCATED = (  # (obs)
    "Credit Note cannot be allocated as amount is greater than amount outstanding"
)
# The one recording found breaks off at "…to an incorrect invoice t": completed "type".
WRONG_INVOICE_TYPE = "Credit Note cannot be allocated to an incorrect invoice type"
# NOT documented: the sandbox's own wording of what Xero refuses to allocate.
NOT_ALLOCATABLE = "Only an AUTHORISED credit note can be allocated."
INVOICE_NOT_OPEN = "Credit notes can only be allocated to AUTHORISED invoices."
OTHER_CONTACT = "Credit Note cannot be allocated to an invoice of another contact."
OTHER_CURRENCY = "Credit Note cannot be allocated to an invoice in another currency."
NO_AMOUNT = "Allocation amount must be greater than zero."


def prepare_payment(
    org: Organisation, body: JsonObj, existing: JsonObj | None, changes: Changes
) -> JsonObj:
    """A new payment applied to its invoice, or refunding its credit note, or
    ``existing`` deleted (reversed).

    Raises ElementError, before anything changes, for what Xero refuses.
    """
    if existing is not None:
        return _delete(org, body, existing, changes)
    if any(body.get(k) for k in ("Prepayment", "Overpayment")):
        raise xero_org.ElementError("Refunds of prepayments and overpayments are not modelled.")
    errors: list[str] = []
    refund = bool(body.get("CreditNote") or body.get("CreditNoteNumber"))
    if refund and (body.get("Invoice") or body.get("InvoiceNumber")):
        errors.append(TWO_DOCUMENTS)
    doc = xero_org.CREDIT_NOTE if refund else xero_org.INVOICE
    document = _payable(org, doc, body, errors)
    account = _account(org, body.get("Account"), errors)
    # check_types made a given Amount a Decimal.
    amount = xero_org.round_to(body.get("Amount") or Decimal(0), xero_org.CENT)
    if amount <= 0:
        errors.append("Payment amount must be greater than zero.")
    elif document is not None and amount > document[doc.outstanding]:
        errors.append(EXCEEDS_DUE)
    if errors or document is None or account is None:
        raise xero_org.ElementError(*errors)
    paid_on = xero_org.parse_day(body["Date"], "Date") if body.get("Date") else org.today()
    document_id = document[_id_field(doc)]
    payment: JsonObj = {
        "PaymentID": str(uuid.uuid4()),
        "Date": paid_on.isoformat(),
        "Amount": amount,
        "Reference": str(body.get("Reference") or ""),
        "CurrencyRate": document["CurrencyRate"],
        "PaymentType": PAYMENT_TYPES[document["Type"]],
        "Status": AUTHORISED,
        "IsReconciled": body.get("IsReconciled") is True,
        "Account": {"AccountID": account["AccountID"]},
        # A refund names its credit note here too, as Xero renders it.
        "Invoice": {"InvoiceID": document_id},
    }
    document["Payments"].append(
        {
            "PaymentID": payment["PaymentID"],
            "Date": payment["Date"],
            "Amount": payment["Amount"],
            "Reference": payment["Reference"],
            "CurrencyRate": payment["CurrencyRate"],
            "HasAccount": True,
            "HasValidationErrors": False,
        }
    )
    _settle(org, doc, document, changes)
    return payment


def credit_note(org: Organisation, key: str) -> JsonObj:
    """The credit note a path names (``/CreditNotes/{id}/…``); 404 when unknown."""
    for note in org.rows["CreditNotes"].values():
        if note["CreditNoteID"].lower() == key.lower():
            return note
    raise xero_org.not_found()


def allocate(org: Organisation, note: JsonObj, body: JsonObj, changes: Changes) -> JsonObj:
    """One allocation of ``note``'s credit to an invoice (``PUT
    /CreditNotes/{id}/Allocations``): the invoice's ``AmountCredited`` rises and the
    credit note's ``RemainingCredit`` falls, each PAID when nothing is left.

    Raises ElementError, before anything changes, for what Xero refuses.
    """
    errors: list[str] = []
    if note["Status"] != AUTHORISED:
        errors.append(NOT_ALLOCATABLE)
    invoice = _find(org, xero_org.INVOICE, body.get("Invoice"), None)
    if invoice is None:
        errors.append("Invoice could not be found.")
    else:
        if invoice["Status"] == PAID:
            errors.append(PAID_OFF)
        elif invoice["Status"] != AUTHORISED:
            errors.append(INVOICE_NOT_OPEN)
        if xero_org.CREDIT_NOTE.line_sides[note["Type"]] != invoice["Type"]:
            errors.append(WRONG_INVOICE_TYPE)
        if invoice["Contact"]["ContactID"] != note["Contact"]["ContactID"]:
            errors.append(OTHER_CONTACT)
        if invoice["CurrencyCode"] != note["CurrencyCode"]:
            errors.append(OTHER_CURRENCY)
    amount = xero_org.round_to(body.get("Amount") or Decimal(0), xero_org.CENT)
    if amount <= 0:
        errors.append(NO_AMOUNT)
    elif amount > note["RemainingCredit"] or (
        invoice is not None and amount > invoice["AmountDue"]
    ):
        errors.append(OVER_ALLOCATED)
    if errors or invoice is None:
        raise xero_org.ElementError(*errors)
    # The spec marks Date required; integrators' allocations send none (XeroAPI/xero-node
    # #228, calcinai/xero-php#251). NOT documented what Xero does without one: chosen,
    # today in the organisation's time zone.
    day = xero_org.parse_day(body["Date"], "Date") if body.get("Date") else org.today()
    allocation: JsonObj = {
        "AllocationID": str(uuid.uuid4()),
        "Amount": amount,
        "Date": day.isoformat(),
        "Invoice": {"InvoiceID": invoice["InvoiceID"]},
    }
    note["Allocations"].append(allocation)
    invoice["CreditNotes"].append(
        {
            "CreditNoteID": note["CreditNoteID"],
            "CreditNoteNumber": note.get("CreditNoteNumber", ""),
            "Date": allocation["Date"],
            "Total": note["Total"],
            "AppliedAmount": amount,
        }
    )
    _settle(org, xero_org.CREDIT_NOTE, note, changes)
    _settle(org, xero_org.INVOICE, invoice, changes)
    return {
        **_render_allocation(org, allocation),
        "CreditNote": {
            "CreditNoteID": note["CreditNoteID"],
            "ID": note["CreditNoteID"],
            "CreditNoteNumber": note.get("CreditNoteNumber", ""),
        },
    }


def render_payment(org: Organisation, out: JsonObj, record: JsonObj) -> None:
    """A payment as GET Payments shows it: its account and the document it pays (an
    invoice, or the credit note a refund pays out) summarised under ``Invoice``."""
    doc = xero_org.CREDIT_NOTE if record["PaymentType"] in REFUNDS else xero_org.INVOICE
    account = org.rows["Accounts"].get(record["Account"]["AccountID"], {})
    document = org.rows[doc.kind].get(record["Invoice"]["InvoiceID"], {})
    contact = org.rows["Contacts"].get(document.get("Contact", {}).get("ContactID", ""), {})
    out["Date"] = xero_org.ms_day(date.fromisoformat(record["Date"]))
    out["BankAmount"] = xero_org.round_to(record["Amount"] / record["CurrencyRate"], xero_org.CENT)
    out["HasAccount"] = True
    out["HasValidationErrors"] = False
    out["Account"] = {k: account.get(k) for k in ("AccountID", "Code", "Name")}
    out["Invoice"] = {
        "Type": document.get("Type"),
        "InvoiceID": record["Invoice"]["InvoiceID"],
        "InvoiceNumber": document.get(doc.number_field, ""),
        "Contact": {"ContactID": contact.get("ContactID"), "Name": contact.get("Name", "")},
        "CurrencyCode": document.get("CurrencyCode"),
    }


def render_credit_notes(record: JsonObj) -> list[JsonObj]:
    """An invoice's ``CreditNotes``: one entry per allocation to it."""
    return [
        {**note, "Date": xero_org.ms_day(date.fromisoformat(note["Date"]))}
        for note in record.get("CreditNotes", [])
    ]


def render_allocations(org: Organisation, record: JsonObj) -> list[JsonObj]:
    """A credit note's ``Allocations``."""
    return [_render_allocation(org, allocation) for allocation in record["Allocations"]]


def balances(org: Organisation, contact_id: str) -> JsonObj:
    """What the contact owes and is owed on AUTHORISED invoices and bills, and the part
    past its due date, in the organisation's base currency (see docs/vendors/xero.md)."""
    today = org.today()
    totals = {t: [Decimal("0.00"), Decimal("0.00")] for t in ("ACCREC", "ACCPAY")}
    for invoice in org.rows["Invoices"].values():
        if invoice["Contact"]["ContactID"] != contact_id or invoice["Status"] != AUTHORISED:
            continue
        due = xero_org.round_to(invoice["AmountDue"] / invoice["CurrencyRate"], xero_org.CENT)
        owed = totals[invoice["Type"]]
        owed[0] += due
        if invoice.get("DueDate") and date.fromisoformat(invoice["DueDate"]) < today:
            owed[1] += due
    return {
        side: {"Outstanding": totals[kind][0], "Overdue": totals[kind][1]}
        for side, kind in (("AccountsReceivable", "ACCREC"), ("AccountsPayable", "ACCPAY"))
    }


def _render_allocation(org: Organisation, allocation: JsonObj) -> JsonObj:
    invoice = org.rows["Invoices"].get(allocation["Invoice"]["InvoiceID"], {})
    return {
        "AllocationID": allocation["AllocationID"],
        "Amount": allocation["Amount"],
        "Date": xero_org.ms_day(date.fromisoformat(allocation["Date"])),
        "Invoice": {
            "InvoiceID": allocation["Invoice"]["InvoiceID"],
            "InvoiceNumber": invoice.get("InvoiceNumber", ""),
        },
    }


def _delete(org: Organisation, body: JsonObj, payment: JsonObj, changes: Changes) -> JsonObj:
    if set(body) - {"PaymentID", "Status"} or body.get("Status") != DELETED:
        raise xero_org.ElementError("Payments cannot be modified, only created and deleted.")
    if payment["Status"] == DELETED:
        raise xero_org.ElementError("This payment has already been deleted.")
    doc = xero_org.CREDIT_NOTE if payment["PaymentType"] in REFUNDS else xero_org.INVOICE
    document = org.rows[doc.kind][payment["Invoice"]["InvoiceID"]]
    document["Payments"] = [
        p for p in document["Payments"] if p["PaymentID"] != payment["PaymentID"]
    ]
    _settle(org, doc, document, changes)
    return {**{k: v for k, v in payment.items() if not k.startswith("_")}, "Status": DELETED}


def _settle(org: Organisation, doc: Document, record: JsonObj, changes: Changes) -> None:
    """An invoice or credit note after a payment or allocation came or went: its
    amounts, PAID with the day it was fully paid once nothing is left, AUTHORISED
    again when something is."""
    doc.totals(record)
    if record[doc.outstanding] == 0:
        days = [p["Date"] for p in record["Payments"]]
        days += [entry["Date"] for entry in record[doc.applied]]
        record["Status"] = PAID
        record["FullyPaidOnDate"] = max(days)
    else:
        record["Status"] = AUTHORISED
        record.pop("FullyPaidOnDate", None)
    record["_updated"] = org.clock()
    org.counts[("update", doc.kind)] += 1
    change = xero_org.Change(doc.kind, record[_id_field(doc)], False, record["_updated"])
    changes.items.append(change)


def _id_field(doc: Document) -> str:
    return xero_org.KINDS[doc.kind.lower()].id_field


def _find(org: Organisation, doc: Document, ref: Any, number: Any) -> JsonObj | None:
    """The invoice or credit note ``ref`` names by id or number (else ``number``)."""
    ref = ref if isinstance(ref, dict) else {}
    id_field = _id_field(doc)
    key = str(ref.get(id_field) or ref.get(doc.number_field) or number or "").lower()
    if not key:
        return None
    return next(
        (
            row
            for row in org.rows[doc.kind].values()
            if key in (row[id_field].lower(), str(row.get(doc.number_field)).lower())
        ),
        None,
    )


def _payable(org: Organisation, doc: Document, body: JsonObj, errors: list[str]) -> JsonObj | None:
    """The invoice paid or the credit note refunded. One that is not AUTHORISED is
    refused, and still returned: integrators see both refusals for a paid or voided
    invoice ("…Authorised documents; Payment amount exceeds…", obs)."""
    type_name = xero_org.KINDS[doc.kind.lower()].type_name
    document = _find(org, doc, body.get(type_name), body.get(doc.number_field))
    if document is None:
        errors.append(f"{doc.label} could not be found.")
    elif document["Status"] != AUTHORISED:
        errors.append(NOT_AUTHORISED)
    return document


def _account(org: Organisation, ref: Any, errors: list[str]) -> JsonObj | None:
    ref = ref if isinstance(ref, dict) else {}
    account_id, code = str(ref.get("AccountID") or "").lower(), str(ref.get("Code") or "").lower()
    account = next(
        (
            a
            for a in org.rows["Accounts"].values()
            if (account_id and a["AccountID"].lower() == account_id)
            or (code and a["Code"].lower() == code)
        ),
        None,
    )
    if account is None:
        errors.append("Account could not be found.")
        return None
    if account["Type"] != "BANK" and not account.get("EnablePaymentsToAccount"):
        errors.append(
            f"Account {account['Code']} is not a bank account and does not have payments enabled."
        )
        return None
    return account
