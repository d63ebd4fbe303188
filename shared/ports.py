"""The small protocols the core talks to. Adapters implement them.

The sync engine, the webhook ingest and reconciliation depend only on these.
Vendor adapters live in ``shared/connectors/``; AWS adapters in ``shared/stores/``;
in-memory ones (tests, benchmarks, dry runs) in ``local/memory.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from shared.errors import WebhookRejected
from shared.models import (
    AuditEntry,
    BackState,
    ChangeEvent,
    Connection,
    CustomerStanding,
    Invoice,
    InvoiceStanding,
    ObjectType,
    Party,
    PendingCreate,
    RecordLink,
    SourceRecord,
    System,
)
from shared.models.drift import DriftReport

# --- inbound webhooks -------------------------------------------------------------


class InboundWebhook(BaseModel):
    """An HTTP request as the vendor signed it. Headers are lower-cased."""

    model_config = ConfigDict(frozen=True)

    method: str
    url: str  # full URL the vendor posted to, scheme and query included
    headers: Mapping[str, str]
    body: str
    received_at: datetime

    def payload(self) -> Any:
        """The body parsed as JSON; ``WebhookRejected`` (400) when it cannot be."""
        try:
            return json.loads(self.body)
        except ValueError:
            raise WebhookRejected(400, "body is not JSON") from None
        except RecursionError:  # json's parser recurses once per level of nesting
            raise WebhookRejected(400, "body nests JSON too deeply") from None


class WebhookAnswer(BaseModel):
    """What the vendor is told once a delivery's events are on the queue."""

    model_config = ConfigDict(frozen=True)

    status: int = 200
    content_type: str = "application/json"
    body: str = ""


def enqueued_answer(enqueued: int) -> WebhookAnswer:
    """The answer of a vendor that only wants a 2xx: how many events were enqueued."""
    return WebhookAnswer(body=json.dumps({"enqueued": enqueued}))


class WebhookReceiver(Protocol):
    """Verifies and normalizes one vendor's webhooks, and shapes the answer.

    ``verify`` raises ``shared.errors.WebhookRejected`` (a 4xx reason) when the
    request is not provably from the vendor; ``normalize`` raises it for a payload
    that is signed but not understood. ``answer`` is what the vendor expects back once
    the events are enqueued (some want an empty 200, some an acknowledgement document).
    None does I/O.
    """

    system: System

    def verify(self, request: InboundWebhook) -> None: ...

    def normalize(self, request: InboundWebhook, connection_id: str) -> list[ChangeEvent]: ...

    def answer(self, request: InboundWebhook, enqueued: int) -> WebhookAnswer: ...


# --- the two sides ----------------------------------------------------------------


class DeletedRecord(BaseModel):
    """A record the CRM lists as deleted, and when it was deleted (epoch ms)."""

    model_config = ConfigDict(frozen=True)

    id: str
    deleted_at_ms: int


class CrmSource(Protocol):
    """Reads records from a CRM (the source of truth for customers and deals)."""

    system: System

    def fetch(self, object_type: ObjectType, record_id: str) -> SourceRecord | None:
        """The full record with associations and children; None when it no longer exists."""
        ...

    def changed_since(self, object_type: ObjectType, since_ms: int) -> Iterator[SourceRecord]:
        """Records modified at or after ``since_ms``, oldest first (reconciliation)."""
        ...

    def deleted_since(self, object_type: ObjectType, since_ms: int) -> Iterator[DeletedRecord]:
        """Records deleted at or after ``since_ms``, in any order, as far back as the CRM
        still lists deletions (``changed_since`` never shows a deleted record). A deletion
        the CRM has not listed yet is dated after every one listed now, so the newest
        time listed is a watermark to list from next time."""
        ...


