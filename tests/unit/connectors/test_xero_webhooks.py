"""Xero webhooks through the connector's receiver: Intent to Receive, signatures, events.

The sandbox signs and posts as Xero does; ``Endpoint`` answers as crmsync's webhook
function would (verify, normalize, answer) and keeps what it normalized.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask, Response

from local.sandboxes.base import SandboxServer, received_webhook
from local.sandboxes.xero import XeroSandboxConfig, sign
from shared.connectors.xero.connector import XeroAccounting, XeroWebhooks, xero_webhooks
from shared.errors import WebhookRejected
from shared.models import ChangeEvent, ChangeKind, Invoice, InvoiceLine, ObjectType
from shared.ports import InboundWebhook
from tests.unit.connectors.sandbox_envs import XERO_SECRET_ID as SECRET_ID
from tests.unit.connectors.sandbox_envs import XeroEnv as Env
from tests.unit.connectors.test_xero import seeded_contact

CONFIG = XeroSandboxConfig()
OTHER_TENANT = "0d5a2b7c-1111-4222-8333-944455556666"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Endpoint:
    """crmsync's webhook route for one connection, in miniature."""

    def __init__(self, receiver: XeroWebhooks) -> None:
        self.receiver = receiver
        self.events: list[ChangeEvent] = []
        self.answers: list[tuple[int, str, bytes, bool]] = []  # status, type, body, cookie
        self._lock = threading.Lock()
        app = Flask("xero-endpoint")
        app.add_url_rule("/hooks/xero", "hook", self._hook, methods=["POST"])
        self.server = SandboxServer(app, 0).start()
        self.url = f"{self.server.url}/hooks/xero"

    def _hook(self) -> Response:
        delivery = received_webhook()
        try:
            self.receiver.verify(delivery)
            events = self.receiver.normalize(delivery, "conn-1")
        except WebhookRejected as rejected:
            return Response(b"", status=rejected.status)
        answer = self.receiver.answer(delivery, len(events))
        with self._lock:
            self.events.extend(events)
        return Response(answer.body, status=answer.status, content_type=answer.content_type)


@pytest.fixture
def env(xero_once: Env) -> Iterator[Env]:
    xero_once.sandbox.reset()
    yield xero_once
    xero_once.sandbox.webhook_url = None


@pytest.fixture
def endpoint(env: Env) -> Iterator[Endpoint]:
    endpoint = Endpoint(xero_webhooks(env.secrets, SECRET_ID))
    yield endpoint
    endpoint.server.stop()


def delivery(body: str, *, key: str = CONFIG.webhook_key, **headers: str) -> InboundWebhook:
    signed = {"x-xero-signature": sign(key, body.encode()), **headers}
    return InboundWebhook(
        method="POST",
        url="https://hooks.example.com/webhooks/xero/conn-1",
        headers={k: v for k, v in signed.items() if v},
        body=body,
        received_at=datetime.now(UTC),
    )


def event(**fields: Any) -> dict[str, Any]:
    resource = fields.pop("resourceId", "2f3c1d0e-1a2b-4c3d-9e8f-0123456789ab")
    return {
        "resourceUrl": f"https://api.xero.com/api.xro/2.0/Contacts/{resource}",
        "resourceId": resource,
        "eventDateUtc": "2026-03-02T10:11:12.345",
        "eventType": "UPDATE",
        "eventCategory": "CONTACT",
        "tenantId": CONFIG.tenant_id,
        "tenantType": "ORGANISATION",
        **fields,
    }


def payload(*events: dict[str, Any]) -> str:
    body = {
        "events": list(events),
        "firstEventSequence": 1,
        "lastEventSequence": len(events),
        "entropy": "QWERTYUIOPASDFGHJKLZ",
    }
    return json.dumps(body, separators=(",", ":"))


@pytest.fixture(scope="module")
def receiver(xero_once: Env) -> XeroWebhooks:
    return xero_webhooks(xero_once.secrets, SECRET_ID)


# --- Intent to Receive and real deliveries ----------------------------------------------


