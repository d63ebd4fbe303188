"""QuickBooks Online (Intuit Accounting API v3): customers and invoices out, webhooks in.

Mostly declarations over ``shared.connectors.http.ApiClient``: how to read Intuit's
responses (``classify``), its documented limits, and how canonical records become
QuickBooks entities. Facts cited as [Qn] are listed with their Intuit documentation
URLs in docs/vendors/quickbooks.md.

Writes are exactly-once through Intuit's ``requestid`` [Q7]: every write carries
one derived from the engine's idempotency key, so a write retried after a lost
response is answered with the original response instead of creating a second
record. Updates are sparse and carry the current ``SyncToken`` [Q8].
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

import httpx
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from shared.batch import BatchResult, BatchWrite
from shared.connectors.auth import RotatingOAuth2, require_body_hmac, required, secret_value
from shared.connectors.catalog import CatalogItem, ItemCatalog, KeptIndex
from shared.connectors.http import (
    ApiClient,
    CallLimit,
    Classified,
    Deadline,
    ResponseAction,
    bounded_key,
    json_object,
    paginate,
    retry_after_seconds,
)
from shared.connectors.times import epoch_ms
from shared.errors import (
    AlreadyExists,
    ConnectorError,
    NotFound,
    Permanent,
    RateLimited,
    RecordInvalid,
    Retryable,
    Violation,
    WebhookRejected,
)
from shared.models import (
    ChangeEvent,
    ChangeKind,
    CustomerStanding,
    Invoice,
    InvoiceStanding,
    ObjectType,
    Party,
    TaxTreatment,
)
from shared.money import json_number, minor_units, round_half_up
from shared.ports import (
    BY_DISPLAY_NAME,
    BY_DOC_NUMBER,
    BY_ITEM_NAME,
    CallBudget,
    InboundWebhook,
    KnownCustomer,
    Lock,
    NewItem,
    SecretStore,
    TargetChange,
    TargetRef,
    WebhookAnswer,
    enqueued_answer,
)

# --- declarations -----------------------------------------------------------------

# A US company's sales lines name "TAX" or "NON" as their TaxCodeRef (automated sales
# tax): https://developer.intuit.com/app/developer/qbo/docs/workflows/manage-sales-tax-for-us-locales
TAX_CODES: Mapping[str, str] = {TaxTreatment.TAXABLE: "TAX", TaxTreatment.EXEMPT: "NON"}

# "Limits and throttles" [Q6]: 500 requests/min per realm, 10 requests/s per realm
# and app, and batch calls also 40/min per realm and app. Only the minute is budgeted:
# the budget paces calls evenly (500/min is one every 0.12 s: at most 9 in any second,
# even with slots used as late as the budget allows), so the 10/s is never reached and
# a second budget for it would only cost every call a second slot.
CALL_LIMITS = (CallLimit(500, 60.0),)
BATCH_CALL_LIMIT = CallLimit(40, 60.0)
# On 429 Intuit says "wait 60 seconds"; a Retry-After is not documented [Q6].
THROTTLE_WAIT_S = 60.0
THROTTLE_CODES = frozenset({"3001"})  # "message=ThrottleExceeded; errorCode=003001" [Q10]
STALE_OBJECT = "5010"  # SyncToken older than the stored object [Q10]
DUPLICATE_DOC_NUMBER = "6140"  # DocNumber held by another invoice (see _doc_number_holder)
DUPLICATE_NAME = "6240"  # DisplayName shared with a customer, vendor or employee [Q8, Q10]
OBJECT_NOT_FOUND = "610"  # [Q10]
# Any minorversion below 75 is ignored and 75 is the default since Aug 2025 [Q5].
MINOR_VERSION = 75
REQUEST_ID_MAX = 50  # requestid ≤50 chars, ≤36 on a batch call [Q7]
BATCH_REQUEST_ID_MAX = 36
BATCH_MAX_ITEMS = 30  # [Q8]
DOC_NUMBER_MAX = 21  # an Invoice's DocNumber [Q3]
ITEM_NAME_MAX = 100  # an Item's Name (Item reference, see ``create_item``)
QUERY_MAX_RESULTS = 1000  # MAXRESULTS is at most 1000 [Q13]
# Invoice custom fields [Q15, Q16]: the company's sales-form custom fields (at most
# three, named in the QuickBooks UI only) as Preferences.SalesFormsPrefs.CustomField
# lists them; an invoice carries "CustomField": [{DefinitionId, Name, Type, StringValue}]
# and "Only one type is currently supported: StringType" (Invoice reference).
CUSTOM_FIELD_TYPE = "StringType"
# NOT documented by Intuit: the Invoice reference gives StringValue no maximum. 31 is
# an assumption kept short on purpose (docs/vendors/quickbooks.md, "Unconfirmed"); a
# longer value is refused here rather than risk QuickBooks cutting it.
CUSTOM_FIELD_VALUE_MAX = 31
JSON_HEADERS = {"Accept": "application/json", "Content-Type": "application/json"}

_ENTITY = {
    ObjectType.CUSTOMER: "Customer",
    ObjectType.INVOICE: "Invoice",
    ObjectType.PAYMENT: "Payment",
    ObjectType.ITEM: "Item",
}
# Credit owed to a customer [Q22] and money paid back to one [Q23]. The ports count both
# among the PAYMENTs: money moving for a customer (``ledger``). Both send webhooks
# (Create, Update, Delete, Void) [Q23].
CREDIT_MEMO = "CreditMemo"
REFUND_RECEIPT = "RefundReceipt"
# A webhook's entity (lower case, as CloudEvents spell it [Q12]) → the port's object
# type and the entity its record id is of.
_WEBHOOK_ENTITIES = {
    **{name.lower(): (object_type, name) for object_type, name in _ENTITY.items()},
    **{name.lower(): (ObjectType.PAYMENT, name) for name in (CREDIT_MEMO, REFUND_RECEIPT)},
}


def port_id(entity: str, entity_id: str) -> str:
    """The id the ports know a QuickBooks object by: its ``Id``, or ``<Entity>-<Id>``
    for an entity the ports count as another's kind (a refund receipt or credit memo
    is a PAYMENT). Intuit's references show an Id unique only within its entity (a
    linked transaction is named by ``TxnType`` and ``TxnId`` together [Q19]), so a
    refund receipt may hold a payment's Id; a webhook is matched to its change-feed
    entry by id, and must never find the payment's."""
    return entity_id if entity in _ENTITY.values() else f"{entity}-{entity_id}"


