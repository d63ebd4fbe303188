"""Bad input gets a clear answer: a 4xx with a reason at the API and nothing enqueued; a
record that cannot be mapped is audited with field and rule, once, and not retried."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest

from infra.resources import webhook_path
from local.sandboxes.hubspot import sign_v3
from shared.models import Outcome
from shared.settings import get_settings
from tests.e2e.conftest import EVENTS, Harness, eventually

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Request:
    path: str
    body: bytes
    headers: dict[str, str]
    method: str = "POST"


def now_ms() -> int:
    return int(time.time() * 1000)


def contact_created(object_id: int) -> str:
    """A HubSpot delivery of one ``contact.creation`` event, as HubSpot sends it."""
    event = {
        "eventId": object_id,
        "subscriptionId": 1_000_000,
        "portalId": 62515,
        "appId": 1160452,
        "occurredAt": now_ms(),
        "subscriptionType": "contact.creation",
        "attemptNumber": 0,
        "objectId": object_id,
        "changeSource": "CRM_UI",
    }
    return json.dumps([event], separators=(",", ":"))


def hubspot_request(e2e: Harness, body: str, *, timestamp_ms: int | None = None) -> Request:
    """Signed (v3) with the app secret for the webhook URL, as HubSpot signs."""
    timestamp = now_ms() if timestamp_ms is None else timestamp_ms
    url = e2e.stack.urls.webhooks["hubspot"]
    secret = e2e.hubspot.config.client_secret
    headers = {
        "Content-Type": "application/json",
        "X-HubSpot-Signature-v3": sign_v3(secret, "POST", url, body, timestamp),
        "X-HubSpot-Request-Timestamp": str(timestamp),
    }
    return Request(webhook_path("hubspot", e2e.connection_id), body.encode(), headers)


def wrong_signature(e2e: Harness) -> Request:
    request = hubspot_request(e2e, contact_created(9_000_001))
    forged = base64.b64encode(b"\0" * 32).decode()
    return Request(
        request.path, request.body, {**request.headers, "X-HubSpot-Signature-v3": forged}
    )


def unsigned(e2e: Harness) -> Request:
    return Request(
        webhook_path("hubspot", e2e.connection_id), contact_created(9_000_002).encode(), {}
    )


def stale_timestamp(e2e: Harness) -> Request:
    ten_minutes_ago = now_ms() - 600_000
    return hubspot_request(e2e, contact_created(9_000_003), timestamp_ms=ten_minutes_ago)


def malformed_json(e2e: Harness) -> Request:
    return hubspot_request(e2e, '[{"eventId": 1,')


def not_a_list_of_events(e2e: Harness) -> Request:
    return hubspot_request(e2e, '{"eventId": 1}')


def oversized(e2e: Harness) -> Request:
    padding = " " * get_settings().max_webhook_body_bytes
    return hubspot_request(e2e, contact_created(9_000_004) + padding)


def timestamp_beyond_a_float(e2e: Harness) -> Request:
    request = hubspot_request(e2e, contact_created(9_000_006))
    return Request(
        request.path, request.body, {**request.headers, "X-HubSpot-Request-Timestamp": "9" * 400}
    )


A_THOUSAND_DEEP = "[" * 1000 + "]" * 1000


def nested_a_thousand_deep(e2e: Harness) -> Request:
    return hubspot_request(e2e, A_THOUSAND_DEEP)


def quickbooks_nested_a_thousand_deep(e2e: Harness) -> Request:
    token = e2e.quickbooks.config.webhook_verifier_token
    digest = hmac.new(token.encode(), A_THOUSAND_DEEP.encode(), hashlib.sha256).digest()
    headers = {
        "Content-Type": "application/json",
        "intuit-signature": base64.b64encode(digest).decode(),
    }
    return Request(webhook_path("quickbooks", e2e.connection_id), A_THOUSAND_DEEP.encode(), headers)


def quickbooks_wrong_signature(e2e: Harness) -> Request:
    body = json.dumps([{"specversion": "1.0", "id": "x", "type": "qbo.customer.created.v1"}])
    forged = base64.b64encode(b"\1" * 32).decode()
    return Request(
        webhook_path("quickbooks", e2e.connection_id), body.encode(), {"intuit-signature": forged}
    )


def unknown_vendor(e2e: Harness) -> Request:
    return Request("/webhooks/nope/demo", b"{}", {"Content-Type": "application/json"})


def another_connections_vendor(e2e: Harness) -> Request:
    """A registered vendor this connection does not use."""
    path = webhook_path("salesforce", e2e.connection_id)
    return Request(path, b"{}", {"Content-Type": "application/json"})


def unknown_connection(e2e: Harness) -> Request:
    request = hubspot_request(e2e, contact_created(9_000_007))
    return Request(webhook_path("hubspot", "nobody"), request.body, request.headers)


def unknown_method(e2e: Harness) -> Request:
    return Request(webhook_path("hubspot", e2e.connection_id), b"", {}, method="GET")


@pytest.mark.parametrize(
    ("build", "status", "reason"),
    [
        (wrong_signature, 401, "signature mismatch"),
        (unsigned, 401, "missing HubSpot signature"),
        (stale_timestamp, 401, "timestamp outside tolerance"),
        (timestamp_beyond_a_float, 401, "timestamp outside tolerance"),
        (malformed_json, 400, "body is not JSON"),
        (not_a_list_of_events, 400, "JSON array of events"),
        (nested_a_thousand_deep, 400, "nests JSON too deeply"),
        (quickbooks_nested_a_thousand_deep, 400, "nests JSON too deeply"),
        (oversized, 413, "body larger than"),
        (quickbooks_wrong_signature, 401, "intuit-signature does not match"),
        (unknown_vendor, 404, "Not Found"),
        (another_connections_vendor, 404, "no webhook route for 'salesforce' on 'demo'"),
        (unknown_connection, 404, "no webhook route for 'hubspot' on 'nobody'"),
        (unknown_method, 404, "Not Found"),
    ],
    ids=lambda value: value.__name__ if callable(value) else None,
)
def test_given_bad_webhook_request_when_posted_then_4xx_says_why_and_nothing_enqueued(
    e2e: Harness, build: Callable[[Harness], Request], status: int, reason: str
) -> None:
    request = build(e2e)
    batches_before = e2e.stack.status().workers[EVENTS].batches

    response = httpx.request(
        request.method,
        f"{e2e.stack.urls.api}{request.path}",
        content=request.body,
        headers=request.headers,
    )

    assert response.status_code == status
    assert reason in response.json()["message"]
    assert e2e.stack.wait_until_drained(10)
    after = e2e.stack.status()
    assert after.workers[EVENTS].batches == batches_before, "the sync function was invoked"
    assert (after.queues[EVENTS].visible, after.queues[EVENTS].in_flight) == (0, 0)


def test_given_correctly_signed_delivery_when_posted_then_it_is_enqueued(
    e2e: Harness,
) -> None:
    """The control for the rejections above: the same signing, done right, is accepted."""
    processed_before, _ = e2e.worker()
    request = hubspot_request(e2e, contact_created(9_000_005))

    response = httpx.post(
        f"{e2e.stack.urls.api}{request.path}", content=request.body, headers=request.headers
    )

    assert response.status_code == 200
    assert response.json() == {"enqueued": 1}
    e2e.settle()
    assert e2e.worker()[0] == processed_before + 1
    [entry] = e2e.audit("hubspot:contact:9000005")
    assert (entry.outcome, entry.reason) == (
        Outcome.SKIPPED,
        "the record no longer exists in the CRM",
    )


def test_given_contact_without_email_when_synced_then_audited_invalid_once_not_retried(
    e2e: Harness,
) -> None:
    customers_before = e2e.quickbooks.create_count("Customer")
    _, failed_before = e2e.worker()
    dead_before = e2e.dead_letters()

    person = e2e.create_contact(email=False)
    key = f"hubspot:contact:{person.id}"
    eventually(lambda: e2e.audit(key), f"{key} audited")
    e2e.settle()

    [entry] = e2e.audit(key)
    assert entry.outcome is Outcome.INVALID
    assert (entry.field, entry.rule) == ("email", "required")
    assert "email" in entry.reason
    assert e2e.worker()[1] == failed_before, "not retried"
    assert e2e.dead_letters() == dead_before
    assert e2e.quickbooks.create_count("Customer") == customers_before
