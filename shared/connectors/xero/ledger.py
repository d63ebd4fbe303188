"""Xero read back (``AccountingLedger``): where invoices and contacts stand.

What Xero documents, cited as in connector.py (keys in docs/vendors/xero.md):

* An invoice carries its own ``AmountDue``, ``AmountPaid`` ("sum of payments
  received"), ``AmountCredited`` ("sum of all credit notes, over-payments and
  pre-payments applied"), ``FullyPaidOnDate`` ("only returned on fully paid
  invoices"), its ``Payments`` (each with its ``Date`` and ``Amount``) and a
  ``Status`` of AUTHORISED, PAID or VOIDED once approved [X8]: one GET tells where
  it stands.
* A contact's ``Balances.AccountsReceivable.Outstanding``/``Overdue`` come with a
  single contact [X7]. Its invoices are one paged list filtered by ``ContactIDs`` and
  ``Statuses`` (both optimised filters), up to 1,000 a page [X8, X5].
* ``If-Modified-Since`` ("accurate to the second") on GET Invoices, Contacts and
  Payments lists what changed since then, oldest first by the default order
  (UpdatedDateUTC) [X5, X7, X8, X13]. A payment names its invoice and the invoice its
  contact [X13]. Xero's webhooks have no payment events [X12]: a payment updates its
  invoice, whose UpdatedDateUTC moves. A change to a contact's Balances does not
  move the contact's [X7], so a payment reaches the customer through its invoice.
* A refund pays out a credit note: a payment of ``PaymentType`` ARCREDITPAYMENT that
  names the credit note (``Type`` ACCRECCREDIT, its contact) where an invoice payment
  names its invoice [X13]; no invoice moves. A credit note lists its refunds under
  ``Payments`` (``Date``, ``Amount``, ``CurrencyRate``), in a list of credit notes
  too, filtered by ``where`` and paged as invoices are [X15].
* A credit note lists its ``Allocations`` too, each naming its ``Invoice``, and GET
  CreditNotes takes ``If-Modified-Since`` [X15]. Xero's webhooks have credit note
  events [X12]: the change feed lists sales credit notes as PAYMENTs of their
  allocated invoices and contact, so such an event finds its customer there.
* ``where`` compares dates with ``DateTime(y, m, d)`` [X5]; ``Type``, ``Status``,
  ``DueDate`` and ``AmountDue`` are among the Invoices' optimised filters [X8].
* GET Contacts leaves ARCHIVED contacts out unless ``includeArchived=true``, and its
  summaries (``summaryOnly``) keep ``Name`` and ``EmailAddress`` [X7]: every active
  contact is one paged list, what changed since a time the same list with
  ``If-Modified-Since``.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from shared.connectors.times import epoch_ms
from shared.connectors.xero.connector import (
    CREDIT_NOTE_TYPE,
    INVOICE_TYPE,
    ListedContact,
    UpdatedMs,
    credit_note_port_id,
    literal,
    parse,
)
from shared.errors import Permanent
from shared.models import CustomerStanding, InvoiceStanding, ObjectType
from shared.models.standing import invoice_status
from shared.money import minor_units, round_half_up
from shared.ports import KnownCustomer, TargetChange

if TYPE_CHECKING:
    from shared.connectors.xero.connector import XeroAccounting

PAGE_SIZE = 1000  # the largest pageSize Xero serves [X5]
VOIDED = "VOIDED"
GONE = frozenset({VOIDED, "DELETED"})  # an invoice, payment or credit note no longer counting
AUTHORISED = "AUTHORISED"  # approved and not paid in full [X8]
OWED = (AUTHORISED, "PAID")  # approved invoices: what a customer was invoiced
ARCHIVED = "ARCHIVED"
SALES = f"Type=={literal(INVOICE_TYPE)}"  # sales invoices: bills are not the CRM's [X8]
SALES_CREDIT = f"Type=={literal(CREDIT_NOTE_TYPE)}"  # sales credit notes [X15]
REFUND = "ARCREDITPAYMENT"  # a sales credit note paid out [X13]
# Payments of sales invoices, and refunds of sales credit notes [X13].
SALES_PAYMENTS = f"PaymentType=={literal('ACCRECPAYMENT')} OR PaymentType=={literal(REFUND)}"


class _Payment(BaseModel):
    Date: UpdatedMs
    Amount: Decimal


class _ContactRef(BaseModel):
    ContactID: str = Field(min_length=1)


class _Invoice(BaseModel):
    InvoiceID: str = Field(min_length=1)
    UpdatedDateUTC: UpdatedMs
    Status: str
    CurrencyCode: str
    CurrencyRate: Decimal = Decimal(1)
    Total: Decimal
    AmountDue: Decimal
    AmountPaid: Decimal = Decimal(0)
    AmountCredited: Decimal = Decimal(0)
    DueDate: UpdatedMs | None = None
    FullyPaidOnDate: UpdatedMs | None = None
    Payments: list[_Payment] = Field(default_factory=list)
    Contact: _ContactRef

    @property
    def voided(self) -> bool:
        return self.Status == VOIDED

    @property
    def last_payment(self) -> date | None:
        return max((_day(p.Date) for p in self.Payments), default=None)


class _DueInvoice(BaseModel):
    InvoiceID: str = Field(min_length=1)
    DueDate: UpdatedMs
    Contact: _ContactRef


class _Refund(BaseModel):
    Date: UpdatedMs
    Amount: Decimal
    CurrencyRate: Decimal = Decimal(1)


class _CreditNote(BaseModel):
    Payments: list[_Refund] = Field(default_factory=list)  # its refunds [X15]


class _Owed(BaseModel):
    Outstanding: Decimal = Decimal(0)
    Overdue: Decimal = Decimal(0)


class _Balances(BaseModel):
    AccountsReceivable: _Owed = Field(default_factory=_Owed)


class _Contact(BaseModel):
    ContactID: str = Field(min_length=1)
    Balances: _Balances


class _Changed(BaseModel):
    """A row of a change listing, as the change it names."""

    @abstractmethod
    def change(self) -> TargetChange: ...


class _ChangedContact(_Changed):
    ContactID: str = Field(min_length=1)
    UpdatedDateUTC: UpdatedMs
    ContactStatus: str = ""

    def change(self) -> TargetChange:
        return TargetChange(
            object_type=ObjectType.CUSTOMER,
            target_id=self.ContactID,
            changed_at_ms=self.UpdatedDateUTC,
            deleted=self.ContactStatus == ARCHIVED,
        )


class _ChangedInvoice(_Changed):
    InvoiceID: str = Field(min_length=1)
    UpdatedDateUTC: UpdatedMs
    Status: str = ""
    Contact: _ContactRef

    def change(self) -> TargetChange:
        return TargetChange(
            object_type=ObjectType.INVOICE,
            target_id=self.InvoiceID,
            changed_at_ms=self.UpdatedDateUTC,
            deleted=self.Status in GONE,
            customer_id=self.Contact.ContactID,
        )


class _PaidInvoice(BaseModel):
    InvoiceID: str = Field(min_length=1)
    Contact: _ContactRef | None = None


class _ChangedPayment(_Changed):
    """A payment of an invoice, or a refund: its ``Invoice`` is then the credit note it
    pays out [X13], which no invoice's standing depends on."""

    PaymentID: str = Field(min_length=1)
    UpdatedDateUTC: UpdatedMs
    Status: str = ""
    PaymentType: str = ""
    Invoice: _PaidInvoice

    def change(self) -> TargetChange:
        refund = self.PaymentType == REFUND
        return TargetChange(
            object_type=ObjectType.PAYMENT,
            target_id=self.PaymentID,
            changed_at_ms=self.UpdatedDateUTC,
            deleted=self.Status in GONE,
            invoice_ids=() if refund else (self.Invoice.InvoiceID,),
            customer_id=self.Invoice.Contact.ContactID if self.Invoice.Contact else None,
        )