# --- reading Intuit's answers --------------------------------------------------------


class _ErrorItem(BaseModel):
    """One ``Error`` of a Fault; the 401 gateway body spells the keys lower-case [Q10]."""

    model_config = ConfigDict(coerce_numbers_to_str=True)

    message: str = Field("", validation_alias=AliasChoices("Message", "message"))
    detail: str = Field("", validation_alias=AliasChoices("Detail", "detail"))
    code: str = Field("", validation_alias=AliasChoices("code", "Code"))


class _Fault(BaseModel):
    errors: list[_ErrorItem] = Field(
        default_factory=list, validation_alias=AliasChoices("Error", "error")
    )
    type: str = ""

    @property
    def code(self) -> str:
        return next((e.code for e in self.errors if e.code), "")

    def describe(self) -> str:
        parts = [": ".join(p for p in (e.message, e.detail) if p) for e in self.errors]
        return "; ".join(p for p in parts if p) or self.type or "fault without detail"


class _FaultBody(BaseModel):
    fault: _Fault | None = Field(None, validation_alias=AliasChoices("Fault", "fault"))


class _MetaData(BaseModel):
    LastUpdatedTime: datetime | None = None


class _Written(BaseModel):
    """The part of any entity this connector needs back: identity and version."""

    model_config = ConfigDict(coerce_numbers_to_str=True)

    Id: str
    SyncToken: str
    MetaData: _MetaData | None = None

    def ref(self) -> TargetRef:
        updated = self.MetaData.LastUpdatedTime if self.MetaData else None
        return TargetRef(
            id=self.Id,
            version=self.SyncToken,
            # LastUpdatedTime is to the second [Q3]; a webhook's time may carry ms.
            changed_at_ms=epoch_ms(updated) + 999 if updated is not None else None,
        )


class _EmailAddress(BaseModel):
    Address: str | None = None


class _Customer(_Written):
    DisplayName: str
    PrimaryEmailAddr: _EmailAddress | None = None


def _read_fault(response: httpx.Response) -> _Fault | None:
    try:
        return _FaultBody.model_validate(response.json()).fault
    except (ValueError, ValidationError):  # not JSON (a proxy's HTML page) or not an object
        return None


def _fault_verdict(fault: _Fault) -> Classified:
    """What a Fault means, whether it came as a response or as one batch item."""
    code, message = fault.code, fault.describe()
    if code in THROTTLE_CODES:
        return Classified(ResponseAction.RATE_LIMITED, message, code, THROTTLE_WAIT_S)
    if code == OBJECT_NOT_FOUND:
        return Classified(ResponseAction.NOT_FOUND, message, code)
    return Classified(ResponseAction.FAIL, message, code or None)


def classify(response: httpx.Response) -> Classified:
    """Intuit's responses as ``ApiClient`` actions.

    A ``Fault`` can arrive inside an HTTP 200 [Q10], so the body is read whatever
    the status. 5010 (stale SyncToken) and 6240 (duplicate name) are FAIL with
    their code: ``QuickBooksAccounting`` handles them. A 401 reaching here is the
    second one: ``RotatingOAuth2`` already refreshed and retried once.
    """
    status = response.status_code
    fault = _read_fault(response)
    if status == 429 or (fault is not None and fault.code in THROTTLE_CODES):
        wait = retry_after_seconds(response)
        message = fault.describe() if fault else "throttled"
        code = (fault.code if fault else "") or "429"
        return Classified(
            ResponseAction.RATE_LIMITED, message, code, THROTTLE_WAIT_S if wait is None else wait
        )
    if status >= 500:
        return Classified(ResponseAction.RETRY, fault.describe() if fault else "server error")
    if status == 401:
        detail = fault.describe() if fault else "unauthorized"
        code = (fault.code if fault else "") or "401"
        return Classified(ResponseAction.AUTH_FAILED, f"authentication failed: {detail}", code)
    if fault is not None:
        return _fault_verdict(fault)
    if status == 404:
        return Classified(ResponseAction.NOT_FOUND, "not found", "404")
    if status >= 400:
        return Classified(ResponseAction.FAIL, response.text[:200], str(status))
    return Classified(ResponseAction.SUCCESS)


def _error_for(verdict: Classified, context: str) -> ConnectorError:
    """A batch item's Fault as the error ``ApiClient`` would have raised for a call."""
    message = f"quickbooks {context}: {verdict.message}"
    if verdict.action is ResponseAction.RATE_LIMITED:
        return RateLimited(message, retry_after_s=verdict.retry_after_s or THROTTLE_WAIT_S)
    if verdict.action is ResponseAction.NOT_FOUND:
        return NotFound(message, code=verdict.code)
    return Permanent(message, code=verdict.code)


# --- writing Intuit's requests --------------------------------------------------------


def request_id(idempotency_key: str, limit: int = REQUEST_ID_MAX) -> str:
    """The ``requestid`` for a key (see ``bounded_key``)."""
    return bounded_key(idempotency_key, limit)


