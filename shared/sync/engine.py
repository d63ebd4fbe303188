"""The sync engine: one ChangeEvent in, target writes and exactly one audit entry out.

event → (echo/stale checks) → fetch → filter → map → compare content → match → write
→ link → audit

It knows canonical models and ports only. What it guarantees:

* **A deal with its line items is one unit.** A line item's change is handed to its
  deal (one message group per deal), so every write of one invoice happens in one
  group, one at a time.
* **Content decides.** A record whose mapped content (digest) equals what the link
  says was written is left alone, whatever its version; anything else is written.
* **Nothing duplicated.** An update's idempotency key is derived from the target
  record, the version it updates and the content, so a retry after a lost answer is
  answered by the vendor, and the same content written again later (an undone edit)
  gets a new key. A create is written down (``PendingCreate``) with a key of its own
  before it is sent; after a lost answer the next attempt repeats that very request
  and gets the record it made, even if the source was renamed meanwhile. Creates of
  one record are serialized by a lease on its link; customers are matched before one
  is made (by email only where the customer directory may hold it).
* **Order per record.** An event older than the newest version the last sync read
  (the record's or a child's) is skipped; reconcile's events, found because the
  content differs, never are.
* **Two-way only where the mapping says so.** What a mapping sends back is written
  into the CRM by ``BackSync`` (``shared/sync/backflow.py``), on the accounting side's
  changes and after each forward write, each such write audited under the accounting
  record's key; without a ledger and a CRM writer, the sync is one-way.
* **Bad records end, outages retry.** A mapping violation or a vendor's refusal is
  audited once with its reason and ends there; credentials refused, outages and bugs
  are audited and re-raised so the queue retries them and, in the end, dead-letters
  them.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import TypeVar

from pydantic import BaseModel

from shared.batch import BatchingTarget, BatchWrite
from shared.errors import (
    AlreadyExists,
    AuthFailed,
    NotFound,
    Permanent,
    RecordInvalid,
    StaleWrite,
    Violation,
)
from shared.mapping import Filtered, Mapper
from shared.models import (
    AuditEntry,
    ChangeEvent,
    ChangeKind,
    Deal,
    DealStatus,
    Invoice,
    InvoiceLine,
    LineItem,
    ObjectType,
    Outcome,
    Party,
    PendingCreate,
    RecordLink,
    SourceRecord,
)
from shared.models.events import record_key
from shared.models.links import utc_now
from shared.ports import (
    BY_DISPLAY_NAME,
    BY_DOC_NUMBER,
    AccountingLedger,
    AccountingTarget,
    AuditLog,
    CrmSource,
    CrmWriter,
    CustomerDirectory,
    CustomerListing,
    EventQueue,
    KnownCustomer,
    LinkStore,
    NewItem,
    TargetRef,
)
from shared.sync.backflow import ECHO_OF_WRITE_BACK, BackResult, BackSync
from shared.sync.content import Mapped, map_content
from shared.waiting import wait_for

M = TypeVar("M", bound=BaseModel)
Upsert = Callable[..., TargetRef]

# Creates of one source record are serialized by a lease: long enough for a create
# and its link, short enough that a crashed holder does not block the record long.
CREATE_LEASE_S = 60.0
CREATE_WAIT_S = 15.0
CREATE_POLL_S = 0.1
# How far the target's clock and ours may disagree, with the time a change takes to
# show in the target's listing: a directory refresh reads from this much earlier.
DIRECTORY_SKEW = timedelta(minutes=1)


def update_key(connection_id: str, source_key: str, base: TargetRef, digest: str) -> str:
    """The key of one update: this content over this version of this target record.

    A retry of the same update (lost answer) sends the same key and is answered by
    the vendor; the same content written over another version (an edit undone) gets
    another key. 40 hex characters: short enough for the vendors' idempotency fields.
    """
    material = f"{connection_id}|{source_key}|{base.id}@{base.version}|{digest}"
    return hashlib.sha256(material.encode()).hexdigest()[:40]


def item_key(connection_id: str, item: NewItem) -> str:
    """The key of an item's create, from all it sends: a retry is answered by the
    vendor; a line naming the item with another price sends another body under
    another key, and is refused as a duplicate that names the holder."""
    material = f"{connection_id}|item|{item.model_dump_json()}"
    return hashlib.sha256(material.encode()).hexdigest()[:40]


def no_customer() -> RecordInvalid:
    return RecordInvalid(
        [
            Violation(
                "associations",
                "required",
                "the deal has no associated company or contact to invoice",
            )
        ]
    )


def invoice_of(
    deal: Deal,
    customer_ref: str,
    item_ref: Callable[[LineItem], str | None],
    today: date | None,
) -> Invoice:
    """The invoice of a won deal for the target's customer ``customer_ref``, each line
    selling the item ``item_ref`` gives it. A deal without a close date is dated
    ``today`` when its invoice is made, and an update (``today`` None) leaves the
    invoice's date as it is: else every later day would move it."""
    if not deal.line_items:
        raise RecordInvalid([Violation("line_items", "required", "the deal has no line items")])
    lines = [
        InvoiceLine(
            name=item.name,
            item_ref=item_ref(item),
            description=item.description or item.name,
            quantity=item.quantity,
            unit_price=item.unit_price,
            discount_amount=item.discount_amount,
            tax_code=item.tax_code,
        )
        for item in deal.line_items
    ]
    return Invoice(
        customer_ref=customer_ref,
        currency=deal.currency,
        lines=lines,
        due_date=deal.due_date,
        payment_terms=deal.payment_terms,
        doc_number=deal.doc_number,
        memo=deal.memo or deal.name,
        custom_fields=deal.custom_fields,
        # Unset, not None, when there is no date to give: a selective write leaves it.
        **({"txn_date": dated} if (dated := deal.close_date or today) else {}),
    )


