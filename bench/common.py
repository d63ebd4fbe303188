"""Timing helpers shared by the benchmarks: fixed method, printed figures, no asserts."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(round(q / 100 * (len(ordered) - 1)), len(ordered) - 1)
    return ordered[index]


def time_calls(fn: Callable[[], object], *, n: int, warmup: int = 50) -> list[float]:
    """Seconds per call for ``n`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return samples


def report(name: str, samples: list[float], note: str = "") -> None:
    """One line of figures; ``note`` (e.g. the goal) is printed after them."""
    total = sum(samples)
    print(
        f"{name:<44} n={len(samples):>6}  {len(samples) / total:>9.0f}/s  "
        f"p50={percentile(samples, 50) * 1e3:7.3f} ms  "
        f"p99={percentile(samples, 99) * 1e3:7.3f} ms  "
        f"mean={statistics.fmean(samples) * 1e3:7.3f} ms" + (f"  {note}" if note else "")
    )
