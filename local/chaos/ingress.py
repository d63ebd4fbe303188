"""The webhook endpoint of a chaos run: what the network and HubSpot do to deliveries.

Each HubSpot delivery is, by a seeded draw, handed to the real ``WebhookIngest``
(signature verification included) once, or:

* **lost**: answered 200 and dropped, as if it never left HubSpot; only
  reconciliation can find its changes;
* **refused**: answered 503 without being enqueued, so HubSpot retries it (re-signed,
  ``attemptNumber`` + 1);
* **duplicated**: accepted twice at once (the queue's deduplication absorbs it);
* **replayed**: accepted now and the same request again seconds later, past the
  queue's deduplication window, as HubSpot's retries of a delivery whose answer it
  never saw;
* **reordered**: answered 200 and held back, then accepted later, shuffled with the
  other held deliveries.

QuickBooks deliveries (echoes of our own writes) go straight to the ingest. When the
run settles, ``calm()`` releases whatever is held or due and turns the chaos off.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass

import httpx
from flask import Flask, Response

from local.sandboxes.base import SandboxServer, received_webhook
from shared.errors import WebhookRejected
from shared.ports import InboundWebhook
from shared.sync.ingest import WebhookIngest

CHAOTIC_VENDOR = "hubspot"
# How long a reordered delivery is held, and how much later a replay comes.
HOLD_S = (0.2, 3.0)
REPLAY_AFTER_S = (2.0, 20.0)
PUMP_EVERY_S = 0.1


@dataclass(frozen=True)
class WebhookChaos:
    """Probabilities per HubSpot delivery; the rest is delivered once, as sent."""

    lost: float = 0.05
    refused: float = 0.05
    duplicated: float = 0.08
    replayed: float = 0.08
    reordered: float = 0.15


@dataclass(frozen=True)
class _Later:
    due: float
    vendor: str
    request: InboundWebhook


def connection_of(inbound: InboundWebhook) -> str:
    """The connection the delivery was posted for: the last segment of its path."""
    return httpx.URL(inbound.url).path.rsplit("/", 1)[-1]


class ChaosIngress:
    """Serves ``POST /webhooks/<vendor>/<connection>`` on 127.0.0.1 in front of ``ingest``."""

    def __init__(
        self, exit_stack: ExitStack, ingest: WebhookIngest, chaos: WebhookChaos, seed: int
    ) -> None:
        self._ingest = ingest
        self._chaos = chaos
        self._rng = random.Random(f"{seed}:webhooks")
        self._lock = threading.Lock()
        self._later: list[_Later] = []
        self._calm = False
        self.counts: Counter[str] = Counter()  # what happened to deliveries, by name
        app = Flask(__name__)
        app.add_url_rule(
            "/webhooks/<vendor>/<connection>", "webhook", self._receive, methods=["POST"]
        )
        server = SandboxServer(app).start()
        exit_stack.callback(server.stop)
        self.url = server.url
        self._stop = threading.Event()
        pump = threading.Thread(target=self._pump, name="chaos-webhooks", daemon=True)
        pump.start()
        exit_stack.callback(pump.join)
        exit_stack.callback(self._stop.set)

    def calm(self) -> None:
        """Deliver everything held or scheduled (shuffled), then stop the chaos."""
        with self._lock:
            self._calm = True
            due, self._later = self._later, []
            self._rng.shuffle(due)
        for later in due:
            self._accept(later.vendor, later.request)

    def _receive(self, vendor: str, connection: str) -> Response:
        inbound = received_webhook()
        fate = self._fate(vendor)
        if fate == "lost":
            return _answer(200, "dropped")
        if fate == "refused":
            return _answer(503, "refused")
        if fate == "reordered":
            self._schedule(vendor, inbound, HOLD_S)
            return _answer(200, "held")
        answer = _answer(*self._accept(vendor, inbound))
        if fate == "duplicated":
            self._accept(vendor, inbound)
        elif fate == "replayed":
            self._schedule(vendor, inbound, REPLAY_AFTER_S)
        return answer

    def _fate(self, vendor: str) -> str:
        with self._lock:
            fate = "delivered"
            if not self._calm and vendor == CHAOTIC_VENDOR:
                draw = self._rng.random()
                for kind, probability in (
                    ("lost", self._chaos.lost),
                    ("refused", self._chaos.refused),
                    ("duplicated", self._chaos.duplicated),
                    ("replayed", self._chaos.replayed),
                    ("reordered", self._chaos.reordered),
                ):
                    if draw < probability:
                        fate = kind
                        break
                    draw -= probability
            self.counts[f"{vendor} {fate}"] += 1
            return fate

    def _schedule(self, vendor: str, inbound: InboundWebhook, after_s: tuple[float, float]) -> None:
        with self._lock:
            due = time.monotonic() + self._rng.uniform(*after_s)
            self._later.append(_Later(due, vendor, inbound))

    def _accept(self, vendor: str, inbound: InboundWebhook) -> tuple[int, str]:
        """The webhook function's answer: 2xx only once the events are on the queue."""
        try:
            answer = self._ingest.accept(vendor, connection_of(inbound), inbound)
        except WebhookRejected as rejected:
            with self._lock:
                self.counts[f"{vendor} rejected {rejected.status}"] += 1
            return rejected.status, rejected.reason
        return answer.status, answer.body

    def _pump(self) -> None:
        """Accept held deliveries and replays once due, the due ones in shuffled order."""
        while not self._stop.wait(PUMP_EVERY_S):
            now = time.monotonic()
            with self._lock:
                due = [later for later in self._later if later.due <= now]
                self._later = [later for later in self._later if later.due > now]
                self._rng.shuffle(due)
            for later in due:
                self._accept(later.vendor, later.request)


def _answer(status: int, message: str) -> Response:
    return Response(json.dumps({"message": message}), status, mimetype="application/json")
