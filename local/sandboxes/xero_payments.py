"""The money side of the Xero sandbox: payments against invoices, credit notes a
person applies, and what they leave on invoices and contacts.

Built from Xero's pages on developer.xero.com:

* Payments (https://developer.xero.com/documentation/api/accounting/payments): ``PUT``
  applies a payment to an approved (AUTHORISED) invoice, named by ``InvoiceID`` or
  ``InvoiceNumber``, from an ``Account`` (by ``AccountID`` or ``Code``) that "needs
  to be either an account of type BANK or have enable payments to this accounts
  switched on"; its ``Amount`` "must be less than or equal to the outstanding amount
  owing on the invoice". ``POST /Payments/{id}`` with ``Status: DELETED`` deletes
  (reverses) one: "Payments cannot be modified, only created and deleted". GET
  Payments takes ``If-Modified-Since``, ``where``, ``order``, ``page``/``pageSize``;
  the default order is "UpdatedDateUTC ASC, PaymentId ASC".
* Invoices (https://developer.xero.com/documentation/api/accounting/invoices):
  ``AmountPaid`` is the "sum of payments received", ``AmountCredited`` the "sum of all
  credit notes, over-payments and pre-payments applied", ``AmountDue`` what remains;
  ``FullyPaidOnDate`` is "only returned on fully paid invoices".
* Contacts (https://developer.xero.com/documentation/api/accounting/contacts):
  ``Balances`` ("the raw AccountsReceivable (sales invoices) and AccountsPayable (bills)
  outstanding and overdue amounts") come only with a single contact or a page, and
  "changes to the Balances ... will not trigger a contact to be returned with the
  Modified-After filter".

xero-python's own test fixtures and integrators' reports give the two refusals'
wording (obs): "Payments can only be made against Authorised documents" and "Payment
amount exceeds the amount outstanding on this document". docs/vendors/xero.md lists
what had to be chosen.
"""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any

# The module, not its names: xero_org imports this module while it loads.
from local.sandboxes import xero_org

if TYPE_CHECKING:
    from local.sandboxes.xero_org import Changes, JsonObj, Organisation

AUTHORISED = "AUTHORISED"
PAID = "PAID"
DELETED = "DELETED"
PAYMENT_TYPES = {"ACCREC": "ACCRECPAYMENT", "ACCPAY": "ACCPAYPAYMENT"}
NOT_AUTHORISED = "Payments can only be made against Authorised documents"  # (obs)
EXCEEDS_DUE = "Payment amount exceeds the amount outstanding on this document"  # (obs)


