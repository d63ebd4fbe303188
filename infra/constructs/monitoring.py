"""Alarms that say something needs a person, all publishing to one SNS topic.

* a dead-letter queue holds any message (an event gave up: invariant 1),
* a function reports errors or throttles,
* a queue's oldest message is older than a failing message could legitimately be
  (every receive used up, one visibility timeout each): the consumer is stuck,
* the drift check found the same disagreement between the two systems in two runs
  in a row (``DriftPersistent``): the sync did not repair it, or may not.

Each description names what failed and the command that shows more. An alarm watches
a metric, so its email cannot name the record that gave up: the command does.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from infra.constructs.queues import Queues
from infra.resources import QueueSpec
from shared.observability import DRIFT_PERSISTENT, NAMESPACE, SERVICE

PERIOD = Duration.minutes(1)
# The drift check runs with each reconcile, every hour or so: its metric is sparse.
DRIFT_PERIOD = Duration.minutes(5)


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        queue_specs: tuple[QueueSpec, ...],
        queues: Queues,
        functions: Mapping[str, lambda_.Function],
        alarm_email: str | None = None,
    ):
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(self, "AlarmTopic", enforce_ssl=True)
        if alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(alarm_email))
        self.alarms: list[cloudwatch.Alarm] = []
        stack = Stack.of(self).stack_name

        for queue_id, dead_letter in queues.dead_letters.items():
            self._alarm(
                f"{queue_id}DeadLetterNotEmpty",
                dead_letter.metric_approximate_number_of_messages_visible(
                    period=PERIOD, statistic=cloudwatch.Stats.MAXIMUM
                ),
                threshold=0,
                description=f"crmsync {stack}: events gave up and wait in the {queue_id} "
                f"dead-letter queue {dead_letter.queue_name}. "
                f"`crmsync redrive list --stack {stack}` shows each with its record and "
                f"reason; `crmsync audit <record> --connection <id> --stack {stack}` shows a "
                "record's trail. Fix the cause, then redrive them.",
            )
        for spec in queue_specs:
            max_age_s = spec.visibility_timeout_s * (spec.max_failed_attempts or 1)
            self._alarm(
                f"{spec.id}OldestMessageAge",
                queues.by_id[spec.id].metric_approximate_age_of_oldest_message(
                    period=PERIOD, statistic=cloudwatch.Stats.MAXIMUM
                ),
                threshold=max_age_s,
                description=f"crmsync {stack}: the oldest message on the {spec.id} queue "
                f"{queues.by_id[spec.id].queue_name} is older than {max_age_s} s: the "
                "consumer is not keeping up or not running. "
                f"`crmsync status --stack {stack}` shows where it stands.",
            )
        self._alarm(
            "DriftPersistent",
            cloudwatch.Metric(
                namespace=NAMESPACE,
                metric_name=DRIFT_PERSISTENT,
                dimensions_map={"service": SERVICE},
                period=DRIFT_PERIOD,
                statistic=cloudwatch.Stats.MAXIMUM,
            ),
            threshold=0,
            description=f"crmsync {stack}: the drift check found the same disagreement "
            "between the CRM and the accounting system in two runs in a row: the sync did "
            "not repair it, or its policy leaves it to a person (a held conflict, a record "
            f"deleted or voided on one side). `crmsync drift --stack {stack}` lists each "
            "finding with both values; `crmsync drift --run` checks again after a fix.",
            # Published once per drift check: between checks the alarm keeps its state,
            # and the next check's count (0 once repaired) moves it.
            missing=cloudwatch.TreatMissingData.IGNORE,
        )
        for function_id, function in functions.items():
            logs = function.log_group.log_group_name
            self._alarm(
                f"{function_id}Errors",
                function.metric_errors(period=PERIOD),
                threshold=0,
                description=f"crmsync {stack}: the {function_id} function reported errors: "
                f"its log group {logs} holds the failed invocations' lines and tracebacks.",
            )
            self._alarm(
                f"{function_id}Throttles",
                function.metric_throttles(period=PERIOD),
                threshold=0,
                description=f"crmsync {stack}: the {function_id} function was throttled: "
                "the account's or the function's concurrency is used up. "
                f"Its log group is {logs}.",
            )

    def _alarm(
        self,
        construct_id: str,
        metric: cloudwatch.IMetric,
        *,
        threshold: float,
        description: str,
        missing: cloudwatch.TreatMissingData = cloudwatch.TreatMissingData.NOT_BREACHING,
    ) -> None:
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            metric=metric,
            threshold=threshold,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=missing,
            alarm_description=description,
        )
        alarm.add_alarm_action(cw_actions.SnsAction(self.topic))
        self.alarms.append(alarm)
