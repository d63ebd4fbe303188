"""The HubSpot connector: signatures, webhook normalization, reads, errors and search paging."""

from __future__ import annotations

import hashlib
import json
import time
from bisect import bisect_left
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from local.memory import MemorySecretStore
from shared.connectors.http import ResponseAction, RetryPolicy
from shared.connectors.hubspot.connector import (
    HubSpotCrm,
    HubSpotWebhooks,
    build_hubspot,
    classify,
    hubspot_webhooks,
)
from shared.errors import AuthFailed, Permanent, RateLimited, Retryable, WebhookRejected
from shared.models import ChangeKind, ObjectType
from shared.ports import InboundWebhook

# --- HubSpot's published vectors [H2, H3; docs/vendors/hubspot.md] ------------------------

SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
URL = "https://www.example.com/webhook_uri"
V1_BODY = (
    '[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,'
    '"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,'
    '"changeSource":"CRM","changeFlag":"NEW","appId":54321}]'
)
V1_SIGNATURE = "232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de"
V1_OCCURRED_MS = 1564113600000
V2_GET_SIGNATURE = "eee2dddcc73c94d699f5e395f4b9d454a069a6855fbfa152e91e88823087200e"
V3_BODY = "{'example_field':'example_value'}"
V3_TIMESTAMP_MS = 1693657560000
V3_SIGNATURE = "K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y="


def inbound(
    body: str, headers: dict[str, str], *, method: str = "POST", url: str = URL
) -> InboundWebhook:
    return InboundWebhook(
        method=method, url=url, headers=headers, body=body, received_at=datetime.now(UTC)
    )


def v3_request(
    *, body: str = V3_BODY, url: str = URL, signature: str = V3_SIGNATURE
) -> InboundWebhook:
    return inbound(
        body,
        {
            "x-hubspot-signature-v3": signature,
            "x-hubspot-request-timestamp": str(V3_TIMESTAMP_MS),
        },
        url=url,
    )


def receiver(now_s: float = V3_TIMESTAMP_MS / 1000) -> HubSpotWebhooks:
    return HubSpotWebhooks(lambda: SECRET, tolerance_s=300, clock=lambda: now_s)


def rejection(webhooks: HubSpotWebhooks, request: InboundWebhook) -> WebhookRejected:
    with pytest.raises(WebhookRejected) as caught:
        webhooks.verify(request)
    return caught.value


# --- verify -------------------------------------------------------------------------------


def test_given_hubspots_v1_example_when_verified_then_it_passes() -> None:
    request = inbound(
        V1_BODY, {"x-hubspot-signature": V1_SIGNATURE, "x-hubspot-signature-version": "v1"}
    )
    receiver(now_s=V1_OCCURRED_MS / 1000 + 60).verify(request)


def test_given_a_v1_delivery_older_than_hubspots_retry_window_then_it_is_a_replay() -> None:
    # v1 signs no timestamp: the signed events' own times bound a replay.
    request = inbound(
        V1_BODY, {"x-hubspot-signature": V1_SIGNATURE, "x-hubspot-signature-version": "v1"}
    )
    receiver(now_s=V1_OCCURRED_MS / 1000 + 24 * 3600).verify(request)  # last retry: fine

    with pytest.raises(WebhookRejected, match="replay") as rejected:
        receiver(now_s=V1_OCCURRED_MS / 1000 + 26 * 3600).verify(request)
    assert rejected.value.status == 401


def test_given_v1_events_dated_beyond_any_clock_then_normalize_not_verify_rejects() -> None:
    body = V1_BODY.replace(str(V1_OCCURRED_MS), "9" * 400)
    signature = hashlib.sha256(f"{SECRET}{body}".encode()).hexdigest()
    request = inbound(body, {"x-hubspot-signature": signature, "x-hubspot-signature-version": "v1"})

    receiver(now_s=V1_OCCURRED_MS / 1000).verify(request)  # signed, and not a replay

    with pytest.raises(WebhookRejected, match="occurredAt") as rejected:
        receiver(now_s=V1_OCCURRED_MS / 1000).normalize(request, "conn-1")
    assert rejected.value.status == 400


def test_given_hubspots_v2_get_example_when_verified_then_it_passes() -> None:
    request = inbound(
        "",
        {"x-hubspot-signature": V2_GET_SIGNATURE, "x-hubspot-signature-version": "v2"},
        method="GET",
    )
    receiver().verify(request)


