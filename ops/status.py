"""``crmsync status``: how the stack is doing, per connection: its queues, its dead
letters, what it last applied, its outcomes over the last hour and day, and how much
of each vendor's call budget is spoken for.

The events queue is not peeked: a peek hides messages from the sync function. Its
oldest message's age is CloudWatch's ``ApproximateAgeOfOldestMessage``, which SQS
publishes for an active queue only
(https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-available-cloudwatch-metrics.html);
a local stack has none.
"""

from __future__ import annotations

import argparse
import math
from collections import Counter
from datetime import UTC, datetime, timedelta
from itertools import groupby
from typing import Any

import botocore.exceptions
from rich.markup import escape
from rich.table import Table

from ops.command import Command, CommandError, console, print_json
from ops.deployment import Deployment, add_deployment_arguments, deployment_of
from ops.redrive import DEFAULT_LIMIT, dead_letters_of
from shared.models import Connection, Outcome
from shared.stores import DynamoAuditLog
from shared.stores.ratelimit import LaneReading

# What a written record's entry says: the target holds the record as mapped.
APPLIED = (Outcome.CREATED, Outcome.UPDATED, Outcome.LINKED)
# CloudWatch datapoints looked at for the events queue's oldest message.
METRIC_WINDOW = timedelta(minutes=15)


