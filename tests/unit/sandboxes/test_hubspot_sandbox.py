"""The HubSpot sandbox behaves like HubSpot's documented API, over real HTTP."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from flask import Flask, Response, request

from local.sandboxes.base import SandboxServer
from local.sandboxes.hubspot import (
    HubSpotSandbox,
    HubSpotSandboxConfig,
    create_app,
    sign_v1,
    sign_v2,
    sign_v3,
)

TOKEN = "pat-test-token"
SECRET = "test-client-secret"
RATE_HEADERS = (
    "X-HubSpot-RateLimit-Max",
    "X-HubSpot-RateLimit-Remaining",
    "X-HubSpot-RateLimit-Interval-Milliseconds",
)


class FakeClock:
    """Epoch seconds that only move when a test says so."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Env:
    sandbox: HubSpotSandbox
    client: httpx.Client
    clock: FakeClock
    url: str


@pytest.fixture(scope="module")
def servers() -> Iterator[list[SandboxServer]]:
    """Servers stop together at the end: each stop waits out a 0.5 s serve_forever poll."""
    started: list[SandboxServer] = []
    yield started
    with ThreadPoolExecutor() as pool:
        list(pool.map(SandboxServer.stop, started))


@pytest.fixture
def make_env(servers: list[SandboxServer]) -> Iterator[Callable[..., Env]]:
    opened: list[tuple[HubSpotSandbox, httpx.Client]] = []

    def make(**overrides: Any) -> Env:
        clock = FakeClock()
        config = HubSpotSandboxConfig(access_token=TOKEN, client_secret=SECRET, **overrides)
        sandbox = create_app(config, clock=clock)
        server = SandboxServer(sandbox.app).start()
        servers.append(server)
        client = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
        )
        opened.append((sandbox, client))
        return Env(sandbox, client, clock, server.url)

    yield make
    for sandbox, client in opened:
        client.close()
        sandbox.close()


@pytest.fixture
def env(make_env: Callable[..., Env]) -> Env:
    return make_env()


