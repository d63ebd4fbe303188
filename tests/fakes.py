"""In-memory fakes of the two vendor sides, keyed by external id (cosmicpython style).

Tests of the core assert on their state (how many customers, what an invoice
holds), not on which calls were made.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from itertools import count
from pathlib import Path
from typing import Any

from shared.batch import BatchResult, BatchWrite
from shared.connectors import times
from shared.errors import (
    AlreadyExists,
    ConnectorError,
    NotFound,
    Permanent,
    RecordInvalid,
    Retryable,
    Violation,
)
from shared.models import (
    CustomerStanding,
    Invoice,
    InvoiceStanding,
    InvoiceStatus,
    ObjectType,
    Party,
    SourceRecord,
    System,
)
from shared.models.standing import invoice_status
from shared.ports import (
    BY_DISPLAY_NAME,
    BY_DOC_NUMBER,
    BY_ITEM_NAME,
    CrmProperty,
    DeletedRecord,
    KnownCustomer,
    NewItem,
    TargetChange,
    TargetRef,
)

# The HubSpot services preset: the mapping the core's tests run with.
DEFAULT_MAPPING = Path(__file__).resolve().parents[1] / "config" / "hubspot" / "services.yaml"


def epoch_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class Ticks:
    """A clock two fakes can share so their changes are ordered as they were made
    (each reading one millisecond after the last, whatever the wall clock says)."""

    def __init__(self) -> None:
        self._last = wall_ms()

    def __call__(self) -> int:
        self._last += 1
        return self._last


@dataclass
class FakeCrm:
    """A CRM that reads and, two-way, writes properties back (``CrmWriter``)."""

    system: System = "hubspot"
    records: dict[tuple[ObjectType, str], SourceRecord] = field(default_factory=dict)
    fetches: int = 0
    properties: dict[ObjectType, dict[str, CrmProperty]] = field(default_factory=dict)
    writes: list[dict[str, str | None]] = field(default_factory=list)  # each one sent
    changes: list[tuple[ObjectType, str, int]] = field(default_factory=list)  # its webhooks
    replies: dict[str, int] = field(default_factory=dict)
    clock: Callable[[], int] = wall_ms  # what a change's version is taken from
    deleted: dict[tuple[ObjectType, str], int] = field(default_factory=dict)  # when

    def ensure_properties(
        self, object_type: ObjectType, properties: Sequence[CrmProperty]
    ) -> list[str]:
        held = self.properties.setdefault(object_type, {})
        made = [p.name for p in properties if p.name not in held]
        held.update((p.name, p) for p in properties if p.name in made)
        return made

    def write_properties(
        self,
        object_type: ObjectType,
        record_id: str,
        values: Mapping[str, str | None],
        *,
        idempotency_key: str,
    ) -> int:
        """Like a CRM: an unknown property or record is refused; a key sent again is
        answered with the first write's version, nothing written again."""
        if idempotency_key in self.replies:
            return self.replies[idempotency_key]
        record = self.records.get((object_type, record_id))
        if record is None:
            raise NotFound(f"{object_type} {record_id} does not exist")
        return self.edit(record, values, key=idempotency_key)

    def edit(
        self, record: SourceRecord, values: Mapping[str, str | None], *, key: str | None = None
    ) -> int:
        """Someone (or crmsync, with ``key``) sets properties: a new version, a webhook."""
        version = max(self.clock(), record.version + 1)
        self.put(
            record.model_copy(
                update={"properties": {**record.properties, **values}, "version": version}
            )
        )
        if key is not None:
            self.writes.append(dict(values))
            self.replies[key] = version
        self.changes.append((record.object_type, record.id, version))
        return version

    def put(self, record: SourceRecord) -> SourceRecord:
        self.records[(record.object_type, record.id)] = record
        return record

    def fetch(self, object_type: ObjectType, record_id: str) -> SourceRecord | None:
        self.fetches += 1
        return self.records.get((object_type, record_id))

    def changed_since(self, object_type: ObjectType, since_ms: int) -> list[SourceRecord]:
        found = [r for (t, _), r in self.records.items() if t == object_type]
        return sorted((r for r in found if r.version >= since_ms), key=lambda r: r.version)

    def delete(self, object_type: ObjectType, record_id: str) -> None:
        """Someone deletes the record in the CRM: gone, listed by ``deleted_since``."""
        del self.records[(object_type, record_id)]
        self.deleted[(object_type, record_id)] = self.clock()

    def deleted_since(self, object_type: ObjectType, since_ms: int) -> list[DeletedRecord]:
        return [
            DeletedRecord(id=record_id, deleted_at_ms=at)
            for (t, record_id), at in self.deleted.items()
            if t == object_type and at >= since_ms
        ]