def test_given_v2_signature_when_the_uri_differs_then_it_is_rejected() -> None:
    request = inbound(
        "",
        {"x-hubspot-signature": V2_GET_SIGNATURE, "x-hubspot-signature-version": "v2"},
        method="GET",
        url=URL + "?a=1",
    )
    assert rejection(receiver(), request).status == 401


def test_given_hubspots_v3_example_when_verified_at_its_timestamp_then_it_passes() -> None:
    receiver().verify(v3_request())


@pytest.mark.parametrize("offset_s", [-299, 299])
def test_given_v3_timestamp_within_tolerance_when_verified_then_it_passes(offset_s: int) -> None:
    receiver(V3_TIMESTAMP_MS / 1000 + offset_s).verify(v3_request())


@pytest.mark.parametrize("offset_s", [301, -301], ids=["stale", "future"])
def test_given_v3_timestamp_outside_tolerance_when_verified_then_401(offset_s: int) -> None:
    error = rejection(receiver(V3_TIMESTAMP_MS / 1000 + offset_s), v3_request())
    assert (error.status, error.reason) == (401, "timestamp outside tolerance")


@pytest.mark.parametrize(
    "timestamp",
    [None, "", "yesterday", "9" * 400],
    ids=["missing", "empty", "not-a-number", "beyond-a-float"],
)
def test_given_v3_without_a_usable_timestamp_when_verified_then_401(timestamp: str | None) -> None:
    headers = {"x-hubspot-signature-v3": V3_SIGNATURE}
    if timestamp is not None:
        headers["x-hubspot-request-timestamp"] = timestamp
    error = rejection(receiver(), inbound(V3_BODY, headers))
    assert error.status == 401
    assert "timestamp" in error.reason


def test_given_a_tampered_body_when_verified_then_signature_mismatch() -> None:
    error = rejection(receiver(), v3_request(body=V3_BODY.replace("value", "valve")))
    assert (error.status, error.reason) == (401, "signature mismatch")
    v1 = inbound(
        V1_BODY.replace("123", "124"),
        {"x-hubspot-signature": V1_SIGNATURE, "x-hubspot-signature-version": "v1"},
    )
    assert rejection(receiver(), v1).reason == "signature mismatch"


@pytest.mark.parametrize(
    "encoded",
    [
        "https%3A%2F%2Fwww.example.com%2Fwebhook_uri",
        "https%3a%2f%2fwww.example.com%2fwebhook_uri",
    ],
)
def test_given_v3_uri_with_documented_escapes_when_verified_then_they_are_decoded(
    encoded: str,
) -> None:
    receiver().verify(v3_request(url=encoded))


def test_given_v3_uri_with_an_undocumented_escape_when_verified_then_it_is_not_decoded() -> None:
    error = rejection(receiver(), v3_request(url=URL.replace("_", "%5F")))
    assert error.reason == "signature mismatch"


def test_given_both_v3_and_v1_headers_when_verified_then_v3_decides() -> None:
    request = inbound(
        V3_BODY,
        {
            "x-hubspot-signature-v3": V3_SIGNATURE,
            "x-hubspot-request-timestamp": str(V3_TIMESTAMP_MS),
            "x-hubspot-signature": "not-a-v1-signature",
            "x-hubspot-signature-version": "v1",
        },
    )
    receiver().verify(request)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-hubspot-signature": V1_SIGNATURE},
        {"x-hubspot-signature": V1_SIGNATURE, "x-hubspot-signature-version": "v9"},
    ],
    ids=["none", "no-version", "unknown-version"],
)
def test_given_no_usable_signature_when_verified_then_401(headers: dict[str, str]) -> None:
    assert rejection(receiver(), inbound(V1_BODY, headers)).status == 401


def test_given_the_client_secret_is_stored_later_when_verified_then_it_is_read_then() -> None:
    secrets = MemorySecretStore({"hubspot": {"access_token": "pat"}})
    webhooks = hubspot_webhooks(secrets, "hubspot", 300)
    body = V1_BODY.replace(str(V1_OCCURRED_MS), str(int(time.time() * 1000)))
    signature = hashlib.sha256(f"{SECRET}{body}".encode()).hexdigest()
    request = inbound(body, {"x-hubspot-signature": signature, "x-hubspot-signature-version": "v1"})
    with pytest.raises(AuthFailed, match="client_secret"):
        webhooks.verify(request)
    secrets.write("hubspot", {"access_token": "pat", "client_secret": SECRET})
    webhooks.verify(request)


# --- normalize ----------------------------------------------------------------------------


