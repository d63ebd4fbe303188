"""The one crmsync stack: every construct built from ``infra.resources.DESCRIPTION``."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.bundling import TASK_ROOT
from infra.constructs import Functions, Ingress, Monitoring, Queues, Schedules, Secrets, Tables
from infra.resources import DESCRIPTION, ServiceDescription


class CrmSyncStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        code: lambda_.Code,
        connection_id: str,
        mapping_file: PurePosixPath,
        alarm_email: str | None = None,
        service: ServiceDescription = DESCRIPTION,
        **kwargs: Any,
    ) -> None:
        """``code`` is the Lambda bundle (see ``infra.bundling``); ``mapping_file`` is the
        mapping file's path inside it, e.g. ``config/services.yaml``."""
        super().__init__(scope, construct_id, **kwargs)
        tables = Tables(self, "Tables", specs=service.tables)
        queues = Queues(self, "Queues", specs=service.queues)
        secrets = Secrets(self, "Secrets", specs=service.secrets, connection_id=connection_id)
        ingress = Ingress(self, "Ingress")
        functions = Functions(
            self,
            "Functions",
            service=service,
            code=code,
            tables=tables,
            queues=queues,
            secrets=secrets,
            settings={
                "connection_id": connection_id,
                "public_base_url": ingress.base_url,
                "mapping_file": str(TASK_ROOT / mapping_file),
            },
        )
        ingress.add_webhook_routes(
            functions.by_id[service.webhook_function], service.webhook_vendors()
        )
        Schedules(self, "Schedules", specs=service.schedules, functions=functions.by_id)
        monitoring = Monitoring(
            self,
            "Monitoring",
            queue_specs=service.queues,
            queues=queues,
            functions=functions.by_id,
            alarm_email=alarm_email,
        )

        labels = {spec.vendor: spec.vendor_label for spec in service.secrets}
        for vendor, url in ingress.webhook_urls.items():
            CfnOutput(self, f"{labels[vendor]}WebhookUrl", value=url)
        for secret_id, name in secrets.names.items():
            CfnOutput(
                self,
                f"{secret_id}SecretName",
                value=name,
                description="Fill with: aws secretsmanager put-secret-value --secret-id "
                f"{name} --secret-string file://{secret_id}.json",
            )
        for queue_id, dead_letter in queues.dead_letters.items():
            CfnOutput(self, f"{queue_id}DeadLetterQueueUrl", value=dead_letter.queue_url)
        CfnOutput(self, "AlarmTopicArn", value=monitoring.topic.topic_arn)