@dataclass(frozen=True)
class _Result:
    outcome: Outcome
    reason: str
    target_key: str | None = None
    field: str | None = None
    rule: str | None = None


# A forward sync that leaves the target holding the record's content.
_WRITTEN = {Outcome.CREATED, Outcome.UPDATED, Outcome.LINKED, Outcome.UNCHANGED}


@dataclass
class _Leased:
    """A record's create lease held, with its state read in the same write."""

    link: RecordLink | None
    pending: PendingCreate | None
    saved: bool = False  # a link was saved, which ended the lease

    def ended_by(self, done: tuple[_Result, TargetRef]) -> tuple[_Result, TargetRef]:
        """What the create came to; these outcomes saved the link, ending the lease."""
        self.saved = done[0].outcome in (Outcome.CREATED, Outcome.UPDATED, Outcome.LINKED)
        return done


@dataclass(frozen=True)
class Triage:
    """What an event comes to by what is stored alone (``SyncEngine.triage``).

    ``settled``: its audit entry, when it needs no write anywhere (our own echo, an
    event older than what was applied, a deletion that is kept); handling it twice
    writes nothing twice, so it needs no idempotency record. Otherwise ``link``, the
    link read to decide, which ``SyncEngine.handle`` uses rather than read it again,
    and ``writes``: whether handling it may write to a vendor. One that may not (a line
    item's change, handed to its deal as an event whose id derives from its own)
    needs no idempotency record either.
    """

    settled: AuditEntry | None = None
    link: RecordLink | None = None
    writes: bool = True


def _back_result(back: BackResult) -> _Result:
    return _Result(back.outcome, back.reason, target_key=back.crm_key)


