"""QuickBooks Online sandbox: Intuit's OAuth 2 token endpoint and Accounting API v3.

A stateful stand-in for ``oauth.platform.intuit.com`` and
``quickbooks.api.intuit.com`` on one local server, so the production connector
(plain httpx) and Intuit's own clients (intuit-oauth, python-quickbooks) run
against it unchanged. Built from Intuit's documented behaviour
(https://developer.intuit.com/app/developer/qbo/docs/api/accounting/all-entities/account
and the pages beside it), not from what a client happens to send.

Reproduced behaviours
---------------------
* OAuth: ``GET /connect/oauth2`` (Intuit's authorization request,
  https://developer.intuit.com/app/developer/qbo/docs/develop/authentication-and-authorization/oauth-2.0)
  consents at once for the company: it redirects a registered ``redirect_uri`` with
  ``code``, ``state`` and ``realmId`` (``error=access_denied`` when the config says
  the person declines, ``invalid_scope`` for a scope Intuit does not have); an
  unknown client or unregistered redirect URI gets an error page, no redirect.
  ``POST /oauth2/v1/tokens/bearer`` with HTTP Basic client credentials
  (bad -> 401 ``invalid_client``), ``grant_type=refresh_token`` or
  ``authorization_code`` (the code's own ``redirect_uri`` only). Every refresh
  rotates the refresh token; a superseded one keeps working for
  ``superseded_refresh_grace_s`` (24 h), then 400 ``invalid_grant``. Access tokens
  live ``access_token_ttl_s`` (1 h). Every response carries an ``intuit_tid``
  header. The OpenID discovery document that intuit-oauth reads first (``GET
  /.well-known/openid_configuration/``, and ``openid_sandbox_configuration/``)
  names this server's token endpoint.
* Accounting API under ``/v3/company/{realmId}/``: Bearer token required; a
  missing, unknown or expired one gets 401 with the lower-case
  ``fault.error[]`` body (type ``AUTHENTICATION``, code 3200) that differs from the
  ``Fault.Error[]`` shape of every other error. ``minorversion`` below 75 is read
  as 75 (Aug 2025 rule); no behaviour depends on it.
* Entities Customer, Item, Invoice, Payment, CreditMemo, RefundReceipt, Account, Term
  (read/write) and TaxCode, TaxRate, CompanyInfo (read-only; ``GET
  /companyinfo/{realmId}``).
  Create and update share ``POST /{entity}``; ``"sparse": true`` changes only the
  supplied top-level fields (a ``Line`` array is replaced whole), a full update
  replaces every writable field. Each write bumps the string ``SyncToken`` and
  ``MetaData.LastUpdatedTime``; a stale token gets 5010. Invoice, Payment,
  CreditMemo and RefundReceipt delete with ``?operation=delete``; an invoice is
  voided with ``?operation=void`` (``quickbooks_payments``: amounts zeroed, "Voided"
  in ``PrivateNote``, the invoice kept); Customer, Item, Account and Term are retired
  with ``Active: false`` (delete answers 500 "Unsupported Operation").
* Term: ``Name`` (unique) and either ``DueDays`` (0-999, ``Type`` STANDARD, with
  ``DiscountPercent``/``DiscountDays``) or ``DayOfMonthDue`` (1-31, ``Type``
  DATE_DRIVEN, with ``DueNextMonthDays``/``DiscountDayOfMonth``); ``Type`` is
  derived, never taken from the body.
* Account: ``Name`` (unique, no ``"`` or ``:``) and ``AccountType`` or
  ``AccountSubType`` (the other is derived, see ``quickbooks_accounts``); the read-only
  ``Classification``, ``SubAccount``, ``FullyQualifiedName`` (parent names joined
  with ``:``), ``CurrencyRef`` and balances are computed. ``AcctNum`` is unique.
  ``ParentRef`` makes a sub-account of an active account.
* Validation: 6240 duplicate ``DisplayName``/``Name``; 6080 no name on a
  Customer; 2020 missing required field; 2500 reference to a missing or inactive
  object; 6070 ``Amount`` != ``Qty`` x ``UnitPrice``; 6090 discount line without
  amount or percent; 610 object not found; 2170 bad enumeration; 2010 malformed
  body. Fault bodies are ``{"Fault":{"Error":[...],"type":"ValidationFault"}}``.
* Invoice maths: ``TotalAmt`` = sales lines - discount line + tax; a
  ``SubTotalLineDetail`` line is appended (or recomputed); ``Balance`` =
  ``TotalAmt`` - applied payments, which its read-only ``LinkedTxn`` lists;
  ``DocNumber`` auto-assigned from 1001; a
  ``DocNumber`` another invoice holds is refused with 6140 "Duplicate Document
  Number Error" naming that invoice's ``TxnId``, unless the request says
  ``include=allowduplicatedocnum`` (Intuit's Invoice reference, DocNumber);
  ``TxnDate`` defaults to today in the company time zone; ``DueDate`` from the
  term's ``DueDays`` (the invoice's, else the customer's); ``CurrencyRef``
  defaults to the home currency.
* Payment: ``CustomerRef`` and ``TotalAmt`` required; each line applies its
  ``Amount`` to the Invoice (paid) or CreditMemo (credit used) its ``LinkedTxn``
  names, within the invoice's balance or the memo's ``RemainingCredit``; the rest is
  ``UnappliedAmt``. A credit memo reaches an invoice through a zero-total payment.
  Customer ``Balance`` = open invoices - remaining credits - unapplied payments.
* RefundReceipt (``quickbooks_refunds``): money paid back to a customer from a Bank or
  Other Current Asset account (``DepositToAccountRef``, required), lines and
  ``TotalAmt`` as an invoice's, ``CustomerRef`` optional; it names no invoice.
* Ids count up per entity: a Payment and a RefundReceipt may share one (Intuit names
  a linked transaction by ``TxnType`` and ``TxnId`` together and promises no more).
* Query (GET ``?query=`` or POST ``application/text``): see ``quickbooks_query``. The
  entity key is absent when nothing matches; ``count(*)`` answers ``totalCount``.
  Name-list entities return only active rows unless the query tests ``Active``. A
  WHERE on an Invoice property its reference does not mark filterable is 4001.
* ``?requestid=``: a repeat gets the byte-identical original response and changes
  nothing (faults included). At most 50 characters, 36 for batch, and then each
  ``bId`` at most 10.
* Batch (``POST /batch``): at most 30 items; each item has a ``bId`` (required,
  unique in the request, echoed in its answer) and either ``operation``
  (create/update/delete) with one entity object, or ``Query``. Answers come in
  request order, one per item, in an overall 200; a failed item carries its own
  ``Fault`` (6240, 5010, 2020, 2500, ...) and the others still run. Items run one
  after another but read the company as it was when the batch began, so one item
  cannot see or reference another's create (name uniqueness is still checked
  against everything written, see the choices below). Updates take
  ``"sparse": true`` as single writes do.
* Batch metering: a batch request is one request against the 500/min and 10/s
  windows (Intuit: "500 requests per minute per realmId, including batch
  requests"), plus 40 batch requests/min per realm and app and 120 per realm.
  ``batch_items_metered=True`` counts every item against 500/min and 10/s too, for
  clients that must also survive that reading (Intuit states neither explicitly).
* CDC: 30-day look-back, 1,000 objects at most (oldest changes first); deleted
  objects appear as ``{"status": "Deleted"}``.
* Throttling: 500 requests/min per realm, 10/s per realm and app, 40 batch
  calls/min per realm and app, 120 per realm -> 429 with Fault code 3001.
* Webhooks (https://developer.intuit.com/app/developer/qbo/docs/develop/webhooks):
  CloudEvents (default) or the legacy ``eventNotifications`` shape, for every entity
  written (CreditMemo and RefundReceipt among them), on Create, Update, Delete and an
  invoice's Void (``qbo.invoice.voided.v1``), signed ``intuit-signature`` =
  base64(HMAC-SHA256(verifier token, raw body)), retried on non-2xx.
* Seed data: a new company has accounts, items, terms, tax codes, five sample
  customers, two invoices and a payment, like an Intuit sandbox company.
* Preferences (read-only; ``GET /preferences`` or a query): ``SalesFormsPrefs.CustomField``
  lists the sales-form custom fields as ``UseSalesCustom<n>``/``SalesCustomName<n>``
  pairs, seeded "Crew #" (1, enabled), "PO Number" (2, enabled), "Sales Rep" (3,
  disabled); ``sales_custom_fields`` sets them. ``Invoice.CustomField`` keeps values
  by ``DefinitionId`` for enabled fields and returns every enabled field with its
  ``Name`` and ``Type`` "StringType" (see ``quickbooks_custom_fields``).

Choices where the documentation is unclear
------------------------------------------
* 429 carries no ``Retry-After`` by default: Intuit documents none and says to
  wait 60 s, so clients must cope without it. ``send_retry_after=True`` adds it.
  The body is JSON with ``type: "SERVICE"`` and Detail "The request limit was
  reached.  Try again later" as integrations quote it; Intuit has been seen
  sending that body as XML, so clients should key on the status, not the body.
* 5010 answers HTTP 400. A token for another realm gets 403, lower-case shape,
  code 3100 ``ApplicationAuthorizationFailed``.
* Full update: omitted writable fields are cleared, then defaults re-apply.
* Names compare case-insensitively for uniqueness and in queries. Inactive
  customers still hold their name. Only Customer names are modelled (no
  Vendor/Employee).
* Tax: an invoice is taxed only through ``TxnTaxDetail.TxnTaxCodeRef`` naming a
  tax code with rates (seeded "2" California, 8 %); lines marked ``TAX`` form the
  base, reduced pro rata by a discount. No automated sales tax.
* Multicurrency is off: a currency other than ``home_currency`` answers 6000.
* Amounts (line, discount, tax, totals, payments) are held at the invoice
  currency's ISO 4217 minor unit (JPY 0, KWD 3, else 2), each rounded half up;
  6070 compares ``Amount`` with Qty x UnitPrice rounded the same way. Intuit
  documents neither (docs/vendors/quickbooks.md).
* Deleting an invoice or credit memo that has payments applied answers 6000, and
  so does voiding such an invoice (as an integrator reports QuickBooks refusing it).
  Payment errors (6000 over a balance or ``TotalAmt``, 2500 for another customer's
  invoice, 2170 for another ``TxnType``) are not documented by Intuit.
* Applying a payment changes the invoice's ``Balance`` but not its SyncToken, so it
  sends no Invoice webhook and puts no invoice in CDC: Intuit documents neither.
  Payment void (``include=void``) and a credit memo's or refund receipt's void are
  not modelled.
* Batch: more than 30 items answers 400 with code 1040 "Batch size exceeds allowed
  limit" for the whole request, and a missing or repeated ``bId`` 400 (2020/2010)
  for the whole request; an item with no valid operation gets its own Fault (500
  "Unsupported Operation"). Intuit documents none of these answers. A ``bId`` has
  no length limit without a ``requestid``. Two creates of one name in one batch:
  the second gets 6240 (the name check sees every committed write, as a unique
  index would). Whether Intuit meters batch items one by one: see
  docs/vendors/quickbooks.md, "Batch".
* requestid responses are kept until reset (Intuit states no window). Admin reset
  restores the company, counters, requestid cache and rate windows; OAuth tokens
  survive it, as a company reset would not disconnect the app.
* CloudEvents deliveries use ``Content-Type: application/cloudevents-batch+json``
  (the CloudEvents batch media type); ``source`` is ``intuit.`` + a hash of the
  client id. One delivery per API request, holding every event it caused.
* A SalesItemLine needs ``Amount`` and ``ItemRef`` (2020 otherwise); Intuit may
  default a missing ItemRef to the Services item, which is not modelled.
* A request refused by one rate window still counts in the others. The second's
  window is keyed by the app a token was issued to (the company's other apps, as
  ``QuickBooksBooks``, have their own), the minute's by the company alone.
* Seed objects are dated 45 days back, so CDC reports only changes made through
  the API.
* Invoice custom fields (``quickbooks_custom_fields``): an entry for a field that is
  not enabled, or without ``DefinitionId``, is dropped silently; a sparse update
  changes only the fields it names; a ``StringValue`` over 31 characters answers
  2050 (Intuit documents no maximum).
* Authorization codes are single-use and live 5 minutes.
* The discovery document lists Intuit's other OAuth endpoints (authorize, revoke,
  userinfo, JWKS) under this server's address; the authorize and token endpoints are
  served. Intuit documents no PKCE: ``code_challenge`` is ignored.
* A code minted by ``POST /_sandbox/oauth/code`` is bound to no redirect URI (there
  was no authorization request).
* Term: a body with both ``DueDays`` and ``DayOfMonthDue``, or mixing one type's
  discount fields into the other, answers 6000; an out-of-range day count 2010.
  A date-driven term's invoice ``DueDate`` is not computed from the day of month.
* Account: a ``Name`` with ``"`` or ``:``, a duplicate ``AcctNum``, a detail type
  that belongs to another account type, or a ``ParentRef`` that would make an
  account its own ancestor answers 6000; an unknown type or detail type 2170. A
  duplicate ``Name`` is 6240 across the whole chart, sub-accounts included.
  Balances stay 0: the sandbox keeps no ledger.

Admin routes (never called by production code): ``/_sandbox/faults`` and
``/_sandbox/reset`` from ``base.install_fault_routes``,
``GET /_sandbox/entities/<Entity>``, ``GET /_sandbox/stats``,
``GET /_sandbox/webhooks`` and ``POST /_sandbox/oauth/code``.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import math
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Literal
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import httpx
from flask import Flask, Response, request

from local.sandboxes import (
    quickbooks_accounts,
    quickbooks_custom_fields,
    quickbooks_payments,
    quickbooks_query,
    quickbooks_refunds,
)
from local.sandboxes.base import (
    Delivery,
    Fault,
    FaultInjector,
    SlidingWindowLimiter,
    WebhookDispatcher,
    install_fault_routes,
)
from local.sandboxes.registry import BookCustomer, BookInvoice, SandboxSpec
from ops.oauth import DEFAULT_PORT, redirect_uri

JsonObj = dict[str, Any]

REQUEST_ID_MAX = 50
BATCH_REQUEST_ID_MAX = 36
BATCH_BID_MAX_WITH_REQUEST_ID = 10
BATCH_MAX_ITEMS = 30
CDC_MAX_OBJECTS = 1000
CDC_LOOKBACK = timedelta(days=30)
REFRESH_TOKEN_TTL_S = 8_726_400
AUTH_CODE_TTL_S = 300
# Intuit's scopes (the OAuth 2.0 page's "Scopes" table).
SCOPES = frozenset(
    {
        "com.intuit.quickbooks.accounting",
        "com.intuit.quickbooks.payment",
        "openid",
        "profile",
        "email",
        "phone",
        "address",
    }
)
SEED_AGE = timedelta(days=45)

_SYSTEM_FIELDS = ("Id", "SyncToken", "MetaData", "domain", "sparse", "status")
# Term day fields with their documented ranges, by the term type they belong to.
_STANDARD_TERM_DAYS = {"DueDays": (0, 999), "DiscountDays": (0, 999)}
_DATE_DRIVEN_TERM_DAYS = {
    "DayOfMonthDue": (1, 31),
    "DueNextMonthDays": (0, 31),
    "DiscountDayOfMonth": (1, 31),
}
# Account fields Intuit computes; a value in a request body is ignored.
_ACCOUNT_DERIVED = (
    "Classification",
    "SubAccount",
    "FullyQualifiedName",
    "CurrencyRef",
    "CurrentBalance",
    "CurrentBalanceWithSubAccounts",
)
_CURRENCY_NAMES = {"USD": "United States Dollar", "EUR": "Euro", "GBP": "British Pound Sterling"}


@dataclass
class QuickBooksSandboxConfig:
    """Everything a test or the demo may tune; defaults match Intuit's documented limits."""

    realm_id: str = "9341453000000001"
    client_id: str = "sandbox-qbo-client-id"
    client_secret: str = "sandbox-qbo-client-secret"
    initial_refresh_token: str = "sandbox-qbo-refresh-token"
    webhook_verifier_token: str = "sandbox-qbo-verifier-token"
    webhook_url: str | None = None
    webhook_format: Literal["cloudevents", "legacy"] = "cloudevents"
    # The app's redirect URIs, as registered on the Intuit Developer Portal.
    redirect_uris: list[str] = field(default_factory=lambda: ["https://localhost/callback"])
    consents: bool = True  # the person at the consent screen allows access
    access_token_ttl_s: float = 3600.0
    superseded_refresh_grace_s: float = 24 * 3600.0
    rate_per_minute: int = 500
    rate_per_second: int = 10
    batch_per_minute: int = 40  # per realm and app
    batch_per_minute_realm: int = 120  # per realm, every app together
    # Count each batch item against rate_per_minute/rate_per_second as well (the
    # reading Intuit neither states nor rules out); off: a batch is one request.
    batch_items_metered: bool = False
    send_retry_after: bool = False
    # Intuit retries at 10 s, 20 s, 30 s, 5 m, ...; compressed so tests finish.
    webhook_retry_delays_s: list[float] = field(default_factory=lambda: [0.2, 0.5, 1.0])
    home_currency: str = "USD"
    company_timezone: str = "America/Los_Angeles"
    # Sales-form custom fields, slot 1 first, as (name as the company shows it, enabled).
    # Intuit's sample company has "Crew #" in slot 1 (quickbooks_custom_fields).
    sales_custom_fields: tuple[tuple[str, bool], ...] = (
        ("Crew #", True),
        ("PO Number", True),
        ("Sales Rep", False),
    )
    clock: Callable[[], float] = time.time


