"""One chaos run for one seed: make the changes under chaos, settle, judge.

The seed fixes the changes, every chaos draw and the order the queue hands out
message groups; thread timing still varies between runs of one seed, so two runs
interleave differently, as two days in production would.

While the person works, reconciliation runs on its (compressed) schedule
(``local.chaos.schedule``). Settling: once the changes are made, no fault is
injected any more (the vendors' queued faults are dropped, held webhooks released,
crashes stopped); webhooks are delivered and the queue drained; then a (compressed)
day passes and reconciliation runs again, its daily walk and dead-letter sweep
included, and the queue is drained again, until a round writes nothing to
QuickBooks. (A round may always enqueue something: an
invalid record modified within the overlap goes back to the engine, so that its
audit entry says why.)
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field

from infra.resources import DESCRIPTION
from local.chaos.changes import Person
from local.chaos.check import Before, Judge, Verdict
from local.chaos.faults import VendorChaos, VendorFaults
from local.chaos.ingress import ChaosIngress, WebhookChaos
from local.chaos.schedule import (
    RECONCILE_OVERLAP_S,
    WALK_EVERY_S,
    ReconcileSchedule,
    RunClock,
)
from local.chaos.vendors import CONNECTION, EVENTS, Vendors, start_vendors
from local.chaos.workers import (
    HARNESS_ERRORS,
    LIMIT_FACTOR,
    CappedTimeout,
    CrashChaos,
    RaisedLimits,
    Stores,
    Workers,
    build_environment,
)
from local.memory import MemoryConnections, MemoryQueue
from local.sandboxes.quickbooks import QuickBooksSandbox
from shared.bootstrap import CRM_OBJECTS, mapper_of
from shared.connectors.hubspot.connector import build_hubspot
from shared.connectors.registry import vendor
from shared.connectors.spec import WebhookContext, secret_id
from shared.mapping import Mapper
from shared.sync.ingest import WebhookIngest
from shared.sync.reconcile import Reconciler

SYNC = DESCRIPTION.function("Sync")
# SQS FIFO forgets a deduplication id after 5 minutes; HubSpot retries a delivery
# for a day. Compressed like the visibility timeout, so a replay seconds later
# reaches the engine as a day-late one would.
DEDUP_WINDOW_S = 2.0
# How long the person waits for the service to catch up before the next change.
BACKLOG_WAIT_S = 2.0
PROGRESS_EVERY = 1000


@dataclass(frozen=True)
class ChaosConfig:
    changes: int = 10_000
    seed: int = 1
    workers: int = SYNC.max_concurrency or 1
    invalid: float = 0.04  # share of contacts and deals invalid on purpose
    duplicate_events: float = 0.02  # HubSpot listing an event twice in one delivery
    webhooks: WebhookChaos = field(default_factory=WebhookChaos)
    vendor: VendorChaos = field(default_factory=VendorChaos)
    crashes: CrashChaos = field(default_factory=CrashChaos)
    call_timeout_s: float = 2.0
    token_life_s: float = 3.0
    # Changes per second the person makes (a Poisson process), and the queued messages
    # at which they wait for the service to catch up.
    pace: float = 40.0
    max_backlog: int = 60
    settle_timeout_s: float = 900.0
    reconcile_rounds: int = 5


@dataclass
class ChaosReport:
    config: ChaosConfig
    seconds: float = 0.0
    changes: int = 0
    settled: bool = False
    dead_letters: int = 0
    verdict: Verdict = field(default_factory=Verdict)
    counts: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        harness_failed = self.counts[f"workers: {HARNESS_ERRORS}"] > 0
        return self.settled and not harness_failed and not self.verdict.problems()

    def line(self) -> str:
        v = self.verdict
        return (
            f"seed {self.config.seed}: {self.changes} changes, "
            f"{self.counts['workers: messages handled']} events handled in {self.seconds:.0f} s | "
            f"duplicates {len(v.duplicates)}, lost {len(v.lost)}, "
            f"wrong amounts {len(v.wrong_amounts)}, DLQ {self.dead_letters}"
            + ("" if self.ok else " | FAILED")
        )

    def details(self) -> list[str]:
        v = self.verdict
        return [
            f"  other checks: wrong customers {len(v.wrong_customers)}, invalid {len(v.invalid)},"
            f" untraced {len(v.untraced)}, settled {self.settled}; checked {v.checked}",
            *(
                f"  {title}: " + ", ".join(f"{k} {n}" for k, n in sorted(counts.items()))
                for title, counts in self.grouped().items()
                if counts
            ),
        ]

    def grouped(self) -> dict[str, dict[str, int]]:
        groups: dict[str, dict[str, int]] = {}
        for name, n in self.counts.items():
            group, _, rest = name.partition(": ")
            groups.setdefault(group if rest else "run", {})[rest or name] = n
        return groups


def run_chaos(config: ChaosConfig, progress: Callable[[str], None] = lambda _: None) -> ChaosReport:
    report = ChaosReport(config)
    started = time.perf_counter()
    with ExitStack() as stack:
        vendors = start_vendors(
            stack,
            seed=config.seed,
            duplicate_events=config.duplicate_events,
            token_life_s=config.token_life_s,
        )
        settings = vendors.settings
        before = Before.of(vendors.quickbooks)
        mapper = mapper_of(vendors.connection)
        queue = MemoryQueue(
            visibility_timeout_s=EVENTS.visibility_timeout_s,
            max_receive_count=EVENTS.max_receive_count,
            dedup_window_s=DEDUP_WINDOW_S,
            rng=random.Random(f"{config.seed}:queue"),
            # One reconcile environment reads the dead letters, minutes of run time
            # apart: a settling round must see the letters the last one left.
            dead_letter_hide_s=0,
        )
        stores = Stores(queue=queue, secrets=vendors.secrets)
        ingest = WebhookIngest(
            connections=MemoryConnections([vendors.connection]),
            receiver_for=lambda name, connection_id: vendor(name).webhook_receiver(
                WebhookContext(
                    secrets=stores.secrets,
                    secret_id=secret_id(connection_id, name),
                    tolerance_s=settings.webhook_tolerance_s,
                )
            ),
            queue=queue,
            max_body_bytes=settings.max_webhook_body_bytes,
        )
        ingress = ChaosIngress(stack, ingest, config.webhooks, config.seed)
        vendors.aim_webhooks(ingress.url)
        workers = Workers(
            count=config.workers,
            queue=queue,
            environment=lambda after_write: build_environment(
                vendors,
                stores,
                mapper,
                call_timeout_s=config.call_timeout_s,
                after_write=after_write,
            ),
            chaos=config.crashes,
            function_timeout_s=SYNC.timeout_s,
            seed=config.seed,
        )
        workers.start()
        stack.callback(workers.stop)
        clock = RunClock()
        schedule = ReconcileSchedule(
            _reconciler(config, vendors, mapper, stores, clock, stack), stores.queue, CONNECTION
        )
        schedule.start()
        faults = VendorFaults(
            hubspot=vendors.hubspot.faults,
            quickbooks=vendors.quickbooks.faults,
            realm_id=vendors.quickbooks.config.realm_id,
            chaos=config.vendor,
            call_timeout_s=config.call_timeout_s,
            seed=config.seed,
        )
        person = Person(vendors.hubspot, random.Random(f"{config.seed}:person"), config.invalid)

        pace = random.Random(f"{config.seed}:pace")
        next_progress = PROGRESS_EVERY
        while report.changes < config.changes:
            report.changes += person.act()
            faults.after_change()
            time.sleep(pace.expovariate(config.pace))
            _wait_for_backlog(queue, config.max_backlog)
            if report.changes >= next_progress:
                next_progress += PROGRESS_EVERY
                progress(f"{report.changes} changes in {time.perf_counter() - started:.0f} s")
        progress(f"{report.changes} changes made in {time.perf_counter() - started:.0f} s")

        schedule.stop()
        report.counts["vendor faults: unconsumed"] = faults.unconsumed()
        faults.stop()
        ingress.calm()
        workers.calm()
        deadline = time.monotonic() + config.settle_timeout_s
        clock.next_day()
        report.settled = _drain(vendors, queue, workers, deadline) and _reconcile(
            config, vendors, queue, schedule, workers, deadline, report
        )
        report.dead_letters = len(queue.dead_letters)
        progress(f"settled in {time.perf_counter() - started:.0f} s")
        report.verdict = Judge(
            hubspot=vendors.hubspot,
            quickbooks=vendors.quickbooks,
            mapper=mapper,
            audit=stores.audit,
            connection_id=CONNECTION,
            before=before,
            describe=person.describe,
        ).verdict()
        progress(f"judged in {time.perf_counter() - started:.0f} s")
        report.counts.update({f"reconcile: {k}": n for k, n in schedule.counts.items()})
        _tally(report, faults, ingress, workers, stores, vendors.quickbooks, CONNECTION)
    report.seconds = time.perf_counter() - started
    return report


def _wait_for_backlog(queue: MemoryQueue, limit: int) -> None:
    deadline = time.monotonic() + BACKLOG_WAIT_S
    while len(queue) > limit and time.monotonic() < deadline:
        time.sleep(0.005)


def _drain(vendors: Vendors, queue: MemoryQueue, workers: Workers, deadline: float) -> bool:
    """Every webhook delivered and every message handled (or dead-lettered)."""

    def left() -> float:
        return max(deadline - time.monotonic(), 0.0)

    for _ in range(2):  # a drained queue can still receive a late webhook
        if not (
            vendors.hubspot.wait_for_webhooks_idle(left())
            and _queue_drained(queue, workers, deadline)
            and vendors.quickbooks.wait_for_webhooks_idle(left())
            and _queue_drained(queue, workers, deadline)
        ):
            return False
    return True


def _queue_drained(queue: MemoryQueue, workers: Workers, deadline: float) -> bool:
    empty_looks = 0
    while empty_looks < 2:  # twice in a row: a batch may be between receive and delete
        empty_looks = empty_looks + 1 if len(queue) == 0 and not workers.busy() else 0
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _reconciler(
    config: ChaosConfig,
    vendors: Vendors,
    mapper: Mapper,
    stores: Stores,
    clock: RunClock,
    stack: ExitStack,
) -> Reconciler:
    """The reconcile function's one execution environment, over the shared stores."""
    transport = CappedTimeout(config.call_timeout_s)
    stack.callback(transport.close)
    return Reconciler(
        connection_id=CONNECTION,
        crm=build_hubspot(
            base_url=vendors.hubspot_url,
            secrets=stores.secrets,
            secret_id=secret_id(CONNECTION, "hubspot"),
            budget=RaisedLimits(stores.budget, LIMIT_FACTOR),
            connection_id=CONNECTION,
            properties={t: mapper.source_properties(t) for t in CRM_OBJECTS},
            transport=transport,
        ),
        mapper=mapper,
        links=stores.links,
        cursors=stores.cursors,
        queue=stores.queue,
        overlap_s=RECONCILE_OVERLAP_S,
        audit=stores.audit,
        walk_every_s=WALK_EVERY_S,
        clock=clock,
        # The reconcile function's engine keeps the customer directory, as deployed.
        refresh_directory=build_environment(
            vendors, stores, mapper, call_timeout_s=config.call_timeout_s, after_write=lambda: None
        ).engine.refresh_directory,
    )


