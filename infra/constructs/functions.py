"""Lambda functions, one per ``FunctionSpec``, each with its own role granted exactly what
the spec lists, its own log group, arm64, X-Ray tracing and the shared code bundle.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Acknowledgment, Duration, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk.aws_lambda_event_sources import SqsEventSource
from constructs import Construct

from infra.bundling import ARCHITECTURE, RUNTIME
from infra.constructs.queues import Queues
from infra.constructs.secrets import SecretGrants
from infra.constructs.tables import Tables
from infra.environment import function_environment, resource_settings
from infra.resources import FunctionSpec, ServiceDescription

LOG_RETENTION = logs.RetentionDays.THREE_MONTHS


class Functions(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        service: ServiceDescription,
        code: lambda_.Code,
        tables: Tables,
        queues: Queues,
        secrets: SecretGrants,
        settings: Mapping[str, str],
        vendor_settings: Mapping[str, Mapping[str, str]],
        log_level: str,
    ):
        """``settings`` maps ``Settings`` fields to values every function gets besides the
        names of the tables and queues; ``vendor_settings`` are the connectors' own
        (``{vendor: {field: value}}``, e.g. a sandbox environment's API URL)."""
        super().__init__(scope, construct_id)
        resources = resource_settings(
            tables={table_id: table.table_name for table_id, table in tables.by_id.items()},
            queues={queue_id: queue.queue_url for queue_id, queue in queues.by_id.items()},
            dead_letters={queue_id: dlq.queue_url for queue_id, dlq in queues.dead_letters.items()},
            description=service,
        )
        environment = {
            **function_environment({**resources, **settings}, vendor_settings),
            "POWERTOOLS_LOG_LEVEL": log_level,
        }
        self.by_id: dict[str, lambda_.Function] = {}
        for spec in service.functions:
            role = self._role(spec)
            function = lambda_.Function(
                self,
                spec.id,
                runtime=RUNTIME,
                architecture=ARCHITECTURE,
                handler=spec.handler,
                code=code,
                memory_size=spec.memory_mb,
                timeout=Duration.seconds(spec.timeout_s),
                tracing=lambda_.Tracing.ACTIVE,
                environment=environment,
                log_group=self._log_group(spec, role),
                role=role,
            )
            for table_id in spec.tables_rw:
                tables.grant_read_write_data(table_id, role)
            for table_id in spec.tables_read:
                tables.grant_read_data(table_id, role)
            for queue_id in spec.queues_send:
                queues.by_id[queue_id].grant_send_messages(role)
            for queue_id in spec.queues_consume:
                # The consumer moves a message that keeps failing to the DLQ itself.
                if queue_id in queues.dead_letters:
                    queues.dead_letters[queue_id].grant_send_messages(role)
                # Also grants receive/delete/change-visibility on the queue.
                function.add_event_source(
                    SqsEventSource(
                        queues.by_id[queue_id],
                        report_batch_item_failures=True,
                        max_concurrency=spec.max_concurrency,
                    )
                )
            for queue_id in spec.dead_letters_sweep:
                queues.dead_letters[queue_id].grant_consume_messages(role)
            if spec.secrets_read:
                secrets.grant_read(role)
            if spec.secrets_rotate:
                secrets.grant_rotate(role)
            self.by_id[spec.id] = function

    def _role(self, spec: FunctionSpec) -> iam.Role:
        # An own role instead of the default one, which carries the AWS-managed
        # AWSLambdaBasicExecutionRole policy (logs on every log group in the account).
        role = iam.Role(
            self,
            f"{spec.id}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"crmsync {spec.id} function",
        )
        Validations.of(role).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]",
                reason="X-Ray's PutTraceSegments and PutTelemetryRecords do not support "
                "resource-level permissions; these are the only actions granted on '*'.",
            )
        )
        return role

    def _log_group(self, spec: FunctionSpec, role: iam.IRole) -> logs.LogGroup:
        log_group = logs.LogGroup(self, f"{spec.id}Logs", retention=LOG_RETENTION)
        log_group.grant_write(role)
        return log_group