class TargetRef(BaseModel):
    """A record in the target system as it stands after our read or write."""

    model_config = ConfigDict(frozen=True)

    id: str
    version: str  # the vendor's own version of the record (a sync token, a timestamp)
    # When the vendor reports it: the time of this version in epoch ms, rounded up to
    # the vendor's precision. The vendor's webhooks about this version carry no later
    # time, so our own write's echo is recognised without reading the record back.
    changed_at_ms: int | None = None


# Match rules: how an existing target record is recognised as a source record's.
BY_DISPLAY_NAME = "display_name"
BY_DOC_NUMBER = "doc_number"
BY_ITEM_NAME = "item_name"


class NewItem(BaseModel):
    """An item (product or service) to create in the target for a line that has none."""

    model_config = ConfigDict(frozen=True)

    name: str
    sku: str | None = None
    description: str | None = None
    unit_price: Decimal | None = None
    income_account: str | None = None  # as the target names accounts (mapping ``items``)


class AccountingTarget(Protocol):
    """Writes customers and invoices into an accounting system.

    Every write takes an ``idempotency_key`` that stands for exactly one content
    written over one version of the record (a create's is written down before it is
    sent); the adapter passes it to the vendor's idempotency mechanism, so a write
    retried after a lost answer is answered, not done twice. Vendor limits and shapes
    (document number length, invoice-level discounts, unit-price precision) are the
    adapter's business: what it cannot write is a ``RecordInvalid`` naming the field.
    """

    system: System
    # Match rules the target enforces itself, refusing a create with ``AlreadyExists``
    # (e.g. a unique invoice number): the engine looks nothing up before such a create.
    checked_on_create: frozenset[str]

    def find_customer(self, *, email: str | None, display_name: str | None) -> TargetRef | None:
        """A customer by email, else by display name (each when given)."""
        ...

    def upsert_customer(
        self, party: Party, *, existing: TargetRef | None, idempotency_key: str
    ) -> TargetRef: ...

    def find_item(self, *, name: str, sku: str | None) -> str | None:
        """The id of the item a line sells, when the target has one by SKU or name; a
        connector whose lines need an item refuses a line without one on write."""
        ...

    def create_item(self, item: NewItem, *, idempotency_key: str) -> str:
        """Create the item and return what ``find_item`` will find it by. A name (or
        code) another item holds is refused with ``AlreadyExists`` naming the holder
        (rule ``BY_ITEM_NAME``): a concurrent or retried create finds it that way."""
        ...

    def find_invoice(self, doc_number: str) -> TargetRef | None: ...

    def upsert_invoice(
        self, invoice: Invoice, *, existing: TargetRef | None, idempotency_key: str
    ) -> TargetRef: ...

    def current(self, object_type: ObjectType, target_id: str) -> TargetRef | None:
        """The record's current version; None when it is gone."""
        ...

    def read(self, object_type: ObjectType, target_id: str) -> dict[str, Any] | None:
        """The record as the target holds it, in the target's own terms; None when it
        is gone. What a preview compares a write against."""
        ...

    def payload(self, record: Party | Invoice, *, new: bool) -> dict[str, Any]:
        """The body a create (``new``) or update of ``record`` would send, in the same
        terms as ``read``; writes nothing. ``RecordInvalid`` as the write would raise."""
        ...


# --- two-way: the accounting side read back, the CRM written to ------------------------


class TargetChange(BaseModel):
    """A record changed in the accounting system, as its change feed reports it."""

    model_config = ConfigDict(frozen=True)

    # CUSTOMER, INVOICE or PAYMENT (credit notes and refunds count as PAYMENT)
    object_type: ObjectType
    # The record id the connector's webhook events give it: unique within its object
    # type, a refund's never a payment's (the way back finds a webhook's record by it).
    target_id: str
    changed_at_ms: int
    deleted: bool = False  # deleted or voided
    # For a payment or credit note: the invoices it applies to (their standing changed).
    # A deleted one may name none, nor its customer (``LinkStore.reach_of`` has them).
    invoice_ids: tuple[str, ...] = ()
    # For an invoice, payment, credit note or refund: its customer, whose standing
    # changed too.
    customer_id: str | None = None


