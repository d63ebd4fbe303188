"""What a vendor kit gives the contract suites.

A kit runs one vendor's sandbox on a free port, builds the production connector
against it as the service would (secrets in a ``MemorySecretStore``, a
``MemoryCallBudget``, a ``MemoryLock``), and acts on the vendor as a person would
(the sandbox's UI or admin helpers) to set up records and to read back what the
vendor holds. The suites speak only to these classes, so a vendor passes them by
providing a kit and registering it in ``tests/contracts/kits/__init__.py``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

from local.memory import MemoryCallBudget, MemoryLock, MemorySecretStore
from local.sandboxes.registry import sandbox
from shared.connectors.http import Deadline
from shared.connectors.registry import vendor
from shared.connectors.spec import ConnectorContext, WebhookContext, secret_id
from shared.models import ObjectType
from shared.ports import (
    AccountingTarget,
    CrmProperty,
    CrmSource,
    InboundWebhook,
    WebhookReceiver,
)

CONFIG_DIR = Path(__file__).resolve().parents[3] / "config"
CONNECTION_ID = "contracts"
WEBHOOK_TOLERANCE_S = 300


class SandboxConnection:
    """The connection of the suites to one vendor's running sandbox, as the service
    builds it: the secret the sandbox's registration gives (``SandboxSpec.secret``), the
    vendor's settings pointed at the sandbox (``SandboxSpec.settings``), and the
    connector and webhook receiver from the vendor's registered ``VendorSpec``."""

    def __init__(
        self,
        name: str,
        running: Any,
        url: str,
        *,
        properties: Mapping[ObjectType, Sequence[str]] | None = None,
    ) -> None:
        self.spec = vendor(name)
        self.secret_id = secret_id(CONNECTION_ID, name)
        self.secrets = MemorySecretStore({self.secret_id: sandbox(name).secret(running)})
        self.settings = self.spec.read_settings(sandbox(name).settings(url))
        self.context = ConnectorContext(
            connection_id=CONNECTION_ID,
            secrets=self.secrets,
            secret_id=self.secret_id,
            lock=MemoryLock(),
            budget=MemoryCallBudget(),
            properties=properties or {},
            deadline=Deadline(),
        )

    def crm_source(self) -> CrmSource:
        assert self.spec.crm is not None, f"{self.spec.label} is not a CRM"
        return self.spec.crm(self.context, self.settings)

    def accounting_target(self) -> AccountingTarget:
        assert self.spec.accounting is not None, f"{self.spec.label} keeps no books"
        return self.spec.accounting(self.context, self.settings)

    def webhook_receiver(self) -> WebhookReceiver:
        context = WebhookContext(self.secrets, self.secret_id, tolerance_s=WEBHOOK_TOLERANCE_S)
        return self.spec.webhooks(context, self.settings)


class VendorKit(ABC):
    """Every vendor: its sandbox, and the webhooks it signs and sends."""

    name: ClassVar[str]
    # Every header that carries a signature: without all of them a delivery is unsigned.
    signature_headers: ClassVar[tuple[str, ...]]
    # Whether the signature covers the body (Salesforce's outbound messages carry no
    # signature: a secret in the endpoint URL and the organization id vouch for them).
    signs_body: ClassVar[bool] = True
    webhooks: WebhookReceiver

    @abstractmethod
    def close(self) -> None:
        """Stop the sandbox and its threads."""

    @abstractmethod
    def reset(self) -> None:
        """Back to a new account: the vendor's seed data only, no faults, no webhooks queued."""

    @abstractmethod
    def send_webhooks_to(self, url: str | None) -> None:
        """Where the vendor posts its webhooks from now on (None: nowhere)."""

    @abstractmethod
    def make_change(self) -> tuple[ObjectType, str]:
        """Change one record in the vendor as a person would; returns which record."""

    @abstractmethod
    def wait_for_webhooks(self) -> None:
        """Block until every webhook the vendor queued so far has been delivered."""

    def unsigned(self, delivery: InboundWebhook) -> InboundWebhook:
        """``delivery`` without what proves it is the vendor's (its signature headers)."""
        headers = {k: v for k, v in delivery.headers.items() if k not in self.signature_headers}
        return delivery.model_copy(update={"headers": headers})

    @abstractmethod
    def sign(self, url: str, body: str) -> dict[str, str]:
        """The signature headers the vendor would send with ``body`` posted to ``url``."""


