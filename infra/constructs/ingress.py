"""The public edge: an HTTP API with a throttled, access-logged default stage.

Routes are added once the webhook function exists; the function in turn needs the
API's endpoint (vendors sign the full URL), so the API comes first.
"""

from __future__ import annotations

import json

import jsii
from aws_cdk import Acknowledgment, Validations
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk.aws_apigatewayv2_integrations import HttpLambdaIntegration
from constructs import Construct

from infra.resources import webhook_route

# Vendors send bursts (batches of up to 100 events a request, retried on 429), so
# the limit only caps runaway or hostile traffic, far above normal volume.
THROTTLE_RATE_PER_S = 100
THROTTLE_BURST = 200
ACCESS_LOG_RETENTION = logs.RetentionDays.THREE_MONTHS

_ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "ip": "$context.identity.sourceIp",
    "requestTime": "$context.requestTime",
    "routeKey": "$context.routeKey",
    "status": "$context.status",
    "protocol": "$context.protocol",
    "responseLength": "$context.responseLength",
    "latencyMs": "$context.responseLatency",
    "integrationError": "$context.integrationErrorMessage",
}


class Ingress(Construct):
    def __init__(self, scope: Construct, construct_id: str):
        super().__init__(scope, construct_id)
        self.api = apigwv2.HttpApi(self, "Api", create_default_stage=False)
        access_logs = logs.LogGroup(self, "AccessLogs", retention=ACCESS_LOG_RETENTION)
        apigwv2.HttpStage(
            self,
            "DefaultStage",
            http_api=self.api,
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(
                rate_limit=THROTTLE_RATE_PER_S, burst_limit=THROTTLE_BURST
            ),
            access_log_settings=_AccessLogSettings(access_logs),
        )
        # The $default stage serves at the API's root, so this is the base URL vendors call.
        self.base_url = self.api.api_endpoint
        self.webhook_urls: dict[str, str] = {}

    def add_webhook_routes(self, function: lambda_.IFunction, vendors: tuple[str, ...]) -> None:
        """``POST /webhooks/<vendor>/<connection>`` for each vendor, all served by
        ``function``."""
        integration = HttpLambdaIntegration("Webhook", function)
        for vendor in vendors:
            path = webhook_route(vendor)
            for route in self.api.add_routes(
                path=path, methods=[apigwv2.HttpMethod.POST], integration=integration
            ):
                Validations.of(route).acknowledge(
                    Acknowledgment(
                        id="AwsSolutions-APIG4",
                        reason="Vendors call webhooks without AWS credentials or tokens; the "
                        "handler verifies each vendor's HMAC signature (constant-time, with a "
                        "timestamp tolerance) before anything is enqueued.",
                    )
                )
            self.webhook_urls[vendor] = f"{self.base_url}{path}"


@jsii.implements(apigwv2.IAccessLogSettings)
class _AccessLogSettings:
    """JSON access logs with the HTTP API variables needed to trace one vendor delivery."""

    def __init__(self, log_group: logs.ILogGroup) -> None:
        self._destination = apigwv2.LogGroupLogDestination(log_group)

    @property
    def destination(self) -> apigwv2.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigw.AccessLogFormat:
        return apigw.AccessLogFormat.custom(json.dumps(_ACCESS_LOG_FIELDS))