def test_given_intent_to_receive_when_xero_validates_the_endpoint_then_it_passes(
    env: Env, endpoint: Endpoint
) -> None:
    env.sandbox.webhook_url = endpoint.url

    outcome = env.sandbox.intent_to_receive()

    assert outcome.ok, outcome.checks
    assert sorted((c.correctly_signed, c.status, c.body) for c in outcome.checks) == [
        (False, 401, ""),
        (True, 200, ""),
    ]
    assert env.sandbox.webhook_status() == "OK"
    assert endpoint.events == []  # the validation carries no events


def test_given_the_intent_to_receive_delivery_then_an_empty_200(receiver: XeroWebhooks) -> None:
    itr = delivery('{"events":[],"firstEventSequence":0,"lastEventSequence":0,"entropy":"X"}')
    receiver.verify(itr)

    events = receiver.normalize(itr, "conn-1")

    assert events == []
    answer = receiver.answer(itr, len(events))
    assert (answer.status, answer.content_type, answer.body) == (200, "text/plain", "")


def test_given_an_invoice_written_through_the_api_then_its_events_arrive_normalized(
    env: Env, endpoint: Endpoint
) -> None:
    env.sandbox.webhook_url = endpoint.url
    assert env.sandbox.intent_to_receive().ok
    xero: XeroAccounting = env.connector()
    invoice = Invoice(
        customer_ref=seeded_contact(env, "Boom FM"),
        currency="USD",
        lines=[InvoiceLine(name="Design", item_ref="DESIGN", quantity=1, unit_price=75)],
    )

    ref = xero.upsert_invoice(invoice, existing=None, idempotency_key="hook:1")
    assert env.sandbox.wait_for_webhooks_idle()

    assert [d.attempts for d in env.sandbox.deliveries] == [[200]]
    (created,) = endpoint.events
    assert (created.object_type, created.record_id, created.kind) == (
        ObjectType.INVOICE,
        ref.id,
        ChangeKind.CREATED,
    )
    assert (created.source, created.connection_id) == ("xero", "conn-1")


def test_given_a_contact_typed_into_xero_then_a_customer_event(
    env: Env, endpoint: Endpoint
) -> None:
    env.sandbox.webhook_url = endpoint.url
    assert env.sandbox.intent_to_receive().ok

    contact = env.sandbox.ui_create("Contacts", {"Name": "Walk-in Wendy"})
    env.sandbox.ui_update("Contacts", contact["ContactID"], {"EmailAddress": "w@example.com"})
    assert env.sandbox.wait_for_webhooks_idle()

    assert [(e.object_type, e.record_id, e.kind) for e in endpoint.events] == [
        (ObjectType.CUSTOMER, contact["ContactID"], ChangeKind.CREATED),
        (ObjectType.CUSTOMER, contact["ContactID"], ChangeKind.UPDATED),
    ]
    first, second = endpoint.events
    assert first.event_id != second.event_id and first.version <= second.version


# --- signatures ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"x-xero-signature": ""},
        {"x-xero-signature": "not base64!"},
        {"x-xero-signature": sign("another app's key", payload(event()).encode())},
    ],
    ids=["missing", "not base64", "another key"],
)
def test_given_a_delivery_not_signed_with_the_key_when_verified_then_401(
    receiver: XeroWebhooks, headers: dict[str, str]
) -> None:
    with pytest.raises(WebhookRejected) as rejected:
        receiver.verify(delivery(payload(event()), **headers))

    assert rejected.value.status == 401
    assert rejected.value.empty_answer  # Intent to Receive fails a 401 with a body


def test_given_a_rotated_webhook_key_when_verified_then_the_new_key_is_used(env: Env) -> None:
    receiver = xero_webhooks(env.secrets, SECRET_ID)
    body = payload(event())
    env.patch_secret(webhook_key="rotated-key")
    try:
        receiver.verify(delivery(body, key="rotated-key"))
        with pytest.raises(WebhookRejected):
            receiver.verify(delivery(body))
    finally:
        env.patch_secret(webhook_key=CONFIG.webhook_key)


# --- normalizing ---------------------------------------------------------------------------


