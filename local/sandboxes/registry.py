"""The registered vendor sandboxes: name → the module that declares its ``SANDBOX``.

The local stack starts one sandbox per vendor its connections use, fills each
connection's secret from the sandbox's account and points the vendor's settings at
it. A new vendor adds one line here, beside its line in ``shared.connectors.registry``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any, Protocol

SANDBOXES: dict[str, str] = {
    "hubspot": "local.sandboxes.hubspot",
    "quickbooks": "local.sandboxes.quickbooks",
    "salesforce": "local.sandboxes.salesforce",
    "xero": "local.sandboxes.xero",
}


@dataclass(frozen=True)
class DemoLine:
    """A line a person types into a CRM deal; ``discount`` is money off the whole line."""

    name: str
    quantity: str
    unit_price: str
    discount: str = "0"


class CrmPerson(Protocol):
    """A person at the CRM, through its public API: what the demo does there."""

    def create_company(self, name: str, city: str) -> str: ...

    def create_contact(
        self, first: str, last: str, email: str | None, company: str | None = None
    ) -> str: ...

    def create_deal(
        self,
        name: str,
        *,
        won: bool,
        company: str | None,
        contact: str | None,
        lines: list[DemoLine],
    ) -> str: ...

    def add_line(self, deal: str, line: DemoLine) -> None: ...

    def rename_deal(self, deal: str, name: str) -> None: ...

    def invoice_number(self, deal: str) -> str:
        """The invoice number the CRM's services preset gives the deal's invoice."""
        ...


@dataclass(frozen=True)
class BookCustomer:
    id: str
    name: str
    email: str
    version: str


@dataclass(frozen=True)
class BookInvoice:
    id: str
    customer: str  # the customer's name
    lines: list[tuple[str, str]]  # (item or description, quantity)
    total: str
    currency: str
    due: str
    version: str
    number: str  # the invoice number


class Books(Protocol):
    """The accounting system as a person sees it: what it holds, what they add, and
    (for tests) how its next invoice writes go wrong."""

    def customers(self) -> list[BookCustomer]: ...

    def invoices(self) -> list[BookInvoice]: ...

    def add_customer(self, name: str, email: str) -> str:
        """A customer typed in by a person, through the vendor's public API."""
        ...

    def fail_next_invoice_writes(self, kinds: list[str]) -> None:
        """The next invoice writes meet these faults, in order (``local.sandboxes.base``
        fault kinds: ``rate_limit``, ``drop_response``, ``error``, ``timeout``)."""
        ...


class Sandbox(Protocol):
    """A running fake vendor account: its WSGI app, served by ``SandboxServer``."""

    def app(self, environ: Any, start_response: Any) -> Any: ...

    def close(self) -> None: ...

    def wait_for_webhooks_idle(self, timeout: float = 10.0) -> bool:
        """Block until every queued webhook is delivered or given up; False on timeout."""
        ...


@dataclass(frozen=True)
class SandboxSpec:
    name: str  # the vendor's registered name
    # A new account that posts its webhooks to the URL (None: nowhere).
    start: Callable[[str | None], Any]
    # The secret a connection keeps for that account: the vendor's ``secret_keys``.
    secret: Callable[[Any], dict[str, str]]
    # The vendor's settings (field → value) that point it at the sandbox's base URL.
    settings: Callable[[str], dict[str, str]]
    # The demo's person at a CRM (the running sandbox, its base URL) ...
    person: Callable[[Any, str], CrmPerson] | None = None
    # ... and at an accounting system (the running sandbox, its base URL).
    books: Callable[[Any, str], Books] | None = None


class UnknownSandbox(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


@cache
def sandbox(name: str) -> SandboxSpec:
    module = SANDBOXES.get(name)
    if module is None:
        known = ", ".join(sorted(SANDBOXES))
        raise UnknownSandbox(f"no local sandbox for vendor {name!r}; sandboxes: {known}")
    spec = importlib.import_module(module).SANDBOX
    if not isinstance(spec, SandboxSpec) or spec.name != name:
        raise TypeError(f"{module}.SANDBOX must be the SandboxSpec named {name!r}")
    return spec