def _stamp(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if at else "—"


def _oldest_in_cloudwatch(deployment: Deployment, queue_url: str, now: datetime) -> float | None:
    """The newest one-minute maximum of the queue's oldest message's age, in seconds."""
    try:
        points = deployment.client("cloudwatch").get_metric_statistics(
            Namespace="AWS/SQS",
            MetricName="ApproximateAgeOfOldestMessage",
            Dimensions=[{"Name": "QueueName", "Value": queue_url.rsplit("/", 1)[1]}],
            StartTime=now - METRIC_WINDOW,
            EndTime=now,
            Period=60,
            Statistics=["Maximum"],
        )["Datapoints"]
    except botocore.exceptions.ClientError:  # e.g. a profile without CloudWatch reads
        return None
    newest = max(points, key=lambda point: point["Timestamp"], default=None)
    return None if newest is None else float(newest["Maximum"])


def queues(deployment: Deployment, now: datetime) -> tuple[dict[str, Any], Counter[str]]:
    """Both queues' depths and oldest messages, and dead letters by connection."""
    outputs = deployment.outputs
    dlq = dead_letters_of(deployment)
    attributes = deployment.client("sqs").get_queue_attributes(
        QueueUrl=outputs.events_queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    age = _oldest_in_cloudwatch(deployment, outputs.events_queue_url, now)
    dead_visible, dead_in_flight = dlq.depth()
    with dlq.held(DEFAULT_LIMIT) as letters:
        oldest = min((letter.sent_at for letter in letters), default=None)
        by_connection = Counter(
            letter.event.connection_id if letter.event else "" for letter in letters
        )
    return {
        "events": {
            "visible": int(attributes["ApproximateNumberOfMessages"]),
            "in_flight": int(attributes["ApproximateNumberOfMessagesNotVisible"]),
            "oldest_age_s": age,
            "oldest_age_from": "CloudWatch ApproximateAgeOfOldestMessage"
            if age is not None
            else f"no CloudWatch datapoint in the last {METRIC_WINDOW.seconds // 60} minutes",
        },
        "dead_letters": {
            "visible": dead_visible,
            "in_flight": dead_in_flight,
            "peeked": len(letters),
            "oldest_sent_at": oldest.isoformat() if oldest else None,
            "oldest_age_s": (now - oldest).total_seconds() if oldest else None,
        },
    }, by_connection


def connection_status(
    log: DynamoAuditLog, connection: Connection, dead_letters: int, now: datetime
) -> dict[str, Any]:
    hour, day = Counter[str](), Counter[str]()
    for entry in log.entries_since(connection.id, now - timedelta(days=1)):
        day[entry.outcome.value] += 1
        if entry.at >= now - timedelta(hours=1):
            hour[entry.outcome.value] += 1
    applied = log.newest_with(connection.id, APPLIED)
    return {
        "id": connection.id,
        "crm": connection.crm,
        "accounting": connection.accounting,
        "dead_letters": dead_letters,
        "last_applied": None
        if applied is None
        else {
            "at": applied.at.isoformat(),
            "record": applied.record_key,
            "outcome": applied.outcome.value,
            "target": applied.target_key,
            "event_id": applied.event_id,
        },
        "outcomes": {"last_hour": dict(hour), "last_day": dict(day)},
    }


def call_budgets(lanes: list[LaneReading], now: float) -> list[dict[str, Any]]:
    """Per budget key and limit: how many of its slots from now on are taken, and until
    when.

    The table keeps each lane's next free slot, not the calls made: a lane's slots
    before it are no call's to take any more (reserved by a worker, or passed over),
    so what is known is how much of the pace is spoken for from now on, not how many
    calls the last window held.
    """
    budgets = []

    def limit_of(reading: LaneReading) -> tuple[str, int, float]:
        return reading.key, reading.pace.limit, reading.pace.per_s

    for (key, limit, per_s), group in groupby(sorted(lanes, key=limit_of), key=limit_of):
        readings = list(group)
        pace = readings[0].pace
        first = pace.first_slot(now)
        taken = [
            math.ceil((r.next_slot - pace.first_in_lane(r.lane, first)) / pace.stride)
            for r in readings
        ]
        until = max(pace.time_of(r.next_slot) for r in readings)
        budgets.append(
            {
                "key": key,
                "vendor": key.split(":", 1)[0],
                "limit": limit,
                "per_s": per_s,
                "lanes": pace.lanes,
                "lanes_taken": sum(1 for slots in taken if slots > 0),
                "slots_taken": sum(max(slots, 0) for slots in taken),
                "taken_until": datetime.fromtimestamp(until, UTC).isoformat(),
            }
        )
    return budgets


def _outcomes(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())) or "none"


def _print(status: dict[str, Any], now: datetime) -> None:
    events, dead = status["queues"]["events"], status["queues"]["dead_letters"]
    table = Table(title=f"stack {status['stack']} at {_stamp(now)} UTC", title_justify="left")
    for column in ("queue", "visible", "in flight", "oldest"):
        table.add_column(column, overflow="fold")
    table.add_row(
        "events",
        str(events["visible"]),
        str(events["in_flight"]),
        f"{events['oldest_age_s']:.0f} s old"
        if events["oldest_age_s"] is not None
        else events["oldest_age_from"],
    )
    oldest = dead["oldest_sent_at"]
    table.add_row(
        "dead letters",
        str(dead["visible"]),
        str(dead["in_flight"]),
        f"sent {oldest[:19].replace('T', ' ')} ({dead['oldest_age_s']:.0f} s ago)"
        if oldest
        else "—",
    )
    console.print(table)
    for connection in status["connections"]:
        table = Table(
            title=f"connection {connection['id']}: {connection['crm']} → "
            f"{connection['accounting']}",
            title_justify="left",
            show_header=False,
        )
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        table.add_row("dead letters", f"{connection['dead_letters']} of those peeked")
        applied = connection["last_applied"]
        table.add_row(
            "last applied",
            "none"
            if applied is None
            else escape(
                f"{applied['at'][:19].replace('T', ' ')} {applied['record']} "
                f"{applied['outcome']} → {applied['target'] or '?'}"
            ),
        )
        table.add_row("last hour", _outcomes(connection["outcomes"]["last_hour"]))
        table.add_row("last day", _outcomes(connection["outcomes"]["last_day"]))
        console.print(table)
    if not status["call_budgets"]:
        console.print("no vendor call budget in use")
        return
    table = Table(title="vendor call budgets: slots taken from now on", title_justify="left")
    for column in ("budget", "limit", "lanes taken", "slots taken", "until (UTC)"):
        table.add_column(column, overflow="fold")
    for budget in status["call_budgets"]:
        table.add_row(
            escape(budget["key"]),
            f"{budget['limit']} per {budget['per_s']:g} s",
            f"{budget['lanes_taken']} of {budget['lanes']}",
            str(budget["slots_taken"]),
            budget["taken_until"][11:19] if budget["lanes_taken"] else "idle",
        )
    console.print(table)


def run(args: argparse.Namespace) -> int:
    """The stack's queues, each connection's recent outcomes, the vendor budgets."""
    deployment = deployment_of(args)
    container = deployment.container
    now = datetime.now(UTC)
    try:
        connections = deployment.connections(args.connection)
        found, dead_by_connection = queues(deployment, now)
        status = {
            "stack": deployment.stack,
            "at": now.isoformat(),
            "queues": found,
            "connections": [
                connection_status(container.audit, c, dead_by_connection[c.id], now)
                for c in connections
            ],
            "call_budgets": call_budgets(container.budget.lanes(), now.timestamp()),
        }
    except botocore.exceptions.ClientError as exc:
        raise CommandError(f"cannot read the stack {deployment.stack!r}: {exc}") from None
    if args.json:
        print_json(status)
    else:
        _print(status, now)
    return 0


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--connection", help="only this connection (default: every one)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_deployment_arguments(parser)


COMMAND = Command(
    help="queues, dead letters, recent outcomes and vendor call budgets of a stack",
    run=run,
    add_arguments=_arguments,
)
