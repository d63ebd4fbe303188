"""The Salesforce sandbox as the local stack runs it: its registration, its secret, the
demo's person, and the connector and preset reading what that person made."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask, Response

from local.memory import MemoryCallBudget, MemoryLock, MemorySecretStore
from local.sandboxes.base import SandboxServer, received_webhook
from local.sandboxes.registry import DemoLine, sandbox
from local.sandboxes.salesforce import (
    OUTBOUND_FIELDS,
    SANDBOX,
    SalesforcePerson,
    SalesforceSandbox,
)
from shared.bootstrap import CRM_OBJECTS
from shared.connectors.http import Deadline
from shared.connectors.salesforce import SPEC, SalesforceSettings
from shared.connectors.salesforce.connector import ACK_ENVELOPE, DISCOUNT_AMOUNT
from shared.connectors.spec import ConnectorContext, WebhookContext, secret_id
from shared.mapping import Filtered, Mapper, load_mapping
from shared.models import Deal, DealStatus, ObjectType
from shared.ports import CrmSource, InboundWebhook

PRESET = load_mapping(Path(__file__).resolve().parents[3] / "config/salesforce/services.yaml")
CONNECTION = "demo"
SECRET_ID = secret_id(CONNECTION, "salesforce")
ROUTE = f"/webhooks/salesforce/{CONNECTION}"
LINES = [DemoLine("Services", "10", "150"), DemoLine("Hours", "2.5", "80", discount="20")]


@dataclass
class Listener:
    """The stack's webhook route: records each outbound message and acknowledges it."""

    server: SandboxServer
    received: list[InboundWebhook] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"{self.server.url}{ROUTE}"


@dataclass
class Stack:
    sandbox: SalesforceSandbox
    server: SandboxServer
    listener: Listener
    person: SalesforcePerson
    secrets: MemorySecretStore
    mapper: Mapper

    def crm(self) -> CrmSource:
        settings = SalesforceSettings.model_validate(SANDBOX.settings(self.server.url))
        ctx = ConnectorContext(
            connection_id=CONNECTION,
            secrets=self.secrets,
            secret_id=SECRET_ID,
            lock=MemoryLock(),
            budget=MemoryCallBudget(),
            properties={t: self.mapper.source_properties(t) for t in CRM_OBJECTS},
            deadline=Deadline(),
        )
        assert SPEC.crm is not None
        return SPEC.crm(ctx, settings)


def _listener() -> Listener:
    app = Flask(__name__)
    listener: Listener

    @app.post(ROUTE)
    def receive() -> Response:
        with listener.lock:
            listener.received.append(received_webhook())
        return Response(ACK_ENVELOPE, content_type="text/xml; charset=utf-8")

    listener = Listener(SandboxServer(app, 0).start())
    return listener


@pytest.fixture
def stack() -> Iterator[Stack]:
    listener = _listener()
    running = SANDBOX.start(listener.url)
    server = SandboxServer(running.app, 0).start()
    secrets = MemorySecretStore({SECRET_ID: SANDBOX.secret(running)})
    person = SANDBOX.person(running, server.url)  # type: ignore[misc]
    assert isinstance(person, SalesforcePerson)
    yield Stack(running, server, listener, person, secrets, Mapper(PRESET))
    running.close()
    server.stop()
    listener.server.stop()


def test_the_registry_names_this_sandbox() -> None:
    assert sandbox("salesforce") is SANDBOX


def test_the_secret_holds_exactly_the_connectors_secret_keys(stack: Stack) -> None:
    assert set(SANDBOX.secret(stack.sandbox)) == set(SPEC.secret_keys)
    assert all(SANDBOX.secret(stack.sandbox).values())


def test_the_settings_are_the_connectors_and_point_at_the_sandbox() -> None:
    settings = SANDBOX.settings("http://127.0.0.1:8715")

    assert set(settings) <= set(SalesforceSettings.model_fields)
    assert (
        SalesforceSettings.model_validate(settings).token_url
        == "http://127.0.0.1:8715/services/oauth2/token"
    )


def test_outbound_messages_select_every_field_the_preset_reads_of_the_object() -> None:
    mapper = Mapper(PRESET)
    sobjects = {
        ObjectType.CONTACT: "Contact",
        ObjectType.COMPANY: "Account",
        ObjectType.DEAL: "Opportunity",
        ObjectType.LINE_ITEM: "OpportunityLineItem",
    }
    for object_type, sobject in sobjects.items():
        own = {
            name
            for name in mapper.source_properties(object_type)
            if "." not in name and name not in (DISCOUNT_AMOUNT, "Id")  # Id: always sent
        }
        assert own <= set(OUTBOUND_FIELDS[sobject]), sobject
        assert "SystemModstamp" in OUTBOUND_FIELDS[sobject]


