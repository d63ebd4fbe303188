"""Which connector serves which vendor name. A new vendor adds one line here."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from shared.connectors.http import Deadline
from shared.models import ObjectType
from shared.ports import (
    AccountingTarget,
    CallBudget,
    CrmSource,
    Lock,
    SecretStore,
    WebhookReceiver,
)
from shared.settings import Settings


@dataclass(frozen=True)
class ConnectorContext:
    """Everything a connector factory may need; each takes what it uses."""

    settings: Settings
    secrets: SecretStore
    lock: Lock
    budget: CallBudget
    # Vendor properties the mapping reads, per object type (fetch only what is used).
    properties: Mapping[ObjectType, Sequence[str]]
    # The current invocation's time left: no vendor call may outlast it.
    deadline: Deadline


@dataclass(frozen=True)
class CrmConnector:
    source: Callable[[ConnectorContext], CrmSource]
    # Webhooks need only the settings and the signing secret: the webhook Lambda's cold
    # start loads no mapping and creates no lock or call budget.
    webhooks: Callable[[Settings, SecretStore], WebhookReceiver]


@dataclass(frozen=True)
class AccountingConnector:
    target: Callable[[ConnectorContext], AccountingTarget]
    webhooks: Callable[[Settings, SecretStore], WebhookReceiver]


def _hubspot() -> CrmConnector:
    from shared.connectors.crm import hubspot

    return CrmConnector(
        source=lambda ctx: hubspot.build_hubspot(
            base_url=ctx.settings.hubspot_api_url,
            secrets=ctx.secrets,
            secret_id=ctx.settings.hubspot_secret_id,
            budget=ctx.budget,
            connection_id=ctx.settings.connection_id,
            properties=ctx.properties,
            deadline=ctx.deadline,
        ),
        webhooks=lambda settings, secrets: hubspot.hubspot_webhooks(
            secrets, settings.hubspot_secret_id, settings.webhook_tolerance_s
        ),
    )


def _quickbooks() -> AccountingConnector:
    from shared.connectors.accounting import quickbooks

    return AccountingConnector(
        target=lambda ctx: quickbooks.build_quickbooks(
            api_url=ctx.settings.quickbooks_api_url,
            token_url=ctx.settings.quickbooks_token_url,
            secrets=ctx.secrets,
            secret_id=ctx.settings.quickbooks_secret_id,
            lock=ctx.lock,
            budget=ctx.budget,
            deadline=ctx.deadline,
        ),
        webhooks=lambda settings, secrets: quickbooks.quickbooks_webhooks(
            secrets, settings.quickbooks_secret_id
        ),
    )


CRM: dict[str, Callable[[], CrmConnector]] = {"hubspot": _hubspot}
ACCOUNTING: dict[str, Callable[[], AccountingConnector]] = {"quickbooks": _quickbooks}


def crm_connector(name: str) -> CrmConnector:
    if name not in CRM:
        raise KeyError(f"unknown CRM connector {name!r}; known: {', '.join(sorted(CRM))}")
    return CRM[name]()


def accounting_connector(name: str) -> AccountingConnector:
    if name not in ACCOUNTING:
        known = ", ".join(sorted(ACCOUNTING))
        raise KeyError(f"unknown accounting connector {name!r}; known: {known}")
    return ACCOUNTING[name]()
