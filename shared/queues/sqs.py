"""Change events onto the SQS FIFO queue: one message group per record, dedup by vendor event."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import botocore.exceptions

from shared.errors import Retryable
from shared.models import ChangeEvent
from shared.ports import DeadLetter

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

MAX_BATCH_ENTRIES = 10
# SQS's ceiling for one message and for the sum of one batch's bodies.
MAX_PAYLOAD_BYTES = 262_144


def message_body(event: ChangeEvent) -> str:
    """The event as a message body; ``ValueError`` when SQS could never take it."""
    body = event.model_dump_json()
    size = len(body.encode())
    if size > MAX_PAYLOAD_BYTES:
        raise ValueError(
            f"event {event.event_id!r} of {event.record_key} is {size} bytes as a message; "
            f"SQS takes at most {MAX_PAYLOAD_BYTES}"
        )
    return body


def _batches(
    entries: Sequence[SendMessageBatchRequestEntryTypeDef],
) -> Iterator[list[SendMessageBatchRequestEntryTypeDef]]:
    """At most 10 entries and 256 KiB of bodies per SendMessageBatch."""
    batch: list[SendMessageBatchRequestEntryTypeDef] = []
    size = 0
    for entry in entries:
        entry_size = len(entry["MessageBody"].encode())
        if batch and (len(batch) == MAX_BATCH_ENTRIES or size + entry_size > MAX_PAYLOAD_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(entry)
        size += entry_size
    if batch:
        yield batch


# SQS allows 12 h after a receive; keep a margin for the time the invocation has run.
MAX_DEFER_S = 43_200 - 900

log = logging.getLogger(__name__)


class SqsEventQueue:
    """``EventQueue`` over an SQS FIFO queue and its dead-letter queue."""

    def __init__(self, client: SQSClient, queue_url: str, dead_letter_url: str = "") -> None:
        self._client = client
        self._queue_url = queue_url
        self._dead_letter_url = dead_letter_url

    def defer(self, receipt: str, seconds: float) -> None:
        """Hide a received message for ``seconds`` (a vendor asked us to wait).

        SQS counts it as a receive toward the queue's maxReceiveCount (the consumer
        keeps its own count of real failures). SQS refuses a visibility timeout ending
        more than 12 h after this receive, so the wait is capped below that; if SQS
        still refuses, the message returns after the queue's own visibility timeout,
        which is logged, not raised (the caller is already failing the message).
        """
        try:
            self._client.change_message_visibility(
                QueueUrl=self._queue_url,
                ReceiptHandle=receipt,
                VisibilityTimeout=min(math.ceil(seconds), MAX_DEFER_S),
            )
        except botocore.exceptions.ClientError as error:
            log.warning("could not defer a message: %s", error)

    def dead_letter(self, event: ChangeEvent, *, message_id: str) -> None:
        """Onto the dead-letter queue, in the record's group; raises if SQS refuses, so
        the message is not let go without having arrived there."""
        if not self._dead_letter_url:
            raise Retryable("no dead-letter queue configured (CRMSYNC_EVENTS_DLQ_URL)")
        self._client.send_message(
            QueueUrl=self._dead_letter_url,
            MessageBody=message_body(event),
            MessageGroupId=event.message_group,
            MessageDeduplicationId=message_id,
        )

    def send(self, events: Sequence[ChangeEvent]) -> None:
        """All events are on the queue when this returns; entries SQS refuses are
        retried once, then ``Retryable`` names them (the webhook is not acknowledged)."""
        entries: list[SendMessageBatchRequestEntryTypeDef] = [
            {
                "Id": str(i),
                "MessageBody": message_body(event),
                "MessageGroupId": event.message_group,
                "MessageDeduplicationId": event.dedup_id,
            }
            for i, event in enumerate(events)
        ]
        for batch in _batches(entries):
            failed = self._refused(batch)
            if failed:
                failed = self._refused([e for e in batch if e["Id"] in failed])
            if failed:
                named = "; ".join(
                    f"{events[int(i)].record_key} event {events[int(i)].event_id}: {why}"
                    for i, why in failed.items()
                )
                raise Retryable(f"SQS refused {len(failed)} event(s): {named}")

    def _refused(self, batch: list[SendMessageBatchRequestEntryTypeDef]) -> dict[str, str]:
        """Send one batch; the entries SQS refused, by entry id, with its reason."""
        response = self._client.send_message_batch(QueueUrl=self._queue_url, Entries=batch)
        return {
            f["Id"]: f"{f['Code']} {f.get('Message', '')}".strip()
            for f in response.get("Failed", [])
        }


class SqsDeadLetters:
    """``DeadLetters`` over a dead-letter queue: a peeked letter is hidden for
    ``hide_s`` from other readers and comes back unless discarded."""

    def __init__(self, client: SQSClient, queue_url: str, *, hide_s: int = 120) -> None:
        self._client = client
        self._queue_url = queue_url
        self._hide_s = hide_s

    def peek(self, max_messages: int) -> list[DeadLetter]:
        letters: list[DeadLetter] = []
        while len(letters) < max_messages:
            messages = self._client.receive_message(
                QueueUrl=self._queue_url,
                MaxNumberOfMessages=min(MAX_BATCH_ENTRIES, max_messages - len(letters)),
                VisibilityTimeout=self._hide_s,
            ).get("Messages", [])
            if not messages:
                break
            letters += [
                DeadLetter(
                    receipt=m["ReceiptHandle"], event=ChangeEvent.model_validate_json(m["Body"])
                )
                for m in messages
            ]
        return letters

    def discard(self, letter: DeadLetter) -> None:
        self._client.delete_message(QueueUrl=self._queue_url, ReceiptHandle=letter.receipt)
