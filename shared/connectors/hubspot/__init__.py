"""HubSpot, a CRM: contacts, companies, deals and their line items.

API notes and sources: docs/vendors/hubspot.md.
"""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.connectors.spec import ConnectorContext, VendorSpec, WebhookContext
from shared.models import ObjectType
from shared.ports import CrmSource, WebhookReceiver


class HubSpotSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CRMSYNC_HUBSPOT_", frozen=True)

    api_url: str = "https://api.hubapi.com"


def _crm(ctx: ConnectorContext, settings: HubSpotSettings) -> CrmSource:
    from shared.connectors.hubspot.connector import build_hubspot

    return build_hubspot(
        base_url=settings.api_url,
        secrets=ctx.secrets,
        secret_id=ctx.secret_id,
        budget=ctx.budget,
        connection_id=ctx.connection_id,
        # HubSpot leaves a requested property it does not have out of its answer.
        properties={
            t: [*ctx.properties.get(t, ()), *ctx.written_back.get(t, ())] for t in ObjectType
        },
        deadline=ctx.deadline,
    )


def _webhooks(ctx: WebhookContext, _: HubSpotSettings) -> WebhookReceiver:
    from shared.connectors.hubspot.connector import hubspot_webhooks

    return hubspot_webhooks(ctx.secrets, ctx.secret_id, ctx.tolerance_s)


SPEC = VendorSpec(
    name="hubspot",
    label="HubSpot",
    kind="crm",
    secret_keys={
        "access_token": (
            "the private app's access token; scopes crm.objects.{contacts,companies,deals,"
            "line_items}.read, and for fields written back crm.objects.{contacts,companies,"
            "deals}.write and crm.schemas.{contacts,companies,deals}.write"
        ),
        "client_secret": "the app's client secret, which signs webhooks",
    },
    rotates_secret=False,
    settings=HubSpotSettings,
    webhooks=_webhooks,
    crm=_crm,
    # Developer test accounts use the same API host.
    environments={"production": {}},
    written_back_fields=(
        "crmsync creates any that are missing, in a `crmsync` property group, at the "
        "first write-back (the private app needs the crm.schemas write scopes)"
    ),
    # No OAuth flow: the connector reads a private app's static access token
    # (https://developers.hubspot.com/docs/api/private-apps), which HubSpot shows in
    # the private app's settings; an OAuth app's access tokens last 30 minutes and the
    # connector does not refresh them.
)
