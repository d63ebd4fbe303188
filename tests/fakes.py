"""In-memory fakes of the two vendor sides, keyed by external id (cosmicpython style).

Tests of the core assert on their state (how many customers, what an invoice
holds), not on which calls were made.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import count
from pathlib import Path
from typing import Any

from shared.batch import BatchResult, BatchWrite, KnownCustomer
from shared.errors import (
    AlreadyExists,
    ConnectorError,
    NotFound,
    Permanent,
    RecordInvalid,
    Retryable,
    Violation,
)
from shared.models import Invoice, ObjectType, Party, SourceRecord, System
from shared.ports import BY_DISPLAY_NAME, BY_DOC_NUMBER, BY_ITEM_NAME, NewItem, TargetRef

# The HubSpot services preset: the mapping the core's tests run with.
DEFAULT_MAPPING = Path(__file__).resolve().parents[1] / "config" / "hubspot" / "services.yaml"


def epoch_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


@dataclass
class FakeCrm:
    system: System = "hubspot"
    records: dict[tuple[ObjectType, str], SourceRecord] = field(default_factory=dict)
    fetches: int = 0

    def put(self, record: SourceRecord) -> SourceRecord:
        self.records[(record.object_type, record.id)] = record
        return record

    def fetch(self, object_type: ObjectType, record_id: str) -> SourceRecord | None:
        self.fetches += 1
        return self.records.get((object_type, record_id))

    def changed_since(self, object_type: ObjectType, since_ms: int) -> list[SourceRecord]:
        found = [r for (t, _), r in self.records.items() if t == object_type]
        return sorted((r for r in found if r.version >= since_ms), key=lambda r: r.version)


@dataclass
class Stored:
    id: str
    sync_token: int
    body: Party | Invoice
    changed_at_ms: int = 0

    def change(self) -> None:
        """A new version, stamped later than the last (as a vendor's clock would)."""
        self.sync_token += 1
        self.changed_at_ms = max(time.time_ns() // 1_000_000, self.changed_at_ms + 1)


@dataclass
class FakeLedger:
    """QuickBooks-like: SyncTokens, requestid replay, lookups by email and name."""

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
    _ids: count[int] = field(default_factory=lambda: count(100))

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

    def touch(self, object_type: ObjectType, target_id: str) -> None:
        """Someone edits the record in the accounting UI."""
        table = self.customers if object_type is ObjectType.CUSTOMER else self.invoices
        table[target_id].change()

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
                changed_at_ms=time.time_ns() // 1_000_000,
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
            stored.change()
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

    def known_customers(self) -> Iterator[KnownCustomer]:
        self.lookups += 1
        for stored in list(self.customers.values()):
            party = stored.body
            assert isinstance(party, Party)
            yield KnownCustomer(_ref(stored), party.email, party.display_name)
