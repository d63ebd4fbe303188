"""Xero, an accounting system: contacts, items and invoices.

API notes and sources: docs/vendors/xero.md.
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
from shared.models import TaxTreatment
from shared.ports import AccountingTarget, WebhookReceiver


class XeroSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CRMSYNC_XERO_", frozen=True)

    api_url: str = "https://api.xero.com"
    token_url: str = "https://identity.xero.com/connect/token"
    authorize_url: str = "https://login.xero.com/identity/connect/authorize"
    # The account a line without an item is posted to; "200" is Sales in Xero's
    # demo company and default chart of accounts.
    sales_account_code: str = "200"
    # The company's tax types for the neutral tax codes a mapping may give a line.
    taxable_tax_type: str = "OUTPUT"
    exempt_tax_type: str = "NONE"


def _accounting(ctx: ConnectorContext, settings: XeroSettings) -> AccountingTarget:
    from shared.connectors.xero.connector import build_xero

    return build_xero(
        api_url=settings.api_url,
        token_url=settings.token_url,
        secrets=ctx.secrets,
        secret_id=ctx.secret_id,
        lock=ctx.lock,
        budget=ctx.budget,
        sales_account_code=settings.sales_account_code,
        tax_types={
            TaxTreatment.TAXABLE: settings.taxable_tax_type,
            TaxTreatment.EXEMPT: settings.exempt_tax_type,
        },
        deadline=ctx.deadline,
    )


def _webhooks(ctx: WebhookContext, _: XeroSettings) -> WebhookReceiver:
    from shared.connectors.xero.connector import xero_webhooks

    return xero_webhooks(ctx.secrets, ctx.secret_id)


SPEC = VendorSpec(
    name="xero",
    label="Xero",
    kind="accounting",
    secret_keys={
        "client_id": "the app's OAuth client id",
        "client_secret": "the app's OAuth client secret",
        "refresh_token": "the organisation's refresh token (single-use: rotated on every refresh)",
        "tenant_id": "the organisation's tenant id (GET /connections)",
        "webhook_key": "the app's webhook signing key",
    },
    rotates_secret=True,
    settings=XeroSettings,
    webhooks=_webhooks,
    accounting=_accounting,
    # Demo companies live in production: Xero has no separate sandbox host.
    environments={"production": {}},
    # https://developer.xero.com/documentation/guides/oauth2/auth-flow: a "Web app"
    # (client secret, Basic at the token endpoint); offline_access brings the refresh
    # token, GET https://api.xero.com/connections the tenant ids. Xero's PKCE flow
    # (https://developer.xero.com/documentation/guides/oauth2/pkce-flow) is for
    # "Auth Code with PKCE" apps, which have no client secret to refresh with.
    # Apps created since 2 March 2026 get Xero's granular scopes instead of
    # accounting.transactions (https://developer.xero.com/documentation/guides/oauth2/scopes):
    # pass them with `crmsync connect xero --scope`.
    oauth=OAuthFlow(
        authorize_setting="authorize_url",
        token_setting="token_url",
        scopes=(
            "offline_access",
            "accounting.transactions",
            "accounting.contacts",
            "accounting.settings",
        ),
        pkce=False,
        client_auth="basic",
        fills={
            "refresh_token": SecretFrom("token", "refresh_token"),
            "tenant_id": SecretFrom("resource", "tenantId", setting="api_url", path="/connections"),
        },
        docs="https://developer.xero.com/documentation/guides/oauth2/auth-flow",
    ),
)
