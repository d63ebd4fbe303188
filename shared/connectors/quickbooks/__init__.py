"""QuickBooks Online, an accounting system: customers, items and invoices.

API notes and sources: docs/vendors/quickbooks.md.
"""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.connectors.spec import (
    INVOICE_CUSTOM_FIELDS,
    ConnectorContext,
    OAuthFlow,
    SecretFrom,
    VendorSpec,
    WebhookContext,
)
from shared.ports import AccountingTarget, WebhookReceiver


class QuickBooksSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CRMSYNC_QUICKBOOKS_", frozen=True)

    api_url: str = "https://quickbooks.api.intuit.com"
    token_url: str = "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer"
    authorize_url: str = "https://appcenter.intuit.com/connect/oauth2"


def _accounting(ctx: ConnectorContext, settings: QuickBooksSettings) -> AccountingTarget:
    from shared.connectors.quickbooks.connector import build_quickbooks

    return build_quickbooks(
        api_url=settings.api_url,
        token_url=settings.token_url,
        secrets=ctx.secrets,
        secret_id=ctx.secret_id,
        lock=ctx.lock,
        budget=ctx.budget,
        deadline=ctx.deadline,
    )


def _webhooks(ctx: WebhookContext, _: QuickBooksSettings) -> WebhookReceiver:
    from shared.connectors.quickbooks.connector import quickbooks_webhooks

    return quickbooks_webhooks(ctx.secrets, ctx.secret_id)


SPEC = VendorSpec(
    name="quickbooks",
    label="QuickBooks Online",
    kind="accounting",
    secret_keys={
        "client_id": "the app's OAuth client id",
        "client_secret": "the app's OAuth client secret",
        "refresh_token": "the company's refresh token (rotated on every refresh)",
        "realm_id": "the company's realm id",
        "verifier_token": "the app's webhook verifier token",
    },
    rotates_secret=True,
    settings=QuickBooksSettings,
    webhooks=_webhooks,
    accounting=_accounting,
    # Invoice.CustomField by the company's sales-form custom field names [Q15, Q16].
    capabilities=frozenset({INVOICE_CUSTOM_FIELDS}),
    # Sandbox companies answer on their own API host; OAuth is the same for both
    # (https://developer.intuit.com/app/developer/qbo/docs/develop/sandboxes/manage-your-sandboxes).
    environments={
        "production": {},
        "sandbox": {"api_url": "https://sandbox-quickbooks.api.intuit.com"},
    },
    # https://developer.intuit.com/app/developer/qbo/docs/develop/authentication-and-authorization/oauth-2.0
    # The redirect back carries code, state and realmId (the company); the token
    # endpoint takes the client by HTTP Basic. Intuit documents no PKCE for it.
    oauth=OAuthFlow(
        authorize_setting="authorize_url",
        token_setting="token_url",
        scopes=("com.intuit.quickbooks.accounting",),
        pkce=False,
        client_auth="basic",
        fills={
            "refresh_token": SecretFrom("token", "refresh_token"),
            "realm_id": SecretFrom("redirect", "realmId"),
        },
        docs="https://developer.intuit.com/app/developer/qbo/docs/develop/authentication-and-authorization/oauth-2.0",
    ),
)
