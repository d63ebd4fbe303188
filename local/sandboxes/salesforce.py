"""Salesforce sandbox: OAuth 2, the REST API with SOQL, API limits and outbound messages.

A stateful stand-in for a Salesforce org (``login.salesforce.com`` and the org's
instance on one local server), so the production connector (plain httpx) and
Salesforce's own clients (simple-salesforce) run against it unchanged. Built from
Salesforce's documentation; ``docs/vendors/salesforce.md`` lists the pages, what is
unconfirmed and what was chosen. Objects and fields live in ``salesforce_schema``,
SOQL in ``salesforce_soql``, outbound messages in ``salesforce_outbound``.

Reproduced behaviours
---------------------
* OAuth 2 (``/services/oauth2/``): the ``refresh_token`` grant with ``client_id`` and
  ``client_secret`` in the form body (https://developer.salesforce.com/docs/
  atlas.en-us.api_rest.meta/api_rest/intro_understanding_refresh_token_oauth.htm);
  the web server flow (``GET authorize`` redirects with ``code`` and ``state``,
  ``code_challenge`` is the base64url SHA-256 of the ``code_verifier`` the token
  request must then carry). Responses carry ``access_token``, ``instance_url``
  (this server), ``id``, ``token_type: Bearer``, ``issued_at`` (epoch ms),
  ``signature`` (base64 HMAC-SHA256 of ``id`` + ``issued_at`` keyed by the
  secret) and ``scope``; the code grant adds a ``refresh_token``. Refresh tokens
  are not rotated unless ``rotate_refresh_tokens`` (Salesforce's opt-in "refresh
  token rotation"). Errors: 400 ``invalid_grant`` "expired access/refresh token",
  ``invalid_client_id`` "client identifier invalid", ``invalid_client`` "invalid
  client credentials", ``unsupported_grant_type`` "grant type not supported",
  ``redirect_uri_mismatch``. Sessions end after ``session_timeout_s`` without use.
* REST API under ``/services/data/vXX.X/`` (``api_versions``; ``GET /services/data/``
  lists them without authentication): ``sobjects`` (describe global), ``sobjects/T``,
  ``sobjects/T/describe``, ``sobjects/T`` POST (201 ``{id, success, errors}``),
  ``sobjects/T/{id}`` GET (``?fields=``), PATCH (204), DELETE (204, to the recycle
  bin, cascading as the Object Reference says), ``sobjects/T/deleted`` (Get Deleted,
  from the recycle bin), ``query``/``queryAll`` with ``nextRecordsUrl`` locators,
  ``limits``. A missing or dead token answers 401
  ``INVALID_SESSION_ID`` "Session expired or invalid". Errors are JSON arrays of
  ``{message, errorCode[, fields]}``.
* Object rules: required fields (``REQUIRED_FIELD_MISSING``), lengths
  (``STRING_TOO_LONG``), restricted picklists, e-mail format, ids
  (``MALFORMED_ID``, ``INVALID_CROSS_REFERENCE_KEY``, ``ENTITY_IS_DELETED``),
  read-only fields (``INVALID_FIELD_FOR_INSERT_UPDATE``), unknown fields
  (``INVALID_FIELD`` "No such column 'X' on sobject of type Opportunity"). Custom
  fields (``custom_fields``, ``add_custom_field``; ``salesforce_fields``) are made
  as an admin makes them in Setup, listed by the describe with ``custom: true`` and
  checked on every write like the standard ones. Opportunities take ``IsClosed``/
  ``IsWon``/``Probability``/``ForecastCategoryName`` from the stage, ``ExpectedRevenue`` = Amount x
  Probability, and with products ``Amount`` is the sum of the line items'
  ``TotalPrice`` (a written Amount is ignored). A line item needs an active
  ``PricebookEntryId`` from the opportunity's price book (the first one sets the
  opportunity's price book), ``UnitPrice`` or ``TotalPrice`` but not both, and
  gets ``Subtotal`` = UnitPrice x Quantity, ``TotalPrice`` = Subtotal less
  ``Discount`` percent, ``ListPrice`` from the entry. A custom price needs a
  standard price first (``STANDARD_PRICE_NOT_DEFINED``); one price per product,
  book and currency (``DUPLICATE_VALUE``). One primary contact role per
  opportunity.
* API limits: a rolling 24-hour allocation (``daily_api_limit``, 15,000 as a
  Developer Edition org), ``Sforce-Limit-Info: api-usage=n/max`` on each counted
  response, ``limits`` reporting ``DailyApiRequests``, 403
  ``REQUEST_LIMIT_EXCEEDED`` "TotalRequests Limit exceeded." past it.
* Outbound messages (``outbound_messages`` or ``add_outbound_message``): see
  ``salesforce_outbound``. Writes through the API and the ``ui_*`` helpers (a
  person in the UI: another user, no API call counted) both fire them.
* Seed org: the Standard Price Book, products "Services" and "Hours" with active
  standard prices, two accounts with a contact each, the standard stages.

Choices where the documentation is unclear are listed in the vendor note; the
main ones: the ``rate_limit`` fault answers 403 ``REQUEST_LIMIT_EXCEEDED``
"ConcurrentRequests (Concurrent API Requests) Limit exceeded." (Salesforce's REST
API has no 429); a GET of a deleted record answers 404 ``NOT_FOUND``, a PATCH or
DELETE of one 404 ``ENTITY_IS_DELETED``; times are UTC.

Admin routes (no auth, not counted): ``/_sandbox/faults`` and ``/_sandbox/reset``
from ``base.install_fault_routes``, ``GET|POST /_sandbox/records/<Type>``,
``PATCH|DELETE /_sandbox/records/<Type>/<id>``, ``GET /_sandbox/stats``,
``GET /_sandbox/outbound``, ``POST /_sandbox/outbound/definitions`` and
``POST /_sandbox/oauth/code``.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import urlencode

import httpx
from flask import Flask, Response, has_request_context, request

from local.sandboxes import salesforce_soql as soql
from local.sandboxes.base import Fault, FaultInjector, SlidingWindowLimiter, install_fault_routes
from local.sandboxes.registry import DemoLine, SandboxSpec
from local.sandboxes.salesforce_fields import CustomField, add_fields, with_custom_fields
from local.sandboxes.salesforce_outbound import (
    Notification,
    OutboundDelivery,
    OutboundMessageDefinition,
    OutboundQueue,
    build_envelope,
)
from local.sandboxes.salesforce_schema import (
    ID_TYPES,
    STAGES,
    STRING_TYPES,
    CoercionError,
    Field,
    SObjectType,
    build_schema,
    coerce,
    digits_fit,
    format_datetime,
    make_id,
    normalize_id,
    parse_datetime,
    to_json,
)
from ops.oauth import DEFAULT_PORT, redirect_uri

__all__ = [
    "CustomField",
    "OutboundMessageDefinition",
    "SalesforceApiError",
    "SalesforceSandbox",
    "SalesforceSandboxConfig",
]

JSON = dict[str, Any]

# API versions and their release names (https://developer.salesforce.com/docs/
# atlas.en-us.api_rest.meta/api_rest/resources_versions.htm).
RELEASES = {
    "58.0": "Summer '23",
    "59.0": "Winter '24",
    "60.0": "Spring '24",
    "61.0": "Summer '24",
    "62.0": "Winter '25",
}
AUTH_CODE_TTL_S = 15 * 60
LOCATOR_IDLE_S = 15 * 60
MAX_BATCH = 2000
MIN_BATCH = 200
SCOPES = frozenset(
    {"api", "refresh_token", "offline_access", "full", "id", "openid", "profile", "email", "web"}
)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_JSON_TYPE = "application/json;charset=UTF-8"
_NOT_FOUND = "The requested resource does not exist"
# Get Deleted answers for no more than 15 days before the day of the call (doc); a start
# further back than 30 days is refused (obs).
DELETED_LISTED_DAYS = 15
DELETED_START_DAYS = 30


@dataclass
class SalesforceSandboxConfig:
    """Everything a test or the demo may tune; defaults follow Salesforce's documented ones."""

    client_id: str = "3MVG9sandbox.ConsumerKey"
    client_secret: str = "sandbox-consumer-secret"
    initial_refresh_token: str = "5Aep861sandboxRefreshToken"
    redirect_uris: Sequence[str] = ("http://localhost:8080/oauth/callback",)
    # The connected app's "Require Secret for ..." settings and PKCE setting.
    require_secret_for_refresh: bool = True
    require_secret_for_web_server: bool = True
    require_pkce: bool = False
    rotate_refresh_tokens: bool = False
    refresh_token_ttl_s: float | None = None  # None: valid until revoked (the default policy)
    session_timeout_s: float = 2 * 3600.0  # the org's default session timeout
    instance_url: str | None = None  # None: the host the request came to
    api_versions: Sequence[str] = tuple(RELEASES)
    daily_api_limit: int = 15_000
    query_batch_size: int = MAX_BATCH
    currencies: Sequence[str] = ()  # empty: multi-currency off
    corporate_currency: str = "USD"
    outbound_messages: Sequence[OutboundMessageDefinition] = ()
    # Custom fields by object, as an admin made them in Setup before the test.
    custom_fields: Mapping[str, Sequence[CustomField]] = field(default_factory=dict)
    # The secret an admin puts in outbound message endpoint URLs (``?token=``): Salesforce
    # keeps no such thing, but the org's listener checks it (``SANDBOX`` below).
    outbound_token: str = "sandbox-outbound-token"
    outbound_time_scale: float = 0.001
    outbound_timeout_s: float = 10.0
    outbound_batch_window_s: float = 0.05
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        unknown = set(self.api_versions) - set(RELEASES)
        if unknown:
            raise ValueError(f"unknown API versions {sorted(unknown)}")
        if not 1 <= self.query_batch_size <= MAX_BATCH:
            raise ValueError(f"query_batch_size must be between 1 and {MAX_BATCH}")
        if self.currencies and self.corporate_currency not in self.currencies:
            raise ValueError("corporate_currency must be one of currencies")