class SyncEngine:
    def __init__(
        self,
        *,
        connection_id: str,
        crm: CrmSource,
        ledger: AccountingTarget,
        mapper: Mapper,
        links: LinkStore,
        audit: AuditLog,
        queue: EventQueue,
        clock: Callable[[], datetime] = utc_now,
        standings: AccountingLedger | None = None,
        crm_writer: CrmWriter | None = None,
        directory: CustomerDirectory | None = None,
    ) -> None:
        """``standings`` and ``crm_writer``: the two sides' two-way abilities; without
        both, the sync is one-way whatever the mapping sends back. ``directory``: the
        target's customer emails, kept where the target lists its customers
        (``CustomerListing``); without it, every customer create looks up its email."""
        self.connection_id = connection_id
        self._crm = crm
        self._ledger = ledger
        self._mapper = mapper
        self._links = links
        self._audit = audit
        self._queue = queue
        self._clock = clock
        self._listing = ledger if isinstance(ledger, CustomerListing) else None
        self._directory = directory if self._listing is not None else None
        self._back = (
            BackSync(
                connection_id=connection_id,
                crm=crm,
                writer=crm_writer,
                ledger=standings,
                mapper=mapper,
                links=links,
                queue=queue,
                clock=clock,
            )
            if standings is not None and crm_writer is not None
            else None
        )

    def triage(self, event: ChangeEvent) -> Triage:
        """Decide ``event`` from what is stored, when that is enough (audited then)."""
        settled, link = self._settle(event)
        if settled is not None:
            return Triage(settled=self._record(event, settled))
        hands_on = event.source == self._crm.system and event.object_type is ObjectType.LINE_ITEM
        return Triage(link=link, writes=not hands_on)

    def handle(self, event: ChangeEvent, triage: Triage | None = None) -> AuditEntry:
        """Apply one event. Returns its audit entry; re-raises what a retry may cure.
        ``triage``: this event's, unsettled, when it was triaged first."""
        try:
            result = self._dispatch(event, triage)
        except RecordInvalid as invalid:
            first = invalid.violations[0]
            result = _Result(Outcome.INVALID, str(invalid), field=first.field, rule=first.rule)
        except AuthFailed as error:
            # Credentials refused: a person re-authorizes, then the message is redriven.
            self._record(event, _Result(Outcome.FAILED, f"{type(error).__name__}: {error}"))
            raise
        except Permanent as refusal:
            # The vendor refused this record and would refuse it again: said once, kept.
            result = _Result(
                Outcome.REJECTED, f"{type(refusal).__name__}: {refusal}", rule=refusal.code
            )
        except Exception as error:
            # Outages and bugs alike: audited, then retried by the queue and finally
            # dead-lettered. Messages name ids, never credentials.
            self._record(event, _Result(Outcome.FAILED, f"{type(error).__name__}: {error}"))
            raise
        return self._record(event, result)

    def backfill(self) -> Backfill:
        """A backfill run's batch writer: records it can create in the target's batches
        are created there, the rest are left for the one-by-one path."""
        return Backfill(self)

    # --- routing ----------------------------------------------------------------

    def _dispatch(self, event: ChangeEvent, triage: Triage | None) -> _Result:
        if triage is None:
            settled, link = self._settle(event)
            if settled is not None:
                return settled
        else:
            assert triage.settled is None, "a settled event is not handled"
            link = triage.link
        if event.source != self._crm.system:
            return self._target_event(event, link)
        if event.object_type is ObjectType.LINE_ITEM:
            return self._hand_to_deal(event)
        record = self._crm.fetch(event.object_type, event.record_id)
        if record is None:
            return _Result(Outcome.SKIPPED, "the record no longer exists in the CRM")
        content = map_content(self._mapper, record)
        if isinstance(content, Filtered):
            return _Result(Outcome.SKIPPED, f"filtered: {content.reason}")
        if self._back is None or not self._back.sends_back(record.object_type):
            return self._sync_content(event, record, content, link)
        ahead = self._back.ahead(record, content, link)
        result = self._sync_content(event, record, ahead.content, link)
        if result.outcome in _WRITTEN:
            for back in self._back.settle(ahead):
                self._record(event, _back_result(back), key=back.record_key)
        return result

    def _sync_content(
        self, event: ChangeEvent, record: SourceRecord, content: Mapped, link: RecordLink | None
    ) -> _Result:
        if isinstance(content.model, Party):
            result, _ = self._sync_party(record, content, link)
            return result
        return self._sync_deal(event, record, content, link)

    def _hand_to_deal(self, event: ChangeEvent) -> _Result:
        """A line item is invoiced through its deal: its change becomes an event of the
        deal, in the deal's message group, so one invoice is only ever written by one
        invocation at a time and the content of the whole deal decides."""
        if event.kind is ChangeKind.DELETED:
            # A deleted line item can no longer be read: its deal is the one that
            # last invoiced it.
            parent = self._links.parent_of(self.connection_id, event.record_key)
            deals = [parent.rpartition(":")[2]] if parent else []
        else:
            item = self._crm.fetch(ObjectType.LINE_ITEM, event.record_id)
            deals = item.associations.get(ObjectType.DEAL, []) if item else []
        if not deals:
            return _Result(Outcome.SKIPPED, "the line item belongs to no deal")
        handed = [
            ChangeEvent(
                connection_id=event.connection_id,
                source=event.source,
                object_type=ObjectType.DEAL,
                record_id=deal_id,
                event_id=_derived_id(event.event_id, f"deal:{deal_id}"),
                kind=ChangeKind.ASSOCIATION,
                occurred_at=event.occurred_at,
                version=event.version,
            )
            for deal_id in deals
        ]
        self._queue.send(handed)
        return _Result(Outcome.FORWARDED, "handed to " + ", ".join(e.record_key for e in handed))

    def _settle(self, event: ChangeEvent) -> tuple[_Result | None, RecordLink | None]:
        """The event's result when what is stored decides it, and the link read: the
        CRM record's (by source), or the accounting record's (by target)."""
        if event.source != self._crm.system:
            target_key = record_key(event.source, event.object_type, event.record_id)
            link = self._links.get_by_target(self.connection_id, target_key)
            if (
                link is not None
                and event.kind is not ChangeKind.DELETED
                and link.target_changed_at_ms is not None
                and event.version <= link.target_changed_at_ms
            ):
                # Recognised from what our write returned, not by reading the record back.
                echo = _Result(Outcome.SKIPPED, "echo of our own write", link.source_key)
                return echo, link
            return None, link
        if event.object_type is ObjectType.LINE_ITEM:
            return None, None
        if not self._mapper.handles(event.object_type):
            return _Result(
                Outcome.SKIPPED, f"the mapping has no section for {event.object_type}"
            ), None
        if self._back is not None and self._back.echoes(event):
            # Recognised from what our write returned, not by reading the record back.
            return _Result(Outcome.SKIPPED, ECHO_OF_WRITE_BACK), None
        if event.kind is ChangeKind.DELETED:
            return _Result(
                Outcome.SKIPPED, "deletions are not propagated: accounting records are kept"
            ), None
        link = self._links.get(self.connection_id, event.record_key)
        if (
            link is not None
            and event.kind is not ChangeKind.RECONCILE
            and event.version < link.source_version
        ):
            # Every sync reads the record as it is now: what this event changed was
            # read by the sync that applied the newer version. A reconcile event names
            # no change: it was found because the content differs now.
            return _Result(
                Outcome.SKIPPED,
                f"stale event: version {event.version} is older than the applied "
                f"{link.source_version}",
                target_key=link.target_key,
            ), link
        return None, link

    def _target_event(self, event: ChangeEvent, link: RecordLink | None) -> _Result:
        """A change in the accounting system, not our own echo: what the mapping sends
        back goes to the CRM records it reaches (two-way fields are opt-in)."""
        if event.object_type is ObjectType.CUSTOMER and event.kind is not ChangeKind.DELETED:
            self._customer_changed(event)
        if self._back is not None and self._back.handles(event.object_type):
            result, reached = self._back.apply(event, link)
            for back in reached:
                self._record(event, _back_result(back), key=back.record_key)
            return _back_result(result)
        return _Result(
            Outcome.SKIPPED,
            f"no two-way fields configured for {event.source} {event.object_type}",
            target_key=link.source_key if link else None,
        )

    # --- parties → customers ------------------------------------------------------

    def _sync_party(
        self, record: SourceRecord, content: Mapped, link: RecordLink | None
    ) -> tuple[_Result, TargetRef]:
        party = content.model
        assert isinstance(party, Party)
        checked = self._ledger.checked_on_create
        result, ref = self._write(
            record,
            link,
            ObjectType.CUSTOMER,
            content.digest,
            lambda: party,
            self._ledger.upsert_customer,
            describe=f"customer ({party.display_name})",
            match=lambda: self._ledger.find_customer(
                email=self._email_to_look_up(party.email),
                # A target with unique names finds the holder on create instead.
                display_name=None if BY_DISPLAY_NAME in checked else party.display_name,
            ),
            match_rule=f"email or {BY_DISPLAY_NAME}",
        )
        if result.outcome in (Outcome.CREATED, Outcome.LINKED, Outcome.UPDATED):
            # Our own write's webhook is an echo and refreshes nothing: noted here.
            self._note_email(party)
        return result, ref

    # --- the target's customers, by email ------------------------------------------

    def refresh_directory(self) -> None:
        """Bring the customer directory up to the target's listing: all of it the first
        time, then what changed since the last refresh began (``DIRECTORY_SKEW`` before)."""
        if self._directory is None or self._listing is None:
            return
        self._refresh(self._directory.filled_at(self.connection_id))

    def _refresh(self, filled: datetime | None) -> None:
        """``refresh_directory`` from ``filled``, the directory's last fill as read."""
        assert self._directory is not None
        started = self._clock()
        since = filled - DIRECTORY_SKEW if filled is not None else None
        self._add_listed(since)
        if filled is None:
            # A whole listing takes a while, and its pages are read by position: what
            # changed while it was read (created, renamed) is read again, as are the
            # target's notices it left to this first fill.
            self._add_listed(started - DIRECTORY_SKEW)
        self._directory.mark_filled(self.connection_id, started)

    def _add_listed(self, since: datetime | None) -> None:
        assert self._directory is not None and self._listing is not None
        customers = self._listing.known_customers(changed_since=since)
        self._directory.add(self.connection_id, (c.email.casefold() for c in customers if c.email))

    def _note_email(self, party: Party) -> None:
        """A customer made, linked or updated for ``party`` holds its email: another
        party with that email is then matched to it, as a lookup would have found."""
        if party.email and self._directory is not None:
            self._directory.add(self.connection_id, [party.email.casefold()])

    def _email_to_look_up(self, email: str | None) -> str | None:
        """``email``, unless the directory knows that no customer holds it."""
        if email is None or self._directory is None:
            return email
        held = self._directory.holds(self.connection_id, email.casefold())
        return None if held is False else email

    def _customer_changed(self, event: ChangeEvent) -> None:
        """A customer changed in the target, not by us: its email may be new to the
        directory. A directory never filled is left to the reconcile's first fill (a
        whole listing is no work for one event); one filled since the change was read
        by then."""
        if self._directory is None:
            return
        filled = self._directory.filled_at(self.connection_id)
        changed = datetime.fromtimestamp(event.version / 1000, UTC)
        if filled is None or changed < filled - DIRECTORY_SKEW:
            return
        self._refresh(filled)

    def _ensure_customer(
        self, event: ChangeEvent, deal_key: str, party: tuple[ObjectType, str]
    ) -> str:
        """The target id of the customer a deal is invoiced to, creating it if needed.

        Its own step with its own audit entry (the party's record key, this event's id).
        """
        object_type, party_id = party
        key = record_key(self._crm.system, object_type, party_id)
        link = self._links.get(self.connection_id, key)
        if link is not None and link.target_type is ObjectType.CUSTOMER:
            return link.target_id
        field = f"associations.{object_type}"
        record = self._crm.fetch(object_type, party_id)
        if record is None:
            raise RecordInvalid(
                [Violation(field, "customer", f"{key} no longer exists in the CRM")]
            )
        try:
            content = map_content(self._mapper, record)
        except RecordInvalid as invalid:
            raise RecordInvalid(
                [replace(v, field=f"{field}.{v.field}") for v in invalid.violations]
            ) from None
        if isinstance(content, Filtered):
            raise RecordInvalid([Violation(field, "customer", f"{key} {content.reason}")])
        result, ref = self._sync_party(record, content, None)
        self._record(
            event,
            replace(result, reason=f"customer of {deal_key}: {result.reason}"),
            key=key,
            version=record.version,
        )
        return ref.id

    # --- deals → invoices ---------------------------------------------------------

    def _sync_deal(
        self, event: ChangeEvent, record: SourceRecord, content: Mapped, link: RecordLink | None
    ) -> _Result:
        deal = content.model
        assert isinstance(deal, Deal)
        if deal.status is not DealStatus.WON:
            return _Result(Outcome.SKIPPED, f"deal is {deal.status}, only won deals are invoiced")
        customer = content.customer
        if customer is None:
            raise no_customer()
        deal_key = record_key(self._crm.system, ObjectType.DEAL, record.id)
        # An invoice made outside this service (or before a link was kept) with the
        # deal's number is updated rather than duplicated; a target that refuses a
        # taken number names its holder on create, with no lookup first.
        match = None
        if deal.doc_number and BY_DOC_NUMBER not in self._ledger.checked_on_create:
            match = partial(self._ledger.find_invoice, deal.doc_number)
        result, _ = self._write(
            record,
            link,
            ObjectType.INVOICE,
            content.digest,
            lambda: self._invoice_for(
                deal, self._ensure_customer(event, deal_key, customer), new=link is None
            ),
            self._ledger.upsert_invoice,
            describe=f"invoice for {deal.name}",
            match=match,
            match_rule=BY_DOC_NUMBER,
        )
        return result

    def _invoice_for(self, deal: Deal, customer_ref: str, *, new: bool = True) -> Invoice:
        today = self._clock().date() if new else None
        return invoice_of(deal, customer_ref, self._item_ref, today)

    def _item_ref(self, line: LineItem) -> str | None:
        """The target's item for a line. With the mapping's ``items.create_missing``, one
        the target lacks is created (once: the key names the item, and a name already
        held gives its holder); without it, the target writes the line without an item
        or refuses it, naming the item and that setting."""
        found = self._ledger.find_item(name=line.name, sku=line.sku)
        settings = self._mapper.items
        if found is not None or not settings.create_missing:
            return found
        item = NewItem(
            name=line.name,
            sku=line.sku,
            description=line.description,
            unit_price=line.unit_price,
            income_account=settings.income_account,
        )
        try:
            return self._ledger.create_item(
                item, idempotency_key=item_key(self.connection_id, item)
            )
        except AlreadyExists as taken:
            return taken.holder.id

    # --- writing ------------------------------------------------------------------

    def _write(
        self,
        record: SourceRecord,
        link: RecordLink | None,
        target_type: ObjectType,
        digest: str,
        build: Callable[[], M],
        upsert: Upsert,
        *,
        describe: str,
        match: Callable[[], TargetRef | None] | None,
        match_rule: str,
    ) -> tuple[_Result, TargetRef]:
        """Write what ``build`` makes as the linked target record, or a new or matched one.

        Nothing is built (no lookups in the target) when the content is unchanged.
        """
        if link is None or link.target_type is not target_type:
            return self._create(
                record,
                target_type,
                digest,
                build(),
                upsert,
                describe,
                match,
                match_rule,
                stale=None,
            )
        if link.holds(digest):
            return self._unchanged(link, describe)
        model = build()
        ref = self._update(link, model, digest, upsert)
        if ref is not None:
            return self._linked(
                record, target_type, ref, digest, Outcome.UPDATED, describe, previous=link
            )
        # Deleted in the target system: made anew (a person deleted it on purpose
        # would also delete or unlink the CRM record; the CRM is the source of truth).
        return self._create(
            record, target_type, digest, model, upsert, describe, None, "", stale=link
        )

    def _update(
        self, link: RecordLink, model: BaseModel, digest: str, upsert: Upsert
    ) -> TargetRef | None:
        """Update the linked record over the version we left it at; None when it is gone.

        The connector re-reads the version itself if someone edited it since (the
        vendor refuses a write over a stale version).
        """
        base = (
            TargetRef(id=link.target_id, version=link.target_version)
            if link.target_version
            else self._ledger.current(link.target_type, link.target_id)
        )
        if base is None:
            return None
        # Written down first: if the answer is lost, the next attempt must not take the
        # link's old content for what the target holds (an edit undone meanwhile).
        self._links.mark_writing(self.connection_id, link.source_key, digest)
        try:
            return upsert(
                model,
                existing=base,
                idempotency_key=update_key(self.connection_id, link.source_key, base, digest),
            )
        except NotFound:
            return None

    def _create(
        self,
        record: SourceRecord,
        target_type: ObjectType,
        digest: str,
        model: M,
        upsert: Upsert,
        describe: str,
        match: Callable[[], TargetRef | None] | None,
        match_rule: str,
        *,
        stale: RecordLink | None,
    ) -> tuple[_Result, TargetRef]:
        """Create (or match) the target record of ``record``, once, whatever happens.

        Under the record's create lease, so two invocations (a company's own event and
        a deal that needs it as its customer) cannot both create it; ``stale`` is the
        link to a record deleted in the target, which does not count as created.
        """
        source_key = record_key(self._crm.system, record.object_type, record.id)
        with self._create_lease(source_key) as leased:
            link, pending = leased.link, leased.pending
            created_since = stale is None or (
                link is not None and link.target_id != stale.target_id
            )
            if link is not None and link.target_type is target_type and created_since:
                # The invocation that held the lease before us created it.
                if link.holds(digest):
                    return leased.ended_by(self._unchanged(link, describe))
                ref = self._update(link, model, digest, upsert)
                if ref is not None:
                    return leased.ended_by(
                        self._linked(
                            record,
                            target_type,
                            ref,
                            digest,
                            Outcome.UPDATED,
                            describe,
                            previous=link,
                        )
                    )
            if pending is None or pending.target_type is not target_type:
                found = match() if match else None
                if found is not None:
                    return leased.ended_by(
                        self._take(
                            record, target_type, found, digest, model, upsert, describe, match_rule
                        )
                    )
                pending = PendingCreate(
                    connection_id=self.connection_id,
                    source_key=source_key,
                    target_type=target_type,
                    idempotency_key=uuid.uuid4().hex,
                    body=model.model_dump_json(exclude_unset=True),
                    content_hash=digest,
                    source_version=record.version,
                    created_at=self._clock(),
                )
                self._links.put_pending_create(pending)
            try:
                ref = self._repeat(pending, model, upsert)
            except AlreadyExists as taken:
                # The create found what a lookup would have: taken the same way.
                return leased.ended_by(
                    self._take(
                        record,
                        target_type,
                        taken.holder,
                        digest,
                        model,
                        upsert,
                        describe,
                        taken.rule,
                    )
                )
            if pending.content_hash != digest:
                # The repeated create wrote the content of its first attempt.
                ref = upsert(
                    model,
                    existing=ref,
                    idempotency_key=update_key(self.connection_id, source_key, ref, digest),
                )
            return leased.ended_by(
                self._linked(
                    record, target_type, ref, digest, Outcome.CREATED, describe, previous=link
                )
            )

    @contextmanager
    def _create_lease(self, source_key: str) -> Iterator[_Leased]:
        """The record's create lease, waited for up to ``CREATE_WAIT_S``, with the
        record's state read in the same write; released on the way out unless a link
        was saved (which ends it)."""
        owner = uuid.uuid4().hex
        state = wait_for(
            lambda: self._links.claim_create(
                self.connection_id,
                source_key,
                owner,
                now=self._clock().timestamp(),
                lease_s=CREATE_LEASE_S,
            ),
            what=f"create:{self.connection_id}:{source_key}",
            wait_s=CREATE_WAIT_S,
            poll_s=CREATE_POLL_S,
        )
        leased = _Leased(state.link, state.pending)
        try:
            yield leased
        finally:
            if not leased.saved:
                self._links.release_create(self.connection_id, source_key, owner)

    def _take(
        self,
        record: SourceRecord,
        target_type: ObjectType,
        found: TargetRef,
        digest: str,
        model: BaseModel,
        upsert: Upsert,
        describe: str,
        match_rule: str,
    ) -> tuple[_Result, TargetRef]:
        """Link ``record`` to a target record matched by ``match_rule`` and write it."""
        source_key = record_key(self._crm.system, record.object_type, record.id)
        self._check_unclaimed(target_type, found, source_key, match_rule)
        ref = upsert(
            model,
            existing=found,
            idempotency_key=update_key(self.connection_id, source_key, found, digest),
        )
        return self._linked(record, target_type, ref, digest, Outcome.LINKED, describe)

    def _repeat(self, pending: PendingCreate, model: M, upsert: Upsert) -> TargetRef:
        """Send the written-down create: the first time, or again after a lost answer
        (same key, same body: the vendor answers with the record it made)."""
        sent = type(model).model_validate_json(pending.body)
        try:
            return upsert(sent, existing=None, idempotency_key=pending.idempotency_key)
        except (Permanent, RecordInvalid):
            # Refused by the vendor or by the connector before sending: nothing was
            # made, and the same body would be refused again. The next attempt starts
            # afresh from the record as it is then.
            self._links.drop_pending_create(self.connection_id, pending.source_key)
            raise

    @staticmethod
    def _unchanged(link: RecordLink, describe: str) -> tuple[_Result, TargetRef]:
        ref = TargetRef(id=link.target_id, version=link.target_version or "")
        return _Result(
            Outcome.UNCHANGED, f"{describe}: no mapped field changed", link.target_key
        ), ref

    def _linked(
        self,
        record: SourceRecord,
        target_type: ObjectType,
        ref: TargetRef,
        digest: str,
        outcome: Outcome,
        describe: str,
        *,
        previous: RecordLink | None = None,
    ) -> tuple[_Result, TargetRef]:
        target_key = self._target_key(target_type, ref)
        if not self._save_link(record, target_type, ref, digest, previous):
            return _Result(
                Outcome.SKIPPED, "a newer version was applied meanwhile", target_key
            ), ref
        return _Result(outcome, f"{describe} {ref.id}", target_key), ref

    # --- links and audit ------------------------------------------------------------

    def _check_unclaimed(
        self, target_type: ObjectType, found: TargetRef, source_key: str, rule: str
    ) -> None:
        """A matched target record linked to another source record is not taken over:
        two CRM records would overwrite one customer (or invoice) in turn."""
        other = self._links.get_by_target(self.connection_id, self._target_key(target_type, found))
        if other is not None and other.source_key != source_key:
            raise RecordInvalid(
                [
                    Violation(
                        rule,
                        "unique_match",
                        f"{self._ledger.system} {target_type} {found.id} matched by {rule} "
                        f"is already linked to {other.source_key}",
                    )
                ]
            )

    def _save_link(
        self,
        record: SourceRecord,
        target_type: ObjectType,
        ref: TargetRef,
        digest: str,
        previous: RecordLink | None,
    ) -> bool:
        """Save the link of what was written; the children's way back to ``record``
        (``set_parent``) first, and only when they changed since ``previous``: a
        crash between the two then leaves them set, never the link saying so falsely.

        The version saved never goes below ``previous``'s: this sync read after the one
        that saved it, even when a child it counted has gone since.
        """
        children = sorted(
            record_key(self._crm.system, child.object_type, child.id)
            for kids in record.children.values()
            for child in kids
        )
        children_digest = (
            hashlib.sha256("|".join(children).encode()).hexdigest()[:16] if children else None
        )
        if children and (previous is None or previous.children_digest != children_digest):
            self._links.set_parent(
                self.connection_id,
                children,
                record_key(self._crm.system, record.object_type, record.id),
            )
        link = RecordLink(
            connection_id=self.connection_id,
            source=self._crm.system,
            source_type=record.object_type,
            source_id=record.id,
            target=self._ledger.system,
            target_type=target_type,
            target_id=ref.id,
            source_version=max(_read_version(record), previous.source_version if previous else 0),
            target_version=ref.version,
            target_changed_at_ms=ref.changed_at_ms,
            content_hash=digest,
            children_digest=children_digest,
            updated_at=self._clock(),
        )
        try:
            self._links.save(link)
        except StaleWrite:
            return False
        return True

    def _target_key(self, target_type: ObjectType, ref: TargetRef) -> str:
        return record_key(self._ledger.system, target_type, ref.id)

    def _record(
        self,
        event: ChangeEvent,
        result: _Result,
        *,
        key: str | None = None,
        version: int | None = None,
    ) -> AuditEntry:
        """The audit entry of ``event``, or of a record it acted on (``key`` at
        ``version``, e.g. the customer a deal needed)."""
        entry = AuditEntry(
            connection_id=self.connection_id,
            record_key=key or event.record_key,
            event_id=event.event_id,
            outcome=result.outcome,
            reason=result.reason,
            field=result.field,
            rule=result.rule,
            target_key=result.target_key,
            source_version=event.version if version is None else version,
            at=self._clock(),
        )
        self._audit.record(entry)
        return entry


