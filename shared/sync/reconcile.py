"""Reconciliation: the catch-up for webhooks that never arrived.

For each CRM object type the mapping handles, list the records modified since a
watermark, and enqueue a RECONCILE event for every one whose mapped content differs
from what its link says was written (or that has no link yet). Line items are
scanned too: a changed line item does not move its deal's last-modified time, so
its event goes to the engine, which hands it to the deal. The events go through the
same queue and engine as webhook events, so ordering, idempotency and auditing are
the same. The watermark only moves forward, and each run re-reads a small overlap
before it because CRM search indexes lag behind writes.

Once a day it also walks every deal, modified or not: a deal's content depends on its
associations and line items, whose changes (an association made, a line item deleted)
do not move the deal's last-modified time, so a lost webhook of that kind is only seen
by reading the deal again. The walk has its own cursor per day, so a large account's
walk spans several runs.

A connection with a start date (``Connection.sync_since``) is caught up from that day
on: its first scan starts there instead of at the beginning, and the walk leaves alone
a deal never synced that last changed before it. Without one, the first run imports
every record the CRM holds.

An operator's backfill (``backfill``) is the same scan from a chosen day, over chosen
object types, with its own cursors: interrupted, it carries on from its last
checkpoint when run again, and reports its counts at every checkpoint to a
``progress`` callback (the operator's progress bar).

Records never synced (a backfill) are created through the accounting system's batch
writes where the engine can (``SyncEngine.backfill``): a few dozen records a call
instead of one. What it cannot batch goes through the queue as above.

Last, the dead-letter queue is swept: a dead-lettered event whose record has since
been applied (its content is what was written) is removed and audited as resolved,
so the alarm only stays up for what still needs a person.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from shared.errors import RecordInvalid
from shared.mapping import Filtered, Mapper
from shared.models import (
    AuditEntry,
    ChangeEvent,
    Connection,
    ObjectType,
    Outcome,
    SourceRecord,
)
from shared.models.events import record_key
from shared.models.links import utc_now
from shared.ports import AuditLog, CrmSource, CursorStore, DeadLetters, EventQueue, LinkStore
from shared.sync.content import map_content

# Parties before deals, so a deal's customer is usually linked by the time its invoice
# is written; line items last (they are synced through their deals).
RECONCILED_TYPES = (ObjectType.COMPANY, ObjectType.CONTACT, ObjectType.DEAL, ObjectType.LINE_ITEM)
# Records whose content depends on related records that can change without them.
WALKED_TYPES = (ObjectType.DEAL,)
WALK_EVERY_S = 24 * 3600
DEAD_LETTERS_PER_RUN = 100
# How often the watermark is saved and the time left checked, in records scanned.
CHECKPOINT_EVERY = 10
STOP_WITH_S_LEFT = 60


class BatchWriter(Protocol):
    """Writes what it can of some records in batches; returns those it left."""

    size: int  # records a batch call takes

    def __call__(self, records: Sequence[SourceRecord]) -> list[SourceRecord]: ...


# Record types a BatchWriter is offered (line items are synced through their deals).
BATCHED_TYPES = (ObjectType.COMPANY, ObjectType.CONTACT, ObjectType.DEAL)


@dataclass
class ReconcileReport:
    scanned: dict[str, int] = field(default_factory=dict)
    unsynced: dict[str, int] = field(default_factory=dict)  # batched or enqueued (to be)
    invalid: dict[str, int] = field(default_factory=dict)  # of those, refused by the mapping
    enqueued: dict[str, int] = field(default_factory=dict)
    batched: dict[str, int] = field(default_factory=dict)  # created in batch writes
    watermarks: dict[str, int] = field(default_factory=dict)
    complete: bool = True  # False: stopped for time; the next run carries on

    @property
    def total_enqueued(self) -> int:
        return sum(self.enqueued.values())


# Called with a backfill's report at every checkpoint (the CLI's progress bar).
Progress = Callable[[ReconcileReport], None]


@dataclass(frozen=True)
class _Scan:
    """One scan of an object type: where its cursor is and what it starts from."""

    cursor: str
    overlap_ms: int
    floor_ms: int = 0  # never scans records last changed before this
    # A record never synced that last changed before this is left alone (the walk).
    new_from_ms: int = 0
    label: str = ""
    dry_run: bool = False  # count only: write, enqueue and checkpoint nothing
    progress: Progress | None = None


class Reconciler:
    def __init__(
        self,
        *,
        connection_id: str,
        crm: CrmSource,
        mapper: Mapper,
        links: LinkStore,
        cursors: CursorStore,
        queue: EventQueue,
        overlap_s: int,
        start_ms: int = 0,
        audit: AuditLog | None = None,
        walk_every_s: float = WALK_EVERY_S,
        clock: Callable[[], float] = time.time,
        batch_writer: Callable[[], BatchWriter] | None = None,
        refresh_directory: Callable[[], None] = lambda: None,
    ) -> None:
        """``refresh_directory`` brings the target's customer emails up to date before
        a scan creates customers (``SyncEngine.refresh_directory``)."""
        self._connection_id = connection_id
        self._crm = crm
        self._mapper = mapper
        self._links = links
        self._cursors = cursors
        self._queue = queue
        self._overlap_ms = overlap_s * 1000
        self._start_ms = start_ms  # the connection's start date (``Connection.start_ms``)
        self._audit = audit
        self._walk_every_s = walk_every_s
        self._clock = clock
        self._batch_writer = batch_writer
        self._refresh_directory = refresh_directory
        self._writer: BatchWriter | None = None

    def run(self, time_left_s: Callable[[], float] = lambda: math.inf) -> ReconcileReport:
        """Scan every mapped object type; stops early (and says so) when ``time_left_s``
        drops under a minute, so a Lambda never times out mid-batch. The next run
        continues from the last checkpoint: a large backfill spans several runs."""
        report = ReconcileReport()
        self._refresh_directory()
        # One writer a run: it reads the target's customers once, when first needed.
        self._writer = self._batch_writer() if self._batch_writer else None
        for object_type in RECONCILED_TYPES:
            if self._scans(object_type):
                name = f"{self._connection_id}:{self._crm.system}:{object_type}"
                scan = _Scan(name, self._overlap_ms, self._start_ms)
                self._reconcile(object_type, report, time_left_s, scan)
            if not report.complete:
                return report
        self._walk(report, time_left_s)
        return report

    def backfill(
        self,
        since_ms: int,
        objects: Collection[ObjectType],
        *,
        dry_run: bool = False,
        progress: Progress | None = None,
    ) -> ReconcileReport:
        """Import the records of ``objects`` changed since ``since_ms`` that are not in
        sync, as a run does (batch writes, else the queue), from this backfill's last
        checkpoint (``restart_backfill`` forgets it). ``dry_run`` counts what it would
        import. A deal's line items are scanned with the deals."""
        report = ReconcileReport()
        if not dry_run:
            self._refresh_directory()
        self._writer = self._batch_writer() if self._batch_writer and not dry_run else None
        for object_type, cursor in self._backfill_cursors(since_ms, objects):
            scan = _Scan(cursor, self._overlap_ms, since_ms, dry_run=dry_run, progress=progress)
            self._reconcile(object_type, report, lambda: math.inf, scan)
        return report

    def backfill_left(self, since_ms: int, objects: Collection[ObjectType]) -> dict[str, int]:
        """How many records each object type's backfill has still to scan (from its
        checkpoint): one read of the CRM's search, no check and no write."""
        return {
            str(object_type): sum(
                1
                for _ in self._crm.changed_since(
                    object_type, self._scan_from(_Scan(cursor, self._overlap_ms, since_ms))
                )
            )
            for object_type, cursor in self._backfill_cursors(since_ms, objects)
        }

    def restart_backfill(self, since_ms: int, objects: Collection[ObjectType]) -> None:
        """Forget this backfill's checkpoints: its next run starts at ``since_ms``."""
        name = self._backfill_name(since_ms, objects)
        # Cursors only move forward: a new generation of the backfill's cursors.
        self._cursors.put(name, (self._cursors.get(name) or 0) + 1)

    def _backfill_name(self, since_ms: int, objects: Collection[ObjectType]) -> str:
        types = ",".join(sorted(objects))
        return f"{self._connection_id}:{self._crm.system}:backfill:{since_ms}:{types}"

    def _backfill_cursors(
        self, since_ms: int, objects: Collection[ObjectType]
    ) -> list[tuple[ObjectType, str]]:
        name = self._backfill_name(since_ms, objects)
        generation = self._cursors.get(name) or 0
        wanted = {*objects, ObjectType.LINE_ITEM} if ObjectType.DEAL in objects else objects
        return [
            (object_type, f"{name}:{generation}:{object_type}")
            for object_type in RECONCILED_TYPES
            if object_type in wanted and self._scans(object_type)
        ]

    def _scan_from(self, scan: _Scan) -> int:
        """Where a scan starts: a little before its watermark, never before its floor."""
        return max((self._cursors.get(scan.cursor) or 0) - scan.overlap_ms, scan.floor_ms)

    def _scans(self, object_type: ObjectType) -> bool:
        if object_type is ObjectType.LINE_ITEM:  # invoiced through their deals
            return self._mapper.handles(ObjectType.DEAL)
        return self._mapper.handles(object_type)

    def _walk(self, report: ReconcileReport, time_left_s: Callable[[], float]) -> None:
        """Today's walk through every record of ``WALKED_TYPES``, from where it stopped."""
        today = int(self._clock() // self._walk_every_s)
        for object_type in WALKED_TYPES:
            if not self._scans(object_type):
                continue
            name = f"{self._connection_id}:{self._crm.system}:{object_type}:walk:{today}"
            if self._cursors.get(f"{name}:done"):
                continue
            scan = _Scan(name, 0, new_from_ms=self._start_ms, label="walk")
            self._reconcile(object_type, report, time_left_s, scan)
            if not report.complete:
                return
            self._cursors.put(f"{name}:done", 1)

    def _reconcile(
        self,
        object_type: ObjectType,
        report: ReconcileReport,
        time_left_s: Callable[[], float],
        scan: _Scan,
    ) -> None:
        since = self._scan_from(scan)
        counted = f"{object_type} ({scan.label})" if scan.label else str(object_type)
        for counts in (report.scanned, report.unsynced, report.invalid):
            counts[counted] = 0
        report.enqueued[counted] = report.batched[counted] = 0
        unsynced: list[SourceRecord] = []
        highest = self._cursors.get(scan.cursor) or 0
        writer = self._writer if object_type in BATCHED_TYPES else None
        every = max(CHECKPOINT_EVERY, writer.size) if writer else CHECKPOINT_EVERY

        def checkpoint() -> None:
            # Records arrive oldest first and everything scanned so far is either
            # written, on the queue or already applied: the watermark may move up to here.
            if not scan.dry_run:
                left = writer(unsynced) if writer and unsynced else unsynced
                report.batched[counted] += len(unsynced) - len(left)
                if left:
                    self._queue.send([self._event(object_type, r.id, r.version) for r in left])
                    report.enqueued[counted] += len(left)
                self._cursors.put(scan.cursor, highest)
                report.watermarks[counted] = highest
            unsynced.clear()
            if scan.progress:
                scan.progress(report)

        for record in self._crm.changed_since(object_type, since):
            report.scanned[counted] += 1
            highest = max(highest, record.version)
            if record.version >= scan.new_from_ms or self._linked(record):
                try:
                    synced = self._written(record)
                except RecordInvalid:  # enqueued: its audit entry says why
                    synced = False
                    report.invalid[counted] += 1
                if not synced:
                    unsynced.append(record)
                    report.unsynced[counted] += 1
            if report.scanned[counted] % every == 0:
                checkpoint()
                if time_left_s() < STOP_WITH_S_LEFT:
                    report.complete = False
                    return
        checkpoint()

    def _in_sync(self, record: SourceRecord) -> bool:
        """Whether what the record maps to is what its link says was written; an
        invalid record is not (it is enqueued so the audit trail says why)."""
        try:
            return self._written(record)
        except RecordInvalid:
            return False

    def _written(self, record: SourceRecord) -> bool:
        """``_in_sync``, raising ``RecordInvalid`` for a record the mapping refuses.

        A line item is in sync when its deals are (they are what is written). A
        filtered record has nothing to write.
        """
        if record.object_type is ObjectType.LINE_ITEM:
            return self._read_by_its_deal(record) or self._deals_in_sync(record.id)
        content = map_content(self._mapper, record)
        if isinstance(content, Filtered):
            return True
        link = self._links.get(self._connection_id, self._key(record))
        return link is not None and link.holds(content.digest)

    def _linked(self, record: SourceRecord) -> bool:
        return self._links.get(self._connection_id, self._key(record)) is not None

    def _key(self, record: SourceRecord) -> str:
        return record_key(self._crm.system, record.object_type, record.id)

    def resolve(self, event: ChangeEvent) -> bool:
        """If applying a dead-lettered ``event`` now would write nothing, say so in the
        audit (``resolved``) and return True: its dead letter can go."""
        if event.connection_id != self._connection_id or event.source != self._crm.system:
            return False
        if not self._settled(event):
            return False
        if self._audit is not None:
            self._audit.record(
                AuditEntry(
                    connection_id=self._connection_id,
                    record_key=event.record_key,
                    event_id=event.event_id,
                    outcome=Outcome.RESOLVED,
                    reason="removed from the dead-letter queue: the record has been "
                    "applied since, its content is what was written",
                    source_version=event.version,
                    at=utc_now(),
                )
            )
        return True

    def _read_by_its_deal(self, line_item: SourceRecord) -> bool:
        """Whether the deal that last invoiced the line item read it at this version or
        later (a link's ``source_version`` counts its children's): in sync, from two
        DynamoDB reads instead of reading the line item and its deals from the CRM."""
        parent = self._links.parent_of(self._connection_id, self._key(line_item))
        link = self._links.get(self._connection_id, parent) if parent else None
        return (
            link is not None and link.writing is None and link.source_version >= line_item.version
        )

    def _deals_in_sync(self, line_item_id: str) -> bool:
        """Whether the deals of a line item are in sync (a search result carries no
        associations: the line item is read for them)."""
        item = self._crm.fetch(ObjectType.LINE_ITEM, line_item_id)
        deal_ids = item.associations.get(ObjectType.DEAL, []) if item else []
        deals = [self._crm.fetch(ObjectType.DEAL, deal_id) for deal_id in deal_ids]
        return all(deal is None or self._in_sync(deal) for deal in deals)

    def _settled(self, event: ChangeEvent) -> bool:
        """Whether applying ``event`` now would write nothing."""
        if event.object_type is ObjectType.LINE_ITEM:
            return self._deals_in_sync(event.record_id)
        record = self._crm.fetch(event.object_type, event.record_id)
        # Gone from the CRM: the engine would skip it.
        return record is None or self._in_sync(record)

    def _event(self, object_type: ObjectType, record_id: str, version: int) -> ChangeEvent:
        return ChangeEvent.found(
            self._connection_id, self._crm.system, object_type, record_id, version, by="reconcile"
        )


def sweep_dead_letters(
    dead_letters: DeadLetters,
    reconcilers: Mapping[str, Reconciler],
    time_left_s: Callable[[], float] = lambda: math.inf,
) -> dict[str, int]:
    """Drop the dead letters whose record has been applied since, for every connection
    in one read of the queue (a letter read is hidden from other readers for a while, so
    a read per connection would hide the others' letters from them). The rest stay for
    a person. Returns how many were resolved, by connection."""
    resolved: dict[str, int] = {}
    for letter in dead_letters.peek(DEAD_LETTERS_PER_RUN):
        if time_left_s() < STOP_WITH_S_LEFT:
            break
        connection_id = letter.event.connection_id
        reconciler = reconcilers.get(connection_id)
        if reconciler is not None and reconciler.resolve(letter.event):
            dead_letters.discard(letter)
            resolved[connection_id] = resolved.get(connection_id, 0) + 1
    return resolved


@dataclass
class FleetReport:
    """One scheduled run over every connection."""

    reports: dict[str, ReconcileReport] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # connection id → why
    dead_letters_resolved: dict[str, int] = field(default_factory=dict)

    def by_connection(self) -> dict[str, dict[str, Any]]:
        return {
            connection_id: {
                **asdict(report),
                "dead_letters_resolved": self.dead_letters_resolved.get(connection_id, 0),
            }
            for connection_id, report in self.reports.items()
        }


def reconcile_all(
    connections: Sequence[Connection],
    reconciler_for: Callable[[Connection], Reconciler],
    dead_letters: DeadLetters | None,
    time_left_s: Callable[[], float] = lambda: math.inf,
) -> FleetReport:
    """Every connection in turn (one that stopped early carries on next run), then one
    sweep of the dead letters for those that finished. A connection whose CRM fails is
    reported, and does not starve the others."""
    fleet = FleetReport()
    finished: dict[str, Reconciler] = {}
    for connection in connections:
        try:
            reconciler = reconciler_for(connection)
            report = reconciler.run(time_left_s)
        except Exception as error:
            fleet.failed[connection.id] = f"{type(error).__name__}: {error}"
            continue
        fleet.reports[connection.id] = report
        if report.complete:
            finished[connection.id] = reconciler
    if dead_letters is not None and finished:
        fleet.dead_letters_resolved = sweep_dead_letters(dead_letters, finished, time_left_s)
    return fleet