class _Allocated(BaseModel):
    Invoice: _PaidInvoice


class _ChangedCreditNote(_Changed):
    """A sales credit note: allocated to invoices, or refunded, it moves its customer's
    standing (and its invoices') as a payment does [X15]."""

    CreditNoteID: str = Field(min_length=1)
    UpdatedDateUTC: UpdatedMs
    Status: str = ""
    Contact: _ContactRef
    Allocations: list[_Allocated] = Field(default_factory=list)

    def change(self) -> TargetChange:
        return TargetChange(
            object_type=ObjectType.PAYMENT,
            target_id=credit_note_port_id(self.CreditNoteID),
            changed_at_ms=self.UpdatedDateUTC,
            deleted=self.Status in GONE,
            invoice_ids=tuple(dict.fromkeys(a.Invoice.InvoiceID for a in self.Allocations)),
            customer_id=self.Contact.ContactID,
        )


# Each port type's listings: collection, query and rows. Contacts and invoices as
# summaries (Balances, lines and payments are not needed to name a change) [X7, X8];
# credit notes whole, for their ``Allocations`` (the spec's list example has them).
# A refund stays listed as a payment though its credit note is listed too: Xero does
# not say that a refund, or its deletion, moves the credit note's UpdatedDateUTC.
_FEEDS: dict[ObjectType, tuple[tuple[str, dict[str, str], type[_Changed]], ...]] = {
    ObjectType.CUSTOMER: (
        (
            "Contacts",
            {"summaryOnly": "true", "includeArchived": "true"},
            _ChangedContact,
        ),
    ),
    ObjectType.INVOICE: (("Invoices", {"summaryOnly": "true", "where": SALES}, _ChangedInvoice),),
    ObjectType.PAYMENT: (
        ("Payments", {"where": SALES_PAYMENTS}, _ChangedPayment),
        ("CreditNotes", {"where": SALES_CREDIT}, _ChangedCreditNote),
    ),
}