class QboError(Exception):
    """A Fault the API answers with; ``status`` is the HTTP status."""

    def __init__(
        self,
        code: str,
        message: str,
        detail: str,
        *,
        status: int = 400,
        element: str = "",
        fault_type: str = "ValidationFault",
    ) -> None:
        super().__init__(f"{code} {message}: {detail}")
        self.code = code
        self.message = message
        self.detail = detail
        self.status = status
        self.element = element
        self.fault_type = fault_type

    def fault(self) -> JsonObj:
        error = {
            "Message": self.message,
            "Detail": self.detail,
            "code": self.code,
            "element": self.element,
        }
        return {"Error": [error], "type": self.fault_type}


def _required(name: str) -> QboError:
    return QboError(
        "2020",
        "Required param missing, need to supply the required value for the API",
        f"Required parameter {name} is missing in the request",
        element=name,
    )


def _invalid_ref(entity: str, ref_id: Any) -> QboError:
    return QboError(
        "2500",
        "Invalid Reference Id",
        f"Invalid Reference Id : {entity} {ref_id!r} does not exist or has been made inactive",
    )


def _invalid_property(name: str) -> QboError:
    return QboError(
        "2010",
        "Request has invalid or unsupported property",
        f"Property Name:{name} specified is unsupported or invalid",
        element=name,
    )


def _business(detail: str) -> QboError:
    return QboError(
        "6000",
        "A business validation error has occurred while processing your request",
        f"Business Validation Error: {detail}",
    )


def _not_found() -> QboError:
    return QboError(
        "610",
        "Object Not Found",
        "Object Not Found : Something you're trying to use has been made inactive. "
        "Check the fields with accounts.",
    )


def _invalid_enum(value: str, element: str) -> QboError:
    return QboError(
        "2170", "Invalid Enumeration", f"Invalid Enumeration : {value}", element=element
    )


def _too_long(element: str, detail: str) -> QboError:
    return QboError(
        "2050",
        "String length is either shorter or longer than supported by specification",
        detail,
        element=element,
    )


def _unsupported(operation: str) -> QboError:
    return QboError("500", "Unsupported Operation", f"Operation {operation} is not supported.")


@dataclass(frozen=True)
class _EntitySpec:
    name: str
    writable: bool = False
    deletable: bool = False
    name_list: bool = False  # Intuit's "name list": retired via Active, queried active-only


_ENTITIES = {
    spec.name.lower(): spec
    for spec in (
        _EntitySpec("Customer", writable=True, name_list=True),
        _EntitySpec("Item", writable=True, name_list=True),
        _EntitySpec("Invoice", writable=True, deletable=True),
        _EntitySpec("Payment", writable=True, deletable=True),
        _EntitySpec("CreditMemo", writable=True, deletable=True),
        _EntitySpec(quickbooks_refunds.REFUND_RECEIPT, writable=True, deletable=True),
        _EntitySpec("Account", writable=True, name_list=True),
        _EntitySpec("Term", writable=True, name_list=True),
        _EntitySpec("TaxCode", name_list=True),
        _EntitySpec("TaxRate", name_list=True),
        _EntitySpec("CompanyInfo"),
        _EntitySpec("Preferences"),
    )
}


def _spec(name: str) -> _EntitySpec | None:
    return _ENTITIES.get(name.lower())


# ISO 4217 minor units where they are not 2. Intuit documents no precision per
# currency (``Line.Amount`` is "Max 15 digits in 10.5 format"); the sandbox holds
# amounts at the currency's minor unit. Its own table: a sandbox owes nothing to the
# connector it tests.
_NO_DECIMALS = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX VND VUV XAF XOF XPF"
_THREE_DECIMALS = "BHD IQD JOD KWD LYD OMR TND"
_MINOR_UNITS = {
    **dict.fromkeys(_NO_DECIMALS.split(), 0),
    **dict.fromkeys(_THREE_DECIMALS.split(), 3),
}


def _places(currency: JsonObj) -> int:
    """Decimals of a ``CurrencyRef``'s currency."""
    return _MINOR_UNITS.get(str(currency["value"]), 2)


def _money(value: Any, name: str, places: int) -> Decimal:
    """An amount as the company holds it: half up at the currency's minor unit.

    Intuit documents no rounding rule; half up, per amount, is the commercial one.
    """
    try:
        return _number(value, name).quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP)
    except InvalidOperation as exc:  # more digits than any amount has: a 400, not a 500
        raise _invalid_property(name) from exc


def _number(value: Any, name: str) -> Decimal:
    if isinstance(value, bool):
        raise _invalid_property(name)
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise _invalid_property(name) from exc
    if not number.is_finite():
        raise _invalid_property(name)
    return number


def _num_out(value: Decimal) -> float | int:
    """JSON number the way Intuit prints it (100.0, 0.5, 3)."""
    return int(value) if value.as_tuple().exponent == 0 else float(value)


def _whole(value: Any, name: str, low: int, high: int) -> int:
    """A whole number of days within ``low``..``high`` (2010 otherwise)."""
    number = _number(value, name)
    if number != number.to_integral_value() or not low <= number <= high:
        raise _invalid_property(name)
    return int(number)


def _ref_id(body: JsonObj | None, key: str) -> str | None:
    ref = body.get(key) if body is not None else None
    if isinstance(ref, dict) and ref.get("value") not in (None, ""):
        return str(ref["value"])
    return None


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


@dataclass
class _AuthCode:
    expires_at: float
    redirect_uri: str | None  # None: minted without an authorization request


@dataclass
class _RefreshToken:
    issued_at: float
    superseded_at: float | None = None


@dataclass
class _Event:
    entity: str
    entity_id: str
    operation: Literal["Create", "Update", "Delete", "Void"]
    at: float


@dataclass
class _Call:
    """What one API call did, so the caller can notify webhooks after committing."""

    events: list[_Event] = field(default_factory=list)
    visible: dict[str, set[str]] | None = None  # batch snapshot: ids items may see


