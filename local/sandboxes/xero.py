"""Xero sandbox: Xero's OAuth 2 identity service, the Accounting API and webhooks.

A stateful stand-in for ``identity.xero.com``, ``login.xero.com`` and
``api.xero.com`` on one local server, so a production connector (plain httpx) and
Xero's own SDK (xero-python) run against it unchanged. Built from Xero's
documentation on developer.xero.com (cited where behaviour depends on it) and the
OpenAPI specs in XeroAPI/Xero-OpenAPI, not from what a client happens to send.
The organisation's data and rules are in ``xero_org``; the ``where`` language in
``xero_where``. docs/vendors/xero.md lists what is documented, observed or chosen.

Reproduced behaviours
---------------------
* OAuth 2 (https://developer.xero.com/documentation/guides/oauth2/auth-flow and
  /faq/oauth2): ``GET /identity/connect/authorize`` answers a registered redirect
  URI with ``code``, ``scope`` and ``state`` (a bad client, redirect URI or scope
  gets Xero's 500 error page); ``POST /connect/token`` takes the client by Basic
  header or ``client_id``/``client_secret`` in the form; ``authorization_code``
  and ``refresh_token`` grants. Access tokens live 30 minutes. A refresh token is
  single-use: each refresh returns a new one, and the one used may be presented
  again for 30 minutes (a lost response); unused ones expire after 60 days. A
  refresh token is issued only with the ``offline_access`` scope, an id token only
  with ``openid``. Errors are compact JSON (``{"error":"invalid_grant"}``, which
  xero-python compares byte for byte). ``POST /connect/revocation`` revokes a
  refresh token and removes the user's connections.
* ``GET /connections`` lists the organisation (``tenantType: ORGANISATION``);
  ``DELETE /connections/{id}`` disconnects it, after which the Accounting API
  answers 403 while token refresh still works.
* Accounting API under ``/api.xro/2.0/``: Bearer token (401 problem body,
  ``TokenExpired`` or ``AuthenticationUnsuccessful``), ``xero-tenant-id`` header
  required (missing, unknown or disconnected: 403 ``AuthenticationUnsuccessful``,
  as /documentation/guides/oauth2/troubleshooting documents), scopes checked
  (401 ``AuthorizationUnsuccessful``). Responses are XML unless the client
  accepts JSON, as on the real API; JSON dates are MS-JSON (``/Date(ms+0000)/``).
* Entities and rules: see ``xero_org`` (Contacts, Items, Invoices ACCREC/ACCPAY,
  CreditNotes ACCRECCREDIT/ACCPAYCREDIT, Accounts, TaxRates, Currencies,
  Organisation) and ``xero_payments`` (Payments against invoices, refunds of credit
  notes and their deletion, ``PUT /CreditNotes/{id}/Allocations``, invoices'
  AmountPaid/AmountCredited/AmountDue, credit notes' RemainingCredit, PAID and
  FullyPaidOnDate, contacts' Balances).
* Writes: ``PUT`` creates only, ``POST`` updates or creates; bodies with several
  elements are processed in order. Errors are summarised by default (400
  ``ValidationException`` listing the failed elements, while valid elements are
  still saved, as integrators observe); ``summarizeErrors=false`` answers 200 with
  ``StatusAttributeString`` OK/ERROR per element.
* ``Idempotency-Key`` on PUT/POST (at most 128 characters): a repeat within 6
  minutes gets the stored response without running again; the same key with a
  different method, URL or body gets 400 "Idempotency Key: … is used with a
  different request." (/documentation/guides/idempotent-requests/idempotency).
* Rate limits (/documentation/guides/oauth2/limits): per tenant 60 calls a minute,
  5,000 a day and 5 at once, per app 10,000 a minute, counted in fixed windows
  that start with a tenant's first call. Every response carries
  ``X-DayLimit-Remaining``, ``X-MinLimit-Remaining`` and
  ``X-AppMinLimit-Remaining``; a 429 carries ``X-Rate-Limit-Problem``
  (``day``/``minute``/``appminute``/``concurrent``) and, for the windowed limits,
  ``Retry-After`` in seconds.
* Webhooks (/documentation/guides/webhooks/overview and /configuring-your-server;
  XeroAPI/Xero-OpenAPI ``xero-webhooks.yaml``): CONTACT, INVOICE and CREDITNOTE events
  (CREATE/UPDATE; a credit note's with its ``data`` Type and Status) after API or
  "UI" changes, in the categories the app subscribes to (a payment or allocation is
  an UPDATE of its invoice, an allocation or refund one of its credit note: Xero has
  no payment events), signed ``x-xero-signature`` = base64(HMAC-SHA256(webhook key,
  raw body)); events are sent only once the subscription has passed Intent to
  Receive (200 to a correctly signed request, 401 to a wrongly signed one, empty
  body, no cookies, within 5 s); failed deliveries are retried (compressed delays),
  and a delivery that runs out of retries disables the subscription until it passes
  Intent to Receive again.
* Faults (``POST /_sandbox/faults``): 5xx, timeouts, 429 bursts in Xero's shape and
  lost responses, as every sandbox here.

Deliberately not modelled: the BatchPayments, Prepayments, Overpayments and other
endpoints (404), deleting a credit note's allocation, refunds of prepayments and
overpayments, PKCE, client-credentials (custom connection) grants, XML request
bodies, tracked inventory, multi-tenant connections, HTTPS-only webhook URLs (local
receivers use http) and Xero's 31-day replay of events held while a subscription is
disabled.

Admin routes (never called by production code): ``/_sandbox/faults`` and
``/_sandbox/reset`` (base), ``GET /_sandbox/entities/<Kind>``, ``GET
/_sandbox/stats``, ``GET /_sandbox/webhooks``, ``POST
/_sandbox/webhooks/intent-to-receive``, ``POST /_sandbox/oauth/code``, ``POST
/_sandbox/ui/<Kind>[/<id>]`` and ``POST /_sandbox/ui/Invoices/<id>/payments``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import random
import secrets
import string
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode

import httpx
from flask import Flask, Response, g, request

from local.sandboxes import xero_payments, xero_where
from local.sandboxes.base import (
    Delivery,
    Fault,
    FaultInjector,
    WebhookDispatcher,
    install_fault_routes,
)
from local.sandboxes.registry import BookCustomer, BookInvoice, SandboxSpec
from local.sandboxes.xero_org import (
    ALLOCATIONS,
    CENT,
    QUANTITY_PLACES,
    ApiError,
    Change,
    Changes,
    ElementError,
    JsonObj,
    Kind,
    Organisation,
    OrgSettings,
    kind_of,
    not_implemented,
    post_data_invalid,
)
from ops.oauth import DEFAULT_PORT, redirect_uri

API_PREFIX = "/api.xro/2.0/"
TOKEN_PATH = "/connect/token"
IDEMPOTENCY_KEY_MAX = 128
SCOPES = frozenset(
    {
        "openid",
        "profile",
        "email",
        "offline_access",
        "accounting.transactions",
        "accounting.transactions.read",
        "accounting.contacts",
        "accounting.contacts.read",
        "accounting.settings",
        "accounting.settings.read",
        "accounting.reports.read",
        "accounting.journals.read",
        "accounting.attachments",
        "accounting.attachments.read",
    }
)
# The seeded "Business Bank Account": where a person's payments are received, and
# refunds paid from; and "Sales", where their credit notes are posted.
PERSON_BANK_ACCOUNT = "090"
PERSON_SALES_ACCOUNT = "200"
# Body Xero documents for a rate-limited call (the OAuth 1 era form, still quoted).
RATE_LIMIT_BODY = (
    "oauth_problem=rate%20limit%20exceeded"
    "&oauth_problem_advice=please%20wait%20before%20retrying%20the%20xero%20api"
)


@dataclass
class XeroSandboxConfig:
    """Everything a test or the demo may tune; defaults follow Xero's documentation."""

    client_id: str = "3F3D8C5A1B2E4F6A8C9D0E1F2A3B4C5D"
    client_secret: str = "sandbox-xero-client-secret"
    redirect_uris: list[str] = field(
        default_factory=lambda: ["https://app.example.com/xero/callback"]
    )
    initial_refresh_token: str = "sandbox-xero-refresh-token"
    initial_scopes: str = (
        "openid profile email offline_access accounting.transactions accounting.contacts "
        "accounting.settings"
    )
    tenant_id: str = "9a3b1c5e-7d2f-4a60-8b1e-3c5d7f9a1b2c"
    tenant_name: str = "Demo Company (Global)"
    country: str = "US"
    base_currency: str = "USD"
    timezone: str = "America/Los_Angeles"
    sales_tax_percent: str = "10"
    app_name: str = "crmsync"  # the envelope's ProviderName
    public_url: str | None = None  # base of webhook resourceUrls; else the request's host
    webhook_url: str | None = None
    webhook_key: str = "sandbox-xero-webhook-key"
    # The event categories the app's webhook subscribes to (all an organisation sends).
    webhook_categories: tuple[str, ...] = ("CONTACT", "INVOICE", "CREDITNOTE")
    # Xero retries "with decreasing frequency for up to 24 hours"; compressed here.
    webhook_retry_delays_s: list[float] = field(default_factory=lambda: [0.2, 0.5, 1.0])
    webhook_timeout_s: float = 5.0
    access_token_ttl_s: float = 1800.0
    refresh_grace_s: float = 1800.0
    refresh_unused_ttl_s: float = 60 * 86400.0
    auth_code_ttl_s: float = 300.0
    rate_per_minute: int = 60
    rate_per_day: int = 5000
    concurrent_limit: int = 5
    app_rate_per_minute: int = 10000
    idempotency_ttl_s: float = 360.0
    clock: Callable[[], float] = time.time


