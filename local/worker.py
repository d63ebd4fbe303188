"""The SQS event source mapping, locally: real messages from moto's SQS into the sync handler.

It behaves as Lambda's poller does with ``ReportBatchItemFailures``: records the
handler lists in ``batchItemFailures`` stay on the queue and come back after their
visibility timeout (or whatever the handler set with ChangeMessageVisibility);
the rest are deleted. A handler exception, or a response naming a message that was
not in the batch, fails the whole batch, and so does an invocation that times out.
The queue's redrive policy moves a message to its DLQ after ``maxReceiveCount``
receives. Like Lambda's poller, it handles several batches at once, up to the
function's concurrency: one polling thread per concurrent invocation.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from local.lambdas import LocalFunction

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sqs.type_defs import MessageAttributeValueOutputTypeDef, MessageTypeDef

log = logging.getLogger(__name__)


class _ItemFailure(BaseModel):
    itemIdentifier: str = Field(min_length=1)


class _BatchResponse(BaseModel):
    model_config = ConfigDict(extra="ignore")
    batchItemFailures: list[_ItemFailure] = []


@dataclass(frozen=True)
class WorkerStatus:
    batches: int
    processed: int  # records deleted after success
    failed: int  # records left for redelivery
    errors: int  # invocations that raised, timed out or answered nonsense
    in_flight: bool  # some batch is being handled


def _attribute(value: MessageAttributeValueOutputTypeDef) -> dict[str, Any]:
    """A message attribute as the Lambda SQS event spells it (camelCase, base64 binaries)."""

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    attribute: dict[str, Any] = {
        "stringListValues": list(value.get("StringListValues", [])),
        "binaryListValues": [b64(v) for v in value.get("BinaryListValues", [])],
        "dataType": value["DataType"],
    }
    if "StringValue" in value:
        attribute["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        attribute["binaryValue"] = b64(value["BinaryValue"])
    return attribute


def sqs_record(message: MessageTypeDef, *, queue_arn: str, region: str) -> dict[str, Any]:
    """One received message as a record of Lambda's SQS event."""
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": {
            name: _attribute(value) for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


class SqsWorker:
    """Long-polls one queue in ``function.concurrency`` threads, each handing the batches
    it receives to ``function``."""

    def __init__(
        self,
        sqs: SQSClient,
        *,
        queue_url: str,
        queue_arn: str,
        function: LocalFunction,
        region: str,
        batch_size: int = 10,
        wait_time_s: int = 1,
    ) -> None:
        self._sqs = sqs
        self.queue_url = queue_url
        self._queue_arn = queue_arn
        self._function = function
        self._region = region
        self._batch_size = batch_size
        self._wait_time_s = wait_time_s
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._batches = self._processed = self._failed = self._errors = 0
        self._in_flight = 0  # batches being handled

    def start(self) -> SqsWorker:
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._run, name=f"sqs-worker-{n}", daemon=True)
            for n in range(self._function.concurrency)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        deadline = time.monotonic() + self._wait_time_s + 30
        for thread in self._threads:
            thread.join(timeout=max(deadline - time.monotonic(), 0.0))
        self._threads = []

    def status(self) -> WorkerStatus:
        with self._lock:
            return WorkerStatus(
                batches=self._batches,
                processed=self._processed,
                failed=self._failed,
                errors=self._errors,
                in_flight=self._in_flight > 0,
            )

    def wait_until_drained(self, timeout: float) -> bool:
        """True once the queue holds nothing (visible, in flight or delayed) and no batch
        is being handled; False if that did not happen within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        # Two empty looks in a row: the counts are computed one after the other, so a
        # message turning visible between them is counted in neither.
        empty_looks = 0
        while True:
            idle = self._queue_empty() and not self.status().in_flight
            empty_looks = empty_looks + 1 if idle else 0
            if empty_looks == 2:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def _queue_empty(self) -> bool:
        counts = self._sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        return all(int(count) == 0 for count in counts.values())

    def poll_once(self) -> int:
        """Receive one batch and handle it; the number of records handed to the function."""
        messages = self._sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self._batch_size,
            WaitTimeSeconds=self._wait_time_s,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return 0
        with self._lock:
            self._in_flight += 1
        try:
            self._handle(messages)
        finally:
            with self._lock:
                self._in_flight -= 1
        return len(messages)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:
                # moto restarting or the queue gone: keep polling like the real poller.
                if not self._stop.is_set():
                    log.exception("polling %s failed", self.queue_url)
                    self._stop.wait(1.0)

    def _handle(self, messages: list[MessageTypeDef]) -> None:
        records = [sqs_record(m, queue_arn=self._queue_arn, region=self._region) for m in messages]
        failed = self._failed_ids(records, {m["MessageId"] for m in messages})
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            result = self._sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)
                ],
            )
            for failure in result.get("Failed", []):
                log.warning("could not delete a processed message: %s", failure.get("Message"))
        with self._lock:
            self._batches += 1
            self._processed += len(done)
            self._failed += len(failed)

    def _failed_ids(self, records: list[dict[str, Any]], ids: set[str]) -> set[str]:
        """The ids to leave on the queue: those reported, or all when the invocation failed."""
        try:
            response = self._function.invoke({"Records": records})
        except Exception:
            log.exception("the sync function raised; the whole batch will be retried")
            self._count_error()
            return ids
        if response is None:
            return set()
        try:
            failed = {
                f.itemIdentifier for f in _BatchResponse.model_validate(response).batchItemFailures
            }
        except ValidationError:
            log.error("invalid batch response; the whole batch will be retried: %r", response)
            self._count_error()
            return ids
        if not failed <= ids:
            log.error("batchItemFailures names messages not in the batch: %s", failed - ids)
            self._count_error()
            return ids
        return failed

    def _count_error(self) -> None:
        with self._lock:
            self._errors += 1