def prepare_payment(
    org: Organisation, body: JsonObj, existing: JsonObj | None, changes: Changes
) -> JsonObj:
    """A new payment applied to its invoice, or ``existing`` deleted (reversed).

    Raises ElementError, before anything changes, for what Xero refuses.
    """
    if existing is not None:
        return _delete(org, body, existing, changes)
    errors: list[str] = []
    if any(body.get(k) for k in ("CreditNote", "Prepayment", "Overpayment")):
        raise xero_org.ElementError(
            "Refunds of credit notes, prepayments and overpayments are not modelled."
        )
    invoice = _invoice(org, body, errors)
    account = _account(org, body.get("Account"), errors)
    # check_types made a given Amount a Decimal.
    amount = xero_org.round_to(body.get("Amount") or Decimal(0), xero_org.CENT)
    if amount <= 0:
        errors.append("Payment amount must be greater than zero.")
    elif invoice is not None and amount > invoice["AmountDue"]:
        errors.append(EXCEEDS_DUE)
    if errors or invoice is None or account is None:
        raise xero_org.ElementError(*errors)
    paid_on = xero_org.parse_day(body["Date"], "Date") if body.get("Date") else org.today()
    payment: JsonObj = {
        "PaymentID": str(uuid.uuid4()),
        "Date": paid_on.isoformat(),
        "Amount": amount,
        "Reference": str(body.get("Reference") or ""),
        "CurrencyRate": invoice["CurrencyRate"],
        "PaymentType": PAYMENT_TYPES[invoice["Type"]],
        "Status": AUTHORISED,
        "IsReconciled": body.get("IsReconciled") is True,
        "Account": {"AccountID": account["AccountID"]},
        "Invoice": {"InvoiceID": invoice["InvoiceID"]},
    }
    invoice["Payments"].append(
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
    _settle(org, invoice, changes)
    return payment


def credit_invoice(org: Organisation, key: str, amount: Decimal, changes: Changes) -> JsonObj:
    """A credit note a person raises for ``amount`` and allocates in full to the invoice
    (the CreditNotes endpoints themselves are not modelled): the invoice lists it under
    ``CreditNotes`` and its ``AmountCredited`` rises."""
    errors: list[str] = []
    invoice = _invoice(org, {"Invoice": {"InvoiceID": key}}, errors)
    if errors or invoice is None:
        raise xero_org.ElementError(*errors)
    credit = xero_org.round_to(amount, xero_org.CENT)
    if credit <= 0 or credit > invoice["AmountDue"]:
        raise xero_org.ElementError(EXCEEDS_DUE)
    numbers = [n for inv in org.rows["Invoices"].values() for n in _credit_numbers(inv)]
    invoice.setdefault("CreditNotes", []).append(
        {
            "CreditNoteID": str(uuid.uuid4()),
            "CreditNoteNumber": f"CN-{max(numbers, default=0) + 1:04d}",
            "Date": org.today().isoformat(),
            "Total": credit,
            "AppliedAmount": credit,
        }
    )
    _settle(org, invoice, changes)
    return invoice


def render_payment(org: Organisation, out: JsonObj, record: JsonObj) -> None:
    """A payment as GET Payments shows it: its account and invoice summarised."""
    account = org.rows["Accounts"].get(record["Account"]["AccountID"], {})
    invoice = org.rows["Invoices"].get(record["Invoice"]["InvoiceID"], {})
    contact = org.rows["Contacts"].get(invoice.get("Contact", {}).get("ContactID", ""), {})
    out["Date"] = xero_org.ms_day(date.fromisoformat(record["Date"]))
    out["BankAmount"] = xero_org.round_to(record["Amount"] / record["CurrencyRate"], xero_org.CENT)
    out["HasAccount"] = True
    out["HasValidationErrors"] = False
    out["Account"] = {k: account.get(k) for k in ("AccountID", "Code", "Name")}
    out["Invoice"] = {
        "Type": invoice.get("Type"),
        "InvoiceID": invoice.get("InvoiceID"),
        "InvoiceNumber": invoice.get("InvoiceNumber", ""),
        "Contact": {"ContactID": contact.get("ContactID"), "Name": contact.get("Name", "")},
        "CurrencyCode": invoice.get("CurrencyCode"),
    }


def render_credit_notes(record: JsonObj) -> list[JsonObj]:
    return [
        {**note, "Date": xero_org.ms_day(date.fromisoformat(note["Date"]))}
        for note in record.get("CreditNotes", [])
    ]


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


def _delete(org: Organisation, body: JsonObj, payment: JsonObj, changes: Changes) -> JsonObj:
    if set(body) - {"PaymentID", "Status"} or body.get("Status") != DELETED:
        raise xero_org.ElementError("Payments cannot be modified, only created and deleted.")
    if payment["Status"] == DELETED:
        raise xero_org.ElementError("This payment has already been deleted.")
    invoice = org.rows["Invoices"][payment["Invoice"]["InvoiceID"]]
    invoice["Payments"] = [p for p in invoice["Payments"] if p["PaymentID"] != payment["PaymentID"]]
    _settle(org, invoice, changes)
    return {**{k: v for k, v in payment.items() if not k.startswith("_")}, "Status": DELETED}


def _settle(org: Organisation, invoice: JsonObj, changes: Changes) -> None:
    """The invoice after a payment or credit came or went: its amounts, PAID with the
    day it was fully paid once nothing is due, AUTHORISED again when something is."""
    xero_org.invoice_totals(invoice)
    if invoice["AmountDue"] == 0:
        days = [p["Date"] for p in invoice["Payments"]]
        days += [c["Date"] for c in invoice.get("CreditNotes", [])]
        invoice["Status"] = PAID
        invoice["FullyPaidOnDate"] = max(days)
    else:
        invoice["Status"] = AUTHORISED
        invoice.pop("FullyPaidOnDate", None)
    invoice["_updated"] = org.clock()
    org.counts[("update", "Invoices")] += 1
    change = xero_org.Change("Invoices", invoice["InvoiceID"], False, invoice["_updated"])
    changes.items.append(change)


def _invoice(org: Organisation, body: JsonObj, errors: list[str]) -> JsonObj | None:
    """The invoice paid: ``Invoice.InvoiceID`` or ``Invoice.InvoiceNumber``. One that is
    not AUTHORISED is refused, and still returned: integrators see both refusals for
    a paid or voided invoice ("…Authorised documents; Payment amount exceeds…", obs)."""
    ref = body.get("Invoice")
    ref = ref if isinstance(ref, dict) else {}
    key = str(ref.get("InvoiceID") or ref.get("InvoiceNumber") or body.get("InvoiceNumber") or "")
    invoice = (
        next(
            (
                inv
                for inv in org.rows["Invoices"].values()
                if key.lower() in (inv["InvoiceID"].lower(), str(inv.get("InvoiceNumber")).lower())
            ),
            None,
        )
        if key
        else None
    )
    if invoice is None:
        errors.append("Invoice could not be found.")
    elif invoice["Status"] != AUTHORISED:
        errors.append(NOT_AUTHORISED)
    return invoice


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


def _credit_numbers(invoice: JsonObj) -> list[int]:
    return [int(c["CreditNoteNumber"].removeprefix("CN-")) for c in invoice.get("CreditNotes", [])]
