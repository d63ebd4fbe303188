"""The reconcile function on its schedule, compressed like every other wait of a run.

Deployed, reconciliation runs hourly, re-reads the five minutes before its
watermark (HubSpot's search lags behind writes) and once a day walks every deal.
In a run it fires every ten seconds while the person works, concurrently with
webhooks and the queue, re-reads a few seconds (more than the sandbox's search lag,
far less than the run) and walks every deal every 24 runs' worth of time. So a
record it repairs is one it would repair in AWS, and a change that neither a webhook
nor reconciliation would ever bring is left unrepaired, to be found by the judge,
instead of being swept up by one last scan of everything. When the run settles, a
(compressed) day passes first, so the daily walk has had its turn.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

from shared.ports import DeadLetters
from shared.sync.reconcile import FleetReport, Reconciler, sweep_dead_letters

log = logging.getLogger(__name__)

# Deployed: every 60 minutes, 300 s of overlap, every deal walked daily.
RECONCILE_EVERY_S = 10.0
RECONCILE_OVERLAP_S = 3
WALK_EVERY_S = 24 * RECONCILE_EVERY_S


class RunClock:
    """Wall-clock time, which the run can move a day ahead to let the daily walk come."""

    def __init__(self) -> None:
        self._ahead_s = 0.0

    def __call__(self) -> float:
        return time.time() + self._ahead_s

    def next_day(self) -> None:
        self._ahead_s += WALK_EVERY_S


class ReconcileSchedule:
    """Fires ``reconciler`` (and the dead-letter sweep) every ``every_s`` seconds, first
    after one interval."""

    def __init__(
        self,
        reconciler: Reconciler,
        dead_letters: DeadLetters,
        connection_id: str,
        every_s: float = RECONCILE_EVERY_S,
    ) -> None:
        self._reconciler = reconciler
        self._dead_letters = dead_letters
        self._connection_id = connection_id
        self._every_s = every_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self._thread = threading.Thread(target=self._run, name="chaos-reconcile", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def run_now(self) -> FleetReport:
        """One run (the schedule's, or one of the settling rounds), counted; raises what
        the reconciler raised."""
        with self._lock:
            report = self._reconciler.run()
            fleet = FleetReport(reports={self._connection_id: report})
            if report.complete:
                fleet.dead_letters_resolved = sweep_dead_letters(
                    self._dead_letters, {self._connection_id: self._reconciler}
                )
            self.counts["runs"] += 1
            self.counts["enqueued"] += report.total_enqueued
            self.counts["dead letters resolved"] += sum(fleet.dead_letters_resolved.values())
            return fleet

    def _run(self) -> None:
        while not self._stop.wait(self._every_s):
            try:
                self.run_now()
            except Exception:
                # A vendor fault hit the run: like the Lambda, it fails; the watermark
                # kept its checkpoints and the next run carries on from there.
                log.debug("scheduled reconcile failed", exc_info=True)
                with self._lock:
                    self.counts["failed runs"] += 1
