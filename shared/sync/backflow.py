"""The way back: where invoices and customers stand in the accounting system, written
into the CRM records they were made from (two-way sync, opt-in per field).

A change in the accounting system (an invoice, a customer, a payment: its invoices)
reaches the CRM records linked to it. What flows back is what the mapping lists: the
``back`` fields (an invoice's status, a customer's open balance) and the forward fields
marked ``accounting_to_crm`` or ``both``. What it guarantees:

* **Content decides, once.** Each property's value is compared with a digest of what
  was last written to it (``BackState``); only what differs is written, in one call,
  under a key derived from that content and the state it replaces.
* **Two-way fields meet a policy, not a race.** A ``both`` field's value on each side
  is compared with the value they last agreed on: the side that moved wins; when both
  moved, the field's ``conflict`` policy decides, and ``hold`` writes neither way and
  says so. The forward flow asks first (``ahead``) and sends the accounting side's
  value instead of the CRM's where that side wins.
* **A deletion reaches what the record did.** A payment's (credit's, refund's) change
  names its invoices and customer; what it named is remembered (``money_reach``), so
  its deletion, which may name nothing, and a change that applies it elsewhere still
  reach the records whose standing it moved.
* **No loops.** A back write changes only properties the forward flow does not send
  (checked when the mapping is loaded), or a two-way field to the value the other side
  already holds: the CRM's echo maps to content the accounting system holds, and stops.
  The CRM's webhook announcing the version a back write left is not even read
  (``echoes``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from shared.errors import RecordInvalid, StaleWrite
from shared.mapping import Filtered, Mapper
from shared.mapping.back import TwoWayField, canonical_text
from shared.models import (
    BackState,
    ChangeEvent,
    ChangeKind,
    CustomerStanding,
    InvoiceStanding,
    ObjectType,
    Outcome,
    RecordLink,
    SourceRecord,
    System,
)
from shared.models.events import record_key
from shared.ports import (
    AccountingLedger,
    CrmSource,
    CrmWriter,
    EventQueue,
    LinkStore,
    TargetChange,
)
from shared.sync.content import CUSTOMER_SOURCES, Mapped

# The CRM objects whose records the accounting side's changes reach: an invoice's or a
# payment's change moves its deals' standing and, through the balance, its customer's.
REACHES = {
    ObjectType.INVOICE: (ObjectType.DEAL, *CUSTOMER_SOURCES),
    ObjectType.PAYMENT: (ObjectType.DEAL, *CUSTOMER_SOURCES),
    ObjectType.CUSTOMER: CUSTOMER_SOURCES,
}

# How a CRM webhook about our own write back is audited (``BackSync.echoes``).
ECHO_OF_WRITE_BACK = "echo of our write back"


def digest(text: str | None) -> str:
    """A value as ``BackState`` keeps it (an empty value is a value: cleared)."""
    material = "\0" if text is None else f"={text}"
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def named_by(system: System, change: TargetChange) -> list[str]:
    """The target keys of the records a change names beside its own: a payment's
    invoices, and the customer whose standing moved with it."""
    named = [record_key(system, ObjectType.INVOICE, i) for i in change.invoice_ids]
    if change.customer_id is not None:
        named.append(record_key(system, ObjectType.CUSTOMER, change.customer_id))
    return named


def money_reach(
    links: LinkStore,
    connection_id: str,
    system: System,
    payment_id: str,
    change: TargetChange | None,
) -> list[str]:
    """The target keys a payment's (credit's, refund's) change reaches: what it names,
    and what its earlier changes named (``LinkStore.reach_of``). A deleted one may name
    nothing (a bare tombstone), and one applied elsewhere no longer names the invoice
    it left: their standing moved all the same. ``change``: None when the feed does not
    show it."""
    key = record_key(system, ObjectType.PAYMENT, payment_id)
    named = named_by(system, change) if change is not None else []
    remembered = links.reach_of(connection_id, key)
    if change is not None and not change.deleted and not remembered.issuperset(named):
        links.remember_reach(connection_id, key, named)  # once a record, not once a change
    return [*named, *sorted(remembered.difference(named))]


def back_key(
    connection_id: str, crm_key: str, state: BackState, values: Mapping[str, str | None]
) -> str:
    """The key of one back write: these values over this state of the record. A retry
    (lost answer, state not saved) sends the same key; the same values written later
    over another state (an edit undone) get another."""
    material = f"{connection_id}|{crm_key}|{state.revision}|{json.dumps(sorted(values.items()))}"
    return hashlib.sha256(material.encode()).hexdigest()[:40]


class Side(StrEnum):
    """Which value a two-way field takes."""

    AGREED = "agreed"  # both sides hold it
    CRM = "crm"  # the CRM's goes to the accounting system (forward)
    ACCOUNTING = "accounting"  # the accounting system's goes to the CRM (back)
    HELD = "held"  # both moved and the policy holds: reported, written neither way


def side_of(
    two_way: TwoWayField,
    crm: str | None,
    accounting: str | None,
    agreed: str | None,
    crm_newer: Callable[[], bool],
) -> Side:
    """The side whose value ``two_way`` takes, from the values on each side and the
    digest of the one they last agreed on (None: never agreed, so both count as moved).
    ``crm_newer`` is asked only when both moved under ``newest_wins``."""
    if crm == accounting:
        return Side.AGREED
    if digest(accounting) == agreed:
        return Side.CRM
    if digest(crm) == agreed:
        return Side.ACCOUNTING
    if two_way.conflict == "crm_wins":
        return Side.CRM
    if two_way.conflict == "accounting_wins":
        return Side.ACCOUNTING
    if two_way.conflict == "newest_wins":
        return Side.CRM if crm_newer() else Side.ACCOUNTING
    return Side.HELD


# Attempts of one record's way back when another invocation saves its back state first.
MARK_ATTEMPTS = 3
# How far before a webhook's time the change feed is read for its record.
WEBHOOK_CLOCK_SLACK_MS = 60_000


class _Contended(StaleWrite):
    """Another invocation saved the record's back state first; ``written``: the
    properties this one wrote meanwhile."""

    def __init__(self, written: frozenset[str]) -> None:
        super().__init__("back state was saved meanwhile")
        self.written = written


@dataclass(frozen=True)
class BackResult:
    """What became of one accounting record's way back: its audit entry's substance."""

    outcome: Outcome
    reason: str
    record_key: str  # the accounting record (or the event's, for a summary)
    crm_key: str | None = None  # the CRM record written to


@dataclass(frozen=True)
class Ahead:
    """A forward write settled against the accounting side first (two-way fields)."""

    content: Mapped  # what to write: the accounting side's value where it wins or holds
    source_key: str
    agreed: Mapping[str, str]  # property → digest of the value both hold, once written
    settled_digest: str  # the content's digest once the values it moves are agreed


Standing = InvoiceStanding | CustomerStanding


class BackSync:
    """Writes the accounting side's standing into the linked CRM records."""

    def __init__(
        self,
        *,
        connection_id: str,
        crm: CrmSource,
        writer: CrmWriter,
        ledger: AccountingLedger,
        mapper: Mapper,
        links: LinkStore,
        queue: EventQueue,
        clock: Callable[[], datetime],
    ) -> None:
        self.connection_id = connection_id
        self._crm = crm
        self._writer = writer
        self._ledger = ledger
        self._plan = mapper.back
        self._mapper = mapper
        self._links = links
        self._queue = queue
        self._clock = clock
        self._ensured: set[ObjectType] = set()  # properties made sure of, by this process

    def handles(self, object_type: ObjectType) -> bool:
        """Whether a change of this accounting object has anything to send back."""
        return any(self._plan.sends_back(crm) for crm in REACHES.get(object_type, ()))

    def sends_back(self, object_type: ObjectType) -> bool:
        return self._plan.sends_back(object_type)

    def echoes(self, event: ChangeEvent) -> bool:
        """Whether a CRM webhook announces the version our last write back left: it
        changed what the accounting side already holds, and nothing else."""
        if event.kind is not ChangeKind.UPDATED or not self._plan.sends_back(event.object_type):
            return False
        state = self._links.back_state(self.connection_id, event.record_key)
        return state is not None and state.crm_version == event.version

    # --- an accounting change ---------------------------------------------------------

    def apply(
        self, event: ChangeEvent, link: RecordLink | None
    ) -> tuple[BackResult, list[BackResult]]:
        """The event's own result, and those of the other records it reached (a
        payment's invoices; an invoice's or payment's customer), each for its own audit
        entry."""
        if event.object_type is ObjectType.CUSTOMER:
            if link is None:
                return self._unlinked(event), []
            return self._sync(link, accounting_ms=event.version), []
        change = self._change_of(event)
        if event.object_type is ObjectType.INVOICE:
            own = self._sync(link, accounting_ms=event.version) if link else self._unlinked(event)
            return own, self._reach(event, named_by(event.source, change) if change else [])
        keys = money_reach(self._links, self.connection_id, event.source, event.record_id, change)
        reached = self._reach(event, keys)
        if not reached:
            return BackResult(
                Outcome.SKIPPED, "applies to no invoice linked to a CRM record", event.record_key
            ), []
        summary = BackResult(
            Outcome.FORWARDED,
            "applied to " + ", ".join(r.record_key for r in reached),
            event.record_key,
        )
        return summary, reached

    def _unlinked(self, event: ChangeEvent) -> BackResult:
        return BackResult(Outcome.SKIPPED, "not linked to a CRM record", event.record_key)

    def _reach(self, event: ChangeEvent, target_keys: Sequence[str]) -> list[BackResult]:
        """Write back each linked record among these invoices and customers (a
        customer's: its company or contact, the record the deals invoice) that
        something flows back to."""
        links = [
            found
            for target_key in target_keys
            if (found := self._links.get_by_target(self.connection_id, target_key)) is not None
            and self._plan.sends_back(found.source_type)
        ]
        return [self._sync(found, accounting_ms=event.version) for found in links]

    def _change_of(self, event: ChangeEvent) -> TargetChange | None:
        """The event's entry in the change feed (a webhook names only the record): a
        payment's invoices, and the customer whose picture an invoice or payment moves.
        Asked only when something would be written from it."""
        wanted = event.object_type is ObjectType.PAYMENT or any(
            self._plan.sends_back(party) for party in CUSTOMER_SOURCES
        )
        if not wanted:
            return None
        # A minute before the event's time: no vendor documents that its webhook's time
        # is not after the record's change time, and the id picks the entry.
        since = event.version - WEBHOOK_CLOCK_SLACK_MS
        entries = [
            change
            for change in self._ledger.changed_since([event.object_type], since)
            if change.target_id == event.record_id
        ]
        # The newest (the feed is oldest first): the record as it is now, a deletion's
        # tombstone rather than what it was a moment before.
        return entries[-1] if entries else None

    # --- a forward write -----------------------------------------------------------------

    def ahead(self, record: SourceRecord, content: Mapped, link: RecordLink | None) -> Ahead:
        """Before ``record`` is written forward: each ``both`` field takes the side its
        policy gives it. The CRM's values that move make a write; where the accounting
        side's value wins or is held, that value is sent (the field stays as it is
        there) and the CRM gets it afterwards (``settle``)."""
        source_key = record_key(self._crm.system, record.object_type, record.id)
        fields = [f for f in self._plan.two_way(record.object_type) if f.direction == "both"]
        crm = {f.key: canonical_text(getattr(content.model, f.key)) for f in fields}
        standing = self._standing(link) if fields and link is not None else None
        if standing is None or link is None:  # nothing to settle against: a first write
            first = {f.prop: digest(crm[f.key]) for f in fields}
            return Ahead(content, source_key, first, content.digest)
        state = self._state(source_key)
        agreed: dict[str, str] = {}
        keep: dict[str, object] = {}
        moving: dict[str, str | None] = {}
        for f in fields:
            accounting = canonical_text(getattr(standing, f.key))
            side = side_of(
                f,
                crm[f.key],
                accounting,
                state.written.get(f.prop),
                lambda: record.version > self._accounting_time(link),
            )
            if side in (Side.AGREED, Side.CRM):
                agreed[f.prop] = digest(crm[f.key])
                if side is Side.CRM:
                    moving[f.key] = crm[f.key]
            else:
                keep[f.key] = getattr(standing, f.key)
        return Ahead(content.settled(keep, moving), source_key, agreed, content.digest)

    def settle(self, ahead: Ahead) -> list[BackResult]:
        """After the forward write of ``ahead``: the two-way values it sent are agreed,
        and what the accounting side holds now goes back (a total or balance the write
        changed, a value that wins there), to the record and, for a deal, to the party
        it invoices (its customer's balance moved with the invoice); the results where
        something was written or held. Asked even when nothing was written forward: a
        retry after the way back failed finds the forward write done."""
        link = self._links.get(self.connection_id, ahead.source_key)
        if link is None:
            return []
        if ahead.agreed:
            self._mark(self._state(ahead.source_key), ahead.agreed)
        if link.content_hash == ahead.content.digest != ahead.settled_digest:
            # The values it moved are agreed now: the link holds the content as any
            # later read of the record digests it.
            with suppress(StaleWrite):  # a newer write's link stands
                self._links.save(link.model_copy(update={"content_hash": ahead.settled_digest}))
        reached = [link]
        if ahead.content.customer is not None:
            party = self._links.get(
                self.connection_id, record_key(self._crm.system, *ahead.content.customer)
            )
            if party is not None and self._plan.sends_back(party.source_type):
                reached.append(party)
        results = [self._sync(found, accounting_ms=None) for found in reached]
        return [r for r in results if r.outcome is not Outcome.UNCHANGED]  # nothing to tell

    # --- one record ----------------------------------------------------------------------

    def _sync(self, link: RecordLink, *, accounting_ms: int | None) -> BackResult:
        """Write what changed of ``link``'s standing into its CRM record.

        ``accounting_ms``: when the accounting side changed, if known (else its change
        feed is asked, only for a ``newest_wins`` conflict).

        Two invocations may write one record at once (a company's picture, from two of
        its deals): the one whose back state is saved second may have written an older
        standing over a newer one, so it reads the standing again and writes what it
        wrote once more. After ``MARK_ATTEMPTS`` the ``StaleWrite`` goes to the queue."""
        doubted: frozenset[str] = frozenset()
        for _ in range(MARK_ATTEMPTS - 1):
            try:
                return self._sync_once(link, accounting_ms, doubted)
            except _Contended as contended:
                doubted |= contended.written
        return self._sync_once(link, accounting_ms, doubted)

    def _sync_once(
        self, link: RecordLink, accounting_ms: int | None, doubted: frozenset[str]
    ) -> BackResult:
        """One attempt of ``_sync``; ``doubted``: properties written again whatever the
        back state says."""
        object_type = link.source_type
        if not self._plan.sends_back(object_type):
            return BackResult(
                Outcome.SKIPPED, f"nothing flows back to a {object_type}", link.target_key
            )
        standing = self._standing(link)
        if standing is None:
            return BackResult(
                Outcome.SKIPPED,
                f"no longer in {self._ledger.system}",
                link.target_key,
                link.source_key,
            )
        self._ensure(object_type)
        state = self._state(link.source_key)
        writes: dict[str, str | None] = {}
        marks: dict[str, str] = {}

        def put(prop: str, value: str | None, mark: str) -> None:
            if prop in doubted or state.written.get(prop) != mark:
                writes[prop] = value
                marks[prop] = mark

        values = self._plan.values(object_type, standing)
        for prop, value in values.items():
            put(prop, value, digest(value))
        held: list[str] = []
        forward = False
        two_way = self._plan.two_way(object_type)
        crm, crm_version = self._crm_values(link, two_way)
        for f in two_way:
            accounting = canonical_text(getattr(standing, f.key))
            if f.direction != "both":
                put(f.prop, f.crm_text(accounting), digest(accounting))
                continue
            if f.key not in crm:  # the CRM record is gone or not mapped now
                continue
            side = side_of(
                f,
                crm[f.key],
                accounting,
                state.written.get(f.prop),
                lambda: crm_version > (accounting_ms or self._accounting_time(link)),
            )
            if side is Side.ACCOUNTING:
                put(f.prop, f.crm_text(accounting), digest(accounting))
            elif side is Side.AGREED:
                marks[f.prop] = digest(accounting)
            elif side is Side.CRM and state.written.get(f.prop) != digest(accounting):
                # Both moved and the CRM's value wins: taken as if the accounting side
                # had not moved, and the record sent forward again to write it there.
                marks[f.prop] = digest(accounting)
                forward = True
            elif side is Side.HELD:
                held.append(f"{f.prop} (CRM {crm[f.key]!r}, accounting {accounting!r})")
        written = None
        if writes:
            written = self._writer.write_properties(
                object_type,
                link.source_id,
                writes,
                idempotency_key=back_key(self.connection_id, link.source_key, state, writes),
            )
        try:
            self._mark(state, marks, crm_version=written)
        except StaleWrite:
            raise _Contended(frozenset(writes)) from None
        if forward:
            self._queue.send(
                [
                    ChangeEvent.found(
                        self.connection_id,
                        self._crm.system,
                        object_type,
                        link.source_id,
                        crm_version,
                        by="two-way",
                    )
                ]
            )
        return self._result(link, writes, held, [*values, *(f.prop for f in two_way)])

    def _result(
        self,
        link: RecordLink,
        writes: Mapping[str, str | None],
        held: list[str],
        props: list[str],
    ) -> BackResult:
        conflict = f"; conflict held: {', '.join(held)}" if held else ""
        if writes:
            reason = f"wrote {', '.join(writes)} to {link.source_key}{conflict}"
            return BackResult(Outcome.UPDATED, reason, link.target_key, link.source_key)
        if held:
            return BackResult(
                Outcome.SKIPPED,
                f"conflict held: {', '.join(held)}",
                link.target_key,
                link.source_key,
            )
        return BackResult(
            Outcome.UNCHANGED,
            f"no field sent back changed ({', '.join(props)})",
            link.target_key,
            link.source_key,
        )

    def _standing(self, link: RecordLink) -> Standing | None:
        today = self._clock().date()
        if link.target_type is ObjectType.INVOICE:
            return self._ledger.invoice_standing(link.target_id, today=today)
        if link.target_type is ObjectType.CUSTOMER:
            return self._ledger.customer_standing(link.target_id, today=today)
        return None

    def _crm_values(
        self, link: RecordLink, fields: tuple[TwoWayField, ...]
    ) -> tuple[dict[str, str | None], int]:
        """The CRM record's two-way values (canonical text) and its version; none when
        it is gone, or its mapping filters it out or finds it invalid now."""
        if not any(f.direction == "both" for f in fields):
            return {}, 0
        record = self._crm.fetch(link.source_type, link.source_id)
        if record is None:
            return {}, 0
        try:
            model = self._mapper.map(record)
        except RecordInvalid:
            return {}, record.version
        if isinstance(model, Filtered):
            return {}, record.version
        return {f.key: canonical_text(getattr(model, f.key)) for f in fields}, record.version

    def _accounting_time(self, link: RecordLink) -> int:
        """When the linked accounting record last changed since our last write to it."""
        since = link.target_changed_at_ms or 0
        return max(
            (
                change.changed_at_ms
                for change in self._ledger.changed_since([link.target_type], since)
                if change.target_id == link.target_id
            ),
            default=since,
        )

    def _ensure(self, object_type: ObjectType) -> None:
        if object_type not in self._ensured:
            properties = self._plan.properties(object_type)
            if properties:
                self._writer.ensure_properties(object_type, properties)
            self._ensured.add(object_type)

    def _state(self, source_key: str) -> BackState:
        found = self._links.back_state(self.connection_id, source_key)
        return found or BackState(connection_id=self.connection_id, source_key=source_key)

    def _mark(
        self, state: BackState, marks: Mapping[str, str], *, crm_version: int | None = None
    ) -> None:
        if crm_version is not None or any(
            state.written.get(prop) != mark for prop, mark in marks.items()
        ):
            update: dict[str, object] = {
                "written": {**state.written, **marks},
                "revision": state.revision + 1,
            }
            if crm_version is not None:
                update["crm_version"] = crm_version
            self._links.save_back_state(state.model_copy(update=update))
