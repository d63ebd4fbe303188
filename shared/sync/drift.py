"""Drift: where the two systems disagree although the sync believes them agreed.

Reconciliation catches a CRM change no webhook announced; it trusts the links for the
rest. Someone can still edit, delete or void a record in the accounting system, or a
write back to the CRM can be lost or overwritten. The drift check reads both sides:

* the records to look at: the CRM's changes, the CRM's deletions of linked records and
  the accounting system's change feed since their own watermarks (a little overlap
  before each; a payment there reaches its invoices and customer, a deleted one those
  it reached before, ``money_reach``), and every record of the previous run's
  findings, so a finding still there is seen again (``persistent``);
* for each, what the sync would write (the preview's payload, ``Previewer.recheck``)
  against what the target holds, field by field; an invoice's total against the
  deal's lines; each two-way and ``back`` field against where the accounting record
  stands (``AccountingLedger``) and what the way back last left (``BackState``).

What the mapping's policy lets the sync repair is put back on the queue, as reconcile
does, and the normal sync repairs it: a one-way field always (the link is marked as
in doubt first, so the sync writes instead of trusting it), a two-way field unless
its conflict policy holds it. The rest is reported: a record deleted in the CRM
(deletions are not propagated), a voided invoice, a held conflict. Each connection's
newest report is kept (``DriftStore``) with its findings, which the next run marks
persistent when it finds them again: that is what the alarm watches.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation

from pydantic import BaseModel

from shared.errors import RecordInvalid
from shared.mapping import Filtered, Mapper
from shared.mapping.back import canonical_text
from shared.models import (
    BackState,
    ChangeEvent,
    Connection,
    Deal,
    InvoiceStatus,
    ObjectType,
    RecordLink,
    SourceRecord,
    TaxTreatment,
)
from shared.models.drift import Done, DriftKind, DriftReport, Finding
from shared.models.events import record_key, split_record_key
from shared.money import minor_units, round_half_up
from shared.ports import (
    AccountingLedger,
    AccountingTarget,
    CrmSource,
    CursorStore,
    DriftMetrics,
    DriftStore,
    EventQueue,
    LinkStore,
    TargetChange,
)
from shared.sync.backflow import Side, digest, money_reach, named_by, side_of
from shared.sync.content import Mapped, map_content
from shared.sync.preview import Action, Previewer

# The CRM records a drift check compares (line items are compared with their deals).
CHECKED_TYPES = (ObjectType.COMPANY, ObjectType.CONTACT, ObjectType.DEAL)
# The accounting changes that can make a linked record drift (a payment: its invoices).
FEED_TYPES = (ObjectType.CUSTOMER, ObjectType.INVOICE, ObjectType.PAYMENT)
# ``RecordLink.writing`` set by a repair: the target's content is in doubt, so the
# sync writes the record instead of taking it as unchanged; its next save clears it.
IN_DOUBT = "drift"
STOP_WITH_S_LEFT = 60


@dataclass
class _Run:
    findings: list[Finding] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)  # CRM keys compared in this run
    gone: dict[str, str] = field(default_factory=dict)  # target key → why (deleted, voided)
    previous: frozenset[str] = frozenset()
    checked: int = 0


class DriftCheck:
    def __init__(
        self,
        *,
        connection_id: str,
        crm: CrmSource,
        target: AccountingTarget,
        mapper: Mapper,
        links: LinkStore,
        cursors: CursorStore,
        queue: EventQueue,
        store: DriftStore,
        previewer: Previewer,
        clock: Callable[[], datetime],
        overlap_s: int,
        start_ms: int = 0,
        standings: AccountingLedger | None = None,
    ) -> None:
        """``standings``: the accounting side read back, given when the connection is
        two-way (its connectors read and write back); without it only the forward
        fields are compared, and only the CRM's changes looked at."""
        self._connection_id = connection_id
        self._crm = crm
        self._target = target
        self._mapper = mapper
        self._links = links
        self._cursors = cursors
        self._queue = queue
        self._store = store
        self._previewer = previewer
        self._clock = clock
        self._overlap_ms = overlap_s * 1000
        self._start_ms = start_ms
        self._standings = standings

    def run(self, time_left_s: Callable[[], float] = lambda: math.inf) -> DriftReport:
        """Check, repair what the policy allows, keep and return the report."""
        previous = self._store.latest(self._connection_id)
        run = _Run(previous=frozenset(previous.keys) if previous else frozenset())
        complete = True
        for crm_keys, commit in self._candidates(previous, run):
            for crm_key in crm_keys:
                if time_left_s() < STOP_WITH_S_LEFT:
                    complete = False
                    break
                self._check(crm_key, run)
            if not complete:
                break
            commit()
        report = DriftReport.of(
            self._connection_id, run.findings, checked=run.checked, complete=complete
        )
        self._store.save(report)
        return report

    # --- what to look at ------------------------------------------------------------------

    def _candidates(
        self, previous: DriftReport | None, run: _Run
    ) -> Iterator[tuple[Iterable[str], Callable[[], None]]]:
        """Batches of CRM keys to check, each with what moves its watermark once done:
        the previous findings' records, the accounting changes' (first: they say what
        was deleted or voided there), the CRM's changes and deletions."""
        yield sorted({f.crm_key for f in previous.findings} if previous else set()), _nothing
        if self._standings is not None:
            cursor = f"{self._connection_id}:drift:{self._target.system}"
            # A first run reads the feed from now: its CRM scan covers every record then,
            # and a vendor's feed may not reach far back.
            read_at = int(self._clock().timestamp() * 1000)
            since = read_at if self._cursors.get(cursor) is None else self._since(cursor)
            changes = list(self._standings.changed_since(FEED_TYPES, since))
            system = self._target.system
            for change in changes:
                # Gone is the changed record itself: a void does not delete its
                # customer, nor a deleted payment the invoices it was applied to.
                if change.deleted:
                    itself = record_key(system, change.object_type, change.target_id)
                    run.gone[itself] = f"deleted or voided in {system}"
            keys = self._linked_keys(key for change in changes for key in self._reached(change))
            # Everything changed until it was read is in: the next run reads from there.
            yield keys, self._mover(cursor, max([read_at, *(c.changed_at_ms for c in changes)]))
            yield self._fallen_due(self._standings)
        for object_type in CHECKED_TYPES:
            if not self._mapper.handles(object_type):
                continue
            cursor = f"{self._connection_id}:drift:{self._crm.system}:{object_type}"
            records = list(self._crm.changed_since(object_type, self._since(cursor)))
            keys = [record_key(self._crm.system, object_type, r.id) for r in records]
            yield keys, self._mover(cursor, max((r.version for r in records), default=0))
            # A deleted record is in no change: the CRM lists deletions apart, dated by
            # its own clock, so they keep a watermark of their own. Only a linked record
            # can leave an accounting record behind; the rest are not read.
            deletions = f"{cursor}:deleted"
            deleted = list(self._crm.deleted_since(object_type, self._since(deletions)))
            deleted_keys = (record_key(self._crm.system, object_type, d.id) for d in deleted)
            keys = [k for k in deleted_keys if self._links.get(self._connection_id, k) is not None]
            newest = max((d.deleted_at_ms for d in deleted), default=0)
            yield keys, self._mover(deletions, newest)

    def _fallen_due(self, standings: AccountingLedger) -> tuple[list[str], Callable[[], None]]:
        """The invoices (and their customers) that turned overdue since the last run's
        day: a date passed, nothing changed in the books, so no feed names them. An
        invoice is overdue from the day after its due date: due in [last run's day,
        today). A first run only notes the day: it compares every CRM record then."""
        cursor = f"{self._connection_id}:drift:{self._target.system}:due"
        today = self._clock().date()
        note_today = self._mover(cursor, _day_ms(today))
        marked = self._cursors.get(cursor)
        if marked is None:
            return [], note_today
        last = _day(marked)
        if last >= today:
            return [], _nothing
        fallen = standings.falling_due(last, today)
        keys = self._linked_keys(key for change in fallen for key in self._reached(change))
        return keys, note_today

    def _reached(self, change: TargetChange) -> list[str]:
        """The target keys whose standing an accounting change moved: a payment's
        invoices and customer (a deleted one's, those it reached before), else the
        record itself and its customer."""
        system = self._target.system
        if change.object_type is ObjectType.PAYMENT:
            return money_reach(self._links, self._connection_id, system, change.target_id, change)
        return [record_key(system, change.object_type, change.target_id), *named_by(system, change)]

    def _linked_keys(self, target_keys: Iterable[str]) -> list[str]:
        """The CRM keys of those accounting records that are linked."""
        links = (self._links.get_by_target(self._connection_id, key) for key in target_keys)
        return [link.source_key for link in links if link is not None]

    def _since(self, cursor: str) -> int:
        return max((self._cursors.get(cursor) or 0) - self._overlap_ms, self._start_ms)

    def _mover(self, cursor: str, highest: int) -> Callable[[], None]:
        return lambda: self._cursors.put(cursor, highest) if highest else None

    # --- one record -----------------------------------------------------------------------

    def _check(self, crm_key: str, run: _Run) -> None:
        if crm_key in run.seen:
            return
        run.seen.add(crm_key)
        try:
            system, object_type, record_id = split_record_key(crm_key)
        except ValueError:
            return
        if system != self._crm.system:
            return
        link = self._links.get(self._connection_id, crm_key)
        record = self._crm.fetch(object_type, record_id)
        if record is None:
            if link is not None and self._target.current(link.target_type, link.target_id):
                self._found(
                    run,
                    DriftKind.CRM_GONE,
                    link.source_key,
                    link.target_key,
                    Done.REPORTED,
                    "deleted in the CRM; deletions are not propagated",
                )
            return
        try:
            content = map_content(self._mapper, record)
        except RecordInvalid:  # the audit trail says why; nothing the sync can write
            return
        if isinstance(content, Filtered):
            return
        run.checked += 1
        before = len(run.findings)
        if link is None:
            self._unlinked(record, run, crm_key)
        else:
            self._linked(record, content, link, run)
        self._repair(record, link, run.findings[before:])

    def _unlinked(self, record: SourceRecord, run: _Run, crm_key: str) -> None:
        preview = self._previewer.preview(record)
        if preview.action in (Action.CREATE, Action.LINK):
            self._found(
                run, DriftKind.UNSYNCED, crm_key, preview.target_key, Done.QUEUED, preview.reason
            )

    def _linked(self, record: SourceRecord, content: Mapped, link: RecordLink, run: _Run) -> None:
        gone = run.gone.get(link.target_key)
        if self._target.current(link.target_type, link.target_id) is None:
            self._found(
                run,
                DriftKind.TARGET_GONE,
                link.source_key,
                link.target_key,
                Done.QUEUED,
                f"gone from {self._target.system}: the sync creates it anew",
            )
            return
        if gone is not None:  # still there: voided, which a person did on purpose
            self._found(
                run, DriftKind.TARGET_GONE, link.source_key, link.target_key, Done.REPORTED, gone
            )
            return
        standing = self._standing(link)
        if getattr(standing, "status", None) is InvoiceStatus.VOIDED:
            self._found(
                run,
                DriftKind.TARGET_GONE,
                link.source_key,
                link.target_key,
                Done.REPORTED,
                f"voided in {self._target.system}",
            )
            return
        compared = content
        if standing is not None:
            state = self._back_state(link)
            stale = [
                *self._two_way(record, content.model, standing, link, state, run),
                *self._back(record, standing, link, state, run),
            ]
            if stale:  # the CRM no longer holds what the way back wrote: written again
                written = {k: v for k, v in state.written.items() if k not in stale}
                self._links.save_back_state(
                    state.model_copy(update={"written": written, "revision": state.revision + 1})
                )
            # Two-way fields are settled by their policy above, not compared as one-way.
            keep = {
                f.key: getattr(standing, f.key)
                for f in self._mapper.back.two_way(record.object_type)
                if f.key in content.model.model_fields_set and f.key in type(standing).model_fields
            }
            compared = content.settled(keep, {}) if keep else content
            if isinstance(content.model, Deal):
                self._total(content.model, standing, link, run)
        preview = self._previewer.recheck(link.source_key, compared, link)
        for change in preview.changes:
            self._found(
                run,
                DriftKind.FIELD,
                link.source_key,
                link.target_key,
                Done.QUEUED,
                "differs from what the sync wrote",
                field=change.path,
                crm_value=_text(change.proposed),
                accounting_value=_text(change.current),
            )

    def _two_way(
        self,
        record: SourceRecord,
        model: BaseModel,
        standing: BaseModel,
        link: RecordLink,
        state: BackState,
        run: _Run,
    ) -> list[str]:
        """Each field the accounting side writes too; the properties to write again."""
        stale: list[str] = []
        for f in self._mapper.back.two_way(record.object_type):
            if f.key not in type(standing).model_fields:
                continue
            accounting = canonical_text(getattr(standing, f.key))
            if f.direction != "both":  # accounting → CRM only: as a back field
                shown = f.crm_text(accounting)
                stale += self._filled(record, link, state, run, f.prop, shown, accounting)
                continue
            crm = canonical_text(getattr(model, f.key))
            if crm == accounting:
                continue
            side = side_of(f, crm, accounting, state.written.get(f.prop), lambda: True)
            held_back = side is Side.HELD
            self._found(
                run,
                DriftKind.TWO_WAY,
                link.source_key,
                link.target_key,
                Done.REPORTED if held_back else Done.QUEUED,
                "both sides changed it and its policy holds it"
                if held_back
                else f"the sync gives it the {side} side's value (policy {f.conflict})",
                field=f.prop,
                crm_value=crm,
                accounting_value=accounting,
            )
        return stale

    def _back(
        self,
        record: SourceRecord,
        standing: BaseModel,
        link: RecordLink,
        state: BackState,
        run: _Run,
    ) -> list[str]:
        """Each ``back`` field; the properties to write again."""
        return [
            stale
            for prop, value in self._mapper.back.values(record.object_type, standing).items()
            for stale in self._filled(record, link, state, run, prop, value, value)
        ]

    def _filled(
        self,
        record: SourceRecord,
        link: RecordLink,
        state: BackState,
        run: _Run,
        prop: str,
        value: str | None,
        marked: str | None,
    ) -> list[str]:
        """A property the accounting side fills (``value``, in the CRM's terms;
        ``marked``, as the way back digests it): against the CRM's value when the record
        was read with it, else against what the way back last wrote. A finding's
        property when the CRM changed it since it was written, to be written again."""
        if prop not in record.properties:
            if state.written.get(prop) != digest(marked):
                self._back_finding(run, link, state, prop, None, value, marked)
            return []
        held = record.properties[prop]
        if _same(held, value):
            return []
        return self._back_finding(run, link, state, prop, held, value, marked)

    def _back_finding(
        self,
        run: _Run,
        link: RecordLink,
        state: BackState,
        prop: str,
        crm: str | None,
        accounting: str | None,
        marked: str | None,
    ) -> list[str]:
        """A property the accounting side fills differs in the CRM (``marked``: the
        value as the way back digests it). When the way back believes it wrote it,
        the CRM's was changed since: the property is returned, to be written again."""
        rewrite = state.written.get(prop) == digest(marked)
        self._found(
            run,
            DriftKind.BACK,
            link.source_key,
            link.target_key,
            Done.QUEUED,
            "changed in the CRM since the sync wrote it" if rewrite else "not written back yet",
            field=prop,
            crm_value=crm,
            accounting_value=accounting,
        )
        return [prop] if rewrite else []

    def _total(self, deal: Deal, standing: BaseModel, link: RecordLink, run: _Run) -> None:
        """The invoice's total against the deal's lines, each rounded to the currency
        as the accounting system rounds a line; tax on a taxed line only adds."""
        total = getattr(standing, "total", None)
        currency = getattr(standing, "currency", None)
        if not isinstance(total, Decimal):
            return
        places = minor_units(deal.currency)
        lines = sum(
            (
                round_half_up(
                    line.quantity * line.unit_price - line.discount_amount, places, "total"
                )
                for line in deal.line_items
            ),
            Decimal(0),
        )
        taxed = any(line.tax_code not in (None, TaxTreatment.EXEMPT) for line in deal.line_items)
        same = currency == deal.currency and (total >= lines if taxed else total == lines)
        if not same:
            self._found(
                run,
                DriftKind.TOTAL,
                link.source_key,
                link.target_key,
                Done.QUEUED,
                "the invoice's total is not the deal's lines"
                + (" (taxed lines: at least their total)" if taxed else ""),
                field="total",
                crm_value=f"{lines} {deal.currency}",
                accounting_value=f"{total} {currency}",
            )

    # --- repair ---------------------------------------------------------------------------

    def _repair(self, record: SourceRecord, link: RecordLink | None, found: list[Finding]) -> None:
        """Put the record back on the queue when a finding may be repaired; when the
        target may no longer hold what the link says, mark the link in doubt first."""
        queued = [f for f in found if f.done is Done.QUEUED]
        if not queued:
            return
        if link is not None and any(f.kind in _FORWARD for f in queued):
            self._links.mark_writing(self._connection_id, link.source_key, IN_DOUBT)
        self._queue.send(
            [
                ChangeEvent.found(
                    self._connection_id,
                    self._crm.system,
                    record.object_type,
                    record.id,
                    record.version,
                    by="drift",
                )
            ]
        )

    # --- helpers --------------------------------------------------------------------------

    def _standing(self, link: RecordLink) -> BaseModel | None:
        if self._standings is None:
            return None
        today = self._clock().date()
        if link.target_type is ObjectType.INVOICE:
            return self._standings.invoice_standing(link.target_id, today=today)
        if link.target_type is ObjectType.CUSTOMER:
            return self._standings.customer_standing(link.target_id, today=today)
        return None

    def _back_state(self, link: RecordLink) -> BackState:
        found = self._links.back_state(self._connection_id, link.source_key)
        return found or BackState(connection_id=self._connection_id, source_key=link.source_key)

    def _found(
        self,
        run: _Run,
        kind: DriftKind,
        crm_key: str,
        target_key: str | None,
        done: Done,
        reason: str,
        *,
        field: str | None = None,
        crm_value: str | None = None,
        accounting_value: str | None = None,
    ) -> None:
        finding = Finding(
            kind=kind,
            crm_key=crm_key,
            target_key=target_key,
            field=field,
            crm_value=crm_value,
            accounting_value=accounting_value,
            done=done,
            reason=reason,
        )
        deliberate = done is Done.REPORTED and kind in _DELIBERATE
        persistent = finding.key in run.previous and not deliberate
        run.findings.append(finding.model_copy(update={"persistent": persistent}))


