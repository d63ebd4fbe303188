"""Redrive from the DLQ: an event dead-lettered while its cause lasted is applied once
it is moved back (its own module: a redrive moves every dead letter of the stack)."""

from __future__ import annotations

import pytest

from shared.models import Outcome
from tests.e2e.conftest import MAX_FAILED, Harness, eventually
from tests.e2e.test_faults import SERVICES, synced_contact

pytestmark = pytest.mark.e2e


def test_given_a_dead_lettered_event_when_the_cause_is_gone_and_it_is_redriven_then_applied(
    e2e: Harness,
) -> None:
    person = synced_contact(e2e)
    # QuickBooks refuses the credentials on every attempt (the connector refreshes the
    # token once and tries again): a person must act, so the event is dead-lettered.
    e2e.add_fault(
        e2e.quickbooks_url,
        kind="error",
        status=401,
        count=2 * MAX_FAILED,
        method="POST",
        path_prefix=e2e.invoice_path(),
    )
    deal = e2e.won_deal_announced_once(person.id, [SERVICES])
    eventually(lambda: e2e.dead_letters() == 1, f"deal {deal}'s event in the DLQ")
    assert e2e.invoices_for(deal) == []

    moved = e2e.stack.redrive()  # the faults are used up: QuickBooks accepts again
    eventually(lambda: e2e.invoices_for(deal), f"an invoice for redriven deal {deal}")
    e2e.settle()

    assert moved == 1
    assert e2e.dead_letters() == 0
    *failures, applied = e2e.audit(f"hubspot:deal:{deal}")
    assert [f.outcome for f in failures] == [Outcome.FAILED] * MAX_FAILED
    assert all(f.reason.startswith("AuthFailed") for f in failures)
    assert applied.outcome is Outcome.CREATED
    assert applied.event_id == failures[0].event_id, "the same event, redriven"
    assert len(e2e.invoices_for(deal)) == 1