class Backfill:
    """Creates unlinked records through the target's batch writes (``BatchingTarget``).

    Only where a batch is as safe as a single create: the target refuses a duplicate
    of the record's key (``checked_on_create``: a customer's name, an invoice's
    number), so a batch whose answer never came back is not written twice: the next
    attempt, one by one, is refused with ``AlreadyExists`` and links what the batch
    made. A party whose email or name a customer already has, a deal whose customer is
    not linked yet, a record with a link or a create in flight, an invalid record and
    every write the target refused are left to the one-by-one path, which matches,
    audits and explains them as it always does. The target's customers are read once
    per run (``known_customers``), not looked up per record.
    """

    def __init__(self, engine: SyncEngine) -> None:
        self._engine = engine
        # Names and emails (casefolded) of the target's customers and of the parties
        # this run batched: a party holding one is left to the matching path.
        self._known: set[str] | None = None
        ledger = engine._ledger
        self.size = ledger.batch_max_items if isinstance(ledger, BatchingTarget) else 1

    def __call__(self, records: Sequence[SourceRecord]) -> list[SourceRecord]:
        """Write what can be batched; return the records left for the queue."""
        ledger = self._engine._ledger
        if not isinstance(ledger, BatchingTarget):
            return list(records)
        left: list[SourceRecord] = []
        planned: list[tuple[SourceRecord, Mapped, BatchWrite]] = []
        for record in records:
            plan = self._plan(record, ledger)
            if plan is None:
                left.append(record)
            else:
                planned.append((record, *plan))
        if planned:
            results = ledger.batch_upsert([write for _, _, write in planned])
            for (record, content, write), result in zip(planned, results, strict=True):
                if isinstance(result, TargetRef):
                    self._created(record, content, write, result)
                else:  # refused or unanswered: the single path writes it and says why
                    left.append(record)
        return left

    def _plan(
        self, record: SourceRecord, ledger: BatchingTarget
    ) -> tuple[Mapped, BatchWrite] | None:
        engine = self._engine
        key = record_key(engine._crm.system, record.object_type, record.id)
        checked = engine._ledger.checked_on_create
        if any(engine._links.state(engine.connection_id, key)):
            return None
        try:
            content = map_content(engine._mapper, record)
        except RecordInvalid:
            return None
        if isinstance(content, Filtered):
            return None
        model = content.model
        if isinstance(model, Party):
            if BY_DISPLAY_NAME not in checked or self._matches(ledger, model):
                return None
            self._known_now(ledger).update(_match_keys(model))
            write = BatchWrite.customer(model, idempotency_key=uuid.uuid4().hex)
            return content, write
        assert isinstance(model, Deal)
        if model.status is not DealStatus.WON or content.customer is None:
            return None
        if not model.doc_number or BY_DOC_NUMBER not in checked:
            return None
        party_type, party_id = content.customer
        party = engine._links.get(
            engine.connection_id, record_key(engine._crm.system, party_type, party_id)
        )
        if party is None or party.target_type is not ObjectType.CUSTOMER:
            return None
        try:
            invoice = engine._invoice_for(model, party.target_id)
        except RecordInvalid:
            return None
        return content, BatchWrite.invoice(invoice, idempotency_key=uuid.uuid4().hex)

    def _matches(self, ledger: BatchingTarget, party: Party) -> bool:
        """Whether a customer, or a party batched before it, has its email or name."""
        return not self._known_now(ledger).isdisjoint(_match_keys(party))

    def _known_now(self, ledger: BatchingTarget) -> set[str]:
        if self._known is None:
            self._known = {
                key for customer in ledger.known_customers() for key in _match_keys(customer)
            }
        return self._known

    def _created(
        self, record: SourceRecord, content: Mapped, write: BatchWrite, ref: TargetRef
    ) -> None:
        engine = self._engine
        describe = "customer" if write.object_type is ObjectType.CUSTOMER else "invoice"
        if isinstance(write.record, Party):
            engine._note_email(write.record)
        result, _ = engine._linked(
            record, write.object_type, ref, content.digest, Outcome.CREATED, f"{describe} (batch)"
        )
        event = ChangeEvent.found(
            engine.connection_id,
            engine._crm.system,
            record.object_type,
            record.id,
            record.version,
            by="backfill",
        )
        engine._record(event, result)


def _match_keys(party: Party | KnownCustomer) -> set[str]:
    """What a party is matched to a customer by: its name and its email, casefolded."""
    return {key.casefold() for key in (party.display_name, party.email) if key}


def _read_version(record: SourceRecord) -> int:
    """The newest change this read of ``record`` saw: its own or a child's.

    A line item's change does not move its deal's version, so its event (handed to
    the deal) is only recognised as already read through the line item's version.
    """
    children = [child.version for kids in record.children.values() for child in kids]
    return max([record.version, *children])


def _derived_id(event_id: str, suffix: str) -> str:
    """An event id for work derived from ``event_id``; within ChangeEvent's 256 chars."""
    derived = f"{event_id}>{suffix}"
    if len(derived) <= 256:
        return derived
    return f"{hashlib.sha256(event_id.encode()).hexdigest()}>{suffix}"[:256]
