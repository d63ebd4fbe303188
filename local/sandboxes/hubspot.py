"""HubSpot sandbox: a stateful fake of HubSpot's public CRM API, webhooks included.

Built from HubSpot's documented behaviour (docs/vendors/hubspot.md, including its
"What the sandbox must reproduce" list) so the production connector, plain httpx,
cannot tell it from ``api.hubapi.com``.

Reproduced:

* Private-app auth: ``Authorization: Bearer <token>``; otherwise 401 with
  ``category: INVALID_AUTHENTICATION``.
* CRM v3 objects (contacts, companies, deals, line_items, products; the singular
  names and ``0-x`` type ids are accepted too): create 201, read, list, PATCH 200,
  archive 204 (``archived=true`` reads and lists archived records, with their
  ``archivedAt``). ``properties`` may be comma-separated or repeated; unknown names are
  ignored on read and rejected on write (``PROPERTY_DOESNT_EXIST``). Values are
  stored and returned as strings; datetimes are accepted as ISO-8601 or epoch ms and
  returned as ISO-8601 UTC, and an empty string clears a value. ``createdate``,
  ``hs_object_id`` and the last-modified property (``lastmodifieddate`` on contacts,
  ``hs_lastmodifieddate`` elsewhere) are maintained by the sandbox and read-only.
  ``paging`` is absent on the last page.
* Properties API (``local/sandboxes/hubspot_properties.py``): list, create, read and
  update property definitions and groups; a taken name is 409
  ``OBJECT_ALREADY_EXISTS``. Every written value is validated against its property's
  type, plus: line-item ``price`` must be >= 0, contact email must look like one (400
  ``VALIDATION_ERROR``, "Property values were not valid: [...]" naming each
  property, and again in ``errors``); a duplicate contact email gives 409
  ``CONFLICT`` "Contact already exists. Existing ID: <id>".
* Line items: ``hs_total_discount`` and ``amount`` are calculated; a written value
  is validated and then replaced.
* Batch read/create/update/archive: at most 100 inputs (50 with
  ``propertiesWithHistory``); partial failures give 207 with ``errors`` and
  ``numErrors``.
* Search: ``filterGroups`` (OR of groups, AND of filters), every documented
  operator, one sort, ``query``, ``limit`` <= 200, a 10,000-result cap (400 when
  paging past it), 5 requests/s per account answered with HubSpot's "secondly"
  429, no rate-limit headers, and records that show up (and change) only after
  ``search_visibility_lag_s``.
* Associations: on create, in v3 reads (``associations=``), and through v4 (list,
  default and labelled PUT, DELETE). Both directions are stored, using HubSpot's
  documented HUBSPOT_DEFINED type ids (contact->company 279 / primary 1,
  deal->contact 3, deal->company 341 / primary 5, deal->line item 19 and their
  inverses); a labelled (primary) type implies the unlabeled one.
* Rate limits: a rolling burst window (default 100 per 10 s, the Free/Starter
  private-app row) and a daily count, with ``X-HubSpot-RateLimit-*`` headers on
  every non-search API response and the documented ``TEN_SECONDLY_ROLLING`` /
  ``DAILY`` 429 bodies.
* Webhooks: creation, deletion, one propertyChange per changed property, and
  associationChange (both directions) for contacts, companies, deals and line
  items, batched into JSON arrays of at most 100 shuffled events, optionally
  duplicated, signed with v1 (or v2) and v3, re-signed with a fresh timestamp and
  an incremented ``attemptNumber`` on each retry. A delivery fails on any non-2xx
  or no answer within 5 s.

Choices where the docs are unclear:

* ``Retry-After`` on REST 429s: not sent. Nothing read documents it, and
  HubSpot's own SDKs never read it: hubspot-api-nodejs' ``RetryDecorator`` waits
  10 s when ``policyName`` is ``TEN_SECONDLY_ROLLING`` and 1 s when the message is
  "You have reached your secondly limit." (the search limit). Clients must back
  off on ``policyName`` / ``X-HubSpot-RateLimit-Interval-Milliseconds``. The
  ``rate_limit`` fault therefore ignores ``Fault.retry_after_s``.
* Search 429 body: ``policyName: SECONDLY`` with that "secondly" message (seen in
  integrations' reports and keyed on by the SDK). Search calls also count toward
  the burst and daily limits: only public OAuth apps are documented as exempt.
  The daily count resets at midnight UTC (HubSpot uses the account's time zone).
* Filter-group limits conflict across sources; the strictest is enforced (5 groups,
  6 filters per group, 18 filters in total), so a request that passes here passes
  at HubSpot.
* One sort per search (HubSpot docs allow a single sorting rule); default order is
  by id. Missing values sort last; ``NEQ``/``NOT_IN``/``NOT_CONTAINS_TOKEN`` match
  records without the property.
* Line-item ``discount`` is HubSpot's "Unit discount" (per unit), so
  ``amount = quantity x price - hs_total_discount`` where the total discount is
  ``quantity x discount``, or ``quantity x price x hs_discount_percentage / 100``.
* List ``limit`` above 100 is clamped to 100. Archiving an unknown or already
  archived id answers 204 (archive is idempotent).
* v3 read ``associations`` are keyed by the plural type name (``line_items``);
  primary labelled types are reported as e.g. ``deal_to_company`` and the unlabeled
  ones as ``deal_to_company_unlabeled``. v4 ids are strings, as in the spec.
* Webhooks: creation sends only ``*.creation`` (no propertyChange per initial
  value); propertyChange is never sent for the last-modified properties (HubSpot
  refuses such subscriptions). Changes made through the API with the app's token
  carry ``changeSource: "INTEGRATION"`` and the app's id as ``sourceId`` (a string),
  as integrators observe; the ``ui_*`` helpers and ``/_sandbox/objects`` writes stand
  in for a person in HubSpot's UI and carry ``"CRM_UI"``. A record's events are
  dated with its new last-modified time. ``objectId``,
  ``eventId``, ``fromObjectId`` and ``toObjectId`` are integers. A receiver's 429
  is retried on the normal schedule (``WebhookDispatcher`` has no Retry-After
  hook).

Admin routes (no auth, no rate limit, never called by production code):
``/_sandbox/faults`` and ``/_sandbox/reset`` from ``base.install_fault_routes``;
``GET|POST /_sandbox/objects/<type>``, ``PATCH|DELETE /_sandbox/objects/<type>/<id>``,
``PUT /_sandbox/associations/<type>/<id>/<toType>/<toId>``,
``GET /_sandbox/webhooks`` and ``PUT /_sandbox/webhooks/target``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from fnmatch import fnmatchcase
from typing import Any

import httpx
from flask import Flask, Response, jsonify, request

from local.sandboxes.base import (
    Delivery,
    Fault,
    FaultInjector,
    SlidingWindowLimiter,
    WebhookDispatcher,
    install_fault_routes,
)
from local.sandboxes.hubspot_properties import (
    ApiError,
    BuiltIn,
    Property,
    PropertyCatalog,
    decimal_or_none,
    epoch_ms,
    invalid_values,
    iso,
    ms,
    problem,
)
from local.sandboxes.registry import DemoLine, SandboxSpec

__all__ = [
    "HubSpotSandbox",
    "HubSpotSandboxConfig",
    "create_app",
    "sign_v1",
    "sign_v2",
    "sign_v3",
]

JSON = dict[str, Any]

OBJECT_TYPES = ("contacts", "companies", "deals", "line_items", "products")
_TYPE_IDS = {
    "contacts": "0-1",
    "companies": "0-2",
    "deals": "0-3",
    "products": "0-7",
    "line_items": "0-8",
}
_SINGULAR = {
    "contacts": "contact",
    "companies": "company",
    "deals": "deal",
    "line_items": "line_item",
    "products": "product",
}
_TYPE_ALIASES = {
    **{t: t for t in OBJECT_TYPES},
    **{s: t for t, s in _SINGULAR.items()},
    **{i: t for t, i in _TYPE_IDS.items()},
}
# The change source of a write through the API with the app's token: what HubSpot
# reports for an app's changes (observed: "INTEGRATION", with the app's id as sourceId).
_BY_APP = "INTEGRATION"
_WEBHOOK_TYPES = ("contacts", "companies", "deals", "line_items")
_SUBSCRIPTION_KINDS = ("creation", "deletion", "propertyChange", "associationChange")

_LAST_MODIFIED = {t: "hs_lastmodifieddate" for t in OBJECT_TYPES} | {"contacts": "lastmodifieddate"}
_DEFAULT_PROPERTIES: dict[str, tuple[str, ...]] = {
    "contacts": ("email", "firstname", "lastname"),
    "companies": ("name", "domain"),
    "deals": ("dealname", "amount", "dealstage", "pipeline", "closedate"),
    "line_items": ("name", "quantity", "price", "amount"),
    "products": ("name", "price", "description"),
}
_OTHER_PROPERTIES: dict[str, tuple[str, ...]] = {
    "contacts": (
        "phone", "company", "website", "jobtitle", "address", "city", "state", "zip",
        "country", "lifecyclestage", "hubspot_owner_id",
    ),
    "companies": (
        "phone", "website", "address", "city", "state", "zip", "country", "industry",
        "description", "hubspot_owner_id",
    ),
    "deals": ("deal_currency_code", "dealtype", "description", "hubspot_owner_id"),
    "line_items": (
        "description", "discount", "hs_discount_percentage", "hs_total_discount",
        "hs_product_id", "hs_sku", "hs_tax_rate_group_id", "hs_position_on_quote",
        "recurringbillingfrequency", "hs_recurring_billing_period",
    ),
    "products": ("hs_sku", "hs_cost_of_goods_sold", "recurringbillingfrequency"),
}  # fmt: skip
_NUMERIC: dict[str, frozenset[str]] = {
    "contacts": frozenset(),
    "companies": frozenset(),
    "deals": frozenset({"amount"}),
    "line_items": frozenset(
        {"quantity", "price", "discount", "hs_discount_percentage", "amount", "hs_total_discount"}
    ),
    "products": frozenset({"price", "hs_cost_of_goods_sold"}),
}
_DATE_PROPERTIES = frozenset({"createdate", "lastmodifieddate", "hs_lastmodifieddate", "closedate"})
_READ_ONLY = frozenset({"hs_object_id", "lastmodifieddate", "hs_lastmodifieddate"})
_MAINTAINED = _READ_ONLY | {"createdate"}
# Built-in enumerations and how HubSpot shows them; their options are the account's.
_ENUMERATIONS: dict[str, dict[str, str]] = {
    "contacts": {"lifecyclestage": "radio", "hubspot_owner_id": "select"},
    "companies": {"industry": "select", "hubspot_owner_id": "select"},
    "deals": {
        "dealstage": "radio",
        "pipeline": "select",
        "dealtype": "radio",
        "deal_currency_code": "select",
        "hubspot_owner_id": "select",
    },
    "line_items": {"recurringbillingfrequency": "select"},
    "products": {"recurringbillingfrequency": "select"},
}
# Each type's default property group (the properties guide's example for contacts;
# the others by the same pattern: unconfirmed).
_GROUPS = {
    "contacts": ("contactinformation", "Contact information"),
    "companies": ("companyinformation", "Company information"),
    "deals": ("dealinformation", "Deal information"),
    "line_items": ("lineiteminformation", "Line item information"),
    "products": ("productinformation", "Product information"),
}
_BUILT_IN = {
    otype: BuiltIn(
        group=_GROUPS[otype][0],
        group_label=_GROUPS[otype][1],
        names=tuple(sorted({*_MAINTAINED, *_DEFAULT_PROPERTIES[otype], *_OTHER_PROPERTIES[otype]})),
        numbers=_NUMERIC[otype] | {"hs_object_id"},
        datetimes=_DATE_PROPERTIES,
        enumerations=_ENUMERATIONS[otype],
        read_only=_READ_ONLY,
        calculated=frozenset({"amount", "hs_total_discount"} if otype == "line_items" else ()),
    )
    for otype in OBJECT_TYPES
}
_SEARCH_TEXT = {
    "contacts": ("firstname", "lastname", "email", "phone", "company"),
    "companies": ("name", "domain", "website"),
    "deals": ("dealname",),
    "line_items": ("name",),
    "products": ("name", "description", "hs_sku"),
}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_V3_DECODE = re.compile(r"%(3A|2F|3F|40|21|24|27|28|29|2A|2C|3B)", re.IGNORECASE)

_MAX_BATCH = 100
_MAX_BATCH_WITH_HISTORY = 50
_MAX_SEARCH_LIMIT = 200
_MAX_FILTER_GROUPS = 5
_MAX_FILTERS_PER_GROUP = 6
_MAX_FILTERS = 18
_OPERATORS = frozenset(
    {
        "EQ", "NEQ", "LT", "LTE", "GT", "GTE", "BETWEEN", "IN", "NOT_IN", "HAS_PROPERTY",
        "NOT_HAS_PROPERTY", "CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN",
    }
)  # fmt: skip


@dataclass(frozen=True)
class _AssocType:
    type_id: int
    from_type: str
    to_type: str
    inverse: int
    label: str | None
    v3_name: str


_ASSOC_TYPES = {
    t.type_id: t
    for t in (
        _AssocType(1, "contacts", "companies", 2, "Primary", "contact_to_company"),
        _AssocType(2, "companies", "contacts", 1, "Primary", "company_to_contact"),
        _AssocType(3, "deals", "contacts", 4, None, "deal_to_contact"),
        _AssocType(4, "contacts", "deals", 3, None, "contact_to_deal"),
        _AssocType(5, "deals", "companies", 6, "Primary", "deal_to_company"),
        _AssocType(6, "companies", "deals", 5, "Primary", "company_to_deal"),
        _AssocType(19, "deals", "line_items", 20, None, "deal_to_line_item"),
        _AssocType(20, "line_items", "deals", 19, None, "line_item_to_deal"),
        _AssocType(279, "contacts", "companies", 280, None, "contact_to_company_unlabeled"),
        _AssocType(280, "companies", "contacts", 279, None, "company_to_contact_unlabeled"),
        _AssocType(341, "deals", "companies", 342, None, "deal_to_company_unlabeled"),
        _AssocType(342, "companies", "deals", 341, None, "company_to_deal_unlabeled"),
    )
}
# The "default" (most generic) type for a pair is its unlabeled one.
_DEFAULT_ASSOC = {(t.from_type, t.to_type): t.type_id for t in _ASSOC_TYPES.values() if not t.label}


# --- signatures ---------------------------------------------------------------------------


def sign_v1(client_secret: str, body: str) -> str:
    """``X-HubSpot-Signature`` v1: hex SHA-256 of secret + body."""
    return hashlib.sha256(f"{client_secret}{body}".encode()).hexdigest()


def sign_v2(client_secret: str, method: str, uri: str, body: str) -> str:
    """``X-HubSpot-Signature`` v2: hex SHA-256 of secret + method + URI + body."""
    return hashlib.sha256(f"{client_secret}{method}{uri}{body}".encode()).hexdigest()


def sign_v3(client_secret: str, method: str, uri: str, body: str, timestamp_ms: int) -> str:
    """``X-HubSpot-Signature-v3``: base64 HMAC-SHA256 of method + URI + body + timestamp."""
    message = f"{method}{uri}{body}{timestamp_ms}".encode()
    digest = hmac.new(client_secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _v3_uri(url: str) -> str:
    """The URI as HubSpot hashes it for v3: the documented %-escapes decoded."""
    return _V3_DECODE.sub(lambda m: bytes.fromhex(m.group(1)).decode(), url)


# --- config and records -------------------------------------------------------------------


@dataclass
class HubSpotSandboxConfig:
    """Knobs for one fake HubSpot account; defaults follow HubSpot's documented values."""

    access_token: str = "pat-na1-sandbox-token"
    client_secret: str = "sandbox-client-secret"
    webhook_url: str | None = None
    portal_id: int = 62515
    app_id: int = 1160452
    rate_limit: int = 100
    rate_window_s: float = 10.0
    daily_limit: int = 250_000
    search_rate_per_s: int = 5
    search_result_cap: int = 10_000
    search_visibility_lag_s: float = 0.0
    webhook_retry_delays_s: list[float] = field(default_factory=lambda: [0.2, 0.5, 1.0, 2.0])
    webhook_timeout_s: float = 5.0
    webhook_batch_window_s: float = 0.05
    webhook_timestamp_offset_s: float = 0.0
    duplicate_event_probability: float = 0.0
    signature_versions: tuple[str, ...] = ("v1", "v3")
    # Custom string properties the account has from the start, by object type.
    custom_properties: Mapping[str, Sequence[str]] = field(default_factory=dict)
    first_id: int = 1001
    seed: int | None = None

    def __post_init__(self) -> None:
        unknown = set(self.signature_versions) - {"v1", "v2", "v3"}
        if unknown:
            raise ValueError(f"unknown signature versions {sorted(unknown)}")
        if {"v1", "v2"} <= set(self.signature_versions):
            raise ValueError("v1 and v2 share the X-HubSpot-Signature header; pick one")
        if not 0.0 <= self.duplicate_event_probability <= 1.0:
            raise ValueError("duplicate_event_probability must be between 0 and 1")
        bad_types = set(self.custom_properties) - set(OBJECT_TYPES)
        if bad_types:
            raise ValueError(f"custom_properties for unknown object types {sorted(bad_types)}")


