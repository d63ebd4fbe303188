"""How much of a vendor's quota the shared call budget lets the sync use.

A sustained run: ``workers`` threads, each standing for one Lambda of the sync
function, with its own QuickBooks connector (its own ``ApiClient`` with the declared
limits, its own budget over the shared slots), read customers from the QuickBooks
sandbox as fast as the budget lets them. The sandbox enforces Intuit's documented
500 requests/min and 10/s per company (429 with ``Retry-After``) and answers every
call 250 ms late, as a real vendor call takes: a ``timeout`` fault with ``delay_s``
sleeps and then lets the request through. The budget's store is DynamoDB (moto, in
process, the Cursors table as deployed) so its round trips are counted as they
would be; ``store="memory"`` uses ``MemoryCallBudget`` workers instead.

Printed: the calls the vendor served, the calls its quota allows in the elapsed
time (500/min × elapsed; a rolling window allows no more), the share used, the
429s, the calls that failed and the budget store's round trips per call.
``measure`` returns the same figures for other benchmarks (``bench_table``).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from infra.resources import DESCRIPTION
from local.memory import MemoryCallBudget, MemoryLock, MemorySecretStore
from local.sandboxes.base import Fault, SandboxServer
from local.sandboxes.quickbooks import QuickBooksSandbox, QuickBooksSandboxConfig
from shared.connectors.quickbooks.connector import build_quickbooks
from shared.models import ObjectType
from shared.ports import CallBudget
from shared.stores.ratelimit import DEFAULT_PACING_MARGIN, DynamoCallBudget

REALM = "9341453000000001"
PER_MINUTE = 500  # Intuit's documented limit, as the sandbox enforces it
CUSTOMER_ID = "1"  # a seeded sample customer: every call is one GET


@dataclass(frozen=True)
class QuotaFigures:
    workers: int
    latency_s: float
    elapsed_s: float
    calls: int  # answered by the vendor (not 429): what its quota counted
    allowed: float  # what the quota allows in elapsed_s
    throttled: int  # 429s received
    failed: int  # logical calls that raised
    store_round_trips: int
    store: str

    @property
    def share(self) -> float:
        return self.calls / self.allowed

    @property
    def round_trips_per_call(self) -> float:
        return self.store_round_trips / max(self.calls, 1)

    def line(self) -> str:
        return (
            f"{self.workers} workers, {self.latency_s * 1e3:.0f} ms a call, "
            f"{self.elapsed_s:.0f} s: {self.calls} calls of {self.allowed:.0f} allowed "
            f"→ {self.share:.1%} of the quota; {self.throttled} × 429, {self.failed} failed; "
            f"{self.round_trips_per_call:.3f} {self.store} round trips a call"
        )


class _Counting(httpx.HTTPTransport):
    """Counts the API's answers by status (the OAuth endpoint is not metered)."""

    def __init__(self) -> None:
        super().__init__()
        self.statuses: Counter[int] = Counter()
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.url.path.startswith("/v3/"):
            with self._lock:
                self.statuses[response.status_code] += 1
        return response


class _CountingClient:
    """A DynamoDB client that counts its calls: the budget's store round trips."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls = 0
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if name == "exceptions" or not callable(attribute):
            return attribute

        def counted(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.calls += 1
            return attribute(*args, **kwargs)

        return counted


@contextmanager
def _budgets(
    store: Literal["dynamodb", "memory"],
    margin: float,
    make_budget: Callable[[Any, str], CallBudget] | None,
) -> Iterator[tuple[Callable[[], CallBudget], Callable[[], int]]]:
    """A factory of workers' budgets over one store, and its round-trip count."""
    if store == "memory":
        first = MemoryCallBudget(margin=margin)
        yield first.worker, lambda: first.slots.writes + first.slots.reads
        return
    import boto3
    from moto import mock_aws

    from local.aws import create_table

    with mock_aws():
        raw = boto3.client("dynamodb", region_name="us-east-1")
        create_table(raw, DESCRIPTION.table("Cursors"), "bench-cursors")
        counting = _CountingClient(raw)
        client: Any = counting
        make = make_budget or (lambda c, t: DynamoCallBudget(c, t, margin=margin))
        yield lambda: make(client, "bench-cursors"), lambda: counting.calls