def hs_event(subscription_type: str, object_id: int | None = 7, **fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "eventId": 100,
        "subscriptionId": 200,
        "portalId": 62515,
        "appId": 54321,
        "occurredAt": 1_700_000_000_000,
        "subscriptionType": subscription_type,
        "attemptNumber": 0,
        "changeSource": "CRM_UI",
        **fields,
    }
    if object_id is not None:
        event["objectId"] = object_id
    return event


def normalize(*events: Any, body: str | None = None) -> list[Any]:
    text = body if body is not None else json.dumps(list(events))
    return receiver().normalize(inbound(text, {}), "conn-1")


def normalize_rejection(body: str) -> WebhookRejected:
    with pytest.raises(WebhookRejected) as caught:
        normalize(body=body)
    return caught.value


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json", "body is not JSON"),
        ('{"eventId": 1}', "body must be a JSON array of events"),
        (json.dumps([hs_event("contact.creation")] * 101), "more than 100 events"),
        ("[" * 50_000 + "]" * 50_000, "body nests JSON too deeply"),
    ],
    ids=["not-json", "object", "too-many", "nested-past-the-recursion-limit"],
)
def test_given_a_malformed_delivery_when_normalized_then_400(body: str, reason: str) -> None:
    error = normalize_rejection(body)
    assert error.status == 400
    assert reason in error.reason


def test_given_an_event_without_object_id_when_normalized_then_400_names_it() -> None:
    body = json.dumps([hs_event("contact.creation"), hs_event("deal.creation", object_id=None)])
    error = normalize_rejection(body)
    assert error.status == 400
    assert error.reason.startswith("event 1:")


@pytest.mark.parametrize("occurred_at", [10**400, 10**17], ids=["beyond-a-float", "year-3170843"])
def test_given_an_occurred_at_no_calendar_holds_when_normalized_then_400_names_it(
    occurred_at: int,
) -> None:
    error = normalize_rejection(json.dumps([hs_event("contact.creation", occurredAt=occurred_at)]))
    assert error.status == 400
    assert error.reason.startswith("event 0: occurredAt:")


def test_given_100_events_when_normalized_then_all_are_accepted() -> None:
    events = [hs_event("contact.creation", object_id=n, eventId=n) for n in range(100)]
    assert len(normalize(*events)) == 100


@pytest.mark.parametrize(
    ("subscription_type", "object_type", "kind"),
    [
        ("contact.creation", ObjectType.CONTACT, ChangeKind.CREATED),
        ("company.propertyChange", ObjectType.COMPANY, ChangeKind.UPDATED),
        ("deal.deletion", ObjectType.DEAL, ChangeKind.DELETED),
        ("line_item.creation", ObjectType.LINE_ITEM, ChangeKind.CREATED),
        ("contact.privacyDeletion", ObjectType.CONTACT, ChangeKind.DELETED),
        ("deal.restore", ObjectType.DEAL, ChangeKind.UPDATED),
    ],
)
def test_given_a_supported_event_when_normalized_then_type_kind_and_version_map(
    subscription_type: str, object_type: ObjectType, kind: ChangeKind
) -> None:
    (event,) = normalize(hs_event(subscription_type, object_id=42))
    assert (event.object_type, event.record_id, event.kind) == (object_type, "42", kind)
    assert event.version == 1_700_000_000_000
    assert event.occurred_at == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert (event.connection_id, event.source) == ("conn-1", "hubspot")


def test_given_the_event_type_field_name_when_normalized_then_it_is_accepted() -> None:
    raw = hs_event("contact.creation")
    raw["eventType"] = raw.pop("subscriptionType")
    (event,) = normalize(raw)
    assert (event.object_type, event.kind) == (ObjectType.CONTACT, ChangeKind.CREATED)


def test_given_a_merge_when_normalized_then_the_surviving_record_changes() -> None:
    (event,) = normalize(
        hs_event("contact.merge", object_id=5, primaryObjectId=5, mergedObjectIds=[6])
    )
    assert (event.record_id, event.kind) == ("5", ChangeKind.UPDATED)
    (created,) = normalize(hs_event("contact.merge", object_id=5, primaryObjectId=5, newObjectId=9))
    assert created.record_id == "9"


