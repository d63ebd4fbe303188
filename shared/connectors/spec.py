"""What a vendor package declares: one ``VendorSpec``, registered by name.

Everything vendor-shaped outside the vendor's own package is derived from its spec:
the secret each connection keeps for it (and the keys that secret must hold), whether
the sync function writes that secret back (rotating refresh tokens), the vendor's
settings (``CRMSYNC_<NAME>_*``), its webhook route, and how to build its connector and
webhook receiver. The core never names a vendor.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class WebhookContext:
    """What a webhook receiver needs: its secret, read when a request comes in.

    The webhook function's cold start loads no mapping and makes no lock or budget.
    """

    secrets: SecretStore
    secret_id: str
    tolerance_s: int


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

    def __post_init__(self) -> None:
        builder = self.crm if self.kind == "crm" else self.accounting
        if builder is None:
            raise ValueError(f"vendor {self.name!r} is {self.kind} without a {self.kind} builder")

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