def measure(
    *,
    workers: int = 3,
    seconds: float = 60.0,
    latency_s: float = 0.25,
    store: Literal["dynamodb", "memory"] = "dynamodb",
    margin: float = DEFAULT_PACING_MARGIN,
    make_budget: Callable[[Any, str], CallBudget] | None = None,
) -> QuotaFigures:
    """One sustained run. ``make_budget(dynamodb_client, table)`` builds each worker's
    budget on the DynamoDB store instead of ``DynamoCallBudget`` (to compare budgets)."""
    sandbox = QuickBooksSandbox(
        QuickBooksSandboxConfig(
            realm_id=REALM,
            client_id="c",
            client_secret="s",
            initial_refresh_token="r",
            webhook_verifier_token="v",
            send_retry_after=True,
        )
    )
    if latency_s:
        sandbox.faults.add(
            Fault(kind="timeout", count=10**9, delay_s=latency_s, path_prefix="/v3/")
        )
    server = SandboxServer(sandbox.app).start()
    transport = _Counting()
    secrets = MemorySecretStore(
        {
            "quickbooks": {
                "client_id": "c",
                "client_secret": "s",
                "refresh_token": "r",
                "realm_id": REALM,
            }
        }
    )
    lock = MemoryLock()
    failed = 0
    failed_lock = threading.Lock()
    try:
        with _budgets(store, margin, make_budget) as (new_budget, round_trips):
            connectors = [
                build_quickbooks(
                    api_url=server.url,
                    token_url=f"{server.url}/oauth2/v1/tokens/bearer",
                    secrets=secrets,
                    secret_id="quickbooks",
                    lock=lock,
                    budget=new_budget(),
                    transport=transport,
                )
                for _ in range(workers)
            ]
            trips_before = round_trips()
            started = time.monotonic()
            stop_at = started + seconds

            def work(i: int) -> None:
                nonlocal failed
                connector = connectors[i]
                while time.monotonic() < stop_at:
                    try:
                        connector.current(ObjectType.CUSTOMER, CUSTOMER_ID)
                    except Exception:  # a failed call is a figure here
                        with failed_lock:
                            failed += 1
                        time.sleep(1.0)  # as the queue would bring the message back later

            threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.monotonic() - started
            trips = round_trips() - trips_before
    finally:
        server.stop()
        sandbox.close()
    throttled = transport.statuses[429]
    return QuotaFigures(
        workers=workers,
        latency_s=latency_s,
        elapsed_s=elapsed,
        calls=sum(transport.statuses.values()) - throttled,
        allowed=PER_MINUTE * elapsed / 60,
        throttled=throttled,
        failed=failed,
        store_round_trips=trips,
        store=store,
    )


def deployed_concurrency() -> int:
    """The sync function's concurrency, as deployed (infra/resources.py)."""
    sync = next(f for f in DESCRIPTION.functions if f.id == "Sync")
    assert sync.max_concurrency is not None
    return sync.max_concurrency


def measure_quota_share(seconds: float = 35.0) -> list[QuotaFigures]:
    """The table's runs: the deployed concurrency, with no vendor latency and with 250 ms."""
    return [
        measure(workers=deployed_concurrency(), seconds=seconds, latency_s=latency_s)
        for latency_s in (0.0, 0.25)
    ]


def main() -> None:
    print(
        f"QuickBooks sandbox at {PER_MINUTE}/min and 10/s, 250 ms a call, "
        f"budget on DynamoDB (moto), margin {DEFAULT_PACING_MARGIN}:"
    )
    for workers in (2, 3, 4):  # the deployed sync concurrency is 4 (infra/resources.py)
        print("  " + measure(workers=workers, seconds=35).line())


if __name__ == "__main__":
    main()