class SalesforceApiError(Exception):
    """An error the API answers with: ``status`` and one ``{message, errorCode, fields}``."""

    def __init__(
        self, status: int, code: str, message: str, fields: Sequence[str] | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields

    def body(self) -> list[JSON]:
        error: JSON = {"message": self.message, "errorCode": self.code}
        if self.fields is not None:
            error["fields"] = list(self.fields)
        return [error]


def _dml(code: str, message: str, fields: Sequence[str] = ()) -> SalesforceApiError:
    """A record-level validation error: 400 with ``fields``."""
    return SalesforceApiError(400, code, message, list(fields))


def _integrity(detail: str, fields: Sequence[str]) -> SalesforceApiError:
    return _dml("FIELD_INTEGRITY_EXCEPTION", f"field integrity exception: {detail}", fields)


def _not_found(message: str = _NOT_FOUND) -> SalesforceApiError:
    return SalesforceApiError(404, "NOT_FOUND", message)


def _json_response(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, content_type=_JSON_TYPE)


def _money(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), ROUND_HALF_UP)


def _b64url_sha256(text: str) -> str:
    digest = hashlib.sha256(text.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


@dataclass
class _RefreshToken:
    issued_at: float
    scope: str
    revoked: bool = False


@dataclass
class _Code:
    expires_at: float
    redirect_uri: str
    challenge: str | None
    scope: str


@dataclass
class _Cursor:
    rows: list[JSON]
    weights: list[int]
    batch: int
    last_used: float


@dataclass
class _Definition:
    spec: OutboundMessageDefinition
    action_id: str


@dataclass
class _Write:
    """One committed change, for outbound messages: the record before and after."""

    sobject: str
    record_id: str
    before: JSON | None
    after: JSON


@dataclass
class _Batch:
    """Writes made by one call, flushed to outbound messages once it commits."""

    writes: list[_Write] = field(default_factory=list)


class _QueryStore:
    """What SOQL reads: every record of a type with its derived fields filled in."""

    def __init__(self, sandbox: SalesforceSandbox) -> None:
        self._sandbox = sandbox

    def records(self, sobject: str) -> Iterable[Mapping[str, Any]]:
        return [self._sandbox._view(sobject, r) for r in self._sandbox._store[sobject].values()]

    def get(self, sobject: str, record_id: str) -> Mapping[str, Any] | None:
        found = self._sandbox._store.get(sobject, {}).get(record_id)
        return None if found is None else self._sandbox._view(sobject, found)


class SalesforceSandbox:
    """One Salesforce org plus its OAuth server, as a Flask ``app``."""

    def __init__(self, config: SalesforceSandboxConfig | None = None) -> None:
        self.config = config or SalesforceSandboxConfig()
        self.schema = self._configured_schema()
        self.faults = FaultInjector()
        self._lock = threading.RLock()
        clock = self.config.clock
        self._usage = SlidingWindowLimiter(self.config.daily_api_limit, 24 * 3600.0, clock)
        self._sequence: Counter[str] = Counter()
        self.org_id = self._new_id("00D")
        self.integration_user_id = self._new_id("005")
        self.ui_user_id = self._new_id("005")
        self._users = {self.integration_user_id, self.ui_user_id}
        self._sessions: dict[str, float] = {}  # access token -> last use
        self._refresh_tokens = {
            self.config.initial_refresh_token: _RefreshToken(clock(), "api refresh_token")
        }
        self._codes: dict[str, _Code] = {}
        self._cursors: dict[str, _Cursor] = {}
        self._store: dict[str, dict[str, JSON]] = {}
        self._counts: Counter[tuple[str, str]] = Counter()
        self._last_host: str | None = None
        self._definitions: list[_Definition] = []
        self._outbound = OutboundQueue(
            self._render_delivery,
            time_scale=self.config.outbound_time_scale,
            timeout_s=self.config.outbound_timeout_s,
            batch_window_s=self.config.outbound_batch_window_s,
        )
        for definition in self.config.outbound_messages:
            self.add_outbound_message(definition)
        self._seed()
        self.app = self._build_app()

    # --- public helpers for tests and the demo ---------------------------------------

    def records(self, sobject: str, include_deleted: bool = False) -> list[JSON]:
        """Every record of a type as the REST API renders it (no limit counted)."""
        obj = self._object(sobject)
        with self._lock:
            return [
                self._render(obj, r)
                for r in self._store[obj.name].values()
                if include_deleted or not r["IsDeleted"]
            ]

    def ui_create(self, sobject: str, fields: Mapping[str, Any]) -> str:
        """Create a record as a person in Salesforce's UI would; returns its id."""
        with self._lock:
            batch = _Batch()
            record_id = self._insert(self._object(sobject), dict(fields), self.ui_user_id, batch)
        self._flush(batch)
        return record_id

    def ui_update(self, sobject: str, record_id: str, fields: Mapping[str, Any]) -> None:
        """Edit a record as a person in the UI would."""
        with self._lock:
            batch = _Batch()
            self._modify(self._object(sobject), record_id, dict(fields), self.ui_user_id, batch)
        self._flush(batch)

    def ui_delete(self, sobject: str, record_id: str) -> None:
        """Delete a record (to the recycle bin) as a person in the UI would."""
        with self._lock:
            batch = _Batch()
            self._remove(self._object(sobject), record_id, self.ui_user_id, batch)
        self._flush(batch)

    def add_outbound_message(self, definition: OutboundMessageDefinition) -> str:
        """Register an outbound message and the rule that sends it; returns its ActionId."""
        obj = self.schema.get(definition.object_type)
        if obj is None:
            raise ValueError(f"unknown object {definition.object_type!r}")
        for name in [*definition.fields, *definition.criteria]:
            if obj.field(name) is None:
                raise ValueError(f"{definition.object_type} has no field {name!r}")
        with self._lock:
            action_id = self._new_id("04k")
            self._definitions.append(_Definition(definition, action_id))
        return action_id

    def outbound_deliveries(self) -> list[OutboundDelivery]:
        """Every outbound SOAP message sent or being retried, with its attempts."""
        return list(self._outbound.deliveries)

    def wait_for_outbound_idle(self, timeout: float = 10.0) -> bool:
        """Block until no outbound message is queued, due for retry or in flight."""
        return self._outbound.wait_idle(timeout)

    def wait_for_webhooks_idle(self, timeout: float = 10.0) -> bool:
        """``Sandbox``'s wait: outbound messages are this org's webhooks."""
        return self.wait_for_outbound_idle(timeout)

    def mint_authorization_code(
        self,
        redirect_uri: str | None = None,
        code_challenge: str | None = None,
        scope: str = "api refresh_token",
    ) -> str:
        """A code as the consent screen would issue one (single use, 15 minutes)."""
        code = "aPrx" + secrets.token_urlsafe(36) + "=="
        with self._lock:
            self._codes[code] = _Code(
                self.config.clock() + AUTH_CODE_TTL_S,
                redirect_uri or self.config.redirect_uris[0],
                code_challenge,
                scope,
            )
        return code

    def add_custom_field(self, sobject: str, custom: CustomField) -> None:
        """An admin adds a field in Setup: records read it as null until written."""
        with self._lock:
            obj = self._object(sobject)
            self.schema[obj.name] = add_fields(obj, [custom])

    def api_usage(self) -> tuple[int, int]:
        """(requests counted in the last 24 hours, the allocation)."""
        remaining = self._usage.remaining("org")
        return self.config.daily_api_limit - remaining, self.config.daily_api_limit

    def reset(self) -> None:
        """Back to the seeded org with its configured custom fields; OAuth tokens and
        outbound definitions are kept."""
        with self._lock:
            self.schema.clear()
            self.schema.update(self._configured_schema())
            self._seed()
            self._cursors.clear()
            self._counts.clear()
            self._usage.reset()
            self._outbound.clear()

    def close(self) -> None:
        """Stop the outbound message thread (the HTTP server is the caller's)."""
        self._outbound.stop()

    # --- ids, time, seed ------------------------------------------------------------

    def _configured_schema(self) -> dict[str, SObjectType]:
        return with_custom_fields(build_schema(self.config.currencies), self.config.custom_fields)

    def _new_id(self, key_prefix: str) -> str:
        self._sequence[key_prefix] += 1
        return make_id(key_prefix, self._sequence[key_prefix])

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.config.clock(), UTC)

    def _seed(self) -> None:
        """A fresh org: price book, products and prices, accounts, contacts, stages."""
        self._store = {name: {} for name in self.schema}
        seeded = self._now() - timedelta(days=30)
        admin = self.ui_user_id

        def put(sobject: str, fields: JSON) -> str:
            obj = self.schema[sobject]
            record = self._blank(obj, admin, seeded)
            for name, value in fields.items():
                f = obj.field(name)
                assert f is not None
                record[f.name] = coerce(f, value)
            self._store[sobject][record["Id"]] = record
            return str(record["Id"])

        for order, stage in enumerate(STAGES, start=1):
            put(
                "OpportunityStage",
                {
                    "MasterLabel": stage.label,
                    "ApiName": stage.label,
                    "IsActive": True,
                    "SortOrder": order,
                    "IsClosed": stage.closed,
                    "IsWon": stage.won,
                    "ForecastCategoryName": stage.forecast_category,
                    "DefaultProbability": stage.probability,
                },
            )
        standard = put(
            "Pricebook2", {"Name": "Standard Price Book", "IsActive": True, "IsStandard": True}
        )
        currency = self._currency_default()
        for name, code, price in (("Services", "SERVICES", "100.00"), ("Hours", "HOURS", "75.00")):
            product = put("Product2", {"Name": name, "ProductCode": code, "IsActive": True})
            put(
                "PricebookEntry",
                {
                    "Pricebook2Id": standard,
                    "Product2Id": product,
                    "UnitPrice": price,
                    "IsActive": True,
                    "UseStandardPrice": False,
                    **currency,
                },
            )
        accounts = (
            ("Edge Communications", "CD451796", "(512) 757-6000", "312 Constitution Place",
             "Austin", "TX", "78767", "USA", ("Rose", "Gonzalez", "rose@edge.com")),
            ("Burlington Textiles Corp of America", "CD656092", "(336) 222-7000",
             "525 S. Lexington Ave", "Burlington", "NC", "27215", "USA",
             ("Jack", "Rogers", "jrogers@burlington.com")),
        )  # fmt: skip
        for name, number, phone, street, city, state, postcode, country, person in accounts:
            account = put(
                "Account",
                {
                    "Name": name,
                    "AccountNumber": number,
                    "Phone": phone,
                    "Type": "Customer - Direct",
                    "BillingStreet": street,
                    "BillingCity": city,
                    "BillingState": state,
                    "BillingPostalCode": postcode,
                    "BillingCountry": country,
                    "OwnerId": admin,
                    **currency,
                },
            )
            first, last, email = person
            put(
                "Contact",
                {
                    "AccountId": account,
                    "FirstName": first,
                    "LastName": last,
                    "Email": email,
                    "Phone": phone,
                    "OwnerId": admin,
                    **currency,
                },
            )

    def _currency_default(self) -> JSON:
        return {"CurrencyIsoCode": self.config.corporate_currency} if self.config.currencies else {}

    def _blank(self, obj: SObjectType, user_id: str, at: datetime) -> JSON:
        record: JSON = {f.name: f.default for f in obj.fields}
        record.update(
            Id=self._new_id(obj.key_prefix),
            IsDeleted=False,
            CreatedDate=at,
            CreatedById=user_id,
            LastModifiedDate=at,
            LastModifiedById=user_id,
            SystemModstamp=at,
        )
        return record

    # --- views and rendering ----------------------------------------------------------

    def _view(self, sobject: str, record: JSON) -> JSON:
        """A record with its derived fields (names and prices that follow other records)."""
        view = dict(record)
        if sobject == "Contact":
            view["Name"] = " ".join(p for p in (record["FirstName"], record["LastName"]) if p)
        elif sobject == "PricebookEntry":
            product = self._store["Product2"].get(record["Product2Id"]) or {}
            view["Name"] = product.get("Name")
            view["ProductCode"] = product.get("ProductCode")
            if record["UseStandardPrice"]:
                standard = self._standard_entry(record["Product2Id"], record.get("CurrencyIsoCode"))
                view["UnitPrice"] = standard["UnitPrice"] if standard else None
        elif sobject == "OpportunityLineItem":
            product = self._store["Product2"].get(record["Product2Id"]) or {}
            opportunity = self._store["Opportunity"].get(record["OpportunityId"]) or {}
            view["Name"] = f"{opportunity.get('Name', '')} {product.get('Name', '')}".strip()
            view["ProductCode"] = product.get("ProductCode")
        return view

    def _render(self, obj: SObjectType, record: JSON, names: Iterable[str] | None = None) -> JSON:
        view = self._view(obj.name, record)
        version = self._version_for_urls()
        out: JSON = {
            "attributes": {
                "type": obj.name,
                "url": f"/services/data/v{version}/sobjects/{obj.name}/{record['Id']}",
            }
        }
        wanted = [f.name for f in obj.fields] if names is None else list(names)
        for name in wanted:
            out[name] = to_json(view.get(name))
        return out

    def _version_for_urls(self) -> str:
        """The version of the request being served, else the newest one."""
        args = request.view_args if has_request_context() else None
        version = (args or {}).get("version")
        return str(version) if version in self.config.api_versions else self.config.api_versions[-1]

    # --- finding records --------------------------------------------------------------

    def _object(self, name: str) -> SObjectType:
        for obj in self.schema.values():
            if obj.name.lower() == name.lower():
                return obj
        raise _not_found()

    def _find(self, obj: SObjectType, raw_id: str, for_write: bool = False) -> JSON:
        record_id = normalize_id(raw_id)
        if record_id is None:
            raise _not_found(
                f"Provided external ID field does not exist or is not accessible: {raw_id}"
            )
        record = self._store[obj.name].get(record_id)
        if record is None:
            raise _not_found()
        if record["IsDeleted"]:
            if for_write:
                raise SalesforceApiError(404, "ENTITY_IS_DELETED", "entity is deleted", [])
            raise _not_found()
        return record

    def _standard_book(self) -> JSON:
        return next(b for b in self._store["Pricebook2"].values() if b["IsStandard"])

    def _standard_entry(self, product_id: str, currency: str | None) -> JSON | None:
        book = self._standard_book()["Id"]
        for entry in self._store["PricebookEntry"].values():
            if (
                not entry["IsDeleted"]
                and entry["Pricebook2Id"] == book
                and entry["Product2Id"] == product_id
                and entry.get("CurrencyIsoCode") == currency
            ):
                return entry
        return None

    def _live(self, sobject: str, where: Callable[[JSON], bool]) -> list[JSON]:
        return [r for r in self._store[sobject].values() if not r["IsDeleted"] and where(r)]

    # --- writes: parsing and generic validation ---------------------------------------

    def _parse(self, obj: SObjectType, body: Any, creating: bool) -> JSON:
        """A request body as typed values, refusing unknown and read-only fields."""
        if not isinstance(body, dict):
            raise SalesforceApiError(
                400,
                "JSON_PARSER_ERROR",
                "Cannot deserialize instance of SObject from the request body: "
                "expected a JSON object",
            )
        values: JSON = {}
        locked: list[str] = []
        for key, raw in body.items():
            if key == "attributes":
                continue
            f = obj.field(key)
            if f is None:
                raise SalesforceApiError(
                    400, "INVALID_FIELD", f"No such column '{key}' on sobject of type {obj.name}"
                )
            if not (f.createable if creating else f.updateable):
                locked.append(f.name)
                continue
            try:
                values[f.name] = coerce(f, raw)
            except CoercionError as exc:
                raise SalesforceApiError(400, "JSON_PARSER_ERROR", str(exc)) from exc
        if locked:
            raise _dml(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to create/update fields: {', '.join(locked)}. Please check the security "
                "settings of this field and verify that it is read/write for your profile or "
                "permission set.",
                locked,
            )
        return values

    def _check_values(self, obj: SObjectType, record: JSON, changed: Iterable[str]) -> None:
        """Required fields, lengths, picklists, e-mails, numbers and references."""
        missing = [f.name for f in obj.fields if f.required and record.get(f.name) in (None, "")]
        if missing:
            raise _dml(
                "REQUIRED_FIELD_MISSING",
                f"Required fields are missing: [{', '.join(missing)}]",
                missing,
            )
        for name in changed:
            f = obj.field(name)
            assert f is not None
            value = record.get(f.name)
            if value is None:
                continue
            if f.type in STRING_TYPES and f.length and len(str(value)) > f.length:
                raise _dml(
                    "STRING_TOO_LONG",
                    f"{f.label}: data value too large: {value} (max length={f.length})",
                    [f.name],
                )
            if f.restricted and value not in f.picklist:
                raise _dml(
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    f"{f.label}: bad value for restricted picklist field: {value}",
                    [f.name],
                )
            if f.type == "email" and not _EMAIL.match(str(value)):
                raise _dml(
                    "INVALID_EMAIL_ADDRESS", f"{f.label}: invalid email address: {value}", [f.name]
                )
            if isinstance(value, Decimal) and f.precision and not digits_fit(f, value):
                raise _dml(
                    "NUMBER_OUTSIDE_VALID_RANGE",
                    f"{f.label}: value outside of valid range on numeric field: {value}",
                    [f.name],
                )
            if f.type in ID_TYPES and f.reference_to:
                record[f.name] = self._reference(f, str(value))

    def _reference(self, f: Field, raw: str) -> str:
        """A lookup's canonical id, refusing malformed, unknown and deleted targets."""
        target = f.reference_to
        record_id = normalize_id(raw)
        prefix = "005" if target == "User" else self.schema[str(target)].key_prefix
        if record_id is None or not record_id.startswith(prefix):
            raise _dml("MALFORMED_ID", f"{f.label}: id value of incorrect type: {raw}", [f.name])
        if target == "User":
            if record_id not in self._users:
                raise _dml("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
            return record_id
        found = self._store[str(target)].get(record_id)
        if found is None:
            raise _dml("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
        if found["IsDeleted"]:
            raise _dml("ENTITY_IS_DELETED", "entity is deleted")
        return record_id

    # --- writes: create, update, delete -------------------------------------------------

    def _insert(self, obj: SObjectType, body: Any, user_id: str, batch: _Batch) -> str:
        if not obj.createable:
            raise SalesforceApiError(
                405, "METHOD_NOT_ALLOWED", "HTTP Method 'POST' not allowed. Allowed are GET,HEAD"
            )
        values = self._parse(obj, body, creating=True)
        now = self._now()
        record = self._blank(obj, user_id, now)
        record.update(self._currency_default() if obj.field("CurrencyIsoCode") else {})
        if obj.field("OwnerId"):
            record["OwnerId"] = user_id
        record.update(values)
        self._check_values(
            obj, record, [f.name for f in obj.fields if record.get(f.name) is not None]
        )
        self._rules(obj, record, None, values)
        self._store[obj.name][record["Id"]] = record
        self._counts[("create", obj.name)] += 1
        batch.writes.append(_Write(obj.name, record["Id"], None, copy.copy(record)))
        self._after(obj, record, user_id, batch)
        return str(record["Id"])

    def _modify(
        self, obj: SObjectType, raw_id: str, body: Any, user_id: str, batch: _Batch
    ) -> None:
        if not obj.updateable:
            raise SalesforceApiError(
                405, "METHOD_NOT_ALLOWED", "HTTP Method 'PATCH' not allowed. Allowed are GET,HEAD"
            )
        record = self._find(obj, raw_id, for_write=True)
        values = self._parse(obj, body, creating=False)
        before = copy.copy(record)
        draft = {**record, **values}
        self._check_values(obj, draft, values)
        self._rules(obj, draft, before, values)
        now = self._now()
        draft.update(LastModifiedDate=now, LastModifiedById=user_id, SystemModstamp=now)
        record.update(draft)
        self._counts[("update", obj.name)] += 1
        batch.writes.append(_Write(obj.name, record["Id"], before, copy.copy(record)))
        self._after(obj, record, user_id, batch)

    def _remove(self, obj: SObjectType, raw_id: str, user_id: str, batch: _Batch) -> None:
        if not obj.deletable:
            raise SalesforceApiError(
                405, "METHOD_NOT_ALLOWED", "HTTP Method 'DELETE' not allowed. Allowed are GET,HEAD"
            )
        record = self._find(obj, raw_id, for_write=True)
        self._check_delete(obj, record)
        self._counts[("delete", obj.name)] += 1
        touched: set[str] = set()
        self._delete_tree(obj, record, user_id, touched)
        for opportunity_id in touched:
            opportunity = self._store["Opportunity"][opportunity_id]
            if not opportunity["IsDeleted"]:
                self._roll_up(opportunity, user_id, batch)

    def _delete_tree(self, obj: SObjectType, record: JSON, user_id: str, touched: set[str]) -> None:
        """Move a record and the children it cascades to into the recycle bin."""
        now = self._now()
        record.update(
            IsDeleted=True, LastModifiedDate=now, LastModifiedById=user_id, SystemModstamp=now
        )
        if obj.name == "OpportunityLineItem":
            touched.add(record["OpportunityId"])
        for child in self.schema.values():
            for f in child.fields:
                if f.reference_to == obj.name and f.cascade_delete:
                    column = f.name
                    dependents = [
                        r
                        for r in self._store[child.name].values()
                        if not r["IsDeleted"] and r[column] == record["Id"]
                    ]
                    for dependent in dependents:
                        self._delete_tree(child, dependent, user_id, touched)

    def _check_delete(self, obj: SObjectType, record: JSON) -> None:
        """The deletions Salesforce refuses because other records still need the record."""
        users = {
            "Product2": ("OpportunityLineItem", "Product2Id"),
            "PricebookEntry": ("OpportunityLineItem", "PricebookEntryId"),
            "Pricebook2": ("Opportunity", "Pricebook2Id"),
        }
        if obj.name in users:
            table, column = users[obj.name]
            if self._live(table, lambda r: r[column] == record["Id"]):
                raise _dml(
                    "DELETE_FAILED",
                    f"Your attempt to delete {record.get('Name') or record['Id']} could not be "
                    "completed because it is associated with the following opportunities.",
                )
        if obj.name == "Pricebook2" and record["IsStandard"]:
            raise _dml("DELETE_FAILED", "You can't delete the standard price book.")
        if obj.name == "PricebookEntry" and record["Pricebook2Id"] == self._standard_book()["Id"]:
            custom = self._live(
                "PricebookEntry",
                lambda r: r["Product2Id"] == record["Product2Id"] and r["Id"] != record["Id"],
            )
            if custom:
                raise _dml(
                    "DELETE_FAILED",
                    "This standard price can't be deleted because it's used by custom prices.",
                )

    # --- object rules ----------------------------------------------------------------

    def _rules(self, obj: SObjectType, record: JSON, before: JSON | None, values: JSON) -> None:
        """Object-specific checks and derived fields, before a write commits."""
        if obj.name == "Opportunity":
            self._opportunity_rules(record, before, values)
        elif obj.name == "OpportunityLineItem":
            self._line_item_rules(record, before, values)
        elif obj.name == "PricebookEntry":
            self._entry_rules(record, before, values)

    def _opportunity_rules(self, record: JSON, before: JSON | None, values: JSON) -> None:
        stage = next(s for s in STAGES if s.label == record["StageName"])
        if before is None or "StageName" in values:
            record["IsClosed"], record["IsWon"] = stage.closed, stage.won
            if "Probability" not in values:
                record["Probability"] = Decimal(stage.probability)
            if "ForecastCategoryName" not in values:
                record["ForecastCategoryName"] = stage.forecast_category
        lines = [] if before is None else self._lines(record["Id"])
        if before is not None and lines:
            if "Pricebook2Id" in values and values["Pricebook2Id"] != before["Pricebook2Id"]:
                raise _integrity(
                    "Pricebook2Id (cannot change pricebook on opportunity with line items)",
                    ["Pricebook2Id"],
                )
            if "CurrencyIsoCode" in values and values["CurrencyIsoCode"] != before.get(
                "CurrencyIsoCode"
            ):
                raise _integrity(
                    "CurrencyIsoCode (cannot change currency on opportunity with line items)",
                    ["CurrencyIsoCode"],
                )
            # "Any attempt to update this field, if the opportunity has products, is
            # ignored" (Opportunity.Amount in the Object Reference).
            record["Amount"] = before["Amount"]
        if "Pricebook2Id" in values and values["Pricebook2Id"] is not None:
            book = self._store["Pricebook2"][values["Pricebook2Id"]]
            if not book["IsActive"]:
                raise _integrity("Pricebook2Id (pricebook is inactive)", ["Pricebook2Id"])
        self._expected_revenue(record)
        record["HasOpportunityLineItem"] = bool(lines)

    @staticmethod
    def _expected_revenue(record: JSON) -> None:
        amount, probability = record["Amount"], record["Probability"]
        record["ExpectedRevenue"] = (
            None if amount is None or probability is None else _money(amount * probability / 100)
        )

    def _lines(self, opportunity_id: str) -> list[JSON]:
        return self._live("OpportunityLineItem", lambda r: r["OpportunityId"] == opportunity_id)

    def _line_item_rules(self, record: JSON, before: JSON | None, values: JSON) -> None:
        if before is None:
            self._new_line_item(record, values)
        elif "UnitPrice" in values and "TotalPrice" in values:
            raise _dml(
                "INVALID_FIELD", "Cannot change both 'UnitPrice' and 'TotalPrice' in update call",
                ["UnitPrice"],
            )  # fmt: skip
        elif (
            "Quantity" in values
            and "Discount" in values
            and "UnitPrice" not in values
            and "TotalPrice" not in values
        ):
            # "If you specify both Discount and Quantity, you must also specify either
            # TotalPrice or UnitPrice so the system knows which one to automatically adjust."
            raise _integrity(
                "unknown (specify UnitPrice or TotalPrice when changing Quantity and Discount)",
                ["unknown"],
            )
        if record["Quantity"] == 0:
            raise _integrity("Quantity (quantity must be non-zero)", ["Quantity"])
        discount = record["Discount"]
        if discount is not None and not Decimal(0) <= discount <= Decimal(100):
            raise _dml(
                "NUMBER_OUTSIDE_VALID_RANGE",
                f"Discount: value outside of valid range on numeric field: {discount}",
                ["Discount"],
            )
        self._price_line(record, values)

    def _new_line_item(self, record: JSON, values: JSON) -> None:
        entry_id = record["PricebookEntryId"]
        if entry_id is None:
            raise _integrity(
                "PricebookEntryId, unknown (versions 3.0 and higher must specify pricebook entry "
                "id; others must specify product id)",
                ["PricebookEntryId", "unknown"],
            )
        entry = self._store["PricebookEntry"][entry_id]
        if record["Product2Id"] is not None and record["Product2Id"] != entry["Product2Id"]:
            raise _integrity("Product2Id (product does not match pricebook entry)", ["Product2Id"])
        book = self._store["Pricebook2"][entry["Pricebook2Id"]]
        if not entry["IsActive"] or not book["IsActive"]:
            raise _integrity("PricebookEntryId (pricebook entry is inactive)", ["PricebookEntryId"])
        opportunity = self._store["Opportunity"][record["OpportunityId"]]
        if opportunity["Pricebook2Id"] not in (None, entry["Pricebook2Id"]):
            raise _integrity(
                "PricebookEntryId (pricebook entry is in a different pricebook than the one "
                "assigned to the opportunity)",
                ["PricebookEntryId"],
            )
        if self.config.currencies:
            if entry["CurrencyIsoCode"] != opportunity["CurrencyIsoCode"]:
                raise _integrity(
                    "PricebookEntryId (pricebook entry currency code does not match opportunity "
                    "currency code)",
                    ["PricebookEntryId"],
                )
            record["CurrencyIsoCode"] = opportunity["CurrencyIsoCode"]
        if (values.get("UnitPrice") is None) == (values.get("TotalPrice") is None):
            raise _integrity(
                "unknown (must specify either UnitPrice or TotalPrice, but not both)", ["unknown"]
            )
        record["Product2Id"] = entry["Product2Id"]
        record["ListPrice"] = self._view("PricebookEntry", entry)["UnitPrice"]

    @staticmethod
    def _price_line(record: JSON, values: JSON) -> None:
        """UnitPrice, Subtotal and TotalPrice, whichever of the two prices was given.

        TotalPrice = UnitPrice x Quantity less the Discount percent (Salesforce
        knowledge article 000384983); Subtotal = UnitPrice x Quantity.
        """
        quantity = record["Quantity"]
        factor = 1 - (record["Discount"] or Decimal(0)) / 100
        if values.get("TotalPrice") is not None:
            if factor == 0:
                raise _integrity(
                    "TotalPrice (a 100% discount leaves no unit price)", ["TotalPrice"]
                )
            record["UnitPrice"] = _money(values["TotalPrice"] / (quantity * factor))
            record["TotalPrice"] = values["TotalPrice"]
        elif record["UnitPrice"] is None:
            raise _integrity(
                "unknown (must specify either UnitPrice or TotalPrice, but not both)", ["unknown"]
            )
        else:
            record["TotalPrice"] = _money(record["UnitPrice"] * quantity * factor)
        record["Subtotal"] = _money(record["UnitPrice"] * quantity)

    def _entry_rules(self, record: JSON, before: JSON | None, values: JSON) -> None:
        standard_book = self._standard_book()["Id"]
        is_standard = record["Pricebook2Id"] == standard_book
        if record["UseStandardPrice"] and (
            "UnitPrice" in values and values["UnitPrice"] is not None
        ):
            # "You can specify a value only if UseStandardPrice is set to false."
            raise _dml("FIELD_INTEGRITY_EXCEPTION", "field integrity exception")
        if record["UseStandardPrice"] and is_standard:
            raise _integrity(
                "UseStandardPrice (the standard price book entry defines the standard price)",
                ["UseStandardPrice"],
            )
        if not record["UseStandardPrice"] and record["UnitPrice"] is None:
            raise _dml(
                "REQUIRED_FIELD_MISSING", "Required fields are missing: [UnitPrice]", ["UnitPrice"]
            )
        if before is not None:
            return
        currency = record.get("CurrencyIsoCode")
        if not is_standard and self._standard_entry(record["Product2Id"], currency) is None:
            raise _dml(
                "STANDARD_PRICE_NOT_DEFINED",
                "Before creating a custom price, create a standard price.",
            )
        duplicate = self._live(
            "PricebookEntry",
            lambda r: (
                r["Pricebook2Id"] == record["Pricebook2Id"]
                and r["Product2Id"] == record["Product2Id"]
                and r.get("CurrencyIsoCode") == currency
            ),
        )
        if duplicate:
            raise _dml("DUPLICATE_VALUE", "This price definition already exists in this price book")

    def _after(self, obj: SObjectType, record: JSON, user_id: str, batch: _Batch) -> None:
        """Effects on other records once a write committed."""
        if obj.name == "OpportunityLineItem":
            opportunity = self._store["Opportunity"][record["OpportunityId"]]
            if opportunity["Pricebook2Id"] is None:
                entry = self._store["PricebookEntry"][record["PricebookEntryId"]]
                opportunity["Pricebook2Id"] = entry["Pricebook2Id"]
            self._roll_up(opportunity, user_id, batch)
        elif obj.name == "OpportunityContactRole" and record["IsPrimary"]:
            # One primary contact role per opportunity: marking one clears the others.
            others = self._live(
                "OpportunityContactRole",
                lambda r: (
                    r["OpportunityId"] == record["OpportunityId"]
                    and r["Id"] != record["Id"]
                    and r["IsPrimary"]
                ),
            )
            now = self._now()
            for other in others:
                before = copy.copy(other)
                other.update(
                    IsPrimary=False,
                    LastModifiedDate=now,
                    LastModifiedById=user_id,
                    SystemModstamp=now,
                )
                batch.writes.append(
                    _Write("OpportunityContactRole", other["Id"], before, copy.copy(other))
                )

    def _roll_up(self, opportunity: JSON, user_id: str, batch: _Batch) -> None:
        """The opportunity's Amount as the sum of its products, saved as an edit of it."""
        before = copy.copy(opportunity)
        lines = self._lines(opportunity["Id"])
        total = sum((line["TotalPrice"] for line in lines), Decimal(0))
        opportunity["Amount"] = _money(total)
        opportunity["HasOpportunityLineItem"] = bool(lines)
        self._expected_revenue(opportunity)
        now = self._now()
        opportunity.update(LastModifiedDate=now, LastModifiedById=user_id, SystemModstamp=now)
        batch.writes.append(
            _Write("Opportunity", opportunity["Id"], before, copy.copy(opportunity))
        )

    # --- outbound messages -------------------------------------------------------------

    def _flush(self, batch: _Batch) -> None:
        """Queue the outbound notifications a committed call's writes fire."""
        with self._lock:
            for write in batch.writes:
                for definition in self._definitions:
                    spec = definition.spec
                    if spec.object_type != write.sobject or not self._fires(definition, write):
                        continue
                    notification = Notification(self._new_id("04l"), write.sobject, write.record_id)
                    self._outbound.enqueue(
                        spec.name, definition.action_id, spec.endpoint_url, notification
                    )

    def _fires(self, definition: _Definition, write: _Write) -> bool:
        spec = definition.spec
        meets_after = self._meets(spec, write.after)
        if write.before is None:
            return meets_after
        if spec.trigger == "created":
            return False
        if spec.trigger == "created_or_edited":
            return meets_after
        return meets_after and not self._meets(spec, write.before)

    def _meets(self, spec: OutboundMessageDefinition, record: JSON) -> bool:
        obj = self.schema[spec.object_type]
        view = self._view(obj.name, record)
        for name, wanted in spec.criteria.items():
            f = obj.field(name)
            assert f is not None
            if view.get(f.name) != coerce(f, wanted):
                return False
        return True

    def _render_delivery(self, delivery: OutboundDelivery) -> bytes:
        """The SOAP envelope of a delivery with the records' latest data."""
        with self._lock:
            definition = next(d for d in self._definitions if d.action_id == delivery.action_id)
            spec = definition.spec
            obj = self.schema[spec.object_type]
            notifications = []
            for notification in delivery.notifications:
                stored = self._store[obj.name].get(notification.record_id)
                if stored is None:  # gone with a reset while the message was queued
                    continue
                record = self._view(obj.name, stored)
                values = {"Id": record["Id"]}
                for name in spec.fields:
                    f = obj.field(name)
                    assert f is not None
                    values[f.name] = record.get(f.name)
                notifications.append((notification.id, obj.name, values))
            session = self._open_session() if spec.send_session_id else None
            base = self.config.instance_url or self._last_host or "http://127.0.0.1"
            version = self.config.api_versions[-1]
            org15 = self.org_id[:15]
            return build_envelope(
                organization_id=self.org_id,
                action_id=definition.action_id,
                session_id=session,
                enterprise_url=f"{base}/services/Soap/c/{version}/{org15}",
                partner_url=f"{base}/services/Soap/u/{version}/{org15}",
                notifications=notifications,
            )

    # --- Flask app ------------------------------------------------------------------

    def _build_app(self) -> Flask:
        app = Flask(__name__)
        app.url_map.strict_slashes = False  # Salesforce answers with and without the slash
        install_fault_routes(app, self.faults, self._fault_limited, self.reset)
        app.register_error_handler(SalesforceApiError, lambda e: _json_response(e.body(), e.status))
        app.register_error_handler(404, lambda e: _json_response(_not_found().body(), 404))
        app.register_error_handler(405, self._method_not_allowed)
        rule = app.add_url_rule
        rule("/services/oauth2/token", "token", self._token, methods=["POST"])
        rule("/services/oauth2/authorize", "authorize", self._authorize, methods=["GET"])
        rule("/services/data", "versions", self._versions, methods=["GET"])
        data = "/services/data/v<version>"
        routes: list[tuple[str, str, Callable[..., Any], list[str]]] = [
            ("", "resources", self._resources, ["GET"]),
            ("/limits", "limits", self._limits, ["GET"]),
            ("/sobjects", "describe_global", self._describe_global, ["GET"]),
            ("/sobjects/<sobject>", "sobject_info", self._sobject_info, ["GET"]),
            ("/sobjects/<sobject>", "create", self._create_route, ["POST"]),
            ("/sobjects/<sobject>/describe", "describe", self._describe, ["GET"]),
            ("/sobjects/<sobject>/deleted", "deleted", self._deleted_route, ["GET"]),
            ("/sobjects/<sobject>/<record_id>", "read", self._read_route, ["GET"]),
            ("/sobjects/<sobject>/<record_id>", "update", self._update_route, ["PATCH"]),
            ("/sobjects/<sobject>/<record_id>", "delete", self._delete_route, ["DELETE"]),
            ("/query", "query", self._query_route, ["GET"]),
            ("/queryAll", "query_all", self._query_all_route, ["GET"]),
            ("/query/<locator>", "query_more", self._query_more_route, ["GET"]),
            ("/queryAll/<locator>", "query_all_more", self._query_more_route, ["GET"]),
        ]
        for path, name, handler, methods in routes:
            rule(data + path, name, self._api(handler), methods=methods)
        admin = "/_sandbox/records/<sobject>"
        rule(admin, "admin_list", self._admin_list, methods=["GET"])
        rule(admin, "admin_create", self._admin_create, methods=["POST"])
        rule(f"{admin}/<record_id>", "admin_update", self._admin_update, methods=["PATCH"])
        rule(f"{admin}/<record_id>", "admin_delete", self._admin_delete, methods=["DELETE"])
        rule("/_sandbox/stats", "admin_stats", self._admin_stats, methods=["GET"])
        rule("/_sandbox/outbound", "admin_outbound", self._admin_outbound, methods=["GET"])
        rule(
            "/_sandbox/outbound/definitions",
            "admin_definitions",
            self._admin_definitions,
            methods=["POST"],
        )
        rule("/_sandbox/oauth/code", "admin_code", self._admin_code, methods=["POST"])
        return app

    def _method_not_allowed(self, error: Any) -> Response:
        allowed = ",".join(sorted(getattr(error, "valid_methods", None) or ["GET"]))
        return _json_response(
            SalesforceApiError(
                405,
                "METHOD_NOT_ALLOWED",
                f"HTTP Method '{request.method}' not allowed. Allowed are {allowed}",
            ).body(),
            405,
        )

    def _usage_header(self) -> str:
        used, limit = self.api_usage()
        return f"api-usage={used}/{limit}"

    def _limited(self, message: str) -> Response:
        response = _json_response(
            SalesforceApiError(403, "REQUEST_LIMIT_EXCEEDED", message).body(), 403
        )
        response.headers["Sforce-Limit-Info"] = self._usage_header()
        return response

    def _fault_limited(self, fault: Fault) -> Response:
        return self._limited("ConcurrentRequests (Concurrent API Requests) Limit exceeded.")

    def _api(self, handler: Callable[..., Response]) -> Callable[..., Response]:
        """Version, session and daily allocation checks around one REST resource."""

        def serve(version: str, **kwargs: Any) -> Response:
            if version not in self.config.api_versions:
                raise _not_found()
            self._last_host = request.host_url.rstrip("/")
            denied = self._authenticate()
            if denied is not None:
                return denied
            if self._usage.hit("org"):
                return self._limited("TotalRequests Limit exceeded.")
            try:
                response = handler(version=version, **kwargs)
            except SalesforceApiError as error:
                response = _json_response(error.body(), error.status)
            response.headers["Sforce-Limit-Info"] = self._usage_header()
            return response

        serve.__name__ = handler.__name__
        return serve

    # --- OAuth -----------------------------------------------------------------------

    def _open_session(self) -> str:
        """A session of the integration user (every token here is that user's)."""
        token = f"{self.org_id[:15]}!AQ{secrets.token_urlsafe(60)}"
        with self._lock:
            self._sessions[token] = self.config.clock()
        return token

    def _authenticate(self) -> Response | None:
        """None for a live session (which it keeps alive), else the documented 401."""
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        now = self.config.clock()
        with self._lock:
            token = token.strip()
            last_used = self._sessions.get(token) if scheme in ("Bearer", "OAuth") else None
            if last_used is not None and now - last_used < self.config.session_timeout_s:
                self._sessions[token] = now
                return None
        response = _json_response(
            [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}], 401
        )
        response.headers["WWW-Authenticate"] = "Token"
        return response

    def _oauth_error(self, error: str, description: str) -> Response:
        return _json_response({"error": error, "error_description": description}, 400)

    def _token(self) -> Response:
        form = request.form
        grant = form.get("grant_type")
        if grant not in ("refresh_token", "authorization_code"):
            return self._oauth_error("unsupported_grant_type", "grant type not supported")
        if not hmac.compare_digest(form.get("client_id", ""), self.config.client_id):
            return self._oauth_error("invalid_client_id", "client identifier invalid")
        secret = form.get("client_secret")
        needs_secret = (
            self.config.require_secret_for_refresh
            if grant == "refresh_token"
            else self.config.require_secret_for_web_server
        )
        if (secret is None and needs_secret) or (
            secret is not None and not hmac.compare_digest(secret, self.config.client_secret)
        ):
            return self._oauth_error("invalid_client", "invalid client credentials")
        now = self.config.clock()
        with self._lock:
            if grant == "refresh_token":
                presented = form.get("refresh_token", "")
                record = self._refresh_tokens.get(presented)
                ttl = self.config.refresh_token_ttl_s
                if (
                    record is None
                    or record.revoked
                    or (ttl is not None and now - record.issued_at >= ttl)
                ):
                    return self._oauth_error("invalid_grant", "expired access/refresh token")
                scope, refresh = record.scope, None
                if self.config.rotate_refresh_tokens:
                    record.revoked = True
                    refresh = self._issue_refresh(scope)
            else:
                redeemed = self._redeem_code(form, now)
                if isinstance(redeemed, Response):
                    return redeemed
                scope = redeemed
                wants_refresh = {"refresh_token", "offline_access"} & set(scope.split())
                refresh = self._issue_refresh(scope) if wants_refresh else None
        return _json_response(self._token_body(scope, refresh))

    def _redeem_code(self, form: Mapping[str, str], now: float) -> str | Response:
        """The scope of a valid code (which is used up), or the OAuth error response."""
        code = self._codes.pop(form.get("code", ""), None)
        if code is None:
            return self._oauth_error("invalid_grant", "invalid authorization code")
        if now >= code.expires_at:
            return self._oauth_error("invalid_grant", "expired authorization code")
        if form.get("redirect_uri") != code.redirect_uri:
            return self._oauth_error(
                "redirect_uri_mismatch", "redirect_uri must match configuration"
            )
        verifier = form.get("code_verifier")
        if (code.challenge is None) != (verifier is None) or (
            verifier is not None
            and not hmac.compare_digest(_b64url_sha256(verifier), str(code.challenge))
        ):
            return self._oauth_error("invalid_grant", "invalid code verifier")
        return code.scope

    def _issue_refresh(self, scope: str) -> str:
        token = "5Aep861" + secrets.token_urlsafe(64)
        self._refresh_tokens[token] = _RefreshToken(self.config.clock(), scope)
        return token

    def _token_body(self, scope: str, refresh: str | None) -> JSON:
        base = self.config.instance_url or request.host_url.rstrip("/")
        identity = f"{base}/id/{self.org_id}/{self.integration_user_id}"
        issued_at = str(int(self.config.clock() * 1000))
        signature = base64.b64encode(
            hmac.new(
                self.config.client_secret.encode(), (identity + issued_at).encode(), hashlib.sha256
            ).digest()
        ).decode()
        body: JSON = {"access_token": self._open_session()}
        if refresh is not None:
            body["refresh_token"] = refresh
        body.update(
            signature=signature,
            scope=scope,
            instance_url=base,
            id=identity,
            token_type="Bearer",
            issued_at=issued_at,
        )
        return body

    def _authorize(self) -> Response:
        args = request.args
        if args.get("client_id") != self.config.client_id:
            return Response(
                "error=invalid_client_id&error_description=client%20identifier%20invalid", 400
            )
        redirect_uri = args.get("redirect_uri", "")
        if redirect_uri not in self.config.redirect_uris:
            return Response(
                "error=redirect_uri_mismatch&error_description=redirect_uri%20must%20match%20"
                "configuration",
                400,
            )
        state = {"state": args["state"]} if "state" in args else {}

        def back(params: Mapping[str, str]) -> Response:
            separator = "&" if "?" in redirect_uri else "?"
            return Response(
                status=302,
                headers={"Location": redirect_uri + separator + urlencode({**params, **state})},
            )

        if args.get("response_type") != "code":
            return back(
                {
                    "error": "unsupported_response_type",
                    "error_description": "response type not supported",
                }
            )
        scope = args.get("scope", "api refresh_token")
        if not set(scope.split()) <= SCOPES:
            return back(
                {
                    "error": "invalid_scope",
                    "error_description": "the requested scope is not allowed",
                }
            )
        challenge = args.get("code_challenge")
        if challenge is None and self.config.require_pkce:
            return back(
                {"error": "invalid_request", "error_description": "missing required code challenge"}
            )
        # The person at the consent screen approves: the sandbox stands in for them.
        return back({"code": self.mint_authorization_code(redirect_uri, challenge, scope)})

    # --- REST resources ----------------------------------------------------------------

    def _versions(self) -> Response:
        return _json_response(
            [
                {"label": RELEASES[v], "url": f"/services/data/v{v}", "version": v}
                for v in self.config.api_versions
            ]
        )

    def _resources(self, version: str) -> Response:
        base = f"/services/data/v{version}"
        return _json_response(
            {name: f"{base}/{name}" for name in ("limits", "query", "queryAll", "sobjects")}
        )

    def _limits(self, version: str) -> Response:
        used, limit = self.api_usage()
        return _json_response({"DailyApiRequests": {"Max": limit, "Remaining": limit - used}})

    def _object_summary(self, obj: SObjectType, version: str) -> JSON:
        base = f"/services/data/v{version}/sobjects/{obj.name}"
        return {
            "name": obj.name,
            "label": obj.label,
            "labelPlural": obj.label_plural,
            "keyPrefix": obj.key_prefix,
            "createable": obj.createable,
            "updateable": obj.updateable,
            "deletable": obj.deletable,
            "queryable": True,
            "retrieveable": True,
            "custom": False,
            "urls": {
                "sobject": base,
                "describe": f"{base}/describe",
                "rowTemplate": f"{base}/{{ID}}",
            },
        }

    def _describe_global(self, version: str) -> Response:
        return _json_response(
            {
                "encoding": "UTF-8",
                "maxBatchSize": 200,
                "sobjects": [self._object_summary(o, version) for o in self.schema.values()],
            }
        )

    def _sobject_info(self, version: str, sobject: str) -> Response:
        obj = self._object(sobject)
        return _json_response(
            {"objectDescribe": self._object_summary(obj, version), "recentItems": []}
        )

    def _describe(self, version: str, sobject: str) -> Response:
        obj = self._object(sobject)
        children = [
            {
                "childSObject": child.name,
                "field": f.name,
                "relationshipName": f.child_relationship,
                "cascadeDelete": f.cascade_delete,
            }
            for child in self.schema.values()
            for f in child.fields
            if f.reference_to == obj.name and f.child_relationship
        ]
        fields = [
            {
                "name": f.name,
                "label": f.label,
                "type": f.type,
                "custom": f.custom,
                "soapType": f"xsd:{f.soap_type}" if f.type not in ID_TYPES else "tns:ID",
                "length": f.length,
                "precision": f.precision,
                "scale": f.scale,
                "nillable": not f.required and f.type != "boolean" and f.name != "Id",
                "createable": f.createable,
                "updateable": f.updateable,
                "defaultedOnCreate": f.default is not None or f.name == "OwnerId",
                "calculated": False,
                "referenceTo": [f.reference_to] if f.reference_to else [],
                "relationshipName": f.relationship_name,
                "restrictedPicklist": f.restricted,
                "picklistValues": [
                    {"active": True, "defaultValue": False, "label": v, "value": v}
                    for v in f.picklist
                ],
            }
            for f in obj.fields
        ]
        return _json_response(
            {**self._object_summary(obj, version), "fields": fields, "childRelationships": children}
        )

    def _body(self) -> Any:
        body = request.get_json(force=True, silent=True)
        if body is None:
            raise SalesforceApiError(
                400, "JSON_PARSER_ERROR", "Unexpected character in the request body: expected JSON"
            )
        return body

    def _create_route(self, version: str, sobject: str) -> Response:
        obj = self._object(sobject)
        with self._lock:
            batch = _Batch()
            record_id = self._insert(obj, self._body(), self.integration_user_id, batch)
        self._flush(batch)
        return _json_response({"id": record_id, "success": True, "errors": []}, 201)

    def _read_route(self, version: str, sobject: str, record_id: str) -> Response:
        obj = self._object(sobject)
        names = None
        if "fields" in request.args:
            names = []
            for raw in request.args["fields"].split(","):
                f = obj.field(raw.strip())
                if f is None:
                    raise SalesforceApiError(
                        400,
                        "INVALID_FIELD",
                        f"No such column '{raw.strip()}' on entity '{obj.name}'. If you are "
                        "attempting to use a custom field, be sure to append the '__c' after the "
                        "custom field name. Please reference your WSDL or the describe call for "
                        "the appropriate names.",
                    )
                names.append(f.name)
            names.append("Id")
        with self._lock:
            record = self._find(obj, record_id)
            return _json_response(
                self._render(obj, record, dict.fromkeys(names) if names else None)
            )

    def _update_route(self, version: str, sobject: str, record_id: str) -> Response:
        obj = self._object(sobject)
        with self._lock:
            batch = _Batch()
            self._modify(obj, record_id, self._body(), self.integration_user_id, batch)
        self._flush(batch)
        return Response(status=204)

    def _delete_route(self, version: str, sobject: str, record_id: str) -> Response:
        obj = self._object(sobject)
        with self._lock:
            batch = _Batch()
            self._remove(obj, record_id, self.integration_user_id, batch)
        self._flush(batch)
        return Response(status=204)

    def _deleted_route(self, version: str, sobject: str) -> Response:
        """sObject Get Deleted: the records of ``sobject`` in the recycle bin deleted from
        ``start`` until ``end``, dated by their ``SystemModstamp`` (https://developer.
        salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_getdeleted.htm,
        and the rules of SOAP's getDeleted(): https://developer.salesforce.com/docs/
        atlas.en-us.api.meta/api/sforce_api_calls_getdeleted.htm).

        Seconds are ignored; a start less than a minute before the end, or more than 30
        days back (obs), is ``INVALID_REPLICATION_DATE``. Nothing deleted before the
        day 15 days back is listed: that is ``earliestDateAvailable``. NOT documented,
        chosen: the window is [start, end); ``latestDateCovered`` is the end (nothing
        is ever half deleted here); the error texts and ``MISSING_ARGUMENT`` /
        ``INVALID_PARAMETER_VALUE`` for a missing or unreadable date.
        """
        obj = self._object(sobject)
        start, end = self._replication_date("start"), self._replication_date("end")
        now = self._now()
        if end - start <= timedelta(minutes=1):
            raise SalesforceApiError(
                400, "INVALID_REPLICATION_DATE", "start must be more than a minute before end"
            )
        if start < now - timedelta(days=DELETED_START_DAYS):
            raise SalesforceApiError(
                400,
                "INVALID_REPLICATION_DATE",
                f"start must be within the last {DELETED_START_DAYS} days",
            )
        today = now.replace(hour=0, minute=0, second=0, microsecond=0)
        earliest = today - timedelta(days=DELETED_LISTED_DAYS)
        since = max(start, earliest)
        with self._lock:
            deleted = sorted(
                (r["SystemModstamp"], r["Id"])
                for r in self._store[obj.name].values()
                if r["IsDeleted"] and since <= r["SystemModstamp"] < end
            )
        return _json_response(
            {
                "deletedRecords": [
                    {"id": record_id, "deletedDate": format_datetime(at)}
                    for at, record_id in deleted
                ],
                "earliestDateAvailable": format_datetime(earliest),
                "latestDateCovered": format_datetime(end),
            }
        )

    @staticmethod
    def _replication_date(name: str) -> datetime:
        """A Get Deleted parameter, ISO 8601, to the minute (its seconds are ignored)."""
        raw = request.args.get(name)
        if raw is None:
            raise SalesforceApiError(400, "MISSING_ARGUMENT", f"{name} not specified")
        parsed = parse_datetime(raw)
        if parsed is None:
            raise SalesforceApiError(
                400, "INVALID_PARAMETER_VALUE", f"{name}: unreadable date-time '{raw}'"
            )
        return parsed.replace(second=0, microsecond=0)

    # --- queries ----------------------------------------------------------------------

    def _query_route(self, version: str) -> Response:
        return self._run_query(version, include_deleted=False)

    def _query_all_route(self, version: str) -> Response:
        return self._run_query(version, include_deleted=True)

    def _batch_size(self) -> int:
        """The batch: ``Sforce-Query-Options: batchSize=n`` held to 200..2,000, and never
        above the org's own (``query_batch_size``), as "there is no guarantee that the
        requested batch size is the actual batch size"."""
        wanted = MAX_BATCH
        options = request.headers.get("Sforce-Query-Options", "")
        match = re.search(r"batchSize\s*=\s*(\d+)", options)
        if match:
            wanted = min(max(int(match.group(1)), MIN_BATCH), MAX_BATCH)
        return min(wanted, self.config.query_batch_size)

    def _run_query(self, version: str, include_deleted: bool) -> Response:
        text = request.args.get("q")
        if text is None:
            raise SalesforceApiError(400, "MALFORMED_QUERY", "A query string has to be specified")
        try:
            query = soql.compile_query(text, self.schema)
            with self._lock:
                result = soql.run(query, _QueryStore(self), self._now(), version, include_deleted)
        except soql.QueryError as error:
            raise SalesforceApiError(400, error.code, error.message) from error
        if query.count:
            return _json_response({"totalSize": result.total, "done": True, "records": []})
        cursor = _Cursor(result.rows, result.weights, self._batch_size(), self.config.clock())
        return self._page(version, cursor, None, 0)

    def _page(self, version: str, cursor: _Cursor, locator: str | None, start: int) -> Response:
        taken = 0
        end = start
        while end < len(cursor.rows) and (
            end == start or taken + cursor.weights[end] <= cursor.batch
        ):
            taken += cursor.weights[end]
            end += 1
        body: JSON = {"totalSize": len(cursor.rows), "done": end >= len(cursor.rows)}
        if end < len(cursor.rows):
            if locator is None:
                with self._lock:
                    locator = self._new_id("01g")
                    self._cursors[locator] = cursor
            body["nextRecordsUrl"] = f"/services/data/v{version}/query/{locator}-{end}"
        body["records"] = cursor.rows[start:end]
        return _json_response(body)

    def _query_more_route(self, version: str, locator: str) -> Response:
        name, _, position = locator.rpartition("-")
        now = self.config.clock()
        with self._lock:
            cursor = self._cursors.get(name)
            if cursor is not None and now - cursor.last_used >= LOCATOR_IDLE_S:
                del self._cursors[name]
                cursor = None
            if cursor is None or not position.isdigit() or not 0 < int(position) < len(cursor.rows):
                raise SalesforceApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
            cursor.last_used = now
        return self._page(version, cursor, name, int(position))

    # --- admin routes ----------------------------------------------------------------

    def _admin_list(self, sobject: str) -> Response:
        deleted = request.args.get("deleted", "false").lower() == "true"
        return _json_response(self.records(sobject, include_deleted=deleted))

    def _admin_body(self) -> JSON:
        body = request.get_json(force=True, silent=True)
        if not isinstance(body, dict):
            raise SalesforceApiError(400, "JSON_PARSER_ERROR", "body must be a JSON object")
        return body

    def _admin_create(self, sobject: str) -> Response:
        return _json_response({"id": self.ui_create(sobject, self._admin_body())}, 201)

    def _admin_update(self, sobject: str, record_id: str) -> Response:
        self.ui_update(sobject, record_id, self._admin_body())
        return Response(status=204)

    def _admin_delete(self, sobject: str, record_id: str) -> Response:
        self.ui_delete(sobject, record_id)
        return Response(status=204)

    def _admin_stats(self) -> Response:
        used, limit = self.api_usage()
        with self._lock:
            writes: dict[str, dict[str, int]] = {"create": {}, "update": {}, "delete": {}}
            for (operation, sobject), count in self._counts.items():
                writes[operation][sobject] = count
        return _json_response({"apiUsage": {"used": used, "max": limit}, "writes": writes})

    def _admin_outbound(self) -> Response:
        with self._lock:
            definitions = [
                {"actionId": d.action_id, "name": d.spec.name, "object": d.spec.object_type,
                 "fields": list(d.spec.fields), "endpointUrl": d.spec.endpoint_url,
                 "trigger": d.spec.trigger, "criteria": dict(d.spec.criteria)}
                for d in self._definitions
            ]  # fmt: skip
        deliveries = [
            {
                "definition": d.definition,
                "actionId": d.action_id,
                "url": d.url,
                "notifications": [
                    {"id": n.id, "object": n.object_type, "recordId": n.record_id}
                    for n in d.notifications
                ],
                "attempts": list(d.attempts),
                "acknowledged": d.acknowledged,
                "abandoned": d.abandoned,
                "body": d.last_body.decode(),
            }
            for d in self.outbound_deliveries()
        ]
        return _json_response({"definitions": definitions, "deliveries": deliveries})

    def _admin_definitions(self) -> Response:
        body = self._admin_body()
        try:
            definition = OutboundMessageDefinition(
                name=str(body["name"]),
                object_type=str(body["object"]),
                fields=[str(f) for f in body.get("fields", [])],
                endpoint_url=str(body["endpointUrl"]),
                trigger=str(body.get("trigger", "created_or_edited")),
                criteria=dict(body.get("criteria") or {}),
                send_session_id=bool(body.get("sendSessionId", False)),
            )
            action_id = self.add_outbound_message(definition)
        except (KeyError, TypeError, ValueError) as exc:
            return _json_response({"error": f"invalid definition: {exc}"}, 400)
        return _json_response({"actionId": action_id}, 201)

    def _admin_code(self) -> Response:
        body = request.get_json(force=True, silent=True) or {}
        code = self.mint_authorization_code(
            body.get("redirect_uri"),
            body.get("code_challenge"),
            body.get("scope", "api refresh_token"),
        )
        return _json_response({"code": code})


# --- the local stack: the org's outbound messages, its secret, the demo's person ------

# What each outbound message selects: the fields the services preset
# (config/salesforce/services.yaml) reads from the object, a parent's by its lookup
# (``Account.Name`` by ``AccountId``), ``_DiscountAmount`` by ``Subtotal`` and
# ``TotalPrice``, and ``SystemModstamp``, which dates a notification.
OUTBOUND_FIELDS: Mapping[str, tuple[str, ...]] = {
    "Contact": (
        "SystemModstamp", "AccountId", "FirstName", "LastName", "Email", "Phone",
        "MailingStreet", "MailingCity", "MailingState", "MailingPostalCode", "MailingCountry",
    ),
    "Account": (
        "SystemModstamp", "Name", "Phone", "BillingStreet", "BillingCity", "BillingState",
        "BillingPostalCode", "BillingCountry",
    ),
    "Opportunity": (
        "SystemModstamp", "AccountId", "Name", "IsWon", "CurrencyIsoCode", "CloseDate",
    ),
    "OpportunityLineItem": (
        "SystemModstamp", "OpportunityId", "PricebookEntryId", "Description", "ProductCode",
        "Quantity", "UnitPrice", "Subtotal", "TotalPrice",
    ),
}  # fmt: skip
# The open stage a new opportunity is in until it is won.
_OPEN_STAGE = "Prospecting"
_WON_STAGE = "Closed Won"
_PERCENT = Decimal("0.01")  # Discount is a percent with two decimals


def _start(webhook_url: str | None) -> SalesforceSandbox:
    """An org whose outbound messages on the synced objects go to the URL with the
    endpoint token, as an admin sets them up; none when the URL is None. Multi-currency
    is on: the preset reads ``CurrencyIsoCode``."""
    config = SalesforceSandboxConfig(
        currencies=("USD", "EUR"),
        # The connected app's callback URLs include `crmsync connect`'s.
        redirect_uris=(*SalesforceSandboxConfig().redirect_uris, redirect_uri(DEFAULT_PORT)),
    )
    sandbox = SalesforceSandbox(config)
    if webhook_url is not None:
        url = httpx.URL(webhook_url).copy_merge_params({"token": config.outbound_token})
        for sobject, fields in OUTBOUND_FIELDS.items():
            sandbox.add_outbound_message(
                OutboundMessageDefinition(
                    name=f"crmsync {sobject}",
                    object_type=sobject,
                    fields=list(fields),
                    endpoint_url=str(url),
                )
            )
    return sandbox


def _sandbox_secret(sandbox: SalesforceSandbox) -> dict[str, str]:
    """A connection's secret for the org: the connected app, the integration user's
    refresh token, the org id and the outbound messages' endpoint token."""
    config = sandbox.config
    return {
        "client_id": config.client_id,
        "client_secret": config.client_secret,
        "refresh_token": config.initial_refresh_token,
        "organization_id": sandbox.org_id,
        "outbound_token": config.outbound_token,
    }


def _soql_text(value: str) -> str:
    """A SOQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class SalesforcePerson:
    """A person's edits through Salesforce's public REST API, with their own app's session.

    The session comes from the org's OAuth endpoint by the web server flow (the consent
    screen's code, then the token request), so the person holds no token of the
    integration's. Opportunities start open and are closed won once their products and
    contact are on them, as a salesperson closes a deal.
    """

    def __init__(self, sandbox: SalesforceSandbox, base_url: str) -> None:
        config = sandbox.config
        redirect_uri = config.redirect_uris[0]
        token = httpx.post(
            f"{base_url}/services/oauth2/token",
            data={
                "grant_type": "authorization_code",
                "code": sandbox.mint_authorization_code(redirect_uri, scope="api"),
                "client_id": config.client_id,
                "client_secret": config.client_secret,
                "redirect_uri": redirect_uri,
            },
            timeout=10,
        )
        token.raise_for_status()
        session = token.json()
        version = config.api_versions[-1]
        self._http = httpx.Client(
            base_url=f"{session['instance_url']}/services/data/v{version}",
            headers={"Authorization": f"Bearer {session['access_token']}"},
            timeout=10,
        )
        self._standard_book: str | None = None

    # --- REST ------------------------------------------------------------------------

    def create(self, sobject: str, fields: Mapping[str, Any]) -> str:
        response = self._http.post(f"/sobjects/{sobject}", json=dict(fields))
        response.raise_for_status()
        return str(response.json()["id"])

    def update(self, sobject: str, record_id: str, fields: Mapping[str, Any]) -> None:
        self._http.patch(f"/sobjects/{sobject}/{record_id}", json=dict(fields)).raise_for_status()

    def read(self, sobject: str, record_id: str) -> JSON:
        response = self._http.get(f"/sobjects/{sobject}/{record_id}")
        response.raise_for_status()
        record: JSON = response.json()
        return record

    def query(self, soql: str) -> list[JSON]:
        response = self._http.get("/query", params={"q": soql})
        response.raise_for_status()
        records: list[JSON] = response.json()["records"]
        return records

    # --- CrmPerson -------------------------------------------------------------------

    def create_company(self, name: str, city: str) -> str:
        return self.create("Account", {"Name": name, "BillingCity": city})

    def create_contact(
        self, first: str, last: str, email: str | None, company: str | None = None
    ) -> str:
        fields: JSON = {"FirstName": first, "LastName": last}
        if email is not None:
            fields["Email"] = email
        if company is not None:
            fields["AccountId"] = company
        return self.create("Contact", fields)

    def create_deal(
        self,
        name: str,
        *,
        won: bool,
        company: str | None,
        contact: str | None,
        lines: list[DemoLine],
    ) -> str:
        today = datetime.now(UTC).date()
        fields: JSON = {
            "Name": name,
            "StageName": _OPEN_STAGE,
            "CloseDate": (today + timedelta(days=30)).isoformat(),
        }
        if company is not None:
            fields["AccountId"] = company
        deal = self.create("Opportunity", fields)
        if contact is not None:
            self.create(
                "OpportunityContactRole",
                {"OpportunityId": deal, "ContactId": contact, "IsPrimary": True},
            )
        for line in lines:
            self.add_line(deal, line)
        if won:  # IsWon follows the stage
            self.update(
                "Opportunity", deal, {"StageName": _WON_STAGE, "CloseDate": today.isoformat()}
            )
        return deal

    def add_line(self, deal: str, line: DemoLine) -> None:
        currency = self.read("Opportunity", deal).get("CurrencyIsoCode")  # multi-currency only
        fields: JSON = {
            "OpportunityId": deal,
            "PricebookEntryId": self._price_entry(line, currency),
            "Quantity": line.quantity,
            "UnitPrice": line.unit_price,
        }
        discount = Decimal(line.discount)
        if discount:  # Salesforce's Discount is a percent of the line
            subtotal = Decimal(line.quantity) * Decimal(line.unit_price)
            percent = discount * 100 / subtotal
            if percent != percent.quantize(_PERCENT):
                raise ValueError(
                    f"{line.discount} off {subtotal} is {percent}%: Salesforce keeps two decimals"
                )
            fields["Discount"] = str(percent.quantize(_PERCENT))
        self.create("OpportunityLineItem", fields)

    def rename_deal(self, deal: str, name: str) -> None:
        self.update("Opportunity", deal, {"Name": name})

    def invoice_number(self, deal: str) -> str:
        # The preset's doc_number: "SF-" and an 18-character id, 21 characters.
        return f"SF-{deal}"

    # --- products --------------------------------------------------------------------

    def _price_entry(self, line: DemoLine, currency: str | None) -> str:
        """The standard price book's entry for the product of the line's name (in the
        deal's currency), adding the product and its standard price if there are none."""
        book = self._standard_price_book()
        # Values go in as quoted literals (``_soql_text``), as a client escapes them.
        products = self.query(
            f"SELECT Id FROM Product2 WHERE Name = {_soql_text(line.name)} ORDER BY CreatedDate"  # noqa: S608
        )
        if products:
            product = str(products[0]["Id"])
        else:
            product = self.create("Product2", {"Name": line.name, "IsActive": True})
        soql = (
            f"SELECT Id FROM PricebookEntry WHERE Pricebook2Id = {_soql_text(book)} "  # noqa: S608
            f"AND Product2Id = {_soql_text(product)} AND IsActive = true"
        )
        if currency is not None:
            soql += f" AND CurrencyIsoCode = {_soql_text(currency)}"
        entries = self.query(soql)
        if entries:
            return str(entries[0]["Id"])
        entry: JSON = {
            "Pricebook2Id": book,
            "Product2Id": product,
            "UnitPrice": line.unit_price,
            "IsActive": True,
        }
        if currency is not None:
            entry["CurrencyIsoCode"] = currency
        return self.create("PricebookEntry", entry)

    def _standard_price_book(self) -> str:
        if self._standard_book is None:
            books = self.query("SELECT Id FROM Pricebook2 WHERE IsStandard = true")
            self._standard_book = str(books[0]["Id"])
        return self._standard_book


SANDBOX = SandboxSpec(
    name="salesforce",
    start=_start,
    secret=_sandbox_secret,
    settings=lambda url: {
        "token_url": f"{url}/services/oauth2/token",
        "authorize_url": f"{url}/services/oauth2/authorize",
    },
    person=SalesforcePerson,
)