def invoice_standing(
    books: XeroAccounting, target_id: str, *, today: date
) -> InvoiceStanding | None:
    """The invoice as Xero answers it: amounts, payments and status in one GET [X8]."""
    row = books.read(ObjectType.INVOICE, target_id)
    if row is None:
        return None
    invoice = parse(_Invoice, row)
    balance = Decimal(0) if invoice.voided else invoice.AmountDue
    settled = balance <= 0 and not invoice.voided
    fully_paid = _day(invoice.FullyPaidOnDate) if invoice.FullyPaidOnDate else None
    return InvoiceStanding(
        target_id=invoice.InvoiceID,
        version=str(invoice.UpdatedDateUTC),
        status=invoice_status(
            voided=invoice.voided,
            total=invoice.Total,
            balance=balance,
            due_date=_day(invoice.DueDate) if invoice.DueDate else None,
            today=today,
        ),
        currency=invoice.CurrencyCode,
        total=invoice.Total,
        amount_paid=invoice.AmountPaid + invoice.AmountCredited,
        balance=balance,
        due_date=_day(invoice.DueDate) if invoice.DueDate else None,
        paid_date=(fully_paid or invoice.last_payment) if settled else None,
        last_payment_date=invoice.last_payment,
        credited=invoice.AmountCredited,
    )


def customer_standing(
    books: XeroAccounting, target_id: str, *, today: date
) -> CustomerStanding | None:
    """The contact's receivable ``Balances`` (Xero's own figure, in the organisation's
    base currency [X7]); overdue part, totals and last payment from its approved
    invoices, one paged list, each converted to the base currency at its own rate;
    refunds from its sales credit notes' payments, one paged list [X15], each at the
    rate it was paid at [X13]."""
    row = books.read(ObjectType.CUSTOMER, target_id)
    if row is None:
        return None
    contact = parse(_Contact, row)
    currency = books.base_currency()
    places = minor_units(currency)
    overdue = invoiced = paid = Decimal(0)
    last_payment: date | None = None
    params = {"ContactIDs": contact.ContactID, "Statuses": ",".join(OWED), "where": SALES}
    for invoice_row in _pages(books, "Invoices", params):
        invoice = parse(_Invoice, invoice_row)
        rate = invoice.CurrencyRate
        invoiced += _base(invoice.Total, rate, places)
        paid += _base(invoice.AmountPaid + invoice.AmountCredited, rate, places)
        due = _day(invoice.DueDate) if invoice.DueDate else None
        if invoice.AmountDue > 0 and due is not None and due < today:
            overdue += _base(invoice.AmountDue, rate, places)
        if invoice.last_payment is not None:
            last_payment = max(last_payment or invoice.last_payment, invoice.last_payment)
    refunded = Decimal(0)
    last_refund: date | None = None
    where = f"{SALES_CREDIT} AND Contact.ContactID==Guid({literal(contact.ContactID)})"
    for note_row in _pages(books, "CreditNotes", {"where": where}):
        for refund in parse(_CreditNote, note_row).Payments:
            refunded += _base(refund.Amount, refund.CurrencyRate, places)
            day = _day(refund.Date)
            last_refund = max(last_refund or day, day)
    return CustomerStanding(
        target_id=contact.ContactID,
        currency=currency,
        open_balance=contact.Balances.AccountsReceivable.Outstanding,
        overdue_amount=overdue,
        invoiced_to_date=invoiced,
        paid_to_date=paid,
        last_payment_date=last_payment,
        refunded_to_date=refunded,
        last_refund_date=last_refund,
    )