class QuickBooksSandbox:
    """One QuickBooks Online company plus the Intuit OAuth server, as a Flask app."""

    def __init__(self, config: QuickBooksSandboxConfig | None = None) -> None:
        self.config = config or QuickBooksSandboxConfig()
        self.tz: tzinfo = ZoneInfo(self.config.company_timezone)
        self.webhook_url = self.config.webhook_url
        self.faults = FaultInjector()
        self._lock = threading.RLock()
        clock = self.config.clock
        self._per_minute = SlidingWindowLimiter(self.config.rate_per_minute, 60.0, clock)
        self._per_second = SlidingWindowLimiter(self.config.rate_per_second, 1.0, clock)
        self._batch_per_minute = SlidingWindowLimiter(self.config.batch_per_minute, 60.0, clock)
        self._batch_per_minute_realm = SlidingWindowLimiter(
            self.config.batch_per_minute_realm, 60.0, clock
        )
        self._dispatcher = WebhookDispatcher(self.config.webhook_retry_delays_s)
        self._event_source = (
            "intuit."
            + base64.b64encode(hashlib.sha256(self.config.client_id.encode()).digest()).decode()
        )
        self._refresh_tokens: dict[str, _RefreshToken] = {}
        # token -> (expiry, the app it was issued to): "10 requests a second" is counted
        # per company and app [Q6], the 500 a minute per company.
        self._access_tokens: dict[str, tuple[float, str]] = {}
        self._auth_codes: dict[str, _AuthCode] = {}
        self._refresh_tokens[self.config.initial_refresh_token] = _RefreshToken(clock())
        self._store: dict[str, dict[str, JsonObj]] = {}
        self._deleted: dict[str, dict[str, float]] = {}
        self._touched: dict[tuple[str, str], float] = {}
        self._next_id: dict[str, int] = {}
        self._replies: dict[str, tuple[int, bytes]] = {}
        self._counts: Counter[tuple[str, str]] = Counter()
        self._custom_field_defs = quickbooks_custom_fields.definitions(
            self.config.sales_custom_fields
        )
        self._seed()
        self.app = self._build_app()

    # --- public helpers for tests and the demo -----------------------------------

    @property
    def deliveries(self) -> list[Delivery]:
        """Every webhook sent so far, with each attempt's status."""
        return self._dispatcher.deliveries

    def wait_for_webhooks_idle(self, timeout: float = 10.0) -> bool:
        """Block until every queued webhook is delivered or given up; False on timeout."""
        return self._dispatcher.wait_idle(timeout)

    def create_count(self, entity: str) -> int:
        """How many objects of ``entity`` the API created since the last reset."""
        with self._lock:
            return self._counts[("create", entity.lower())]

    def entities(self, entity: str) -> list[JsonObj]:
        """Current objects of one entity as the API would render them (no rate limit)."""
        spec = _spec(entity)
        if spec is None:
            raise KeyError(entity)
        with self._lock:
            return self._rows(spec.name)

    def mint_authorization_code(self, redirect_uri: str | None = None) -> str:
        """An OAuth code as the consent screen would issue (single use, 5 minutes),
        redeemable with ``redirect_uri`` only (None: with any)."""
        code = "AB" + secrets.token_urlsafe(24)
        with self._lock:
            self._auth_codes[code] = _AuthCode(self.config.clock() + AUTH_CODE_TTL_S, redirect_uri)
        return code

    def mint_access_token(self, app_client_id: str) -> str:
        """An access token of another app the company connected (a person's own
        tool): its calls count against the company's limits, not against this app's
        per-second one."""
        access = "eyJ" + secrets.token_urlsafe(48)
        with self._lock:
            expiry = self.config.clock() + self.config.access_token_ttl_s
            self._access_tokens[access] = (expiry, app_client_id)
        return access

    def issued_tokens(self) -> dict[str, list[str]]:
        """Every refresh token (the configured one first) and access token the OAuth
        server has handed out, superseded and expired ones included."""
        with self._lock:
            return {"refresh": list(self._refresh_tokens), "access": list(self._access_tokens)}

    def reset(self) -> None:
        """Back to the seeded company; OAuth tokens are kept (see module docstring)."""
        with self._lock:
            self._seed()
            self._replies.clear()
            self._counts.clear()
            self._per_minute.reset()
            self._per_second.reset()
            self._batch_per_minute.reset()
            self._batch_per_minute_realm.reset()
            self._dispatcher.clear()

    def close(self) -> None:
        """Stop the webhook thread (the HTTP server is the caller's ``SandboxServer``)."""
        self._dispatcher.stop()

    # --- time --------------------------------------------------------------------

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.config.clock(), self.tz)

    def _stamp(self, at: float) -> str:
        return datetime.fromtimestamp(at, self.tz).isoformat(timespec="seconds")

    def _response_time(self) -> str:
        return self._now().isoformat(timespec="milliseconds")

    # --- seed data ---------------------------------------------------------------

    def _seed(self) -> None:
        """A fresh sandbox company: chart of accounts, items, terms, tax, customers."""
        self._store = {spec.name: {} for spec in _ENTITIES.values()}
        self._deleted = {spec.name: {} for spec in _ENTITIES.values()}
        self._touched = {}
        seeded_at = (self._now() - SEED_AGE).timestamp()
        today = self._now().date()
        usd = self._currency_ref(self.config.home_currency)

        def put(entity: str, obj: JsonObj) -> None:
            obj.setdefault("SyncToken", "0")
            obj["MetaData"] = {
                "CreateTime": self._stamp(seeded_at),
                "LastUpdatedTime": self._stamp(seeded_at),
            }
            self._store[entity][obj["Id"]] = obj
            self._touched[(entity, obj["Id"])] = seeded_at

        put(
            "CompanyInfo",
            {
                "Id": "1",
                "CompanyName": "Sandbox Company_US_1",
                "LegalName": "Sandbox Company_US_1",
                "Country": "US",
                "CompanyAddr": {
                    "Line1": "123 Sierra Way",
                    "City": "San Pablo",
                    "CountrySubDivisionCode": "CA",
                    "PostalCode": "87999",
                },
                "Email": {"Address": "noreply@quickbooks.com"},
                "SupportedLanguages": "en",
                "FiscalYearStartMonth": "January",
            },
        )
        # GET /preferences; only what the sandbox models. Its sales-form custom fields
        # are what Invoice.CustomField may fill (quickbooks_custom_fields).
        put(
            "Preferences",
            {
                "Id": "1",
                "SalesFormsPrefs": {
                    "CustomField": quickbooks_custom_fields.preferences_custom_field(
                        self._custom_field_defs
                    ),
                    "AllowDiscount": True,
                    "AllowDeposit": False,
                    "AllowShipping": False,
                    "CustomTxnNumbers": True,
                },
                "CurrencyPrefs": {
                    "HomeCurrency": {"value": self.config.home_currency},
                    "MultiCurrencyEnabled": False,
                },
            },
        )
        accounts = [
            ("1", "Services", "Income", "ServiceFeeIncome", "Revenue"),
            ("2", "Sales of Product Income", "Income", "SalesOfProductIncome", "Revenue"),
            ("3", "Cost of Goods Sold", "Cost of Goods Sold", "SuppliesMaterialsCogs", "Expense"),
            ("4", "Inventory Asset", "Other Current Asset", "Inventory", "Asset"),
            ("5", "Discounts given", "Income", "DiscountsRefundsGiven", "Revenue"),
            ("6", "Undeposited Funds", "Other Current Asset", "UndepositedFunds", "Asset"),
            (
                "7",
                "Accounts Receivable (A/R)",
                "Accounts Receivable",
                "AccountsReceivable",
                "Asset",
            ),
        ]
        for acc_id, name, acc_type, sub_type, classification in accounts:
            put(
                "Account",
                {
                    "Id": acc_id,
                    "Name": name,
                    "FullyQualifiedName": name,
                    "SubAccount": False,
                    "Active": True,
                    "Classification": classification,
                    "AccountType": acc_type,
                    "AccountSubType": sub_type,
                    "CurrentBalance": 0,
                    "CurrentBalanceWithSubAccounts": 0,
                    "CurrencyRef": usd,
                },
            )
        for term_id, name, days in [
            ("1", "Due on receipt", 0),
            ("2", "Net 15", 15),
            ("3", "Net 30", 30),
            ("4", "Net 60", 60),
        ]:
            put(
                "Term",
                {
                    "Id": term_id,
                    "Name": name,
                    "Active": True,
                    "Type": "STANDARD",
                    "DueDays": days,
                    "DiscountPercent": 0,
                    "DiscountDays": 0,
                },
            )
        put(
            "TaxRate",
            {
                "Id": "1",
                "Name": "California",
                "Description": "Sales Tax",
                "Active": True,
                "RateValue": 8,
                "AgencyRef": {"value": "1"},
                "SpecialTaxType": "NONE",
                "DisplayType": "ReadOnly",
            },
        )
        for code, taxable in [("TAX", True), ("NON", False)]:
            put(
                "TaxCode",
                {"Id": code, "Name": code, "Active": True, "Taxable": taxable, "TaxGroup": False},
            )
        put(
            "TaxCode",
            {
                "Id": "2",
                "Name": "California",
                "Description": "California",
                "Active": True,
                "Taxable": True,
                "TaxGroup": True,
                "SalesTaxRateList": {
                    "TaxRateDetail": [
                        {
                            "TaxRateRef": {"value": "1", "name": "California"},
                            "TaxTypeApplicable": "TaxOnAmount",
                            "TaxOrder": 0,
                        }
                    ]
                },
                "PurchaseTaxRateList": {"TaxRateDetail": []},
            },
        )
        items = [
            ("1", "Services", "Service", 0, "1"),
            ("2", "Hours", "Service", 0, "1"),
            ("3", "Design", "Service", 75, "1"),
            ("4", "Installation", "Service", 50, "1"),
            ("5", "Pest Control", "Service", 35, "1"),
            ("6", "Sprinklers", "NonInventory", 4, "2"),
        ]
        for item_id, name, item_type, price, income in items:
            put(
                "Item",
                {
                    "Id": item_id,
                    "Name": name,
                    "FullyQualifiedName": name,
                    "Active": True,
                    "Type": item_type,
                    "UnitPrice": price,
                    "Taxable": item_type == "NonInventory",
                    "IncomeAccountRef": {"value": income, "name": accounts[int(income) - 1][1]},
                },
            )
        customers = [
            ("1", "Amy's Bird Sanctuary", "Amy", "Lauterbach", "Birds@Intuit.com", "3"),
            ("2", "Bill's Windsurf Shop", "Bill", "Lucchini", "Surf@Intuit.com", "3"),
            ("3", "Cool Cars", "Grace", "Pariente", "Cool_Cars@intuit.com", "2"),
            ("4", "Diego Rodriguez", "Diego", "Rodriguez", "Diego@Rodriguez.com", "1"),
            ("5", "Dukes Basketball Camp", "Peter", "Dukes", "Dukes_bball@intuit.com", "3"),
        ]
        for cust_id, display, given, family, email, term in customers:
            company = display if display != f"{given} {family}" else None
            customer: JsonObj = {
                "Id": cust_id,
                "DisplayName": display,
                "GivenName": given,
                "FamilyName": family,
                "FullyQualifiedName": display,
                "PrintOnCheckName": company or display,
                "PrimaryEmailAddr": {"Address": email},
                "Active": True,
                "Job": False,
                "BillWithParent": False,
                "Taxable": False,
                "CurrencyRef": usd,
                "SalesTermRef": {"value": term},
                "PreferredDeliveryMethod": "Print",
            }
            if company:
                customer["CompanyName"] = company
            put("Customer", customer)
        invoices = [
            ("1", "1001", "1", [("3", 2, 75), ("4", 1, 50)], today - timedelta(days=20)),
            ("2", "1002", "2", [("5", 3, 35)], today - timedelta(days=10)),
        ]
        for inv_id, doc, cust, lines, txn_date in invoices:
            body: JsonObj = {
                "DocNumber": doc,
                "TxnDate": txn_date.isoformat(),
                "CustomerRef": {"value": cust},
                "Line": [
                    {
                        "Amount": qty * price,
                        "DetailType": "SalesItemLineDetail",
                        "SalesItemLineDetail": {
                            "ItemRef": {"value": item},
                            "Qty": qty,
                            "UnitPrice": price,
                        },
                    }
                    for item, qty, price in lines
                ],
            }
            put("Invoice", {"Id": inv_id, **self._prepare_invoice(body, None)})
        payment = {
            "CustomerRef": {"value": "2"},
            "TotalAmt": 50,
            "TxnDate": (today - timedelta(days=5)).isoformat(),
            "Line": [{"Amount": 50, "LinkedTxn": [{"TxnId": "2", "TxnType": "Invoice"}]}],
        }
        put("Payment", {"Id": "1", **self._prepare_payment(payment, None, None)})
        self._next_id = {
            name: max((int(i) for i in rows if i.isdigit()), default=0) + 1
            for name, rows in self._store.items()
        }

    # --- flask app ---------------------------------------------------------------

    def _build_app(self) -> Flask:
        app = Flask(__name__)
        install_fault_routes(app, self.faults, self._rate_limited_fault, self.reset)

        @app.after_request
        def _intuit_tid(response: Response) -> Response:
            if not request.path.startswith("/_sandbox/"):
                response.headers["intuit_tid"] = f"1-{secrets.token_hex(4)}-{secrets.token_hex(12)}"
            return response

        app.add_url_rule(
            "/oauth2/v1/tokens/bearer", "token", self._token_endpoint, methods=["POST"]
        )
        app.add_url_rule("/connect/oauth2", "authorize", self._authorize, methods=["GET"])
        # Intuit serves one discovery document per environment; intuit-oauth reads it
        # before anything else, so it must name this server's endpoints.
        for name in ("openid_configuration", "openid_sandbox_configuration"):
            app.add_url_rule(f"/.well-known/{name}/", name, self._discovery, methods=["GET"])
        app.add_url_rule(
            "/v3/company/<realm>/<path:rest>",
            "accounting",
            self._accounting,
            methods=["GET", "POST"],
        )
        app.add_url_rule(
            "/_sandbox/entities/<entity>", "admin_entities", self._admin_entities, methods=["GET"]
        )
        app.add_url_rule("/_sandbox/stats", "admin_stats", self._admin_stats, methods=["GET"])
        app.add_url_rule(
            "/_sandbox/webhooks", "admin_webhooks", self._admin_webhooks, methods=["GET"]
        )
        app.add_url_rule("/_sandbox/oauth/code", "admin_code", self._admin_code, methods=["POST"])
        return app

    @staticmethod
    def _json(body: Any, status: int = 200) -> Response:
        return Response(json.dumps(body), status=status, mimetype="application/json")

    # --- admin routes --------------------------------------------------------------

    def _admin_entities(self, entity: str) -> Response:
        spec = _spec(entity)
        if spec is None:
            return self._json({"error": f"unknown entity {entity!r}"}, 404)
        with self._lock:
            rows = self._rows(spec.name)
            deleted = sorted(self._deleted[spec.name], key=int)
        return self._json({spec.name: rows, "deleted": deleted})

    def _admin_stats(self) -> Response:
        with self._lock:
            stats: dict[str, dict[str, int]] = {"create": {}, "update": {}, "delete": {}}
            for (op, entity), n in self._counts.items():
                stats[op][_ENTITIES[entity].name] = n
        return self._json(stats)

    def _admin_webhooks(self) -> Response:
        return self._json(
            [
                {
                    "url": d.url,
                    "body": json.loads(d.body),
                    "headers": d.headers,
                    "attempts": d.attempts,
                    "delivered": d.delivered,
                }
                for d in list(self.deliveries)
            ]
        )

    def _admin_code(self) -> Response:
        return self._json({"code": self.mint_authorization_code(), "realmId": self.config.realm_id})

    # --- OAuth ---------------------------------------------------------------------

    def _oauth_error(self, error: str, status: int) -> Response:
        return self._json({"error": error}, status)

    def _discovery(self) -> Response:
        """Intuit's OpenID discovery document, its endpoints moved onto this server."""
        base = request.host_url.rstrip("/")
        return self._json(
            {
                "issuer": f"{base}/op/v1",
                "authorization_endpoint": f"{base}/connect/oauth2",
                "token_endpoint": f"{base}/oauth2/v1/tokens/bearer",
                "userinfo_endpoint": f"{base}/v1/openid_connect/userinfo",
                "revocation_endpoint": f"{base}/v2/oauth2/tokens/revoke",
                "jwks_uri": f"{base}/op/v1/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid", "email", "profile", "address", "phone"],
                # Intuit also lists client_secret_post; this token endpoint takes Basic only.
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
                "claims_supported": ["aud", "exp", "iat", "iss", "realmid", "sub"],
            }
        )

    def _token_endpoint(self) -> Response:
        auth = request.authorization
        if (
            auth is None
            or auth.type != "basic"
            or not hmac.compare_digest(auth.username or "", self.config.client_id)
            or not hmac.compare_digest(auth.password or "", self.config.client_secret)
        ):
            return self._oauth_error("invalid_client", 401)
        grant = request.form.get("grant_type")
        now = self.config.clock()
        with self._lock:
            if grant == "refresh_token":
                presented = request.form.get("refresh_token")
                if not presented:
                    return self._oauth_error("invalid_request", 400)
                record = self._refresh_tokens.get(presented)
                if record is None or not self._refresh_usable(record, now):
                    return self._oauth_error("invalid_grant", 400)
            elif grant == "authorization_code":
                code = request.form.get("code")
                redirect_uri = request.form.get("redirect_uri")
                if not code or not redirect_uri:
                    return self._oauth_error("invalid_request", 400)
                issued = self._auth_codes.pop(code, None)
                if (
                    issued is None
                    or now >= issued.expires_at
                    or issued.redirect_uri not in (None, redirect_uri)
                ):
                    return self._oauth_error("invalid_grant", 400)
            elif not grant:
                return self._oauth_error("invalid_request", 400)
            else:
                return self._oauth_error("unsupported_grant_type", 400)
            for record in self._refresh_tokens.values():
                if record.superseded_at is None:
                    record.superseded_at = now
            refresh = "AB11" + secrets.token_urlsafe(36)
            self._refresh_tokens[refresh] = _RefreshToken(now)
            access = "eyJ" + secrets.token_urlsafe(48)
            self._access_tokens[access] = (
                now + self.config.access_token_ttl_s,
                self.config.client_id,
            )
        return self._json(
            {
                "access_token": access,
                "refresh_token": refresh,
                "expires_in": int(self.config.access_token_ttl_s),
                "x_refresh_token_expires_in": REFRESH_TOKEN_TTL_S,
                "token_type": "bearer",
            }
        )

    def _authorize(self) -> Response:
        """The consent screen of the company's admin, answering at once."""
        args = request.args
        redirect_uri = args.get("redirect_uri", "")
        if args.get("client_id") != self.config.client_id or (
            redirect_uri not in self.config.redirect_uris
        ):
            # Intuit shows its own error page here: it redirects nowhere it does not know.
            return Response(
                "<html><body><h1>Something went wrong</h1><p>The redirect_uri or client_id "
                "is not valid for this app.</p></body></html>",
                status=400,
                mimetype="text/html",
            )
        answer = {"state": args["state"]} if "state" in args else {}
        scopes = set(args.get("scope", "").split())
        if args.get("response_type") != "code":
            answer["error"] = "unsupported_response_type"
        elif not scopes or not scopes <= SCOPES:
            answer["error"] = "invalid_scope"
        elif not self.config.consents:
            answer["error"] = "access_denied"
        else:
            answer |= {
                "code": self.mint_authorization_code(redirect_uri),
                "realmId": self.config.realm_id,
            }
        separator = "&" if "?" in redirect_uri else "?"
        return Response(
            status=302, headers={"Location": f"{redirect_uri}{separator}{urlencode(answer)}"}
        )

    def _refresh_usable(self, record: _RefreshToken, now: float) -> bool:
        if now >= record.issued_at + REFRESH_TOKEN_TTL_S:
            return False
        if record.superseded_at is None:
            return True
        return now < record.superseded_at + self.config.superseded_refresh_grace_s

    # --- accounting API: gatekeeping --------------------------------------------------

    def _auth_failure(self, status: int, message: str, code: str, detail: str) -> Response:
        """Intuit's gateway error: lower-case keys, unlike every other Fault."""
        body: JsonObj = {
            "warnings": None,
            "intuitObject": None,
            "fault": {
                "error": [{"message": message, "detail": detail, "code": code, "element": None}],
                "type": "AUTHENTICATION",
            },
            "report": None,
            "queryResponse": None,
            "batchItemResponse": [],
            "attachableResponse": [],
            "syncErrorResponse": None,
            "requestId": None,
            "time": int(self.config.clock() * 1000),
            "status": None,
            "cdcresponse": [],
        }
        return self._json(body, status)

    def _authenticate(self, realm: str) -> Response | str:
        """The refusal of a request without a valid token for ``realm``, or the client
        id of the app its token was issued to."""
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        with self._lock:
            issued = self._access_tokens.get(token) if scheme.lower() == "bearer" else None
        expiry = issued[0] if issued else None
        if expiry is None or self.config.clock() >= expiry:
            detail = f"Token expired: {token[:12]}" if expiry is not None else "Token invalid"
            return self._auth_failure(
                401,
                "message=AuthenticationFailed; errorCode=003200; statusCode=401",
                "3200",
                detail,
            )
        if realm != self.config.realm_id:
            return self._auth_failure(
                403,
                "message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403",
                "3100",
                f"The access token does not grant access to company {realm}",
            )
        assert issued is not None
        return issued[1]

    def _throttled(self, retry_after_s: float) -> Response:
        error = QboError(
            "3001",
            "message=ThrottleExceeded; errorCode=003001; statusCode=429",
            "The request limit was reached.  Try again later",
            status=429,
            fault_type="SERVICE",
        )
        response = self._fault_response(error)
        if self.config.send_retry_after:
            response.headers["Retry-After"] = str(max(1, math.ceil(retry_after_s)))
        return response

    def _rate_limited_fault(self, fault: Fault) -> Response:
        return self._throttled(fault.retry_after_s)

    def _throttle(self, is_batch: bool, app: str) -> Response | None:
        """One hit in each window that applies; a batch is one request unless
        ``batch_items_metered`` counts its items (see the module docstring)."""
        realm, app_key = self.config.realm_id, f"{self.config.realm_id}:{app}"
        weight = self._batch_weight() if is_batch else 1
        waits = [self._per_minute.hit(realm) for _ in range(weight)]
        waits += [self._per_second.hit(app_key) for _ in range(weight)]
        if is_batch:
            waits.append(self._batch_per_minute.hit(app_key))
            waits.append(self._batch_per_minute_realm.hit(realm))
        wait = max(waits)
        return self._throttled(wait) if wait else None

    def _batch_weight(self) -> int:
        """How many requests a batch counts as: 1, or its items when metered so."""
        if not self.config.batch_items_metered:
            return 1
        body = request.get_json(force=True, silent=True)
        items = body.get("BatchItemRequest") if isinstance(body, dict) else None
        return max(len(items), 1) if isinstance(items, list) else 1

    def _fault_response(self, error: QboError) -> Response:
        return self._json({"Fault": error.fault(), "time": self._response_time()}, error.status)

    # --- accounting API: routing -------------------------------------------------------

    def _accounting(self, realm: str, rest: str) -> Response:
        app = self._authenticate(realm)
        if isinstance(app, Response):
            return app
        parts = [p for p in rest.split("/") if p]
        resource = parts[0].lower() if parts else ""
        throttled = self._throttle(resource == "batch", app)
        if throttled is not None:
            return throttled
        try:
            if resource == "query" and len(parts) == 1:
                return self._query_route()
            if resource == "cdc" and len(parts) == 1 and request.method == "GET":
                with self._lock:
                    return self._reply(self._cdc())
            if resource == "batch" and len(parts) == 1 and request.method == "POST":
                return self._idempotent(BATCH_REQUEST_ID_MAX, self._batch)
            if resource == "preferences" and len(parts) == 1 and request.method == "GET":
                # GET /v3/company/{realmId}/preferences reads the one Preferences object.
                with self._lock:
                    return self._reply(
                        {"Preferences": self._read(_ENTITIES[resource], "1", _Call())}
                    )
            spec = _spec(resource)
            if spec is None:
                raise QboError(
                    "404", "Resource not found", f"This sandbox does not model {rest!r}", status=404
                )
            if request.method == "GET" and len(parts) == 2:
                # CompanyInfo is read by realm id (GET /companyinfo/{realmId}); its Id is "1".
                obj_id = "1" if spec.name == "CompanyInfo" and parts[1] == realm else parts[1]
                with self._lock:
                    return self._reply({spec.name: self._read(spec, obj_id, _Call())})
            if request.method == "POST" and len(parts) == 1:
                return self._idempotent(REQUEST_ID_MAX, lambda call: self._write_route(spec, call))
            raise _unsupported(f"{request.method} {rest}")
        except QboError as error:
            return self._fault_response(error)

    def _reply(self, body: JsonObj) -> Response:
        return self._json({**body, "time": self._response_time()})

    def _idempotent(self, max_len: int, handler: Callable[[_Call], JsonObj]) -> Response:
        """Run a write once per ``requestid``; a repeat gets the stored response bytes."""
        request_id = request.args.get("requestid")
        if request_id is not None and not 0 < len(request_id) <= max_len:
            raise _invalid_property(f"requestid (at most {max_len} characters)")
        with self._lock:
            if request_id is not None and request_id in self._replies:
                status, body = self._replies[request_id]
                return Response(body, status=status, mimetype="application/json")
            call = _Call()
            try:
                payload = handler(call)
                status = 200
                out: JsonObj = {**payload, "time": self._response_time()}
            except QboError as error:
                status = error.status
                out = {"Fault": error.fault(), "time": self._response_time()}
            encoded = json.dumps(out).encode()
            if request_id is not None:
                self._replies[request_id] = (status, encoded)
            self._notify(call.events)
        return Response(encoded, status=status, mimetype="application/json")

    def _body(self) -> JsonObj:
        body = request.get_json(force=True, silent=True)
        if not isinstance(body, dict):
            raise _invalid_property("request body (expected a JSON object)")
        return body

    def _write_route(self, spec: _EntitySpec, call: _Call) -> JsonObj:
        operation = (request.args.get("operation") or "").lower()
        body = self._body()
        if operation in ("delete", "void"):
            op = operation
        elif operation in ("", "create", "update"):
            op = "update" if operation == "update" or body.get("Id") not in (None, "") else "create"
        else:
            raise _unsupported(operation)
        return {spec.name: self._apply(spec, op, body, call)}

    # --- reads -----------------------------------------------------------------------

    def _visible(self, entity: str, obj_id: str, call: _Call) -> bool:
        return call.visible is None or obj_id in call.visible.get(entity, set())

    def _get(self, entity: str, obj_id: str, call: _Call) -> JsonObj | None:
        obj = self._store[entity].get(obj_id)
        return obj if obj is not None and self._visible(entity, obj_id, call) else None

    def _read(self, spec: _EntitySpec, obj_id: str, call: _Call) -> JsonObj:
        obj = self._get(spec.name, obj_id, call)
        if obj is None:
            raise _not_found()
        return self._render(spec.name, [obj])[0]

    def _rows(self, entity: str, call: _Call | None = None) -> list[JsonObj]:
        objs = [
            o
            for i, o in self._store[entity].items()
            if call is None or self._visible(entity, i, call)
        ]
        return self._render(entity, objs)

    def _customer_balances(self, applied: quickbooks_payments.Applied) -> dict[str, Decimal]:
        """What each customer owes: open invoice balances, less credit memos' remaining
        credit and payments not applied (both are credits on the customer's account)."""
        owed: dict[str, Decimal] = {}

        def add(customer_ref: JsonObj, amount: Decimal) -> None:
            owed[customer_ref["value"]] = owed.get(customer_ref["value"], Decimal(0)) + amount

        for txn_type, sign in (("Invoice", 1), ("CreditMemo", -1)):
            for txn in self._store[txn_type].values():
                left = quickbooks_payments.open_amount(txn, txn_type, applied)
                add(txn["CustomerRef"], sign * left)
        for payment in self._store["Payment"].values():
            add(payment["CustomerRef"], -Decimal(str(payment["UnappliedAmt"])))
        return owed

    def _render(self, entity: str, objs: list[JsonObj]) -> list[JsonObj]:
        """Stored objects plus the fields Intuit derives on read (balances, links)."""
        out = [copy.deepcopy(o) for o in objs]
        if entity in ("Invoice", "CreditMemo", "Customer"):
            applied = quickbooks_payments.applications(self._store["Payment"])
            if entity == "Customer":
                owed = self._customer_balances(applied)
                for customer in out:
                    balance = _num_out(owed.get(customer["Id"], Decimal(0)))
                    customer["Balance"] = balance
                    customer["BalanceWithJobs"] = balance
            for txn in out if entity != "Customer" else []:
                left = _num_out(quickbooks_payments.open_amount(txn, entity, applied))
                txn["Balance"] = left
                if entity == "CreditMemo":
                    txn["RemainingCredit"] = left
                links = [
                    {"TxnId": p, "TxnType": "Payment"}
                    for p in quickbooks_payments.payments_of(entity, txn["Id"], applied)
                ]
                if links:
                    txn["LinkedTxn"] = links
        if entity == "Account":
            # Derived on read, so renaming a parent renames its sub-accounts' paths.
            for account in out:
                account["FullyQualifiedName"] = ":".join(
                    a["Name"] for a in reversed(self._account_lineage(account))
                )
        for obj in out:
            obj["domain"] = "QBO"
            obj["sparse"] = False
        return out

    # --- query -----------------------------------------------------------------------

    def _query_route(self) -> Response:
        if request.method == "POST":
            if request.mimetype not in ("application/text", "text/plain"):
                raise QboError(
                    "4000",
                    "Error parsing query",
                    "QueryParserError: POST /query takes the query as "
                    "Content-Type application/text",
                )
            text = request.get_data(as_text=True)
        else:
            text = request.args.get("query", "")
        with self._lock:
            return self._reply({"QueryResponse": self._run_query(text, _Call())})

    def _run_query(self, text: str, call: _Call) -> JsonObj:
        try:
            query = quickbooks_query.parse(text)
            spec = _spec(query.entity)
            if spec is None:
                raise QboError(
                    "4001",
                    "Invalid query",
                    f"QueryValidationError: Entity '{query.entity}' not found",
                )
            quickbooks_query.check_filterable(query, spec.name)
        except quickbooks_query.QueryError as exc:
            raise QboError(exc.code, exc.message, exc.detail) from exc
        rows = self._rows(spec.name, call)
        if spec.name_list and not query.mentions("Active"):
            rows = [r for r in rows if r.get("Active", True)]
        selected = quickbooks_query.select(query, rows, self.tz)
        if query.count:
            return {"totalCount": len(selected)}
        window = quickbooks_query.page(query, selected)
        if not window:
            return {}
        return {
            spec.name: window,
            "startPosition": query.start_position,
            "maxResults": len(window),
        }

    # --- CDC -------------------------------------------------------------------------

    def _cdc(self) -> JsonObj:
        names = request.args.get("entities")
        since_text = request.args.get("changedSince")
        if not names:
            raise _required("entities")
        if not since_text:
            raise _required("changedSince")
        try:
            since = datetime.fromisoformat(since_text.replace("Z", "+00:00"))
        except ValueError as exc:
            raise _invalid_property("changedSince") from exc
        if since.tzinfo is None:
            since = since.replace(tzinfo=self.tz)
        if since < self._now() - CDC_LOOKBACK:
            raise QboError(
                "2010",
                "Request has invalid or unsupported property",
                "changedSince cannot be more than 30 days in the past",
                element="changedSince",
            )
        specs = []
        for name in names.split(","):
            spec = _spec(name.strip())
            if spec is None:
                raise _invalid_property(f"entities ({name.strip()})")
            specs.append(spec)
        cutoff = since.timestamp()
        budget = CDC_MAX_OBJECTS
        responses: list[JsonObj] = []
        for spec in specs:
            changes: list[tuple[float, JsonObj]] = []
            for row in self._rows(spec.name):
                at = self._touched[(spec.name, row["Id"])]
                if at >= cutoff:
                    changes.append((at, row))
            for obj_id, at in self._deleted[spec.name].items():
                if at >= cutoff:
                    tombstone = {
                        "domain": "QBO",
                        "status": "Deleted",
                        "Id": obj_id,
                        "MetaData": {"LastUpdatedTime": self._stamp(at)},
                    }
                    changes.append((at, tombstone))
            changes.sort(key=lambda change: change[0])
            taken = [obj for _, obj in changes[:budget]]
            budget -= len(taken)
            if taken:
                responses.append({spec.name: taken, "startPosition": 1, "maxResults": len(taken)})
            else:
                responses.append({})
        return {"CDCResponse": [{"QueryResponse": responses}]}

    # --- batch -----------------------------------------------------------------------

    def _batch(self, call: _Call) -> JsonObj:
        body = self._body()
        items = body.get("BatchItemRequest")
        if not isinstance(items, list) or not items:
            raise _required("BatchItemRequest")
        if len(items) > BATCH_MAX_ITEMS:
            raise QboError(
                "1040",
                "Batch size exceeds allowed limit",
                f"Batch size exceeds allowed limit: at most {BATCH_MAX_ITEMS} items, "
                f"got {len(items)}",
            )
        with_request_id = request.args.get("requestid") is not None
        seen: set[str] = set()
        for item in items:
            if not isinstance(item, dict) or item.get("bId") in (None, ""):
                raise _required("bId")
            bid = str(item["bId"])
            if bid in seen:
                raise _invalid_property(f"bId (unique in the batch; {bid!r} repeats)")
            seen.add(bid)
            if with_request_id and len(bid) > BATCH_BID_MAX_WITH_REQUEST_ID:
                raise _invalid_property(
                    f"bId (at most {BATCH_BID_MAX_WITH_REQUEST_ID} characters with a requestid)"
                )
        call.visible = {name: set(rows) for name, rows in self._store.items()}
        return {"BatchItemResponse": [self._batch_item(item, call) for item in items]}

    def _batch_item(self, item: JsonObj, call: _Call) -> JsonObj:
        out: JsonObj = {"bId": item["bId"]}
        try:
            if "Query" in item:
                out["QueryResponse"] = self._run_query(str(item["Query"]), call)
                return out
            op = str(item.get("operation", "")).lower()
            if op not in ("create", "update", "delete"):
                raise _unsupported(op or "(none)")
            keys = [k for k in item if _spec(k) is not None]
            if len(keys) != 1:
                raise _required("entity object")
            spec = _spec(keys[0])
            entity_body = item[keys[0]]
            if spec is None or not isinstance(entity_body, dict):
                raise _invalid_property(keys[0])
            out[spec.name] = self._apply(spec, op, entity_body, call)
        except QboError as error:
            out["Fault"] = error.fault()
        return out

    # --- writes ----------------------------------------------------------------------

    def _apply(self, spec: _EntitySpec, op: str, body: JsonObj, call: _Call) -> JsonObj:
        """Create, update or delete one object; records the webhook event on ``call``."""
        if not spec.writable:
            raise _unsupported(f"{op.capitalize()} on {spec.name}")
        now = self.config.clock()
        if op == "delete":
            if not spec.deletable:
                raise _unsupported("Delete")
            existing = self._existing_for_write(spec, body, call)
            self._check_deletable(spec, existing)
            del self._store[spec.name][existing["Id"]]
            self._deleted[spec.name][existing["Id"]] = now
            self._record(call, spec, "delete", existing["Id"], now)
            return {"domain": "QBO", "status": "Deleted", "Id": existing["Id"]}
        if op == "void":
            return self._void(spec, body, call, now)
        incoming = {k: v for k, v in body.items() if k not in _SYSTEM_FIELDS}
        if op == "create":
            stored = self._prepare(spec, incoming, None, call)
            obj_id = str(self._next_id[spec.name])
            self._next_id[spec.name] += 1
            stored = {"Id": obj_id, **stored, "SyncToken": "0"}
            stored["MetaData"] = {
                "CreateTime": self._stamp(now),
                "LastUpdatedTime": self._stamp(now),
            }
        else:
            existing = self._existing_for_write(spec, body, call)
            writable = {k: v for k, v in existing.items() if k not in _SYSTEM_FIELDS}
            sparse = _truthy(body.get("sparse"))
            merged = {**writable, **incoming} if sparse else incoming
            if sparse and spec.name == "Invoice" and "CustomField" in incoming:
                merged["CustomField"] = quickbooks_custom_fields.sparse_merge(
                    existing.get("CustomField"), incoming["CustomField"]
                )
            stored = {"Id": existing["Id"], **self._prepare(spec, merged, existing, call)}
            stored["SyncToken"] = str(int(existing["SyncToken"]) + 1)
            stored["MetaData"] = {
                "CreateTime": existing["MetaData"]["CreateTime"],
                "LastUpdatedTime": self._stamp(now),
            }
        self._store[spec.name][stored["Id"]] = stored
        self._record(call, spec, op, stored["Id"], now)
        return self._render(spec.name, [stored])[0]

    def _void(self, spec: _EntitySpec, body: JsonObj, call: _Call, now: float) -> JsonObj:
        """``POST /invoice?operation=void`` with ``Id`` and ``SyncToken`` (Invoice
        reference, "Void an invoice"): the invoice stays, its amounts zeroed."""
        if spec.name != "Invoice":
            raise _unsupported(f"void on {spec.name}")
        existing = self._existing_for_write(spec, body, call)
        applied = quickbooks_payments.applications(self._store["Payment"])
        if quickbooks_payments.payments_of("Invoice", existing["Id"], applied):
            # Integrators report QuickBooks refusing to void an invoice a payment is
            # applied to; the code and wording are not documented (6000 is a guess).
            raise _business(
                "This invoice has payments applied to it. Delete or unlink the payments "
                "before you void it."
            )
        stored = quickbooks_payments.voided(existing)
        stored["SyncToken"] = str(int(existing["SyncToken"]) + 1)
        stored["MetaData"] = {**existing["MetaData"], "LastUpdatedTime": self._stamp(now)}
        self._store[spec.name][stored["Id"]] = stored
        self._record(call, spec, "void", stored["Id"], now)
        return self._render(spec.name, [stored])[0]

    def _record(self, call: _Call, spec: _EntitySpec, op: str, obj_id: str, now: float) -> None:
        self._touched[(spec.name, obj_id)] = now
        self._counts[(op, spec.name.lower())] += 1
        operations: dict[str, Literal["Create", "Update", "Delete", "Void"]] = {
            "create": "Create",
            "delete": "Delete",
            "void": "Void",
        }
        call.events.append(_Event(spec.name, obj_id, operations.get(op, "Update"), now))

    def _existing_for_write(self, spec: _EntitySpec, body: JsonObj, call: _Call) -> JsonObj:
        obj_id = body.get("Id")
        if obj_id in (None, ""):
            raise _required("Id")
        existing = self._get(spec.name, str(obj_id), call)
        if existing is None:
            raise _not_found()
        token = body.get("SyncToken")
        if token in (None, ""):
            raise _required("SyncToken")
        if str(token) != existing["SyncToken"]:
            raise QboError(
                "5010",
                "Stale Object Error",
                "Stale Object Error : You and root were working on this at the same time. "
                "root finished before you did, so your work was not saved.",
            )
        return existing

    def _check_deletable(self, spec: _EntitySpec, existing: JsonObj) -> None:
        if spec.name not in quickbooks_payments.LINKABLE:
            return
        applied = quickbooks_payments.applications(self._store["Payment"])
        if quickbooks_payments.payments_of(spec.name, existing["Id"], applied):
            raise _business(
                f"This {spec.name} has payments applied to it. Delete or unlink the payments first."
            )

    def _prepare(
        self, spec: _EntitySpec, body: JsonObj, existing: JsonObj | None, call: _Call
    ) -> JsonObj:
        """Validate a create/update body and return the object to store (minus Id/meta)."""
        if spec.name == "Customer":
            return self._prepare_customer(body, existing, call)
        if spec.name == "Item":
            return self._prepare_item(body, existing, call)
        if spec.name in quickbooks_payments.LINKABLE:
            return self._prepare_invoice(body, call, existing, spec.name)
        if spec.name == quickbooks_refunds.REFUND_RECEIPT:
            return self._prepare_refund(body, existing, call)
        if spec.name == "Term":
            return self._prepare_term(body, existing)
        if spec.name == "Account":
            return self._prepare_account(body, existing, call)
        return self._prepare_payment(body, existing, call)

    def _resolve(self, entity: str, ref_id: str, call: _Call | None, name: str) -> JsonObj:
        obj = self._store[entity].get(ref_id)
        visible = call is None or self._visible(entity, ref_id, call)
        if obj is None or not visible or not obj.get("Active", True):
            raise _invalid_ref(name, ref_id)
        return obj

    def _currency_ref(self, code: str) -> JsonObj:
        return {"value": code, "name": _CURRENCY_NAMES.get(code, code)}

    def _check_currency(self, body: JsonObj, expected: str) -> JsonObj:
        code = _ref_id(body, "CurrencyRef") or self.config.home_currency
        if code != expected:
            raise _business(
                f"Multicurrency is not turned on for this company; use {expected}, not {code}."
            )
        return self._currency_ref(code)

    def _check_unique_name(
        self, entity: str, name_field: str, name: str, existing: JsonObj | None, kind: str
    ) -> None:
        wanted = name.strip().casefold()
        for obj_id, obj in self._store[entity].items():
            if existing is not None and obj_id == existing["Id"]:
                continue
            if str(obj.get(name_field, "")).strip().casefold() == wanted:
                raise QboError(
                    "6240",
                    "Duplicate Name Exists Error",
                    f"The name supplied already exists. : Another {kind} is already using "
                    "this name. Please use a different name.",
                )

    def _prepare_customer(self, body: JsonObj, existing: JsonObj | None, call: _Call) -> JsonObj:
        out = dict(body)
        for key in ("Balance", "BalanceWithJobs", "FullyQualifiedName"):
            out.pop(key, None)
        parts = [
            str(body[k]).strip()
            for k in ("Title", "GivenName", "MiddleName", "FamilyName", "Suffix")
            if body.get(k)
        ]
        display = str(body.get("DisplayName") or "").strip() or " ".join(parts)
        if not display:
            raise QboError(
                "6080",
                "No Name Provided",
                "Title, GivenName, MiddleName, FamilyName, DisplayName, Suffix - "
                "one of these must be non-empty",
            )
        self._check_unique_name(
            "Customer", "DisplayName", display, existing, "customer, vendor or employee"
        )
        term = _ref_id(body, "SalesTermRef")
        if term is not None:
            self._resolve("Term", term, call, "Term")
        out["DisplayName"] = display
        out["FullyQualifiedName"] = display
        out.setdefault("PrintOnCheckName", body.get("CompanyName") or display)
        out["Active"] = body.get("Active", True) is not False
        out.setdefault("Job", False)
        out.setdefault("BillWithParent", False)
        out.setdefault("Taxable", False)
        out["CurrencyRef"] = self._check_currency(body, self.config.home_currency)
        return out

    def _prepare_term(self, body: JsonObj, existing: JsonObj | None) -> JsonObj:
        out = {k: v for k, v in body.items() if k != "Type" and v is not None}
        name = str(body.get("Name") or "").strip()
        if not name:
            raise _required("Name")
        self._check_unique_name("Term", "Name", name, existing, "term")
        standard = [k for k in _STANDARD_TERM_DAYS if body.get(k) is not None]
        date_driven = [k for k in _DATE_DRIVEN_TERM_DAYS if body.get(k) is not None]
        if "DueDays" not in standard and "DayOfMonthDue" not in date_driven:
            raise _required("DueDays")
        if standard and date_driven:
            raise _business(
                f"A term is standard (DueDays) or date driven (DayOfMonthDue), not both: "
                f"got {', '.join(standard + date_driven)}."
            )
        limits = _STANDARD_TERM_DAYS if standard else _DATE_DRIVEN_TERM_DAYS
        for key in standard + date_driven:
            out[key] = _whole(body[key], key, *limits[key])
        if standard:
            out.setdefault("DiscountDays", 0)
        percent = _number(body.get("DiscountPercent") or 0, "DiscountPercent")
        if not 0 <= percent <= 100:
            raise _invalid_property("DiscountPercent")
        out["Name"] = name
        out["Type"] = "STANDARD" if standard else "DATE_DRIVEN"
        out["DiscountPercent"] = _num_out(percent)
        out["Active"] = body.get("Active", True) is not False
        return out

    def _prepare_account(self, body: JsonObj, existing: JsonObj | None, call: _Call) -> JsonObj:
        out = {k: v for k, v in body.items() if k not in _ACCOUNT_DERIVED and v is not None}
        name = str(body.get("Name") or "").strip()
        if not name:
            raise _required("Name")
        if '"' in name or ":" in name:
            raise _business('Account.Name must not contain double quotes (") or colon (:).')
        self._check_unique_name("Account", "Name", name, existing, "account")
        account_type, sub_type = self._account_type(body)
        number = str(body.get("AcctNum") or "").strip()
        out.pop("AcctNum", None)
        if number:
            if ":" in number:
                raise _business("Account.AcctNum must not contain colon (:).")
            for other in self._store["Account"].values():
                if other.get("AcctNum") == number and (existing is None or other is not existing):
                    raise _business(f"Another account is already using number {number}.")
            out["AcctNum"] = number
        parent_id = _ref_id(body, "ParentRef")
        out.pop("ParentRef", None)
        if parent_id is not None:
            parent = self._resolve("Account", parent_id, call, "Account")
            if existing is not None and existing in self._account_lineage(parent):
                raise _business("An account cannot be a sub-account of itself or its own.")
            out["ParentRef"] = {"value": parent_id}
        out["Name"] = name
        out["AccountType"] = account_type.name
        out["AccountSubType"] = sub_type
        out["Classification"] = account_type.classification
        out["SubAccount"] = parent_id is not None
        out["FullyQualifiedName"] = name  # the path is derived on read
        out["Active"] = body.get("Active", True) is not False
        out["CurrencyRef"] = self._currency_ref(self.config.home_currency)
        out["CurrentBalance"] = 0
        out["CurrentBalanceWithSubAccounts"] = 0
        return out

    @staticmethod
    def _account_type(body: JsonObj) -> tuple[quickbooks_accounts.AccountType, str]:
        """The account type and detail type a body names, the missing one derived."""
        type_name = str(body.get("AccountType") or "")
        sub_type = str(body.get("AccountSubType") or "")
        if type_name:
            account_type = quickbooks_accounts.ACCOUNT_TYPES.get(type_name)
            if account_type is None:
                raise _invalid_enum(type_name, "AccountType")
        elif sub_type:
            account_type = quickbooks_accounts.type_of_sub_type(sub_type)
            if account_type is None:
                raise _invalid_enum(sub_type, "AccountSubType")
        else:
            raise _required("AccountType")
        if not sub_type:
            return account_type, account_type.default_sub_type
        if sub_type not in account_type.sub_types:
            if quickbooks_accounts.type_of_sub_type(sub_type) is None:
                raise _invalid_enum(sub_type, "AccountSubType")
            raise _business(f"Detail type {sub_type} is not one of account type {type_name}.")
        return account_type, sub_type

    def _account_lineage(self, account: JsonObj) -> list[JsonObj]:
        """The account, its parent, the parent's parent, ... up to a top-level account."""
        lineage = [account]
        parent_id = _ref_id(account, "ParentRef")
        while parent_id is not None and parent_id in self._store["Account"]:
            lineage.append(self._store["Account"][parent_id])
            parent_id = _ref_id(lineage[-1], "ParentRef")
        return lineage

    def _prepare_item(self, body: JsonObj, existing: JsonObj | None, call: _Call) -> JsonObj:
        out = dict(body)
        name = str(body.get("Name") or "").strip()
        if not name:
            raise _required("Name")
        self._check_unique_name("Item", "Name", name, existing, "product or service")
        item_type = str(body.get("Type", "Service"))
        required = {
            "Service": ["IncomeAccountRef"],
            "NonInventory": ["IncomeAccountRef"],
            "Inventory": [
                "IncomeAccountRef",
                "ExpenseAccountRef",
                "AssetAccountRef",
                "QtyOnHand",
                "InvStartDate",
            ],
        }.get(item_type)
        if required is None:
            raise QboError("2170", "Invalid Enumeration", f"Invalid Enumeration : {item_type}")
        for key in required:
            if body.get(key) in (None, "", {}):
                raise _required(key)
            if key.endswith("Ref"):
                ref = _ref_id(body, key)
                if ref is None:
                    raise _required(f"{key}.value")
                self._resolve("Account", ref, call, "Account")
        out["Name"] = name
        out["FullyQualifiedName"] = name
        out["Type"] = item_type
        out["Active"] = body.get("Active", True) is not False
        out["UnitPrice"] = _num_out(_number(body.get("UnitPrice", 0), "UnitPrice"))
        out.setdefault("Taxable", False)
        if item_type == "Inventory":
            out["TrackQtyOnHand"] = True
        return out

    def _prepare_invoice(
        self,
        body: JsonObj,
        call: _Call | None,
        existing: JsonObj | None = None,
        entity: str = "Invoice",
    ) -> JsonObj:
        """An Invoice, a CreditMemo or a RefundReceipt: the same lines, tax and totals
        (CreditMemo and RefundReceipt references), without a due date or terms; each
        entity's numbers run on their own. A refund receipt may name no customer."""
        derived = ("TotalAmt", "Balance", "LinkedTxn", "RemainingCredit")
        out = {k: v for k, v in body.items() if k not in derived}
        customer_id = _ref_id(body, "CustomerRef")
        if customer_id is None and entity != quickbooks_refunds.REFUND_RECEIPT:
            raise _required("CustomerRef")
        customer = self._resolve("Customer", customer_id, call, "Customer") if customer_id else None
        lines = body.get("Line")
        if not isinstance(lines, list) or not lines:
            raise _required("Line")
        # Every amount is in the invoice's currency [CurrencyRef], so at its precision.
        currency = self._check_currency(
            body, _ref_id(customer, "CurrencyRef") or self.config.home_currency
        )
        places = _places(currency)

        subtotal = Decimal(0)
        taxable = Decimal(0)
        discount = Decimal(0)
        items = 0  # lines that describe an item
        kept: list[JsonObj] = []
        used_ids = {
            str(line.get("Id")) for line in lines if isinstance(line, dict) and line.get("Id")
        }
        next_line = 1
        for raw in lines:
            if not isinstance(raw, dict):
                raise _invalid_property("Line")
            line = copy.deepcopy(raw)
            kind = line.get("DetailType")
            if kind == "SubTotalLineDetail":
                continue  # recomputed and appended below
            if kind == "SalesItemLineDetail":
                amount, is_taxable = self._sales_line(line, places, call)
                items += 1
                subtotal += amount
                if is_taxable:
                    taxable += amount
            elif kind == "DiscountLineDetail":
                discount += self._discount_line(line, subtotal, places)
            elif kind == "DescriptionOnly":
                line.setdefault("DescriptionLineDetail", {})
            elif kind is None:
                raise _required("Line.DetailType")
            else:
                raise QboError("2170", "Invalid Enumeration", f"Invalid Enumeration : {kind}")
            if not line.get("Id"):
                while str(next_line) in used_ids:
                    next_line += 1
                line["Id"] = str(next_line)
                used_ids.add(line["Id"])
            line["LineNum"] = len(kept) + 1
            kept.append(line)
        if discount > subtotal:
            raise _business("The discount amount can't be greater than the subtotal.")
        if not items and entity == quickbooks_refunds.REFUND_RECEIPT:
            # "must have at least one line that describes an item". NOT documented: the
            # answer; 2020 for the missing item line chosen.
            raise _required("Line.SalesItemLineDetail")
        kept.append(
            {
                "Amount": _num_out(subtotal),
                "DetailType": "SubTotalLineDetail",
                "SubTotalLineDetail": {},
            }
        )
        tax_detail, tax = self._invoice_tax(body, taxable, discount, subtotal, places, call)

        today = self._now().date()
        txn_date = self._date(body.get("TxnDate"), "TxnDate") or today
        if entity == "Invoice":
            term_id = _ref_id(body, "SalesTermRef") or _ref_id(customer, "SalesTermRef")
            due_days = 0
            if term_id is not None:
                term = self._resolve("Term", term_id, call, "Term")
                due_days = int(term.get("DueDays", 0))
                out["SalesTermRef"] = {"value": term_id, "name": term["Name"]}
            due = self._date(body.get("DueDate"), "DueDate") or txn_date + timedelta(days=due_days)
            out["DueDate"] = due.isoformat()

        out["Line"] = kept
        if customer is not None:
            out["CustomerRef"] = {"value": customer_id, "name": customer["DisplayName"]}
        out["CurrencyRef"] = currency
        out["TxnDate"] = txn_date.isoformat()
        out["DocNumber"] = str(body.get("DocNumber") or "") or self._next_doc_number(entity)
        if call is not None and entity == "Invoice":
            self._check_doc_number(out["DocNumber"], existing)
        out["TxnTaxDetail"] = tax_detail
        out["TotalAmt"] = _num_out(subtotal - discount + tax)
        try:
            values = quickbooks_custom_fields.values_of(
                body.get("CustomField"), self._custom_field_defs
            )
        except quickbooks_custom_fields.CustomFieldError as exc:
            if exc.code == "2050":
                raise _too_long(exc.element, exc.detail) from exc
            message = "Request has invalid or unsupported property"
            raise QboError(exc.code, message, exc.detail, element=exc.element) from exc
        out["CustomField"] = quickbooks_custom_fields.stored(values, self._custom_field_defs)
        out.setdefault("PrintStatus", "NotSet")
        if entity != quickbooks_refunds.REFUND_RECEIPT:  # a refund receipt has no EmailStatus
            out.setdefault("EmailStatus", "NotSet")
        return out

    def _prepare_refund(
        self, body: JsonObj, existing: JsonObj | None, call: _Call | None
    ) -> JsonObj:
        """A RefundReceipt (``quickbooks_refunds``): an invoice's lines, tax and total,
        paid back from a Bank or Other Current Asset account."""
        account_id = _ref_id(body, "DepositToAccountRef")
        if account_id is None:
            raise _required("DepositToAccountRef")
        account = self._resolve("Account", account_id, call, "Account")
        if account["AccountType"] not in quickbooks_refunds.DEPOSIT_ACCOUNT_TYPES:
            # NOT documented: the answer to another type of account; 6000 chosen.
            raise _business(
                f"Account {account['Name']} is a {account['AccountType']} account; a refund "
                "is paid from a Bank or Other Current Asset account."
            )
        payment_type = str(body.get("PaymentType") or "")
        if payment_type and payment_type not in quickbooks_refunds.PAYMENT_TYPES:
            raise _invalid_enum(payment_type, "PaymentType")
        requested = str(body.get("PrintStatus") or "")
        if requested and requested not in quickbooks_refunds.PRINT_STATUSES:
            raise _invalid_enum(requested, "PrintStatus")
        status = quickbooks_refunds.print_status(requested, account["AccountType"])
        ref_num = str(body.get("PaymentRefNum") or "")
        if status == "NeedToPrint":
            ref_num = quickbooks_refunds.TO_PRINT
        elif status == "PrintComplete" and not ref_num:
            raise _required("PaymentRefNum")
        if len(ref_num) > quickbooks_refunds.PAYMENT_REF_NUM_MAX:
            limit = quickbooks_refunds.PAYMENT_REF_NUM_MAX
            raise _too_long("PaymentRefNum", f"PaymentRefNum is at most {limit} characters")
        out = self._prepare_invoice(body, call, existing, quickbooks_refunds.REFUND_RECEIPT)
        out["DepositToAccountRef"] = {"value": account_id, "name": account["Name"]}
        out["PrintStatus"] = status
        out.pop("PaymentRefNum", None)
        if ref_num:
            out["PaymentRefNum"] = ref_num
        out["Balance"] = 0  # nothing is paid against a refund
        return out

    def _sales_line(self, line: JsonObj, places: int, call: _Call | None) -> tuple[Decimal, bool]:
        """Validate a SalesItemLine in place; returns its amount and taxability.

        6070 unless ``Amount`` is Qty × UnitPrice, both held at the currency's minor
        unit (half up), so a line that dropped a dinar's third decimal is refused and
        a yen line needs no UnitPrice in whole yen.
        """
        detail = line.get("SalesItemLineDetail")
        if not isinstance(detail, dict):
            raise _required("Line.SalesItemLineDetail")
        if "Amount" not in line or line["Amount"] in (None, ""):
            raise _required("Line.Amount")
        amount = _money(line["Amount"], "Line.Amount", places)
        item_id = _ref_id(detail, "ItemRef")
        if item_id is None:
            raise _required("Line.SalesItemLineDetail.ItemRef")
        item = self._resolve("Item", item_id, call, "Item")
        detail["ItemRef"] = {"value": item_id, "name": item["Name"]}
        qty, price = detail.get("Qty"), detail.get("UnitPrice")
        if qty is not None and price is not None:
            product = _number(qty, "Qty") * _number(price, "UnitPrice")
            expected = _money(product, "Line.Amount", places)
            if expected != amount:
                raise QboError(
                    "6070",
                    "Amount calculation incorrect in the request",
                    f"Amount is not equal to Qty * UnitPrice. Supplied value:{line['Amount']}",
                    element="Line.Amount",
                )
        tax_code = _ref_id(detail, "TaxCodeRef") or ("TAX" if item.get("Taxable") else "NON")
        code = self._store["TaxCode"].get(tax_code)
        if code is None or not code.get("Active", True):
            raise _invalid_ref("TaxCode", tax_code)
        detail["TaxCodeRef"] = {"value": tax_code}
        line["Amount"] = _num_out(amount)
        return amount, bool(code.get("Taxable"))

    def _discount_line(self, line: JsonObj, subtotal: Decimal, places: int) -> Decimal:
        detail = line.get("DiscountLineDetail")
        if not isinstance(detail, dict):
            detail = {}
            line["DiscountLineDetail"] = detail
        if _truthy(detail.get("PercentBased")) and detail.get("DiscountPercent") is not None:
            percent = _number(detail["DiscountPercent"], "DiscountPercent")
            amount = _money(subtotal * percent / 100, "Line.Amount", places)
        elif line.get("Amount") not in (None, ""):
            amount = _money(line["Amount"], "Line.Amount", places)
            detail["PercentBased"] = False
        else:
            raise QboError(
                "6090",
                "Discount Line missing required info.",
                "Discount amount or percent should be provided.",
            )
        account = self._store["Account"]["5"]
        detail.setdefault("DiscountAccountRef", {"value": account["Id"], "name": account["Name"]})
        line["Amount"] = _num_out(amount)
        return amount

    def _invoice_tax(
        self,
        body: JsonObj,
        taxable: Decimal,
        discount: Decimal,
        subtotal: Decimal,
        places: int,
        call: _Call | None,
    ) -> tuple[JsonObj, Decimal]:
        detail = body.get("TxnTaxDetail")
        code_id = _ref_id(detail, "TxnTaxCodeRef") if isinstance(detail, dict) else None
        if code_id is None:
            return {"TotalTax": 0}, Decimal(0)
        code = self._resolve("TaxCode", code_id, call, "TaxCode")
        base = taxable - (discount * taxable / subtotal if subtotal else Decimal(0))
        base = _money(base, "TxnTaxDetail", places)
        tax_lines = []
        total = Decimal(0)
        for rate_detail in code.get("SalesTaxRateList", {}).get("TaxRateDetail", []):
            rate = self._store["TaxRate"][rate_detail["TaxRateRef"]["value"]]
            percent = Decimal(str(rate["RateValue"]))
            amount = _money(base * percent / 100, "TxnTaxDetail", places)
            total += amount
            tax_lines.append(
                {
                    "Amount": _num_out(amount),
                    "DetailType": "TaxLineDetail",
                    "TaxLineDetail": {
                        "TaxRateRef": {"value": rate["Id"]},
                        "PercentBased": True,
                        "TaxPercent": _num_out(percent),
                        "NetAmountTaxable": _num_out(base),
                    },
                }
            )
        return {
            "TxnTaxCodeRef": {"value": code_id},
            "TotalTax": _num_out(total),
            "TaxLine": tax_lines,
        }, total

    def _check_doc_number(self, number: str, existing: JsonObj | None) -> None:
        """6140 for a number another invoice holds, as integrators report it (the
        Detail names the holder's TxnId), unless ``include=allowduplicatedocnum``."""
        if "allowduplicatedocnum" in request.args.get("include", "").split(","):
            return
        own = existing["Id"] if existing else None
        for held in self._store["Invoice"].values():
            if held["DocNumber"] == number and held["Id"] != own:
                raise QboError(
                    "6140",
                    "Duplicate Document Number Error",
                    "Duplicate Document Number Error : You must specify a different number. "
                    f"This number has already been used. DocNumber={number} is assigned to "
                    f"TxnType=Invoice with TxnId={held['Id']}",
                )

    def _next_doc_number(self, entity: str) -> str:
        numbers = [int(d) for i in self._store[entity].values() if (d := i["DocNumber"]).isdigit()]
        return str(max(numbers, default=1000) + 1)

    def _date(self, value: Any, name: str) -> date | None:
        if value in (None, ""):
            return None
        try:
            return date.fromisoformat(str(value))
        except ValueError as exc:
            raise _invalid_property(name) from exc

    def _prepare_payment(
        self, body: JsonObj, existing: JsonObj | None, call: _Call | None
    ) -> JsonObj:
        """A Payment: ``CustomerRef`` and ``TotalAmt`` required (Payment reference); each
        line pays its ``Amount`` on the invoices it links, or takes it from the credit
        memos it links. Invoice lines less credit lines may not exceed ``TotalAmt``; the
        rest is ``UnappliedAmt``, a credit on the customer's account."""
        out = {k: v for k, v in body.items() if k != "UnappliedAmt"}
        customer_id = _ref_id(body, "CustomerRef")
        if customer_id is None:
            raise _required("CustomerRef")
        customer = self._resolve("Customer", customer_id, call, "Customer")
        if body.get("TotalAmt") in (None, ""):
            raise _required("TotalAmt")
        currency = self._check_currency(
            body, _ref_id(customer, "CurrencyRef") or self.config.home_currency
        )
        places = _places(currency)
        total = _money(body["TotalAmt"], "TotalAmt", places)
        if total < 0:
            raise _invalid_property("TotalAmt")
        applied = quickbooks_payments.applications(self._store["Payment"])
        rewriting = existing["Id"] if existing else ""
        lines = copy.deepcopy(body.get("Line") or [])
        if not isinstance(lines, list):
            raise _invalid_property("Line")
        net = Decimal(0)  # paid on invoices less taken from credit memos
        taking: dict[tuple[str, str], Decimal] = {}  # what this payment applies, per txn
        for line in lines:
            if not isinstance(line, dict) or line.get("Amount") in (None, ""):
                raise _required("Line.Amount")
            amount = _money(line["Amount"], "Line.Amount", places)
            if amount < 0:
                raise _invalid_property("Line.Amount")
            linked_txns = line.get("LinkedTxn", [])
            if not isinstance(linked_txns, list):
                raise _invalid_property("Line.LinkedTxn")
            for linked in linked_txns:
                if not isinstance(linked, dict):
                    raise _invalid_property("Line.LinkedTxn")
                txn_type = str(linked.get("TxnType"))
                if txn_type not in quickbooks_payments.LINKABLE:
                    raise _invalid_enum(txn_type, "Line.LinkedTxn.TxnType")
                txn_id = str(linked.get("TxnId"))
                txn = self._store[txn_type].get(txn_id)
                if (
                    txn is None
                    or (call is not None and not self._visible(txn_type, txn_id, call))
                    or txn["CustomerRef"]["value"] != customer_id
                ):
                    raise _invalid_ref(txn_type, txn_id)
                key = (txn_type, txn_id)
                taking[key] = taking.get(key, Decimal(0)) + amount
                left = quickbooks_payments.open_amount(txn, txn_type, applied, excluding=rewriting)
                if taking[key] > left:
                    what = "open balance" if txn_type == "Invoice" else "remaining credit"
                    raise _business(
                        f"The amount {taking[key]} applied to {txn_type} {txn_id} is more "
                        f"than its {what} {left}."
                    )
                net += amount if txn_type == "Invoice" else -amount
            line["Amount"] = _num_out(amount)
        if net > total:
            raise _business("The amounts applied to transactions exceed the payment's TotalAmt.")
        if net < 0:
            raise _business("The credits applied exceed the amounts applied to invoices.")
        out["Line"] = lines
        out["CustomerRef"] = {"value": customer_id, "name": customer["DisplayName"]}
        out["CurrencyRef"] = currency
        out["TotalAmt"] = _num_out(total)
        out["UnappliedAmt"] = _num_out(total - net)
        # "If you do not specify this account, payment is applied to the Undeposited
        # Funds account" (Payment reference, DepositToAccountRef).
        out.setdefault("DepositToAccountRef", {"value": "6"})
        out["TxnDate"] = (
            self._date(body.get("TxnDate"), "TxnDate") or self._now().date()
        ).isoformat()
        return out

    # --- webhooks --------------------------------------------------------------------

    def _notify(self, events: list[_Event]) -> None:
        """Queue one signed notification carrying every event of one API call."""
        url = self.webhook_url
        if not events or not url:
            return
        payload: Any
        if self.config.webhook_format == "legacy":
            payload = {
                "eventNotifications": [
                    {
                        "realmId": self.config.realm_id,
                        "dataChangeEvent": {
                            "entities": [
                                {
                                    "name": e.entity,
                                    "id": e.entity_id,
                                    "operation": e.operation,
                                    "lastUpdated": self._utc(e.at),
                                }
                                for e in events
                            ]
                        },
                    }
                ]
            }
            content_type = "application/json"
        else:
            verbs = {
                "Create": "created",
                "Update": "updated",
                "Delete": "deleted",
                "Void": "voided",
            }
            payload = [
                {
                    "specversion": "1.0",
                    "id": str(uuid.uuid4()),
                    "source": self._event_source,
                    "type": f"qbo.{e.entity.lower()}.{verbs[e.operation]}.v1",
                    "datacontenttype": "application/json",
                    "time": self._utc(e.at),
                    "intuitentityid": e.entity_id,
                    "intuitaccountid": self.config.realm_id,
                    "data": {},
                }
                for e in events
            ]
            content_type = "application/cloudevents-batch+json"
        body = json.dumps(payload).encode()
        signature = base64.b64encode(
            hmac.new(self.config.webhook_verifier_token.encode(), body, hashlib.sha256).digest()
        ).decode()
        headers = {"Content-Type": content_type, "intuit-signature": signature}
        self._dispatcher.start()
        self._dispatcher.send(url, lambda _attempt: (body, headers))

    @staticmethod
    def _utc(at: float) -> str:
        stamp = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")
        return stamp.replace("+00:00", "Z")


