"""``crmsync backfill``: import the CRM records changed since a day, here and now.

It runs the reconcile function's scan (``Reconciler.backfill``) in this process,
wired to the stack's tables, queue and call budget: records never synced are created
in the accounting system's batch writes where that is safe, the rest go to the queue
for the deployed functions. Its checkpoints are in the Cursors table, so a run
interrupted is carried on by the same command.
"""

from __future__ import annotations

import argparse
import math
from collections import Counter
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from ops.command import Command, CommandError, console, moment, print_json
from ops.deployment import AWS_ERRORS, add_deployment_arguments, deployment_of
from shared.bootstrap import Container, mapper_of
from shared.errors import CrmSyncError, MappingConfigError
from shared.mapping import Mapper
from shared.models import Connection, ObjectType
from shared.stores import DynamoCallBudget
from shared.stores.ratelimit import Pace
from shared.sync.reconcile import ReconcileReport

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

OBJECTS = (ObjectType.CONTACT, ObjectType.COMPANY, ObjectType.DEAL)
ESTIMATE = (
    "The time left is estimated from the vendors' call quotas: for each limit the run "
    "has drawn on (each connector declares its vendor's documented limits, e.g. an "
    "accounting system's batch calls a minute, each writing a batch of records), the "
    "calls still to make (the calls per record so far × the records left) × the "
    "seconds a call of that limit is paced apart; the slowest limit decides. The "
    "deployed functions draw on the same quotas, so it is the least time the rest can "
    "take. A first pass counts the records to scan (the CRM's search, a page a call)."
)


class MeteredBudget(DynamoCallBudget):
    """The stack's call budget, counting the calls it lets through by limit: what the
    estimate of the time left is derived from."""

    def __init__(self, client: DynamoDBClient, table_name: str, *, margin: float) -> None:
        super().__init__(client, table_name, margin=margin)
        self.calls: Counter[Pace] = Counter()

    def acquire(self, key: str, *, limit: int, per_s: float, max_wait_s: float) -> float:
        wait = super().acquire(key, limit=limit, per_s=per_s, max_wait_s=max_wait_s)
        if wait <= max_wait_s:  # a slot taken: the call is made
            self.calls[Pace(limit, per_s, self.margin)] += 1
        return wait

    def seconds_left(self, done: int, left: int) -> float | None:
        """At this run's calls per record, the time ``left`` records take at the pace
        of the slowest limit; None before a record is done."""
        if not done:
            return None
        return max(
            (calls * left / done * pace.interval for pace, calls in self.calls.items()),
            default=0.0,
        )


@dataclass(eq=False)
class _MeteredContainer(Container):
    @cached_property
    def budget(self) -> MeteredBudget:
        return MeteredBudget(
            self.dynamodb, self.settings.cursors_table, margin=self.settings.call_pacing_margin
        )


class _Bars:
    """One progress bar per object type, and one for the whole run with the estimate."""

    def __init__(self, progress: Progress, left: dict[str, int], budget: MeteredBudget) -> None:
        self._progress = progress
        self._left = left
        self._budget = budget
        self._total = progress.add_task("all", total=sum(left.values()), eta="")
        self._bars: dict[str, TaskID] = {
            name: progress.add_task(name, total=count, eta="") for name, count in left.items()
        }

    def __call__(self, report: ReconcileReport) -> None:
        for name, bar in self._bars.items():
            if name in report.scanned:
                self._progress.update(
                    bar,
                    completed=report.scanned[name],
                    description=f"{name}: {_counts(report, name)}",
                )
        done = sum(report.scanned.values())
        seconds = self._budget.seconds_left(done, max(sum(self._left.values()) - done, 0))
        eta = "time left: estimating" if seconds is None else f"time left ≥ {_duration(seconds)}"
        self._progress.update(self._total, completed=done, eta=eta)


