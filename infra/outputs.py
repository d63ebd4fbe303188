"""The stack's outputs, named once: the CDK stack publishes them, the local stack
registers the same ones in moto's CloudFormation, and ``crmsync`` finds a deployment
by its stack name through them. Plain data: importing this module does not import CDK.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, Json

WEBHOOK_URL_SUFFIX = "WebhookUrl"


class StackOutputs(BaseModel):
    """What an operator's command needs to know of a deployment, by output key."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    connections_table: str = Field(alias="ConnectionsTableName")
    audit_table: str = Field(alias="AuditTableName")
    links_table: str = Field(alias="LinksTableName")
    cursors_table: str = Field(alias="CursorsTableName")
    events_queue_url: str = Field(alias="EventsQueueUrl")
    dead_letter_queue_url: str = Field(alias="EventsDeadLetterQueueUrl")
    dead_letter_queue_arn: str = Field(alias="EventsDeadLetterQueueArn")
    alarm_topic_arn: str | None = Field(default=None, alias="AlarmTopicArn")
    # What the functions run with besides resource names (the deploy context's tuned
    # settings, each vendor's environment), so commands that run the core locally
    # pace, keep and call exactly as they do. JSON in the output.
    function_settings: Json[dict[str, str]] = Field(default_factory=dict, alias="FunctionSettings")
    vendor_settings: Json[dict[str, dict[str, str]]] = Field(
        default_factory=dict, alias="VendorSettings"
    )
    # The deployed stack's CloudWatch views; the local stack has none.
    dashboard_url: str | None = Field(default=None, alias="DashboardUrl")
    webhook_log_group: str | None = Field(default=None, alias="WebhookLogGroupName")
    sync_log_group: str | None = Field(default=None, alias="SyncLogGroupName")
    reconcile_log_group: str | None = Field(default=None, alias="ReconcileLogGroupName")
    # One per vendor that sends webhooks, keyed by vendor name: "{Vendor}WebhookUrl".
    webhook_urls: dict[str, str] = Field(default_factory=dict, exclude=True)

    @classmethod
    def from_outputs(cls, outputs: Mapping[str, str]) -> StackOutputs:
        webhooks = {
            key.removesuffix(WEBHOOK_URL_SUFFIX).lower(): value
            for key, value in outputs.items()
            if key.endswith(WEBHOOK_URL_SUFFIX)
        }
        return cls.model_validate({**outputs, "webhook_urls": webhooks})

    def as_outputs(self) -> dict[str, str]:
        """``{output key: value}``, the webhook URLs included; unset outputs left out."""
        fixed = self.model_dump(by_alias=True, exclude_none=True, round_trip=True)
        webhooks = {
            f"{vendor.title()}{WEBHOOK_URL_SUFFIX}": url
            for vendor, url in self.webhook_urls.items()
        }
        return {**fixed, **webhooks}
