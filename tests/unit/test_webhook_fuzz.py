"""Bad input gets a clear answer, whatever it is (property-based).

Every webhook route answers any request with a 2xx or a 4xx whose body says why,
never a 5xx, and nothing reaches the queue from a request the vendor did not sign.
The real webhook handler (powertools resolver, signature checks, normalization) is
fed API Gateway HTTP API v2 events built by the local API adapter; the composition
root's ingest is wired with in-memory secrets (known signing keys, so signed garbage
reaches normalize) and an in-memory queue (a fresh one per request, to count what
each request enqueued).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Protocol, cast

import boto3
import pytest
from flask import Request as FlaskRequest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from werkzeug.test import EnvironBuilder

from infra.resources import DESCRIPTION, webhook_path, webhook_route
from local.apigw import build_event
from local.lambdas import LambdaContext
from local.memory import MemoryConnections, MemoryQueue, MemorySecretStore
from local.sandboxes.hubspot import sign_v1, sign_v2, sign_v3
from shared.bootstrap import Container
from shared.connectors.spec import secret_id
from shared.models import Connection
from shared.settings import Settings, get_settings
from shared.sync.ingest import WebhookIngest
from tests.fakes import DEFAULT_MAPPING

BASE = "https://fuzz.execute-api.us-east-1.amazonaws.com"
HUBSPOT_SECRET = "fuzz-hubspot-app-secret"
VERIFIER_TOKEN = "fuzz-qbo-verifier-token"
VENDORS = DESCRIPTION.webhook_vendors()
# The routes API Gateway sends to the function (anything else it answers itself).
CONNECTION = Connection(
    id="fuzz",
    crm="hubspot",
    accounting="quickbooks",
    mapping_name="services.yaml",
    mapping=DEFAULT_MAPPING.read_text(),
)
ROUTE_KEYS = {
    webhook_path(vendor, CONNECTION.id): f"POST {webhook_route(vendor)}" for vendor in VENDORS
}
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")  # what HTTP APIs take
# Text content types arrive as text, others base64-encoded (isBase64Encoded).
CONTENT_TYPES = ("application/json", "text/plain; charset=utf-8", "application/octet-stream", "")
ENVIRONMENT = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "fuzz",
    "AWS_SECRET_ACCESS_KEY": "fuzz",
    "CRMSYNC_PUBLIC_BASE_URL": BASE,
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
}


def now_ms() -> int:
    return int(time.time() * 1000)


class WebhookFunction(Protocol):
    """What the test uses of the webhook handler's module."""

    settings: Settings
    ingest: WebhookIngest

    def handler(self, event: dict[str, Any], context: LambdaContext) -> dict[str, Any]: ...


