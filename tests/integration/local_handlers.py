"""A handler the local runtime's tests run in execution environments (child processes).

``journal`` is an SQS batch handler. Each record's body is a JSON order: ``name``,
``journal`` (a file to append a JSON line to), and optionally ``sleep_s`` (sleep that
long on the record's first receive) and ``meet`` (a file: add this process's id to
it, then wait until another process has added its own, or time is nearly out). The
line says which process handled the record, how many invocations that environment
has served (module state: a fresh environment starts again at 1), the receive count,
the time the context said was left, and whether the meeting happened.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

invocations = 0


def journal(event: dict[str, Any], context: Any) -> None:
    global invocations
    invocations += 1
    for record in event["Records"]:
        order = json.loads(record["body"])
        receive = int(record["attributes"]["ApproximateReceiveCount"])
        entry = {
            "name": order["name"],
            "pid": os.getpid(),
            "invocation": invocations,
            "receive": receive,
            "remaining_ms": context.get_remaining_time_in_millis(),
        }
        print(f"handling {order['name']}")
        if "meet" in order:
            entry["met"] = _meet(Path(order["meet"]), context)
        if receive == 1 and "sleep_s" in order:
            _append(Path(order["journal"]), entry)  # before the sleep: it may never end
            time.sleep(order["sleep_s"])
        else:
            _append(Path(order["journal"]), entry)


def _meet(place: Path, context: Any) -> bool:
    _append(place, os.getpid())
    while context.get_remaining_time_in_millis() > 1000:
        if len(set(place.read_text().split())) >= 2:
            return True
        time.sleep(0.02)
    return False


def _append(path: Path, value: Any) -> None:
    with path.open("a") as file:
        file.write(json.dumps(value) + "\n")
