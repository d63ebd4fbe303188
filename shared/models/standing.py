"""The accounting side's view, flowing back to the CRM (two-way sync, opt-in per field):
where an invoice stands and a customer's financial picture, as any accounting system
reports them. Amounts the accounting system computes (totals, balances, tax) are read
here and never written back into it.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from shared.models.records import CurrencyCode


class _Standing(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InvoiceStatus(StrEnum):
    """One status per invoice, the most telling first when several hold: a voided
    invoice is ``voided`` whatever its balance; an open one past its due date with a
    balance is ``overdue`` whether or not part was paid."""

    VOIDED = "voided"
    PAID = "paid"  # nothing owed
    OVERDUE = "overdue"  # balance > 0 and the due date has passed
    PARTLY_PAID = "partly_paid"  # 0 < balance < total
    OPEN = "open"  # nothing paid yet, not due yet


class InvoiceStanding(_Standing):
    """An invoice as the accounting system holds it now."""

    target_id: str
    version: str  # the vendor's version of the invoice (as ``TargetRef.version``)
    status: InvoiceStatus
    currency: CurrencyCode
    total: Decimal
    amount_paid: Decimal = Field(ge=0)  # payments and credits applied to it
    balance: Decimal  # what is still owed (the vendor's own figure)
    due_date: date | None = None
    paid_date: date | None = None  # the last payment's date, once the balance is 0
    last_payment_date: date | None = None
    credited: Decimal = Field(default=Decimal("0"), ge=0)  # credit notes applied


class CustomerStanding(_Standing):
    """A customer's financial picture, in the customer's currency."""

    target_id: str
    currency: CurrencyCode
    open_balance: Decimal  # unpaid across its open invoices
    overdue_amount: Decimal = Field(ge=0)  # the part of it past due
    invoiced_to_date: Decimal = Field(ge=0)  # totals of its invoices, voided left out
    paid_to_date: Decimal = Field(ge=0)  # payments applied to them
    last_payment_date: date | None = None
    # Money paid back to the customer. Accounting systems record a refund against the
    # customer (or a credit note of theirs), never against an invoice, so refunds show
    # on the customer, not on a deal.
    refunded_to_date: Decimal = Field(default=Decimal("0"), ge=0)
    last_refund_date: date | None = None


def invoice_status(
    *,
    voided: bool,
    total: Decimal,  # the invoice's total: a balance below it means part was paid
    balance: Decimal,
    due_date: date | None,
    today: date,
) -> InvoiceStatus:
    """The one rule every connector uses to name an invoice's status."""
    if voided:
        return InvoiceStatus.VOIDED
    if balance <= 0:
        return InvoiceStatus.PAID
    if due_date is not None and due_date < today:
        return InvoiceStatus.OVERDUE
    if balance < total:
        return InvoiceStatus.PARTLY_PAID
    return InvoiceStatus.OPEN
