"""Outbound messages: the SOAP ``notifications`` a workflow rule or flow sends.

Built from "Understanding Outbound Messaging", "Understanding Notifications" and
"Understanding the Outbound Messaging WSDL"
(https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/
sforce_api_om_outboundmessaging_understanding.htm and the pages beside it):

* One SOAP 1.1 message (``Content-Type: text/xml; charset=utf-8``, ``SOAPAction: ""``)
  holds up to 100 ``Notification`` elements of one outbound message definition, each
  with its own notification ``Id`` (kept across retries, so a listener can spot a
  repeat) and an ``sObject`` of ``xsi:type="sf:<Object>"`` in
  ``urn:sobject.enterprise.soap.sforce.com`` carrying the selected fields.
  ``OrganizationId``, ``ActionId``, ``SessionId`` (``xsi:nil`` unless the definition
  sends one), ``EnterpriseUrl`` and ``PartnerUrl`` come first, in
  ``http://soap.sforce.com/2005/09/outbound``.
* The listener must answer ``notificationsResponse`` with ``<Ack>true</Ack>``;
  anything else (no answer, a non-2xx status, a fault, ``false``) is a failed
  delivery. Failed messages are retried independently of each other with an
  interval that grows exponentially up to two hours, and dropped when they are 24
  hours old. The record's latest data is sent on every attempt.

Choices where the pages are silent: the first retry waits 15 s and each later one
doubles; ``time_scale`` shrinks every interval and the 24 h horizon alike (tests
and the local stack cannot wait a day). Null fields are left out of the
``sObject``; ``Id`` comes first and the other fields follow in alphabetical order,
as in messages integrators have published.

``WebhookDispatcher`` from ``base`` is not reused: it retries messages one after
another on one thread and judges success by the status code alone, while an
outbound message needs an ``Ack`` and retries that do not hold up other messages.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from xml.etree import ElementTree
from xml.sax.saxutils import escape, quoteattr

import httpx

__all__ = [
    "Notification",
    "OutboundDelivery",
    "OutboundMessageDefinition",
    "OutboundQueue",
    "acknowledged",
    "build_envelope",
]

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND_NS = "http://soap.sforce.com/2005/09/outbound"
SOBJECT_NS = "urn:sobject.enterprise.soap.sforce.com"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
MAX_NOTIFICATIONS = 100
FIRST_RETRY_S = 15.0
MAX_RETRY_INTERVAL_S = 2 * 3600.0
GIVE_UP_AFTER_S = 24 * 3600.0
TRIGGERS = ("created", "created_or_edited", "subsequently_meets")


@dataclass
class OutboundMessageDefinition:
    """An outbound message and the rule that sends it.

    ``trigger`` is the workflow rule's evaluation criteria: ``created``,
    ``created_or_edited`` ("created, and every time it's edited") or
    ``subsequently_meets`` ("created, and any time it's edited to subsequently meet
    criteria"). ``criteria`` maps field names to the values the record must hold
    (all must match; empty means every record).
    """

    name: str
    object_type: str
    fields: Sequence[str]
    endpoint_url: str
    trigger: str = "created_or_edited"
    criteria: Mapping[str, Any] = field(default_factory=dict)
    send_session_id: bool = False

    def __post_init__(self) -> None:
        if self.trigger not in TRIGGERS:
            raise ValueError(f"trigger must be one of {TRIGGERS}, not {self.trigger!r}")


@dataclass(frozen=True)
class Notification:
    id: str
    object_type: str
    record_id: str


@dataclass
class OutboundDelivery:
    """One SOAP message and what became of it."""

    definition: str
    action_id: str
    url: str
    notifications: list[Notification]
    attempts: list[int | str] = field(default_factory=list)  # status, error name or "nack"
    acknowledged: bool = False
    abandoned: bool = False
    last_body: bytes = b""
    first_attempt_at: float | None = None


def _soap_value(value: Any) -> str:
    """A field value as the enterprise WSDL's XML schema types write it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return repr(float(value))
    if isinstance(value, datetime):
        utc = value.astimezone(UTC)
        return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def build_envelope(
    *,
    organization_id: str,
    action_id: str,
    session_id: str | None,
    enterprise_url: str,
    partner_url: str,
    notifications: Sequence[tuple[str, str, Mapping[str, Any]]],
) -> bytes:
    """The ``notifications`` envelope; each notification is (id, object type, fields)."""
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}" '
        f'xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="{XSI}">',
        "<soapenv:Body>",
        f'<notifications xmlns="{OUTBOUND_NS}">',
        f"<OrganizationId>{escape(organization_id)}</OrganizationId>",
        f"<ActionId>{escape(action_id)}</ActionId>",
        f"<SessionId>{escape(session_id)}</SessionId>"
        if session_id
        else '<SessionId xsi:nil="true"/>',
        f"<EnterpriseUrl>{escape(enterprise_url)}</EnterpriseUrl>",
        f"<PartnerUrl>{escape(partner_url)}</PartnerUrl>",
    ]
    for notification_id, object_type, values in notifications:
        parts.append(f"<Notification><Id>{escape(notification_id)}</Id>")
        parts.append(
            f"<sObject xsi:type={quoteattr('sf:' + object_type)} xmlns:sf={quoteattr(SOBJECT_NS)}>"
        )
        ordered = ["Id", *sorted(k for k in values if k != "Id")]
        for name in ordered:
            value = values.get(name)
            if value is not None:
                parts.append(f"<sf:{name}>{escape(_soap_value(value))}</sf:{name}>")
        parts.append("</sObject></Notification>")
    parts.append("</notifications></soapenv:Body></soapenv:Envelope>")
    return "".join(parts).encode()


