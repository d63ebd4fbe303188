"""The ``WebhookReceiver`` contract, run by every registered vendor, CRM or accounting.

A person changes a record in the vendor; the sandbox signs and posts its webhook to a
small local endpoint, which keeps the request as it arrived. The connector's receiver
must accept exactly that and nothing else.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from flask import Flask, Response

from local.sandboxes.base import SandboxServer, received_webhook
from shared.errors import WebhookRejected
from shared.models import ObjectType
from shared.ports import InboundWebhook
from tests.contracts.kits.base import VendorKit

# Signed correctly, but shaped like no vendor's delivery: an object, and a list of strangers.
FOREIGN_BODIES = {"object": '{"hello": "world"}', "list": '[{"hello": "world"}]'}


class Inbox:
    """Our webhook endpoint: every delivery as it arrived, by vendor."""

    def __init__(self) -> None:
        self._received: dict[str, list[InboundWebhook]] = {}
        self._lock = threading.Lock()
        app = Flask("contract-inbox")
        app.add_url_rule("/hooks/<vendor>", "hook", self._hook, methods=["POST"])
        self.server = SandboxServer(app, 0).start()

    def url(self, vendor: str) -> str:
        return f"{self.server.url}/hooks/{vendor}"

    def take(self, vendor: str) -> list[InboundWebhook]:
        with self._lock:
            return self._received.pop(vendor, [])

    def _hook(self, vendor: str) -> Response:
        delivery = received_webhook()
        with self._lock:
            self._received.setdefault(vendor, []).append(delivery)
        return Response(status=200)


@pytest.fixture(scope="module")
def inbox() -> Iterator[Inbox]:
    inbox = Inbox()
    yield inbox
    inbox.server.stop()


@dataclass(frozen=True)
class Change:
    """A record a person changed in the vendor, and the first delivery that caused."""

    object_type: ObjectType
    record_id: str
    delivery: InboundWebhook


@pytest.fixture
def change(vendor_kit: VendorKit, inbox: Inbox) -> Change:
    inbox.take(vendor_kit.name)
    vendor_kit.send_webhooks_to(inbox.url(vendor_kit.name))
    try:
        object_type, record_id = vendor_kit.make_change()
        vendor_kit.wait_for_webhooks()
    finally:
        vendor_kit.send_webhooks_to(None)
    deliveries = inbox.take(vendor_kit.name)
    assert deliveries, f"{vendor_kit.name} sent no webhook for {object_type} {record_id}"
    return Change(object_type, record_id, deliveries[0])


def _rejected(kit: VendorKit, delivery: InboundWebhook) -> int:
    """The status the receiver rejects ``delivery`` with, by ``verify`` or ``normalize``."""
    with pytest.raises(WebhookRejected) as rejected:
        kit.webhooks.verify(delivery)
        kit.webhooks.normalize(delivery, "contracts")
    return rejected.value.status


def test_given_a_change_in_the_vendor_when_its_webhook_arrives_then_verified_and_normalized(
    vendor_kit: VendorKit, change: Change
) -> None:
    vendor_kit.webhooks.verify(change.delivery)
    events = vendor_kit.webhooks.normalize(change.delivery, "contracts")

    named = {(event.object_type, event.record_id) for event in events}
    assert (change.object_type, change.record_id) in named
    assert {(e.source, e.connection_id) for e in events} == {
        (vendor_kit.webhooks.system, "contracts")
    }


def test_given_a_delivery_with_one_byte_changed_when_verified_then_401(
    vendor_kit: VendorKit, change: Change
) -> None:
    if not vendor_kit.signs_body:
        pytest.skip(f"{vendor_kit.name} signs no body: its deliveries carry no signature")
    delivery = change.delivery
    vendor_kit.webhooks.verify(delivery)  # as sent, it passes
    middle = len(delivery.body) // 2
    # Flipping the lowest bit keeps the byte ASCII, so only the signature can tell.
    flipped = chr(ord(delivery.body[middle]) ^ 1)
    tampered = delivery.body[:middle] + flipped + delivery.body[middle + 1 :]

    assert _rejected(vendor_kit, delivery.model_copy(update={"body": tampered})) == 401


def test_given_a_delivery_without_its_signature_when_verified_then_401(
    vendor_kit: VendorKit, change: Change
) -> None:
    delivery = change.delivery
    vendor_kit.webhooks.verify(delivery)

    assert _rejected(vendor_kit, vendor_kit.unsigned(delivery)) == 401


@pytest.mark.parametrize("body", FOREIGN_BODIES.values(), ids=FOREIGN_BODIES.keys())
def test_given_a_signed_body_not_of_the_vendors_shape_when_normalized_then_400(
    vendor_kit: VendorKit, change: Change, body: str
) -> None:
    delivery = change.delivery
    headers = {**delivery.headers, **vendor_kit.sign(delivery.url, body)}
    foreign = delivery.model_copy(update={"headers": headers, "body": body})
    vendor_kit.webhooks.verify(foreign)  # the signature holds: only the shape is wrong

    with pytest.raises(WebhookRejected) as rejected:
        vendor_kit.webhooks.normalize(foreign, "contracts")

    assert rejected.value.status == 400
