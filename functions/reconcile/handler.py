"""Reconcile Lambda: on the EventBridge schedule, enqueue what webhooks missed."""

# ruff: noqa: E402  (the imports follow gc.disable())
from __future__ import annotations

import gc

# The ~100,000 objects a cold start makes live as long as the process: the collector
# would rescan them over and over while they are made (~40 ms), and again in every
# invocation. It is off until the module is loaded, which then freezes them (at the end).
gc.disable()

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.bootstrap import Container
from shared.observability import log_metrics, logger, metrics, tracer
from shared.settings import get_settings

container = Container(get_settings())


@logger.inject_lambda_context
@log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # Imported here, not at cold start: it imports the mapping, which only the
    # connections' reconcilers use (shared/bootstrap.py builds them on first use).
    from shared.sync.reconcile import reconcile_all

    fleet = reconcile_all(
        container.connections.all(),
        container.reconciler,
        container.dead_letters,
        time_left_s=lambda: context.get_remaining_time_in_millis() / 1000,
    )
    reports = fleet.by_connection()
    for connection_id, report in reports.items():
        logger.info("reconciled", extra={"connection": connection_id, **report})
    enqueued = sum(report.total_enqueued for report in fleet.reports.values())
    metrics.add_metric(name="ReconcileEnqueued", unit=MetricUnit.Count, value=enqueued)
    if fleet.failed:  # a function error, so the alarm sees it
        logger.error("reconcile failed", extra={"failed": fleet.failed})
        raise RuntimeError(f"reconcile failed for connection(s) {', '.join(fleet.failed)}")
    return reports


gc.freeze()
gc.enable()
