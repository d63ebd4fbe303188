"""What the tests of the operator's queue commands (status, redrive, replay) share: a
local stack whose sync function is a stand-in that records what reaches it, change
events put in the dead-letter queue as the sync function puts them there, and
``crmsync`` run against the stack with ``--local``."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3

from local.cli import main
from local.runtime import LocalStack
from shared.models import AuditEntry, ChangeEvent, ChangeKind, ObjectType, Outcome
from shared.stores import DynamoAuditLog, DynamoConnections
from tests.integration.test_local_runtime import StandIns, free_config

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


@contextmanager
def operator_stack(standins: StandIns, directory: Path) -> Iterator[tuple[LocalStack, Path]]:
    """The stack, and its config file for ``--local``."""
    with LocalStack(free_config(), handlers=standins.handlers(), sandboxes=False) as stack:
        path = directory / "local.yaml"
        stack.running_config.write(path)
        yield stack, path


def another_connection(stack: LocalStack, connection_id: str) -> None:
    """A second connection in the Connections table: the first one's systems and
    mapping under another id."""
    aws = stack.config.aws
    resource = boto3.resource(
        "dynamodb",
        endpoint_url=stack.urls.moto,
        region_name=aws.region,
        aws_access_key_id=aws.access_key_id,
        aws_secret_access_key=aws.secret_access_key,
    )
    connections = DynamoConnections(
        stack.clients.dynamodb, resource, stack.resources.tables["Connections"]
    )
    first = stack.config.connections[0].connection()
    connections.put(first.model_copy(update={"id": connection_id}))


def crmsync(config: Path, *argv: str) -> int:
    return main([*argv, "--local", "--config", str(config)])


def json_output(out: str) -> Any:
    """A command's ``--json`` document among what a test captured: the local stack's
    functions log to the same stdout meanwhile, one JSON object a line, while the
    document is indented and so starts on a line of its own."""
    lines = out.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.rstrip() in ("{", "[", "{}", "[]"))
    document, _ = json.JSONDecoder().raw_decode("".join(lines[start:]))
    return document


def event(
    record_id: str, *, object_type: ObjectType = ObjectType.DEAL, connection: str = "demo"
) -> ChangeEvent:
    return ChangeEvent(
        connection_id=connection,
        source="hubspot",
        object_type=object_type,
        record_id=record_id,
        event_id=f"evt-{record_id}-{uuid.uuid4().hex[:6]}",
        kind=ChangeKind.UPDATED,
        occurred_at=T0,
        version=1_000,
    )


def dead_letter(stack: LocalStack, dead: ChangeEvent) -> str:
    """The event on the dead-letter queue, as the sync function sends it; its message id."""
    url = stack.resources.queues["Events"].dead_letter_url
    assert url is not None
    return stack.clients.sqs.send_message(
        QueueUrl=url,
        MessageBody=dead.model_dump_json(),
        MessageGroupId=dead.message_group,
        MessageDeduplicationId=uuid.uuid4().hex,
    )["MessageId"]


def dead_letter_counts(stack: LocalStack) -> tuple[int, int]:
    """The dead-letter queue's visible and in-flight messages."""
    url = stack.resources.queues["Events"].dead_letter_url
    assert url is not None
    attributes = stack.clients.sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    )


def empty_dead_letters(stack: LocalStack) -> None:
    url = stack.resources.queues["Events"].dead_letter_url
    assert url is not None
    # Not PurgeQueue: SQS allows one a minute. A record's later letter shows once its
    # first is deleted.
    while messages := stack.clients.sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0
    ).get("Messages", []):
        for message in messages:
            stack.clients.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def audit_log(stack: LocalStack) -> DynamoAuditLog:
    return DynamoAuditLog(stack.clients.dynamodb, stack.resources.tables["Audit"], 30)


def audited(
    stack: LocalStack,
    record_key: str,
    outcome: Outcome,
    at: datetime,
    *,
    connection: str = "demo",
    reason: str = "",
) -> AuditEntry:
    entry = AuditEntry(
        connection_id=connection,
        record_key=record_key,
        event_id=f"evt-{uuid.uuid4().hex[:8]}",
        outcome=outcome,
        reason=reason,
        target_key="quickbooks:invoice:9" if outcome is Outcome.CREATED else None,
        at=at,
    )
    audit_log(stack).record(entry)
    return entry
