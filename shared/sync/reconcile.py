"""Reconciliation: the catch-up for webhooks that never arrived.

For each CRM object type the mapping handles, list the records modified since a
watermark, and enqueue a RECONCILE event for every one that has no link yet or
whose version is newer than the one applied. The events go through the same
queue and engine as webhook events, so ordering, idempotency and auditing are
the same. The watermark only moves forward, and each run re-reads a small
overlap before it because CRM search indexes lag behind writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from shared.mapping import Mapper
from shared.models import ChangeEvent, ChangeKind, ObjectType
from shared.ports import CrmSource, CursorStore, EventQueue, LinkStore

RECONCILED_TYPES = (ObjectType.COMPANY, ObjectType.CONTACT, ObjectType.DEAL)
BATCH = 10  # SendMessageBatch's limit


@dataclass
class ReconcileReport:
    scanned: dict[str, int] = field(default_factory=dict)
    enqueued: dict[str, int] = field(default_factory=dict)
    watermarks: dict[str, int] = field(default_factory=dict)

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

    def run(self) -> ReconcileReport:
        report = ReconcileReport()
        # Parties before deals, so a deal's customer is usually linked by the time
        # its invoice is written (the engine also syncs a missing customer inline).
        for object_type in RECONCILED_TYPES:
            if self._mapper.handles(object_type):
                self._reconcile(object_type, report)
        return report

    def _reconcile(self, object_type: ObjectType, report: ReconcileReport) -> None:
        cursor_name = f"{self._connection_id}:{self._crm.system}:{object_type}"
        watermark = self._cursors.get(cursor_name) or 0
        since = max(watermark - self._overlap_ms, 0)
        scanned = 0
        pending: list[ChangeEvent] = []
        enqueued = 0
        highest = watermark
        for record in self._crm.changed_since(object_type, since):
            scanned += 1
            highest = max(highest, record.version)
            key = f"{self._crm.system}:{object_type}:{record.id}"
            link = self._links.get(self._connection_id, key)
            if link is not None and link.source_version >= record.version:
                continue
            pending.append(
                ChangeEvent(
                    connection_id=self._connection_id,
                    source=self._crm.system,
                    object_type=object_type,
                    record_id=record.id,
                    event_id=f"reconcile:{key}:{record.version}",
                    kind=ChangeKind.RECONCILE,
                    occurred_at=datetime.fromtimestamp(record.version / 1000, UTC),
                    version=record.version,
                )
            )
            if len(pending) == BATCH:
                self._queue.send(pending)
                enqueued += len(pending)
                pending = []
        if pending:
            self._queue.send(pending)
            enqueued += len(pending)
        # Only after everything found is on the queue: a crash re-scans, never skips.
        self._cursors.put(cursor_name, highest)
        report.scanned[object_type] = scanned
        report.enqueued[object_type] = enqueued
        report.watermarks[object_type] = highest