def test_given_events_of_every_kind_when_normalized_then_this_tenants_contacts_and_invoices(
    receiver: XeroWebhooks,
) -> None:
    invoice_id = "7e6d5c4b-3a29-4817-8665-544332211000"
    body = payload(
        event(eventType="CREATE"),
        event(resourceId=invoice_id, eventCategory="INVOICE"),
        event(eventCategory="SUBSCRIPTION"),  # app store billing: not a record we sync
        event(tenantId=OTHER_TENANT),  # another organisation connected to the same app
    )

    events = receiver.normalize(delivery(body), "conn-1")

    assert [(e.object_type, e.record_id, e.kind) for e in events] == [
        (ObjectType.CUSTOMER, "2f3c1d0e-1a2b-4c3d-9e8f-0123456789ab", ChangeKind.CREATED),
        (ObjectType.INVOICE, invoice_id, ChangeKind.UPDATED),
    ]
    stamp = datetime(2026, 3, 2, 10, 11, 12, 345000, tzinfo=UTC)
    assert {e.version for e in events} == {(stamp - EPOCH) // timedelta(milliseconds=1)}
    assert events[0].occurred_at.replace(tzinfo=UTC) == stamp


def test_given_credit_note_events_when_normalized_then_sales_ones_are_payments_named_apart(
    receiver: XeroWebhooks,
) -> None:
    """A sales credit note moves money for its customer (allocated or refunded), as a
    payment does; a supplier's credit note (ACCPAYCREDIT) is not the CRM's."""
    note_id = "55d84274-a3da-4829-a7c0-0cab601b95cc"
    body = payload(
        event(
            resourceId=note_id,
            eventCategory="CREDITNOTE",
            eventType="CREATE",
            data={"Type": "ACCRECCREDIT", "Status": "AUTHORISED"},
        ),
        event(
            resourceId=note_id,
            eventCategory="CREDITNOTE",
            data={"Type": "ACCRECCREDIT", "Status": "PAID"},
        ),
        event(eventCategory="CREDITNOTE", data={"Type": "ACCPAYCREDIT", "Status": "DRAFT"}),
    )

    events = receiver.normalize(delivery(body), "conn-1")

    assert [(e.object_type, e.record_id, e.kind) for e in events] == [
        (ObjectType.PAYMENT, f"CreditNote-{note_id}", ChangeKind.CREATED),
        (ObjectType.PAYMENT, f"CreditNote-{note_id}", ChangeKind.UPDATED),
    ]
    assert events[0].event_id != events[1].event_id


def test_given_a_credit_note_raised_and_edited_in_xero_then_its_events_arrive_as_payments(
    env: Env, endpoint: Endpoint
) -> None:
    env.sandbox.webhook_url = endpoint.url
    assert env.sandbox.intent_to_receive().ok
    contact = env.sandbox.ui_create("Contacts", {"Name": "Refunded Rita"})
    note = env.sandbox.ui_create(
        "CreditNotes",
        {
            "Type": "ACCRECCREDIT",
            "Contact": {"ContactID": contact["ContactID"]},
            "Status": "AUTHORISED",
            "LineAmountTypes": "NoTax",
            "LineItems": [{"Description": "Credit", "UnitAmount": 20, "AccountCode": "200"}],
        },
    )
    env.sandbox.ui_update("CreditNotes", note["CreditNoteID"], {"Reference": "goodwill"})
    assert env.sandbox.wait_for_webhooks_idle()

    credit_notes = [e for e in endpoint.events if e.object_type is ObjectType.PAYMENT]
    assert [(e.record_id, e.kind) for e in credit_notes] == [
        (f"CreditNote-{note['CreditNoteID']}", ChangeKind.CREATED),
        (f"CreditNote-{note['CreditNoteID']}", ChangeKind.UPDATED),
    ]


@pytest.mark.parametrize(
    "body",
    ['{"hello": "world"}', '[{"hello": "world"}]', "not json", payload(event(resourceId=""))],
    ids=["object", "list", "not json", "empty resource id"],
)
def test_given_a_signed_body_not_of_xeros_shape_when_normalized_then_400(
    receiver: XeroWebhooks, body: str
) -> None:
    signed = delivery(body)
    receiver.verify(signed)

    with pytest.raises(WebhookRejected) as rejected:
        receiver.normalize(signed, "conn-1")

    assert rejected.value.status == 400
