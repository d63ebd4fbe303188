"""``crmsync redrive list|show|pick|all``: the dead-letter queue of the events queue,
read without consuming it and moved back onto the events queue message by message.

Moving is receive, send, delete, on AWS as on moto (which lacks the call), rather than
SQS's ``StartMessageMoveTask``: that task is asynchronous (the command could not say
what it moved), moves everything or nothing, and sends a letter back to the queue it
came from, while our letters are sent to the DLQ by the sync function itself, not
moved there by SQS
(https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_StartMessageMoveTask.html).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import botocore.exceptions
from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table

from ops.command import Command, CommandError, console, print_json
from ops.deployment import Deployment, add_deployment_arguments, deployment_of
from shared.models import AuditEntry, ChangeEvent, Outcome
from shared.queues.sqs import MAX_BATCH_ENTRIES
from shared.stores import DynamoAuditLog

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient

# A peeked letter is hidden from other readers this long at most: it is made visible
# again as soon as the command is done with it.
PEEK_HIDE_S = 30
# Letters a listing reads at most (each is held hidden until the listing is done).
DEFAULT_LIMIT = 100
# What a letter's failure is: the newest of these in its record's trail.
FAILURES = (Outcome.FAILED, Outcome.REJECTED)


@dataclass(frozen=True)
class Letter:
    """One message of the dead-letter queue, as received."""

    message_id: str
    receipt: str
    body: str
    group: str
    sent_at: datetime
    receive_count: int

    @cached_property
    def event(self) -> ChangeEvent | None:
        """The change event it carries; None for a body that is not one."""
        try:
            return ChangeEvent.model_validate_json(self.body)
        except ValidationError:
            return None

    def as_json(self) -> dict[str, Any]:
        event = self.event
        return {
            "id": self.message_id,
            "record": event.record_key if event else None,
            "connection": event.connection_id if event else None,
            "event_id": event.event_id if event else None,
            "kind": event.kind.value if event else None,
            "group": self.group,
            "sent_at": self.sent_at.isoformat(),
            "receive_count": self.receive_count,
        }


class DeadLetterQueue:
    """A FIFO dead-letter queue and the queue its letters go back to.

    A FIFO queue hands out no message of a group while an earlier one of that group
    is received and not deleted
    (https://repost.aws/knowledge-center/sqs-fifo-messages-not-returned): a peek
    sees the oldest letter of each record, the others once those are moved.
    """

    def __init__(self, sqs: SQSClient, url: str, queue_url: str) -> None:
        self._sqs = sqs
        self._url = url
        self._queue_url = queue_url
        self._moved: set[str] = set()

    def depth(self) -> tuple[int, int]:
        """Messages visible and in flight (SQS's approximate counts)."""
        attributes = self._sqs.get_queue_attributes(
            QueueUrl=self._url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return (
            int(attributes["ApproximateNumberOfMessages"]),
            int(attributes["ApproximateNumberOfMessagesNotVisible"]),
        )

    @contextmanager
    def held(self, limit: int) -> Iterator[list[Letter]]:
        """Up to ``limit`` letters, hidden while the block runs and visible again after
        it, except those moved meanwhile."""
        letters = self._receive(limit)
        try:
            yield letters
        finally:
            self._release([letter for letter in letters if letter.message_id not in self._moved])

    def move(self, letters: Iterable[Letter]) -> int:
        """Send held letters back onto the queue and delete them here; returns how many.

        A letter keeps its body and group, so its record's events stay in order; it
        gets a new deduplication id, or the queue would drop it as a repeat of the
        original send within SQS's five-minute deduplication interval.
        """
        moved = 0
        for letter in letters:
            self._sqs.send_message(
                QueueUrl=self._queue_url,
                MessageBody=letter.body,
                MessageGroupId=letter.group,
                MessageDeduplicationId=f"redrive-{letter.message_id}",
            )
            self._sqs.delete_message(QueueUrl=self._url, ReceiptHandle=letter.receipt)
            self._moved.add(letter.message_id)
            moved += 1
        return moved

    def move_all(self) -> int:
        """Move every letter, the later ones of a record once its earlier one is moved;
        a letter back again meanwhile (its event failed anew) is left there: the loop
        ends instead of chasing it."""
        moved_bodies: set[str] = set()
        moved = 0
        while True:
            with self.held(MAX_BATCH_ENTRIES) as letters:
                fresh = [letter for letter in letters if letter.body not in moved_bodies]
                if not fresh:
                    return moved
                moved += self.move(fresh)
                moved_bodies.update(letter.body for letter in fresh)

    def _receive(self, limit: int) -> list[Letter]:
        letters: dict[str, Letter] = {}
        while len(letters) < limit:
            messages = self._sqs.receive_message(
                QueueUrl=self._url,
                MaxNumberOfMessages=min(MAX_BATCH_ENTRIES, limit - len(letters)),
                MessageSystemAttributeNames=[
                    "MessageGroupId",
                    "SentTimestamp",
                    "ApproximateReceiveCount",
                ],
                VisibilityTimeout=PEEK_HIDE_S,
                # A long poll, however short, asks every server: a short one only some,
                # and may answer empty while letters remain
                # (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-short-and-long-polling.html).
                WaitTimeSeconds=1,
            ).get("Messages", [])
            if not messages:
                break
            for message in messages:
                attributes = message["Attributes"]
                # A letter held past PEEK_HIDE_S comes back: its newest receipt counts.
                letters[message["MessageId"]] = Letter(
                    message_id=message["MessageId"],
                    receipt=message["ReceiptHandle"],
                    body=message["Body"],
                    group=attributes["MessageGroupId"],
                    sent_at=datetime.fromtimestamp(int(attributes["SentTimestamp"]) / 1000, UTC),
                    receive_count=int(attributes["ApproximateReceiveCount"]),
                )
        return list(letters.values())

    def _release(self, letters: Sequence[Letter]) -> None:
        for start in range(0, len(letters), MAX_BATCH_ENTRIES):
            self._sqs.change_message_visibility_batch(
                QueueUrl=self._url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": letter.receipt, "VisibilityTimeout": 0}
                    for i, letter in enumerate(letters[start : start + MAX_BATCH_ENTRIES])
                ],
            )


def dead_letters_of(deployment: Deployment) -> DeadLetterQueue:
    outputs = deployment.outputs
    return DeadLetterQueue(
        deployment.client("sqs"), outputs.dead_letter_queue_url, outputs.events_queue_url
    )


def _failure_of(log: DynamoAuditLog, event: ChangeEvent) -> AuditEntry | None:
    """The newest failed or rejected entry of the event's record: why it is here."""
    return next(
        (
            entry
            for entry in log.history(event.connection_id, event.record_key, limit=20)
            if entry.outcome in FAILURES
        ),
        None,
    )


def _described(letter: Letter, log: DynamoAuditLog) -> dict[str, Any]:
    event = letter.event
    failure = _failure_of(log, event) if event else None
    return {
        **letter.as_json(),
        "outcome": failure.outcome.value if failure else None,
        "reason": failure.reason if failure else None,
    }


def _list(args: argparse.Namespace, deployment: Deployment, dlq: DeadLetterQueue) -> int:
    log = deployment.container.audit
    visible, in_flight = dlq.depth()
    with dlq.held(args.limit) as letters:
        shown = [_described(letter, log) for letter in letters]
    if args.json:
        print_json({"visible": visible, "in_flight": in_flight, "messages": shown})
        return 0
    if not shown:
        console.print(f"the dead-letter queue is empty ({in_flight} in flight)")
        return 0
    table = Table(
        title=f"dead letters: {len(shown)} shown of {visible + in_flight}, oldest of each "
        "record first",
        title_justify="left",
    )
    table.add_column("id", overflow="fold", min_width=12)
    for column in ("record (connection)", "event", "sent (UTC)", "receives"):
        table.add_column(column, overflow="fold")
    table.add_column("why", overflow="fold", ratio=3)
    for row in shown:
        table.add_row(
            escape(row["id"]),
            escape(f"{row['record']} ({row['connection']})" if row["record"] else "not an event"),
            ", ".join(filter(None, (row["kind"], row["outcome"]))),
            row["sent_at"][:19].replace("T", " "),
            str(row["receive_count"]),
            escape(row["reason"] or ""),
        )
    console.print(table)
    console.print("[dim]crmsync redrive show ID: one whole; pick ID…: move those back[/dim]")
    return 0


def _held_ids(letters: list[Letter], ids: Sequence[str]) -> list[Letter]:
    """The held letters named by ``ids``, or a ``CommandError`` naming the unknown ones."""
    by_id = {letter.message_id: letter for letter in letters}
    unknown = [message_id for message_id in ids if message_id not in by_id]
    if unknown:
        raise CommandError(
            f"no message {', '.join(unknown)} in the dead-letter queue (`crmsync redrive list` "
            "shows the ids; a record's later letters show once its first is moved)"
        )
    wanted = set(ids)
    return [letter for letter in letters if letter.message_id in wanted]  # a record's order


def _show(args: argparse.Namespace, deployment: Deployment, dlq: DeadLetterQueue) -> int:
    log = deployment.container.audit
    with dlq.held(args.limit) as letters:
        (letter,) = _held_ids(letters, [args.id])
    event = letter.event
    trail = log.history(event.connection_id, event.record_key, limit=10) if event else []
    shown = {
        **letter.as_json(),
        "event": event.model_dump(mode="json") if event else None,
        "body": None if event else letter.body,
        "audit": [entry.model_dump(mode="json") for entry in trail],
    }
    if args.json:
        print_json(shown)
        return 0
    console.print_json(
        data={key: shown[key] for key in ("id", "group", "sent_at", "receive_count")}
    )
    console.print_json(letter.body if event is None else event.model_dump_json())
    table = Table(
        title=f"{event.record_key if event else letter.group}: newest audit entries",
        title_justify="left",
    )
    for column in ("at (UTC)", "outcome", "why", "event"):
        table.add_column(column, overflow="fold")
    for entry in trail:
        table.add_row(
            entry.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            entry.outcome.value,
            escape(entry.reason),
            escape(entry.event_id),
        )
    console.print(table)
    return 0


def _pick(args: argparse.Namespace, deployment: Deployment, dlq: DeadLetterQueue) -> int:
    with dlq.held(args.limit) as letters:
        moved = dlq.move(_held_ids(letters, args.ids))
    console.print(f"moved {moved} message(s) back onto the events queue")
    return 0


def _all(args: argparse.Namespace, deployment: Deployment, dlq: DeadLetterQueue) -> int:
    console.print(f"moved {dlq.move_all()} message(s) back onto the events queue")
    return 0


ACTIONS = {"list": _list, "show": _show, "pick": _pick, "all": _all}


def run(args: argparse.Namespace) -> int:
    deployment = deployment_of(args)
    try:
        return ACTIONS[args.action](args, deployment, dead_letters_of(deployment))
    except botocore.exceptions.ClientError as exc:
        raise CommandError(f"cannot read the stack's dead-letter queue or audit: {exc}") from None


def _arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, help: str, *, reads: bool = True) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=help, description=help)
        if reads:
            sub.add_argument(
                "--limit",
                type=int,
                default=DEFAULT_LIMIT,
                help=f"letters read at most (default: {DEFAULT_LIMIT})",
            )
        # After the action too; SUPPRESS keeps a --config given before it.
        sub.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="local config file")
        add_deployment_arguments(sub)
        return sub

    action("list", "the dead letters, without consuming them").add_argument(
        "--json", action="store_true", help="print them as JSON"
    )
    show = action("show", "one dead letter whole: its event and its record's audit trail")
    show.add_argument("id", help="the message id (from `crmsync redrive list`)")
    show.add_argument("--json", action="store_true", help="print it as JSON")
    action("pick", "move these dead letters back onto the events queue").add_argument(
        "ids", nargs="+", metavar="ID", help="message ids (from `crmsync redrive list`)"
    )
    action("all", "move every dead letter back onto the events queue", reads=False)


COMMAND = Command(
    help="the dead-letter queue: list, show, and move letters back (pick, all)",
    run=run,
    add_arguments=_arguments,
)
