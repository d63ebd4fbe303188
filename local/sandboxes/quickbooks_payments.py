"""The money side of the QuickBooks Online sandbox: payments and credit memos applied
to invoices, and voids.

Built from Intuit's references: Payment
(https://developer.intuit.com/app/developer/qbo/docs/api/accounting/all-entities/payment),
CreditMemo (…/all-entities/creditmemo), Invoice (…/all-entities/invoice, "Void an
invoice") and "Manage linked transactions"
(https://developer.intuit.com/app/developer/qbo/docs/workflows/manage-linked-transactions).

* A Payment's ``Line[]`` each carry an ``Amount`` and ``LinkedTxn[{TxnId, TxnType}]``
  naming an ``Invoice`` (the amount is paid on it) or a ``CreditMemo`` (the amount of
  its credit is used). A zero-total Payment with an invoice line and a credit memo
  line is how a credit is applied to an invoice through the API (obs: integrators'
  code; Intuit's payment samples pair an Invoice line and a CreditMemo line).
* ``Invoice.Balance`` and ``CreditMemo.RemainingCredit``/``Balance`` are the total
  less what payments apply; the invoice lists those payments in its ``LinkedTxn``
  (``TxnType: "Payment"``), set by QuickBooks, read only.
* A void keeps the invoice but zeroes its amounts and quantities and prepends
  "Voided" to ``PrivateNote`` (Intuit's words for a payment void; for invoices as
  integrators report them: TotalAmt and Balance 0, "Voided" in the note).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

JsonObj = dict[str, Any]
# (TxnType, TxnId) -> [(payment Id, amount the payment applies to it)]
Applied = dict[tuple[str, str], list[tuple[str, Decimal]]]

INVOICE = "Invoice"
CREDIT_MEMO = "CreditMemo"
LINKABLE = (INVOICE, CREDIT_MEMO)
VOIDED = "Voided"


def applications(payments: Mapping[str, JsonObj]) -> Applied:
    """What every payment applies, by the transaction it names."""
    applied: Applied = {}
    for pay_id, payment in payments.items():
        for line in payment.get("Line", []):
            for linked in line.get("LinkedTxn", []):
                key = (str(linked["TxnType"]), str(linked["TxnId"]))
                applied.setdefault(key, []).append((pay_id, Decimal(str(line["Amount"]))))
    return applied


def open_amount(txn: JsonObj, txn_type: str, applied: Applied, *, excluding: str = "") -> Decimal:
    """An invoice's balance or a credit memo's remaining credit: its total less what
    payments (but ``excluding``, the one being rewritten) apply to it."""
    entries = applied.get((txn_type, txn["Id"]), [])
    used = sum((amount for pay_id, amount in entries if pay_id != excluding), Decimal(0))
    return Decimal(str(txn["TotalAmt"])) - used


def payments_of(txn_type: str, txn_id: str, applied: Applied) -> list[str]:
    """The payments applied to one transaction, each once, in order of Id."""
    return sorted({pay_id for pay_id, _ in applied.get((txn_type, txn_id), [])}, key=_id_order)


def voided(invoice: JsonObj) -> JsonObj:
    """The invoice as a void leaves it: every amount and quantity zero, the note marked.

    Intuit: "all amounts and quantities are zeroed and the string, Voided, is injected
    into ... PrivateNote, prepended to existing text if present" (Payment reference,
    "Void a payment"); the separator before existing text is not documented.
    """
    out = copy.deepcopy(invoice)
    for line in out.get("Line", []):
        line["Amount"] = 0
        detail = line.get("SalesItemLineDetail")
        if isinstance(detail, dict) and "Qty" in detail:
            detail["Qty"] = 0
    tax = out.get("TxnTaxDetail")
    if isinstance(tax, dict):
        tax["TotalTax"] = 0
        for tax_line in tax.get("TaxLine", []):
            tax_line["Amount"] = 0
    out["TotalAmt"] = 0
    note = str(out.get("PrivateNote") or "").strip()
    out["PrivateNote"] = f"{VOIDED} - {note}" if note else VOIDED
    return out


def _id_order(obj_id: str) -> tuple[int, str]:
    return (int(obj_id), "") if obj_id.isdigit() else (0, obj_id)
