"""Vendor faults through the real handlers: lost responses, 429 bursts, a poison event.

Faults are queued in the sandboxes (``POST /_sandbox/faults``); the Events queue of
this stack hides a failed message for a couple of seconds, so redelivery and the
move to the DLQ after ``maxReceiveCount`` receives happen within the test. Deals
here are announced by one webhook event, so one message carries the whole story.
"""

from __future__ import annotations

import pytest

from shared.connectors.http import RetryPolicy
from shared.models import Outcome
from tests.e2e.conftest import Harness, Line, Person, eventually

pytestmark = pytest.mark.e2e

SERVICES = Line("Services", quantity="3", price="120")
ATTEMPTS = RetryPolicy().max_attempts  # calls ApiClient makes before the message fails


def synced_contact(e2e: Harness) -> Person:
    person = e2e.create_contact()
    eventually(lambda: e2e.customers_with(person.email), f"a customer for {person.email}")
    return person


def test_given_invoice_answers_lost_when_message_redelivered_then_exactly_one_invoice(
    e2e: Harness,
) -> None:
    person = synced_contact(e2e)
    invoices_before = e2e.quickbooks.create_count("Invoice")
    # Each attempt creates (or, by its requestid, finds) the invoice; every answer is lost.
    e2e.add_fault(
        e2e.quickbooks_url,
        kind="drop_response",
        count=ATTEMPTS,
        method="POST",
        path_prefix=e2e.invoice_path(),
    )
    _, failed_before = e2e.worker()

    deal = e2e.won_deal_announced_once(person.id, [SERVICES])
    eventually(lambda: e2e.invoices_for(deal), f"an invoice for won deal {deal}")
    e2e.settle()

    assert e2e.quickbooks.create_count("Invoice") == invoices_before + 1
    [invoice] = e2e.invoices_for(deal)
    failed, applied = e2e.audit(f"hubspot:deal:{deal}")
    assert failed.outcome is Outcome.FAILED
    assert failed.reason.startswith("Retryable") and "504" in failed.reason
    assert applied.event_id == failed.event_id, "the same message, redelivered"
    # Created by the lost call; the retry meets it (by requestid or invoice number).
    assert applied.outcome in (Outcome.CREATED, Outcome.LINKED)
    assert applied.target_key == f"quickbooks:invoice:{invoice['Id']}"
    assert e2e.worker()[1] == failed_before + 1


def test_given_quickbooks_429_burst_when_contact_syncs_then_delayed_and_arrives_once(
    e2e: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Intuit documents no Retry-After (the sandbox's default); this burst sends one.
    monkeypatch.setattr(e2e.quickbooks.config, "send_retry_after", True)
    customers_before = e2e.quickbooks.create_count("Customer")
    dead_before = e2e.dead_letters()
    _, failed_before = e2e.worker()
    errors_before = e2e.stack.status().workers["Events"].errors
    # As many 429s as one call has attempts: it waits them out inline, then gives the
    # message back to the queue until Retry-After has passed.
    e2e.add_fault(
        e2e.quickbooks_url,
        kind="rate_limit",
        count=ATTEMPTS,
        retry_after_s=1,
        path_prefix=f"/v3/company/{e2e.quickbooks.config.realm_id}/",
    )
    person = synced_contact(e2e)
    e2e.settle()

    assert len(e2e.customers_with(person.email)) == 1
    assert e2e.quickbooks.create_count("Customer") == customers_before + 1
    delayed, created = e2e.audit(f"hubspot:contact:{person.id}")
    assert delayed.outcome is Outcome.FAILED and delayed.reason.startswith("RateLimited")
    assert created.outcome is Outcome.CREATED
    assert e2e.worker()[1] == failed_before + 1, "deferred once"
    assert e2e.stack.status().workers["Events"].errors == errors_before, "not a function error"
    assert e2e.dead_letters() == dead_before


def test_given_hubspot_429s_when_contact_fetched_then_connector_waits_and_it_arrives_once(
    e2e: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # HubSpot's 429 has no Retry-After: the connector waits the rolling window its
    # headers report. A 1 s window keeps that short; the limit itself is not reached.
    monkeypatch.setattr(e2e.hubspot.config, "rate_window_s", 1.0)
    customers_before = e2e.quickbooks.create_count("Customer")
    dead_before = e2e.dead_letters()
    _, failed_before = e2e.worker()
    e2e.add_fault(
        e2e.hubspot_url,
        kind="rate_limit",
        count=2,
        method="GET",
        path_prefix="/crm/v3/objects/contacts/",
    )
    person = synced_contact(e2e)
    e2e.settle()

    assert e2e.hubspot.faults.pending() == [], "both 429s were served"
    assert len(e2e.customers_with(person.email)) == 1
    assert e2e.quickbooks.create_count("Customer") == customers_before + 1
    assert [e.outcome for e in e2e.audit(f"hubspot:contact:{person.id}")] == [Outcome.CREATED]
    assert e2e.worker()[1] == failed_before, "waited inline: no message failed"
    assert e2e.dead_letters() == dead_before


def test_given_quickbooks_refuses_a_deal_for_good_then_audited_once_with_its_reason(
    e2e: Harness,
) -> None:
    person = synced_contact(e2e)
    invoices_before = e2e.quickbooks.create_count("Invoice")
    dead_before = e2e.dead_letters()
    _, failed_before = e2e.worker()

    # Multicurrency is off in the sandbox company: a EUR invoice is refused (6000), and
    # would be on every retry.
    deal = e2e.won_deal_announced_once(person.id, [SERVICES], deal_currency_code="EUR")
    key = f"hubspot:deal:{deal}"
    eventually(lambda: e2e.audit(key), f"the audit entry of {key}")
    e2e.settle()

    [refused] = e2e.audit(key)
    assert refused.outcome is Outcome.REJECTED
    assert refused.rule == "6000"
    assert "Multicurrency is not turned on" in refused.reason
    assert e2e.worker()[1] == failed_before, "not retried"
    assert e2e.dead_letters() == dead_before
    assert e2e.invoices_for(deal) == []
    assert e2e.quickbooks.create_count("Invoice") == invoices_before