@dataclass
class _Snapshot:
    """What search sees of a record from ``visible_at`` on (``None`` props = archived)."""

    visible_at: float
    properties: dict[str, str | None] | None
    updated_at: float


@dataclass
class _Record:
    object_type: str
    id: int
    properties: dict[str, str | None]
    created_at: float
    updated_at: float
    archived_at: float | None = None
    history: dict[str, list[JSON]] = field(default_factory=dict)
    index: list[_Snapshot] = field(default_factory=list)


@dataclass
class _Hit:
    """One search match, as of the snapshot search could see."""

    id: int
    created_at: float
    updated_at: float
    properties: dict[str, str | None]


# --- small pure helpers -------------------------------------------------------------------


def _fmt_decimal(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


class _Invalid:
    """Marker for a property value that is not a JSON scalar."""


_INVALID = _Invalid()


def _text(value: Any) -> str | _Invalid | None:
    """A JSON property value as HubSpot stores it: a string, or ``None`` when cleared."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    return _INVALID


def _respond(body: Any, status: int = 200) -> Response:
    response = jsonify(body)
    response.status_code = status
    return response


def _no_content() -> Response:
    return Response(status=204)


def _object_type(name: str) -> str:
    try:
        return _TYPE_ALIASES[name.lower()]
    except KeyError:
        raise ApiError(
            400, "VALIDATION_ERROR", f"Unable to infer object type from: {name}"
        ) from None


def _json_body() -> JSON:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "VALIDATION_ERROR", "Invalid input JSON: expected a JSON object")
    return body


def _list_arg(name: str) -> list[str] | None:
    """A list query parameter, accepted comma-separated and repeated (both forms occur)."""
    values = [v.strip() for raw in request.args.getlist(name) for v in raw.split(",") if v.strip()]
    return values or None


def _int(value: Any, name: str, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ApiError(400, "VALIDATION_ERROR", f"{name} must be an integer") from None


def _str_list(value: Any, name: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError(400, "VALIDATION_ERROR", f"{name} must be a list of strings")
    return value


# --- the sandbox --------------------------------------------------------------------------


class HubSpotSandbox:
    """One fake HubSpot account: state, the Flask ``app``, and helpers for tests and the demo.

    ``clock`` returns epoch seconds; it drives timestamps, rate-limit windows and the
    search lag, so tests can move time instead of sleeping. Call ``close()`` to stop
    the webhook threads.
    """

    def __init__(
        self, config: HubSpotSandboxConfig | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config or HubSpotSandboxConfig()
        self._clock = clock
        self._lock = threading.RLock()
        self._events_ready = threading.Condition(self._lock)
        self._rng = random.Random(self.config.seed)
        self._records: dict[str, dict[int, _Record]] = {t: {} for t in OBJECT_TYPES}
        self._properties = PropertyCatalog(_BUILT_IN, self.config.custom_properties, clock)
        self._assoc: dict[tuple[str, int, str, int], set[int]] = {}
        self._next_id = self.config.first_id
        self._next_event_id = 1
        self._pending_events: list[JSON] = []
        self._flushing = False
        self._closing = False
        self._daily: tuple[str, int] = ("", 0)
        self._burst = SlidingWindowLimiter(self.config.rate_limit, self.config.rate_window_s, clock)
        self._search_limiter = SlidingWindowLimiter(self.config.search_rate_per_s, 1.0, clock)
        self.faults = FaultInjector()
        self._dispatcher = WebhookDispatcher(
            list(self.config.webhook_retry_delays_s), timeout_s=self.config.webhook_timeout_s
        )
        self._dispatcher.start()
        self._batcher = threading.Thread(
            target=self._batch_loop, name="hubspot-events", daemon=True
        )
        self._batcher.start()
        self.app = self._build_app()

    # --- public helpers ---------------------------------------------------------------

    @property
    def deliveries(self) -> list[Delivery]:
        """Every webhook request the sandbox tried to send, with its attempt results."""
        return self._dispatcher.deliveries

    def wait_for_webhooks_idle(self, timeout: float = 10.0) -> bool:
        """Block until no event is queued, batching or being delivered; False on timeout."""

        def batching() -> bool:
            with self._lock:
                return bool(self._pending_events) or self._flushing

        return self._dispatcher.wait_idle(timeout, busy=batching)

    def reset(self) -> None:
        """Forget every record, association, property created through the API, queued
        event, delivery and rate-limit count.

        Ids keep increasing across resets so a stale id can never name a new record.
        """
        with self._lock:
            for records in self._records.values():
                records.clear()
            self._properties.reset()
            self._assoc.clear()
            self._pending_events.clear()
            self._daily = ("", 0)
            self._burst.reset()
            self._search_limiter.reset()
            self._dispatcher.clear()

    def close(self) -> None:
        """Stop the batcher and dispatcher threads."""
        with self._lock:
            self._closing = True
            self._events_ready.notify_all()
        self._batcher.join(timeout=5)
        self._dispatcher.stop()

    def records(self, object_type: str, include_archived: bool = True) -> list[JSON]:
        """All records of a type with every property and their associations, for inspection."""
        otype = _object_type(object_type)
        with self._lock:
            return [
                self._inspect(rec)
                for rec in sorted(self._records[otype].values(), key=lambda r: r.id)
                if include_archived or rec.archived_at is None
            ]

    def ui_create(
        self,
        object_type: str,
        properties: Mapping[str, Any],
        associations: list[JSON] | None = None,
    ) -> JSON:
        """Create a record as a person in HubSpot's UI would (``changeSource: CRM_UI``)."""
        body = {"properties": dict(properties), "associations": associations or []}
        rec = self._create(_object_type(object_type), body, "CRM_UI")
        return self._render_written(rec)

    def ui_update(self, object_type: str, object_id: str, properties: Mapping[str, Any]) -> JSON:
        """Edit a record as a person in HubSpot's UI would."""
        rec = self._update(_object_type(object_type), object_id, dict(properties), "CRM_UI")
        return self._render_written(rec)

    def ui_archive(self, object_type: str, object_id: str) -> None:
        """Delete a record as a person in HubSpot's UI would."""
        self._archive(_object_type(object_type), object_id, "CRM_UI")

    def ui_associate(self, from_type: str, from_id: str, to_type: str, to_id: str) -> None:
        """Link two records with the default association type, as the UI would."""
        self._associate_default(
            _object_type(from_type), from_id, _object_type(to_type), to_id, "CRM_UI"
        )

    # --- app wiring -------------------------------------------------------------------

    def _build_app(self) -> Flask:
        app = Flask(__name__)
        install_fault_routes(app, self.faults, rate_limited=self._fault_429, on_reset=self.reset)
        app.before_request(self._gatekeep)
        app.after_request(self._rate_headers)
        app.register_error_handler(ApiError, self._on_api_error)
        app.register_error_handler(404, self._on_unknown_route)
        app.register_error_handler(405, self._on_unknown_route)
        rule = app.add_url_rule
        objects = "/crm/v3/objects/<object_type>"
        rule(objects, "list", self._list_objects, methods=["GET"])
        rule(objects, "create", self._create_object, methods=["POST"])
        rule(f"{objects}/search", "search", self._search_objects, methods=["POST"])
        rule(f"{objects}/batch/<action>", "batch", self._batch, methods=["POST"])
        rule(f"{objects}/<object_id>", "read", self._get_object, methods=["GET"])
        rule(f"{objects}/<object_id>", "update", self._patch_object, methods=["PATCH"])
        rule(f"{objects}/<object_id>", "archive", self._delete_object, methods=["DELETE"])
        props = "/crm/v3/properties/<object_type>"
        rule(props, "properties", self._list_properties, methods=["GET"])
        rule(props, "create_property", self._create_property, methods=["POST"])
        rule(f"{props}/groups", "groups", self._list_groups, methods=["GET"])
        rule(f"{props}/groups", "create_group", self._create_group, methods=["POST"])
        rule(f"{props}/groups/<group_name>", "group", self._get_group, methods=["GET"])
        rule(f"{props}/<property_name>", "property", self._get_property, methods=["GET"])
        rule(f"{props}/<property_name>", "edit_property", self._patch_property, methods=["PATCH"])
        v4 = "/crm/v4/objects/<from_type>/<from_id>/associations"
        rule(f"{v4}/<to_type>", "v4_list", self._v4_list, methods=["GET"])
        rule(f"{v4}/default/<to_type>/<to_id>", "v4_default", self._v4_default, methods=["PUT"])
        rule(f"{v4}/<to_type>/<to_id>", "v4_put", self._v4_labelled, methods=["PUT"])
        rule(f"{v4}/<to_type>/<to_id>", "v4_delete", self._v4_delete, methods=["DELETE"])
        admin = "/_sandbox/objects/<object_type>"
        rule(admin, "admin_list", self._admin_list, methods=["GET"])
        rule(admin, "admin_create", self._admin_create, methods=["POST"])
        rule(f"{admin}/<object_id>", "admin_update", self._admin_update, methods=["PATCH"])
        rule(f"{admin}/<object_id>", "admin_archive", self._admin_archive, methods=["DELETE"])
        rule(
            "/_sandbox/associations/<from_type>/<from_id>/<to_type>/<to_id>",
            "admin_associate",
            self._admin_associate,
            methods=["PUT"],
        )
        rule("/_sandbox/webhooks", "admin_webhooks", self._admin_webhooks, methods=["GET"])
        rule("/_sandbox/webhooks/target", "admin_target", self._admin_target, methods=["PUT"])
        return app

    def _on_api_error(self, error: ApiError) -> Response:
        return _respond(error.body(), error.status)

    def _on_unknown_route(self, error: Exception) -> Response:
        status = getattr(error, "code", 404)
        return _respond(
            ApiError(
                status, "OBJECT_NOT_FOUND", f"No route for {request.method} {request.path}"
            ).body(),
            status,
        )

    # --- auth and rate limits ---------------------------------------------------------

    @staticmethod
    def _is_search() -> bool:
        return request.method == "POST" and request.path.endswith("/search")

    def _gatekeep(self) -> Response | None:
        """Auth, then the search limit (search only), the burst and the daily limit."""
        if not request.path.startswith("/crm/"):
            return None
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            raise ApiError(
                401,
                "INVALID_AUTHENTICATION",
                "Authentication credentials not found. This API supports OAuth 2.0 "
                "authentication and you can find more details at "
                "https://developers.hubspot.com/docs/methods/auth/oauth-overview",
            )
        token = header.removeprefix("Bearer ").strip()
        if not hmac.compare_digest(token, self.config.access_token):
            raise ApiError(401, "INVALID_AUTHENTICATION", "Authentication credentials are invalid.")
        search = self._is_search()
        if search and self._search_limiter.hit(token):
            return self._search_429()
        if self._burst.hit(token):
            return self._burst_429("TEN_SECONDLY_ROLLING")
        with self._lock:
            day = datetime.fromtimestamp(self._clock(), UTC).date().isoformat()
            used = self._daily[1] if self._daily[0] == day else 0
            if used >= self.config.daily_limit:
                return self._burst_429("DAILY")
            self._daily = (day, used + 1)
        request.environ["hubspot.rate_headers"] = not search
        return None

    def _daily_remaining(self) -> int:
        with self._lock:
            day = datetime.fromtimestamp(self._clock(), UTC).date().isoformat()
            used = self._daily[1] if self._daily[0] == day else 0
        return max(self.config.daily_limit - used, 0)

    def _limit_headers(self, remaining: int, daily_remaining: int) -> dict[str, str]:
        return {
            "X-HubSpot-RateLimit-Max": str(self.config.rate_limit),
            "X-HubSpot-RateLimit-Remaining": str(remaining),
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(int(self.config.rate_window_s * 1000)),
            "X-HubSpot-RateLimit-Daily": str(self.config.daily_limit),
            "X-HubSpot-RateLimit-Daily-Remaining": str(daily_remaining),
        }

    def _rate_headers(self, response: Response) -> Response:
        if request.environ.get("hubspot.rate_headers"):
            headers = self._limit_headers(
                self._burst.remaining(self.config.access_token), self._daily_remaining()
            )
            for name, value in headers.items():
                response.headers.setdefault(name, value)
        return response

    def _burst_429(self, policy: str) -> Response:
        """HubSpot's documented 429 for the rolling (or daily) limit; no Retry-After.

        Search responses never carry the rate-limit headers, not even this one.
        """
        message = (
            "You have reached your daily limit."
            if policy == "DAILY"
            else "You have reached your ten_secondly_rolling limit."
        )
        response = _respond(
            {
                "status": "error",
                "message": message,
                "errorType": "RATE_LIMIT",
                "correlationId": str(uuid.uuid4()),
                "policyName": policy,
            },
            429,
        )
        if not self._is_search():
            remaining = 0 if policy != "DAILY" else self._burst.remaining(self.config.access_token)
            daily = 0 if policy == "DAILY" else self._daily_remaining()
            response.headers.update(self._limit_headers(remaining, daily))
        return response

    def _search_429(self) -> Response:
        """The search limit's 429: the "secondly" policy, without rate-limit headers."""
        return _respond(
            {
                "status": "error",
                "message": "You have reached your secondly limit.",
                "errorType": "RATE_LIMIT",
                "correlationId": str(uuid.uuid4()),
                "policyName": "SECONDLY",
            },
            429,
        )

    def _fault_429(self, fault: Fault) -> Response:
        """A queued ``rate_limit`` fault looks exactly like the real limit being hit."""
        return self._search_429() if self._is_search() else self._burst_429("TEN_SECONDLY_ROLLING")

    # --- state primitives (call with the lock held) -------------------------------------

    def _known(self, otype: str, name: str) -> bool:
        return self._properties.get(otype, name) is not None

    def _find(self, otype: str, object_id: Any, archived: bool = False) -> _Record:
        try:
            rec = self._records[otype].get(int(str(object_id)))
        except ValueError:
            raise ApiError(
                404, "OBJECT_NOT_FOUND", "Object not found. objectId are usually numeric."
            ) from None
        if rec is None or (rec.archived_at is not None) != archived:
            raise ApiError(404, "OBJECT_NOT_FOUND", "resource not found")
        return rec

    def _find_by(self, otype: str, id_property: str | None, value: Any) -> _Record | None:
        """Look a live record up by id or by a unique property (``idProperty``)."""
        if id_property in (None, "hs_object_id"):
            try:
                return self._find(otype, value)
            except ApiError:
                return None
        if otype == "contacts" and id_property == "email":
            return self._by_email(str(value))
        raise ApiError(400, "VALIDATION_ERROR", f"{id_property} is not a unique property")

    def _by_email(self, email: str, exclude: int | None = None) -> _Record | None:
        wanted = email.strip().lower()
        if not wanted:
            return None
        for rec in self._records["contacts"].values():
            current = rec.properties.get("email")
            if rec.archived_at is None and rec.id != exclude and (current or "").lower() == wanted:
                return rec
        return None

    def _validate(self, otype: str, raw: Any) -> dict[str, str | None]:
        """Coerce a ``properties`` object to strings, rejecting what HubSpot rejects."""
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            raise ApiError(400, "VALIDATION_ERROR", "properties must be a JSON object")
        out: dict[str, str | None] = {}
        problems: list[JSON] = []
        for name, value in raw.items():
            prop = self._properties.get(otype, name)
            text = _text(value)
            if prop is None:
                msg = f'Property "{name}" does not exist'
                problems.append(problem(name, msg, "PROPERTY_DOESNT_EXIST"))
            elif prop.read_only:
                msg = f'"{name}" is a read only property; its value cannot be set.'
                problems.append(problem(name, msg, "READ_ONLY_VALUE"))
            elif isinstance(text, _Invalid):
                msg = f"{value!r} is not a valid value for {name}"
                problems.append(problem(name, msg, "INVALID_VALUE"))
            elif text is None:
                out[name] = None
            else:
                stored, refused = self._check_value(otype, prop, text)
                if refused is not None:
                    problems.append(refused)
                else:
                    out[name] = stored
        if problems:
            raise invalid_values(problems, self.config.portal_id)
        return out

    @staticmethod
    def _check_value(otype: str, prop: Property, text: str) -> tuple[str | None, JSON | None]:
        """The value as stored, or its problem: the property's type, then the rules
        HubSpot adds for a few built-in properties."""
        stored, refused = prop.check(text)
        if refused is not None or stored is None:
            return stored, refused
        if otype == "line_items" and prop.name == "price" and Decimal(stored) < 0:
            msg = f"{text} is not a valid price; price must be greater than or equal to 0."
            return None, problem(prop.name, msg, "INVALID_FLOAT")
        if otype == "contacts" and prop.name == "email" and not _EMAIL.match(text):
            return None, problem(prop.name, f"Email address {text} is invalid", "INVALID_EMAIL")
        return stored, None

    def _check_unique(
        self, otype: str, props: Mapping[str, str | None], own_id: int | None
    ) -> None:
        email = props.get("email")
        if otype == "contacts" and email:
            existing = self._by_email(email, exclude=own_id)
            if existing is not None:
                raise ApiError(
                    409, "CONFLICT", f"Contact already exists. Existing ID: {existing.id}"
                )

    @staticmethod
    def _recompute(rec: _Record) -> None:
        """Line items' calculated properties, as HubSpot keeps them."""
        if rec.object_type != "line_items":
            return
        props = rec.properties
        quantity = decimal_or_none(props.get("quantity") or "")
        price = decimal_or_none(props.get("price") or "")
        if quantity is None or price is None:
            props["hs_total_discount"] = props["amount"] = None
            return
        unit_discount = decimal_or_none(props.get("discount") or "")
        percentage = decimal_or_none(props.get("hs_discount_percentage") or "")
        if unit_discount is not None:
            total_discount = quantity * unit_discount
        elif percentage is not None:
            total_discount = quantity * price * percentage / 100
        else:
            total_discount = Decimal(0)
        props["hs_total_discount"] = _fmt_decimal(total_discount)
        props["amount"] = _fmt_decimal(quantity * price - total_discount)

    def _apply(
        self, rec: _Record, changes: Mapping[str, str | None], source: str, creating: bool = False
    ) -> list[str]:
        """Write ``changes``, keep calculated and maintained properties, index for search.

        Returns the changed property names (maintained ones excluded).
        """
        now = rec.updated_at if creating else self._clock()
        before = dict(rec.properties)
        rec.properties.update(changes)
        self._recompute(rec)
        changed = sorted(
            name
            for name in rec.properties.keys() | before.keys()
            if name not in _MAINTAINED and rec.properties.get(name) != before.get(name)
        )
        if changed or creating:
            rec.updated_at = now
            rec.properties[_LAST_MODIFIED[rec.object_type]] = iso(now)
            for name in changed:
                entry = {
                    "value": rec.properties.get(name) or "",
                    "timestamp": iso(now),
                    "sourceType": source,
                }
                rec.history.setdefault(name, []).insert(0, entry)
            self._index(rec)
        return changed

    def _index(self, rec: _Record) -> None:
        """Queue what search will see of ``rec`` as of its last write."""
        now = rec.updated_at
        self._visible(rec, now)  # prunes snapshots no search can see any more
        props = None if rec.archived_at is not None else dict(rec.properties)
        visible_at = now + self.config.search_visibility_lag_s
        rec.index.append(_Snapshot(visible_at, props, rec.updated_at))

    def _create(self, otype: str, body: Mapping[str, Any], source: str) -> _Record:
        raw_assoc = body.get("associations") or []
        if not isinstance(raw_assoc, list):
            raise ApiError(400, "VALIDATION_ERROR", "associations must be a list")
        with self._lock:
            props = self._validate(otype, body.get("properties"))
            if otype == "deals" and not props.get("pipeline"):
                props["pipeline"] = "default"  # documented: omitted → the default pipeline
            self._check_unique(otype, props, None)
            links = [self._parse_association(otype, item) for item in raw_assoc]
            now = self._clock()
            created = props.pop("createdate", None) or iso(now)
            rec = _Record(
                otype,
                self._next_id,
                {"createdate": created, "hs_object_id": str(self._next_id)},
                created_at=(epoch_ms(created) or 0) / 1000,
                updated_at=now,
            )
            self._next_id += 1
            self._records[otype][rec.id] = rec
            self._apply(rec, props, source, creating=True)
            self._emit(otype, "creation", rec.id, source, at=rec.updated_at, changeFlag="NEW")
            for to_type, to_id, type_ids in links:
                self._link(otype, rec.id, to_type, to_id, type_ids, source)
            return rec

    def _update(self, otype: str, object_id: Any, raw: Any, source: str) -> _Record:
        with self._lock:
            rec = self._find(otype, object_id)
            props = self._validate(otype, raw)
            self._check_unique(otype, props, rec.id)
            created = props.get("createdate")
            if created:
                rec.created_at = (epoch_ms(created) or 0) / 1000
            for name in self._apply(rec, props, source):
                self._emit(
                    otype,
                    "propertyChange",
                    rec.id,
                    source,
                    at=rec.updated_at,
                    propertyName=name,
                    propertyValue=rec.properties.get(name) or "",
                )
            return rec

    def _archive(self, otype: str, object_id: Any, source: str) -> None:
        with self._lock:
            try:
                rec = self._find(otype, object_id)
            except ApiError:
                return  # archiving is idempotent
            rec.archived_at = rec.updated_at = self._clock()
            self._index(rec)
            self._emit(otype, "deletion", rec.id, source, at=rec.updated_at, changeFlag="DELETED")

    # --- associations -----------------------------------------------------------------

    def _parse_association(self, otype: str, item: Any) -> tuple[str, int, set[int]]:
        """Validate one create-time ``associations`` entry; the type id implies the target type."""
        if not isinstance(item, dict) or not isinstance(item.get("to"), dict):
            raise ApiError(400, "VALIDATION_ERROR", "each association needs to.id and types")
        types = item.get("types")
        if not isinstance(types, list) or not types:
            raise ApiError(400, "VALIDATION_ERROR", "each association needs at least one type")
        type_ids = self._parse_specs(otype, types, to_type=None)
        to_type = _ASSOC_TYPES[next(iter(type_ids))].to_type
        target = self._find_by(otype=to_type, id_property=None, value=item["to"].get("id"))
        if target is None:
            raise ApiError(
                400,
                "VALIDATION_ERROR",
                f"Association target {_SINGULAR[to_type]} {item['to'].get('id')} does not exist",
            )
        return to_type, target.id, type_ids

    @staticmethod
    def _parse_specs(otype: str, specs: list[Any], to_type: str | None) -> set[int]:
        type_ids: set[int] = set()
        for spec in specs:
            if not isinstance(spec, dict) or spec.get("associationCategory") != "HUBSPOT_DEFINED":
                raise ApiError(
                    400, "VALIDATION_ERROR", "associationCategory must be HUBSPOT_DEFINED here"
                )
            kind = _ASSOC_TYPES.get(_int(spec.get("associationTypeId"), "associationTypeId", -1))
            if kind is None or kind.from_type != otype or to_type not in (None, kind.to_type):
                raise ApiError(
                    400,
                    "VALIDATION_ERROR",
                    f"associationTypeId {spec.get('associationTypeId')} is not valid "
                    f"from {_SINGULAR[otype]}",
                )
            type_ids.add(kind.type_id)
        if len({_ASSOC_TYPES[t].to_type for t in type_ids}) > 1:
            raise ApiError(400, "VALIDATION_ERROR", "association types name different targets")
        return type_ids

    def _link(
        self,
        from_type: str,
        from_id: int,
        to_type: str,
        to_id: int,
        type_ids: set[int],
        source: str,
    ) -> None:
        """Add association types in both directions; announce a newly linked pair."""
        implied = {t for tid in type_ids for t in (tid, _DEFAULT_ASSOC[(from_type, to_type)])}
        forward = self._assoc.setdefault((from_type, from_id, to_type, to_id), set())
        backward = self._assoc.setdefault((to_type, to_id, from_type, from_id), set())
        is_new = not forward
        forward.update(implied)
        backward.update(_ASSOC_TYPES[t].inverse for t in implied)
        if is_new:
            self._emit_association(from_type, from_id, to_type, to_id, source, removed=False)

    def _unlink(self, from_type: str, from_id: int, to_type: str, to_id: int, source: str) -> None:
        forward = self._assoc.pop((from_type, from_id, to_type, to_id), None)
        self._assoc.pop((to_type, to_id, from_type, from_id), None)
        if forward:
            self._emit_association(from_type, from_id, to_type, to_id, source, removed=True)

    def _targets(self, otype: str, object_id: int, to_type: str) -> list[tuple[int, list[int]]]:
        """Live records linked from one record to a type, with their type ids, by id."""
        found = [
            (to_id, sorted(type_ids))
            for (ft, fid, tt, to_id), type_ids in self._assoc.items()
            if ft == otype
            and fid == object_id
            and tt == to_type
            and type_ids
            and self._records[to_type].get(to_id) is not None
            and self._records[to_type][to_id].archived_at is None
        ]
        return sorted(found)

    def _associate_default(
        self, from_type: str, from_id: Any, to_type: str, to_id: Any, source: str
    ) -> tuple[_Record, _Record, int]:
        if (from_type, to_type) not in _DEFAULT_ASSOC:
            raise ApiError(
                400,
                "VALIDATION_ERROR",
                f"No association type between {_SINGULAR[from_type]} and {_SINGULAR[to_type]}",
            )
        with self._lock:
            source_rec = self._find(from_type, from_id)
            target_rec = self._find(to_type, to_id)
            type_id = _DEFAULT_ASSOC[(from_type, to_type)]
            self._link(from_type, source_rec.id, to_type, target_rec.id, {type_id}, source)
            return source_rec, target_rec, type_id

    # --- rendering --------------------------------------------------------------------

    @staticmethod
    def _names(otype: str, requested: Iterable[str] | None) -> list[str]:
        base = _DEFAULT_PROPERTIES[otype] if requested is None else requested
        always = ("createdate", "hs_object_id", _LAST_MODIFIED[otype])
        return sorted({*base, *always})

    def _render(
        self,
        rec: _Record,
        names: Iterable[str],
        history: Iterable[str] | None = None,
        associations: Iterable[str] | None = None,
    ) -> JSON:
        """A record in HubSpot's ``SimplePublicObject`` shape."""
        out: JSON = {
            "id": str(rec.id),
            "properties": {
                n: rec.properties.get(n) for n in names if self._known(rec.object_type, n)
            },
            "createdAt": iso(rec.created_at),
            "updatedAt": iso(rec.updated_at),
            "archived": rec.archived_at is not None,
        }
        if rec.archived_at is not None:
            out["archivedAt"] = iso(rec.archived_at)
        if history:
            out["propertiesWithHistory"] = {
                n: list(rec.history.get(n, [])) for n in history if self._known(rec.object_type, n)
            }
        rendered_assoc: JSON = {}
        for requested in associations or ():
            to_type = _TYPE_ALIASES.get(requested.lower())
            if to_type is None:
                continue
            results = [
                {"id": str(to_id), "type": _ASSOC_TYPES[tid].v3_name}
                for to_id, type_ids in self._targets(rec.object_type, rec.id, to_type)
                for tid in type_ids
            ]
            if results:
                rendered_assoc[to_type] = {"results": results}
        if rendered_assoc:
            out["associations"] = rendered_assoc
        return out

    def _render_written(self, rec: _Record) -> JSON:
        """Create/update responses: the default properties plus every property with a value."""
        with self._lock:
            set_names = [n for n, v in rec.properties.items() if v is not None]
            return self._render(
                rec,
                self._names(rec.object_type, [*_DEFAULT_PROPERTIES[rec.object_type], *set_names]),
            )

    def _inspect(self, rec: _Record) -> JSON:
        out = self._render(rec, sorted(rec.properties))
        out["associations"] = {
            to_type: [str(to_id) for to_id, _ in self._targets(rec.object_type, rec.id, to_type)]
            for to_type in OBJECT_TYPES
            if self._targets(rec.object_type, rec.id, to_type)
        }
        return out

    # --- v3 object routes -------------------------------------------------------------

    def _list_objects(self, object_type: str) -> Response:
        otype = _object_type(object_type)
        limit = min(max(_int(request.args.get("limit"), "limit", 10), 1), 100)
        after = _int(request.args.get("after"), "after", 0)
        archived = request.args.get("archived", "false").lower() == "true"
        names = self._names(otype, _list_arg("properties"))
        history = _list_arg("propertiesWithHistory")
        associations = _list_arg("associations")
        with self._lock:
            matching = sorted(
                (
                    r
                    for r in self._records[otype].values()
                    if (r.archived_at is not None) == archived
                ),
                key=lambda r: r.id,
            )
            remaining = [r for r in matching if r.id >= after]
            page = remaining[:limit]
            body: JSON = {"results": [self._render(r, names, history, associations) for r in page]}
            if len(remaining) > limit:
                cursor = str(remaining[limit].id)
                link = (
                    f"{request.host_url}crm/v3/objects/{object_type}?limit={limit}&after={cursor}"
                )
                body["paging"] = {"next": {"after": cursor, "link": link}}
        return _respond(body)

    def _create_object(self, object_type: str) -> Response:
        rec = self._create(_object_type(object_type), _json_body(), _BY_APP)
        return _respond(self._render_written(rec), 201)

    def _get_object(self, object_type: str, object_id: str) -> Response:
        otype = _object_type(object_type)
        archived = request.args.get("archived", "false").lower() == "true"
        id_property = request.args.get("idProperty")
        with self._lock:
            if id_property and id_property != "hs_object_id" and not archived:
                rec = self._find_by(otype, id_property, object_id)
                if rec is None:
                    raise ApiError(404, "OBJECT_NOT_FOUND", "resource not found")
            else:
                rec = self._find(otype, object_id, archived=archived)
            body = self._render(
                rec,
                self._names(otype, _list_arg("properties")),
                _list_arg("propertiesWithHistory"),
                _list_arg("associations"),
            )
        return _respond(body)

    def _patch_object(self, object_type: str, object_id: str) -> Response:
        otype = _object_type(object_type)
        rec = self._update(otype, object_id, _json_body().get("properties"), _BY_APP)
        return _respond(self._render_written(rec))

    def _delete_object(self, object_type: str, object_id: str) -> Response:
        self._archive(_object_type(object_type), object_id, _BY_APP)
        return _no_content()

    # --- properties -------------------------------------------------------------------

    def _list_properties(self, object_type: str) -> Response:
        otype = _object_type(object_type)
        archived = request.args.get("archived", "false").lower() == "true"
        with self._lock:  # none is ever archived here
            return _respond({"results": [] if archived else self._properties.listed(otype)})

    def _create_property(self, object_type: str) -> Response:
        otype, body = _object_type(object_type), _json_body()
        with self._lock:
            return _respond(self._properties.create(otype, body).render(), 201)

    def _get_property(self, object_type: str, property_name: str) -> Response:
        otype = _object_type(object_type)
        with self._lock:
            return _respond(self._properties.read(otype, property_name).render())

    def _patch_property(self, object_type: str, property_name: str) -> Response:
        otype, body = _object_type(object_type), _json_body()
        with self._lock:
            return _respond(self._properties.update(otype, property_name, body).render())

    def _list_groups(self, object_type: str) -> Response:
        otype = _object_type(object_type)
        with self._lock:
            return _respond({"results": self._properties.groups(otype)})

    def _create_group(self, object_type: str) -> Response:
        otype, body = _object_type(object_type), _json_body()
        with self._lock:
            return _respond(self._properties.create_group(otype, body).render(), 201)

    def _get_group(self, object_type: str, group_name: str) -> Response:
        otype = _object_type(object_type)
        with self._lock:
            return _respond(self._properties.read_group(otype, group_name).render())

    # --- batch ------------------------------------------------------------------------

    def _batch(self, object_type: str, action: str) -> Response:
        otype = _object_type(object_type)
        body = _json_body()
        inputs = body.get("inputs")
        if not isinstance(inputs, list) or not all(isinstance(i, dict) for i in inputs):
            raise ApiError(400, "VALIDATION_ERROR", "inputs must be a list of objects")
        history = _str_list(body.get("propertiesWithHistory"), "propertiesWithHistory")
        cap = _MAX_BATCH_WITH_HISTORY if history else _MAX_BATCH
        if len(inputs) > cap:
            raise ApiError(
                400,
                "VALIDATION_ERROR",
                f"Batch input size {len(inputs)} exceeds the limit of {cap} inputs"
                + (" when propertiesWithHistory is requested" if history else ""),
            )
        started = iso(self._clock())
        results: list[JSON] = []
        errors: list[JSON] = []
        success = 200
        if action == "read":
            names = self._names(otype, _str_list(body.get("properties"), "properties"))
            id_property = body.get("idProperty")
            missing: list[str] = []
            with self._lock:
                for item in inputs:
                    rec = self._find_by(otype, id_property, item.get("id"))
                    if rec is None:
                        missing.append(str(item.get("id")))
                    else:
                        results.append(self._render(rec, names, history))
            if missing:
                message = (
                    f"Could not get some {_SINGULAR[otype].upper()} objects, they may be "
                    "deleted or not exist. Check that ids are valid."
                )
                errors.append(
                    ApiError(404, "OBJECT_NOT_FOUND", message).batch_item({"ids": missing})
                )
        elif action == "create":
            success = 201
            for item in inputs:
                try:
                    results.append(self._render_written(self._create(otype, item, _BY_APP)))
                except ApiError as exc:
                    errors.append(exc.batch_item())
        elif action == "update":
            for item in inputs:
                try:
                    rec = self._update(otype, item.get("id"), item.get("properties"), _BY_APP)
                    results.append(self._render_written(rec))
                except ApiError as exc:
                    errors.append(exc.batch_item({"ids": [str(item.get("id"))]}))
        elif action == "archive":
            for item in inputs:
                self._archive(otype, item.get("id"), _BY_APP)
            return _no_content()
        else:
            raise ApiError(404, "OBJECT_NOT_FOUND", f"Unknown batch action {action}")
        out: JSON = {
            "status": "COMPLETE",
            "results": results,
            "startedAt": started,
            "completedAt": iso(self._clock()),
        }
        if errors:
            out.update(numErrors=len(errors), errors=errors)
        return _respond(out, 207 if errors else success)

    # --- search -----------------------------------------------------------------------

    def _search_objects(self, object_type: str) -> Response:
        otype = _object_type(object_type)
        body = _json_body()
        limit = _int(body.get("limit"), "limit", 10)
        if not 1 <= limit <= _MAX_SEARCH_LIMIT:
            raise ApiError(
                400, "VALIDATION_ERROR", f"limit must be between 1 and {_MAX_SEARCH_LIMIT}"
            )
        after = _int(body.get("after"), "after", 0)
        cap = self.config.search_result_cap
        if after >= cap:
            raise ApiError(
                400,
                "VALIDATION_ERROR",
                f"Search results are capped at {cap}; after={after} pages past the cap",
            )
        groups = self._parse_filter_groups(otype, body.get("filterGroups"))
        sort_name, descending = self._parse_sort(body.get("sorts"))
        query = body.get("query")
        if query is not None and (not isinstance(query, str) or len(query) > 3000):
            raise ApiError(400, "VALIDATION_ERROR", "query must be a string of at most 3000 chars")
        names = self._names(otype, _str_list(body.get("properties"), "properties"))
        now = self._clock()
        with self._lock:
            hits: list[_Hit] = []
            for rec in self._records[otype].values():
                snap = self._visible(rec, now)
                if snap is None or snap.properties is None:
                    continue
                props = snap.properties
                if groups and not any(
                    all(self._matches(otype, props, f) for f in g) for g in groups
                ):
                    continue
                if query and not self._matches_query(otype, props, query):
                    continue
                hits.append(_Hit(rec.id, rec.created_at, snap.updated_at, props))
            hits = self._sorted(otype, hits, sort_name, descending)
            end = min(after + limit, cap, len(hits))
            results = [
                {
                    "id": str(hit.id),
                    "properties": {
                        n: hit.properties.get(n) for n in names if self._known(otype, n)
                    },
                    "createdAt": iso(hit.created_at),
                    "updatedAt": iso(hit.updated_at),
                    "archived": False,
                }
                for hit in hits[after:end]
            ]
        out: JSON = {"total": len(hits), "results": results}
        if end < min(len(hits), cap):
            out["paging"] = {"next": {"after": str(end)}}
        return _respond(out)

    @staticmethod
    def _visible(rec: _Record, now: float) -> _Snapshot | None:
        """The newest snapshot search can see; older ones are dropped once superseded."""
        for position in range(len(rec.index) - 1, -1, -1):
            if rec.index[position].visible_at <= now:
                del rec.index[:position]
                return rec.index[0]
        return None

    def _parse_filter_groups(self, otype: str, raw: Any) -> list[list[JSON]]:
        if raw is None:
            return []
        if not isinstance(raw, list) or not all(
            isinstance(g, dict) and isinstance(g.get("filters"), list) for g in raw
        ):
            raise ApiError(400, "VALIDATION_ERROR", "filterGroups must be a list of {filters: []}")
        groups: list[list[JSON]] = [g["filters"] for g in raw]
        total = sum(len(g) for g in groups)
        if (
            len(groups) > _MAX_FILTER_GROUPS
            or any(len(g) > _MAX_FILTERS_PER_GROUP for g in groups)
            or total > _MAX_FILTERS
        ):
            raise ApiError(
                400,
                "VALIDATION_ERROR",
                f"Too many filters: at most {_MAX_FILTER_GROUPS} filterGroups, "
                f"{_MAX_FILTERS_PER_GROUP} filters per group and {_MAX_FILTERS} in total",
            )
        for group in groups:
            for f in group:
                self._check_filter(otype, f)
        return groups

    def _kind(self, otype: str, name: str) -> str:
        """How search compares a property: dates as instants, numbers as numbers."""
        prop = self._properties.get(otype, name)
        if prop is None or prop.type not in ("date", "datetime", "number"):
            return "string"
        return "number" if prop.type == "number" else "date"

    @staticmethod
    def _number(kind: str, value: Any) -> Decimal | None:
        text = _text(value)
        if not isinstance(text, str):
            return None
        if kind == "date":
            ms = epoch_ms(text)
            return None if ms is None else Decimal(ms)
        return decimal_or_none(text)

    def _check_filter(self, otype: str, f: Any) -> None:
        if not isinstance(f, dict) or not isinstance(f.get("propertyName"), str):
            raise ApiError(400, "VALIDATION_ERROR", "each filter needs propertyName and operator")
        operator = f.get("operator")
        if operator not in _OPERATORS:
            raise ApiError(400, "VALIDATION_ERROR", f"Unknown filter operator {operator!r}")
        if operator in ("HAS_PROPERTY", "NOT_HAS_PROPERTY"):
            return
        if operator in ("IN", "NOT_IN"):
            values = f.get("values")
            if not isinstance(values, list) or not values:
                raise ApiError(400, "VALIDATION_ERROR", f"{operator} needs a non-empty values list")
        else:
            values = [f.get("value")] + ([f.get("highValue")] if operator == "BETWEEN" else [])
            if any(v is None for v in values):
                raise ApiError(
                    400, "VALIDATION_ERROR", f"{operator} on {f['propertyName']} needs a value"
                )
        kind = self._kind(otype, f["propertyName"])
        if kind != "string" and operator in (
            "EQ",
            "NEQ",
            "LT",
            "LTE",
            "GT",
            "GTE",
            "BETWEEN",
            "IN",
            "NOT_IN",
        ):
            bad = [v for v in values if self._number(kind, v) is None]
            if bad:
                raise ApiError(
                    400,
                    "VALIDATION_ERROR",
                    f"{bad[0]!r} is not a valid {kind} value for {f['propertyName']}",
                )

    def _matches(self, otype: str, props: Mapping[str, str | None], f: JSON) -> bool:
        name, operator = f["propertyName"], f["operator"]
        value = props.get(name)
        if operator == "HAS_PROPERTY":
            return value is not None
        if operator == "NOT_HAS_PROPERTY":
            return value is None
        if value is None:
            return operator in ("NEQ", "NOT_IN", "NOT_CONTAINS_TOKEN")
        if operator in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
            found = self._has_token(value, str(_text(f.get("value")) or ""))
            return found if operator == "CONTAINS_TOKEN" else not found
        kind = self._kind(otype, name)
        wanted = f.get("values") if operator in ("IN", "NOT_IN") else [f.get("value")]
        if kind == "string":
            left = value.lower()
            rights = [str(_text(v) or "").lower() for v in wanted or []]
            return self._compare(
                operator, left, rights, str(_text(f.get("highValue")) or "").lower()
            )
        number = self._number(kind, value)
        if number is None:
            return operator in ("NEQ", "NOT_IN")
        numbers = [n for n in (self._number(kind, v) for v in wanted or []) if n is not None]
        high = self._number(kind, f.get("highValue")) if operator == "BETWEEN" else None
        return self._compare(operator, number, numbers, high)

    @staticmethod
    def _compare(operator: str, left: Any, rights: list[Any], high: Any) -> bool:
        right = rights[0] if rights else None
        checks: dict[str, Callable[[], bool]] = {
            "EQ": lambda: bool(left == right),
            "NEQ": lambda: bool(left != right),
            "LT": lambda: bool(left < right),
            "LTE": lambda: bool(left <= right),
            "GT": lambda: bool(left > right),
            "GTE": lambda: bool(left >= right),
            "BETWEEN": lambda: bool(right <= left <= high),
            "IN": lambda: left in rights,
            "NOT_IN": lambda: left not in rights,
        }
        return checks[operator]()

    @staticmethod
    def _has_token(value: str, token: str) -> bool:
        token, value = token.lower(), value.lower()
        candidates = [value, *value.split()]
        if "*" in token:
            return any(fnmatchcase(c, token) for c in candidates)
        return token in candidates

    @staticmethod
    def _matches_query(otype: str, props: Mapping[str, str | None], query: str) -> bool:
        wanted = query.strip().lower()
        return any(wanted in (props.get(n) or "").lower() for n in _SEARCH_TEXT[otype])

    @staticmethod
    def _parse_sort(raw: Any) -> tuple[str, bool]:
        if raw is None or raw == []:
            return "hs_object_id", False
        if not isinstance(raw, list) or len(raw) != 1:
            raise ApiError(400, "VALIDATION_ERROR", "sorts takes exactly one sorting rule")
        rule = raw[0]
        if isinstance(rule, str) and rule.strip("-"):
            return rule.lstrip("-"), rule.startswith("-")
        if isinstance(rule, dict) and isinstance(rule.get("propertyName"), str):
            direction = rule.get("direction", "ASCENDING")
            if direction not in ("ASCENDING", "DESCENDING"):
                raise ApiError(400, "VALIDATION_ERROR", "direction must be ASCENDING or DESCENDING")
            return rule["propertyName"], direction == "DESCENDING"
        raise ApiError(400, "VALIDATION_ERROR", "a sort is {propertyName, direction} or 'name'")

    def _sorted(self, otype: str, hits: list[_Hit], name: str, descending: bool) -> list[_Hit]:
        """Sort by one property, ties by id; records without the property go last."""
        kind = self._kind(otype, name)

        def key(hit: _Hit) -> Any:
            value = hit.properties.get(name)
            if value is None:
                return None
            return value.lower() if kind == "string" else self._number(kind, value)

        by_id = sorted(hits, key=lambda h: h.id)
        present = [h for h in by_id if key(h) is not None]
        absent = [h for h in by_id if key(h) is None]
        return sorted(present, key=key, reverse=descending) + absent

    # --- v4 associations --------------------------------------------------------------

    def _v4_list(self, from_type: str, from_id: str, to_type: str) -> Response:
        otype, ttype = _object_type(from_type), _object_type(to_type)
        limit = min(max(_int(request.args.get("limit"), "limit", 500), 1), 500)
        after = _int(request.args.get("after"), "after", 0)
        with self._lock:
            try:
                rec = self._find(otype, from_id)
            except ApiError:
                return _respond({"results": []})
            targets = [t for t in self._targets(otype, rec.id, ttype) if t[0] >= after]
        results = [
            {
                "toObjectId": str(to_id),
                "associationTypes": [
                    {"category": "HUBSPOT_DEFINED", "typeId": tid, "label": _ASSOC_TYPES[tid].label}
                    for tid in type_ids
                ],
            }
            for to_id, type_ids in targets[:limit]
        ]
        body: JSON = {"results": results}
        if len(targets) > limit:
            body["paging"] = {"next": {"after": str(targets[limit][0])}}
        return _respond(body)

    def _v4_default(self, from_type: str, from_id: str, to_type: str, to_id: str) -> Response:
        started = iso(self._clock())
        otype, ttype = _object_type(from_type), _object_type(to_type)
        source_rec, target_rec, type_id = self._associate_default(
            otype, from_id, ttype, to_id, _BY_APP
        )
        inverse = _ASSOC_TYPES[type_id].inverse
        results = [
            {
                "from": {"id": str(a.id)},
                "to": {"id": str(b.id)},
                "associationSpec": {
                    "associationCategory": "HUBSPOT_DEFINED",
                    "associationTypeId": t,
                },
            }
            for a, b, t in ((source_rec, target_rec, type_id), (target_rec, source_rec, inverse))
        ]
        return _respond(
            {
                "status": "COMPLETE",
                "results": results,
                "startedAt": started,
                "completedAt": iso(self._clock()),
            }
        )

    def _v4_labelled(self, from_type: str, from_id: str, to_type: str, to_id: str) -> Response:
        otype, ttype = _object_type(from_type), _object_type(to_type)
        specs = request.get_json(silent=True)
        if not isinstance(specs, list) or not specs:
            raise ApiError(400, "VALIDATION_ERROR", "body must be a non-empty list of types")
        type_ids = self._parse_specs(otype, specs, to_type=ttype)
        with self._lock:
            source_rec = self._find(otype, from_id)
            target_rec = self._find(ttype, to_id)
            self._link(otype, source_rec.id, ttype, target_rec.id, type_ids, _BY_APP)
            linked = self._assoc[(otype, source_rec.id, ttype, target_rec.id)]
            labels = sorted({lbl for t in linked if (lbl := _ASSOC_TYPES[t].label)})
        return _respond(
            {
                "fromObjectTypeId": _TYPE_IDS[otype],
                "fromObjectId": str(source_rec.id),
                "toObjectTypeId": _TYPE_IDS[ttype],
                "toObjectId": str(target_rec.id),
                "labels": labels,
            },
            201,
        )

    def _v4_delete(self, from_type: str, from_id: str, to_type: str, to_id: str) -> Response:
        otype, ttype = _object_type(from_type), _object_type(to_type)
        with self._lock:
            self._unlink(
                otype, _int(from_id, "objectId", -1), ttype, _int(to_id, "toObjectId", -1), _BY_APP
            )
        return _no_content()

    # --- webhooks ---------------------------------------------------------------------

    def _subscription_id(self, otype: str, kind: str) -> int:
        """A stable id per subscription type, as the app's subscription settings would hold."""
        return 1_000_000 + 10 * _WEBHOOK_TYPES.index(otype) + _SUBSCRIPTION_KINDS.index(kind)

    def _emit(
        self,
        otype: str,
        kind: str,
        object_id: int,
        source: str,
        at: float | None = None,
        **fields: Any,
    ) -> None:
        """Queue one event (lock held). Nothing is queued without a target URL.

        ``at`` is when the change happened: a record's change is announced at the
        record's new last-modified time, to the millisecond.
        """
        if otype not in _WEBHOOK_TYPES or self.config.webhook_url is None:
            return
        event: JSON = {
            "eventId": self._next_event_id,
            "subscriptionId": self._subscription_id(otype, kind),
            "portalId": self.config.portal_id,
            "appId": self.config.app_id,
            "occurredAt": ms(self._clock() if at is None else at),
            "subscriptionType": f"{_SINGULAR[otype]}.{kind}",
            "attemptNumber": 0,
            "objectId": object_id,
            "changeSource": source,
            **fields,
        }
        if source == _BY_APP:
            event["sourceId"] = str(self.config.app_id)
        self._next_event_id += 1
        self._pending_events.append(event)
        self._events_ready.notify()

    def _emit_association(
        self, from_type: str, from_id: int, to_type: str, to_id: int, source: str, removed: bool
    ) -> None:
        for a_type, a_id, b_type, b_id in (
            (from_type, from_id, to_type, to_id),
            (to_type, to_id, from_type, from_id),
        ):
            type_ids = self._assoc.get((a_type, a_id, b_type, b_id), set())
            self._emit(
                a_type,
                "associationChange",
                a_id,
                source,
                associationType=f"{_SINGULAR[a_type]}_TO_{_SINGULAR[b_type]}".upper(),
                fromObjectId=a_id,
                toObjectId=b_id,
                associationRemoved=removed,
                isPrimaryAssociation=any(_ASSOC_TYPES[t].label == "Primary" for t in type_ids),
            )

    def _batch_loop(self) -> None:
        """Collect events for a short window, then hand batches of <= 100 to the dispatcher."""
        while True:
            with self._lock:
                while not self._pending_events and not self._closing:
                    self._events_ready.wait()
                if self._closing:
                    return
            time.sleep(self.config.webhook_batch_window_s)
            with self._lock:
                events, self._pending_events = self._pending_events, []
                url = self.config.webhook_url
                self._flushing = True
                batch = list(events)
                for event in events:
                    if self._rng.random() < self.config.duplicate_event_probability:
                        batch.append(dict(event))
                self._rng.shuffle(batch)
            try:
                if url is not None:
                    for start in range(0, len(batch), 100):
                        self._dispatcher.send(
                            url, self._request_builder(url, batch[start : start + 100])
                        )
            finally:
                with self._lock:
                    self._flushing = False

    def _request_builder(
        self, url: str, events: list[JSON]
    ) -> Callable[[int], tuple[bytes, dict[str, str]]]:
        def build(attempt: int) -> tuple[bytes, dict[str, str]]:
            payload = [{**event, "attemptNumber": attempt} for event in events]
            text = json.dumps(payload, separators=(",", ":"))
            return text.encode(), self._signature_headers(url, text)

        return build

    def _signature_headers(self, url: str, body: str) -> dict[str, str]:
        """Headers of one delivery attempt; v3 gets a fresh timestamp every attempt."""
        secret = self.config.client_secret
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "HubSpot Connect 2.0 (http://dev.hubspot.com/)",
        }
        versions = self.config.signature_versions
        if "v1" in versions:
            headers["X-HubSpot-Signature"] = sign_v1(secret, body)
            headers["X-HubSpot-Signature-Version"] = "v1"
        if "v2" in versions:
            headers["X-HubSpot-Signature"] = sign_v2(secret, "POST", url, body)
            headers["X-HubSpot-Signature-Version"] = "v2"
        if "v3" in versions:
            timestamp = int((self._clock() + self.config.webhook_timestamp_offset_s) * 1000)
            headers["X-HubSpot-Signature-v3"] = sign_v3(
                secret, "POST", _v3_uri(url), body, timestamp
            )
            headers["X-HubSpot-Request-Timestamp"] = str(timestamp)
        return headers

    # --- admin routes -----------------------------------------------------------------

    def _admin_list(self, object_type: str) -> Response:
        return _respond({"results": self.records(object_type)})

    def _admin_create(self, object_type: str) -> Response:
        body = _json_body()
        return _respond(
            self.ui_create(object_type, body.get("properties") or {}, body.get("associations")), 201
        )

    def _admin_update(self, object_type: str, object_id: str) -> Response:
        return _respond(
            self.ui_update(object_type, object_id, _json_body().get("properties") or {})
        )

    def _admin_archive(self, object_type: str, object_id: str) -> Response:
        self.ui_archive(object_type, object_id)
        return _no_content()

    def _admin_associate(self, from_type: str, from_id: str, to_type: str, to_id: str) -> Response:
        self.ui_associate(from_type, from_id, to_type, to_id)
        return _no_content()

    def _admin_webhooks(self) -> Response:
        return _respond(
            {
                "target": self.config.webhook_url,
                "deliveries": [
                    {
                        "url": d.url,
                        "attempts": list(d.attempts),
                        "delivered": d.delivered,
                        "events": json.loads(d.body),
                    }
                    for d in list(self.deliveries)
                ],
            }
        )

    def _admin_target(self) -> Response:
        url = _json_body().get("url")
        if url is not None and not isinstance(url, str):
            raise ApiError(400, "VALIDATION_ERROR", "url must be a string or null")
        with self._lock:
            self.config.webhook_url = url
        return _respond({"target": url})


