"""Shared machinery for the vendor sandboxes.

A sandbox is a stateful Flask app that behaves like one vendor's public API. This
module gives every sandbox the same three things so each vendor module holds only
vendor behaviour:

* ``SandboxServer`` runs the app on 127.0.0.1 in a background thread.
* ``FaultInjector`` lets a test or the demo queue faults (5xx, slow responses,
  429 bursts) through ``POST /_sandbox/faults``; the vendor module decides what
  its 429 looks like.
* ``SlidingWindowLimiter`` counts requests per key the way vendors describe their
  limits ("500 requests per minute per company").
* ``WebhookDispatcher`` delivers signed webhooks from a background thread with the
  vendor's retry rule, so a slow receiver never blocks an API call.

Admin routes live under ``/_sandbox/`` and are never called by production code.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from flask import Flask, Response, jsonify, request
from werkzeug.serving import BaseWSGIServer, make_server

from shared.ports import InboundWebhook

log = logging.getLogger(__name__)

FAULT_KINDS = ("error", "timeout", "rate_limit", "drop_response")


@dataclass
class Fault:
    """One queued fault. ``count`` requests matching ``path_prefix``/``method`` get it."""

    kind: str  # error | timeout | rate_limit | drop_response
    count: int = 1
    status: int = 503
    delay_s: float = 0.0
    retry_after_s: int = 1
    path_prefix: str = "/"
    method: str | None = None

    def matches(self, method: str, path: str) -> bool:
        if self.method and self.method.upper() != method.upper():
            return False
        return path.startswith(self.path_prefix)


class FaultInjector:
    """Queue of faults consumed by matching requests, in the order they were added."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> None:
        if fault.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {fault.kind!r}; expected one of {FAULT_KINDS}")
        if fault.count < 1:
            raise ValueError("fault count must be at least 1")
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.count -= 1
                    if fault.count == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return [vars(f).copy() for f in self._faults]


class SlidingWindowLimiter:
    """Allows ``limit`` hits per ``window_s`` per key; reports how long until the next slot."""

    def __init__(self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._hits: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def hit(self, key: str) -> float:
        """Record a hit: 0 when allowed, else seconds until a slot frees (hit not counted)."""
        now = self._clock()
        with self._lock:
            hits = self._hits[key]
            while hits and now - hits[0] >= self.window_s:
                hits.popleft()
            if len(hits) >= self.limit:
                return max(self.window_s - (now - hits[0]), 0.001)
            hits.append(now)
            return 0.0

    def remaining(self, key: str) -> int:
        """Hits left in the current window (vendors report it in response headers)."""
        now = self._clock()
        with self._lock:
            used = sum(1 for t in self._hits[key] if now - t < self.window_s)
        return max(self.limit - used, 0)

    def reset(self) -> None:
        with self._lock:
            self._hits.clear()


@dataclass
class Delivery:
    """A webhook the sandbox tried to send, kept for tests and the demo to inspect."""

    url: str
    body: bytes
    headers: dict[str, str]
    attempts: list[int | str] = field(default_factory=list)  # status codes or error names
    delivered: bool = False


class WebhookDispatcher:
    """Sends webhooks from one background thread, retrying on failure.

    ``retry_delays_s`` is the vendor's documented schedule, usually compressed by the
    sandbox (vendors retry over a day; a test cannot wait that long). ``build`` is
    called per attempt so a vendor can re-sign or bump an attempt counter.
    """

    def __init__(self, retry_delays_s: list[float], timeout_s: float = 5.0) -> None:
        self.retry_delays_s = retry_delays_s
        self.timeout_s = timeout_s
        self.deliveries: list[Delivery] = []
        self._queue: queue.Queue[tuple[str, Callable[[int], tuple[bytes, dict[str, str]]]] | None]
        self._queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="webhooks", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)
            self._thread = None

    def send(self, url: str, build: Callable[[int], tuple[bytes, dict[str, str]]]) -> None:
        """Queue a delivery. ``build(attempt_number)`` returns (body, headers)."""
        self._queue.put((url, build))

    def clear(self) -> None:
        """Forget past deliveries (a sandbox reset)."""
        with self._lock:
            self.deliveries.clear()

    def idle(self) -> bool:
        return self._queue.unfinished_tasks == 0

    def wait_idle(self, timeout: float, busy: Callable[[], bool] = lambda: False) -> bool:
        """Block until nothing is queued or being delivered and ``busy()`` (the vendor's
        own batching, say) is False; False when ``timeout`` passes first."""
        deadline = time.monotonic() + timeout
        while busy() or not self.idle():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout_s) as client:
            while True:
                item = self._queue.get()
                try:
                    if item is None:
                        return
                    self._deliver(client, *item)
                finally:
                    self._queue.task_done()

    def _deliver(
        self,
        client: httpx.Client,
        url: str,
        build: Callable[[int], tuple[bytes, dict[str, str]]],
    ) -> None:
        body, headers = build(0)
        delivery = Delivery(url=url, body=body, headers=headers)
        with self._lock:
            self.deliveries.append(delivery)
        for attempt in range(len(self.retry_delays_s) + 1):
            if attempt:
                time.sleep(self.retry_delays_s[attempt - 1])
                body, headers = build(attempt)
            try:
                response = client.post(url, content=body, headers=headers)
                delivery.attempts.append(response.status_code)
                if 200 <= response.status_code < 300:
                    delivery.delivered = True
                    return
            except httpx.HTTPError as exc:
                delivery.attempts.append(type(exc).__name__)
        log.warning("webhook to %s gave up after %d attempts", url, len(delivery.attempts))


