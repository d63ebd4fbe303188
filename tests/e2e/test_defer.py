"""A vendor's long Retry-After parks the message for that long, not for the queue's
visibility timeout (its own module: the parked message outlives the test)."""

from __future__ import annotations

import time

import pytest

from shared.models import Outcome
from tests.e2e.conftest import Harness, eventually

pytestmark = pytest.mark.e2e

RETRY_AFTER_S = 30  # beyond ApiClient's 20 s inline wait: the message goes back to SQS


def test_given_a_long_retry_after_when_a_contact_syncs_then_its_message_waits_that_long(
    e2e: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(e2e.quickbooks.config, "send_retry_after", True)
    e2e.add_fault(
        e2e.quickbooks_url,
        kind="rate_limit",
        count=1,
        retry_after_s=RETRY_AFTER_S,
        path_prefix=f"/v3/company/{e2e.quickbooks.config.realm_id}/",
    )
    person = e2e.create_contact()
    key = f"hubspot:contact:{person.id}"

    [limited] = eventually(lambda: e2e.audit(key), f"the first attempt at {key}")
    # This stack's queue hides a failed message for 2 s; the vendor asked for 30.
    time.sleep(6)

    assert limited.outcome is Outcome.FAILED
    assert limited.reason.startswith("RateLimited")
    assert e2e.audit(key) == [limited], "not redelivered before Retry-After"
    assert e2e.customers_with(person.email) == []
