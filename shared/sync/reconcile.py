"""Reconciliation: the catch-up for webhooks that never arrived.

For each CRM object type the mapping handles, list the records modified since a
watermark, and enqueue a RECONCILE event for every one that has no link yet or
whose version is newer than the one applied. The events go through the same
queue and engine as webhook events, so ordering, idempotency and auditing are
the same. The watermark only moves forward, and each run re-reads a small
overlap before it because CRM search indexes lag behind writes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from shared.mapping import Mapper
from shared.models import ChangeEvent, ChangeKind, ObjectType
from shared.models.events import record_key
from shared.ports import CrmSource, CursorStore, EventQueue, LinkStore

RECONCILED_TYPES = (ObjectType.COMPANY, ObjectType.CONTACT, ObjectType.DEAL)
# How often the watermark is saved and the time left checked, in records scanned.
CHECKPOINT_EVERY = 10
STOP_WITH_S_LEFT = 60


@dataclass
class ReconcileReport:
    scanned: dict[str, int] = field(default_factory=dict)
    enqueued: dict[str, int] = field(default_factory=dict)
    watermarks: dict[str, int] = field(default_factory=dict)
    complete: bool = True  # False: stopped for time; the next run carries on

    @property
    def total_enqueued(self) -> int:
        return sum(self.enqueued.values())


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
    ) -> None:
        self._connection_id = connection_id
        self._crm = crm
        self._mapper = mapper
        self._links = links
        self._cursors = cursors
        self._queue = queue
        self._overlap_ms = overlap_s * 1000

    def run(self, time_left_s: Callable[[], float] = lambda: math.inf) -> ReconcileReport:
        """Scan every mapped object type; stops early (and says so) when ``time_left_s``
        drops under a minute, so a Lambda never times out mid-batch. The next run
        continues from the last checkpoint: a large backfill spans several runs."""
        report = ReconcileReport()
        # Parties before deals, so a deal's customer is usually linked by the time
        # its invoice is written (the engine also syncs a missing customer inline).
        for object_type in RECONCILED_TYPES:
            if self._mapper.handles(object_type):
                self._reconcile(object_type, report, time_left_s)
            if not report.complete:
                break
        return report

    def _reconcile(
        self, object_type: ObjectType, report: ReconcileReport, time_left_s: Callable[[], float]
    ) -> None:
        cursor_name = f"{self._connection_id}:{self._crm.system}:{object_type}"
        watermark = self._cursors.get(cursor_name) or 0
        since = max(watermark - self._overlap_ms, 0)
        report.scanned[object_type] = report.enqueued[object_type] = 0
        pending: list[ChangeEvent] = []
        highest = watermark

        def checkpoint() -> None:
            # Records arrive oldest first and everything scanned so far is either on
            # the queue or already applied: the watermark may move up to here.
            if pending:
                self._queue.send(pending)
                report.enqueued[object_type] += len(pending)
                pending.clear()
            self._cursors.put(cursor_name, highest)
            report.watermarks[object_type] = highest

        for record in self._crm.changed_since(object_type, since):
            report.scanned[object_type] += 1
            highest = max(highest, record.version)
            key = record_key(self._crm.system, object_type, record.id)
            link = self._links.get(self._connection_id, key)
            if link is None or link.source_version < record.version:
                pending.append(self._event(object_type, record.id, record.version, key))
            if report.scanned[object_type] % CHECKPOINT_EVERY == 0:
                checkpoint()
                if time_left_s() < STOP_WITH_S_LEFT:
                    report.complete = False
                    return
        checkpoint()

    def _event(
        self, object_type: ObjectType, record_id: str, version: int, key: str
    ) -> ChangeEvent:
        return ChangeEvent(
            connection_id=self._connection_id,
            source=self._crm.system,
            object_type=object_type,
            record_id=record_id,
            event_id=f"reconcile:{key}:{version}",
            kind=ChangeKind.RECONCILE,
            occurred_at=datetime.fromtimestamp(version / 1000, UTC),
            version=version,
        )
