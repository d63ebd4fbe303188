"""Cold import time of each Lambda handler module — most of a cold start.

Method: for each handler in infra.resources.DESCRIPTION, 5 fresh Python processes;
each times ``importlib.import_module(handler)`` from an empty interpreter, so boto3,
botocore, pydantic and powertools are imported inside the timer as in a Lambda's
init phase. No AWS endpoint is needed: nothing may call AWS at import (clients are
made, and connections and secrets read, on first use). Prints min and
median beside the goal, and the modules imported, with tracing off as the local stack
runs.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from infra.resources import DESCRIPTION

ROOT = Path(__file__).resolve().parent.parent
RUNS = 5
GOAL_MS = 300  # the budget for a handler's cold import

PROBE = r"""
import importlib, json, sys, time
module = sys.argv[1]
before = set(sys.modules)
started = time.perf_counter()
importlib.import_module(module)
elapsed = time.perf_counter() - started
print(json.dumps({"seconds": elapsed, "modules": len(set(sys.modules) - before)}))
"""


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "CRMSYNC_EVENTS_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/1/bench.fifo",
            "POWERTOOLS_TRACE_DISABLED": "true",
        }
    )
    return env


def measure(module: str) -> tuple[list[float], int]:
    seconds, modules = [], 0
    for _ in range(RUNS):
        out = subprocess.run(
            [sys.executable, "-c", PROBE, module],
            cwd=ROOT,
            env=environment(),
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        seconds.append(result["seconds"])
        modules = result["modules"]
    return seconds, modules


def main() -> None:
    print(f"cold import of each handler module ({RUNS} fresh processes each)")
    for function in DESCRIPTION.functions:
        module = function.handler.rsplit(".", 1)[0]
        seconds, modules = measure(module)
        print(
            f"{function.id:<10} {module:<32} min={min(seconds) * 1e3:6.0f} ms  "
            f"median={statistics.median(seconds) * 1e3:6.0f} ms (goal < {GOAL_MS} ms)  "
            f"(+{modules} modules)"
        )


if __name__ == "__main__":
    main()