class KnownCustomer(NamedTuple):
    """A customer the target holds, as a listing of its customers gives it."""

    ref: TargetRef
    email: str | None
    display_name: str


@runtime_checkable
class CustomerListing(Protocol):
    """An ``AccountingTarget`` that lists its customers a page at a time: what a
    backfill matches its parties against, and what keeps the ``CustomerDirectory``."""

    def known_customers(self, *, changed_since: datetime | None = None) -> Iterator[KnownCustomer]:
        """Every customer, inactive (archived) ones too; with ``changed_since``, only
        those the target last changed at or after it (by the target's own clock)."""
        ...


class CustomerDirectory(Protocol):
    """The emails the target's customers hold, so that a customer create looks up
    an email only where some customer may hold it (a lookup is a vendor call).

    Kept from the target's own listing (``CustomerListing``): all of it once, then
    what changed since, at each reconcile and at each change of a customer in the
    target; a customer this service makes or links is added as it is. Emails are
    never taken out (a stale one costs a lookup, never a duplicate).
    """

    def holds(self, connection_id: str, email: str) -> bool | None:
        """Whether a customer holds (or held) ``email``; None until first filled."""
        ...

    def add(self, connection_id: str, emails: Iterable[str]) -> None: ...

    def filled_at(self, connection_id: str) -> datetime | None:
        """When the newest listing that filled the directory started."""
        ...

    def mark_filled(self, connection_id: str, at: datetime) -> None: ...


@runtime_checkable
class AccountingLedger(Protocol):
    """Reads back where invoices and customers stand (payments, credits, voids), for
    the fields a mapping sends back to the CRM. Implemented by an accounting connector
    beside ``AccountingTarget``; one that cannot is one-way only."""

    system: System

    def invoice_standing(self, target_id: str, *, today: date) -> InvoiceStanding | None:
        """The invoice's status, amounts and dates now; None when it is gone."""
        ...

    def customer_standing(self, target_id: str, *, today: date) -> CustomerStanding | None:
        """The customer's open balance, overdue amount and totals to date; None when
        the customer is gone."""
        ...

    def changed_since(
        self, object_types: Sequence[ObjectType], since_ms: int
    ) -> Iterator[TargetChange]:
        """Customers, invoices and payments changed at or after ``since_ms``, oldest
        first (the vendor's change feed: a drift check's and a missed webhook's net)."""
        ...

    def falling_due(self, since: date, until: date) -> Iterator[TargetChange]:
        """Sales invoices still owing money whose due date is in [``since``, ``until``),
        oldest due first, each an INVOICE change naming its customer, at the start of
        its due date (UTC). An invoice falls overdue only because a date passes: no
        record changes, so neither a webhook nor the change feed tells of it."""
        ...


class CrmProperty(BaseModel):
    """A CRM field crmsync writes into, created by the connector when missing."""

    model_config = ConfigDict(frozen=True)

    name: str  # the CRM's internal name
    label: str
    kind: Literal["string", "number", "date", "enumeration"]
    options: tuple[str, ...] = ()  # an enumeration's values


@runtime_checkable
class CrmWriter(Protocol):
    """Writes fields back into CRM records (deal, company, contact). Implemented by a
    CRM connector beside ``CrmSource``; one that cannot is one-way only."""

    system: System

    def ensure_properties(
        self, object_type: ObjectType, properties: Sequence[CrmProperty]
    ) -> list[str]:
        """Create the properties the CRM lacks; returns the names created. A CRM whose
        fields an admin creates (no API for it here) creates none: it refuses with a
        ``Permanent`` naming the fields missing and where its set-up says how."""
        ...

    def write_properties(
        self,
        object_type: ObjectType,
        record_id: str,
        values: Mapping[str, str | None],
        *,
        idempotency_key: str,
    ) -> int:
        """Set these properties (None clears one) and return the record's new version
        (its last-modified time in epoch ms), by which the CRM's webhook about this
        write is recognised as our echo."""
        ...


