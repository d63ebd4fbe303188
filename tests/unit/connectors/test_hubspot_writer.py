"""The HubSpot connector as a ``CrmWriter``: the requests it sends and how it reads
HubSpot's answers, against a scripted HubSpot."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from local.memory import MemoryCallBudget, MemorySecretStore
from shared.connectors.http import RetryPolicy
from shared.connectors.hubspot.connector import HubSpotCrm, build_hubspot
from shared.errors import Permanent
from shared.models import ObjectType
from shared.ports import CrmProperty, CrmWriter

STATUS = CrmProperty(
    name="crmsync_status", label="Status", kind="enumeration", options=("open", "paid")
)
BALANCE = CrmProperty(name="crmsync_balance", label="Balance", kind="number")
DUE = CrmProperty(name="crmsync_due", label="Due", kind="date")
NUMBER = CrmProperty(name="crmsync_number", label="Number", kind="string")

Handler = Callable[[httpx.Request], httpx.Response]


def error(status: int, category: str, message: str) -> httpx.Response:
    body = {"status": "error", "category": category, "message": message, "correlationId": "c"}
    return httpx.Response(status, json=body)


def crm(handler: Handler, seen: list[httpx.Request]) -> HubSpotCrm:
    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    return build_hubspot(
        base_url="https://api.hubapi.test",
        secrets=MemorySecretStore({"hs": {"access_token": "pat"}}),
        secret_id="hs",
        budget=MemoryCallBudget(),
        connection_id="c1",
        properties={},
        transport=httpx.MockTransport(record),
        retry=RetryPolicy(max_attempts=2),
        sleep=lambda _: None,
    )


def listing(*definitions: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, json={"results": list(definitions)})


def sent(request: httpx.Request) -> Any:
    return json.loads(request.content)


def test_the_connector_is_a_crm_writer() -> None:
    assert isinstance(crm(lambda _: listing(), []), CrmWriter)


def test_missing_properties_are_created_in_the_group_with_hubspots_types() -> None:
    seen: list[httpx.Request] = []

    def hubspot(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return listing({"name": "dealname", "groupName": "dealinformation"})
        return httpx.Response(201, json={})

    created = crm(hubspot, seen).ensure_properties(ObjectType.DEAL, [STATUS, BALANCE, DUE, NUMBER])

    assert created == ["crmsync_status", "crmsync_balance", "crmsync_due", "crmsync_number"]
    assert [(r.method, r.url.path) for r in seen[:2]] == [
        ("GET", "/crm/v3/properties/deals"),
        ("POST", "/crm/v3/properties/deals/groups"),
    ]
    assert sent(seen[1])["name"] == "crmsync"
    bodies = {b["name"]: b for b in map(sent, seen[2:])}
    assert {n: (b["type"], b["fieldType"]) for n, b in bodies.items()} == {
        "crmsync_status": ("enumeration", "select"),
        "crmsync_balance": ("number", "number"),
        "crmsync_due": ("date", "date"),
        "crmsync_number": ("string", "text"),
    }
    assert {b["groupName"] for b in bodies.values()} == {"crmsync"}
    assert [(o["value"], o["hidden"]) for o in bodies["crmsync_status"]["options"]] == [
        ("open", False),
        ("paid", False),
    ]
    assert "options" not in bodies["crmsync_balance"]


def test_a_concurrent_creators_409_counts_as_present() -> None:
    seen: list[httpx.Request] = []

    def hubspot(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return listing()
        if request.url.path.endswith("/groups") or sent(request)["name"] == BALANCE.name:
            return error(409, "OBJECT_ALREADY_EXISTS", "already exists")
        return httpx.Response(201, json={})

    created = crm(hubspot, seen).ensure_properties(ObjectType.COMPANY, [STATUS, BALANCE])

    assert created == ["crmsync_status"]
    assert [r.url.path for r in seen].count("/crm/v3/properties/companies") == 3


def test_nothing_missing_is_one_read_and_a_known_group_is_not_created_again() -> None:
    ours = {"name": STATUS.name, "groupName": "crmsync"}
    seen: list[httpx.Request] = []
    writer = crm(lambda r: listing(ours) if r.method == "GET" else httpx.Response(201), seen)

    assert writer.ensure_properties(ObjectType.DEAL, [STATUS]) == []
    assert len(seen) == 1
    assert writer.ensure_properties(ObjectType.DEAL, [STATUS, NUMBER]) == [NUMBER.name]
    assert [(r.method, r.url.path) for r in seen[1:]] == [
        ("GET", "/crm/v3/properties/deals"),
        ("POST", "/crm/v3/properties/deals"),
    ]


def test_a_refused_definition_is_permanent() -> None:
    def hubspot(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return listing()
        return error(400, "VALIDATION_ERROR", "fieldType is not valid")

    with pytest.raises(Permanent, match="fieldType is not valid"):
        crm(hubspot, []).ensure_properties(ObjectType.DEAL, [BALANCE])


def test_a_write_is_one_patch_clearing_with_an_empty_string_and_returns_the_version() -> None:
    seen: list[httpx.Request] = []
    modified = "2026-11-28T10:00:00.123Z"

    def hubspot(request: httpx.Request) -> httpx.Response:
        props = {"hs_lastmodifieddate": modified, **sent(request)["properties"]}
        return httpx.Response(
            200, json={"id": "77", "properties": props, "updatedAt": modified, "archived": False}
        )

    version = crm(hubspot, seen).write_properties(
        ObjectType.DEAL,
        "77",
        {STATUS.name: "paid", NUMBER.name: None},
        idempotency_key="key",
    )

    assert [(r.method, r.url.path) for r in seen] == [("PATCH", "/crm/v3/objects/deals/77")]
    assert sent(seen[0]) == {"properties": {"crmsync_status": "paid", "crmsync_number": ""}}
    expected = datetime(2026, 11, 28, 10, 0, 0, 123000, tzinfo=UTC)
    assert version == round(expected.timestamp() * 1000) == 1795860000123


def test_an_unknown_property_is_refused_naming_it() -> None:
    def hubspot(_: httpx.Request) -> httpx.Response:
        return error(400, "VALIDATION_ERROR", 'Property "crmsync_nope" does not exist')

    with pytest.raises(Permanent, match="crmsync_nope") as refused:
        crm(hubspot, []).write_properties(
            ObjectType.COMPANY, "5", {"crmsync_nope": "x"}, idempotency_key="k"
        )

    assert refused.value.code == "VALIDATION_ERROR"
