"""Webhook ingest: verify, normalize, enqueue — and only then say 2xx.

The order is the promise: nothing is enqueued from a request that is not
provably the vendor's, and a vendor is told "received" only once every event of
its request is on the queue (a failed enqueue surfaces as an error so the vendor
retries the delivery).
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.errors import WebhookRejected
from shared.ports import EventQueue, InboundWebhook, WebhookReceiver


class WebhookIngest:
    def __init__(
        self,
        *,
        connection_id: str,
        receivers: Mapping[str, WebhookReceiver],
        queue: EventQueue,
        max_body_bytes: int,
    ) -> None:
        self._connection_id = connection_id
        self._receivers = receivers
        self._queue = queue
        self._max_body_bytes = max_body_bytes

    def accept(self, vendor: str, request: InboundWebhook) -> int:
        """Returns how many events were enqueued; raises ``WebhookRejected`` for bad input."""
        receiver = self._receivers.get(vendor)
        if receiver is None:
            raise WebhookRejected(404, f"no webhook route for {vendor!r}")
        if len(request.body.encode()) > self._max_body_bytes:
            raise WebhookRejected(413, f"body larger than {self._max_body_bytes} bytes")
        receiver.verify(request)
        try:
            events = receiver.normalize(request, self._connection_id)
        except (ValueError, OverflowError) as error:
            # Signed but not understood (pydantic's ValidationError is a ValueError):
            # the vendor gets a 4xx with the reason, never a 5xx.
            raise WebhookRejected(400, f"payload not understood: {error}"[:300]) from error
        if events:
            self._queue.send(events)
        return len(events)