@pytest.fixture(scope="module")
def webhook() -> Iterator[WebhookFunction]:
    """The webhook handler's module, cold-started against a fake AWS environment."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in ENVIRONMENT.items():
            patch.setenv(name, value)
        get_settings.cache_clear()
        handler = DESCRIPTION.function(DESCRIPTION.webhook_function).handler
        module_name = handler.rpartition(".")[0]
        sys.modules.pop(module_name, None)  # a cold start in this environment, not an earlier one
        yield cast(WebhookFunction, importlib.import_module(module_name))
    # The cold start cached settings and a boto3 session from the environment above.
    get_settings.cache_clear()
    boto3.DEFAULT_SESSION = None


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    queued: int  # messages the request put on the queue


def respond(webhook: WebhookFunction, request: Request) -> Answer:
    """Posts ``request`` to the handler; checks it answered 2xx, or 4xx with a reason."""
    settings = webhook.settings
    container = Container(settings)
    queue = MemoryQueue()
    # The AWS adapters' in-memory twins, behind the same composition root.
    container.secrets = MemorySecretStore(  # type: ignore[assignment]
        {
            secret_id(CONNECTION.id, "hubspot"): {"client_secret": HUBSPOT_SECRET},
            secret_id(CONNECTION.id, "quickbooks"): {
                "verifier_token": VERIFIER_TOKEN,
                "realm_id": "9341453000000001",
            },
        }
    )
    container.connections = MemoryConnections([CONNECTION])  # type: ignore[assignment]
    container.queue = queue  # type: ignore[assignment]
    webhook.ingest = container.ingest()
    spec = DESCRIPTION.function(DESCRIPTION.webhook_function)
    context = LambdaContext(
        function_name="crmsync-fuzz-webhook",
        invoked_function_arn="arn:aws:lambda:us-east-1:000000000000:function:fuzz",
        memory_limit_in_mb=spec.memory_mb,
        deadline=time.monotonic() + spec.timeout_s,
    )

    response = webhook.handler(api_event(request), context)

    status = response["statusCode"]
    assert 200 <= status < 300 or 400 <= status < 500, response
    body = json.loads(response["body"])
    if status >= 400:
        assert isinstance(body.get("message"), str), response
        assert body["message"].strip(), response
    return Answer(status, body, len(queue))


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def api_event(request: Request) -> dict[str, Any]:
    """The payload v2.0 event API Gateway sends for ``request``."""
    environ = EnvironBuilder(
        path=request.path,
        method=request.method,
        data=request.body,
        headers=list(request.headers.items()),
        base_url=BASE,
    ).get_environ()
    built = FlaskRequest(environ)
    route_key = ROUTE_KEYS.get(built.path, "$default") if request.method == "POST" else "$default"
    return build_event(built, route_key, {}, request_id="fuzz", body=request.body)


# --- strategies ------------------------------------------------------------------------

# Everything HTTP allows in a header value (no CR, LF or other controls).
header_values = st.text(st.characters(min_codepoint=0x20, exclude_categories=["C"]), max_size=40)
signature_headers = (
    "X-HubSpot-Signature",
    "X-HubSpot-Signature-Version",
    "X-HubSpot-Signature-v3",
    "X-HubSpot-Request-Timestamp",
    "intuit-signature",
)
# Canonical, padded, signed, huge and non-ASCII numbers, and anything else.
timestamp_texts = st.one_of(
    st.integers().map(str),
    st.integers(min_value=0, max_value=600).map(lambda n: "9" * n),
    st.integers(min_value=0, max_value=10**15).map(lambda n: f" {n:+020d} "),
    st.text(st.characters(categories=["Nd"]), max_size=30),
    header_values,
)
headers = st.dictionaries(
    st.sampled_from(signature_headers)
    | st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,20}", fullmatch=True),
    header_values | timestamp_texts,
    max_size=6,
)
# Printable ASCII but "#", which no client sends (it starts the URL's fragment).
path_texts = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="#"))
paths = st.one_of(
    st.sampled_from([webhook_path(vendor, CONNECTION.id) for vendor in VENDORS]),
    path_texts.map(lambda vendor: webhook_path(vendor, CONNECTION.id)),
    # One leading "/": werkzeug's request builder (this test's, not API Gateway) reads
    # "//x" as a host, and refuses "//[" outright.
    path_texts.map(lambda path: "/" + path.lstrip("/")),
)


def nested(depth: int, container: str) -> str:
    if container == "list":
        return "[" * depth + "1" + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


deeply_nested = st.builds(
    nested, st.integers(min_value=1, max_value=20_000), st.sampled_from(["list", "object"])
)
huge_numbers = st.integers(min_value=0, max_value=4_000).map(lambda n: 10**n) | st.integers()
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    huge_numbers,
    huge_numbers.map(lambda n: -n),
    st.floats(),  # NaN and ±Infinity too: Python's json reads them
    st.text(st.characters(exclude_categories=()), max_size=20),  # lone surrogates, escaped
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


Field = Callable[[st.SearchStrategy[Any]], st.SearchStrategy[Any]]


def as_sent(plausible: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A field as the vendor sends it."""
    return plausible