def create(env: Env, object_type: str, properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    response = env.client.post(
        f"/crm/v3/objects/{object_type}", json={"properties": properties, **extra}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def search(env: Env, object_type: str, body: dict[str, Any]) -> httpx.Response:
    env.clock.advance(1.0)  # stay under 5 searches per second
    return env.client.post(f"/crm/v3/objects/{object_type}/search", json=body)


# --- signatures ---------------------------------------------------------------------------

VECTOR_SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
VECTOR_BODY = "{'example_field':'example_value'}"
VECTOR_URL = "https://www.example.com/webhook_uri"


def test_signatures_match_hubspot_vectors() -> None:
    assert (
        sign_v1(VECTOR_SECRET, VECTOR_BODY)
        == "69fc6631a867edd4f9e9e627fc5c1148e3fbdd8b21837b6d2b8901c1fa57f750"
    )
    assert (
        sign_v2(VECTOR_SECRET, "POST", VECTOR_URL, VECTOR_BODY)
        == "4fe4e3a7d3cf09db53be39d0a58130e2aaba074ec123a9e355b876a689a1c383"
    )
    assert (
        sign_v2(VECTOR_SECRET, "GET", VECTOR_URL, "")
        == "eee2dddcc73c94d699f5e395f4b9d454a069a6855fbfa152e91e88823087200e"
    )
    assert (
        sign_v3(VECTOR_SECRET, "POST", VECTOR_URL, VECTOR_BODY, 1693657560000)
        == "K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y="
    )
    assert (
        sign_v3(VECTOR_SECRET, "POST", VECTOR_URL, VECTOR_BODY, 15000000)
        == "HPW73RUtKmcYoEDADG0s6MmGFWUzWJKAW07r8RDgcQw="
    )


def test_config_rejects_v1_with_v2() -> None:
    with pytest.raises(ValueError, match="share"):
        HubSpotSandboxConfig(signature_versions=("v1", "v2"))


# --- auth, CRUD, shapes -------------------------------------------------------------------


def test_missing_or_wrong_token_is_401(env: Env) -> None:
    missing = httpx.get(f"{env.url}/crm/v3/objects/contacts")
    wrong = httpx.get(
        f"{env.url}/crm/v3/objects/contacts", headers={"Authorization": "Bearer nope"}
    )
    for response in (missing, wrong):
        assert response.status_code == 401
        body = response.json()
        assert body["status"] == "error"
        assert body["category"] == "INVALID_AUTHENTICATION"
        assert body["message"] and body["correlationId"]
        assert "X-HubSpot-RateLimit-Remaining" not in response.headers


def test_create_then_read_returns_strings_and_default_properties(env: Env) -> None:
    created = create(env, "deals", {"dealname": "Big one", "amount": 1500, "pipeline": "default"})
    assert created["id"].isdigit()
    assert created["properties"]["amount"] == "1500"
    assert created["properties"]["hs_object_id"] == created["id"]
    assert created["archived"] is False

    got = env.client.get(f"/crm/v3/objects/deals/{created['id']}").json()
    props = got["properties"]
    assert set(props) >= {"dealname", "amount", "createdate", "hs_lastmodifieddate", "hs_object_id"}
    assert all(v is None or isinstance(v, str) for v in props.values())
    assert props["createdate"].endswith("Z") and got["createdAt"] == props["createdate"]
    assert props["dealstage"] is None  # a default property without a value is null

    contact = create(env, "contacts", {"email": "a@example.com", "firstname": "Ann"})
    contact_props = env.client.get(f"/crm/v3/objects/contacts/{contact['id']}").json()["properties"]
    assert {"email", "firstname", "lastname", "lastmodifieddate"} <= set(contact_props)
    assert "hs_lastmodifieddate" not in contact_props

    missing = env.client.get("/crm/v3/objects/deals/999999")
    assert missing.status_code == 404
    assert missing.json()["category"] == "OBJECT_NOT_FOUND"


def test_properties_accepted_comma_separated_and_repeated(env: Env) -> None:
    deal = create(env, "deals", {"dealname": "D", "amount": "10", "closedate": "2024-05-01"})
    path = f"/crm/v3/objects/deals/{deal['id']}"
    csv = env.client.get(path, params={"properties": "dealname,closedate,nonexistent"}).json()
    repeated = env.client.get(
        path, params=[("properties", "dealname"), ("properties", "closedate")]
    ).json()
    assert csv["properties"] == repeated["properties"]
    assert csv["properties"]["closedate"] == "2024-05-01T00:00:00.000Z"
    assert "amount" not in csv["properties"]
    assert "nonexistent" not in csv["properties"]


def test_list_pages_with_after_and_no_paging_on_last_page(env: Env) -> None:
    ids = [create(env, "companies", {"name": f"Co {i}"})["id"] for i in range(5)]
    first = env.client.get("/crm/v3/objects/companies", params={"limit": 2}).json()
    assert [r["id"] for r in first["results"]] == ids[:2]
    seen = [r["id"] for r in first["results"]]
    after = first["paging"]["next"]["after"]
    assert first["paging"]["next"]["link"].endswith(f"after={after}")
    while True:
        page = env.client.get(
            "/crm/v3/objects/companies", params={"limit": 2, "after": after}
        ).json()
        seen += [r["id"] for r in page["results"]]
        if "paging" not in page:
            break
        after = page["paging"]["next"]["after"]
    assert seen == ids
    default = env.client.get("/crm/v3/objects/companies").json()
    assert len(default["results"]) == 5 and "paging" not in default


def test_patch_updates_last_modified_and_history(env: Env) -> None:
    contact = create(env, "contacts", {"email": "b@example.com", "firstname": "Bo"})
    env.clock.advance(5)
    patched = env.client.patch(
        f"/crm/v3/objects/contacts/{contact['id']}", json={"properties": {"firstname": "Bob"}}
    )
    assert patched.status_code == 200
    body = patched.json()
    assert body["properties"]["firstname"] == "Bob"
    assert body["properties"]["lastmodifieddate"] > contact["properties"]["lastmodifieddate"]
    assert body["updatedAt"] > contact["updatedAt"]
    history = env.client.get(
        f"/crm/v3/objects/contacts/{contact['id']}",
        params={"propertiesWithHistory": "firstname"},
    ).json()["propertiesWithHistory"]["firstname"]
    assert [h["value"] for h in history] == ["Bob", "Bo"]

    read_only = env.client.patch(
        f"/crm/v3/objects/contacts/{contact['id']}", json={"properties": {"hs_object_id": "1"}}
    )
    assert read_only.status_code == 400 and "READ_ONLY_VALUE" in read_only.json()["message"]
    unknown = env.client.patch(
        f"/crm/v3/objects/contacts/{contact['id']}", json={"properties": {"shoe_size": "9"}}
    )
    assert unknown.status_code == 400 and "shoe_size" in unknown.json()["message"]


def test_custom_properties_are_writable_when_configured(make_env: Callable[..., Env]) -> None:
    env = make_env(custom_properties={"deals": ["qbo_invoice_id"]})
    deal = create(env, "deals", {"dealname": "D", "qbo_invoice_id": "42"})
    assert deal["properties"]["qbo_invoice_id"] == "42"


def test_delete_archives(env: Env) -> None:
    deal = create(env, "deals", {"dealname": "Gone"})
    path = f"/crm/v3/objects/deals/{deal['id']}"
    assert env.client.delete(path).status_code == 204
    assert env.client.get(path).status_code == 404
    archived = env.client.get(path, params={"archived": "true"}).json()
    assert archived["archived"] is True and "archivedAt" in archived
    assert env.client.get("/crm/v3/objects/deals").json()["results"] == []
    listed = env.client.get("/crm/v3/objects/deals", params={"archived": "true"}).json()
    assert [r["id"] for r in listed["results"]] == [deal["id"]]
    assert env.client.delete(path).status_code == 204  # archive is idempotent


def test_invalid_values_are_400_naming_the_property(env: Env) -> None:
    cases = [
        ("deals", {"dealname": "x", "amount": "lots"}, "amount"),
        ("line_items", {"name": "x", "quantity": "1", "price": "-5"}, "price"),
        ("line_items", {"name": "x", "quantity": "two", "price": "5"}, "quantity"),
        ("line_items", {"name": "x", "hs_discount_percentage": "ten"}, "hs_discount_percentage"),
        ("contacts", {"email": "not-an-email"}, "email"),
    ]
    for object_type, properties, name in cases:
        response = env.client.post(
            f"/crm/v3/objects/{object_type}", json={"properties": properties}
        )
        assert response.status_code == 400, (object_type, properties)
        body = response.json()
        assert body["category"] == "VALIDATION_ERROR"
        assert body["message"].startswith("Property values were not valid")
        assert f'"name": "{name}"' in body["message"]
    assert env.sandbox.records("deals") == []


def test_duplicate_contact_email_is_409_conflict(env: Env) -> None:
    first = create(env, "contacts", {"email": "dup@example.com"})
    again = env.client.post(
        "/crm/v3/objects/contacts", json={"properties": {"email": "DUP@example.com"}}
    )
    assert again.status_code == 409
    assert again.json()["category"] == "CONFLICT"
    assert again.json()["message"] == f"Contact already exists. Existing ID: {first['id']}"


def test_line_item_amount_is_calculated(env: Env) -> None:
    item = create(env, "line_items", {"name": "Widget", "quantity": "3", "price": "10.50"})
    assert item["properties"]["amount"] == "31.5"
    path = f"/crm/v3/objects/line_items/{item['id']}"
    patched = env.client.patch(path, json={"properties": {"discount": "0.5", "amount": "999"}})
    assert patched.json()["properties"]["amount"] == "30"  # 3 x (10.50 - 0.50)
    assert patched.json()["properties"]["hs_total_discount"] == "1.5"
    percent = env.client.patch(
        path, json={"properties": {"discount": None, "hs_discount_percentage": "10"}}
    )
    assert percent.json()["properties"]["amount"] == "28.35"


# --- batch --------------------------------------------------------------------------------


def test_batch_endpoints(env: Env) -> None:
    created = env.client.post(
        "/crm/v3/objects/contacts/batch/create",
        json={"inputs": [{"properties": {"email": f"c{i}@example.com"}} for i in range(3)]},
    )
    assert created.status_code == 201
    body = created.json()
    assert body["status"] == "COMPLETE" and body["startedAt"] and body["completedAt"]
    ids = [r["id"] for r in body["results"]]

    read = env.client.post(
        "/crm/v3/objects/contacts/batch/read",
        json={"inputs": [{"id": ids[0]}, {"id": "424242"}], "properties": ["email"]},
    )
    assert read.status_code == 207
    partial = read.json()
    assert [r["properties"]["email"] for r in partial["results"]] == ["c0@example.com"]
    assert partial["numErrors"] == 1
    assert partial["errors"][0]["category"] == "OBJECT_NOT_FOUND"
    assert partial["errors"][0]["context"] == {"ids": ["424242"]}

    full = env.client.post(
        "/crm/v3/objects/contacts/batch/read", json={"inputs": [{"id": i} for i in ids]}
    )
    assert full.status_code == 200 and "errors" not in full.json()

    mixed = env.client.post(
        "/crm/v3/objects/contacts/batch/create",
        json={"inputs": [{"properties": {"email": "c0@example.com"}}, {"properties": {}}]},
    )
    assert mixed.status_code == 207
    assert mixed.json()["errors"][0]["category"] == "CONFLICT"
    assert len(mixed.json()["results"]) == 1

    updated = env.client.post(
        "/crm/v3/objects/contacts/batch/update",
        json={"inputs": [{"id": ids[1], "properties": {"firstname": "Cy"}}]},
    )
    assert updated.status_code == 200
    assert updated.json()["results"][0]["properties"]["firstname"] == "Cy"

    too_many = env.client.post(
        "/crm/v3/objects/contacts/batch/read", json={"inputs": [{"id": "1"}] * 101}
    )
    assert too_many.status_code == 400
    history_cap = env.client.post(
        "/crm/v3/objects/contacts/batch/read",
        json={"inputs": [{"id": "1"}] * 51, "propertiesWithHistory": ["email"]},
    )
    assert history_cap.status_code == 400 and "50" in history_cap.json()["message"]


# --- search -------------------------------------------------------------------------------


def test_search_filters_sorts_and_paging(env: Env) -> None:
    amounts = [50, 150, 250, 350]
    deals = [
        create(env, "deals", {"dealname": f"Deal {a}", "amount": a, "dealstage": "won"})
        for a in amounts
    ]
    create(env, "deals", {"dealname": "No amount"})
    gt = search(
        env,
        "deals",
        {
            "filterGroups": [
                {"filters": [{"propertyName": "amount", "operator": "GT", "value": 100}]}
            ],
            "sorts": [{"propertyName": "amount", "direction": "DESCENDING"}],
            "properties": ["amount"],
        },
    ).json()
    assert gt["total"] == 3
    assert [r["properties"]["amount"] for r in gt["results"]] == ["350", "250", "150"]
    assert "paging" not in gt

    either = search(
        env,
        "deals",
        {
            "filterGroups": [
                {"filters": [{"propertyName": "amount", "operator": "EQ", "value": "50"}]},
                {"filters": [{"propertyName": "amount", "operator": "IN", "values": ["350"]}]},
            ],
            "sorts": ["-amount"],
        },
    ).json()
    assert [r["id"] for r in either["results"]] == [deals[3]["id"], deals[0]["id"]]

    missing = search(
        env,
        "deals",
        {
            "filterGroups": [
                {"filters": [{"propertyName": "amount", "operator": "NOT_HAS_PROPERTY"}]}
            ]
        },
    ).json()
    assert [r["properties"]["dealname"] for r in missing["results"]] == ["No amount"]

    created_ms = int(env.clock.now * 1000)
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(env.clock.now + 60))
    between = search(
        env,
        "deals",
        {
            "filterGroups": [
                {
                    "filters": [
                        {
                            "propertyName": "hs_lastmodifieddate",
                            "operator": "BETWEEN",
                            "value": created_ms - 60_000,
                            "highValue": iso,
                        }
                    ]
                }
            ]
        },
    ).json()
    assert between["total"] == 5

    token = search(
        env,
        "deals",
        {
            "filterGroups": [
                {
                    "filters": [
                        {"propertyName": "dealname", "operator": "CONTAINS_TOKEN", "value": "250"}
                    ]
                }
            ]
        },
    ).json()
    assert [r["id"] for r in token["results"]] == [deals[2]["id"]]

    page1 = search(env, "deals", {"limit": 2, "sorts": ["amount"]}).json()
    assert page1["total"] == 5 and len(page1["results"]) == 2
    page2 = search(
        env, "deals", {"limit": 2, "sorts": ["amount"], "after": page1["paging"]["next"]["after"]}
    ).json()
    assert [r["properties"]["amount"] for r in page2["results"]] == ["250", "350"]


def test_search_limits(make_env: Callable[..., Env]) -> None:
    env = make_env(search_result_cap=3)
    for i in range(5):
        env.sandbox.ui_create("contacts", {"email": f"s{i}@example.com"})
    assert search(env, "contacts", {"limit": 201}).status_code == 400
    capped = search(env, "contacts", {"limit": 2, "after": "2"}).json()
    assert capped["total"] == 5
    assert len(capped["results"]) == 1 and "paging" not in capped
    past = search(env, "contacts", {"limit": 2, "after": "3"})
    assert past.status_code == 400 and past.json()["category"] == "VALIDATION_ERROR"
    too_many_groups = {
        "filterGroups": [
            {"filters": [{"propertyName": "email", "operator": "HAS_PROPERTY"}]} for _ in range(6)
        ]
    }
    assert search(env, "contacts", too_many_groups).status_code == 400
    bad_operator = {"filterGroups": [{"filters": [{"propertyName": "email", "operator": "LIKE"}]}]}
    assert search(env, "contacts", bad_operator).status_code == 400


def test_search_rate_limit_is_5_per_second_without_headers(env: Env) -> None:
    env.clock.advance(1)
    responses = [env.client.post("/crm/v3/objects/contacts/search", json={}) for _ in range(6)]
    assert [r.status_code for r in responses] == [200] * 5 + [429]
    limited = responses[-1].json()
    assert limited["errorType"] == "RATE_LIMIT" and limited["policyName"] == "SECONDLY"
    for response in responses:
        assert not any(h in response.headers for h in RATE_HEADERS)
    env.clock.advance(1)
    assert env.client.post("/crm/v3/objects/contacts/search", json={}).status_code == 200


def test_search_sees_writes_only_after_the_visibility_lag(make_env: Callable[..., Env]) -> None:
    env = make_env(search_visibility_lag_s=2.0)
    contact = create(env, "contacts", {"email": "lag@example.com", "firstname": "Old"})
    env.clock.advance(0.5)
    assert env.client.post("/crm/v3/objects/contacts/search", json={}).json()["total"] == 0
    env.clock.advance(2)
    body = env.client.post("/crm/v3/objects/contacts/search", json={}).json()
    assert body["total"] == 1
    env.client.patch(
        f"/crm/v3/objects/contacts/{contact['id']}", json={"properties": {"firstname": "New"}}
    )
    env.clock.advance(1)
    stale = env.client.post("/crm/v3/objects/contacts/search", json={}).json()
    assert stale["results"][0]["properties"]["firstname"] == "Old"
    env.clock.advance(1.5)
    fresh = env.client.post("/crm/v3/objects/contacts/search", json={}).json()
    assert fresh["results"][0]["properties"]["firstname"] == "New"


# --- rate limits --------------------------------------------------------------------------


def test_burst_limit_headers_and_429_body(make_env: Callable[..., Env]) -> None:
    env = make_env(rate_limit=3)
    responses = [env.client.get("/crm/v3/objects/contacts") for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert [r.headers["X-HubSpot-RateLimit-Remaining"] for r in responses] == ["2", "1", "0", "0"]
    assert responses[0].headers["X-HubSpot-RateLimit-Max"] == "3"
    assert responses[0].headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
    body = responses[-1].json()
    assert set(body) == {"status", "message", "errorType", "correlationId", "policyName"}
    assert body["status"] == "error"
    assert body["message"] == "You have reached your ten_secondly_rolling limit."
    assert body["errorType"] == "RATE_LIMIT" and body["policyName"] == "TEN_SECONDLY_ROLLING"
    assert "Retry-After" not in responses[-1].headers
    search_limited = env.client.post("/crm/v3/objects/contacts/search", json={})
    assert search_limited.status_code == 429
    assert search_limited.json()["policyName"] == "TEN_SECONDLY_ROLLING"
    assert not any(h in search_limited.headers for h in RATE_HEADERS)
    env.clock.advance(10)
    assert env.client.get("/crm/v3/objects/contacts").status_code == 200


def test_daily_limit(make_env: Callable[..., Env]) -> None:
    env = make_env(daily_limit=2)
    statuses = [env.client.get("/crm/v3/objects/deals").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    limited = env.client.get("/crm/v3/objects/deals")
    assert limited.json()["policyName"] == "DAILY"
    assert limited.headers["X-HubSpot-RateLimit-Daily-Remaining"] == "0"
    env.clock.advance(86_400)
    assert env.client.get("/crm/v3/objects/deals").status_code == 200


# --- associations -------------------------------------------------------------------------


def test_associations_on_create_and_through_v4(env: Env) -> None:
    contact = create(env, "contacts", {"email": "link@example.com"})
    company = create(env, "companies", {"name": "Acme"})
    deal = create(
        env,
        "deals",
        {"dealname": "Linked"},
        associations=[
            {
                "to": {"id": contact["id"]},
                "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 3}],
            },
            {
                "to": {"id": company["id"]},
                "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 5}],
            },
        ],
    )
    read = env.client.get(
        f"/crm/v3/objects/deals/{deal['id']}", params={"associations": "contacts,companies"}
    ).json()
    assert read["associations"]["contacts"]["results"] == [
        {"id": contact["id"], "type": "deal_to_contact"}
    ]
    assert {r["type"] for r in read["associations"]["companies"]["results"]} == {
        "deal_to_company",
        "deal_to_company_unlabeled",
    }

    reverse = env.client.get(f"/crm/v4/objects/contacts/{contact['id']}/associations/deals").json()
    assert reverse["results"] == [
        {
            "toObjectId": deal["id"],
            "associationTypes": [{"category": "HUBSPOT_DEFINED", "typeId": 4, "label": None}],
        }
    ]
    primary = env.client.get(f"/crm/v4/objects/company/{company['id']}/associations/deal").json()
    assert {t["typeId"]: t["label"] for t in primary["results"][0]["associationTypes"]} == {
        6: "Primary",
        342: None,
    }

    item = create(env, "line_items", {"name": "Widget", "quantity": "1", "price": "5"})
    put = env.client.put(
        f"/crm/v4/objects/line_items/{item['id']}/associations/default/deals/{deal['id']}"
    )
    assert put.status_code == 200 and put.json()["status"] == "COMPLETE"
    items = env.client.get(f"/crm/v4/objects/deals/{deal['id']}/associations/line_items").json()
    assert items["results"][0]["toObjectId"] == item["id"]
    assert items["results"][0]["associationTypes"][0]["typeId"] == 19

    bad = env.client.post(
        "/crm/v3/objects/deals",
        json={
            "properties": {"dealname": "x"},
            "associations": [
                {
                    "to": {"id": "999999"},
                    "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 3}],
                }
            ],
        },
    )
    assert bad.status_code == 400

    removed = env.client.delete(
        f"/crm/v4/objects/deals/{deal['id']}/associations/contacts/{contact['id']}"
    )
    assert removed.status_code == 204
    after = env.client.get(f"/crm/v4/objects/contacts/{contact['id']}/associations/deals")
    assert after.json()["results"] == []


# --- webhooks -----------------------------------------------------------------------------


@dataclass
class Receiver:
    """A webhook endpoint that checks both signatures the way the docs describe."""

    fail_first: int = 0
    slow_first_s: float = 0.0
    calls: list[dict[str, Any]] = field(default_factory=list)
    server: SandboxServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"{self.server.url}/hooks"

    def start(self) -> Receiver:
        app = Flask("receiver")

        @app.post("/hooks")
        def hook() -> Response:
            raw = request.get_data(as_text=True)
            headers = request.headers
            timestamp = headers.get("X-HubSpot-Request-Timestamp", "0")
            v1 = hashlib.sha256(f"{SECRET}{raw}".encode()).hexdigest()
            v3 = base64.b64encode(
                hmac.new(
                    SECRET.encode(), f"POST{self.url}{raw}{timestamp}".encode(), hashlib.sha256
                ).digest()
            ).decode()
            call = {
                "events": json.loads(raw),
                "v1_ok": hmac.compare_digest(v1, headers.get("X-HubSpot-Signature", "")),
                "v1_version": headers.get("X-HubSpot-Signature-Version"),
                "v3_ok": hmac.compare_digest(v3, headers.get("X-HubSpot-Signature-v3", "")),
                "fresh": abs(time.time() * 1000 - int(timestamp)) < 300_000,
            }
            self.calls.append(call)
            if len(self.calls) <= self.fail_first:
                time.sleep(self.slow_first_s)
                return Response("nope", status=500)
            return Response(status=204)

        self.server = SandboxServer(app).start()
        return self


@pytest.fixture
def receiver(servers: list[SandboxServer]) -> Callable[..., Receiver]:
    def start(**kwargs: Any) -> Receiver:
        r = Receiver(**kwargs).start()
        assert r.server is not None
        servers.append(r.server)
        return r

    return start


def test_webhooks_are_signed_and_retried_with_attempt_number(
    make_env: Callable[..., Env], receiver: Callable[..., Receiver]
) -> None:
    hook = receiver(fail_first=1)
    env = make_env(webhook_url=hook.url, webhook_retry_delays_s=[0.05, 0.05])
    contact = create(env, "contacts", {"email": "w@example.com"})
    assert env.sandbox.wait_for_webhooks_idle(5)
    env.client.patch(
        f"/crm/v3/objects/deals/{create(env, 'deals', {'dealname': 'W'})['id']}",
        json={"properties": {"dealname": "W2", "amount": "7"}},
    )
    env.client.put(
        f"/crm/v4/objects/contacts/{contact['id']}/associations/default/companies/"
        f"{create(env, 'companies', {'name': 'C'})['id']}"
    )
    assert env.sandbox.wait_for_webhooks_idle(5)

    assert all(c["v1_ok"] and c["v3_ok"] and c["fresh"] for c in hook.calls)
    assert all(c["v1_version"] == "v1" for c in hook.calls)
    first, retry = hook.calls[0]["events"], hook.calls[1]["events"]
    assert [e["attemptNumber"] for e in first] == [0]
    assert [e["attemptNumber"] for e in retry] == [1]
    assert first[0]["eventId"] == retry[0]["eventId"]
    assert first[0]["subscriptionType"] == "contact.creation"
    assert first[0]["changeFlag"] == "NEW" and first[0]["objectId"] == int(contact["id"])
    assert env.sandbox.deliveries[0].attempts == [500, 204]
    assert env.sandbox.deliveries[0].delivered

    later = [e for c in hook.calls[2:] for e in c["events"]]
    changes = {
        e["propertyName"]: e["propertyValue"]
        for e in later
        if e["subscriptionType"] == "deal.propertyChange"
    }
    assert changes == {"dealname": "W2", "amount": "7"}
    association = {
        e["associationType"]: e
        for e in later
        if e["subscriptionType"].endswith("associationChange")
    }
    assert set(association) == {"CONTACT_TO_COMPANY", "COMPANY_TO_CONTACT"}
    assert association["CONTACT_TO_COMPANY"]["fromObjectId"] == int(contact["id"])
    assert association["CONTACT_TO_COMPANY"]["associationRemoved"] is False
    for event in later:
        assert event["portalId"] == 62515 and event["changeSource"] == "INTEGRATION"
        assert event["sourceId"] == str(env.sandbox.config.app_id)  # the writing app
        assert isinstance(event["occurredAt"], int)


def test_slow_webhook_receiver_counts_as_failure(
    make_env: Callable[..., Env], receiver: Callable[..., Receiver]
) -> None:
    hook = receiver(fail_first=1, slow_first_s=0.6)
    env = make_env(webhook_url=hook.url, webhook_timeout_s=0.3, webhook_retry_delays_s=[0.05])
    env.sandbox.ui_create("companies", {"name": "Slow"})
    assert env.sandbox.wait_for_webhooks_idle(5)
    attempts = env.sandbox.deliveries[0].attempts
    assert attempts[0] == "ReadTimeout" and attempts[-1] == 204
    assert hook.calls[-1]["events"][0]["changeSource"] == "CRM_UI"


def test_webhooks_batch_100_shuffled_and_duplicate(
    make_env: Callable[..., Env], receiver: Callable[..., Receiver]
) -> None:
    hook = receiver()
    env = make_env(webhook_url=hook.url, webhook_batch_window_s=0.3, seed=7)
    for i in range(150):
        env.sandbox.ui_create("contacts", {"email": f"b{i}@example.com"})
    assert env.sandbox.wait_for_webhooks_idle(10)
    sizes = [len(c["events"]) for c in hook.calls]
    assert max(sizes) == 100 and sum(sizes) == 150
    order = [e["eventId"] for c in hook.calls for e in c["events"]]
    assert sorted(order) == list(range(1, 151)) and order != sorted(order)

    dup_hook = receiver()
    dup = make_env(webhook_url=dup_hook.url, duplicate_event_probability=1.0)
    dup.sandbox.ui_create("deals", {"dealname": "Twice"})
    assert dup.sandbox.wait_for_webhooks_idle(5)
    events = [e for c in dup_hook.calls for e in c["events"]]
    assert len(events) == 2 and events[0]["eventId"] == events[1]["eventId"]


# --- faults and admin ---------------------------------------------------------------------


def test_fault_injection(env: Env) -> None:
    admin = httpx.Client(base_url=env.url)
    admin.post("/_sandbox/faults", json={"kind": "error", "status": 502, "method": "GET"})
    assert env.client.get("/crm/v3/objects/deals").status_code == 502
    assert env.client.get("/crm/v3/objects/deals").status_code == 200

    admin.post("/_sandbox/faults", json={"kind": "rate_limit", "path_prefix": "/crm/v3/objects"})
    limited = env.client.get("/crm/v3/objects/deals")
    assert limited.status_code == 429
    assert limited.json()["policyName"] == "TEN_SECONDLY_ROLLING"
    assert limited.headers["X-HubSpot-RateLimit-Remaining"] == "0"

    admin.post("/_sandbox/faults", json={"kind": "rate_limit", "path_prefix": "/crm/v3/objects"})
    search_limited = env.client.post("/crm/v3/objects/deals/search", json={})
    assert search_limited.json()["policyName"] == "SECONDLY"

    admin.post("/_sandbox/faults", json={"kind": "drop_response", "method": "POST"})
    lost = env.client.post("/crm/v3/objects/deals", json={"properties": {"dealname": "Lost"}})
    assert lost.status_code == 504
    kept = admin.get("/_sandbox/objects/deals").json()["results"]
    assert [d["properties"]["dealname"] for d in kept] == ["Lost"]
    admin.close()


def test_reset_clears_state_but_not_the_id_sequence(env: Env) -> None:
    first = create(env, "contacts", {"email": "r@example.com"})
    assert httpx.post(f"{env.url}/_sandbox/reset").status_code == 200
    assert env.client.get("/crm/v3/objects/contacts").json()["results"] == []
    second = create(env, "contacts", {"email": "r@example.com"})
    assert int(second["id"]) > int(first["id"])