def run(args: argparse.Namespace) -> int:
    since: datetime = args.since
    if since > datetime.now(UTC):
        raise CommandError(f"--since {since.isoformat()} is in the future: nothing changed since")
    deployment = deployment_of(args)
    wired = deployment.container
    container = _MeteredContainer(**{f.name: getattr(wired, f.name) for f in fields(wired)})
    (connection,) = deployment.connections(args.connection)
    try:
        mapper = mapper_of(connection)
    except (ValueError, MappingConfigError) as exc:  # the stored mapping no longer loads
        raise CommandError(f"connection {connection.id!r}: {exc}") from None
    objects = _objects(args.objects, mapper, connection)
    reconciler = container.reconciler(connection)
    since_ms = int(since.timestamp() * 1000)
    try:
        if args.restart:
            reconciler.restart_backfill(since_ms, objects)
        left = reconciler.backfill_left(since_ms, objects)
        container.budget.calls.clear()  # the count's reads: not what the rest costs
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[eta]}"),
            console=console,
            disable=args.json,
        ) as progress:
            report = reconciler.backfill(
                since_ms,
                objects,
                dry_run=args.dry_run,
                progress=_Bars(progress, left, container.budget),
            )
    except KeyboardInterrupt:
        raise CommandError(
            "interrupted: what was written is kept and the checkpoint saved; run the same "
            "command again to carry on"
        ) from None
    except (CrmSyncError, *AWS_ERRORS) as exc:
        raise CommandError(
            f"stopped: {exc}. What was written is kept; run the same command again to carry "
            "on from the last checkpoint"
        ) from None
    return _print(args, connection, since, report)


def _print(
    args: argparse.Namespace, connection: Connection, since: datetime, report: ReconcileReport
) -> int:
    by_object = {
        name: {
            "found": report.scanned[name],
            "to_import": report.unsynced[name],
            "written": report.batched[name],
            "queued": report.enqueued[name],
            "invalid": report.invalid[name],
        }
        for name in report.scanned
    }
    if args.json:
        print_json(
            {
                "connection": connection.id,
                "since": since.isoformat(),
                "dry_run": args.dry_run,
                "objects": by_object,
            }
        )
        return 0
    verb = "would import" if args.dry_run else "imported"
    for name in report.scanned:
        console.print(f"{escape(name)}: {_counts(report, name)}")
    console.print(
        f"{verb} {sum(report.unsynced.values())} record(s) of connection "
        f"{escape(connection.id)} changed since {since}"
        + ("" if args.dry_run else "; the queued ones are synced by the deployed functions")
    )
    return 0


def _counts(report: ReconcileReport, name: str) -> str:
    return (
        f"found {report.scanned[name]}, to import {report.unsynced[name]}, written "
        f"{report.batched[name]}, queued {report.enqueued[name]}, invalid {report.invalid[name]}"
    )


def _duration(seconds: float) -> str:
    minutes, secs = divmod(math.ceil(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _objects(text: str | None, mapper: Mapper, connection: Connection) -> list[ObjectType]:
    """The object types asked for (default: every one the mapping maps)."""
    if text is None:
        return [o for o in OBJECTS if mapper.handles(o)]
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(names) - set(OBJECTS))
    if unknown or not names:
        raise CommandError(
            f"--objects {text!r}: choose among {', '.join(OBJECTS)} (line items come with deals)"
        )
    objects = [ObjectType(name) for name in names]
    unmapped = [str(o) for o in objects if not mapper.handles(o)]
    if unmapped:
        raise CommandError(
            f"the mapping of connection {connection.id!r} ({connection.mapping_name}) has "
            f"no section for {', '.join(unmapped)}"
        )
    return objects


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Import the CRM records changed since a day that are not in the accounting "
        "system yet: created in the vendor's batch writes where that is safe, the rest "
        "queued for the deployed functions. Interrupted (Ctrl-C, an outage), the same "
        "command carries on from its last checkpoint. " + ESTIMATE
    )
    parser.add_argument("--connection", required=True, help="the connection's id")
    parser.add_argument(
        "--since",
        required=True,
        type=moment,
        help="import what changed since this day (YYYY-MM-DD) or time (YYYY-MM-DDTHH:MM[:SS]);"
        " UTC unless it has an offset",
    )
    parser.add_argument(
        "--objects",
        help=f"comma-separated, among {','.join(OBJECTS)} (default: every one the "
        "connection's mapping maps; a deal's line items come with it)",
    )
    once = parser.add_mutually_exclusive_group()
    once.add_argument(
        "--dry-run", action="store_true", help="count what would be imported; write nothing"
    )
    once.add_argument(
        "--restart",
        action="store_true",
        help="start over from --since instead of the last checkpoint (records already "
        "imported are found in sync and not written again)",
    )
    parser.add_argument("--json", action="store_true", help="print the final report as JSON")
    add_deployment_arguments(parser)


COMMAND = Command(
    help="import the CRM records changed since a day (resumable; --dry-run counts them)",
    run=run,
    add_arguments=_arguments,
)
