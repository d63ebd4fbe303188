"""The call budget's slots, leased in blocks by concurrent workers, on a fake clock.

Workers are simulated: each acquires, makes its call at the time the budget gives it,
spends ``call_s`` on it, and acquires again; the clock jumps from one worker's turn to
the next in time order. Vendors count rolling windows, so the property that matters
is that no window of ``per_s`` seconds, anywhere, holds more than ``limit`` calls.
"""

from __future__ import annotations

import bisect
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from infra.resources import DESCRIPTION
from local.memory import MemoryCallBudget, MemorySlots
from shared.connectors.quickbooks.connector import CALL_LIMITS
from shared.settings import Settings
from shared.stores.ratelimit import Pace

T0 = 1_764_000_000.0


@dataclass
class Run:
    calls: list[float]  # when each call was made, sorted
    round_trips: int  # store reads and writes, all workers together
    refusals: int

    def busiest(self, window_s: float) -> int:
        """The most calls in any window of ``window_s`` (half-open, as vendors count)."""
        return max(
            (bisect.bisect_left(self.calls, t + window_s) - i for i, t in enumerate(self.calls)),
            default=0,
        )


class SlowStore(MemoryCallBudget):
    """A worker whose every store round trip takes ``latency_s`` of its own clock."""

    def __init__(self, clock: list[float], latency_s: float, slots: MemorySlots | None) -> None:
        super().__init__(clock=lambda: clock[0], slots=slots)
        self.now = clock
        self.latency_s = latency_s

    def _reserve(self, *args: Any, **kwargs: Any) -> tuple[int, bool]:
        self.now[0] += self.latency_s
        return super()._reserve(*args, **kwargs)

    def _peek(self, *args: Any, **kwargs: Any) -> list[int | None]:
        self.now[0] += self.latency_s
        return super()._peek(*args, **kwargs)


def run(
    *,
    workers: int,
    limit: int,
    per_s: float,
    call_s: Callable[[int, random.Random], float] | float,
    duration_s: float,
    max_wait_s: float = 20.0,
    seed: int = 7,
    store_latency_s: float = 0.0,
) -> Run:
    first = SlowStore([T0], store_latency_s, None)
    budgets = [first, *(SlowStore([T0], store_latency_s, first.slots) for _ in range(workers - 1))]
    rng = random.Random(seed)
    turns = [(T0 + rng.uniform(0, 0.5), w) for w in range(workers)]
    calls: list[float] = []
    refusals = 0
    while turns:
        at, w = heapq.heappop(turns)
        if at > T0 + duration_s:
            continue
        budget = budgets[w]
        budget.now[0] = at
        wait = budget.acquire("realm", limit=limit, per_s=per_s, max_wait_s=max_wait_s)
        back = budget.now[0]  # when acquire returned: the wait counts from there
        if wait > max_wait_s:  # back to the queue: the message comes back after the wait
            refusals += 1
            heapq.heappush(turns, (back + wait, w))
            continue
        calls.append(back + wait)
        spent = call_s(w, rng) if callable(call_s) else call_s
        heapq.heappush(turns, (back + wait + spent, w))
    calls.sort()
    return Run(calls, first.slots.writes + first.slots.reads, refusals)


def jittery(w: int, rng: random.Random) -> float:
    """Mostly ~0.25 s, sometimes quick (a 404), sometimes slow; each worker its own."""
    return rng.choice([0.02, 0.2, 0.25, 0.25, 0.3, 0.6, 1.5]) * (1 + w / 10)


@pytest.mark.parametrize(
    ("limit", "per_s", "workers", "call_s"),
    [
        (500, 60.0, 3, 0.25),  # QuickBooks, as many workers as lanes
        (500, 60.0, 8, 0.25),  # more workers than lanes: they queue
        (500, 60.0, 5, 0.0),  # workers that call as fast as they are let
        (500, 60.0, 6, jittery),
        (100, 10.0, 6, jittery),  # HubSpot's burst limit
        (5, 1.0, 4, 0.05),  # HubSpot's search
        (60, 60.0, 3, jittery),  # Xero's minute
        (40, 60.0, 2, 0.25),  # QuickBooks' batch calls
        (20_000, 60.0, 1, 0.001),  # limits raised far above a vendor's: lanes capped
    ],
)
def test_given_concurrent_workers_then_no_rolling_window_holds_more_than_the_limit(
    limit: int, per_s: float, workers: int, call_s: Callable[[int, random.Random], float] | float
) -> None:
    result = run(workers=workers, limit=limit, per_s=per_s, call_s=call_s, duration_s=150)

    assert result.busiest(per_s) <= limit
    assert len(result.calls) > limit  # the windows were full enough to mean something


@pytest.mark.parametrize(
    ("limit", "per_s", "workers"),
    [(5, 1.0, 3), (5, 1.0, 2), (100, 10.0, 4), (500, 60.0, 4), (40, 60.0, 2)],
)
@pytest.mark.parametrize("latency_s", [0.009, 0.03, 0.4])
def test_given_a_slow_store_then_slots_count_from_its_answer_and_no_window_overflows(
    limit: int, per_s: float, workers: int, latency_s: float
) -> None:
    # Found in review: a slot fetched in a slow round trip was used late by the round
    # trip (5/1 with 3 workers and a 9 ms store held 6 calls in a second).
    result = run(
        workers=workers,
        limit=limit,
        per_s=per_s,
        call_s=0.05,
        duration_s=120,
        store_latency_s=latency_s,
    )

    assert result.busiest(per_s) <= limit
    # Windows full enough to mean something; a store slower than a lane still serves.
    assert len(result.calls) > (limit if latency_s < Pace(limit, per_s, 1.02).interval else 100)