def _sandbox_secret(sandbox: QuickBooksSandbox) -> dict[str, str]:
    config = sandbox.config
    return {
        "client_id": config.client_id,
        "client_secret": config.client_secret,
        "refresh_token": config.initial_refresh_token,
        "realm_id": config.realm_id,
        "verifier_token": config.webhook_verifier_token,
    }


class QuickBooksBooks:
    """The company's books as a person sees them; their own edits go through the public
    API with a token of another app the company connected (their own tool), so they
    count against the company's limits but not against our app's per-second one."""

    APP = "a-persons-own-tool"

    def __init__(self, sandbox: QuickBooksSandbox, base_url: str) -> None:
        self._sandbox = sandbox
        self._base_url = base_url
        self._api: httpx.Client | None = None

    def api(self) -> httpx.Client:
        """The company's v3 API, authorized (once) as that other app."""
        if self._api is None:
            config = self._sandbox.config
            self._api = httpx.Client(
                base_url=f"{self._base_url}/v3/company/{config.realm_id}",
                headers={
                    "Authorization": f"Bearer {self._sandbox.mint_access_token(self.APP)}",
                    "Accept": "application/json",
                },
                params={"minorversion": "75"},
                timeout=10,
            )
        return self._api

    def add_customer(self, name: str, email: str) -> str:
        response = self.api().post(
            "/customer", json={"DisplayName": name, "PrimaryEmailAddr": {"Address": email}}
        )
        response.raise_for_status()
        return str(response.json()["Customer"]["Id"])

    def record_payment(
        self, invoice_id: str, amount: Decimal, *, received_on: date | None = None
    ) -> str:
        """Receive a payment on one invoice (Receive payment in the UI); its Id."""
        customer = self._invoice(invoice_id)["CustomerRef"]
        body: JsonObj = {
            "CustomerRef": {"value": customer["value"]},
            "TotalAmt": float(amount),
            "Line": [
                {
                    "Amount": float(amount),
                    "LinkedTxn": [{"TxnId": invoice_id, "TxnType": "Invoice"}],
                }
            ],
        }
        if received_on is not None:
            body["TxnDate"] = received_on.isoformat()
        return str(self._post("/payment", body)["Payment"]["Id"])

    def credit_memo(self, customer_id: str, amount: Decimal) -> str:
        """Issue a credit memo of one Services line for ``amount`` (Credit memo in the
        UI), applied to nothing yet; its Id."""
        memo = self._post(
            "/creditmemo",
            {
                "CustomerRef": {"value": customer_id},
                "Line": [
                    {
                        "Amount": float(amount),
                        "DetailType": "SalesItemLineDetail",
                        "SalesItemLineDetail": {"ItemRef": {"value": "1"}},
                    }
                ],
            },
        )["CreditMemo"]
        return str(memo["Id"])

    def credit_invoice(self, invoice_id: str, amount: Decimal) -> str:
        """Issue a credit memo for ``amount`` and apply it to the invoice with a
        zero-total payment, as the API applies credits; the credit memo's Id."""
        customer = self._invoice(invoice_id)["CustomerRef"]["value"]
        memo = self.credit_memo(customer, amount)
        self._post(
            "/payment",
            {
                "CustomerRef": {"value": customer},
                "TotalAmt": 0,
                "Line": [
                    {"Amount": float(amount), "LinkedTxn": [{"TxnId": txn, "TxnType": kind}]}
                    for txn, kind in ((invoice_id, "Invoice"), (memo, "CreditMemo"))
                ],
            },
        )
        return memo

    def refund(self, customer_id: str, amount: Decimal, *, refunded_on: date | None = None) -> str:
        """Pay ``amount`` back to the customer (Refund receipt in the UI): one Services
        line, paid out of Undeposited Funds (the money received and not yet banked); the
        RefundReceipt's Id."""
        body: JsonObj = {
            "CustomerRef": {"value": customer_id},
            "DepositToAccountRef": {"value": "6"},  # the seeded Undeposited Funds
            "Line": [
                {
                    "Amount": float(amount),
                    "DetailType": "SalesItemLineDetail",
                    "SalesItemLineDetail": {"ItemRef": {"value": "1"}},
                }
            ],
        }
        if refunded_on is not None:
            body["TxnDate"] = refunded_on.isoformat()
        return str(self._post("/refundreceipt", body)["RefundReceipt"]["Id"])

    def void_invoice(self, invoice_id: str) -> None:
        invoice = self._invoice(invoice_id)
        self._post(
            "/invoice",
            {"Id": invoice_id, "SyncToken": invoice["SyncToken"]},
            params={"operation": "void"},
        )

    def _invoice(self, invoice_id: str) -> JsonObj:
        response = self.api().get(f"/invoice/{invoice_id}")
        response.raise_for_status()
        invoice: JsonObj = response.json()["Invoice"]
        return invoice

    def _post(self, path: str, body: JsonObj, params: dict[str, str] | None = None) -> JsonObj:
        response = self.api().post(path, json=body, params=params)
        response.raise_for_status()
        answer: JsonObj = response.json()
        return answer

    def fail_next_invoice_writes(self, kinds: list[str]) -> None:
        """Injected 429s say ``Retry-After: 1`` from now on: Intuit documents none, and
        without one the connector waits Intuit's 60 s, longer than a test should."""
        if "rate_limit" in kinds:
            self._sandbox.config.send_retry_after = True
        path = f"/v3/company/{self._sandbox.config.realm_id}/invoice"
        for kind in kinds:
            self._sandbox.faults.add(Fault(kind=kind, path_prefix=path, method="POST"))

    def customers(self) -> list[BookCustomer]:
        return [
            BookCustomer(
                id=c["Id"],
                name=c.get("DisplayName", ""),
                email=(c.get("PrimaryEmailAddr") or {}).get("Address", ""),
                version=c.get("SyncToken", ""),
            )
            for c in self._sandbox.entities("Customer")
        ]

    def invoices(self) -> list[BookInvoice]:
        return [
            BookInvoice(
                id=i["Id"],
                customer=i.get("CustomerRef", {}).get("name", ""),
                lines=[
                    (
                        line["SalesItemLineDetail"]["ItemRef"]["name"],
                        str(line["SalesItemLineDetail"]["Qty"]),
                    )
                    for line in i.get("Line", [])
                    if line.get("DetailType") == "SalesItemLineDetail"
                ],
                total=str(i.get("TotalAmt")),
                currency=i.get("CurrencyRef", {}).get("value", ""),
                due=i.get("DueDate", ""),
                version=i.get("SyncToken", ""),
                number=i.get("DocNumber", ""),
            )
            for i in self._sandbox.entities("Invoice")
        ]


SANDBOX = SandboxSpec(
    name="quickbooks",
    # The local app also registers `crmsync connect`'s redirect URI.
    start=lambda webhook_url: QuickBooksSandbox(
        QuickBooksSandboxConfig(
            webhook_url=webhook_url,
            redirect_uris=["https://localhost/callback", redirect_uri(DEFAULT_PORT)],
        )
    ),
    secret=_sandbox_secret,
    settings=lambda url: {
        "api_url": url,
        "token_url": f"{url}/oauth2/v1/tokens/bearer",
        "authorize_url": f"{url}/connect/oauth2",
    },
    books=QuickBooksBooks,
)
