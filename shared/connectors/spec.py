"""What a vendor package declares: one ``VendorSpec``, registered by name.

Everything vendor-shaped outside the vendor's own package is derived from its spec:
the secret each connection keeps for it (and the keys that secret must hold), whether
the sync function writes that secret back (rotating refresh tokens), the vendor's
settings (``CRMSYNC_<NAME>_*``), its webhook route, and how to build its connector and
webhook receiver. The core never names a vendor.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, Literal, TypeVar

from pydantic_settings import BaseSettings

from shared.models import ObjectType
from shared.ports import AccountingTarget, CallBudget, CrmSource, Lock, SecretStore, WebhookReceiver

if TYPE_CHECKING:  # the HTTP machinery (httpx) loads with the first connector built
    from shared.connectors.http import Deadline

VendorKind = Literal["crm", "accounting"]
# What a target may take beyond the canonical records; a mapping that needs one the
# connection's target lacks is refused when the connection is loaded.
INVOICE_CUSTOM_FIELDS = "invoice_custom_fields"
SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def secret_id(connection_id: str, vendor: str) -> str:
    """Where a connection keeps one vendor account's credentials in Secrets Manager."""
    return f"crmsync/{connection_id}/{vendor}"


@dataclass(frozen=True)
class ConnectorContext:
    """Everything a connector factory may need; each takes what it uses."""

    connection_id: str
    secrets: SecretStore
    secret_id: str
    lock: Lock
    budget: CallBudget
    # Vendor properties the mapping reads, per object type (fetch only what is used).
    properties: Mapping[ObjectType, Sequence[str]]
    # The current invocation's time left: no vendor call may outlast it.
    deadline: Deadline
    # The vendor's settings, when not the process environment's (the operator's CLI).
    vendor_settings: Mapping[str, str] | None = None
    # The CRM properties the way back fills, per object type: read with their record
    # where the CRM has them, for the drift check to compare (a missing one is no error).
    written_back: Mapping[ObjectType, Sequence[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class WebhookContext:
    """What a webhook receiver needs: its secret, read when a request comes in.

    The webhook function's cold start loads no mapping and makes no lock or budget.
    """

    secrets: SecretStore
    secret_id: str
    tolerance_s: int


@dataclass(frozen=True)
class SecretFrom:
    """Where the OAuth authorization flow finds one key of the connection's secret."""

    # token: a field of the token endpoint's answer; redirect: a query parameter of the
    # redirect back; resource: a field of each object a GET of ``path`` (under the
    # settings field ``setting``, with the new access token) answers as a JSON list.
    where: Literal["token", "redirect", "resource"]
    name: str  # the field or query parameter
    setting: str = ""  # resource: the settings field holding the API's base URL
    path: str = ""  # resource: the path under it
    pattern: str = ""  # a regular expression whose first group is the value, if not whole


@dataclass(frozen=True)
class OAuthFlow:
    """The vendor's OAuth 2 authorization code grant (RFC 6749 §4.1), declared.

    The URLs are settings fields, so the environments and the local sandboxes move
    them. The client's id and secret are stored as the secret's ``client_id`` and
    ``client_secret`` keys.
    """

    authorize_setting: str  # the settings field holding the authorize endpoint
    token_setting: str  # the settings field holding the token endpoint
    scopes: Sequence[str]
    pkce: bool  # the vendor documents PKCE (RFC 7636, S256) for this kind of app
    # How the token endpoint takes the client's credentials (RFC 6749 §2.3.1).
    client_auth: Literal["basic", "form"]
    fills: Mapping[str, SecretFrom]  # the secret keys the flow fills, and from where
    docs: str  # the vendor's page on this flow: where the app and its redirect URIs live


@dataclass(frozen=True)
class VendorSpec(Generic[SettingsT]):
    name: str  # the registered system name: record keys, routes, secrets, settings
    label: str  # the vendor's own spelling: messages, docs, stack outputs
    kind: VendorKind
    # The JSON keys a connection's secret for this vendor must hold, with what each is.
    secret_keys: Mapping[str, str]
    rotates_secret: bool  # the sync function writes the secret back (refresh tokens)
    settings: type[SettingsT]  # deployment-wide settings, read from CRMSYNC_<NAME>_*
    webhooks: Callable[[WebhookContext, SettingsT], WebhookReceiver]
    crm: Callable[[ConnectorContext, SettingsT], CrmSource] | None = None
    accounting: Callable[[ConnectorContext, SettingsT], AccountingTarget] | None = None
    capabilities: frozenset[str] = frozenset()
    # Per vendor environment ("production", "sandbox"), the settings field values that
    # differ from the settings' defaults; empty: production only, the defaults.
    environments: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # How an operator authorizes the app for an account (``crmsync connect``); None:
    # the vendor's credentials are copied from its own console.
    oauth: OAuthFlow | None = None
    # A CRM's: how the properties a two-way mapping writes back come to exist there,
    # told when a connection with such a mapping is added.
    written_back_fields: str = ""

    def __post_init__(self) -> None:
        builder = self.crm if self.kind == "crm" else self.accounting
        if builder is None:
            raise ValueError(f"vendor {self.name!r} is {self.kind} without a {self.kind} builder")
        fields = self.settings.model_fields
        named = {key for values in self.environments.values() for key in values}
        if self.oauth is not None:
            named |= {self.oauth.authorize_setting, self.oauth.token_setting}
            named |= {source.setting for source in self.oauth.fills.values() if source.setting}
            unknown_keys = set(self.oauth.fills) - set(self.secret_keys)
            if unknown_keys:
                raise ValueError(f"vendor {self.name!r} fills undeclared keys {unknown_keys}")
        if named - set(fields):
            raise ValueError(f"vendor {self.name!r} names unknown settings {named - set(fields)}")

    def environment_settings(self, environment: str) -> dict[str, str]:
        """The settings field values of one of the vendor's environments."""
        known = self.environments or {"production": {}}
        if environment not in known:
            raise ValueError(
                f"{self.label} has no {environment!r} environment; it has {', '.join(known)}"
            )
        return dict(known[environment])

    @property
    def env_prefix(self) -> str:
        return f"CRMSYNC_{self.name.upper()}_"

    def read_settings(self, values: Mapping[str, str] | None = None) -> SettingsT:
        """The vendor's settings: these field values, or else the process environment."""
        if values is None:
            return self.settings()
        return self.settings.model_validate(dict(values))

    def crm_source(self, ctx: ConnectorContext) -> CrmSource:
        if self.crm is None:
            raise ValueError(f"{self.label} is not a CRM")
        return self.crm(ctx, self.read_settings(ctx.vendor_settings))

    def accounting_target(self, ctx: ConnectorContext) -> AccountingTarget:
        if self.accounting is None:
            raise ValueError(f"{self.label} is not an accounting system")
        return self.accounting(ctx, self.read_settings(ctx.vendor_settings))

    def webhook_receiver(self, ctx: WebhookContext) -> WebhookReceiver:
        return self.webhooks(ctx, self.read_settings())
