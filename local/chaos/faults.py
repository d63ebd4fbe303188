"""Vendor faults, queued into each sandbox's ``FaultInjector`` while the person works.

Each one lands on a path the sync or reconciliation uses and is taken by the next
request that matches:

* **5xx**: one to three server errors in a row;
* **429**: a burst of one to four; QuickBooks' say how long to wait (``Retry-After``),
  mostly a second or two (waited out in the call), sometimes longer than a client
  waits inline (the message is deferred); HubSpot's name its rolling window;
* **timeout**: the answer comes after the client gave up; the request still runs;
* **lost response**: the request runs, its answer never arrives (504), sometimes on
  every one of the client's attempts;
* **token expiry**: QuickBooks refuses an access token before its stated expiry
  (401), so the client refreshes and rotates the refresh token mid-call.

The token endpoint only ever gets 5xx and 429, which commit nothing: a rotation whose
answer was lost would leave the client a refresh token the sandbox (which keeps no
superseded token) has already retired, a state only a person can repair.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

from local.sandboxes.base import Fault, FaultInjector
from shared.connectors.http import RetryPolicy

# QuickBooks API paths under /v3/company/{realm}; (method, path) per use.
QUICKBOOKS_WRITES = (("POST", "/customer"), ("POST", "/invoice"))
QUICKBOOKS_READS = (("GET", "/query"), ("GET", "/customer/"), ("GET", "/invoice/"))
TOKEN_PATH = "/oauth2/v1/tokens/bearer"
_KINDS = ("contacts", "companies", "deals", "line_items")
HUBSPOT_READS = (
    *(("GET", f"/crm/v3/objects/{kind}/") for kind in _KINDS),
    ("POST", "/crm/v3/objects/line_items/batch/read"),
    # Reconciliation's searches.
    *(("POST", f"/crm/v3/objects/{kind}/search") for kind in _KINDS),
)
# Beyond ``RetryPolicy.max_inline_wait_s``: the message goes back to the queue for it.
LONG_RETRY_AFTER_S = (21, 25)
SHORT_RETRY_AFTER_S = (1, 2)
LOST_EVERY_TIME = RetryPolicy().max_attempts


@dataclass(frozen=True)
class VendorChaos:
    rate: float = 0.03  # faults queued per change
    long_429: float = 0.1  # share of QuickBooks 429s that defer their message


class VendorFaults:
    """Queues faults into both sandboxes; ``counts`` says how many of each kind."""

    def __init__(
        self,
        *,
        hubspot: FaultInjector,
        quickbooks: FaultInjector,
        realm_id: str,
        chaos: VendorChaos,
        call_timeout_s: float,
        seed: int,
    ) -> None:
        self._hubspot = hubspot
        self._quickbooks = quickbooks
        self._api = f"/v3/company/{realm_id}"
        self._chaos = chaos
        self._late_s = call_timeout_s + 0.5
        self._rng = random.Random(f"{seed}:vendor-faults")
        self.counts: Counter[str] = Counter()

    def after_change(self) -> None:
        """Queue a fault with the configured probability."""
        if self._rng.random() >= self._chaos.rate:
            return
        if self._rng.random() < 0.5:
            self._quickbooks_fault()
        else:
            self._hubspot_fault()

    def unconsumed(self) -> int:
        """Faults queued but not (or not fully) taken by a request yet."""
        return len(self._hubspot.pending()) + len(self._quickbooks.pending())

    def stop(self) -> None:
        """Forget the faults not taken yet: the run settles without any."""
        self._hubspot.clear()
        self._quickbooks.clear()

    def _quickbooks_fault(self) -> None:
        rng = self._rng
        kind = rng.choice(("5xx", "429", "timeout", "lost response", "token expiry"))
        if kind in ("5xx", "429") and rng.random() < 0.1:
            method, path = "POST", TOKEN_PATH
        elif kind == "lost response":
            method, path = rng.choice(QUICKBOOKS_WRITES)
            path = self._api + path
        else:
            method, path = rng.choice(QUICKBOOKS_WRITES + QUICKBOOKS_READS)
            path = self._api + path
        self._add(self._quickbooks, f"quickbooks {kind}", self._fault(kind, method, path))

    def _hubspot_fault(self) -> None:
        kind = self._rng.choice(("5xx", "429", "timeout", "lost response"))
        method, path = self._rng.choice(HUBSPOT_READS)
        self._add(self._hubspot, f"hubspot {kind}", self._fault(kind, method, path))

    def _fault(self, kind: str, method: str, path: str) -> Fault:
        rng = self._rng
        fault = Fault("error", method=method, path_prefix=path)
        if kind == "5xx":
            fault.count, fault.status = rng.randint(1, 3), rng.choice((500, 502, 503))
        elif kind == "429":
            long = rng.random() < self._chaos.long_429
            fault.kind, fault.count = "rate_limit", rng.randint(1, 4)
            fault.retry_after_s = rng.randint(
                *(LONG_RETRY_AFTER_S if long else SHORT_RETRY_AFTER_S)
            )
        elif kind == "timeout":
            fault.kind, fault.delay_s = "timeout", self._late_s
        elif kind == "lost response":
            # Sometimes on every attempt the client makes: the write commits, and the
            # call fails anyway (a connection lost for seconds).
            fault.kind, fault.count = "drop_response", rng.choice((1, 1, 2, LOST_EVERY_TIME))
        else:  # token expiry
            fault.status = 401
        return fault

    def _add(self, injector: FaultInjector, name: str, fault: Fault) -> None:
        injector.add(fault)
        self.counts[name] += 1
