"""Sync Lambda: SQS FIFO batch → one engine call per event, partial batch failures."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.bootstrap import Container
from shared.errors import RateLimited
from shared.models import ChangeEvent
from shared.observability import logger, metrics, tracer
from shared.settings import get_settings

settings = get_settings()
container = Container(settings)
engine = container.engine()
# A failed group is skipped, not the rest of the batch: other records keep their order.
processor = SqsFifoPartialProcessor(skip_group_on_error=True)
# A batch whose every record is retried later (a vendor's 429, say) is routine, not a
# function error: raising would count as a Lambda error and page the operator. The
# records are still reported failed, so SQS redelivers them.
processor.raise_on_entire_batch_failure = False
idempotency = IdempotencyConfig(
    event_key_jmespath="event_id", expires_after_seconds=settings.idempotency_ttl_s
)
persistence = DynamoDBPersistenceLayer(
    table_name=settings.idempotency_table, boto3_client=container.dynamodb
)


@idempotent_function(  # type: ignore[untyped-decorator]  # powertools ships it untyped
    data_keyword_argument="event", config=idempotency, persistence_store=persistence
)
def apply_event(event: ChangeEvent) -> dict[str, Any]:
    """Keyed by the vendor's event id: a redelivered event is answered from the record."""
    return engine.handle(event).model_dump(mode="json")


def record_handler(record: SQSRecord) -> None:
    event = ChangeEvent.model_validate_json(record.body)
    try:
        outcome = apply_event(event=event)
    except RateLimited as limited:
        # Come back when the vendor said to, not after the queue's visibility timeout
        # (the redelivery still counts toward maxReceiveCount).
        container.queue.defer(record.receipt_handle, limited.retry_after_s)
        raise
    logger.info("event applied", extra={"record": event.record_key, **outcome})


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    idempotency.register_lambda_context(context)
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
