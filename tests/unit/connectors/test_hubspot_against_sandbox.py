"""The production HubSpot connector against the local HubSpot sandbox, over real HTTP.

Records are created through the sandbox's public API (as another HubSpot user or
integration would), then read back through the connector; webhooks the sandbox
signs and delivers are verified and normalized by the connector's receiver. The
module stays far under the sandbox's 100 calls per 10 s.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import pytest
from flask import Flask, Response

from local.memory import MemoryCallBudget, MemorySecretStore
from local.sandboxes.base import SandboxServer, received_webhook
from local.sandboxes.hubspot import HubSpotSandbox, HubSpotSandboxConfig
from shared.connectors.hubspot.connector import (
    HubSpotCrm,
    HubSpotWebhooks,
    build_hubspot,
    hubspot_webhooks,
)
from shared.models import ChangeKind, ObjectType
from shared.ports import InboundWebhook

SECRET_ID = "crmsync/sandbox/hubspot"
SEARCH_CAP = 250  # small, so a few hundred records cross it
PROPERTIES: dict[ObjectType, list[str]] = {
    ObjectType.CONTACT: ["email", "firstname", "lastname"],
    ObjectType.COMPANY: ["name", "domain"],
    ObjectType.DEAL: ["dealname", "amount", "dealstage"],
    ObjectType.LINE_ITEM: ["name", "quantity", "price"],
}
# HubSpot-defined association type ids [H6, H18; docs/vendors/hubspot.md].
DEAL_TO_CONTACT, DEAL_TO_PRIMARY_COMPANY, LINE_ITEM_TO_DEAL = 3, 5, 20


@dataclass
class Receiver:
    """Our webhook endpoint: records each delivery as the sandbox sent it."""

    received: list[InboundWebhook] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Flask:
        app = Flask("hubspot-receiver")

        @app.post("/hooks/hubspot")
        def hook() -> Response:
            delivery = received_webhook()
            with self.lock:
                self.received.append(delivery)
            return Response(status=204)

        return app


@dataclass
class Env:
    sandbox: HubSpotSandbox
    api: httpx.Client
    crm: HubSpotCrm
    webhooks: HubSpotWebhooks
    receiver: Receiver

    def create(self, path: str, properties: dict[str, Any], *links: tuple[str, int]) -> str:
        associations = [
            {"to": {"id": to_id}, "types": [_spec(type_id)]} for to_id, type_id in links
        ]
        response = self.api.post(
            f"/crm/v3/objects/{path}",
            json={"properties": properties, "associations": associations},
        )
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def create_many(self, path: str, rows: list[dict[str, Any]]) -> list[str]:
        ids: list[str] = []
        for start in range(0, len(rows), 100):
            response = self.api.post(
                f"/crm/v3/objects/{path}/batch/create",
                json={"inputs": [{"properties": row} for row in rows[start : start + 100]]},
            )
            assert response.status_code == 201, response.text
            ids += [str(r["id"]) for r in response.json()["results"]]
        return ids

    def modified_ms(self, path: str, record_id: str) -> int:
        prop = "lastmodifieddate" if path == "contacts" else "hs_lastmodifieddate"
        response = self.api.get(f"/crm/v3/objects/{path}/{record_id}", params={"properties": prop})
        return int(datetime.fromisoformat(response.json()["properties"][prop]).timestamp() * 1000)


def _spec(type_id: int) -> dict[str, Any]:
    return {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    receiver = Receiver()
    hooks = SandboxServer(receiver.app(), 0).start()
    config = HubSpotSandboxConfig(
        webhook_url=f"{hooks.url}/hooks/hubspot",
        search_result_cap=SEARCH_CAP,
        signature_versions=("v1", "v3"),
    )
    sandbox = HubSpotSandbox(config)
    server = SandboxServer(sandbox.app, 0).start()
    secrets = MemorySecretStore(
        {SECRET_ID: {"access_token": config.access_token, "client_secret": config.client_secret}}
    )
    crm = build_hubspot(
        base_url=server.url,
        secrets=secrets,
        secret_id=SECRET_ID,
        budget=MemoryCallBudget(),
        connection_id="sandbox",
        properties=PROPERTIES,
        search_result_cap=SEARCH_CAP,
    )
    api = httpx.Client(
        base_url=server.url,
        headers={"Authorization": f"Bearer {config.access_token}"},
        timeout=10,
    )
    yield Env(sandbox, api, crm, hubspot_webhooks(secrets, SECRET_ID, 300), receiver)
    api.close()
    sandbox.close()
    server.stop()
    hooks.stop()


@pytest.fixture(autouse=True)
def fresh(env: Env) -> None:
    env.sandbox.wait_for_webhooks_idle()
    env.sandbox.reset()
    with env.receiver.lock:
        env.receiver.received.clear()


def test_given_a_contact_created_in_hubspot_when_fetched_then_its_properties_and_version(
    env: Env,
) -> None:
    contact_id = env.create(
        "contacts", {"email": "ann@example.com", "firstname": "Ann", "lastname": "Lee"}
    )
    record = env.crm.fetch(ObjectType.CONTACT, contact_id)
    assert record is not None
    assert (record.object_type, record.id) == (ObjectType.CONTACT, contact_id)
    assert record.properties["email"] == "ann@example.com"
    assert record.properties["lastname"] == "Lee"
    assert record.version == env.modified_ms("contacts", contact_id)


def test_given_a_deal_with_parties_and_line_items_when_fetched_then_all_come_with_it(
    env: Env,
) -> None:
    contact_id = env.create("contacts", {"email": "bo@example.com"})
    company_id = env.create("companies", {"name": "Acme", "domain": "acme.example"})
    deal_id = env.create(
        "deals",
        {"dealname": "Website", "dealstage": "closedwon", "pipeline": "default"},
        (contact_id, DEAL_TO_CONTACT),
        (company_id, DEAL_TO_PRIMARY_COMPANY),
    )
    items = [
        env.create(
            "line_items",
            {"name": name, "quantity": "2", "price": price},
            (deal_id, LINE_ITEM_TO_DEAL),
        )
        for name, price in (("Design", "500"), ("Build", "1200.50"), ("Hosting", "0"))
    ]
    record = env.crm.fetch(ObjectType.DEAL, deal_id)
    assert record is not None
    assert record.properties["dealname"] == "Website"
    # The primary company is listed under two association types; it counts once.
    assert record.associations == {
        ObjectType.CONTACT: [contact_id],
        ObjectType.COMPANY: [company_id],
    }
    children = record.children[ObjectType.LINE_ITEM]
    assert [c.id for c in children] == items
    assert [(c.properties["name"], c.properties["price"]) for c in children] == [
        ("Design", "500"),
        ("Build", "1200.50"),
        ("Hosting", "0"),
    ]
    assert children[1].version == env.modified_ms("line_items", items[1])


def test_given_a_deleted_or_unknown_deal_when_fetched_then_none(env: Env) -> None:
    deal_id = env.create("deals", {"dealname": "Gone", "dealstage": "appointmentscheduled"})
    assert env.api.delete(f"/crm/v3/objects/deals/{deal_id}").status_code == 204
    assert env.crm.fetch(ObjectType.DEAL, deal_id) is None
    assert env.crm.fetch(ObjectType.DEAL, "999999999") is None


def test_given_more_changes_than_the_search_cap_when_listed_then_each_comes_once_in_order(
    env: Env,
) -> None:
    rows = [{"email": f"p{n}@example.com", "firstname": f"P{n}"} for n in range(320)]
    ids = env.create_many("contacts", rows)
    records = list(env.crm.changed_since(ObjectType.CONTACT, 0))
    assert sorted(r.id for r in records) == sorted(ids)
    versions = [r.version for r in records]
    assert versions == sorted(versions)


def test_given_changed_deals_when_listed_then_they_carry_their_line_items(env: Env) -> None:
    deal_id = env.create("deals", {"dealname": "Retainer", "dealstage": "closedwon"})
    item_id = env.create(
        "line_items",
        {"name": "Support", "quantity": "1", "price": "90"},
        (deal_id, LINE_ITEM_TO_DEAL),
    )
    since = env.modified_ms("deals", deal_id)
    (record,) = env.crm.changed_since(ObjectType.DEAL, since)
    assert record.id == deal_id
    assert [c.id for c in record.children[ObjectType.LINE_ITEM]] == [item_id]


def test_given_hubspot_signed_deliveries_when_received_then_they_verify_and_normalize(
    env: Env,
) -> None:
    contact_id = env.create("contacts", {"email": "cy@example.com"})
    deal_id = env.create(
        "deals", {"dealname": "Hooked", "dealstage": "closedwon"}, (contact_id, DEAL_TO_CONTACT)
    )
    assert env.sandbox.wait_for_webhooks_idle()
    with env.receiver.lock:
        deliveries = list(env.receiver.received)
    assert deliveries
    events = []
    for delivery in deliveries:
        assert "x-hubspot-signature-v3" in delivery.headers
        env.webhooks.verify(delivery)
        events += env.webhooks.normalize(delivery, "sandbox")
    changes = {(e.object_type, e.record_id, e.kind) for e in events}
    assert (ObjectType.CONTACT, contact_id, ChangeKind.CREATED) in changes
    assert (ObjectType.DEAL, deal_id, ChangeKind.CREATED) in changes
    assert (ObjectType.DEAL, deal_id, ChangeKind.ASSOCIATION) in changes
    assert len({e.event_id for e in events}) == len(events)