def quote(value: str) -> str:
    """A QuickBooks query string literal: backslash escapes special characters."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True)
class Above:
    """``field > 'value'``."""

    value: str


@dataclass(frozen=True)
class AtLeast:
    """``field >= 'value'``."""

    value: str


@dataclass(frozen=True)
class Between:
    """``field >= 'start' AND field < 'end'``: a half-open range."""

    start: str
    end: str


# Active or not: a name list entity's query leaves inactive ones out unless its WHERE
# tests Active; ``Active IN (true, false)`` asks for both, as client libraries do
# (python-quickbooks, for name lists; docs/vendors/quickbooks.md).
EITHER_ACTIVE = (True, False)

# A query's conditions: field = value, or field IN (values) for a tuple, or a
# comparison [Q13]. A field must be one the entity's reference marks filterable [Q24].
Condition = str | bool | tuple[str, ...] | tuple[bool, ...] | Above | AtLeast | Between
Where = Mapping[str, Condition]


def _literal(value: str | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return quote(value)


def _condition(name: str, value: Condition) -> str:
    if isinstance(value, bool):
        return f"{name} = {_literal(value)}"
    if isinstance(value, tuple):
        return f"{name} IN ({', '.join(_literal(v) for v in value)})"
    if isinstance(value, Above):
        return f"{name} > {quote(value.value)}"
    if isinstance(value, AtLeast):
        return f"{name} >= {quote(value.value)}"
    if isinstance(value, Between):
        return f"{name} >= {quote(value.start)} AND {name} < {quote(value.end)}"
    return f"{name} = {quote(value)}"


def select(entity: str, where: Where, *, start: int = 1, limit: int = 1, order_by: str = "") -> str:
    """``SELECT * FROM entity WHERE a = 'x' AND b IN ('y') …`` (no OR [Q13]);
    ``order_by`` is a field and direction written by this package (``TxnDate DESC``)."""
    conditions = " AND ".join(_condition(name, value) for name, value in where.items())
    clause = f" WHERE {conditions}" if conditions else ""
    clause += f" ORDERBY {order_by}" if order_by else ""
    # Not SQL: Intuit's query language; every literal went through ``quote``.
    return f"SELECT * FROM {entity}{clause} STARTPOSITION {start} MAXRESULTS {limit}"  # noqa: S608


def money(amount: Decimal, currency: str, field: str) -> int | float:
    """An amount as QuickBooks keeps it: rounded half-up to the currency's minor unit.

    QuickBooks refuses a line whose ``Amount`` is not ``Qty`` × ``UnitPrice`` (6070)
    and computes ``TotalAmt`` itself from the line amounts, so each line is rounded
    on its own (1.5 × 99.61 = 149.415 → 149.42; 3 × 333.5 JPY → 1001; 3 × 1.2345 KWD
    → 3.704) and the total is what QuickBooks sums. Intuit documents no rounding
    rule nor decimals per currency (``Line.Amount``: "Max 15 digits in 10.5
    format", developer.intuit.com/app/developer/qbo/docs/api/accounting/all-entities/invoice):
    half-up at the ISO 4217 minor unit is the commercial rule, and the sandbox
    holds the same one (docs/vendors/quickbooks.md). Every amount the connector
    writes goes through here.
    """
    return json_number(round_half_up(amount, minor_units(currency), field), field)


def _present(model: BaseModel) -> dict[str, Any]:
    """Fields the mapping set with a value: selective sync writes these and no others.

    A field set to None is not written either: how a sparse update clears a field
    is not established (docs/vendors/quickbooks.md), so a cleared CRM field leaves
    QuickBooks as is.
    """
    return {
        name: getattr(model, name)
        for name in type(model).model_fields  # declaration order: the same body every time
        if name in model.model_fields_set and getattr(model, name) is not None
    }


_ADDRESS_FIELDS = {
    "line1": "Line1",
    "line2": "Line2",
    "city": "City",
    "region": "CountrySubDivisionCode",
    "postal_code": "PostalCode",
    "country": "Country",
}


@dataclass(frozen=True)
class PaymentTerms:
    """A QuickBooks Term with a fixed day count (``DueDays``)."""

    id: str
    name: str
    due_days: int


@dataclass(frozen=True)
class SalesCustomField:
    """One sales-form custom field of the company, from Preferences [Q16].

    ``definition_id`` is the slot number n of ``SalesFormsPrefs.SalesCustomName<n>``:
    Intuit's own samples pair DefinitionId "1" with ``SalesCustomName1``/"Crew #".
    """

    definition_id: str
    name: str
    enabled: bool


def sales_custom_fields(preferences: Mapping[str, Any]) -> list[SalesCustomField]:
    """The slots named in ``Preferences.SalesFormsPrefs.CustomField`` [Q16].

    That list holds name/value pairs ``SalesFormsPrefs.UseSalesCustom<n>``
    (``BooleanValue``) and ``SalesFormsPrefs.SalesCustomName<n>`` (``StringValue``),
    nested in ``{"CustomField": [...]}`` groups in Intuit's sample; both the nested
    and a flat list are read. A slot without a name is not offered.
    """
    sales = preferences.get("SalesFormsPrefs")
    raw = sales.get("CustomField") if isinstance(sales, dict) else None
    enabled: dict[str, bool] = {}
    names: dict[str, str] = {}

    def walk(entries: Any) -> None:
        for entry in entries if isinstance(entries, list) else [entries]:
            if not isinstance(entry, dict):
                continue
            if "CustomField" in entry:
                walk(entry["CustomField"])
            key = str(entry.get("Name", ""))
            for prefix, into in (
                ("SalesFormsPrefs.UseSalesCustom", "use"),
                ("SalesFormsPrefs.SalesCustomName", "name"),
            ):
                slot = key.removeprefix(prefix)
                if slot != key and slot.isdigit():
                    if into == "use":
                        enabled[slot] = entry.get("BooleanValue") is True
                    elif entry.get("StringValue"):
                        names[slot] = str(entry["StringValue"])

    walk(raw)
    return [
        SalesCustomField(slot, names[slot], enabled.get(slot, False))
        for slot in sorted(names, key=int)
    ]


class QuickBooksAccounting:
    """``AccountingTarget`` and ``AccountingLedger`` for one QuickBooks company (realm).

    ``api`` is rooted at ``/v3/company/{realm}``; ``batch_api`` is the same API with
    the batch-call budget added (``build_quickbooks`` wires both).
    """

    system = "quickbooks"
    # DisplayName is unique (6240) [Q8]; DocNumber is too unless the request allows
    # duplicates (6140, Invoice reference, DocNumber): the create finds the holder.
    checked_on_create = frozenset({BY_DISPLAY_NAME, BY_DOC_NUMBER})

    def __init__(
        self,
        api: ApiClient,
        *,
        realm_id: str,
        minor_version: int = MINOR_VERSION,
        batch_api: ApiClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.realm_id = realm_id  # the company this adapter writes to, for links and logs
        self._api = api
        self._batch_api = batch_api or api
        self._minor_version = minor_version
        self._terms = KeptIndex(self._term_list, clock=clock)
        self._custom_fields: list[SalesCustomField] | None = None
        self._items = ItemCatalog(self._catalog_items, clock=clock)

    # --- reads --------------------------------------------------------------------------

    def find_customer(self, *, email: str | None, display_name: str | None) -> TargetRef | None:
        """An active customer by primary email, else by display name (each if given).

        ``PrimaryEmailAddr`` is filterable on Customer (Intuit's entity reference, as
        typed in Nytely-Official/quickbooks-api ``CustomerFilters``); it compares
        through its ``Address``.
        """
        if email:
            found = self._first("Customer", {"Active": True, "PrimaryEmailAddr": email})
            if found is not None:
                return found.ref()
        if display_name:
            found = self._first("Customer", {"Active": True, "DisplayName": display_name})
            if found is not None:
                return found.ref()
        return None

    def find_item(self, *, name: str, sku: str | None) -> str | None:
        """An active item's Id by SKU when given, else by name, from the item list
        read once and kept (``ItemCatalog``)."""
        return self._items.find(name=name, sku=sku)

    def known_customers(self, *, changed_since: datetime | None = None) -> Iterator[KnownCustomer]:
        """Every customer, inactive ones too, 1,000 a query [Q13]; with ``changed_since``,
        those whose ``MetaData.LastUpdatedTime`` is at or after it [Q25]. LastUpdatedTime
        is to the second [Q3]: the bound is rounded down, so a change within that second
        is kept. Inactive ones are listed because pages are read by position: one made
        inactive meanwhile would shift the next page and hide a customer from the
        reader (QuickBooks deletes no customer, it makes them inactive)."""
        where: dict[str, Condition] = {"Active": EITHER_ACTIVE}
        if changed_since is not None:
            since = datetime.fromtimestamp(epoch_ms(changed_since) // 1000, UTC)
            where["MetaData.LastUpdatedTime"] = AtLeast(since.isoformat())
        for row in self.query_all("Customer", where):
            customer = _Customer.model_validate(row)
            email = customer.PrimaryEmailAddr.Address if customer.PrimaryEmailAddr else None
            yield KnownCustomer(customer.ref(), email, customer.DisplayName)

    def create_item(self, item: NewItem, *, idempotency_key: str) -> str:
        """A Service item posting its sales to the mapping's income account (Intuit's
        Item reference: a Service or NonInventory item needs ``IncomeAccountRef``;
        https://developer.intuit.com/app/developer/qbo/docs/api/accounting/all-entities/item).

        The account is named by its Name or Id. An item's Name is unique among items:
        a create under a taken one is refused with 6240, and the active item holding
        it is ``AlreadyExists``' holder.
        """
        if len(item.name) > ITEM_NAME_MAX:
            raise RecordInvalid(
                [
                    _item_violation(
                        item, f"a QuickBooks item name is at most {ITEM_NAME_MAX} characters"
                    )
                ]
            )
        if item.income_account is None:
            raise RecordInvalid(
                [
                    _item_violation(
                        item,
                        "QuickBooks needs an income account to create it: "
                        "set items.income_account in the mapping",
                    )
                ]
            )
        account = self._first("Account", {"Active": True, "Name": item.income_account})
        body: dict[str, Any] = {
            "Name": item.name,
            "Type": "Service",
            "IncomeAccountRef": {"value": account.Id if account else item.income_account},
        }
        if item.sku:
            body["Sku"] = item.sku
        if item.description:
            body["Description"] = item.description
        if item.unit_price is not None:
            body["UnitPrice"] = json_number(item.unit_price, "unit_price")
        ref = self._create_named("Item", body, idempotency_key, ("Name", BY_ITEM_NAME))
        self._items.add(CatalogItem(ref=ref.id, name=item.name, sku=item.sku))
        return ref.id

    def _catalog_items(self) -> Iterator[CatalogItem]:
        for row in self.query_all("Item", {"Active": True}):
            yield CatalogItem(ref=str(row["Id"]), name=str(row["Name"]), sku=row.get("Sku"))

    def find_terms(self, name: str) -> PaymentTerms | None:
        """Terms by name (case-insensitive), from the Term list read whole and kept
        (``KeptIndex``).

        Only terms with a fixed ``DueDays`` are offered: date-driven terms ("due on
        the 10th") have no day count to report.
        """
        return self._terms.find(name)

    def _term_list(self) -> Iterator[tuple[list[str | None], PaymentTerms]]:
        for row in self.query_all("Term", {"Active": True}):
            if row.get("DueDays") is not None:
                terms = PaymentTerms(
                    id=str(row["Id"]), name=str(row["Name"]), due_days=int(row["DueDays"])
                )
                yield [terms.name], terms

    def invoice_custom_fields(self) -> list[SalesCustomField]:
        """The company's sales-form custom fields, from ``GET /preferences`` read once
        per instance [Q16] (renaming one in QuickBooks takes a new connector)."""
        if self._custom_fields is None:
            preferences = self.get("/preferences").get("Preferences")
            if not isinstance(preferences, dict):
                raise Permanent("quickbooks answered /preferences without Preferences")
            self._custom_fields = sales_custom_fields(preferences)
        return self._custom_fields

    def current(self, object_type: ObjectType, target_id: str) -> TargetRef | None:
        record = self.read(object_type, target_id)
        entity = _entity(object_type)
        return None if record is None else self._written({entity: record}, entity).ref()

    def read(self, object_type: ObjectType, target_id: str) -> dict[str, Any] | None:
        entity = _entity(object_type)
        try:
            record = self.get(f"/{entity.lower()}/{target_id}").get(entity)
        except NotFound:  # 404, or Fault 610 "Object Not Found"
            return None
        if not isinstance(record, dict):
            raise Permanent(f"quickbooks answered without a {entity}")
        return record

    def payload(self, record: Party | Invoice, *, new: bool) -> dict[str, Any]:
        """The Customer or Invoice body of a create, or of a sparse update without its
        Id and SyncToken (the same fields either way)."""
        if isinstance(record, Party):
            return self._customer_body(record)
        return self._invoice_body(record)

    def find_invoice(self, doc_number: str) -> TargetRef | None:
        """The invoice numbered ``doc_number``, so a create whose response was lost
        and whose source changed since (a new requestid) updates it, not a second one.

        QuickBooks does not require DocNumbers to be unique; when several share one,
        the query's first row is taken.
        """
        found = self._first("Invoice", {"DocNumber": doc_number})
        return found.ref() if found is not None else None

    # --- writes -------------------------------------------------------------------------

    def upsert_customer(
        self, party: Party, *, existing: TargetRef | None, idempotency_key: str
    ) -> TargetRef:
        """Create the customer, or sparse-update ``existing`` with the Party's set fields.

        A create refused with 6240 means the DisplayName is taken: DisplayName is
        unique across customers, vendors and employees [Q8]. When an active customer
        holds it, it is ``AlreadyExists``' holder, for the engine to take as a match. A
        vendor, employee or inactive customer holding the name is for a person to
        resolve: the 6240 stands.
        """
        body = self._customer_body(party)
        if existing is not None:
            return self._update(ObjectType.CUSTOMER, body, existing, idempotency_key)
        return self._create_named(
            "Customer", body, idempotency_key, ("DisplayName", BY_DISPLAY_NAME)
        )

    def upsert_invoice(
        self, invoice: Invoice, *, existing: TargetRef | None, idempotency_key: str
    ) -> TargetRef:
        """Create the invoice, or sparse-update ``existing``; ``Line`` is always sent whole."""
        body = self._invoice_body(invoice)
        try:
            if existing is not None:
                return self._update(ObjectType.INVOICE, body, existing, idempotency_key)
            return self._create("Invoice", body, idempotency_key)
        except Permanent as exc:
            holder = _doc_number_holder(exc)
            if holder is not None and (found := self.current(ObjectType.INVOICE, holder)):
                raise AlreadyExists(
                    str(exc), holder=found, rule=BY_DOC_NUMBER, code=exc.code
                ) from exc
            # Perhaps an item or terms we keep were made inactive since we read them.
            self._items.forget()
            self._terms.forget()
            raise

    # --- batch (``shared.batch.BatchingTarget``; the code is in ``batch.py``) -----------

    batch_max_items = BATCH_MAX_ITEMS

    def batch_upsert(self, writes: Sequence[BatchWrite]) -> list[BatchResult]:
        """Customers and invoices through ``POST /batch``, ≤30 items a call [Q6, Q8].

        Returns, in input order, each write's ref or the error its item's Fault maps
        to (``Permanent`` with code 5010 or 6240 for the caller to resolve by the
        single write), or its ``RecordInvalid``. A failure of a whole call raises.
        Each call's requestid derives from its items' keys, so a retried call is
        answered, not re-run. See ``shared.connectors.quickbooks.batch``.
        """
        from shared.connectors.quickbooks.batch import batch_upsert  # it imports this module

        return batch_upsert(writes, body_for=self._batch_body, send=self._send_batch)

    def _batch_body(self, write: BatchWrite) -> dict[str, Any]:
        if isinstance(write.record, Party):
            return self._customer_body(write.record)
        return self._invoice_body(write.record)

    def _send_batch(self, items: list[dict[str, Any]], requestid: str) -> dict[str, Any]:
        params = self._params(requestid=requestid)
        response = self._batch_api.request(
            "POST", "/batch", params=params, json={"BatchItemRequest": items}
        )
        return json_object(response, "quickbooks")

    # --- ledger (``AccountingLedger``; the code is in ``ledger.py``) --------------------

    def invoice_standing(self, target_id: str, *, today: date) -> InvoiceStanding | None:
        from shared.connectors.quickbooks import ledger  # it imports this module

        return ledger.invoice_standing(self, target_id, today=today)

    def customer_standing(self, target_id: str, *, today: date) -> CustomerStanding | None:
        from shared.connectors.quickbooks import ledger

        return ledger.customer_standing(self, target_id, today=today)

    def changed_since(
        self, object_types: Sequence[ObjectType], since_ms: int
    ) -> Iterator[TargetChange]:
        from shared.connectors.quickbooks import ledger

        return ledger.changed_since(self, object_types, since_ms)

    def falling_due(self, since: date, until: date) -> Iterator[TargetChange]:
        from shared.connectors.quickbooks import ledger

        return ledger.falling_due(self, since, until)

    # --- payloads ---------------------------------------------------------------------

    def _customer_body(self, party: Party) -> dict[str, Any]:
        """Party → Customer [Q3]. ``tax_id``, ``credit_limit`` and ``kind`` have no
        documented Customer field (docs/vendors/quickbooks.md) and are not written."""
        given = _present(party)
        body: dict[str, Any] = {}
        simple = {
            "display_name": "DisplayName",
            "given_name": "GivenName",
            "family_name": "FamilyName",
            "company_name": "CompanyName",
        }
        for field, key in simple.items():
            if field in given:
                body[key] = given[field]
        if "email" in given:
            body["PrimaryEmailAddr"] = {"Address": given["email"]}
        if "phone" in given:
            body["PrimaryPhone"] = {"FreeFormNumber": given["phone"]}
        if "currency" in given:
            body["CurrencyRef"] = {"value": given["currency"]}
        if "billing_address" in given:
            address = _present(given["billing_address"])
            body["BillAddr"] = {_ADDRESS_FIELDS[k]: v for k, v in address.items()}
        if "payment_terms" in given:
            terms = self.find_terms(given["payment_terms"])
            if terms is None:
                raise RecordInvalid([_no_terms(given["payment_terms"])])
            body["SalesTermRef"] = {"value": terms.id}
        return body

    def _invoice_body(self, invoice: Invoice) -> dict[str, Any]:
        """Invoice → QuickBooks Invoice [Q3, Q8].

        One SalesItemLineDetail line per line, with ``Amount`` = Qty × UnitPrice
        computed in Decimal and rounded to the currency (``money``), so it agrees
        with Intuit's check; Qty and UnitPrice go as the CRM has them, unrounded
        (Intuit documents no scale for them). QuickBooks has no discount per line: the
        lines' discounts become one fixed-amount DiscountLineDetail line. Each line
        needs an item (ItemRef); terms go by their Term's id, with the due date they
        give when none was mapped. ``memo`` goes to ``PrivateNote``: CRM notes are
        internal and ``CustomerMemo`` would print them on the customer's invoice.
        Everything QuickBooks cannot take is refused at once, every field named.
        """
        given = _present(invoice)
        violations: list[Violation] = []
        body: dict[str, Any] = {
            "CustomerRef": {"value": invoice.customer_ref},
            "CurrencyRef": {"value": invoice.currency},
        }
        if "txn_date" in given:
            body["TxnDate"] = given["txn_date"].isoformat()
        if "due_date" in given:
            body["DueDate"] = given["due_date"].isoformat()
        if "payment_terms" in given:
            terms = self.find_terms(given["payment_terms"])
            if terms is None:
                violations.append(_no_terms(given["payment_terms"]))
            else:
                body["SalesTermRef"] = {"value": terms.id}
                if "DueDate" not in body and invoice.txn_date is not None:
                    due = invoice.txn_date + timedelta(days=terms.due_days)
                    body["DueDate"] = due.isoformat()
        if "doc_number" in given:
            if len(given["doc_number"]) > DOC_NUMBER_MAX:
                violations.append(
                    Violation(
                        "doc_number",
                        "max_length",
                        f"QuickBooks keeps at most {DOC_NUMBER_MAX} characters of an invoice "
                        f"number; {given['doc_number']!r} has {len(given['doc_number'])}",
                    )
                )
            body["DocNumber"] = given["doc_number"]
        if "memo" in given:
            body["PrivateNote"] = given["memo"]
        if invoice.custom_fields:
            fields, refused = self._custom_field_body(invoice.custom_fields)
            violations.extend(refused)
            body["CustomField"] = fields
        lines: list[dict[str, Any]] = []
        for index, line in enumerate(invoice.lines):
            if line.item_ref is None:
                violations.append(
                    Violation(
                        f"line_items[{index}].name",
                        "item_exists",
                        f"no QuickBooks item named {line.name!r} (or with its SKU): create "
                        "it (`crmsync items` lists those missing), or let the sync create "
                        "it with items.create_missing in the mapping",
                    )
                )
                continue
            detail: dict[str, Any] = {
                "ItemRef": {"value": line.item_ref},
                "Qty": json_number(line.quantity, f"lines[{index}].quantity"),
                "UnitPrice": json_number(line.unit_price, f"lines[{index}].unit_price"),
            }
            if line.tax_code:
                detail["TaxCodeRef"] = {"value": TAX_CODES.get(line.tax_code, line.tax_code)}
            sales_line: dict[str, Any] = {
                "Amount": money(line.amount, invoice.currency, f"lines[{index}].amount"),
                "DetailType": "SalesItemLineDetail",
                "SalesItemLineDetail": detail,
            }
            if line.description:
                sales_line["Description"] = line.description
            lines.append(sales_line)
        if violations:
            raise RecordInvalid(violations)
        discount = sum((line.discount_amount for line in invoice.lines), Decimal(0))
        if discount > 0:
            lines.append(
                {
                    "Amount": money(discount, invoice.currency, "discount_amount"),
                    "DetailType": "DiscountLineDetail",
                    "DiscountLineDetail": {"PercentBased": False},
                }
            )
        body["Line"] = lines
        return body

    def _custom_field_body(
        self, values: Mapping[str, str]
    ) -> tuple[list[dict[str, Any]], list[Violation]]:
        """``Invoice.CustomField`` for the mapped names [Q15], matched to the company's
        enabled sales-form fields by name (case-insensitive), in slot order.

        QuickBooks takes only fields "so configured for the company" [Q15]; one that
        is missing or disabled would be lost without a word (the sandbox drops it as
        integrators report), so it is refused here, naming what the company has.
        """
        company = self.invoice_custom_fields()
        enabled = {f.name.casefold(): f for f in company if f.enabled}
        fields: list[tuple[SalesCustomField, str]] = []
        violations: list[Violation] = []
        for name, value in values.items():
            found = enabled.get(name.casefold())
            if found is None:
                violations.append(_no_custom_field(name, company))
            elif len(value) > CUSTOM_FIELD_VALUE_MAX:
                violations.append(
                    Violation(
                        f"custom_fields.{name}",
                        "max_length",
                        f"QuickBooks custom field {found.name!r} is written at most "
                        f"{CUSTOM_FIELD_VALUE_MAX} characters; the value has {len(value)}",
                    )
                )
            else:
                fields.append((found, value))
        fields.sort(key=lambda pair: int(pair[0].definition_id))
        body = [
            {
                "DefinitionId": field.definition_id,
                "Name": field.name,
                "Type": CUSTOM_FIELD_TYPE,
                "StringValue": value,
            }
            for field, value in fields
        ]
        return body, violations

    # --- calls ------------------------------------------------------------------------

    def _params(self, **extra: str) -> dict[str, str]:
        return {"minorversion": str(self._minor_version), **extra}

    def _create(self, entity: str, body: dict[str, Any], idempotency_key: str) -> TargetRef:
        params = self._params(requestid=request_id(idempotency_key))
        response = self._api.request("POST", f"/{entity.lower()}", params=params, json=body)
        return self._written(json_object(response, "quickbooks"), entity).ref()

    def _create_named(
        self, entity: str, body: dict[str, Any], idempotency_key: str, unique: tuple[str, str]
    ) -> TargetRef:
        """A create of an entity whose name is unique (``unique``: the name field and its
        match rule). Refused with 6240, the active one holding the name is
        ``AlreadyExists``' holder; a name held otherwise is for a person: the 6240 stands."""
        field, rule = unique
        try:
            return self._create(entity, body, idempotency_key)
        except Permanent as exc:
            if exc.code != DUPLICATE_NAME:
                raise
            name = body.get(field)
            found = self._first(entity, {"Active": True, field: name}) if name else None
            if found is None:
                raise
            raise AlreadyExists(str(exc), holder=found.ref(), rule=rule, code=exc.code) from exc

    def _update(
        self,
        object_type: ObjectType,
        body: dict[str, Any],
        existing: TargetRef,
        idempotency_key: str,
    ) -> TargetRef:
        """Sparse update [Q8]; on 5010 re-read the SyncToken once and try again.

        The second attempt gets its own requestid (key + the token it carries):
        Intuit answers a repeated requestid with the stored response, and for the
        first attempt that is the 5010.
        """
        entity = _entity(object_type)
        try:
            return self._sparse(entity, body, existing, request_id(idempotency_key))
        except Permanent as exc:
            if exc.code != STALE_OBJECT:
                raise
            stale = exc
        fresh = self.current(object_type, existing.id)
        if fresh is None:
            raise NotFound(f"quickbooks {entity} {existing.id} is gone", code=OBJECT_NOT_FOUND)
        try:
            return self._sparse(
                entity, body, fresh, request_id(f"{idempotency_key}@{fresh.version}")
            )
        except Permanent as exc:
            if exc.code != STALE_OBJECT:
                raise
            # Written again in between: a race, not a refusal; the message comes back later.
            raise Retryable(str(exc), status=exc.status, code=exc.code) from stale

    def _sparse(
        self, entity: str, body: dict[str, Any], existing: TargetRef, requestid: str
    ) -> TargetRef:
        payload = {**body, "Id": existing.id, "SyncToken": existing.version, "sparse": True}
        params = self._params(requestid=requestid)
        response = self._api.request("POST", f"/{entity.lower()}", params=params, json=payload)
        return self._written(json_object(response, "quickbooks"), entity).ref()

    def _first(self, entity: str, where: Where) -> _Written | None:
        rows = self.query(entity, select(entity, where))
        return _Written.model_validate(rows[0]) if rows else None

    def query_all(self, entity: str, where: Where) -> Iterator[dict[str, Any]]:
        """Every matching row, ``QUERY_MAX_RESULTS`` a page (STARTPOSITION is 1-based)."""

        def fetch_page(cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
            start = int(cursor or 1)
            rows = self.query(entity, select(entity, where, start=start, limit=QUERY_MAX_RESULTS))
            more = len(rows) == QUERY_MAX_RESULTS
            return rows, str(start + QUERY_MAX_RESULTS) if more else None

        return paginate(fetch_page)

    def query(self, entity: str, statement: str) -> list[dict[str, Any]]:
        """Rows of one query; the entity key is absent when nothing matched [Q13]."""
        rows = self.get("/query", query=statement).get("QueryResponse", {}).get(entity, [])
        return [row for row in rows if isinstance(row, dict)]

    def get(self, path: str, **params: str) -> dict[str, Any]:
        """The JSON object a ``GET`` of ``path`` answers."""
        response = self._api.request("GET", path, params=self._params(**params))
        return json_object(response, "quickbooks")

    @staticmethod
    def _written(body: Any, entity: str) -> _Written:
        """The entity in a ``{"Customer": {…}, "time": …}`` answer [Q3]."""
        try:
            return _Written.model_validate(body[entity])
        except (KeyError, TypeError, ValidationError) as exc:
            raise Permanent(f"quickbooks answered without a {entity} Id/SyncToken") from exc


def _doc_number_holder(error: Permanent) -> str | None:
    """The TxnId a 6140 names: "DocNumber=… is assigned to TxnType=Invoice with
    TxnId=45823" (as integrators quote Intuit's Detail)."""
    if error.code != DUPLICATE_DOC_NUMBER:
        return None
    found = re.search(r"TxnType=Invoice with TxnId=(\w+)", str(error))
    return found.group(1) if found else None


def _item_violation(item: NewItem, why: str) -> Violation:
    return Violation("items", "item_create", f"cannot create QuickBooks item {item.name!r}: {why}")


def _no_terms(name: str) -> Violation:
    return Violation(
        "payment_terms", "terms_exist", f"QuickBooks has no active terms named {name!r}"
    )


def _no_custom_field(name: str, company: Sequence[SalesCustomField]) -> Violation:
    on = [f.name for f in company if f.enabled]
    off = [f.name for f in company if not f.enabled]
    has = ", ".join(repr(n) for n in on) if on else "none"
    message = f"QuickBooks has no enabled invoice custom field named {name!r}; enabled: {has}"
    if off:
        message += "; defined but not enabled: " + ", ".join(repr(n) for n in off)
    return Violation(f"custom_fields.{name}", "custom_field_exists", message)


def _entity(object_type: ObjectType) -> str:
    if object_type not in _ENTITY:
        raise ValueError(f"QuickBooks holds no {object_type} records")
    return _ENTITY[object_type]


# --- webhooks ------------------------------------------------------------------------


class _CloudEvent(BaseModel):
    """One event of the CloudEvents payload, mandatory from 15 May 2026 [Q12]."""

    specversion: str
    id: str = Field(min_length=1)
    type: str  # qbo.<entity>.<verb>.v<n>, e.g. qbo.customer.created.v1
    time: datetime
    intuitentityid: str = Field(min_length=1)
    intuitaccountid: str = Field(min_length=1)  # the company (realm) it happened in


class _LegacyEntity(BaseModel):
    name: str
    id: str = Field(min_length=1)
    operation: str
    lastUpdated: datetime


class _LegacyDataChange(BaseModel):
    entities: list[_LegacyEntity]


class _LegacyNotification(BaseModel):
    realmId: str
    dataChangeEvent: _LegacyDataChange


class _LegacyPayload(BaseModel):
    """``{"eventNotifications": [{realmId, dataChangeEvent: {entities: […]}}]}`` [Q12]."""

    eventNotifications: list[_LegacyNotification]


_CLOUD_EVENTS = TypeAdapter(list[_CloudEvent])


def _kind(operation: str) -> ChangeKind:
    """Create/created → CREATED, Delete/deleted → DELETED; Update, Merge, Void and
    Emailed change a record the engine re-reads anyway → UPDATED."""
    verb = operation.lower()
    if verb.startswith("create"):
        return ChangeKind.CREATED
    if verb.startswith("delete"):
        return ChangeKind.DELETED
    return ChangeKind.UPDATED


class QuickBooksWebhooks:
    """``WebhookReceiver`` for Intuit webhooks, both payload shapes.

    An app's webhook carries the events of every company connected to it [Q12]; a
    connection takes only its own company's (``realm_id``), so a delivery of another
    company's changes never becomes this connection's events.
    """

    system = "quickbooks"

    def __init__(self, verifier_token: Callable[[], str], realm_id: Callable[[], str]) -> None:
        self._verifier_token = verifier_token
        self._realm_id = realm_id

    def verify(self, request: InboundWebhook) -> None:
        """``intuit-signature`` = base64(HMAC-SHA256(key=verifier token, msg=raw body)) [Q3]."""
        require_body_hmac(request, "intuit-signature", self._verifier_token())

    def answer(self, request: InboundWebhook, enqueued: int) -> WebhookAnswer:
        return enqueued_answer(enqueued)

    def normalize(self, request: InboundWebhook, connection_id: str) -> list[ChangeEvent]:
        """Customer, Invoice, Payment, CreditMemo, RefundReceipt and Item events;
        other entities are dropped."""
        payload = request.payload()
        try:
            if isinstance(payload, list):
                return list(self._cloud_events(payload, connection_id))
            return list(self._legacy_events(payload, connection_id))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise WebhookRejected(400, f"unrecognised payload at {where}: {first['msg']}") from exc

    def _cloud_events(self, payload: list[Any], connection_id: str) -> Iterator[ChangeEvent]:
        realm = self._realm_id()
        for event in _CLOUD_EVENTS.validate_python(payload):
            parts = event.type.split(".")
            found = _WEBHOOK_ENTITIES.get(parts[1]) if len(parts) >= 3 else None
            if parts[0] != "qbo" or found is None or event.intuitaccountid != realm:
                continue
            object_type, entity = found
            yield ChangeEvent(
                connection_id=connection_id,
                source="quickbooks",
                object_type=object_type,
                record_id=port_id(entity, event.intuitentityid),
                event_id=event.id,
                kind=_kind(parts[2]),
                occurred_at=event.time,
                version=epoch_ms(event.time),
            )

    def _legacy_events(self, payload: Any, connection_id: str) -> Iterator[ChangeEvent]:
        realm = self._realm_id()
        for notification in _LegacyPayload.model_validate(payload).eventNotifications:
            if notification.realmId != realm:
                continue
            for entity in notification.dataChangeEvent.entities:
                found = _WEBHOOK_ENTITIES.get(entity.name.lower())
                if found is None:
                    continue
                object_type, name = found
                version = epoch_ms(entity.lastUpdated)
                yield ChangeEvent(
                    connection_id=connection_id,
                    source="quickbooks",
                    object_type=object_type,
                    record_id=port_id(name, entity.id),
                    # No event id in this shape: the change itself identifies it.
                    event_id=":".join(
                        (notification.realmId, entity.name, entity.id, entity.operation)
                    )
                    + f":{version}",
                    kind=_kind(entity.operation),
                    occurred_at=entity.lastUpdated,
                    version=version,
                )


# --- factories -------------------------------------------------------------------------


def build_quickbooks(
    *,
    api_url: str,
    token_url: str,
    secrets: SecretStore,
    secret_id: str,
    lock: Lock,
    budget: CallBudget,
    transport: httpx.BaseTransport | None = None,
    deadline: Deadline | None = None,
) -> QuickBooksAccounting:
    """The connector for the company named by ``realm_id`` in the secret.

    The secret also holds the OAuth client and rotating refresh token
    (``RotatingOAuth2``). Both API clients share the per-realm budget keys; the
    batch one adds the 40 batch calls/min budget.
    """
    realm_id = required(secrets.read(secret_id), secret_id, "realm_id")
    auth = RotatingOAuth2(
        secrets=secrets,
        secret_id=secret_id,
        lock=lock,
        token_url=token_url,
        token_http=httpx.Client(transport=transport, timeout=15.0),
    )
    client = partial(
        ApiClient,
        vendor="quickbooks",
        base_url=f"{api_url.rstrip('/')}/v3/company/{realm_id}",
        auth=auth,
        classify=classify,
        budget=budget,
        budget_key=f"quickbooks:{realm_id}",
        headers=JSON_HEADERS,
        transport=transport,
        deadline=deadline,
    )
    return QuickBooksAccounting(
        client(limits=CALL_LIMITS),
        realm_id=realm_id,
        batch_api=client(limits=(*CALL_LIMITS, BATCH_CALL_LIMIT)),
    )


def quickbooks_webhooks(secrets: SecretStore, secret_id: str) -> QuickBooksWebhooks:
    """Reads the verifier token on each verification, so a rotated one takes effect."""
    return QuickBooksWebhooks(
        secret_value(secrets, secret_id, "verifier_token"),
        secret_value(secrets, secret_id, "realm_id"),
    )
