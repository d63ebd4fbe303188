"""Sync Lambda: SQS FIFO batch → one engine call per event, partial batch failures."""

# ruff: noqa: E402  (the imports follow gc.disable())
from __future__ import annotations

import gc

# The ~100,000 objects a cold start makes live as long as the process: the collector
# would rescan them over and over while they are made (~40 ms), and again in every
# invocation. It is off until the module is loaded, which then freezes them (at the end).
gc.disable()

from functools import cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.batch.exceptions import (
    SQSFifoMessageGroupCircuitBreakerError,
)
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.bootstrap import Container
from shared.models import ChangeEvent
from shared.observability import EmfSyncMetrics, correlated, log_metrics, logger, tracer
from shared.settings import get_settings
from shared.sync.consume import Consumer, QueueMessage

if TYPE_CHECKING:
    from shared.sync.engine import Triage
    from shared.sync.route import ConnectionRouter

settings = get_settings()
container = Container(settings, sync_metrics=EmfSyncMetrics())
# A failed group is skipped, not the rest of the batch: other records keep their order.
processor = SqsFifoPartialProcessor(skip_group_on_error=True)
# A batch whose every record is retried later (a vendor's 429, say) is routine, not a
# function error: raising would count as a Lambda error and page the operator. The
# records are still reported failed, so SQS redelivers them.
processor.raise_on_entire_batch_failure = False
idempotency = IdempotencyConfig(
    event_key_jmespath="[connection_id, event_id]", expires_after_seconds=settings.idempotency_ttl_s
)


@cache
def router() -> ConnectionRouter:
    return container.router()


def apply_event(event: ChangeEvent, triage: Triage | None) -> dict[str, Any]:
    """Made idempotent by ``consumer``, keyed by the connection and the vendor's event
    id: a redelivered event is answered from the record."""
    return router().handle(event, triage).model_dump(mode="json")


@cache
def consumer() -> Consumer:
    """Built on the first invocation with the idempotency records' DynamoDB client: a
    cold start makes no AWS client. The records are keyed by ``apply_event``'s module
    and name, as when it is decorated."""
    persistence = DynamoDBPersistenceLayer(
        table_name=settings.idempotency_table, boto3_client=container.dynamodb
    )
    idempotent = idempotent_function(
        apply_event,
        data_keyword_argument="event",
        config=idempotency,
        persistence_store=persistence,
    )

    def apply(event: ChangeEvent) -> dict[str, Any]:
        triage = router().triage(event)
        if triage is not None and triage.settled is not None:
            # Decided by what is stored, written nowhere: no idempotency record.
            return triage.settled.model_dump(mode="json")
        if triage is not None and not triage.writes:
            return apply_event(event, triage)  # writes to no vendor: no record either
        return idempotent(event=event, triage=triage)  # type: ignore[no-any-return]

    return container.consumer(apply)


def message(record: SQSRecord) -> QueueMessage:
    return QueueMessage(
        message_id=record.message_id,
        receipt=record.receipt_handle,
        body=record.body,
        receive_count=int(record.attributes.approximate_receive_count),
    )


def record_handler(record: SQSRecord) -> None:
    received = message(record)
    event = received.event
    # Each of the event's log lines names it, and only its own: the keys go on exit.
    with correlated(
        connection_id=event.connection_id,
        record_key=event.record_key,
        event_id=event.event_id,
        message_id=record.message_id,
    ):
        try:
            outcome = consumer().process(received)
        except Exception as error:  # the processor reports it failed; the queue retries it
            logger.warning("event not handled", extra={"error": f"{type(error).__name__}: {error}"})
            raise
        logger.info("event handled", extra={"outcome": outcome})


@logger.inject_lambda_context
@log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    idempotency.register_lambda_context(context)
    container.deadline.start(context.get_remaining_time_in_millis() / 1000)
    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    # Records behind a failed one in their group were never tried: they come back with
    # it, and their receive is not a failed attempt.
    for record, (kind, _, _) in zip(processor.fail_messages, processor.exceptions, strict=True):
        if kind is SQSFifoMessageGroupCircuitBreakerError and isinstance(record, SQSRecord):
            consumer().skipped(message(record))
    return response


gc.freeze()
gc.enable()