class SandboxServer:
    """Runs a sandbox's Flask app on 127.0.0.1 in a daemon thread."""

    def __init__(self, app: Flask, port: int = 0, host: str = "127.0.0.1") -> None:
        self.app = app
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request drowns output
        self._server: BaseWSGIServer = make_server(host, port, app, threaded=True)
        self.host = host
        self.port = self._server.server_port
        # A short poll interval so stop() returns promptly (werkzeug's default is 0.5 s).
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> SandboxServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)


def received_webhook() -> InboundWebhook:
    """The Flask request being served, as a webhook receiver takes it: headers
    lower-cased, the raw body as text. For the endpoints that stand in for ours."""
    return InboundWebhook(
        method=request.method,
        url=request.url,
        headers={name.lower(): value for name, value in request.headers.items()},
        body=request.get_data(as_text=True),
        received_at=datetime.now(UTC),
    )


def install_fault_routes(
    app: Flask,
    faults: FaultInjector,
    rate_limited: Callable[[Fault], Response],
    on_reset: Callable[[], None],
) -> None:
    """Wire ``/_sandbox/*`` admin routes and the before-request fault hook into ``app``.

    ``rate_limited`` builds the vendor's own 429 response for a ``rate_limit`` fault.
    A ``drop_response`` fault lets the request run (its effect is kept) and then
    answers 504, the way a response lost on the wire looks to a client.
    """

    @app.before_request
    def _inject_fault() -> Response | None:
        if request.path.startswith("/_sandbox/"):
            return None
        fault = faults.take(request.method, request.path)
        if fault is None:
            return None
        if fault.kind == "drop_response":
            request.environ["sandbox.drop_response"] = True
            return None
        if fault.kind == "timeout":
            time.sleep(fault.delay_s or 30.0)
            return None
        if fault.kind == "rate_limit":
            return rate_limited(fault)
        if fault.delay_s:
            time.sleep(fault.delay_s)
        return _json({"sandboxFault": True, "status": fault.status}, fault.status)

    @app.after_request
    def _drop_response(response: Response) -> Response:
        if request.environ.get("sandbox.drop_response"):
            return _json({"sandboxFault": True, "status": 504, "dropped": True}, 504)
        return response

    @app.post("/_sandbox/faults")
    def _add_fault() -> Response:
        body = request.get_json(force=True, silent=True)
        if not isinstance(body, Mapping):
            return _json({"error": "body must be a JSON object describing a fault"}, 400)
        try:
            faults.add(Fault(**body))
        except (TypeError, ValueError) as exc:
            return _json({"error": str(exc)}, 400)
        return _json({"pending": faults.pending()}, 201)

    @app.delete("/_sandbox/faults")
    def _clear_faults() -> Response:
        faults.clear()
        return _json({"pending": []}, 200)

    @app.post("/_sandbox/reset")
    def _reset() -> Response:
        faults.clear()
        on_reset()
        return _json({"reset": True}, 200)


def _json(body: Any, status: int) -> Response:
    response = jsonify(body)
    response.status_code = status
    return response
