"""Reconcile Lambda: on the EventBridge schedule, enqueue what webhooks missed; then
check each connection that finished for drift between the two systems."""

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
from shared.observability import EmfDriftMetrics, log_metrics, logger, metrics, tracer
from shared.settings import get_settings

container = Container(get_settings())


@logger.inject_lambda_context
@log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # Imported here, not at cold start: it imports the mapping, which only the
    # connections' reconcilers use (shared/bootstrap.py builds them on first use).
    from shared.sync.drift import drift_all
    from shared.sync.reconcile import reconcile_all

    def time_left_s() -> float:
        return context.get_remaining_time_in_millis() / 1000

    connections = container.connections.all()
    fleet = reconcile_all(
        connections, container.reconciler, container.dead_letters, time_left_s=time_left_s
    )
    reports = fleet.by_connection()
    for connection_id, report in reports.items():
        logger.info("reconciled", extra={"connection": connection_id, **report})
    enqueued = sum(report.total_enqueued for report in fleet.reports.values())
    metrics.add_metric(name="ReconcileEnqueued", unit=MetricUnit.Count, value=enqueued)
    # Drift is checked where the scan finished (one stopped for time carries on first).
    finished = [
        connection
        for connection in connections
        if connection.id in fleet.reports and fleet.reports[connection.id].complete
    ]
    drift = drift_all(finished, container.drift_check, EmfDriftMetrics(), time_left_s)
    for connection_id, found in drift.reports.items():
        logger.info(
            "drift checked",
            extra={
                "connection": connection_id,
                "found": found.counts,
                "persistent": found.persistent,
            },
        )
        reports[connection_id]["drift"] = {"found": found.counts, "persistent": found.persistent}
    failed = {**fleet.failed, **{c: f"drift: {why}" for c, why in drift.failed.items()}}
    if failed:  # a function error, so the alarm sees it
        logger.error("reconcile failed", extra={"failed": failed})
        raise RuntimeError(f"reconcile failed for connection(s) {', '.join(failed)}")
    return reports


gc.freeze()
gc.enable()
