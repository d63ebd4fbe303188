"""Hands each event to the engine of its connection.

One deployment serves many connections; an event names its own. The engines are
built from the connection as it is stored now, so a changed mapping or system takes
effect without a redeploy.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from shared.models import AuditEntry, ChangeEvent, Connection, Outcome
from shared.models.links import utc_now
from shared.ports import AuditLog, Connections

if TYPE_CHECKING:  # the engine (and the mapping) load with the first connection's engine
    from shared.sync.engine import SyncEngine


class ConnectionRouter:
    def __init__(
        self,
        *,
        connections: Connections,
        engine_for: Callable[[Connection], SyncEngine],
        audit: AuditLog,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._connections = connections
        self._engine_for = engine_for
        self._audit = audit
        self._clock = clock

    def handle(self, event: ChangeEvent) -> AuditEntry:
        connection = self._connections.get(event.connection_id)
        if connection is None:
            return self._reject(event, f"no connection {event.connection_id!r} is configured")
        if event.source not in (connection.crm, connection.accounting):
            return self._reject(
                event,
                f"connection {connection.id!r} joins {connection.crm} and "
                f"{connection.accounting}, not {event.source}",
            )
        return self._engine_for(connection).handle(event)

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
