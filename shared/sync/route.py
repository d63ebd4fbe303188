"""Hands each event to the engine of its connection.

One deployment serves many connections; an event names its own. The engines are
built from the connection as it is stored now, so a changed mapping or system takes
effect without a redeploy.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from shared.models import AuditEntry, ChangeEvent, ChangeKind, Connection, Outcome
from shared.models.links import utc_now
from shared.ports import AuditLog, Connections, SyncMetrics, Tally, Unmeasured

if TYPE_CHECKING:  # the engine (and the mapping) load with the first connection's engine
    from shared.sync.engine import SyncEngine, Triage

TALLY_OF: dict[Outcome, Tally] = {
    Outcome.CREATED: Tally.APPLIED,
    Outcome.UPDATED: Tally.APPLIED,
    Outcome.LINKED: Tally.APPLIED,
    Outcome.UNCHANGED: Tally.SKIPPED,  # the target already holds the content
    Outcome.SKIPPED: Tally.SKIPPED,
    Outcome.RESOLVED: Tally.SKIPPED,  # applied by a later event: nothing written now
    Outcome.FORWARDED: Tally.FORWARDED,
    Outcome.INVALID: Tally.INVALID,
    Outcome.REJECTED: Tally.REJECTED,
    Outcome.FAILED: Tally.FAILED,
}


class ConnectionRouter:
    def __init__(
        self,
        *,
        connections: Connections,
        engine_for: Callable[[Connection], SyncEngine],
        audit: AuditLog,
        metrics: SyncMetrics | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._connections = connections
        self._engine_for = engine_for
        self._audit = audit
        self._metrics = metrics or Unmeasured()
        self._clock = clock

    def triage(self, event: ChangeEvent) -> Triage | None:
        """The engine's ``triage`` of the event; one it settles is counted here, as
        ``handle`` counts the rest. None for an event of no connection: ``handle``
        rejects it."""
        connection = self._connection(event)
        if isinstance(connection, str):
            return None
        triage = self._engine_for(connection).triage(event)
        if triage.settled is not None:
            self._measure(event, triage.settled)
        return triage

    def handle(self, event: ChangeEvent, triage: Triage | None = None) -> AuditEntry:
        entry = self._route(event, triage)
        self._measure(event, entry)
        return entry

    def _connection(self, event: ChangeEvent) -> Connection | str:
        """The event's connection, or why it has none."""
        connection = self._connections.get(event.connection_id)
        if connection is None:
            return f"no connection {event.connection_id!r} is configured"
        if event.source not in (connection.crm, connection.accounting):
            return (
                f"connection {connection.id!r} joins {connection.crm} and "
                f"{connection.accounting}, not {event.source}"
            )
        return connection

    def _route(self, event: ChangeEvent, triage: Triage | None) -> AuditEntry:
        connection = self._connection(event)
        if isinstance(connection, str):
            return self._reject(event, connection)
        return self._engine_for(connection).handle(event, triage)

    def _measure(self, event: ChangeEvent, entry: AuditEntry) -> None:
        """Count the event's outcome; time an applied change from the vendor's event.

        A record a scan found (reconcile, backfill) has no vendor event: its time is its
        last change, maybe years before the connection existed, so it is not timed.
        A failure raised instead of returning: the consumer counts it.
        """
        tally = TALLY_OF[entry.outcome]
        self._metrics.count(event, tally)
        if tally is Tally.APPLIED and event.kind is not ChangeKind.RECONCILE:
            # A vendor's clock a little ahead of ours would make it negative.
            lag_ms = (entry.at - event.occurred_at).total_seconds() * 1000
            self._metrics.freshness(event, max(lag_ms, 0.0))

    def _reject(self, event: ChangeEvent, reason: str) -> AuditEntry:
        entry = AuditEntry(
            connection_id=event.connection_id,
            record_key=event.record_key,
            event_id=event.event_id,
            outcome=Outcome.REJECTED,
            reason=reason,
            source_version=event.version,
            at=self._clock(),
        )
        self._audit.record(entry)
        return entry