@pytest.mark.parametrize(
    ("subscription_type", "association_type", "object_type", "record_id"),
    [
        ("deal.associationChange", "DEAL_TO_CONTACT", ObjectType.DEAL, "10"),
        ("deal.associationChange", "DEAL_TO_LINE_ITEM", ObjectType.DEAL, "10"),
        ("contact.associationChange", "CONTACT_TO_COMPANY", ObjectType.CONTACT, "10"),
        # A line item is invoiced through its deal: the deal (toObjectId) re-syncs.
        ("line_item.associationChange", "LINE_ITEM_TO_DEAL", ObjectType.DEAL, "20"),
    ],
)
def test_given_an_association_change_when_normalized_then_the_record_it_changes_resyncs(
    subscription_type: str, association_type: str, object_type: ObjectType, record_id: str
) -> None:
    raw = hs_event(
        subscription_type,
        object_id=None,
        associationType=association_type,
        fromObjectId=10,
        toObjectId=20,
        associationRemoved=False,
        isPrimaryAssociation=False,
    )
    (event,) = normalize(raw)
    assert (event.object_type, event.record_id, event.kind) == (
        object_type,
        record_id,
        ChangeKind.ASSOCIATION,
    )


def test_given_unsupported_objects_when_normalized_then_they_are_dropped() -> None:
    events = normalize(
        hs_event("ticket.creation", object_id=1, eventId=1),
        hs_event("product.propertyChange", object_id=2, eventId=2),
        hs_event(
            "ticket.associationChange",
            object_id=None,
            eventId=3,
            associationType="TICKET_TO_DEAL",
            fromObjectId=3,
            toObjectId=4,
        ),
        hs_event("deal.creation", object_id=5, eventId=5),
    )
    assert [(e.object_type, e.record_id) for e in events] == [(ObjectType.DEAL, "5")]


def test_given_a_duplicated_event_when_normalized_then_it_collapses_to_one() -> None:
    event = hs_event("deal.propertyChange", propertyName="amount", propertyValue="10")
    assert len(normalize(event, {**event, "attemptNumber": 1})) == 1


def test_given_a_reused_event_id_for_other_records_when_normalized_then_each_is_kept() -> None:
    events = normalize(
        hs_event("contact.creation", object_id=1),
        hs_event("contact.creation", object_id=2),
        hs_event("contact.creation", object_id=1, occurredAt=1_700_000_000_001),
    )
    assert len({e.event_id for e in events}) == 3


def test_given_the_same_delivery_twice_when_normalized_then_event_ids_are_equal() -> None:
    body = json.dumps([hs_event("deal.creation", object_id=3)])
    assert [e.event_id for e in normalize(body=body)] == [e.event_id for e in normalize(body=body)]


def test_given_unordered_events_when_normalized_then_oldest_comes_first() -> None:
    events = normalize(
        hs_event("deal.propertyChange", eventId=2, occurredAt=2_000),
        hs_event("deal.creation", eventId=1, occurredAt=1_000),
    )
    assert [e.kind for e in events] == [ChangeKind.CREATED, ChangeKind.UPDATED]


# --- a scripted HubSpot for the API side --------------------------------------------------

TOKEN = "pat-na1-test"
PROPERTIES: dict[ObjectType, list[str]] = {
    ObjectType.CONTACT: ["email", "firstname"],
    ObjectType.COMPANY: ["name"],
    ObjectType.DEAL: ["dealname", "amount"],
    ObjectType.LINE_ITEM: ["name", "quantity", "price"],
}
_MODIFIED = {"contacts": "lastmodifieddate"}


def hs_object(
    object_id: str, modified: str | None = "2024-01-02T03:04:05.678Z", **properties: str | None
) -> dict[str, Any]:
    """A v3 record; ``FakeHubSpot.put`` files ``modified`` under its type's property."""
    return {
        "id": object_id,
        "properties": {**properties, "_modified": modified},
        "createdAt": "2024-01-01T00:00:00Z",
        "updatedAt": "2024-01-05T00:00:00Z",
        "archived": False,
    }


def error_body(category: str, message: str, **extra: Any) -> dict[str, Any]:
    return {
        "status": "error",
        "message": message,
        "correlationId": "c0ffee",
        "category": category,
        **extra,
    }


