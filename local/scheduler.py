"""EventBridge's rate schedule, locally: a thread that fires the reconcile function."""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from local.aws import ACCOUNT_ID
from local.lambdas import LocalFunction

log = logging.getLogger(__name__)


def scheduled_event(rule_arn: str, region: str) -> dict[str, Any]:
    """The event EventBridge sends a target of a schedule rule."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }


@dataclass(frozen=True)
class SchedulerStatus:
    fired: int
    failed: int
    interval_s: float


class Scheduler:
    """Fires ``function`` every ``interval_s`` (first after one interval, as a rate rule does)
    and on demand with ``fire_now``."""

    def __init__(
        self, function: LocalFunction, *, rule_arn: str, region: str, interval_s: float
    ) -> None:
        self._function = function
        self._rule_arn = rule_arn
        self._region = region
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._fired = self._failed = 0

    def start(self) -> Scheduler:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._function.spec.timeout_s)
            self._thread = None

    def status(self) -> SchedulerStatus:
        with self._lock:
            return SchedulerStatus(
                fired=self._fired, failed=self._failed, interval_s=self.interval_s
            )

    def fire_now(self) -> Any:
        """Invoke the function with a scheduled event now; its result, or its exception."""
        try:
            result = self._function.invoke(scheduled_event(self._rule_arn, self._region))
        except Exception:
            with self._lock:
                self._fired += 1
                self._failed += 1
            raise
        with self._lock:
            self._fired += 1
        return result

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.fire_now()
            except Exception:
                log.exception("scheduled %s run failed", self._function.name)