def test_given_quickbooks_paced_at_its_minute_then_no_second_holds_more_than_9_calls() -> None:
    # Why QuickBooks declares no 10/s budget: the minute's pace already keeps under it.
    for call_s in (0.0, 0.25, jittery):
        result = run(workers=6, limit=500, per_s=60, call_s=call_s, duration_s=90)

        assert result.busiest(1.0) <= 9


def test_given_as_many_workers_as_lanes_at_250_ms_a_call_then_the_quota_is_used_at_95_percent_or_more() -> (  # noqa: E501
    None
):
    pace = Pace(500, 60.0, 1.02)
    result = run(workers=pace.lanes, limit=500, per_s=60, call_s=0.25, duration_s=180)

    assert len(result.calls) >= 0.95 * 500 * 3
    assert result.round_trips / len(result.calls) <= 0.25  # blocks: most calls cost none


def test_given_more_workers_than_lanes_then_the_quota_is_still_used_and_round_trips_stay_few() -> (
    None
):
    result = run(workers=8, limit=500, per_s=60, call_s=0.25, duration_s=180)

    assert len(result.calls) >= 0.95 * 500 * 3
    assert result.round_trips / len(result.calls) <= 0.6


def test_given_a_worker_that_stops_then_its_unused_slots_expire_rather_than_burst_later() -> None:
    now = [T0]
    budget = MemoryCallBudget(clock=lambda: now[0])
    for _ in range(20):  # a busy spell: blocks grow
        now[0] += budget.acquire("realm", limit=500, per_s=60, max_wait_s=5) + 0.01
    writes = budget.slots.writes
    now[0] += 30  # idle: the slots it still holds are long past

    wait = budget.acquire("realm", limit=500, per_s=60, max_wait_s=5)

    assert budget.slots.writes == writes + 1  # a new block, not a stale slot
    assert wait <= Pace(500, 60.0, 1.02).interval


def test_given_a_slot_further_than_the_caller_waits_then_it_is_refused_and_nothing_reserved() -> (
    None
):
    now = [T0]
    first = MemoryCallBudget(clock=lambda: now[0])
    other = first.worker()
    assert first.acquire("realm", limit=3, per_s=60, max_wait_s=0) == 0.0

    refused = other.acquire("realm", limit=3, per_s=60, max_wait_s=5)
    again = other.acquire("realm", limit=3, per_s=60, max_wait_s=5)

    assert refused == pytest.approx(20.4, abs=0.03)  # 60 / 3 × the 2 % margin
    assert again == pytest.approx(refused)  # the first refusal kept nothing back
    now[0] += refused
    assert other.acquire("realm", limit=3, per_s=60, max_wait_s=0) == 0.0


def test_given_the_margin_then_slots_are_that_much_further_apart() -> None:
    now = [T0]
    budget = MemoryCallBudget(clock=lambda: now[0], margin=1.1)

    waits = [budget.acquire("realm", limit=3, per_s=60, max_wait_s=100) for _ in range(3)]

    assert waits == pytest.approx([0.0, 22.0, 44.0], abs=0.03)


@pytest.mark.parametrize("margin", [0.99, 1.0, 1.0005])
def test_given_a_margin_without_room_for_rounding_then_it_is_refused(margin: float) -> None:
    # Found in review: at 1.0 a wait under 0.1 ms was not slept, and 3/60 held 4 calls.
    with pytest.raises(ValueError, match="margin"):
        MemoryCallBudget(margin=margin)


def test_given_the_deployed_sync_concurrency_then_every_quickbooks_lane_has_a_worker() -> None:
    # Fewer busy workers than lanes leave lanes unused: 2 workers, 65 % of QuickBooks'
    # quota at 250 ms a call (bench/bench_quota.py).
    (minute,) = CALL_LIMITS
    sync = next(f for f in DESCRIPTION.functions if f.id == "Sync")
    lanes = Pace(minute.limit, minute.per_s, Settings().call_pacing_margin).lanes

    assert sync.max_concurrency is not None
    assert sync.max_concurrency > lanes


def test_given_a_worker_back_from_a_pause_then_one_write_covers_its_next_burst() -> None:
    now = [T0]
    budget = MemoryCallBudget(clock=lambda: now[0])
    budget.acquire("realm", limit=500, per_s=60, max_wait_s=5)
    now[0] += 30  # events seconds apart: the worker idles between them
    writes = budget.slots.writes

    waits = []
    for _ in range(3):  # one event's calls, a few tenths of a second each
        waits.append(budget.acquire("realm", limit=500, per_s=60, max_wait_s=5))
        now[0] += waits[-1] + 0.2

    assert budget.slots.writes == writes + 1
    assert waits[0] <= Pace(500, 60.0, 1.02).interval  # the soonest lane's first slot