# --- state --------------------------------------------------------------------------


class LinkState(NamedTuple):
    link: RecordLink | None
    pending: PendingCreate | None  # a create written down and not yet linked


class LinkStore(Protocol):
    def get(self, connection_id: str, source_key: str) -> RecordLink | None: ...

    def get_by_target(self, connection_id: str, target_key: str) -> RecordLink | None: ...

    def save(self, link: RecordLink) -> None:
        """Conditional write: succeeds when no link exists or the stored
        ``source_version`` is not newer. Raises ``shared.errors.StaleWrite`` otherwise.
        Clears the record's ``PendingCreate`` in the same atomic write."""
        ...

    def mark_writing(self, connection_id: str, source_key: str, digest: str) -> None:
        """Note on the link, before an update is sent, that the target may soon hold
        ``digest`` (``RecordLink.writing``); saving the link clears it."""
        ...

    def set_parent(self, connection_id: str, child_keys: Sequence[str], parent_key: str) -> None:
        """Remember whose children these records are (a deal's line items), so the
        deletion of one, which names only the child, reaches its parent."""
        ...

    def parent_of(self, connection_id: str, child_key: str) -> str | None: ...

    def state(self, connection_id: str, source_key: str) -> LinkState:
        """The record's link and its written-down create, in one read."""
        ...

    def claim_create(
        self, connection_id: str, source_key: str, owner: str, *, now: float, lease_s: float
    ) -> LinkState | None:
        """Take the lease on creating the record's target, and read its ``state`` in the
        same write; None while another owner's lease runs (times in epoch seconds).
        Saving the link ends the lease in its own write."""
        ...

    def release_create(self, connection_id: str, source_key: str, owner: str) -> None:
        """End the create lease if ``owner`` still holds it (no link was saved)."""
        ...

    def put_pending_create(self, pending: PendingCreate) -> None:
        """Write down a create before sending it (replaces any earlier one)."""
        ...

    def drop_pending_create(self, connection_id: str, source_key: str) -> None:
        """The create was refused for good: nothing was made, nothing to repeat."""
        ...

    def back_state(self, connection_id: str, source_key: str) -> BackState | None:
        """What the way back last left in the CRM record (two-way fields)."""
        ...

    def save_back_state(self, state: BackState) -> None:
        """Conditional write: succeeds when none is stored or the stored revision is
        the one before ``state.revision``; ``StaleWrite`` otherwise."""
        ...

    def remember_reach(self, connection_id: str, target_key: str, reached: Sequence[str]) -> None:
        """Add ``reached`` (target keys: a payment's invoices and customer) to what the
        accounting record ``target_key`` has reached, in one atomic write. Never
        forgets: its deletion, which may name none of them, reaches all it ever did."""
        ...

    def reach_of(self, connection_id: str, target_key: str) -> frozenset[str]: ...


class Connections(Protocol):
    """The connections this deployment serves, read at run time."""

    def get(self, connection_id: str) -> Connection | None: ...

    def all(self) -> list[Connection]: ...

    def put(self, connection: Connection) -> None: ...


class AuditLog(Protocol):
    def record(self, entry: AuditEntry) -> None: ...

    def entries(self, connection_id: str, *, limit: int = 100) -> list[AuditEntry]:
        """Newest first."""
        ...

    def history(self, connection_id: str, record_key: str, *, limit: int = 100) -> list[AuditEntry]:
        """One record's entries (``AuditEntry.record_key``), newest first."""
        ...


class CursorStore(Protocol):
    """Watermarks for reconciliation, by name."""

    def get(self, name: str) -> int | None: ...

    def put(self, name: str, value: int) -> None: ...


class DriftStore(Protocol):
    """The newest drift report of each connection (``shared.sync.drift``)."""

    def latest(self, connection_id: str) -> DriftReport | None: ...

    def save(self, report: DriftReport) -> None: ...


