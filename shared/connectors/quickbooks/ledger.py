"""QuickBooks Online read back (``AccountingLedger``): where invoices and customers stand.

What Intuit documents, cited as in connector.py (keys in docs/vendors/quickbooks.md):

* ``Invoice.TotalAmt`` and ``Balance`` are QuickBooks' own figures; ``Balance`` falls
  with every payment or credit applied [Q15]. The payments applied are listed in the
  invoice's ``LinkedTxn`` as ``{TxnId, TxnType: "Payment"}``, read only; "to get the
  complete details of the linked transaction, you must traverse the link" [Q19].
* A Payment's ``Line[]`` each apply an ``Amount`` to the ``LinkedTxn`` they name: an
  ``Invoice`` is paid, a ``CreditMemo``'s credit is used [Q20]. A credit memo reaches
  an invoice through such a payment, usually of ``TotalAmt`` 0.
* A void keeps the invoice, zeroes its amounts and writes "Voided" into
  ``PrivateNote`` [Q21]: QuickBooks has no status field, so an invoice of total 0 whose
  note begins "Voided" is taken as voided.
* ``Customer.Balance`` is the customer's open balance [Q3].
* A ``RefundReceipt`` pays money back to the customer its ``CustomerRef`` names
  (optional), from a bank or other current asset account; its ``TotalAmt`` is
  computed from its lines, and it names no invoice [Q23].
* Change data capture (``GET /cdc``): at most 30 days back and 1,000 objects an answer,
  deleted objects as ``{"status": "Deleted"}`` [Q9].
* A query's WHERE (``= IN < > <= >=`` [Q13]) may test only the properties an entity's
  reference marks filterable, an Invoice's ``DueDate`` and ``Balance`` among them;
  another is refused, 4001 "property '…' is not queryable" [Q24]. A void zeroes
  ``Balance`` [Q21]: ``Balance > '0'`` leaves voided invoices out.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from shared.connectors.quickbooks.connector import (
    CREDIT_MEMO,
    QUERY_MAX_RESULTS,
    REFUND_RECEIPT,
    Above,
    Between,
    QuickBooksAccounting,
    Where,
    port_id,
    select,
)
from shared.connectors.times import epoch_ms
from shared.errors import Permanent
from shared.models import CustomerStanding, InvoiceStanding, ObjectType
from shared.models.standing import invoice_status
from shared.money import minor_units, round_half_up
from shared.ports import TargetChange

VOIDED_NOTE = "Voided"  # what a void writes at the start of PrivateNote [Q21]
CDC_MAX_OBJECTS = 1000  # objects in one change-data-capture answer [Q9]
# How far back CDC reads [Q9], less a minute for the two clocks' skew.
CDC_LOOKBACK_MS = 30 * 24 * 3600 * 1000 - 60_000
# The customer's latest payments read for its last payment date: credit applications
# (zero-total payments) are skipped, so a few more than one.
RECENT_PAYMENTS = 20
# The entities of the change feed by port object type; a credit memo or refund receipt
# counts as a payment (money moving for its customer), named as ``port_id`` says.
_FEED_ENTITIES = {
    ObjectType.CUSTOMER: ("Customer",),
    ObjectType.INVOICE: ("Invoice",),
    ObjectType.PAYMENT: ("Payment", CREDIT_MEMO, REFUND_RECEIPT),
}
_FEED_TYPES = {
    entity: object_type for object_type, names in _FEED_ENTITIES.items() for entity in names
}


class _Row(BaseModel):
    model_config = ConfigDict(coerce_numbers_to_str=True)


class _Ref(_Row):
    value: str


class _Linked(_Row):
    TxnId: str
    TxnType: str


class _MetaData(_Row):
    LastUpdatedTime: datetime


class _Invoice(_Row):
    Id: str
    SyncToken: str
    TotalAmt: Decimal
    Balance: Decimal
    DueDate: date | None = None
    CurrencyRef: _Ref
    PrivateNote: str = ""
    LinkedTxn: list[_Linked] = Field(default_factory=list)

    @property
    def voided(self) -> bool:
        return _voided(self.TotalAmt, self.PrivateNote)

    @property
    def payment_ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(t.TxnId for t in self.LinkedTxn if t.TxnType == "Payment"))


class _Due(_Row):
    Id: str
    DueDate: date
    CustomerRef: _Ref


class _PaymentLine(_Row):
    Amount: Decimal
    LinkedTxn: list[_Linked] = Field(default_factory=list)


class _Payment(_Row):
    Id: str
    TxnDate: date
    TotalAmt: Decimal
    CustomerRef: _Ref | None = None
    Line: list[_PaymentLine] = Field(default_factory=list)

    def credited(self, invoice_id: str) -> Decimal:
        """The part of what this payment applies to the invoice that came from credit
        memos: their total shared among the payment's invoices pro rata (QuickBooks
        does not say which credit went to which invoice)."""
        invoices = _applied(self.Line, "Invoice")
        credits = sum(_applied(self.Line, CREDIT_MEMO).values(), Decimal(0))
        paid_on_invoices = sum(invoices.values(), Decimal(0))
        if not credits or not paid_on_invoices:
            return Decimal(0)
        share = invoices.get(invoice_id, Decimal(0)) / paid_on_invoices
        return min(credits, paid_on_invoices) * share


class _Refund(_Row):
    TxnDate: date
    TotalAmt: Decimal


class _Customer(_Row):
    Id: str
    Balance: Decimal = Decimal(0)
    CurrencyRef: _Ref


class _Change(_Row):
    Id: str
    status: str = ""
    MetaData: _MetaData
    TotalAmt: Decimal | None = None
    PrivateNote: str = ""
    CustomerRef: _Ref | None = None
    Line: list[_PaymentLine] = Field(default_factory=list)


def invoice_standing(
    books: QuickBooksAccounting, target_id: str, *, today: date
) -> InvoiceStanding | None:
    """The invoice, then the payments its ``LinkedTxn`` names (one query) for their
    dates and the credit among them."""
    row = books.read(ObjectType.INVOICE, target_id)
    if row is None:
        return None
    invoice = _Invoice.model_validate(row)
    currency = invoice.CurrencyRef.value
    payments = _payments(books, invoice.payment_ids)
    # Money received, not credit applications (zero-total payments), dates a payment.
    received = [p.TxnDate for p in payments if p.TotalAmt > 0]
    last_payment = max(received, default=None)
    credited = sum((p.credited(invoice.Id) for p in payments), Decimal(0))
    balance = Decimal(0) if invoice.voided else invoice.Balance
    return InvoiceStanding(
        target_id=invoice.Id,
        version=invoice.SyncToken,
        status=invoice_status(
            voided=invoice.voided,
            total=invoice.TotalAmt,
            balance=balance,
            due_date=invoice.DueDate,
            today=today,
        ),
        currency=currency,
        total=invoice.TotalAmt,
        amount_paid=max(invoice.TotalAmt - balance, Decimal(0)),
        balance=balance,
        due_date=invoice.DueDate,
        paid_date=last_payment if balance <= 0 and not invoice.voided else None,
        last_payment_date=last_payment,
        credited=round_half_up(credited, minor_units(currency), "credited"),
    )


def customer_standing(
    books: QuickBooksAccounting, target_id: str, *, today: date
) -> CustomerStanding | None:
    """The customer's ``Balance``; overdue and totals from one query of its invoices
    (1,000 a page); its last payment from one query of its latest payments; what was
    refunded from one query of its refund receipts (1,000 a page)."""
    row = books.read(ObjectType.CUSTOMER, target_id)
    if row is None:
        return None
    customer = _Customer.model_validate(row)
    overdue = invoiced = paid = Decimal(0)
    for invoice_row in books.query_all("Invoice", {"CustomerRef": customer.Id}):
        invoice = _Invoice.model_validate(invoice_row)
        if invoice.voided:
            continue
        invoiced += invoice.TotalAmt
        paid += max(invoice.TotalAmt - invoice.Balance, Decimal(0))
        if invoice.Balance > 0 and invoice.DueDate is not None and invoice.DueDate < today:
            overdue += invoice.Balance
    recent = books.query(
        "Payment",
        select(
            "Payment",
            {"CustomerRef": customer.Id},
            limit=RECENT_PAYMENTS,
            order_by="TxnDate DESC",
        ),
    )
    last_payment = next(
        (p.TxnDate for p in map(_Payment.model_validate, recent) if p.TotalAmt > 0), None
    )
    refunds = [
        _Refund.model_validate(row)
        for row in books.query_all(REFUND_RECEIPT, {"CustomerRef": customer.Id})
    ]
    return CustomerStanding(
        target_id=customer.Id,
        currency=customer.CurrencyRef.value,
        open_balance=customer.Balance,
        overdue_amount=overdue,
        invoiced_to_date=invoiced,
        paid_to_date=paid,
        last_payment_date=last_payment,
        refunded_to_date=sum((r.TotalAmt for r in refunds), Decimal(0)),
        # A receipt of total 0 (its lines discounted away, or voided) paid nothing back.
        last_refund_date=max((r.TxnDate for r in refunds if r.TotalAmt > 0), default=None),
    )


def changed_since(
    books: QuickBooksAccounting, object_types: Sequence[ObjectType], since_ms: int
) -> Iterator[TargetChange]:
    """The change feed of each entity, oldest first overall.

    One entity a call, so a full answer (1,000 objects, the oldest first) can go on
    from its last change's time; objects of that second come again and are dropped.
    Intuit refuses a start more than 30 days back: an older one reads from the oldest
    time it allows (what changed before is beyond the feed; a drift check finds such
    records through the CRM side and its earlier findings) rather than failing every
    run from then on.
    """
    entities = [name for t in dict.fromkeys(object_types) for name in _FEED_ENTITIES.get(t, ())]
    since_ms = max(since_ms, int(time.time() * 1000) - CDC_LOOKBACK_MS)
    changes: dict[tuple[str, str, int], TargetChange] = {}
    for entity in entities:
        cursor = since_ms
        while True:
            rows = _cdc(books, entity, cursor)
            for row in rows:
                change = _target_change(entity, _Change.model_validate(row))
                changes[(entity, change.target_id, change.changed_at_ms)] = change
            if len(rows) < CDC_MAX_OBJECTS:
                break
            last = max(epoch_ms(_Change.model_validate(r).MetaData.LastUpdatedTime) for r in rows)
            if last <= cursor:
                raise Permanent(
                    f"quickbooks reported more than {CDC_MAX_OBJECTS} {entity} changes "
                    "within one second: the change feed cannot page past them"
                )
            cursor = last
    yield from sorted(changes.values(), key=lambda c: c.changed_at_ms)


def falling_due(books: QuickBooksAccounting, since: date, until: date) -> Iterator[TargetChange]:
    """Invoices owing money whose ``DueDate`` is in [since, until): one query (1,000 a
    page) of ``DueDate`` and ``Balance`` [Q24], oldest due first."""
    where: Where = {"DueDate": Between(since.isoformat(), until.isoformat()), "Balance": Above("0")}
    due = [_Due.model_validate(row) for row in books.query_all("Invoice", where)]
    for invoice in sorted(due, key=lambda d: (d.DueDate, d.Id)):
        yield TargetChange(
            object_type=ObjectType.INVOICE,
            target_id=invoice.Id,
            changed_at_ms=epoch_ms(datetime.combine(invoice.DueDate, datetime.min.time(), UTC)),
            customer_id=invoice.CustomerRef.value,
        )


def _cdc(books: QuickBooksAccounting, entity: str, since_ms: int) -> list[dict[str, object]]:
    since = datetime.fromtimestamp(since_ms // 1000, UTC).isoformat().replace("+00:00", "Z")
    body = books.get("/cdc", entities=entity, changedSince=since)
    rows: list[dict[str, object]] = []
    for capture in body.get("CDCResponse", []):
        for response in capture.get("QueryResponse", []):
            rows.extend(r for r in response.get(entity, []) if isinstance(r, dict))
    return rows


def _target_change(entity: str, row: _Change) -> TargetChange:
    deleted = row.status == "Deleted"
    invoice_ids: tuple[str, ...] = ()
    if entity == "Invoice":
        deleted = deleted or _voided(row.TotalAmt, row.PrivateNote)
    elif entity == "Payment":
        invoice_ids = tuple(_applied(row.Line, "Invoice"))
    return TargetChange(
        object_type=_FEED_TYPES[entity],
        target_id=port_id(entity, row.Id),
        changed_at_ms=epoch_ms(row.MetaData.LastUpdatedTime),
        deleted=deleted,
        invoice_ids=invoice_ids,
        customer_id=row.CustomerRef.value if row.CustomerRef else None,
    )


def _payments(books: QuickBooksAccounting, ids: tuple[str, ...]) -> list[_Payment]:
    """The payments by Id, ``QUERY_MAX_RESULTS`` Ids a query."""
    payments: list[_Payment] = []
    for start in range(0, len(ids), QUERY_MAX_RESULTS):
        chunk = ids[start : start + QUERY_MAX_RESULTS]
        statement = select("Payment", {"Id": chunk}, limit=QUERY_MAX_RESULTS)
        payments.extend(_Payment.model_validate(r) for r in books.query("Payment", statement))
    return payments


def _applied(lines: Sequence[_PaymentLine], txn_type: str) -> dict[str, Decimal]:
    """What a payment's lines apply to each transaction of ``txn_type``."""
    out: dict[str, Decimal] = {}
    for line in lines:
        for linked in line.LinkedTxn:
            if linked.TxnType == txn_type:
                out[linked.TxnId] = out.get(linked.TxnId, Decimal(0)) + line.Amount
    return out


def _voided(total: Decimal | None, note: str) -> bool:
    return total == 0 and note.startswith(VOIDED_NOTE)