@dataclass(frozen=True)
class Line:
    """A deal's line item as a person types it into the CRM."""

    name: str
    quantity: str
    unit_price: str


@dataclass(frozen=True)
class WonDeal:
    deal_id: str
    line_ids: list[str]


class CrmKit(VendorKit):
    """A CRM vendor for the ``CrmSource`` contract."""

    preset: ClassVar[Path]  # the vendor's mapping file in config/
    # Records one ``changed_since`` page holds with the connector as this kit built it.
    page_size: ClassVar[int]
    crm: CrmSource

    @abstractmethod
    def create_contact(self, *, given_name: str, family_name: str, email: str) -> str: ...

    @abstractmethod
    def create_company(self, *, name: str) -> str: ...

    @abstractmethod
    def create_won_deal(
        self, *, name: str, contact_id: str, company_id: str, lines: list[Line]
    ) -> WonDeal:
        """A deal in the stage the preset maps to won, with ``lines`` in this order."""

    @abstractmethod
    def delete(self, object_type: ObjectType, record_id: str) -> None: ...

    @abstractmethod
    def modified_ms(self, object_type: ObjectType) -> dict[str, int]:
        """Each live record's last-modified time as the vendor shows it, in epoch ms, by id."""

    @abstractmethod
    def unknown_id(self, object_type: ObjectType) -> str:
        """An id of the vendor's format that names no record."""

    @abstractmethod
    def rate_limit_fetches(self, count: int) -> None:
        """The vendor answers its next ``count`` record reads with its 429."""

    @abstractmethod
    def pending_faults(self) -> int:
        """Injected faults not yet served."""


class CrmWriterKit(CrmKit):
    """A CRM whose connector also writes fields back, for the ``CrmWriter`` contract."""

    # Whether the connector makes the fields it lacks. Where it cannot (an admin makes
    # them), ``ensure_properties`` names those missing and ``make_fields`` is the admin.
    makes_fields: ClassVar[bool] = True

    def make_fields(self, object_type: ObjectType, properties: Sequence[CrmProperty]) -> None:
        """An admin makes these fields, for a CRM whose connector cannot."""
        raise NotImplementedError(f"{self.name}'s connector makes its own fields")

    @abstractmethod
    def writer(self, reads: Mapping[ObjectType, Sequence[str]]) -> CrmSource:
        """The connector as the service builds it, ``fetch`` reading these properties."""

    @abstractmethod
    def field_name(self, name: str) -> str:
        """A custom field's API name as this CRM spells one; ``name`` is lower snake case."""

    @abstractmethod
    def lose_next_field_create_answer(self) -> None:
        """The vendor makes the next custom field, but its answer never reaches the caller."""


@dataclass(frozen=True)
class StoredLine:
    item_ref: str
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal


@dataclass(frozen=True)
class StoredInvoice:
    """An invoice as the vendor holds it: its sales lines in order and its total."""

    doc_number: str | None
    lines: list[StoredLine]
    total: Decimal


class AccountingKit(VendorKit):
    """An accounting vendor for the ``AccountingTarget`` contract."""

    currency: ClassVar[str]  # the company's home currency: invoices are written in it
    currency_decimals: ClassVar[int]  # its ISO 4217 minor unit
    seeded_item: ClassVar[str]  # the name of an item every new company has
    income_account: ClassVar[str]  # an income account new items can post to, as named
    missing_reference_code: ClassVar[str]  # the vendor's code refusing an unknown customer
    target: AccountingTarget

    @abstractmethod
    def customer(self, target_id: str) -> dict[str, str | None]:
        """The customer as the vendor holds it, keyed by ``Party`` field names."""

    @abstractmethod
    def invoice(self, target_id: str) -> StoredInvoice: ...

    @abstractmethod
    def ids(self, object_type: ObjectType) -> set[str]:
        """The ids of every record of this type the vendor holds."""

    @abstractmethod
    def item_id(self, name: str) -> str:
        """The id of an item, read from the vendor's own listing."""

    @abstractmethod
    def unknown_id(self, object_type: ObjectType) -> str: ...

    @abstractmethod
    def lose_next_write_answer(self) -> None:
        """The vendor applies the next write but its answer never reaches the caller."""
