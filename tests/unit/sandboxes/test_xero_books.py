"""The Xero sandbox's registration for the local stack: its secret and settings reach the
production connector, and its books role reads and writes as a person would."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from local.memory import MemoryLock, MemorySecretStore
from local.sandboxes.base import SandboxServer
from local.sandboxes.registry import sandbox
from local.sandboxes.xero import SANDBOX, XeroBooks, XeroSandbox
from shared.connectors.http import Deadline
from shared.connectors.spec import ConnectorContext
from shared.connectors.xero import SPEC
from shared.models import Invoice, InvoiceLine
from shared.ports import AccountingTarget

SECRET_ID = "crmsync/books/xero"


class Unmetered:
    def acquire(self, key: str, *, limit: int, per_s: float, max_wait_s: float) -> float:
        return 0.0


class Running:
    def __init__(self) -> None:
        self.sandbox: XeroSandbox = SANDBOX.start(None)
        self.server = SandboxServer(self.sandbox.app, 0).start()
        self.books = XeroBooks(self.sandbox, self.server.url)

    def close(self) -> None:
        self.sandbox.close()
        self.server.stop()


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    started = Running()
    yield started
    started.close()


@pytest.fixture
def env(running: Running) -> Running:
    running.sandbox.faults.clear()
    running.sandbox.reset()
    return running


@pytest.fixture
def connector(env: Running, monkeypatch: pytest.MonkeyPatch) -> AccountingTarget:
    """The connector as the local stack builds it: settings from the environment the
    sandbox's ``settings`` fill, the secret from its ``secret``."""
    for field, value in SANDBOX.settings(env.server.url).items():
        monkeypatch.setenv(f"{SPEC.env_prefix}{field.upper()}", value)
    context = ConnectorContext(
        connection_id="books",
        secrets=MemorySecretStore({SECRET_ID: SANDBOX.secret(env.sandbox)}),
        secret_id=SECRET_ID,
        lock=MemoryLock(),
        budget=Unmetered(),
        properties={},
        deadline=Deadline(),
    )
    return SPEC.accounting_target(context)


def test_the_registry_finds_the_xero_sandbox() -> None:
    assert sandbox("xero") is SANDBOX
    assert SANDBOX.books is XeroBooks


def test_the_secret_holds_exactly_the_connectors_keys(env: Running) -> None:
    assert set(SANDBOX.secret(env.sandbox)) == set(SPEC.secret_keys)


def test_the_settings_are_fields_of_the_connectors_settings() -> None:
    settings = SANDBOX.settings("http://127.0.0.1:1")
    assert set(settings) <= set(SPEC.settings.model_fields)
    assert settings["api_url"] == "http://127.0.0.1:1"


def test_the_connector_authenticates_with_the_sandboxs_secret_and_settings(
    env: Running, connector: AccountingTarget
) -> None:
    found = connector.find_customer(email="info@abcfurniture.example", display_name="x")

    assert found is not None
    assert found.id in {c.id for c in env.books.customers()}


def test_a_customer_added_by_a_person_is_in_the_books(
    env: Running, connector: AccountingTarget
) -> None:
    added = env.books.add_customer("Linus Torvalds", "linus@example.test")

    assert [(c.name, c.email) for c in env.books.customers() if c.id == added] == [
        ("Linus Torvalds", "linus@example.test")
    ]
    # The person's own app took no connection from crmsync's.
    found = connector.find_customer(email="linus@example.test", display_name="Linus Torvalds")
    assert found is not None and found.id == added


def _invoice(customer: str, number: str) -> Invoice:
    return Invoice(
        customer_ref=customer,
        currency="USD",
        doc_number=number,
        lines=[
            InvoiceLine(name="Design", item_ref="DESIGN", quantity=Decimal(2), unit_price=75),
            InvoiceLine(name="Setup fee", quantity=Decimal("1.5"), unit_price=Decimal(10)),
        ],
    )


def test_an_invoice_reads_back_with_its_net_total_lines_and_number(
    env: Running, connector: AccountingTarget
) -> None:
    customer = env.books.add_customer("Ada Lovelace", "ada@example.test")
    ref = connector.upsert_invoice(_invoice(customer, "INV-7"), existing=None, idempotency_key="k1")

    (invoice,) = [i for i in env.books.invoices() if i.id == ref.id]
    assert invoice.number == "INV-7"
    assert invoice.customer == "Ada Lovelace"
    assert invoice.lines == [("Design", "2"), ("Setup fee", "1.5")]
    assert Decimal(invoice.total) == Decimal("165")  # before the 10 % sales tax
    assert invoice.currency == "USD"
    assert invoice.due and invoice.version


def test_the_next_invoice_create_meets_the_faults_and_reads_do_not(
    env: Running, connector: AccountingTarget
) -> None:
    customer = env.books.add_customer("Grace Hopper", "grace@example.test")
    env.books.fail_next_invoice_writes(["rate_limit", "drop_response"])

    assert connector.find_invoice("INV-8") is None  # a read leaves the faults queued
    pending: list[dict[str, Any]] = env.sandbox.faults.pending()
    assert [(f["kind"], f["method"]) for f in pending] == [
        ("rate_limit", "PUT"),
        ("drop_response", "PUT"),
    ]

    ref = connector.upsert_invoice(_invoice(customer, "INV-8"), existing=None, idempotency_key="k2")

    assert env.sandbox.faults.pending() == []
    assert [i.id for i in env.books.invoices() if i.number == "INV-8"] == [ref.id]
