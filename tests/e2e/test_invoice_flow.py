"""HubSpot → QuickBooks through the real handlers: webhook → SQS → sync → invoice.

Records are created with HubSpot's public API (the local private-app token); the
sandbox sends its signed webhooks to the local API, exactly as HubSpot would.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
import pytest

from local.sandboxes.base import Delivery
from local.sandboxes.quickbooks import QuickBooksBooks
from shared.models import Outcome
from shared.stores import DynamoCustomerDirectory
from tests.e2e.conftest import Harness, Line, eventually, money, unique

pytestmark = pytest.mark.e2e

SERVICES = Line("Services", quantity="10", price="150")
HOURS = Line("Hours", quantity="2.5", price="80", discount="8")  # 20.00 off in total
INSTALLATION = Line("Installation", quantity="1", price="50")


def sales_lines(invoice: dict[str, Any]) -> list[tuple[str, Decimal, Decimal, Decimal]]:
    """(item, quantity, unit price, amount) of each sales line, in order."""
    return [
        (
            line["SalesItemLineDetail"]["ItemRef"]["name"],
            money(line["SalesItemLineDetail"]["Qty"]),
            money(line["SalesItemLineDetail"]["UnitPrice"]),
            money(line["Amount"]),
        )
        for line in invoice["Line"]
        if line["DetailType"] == "SalesItemLineDetail"
    ]


def discount(invoice: dict[str, Any]) -> Decimal:
    return sum(
        (
            money(line["Amount"])
            for line in invoice["Line"]
            if line["DetailType"] == "DiscountLineDetail"
        ),
        Decimal(0),
    )


def mentions(delivery: Delivery, object_ids: set[int]) -> bool:
    events = json.loads(delivery.body)
    return any(
        {e.get("objectId"), e.get("fromObjectId"), e.get("toObjectId")} & object_ids for e in events
    )


def test_given_contact_and_won_deal_when_webhooks_flow_then_one_customer_and_one_invoice(
    e2e: Harness,
) -> None:
    customers_before = e2e.quickbooks.create_count("Customer")
    invoices_before = e2e.quickbooks.create_count("Invoice")

    person = e2e.create_contact()
    deal = e2e.create_deal(person.id, [SERVICES, HOURS])
    eventually(lambda: e2e.invoices_for(deal), f"an invoice for won deal {deal}")
    e2e.settle()

    [customer] = e2e.customers_with(person.email)
    assert customer["DisplayName"] == person.display_name
    assert customer["GivenName"] == "Ada"
    [invoice] = e2e.invoices_for(deal)
    assert invoice["CustomerRef"]["value"] == customer["Id"]
    assert sales_lines(invoice) == [
        ("Services", Decimal(10), Decimal(150), Decimal(1500)),
        ("Hours", Decimal("2.5"), Decimal(80), Decimal(200)),
    ]
    assert discount(invoice) == Decimal(20)
    assert money(invoice["TotalAmt"]) == Decimal(1680)
    assert invoice["CurrencyRef"]["value"] == "USD"
    # Closed 2026-11-20 15:00 UTC, dated in New York; the mapping's default terms: Net 30.
    assert (invoice["TxnDate"], invoice["DueDate"]) == ("2026-11-20", "2026-12-20")
    assert e2e.quickbooks.create_count("Customer") == customers_before + 1
    assert e2e.quickbooks.create_count("Invoice") == invoices_before + 1
    created = [e.outcome for e in e2e.audit_of_target("invoice", invoice["Id"])]
    assert created.count(Outcome.CREATED) == 1


def test_given_invoiced_deal_when_it_gains_a_line_then_the_same_invoice_is_updated(
    e2e: Harness,
) -> None:
    person = e2e.create_contact()
    deal = e2e.create_deal(person.id, [SERVICES, HOURS])
    eventually(lambda: e2e.invoices_for(deal), f"an invoice for won deal {deal}")
    e2e.settle()
    [before] = e2e.invoices_for(deal)
    invoices_created = e2e.quickbooks.create_count("Invoice")

    e2e.add_line(deal, INSTALLATION)
    e2e.crm.update("deals", deal, {"dealname": "Website redesign + install"})
    eventually(
        lambda: len(sales_lines(e2e.invoices_for(deal)[0])) == 3, "the invoice gained the line"
    )
    e2e.settle()

    [after] = e2e.invoices_for(deal)
    assert after["Id"] == before["Id"]
    assert int(after["SyncToken"]) > int(before["SyncToken"])
    assert [name for name, *_ in sales_lines(after)] == ["Services", "Hours", "Installation"]
    assert money(after["TotalAmt"]) == Decimal(1730)
    assert e2e.quickbooks.create_count("Invoice") == invoices_created
    assert Outcome.UPDATED in [e.outcome for e in e2e.audit_of_target("invoice", after["Id"])]


def test_given_delivered_webhooks_when_delivered_again_then_nothing_is_written_twice(
    e2e: Harness,
) -> None:
    person = e2e.create_contact()
    deal = e2e.create_deal(person.id, [SERVICES])
    eventually(lambda: e2e.invoices_for(deal), f"an invoice for won deal {deal}")
    e2e.settle()
    created = (e2e.quickbooks.create_count("Customer"), e2e.quickbooks.create_count("Invoice"))
    trail = e2e.audit_log()
    replays = [d for d in e2e.hubspot.deliveries if mentions(d, {int(person.id), int(deal)})]
    assert replays, "the sandbox delivered webhooks about the contact and the deal"

    for delivery in replays:
        response = httpx.post(delivery.url, content=delivery.body, headers=delivery.headers)
        assert response.status_code == 200, response.text
        assert response.json()["enqueued"] >= 1
    e2e.settle()

    assert (e2e.quickbooks.create_count("Customer"), e2e.quickbooks.create_count("Invoice")) == (
        created
    )
    assert len(e2e.invoices_for(deal)) == 1
    assert len(e2e.customers_with(person.email)) == 1
    # A replayed event that writes nowhere (older than what was applied, or a line item
    # handed to its deal again) keeps no idempotency record, so it is audited again as
    # what it is; every other one is answered from its record. (SQS itself would drop
    # these replays for five minutes; moto forgets a deduplication id once the message
    # is deleted.)
    again = [e for e in e2e.audit_log() if e not in trail]
    assert {e.outcome for e in again} <= {Outcome.SKIPPED, Outcome.FORWARDED}, (
        "no event was applied again"
    )


def test_given_customer_we_wrote_when_quickbooks_notifies_it_then_audited_as_echo(
    e2e: Harness,
) -> None:
    person = e2e.create_contact()
    [customer] = eventually(
        lambda: e2e.customers_with(person.email), f"a QuickBooks customer for {person.email}"
    )
    key = f"quickbooks:customer:{customer['Id']}"
    eventually(lambda: e2e.audit(key), f"QuickBooks' webhook about {key} handled")
    e2e.settle()

    [entry] = e2e.audit(key)
    assert (entry.outcome, entry.reason) == (Outcome.SKIPPED, "echo of our own write")
    assert entry.target_key == f"hubspot:contact:{person.id}"
    [unchanged] = e2e.customers_with(person.email)
    assert unchanged["SyncToken"] == customer["SyncToken"]


def test_given_a_customer_typed_into_quickbooks_when_a_contact_has_its_email_then_it_is_linked(
    e2e: Harness,
) -> None:
    """Creates look up only emails the customer directory holds; QuickBooks' own webhook
    about a customer a person typed in puts its email there."""
    directory = DynamoCustomerDirectory(
        e2e.stack.clients.dynamodb, e2e.stack.resources.tables["Links"]
    )
    e2e.reconcile()  # a connection's first reconcile fills the directory
    address = f"{unique('typed-')}@example.test".lower()
    assert directory.holds(e2e.connection_id, address) is False
    typed = QuickBooksBooks(e2e.quickbooks, e2e.quickbooks_url).add_customer(
        unique("Typed by hand "), address
    )
    e2e.settle()
    assert directory.holds(e2e.connection_id, address) is True

    contact = e2e.crm.create(
        "contacts", {"firstname": "Ada", "lastname": unique("Lovelace-"), "email": address}
    )
    e2e.settle()

    [entry] = e2e.audit(f"hubspot:contact:{contact}")
    assert entry.outcome is Outcome.LINKED
    assert entry.target_key == f"quickbooks:customer:{typed}"
    assert [c["Id"] for c in e2e.customers_with(address)] == [typed]
