"""A vendor sandbox as the connector tests use it: served on a free port, with one
connection's secret for it and an admin client for its ``/_sandbox/`` routes.

The secret is what the sandbox's registration gives (``SandboxSpec.secret``), as the
local stack stores it; each vendor's ``Env`` adds how it builds its connector.
"""

from __future__ import annotations

from typing import Any, ClassVar

import httpx

from local.memory import MemoryCallBudget, MemoryLock, MemorySecretStore
from local.sandboxes.base import SandboxServer
from local.sandboxes.quickbooks import QuickBooksSandbox, QuickBooksSandboxConfig
from local.sandboxes.registry import sandbox
from local.sandboxes.xero import XeroSandbox, XeroSandboxConfig
from shared.connectors.quickbooks.connector import QuickBooksAccounting, build_quickbooks
from shared.connectors.xero.connector import XeroAccounting, build_xero
from shared.ports import CallBudget

XERO_SECRET_ID = "crmsync/sandbox/xero"
XERO_TOKEN_PATH = "/connect/token"
QUICKBOOKS_SECRET_ID = "crmsync/sandbox/quickbooks"
QUICKBOOKS_TOKEN_PATH = "/oauth2/v1/tokens/bearer"


class Unmetered:
    """A call budget that never waits: pacing calls would only slow the tests down.
    The sandbox still applies the vendor's own limits."""

    def acquire(self, key: str, *, limit: int, per_s: float, max_wait_s: float) -> float:
        return 0.0


class SandboxEnv:
    vendor: ClassVar[str]
    secret_id: ClassVar[str]

    def __init__(self, running: Any) -> None:
        self.sandbox = running
        self.server = SandboxServer(running.app, 0).start()
        self.secrets = MemorySecretStore({self.secret_id: self.initial_secret()})
        self.admin = httpx.Client(base_url=self.server.url, timeout=10)

    def initial_secret(self) -> dict[str, str]:
        return sandbox(self.vendor).secret(self.sandbox)

    def close(self) -> None:
        self.admin.close()
        self.sandbox.close()
        self.server.stop()

    def fault(self, **fault: Any) -> None:
        self.admin.post("/_sandbox/faults", json=fault).raise_for_status()

    def secret(self) -> dict[str, str]:
        return self.secrets.read(self.secret_id)

    def patch_secret(self, **values: str) -> None:
        self.secrets.write(self.secret_id, {**self.secret(), **values})


class XeroEnv(SandboxEnv):
    vendor = "xero"
    secret_id = XERO_SECRET_ID

    def __init__(self, **config: Any) -> None:
        self.config = XeroSandboxConfig(**config)
        super().__init__(XeroSandbox(self.config))

    def connector(self, budget: CallBudget | None = None) -> XeroAccounting:
        return build_xero(
            api_url=self.server.url,
            token_url=self.server.url + XERO_TOKEN_PATH,
            secrets=self.secrets,
            secret_id=self.secret_id,
            lock=MemoryLock(),
            budget=budget or Unmetered(),
        )

    def pending_faults(self) -> list[dict[str, Any]]:
        return list(self.sandbox.faults.pending())

    def row(self, kind: str, target_id: str) -> dict[str, Any]:
        key = {"Contacts": "ContactID", "Invoices": "InvoiceID", "Items": "ItemID"}[kind]
        return next(row for row in self.sandbox.entities(kind) if row[key] == target_id)

    def add_currency(self, code: str) -> None:
        """Multi-currency as a person turns it on in Xero's settings."""
        if code not in {row["Code"] for row in self.sandbox.entities("Currencies")}:
            self.sandbox.ui_create("Currencies", {"Code": code})


class QuickBooksEnv(SandboxEnv):
    """The company forgets a superseded refresh token at once (grace 0)."""

    vendor = "quickbooks"
    secret_id = QUICKBOOKS_SECRET_ID

    def __init__(self, **config: Any) -> None:
        self.config = QuickBooksSandboxConfig(superseded_refresh_grace_s=0.0, **config)
        super().__init__(QuickBooksSandbox(self.config))

    def connector(
        self, budget: CallBudget | None = None, transport: httpx.BaseTransport | None = None
    ) -> QuickBooksAccounting:
        return build_quickbooks(
            api_url=self.server.url,
            token_url=self.server.url + QUICKBOOKS_TOKEN_PATH,
            secrets=self.secrets,
            secret_id=self.secret_id,
            lock=MemoryLock(),
            budget=budget or MemoryCallBudget(),
            transport=transport,
        )
