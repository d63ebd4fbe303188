"""Salesforce, a CRM: contacts, accounts, opportunities and their products.

API notes and sources: docs/vendors/salesforce.md.
"""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.connectors.spec import (
    ConnectorContext,
    OAuthFlow,
    SecretFrom,
    VendorSpec,
    WebhookContext,
)
from shared.ports import CrmSource, WebhookReceiver


class SalesforceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CRMSYNC_SALESFORCE_", frozen=True)

    # test.salesforce.com for sandbox orgs, or the org's My Domain login URL.
    token_url: str = "https://login.salesforce.com/services/oauth2/token"
    authorize_url: str = "https://login.salesforce.com/services/oauth2/authorize"
    api_version: str = "62.0"


def _crm(ctx: ConnectorContext, settings: SalesforceSettings) -> CrmSource:
    from shared.connectors.salesforce.connector import build_salesforce

    return build_salesforce(
        token_url=settings.token_url,
        api_version=settings.api_version,
        secrets=ctx.secrets,
        secret_id=ctx.secret_id,
        lock=ctx.lock,
        budget=ctx.budget,
        connection_id=ctx.connection_id,
        properties=ctx.properties,
        written_back=ctx.written_back,
        deadline=ctx.deadline,
    )


def _webhooks(ctx: WebhookContext, _: SalesforceSettings) -> WebhookReceiver:
    from shared.connectors.salesforce.connector import salesforce_webhooks

    return salesforce_webhooks(ctx.secrets, ctx.secret_id)


SPEC = VendorSpec(
    name="salesforce",
    label="Salesforce",
    kind="crm",
    secret_keys={
        "client_id": "the connected app's consumer key",
        "client_secret": "the connected app's consumer secret",
        "refresh_token": "the integration user's refresh token",
        "organization_id": "the org's id (15 or 18 characters), checked on outbound messages",
        "outbound_token": "the secret in the outbound message endpoint URL (?token=...)",
    },
    # The sync function writes the secret back: the access token and the instance URL
    # it is shared with, and a new refresh token when the app rotates them.
    rotates_secret=True,
    settings=SalesforceSettings,
    webhooks=_webhooks,
    crm=_crm,
    # Sandbox orgs log in at test.salesforce.com
    # (https://help.salesforce.com/s/articleView?id=xcloud.remoteaccess_oauth_endpoints.htm).
    environments={
        "production": {},
        "sandbox": {
            "token_url": "https://test.salesforce.com/services/oauth2/token",
            "authorize_url": "https://test.salesforce.com/services/oauth2/authorize",
        },
    },
    # The web server flow with PKCE (https://help.salesforce.com/HTViewHelpDoc?id=remoteaccess_oauth_web_server_flow.htm):
    # the client in the form body; the token answer carries the refresh token (scope
    # refresh_token), the instance URL and the identity URL
    # https://login.salesforce.com/id/<org id>/<user id>.
    oauth=OAuthFlow(
        authorize_setting="authorize_url",
        token_setting="token_url",
        scopes=("api", "refresh_token"),
        pkce=True,
        client_auth="form",
        fills={
            "refresh_token": SecretFrom("token", "refresh_token"),
            "organization_id": SecretFrom("token", "id", pattern=r"/id/([^/]+)/"),
        },
        docs="https://help.salesforce.com/HTViewHelpDoc?id=remoteaccess_oauth_web_server_flow.htm",
    ),
    # Salesforce's REST API cannot make a field (https://help.salesforce.com/s/articleView?id=platform.adding_fields.htm).
    written_back_fields=(
        "an admin makes them in Setup before the first write-back, as "
        'README.md, "Salesforce: custom fields for two-way" says; crmsync names any missing'
    ),
)
