"""The SQS FIFO event queue on moto (and on botocore's Stubber where SQS must refuse)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest
from botocore.stub import ANY, Stubber

from infra.resources import DESCRIPTION, local_name
from shared.errors import Retryable
from shared.models import ChangeEvent, ChangeKind, ObjectType
from shared.ports import EventQueue
from shared.queues.sqs import SqsEventQueue

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient


def _event(record: int, version: int) -> ChangeEvent:
    return ChangeEvent(
        connection_id="acme",
        source="hubspot",
        object_type=ObjectType.DEAL,
        record_id=str(record),
        event_id=f"evt-{record}-{version}",
        kind=ChangeKind.UPDATED,
        occurred_at=datetime(2025, 3, 1, tzinfo=UTC),
        version=version,
    )


@pytest.fixture
def queue_url(sqs: SQSClient) -> str:
    spec = DESCRIPTION.queue("Events")
    return sqs.create_queue(
        QueueName=local_name("test", spec.id, fifo=spec.fifo),
        Attributes={"FifoQueue": "true", "VisibilityTimeout": str(spec.visibility_timeout_s)},
    )["QueueUrl"]


def _drain(sqs: SQSClient, queue_url: str) -> list[tuple[str, str, ChangeEvent]]:
    """Every message as (group id, dedup id, event), deleting as it goes."""
    drained: list[tuple[str, str, ChangeEvent]] = []
    while messages := sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"]
    ).get("Messages", []):
        for m in messages:
            attributes = m["Attributes"]
            drained.append(
                (
                    attributes["MessageGroupId"],
                    attributes["MessageDeduplicationId"],
                    ChangeEvent.model_validate_json(m["Body"]),
                )
            )
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
    return drained


def test_given_more_events_than_a_batch_when_sent_then_all_arrive_grouped_by_record(
    sqs: SQSClient, queue_url: str
) -> None:
    events = [_event(record, version) for version in range(1, 6) for record in range(5)]
    queue: EventQueue = SqsEventQueue(sqs, queue_url)

    queue.send(events)

    drained = _drain(sqs, queue_url)
    assert sorted(e.event_id for _, _, e in drained) == sorted(e.event_id for e in events)
    for group, dedup, event in drained:
        assert (group, dedup) == (event.message_group, event.dedup_id)
        assert group.startswith(f"{event.connection_id}:")
    for record in range(5):
        versions = [e.version for g, _, e in drained if g == f"acme:hubspot:deal:{record}"]
        assert versions == [1, 2, 3, 4, 5]


def test_given_sent_events_when_the_vendor_retries_them_then_no_duplicates(
    sqs: SQSClient, queue_url: str
) -> None:
    queue = SqsEventQueue(sqs, queue_url)
    queue.send([_event(1, 1), _event(2, 1)])

    queue.send([_event(1, 1), _event(2, 1), _event(1, 2)])

    assert sorted(e.event_id for _, _, e in _drain(sqs, queue_url)) == [
        "evt-1-1",
        "evt-1-2",
        "evt-2-1",
    ]


def test_given_an_event_too_large_for_sqs_when_sent_then_rejected_and_nothing_sent(
    sqs: SQSClient, queue_url: str
) -> None:
    huge = _event(1, 1).model_copy(update={"event_id": "x" * 300_000})

    with pytest.raises(ValueError, match="SQS takes at most 262144"):
        SqsEventQueue(sqs, queue_url).send([_event(2, 1), huge])

    assert _drain(sqs, queue_url) == []


def _batch_response(ok: list[str], failed: list[str]) -> dict[str, object]:
    return {
        "Successful": [{"Id": i, "MessageId": f"m{i}", "MD5OfMessageBody": "0" * 32} for i in ok],
        "Failed": [
            {"Id": i, "SenderFault": False, "Code": "InternalError", "Message": "try again"}
            for i in failed
        ],
    }


def _expect(stubber: Stubber, ids: list[str], *, failed: list[str]) -> None:
    entries = [
        {"Id": i, "MessageBody": ANY, "MessageGroupId": ANY, "MessageDeduplicationId": ANY}
        for i in ids
    ]
    stubber.add_response(
        "send_message_batch",
        _batch_response([i for i in ids if i not in failed], failed),
        {"QueueUrl": "q", "Entries": entries},
    )


def test_given_sqs_refuses_an_entry_once_when_sent_then_only_it_is_retried(
    sqs: SQSClient,
) -> None:
    with Stubber(sqs) as stubber:
        _expect(stubber, ["0", "1", "2"], failed=["1"])
        _expect(stubber, ["1"], failed=[])

        SqsEventQueue(sqs, "q").send([_event(1, 1), _event(2, 1), _event(3, 1)])

        stubber.assert_no_pending_responses()


def test_given_sqs_refuses_an_entry_twice_when_sent_then_retryable_names_it(
    sqs: SQSClient,
) -> None:
    with Stubber(sqs) as stubber:
        _expect(stubber, ["0", "1"], failed=["1"])
        _expect(stubber, ["1"], failed=["1"])

        with pytest.raises(Retryable, match=r"hubspot:deal:2 event evt-2-1: InternalError"):
            SqsEventQueue(sqs, "q").send([_event(1, 1), _event(2, 1)])


def test_given_a_received_event_when_deferred_then_it_stays_hidden_and_a_bad_receipt_is_logged(
    sqs: SQSClient, queue_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    queue = SqsEventQueue(sqs, queue_url)
    queue.send([_event(1, 1)])
    [message] = sqs.receive_message(QueueUrl=queue_url, VisibilityTimeout=0)["Messages"]

    queue.defer(message["ReceiptHandle"], 120)
    queue.defer("not-a-receipt", 120)  # SQS refuses: logged, the caller's error stands

    assert sqs.receive_message(QueueUrl=queue_url).get("Messages", []) == []
    assert "could not defer" in caplog.text
