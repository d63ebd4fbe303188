"""Reconciliation: what HubSpot's webhooks never announced still reaches QuickBooks when the
schedule fires (new records in QuickBooks batches, as a backfill), and a second run finds
nothing to do."""

from __future__ import annotations

from typing import Any

import pytest

from shared.models import Outcome
from tests.e2e.conftest import Harness, Line, eventually

pytestmark = pytest.mark.e2e


def found(report: Any) -> int:
    """Records the run wrote in batches or put on the queue."""
    return sum(report["enqueued"].values()) + sum(report["batched"].values())


def test_given_contact_missed_by_webhooks_when_schedule_fires_then_its_customer_appears(
    e2e: Harness,
) -> None:
    customers_before = e2e.quickbooks.create_count("Customer")
    with e2e.webhooks_off():
        person = e2e.create_contact()
    e2e.settle()
    assert e2e.customers_with(person.email) == [], "nothing announced the contact"

    report = e2e.reconcile()
    [customer] = eventually(
        lambda: e2e.customers_with(person.email), f"a customer for {person.email}"
    )
    e2e.settle()

    assert report["batched"]["contact"] == 1, "a new party, created in a batch"
    assert customer["DisplayName"] == person.display_name
    assert e2e.quickbooks.create_count("Customer") == customers_before + 1
    # Created once, in the batch; the drift check after the scan may queue it again for
    # what a batch create does not write back (its back fields): unchanged forward.
    [entry] = [
        e for e in e2e.audit(f"hubspot:contact:{person.id}") if e.outcome is not Outcome.UNCHANGED
    ]
    assert entry.outcome is Outcome.CREATED
    assert entry.event_id.startswith("backfill:")
    assert found(e2e.reconcile()) == 0, "everything found is linked now"


def test_given_won_deal_missed_by_webhooks_when_schedule_fires_then_it_is_invoiced_once(
    e2e: Harness,
) -> None:
    invoices_before = e2e.quickbooks.create_count("Invoice")
    with e2e.webhooks_off():
        person = e2e.create_contact()
        deal = e2e.create_deal(person.id, [Line("Design", quantity="2", price="75")])
    e2e.settle()
    assert e2e.invoices_for(deal) == []

    report = e2e.reconcile()
    eventually(lambda: e2e.invoices_for(deal), f"an invoice for won deal {deal}")
    e2e.settle()

    assert report["batched"]["deal"] == 1, "its customer made first, then the invoice"
    [invoice] = e2e.invoices_for(deal)
    [customer] = e2e.customers_with(person.email)
    assert invoice["CustomerRef"]["value"] == customer["Id"]
    assert e2e.quickbooks.create_count("Invoice") == invoices_before + 1
    assert found(e2e.reconcile()) == 0
