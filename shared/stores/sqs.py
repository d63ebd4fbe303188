"""Change events onto the SQS FIFO queue: one message group per record, dedup by vendor event."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import botocore.exceptions

from shared.errors import Retryable
from shared.models import ChangeEvent

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
    """``EventQueue`` over an SQS FIFO queue."""

    def __init__(self, client: SQSClient, queue_url: str) -> None:
        self._client = client
        self._queue_url = queue_url

    def defer(self, receipt_handle: str, seconds: float) -> None:
        """Hide a received message for ``seconds`` (a vendor asked us to wait).

        It still counts as a receive toward the queue's maxReceiveCount. SQS refuses a
        visibility timeout ending more than 12 h after this receive, so the wait is
        capped below that; if SQS still refuses, the message returns after the
        queue's own visibility timeout, which is logged, not raised (the caller is
        already failing the message).
        """
        try:
            self._client.change_message_visibility(
                QueueUrl=self._queue_url,
                ReceiptHandle=receipt_handle,
                VisibilityTimeout=min(int(seconds) + 1, MAX_DEFER_S),
            )
        except botocore.exceptions.ClientError as error:
            log.warning("could not defer a rate-limited message: %s", error)

    def send(self, events: Sequence[ChangeEvent]) -> None:
        """All events are on the queue when this returns; entries SQS refuses are
        retried once, then ``Retryable`` names them (the webhook is not acknowledged)."""
        entries: list[SendMessageBatchRequestEntryTypeDef] = [
            {
                "Id": str(i),
                "MessageBody": message_body(event),
                "MessageGroupId": event.record_key,
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