@dataclass
class Stored:
    id: str
    sync_token: int
    body: Party | Invoice
    changed_at_ms: int = 0

    def change(self, now_ms: int) -> None:
        """A new version, stamped later than the last (as a vendor's clock would)."""
        self.sync_token += 1
        self.changed_at_ms = max(now_ms, self.changed_at_ms + 1)


@dataclass
class Paid:
    """A payment (or credit) applied to invoices."""

    id: str
    amounts: dict[str, Decimal]  # invoice id → amount applied
    on: date


@dataclass
class FakeLedger:
    """QuickBooks-like: SyncTokens, requestid replay, lookups by email and name; and,
    two-way, where invoices and customers stand (``AccountingLedger``), with a change
    feed of every write, ours included."""

    system: System = "quickbooks"
    checked_on_create: frozenset[str] = frozenset()  # matched by lookups before a create
    customers: dict[str, Stored] = field(default_factory=dict)
    invoices: dict[str, Stored] = field(default_factory=dict)
    items: dict[str, str] = field(default_factory=lambda: {"Services": "1", "Hours": "2"})
    terms: set[str] = field(default_factory=lambda: {"Net 30"})
    created_items: list[NewItem] = field(default_factory=list)
    replies: dict[str, TargetRef] = field(default_factory=dict)
    # Faults: the next N writes commit but their response is lost (a Retryable).
    lose_responses: int = 0
    reads: int = 0  # calls of ``current``
    lookups: int = 0  # queries made by the find_* methods
    payments: dict[str, Paid] = field(default_factory=dict)
    voided: set[str] = field(default_factory=set)
    feed: list[TargetChange] = field(default_factory=list)
    clock: Callable[[], int] = wall_ms  # what a change's time is taken from
    _ids: count[int] = field(default_factory=lambda: count(100))

    def invoice_standing(self, target_id: str, *, today: date) -> InvoiceStanding | None:
        stored = self.invoices.get(target_id)
        if stored is None:
            return None
        invoice = stored.body
        assert isinstance(invoice, Invoice)
        total = sum((line.amount - line.discount_amount for line in invoice.lines), Decimal(0))
        applied = [
            (p.amounts[target_id], p.on) for p in self.payments.values() if target_id in p.amounts
        ]
        paid = sum((amount for amount, _ in applied), Decimal(0))
        last = max((on for _, on in applied), default=None)
        balance = total - paid
        return InvoiceStanding(
            target_id=target_id,
            version=str(stored.sync_token),
            status=invoice_status(
                voided=target_id in self.voided,
                total=total,
                balance=balance,
                due_date=invoice.due_date,
                today=today,
            ),
            currency=invoice.currency,
            total=total,
            amount_paid=paid,
            balance=balance,
            due_date=invoice.due_date,
            paid_date=last if balance <= 0 else None,
            last_payment_date=last,
        )

    def customer_standing(self, target_id: str, *, today: date) -> CustomerStanding | None:
        stored = self.customers.get(target_id)
        if stored is None:
            return None
        standings = [
            standing
            for invoice_id, invoice in self.invoices.items()
            if getattr(invoice.body, "customer_ref", None) == target_id
            and invoice_id not in self.voided
            and (standing := self.invoice_standing(invoice_id, today=today)) is not None
        ]
        return CustomerStanding(
            target_id=target_id,
            currency=getattr(stored.body, "currency", None) or "USD",
            open_balance=sum((s.balance for s in standings), Decimal(0)),
            overdue_amount=sum(
                (s.balance for s in standings if s.status is InvoiceStatus.OVERDUE), Decimal(0)
            ),
            invoiced_to_date=sum((s.total for s in standings), Decimal(0)),
            paid_to_date=sum((s.amount_paid for s in standings), Decimal(0)),
            last_payment_date=max(
                (s.last_payment_date for s in standings if s.last_payment_date), default=None
            ),
        )

    def changed_since(
        self, object_types: Sequence[ObjectType], since_ms: int
    ) -> Iterator[TargetChange]:
        found = [
            c for c in self.feed if c.object_type in object_types and c.changed_at_ms >= since_ms
        ]
        return iter(sorted(found, key=lambda c: c.changed_at_ms))

    def falling_due(self, since: date, until: date) -> Iterator[TargetChange]:
        """Invoices not voided with a balance, due in [since, until), oldest due first."""
        due = [
            (standing.due_date, invoice_id)
            for invoice_id in self.invoices
            if invoice_id not in self.voided
            and (standing := self.invoice_standing(invoice_id, today=since)) is not None
            and standing.balance > 0
            and standing.due_date is not None
            and since <= standing.due_date < until
        ]
        for due_date, invoice_id in sorted(due):
            start = datetime.combine(due_date, datetime.min.time(), UTC)
            yield TargetChange(
                object_type=ObjectType.INVOICE,
                target_id=invoice_id,
                changed_at_ms=int(start.timestamp()) * 1000,
                customer_id=getattr(self.invoices[invoice_id].body, "customer_ref", None),
            )

    def pay(self, amounts: Mapping[str, Decimal], on: date) -> TargetChange:
        """A payment is received against these invoices: each changes (a new version)."""
        payment = Paid(str(next(self._ids)), dict(amounts), on)
        self.payments[payment.id] = payment
        for invoice_id in amounts:
            self.touch(ObjectType.INVOICE, invoice_id)
        customer = getattr(self.invoices[next(iter(amounts))].body, "customer_ref", None)
        return self._changed(
            ObjectType.PAYMENT, payment.id, invoice_ids=tuple(amounts), customer_id=customer
        )

    def edit(self, object_type: ObjectType, target_id: str, **values: Any) -> TargetChange:
        """Someone edits the record in the accounting UI, these fields."""
        table = self.customers if object_type is ObjectType.CUSTOMER else self.invoices
        stored = table[target_id]
        stored.body = stored.body.model_copy(update=values)
        return self.touch(object_type, target_id)

    def _changed(
        self,
        object_type: ObjectType,
        target_id: str,
        invoice_ids: tuple[str, ...] = (),
        customer_id: str | None = None,
    ) -> TargetChange:
        stored = (self.customers if object_type is ObjectType.CUSTOMER else self.invoices).get(
            target_id
        )
        at = (
            stored.changed_at_ms
            if stored
            else max([self.clock(), *(c.changed_at_ms + 1 for c in self.feed)])
        )
        if object_type is ObjectType.INVOICE and stored is not None:
            customer_id = getattr(stored.body, "customer_ref", None)
        change = TargetChange(
            object_type=object_type,
            target_id=target_id,
            changed_at_ms=at,
            invoice_ids=invoice_ids,
            customer_id=customer_id,
        )
        self.feed.append(change)
        return change

    def find_customer(self, *, email: str | None, display_name: str | None) -> TargetRef | None:
        """By email, else by name, each when given: one lookup (query) each."""
        for value, field_name in ((email, "email"), (display_name, "display_name")):
            if value:
                self.lookups += 1
                found = self._customer_with(field_name, value)
                if found is not None:
                    return found
        return None

    def _customer_with(self, field_name: str, value: str) -> TargetRef | None:
        return next(
            (_ref(s) for s in self.customers.values() if getattr(s.body, field_name) == value),
            None,
        )

    def upsert_customer(
        self, party: Party, *, existing: TargetRef | None, idempotency_key: str
    ) -> TargetRef:
        if existing is None and BY_DISPLAY_NAME in self.checked_on_create:
            holder = self._customer_with("display_name", party.display_name)
            self._refuse_taken(BY_DISPLAY_NAME, holder)
        return self._write(self.customers, party, existing, idempotency_key)

    def _refuse_taken(self, rule: str, holder: TargetRef | None) -> None:
        """Like QuickBooks' 6240 / 6140: a create under a taken key names the holder."""
        if holder is not None:
            raise AlreadyExists(f"{rule} is taken", holder=holder, rule=rule)

    def find_item(self, *, name: str, sku: str | None) -> str | None:
        return self.items.get(sku or "") or self.items.get(name)

    def create_item(self, item: NewItem, *, idempotency_key: str) -> str:
        """Like QuickBooks: a key sent again is answered, a name held is refused (6240)."""
        if idempotency_key in self.replies:
            return self.replies[idempotency_key].id
        if item.name in self.items:
            holder = TargetRef(id=self.items[item.name], version="0")
            raise AlreadyExists("item name is taken", holder=holder, rule=BY_ITEM_NAME)
        self.items[item.name] = str(next(self._ids))
        self.created_items.append(item)
        self.replies[idempotency_key] = TargetRef(id=self.items[item.name], version="0")
        return self.items[item.name]

    def find_invoice(self, doc_number: str) -> TargetRef | None:
        self.lookups += 1
        return self._invoice_numbered(doc_number)

    def _invoice_numbered(self, doc_number: str) -> TargetRef | None:
        return next(
            (
                _ref(s)
                for s in self.invoices.values()
                if getattr(s.body, "doc_number", None) == doc_number
            ),
            None,
        )

    def upsert_invoice(
        self, invoice: Invoice, *, existing: TargetRef | None, idempotency_key: str
    ) -> TargetRef:
        """Like QuickBooks: every line needs an item, terms must exist (else refused)."""
        violations = [
            Violation(f"line_items[{i}].name", "item_exists", f"no item named {line.name!r}")
            for i, line in enumerate(invoice.lines)
            if line.item_ref is None
        ]
        if invoice.payment_terms is not None and invoice.payment_terms not in self.terms:
            violations.append(Violation("payment_terms", "terms_exist", "no such terms"))
        if violations:
            raise RecordInvalid(violations)
        if existing is None and invoice.doc_number and BY_DOC_NUMBER in self.checked_on_create:
            self._refuse_taken(BY_DOC_NUMBER, self._invoice_numbered(invoice.doc_number))
        return self._write(self.invoices, invoice, existing, idempotency_key)

    def current(self, object_type: ObjectType, target_id: str) -> TargetRef | None:
        self.reads += 1
        table = self.customers if object_type is ObjectType.CUSTOMER else self.invoices
        stored = table.get(target_id)
        return _ref(stored) if stored else None

    def read(self, object_type: ObjectType, target_id: str) -> dict[str, Any] | None:
        table = self.customers if object_type is ObjectType.CUSTOMER else self.invoices
        stored = table.get(target_id)
        return stored.body.model_dump(mode="json", exclude_unset=True) if stored else None

    def payload(self, record: Party | Invoice, *, new: bool) -> dict[str, Any]:
        return record.model_dump(mode="json", exclude_unset=True)

    def touch(self, object_type: ObjectType, target_id: str) -> TargetChange:
        """Someone edits the record in the accounting UI."""
        table = self.customers if object_type is ObjectType.CUSTOMER else self.invoices
        table[target_id].change(self.clock())
        return self._changed(object_type, target_id)

    def _write(
        self,
        table: dict[str, Stored],
        body: Party | Invoice,
        existing: TargetRef | None,
        key: str,
    ) -> TargetRef:
        if key in self.replies:  # requestid replay: the original answer, nothing written
            return self._answer(self.replies[key])
        if existing is None:
            stored = Stored(
                id=str(next(self._ids)),
                sync_token=0,
                body=body,
                changed_at_ms=self.clock(),
            )
            table[stored.id] = stored
        else:
            # A stale version is re-read by the adapter itself (QuickBooks' 5010).
            if existing.id not in table:
                raise NotFound(f"record {existing.id} was deleted")
            stored = table[existing.id]
            merged = stored.body.model_copy(
                update={k: getattr(body, k) for k in body.model_fields_set}
            )
            stored.body = merged
            stored.change(self.clock())
        self._changed(
            ObjectType.CUSTOMER if table is self.customers else ObjectType.INVOICE, stored.id
        )
        self.replies[key] = _ref(stored)
        return self._answer(_ref(stored))

    def _answer(self, reply: TargetRef) -> TargetRef:
        """Any answer, first or replayed, may be lost on the wire."""
        if self.lose_responses:
            self.lose_responses -= 1
            raise Retryable("response lost on the wire")
        return reply