@dataclass
class FakeHubSpot:
    """Objects by type path and id; ``scripted`` responses are answered first, in order."""

    objects: dict[str, dict[str, dict[str, Any]]] = field(
        default_factory=lambda: {p: {} for p in ("contacts", "companies", "deals", "line_items")}
    )
    v4: dict[tuple[str, str, str], list[str]] = field(default_factory=dict)
    scripted: list[httpx.Response] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)
    search_cap: int = 10_000
    deleted_after_search: set[str] = field(default_factory=set)  # found by search, 404 on read
    _sorted: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def put(self, path: str, obj: dict[str, Any]) -> None:
        modified = obj["properties"].pop("_modified", None)
        obj["properties"][_MODIFIED.get(path, "hs_lastmodifieddate")] = modified
        self.objects[path][obj["id"]] = obj
        self._sorted.pop(path, None)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.scripted:
            return self.scripted.pop(0)
        parts = request.url.path.strip("/").split("/")
        if parts[:3] == ["crm", "v4", "objects"]:
            return self._v4_list(parts[3], parts[4], parts[6], request)
        path, rest = parts[3], parts[4:]
        if request.method == "GET":
            found = self.objects[path].get(rest[0])
            if found is None or rest[0] in self.deleted_after_search:
                return httpx.Response(404, json=error_body("OBJECT_NOT_FOUND", "not found"))
            return httpx.Response(200, json=found)
        body = json.loads(request.content)
        if rest == ["batch", "read"]:
            assert len(body["inputs"]) <= 100
            ids = [i["id"] for i in body["inputs"]]
            results = [self.objects[path][i] for i in reversed(ids) if i in self.objects[path]]
            return httpx.Response(
                207 if len(results) < len(ids) else 200, json={"results": results}
            )
        assert rest == ["search"]
        return self._search(path, body)

    def _search(self, path: str, body: dict[str, Any]) -> httpx.Response:
        (group,) = body["filterGroups"]
        (flt,) = group["filters"]
        prop, floor = flt["propertyName"], int(flt["value"])
        assert flt["operator"] == "GTE"
        assert body["sorts"] == [{"propertyName": prop, "direction": "ASCENDING"}]
        after, limit = int(body.get("after", 0)), body["limit"]
        if after + limit > self.search_cap:
            return httpx.Response(400, json=error_body("VALIDATION_ERROR", "past the cap"))
        ordered = self._ordered(path, prop)
        hits = ordered[bisect_left(ordered, floor, key=lambda o: int(o["properties"][prop])) :]
        end = min(after + limit, len(hits), self.search_cap)
        page: dict[str, Any] = {"total": len(hits), "results": hits[after:end]}
        if end < min(len(hits), self.search_cap):
            page["paging"] = {"next": {"after": str(end)}}
        return httpx.Response(200, json=page)

    def _ordered(self, path: str, prop: str) -> list[dict[str, Any]]:
        """By modified time, then id, as HubSpot sorts; kept until the next ``put``."""
        if path not in self._sorted:
            self._sorted[path] = sorted(
                self.objects[path].values(),
                key=lambda o: (int(o["properties"][prop]), int(o["id"])),
            )
        return self._sorted[path]

    def _v4_list(
        self, path: str, object_id: str, to_path: str, request: httpx.Request
    ) -> httpx.Response:
        ids = self.v4[(path, object_id, to_path)]
        start = int(request.url.params.get("after", "0"))
        limit = 2  # small pages, to show they are followed
        page: dict[str, Any] = {
            "results": [
                {"toObjectId": int(i), "associationTypes": []} for i in ids[start : start + limit]
            ]
        }
        if start + limit < len(ids):
            page["paging"] = {"next": {"after": str(start + limit)}}
        return httpx.Response(200, json=page)

    def of(self, method: str, path_part: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and path_part in r.url.path]


@dataclass
class RecordingBudget:
    """Always grants; remembers which budget keys each call took."""

    keys: list[str] = field(default_factory=list)

    def acquire(self, key: str, *, limit: int, per_s: float, max_wait_s: float) -> float:
        self.keys.append(f"{key}:{limit}/{per_s:g}s")  # a budget is a key at a rate
        return 0.0


@dataclass
class Env:
    hubspot: FakeHubSpot
    crm: HubSpotCrm
    budget: RecordingBudget
    sleeps: list[float]


@pytest.fixture
def env() -> Env:
    fake, budget, sleeps = FakeHubSpot(), RecordingBudget(), list[float]()
    crm = build_hubspot(
        base_url="https://api.hubapi.test",
        secrets=MemorySecretStore({"hs": {"access_token": TOKEN, "client_secret": "s"}}),
        secret_id="hs",
        budget=budget,
        connection_id="conn-1",
        properties=PROPERTIES,
        transport=httpx.MockTransport(fake),
        retry=RetryPolicy(max_attempts=3),
        sleep=sleeps.append,
    )
    return Env(fake, crm, budget, sleeps)


def deal_with_associations(
    associations: dict[str, list[str]], deal_id: str = "900"
) -> dict[str, Any]:
    deal = hs_object(deal_id, dealname="Website", amount="1500")
    deal["associations"] = {
        name: {"results": [{"id": i, "type": f"deal_to_{name}"} for i in ids]}
        for name, ids in associations.items()
    }
    return deal


# --- fetch --------------------------------------------------------------------------------


