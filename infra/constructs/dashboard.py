"""One CloudWatch dashboard: is the sync keeping up, and if not, where does it stall?

Outcomes per connection, freshness, the vendors' limits (calls, 429s, deferrals), the
queues and the functions. The sync's own metrics (``shared.observability``) carry a
connection or a vendor as a dimension whose values are only known at run time, so
their graphs are SEARCH expressions over that dimension: a connection added without
a redeploy appears by itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.constructs.queues import Queues
from shared.observability import (
    CONNECTION,
    DRIFT,
    DRIFT_PERSISTENT,
    FRESHNESS,
    NAMESPACE,
    RATE_LIMITED,
    VENDOR,
    VENDOR_CALLS,
)
from shared.ports import Tally

PERIOD = Duration.minutes(5)
# The drift check runs with each reconcile (hourly): a graph point per run, the sum
# of its kinds.
DRIFT_PERIOD = Duration.hours(1)
# Vendors state their limits per minute or per second: calls are graphed per minute.
CALLS_PERIOD = Duration.minutes(1)
WIDTH = 24  # a dashboard row's width in grid units
# What became of events (Failed: of attempts, each retried until dead-lettered).
OUTCOMES = (
    Tally.APPLIED,
    Tally.SKIPPED,
    Tally.FORWARDED,
    Tally.INVALID,
    Tally.REJECTED,
    Tally.FAILED,
)


def search(metric: str, by: str, statistic: str, period: Duration = PERIOD) -> cloudwatch.IMetric:
    """``metric`` of every value of dimension ``by``, one line each (powertools adds the
    ``service`` dimension to every metric set)."""
    schema = f"{{{NAMESPACE},{by},service}}"
    seconds = int(period.to_seconds())
    return cloudwatch.SearchExpression(
        expression=f"SEARCH('{schema} MetricName=\"{metric}\"', '{statistic}', {seconds})",
        # CloudWatch's dynamic label: each line is named by its dimension value.
        label=f"${{PROP('Dim.{by}')}} {metric}" + ("" if statistic == "Sum" else f" {statistic}"),
        period=period,
    )


def console_url(region: str, dashboard_name: str) -> str:
    return (
        f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
        f"#dashboards:name={dashboard_name}"
    )


class Dashboard(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        queues: Queues,
        functions: Mapping[str, lambda_.Function],
    ):
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        # Named after the stack, so its URL is known before it is deployed.
        self.dashboard_name = stack.stack_name
        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=self.dashboard_name,
            default_interval=Duration.hours(6),
        )
        self.url = console_url(stack.region, self.dashboard_name)

        self.dashboard.add_widgets(
            cloudwatch.TextWidget(
                markdown=f"# crmsync `{stack.stack_name}`\n"
                f"From a terminal: `crmsync status --stack {stack.stack_name}`; "
                f"`crmsync redrive list --stack {stack.stack_name}` names each dead letter's "
                f"record and reason; `crmsync drift --stack {stack.stack_name}` what the two "
                "systems disagree on.",
                width=WIDTH,
                height=2,
            )
        )
        self._row(
            *(
                Graph(f"{tally} per connection", [search(tally, CONNECTION, "Sum")])
                for tally in OUTCOMES
            )
        )
        self._row(
            Graph(
                "Freshness: vendor change → written (ms)",
                [search(FRESHNESS, CONNECTION, "p50"), search(FRESHNESS, CONNECTION, "p99")],
            ),
            Graph(
                "Vendor calls per minute",
                [search(VENDOR_CALLS, VENDOR, "Sum", CALLS_PERIOD)],
            ),
            Graph(
                "Rate limited (429s) by vendor, deferred events by connection",
                [search(RATE_LIMITED, VENDOR, "Sum"), search(Tally.DEFERRED, CONNECTION, "Sum")],
            ),
        )
        self._row(
            Graph(
                "Drift: disagreements the hourly check found per connection, and of those "
                "found by the check before too (persistent)",
                [
                    search(DRIFT, CONNECTION, "Sum", DRIFT_PERIOD),
                    search(DRIFT_PERSISTENT, CONNECTION, "Sum", DRIFT_PERIOD),
                ],
            )
        )
        queue_graphs: list[Graph] = []
        for queue_id, queue in queues.by_id.items():
            queue_graphs.append(
                Graph(
                    f"{queue_id} queue: waiting messages (left), oldest one's age in s (right)",
                    [queue.metric_approximate_number_of_messages_visible(period=PERIOD)],
                    right=[queue.metric_approximate_age_of_oldest_message(period=PERIOD)],
                )
            )
            dead_letter = queues.dead_letters.get(queue_id)
            if dead_letter is not None:
                depth = dead_letter.metric_approximate_number_of_messages_visible(
                    period=PERIOD, statistic=cloudwatch.Stats.MAXIMUM
                )
                queue_graphs.append(
                    Graph(f"{queue_id} dead-letter queue: events that gave up", [depth])
                )
        self._row(*queue_graphs)
        self._row(
            Graph(
                "Function errors",
                [f.metric_errors(period=PERIOD, label=fid) for fid, f in functions.items()],
            ),
            Graph(
                "Function duration p50 / p99 (ms)",
                [
                    f.metric_duration(period=PERIOD, statistic=stat, label=f"{fid} {stat}")
                    for fid, f in functions.items()
                    for stat in ("p50", "p99")
                ],
            ),
            Graph(
                "Function throttles",
                [f.metric_throttles(period=PERIOD, label=fid) for fid, f in functions.items()],
            ),
        )

    def _row(self, *graphs: Graph) -> None:
        """Graphs side by side, as wide as a row allows (at least a third of it)."""
        width = max(WIDTH // len(graphs), WIDTH // 3)
        self.dashboard.add_widgets(
            *(
                cloudwatch.GraphWidget(
                    title=graph.title, left=graph.left, right=graph.right, width=width, height=6
                )
                for graph in graphs
            )
        )


@dataclass(frozen=True)
class Graph:
    title: str
    left: list[cloudwatch.IMetric]
    right: list[cloudwatch.IMetric] = field(default_factory=list)
