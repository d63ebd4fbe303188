"""EventBridge rules, one per ``ScheduleSpec``, each invoking its function at a fixed rate."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.resources import ScheduleSpec


class Schedules(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        specs: tuple[ScheduleSpec, ...],
        functions: Mapping[str, lambda_.IFunction],
    ):
        super().__init__(scope, construct_id)
        self.by_id: dict[str, events.Rule] = {}
        for spec in specs:
            self.by_id[spec.id] = events.Rule(
                self,
                spec.id,
                schedule=events.Schedule.rate(Duration.minutes(spec.rate_minutes)),
                targets=[targets.LambdaFunction(functions[spec.function])],
            )