def test_given_a_contact_when_fetched_then_mapped_properties_are_asked_with_bearer_token(
    env: Env,
) -> None:
    env.hubspot.put("contacts", hs_object("11", email="a@b.co", firstname="Ann"))
    record = env.crm.fetch(ObjectType.CONTACT, "11")
    assert record is not None
    assert record.properties["email"] == "a@b.co"
    assert record.version == 1704164645678  # 2024-01-02T03:04:05.678Z
    (request,) = env.hubspot.requests
    assert request.url.path == "/crm/v3/objects/contacts/11"
    assert request.url.params["properties"].split(",") == ["email", "firstname", "lastmodifieddate"]
    assert "associations" not in request.url.params
    assert request.headers["authorization"] == f"Bearer {TOKEN}"


def test_given_epoch_ms_or_missing_modified_time_when_fetched_then_version_still_parses(
    env: Env,
) -> None:
    env.hubspot.put("companies", hs_object("1", modified="1700000000123", name="Acme"))
    env.hubspot.put("companies", hs_object("2", modified=None, name="Beta"))
    first = env.crm.fetch(ObjectType.COMPANY, "1")
    second = env.crm.fetch(ObjectType.COMPANY, "2")
    assert first is not None and first.version == 1700000000123
    assert second is not None and second.version == 1704412800000  # updatedAt


def test_given_a_deal_when_fetched_then_parties_and_line_items_come_in_association_order(
    env: Env,
) -> None:
    deal = deal_with_associations(
        {"contacts": ["5", "5", "6"], "companies": ["8"], "line_items": ["72", "71", "73"]}
    )
    env.hubspot.put("deals", deal)
    for item_id, name in (("71", "Design"), ("72", "Build")):
        env.hubspot.put("line_items", hs_object(item_id, modified="1700000000000", name=name))
    record = env.crm.fetch(ObjectType.DEAL, "900")
    assert record is not None
    assert record.associations == {ObjectType.CONTACT: ["5", "6"], ObjectType.COMPANY: ["8"]}
    items = record.children[ObjectType.LINE_ITEM]
    assert [(i.id, i.properties["name"]) for i in items] == [("72", "Build"), ("71", "Design")]
    assert {i.object_type for i in items} == {ObjectType.LINE_ITEM}
    get, batch = env.hubspot.requests
    assert get.url.params["associations"] == "contacts,companies,line_items"
    assert json.loads(batch.content) == {
        "inputs": [{"id": "72"}, {"id": "71"}, {"id": "73"}],
        "properties": ["name", "quantity", "price", "hs_lastmodifieddate"],
    }


def test_given_a_deal_with_150_line_items_when_fetched_then_two_batch_reads(env: Env) -> None:
    ids = [str(1000 + n) for n in range(150)]
    env.hubspot.put("deals", deal_with_associations({"line items": ids}))
    for item_id in ids:
        env.hubspot.put("line_items", hs_object(item_id, name=f"item {item_id}"))
    record = env.crm.fetch(ObjectType.DEAL, "900")
    assert record is not None
    assert [i.id for i in record.children[ObjectType.LINE_ITEM]] == ids
    assert [len(json.loads(r.content)["inputs"]) for r in env.hubspot.of("POST", "batch")] == [
        100,
        50,
    ]


def test_given_a_paged_association_list_when_fetched_then_v4_reads_all_of_it(env: Env) -> None:
    deal = deal_with_associations({"contacts": ["1", "2"]})
    deal["associations"]["contacts"]["paging"] = {"next": {"after": "2", "link": "…"}}
    env.hubspot.put("deals", deal)
    env.hubspot.v4[("deals", "900", "contacts")] = ["1", "2", "3", "4", "5"]
    record = env.crm.fetch(ObjectType.DEAL, "900")
    assert record is not None
    assert record.associations[ObjectType.CONTACT] == ["1", "2", "3", "4", "5"]
    assert len(env.hubspot.of("GET", "/crm/v4/")) == 3


def test_given_a_deal_without_line_items_when_fetched_then_no_batch_read(env: Env) -> None:
    env.hubspot.put("deals", deal_with_associations({}))
    record = env.crm.fetch(ObjectType.DEAL, "900")
    assert record is not None
    assert record.children == {ObjectType.LINE_ITEM: []}
    assert record.associations == {ObjectType.CONTACT: [], ObjectType.COMPANY: []}
    assert len(env.hubspot.requests) == 1


def test_given_a_missing_or_archived_record_when_fetched_then_none(env: Env) -> None:
    archived = hs_object("3", email="x@y.z")
    archived["archived"] = True
    env.hubspot.put("contacts", archived)
    assert env.crm.fetch(ObjectType.CONTACT, "404") is None
    assert env.crm.fetch(ObjectType.CONTACT, "3") is None