def test_a_won_opportunity_the_person_made_is_fetched_and_mapped_to_its_invoice(
    stack: Stack,
) -> None:
    person = stack.person
    company = person.create_company("Globex Corporation", "Springfield")
    contact = person.create_contact("Ada", "Lovelace", "ada@globex.example", company=company)
    deal_id = person.create_deal(
        "Website redesign", won=True, company=company, contact=contact, lines=LINES
    )

    record = stack.crm().fetch(ObjectType.DEAL, deal_id)

    assert record is not None
    assert record.associations == {ObjectType.COMPANY: [company], ObjectType.CONTACT: [contact]}
    assert len(record.children[ObjectType.LINE_ITEM]) == 2
    deal = stack.mapper.map(record)
    assert isinstance(deal, Deal)
    assert (deal.name, deal.status, deal.currency) == ("Website redesign", DealStatus.WON, "USD")
    assert deal.doc_number == person.invoice_number(deal_id)
    assert len(deal.doc_number) == 21  # "SF-" and the 18-character id
    assert [
        (line.name, line.quantity, line.unit_price, line.discount_amount)
        for line in deal.line_items
    ] == [
        ("Services", Decimal("10"), Decimal("150"), Decimal("0")),
        ("Hours", Decimal("2.5"), Decimal("80"), Decimal("20")),
    ]
    total = sum(
        (line.quantity * line.unit_price - line.discount_amount for line in deal.line_items),
        Decimal(0),
    )
    assert total == Decimal("1680")
    stored = {r["Id"]: r for r in stack.sandbox.records("Opportunity")}[deal_id]
    assert (stored["IsWon"], Decimal(str(stored["Amount"]))) == (True, Decimal("1680"))
    # The discount went in as Salesforce keeps it: a percent of the line.
    hours = next(r for r in stack.sandbox.records("OpportunityLineItem") if r["Quantity"] == 2.5)
    assert hours["Discount"] == 10.0


def test_the_person_adds_products_renames_and_leaves_open_deals_uninvoiced(stack: Stack) -> None:
    person = stack.person
    contact = person.create_contact("Grace", "Hopper", "Grace@Navy.example")
    won = person.create_deal(
        "Training day",
        won=True,
        company=None,
        contact=contact,
        lines=[DemoLine("Design", "1", "1200")],
    )
    person.add_line(won, DemoLine("Installation", "1", "50"))
    person.rename_deal(won, "Training day + install")
    open_deal = person.create_deal(
        "Support retainer", won=False, company=None, contact=contact, lines=[]
    )
    crm = stack.crm()

    record = crm.fetch(ObjectType.DEAL, won)
    assert record is not None
    deal = stack.mapper.map(record)
    assert isinstance(deal, Deal)
    assert deal.name == "Training day + install"
    assert record.associations[ObjectType.CONTACT] == [contact]
    assert [(line.name, line.unit_price) for line in deal.line_items] == [
        ("Design", Decimal("1200")),
        ("Installation", Decimal("50")),
    ]
    opened = crm.fetch(ObjectType.DEAL, open_deal)
    assert opened is not None
    assert isinstance(stack.mapper.map(opened), Filtered)
    # A missing product is added once, with its standard price, and then reused.
    assert [p["Name"] for p in stack.sandbox.records("Product2")].count("Design") == 1


def test_a_contact_without_email_is_made_and_its_mapping_is_refused(stack: Stack) -> None:
    contact = stack.person.create_contact("No", "Email", None)

    record = stack.crm().fetch(ObjectType.CONTACT, contact)

    assert record is not None
    assert record.properties["Email"] is None


def test_a_discount_salesforce_cannot_keep_as_a_percent_is_refused(stack: Stack) -> None:
    deal = stack.person.create_deal("Odd", won=False, company=None, contact=None, lines=[])

    with pytest.raises(ValueError, match="two decimals"):
        stack.person.add_line(deal, DemoLine("Hours", "3", "1", discount="1"))


def test_outbound_messages_reach_the_url_with_the_token_and_pass_the_connectors_checks(
    stack: Stack,
) -> None:
    person = stack.person
    company = person.create_company("Globex Corporation", "Springfield")
    deal_id = person.create_deal(
        "Website redesign", won=True, company=company, contact=None, lines=LINES
    )

    assert stack.sandbox.wait_for_webhooks_idle(10)

    received = list(stack.listener.received)
    assert received
    token = SANDBOX.secret(stack.sandbox)["outbound_token"]
    for delivery in received:
        url = urlsplit(delivery.url)
        assert url.path == ROUTE
        assert parse_qs(url.query) == {"token": [token]}
    receiver = SPEC.webhooks(
        WebhookContext(stack.secrets, SECRET_ID, tolerance_s=300),
        SalesforceSettings.model_validate(SANDBOX.settings(stack.server.url)),
    )
    events = []
    for delivery in received:
        receiver.verify(delivery)
        events += receiver.normalize(delivery, CONNECTION)
    seen = {(e.object_type, e.record_id) for e in events}
    assert (ObjectType.COMPANY, company) in seen
    assert (ObjectType.DEAL, deal_id) in seen
    assert any(e.object_type is ObjectType.LINE_ITEM for e in events)


def test_an_org_started_with_no_webhook_url_sends_no_outbound_messages() -> None:
    running = SANDBOX.start(None)
    try:
        running.ui_create("Account", {"Name": "Quiet"})
        assert running.wait_for_webhooks_idle(5)
        assert running.outbound_deliveries() == []
    finally:
        running.close()
