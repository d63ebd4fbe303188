"""The one crmsync stack: every construct built from ``infra.resources.DESCRIPTION``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.constructs import (
    Dashboard,
    Functions,
    Ingress,
    Monitoring,
    Queues,
    Schedules,
    SecretGrants,
    Tables,
)
from infra.outputs import WEBHOOK_URL_SUFFIX, StackOutputs
from infra.resources import DESCRIPTION, ServiceDescription


class CrmSyncStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        code: lambda_.Code,
        alarm_email: str | None = None,
        settings: Mapping[str, str] | None = None,
        vendor_settings: Mapping[str, Mapping[str, str]] | None = None,
        log_level: str = "INFO",
        service: ServiceDescription = DESCRIPTION,
        **kwargs: Any,
    ) -> None:
        """``code`` is the Lambda bundle (see ``infra.bundling``); ``settings`` (fields of
        ``Settings``), ``vendor_settings`` and ``log_level`` come from the deploy context
        (``infra.context``). The connections it serves are data in its Connections
        table, added without a redeploy."""
        super().__init__(scope, construct_id, **kwargs)
        tables = Tables(self, "Tables", specs=service.tables)
        queues = Queues(self, "Queues", specs=service.queues)
        secrets = SecretGrants(self, "Secrets", rotating_vendors=service.rotating_vendors())
        ingress = Ingress(self, "Ingress")
        functions = Functions(
            self,
            "Functions",
            service=service,
            code=code,
            tables=tables,
            queues=queues,
            secrets=secrets,
            settings={**(settings or {}), "public_base_url": ingress.base_url},
            vendor_settings=vendor_settings or {},
            log_level=log_level,
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
        dashboard = Dashboard(self, "Dashboard", queues=queues, functions=functions.by_id)
        log_groups = {
            function_id: function.log_group.log_group_name
            for function_id, function in functions.by_id.items()
        }

        outputs = StackOutputs(
            connections_table=tables.by_id["Connections"].table_name,
            audit_table=tables.by_id["Audit"].table_name,
            links_table=tables.by_id["Links"].table_name,
            cursors_table=tables.by_id["Cursors"].table_name,
            events_queue_url=queues.by_id["Events"].queue_url,
            dead_letter_queue_url=queues.dead_letters["Events"].queue_url,
            dead_letter_queue_arn=queues.dead_letters["Events"].queue_arn,
            alarm_topic_arn=monitoring.topic.topic_arn,
            dashboard_url=dashboard.url,
            webhook_log_group=log_groups["Webhook"],
            sync_log_group=log_groups["Sync"],
            reconcile_log_group=log_groups["Reconcile"],
            function_settings=json.dumps(dict(settings or {})),
            vendor_settings=json.dumps({k: dict(v) for k, v in (vendor_settings or {}).items()}),
            webhook_urls=ingress.webhook_urls,
        )
        for key, value in outputs.as_outputs().items():
            description = (
                "Replace {connection} with the connection's id"
                if key.endswith(WEBHOOK_URL_SUFFIX)
                else None
            )
            CfnOutput(self, key, value=value, description=description)