# --- OAuth state -----------------------------------------------------------------------


@dataclass
class _Grant:
    """One user consent: the scopes and the auth event the connection came from."""

    scopes: list[str]
    auth_event_id: str
    revoked: bool = False


@dataclass
class _RefreshToken:
    grant: _Grant
    issued_at: float
    used_at: float | None = None


@dataclass
class _AccessToken:
    grant: _Grant
    expires_at: float


@dataclass
class _AuthCode:
    grant: _Grant
    redirect_uri: str
    expires_at: float


@dataclass
class _Connection:
    connection_id: str
    auth_event_id: str
    created_at: float
    updated_at: float


@dataclass
class _Remembered:
    """An Idempotency-Key's first request and the response it got."""

    fingerprint: str
    status: int
    body: bytes
    mimetype: str
    expires_at: float


class _FixedWindow:
    """Counts calls per window; Xero counts "against a fixed window which will reset at
    different times for each tenant" (/documentation/guides/oauth2/limits), so a
    window opens with the first call after the previous one closed."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._start: float | None = None
        self._count = 0

    def _roll(self, now: float) -> None:
        if self._start is None or now >= self._start + self.window_s:
            self._start, self._count = None, 0

    def wait(self, now: float) -> float:
        """Seconds until a call is allowed (0 when it is), without counting it."""
        self._roll(now)
        if self._count < self.limit or self._start is None:
            return 0.0
        return max(self._start + self.window_s - now, 0.001)

    def hit(self, now: float) -> None:
        self._roll(now)
        if self._start is None:
            self._start = now
        self._count += 1

    def remaining(self, now: float) -> int:
        self._roll(now)
        return max(self.limit - self._count, 0)

    def reset(self) -> None:
        self._start, self._count = None, 0


# --- webhooks ----------------------------------------------------------------------------


@dataclass
class IntentCheck:
    """One Intent to Receive request and how the receiver answered it."""

    correctly_signed: bool
    status: int | None
    body: str
    set_cookie: bool
    error: str | None
    passed: bool


@dataclass
class IntentToReceive:
    ok: bool
    checks: list[IntentCheck]
    url: str


def sign(key: str, body: bytes) -> str:
    """``x-xero-signature``: base64 of HMAC-SHA256 over the raw body with the webhook key."""
    return base64.b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest()).decode()


class XeroSandbox:
    """One Xero organisation, its identity service and webhooks, as a Flask app."""

    def __init__(self, config: XeroSandboxConfig | None = None) -> None:
        self.config = config or XeroSandboxConfig()
        cfg = self.config
        self.org = Organisation(
            OrgSettings(
                tenant_id=cfg.tenant_id,
                name=cfg.tenant_name,
                country=cfg.country,
                base_currency=cfg.base_currency,
                timezone=cfg.timezone,
                sales_tax_percent=Decimal(cfg.sales_tax_percent),
            ),
            cfg.clock,
        )
        self.faults = FaultInjector()
        self.public_url = cfg.public_url
        self._lock = threading.RLock()
        self._limits_lock = threading.Lock()
        self._per_minute = _FixedWindow(cfg.rate_per_minute, 60.0)
        self._per_day = _FixedWindow(cfg.rate_per_day, 86400.0)
        self._app_per_minute = _FixedWindow(cfg.app_rate_per_minute, 60.0)
        self._in_flight = 0
        self._idempotency: dict[str, _Remembered] = {}
        self._jwt_key = secrets.token_bytes(32)
        self._user_id = str(uuid.uuid5(uuid.UUID(cfg.tenant_id), "user"))
        grant = _Grant(cfg.initial_scopes.split(), str(uuid.uuid4()))
        now = cfg.clock()
        self._refresh: dict[str, _RefreshToken] = {
            cfg.initial_refresh_token: _RefreshToken(grant, now)
        }
        self._access: dict[str, _AccessToken] = {}
        self._codes: dict[str, _AuthCode] = {}
        self._connection: _Connection | None = _Connection(
            str(uuid.uuid5(uuid.UUID(cfg.tenant_id), "connection")),
            grant.auth_event_id,
            now,
            now,
        )
        self._dispatcher = WebhookDispatcher(cfg.webhook_retry_delays_s, cfg.webhook_timeout_s)
        self._webhook_url = cfg.webhook_url
        self._intent: IntentToReceive | None = None
        self._deliveries_before_intent = 0
        self._event_sequence = 0
        self.app = self._build_app()

    # --- public helpers for tests and the demo ----------------------------------------

    @property
    def tenant_id(self) -> str:
        return self.config.tenant_id

    @property
    def webhook_url(self) -> str | None:
        return self._webhook_url

    @webhook_url.setter
    def webhook_url(self, url: str | None) -> None:
        # A new URL needs Intent to Receive again, as changing it in the portal does.
        with self._lock:
            self._webhook_url = url
            self._intent = None

    @property
    def deliveries(self) -> list[Delivery]:
        """Every event delivery sent so far, with each attempt's status."""
        return self._dispatcher.deliveries

    def wait_for_webhooks_idle(self, timeout: float = 10.0) -> bool:
        return self._dispatcher.wait_idle(timeout)

    def webhook_status(self) -> str:
        """NOT_VALIDATED, FAILED (Intent to Receive), OK, or DISABLED after a delivery
        ran out of retries ("After 24 hours the webhook will be disabled")."""
        with self._lock:
            if self._intent is None:
                return "NOT_VALIDATED"
            if not self._intent.ok:
                return "FAILED"
            attempts = len(self.config.webhook_retry_delays_s) + 1
            recent = self._dispatcher.deliveries[self._deliveries_before_intent :]
            if any(not d.delivered and len(d.attempts) >= attempts for d in recent):
                return "DISABLED"
            return "OK"

    def intent_to_receive(self) -> IntentToReceive:
        """Run Xero's Intent to Receive against the webhook URL and keep the outcome.

        Xero sends "a series of HTTPS POST requests" with an empty event list; the
        receiver must answer 200 to the correctly signed ones and 401 to the others,
        with no body and no cookies, within 5 seconds.
        """
        url = self.webhook_url
        if not url:
            raise ValueError("no webhook URL configured")
        order = [True, False]
        random.shuffle(order)
        checks = []
        with httpx.Client(timeout=self.config.webhook_timeout_s) as client:
            for correct in order:
                payload = {
                    "events": [],
                    "firstEventSequence": 0,
                    "lastEventSequence": 0,
                    "entropy": _entropy(),
                }
                body = json.dumps(payload, separators=(",", ":")).encode()
                key = self.config.webhook_key if correct else secrets.token_urlsafe(24)
                headers = {"Content-Type": "application/json", "x-xero-signature": sign(key, body)}
                try:
                    answer = client.post(url, content=body, headers=headers)
                except httpx.HTTPError as exc:
                    checks.append(IntentCheck(correct, None, "", False, type(exc).__name__, False))
                    continue
                cookie = "set-cookie" in answer.headers
                passed = (
                    answer.status_code == (200 if correct else 401)
                    and not answer.content
                    and not cookie
                )
                checks.append(
                    IntentCheck(correct, answer.status_code, answer.text, cookie, None, passed)
                )
        outcome = IntentToReceive(all(c.passed for c in checks), checks, url)
        with self._lock:
            self._intent = outcome
            self._deliveries_before_intent = len(self._dispatcher.deliveries)
        return outcome

    def create_count(self, kind: str) -> int:
        """How many records of ``kind`` (e.g. "Contacts") were created since the reset."""
        with self._lock:
            return self.org.counts[("create", self._kind(kind).name)]

    def entities(self, kind: str) -> list[JsonObj]:
        """Every record of ``kind`` as the API renders it (archived ones included)."""
        found = self._kind(kind)
        with self._lock:
            rows = self.org.rows[found.name].values()
            return [_json_object(self.org.render(found, r, QUANTITY_PLACES)) for r in rows]

    def in_flight(self) -> int:
        """Accounting calls being served now (the concurrent limit counts these)."""
        with self._limits_lock:
            return self._in_flight

    def ui_create(self, kind: str, body: JsonObj) -> JsonObj:
        """Create a record as a user would in Xero's web app (webhooks follow)."""
        return self._ui_save(kind, body, None)

    def ui_update(self, kind: str, record_id: str, body: JsonObj) -> JsonObj:
        """Change a record as a user would in Xero's web app (webhooks follow)."""
        return self._ui_save(kind, body, record_id)

    def ui_pay_invoice(
        self, invoice_id: str, amount: Decimal | None = None, *, on: date | None = None
    ) -> JsonObj:
        """Receive a payment into the bank account against an AUTHORISED invoice (all
        that is due by default, today by default), as a user does in Xero's web app;
        returns the invoice after it (an INVOICE webhook follows)."""
        invoices = self._kind("Invoices")
        with self._lock:
            due = self.org.get(invoices, invoice_id, CENT)["AmountDue"]
            payment: JsonObj = {
                "Invoice": {"InvoiceID": invoice_id},
                "Account": {"Code": PERSON_BANK_ACCOUNT},
                "Amount": due if amount is None else amount,
            }
            if on is not None:
                payment["Date"] = on.isoformat()
        self._ui_save("Payments", payment, None)
        with self._lock:
            return _json_object(self.org.get(invoices, invoice_id, CENT))

    def mint_authorization_code(
        self, redirect_uri: str | None = None, scope: str | None = None
    ) -> str:
        """A code as Xero's consent screen would return it (single use, 5 minutes)."""
        uri = redirect_uri or self.config.redirect_uris[0]
        with self._lock:
            return self._new_code(uri, (scope or self.config.initial_scopes).split())

    def reset(self) -> None:
        """Back to the seeded organisation; OAuth tokens and the connection are kept."""
        with self._lock:
            self.org.reset()
            self._idempotency.clear()
            self._dispatcher.clear()
            self._deliveries_before_intent = 0
            self._event_sequence = 0
        with self._limits_lock:
            for window in (self._per_minute, self._per_day, self._app_per_minute):
                window.reset()

    def close(self) -> None:
        """Stop the webhook thread (the HTTP server is the caller's SandboxServer)."""
        self._dispatcher.stop()

    def _kind(self, name: str) -> Kind:
        found = kind_of(name)
        if found is None:
            raise KeyError(name)
        return found

    def _ui_save(self, kind_name: str, body: JsonObj, record_id: str | None) -> JsonObj:
        kind = self._kind(kind_name)
        changes = Changes()
        with self._lock:
            (element,) = self.org.check_types(kind, [body], kind.name)
            saved = self.org.save(
                kind,
                element,
                method="POST" if record_id else "PUT",
                path_id=record_id,
                unit_places=QUANTITY_PLACES,
                changes=changes,
                by_app=False,
            )
        self._notify(changes)
        return _json_object(saved)

    # --- Flask app ------------------------------------------------------------------------

    def _build_app(self) -> Flask:
        app = Flask(__name__)
        # Registered before the fault routes: a slow (faulted) call holds its concurrency
        # slot, as a slow call does at Xero.
        app.before_request(self._gatekeep)
        app.teardown_request(self._release_slot)
        install_fault_routes(app, self.faults, self._rate_limited_fault, self.reset)
        app.after_request(self._limit_headers)
        app.add_url_rule(TOKEN_PATH, "token", self._token, methods=["POST"])
        app.add_url_rule("/connect/revocation", "revoke", self._revoke, methods=["POST"])
        app.add_url_rule(
            "/identity/connect/authorize", "authorize", self._authorize, methods=["GET"]
        )
        for prefix in ("/connections", "/Connections"):
            app.add_url_rule(prefix, f"list{prefix}", self._connections, methods=["GET"])
            app.add_url_rule(
                f"{prefix}/<connection_id>",
                f"delete{prefix}",
                self._disconnect,
                methods=["DELETE"],
            )
        app.add_url_rule(
            f"{API_PREFIX}<path:rest>",
            "accounting",
            self._accounting,
            methods=["GET", "PUT", "POST", "DELETE"],
        )
        app.add_url_rule("/_sandbox/entities/<kind>", "admin_entities", self._admin_entities)
        app.add_url_rule("/_sandbox/stats", "admin_stats", self._admin_stats)
        app.add_url_rule("/_sandbox/webhooks", "admin_webhooks", self._admin_webhooks)
        app.add_url_rule(
            "/_sandbox/webhooks/intent-to-receive",
            "admin_itr",
            self._admin_intent,
            methods=["POST"],
        )
        app.add_url_rule("/_sandbox/oauth/code", "admin_code", self._admin_code, methods=["POST"])
        app.add_url_rule("/_sandbox/ui/<kind>", "admin_ui_create", self._admin_ui, methods=["POST"])
        app.add_url_rule(
            "/_sandbox/ui/<kind>/<record_id>", "admin_ui_update", self._admin_ui, methods=["POST"]
        )
        app.add_url_rule(
            "/_sandbox/ui/Invoices/<record_id>/payments",
            "admin_ui_pay",
            self._admin_pay,
            methods=["POST"],
        )
        return app

    # --- OAuth 2 -----------------------------------------------------------------------------

    def _oauth_error(self, error: str, status: int = 400) -> Response:
        # Compact, as Xero sends it: xero-python compares '{"error":"invalid_grant"}'.
        return Response(
            json.dumps({"error": error}, separators=(",", ":")),
            status=status,
            mimetype="application/json",
        )

    def _client_ok(self) -> bool:
        auth = request.authorization
        if auth is not None and auth.type == "basic":
            client_id, secret = auth.username or "", auth.password or ""
        else:
            client_id = request.form.get("client_id", "")
            secret = request.form.get("client_secret", "")
        return hmac.compare_digest(client_id, self.config.client_id) and hmac.compare_digest(
            secret, self.config.client_secret
        )

    def _token(self) -> Response:
        if not self._client_ok():
            return self._oauth_error("invalid_client")
        grant_type = request.form.get("grant_type")
        now = self.config.clock()
        with self._lock:
            if grant_type == "refresh_token":
                token = self._refresh.get(request.form.get("refresh_token", ""))
                if token is None or not self._refresh_usable(token, now):
                    return self._oauth_error("invalid_grant")
                token.used_at = token.used_at or now
                grant = token.grant
            elif grant_type == "authorization_code":
                code = self._codes.pop(request.form.get("code", ""), None)
                if (
                    code is None
                    or now >= code.expires_at
                    or request.form.get("redirect_uri") != code.redirect_uri
                ):
                    return self._oauth_error("invalid_grant")
                grant = code.grant
            else:
                # "If you don't pass in a grant_type of authorization_code then you will
                # get this response" (/documentation/guides/oauth2/troubleshooting).
                return self._oauth_error("unsupported_grant_type")
            body = self._issue_tokens(grant, now)
        return Response(json.dumps(body), mimetype="application/json")

    def _refresh_usable(self, token: _RefreshToken, now: float) -> bool:
        # "Unused refresh tokens expire after 60 days"; a used one may be retried "for
        # a grace period of 30 minutes" (https://developer.xero.com/faq/oauth2).
        if token.grant.revoked:
            return False
        if token.used_at is None:
            return now < token.issued_at + self.config.refresh_unused_ttl_s
        return now < token.used_at + self.config.refresh_grace_s

    def _issue_tokens(self, grant: _Grant, now: float) -> JsonObj:
        ttl = self.config.access_token_ttl_s
        access = self._jwt(
            {
                "nbf": int(now),
                "exp": int(now + ttl),
                "iss": "https://identity.xero.com",
                "aud": "https://identity.xero.com/resources",
                "client_id": self.config.client_id,
                "sub": self._user_id,
                "auth_time": int(now),
                "xero_userid": self._user_id,
                "global_session_id": uuid.uuid4().hex,
                "jti": uuid.uuid4().hex,
                "authentication_event_id": grant.auth_event_id,
                "scope": grant.scopes,
            }
        )
        self._access[access] = _AccessToken(grant, now + ttl)
        body: JsonObj = {
            "access_token": access,
            "expires_in": int(ttl),
            "token_type": "Bearer",
            "scope": " ".join(grant.scopes),
        }
        if "openid" in grant.scopes:
            body["id_token"] = self._jwt(
                {
                    "nbf": int(now),
                    "exp": int(now + 300),
                    "iss": "https://identity.xero.com",
                    "aud": self.config.client_id,
                    "iat": int(now),
                    "sub": self._user_id,
                    "xero_userid": self._user_id,
                    "preferred_username": "sandbox.user@example.com",
                    "email": "sandbox.user@example.com",
                    "given_name": "Sandbox",
                    "family_name": "User",
                }
            )
        if "offline_access" in grant.scopes:
            # Only offline_access grants a refresh token (/guides/oauth2/scopes).
            refresh = secrets.token_hex(32)
            self._refresh[refresh] = _RefreshToken(grant, now)
            body["refresh_token"] = refresh
        return body

    def _jwt(self, claims: JsonObj) -> str:
        """Xero's tokens are JWTs (RS256); these are HS256-signed with a sandbox key, so
        clients can decode their claims but cannot verify them against Xero's keys."""

        def part(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        header = part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        payload = part(json.dumps(claims).encode())
        signature = hmac.new(self._jwt_key, f"{header}.{payload}".encode(), hashlib.sha256)
        return f"{header}.{payload}.{part(signature.digest())}"

    def _new_code(self, redirect_uri: str, scopes: list[str]) -> str:
        now = self.config.clock()
        grant = _Grant(scopes, str(uuid.uuid4()))
        code = secrets.token_hex(32)
        self._codes[code] = _AuthCode(grant, redirect_uri, now + self.config.auth_code_ttl_s)
        # Consent (re)connects the organisation with this auth event.
        if self._connection is None:
            connection_id = str(uuid.uuid4())
            self._connection = _Connection(connection_id, grant.auth_event_id, now, now)
        else:
            self._connection.auth_event_id = grant.auth_event_id
            self._connection.updated_at = now
        return code

    def _authorize(self) -> Response:
        """The consent screen, consenting at once: there is no user to ask locally."""
        args = request.args
        scopes = args.get("scope", "").split()
        redirect_uri = args.get("redirect_uri", "")
        if (
            args.get("response_type") != "code"
            or args.get("client_id") != self.config.client_id
            or redirect_uri not in self.config.redirect_uris
            or not scopes
            or not set(scopes) <= SCOPES
        ):
            # "I see a 500 error screen when trying to start the authorization flow"
            # for a wrong redirect_uri, scope or client_id (oauth2/troubleshooting).
            return Response(
                "<html><body><h1>Sorry, something went wrong</h1>"
                "<p>unauthorized_client or invalid_scope</p></body></html>",
                status=500,
                mimetype="text/html",
            )
        with self._lock:
            code = self._new_code(redirect_uri, scopes)
        query = {"code": code, "scope": " ".join(scopes), "session_state": secrets.token_hex(8)}
        if args.get("state") is not None:
            query["state"] = args["state"]
        location = f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{urlencode(query)}"
        return Response("", status=302, headers={"Location": location})

    def _revoke(self) -> Response:
        # "Revoking a token will remove all a user's connections" (auth-flow page).
        if not self._client_ok():
            return self._oauth_error("invalid_client")
        with self._lock:
            token = self._refresh.get(request.form.get("token", ""))
            if token is not None:
                token.grant.revoked = True
                self._connection = None
        return Response("", status=200)

    def _bearer(self) -> tuple[_AccessToken | None, Response | None]:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        with self._lock:
            found = self._access.get(token.strip()) if scheme.lower() == "bearer" else None
        if found is None or found.grant.revoked:
            return None, self._problem(401, "Unauthorized", "AuthenticationUnsuccessful")
        if self.config.clock() >= found.expires_at:
            expired = datetime.fromtimestamp(found.expires_at, UTC).strftime("%m/%d/%Y %H:%M:%S")
            # Verified live answer quoted in pyxero's tests: "TokenExpired: token expired at".
            return None, self._problem(
                401, "Unauthorized", f"TokenExpired: token expired at {expired}"
            )
        return found, None

    def _problem(self, status: int, title: str, detail: str) -> Response:
        body: JsonObj = {
            "Type": None,
            "Title": title,
            "Status": status,
            "Detail": detail,
            "Instance": str(uuid.uuid4()),
            "Extensions": {},
        }
        return Response(json.dumps(body), status=status, mimetype="application/json")

    def _connection_json(self, connection: _Connection) -> JsonObj:
        def stamp(at: float) -> str:
            return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0")

        return {
            "id": connection.connection_id,
            "authEventId": connection.auth_event_id,
            "tenantId": self.config.tenant_id,
            "tenantType": "ORGANISATION",
            "tenantName": self.config.tenant_name,
            "createdDateUtc": stamp(connection.created_at),
            "updatedDateUtc": stamp(connection.updated_at),
        }

    def _connections(self) -> Response:
        _, refused = self._bearer()
        if refused is not None:
            return refused
        with self._lock:
            connection = self._connection
            wanted = request.args.get("authEventId")
            rows = (
                [self._connection_json(connection)]
                if connection is not None and wanted in (None, connection.auth_event_id)
                else []
            )
        return Response(json.dumps(rows), mimetype="application/json")

    def _disconnect(self, connection_id: str) -> Response:
        _, refused = self._bearer()
        if refused is not None:
            return refused
        with self._lock:
            if self._connection is None or self._connection.connection_id != connection_id:
                return Response("", status=404)
            self._connection = None
        return Response("", status=204)

    # --- gatekeeping: authentication, tenant, scopes, limits ----------------------------------

    def _gatekeep(self) -> Response | None:
        if not request.path.startswith(API_PREFIX):
            return None
        token, refused = self._bearer()
        if refused is not None or token is None:
            return refused
        tenant = request.headers.get("xero-tenant-id", "").strip().lower()
        with self._lock:
            connected = self._connection is not None
        if not connected or tenant != self.config.tenant_id.lower():
            return self._problem(403, "Forbidden", "AuthenticationUnsuccessful")
        g.xero_tenant = True
        if self.public_url is None:
            self.public_url = request.host_url.rstrip("/")
        parts = [p for p in request.path[len(API_PREFIX) :].split("/") if p]
        kind = kind_of(parts[0]) if parts else None
        if kind is not None:
            needed = {kind.scope} if request.method != "GET" else {kind.scope, kind.scope + ".read"}
            if not needed & set(token.grant.scopes):
                return self._problem(401, "Unauthorized", "AuthorizationUnsuccessful")
        return self._take_slot()

    def _take_slot(self) -> Response | None:
        now = self.config.clock()
        with self._limits_lock:
            for problem, window in (
                ("day", self._per_day),
                ("minute", self._per_minute),
                ("appminute", self._app_per_minute),
            ):
                wait = window.wait(now)
                if wait:
                    return self._throttled(problem, wait)
            if self._in_flight >= self.config.concurrent_limit:
                return self._throttled("concurrent", None)
            for window in (self._per_day, self._per_minute, self._app_per_minute):
                window.hit(now)
            self._in_flight += 1
        g.xero_slot = True
        return None

    def _release_slot(self, _error: BaseException | None) -> None:
        if g.pop("xero_slot", False):
            with self._limits_lock:
                self._in_flight -= 1

    def _throttled(self, problem: str, wait: float | None) -> Response:
        response = Response(RATE_LIMIT_BODY, status=429, mimetype="text/html")
        response.headers["X-Rate-Limit-Problem"] = problem
        # "If you have exceeded the minute or daily limit you will also receive a
        # Retry-After http header" (limits page); none for the concurrent limit.
        if wait is not None:
            response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
        return response

    def _rate_limited_fault(self, fault: Fault) -> Response:
        response = self._throttled("minute", fault.retry_after_s)
        self._add_limit_headers(response)
        return response

    def _limit_headers(self, response: Response) -> Response:
        if g.get("xero_tenant"):
            self._add_limit_headers(response)
        return response

    def _add_limit_headers(self, response: Response) -> None:
        now = self.config.clock()
        with self._limits_lock:
            response.headers["X-DayLimit-Remaining"] = str(self._per_day.remaining(now))
            response.headers["X-MinLimit-Remaining"] = str(self._per_minute.remaining(now))
            response.headers["X-AppMinLimit-Remaining"] = str(self._app_per_minute.remaining(now))

    # --- Accounting API -------------------------------------------------------------------------

    def _accounting(self, rest: str) -> Response:
        try:
            parts = [p for p in rest.split("/") if p]
            kind = kind_of(parts[0]) if parts else None
            allocations = (
                kind is not None
                and kind.name == "CreditNotes"
                and len(parts) == 3
                and parts[2].lower() == ALLOCATIONS.name.lower()
            )
            if kind is None or (len(parts) > 2 and not allocations):
                raise ApiError(404, "The resource you're looking for cannot be found")
            if allocations:
                if request.method not in ALLOCATIONS.item_methods:
                    raise not_implemented()
                return self._idempotent(lambda: self._allocate(parts[1]))
            record_id = parts[1] if len(parts) == 2 else None
            methods = kind.item_methods if record_id else kind.collection_methods
            if request.method not in methods:
                raise not_implemented()
            if request.method == "GET":
                with self._lock:
                    return self._reply(200, self._read(kind, record_id))
            if request.method == "DELETE":
                with self._lock:
                    self.org.delete_item(str(record_id))
                return Response("", status=204)
            return self._idempotent(lambda: self._write(kind, record_id))
        except ApiError as error:
            return self._error_response(error)

    def _args(self) -> dict[str, str]:
        # Xero reads query names case-insensitively (its staff write SummarizeErrors).
        return {k.lower(): v for k, v in request.args.items()}

    def _unit_places(self) -> Decimal:
        # unitdp=4 opts in to 4 decimals for unit amounts ("Rounding in Xero").
        return QUANTITY_PLACES if self._args().get("unitdp") == "4" else CENT

    def _read(self, kind: Kind, record_id: str | None) -> JsonObj:
        places = self._unit_places()
        if kind.name == "Organisation":
            rows = [self.org.render(kind, r, places) for r in self.org.rows[kind.name].values()]
            return self._envelope("Organisations", rows)
        if record_id is not None:
            return self._envelope(kind.name, [self.org.get(kind, record_id, places)])
        rows, pagination = self.org.query(kind, self._args(), self._modified_since(), places)
        return self._envelope(kind.name, rows, pagination)

    def _modified_since(self) -> float | None:
        """If-Modified-Since as Xero reads it: a UTC timestamp (ISO 8601; the HTTP date
        form is accepted too). One that cannot be read is ignored, as HTTP intends."""
        text = request.headers.get("If-Modified-Since", "").strip()
        if not text:
            return None
        try:
            stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            try:
                stamp = parsedate_to_datetime(text)
            except (TypeError, ValueError):
                return None
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        return stamp.timestamp()

    def _envelope(
        self, key: str, rows: list[JsonObj], pagination: JsonObj | None = None
    ) -> JsonObj:
        body: JsonObj = {
            "Id": str(uuid.uuid4()),
            "Status": "OK",
            "ProviderName": self.config.app_name,
            "DateTimeUTC": f"/Date({round(self.config.clock() * 1000)})/",
        }
        if pagination is not None:
            body["pagination"] = pagination
        body[key] = rows
        return body

    def _elements(self, kind: Kind) -> list[Any]:
        raw = request.get_data()
        if not raw.strip():
            raise _no_data(kind)
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise post_data_invalid("Invalid JSON data in the request body.") from exc
        if not isinstance(body, dict):
            raise post_data_invalid(f"Expected a {kind.type_name} object or a {kind.name} list.")
        wrapped = next((v for k, v in body.items() if k.lower() == kind.name.lower()), None)
        if wrapped is None:
            return [body]
        if not isinstance(wrapped, list):
            raise post_data_invalid(f"'{kind.name}' must be a list.")
        if not wrapped:
            raise _no_data(kind)
        return wrapped

    def _write(self, kind: Kind, record_id: str | None) -> tuple[int, JsonObj]:
        places = self._unit_places()

        def save(element: JsonObj, changes: Changes) -> JsonObj:
            return self.org.save(
                kind,
                element,
                method=request.method,
                path_id=record_id,
                unit_places=places,
                changes=changes,
                by_app=True,
            )

        return self._save_elements(kind, save, one=record_id is not None)

    def _allocate(self, credit_note_id: str) -> tuple[int, JsonObj]:
        """``PUT /CreditNotes/{id}/Allocations``: each element allocates part of the
        credit note (an unknown one is a 404, as its own path is)."""
        with self._lock:
            note = xero_payments.credit_note(self.org, credit_note_id)

        def save(element: JsonObj, changes: Changes) -> JsonObj:
            return xero_payments.allocate(self.org, note, element, changes)

        return self._save_elements(ALLOCATIONS, save, one=False)

    def _save_elements(
        self, kind: Kind, save: Callable[[JsonObj, Changes], JsonObj], *, one: bool
    ) -> tuple[int, JsonObj]:
        """The body's elements saved in order (only the first when ``one``), then the
        webhooks of what changed, and Xero's answer."""
        args = self._args()
        # Errors are summarised unless summarizeErrors=false: the spec gives false as
        # the default, but the API summarises (Xero staff; see docs/vendors/xero.md).
        summarize = args.get("summarizeerrors", "true").lower() != "false"
        changes = Changes()
        results: list[tuple[bool, JsonObj]] = []
        try:
            with self._lock:
                elements = self.org.check_types(kind, self._elements(kind), kind.name)
                if one:
                    elements = elements[:1]
                for element in elements:
                    try:
                        results.append((True, save(element, changes)))
                    except ElementError as exc:
                        results.append((False, _failed_element(kind, element, exc.messages)))
        finally:
            self._notify(changes)
        failed = [row for ok, row in results if not ok]
        if summarize and failed:
            # Valid elements of the same request were saved all the same (observed).
            raise ApiError(
                400,
                {
                    "ErrorNumber": 10,
                    "Type": "ValidationException",
                    "Message": "A validation exception occurred",
                    "Elements": failed,
                },
            )
        # With summarizeErrors=false every element says how it went.
        rows = [
            row if summarize else {**row, "StatusAttributeString": "OK" if ok else "ERROR"}
            for ok, row in results
        ]
        key = "Currencies" if kind.name == "Currencies" else kind.name
        return 200, self._envelope(key, rows)

    def _idempotent(self, handler: Callable[[], tuple[int, JsonObj]]) -> Response:
        """Run a PUT/POST once per Idempotency-Key; a repeat gets the stored answer."""
        key = request.headers.get("Idempotency-Key", "").strip()
        if not key:
            return self._run(handler)
        if len(key) > IDEMPOTENCY_KEY_MAX:
            return self._error_response(
                _validation(
                    f"The Idempotency-Key must be at most {IDEMPOTENCY_KEY_MAX} characters."
                )
            )
        fingerprint = hashlib.sha256(
            b"\n".join([request.method.encode(), request.full_path.encode(), request.get_data()])
        ).hexdigest()
        now = self.config.clock()
        with self._lock:
            remembered = self._idempotency.get(key)
            if remembered is not None and now < remembered.expires_at:
                if remembered.fingerprint != fingerprint:
                    return self._error_response(
                        _validation(f"Idempotency Key: {key} is used with a different request.")
                    )
                return Response(
                    remembered.body, status=remembered.status, mimetype=remembered.mimetype
                )
            response = self._run(handler)
            self._idempotency[key] = _Remembered(
                fingerprint,
                response.status_code,
                response.get_data(),
                response.mimetype or "application/json",
                now + self.config.idempotency_ttl_s,
            )
        return response

    def _run(self, handler: Callable[[], tuple[int, JsonObj]]) -> Response:
        try:
            status, body = handler()
        except ApiError as error:
            return self._error_response(error)
        return self._reply(status, body)

    def _wants_json(self) -> bool:
        # "By default all successful responses on the accounting API are returned as XML"
        # (/documentation/api/accounting/requests-and-responses).
        return "json" in request.headers.get("Accept", "").lower()

    def _reply(self, status: int, body: JsonObj) -> Response:
        if self._wants_json():
            return Response(json.dumps(_jsonable(body)), status=status, mimetype="application/json")
        return Response(_to_xml("Response", body), status=status, mimetype="text/xml")

    def _error_response(self, error: ApiError) -> Response:
        if isinstance(error.body, str):
            return Response(error.body, status=error.status, mimetype="text/plain")
        if self._wants_json():
            return Response(
                json.dumps(_jsonable(error.body)), status=error.status, mimetype="application/json"
            )
        return Response(
            _to_xml("ApiException", error.body), status=error.status, mimetype="text/xml"
        )

    # --- webhooks ----------------------------------------------------------------------------

    def _notify(self, changes: Changes) -> None:
        """One signed delivery carrying the events of one call, in the categories the
        subscription takes ("You will only retrieve events from categories that your
        webhook is subscribed to", xero-webhooks.yaml)."""
        events = [
            (change, kind)
            for change in changes.items
            if (kind := kind_of(change.kind)) is not None
            and kind.webhook_category in self.config.webhook_categories
        ]
        url = self.webhook_url
        if not events or not url or self.webhook_status() != "OK":
            return
        base = self.public_url or "https://api.xero.com"
        with self._lock:
            first = self._event_sequence + 1
            self._event_sequence += len(events)
            payload = {
                "events": [self._event(base, change, kind) for change, kind in events],
                "firstEventSequence": first,
                "lastEventSequence": first + len(events) - 1,
                "entropy": _entropy(),
            }
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "x-xero-signature": sign(self.config.webhook_key, body),
        }
        self._dispatcher.start()
        self._dispatcher.send(url, lambda _attempt: (body, headers))

    def _event(self, base: str, change: Change, kind: Kind) -> JsonObj:
        """One event of a delivery. A credit note's carries its ``data``: its ``Type``
        and ``Status`` (the CreditNoteWebhookEvent of xero-webhooks.yaml)."""
        at = datetime.fromtimestamp(change.at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
        event: JsonObj = {
            "resourceUrl": f"{base}{API_PREFIX}{kind.name}/{change.record_id}",
            "resourceId": change.record_id,
            "eventDateUtc": at[:-3],  # milliseconds
            "eventType": "CREATE" if change.created else "UPDATE",
            "eventCategory": kind.webhook_category,
            "tenantId": self.config.tenant_id,
            "tenantType": "ORGANISATION",
        }
        if kind.name == "CreditNotes":
            note = self.org.rows[kind.name][change.record_id]
            event["data"] = {"Type": note["Type"], "Status": note["Status"]}
        return event

    # --- admin routes ------------------------------------------------------------------------

    def _admin_entities(self, kind: str) -> Response:
        try:
            rows = self.entities(kind)
        except KeyError:
            return _json_response({"error": f"unknown entity {kind!r}"}, 404)
        return _json_response({self._kind(kind).name: rows})

    def _admin_stats(self) -> Response:
        with self._lock:
            stats: dict[str, dict[str, int]] = {"create": {}, "update": {}, "delete": {}}
            for (operation, kind), count in self.org.counts.items():
                stats[operation][kind] = count
        return _json_response(stats)

    def _admin_webhooks(self) -> Response:
        intent = self._intent
        return _json_response(
            {
                "status": self.webhook_status(),
                "url": self.webhook_url,
                "intentToReceive": asdict(intent) if intent else None,
                "deliveries": [
                    {
                        "url": d.url,
                        "body": json.loads(d.body),
                        "headers": d.headers,
                        "attempts": d.attempts,
                        "delivered": d.delivered,
                    }
                    for d in list(self.deliveries)
                ],
            }
        )

    def _admin_intent(self) -> Response:
        body = request.get_json(silent=True) or {}
        if isinstance(body, dict) and body.get("url"):
            self.webhook_url = str(body["url"])
        try:
            outcome = self.intent_to_receive()
        except ValueError as exc:
            return _json_response({"error": str(exc)}, 400)
        return _json_response({"status": self.webhook_status(), **asdict(outcome)})

    def _admin_code(self) -> Response:
        body = request.get_json(silent=True) or {}
        redirect_uri = body.get("redirect_uri") if isinstance(body, dict) else None
        scope = body.get("scope") if isinstance(body, dict) else None
        code = self.mint_authorization_code(redirect_uri, scope)
        return _json_response(
            {"code": code, "redirect_uri": redirect_uri or self.config.redirect_uris[0]}
        )

    def _admin_ui(self, kind: str, record_id: str | None = None) -> Response:
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or kind_of(kind) is None:
            return _json_response({"error": "POST a JSON object to a known kind"}, 400)
        try:
            saved = (
                self.ui_update(kind, record_id, body) if record_id else self.ui_create(kind, body)
            )
        except ElementError as exc:
            return _json_response({"ValidationErrors": [{"Message": m} for m in exc.messages]}, 400)
        except ApiError as exc:
            return _json_response({"error": exc.body}, exc.status)
        return _json_response(saved, 200)

    def _admin_pay(self, record_id: str) -> Response:
        body = request.get_json(silent=True) or {}
        amount = body.get("Amount") if isinstance(body, dict) else None
        try:
            invoice = self.ui_pay_invoice(
                record_id, Decimal(str(amount)) if amount is not None else None
            )
        except ElementError as exc:
            return _json_response({"ValidationErrors": [{"Message": m} for m in exc.messages]}, 400)
        except ApiError as exc:
            return _json_response({"error": exc.body}, exc.status)
        return _json_response(invoice)


# --- helpers -------------------------------------------------------------------------------


def _entropy() -> str:
    return "".join(secrets.choice(string.ascii_uppercase) for _ in range(20))


def _no_data(kind: Kind) -> ApiError:
    return ApiError(
        400,
        {
            "ErrorNumber": 17,
            "Type": "NoDataProcessedException",
            "Message": "No data has been processed for this endpoint. This endpoint is "
            f"expecting {kind.type_name} data to be specifed in the request body.",
        },
    )


def _validation(message: str) -> ApiError:
    return ApiError(
        400,
        {
            "ErrorNumber": 10,
            "Type": "ValidationException",
            "Message": "A validation exception occurred",
            "Elements": [{"ValidationErrors": [{"Message": message}]}],
        },
    )


def _failed_element(kind: Kind, element: JsonObj, messages: list[str]) -> JsonObj:
    """The element as sent, marked the way Xero marks a failed one."""
    flag = "HasErrors" if kind.name in ("Invoices", "CreditNotes") else "HasValidationErrors"
    return {**element, flag: True, "ValidationErrors": [{"Message": m} for m in messages]}


def _jsonable(value: Any) -> Any:
    """Decimals as JSON numbers (money keeps its two decimals' value)."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return float(value)
    return value


def _json_object(value: JsonObj) -> JsonObj:
    converted: JsonObj = _jsonable(value)
    return converted


def _json_response(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(_jsonable(body)), status=status, mimetype="application/json")


# Element names Xero gives list items in XML (plural collection -> singular element).
_XML_ITEMS = {
    "Elements": "DataContractBase",
    "Currencies": "Currency",
    "Addresses": "Address",
    "TaxComponents": "TaxComponent",
    "Tracking": "TrackingCategory",
    "ValidationErrors": "ValidationError",
    "Warnings": "Warning",
}


def _to_xml(root: str, body: JsonObj) -> bytes:
    """The XML Xero answers when JSON is not asked for (MS dates become ISO)."""
    element = ET.Element(root)
    _xml_fill(element, body)
    xml: bytes = ET.tostring(element, encoding="utf-8")
    return xml


def _xml_fill(element: ET.Element, value: Any) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if item is None:
                continue
            child = ET.SubElement(element, key)
            if isinstance(item, list):
                name = _XML_ITEMS.get(key, key[:-1] if key.endswith("s") else key)
                for entry in item:
                    _xml_fill(ET.SubElement(child, name), entry)
            else:
                _xml_fill(child, item)
    elif isinstance(value, bool):
        element.text = "true" if value else "false"
    elif isinstance(value, str) and (match := xero_where.MS_DATE.match(value)):
        stamp = datetime.fromtimestamp(int(match.group(1)) / 1000, UTC)
        element.text = stamp.strftime("%Y-%m-%dT%H:%M:%S")
    else:
        element.text = str(value)


# --- the local stack's registration --------------------------------------------------------


def _sandbox_secret(sandbox: XeroSandbox) -> dict[str, str]:
    """The connection's secret for this organisation: exactly the connector's keys."""
    config = sandbox.config
    return {
        "client_id": config.client_id,
        "client_secret": config.client_secret,
        "refresh_token": config.initial_refresh_token,
        "tenant_id": config.tenant_id,
        "webhook_key": config.webhook_key,
    }


def _decimal_text(value: Any) -> str:
    """A JSON number as plain decimal text ("10", "2.5"), without float noise."""
    number = Decimal(str(value)).normalize()
    return f"{number:f}"


class XeroBooks:
    """The organisation's books as a person sees them; their own edits go through the
    public Accounting API with a token of their own (an authorization code grant, as
    another app of the organisation would get)."""

    def __init__(self, sandbox: XeroSandbox, base_url: str) -> None:
        self._sandbox = sandbox
        self._base_url = base_url.rstrip("/")
        self._api: httpx.Client | None = None

    def api(self) -> httpx.Client:
        """The Accounting API for the organisation, authorized (once) like another app."""
        if self._api is None:
            config = self._sandbox.config
            redirect_uri = config.redirect_uris[0]
            token = httpx.post(
                f"{self._base_url}{TOKEN_PATH}",
                auth=(config.client_id, config.client_secret),
                data={
                    "grant_type": "authorization_code",
                    "code": self._sandbox.mint_authorization_code(redirect_uri),
                    "redirect_uri": redirect_uri,
                },
                timeout=10,
            )
            token.raise_for_status()
            self._api = httpx.Client(
                base_url=f"{self._base_url}{API_PREFIX}",
                headers={
                    "Authorization": f"Bearer {token.json()['access_token']}",
                    "xero-tenant-id": config.tenant_id,
                    "Accept": "application/json",
                },
                timeout=10,
            )
        return self._api

    def add_customer(self, name: str, email: str) -> str:
        # PUT creates only (a POST could update a contact of the same name).
        response = self.api().put("Contacts", json={"Name": name, "EmailAddress": email})
        response.raise_for_status()
        return str(response.json()["Contacts"][0]["ContactID"])

    def record_payment(self, invoice_id: str, amount: Decimal, *, received_on: date) -> str:
        """A payment received into the bank account (PUT /Payments): its PaymentID."""
        response = self.api().put(
            "Payments",
            json={
                "Invoice": {"InvoiceID": invoice_id},
                "Account": {"Code": PERSON_BANK_ACCOUNT},
                "Date": received_on.isoformat(),
                "Amount": float(amount),
            },
        )
        response.raise_for_status()
        return str(response.json()["Payments"][0]["PaymentID"])

    def void_invoice(self, invoice_id: str) -> None:
        response = self.api().post(f"Invoices/{invoice_id}", json={"Status": "VOIDED"})
        response.raise_for_status()

    def credit_invoice(self, invoice_id: str, amount: Decimal) -> str:
        """A credit note for ``amount`` raised for the invoice's contact and allocated
        to the invoice in full (PUT /CreditNotes, PUT /CreditNotes/{id}/Allocations):
        its CreditNoteID."""
        response = self.api().get(f"Invoices/{invoice_id}")
        response.raise_for_status()
        invoice = response.json()["Invoices"][0]
        note_id = self._credit_note(
            invoice["Contact"]["ContactID"], amount, currency=invoice["CurrencyCode"]
        )
        allocation = {"Invoice": {"InvoiceID": invoice_id}, "Amount": float(amount)}
        response = self.api().put(
            f"CreditNotes/{note_id}/Allocations", json={"Allocations": [allocation]}
        )
        response.raise_for_status()
        return note_id

    def refund(self, customer_id: str, amount: Decimal, *, refunded_on: date) -> str:
        """Money paid back to the contact: a credit note for ``amount`` refunded in cash
        from the bank account (PUT /Payments naming the credit note): the PaymentID."""
        note_id = self._credit_note(customer_id, amount, dated=refunded_on)
        response = self.api().put(
            "Payments",
            json={
                "CreditNote": {"CreditNoteID": note_id},
                "Account": {"Code": PERSON_BANK_ACCOUNT},
                "Date": refunded_on.isoformat(),
                "Amount": float(amount),
            },
        )
        response.raise_for_status()
        return str(response.json()["Payments"][0]["PaymentID"])

    def _credit_note(
        self,
        contact_id: str,
        amount: Decimal,
        *,
        currency: str | None = None,
        dated: date | None = None,
    ) -> str:
        """An approved sales credit note of one untaxed ``amount`` line: its id."""
        note: JsonObj = {
            "Type": "ACCRECCREDIT",
            "Contact": {"ContactID": contact_id},
            "Status": "AUTHORISED",
            "LineAmountTypes": "NoTax",
            "LineItems": [
                {
                    "Description": "Credit",
                    "Quantity": 1,
                    "UnitAmount": float(amount),
                    "AccountCode": PERSON_SALES_ACCOUNT,
                }
            ],
        }
        if currency is not None:
            note["CurrencyCode"] = currency
        if dated is not None:
            note["Date"] = dated.isoformat()
        response = self.api().put("CreditNotes", json={"CreditNotes": [note]})
        response.raise_for_status()
        return str(response.json()["CreditNotes"][0]["CreditNoteID"])

    def fail_next_invoice_writes(self, kinds: list[str]) -> None:
        # The connector creates an invoice with PUT /Invoices (updates are POSTs to the
        # invoice's own path): the next creates meet the faults, reads do not.
        path = f"{API_PREFIX}Invoices"
        for kind in kinds:
            self._sandbox.faults.add(Fault(kind=kind, path_prefix=path, method="PUT"))

    def customers(self) -> list[BookCustomer]:
        return [
            BookCustomer(
                id=c["ContactID"],
                name=c.get("Name", ""),
                email=c.get("EmailAddress") or "",
                version=c.get("UpdatedDateUTC", ""),
            )
            for c in self._sandbox.entities("Contacts")
        ]

    def invoices(self) -> list[BookInvoice]:
        return [
            BookInvoice(
                id=i["InvoiceID"],
                customer=(i.get("Contact") or {}).get("Name", ""),
                lines=[
                    (
                        # The item's name (what a person and the demo call it), else its
                        # code, else the line's description.
                        (line.get("Item") or {}).get("Name")
                        or line.get("ItemCode")
                        or line.get("Description", ""),
                        _decimal_text(line.get("Quantity", 0)),
                    )
                    for line in i.get("LineItems", [])
                ],
                # SubTotal: the lines before tax. Xero adds each line's sales tax on top
                # (LineAmountTypes Exclusive) and the crmsync demo expects net totals.
                total=f"{Decimal(str(i.get('SubTotal', 0))):.2f}",
                currency=i.get("CurrencyCode", ""),
                due=str(i.get("DueDateString", ""))[:10],
                version=i.get("UpdatedDateUTC", ""),
                number=i.get("InvoiceNumber", ""),
            )
            for i in self._sandbox.entities("Invoices")
            if i.get("Type") == "ACCREC"
        ]


SANDBOX = SandboxSpec(
    name="xero",
    # The local app also registers `crmsync connect`'s redirect URI.
    start=lambda webhook_url: XeroSandbox(
        XeroSandboxConfig(
            webhook_url=webhook_url,
            redirect_uris=[*XeroSandboxConfig().redirect_uris, redirect_uri(DEFAULT_PORT)],
        )
    ),
    secret=_sandbox_secret,
    settings=lambda url: {
        "api_url": url,
        "token_url": f"{url}{TOKEN_PATH}",
        "authorize_url": f"{url}/identity/connect/authorize",
    },
    books=XeroBooks,
)
