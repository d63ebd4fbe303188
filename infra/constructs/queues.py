"""SQS queues, one per ``QueueSpec``, each with its own dead-letter queue when it asks for one."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.resources import DeduplicationScope, FifoThroughputLimit, QueueSpec

_DEDUPLICATION_SCOPES: dict[DeduplicationScope, sqs.DeduplicationScope] = {
    "messageGroup": sqs.DeduplicationScope.MESSAGE_GROUP,
    "queue": sqs.DeduplicationScope.QUEUE,
}
_FIFO_THROUGHPUT_LIMITS: dict[FifoThroughputLimit, sqs.FifoThroughputLimit] = {
    "perMessageGroupId": sqs.FifoThroughputLimit.PER_MESSAGE_GROUP_ID,
    "perQueue": sqs.FifoThroughputLimit.PER_QUEUE,
}


class Queues(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, specs: tuple[QueueSpec, ...]):
        super().__init__(scope, construct_id)
        self.by_id: dict[str, sqs.Queue] = {}
        self.dead_letters: dict[str, sqs.Queue] = {}
        for spec in specs:
            dead_letter = None
            if spec.max_receive_count is not None:
                dlq = self._queue(f"{spec.id}DeadLetter", spec)
                self.dead_letters[spec.id] = dlq
                dead_letter = sqs.DeadLetterQueue(
                    max_receive_count=spec.max_receive_count, queue=dlq
                )
            self.by_id[spec.id] = self._queue(
                spec.id,
                spec,
                visibility_timeout=Duration.seconds(spec.visibility_timeout_s),
                dead_letter_queue=dead_letter,
            )

    def _queue(
        self,
        construct_id: str,
        spec: QueueSpec,
        *,
        visibility_timeout: Duration | None = None,
        dead_letter_queue: sqs.DeadLetterQueue | None = None,
    ) -> sqs.Queue:
        return sqs.Queue(
            self,
            construct_id,
            fifo=spec.fifo or None,
            deduplication_scope=(
                _DEDUPLICATION_SCOPES[spec.deduplication_scope] if spec.fifo else None
            ),
            fifo_throughput_limit=(
                _FIFO_THROUGHPUT_LIMITS[spec.fifo_throughput_limit] if spec.fifo else None
            ),
            retention_period=Duration.days(spec.retention_days),
            visibility_timeout=visibility_timeout,
            dead_letter_queue=dead_letter_queue,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
        )