def _ref(stored: Stored) -> TargetRef:
    return TargetRef(
        id=stored.id, version=str(stored.sync_token), changed_at_ms=stored.changed_at_ms
    )


class OffsetClock:
    """Real time plus an offset a test can push forward (to expire tokens, sessions)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclass
class FakeBatchLedger(FakeLedger):
    """A FakeLedger with QuickBooks-like batches: each write on its own, refusals per
    write, a duplicate name or number refused, and optionally the answer lost."""

    checked_on_create: frozenset[str] = frozenset({BY_DISPLAY_NAME, BY_DOC_NUMBER})
    batch_max_items: int = 30
    batch_calls: int = 0
    lose_batch_answers: int = 0  # the next N batches are written, their answer lost

    def batch_upsert(self, writes: Sequence[BatchWrite]) -> list[BatchResult]:
        self.batch_calls += -(-len(writes) // self.batch_max_items)
        results: list[BatchResult] = []
        for write in writes:
            upsert = (
                self.upsert_customer
                if write.object_type is ObjectType.CUSTOMER
                else self.upsert_invoice
            )
            try:
                results.append(
                    upsert(
                        write.record,  # type: ignore[arg-type]  # checked by BatchWrite
                        existing=write.existing,
                        idempotency_key=write.idempotency_key,
                    )
                )
            except AlreadyExists as taken:
                results.append(Permanent(str(taken), code="6240"))
            except (ConnectorError, RecordInvalid) as refused:
                results.append(refused)
        if self.lose_batch_answers:
            self.lose_batch_answers -= 1
            raise Retryable("batch answer lost on the wire")
        return results

    def known_customers(self, *, changed_since: datetime | None = None) -> Iterator[KnownCustomer]:
        self.lookups += 1
        since_ms = times.epoch_ms(changed_since) if changed_since is not None else None
        for stored in list(self.customers.values()):
            if since_ms is not None and stored.changed_at_ms < since_ms:
                continue
            party = stored.body
            assert isinstance(party, Party)
            yield KnownCustomer(_ref(stored), party.email, party.display_name)
