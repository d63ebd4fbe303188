"""``crmsync replay --outcome invalid|rejected --since DATE``: sync again the records
that were refused (invalid for the mapping, rejected by the target) and have since
been fixed at the source or the target.

A record qualifies when its newest audit entry since DATE has that outcome; each gets
one fresh event on the events queue, as reconciliation enqueues a record it finds
(``ChangeEvent.found``): the sync function reads the record as it is now.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

import botocore.exceptions
from rich.markup import escape
from rich.table import Table

from ops.command import Command, CommandError, console, moment, print_json
from ops.deployment import add_deployment_arguments, deployment_of
from shared.errors import Retryable
from shared.models import AuditEntry, ChangeEvent, Outcome
from shared.models.events import split_record_key
from shared.stores import DynamoAuditLog

REPLAYABLE = (Outcome.INVALID, Outcome.REJECTED)


def refused_since(
    log: DynamoAuditLog, connection_id: str, outcome: Outcome, since: datetime
) -> list[AuditEntry]:
    """The newest entry of each record whose newest entry since ``since`` is ``outcome``."""
    newest: dict[str, AuditEntry] = {}
    for entry in log.entries_since(connection_id, since):  # oldest first: the last stays
        newest[entry.record_key] = entry
    return [entry for entry in newest.values() if entry.outcome is outcome]


def replay_event(entry: AuditEntry, now: datetime) -> ChangeEvent:
    """A fresh event for the entry's record. Its version is now: a found record's
    event is never skipped as stale, and a later replay is a new event, not a repeat
    the queue would drop."""
    system, object_type, record_id = split_record_key(entry.record_key)
    return ChangeEvent.found(
        entry.connection_id,
        system,
        object_type,
        record_id,
        int(now.timestamp() * 1000),
        by="replay",
    )


def run(args: argparse.Namespace) -> int:
    """Enqueue one event per refused record (or, with --dry-run, say which)."""
    deployment = deployment_of(args)
    container = deployment.container
    outcome = Outcome(args.outcome)
    now = datetime.now(UTC)
    try:
        refused = [
            entry
            for connection in deployment.connections(args.connection)
            for entry in refused_since(container.audit, connection.id, outcome, args.since)
        ]
        events = [replay_event(entry, now) for entry in refused]
        if events and not args.dry_run:
            container.queue.send(events)
    except (botocore.exceptions.ClientError, Retryable) as exc:
        raise CommandError(f"cannot replay in the stack {deployment.stack!r}: {exc}") from None
    rows: list[dict[str, Any]] = [
        {
            "connection": entry.connection_id,
            "record": entry.record_key,
            "outcome": entry.outcome.value,
            "audited_at": entry.at.isoformat(),
            "reason": entry.reason,
            "event_id": event.event_id,
        }
        for entry, event in zip(refused, events, strict=True)
    ]
    if args.json:
        print_json({"dry_run": args.dry_run, "events": rows})
        return 0
    verb = "would enqueue" if args.dry_run else "enqueued"
    if not rows:
        console.print(f"no record's newest entry since {args.since.isoformat()} is {outcome}")
        return 0
    table = Table(title=f"{verb} {len(rows)} event(s)", title_justify="left")
    for column in ("connection", "record", "audited (UTC)", "why it was " + outcome.value):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            escape(row["connection"]),
            escape(row["record"]),
            row["audited_at"][:19].replace("T", " "),
            escape(row["reason"]),
        )
    console.print(table)
    return 0


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--outcome",
        required=True,
        choices=[outcome.value for outcome in REPLAYABLE],
        help="the refusal to replay",
    )
    parser.add_argument(
        "--since",
        required=True,
        type=moment,
        help="records whose newest entry since this date (ISO 8601, UTC unless it says) "
        "has the outcome",
    )
    parser.add_argument("--connection", help="only this connection (default: every one)")
    parser.add_argument(
        "--dry-run", action="store_true", help="say what would be enqueued, enqueue nothing"
    )
    parser.add_argument("--json", action="store_true", help="print the events as JSON")
    add_deployment_arguments(parser)


COMMAND = Command(
    help="sync again the records refused as invalid or rejected since a date",
    run=run,
    add_arguments=_arguments,
)