def create_app(
    config: HubSpotSandboxConfig | None = None, clock: Callable[[], float] = time.time
) -> HubSpotSandbox:
    """Build a sandbox; serve it with ``SandboxServer(sandbox.app, port).start()``."""
    return HubSpotSandbox(config, clock)


def _sandbox_secret(sandbox: HubSpotSandbox) -> dict[str, str]:
    return {
        "access_token": sandbox.config.access_token,
        "client_secret": sandbox.config.client_secret,
    }


# HubSpot's default association type ids (HUBSPOT_DEFINED).
DEAL_TO_CONTACT, DEAL_TO_COMPANY, LINE_ITEM_TO_DEAL, CONTACT_TO_COMPANY = 3, 5, 20, 279


class HubSpotPerson:
    """A person's edits through HubSpot's public CRM v3 API, with the private-app token."""

    def __init__(self, sandbox: HubSpotSandbox, base_url: str) -> None:
        self._http = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {sandbox.config.access_token}"},
            timeout=10,
        )

    def create(
        self, object_type: str, properties: dict[str, str], to: Sequence[tuple[str, int]] = ()
    ) -> str:
        body: dict[str, Any] = {"properties": properties}
        body["associations"] = [
            {
                "to": {"id": target},
                "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": kind}],
            }
            for target, kind in to
        ]
        response = self._http.post(f"/crm/v3/objects/{object_type}", json=body)
        response.raise_for_status()
        return str(response.json()["id"])

    def create_company(self, name: str, city: str) -> str:
        return self.create("companies", {"name": name, "city": city})

    def create_contact(
        self, first: str, last: str, email: str | None, company: str | None = None
    ) -> str:
        properties = {"firstname": first, "lastname": last}
        if email is not None:
            properties["email"] = email
        return self.create(
            "contacts", properties, [(company, CONTACT_TO_COMPANY)] if company else []
        )

    def create_deal(
        self,
        name: str,
        *,
        won: bool,
        company: str | None,
        contact: str | None,
        lines: list[DemoLine],
    ) -> str:
        stage = (
            {"dealstage": "closedwon", "closedate": "2026-11-20T15:00:00Z"}
            if won
            else {"dealstage": "appointmentscheduled"}
        )
        to = [(company, DEAL_TO_COMPANY)] if company else []
        to += [(contact, DEAL_TO_CONTACT)] if contact else []
        deal = self.create("deals", {"dealname": name, "pipeline": "default", **stage}, to)
        for line in lines:
            self.add_line(deal, line)
        return deal

    def add_line(self, deal: str, line: DemoLine) -> None:
        properties = {"name": line.name, "quantity": line.quantity, "price": line.unit_price}
        if Decimal(line.discount):  # HubSpot's discount is per unit
            properties["discount"] = str(Decimal(line.discount) / Decimal(line.quantity))
        self.create("line_items", properties, [(deal, LINE_ITEM_TO_DEAL)])

    def update(self, object_type: str, record_id: str, properties: dict[str, str]) -> None:
        self._http.patch(
            f"/crm/v3/objects/{object_type}/{record_id}", json={"properties": properties}
        ).raise_for_status()

    def delete(self, object_type: str, record_id: str) -> None:
        """Archive the record: to the recycling bin, listed with ``archived=true``."""
        self._http.delete(f"/crm/v3/objects/{object_type}/{record_id}").raise_for_status()

    def rename_deal(self, deal: str, name: str) -> None:
        self.update("deals", deal, {"dealname": name})

    def invoice_number(self, deal: str) -> str:
        return f"HS-{deal}"


SANDBOX = SandboxSpec(
    name="hubspot",
    start=lambda webhook_url: HubSpotSandbox(HubSpotSandboxConfig(webhook_url=webhook_url)),
    secret=_sandbox_secret,
    settings=lambda url: {"api_url": url},
    person=HubSpotPerson,
)