def test_given_an_accounting_type_when_fetched_then_value_error(env: Env) -> None:
    with pytest.raises(ValueError, match="HubSpot has no invoice"):
        env.crm.fetch(ObjectType.INVOICE, "1")


# --- errors and rate limits ---------------------------------------------------------------


def rate_limited(headers: dict[str, str], policy: str = "TEN_SECONDLY_ROLLING") -> httpx.Response:
    body = {
        "status": "error",
        "message": "You have reached your ten_secondly_rolling limit.",
        "errorType": "RATE_LIMIT",
        "correlationId": "c0ffee",
        "policyName": policy,
    }
    return httpx.Response(429, json=body, headers=headers)


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"Retry-After": "3"}, 3.0),
        ({"X-HubSpot-RateLimit-Interval-Milliseconds": "10000"}, 10.0),
        ({"Retry-After": "2", "X-HubSpot-RateLimit-Interval-Milliseconds": "10000"}, 2.0),
    ],
    ids=["retry-after", "interval", "retry-after-first"],
)
def test_given_a_429_when_fetching_then_it_waits_as_told_and_succeeds(
    env: Env, headers: dict[str, str], wait: float
) -> None:
    env.hubspot.put("contacts", hs_object("11", email="a@b.co"))
    env.hubspot.scripted.append(rate_limited(headers))
    record = env.crm.fetch(ObjectType.CONTACT, "11")
    assert record is not None and record.id == "11"
    assert env.sleeps == [wait]


def test_given_the_daily_limit_when_fetching_then_rate_limited_goes_back_to_the_queue(
    env: Env,
) -> None:
    env.hubspot.scripted.append(
        rate_limited({"X-HubSpot-RateLimit-Interval-Milliseconds": "10000"}, "DAILY")
    )
    with pytest.raises(RateLimited) as caught:
        env.crm.fetch(ObjectType.CONTACT, "11")
    assert 20 < caught.value.retry_after_s <= 86_400
    assert env.sleeps == []


def test_given_the_daily_limit_when_classified_then_the_wait_runs_to_utc_midnight() -> None:
    response = rate_limited({"X-HubSpot-RateLimit-Interval-Milliseconds": "10000"}, "DAILY")
    quarter_to_midnight = datetime(2024, 3, 1, 23, 45, tzinfo=UTC).timestamp()
    verdict = classify(response, clock=lambda: quarter_to_midnight)
    assert (verdict.action, verdict.retry_after_s) == (ResponseAction.RATE_LIMITED, 900.0)
    assert verdict.code == "DAILY"


def test_given_a_429_without_hints_when_classified_then_the_client_backs_off() -> None:
    verdict = classify(httpx.Response(429, text="slow down"))
    assert (verdict.action, verdict.retry_after_s) == (ResponseAction.RATE_LIMITED, None)


def test_given_a_5xx_when_fetching_then_it_is_retried(env: Env) -> None:
    env.hubspot.put("contacts", hs_object("11", email="a@b.co"))
    env.hubspot.scripted.append(httpx.Response(502, text="<html>bad gateway</html>"))
    assert env.crm.fetch(ObjectType.CONTACT, "11") is not None
    assert len(env.hubspot.requests) == 2
    assert len(env.sleeps) == 1


def test_given_a_400_when_fetching_then_permanent_with_hubspots_category(env: Env) -> None:
    env.hubspot.scripted.append(
        httpx.Response(400, json=error_body("VALIDATION_ERROR", "Property values were not valid"))
    )
    with pytest.raises(Permanent) as caught:
        env.crm.fetch(ObjectType.CONTACT, "11")
    assert (caught.value.status, caught.value.code) == (400, "VALIDATION_ERROR")
    assert "Property values were not valid (correlationId c0ffee)" in str(caught.value)
    assert len(env.hubspot.requests) == 1


@pytest.mark.parametrize("status", [401, 403])
def test_given_an_auth_failure_when_fetching_then_auth_failed_without_retry(
    env: Env, status: int
) -> None:
    env.hubspot.scripted.append(
        httpx.Response(status, json=error_body("INVALID_AUTHENTICATION", "credentials invalid"))
    )
    with pytest.raises(AuthFailed, match="token refused") as caught:
        env.crm.fetch(ObjectType.CONTACT, "11")
    assert caught.value.code == "INVALID_AUTHENTICATION"
    assert len(env.hubspot.requests) == 1