# What a person did on purpose (deleted in the CRM, voided in the books): reported at
# every run while it holds, but never persistent, so never an alarm that cannot clear.
_DELIBERATE = {DriftKind.CRM_GONE, DriftKind.TARGET_GONE}
# Findings the forward write repairs: the link must not be trusted until it has.
_FORWARD = {DriftKind.TARGET_GONE, DriftKind.FIELD, DriftKind.TOTAL}


def _nothing() -> None:
    pass


def _day_ms(day: date) -> int:
    return int(datetime.combine(day, time(), UTC).timestamp() * 1000)


def _day(ms: int) -> date:
    return datetime.fromtimestamp(ms / 1000, UTC).date()


def _text(value: object) -> str | None:
    return None if value is None else canonical_text(value)


def _same(crm: str | None, accounting: str | None) -> bool:
    """Whether the CRM holds the value: numbers by value (a CRM may print ``1000`` for
    ``1000.00``), an empty property as none."""
    if (crm or None) is None or (accounting or None) is None:
        return (crm or None) == (accounting or None)
    try:
        return Decimal(crm or "") == Decimal(accounting or "")
    except InvalidOperation:
        return crm == accounting


@dataclass
class FleetDrift:
    """One scheduled drift check over every connection."""

    reports: dict[str, DriftReport] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # connection id → why

    @property
    def persistent(self) -> int:
        return sum(sum(r.persistent.values()) for r in self.reports.values())


def drift_all(
    connections: Sequence[Connection],
    check_for: Callable[[Connection], DriftCheck],
    metrics: DriftMetrics,
    time_left_s: Callable[[], float] = lambda: math.inf,
) -> FleetDrift:
    """Every connection in turn; one that fails is reported and does not stop the rest."""
    fleet = FleetDrift()
    for connection in connections:
        if time_left_s() < STOP_WITH_S_LEFT:
            break
        try:
            report = check_for(connection).run(time_left_s)
        except Exception as error:
            fleet.failed[connection.id] = f"{type(error).__name__}: {error}"
            continue
        fleet.reports[connection.id] = report
        metrics.drift(
            connection.id,
            {str(k): n for k, n in report.counts.items()},
            {str(k): n for k, n in report.persistent.items()},
        )
    return fleet