def acknowledged(body: bytes) -> bool:
    """Whether a listener's answer is ``notificationsResponse`` with ``Ack`` true."""
    try:
        # The listener is the org owner's configured endpoint; expat refuses external
        # entities and bounds entity expansion, so its answer is parsed as is.
        root = ElementTree.fromstring(body)  # noqa: S314
    except ElementTree.ParseError:
        return False
    ack = root.find(
        f"./{{{SOAP_ENV}}}Body/{{{OUTBOUND_NS}}}notificationsResponse/{{{OUTBOUND_NS}}}Ack"
    )
    return ack is not None and (ack.text or "").strip().lower() in ("true", "1")


@dataclass(order=True)
class _Scheduled:
    due: float
    seq: int
    delivery: OutboundDelivery = field(compare=False)


@dataclass
class _Batch:
    definition: str
    action_id: str
    url: str
    ready_at: float
    notifications: list[Notification] = field(default_factory=list)


class OutboundQueue:
    """Queues notifications, batches them, sends and retries them from one thread.

    ``render(delivery)`` returns the envelope of a delivery at the time of an
    attempt, so every attempt carries the records' latest data.
    """

    def __init__(
        self,
        render: Callable[[OutboundDelivery], bytes],
        *,
        time_scale: float,
        timeout_s: float,
        batch_window_s: float,
    ) -> None:
        self._render = render
        self._scale = time_scale
        self._timeout_s = timeout_s
        self._window_s = batch_window_s
        self._cond = threading.Condition()
        self._batches: dict[str, _Batch] = {}
        self._heap: list[_Scheduled] = []
        self._seq = 0
        self._sending = 0
        self._closing = False
        self.deliveries: list[OutboundDelivery] = []
        self._thread = threading.Thread(target=self._run, name="sf-outbound", daemon=True)
        self._thread.start()

    def enqueue(
        self, definition: str, action_id: str, url: str, notification: Notification
    ) -> None:
        with self._cond:
            batch = self._batches.get(action_id)
            if batch is None:
                batch = _Batch(definition, action_id, url, time.monotonic() + self._window_s)
                self._batches[action_id] = batch
            batch.notifications.append(notification)
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing is queued, scheduled or being sent; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._batches or self._heap or self._sending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def clear(self) -> None:
        """Forget queued messages and past deliveries (a sandbox reset)."""
        with self._cond:
            self._batches.clear()
            self._heap.clear()
            self.deliveries.clear()
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout=10)

    def _retry_delay(self, failures: int) -> float:
        return min(FIRST_RETRY_S * 2.0 ** (failures - 1), MAX_RETRY_INTERVAL_S) * self._scale

    def _next(self) -> OutboundDelivery | None:
        """The next delivery due (lock held), forming batches whose window closed."""
        now = time.monotonic()
        for action_id, batch in list(self._batches.items()):
            if batch.ready_at > now:
                continue
            del self._batches[action_id]
            for start in range(0, len(batch.notifications), MAX_NOTIFICATIONS):
                delivery = OutboundDelivery(
                    batch.definition,
                    batch.action_id,
                    batch.url,
                    batch.notifications[start : start + MAX_NOTIFICATIONS],
                )
                self.deliveries.append(delivery)
                self._schedule(delivery, now)
        if self._heap and self._heap[0].due <= now:
            return heapq.heappop(self._heap).delivery
        return None

    def _schedule(self, delivery: OutboundDelivery, due: float) -> None:
        self._seq += 1
        heapq.heappush(self._heap, _Scheduled(due, self._seq, delivery))

    def _wait_time(self) -> float | None:
        times = [b.ready_at for b in self._batches.values()] + [s.due for s in self._heap[:1]]
        return max(min(times) - time.monotonic(), 0.0) if times else None

    def _run(self) -> None:
        with httpx.Client(timeout=self._timeout_s) as client:
            while True:
                with self._cond:
                    delivery = None
                    while not self._closing:
                        delivery = self._next()
                        if delivery is not None:
                            break
                        self._cond.wait(self._wait_time())
                    if self._closing:
                        return
                    self._sending += 1
                try:
                    assert delivery is not None
                    self._attempt(client, delivery)
                finally:
                    with self._cond:
                        self._sending -= 1
                        self._cond.notify_all()

    def _attempt(self, client: httpx.Client, delivery: OutboundDelivery) -> None:
        now = time.monotonic()
        if delivery.first_attempt_at is None:
            delivery.first_attempt_at = now
        body = self._render(delivery)
        delivery.last_body = body
        headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
        try:
            response = client.post(delivery.url, content=body, headers=headers)
            ok = 200 <= response.status_code < 300 and acknowledged(response.content)
            delivery.attempts.append(
                response.status_code if ok or response.status_code >= 300 else "nack"
            )
        except httpx.HTTPError as exc:
            ok = False
            delivery.attempts.append(type(exc).__name__)
        if ok:
            delivery.acknowledged = True
            return
        delay = self._retry_delay(len(delivery.attempts))
        age = time.monotonic() + delay - delivery.first_attempt_at
        with self._cond:
            if age > GIVE_UP_AFTER_S * self._scale:
                delivery.abandoned = True
            else:
                self._schedule(delivery, time.monotonic() + delay)