def test_given_an_error_body_that_is_not_hubspots_when_classified_then_status_decides() -> None:
    verdict = classify(httpx.Response(409, json={"message": ["not", "a", "string"]}))
    assert (verdict.action, verdict.code, verdict.message) == (
        ResponseAction.FAIL,
        None,
        "Conflict",
    )


# --- changed_since ------------------------------------------------------------------------


def search_bodies(hubspot: FakeHubSpot) -> list[dict[str, Any]]:
    return [json.loads(r.content) for r in hubspot.of("POST", "/search")]


def test_given_250_changed_contacts_when_listed_then_pages_are_followed_oldest_first(
    env: Env,
) -> None:
    for n in range(300):
        env.hubspot.put("contacts", hs_object(str(n), modified=str(1_000 + 299 - n)))
    records = list(env.crm.changed_since(ObjectType.CONTACT, 1_050))
    assert [r.version for r in records] == list(range(1_050, 1_300))
    bodies = search_bodies(env.hubspot)
    assert [b.get("after") for b in bodies] == [None, "100", "200"]
    assert bodies[0]["filterGroups"] == [
        {"filters": [{"propertyName": "lastmodifieddate", "operator": "GTE", "value": "1050"}]}
    ]
    assert bodies[0]["limit"] == 100
    assert bodies[0]["properties"] == ["email", "firstname", "lastmodifieddate"]


def test_given_more_than_10000_changes_when_listed_then_search_restarts_from_the_last_time(
    env: Env,
) -> None:
    # 10,250 records; five share each modified time, so a restart lands mid-tie.
    for n in range(10_250):
        env.hubspot.put("line_items", hs_object(str(n), modified=str(5_000 + n // 5)))
    records = list(env.crm.changed_since(ObjectType.LINE_ITEM, 0))
    assert [r.id for r in records] == [str(n) for n in range(10_250)]
    bodies = search_bodies(env.hubspot)
    floors = [b["filterGroups"][0]["filters"][0]["value"] for b in bodies]
    assert sorted(set(floors)) == ["0", str(5_000 + 9_999 // 5)]
    assert all(int(b.get("after", 0)) + b["limit"] <= 10_000 for b in bodies)


def test_given_more_ties_than_the_cap_when_listed_then_permanent_instead_of_a_loop() -> None:
    fake = FakeHubSpot(search_cap=300)
    crm = build_hubspot(
        base_url="https://api.hubapi.test",
        secrets=MemorySecretStore({"hs": {"access_token": TOKEN}}),
        secret_id="hs",
        budget=RecordingBudget(),
        connection_id="conn-1",
        properties=PROPERTIES,
        transport=httpx.MockTransport(fake),
        search_result_cap=300,
    )
    for n in range(400):
        fake.put("companies", hs_object(str(n), modified="7000", name=f"c{n}"))
    with pytest.raises(Permanent, match="over 300 companies modified at 7000"):
        list(crm.changed_since(ObjectType.COMPANY, 0))


def test_given_changed_deals_when_listed_then_each_comes_with_its_line_items(env: Env) -> None:
    for deal_id, modified in (("1", "1000"), ("2", "1001")):
        deal = deal_with_associations({"contacts": ["5"], "line_items": ["71"]}, deal_id)
        deal["properties"]["_modified"] = modified
        env.hubspot.put("deals", deal)
    env.hubspot.put("line_items", hs_object("71", name="Design"))
    env.hubspot.deleted_after_search.add("2")
    (record,) = env.crm.changed_since(ObjectType.DEAL, 0)
    assert (record.id, record.version) == ("1", 1000)
    assert record.associations[ObjectType.CONTACT] == ["5"]
    assert [i.id for i in record.children[ObjectType.LINE_ITEM]] == ["71"]


def test_given_search_and_reads_when_budgeted_then_search_also_takes_its_own_limit(
    env: Env,
) -> None:
    env.hubspot.put("contacts", hs_object("1", modified="1000", email="a@b.co"))
    list(env.crm.changed_since(ObjectType.CONTACT, 0))
    env.crm.fetch(ObjectType.CONTACT, "1")
    assert env.budget.keys == [
        "hubspot:conn-1:100/10s",
        "hubspot:conn-1:5/1s",
        "hubspot:conn-1:100/10s",
    ]


def test_given_a_2xx_of_the_wrong_shape_when_fetched_then_retryable_not_a_crash(
    env: Env,
) -> None:
    env.hubspot.scripted.append(httpx.Response(200, json={"properties": "nope"}))
    with pytest.raises(Retryable, match="answered unexpectedly"):
        env.crm.fetch(ObjectType.CONTACT, "1")
