"""Reconcile Lambda: on the EventBridge schedule, enqueue what webhooks missed."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.bootstrap import Container
from shared.observability import logger, metrics, tracer
from shared.settings import get_settings

container = Container(get_settings())


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Every connection in turn; one that stopped early continues on the next run."""
    reports: dict[str, Any] = {}
    failed: list[str] = []
    for connection in container.connections.all():
        try:
            report = container.reconciler(connection).run(
                time_left_s=lambda: context.get_remaining_time_in_millis() / 1000
            )
        except Exception:  # one connection's outage must not starve the others
            logger.exception("reconcile failed", extra={"connection": connection.id})
            failed.append(connection.id)
            continue
        metrics.add_metric(
            name="ReconcileEnqueued", unit=MetricUnit.Count, value=report.total_enqueued
        )
        logger.info("reconciled", extra={"connection": connection.id, **asdict(report)})
        reports[connection.id] = asdict(report)
    if failed:  # a function error: the alarm sees it
        raise RuntimeError(f"reconcile failed for connection(s) {', '.join(failed)}")
    return reports
