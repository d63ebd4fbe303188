"""The backfill's estimate of the time left: the calls still to make at the pace of the
slowest vendor limit the run has drawn on."""

from __future__ import annotations

import pytest

from ops.backfill import MeteredBudget
from shared.stores.ratelimit import Pace


def budget(calls: dict[Pace, int]) -> MeteredBudget:
    metered = MeteredBudget(None, "Cursors", margin=1.02)  # type: ignore[arg-type]  # never called
    metered.calls.update(calls)
    return metered


def test_given_no_record_done_then_there_is_no_estimate_yet() -> None:
    assert budget({}).seconds_left(0, 100) is None


def test_given_calls_under_two_limits_then_the_slowest_pace_decides() -> None:
    batches, calls = Pace(40, 60.0, 1.02), Pace(500, 60.0, 1.02)
    # 60 records took 2 batch calls (each also a call of the minute's 500).
    metered = budget({batches: 2, calls: 3})

    seconds = metered.seconds_left(60, 120)

    # 4 more batch calls, paced 60/40 s × the margin apart.
    assert seconds == pytest.approx(4 * 1.5 * 1.02)
