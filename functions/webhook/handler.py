"""Webhook Lambda: API Gateway HTTP API → verify → normalize → SQS FIFO → 2xx."""

# ruff: noqa: E402  (the imports follow gc.disable())
from __future__ import annotations

import gc

# The ~100,000 objects a cold start makes live as long as the process: the collector
# would rescan them over and over while they are made (~40 ms), and again in every
# invocation. It is off until the module is loaded, which then freezes them (at the end).
gc.disable()

import binascii
import json
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.bootstrap import Container
from shared.errors import WebhookRejected
from shared.observability import log_metrics, logger, metrics, tracer
from shared.ports import InboundWebhook
from shared.settings import get_settings
from shared.sync.ingest import WebhookIngest

settings = get_settings()
container = Container(settings)
# Built on the first request, so a cold start makes no AWS client (a test may set its own).
ingest: WebhookIngest | None = None
app = APIGatewayHttpResolver()


def ingested() -> WebhookIngest:
    global ingest
    if ingest is None:
        ingest = container.ingest()
    return ingest


def inbound(event: APIGatewayProxyEventV2) -> InboundWebhook:
    """The request as the vendor signed it: the public URL it posted to, the raw body."""
    base = settings.public_base_url.rstrip("/") or f"https://{event.request_context.domain_name}"
    query = f"?{event.raw_query_string}" if event.raw_query_string else ""
    try:
        body = event.decoded_body or ""
    except (UnicodeDecodeError, binascii.Error):
        raise WebhookRejected(400, "body is not UTF-8 text") from None
    return InboundWebhook(
        method=event.request_context.http.method,
        url=f"{base}{event.raw_path}{query}",
        headers={k.lower(): v for k, v in (event.headers or {}).items()},
        body=body,
        received_at=datetime.now(UTC),
    )


@app.post("/webhooks/<vendor>/<connection>")
def receive(vendor: str, connection: str) -> Response[str]:
    answer = ingested().accept(vendor, connection, inbound(app.current_event))
    metrics.add_metric(name="WebhookDeliveries", unit=MetricUnit.Count, value=1)
    return Response(status_code=answer.status, content_type=answer.content_type, body=answer.body)


@app.exception_handler(WebhookRejected)  # type: ignore[untyped-decorator]  # untyped upstream
def rejected(error: WebhookRejected) -> Response[str]:
    logger.warning("webhook rejected", extra={"status": error.status, "reason": error.reason})
    metrics.add_metric(name="WebhookRejected", unit=MetricUnit.Count, value=1)
    if error.empty_answer:
        return Response(status_code=error.status, content_type=content_types.TEXT_PLAIN, body="")
    return Response(
        status_code=error.status,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps({"message": error.reason}),
    )


@app.not_found
def unknown_route(_: Exception) -> Response[str]:
    return Response(
        status_code=404,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps({"message": "unknown route; POST /webhooks/<vendor>/<connection>"}),
    )


# The delivery's lines carry API Gateway's request id, as its access log does.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)


gc.freeze()
gc.enable()