def or_any_json(plausible: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A field as the vendor sends it, or any JSON in its place (wrong types, huge numbers)."""
    return plausible | json_values


ids = st.integers(min_value=0, max_value=10**12)
recent_ms = st.integers(min_value=-3_600_000, max_value=60_000).map(lambda d: now_ms() + d)
# Offsets as far as ISO 8601 goes, and years from 1 to 9999 as well as this century's.
offsets = st.sampled_from(
    [UTC, timezone(timedelta(hours=23, minutes=59)), timezone(-timedelta(hours=23, minutes=59))]
)
moments = st.one_of(
    st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1), timezones=offsets),
    st.datetimes(timezones=offsets),
).map(lambda moment: moment.isoformat())
qbo_entities = st.sampled_from(["customer", "invoice", "payment", "item", "account"])


def hubspot_events(field: Field) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "eventId": field(ids),
            "subscriptionId": field(ids),
            "portalId": field(ids),
            "occurredAt": field(recent_ms | huge_numbers),
            "subscriptionType": field(
                st.builds(
                    "{}.{}".format,
                    st.sampled_from(["contact", "company", "deal", "line_item", "ticket"]),
                    st.sampled_from(["creation", "propertyChange", "deletion", "merge"]),
                )
            ),
            "objectId": field(ids),
        },
        optional={
            "associationType": field(st.sampled_from(["DEAL_TO_CONTACT", "CONTACT_TO_DEAL"])),
            "fromObjectId": field(ids),
            "toObjectId": field(ids),
            "primaryObjectId": field(ids),
            "newObjectId": field(ids),
            "attemptNumber": json_values,
        },
    )


def cloud_events(field: Field) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "specversion": field(st.just("1.0")),
            "id": field(st.text(min_size=1, max_size=20)),
            "type": field(
                st.builds(
                    "qbo.{}.{}.v1".format, qbo_entities, st.sampled_from(["created", "deleted"])
                )
            ),
            "time": field(moments),
            "intuitentityid": field(st.text(min_size=1, max_size=20)),
        },
        optional={"intuitaccountid": json_values},
    )


def legacy_payloads(field: Field) -> st.SearchStrategy[dict[str, Any]]:
    entity = st.fixed_dictionaries(
        {
            "name": field(qbo_entities.map(str.capitalize)),
            "id": field(st.text(min_size=1, max_size=20)),
            "operation": field(st.sampled_from(["Create", "Update", "Delete"])),
            "lastUpdated": field(moments),
        }
    )
    notification = st.fixed_dictionaries(
        {
            "realmId": field(st.text(max_size=20)),
            "dataChangeEvent": st.fixed_dictionaries({"entities": st.lists(entity, max_size=3)}),
        }
    )
    return st.fixed_dictionaries({"eventNotifications": st.lists(notification, max_size=3)})


FIELDS = (as_sent, or_any_json)
any_body = st.one_of(json_values.map(json.dumps), deeply_nested, st.text(max_size=60))
bodies = {
    "hubspot": st.one_of(
        *(st.lists(hubspot_events(field), max_size=4).map(json.dumps) for field in FIELDS),
        any_body,
    ),
    "quickbooks": st.one_of(
        *(st.lists(cloud_events(field), max_size=4).map(json.dumps) for field in FIELDS),
        *(legacy_payloads(field).map(json.dumps) for field in FIELDS),
        any_body,
    ),
}
SCHEMES = {"hubspot": ("v1", "v2", "v3"), "quickbooks": ("intuit",)}


@dataclass(frozen=True)
class Delivery:
    """What to post and how to sign it; signed when posted, so a v3 timestamp is fresh."""

    vendor: str
    scheme: str
    body: str
    content_type: str = "application/json"

    def signed(self, secret: str | None = None) -> Request:
        url = f"{BASE}{webhook_path(self.vendor, CONNECTION.id)}"
        key = secret or (HUBSPOT_SECRET if self.vendor == "hubspot" else VERIFIER_TOKEN)
        if self.scheme == "v3":
            timestamp = now_ms()
            signature = {
                "X-HubSpot-Signature-v3": sign_v3(key, "POST", url, self.body, timestamp),
                "X-HubSpot-Request-Timestamp": str(timestamp),
            }
        elif self.scheme == "v2":
            signature = {"X-HubSpot-Signature": sign_v2(key, "POST", url, self.body)}
            signature["X-HubSpot-Signature-Version"] = "v2"
        elif self.scheme == "v1":
            signature = {"X-HubSpot-Signature": sign_v1(key, self.body)}
            signature["X-HubSpot-Signature-Version"] = "v1"
        else:  # base64(HMAC-SHA256(verifier token, body)), Intuit's webhook signature
            digest = hmac.new(key.encode(), self.body.encode(), hashlib.sha256).digest()
            signature = {"intuit-signature": base64.b64encode(digest).decode()}
        content_type = {"Content-Type": self.content_type} if self.content_type else {}
        return Request(
            "POST",
            webhook_path(self.vendor, CONNECTION.id),
            self.body.encode(),
            signature | content_type,
        )


deliveries = st.sampled_from((CONNECTION.crm, CONNECTION.accounting)).flatmap(
    lambda vendor: st.builds(
        Delivery,
        st.just(vendor),
        st.sampled_from(SCHEMES[vendor]),
        bodies[vendor],
        st.sampled_from(CONTENT_TYPES),
    )
)
requests = st.builds(
    Request,
    st.sampled_from(METHODS),
    paths,
    st.binary(max_size=200) | st.text(max_size=200).map(str.encode),
    headers.flatmap(
        lambda named: st.sampled_from(CONTENT_TYPES).map(
            lambda content_type: named | ({"Content-Type": content_type} if content_type else {})
        )
    ),
)


def epoch_ms(timestamp: str) -> int | None:
    """The number a timestamp header spells in HubSpot's form (plain decimal), or None."""
    try:
        number = int(timestamp)
    except ValueError:
        return None
    return number if str(number) == timestamp else None


# Deeper than the recursion limit, which Hypothesis raises while a test runs (Python's
# default of 1,000, as in Lambda, already fails at a thousand levels).
TOO_DEEP = nested(50_000, "list")
EXAMPLE_EVENT = {
    "eventId": 1,
    "subscriptionId": 2,
    "portalId": 62515,
    "subscriptionType": "contact.creation",
    "objectId": 101,
}
FUZZ = settings(max_examples=100, deadline=None)  # a slow shared CI runner is no failure


# --- properties ----------------------------------------------------------------------


@FUZZ
@given(request=requests)
@example(  # a timestamp too large for float arithmetic, before any signature is checked
    request=Request(
        "POST",
        webhook_path("hubspot", CONNECTION.id),
        b"[]",
        {"X-HubSpot-Signature-v3": "AAAA", "X-HubSpot-Request-Timestamp": "9" * 400},
    )
)
def test_given_any_unsigned_request_then_4xx_with_reason_and_nothing_enqueued(
    webhook: WebhookFunction, request: Request
) -> None:
    answer = respond(webhook, request)

    assert 400 <= answer.status < 500
    assert answer.queued == 0


@FUZZ
@given(delivery=deliveries)
@example(delivery=Delivery("hubspot", "v3", TOO_DEEP))
@example(delivery=Delivery("hubspot", "v1", TOO_DEEP))
@example(delivery=Delivery("quickbooks", "intuit", TOO_DEEP))
@example(  # v1/v2 replay check: an occurredAt too large for float arithmetic
    delivery=Delivery("hubspot", "v1", json.dumps([EXAMPLE_EVENT | {"occurredAt": 10**400}]))
)
def test_given_any_signed_body_then_2xx_enqueues_or_4xx_says_why(
    webhook: WebhookFunction, delivery: Delivery
) -> None:
    answer = respond(webhook, delivery.signed())

    if answer.status < 300:
        # The count is what was sent; FIFO dedup may fold events with one id into one.
        enqueued = answer.body["enqueued"]
        assert answer.queued <= enqueued
        assert (answer.queued > 0) == (enqueued > 0)
    else:
        assert answer.queued == 0


@FUZZ
@given(delivery=deliveries, secret=st.text(min_size=1, max_size=30))
def test_given_any_body_signed_with_another_key_then_401_and_nothing_enqueued(
    webhook: WebhookFunction, delivery: Delivery, secret: str
) -> None:
    assume(secret not in (HUBSPOT_SECRET, VERIFIER_TOKEN))
    answer = respond(webhook, delivery.signed(secret))

    assert answer.status == 401
    assert answer.queued == 0


@FUZZ
@given(timestamp=timestamp_texts | recent_ms.map(str))
@example(timestamp="9" * 400)
def test_given_any_v3_timestamp_then_enqueued_only_when_fresh(
    webhook: WebhookFunction, timestamp: str
) -> None:
    body = json.dumps([EXAMPLE_EVENT | {"occurredAt": now_ms()}])
    url = f"{BASE}{webhook_path('hubspot', CONNECTION.id)}"
    number = epoch_ms(timestamp)
    signature = (
        sign_v3(HUBSPOT_SECRET, "POST", url, body, number)
        if number is not None
        else base64.b64encode(b"\0" * 32).decode()  # HubSpot never sends such a header
    )
    request = Request(
        "POST",
        webhook_path("hubspot", CONNECTION.id),
        body.encode(),
        {
            "Content-Type": "application/json",
            "X-HubSpot-Signature-v3": signature,
            "X-HubSpot-Request-Timestamp": timestamp,
        },
    )

    answer = respond(webhook, request)

    # Older than the tolerance is refused by HubSpot's rule
    # (https://developers.hubspot.com/docs/api/webhooks/validating-requests), as far ahead
    # by ours; a timestamp within a few seconds of that edge gets no verdict.
    tolerance_ms = webhook.settings.webhook_tolerance_s * 1000
    age_ms = None if number is None else abs(now_ms() - number)
    if age_ms is not None and age_ms < tolerance_ms - 10_000:
        assert (answer.status, answer.queued) == (200, 1)
    elif age_ms is None or age_ms > tolerance_ms + 10_000:
        assert (answer.status, answer.queued) == (401, 0)