def changed_since(
    books: XeroAccounting, object_types: Sequence[ObjectType], since_ms: int
) -> Iterator[TargetChange]:
    """Contacts, sales invoices, their payments and sales credit notes changed since
    ``since_ms`` (to the second: Xero's If-Modified-Since has no finer grain [X5]),
    oldest first overall."""
    headers = _modified_since(since_ms)
    changes: list[TargetChange] = []
    for object_type in dict.fromkeys(object_types):
        for collection, params, model in _FEEDS.get(object_type, ()):
            rows = _pages(books, collection, params, headers)
            changes.extend(parse(model, row).change() for row in rows)
    yield from sorted(changes, key=lambda c: c.changed_at_ms)


def known_customers(
    books: XeroAccounting, changed_since: datetime | None
) -> Iterator[KnownCustomer]:
    """Every contact, archived ones too, as summaries [X7]; with ``changed_since``, those
    changed at or after it (to the second, rounded down [X5]). Archived ones are listed
    because pages are read by number: one archived meanwhile would shift the next page
    and hide a contact from the reader (the API archives contacts, it deletes none)."""
    headers = _modified_since(epoch_ms(changed_since)) if changed_since is not None else None
    params = {"summaryOnly": "true", "includeArchived": "true"}
    for row in _pages(books, "Contacts", params, headers):
        contact = parse(ListedContact, row)
        yield KnownCustomer(contact.ref(), contact.EmailAddress or None, contact.Name)


def falling_due(books: XeroAccounting, since: date, until: date) -> Iterator[TargetChange]:
    """Approved sales invoices owing money whose ``DueDate`` is in [since, until): one
    paged list of summaries [X8], oldest due first. A voided or paid one is not
    AUTHORISED [X8]."""
    where = " AND ".join(
        (
            SALES,
            f"Status=={literal(AUTHORISED)}",
            f"DueDate>={_date_literal(since)}",
            f"DueDate<{_date_literal(until)}",
            "AmountDue>0",
        )
    )
    rows = _pages(books, "Invoices", {"summaryOnly": "true", "where": where})
    due = [parse(_DueInvoice, row) for row in rows]
    for invoice in sorted(due, key=lambda d: (d.DueDate, d.InvoiceID)):
        day = datetime.combine(_day(invoice.DueDate), datetime.min.time(), UTC)
        yield TargetChange(
            object_type=ObjectType.INVOICE,
            target_id=invoice.InvoiceID,
            changed_at_ms=epoch_ms(day),
            customer_id=invoice.Contact.ContactID,
        )


def _modified_since(since_ms: int) -> dict[str, str]:
    """``If-Modified-Since`` in UTC, to the second (Xero's grain [X5]): rounded down, so
    a change within that second is listed."""
    since = datetime.fromtimestamp(since_ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return {"If-Modified-Since": since}


def _date_literal(day: date) -> str:
    """A ``where`` date: ``DateTime(2015, 01, 01)`` [X5]."""
    return f"DateTime({day.year}, {day.month:02d}, {day.day:02d})"


def _pages(
    books: XeroAccounting,
    collection: str,
    params: Mapping[str, str],
    headers: Mapping[str, str] | None = None,
) -> Iterator[dict[str, Any]]:
    """Every row of a paged list, ``PAGE_SIZE`` a page; a short page is the last [X5]."""
    page = 1
    while True:
        query = {**params, "page": str(page), "pageSize": str(PAGE_SIZE)}
        rows = books.get(f"/{collection}", params=query, headers=headers).get(collection)
        if not isinstance(rows, list):
            raise Permanent(f"xero answered GET /{collection} without its {collection}")
        yield from (row for row in rows if isinstance(row, dict))
        if len(rows) < PAGE_SIZE:
            return
        page += 1


def _base(amount: Decimal, rate: Decimal, places: int) -> Decimal:
    """An amount in the organisation's base currency: Xero's ``CurrencyRate`` is units
    of the invoice's currency per unit of the base currency [X8]."""
    return round_half_up(amount / rate, places, "amount")


def _day(ms: int) -> date:
    """A Xero date (``/Date(ms+0000)/``, midnight UTC of the day) as that day [X5]."""
    return datetime.fromtimestamp(ms / 1000, UTC).date()
