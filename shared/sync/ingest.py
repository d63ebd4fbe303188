"""Webhook ingest: verify, normalize, enqueue — and only then say 2xx.

The order is the promise: nothing is enqueued from a request that is not
provably the vendor's, and a vendor is told "received" only once every event of
its request is on the queue (a failed enqueue surfaces as an error so the vendor
retries the delivery).

A delivery often carries several events of one record (a deal made with its line
items and contacts: its creation and an association change for each). The engine
reads a record as it is when it runs, so one event a record stands for all of them
(``coalesce``): one queue message and one sync instead of several.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from shared.errors import WebhookRejected
from shared.models import ChangeEvent, ChangeKind
from shared.ports import Connections, EventQueue, InboundWebhook, WebhookAnswer, WebhookReceiver


class WebhookIngest:
    def __init__(
        self,
        *,
        connections: Connections,
        receiver_for: Callable[[str, str], WebhookReceiver],
        queue: EventQueue,
        max_body_bytes: int,
    ) -> None:
        """``receiver_for(vendor, connection_id)`` builds (or reuses) the receiver that
        checks that connection's deliveries from that vendor."""
        self._connections = connections
        self._receiver_for = receiver_for
        self._queue = queue
        self._max_body_bytes = max_body_bytes

    def accept(self, vendor: str, connection_id: str, request: InboundWebhook) -> WebhookAnswer:
        """The answer the vendor expects; raises ``WebhookRejected`` for bad input."""
        connection = self._connections.get(connection_id)
        if connection is None or vendor not in (connection.crm, connection.accounting):
            raise WebhookRejected(404, f"no webhook route for {vendor!r} on {connection_id!r}")
        if len(request.body.encode()) > self._max_body_bytes:
            raise WebhookRejected(413, f"body larger than {self._max_body_bytes} bytes")
        receiver = self._receiver_for(vendor, connection_id)
        receiver.verify(request)
        try:
            events = receiver.normalize(request, connection_id)
        except (ValueError, OverflowError) as error:
            # Signed but not understood (pydantic's ValidationError is a ValueError):
            # the vendor gets a 4xx with the reason, never a 5xx.
            raise WebhookRejected(400, f"payload not understood: {error}"[:300]) from error
        events = coalesce(events)
        if events:
            self._queue.send(events)
        return receiver.answer(request, len(events))


def coalesce(events: Sequence[ChangeEvent]) -> list[ChangeEvent]:
    """One event a record: its newest, or its deletion (nothing after a deletion
    matters), in the order the records first appear."""
    kept: dict[str, ChangeEvent] = {}
    for event in events:
        held = kept.get(event.record_key)
        if held is None or (
            held.kind is not ChangeKind.DELETED
            and (event.kind is ChangeKind.DELETED or event.version >= held.version)
        ):
            kept[event.record_key] = event
    return list(kept.values())
