"""Reconcile Lambda: on the EventBridge schedule, enqueue what webhooks missed."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.bootstrap import Container
from shared.observability import logger, metrics, tracer
from shared.settings import get_settings

reconciler = Container(get_settings()).reconciler()


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = reconciler.run(time_left_s=lambda: context.get_remaining_time_in_millis() / 1000)
    metrics.add_metric(name="ReconcileEnqueued", unit=MetricUnit.Count, value=report.total_enqueued)
    logger.info("reconciled", extra=asdict(report))
    return asdict(report)