def _reconcile(
    config: ChaosConfig,
    vendors: Vendors,
    queue: MemoryQueue,
    schedule: ReconcileSchedule,
    workers: Workers,
    deadline: float,
    report: ChaosReport,
) -> bool:
    """Reconcile and drain until a round writes nothing; False if that never happens."""
    for round_ in range(1, config.reconcile_rounds + 1):
        writes = _quickbooks_writes(vendors)
        run = schedule.run_now()
        report.counts[f"settling: round {round_} enqueued"] = run.reports[CONNECTION].total_enqueued
        if not _drain(vendors, queue, workers, deadline):
            return False
        if _quickbooks_writes(vendors) == writes and not run.dead_letters_resolved:
            return True
    return False


def _quickbooks_writes(vendors: Vendors) -> int:
    stats = vendors.quickbooks.app.test_client().get("/_sandbox/stats").get_json()
    return sum(n for by_entity in stats.values() for n in by_entity.values())


def _tally(
    report: ChaosReport,
    faults: VendorFaults,
    ingress: ChaosIngress,
    workers: Workers,
    stores: Stores,
    quickbooks: QuickBooksSandbox,
    connection_id: str,
) -> None:
    counts = report.counts
    counts.update({f"vendor faults: {kind}": n for kind, n in faults.counts.items()})
    counts.update({f"webhooks: {fate}": n for fate, n in ingress.counts.items()})
    counts.update({f"workers: {name}": n for name, n in workers.counts.items()})
    counts["workers: deferrals"] = stores.deferrals.total
    counts["quickbooks: access tokens issued"] = len(quickbooks.issued_tokens()["access"])
    outcomes = Counter(e.outcome for e in stores.audit.entries(connection_id, limit=10**9))
    counts.update({f"audit: {outcome}": n for outcome, n in outcomes.items()})
