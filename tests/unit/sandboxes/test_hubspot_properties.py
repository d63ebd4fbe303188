"""The HubSpot sandbox's Properties API, and record writes validated against it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from flask import Flask, Response

from local.sandboxes.base import SandboxServer
from local.sandboxes.hubspot import HubSpotSandbox, HubSpotSandboxConfig

TOKEN = "pat-properties-test"
PROPERTIES = "/crm/v3/properties"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class Env:
    sandbox: HubSpotSandbox
    client: httpx.Client


@pytest.fixture(scope="module")
def receiver() -> Iterator[str]:
    """A webhook target that takes every delivery."""
    app = Flask("receiver")
    app.add_url_rule("/hook", "hook", lambda: Response(status=204), methods=["POST"])
    server = SandboxServer(app).start()
    yield f"{server.url}/hook"
    server.stop()


@pytest.fixture(scope="module")
def started(receiver: str) -> Iterator[Env]:
    config = HubSpotSandboxConfig(
        access_token=TOKEN,
        rate_limit=10_000,
        webhook_url=receiver,
        webhook_batch_window_s=0.01,
        custom_properties={"deals": ["qbo_invoice_id"]},
    )
    sandbox = HubSpotSandbox(config)
    server = SandboxServer(sandbox.app).start()
    client = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    )
    yield Env(sandbox, client)
    client.close()
    server.stop()
    sandbox.close()


@pytest.fixture
def env(started: Env) -> Env:
    started.sandbox.wait_for_webhooks_idle()
    started.sandbox.reset()
    return started


def definition(name: str, kind: str, field_type: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "label": name.replace("_", " "),
        "type": kind,
        "fieldType": field_type,
        "groupName": "dealinformation",
        **extra,
    }


def options(*values: str) -> list[dict[str, Any]]:
    return [{"label": v.title(), "value": v, "hidden": False} for v in values]


def create(env: Env, body: dict[str, Any], object_type: str = "deals") -> httpx.Response:
    return env.client.post(f"{PROPERTIES}/{object_type}", json=body)


def new_deal(env: Env, **properties: str) -> httpx.Response:
    return env.client.post("/crm/v3/objects/deals", json={"properties": properties})


def refused(response: httpx.Response) -> list[dict[str, Any]]:
    """The problems of a 400 ``VALIDATION_ERROR`` "Property values were not valid"."""
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["category"] == "VALIDATION_ERROR"
    prefix = "Property values were not valid: "
    assert body["message"].startswith(prefix)
    problems: list[dict[str, Any]] = json.loads(body["message"].removeprefix(prefix))
    assert [e["code"] for e in body["errors"]] == [p["error"] for p in problems]
    return problems


# --- the Properties API ---------------------------------------------------------------------


def test_built_in_properties_are_listed_with_their_types(env: Env) -> None:
    response = env.client.get(f"{PROPERTIES}/deals")

    assert response.status_code == 200
    listed = {p["name"]: p for p in response.json()["results"]}
    kinds = {n: (p["type"], p["fieldType"]) for n, p in listed.items()}
    assert kinds["dealname"] == ("string", "text")
    assert kinds["amount"] == ("number", "number")
    assert kinds["closedate"] == ("datetime", "date")
    assert kinds["dealstage"] == ("enumeration", "radio")
    assert listed["dealname"]["hubspotDefined"] is True
    assert listed["hs_lastmodifieddate"]["modificationMetadata"]["readOnlyValue"] is True
    assert listed["qbo_invoice_id"]["hubspotDefined"] is False  # the account's own
    # Listed means stored: every one of them reads back on a record.
    deal = new_deal(env, dealname="Listed").json()["id"]
    read = env.client.get(f"/crm/v3/objects/deals/{deal}", params={"properties": ",".join(listed)})
    assert set(read.json()["properties"]) == set(listed)


def test_a_created_property_is_listed_read_and_writable(env: Env) -> None:
    body = definition("crmsync_status", "enumeration", "select", options=options("open", "paid"))

    response = create(env, body)

    assert response.status_code == 201
    made = response.json()
    assert (made["name"], made["type"], made["fieldType"]) == (
        "crmsync_status",
        "enumeration",
        "select",
    )
    assert [o["value"] for o in made["options"]] == ["open", "paid"]
    assert made["hubspotDefined"] is False
    assert env.client.get(f"{PROPERTIES}/deals/crmsync_status").json()["label"] == "crmsync status"
    names = [p["name"] for p in env.client.get(f"{PROPERTIES}/deals").json()["results"]]
    assert "crmsync_status" in names
    assert new_deal(env, dealname="D", crmsync_status="paid").status_code == 201
    # Properties belong to one object type.
    companies = env.client.get(f"{PROPERTIES}/companies").json()["results"]
    assert "crmsync_status" not in {p["name"] for p in companies}


@pytest.mark.parametrize("name", ["crmsync_status", "dealname"])
def test_a_taken_name_is_a_409(env: Env, name: str) -> None:
    assert create(env, definition("crmsync_status", "string", "text")).status_code == 201

    response = create(env, definition(name, "number", "number"))

    assert response.status_code == 409
    assert response.json()["category"] == "OBJECT_ALREADY_EXISTS"


@pytest.mark.parametrize(
    "body",
    [
        definition("Crmsync Status", "string", "text"),
        definition("1st_status", "string", "text"),
        definition("x" * 101, "string", "text"),
        definition("crmsync_money", "money", "number"),
        definition("crmsync_total", "number", "select"),
        definition("crmsync_due", "date", "text"),
        definition("crmsync_status", "enumeration", "select"),
        definition("crmsync_status", "enumeration", "select", options=options("a", "a")),
        definition(
            "crmsync_status", "enumeration", "select", options=[{"label": "A", "value": "a"}]
        ),
        definition("crmsync_note", "string", "text", groupName="nogroup"),
        {
            key: v
            for key, v in definition("crmsync_note", "string", "text").items()
            if key != "groupName"
        },
    ],
    ids=[
        "spaces",
        "digit-first",
        "too-long",
        "unknown-type",
        "field-type-for-another-type",
        "date-as-text",
        "enumeration-without-options",
        "duplicate-option",
        "option-without-hidden",
        "unknown-group",
        "no-group",
    ],
)
def test_an_invalid_definition_is_a_400(env: Env, body: dict[str, Any]) -> None:
    response = create(env, body)

    assert response.status_code == 400
    assert response.json()["category"] == "VALIDATION_ERROR"
    assert env.client.get(f"{PROPERTIES}/deals/{body['name']}").status_code == 404


def test_groups_are_listed_created_once_and_hold_properties(env: Env) -> None:
    groups = env.client.get(f"{PROPERTIES}/deals/groups").json()["results"]
    assert [g["name"] for g in groups] == ["dealinformation"]

    made = env.client.post(
        f"{PROPERTIES}/deals/groups", json={"name": "crmsync", "label": "crmsync"}
    )
    again = env.client.post(f"{PROPERTIES}/deals/groups", json={"name": "crmsync", "label": "x"})

    assert made.status_code == 201 and made.json()["name"] == "crmsync"
    assert again.status_code == 409 and again.json()["category"] == "OBJECT_ALREADY_EXISTS"
    assert env.client.get(f"{PROPERTIES}/deals/groups/crmsync").json()["label"] == "crmsync"
    assert env.client.get(f"{PROPERTIES}/deals/groups/none").status_code == 404
    in_group = definition("crmsync_note", "string", "text", groupName="crmsync")
    assert create(env, in_group).json()["groupName"] == "crmsync"


def test_a_custom_definition_can_be_patched_a_built_in_cannot(env: Env) -> None:
    create(env, definition("crmsync_status", "enumeration", "select", options=options("open")))

    patched = env.client.patch(
        f"{PROPERTIES}/deals/crmsync_status",
        json={"label": "Status", "options": options("open", "void")},
    )
    built_in = env.client.patch(f"{PROPERTIES}/deals/dealname", json={"label": "Name"})

    assert patched.status_code == 200
    assert patched.json()["label"] == "Status"
    assert new_deal(env, dealname="D", crmsync_status="void").status_code == 201
    assert built_in.status_code == 400
    assert env.client.patch(f"{PROPERTIES}/deals/nothing", json={"label": "x"}).status_code == 404


def test_reset_forgets_created_properties_but_not_the_accounts_own(env: Env) -> None:
    create(env, definition("crmsync_note", "string", "text"))

    env.sandbox.reset()

    assert env.client.get(f"{PROPERTIES}/deals/crmsync_note").status_code == 404
    assert env.client.get(f"{PROPERTIES}/deals/qbo_invoice_id").status_code == 200


# --- record writes validated against the properties -----------------------------------------


def test_an_unknown_property_is_refused_as_hubspot_documents(env: Env) -> None:
    response = new_deal(env, dealname="D", crmsync_nothing="x")

    problems = refused(response)
    assert [(p["name"], p["error"]) for p in problems] == [
        ("crmsync_nothing", "PROPERTY_DOESNT_EXIST")
    ]
    assert problems[0]["portalId"] == env.sandbox.config.portal_id
    assert response.json()["errors"][0]["context"] == {"propertyName": ["crmsync_nothing"]}
    assert env.sandbox.records("deals") == []


@pytest.mark.parametrize(
    ("kind", "field_type", "value", "error"),
    [
        ("number", "number", "twelve", "INVALID_FLOAT"),
        ("number", "number", " 12", "LEADING_TRAILING_WHITESPACE"),
        ("date", "date", "2026-03-01T10:00:00Z", "INVALID_DATE"),
        ("date", "date", "1772359200000", "INVALID_DATE"),  # 2026-03-01 10:00 UTC
        ("date", "date", "next tuesday", "INVALID_DATE"),
        ("datetime", "date", "soon", "INVALID_DATE"),
        ("enumeration", "select", "maybe", "INVALID_OPTION"),
        ("enumeration", "checkbox", "open;maybe", "INVALID_OPTION"),
        ("bool", "booleancheckbox", "yes", "INVALID_BOOLEAN"),
    ],
)
def test_a_value_its_property_does_not_take_is_refused(
    env: Env, kind: str, field_type: str, value: str, error: str
) -> None:
    extra = {"options": options("open", "paid")} if kind == "enumeration" else {}
    create(env, definition("crmsync_field", kind, field_type, **extra))

    problems = refused(new_deal(env, dealname="D", crmsync_field=value))

    assert [(p["name"], p["error"]) for p in problems] == [("crmsync_field", error)]


@pytest.mark.parametrize(
    ("kind", "field_type", "value", "stored"),
    [
        ("number", "number", "12.50", "12.50"),
        ("date", "date", "2026-03-01", "2026-03-01"),
        ("date", "date", "2026-03-01T00:00:00Z", "2026-03-01"),
        ("date", "date", "1772323200000", "2026-03-01"),  # midnight UTC in epoch ms
        ("datetime", "date", "1772359200000", "2026-03-01T10:00:00.000Z"),
        ("enumeration", "select", "paid", "paid"),
        ("enumeration", "checkbox", "open;paid", "open;paid"),
        ("bool", "booleancheckbox", "TRUE", "true"),
        ("string", "textarea", "two\nlines", "two\nlines"),
    ],
)
def test_a_value_in_a_documented_format_is_stored(
    env: Env, kind: str, field_type: str, value: str, stored: str
) -> None:
    extra = {"options": options("open", "paid")} if kind == "enumeration" else {}
    create(env, definition("crmsync_field", kind, field_type, **extra))

    deal = new_deal(env, dealname="D", crmsync_field=value)

    assert deal.status_code == 201, deal.text
    read = env.client.get(
        f"/crm/v3/objects/deals/{deal.json()['id']}", params={"properties": "crmsync_field"}
    )
    assert read.json()["properties"]["crmsync_field"] == stored


def test_an_empty_string_clears_a_property(env: Env) -> None:
    create(env, definition("crmsync_total", "number", "number"))
    deal = new_deal(env, dealname="D", crmsync_total="5").json()["id"]

    response = env.client.patch(
        f"/crm/v3/objects/deals/{deal}", json={"properties": {"crmsync_total": ""}}
    )

    assert response.status_code == 200
    read = env.client.get(f"/crm/v3/objects/deals/{deal}", params={"properties": "crmsync_total"})
    assert read.json()["properties"]["crmsync_total"] is None


def test_search_compares_a_custom_number_as_a_number(env: Env) -> None:
    create(env, definition("crmsync_total", "number", "number"))
    for total in ("9", "10", "100"):
        new_deal(env, dealname=total, crmsync_total=total)

    found = env.client.post(
        "/crm/v3/objects/deals/search",
        json={
            "filterGroups": [
                {"filters": [{"propertyName": "crmsync_total", "operator": "GT", "value": "9"}]}
            ],
            "properties": ["dealname"],
        },
    )

    assert sorted(r["properties"]["dealname"] for r in found.json()["results"]) == ["10", "100"]


def test_an_apps_write_is_announced_as_the_integrations_at_the_records_time(env: Env) -> None:
    create(env, definition("crmsync_note", "string", "text"))
    deal = new_deal(env, dealname="D").json()["id"]
    env.sandbox.wait_for_webhooks_idle()
    env.sandbox.ui_update("deals", deal, {"dealname": "By hand"})

    written = env.client.patch(
        f"/crm/v3/objects/deals/{deal}", json={"properties": {"crmsync_note": "INV-1"}}
    )

    assert env.sandbox.wait_for_webhooks_idle()
    events = [e for d in env.sandbox.deliveries for e in json.loads(d.body)]
    changes = {
        e["propertyName"]: e for e in events if e["subscriptionType"] == "deal.propertyChange"
    }
    ours, theirs = changes["crmsync_note"], changes["dealname"]
    assert ours["changeSource"] == "INTEGRATION"
    assert ours["sourceId"] == str(env.sandbox.config.app_id)
    assert ours["propertyValue"] == "INV-1"
    updated_at = datetime.fromisoformat(written.json()["updatedAt"])
    assert ours["occurredAt"] == (updated_at - EPOCH) // timedelta(milliseconds=1)
    assert theirs["changeSource"] == "CRM_UI" and "sourceId" not in theirs