class EventQueue(Protocol):
    def send(self, events: Sequence[ChangeEvent]) -> None:
        """Enqueue all or raise: a webhook is acknowledged only after this returns."""
        ...

    def defer(self, receipt: str, seconds: float) -> None:
        """Hide a received message for ``seconds`` (0: back now) instead of its
        visibility timeout."""
        ...

    def dead_letter(self, event: ChangeEvent, *, message_id: str) -> None:
        """Put a received message's event on the dead-letter queue (the caller then
        lets the message go as handled)."""
        ...


class DeferralCounter(Protocol):
    """How many receives of a message were deferrals rather than failed attempts."""

    def deferrals(self, message_id: str) -> int: ...

    def add_deferral(self, message_id: str) -> None: ...


class DeadLetter(BaseModel):
    model_config = ConfigDict(frozen=True)

    receipt: str
    event: ChangeEvent


class DeadLetters(Protocol):
    """The dead-letter queue, read by reconciliation to clear what it has repaired."""

    def peek(self, max_messages: int) -> list[DeadLetter]:
        """Up to ``max_messages`` letters, hidden from other readers for a while."""
        ...

    def discard(self, letter: DeadLetter) -> None: ...


class SecretStore(Protocol):
    def read(self, secret_id: str, *, fresh: bool = False) -> dict[str, str]:
        """``fresh`` bypasses any cache (after another process may have rotated it)."""
        ...

    def write(self, secret_id: str, value: Mapping[str, str]) -> None: ...


class Lock(Protocol):
    """A lease shared by every Lambda, e.g. around an OAuth refresh."""

    def hold(self, name: str, *, lease_s: float, wait_s: float) -> AbstractContextManager[None]:
        """Raises ``shared.errors.LockTimeout`` when not acquired within ``wait_s``."""
        ...


class CallBudget(Protocol):
    """A call-rate budget shared by every Lambda of a connection.

    An instance is one worker's view: it may hold slots reserved ahead (a block) and
    hand them out without a round trip to the shared store.
    """

    def acquire(self, key: str, *, limit: int, per_s: float, max_wait_s: float) -> float:
        """Take the next call slot if it is at most ``max_wait_s`` away.

        Returns the seconds until the slot (0 = call now): the call must be made then,
        not later. A value above ``max_wait_s`` means nothing was taken and the caller
        should come back later.
        """
        ...


# --- metrics -----------------------------------------------------------------------


class Tally(StrEnum):
    """What became of an event, as the operator's dashboard counts it (metric names)."""

    APPLIED = "Applied"  # written to the target, or linked to the record found there
    SKIPPED = "Skipped"  # nothing to write: unchanged, filtered, stale, an echo
    FORWARDED = "Forwarded"  # handed to the record it belongs to, counted there
    INVALID = "Invalid"  # the record violates the mapping
    REJECTED = "Rejected"  # the target (or the deployment) refused it for good
    FAILED = "Failed"  # an attempt failed: retried, or dead-lettered after the last
    DEFERRED = "Deferred"  # back on the queue to wait out a vendor's call limit


class SyncMetrics(Protocol):
    """What the sync reports of each event, by its connection and object type only:
    never a record (metrics are counted per distinct dimension value)."""

    def count(self, event: ChangeEvent, tally: Tally) -> None: ...

    def freshness(self, event: ChangeEvent, ms: float) -> None:
        """Milliseconds from the vendor's change to its write in the target."""
        ...


class DriftMetrics(Protocol):
    """What a drift check reports of a connection: its findings by kind, and of those
    the persistent ones (found by the run before too), every kind, zeros included."""

    def drift(
        self, connection_id: str, found: Mapping[str, int], persistent: Mapping[str, int]
    ) -> None: ...


class Unmeasured:
    """``SyncMetrics`` where nobody watches: the operator's commands, tests."""

    def count(self, event: ChangeEvent, tally: Tally) -> None:
        pass

    def freshness(self, event: ChangeEvent, ms: float) -> None:
        pass
