"""Xero (Accounting API 2.0): contacts and invoices out, webhooks in.

Mostly declarations over ``shared.connectors.http.ApiClient``: how to read Xero's
answers (``classify``), its documented limits, and how canonical records become
Xero Contacts and ACCREC Invoices. Facts are cited as [Xn]:

* [X1] OAuth 2, refresh tokens, the ``xero-tenant-id`` header:
  https://developer.xero.com/documentation/guides/oauth2/auth-flow
* [X2] 401/403 answers, a missing or disconnected tenant:
  https://developer.xero.com/documentation/guides/oauth2/troubleshooting
* [X3] limits per tenant (60/min, 5,000/day, 5 at once), 429 and Retry-After:
  https://developer.xero.com/documentation/guides/oauth2/limits and
  https://developer.xero.com/faq/limits
* [X4] ``Idempotency-Key`` on PUT/POST:
  https://developer.xero.com/documentation/guides/idempotent-requests/idempotency;
  "128 character max." (the header's description in Xero's OpenAPI spec,
  https://github.com/XeroAPI/Xero-OpenAPI/blob/master/xero_accounting.yaml)
* [X5] JSON on request, MS-JSON dates, the ``where`` filter:
  https://developer.xero.com/documentation/api/accounting/requests-and-responses
* [X6] 400 ``ValidationException`` (ErrorNumber 10) with ``Elements[].ValidationErrors``,
  404: https://developer.xero.com/documentation/api/accounting/responsecodes
* [X7] Contacts: https://developer.xero.com/documentation/api/accounting/contacts
* [X8] Invoices: https://developer.xero.com/documentation/api/accounting/invoices
* [X9] Items: https://developer.xero.com/documentation/api/accounting/items
* [X10] unit amounts to 4 decimals with ``unitdp=4``, line amounts, tax and totals
  to 2: https://developer.xero.com/documentation/guides/how-to-guides/rounding-in-xero
* [X11] line amount types: https://developer.xero.com/documentation/api/accounting/types
* [X12] webhooks, ``x-xero-signature``, Intent to Receive:
  https://developer.xero.com/documentation/guides/webhooks/overview and
  https://developer.xero.com/documentation/guides/webhooks/configuring-your-server
* [X13] Payments: https://developer.xero.com/documentation/api/accounting/payments
* [X14] the organisation's base currency:
  https://developer.xero.com/documentation/api/accounting/organisation
* [X15] Credit notes, their ``Allocations`` and refund ``Payments``:
  https://developer.xero.com/documentation/api/accounting/creditnotes

Writes are exactly-once through Xero's ``Idempotency-Key`` [X4]: every PUT/POST
carries one derived from the engine's idempotency key, so a write retried after a
lost response is answered with the stored response instead of run again. Xero
keeps no version check on updates: the last write wins, and the version this
connector reports is the record's ``UpdatedDateUTC`` in epoch milliseconds.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from shared.connectors.auth import RotatingOAuth2, require_body_hmac, required, secret_value
from shared.connectors.catalog import CatalogItem, ItemCatalog
from shared.connectors.http import (
    ApiClient,
    CallLimit,
    Classified,
    Deadline,
    ResponseAction,
    bounded_key,
    json_object,
    retry_after_seconds,
)
from shared.connectors.times import epoch_ms
from shared.errors import (
    AlreadyExists,
    NotFound,
    Permanent,
    RecordInvalid,
    Violation,
    WebhookRejected,
)
from shared.models import (
    ChangeEvent,
    ChangeKind,
    CustomerStanding,
    Invoice,
    InvoiceLine,
    InvoiceStanding,
    ObjectType,
    Party,
    TaxTreatment,
)
from shared.money import json_number, minor_units, round_half_up
from shared.ports import (
    BY_DISPLAY_NAME,
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
)

# --- declarations -----------------------------------------------------------------

API_PATH = "/api.xro/2.0"
# Per tenant: 60 calls a minute, 5,000 a day and 5 in progress at once [X3]; the
# minute limit is budgeted under one key per tenant ("Rate limits apply to each
# connection"). The app-wide 10,000 a minute is far above what that lets through.
MINUTE_LIMIT = CallLimit(60, 60.0)
# The day limit is declared but not budgeted: a CallBudget paces calls evenly, with
# no burst, and 5,000 a day paced evenly is one call every 18 s whatever the hour.
# Xero's 429 for it carries a Retry-After [X3], which sends the message back to
# the queue until the day's window reopens.
DAY_LIMIT = CallLimit(5000, 86_400.0)
CALL_LIMITS = (MINUTE_LIMIT,)
# A CallBudget paces a rate and holds no concurrency slot, so the concurrent limit
# is not enforced before the call either: its 429 comes without Retry-After [X3]
# and ``ApiClient`` backs off and tries again.
CONCURRENT_CALLS = 5
IDEMPOTENCY_KEY_MAX = 128  # [X4]
# Unit amounts and quantities to 4 decimals (``unitdp=4``); line amounts, tax and
# totals "will remain at two decimal places", rounded half up [X10].
UNIT_DECIMALS = 4
AMOUNT_DECIMALS = 2
UNITDP = {"unitdp": str(UNIT_DECIMALS)}
INVOICE_NUMBER_MAX = 255  # InvoiceNumber "(max length = 255)" [X8]
ITEM_CODE_MAX = 30  # an item's Code [X9]
ITEM_NAME_MAX = 50  # an item's Name [X9]
CONTACT_NAME_MAX = 255  # Contact Name "(max length = 255)" [X7]
INVOICE_TYPE = "ACCREC"  # a sales invoice [X8]
CREDIT_NOTE_TYPE = "ACCRECCREDIT"  # a sales credit note [X15]
# A sales credit note moves money for its customer (allocated to invoices or refunded):
# the ports count it among the PAYMENTs, named ``CreditNote-<CreditNoteID>`` so its id
# never meets a payment's (``credit_note_port_id``).
CREDIT_NOTE = "CreditNote"
# A CRM's line item prices are net of tax, before any sales tax is added:
# "Exclusive" has Xero add each line's tax on top, per line, rounded [X10, X11].
# "Inclusive" would read the prices as gross and "NoTax" would drop the sales tax
# the organisation charges.
LINE_AMOUNT_TYPES = "Exclusive"
# New invoices wait for a person to approve them in Xero; updates leave the status
# as that person set it.
NEW_INVOICE_STATUS = "DRAFT"
# A line without an item needs an account; "200" is Sales in Xero's demo company.
DEFAULT_SALES_ACCOUNT = "200"
# The neutral tax codes in a company's own tax types ("Tax on Sales", "Tax Exempt"):
# https://developer.xero.com/documentation/api/accounting/types#tax-types
DEFAULT_TAX_TYPES: Mapping[str, str] = {
    TaxTreatment.TAXABLE: "OUTPUT",
    TaxTreatment.EXEMPT: "NONE",
}
VALIDATION_EXCEPTION = "10"  # ErrorNumber of a ValidationException [X6]
DELETED = "DELETED"
JSON_HEADERS = {"Accept": "application/json"}  # else Xero answers XML [X5]

_COLLECTION = {ObjectType.CUSTOMER: "Contacts", ObjectType.INVOICE: "Invoices"}
_ADDRESS_FIELDS = {
    "line1": "AddressLine1",
    "line2": "AddressLine2",
    "city": "City",
    "region": "Region",
    "postal_code": "PostalCode",
    "country": "Country",
}
_MS_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")
_NET_DAYS = re.compile(r"net\s*(\d{1,3})")


def credit_note_port_id(credit_note_id: str) -> str:
    """The id the ports know a credit note by, in its webhook events and in the change
    feed alike: the way back finds a webhook's record in the feed by this id."""
    return f"{CREDIT_NOTE}-{credit_note_id}"


# A webhook's category → the port's object type, and the id the ports know its
# resource by [X12].
_WEBHOOK_CATEGORIES: dict[str, tuple[ObjectType, Callable[[str], str]]] = {
    "CONTACT": (ObjectType.CUSTOMER, str),
    "INVOICE": (ObjectType.INVOICE, str),
    "CREDITNOTE": (ObjectType.PAYMENT, credit_note_port_id),
}


# --- reading Xero's answers --------------------------------------------------------


def _updated_ms(value: Any) -> int:
    """``UpdatedDateUTC``: ``/Date(1573755038314+0000)/`` in JSON answers [X5], whose
    number is UTC milliseconds whatever the offset; an ISO form is read as UTC."""
    if not isinstance(value, str):
        raise ValueError("UpdatedDateUTC is not a string")
    match = _MS_DATE.match(value.strip())
    if match:
        return int(match.group(1))
    return epoch_ms(datetime.fromisoformat(value.strip().replace("Z", "+00:00")))


UpdatedMs = Annotated[int, BeforeValidator(_updated_ms)]


class _Contact(BaseModel):
    ContactID: str = Field(min_length=1)
    UpdatedDateUTC: UpdatedMs

    def ref(self) -> TargetRef:
        return TargetRef(
            id=self.ContactID,
            version=str(self.UpdatedDateUTC),
            changed_at_ms=self.UpdatedDateUTC,
        )


class ListedContact(_Contact):
    """A contact as a list of contacts gives it: what names and reaches the customer."""

    Name: str
    EmailAddress: str | None = None  # absent, or empty, when the contact has none


class _Invoice(BaseModel):
    InvoiceID: str = Field(min_length=1)
    UpdatedDateUTC: UpdatedMs
    Status: str = ""

    def ref(self) -> TargetRef:
        return TargetRef(
            id=self.InvoiceID,
            version=str(self.UpdatedDateUTC),
            changed_at_ms=self.UpdatedDateUTC,
        )


class _Item(BaseModel):
    ItemID: str = Field(min_length=1)
    Code: str = Field(min_length=1)
    Name: str = ""


class _Contacts(BaseModel):
    Contacts: list[_Contact]


class _Invoices(BaseModel):
    Invoices: list[_Invoice]


class _Items(BaseModel):
    Items: list[_Item]


_Model = TypeVar("_Model", bound=BaseModel)


class _ValidationError(BaseModel):
    Message: str = ""


class _Element(BaseModel):
    ValidationErrors: list[_ValidationError] = Field(default_factory=list)


class _ApiException(BaseModel):
    """A 400's body: ``ErrorNumber``, ``Type``, ``Message`` and, for a
    ValidationException, the failed ``Elements`` with their messages [X6]."""

    model_config = ConfigDict(coerce_numbers_to_str=True)

    ErrorNumber: str = ""
    Type: str = ""
    Message: str = ""
    Elements: list[_Element] = Field(default_factory=list)

    def describe(self) -> str:
        messages = [e.Message for el in self.Elements for e in el.ValidationErrors if e.Message]
        return "; ".join(dict.fromkeys(messages)) or self.Message or self.Type


class _Problem(BaseModel):
    """A 401/403's body (``Title``, ``Detail``: e.g. AuthenticationUnsuccessful) [X2]."""

    Title: str = ""
    Detail: str = ""

    def describe(self) -> str:
        return self.Detail or self.Title


def _error_text(response: httpx.Response) -> tuple[str, str]:
    """What an error answer says, and Xero's ErrorNumber when it has one.

    404s come as plain text and 429s as a form-encoded line [X3, X6]: only a JSON
    object is read as a document.
    """
    try:
        body = response.json()
    except ValueError:
        return response.text[:200], ""
    if not isinstance(body, dict):
        return response.text[:200], ""
    try:
        if "Detail" in body or "Title" in body:
            return _Problem.model_validate(body).describe(), ""
        error = _ApiException.model_validate(body)
    except ValidationError:
        return response.text[:200], ""
    return error.describe(), error.ErrorNumber


def classify(response: httpx.Response) -> Classified:
    """Xero's answers as ``ApiClient`` actions.

    A 429 waits out ``Retry-After`` when Xero sends one (the minute and day limits)
    and backs off when it does not (the concurrent limit) [X3]; its code is the
    ``X-Rate-Limit-Problem``. A 401 reaching here is the second one: ``RotatingOAuth2``
    already refreshed and retried once. A 403 is a tenant that is not (or no longer)
    connected [X2]: a person must reconnect it. A 400 is Xero refusing the request
    for good, with its ErrorNumber (10 for a ValidationException) as the code [X6].
    """
    status = response.status_code
    if status == 429:
        problem = response.headers.get("x-rate-limit-problem") or "429"
        return Classified(
            ResponseAction.RATE_LIMITED,
            f"rate limit exceeded ({problem})",
            problem,
            retry_after_seconds(response),
        )
    if status >= 500 and status != 501:  # 501: a method Xero does not implement [X6]
        return Classified(ResponseAction.RETRY, _error_text(response)[0] or "server error")
    message, number = _error_text(response)
    if status in (401, 403):
        return Classified(
            ResponseAction.AUTH_FAILED, f"authentication failed: {message}", str(status)
        )
    if status == 404:
        return Classified(ResponseAction.NOT_FOUND, "not found", "404")
    if status >= 400:
        return Classified(ResponseAction.FAIL, message, number or str(status))
    return Classified(ResponseAction.SUCCESS)


def _read(response: httpx.Response, envelope: type[_Model]) -> _Model:
    return parse(envelope, json_object(response, "xero"))


def parse(model: type[_Model], body: Any) -> _Model:
    """Xero's answer (or a record of it) as ``model``; one without what it needs is
    refused for good, naming the first field missing or wrong."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise Permanent(f"xero answered without a usable {where}: {first['msg']}") from exc


# --- writing Xero's requests ---------------------------------------------------------


def idempotency_key(key: str) -> str:
    """The ``Idempotency-Key`` header for an engine key: at most 128 characters [X4]
    and plain ASCII (a header value); a longer or other key goes as its digest."""
    if not (key.isascii() and key.isprintable()):
        key = hashlib.sha256(key.encode()).hexdigest()
    return bounded_key(key, IDEMPOTENCY_KEY_MAX)


def literal(value: str) -> str:
    """A string literal of the ``where`` filter: double quotes, backslash escapes [X5]."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def terms_days(name: str) -> int | None:
    """Days to pay for a canonical terms name: "Net N" → N, "Due on receipt" → 0.

    Xero has no named terms to refer to: a contact holds its sales terms as a day
    count (``PaymentTerms.Sales``) [X7] and an invoice only its ``DueDate`` [X8].
    """
    text = " ".join(name.split()).lower()
    if text == "due on receipt":
        return 0
    match = _NET_DAYS.fullmatch(text)
    return int(match.group(1)) if match else None


def _unknown_terms(name: str) -> Violation:
    return Violation(
        "payment_terms",
        "terms_known",
        f'no payment terms named {name!r}: Xero takes "Net <days>" or "Due on receipt"',
    )


def _present(model: BaseModel) -> dict[str, Any]:
    """Fields the mapping set with a value: selective sync writes these and no others."""
    return model.model_dump(exclude_unset=True, exclude_none=True)


# --- the accounting target ------------------------------------------------------------


class XeroAccounting:
    """``AccountingTarget`` and ``AccountingLedger`` for one Xero organisation (tenant).

    ``api`` is rooted at ``/api.xro/2.0`` and sends the tenant's ``xero-tenant-id``
    (``build_xero`` wires it).
    """

    system = "xero"
    # A contact's name is unique among active contacts [X7]: the create finds it.
    checked_on_create = frozenset({BY_DISPLAY_NAME})

    def __init__(
        self,
        api: ApiClient,
        *,
        tenant_id: str,
        sales_account_code: str = DEFAULT_SALES_ACCOUNT,
        tax_types: Mapping[str, str] = DEFAULT_TAX_TYPES,
        today: Callable[[], date] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tenant_id = tenant_id  # the organisation this adapter writes to
        self._api = api
        self._sales_account_code = sales_account_code
        self._tax_types = tax_types
        self._today = today or (lambda: datetime.now(UTC).date())
        self._catalog = ItemCatalog(self._catalog_items, clock=clock)
        self._base_currency: str | None = None

    # --- reads --------------------------------------------------------------------------

    def find_customer(self, *, email: str | None, display_name: str | None) -> TargetRef | None:
        """A contact by email, else by name (each when given): both are Xero's
        optimised ``where`` filters [X7]. Archived contacts are left out unless asked
        for [X7]."""
        if email:
            found = self._contacts(f"EmailAddress=={literal(email)}")
            if found:
                return found[0].ref()
        if display_name:
            found = self._contacts(f"Name=={literal(display_name)}")
            if found:
                return found[0].ref()
        return None

    def find_item(self, *, name: str, sku: str | None) -> str | None:
        """An item's ``Code`` by SKU (the item code), else by name, from the item list
        read once and kept (``ItemCatalog``).

        The Code, not the ItemID: invoice lines name their item by ``ItemCode`` [X8],
        and Code is unique in an organisation [X9], so a line needs no second lookup.
        """
        return self._catalog.find(name=name, sku=sku)

    def _catalog_items(self) -> Iterator[CatalogItem]:
        """Every item: ``GET /Items`` is not paged [X9]."""
        for item in _read(self._api.request("GET", "/Items"), _Items).Items:
            yield CatalogItem(ref=item.Code, name=item.Name, sku=item.Code)

    def find_invoice(self, doc_number: str) -> TargetRef | None:
        """The sales invoice with this number; a deleted one frees its number [X8]."""
        where = f"Type=={literal(INVOICE_TYPE)} AND InvoiceNumber=={literal(doc_number)}"
        response = self._api.request("GET", "/Invoices", params={"where": where})
        live = [row for row in _read(response, _Invoices).Invoices if row.Status != DELETED]
        return live[0].ref() if live else None

    def current(self, object_type: ObjectType, target_id: str) -> TargetRef | None:
        """The record's ``UpdatedDateUTC``; None when it is gone (see ``read``)."""
        record = self.read(object_type, target_id)
        if record is None:
            return None
        model = _Contact if object_type is ObjectType.CUSTOMER else _Invoice
        try:
            return model.model_validate(record).ref()
        except ValidationError as exc:
            raise Permanent(f"xero answered a {object_type} without its id or date") from exc

    def read(self, object_type: ObjectType, target_id: str) -> dict[str, Any] | None:
        """The contact or invoice; None when it is unknown (404) or a deleted invoice
        (one can only be deleted while a draft, and stays so [X8])."""
        collection = _collection(object_type)
        try:
            rows = self.get(f"/{collection}/{quote(target_id, safe='')}").get(collection)
        except NotFound:
            return None
        live = [
            row
            for row in (rows if isinstance(rows, list) else [])
            if isinstance(row, dict) and row.get("Status") != DELETED
        ]
        return live[0] if live else None

    def get(
        self,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """The JSON object a ``GET`` of ``path`` answers."""
        response = self._api.request("GET", path, params=params, headers=headers)
        return json_object(response, "xero")

    def base_currency(self) -> str:
        """The organisation's ``BaseCurrency``, read once per instance [X14]."""
        if self._base_currency is None:
            rows = self.get("/Organisation").get("Organisations")
            first = rows[0] if isinstance(rows, list) and rows else None
            currency = first.get("BaseCurrency") if isinstance(first, dict) else None
            if not isinstance(currency, str) or not currency:
                raise Permanent("xero answered GET /Organisation without its BaseCurrency")
            self._base_currency = currency
        return self._base_currency

    # --- ledger (``AccountingLedger``; the code is in ``ledger.py``) --------------------

    def invoice_standing(self, target_id: str, *, today: date) -> InvoiceStanding | None:
        from shared.connectors.xero import ledger  # it imports this module

        return ledger.invoice_standing(self, target_id, today=today)

    def customer_standing(self, target_id: str, *, today: date) -> CustomerStanding | None:
        from shared.connectors.xero import ledger

        return ledger.customer_standing(self, target_id, today=today)

    def changed_since(
        self, object_types: Sequence[ObjectType], since_ms: int
    ) -> Iterator[TargetChange]:
        from shared.connectors.xero import ledger

        return ledger.changed_since(self, object_types, since_ms)

    def falling_due(self, since: date, until: date) -> Iterator[TargetChange]:
        from shared.connectors.xero import ledger

        return ledger.falling_due(self, since, until)

    def known_customers(self, *, changed_since: datetime | None = None) -> Iterator[KnownCustomer]:
        from shared.connectors.xero import ledger

        return ledger.known_customers(self, changed_since)

    def payload(self, record: Party | Invoice, *, new: bool) -> dict[str, Any]:
        if isinstance(record, Party):
            return self._contact_body(record)
        return self._invoice_body(record, new=new)

    def create_item(self, item: NewItem, *, idempotency_key: str) -> str:
        """A sold item coded by the line's SKU, else its name, posting its sales to the
        mapping's account (else the connector's sales account) [X9].

        Code is unique in an organisation and at most 30 characters, Name at most 50
        [X9]; a create under a taken Code is refused, and the item holding it is
        ``AlreadyExists``' holder. Returns the Code: what invoice lines name.
        """
        code = item.sku or item.name
        too_long = [
            f"its {what} {value!r} is longer than {limit} characters"
            for what, value, limit in (
                ("code", code, ITEM_CODE_MAX),
                ("name", item.name, ITEM_NAME_MAX),
            )
            if len(value) > limit
        ]
        if too_long:
            raise RecordInvalid(
                [
                    Violation(
                        "items",
                        "item_create",
                        f"cannot create Xero item {item.name!r}: {'; '.join(too_long)}",
                    )
                ]
            )
        sales: dict[str, Any] = {"AccountCode": item.income_account or self._sales_account_code}
        if item.unit_price is not None:
            sales["UnitPrice"] = json_number(item.unit_price, "unit_price")
        element: dict[str, Any] = {"Code": code, "Name": item.name, "SalesDetails": sales}
        if item.description:
            element["Description"] = item.description
        try:
            made = self._put_item(element, idempotency_key)
        except Permanent as exc:
            if not (exc.code == VALIDATION_EXCEPTION and "already exists" in str(exc)):
                raise
            self._catalog.forget()  # the list as it is now, with the holder in it
            holder = self._catalog.find(name=item.name, sku=code)
            if holder is None:
                raise
            raise AlreadyExists(
                str(exc), holder=TargetRef(id=holder, version=""), rule=BY_ITEM_NAME, code=exc.code
            ) from exc
        self._catalog.add(CatalogItem(ref=made.Code, name=made.Name, sku=made.Code))
        return made.Code

    # --- writes ---------------------------------------------------------------------------

    def upsert_customer(
        self, party: Party, *, existing: TargetRef | None, idempotency_key: str
    ) -> TargetRef:
        """Create the contact (PUT), or update ``existing`` (POST) with the Party's set fields.

        Xero keeps what a POST leaves out [X7]. A create refused because the name is
        taken (a contact's name is unique among active contacts [X7]) raises
        ``AlreadyExists`` with that contact, for the engine to take as a match.
        """
        body = self._contact_body(party)
        if existing is not None:
            path = f"/Contacts/{quote(existing.id, safe='')}"
            return self._write("POST", path, body, idempotency_key)
        try:
            return self._write("PUT", "/Contacts", body, idempotency_key)
        except Permanent as exc:
            if not _name_taken(exc):
                raise
            found = self._contacts(f"Name=={literal(party.display_name)}")
            if not found:
                raise
            raise AlreadyExists(
                str(exc), holder=found[0].ref(), rule=BY_DISPLAY_NAME, code=exc.code
            ) from exc

    def upsert_invoice(
        self, invoice: Invoice, *, existing: TargetRef | None, idempotency_key: str
    ) -> TargetRef:
        """Create the invoice (PUT), or update ``existing`` (POST).

        ``LineItems`` always goes whole and without ``LineItemID``s: Xero deletes the
        lines an update leaves out and adds those without an id [X8], so the
        invoice's lines become exactly these.
        """
        body = self._invoice_body(invoice, new=existing is None)
        path = "/Invoices" if existing is None else f"/Invoices/{quote(existing.id, safe='')}"
        try:
            return self._write("PUT" if existing is None else "POST", path, body, idempotency_key)
        except Permanent:
            # Perhaps an item we keep was archived or deleted since we read it.
            self._catalog.forget()
            raise

    # --- payloads ---------------------------------------------------------------------

    def _contact_body(self, party: Party) -> dict[str, Any]:
        """Party → Contact [X7]. ``Name`` is always sent (a contact is found and shown
        by it); ``company_name``, ``credit_limit`` and ``kind`` have no Contact field
        and are not written. The billing address is the POBOX address, the one Xero
        prints on invoices; a phone goes whole into the DEFAULT phone's number."""
        given = _present(party)
        violations: list[Violation] = []
        if len(party.display_name) > CONTACT_NAME_MAX:
            violations.append(
                Violation(
                    "display_name",
                    "max_length",
                    f"Xero keeps at most {CONTACT_NAME_MAX} characters of a contact name",
                )
            )
        body: dict[str, Any] = {"Name": party.display_name}
        simple = {
            "given_name": "FirstName",
            "family_name": "LastName",
            "email": "EmailAddress",
            "tax_id": "TaxNumber",
            "currency": "DefaultCurrency",
        }
        for field, key in simple.items():
            if field in given:
                body[key] = given[field]
        if "phone" in given:
            body["Phones"] = [{"PhoneType": "DEFAULT", "PhoneNumber": given["phone"]}]
        if "billing_address" in given:
            address = {_ADDRESS_FIELDS[k]: v for k, v in given["billing_address"].items()}
            body["Addresses"] = [{"AddressType": "POBOX", **address}]
        if "payment_terms" in given:
            days = terms_days(given["payment_terms"])
            if days is None:
                violations.append(_unknown_terms(given["payment_terms"]))
            else:
                body["PaymentTerms"] = {"Sales": {"Day": days, "Type": "DAYSAFTERBILLDATE"}}
        if violations:
            raise RecordInvalid(violations)
        return body

    def _invoice_body(self, invoice: Invoice, *, new: bool) -> dict[str, Any]:
        """Invoice → ACCREC Invoice [X8].

        Payment terms become the ``DueDate`` they give (Xero invoices hold no terms),
        counted from the invoice date; a new invoice without one is dated today, as
        Xero would date it, so that the two agree. An update without a date keeps
        Xero's due date. ``memo`` is not written: Xero's ``Reference`` prints on the
        customer's invoice, and CRM notes are internal. Everything Xero cannot take
        is refused at once, every field named.
        """
        violations: list[Violation] = []
        body: dict[str, Any] = {
            "Type": INVOICE_TYPE,
            "Contact": {"ContactID": invoice.customer_ref},
            "CurrencyCode": invoice.currency,
            "LineAmountTypes": LINE_AMOUNT_TYPES,
        }
        if new:
            body["Status"] = NEW_INVOICE_STATUS
        dated = invoice.txn_date
        if dated is None and new and invoice.payment_terms is not None:
            dated = self._today()
        if dated is not None:
            body["Date"] = dated.isoformat()
        if invoice.due_date is not None:
            body["DueDate"] = invoice.due_date.isoformat()
        if invoice.payment_terms is not None:
            days = terms_days(invoice.payment_terms)
            if days is None:
                violations.append(_unknown_terms(invoice.payment_terms))
            elif "DueDate" not in body and dated is not None:
                body["DueDate"] = (dated + timedelta(days=days)).isoformat()
        if invoice.doc_number is not None:
            if len(invoice.doc_number) > INVOICE_NUMBER_MAX:
                violations.append(
                    Violation(
                        "doc_number",
                        "max_length",
                        f"Xero keeps at most {INVOICE_NUMBER_MAX} characters of an invoice "
                        f"number; this one has {len(invoice.doc_number)}",
                    )
                )
            body["InvoiceNumber"] = invoice.doc_number
        lines: list[dict[str, Any]] = []
        for index, line in enumerate(invoice.lines):
            written, refused = self._line(index, line, invoice.currency)
            lines.append(written)
            violations.extend(refused)
        if violations:
            raise RecordInvalid(violations)
        body["LineItems"] = lines
        return body

    def _line(
        self, index: int, line: InvoiceLine, currency: str
    ) -> tuple[dict[str, Any], list[Violation]]:
        """One line: the item by code or else the sales account, the line's own
        discount, its tax type, 4-decimal quantity and unit amount.

        crmsync's rule (docs/vendors/xero.md): a line is quantity × price rounded
        half up to the currency's ISO 4217 minor unit, its discount rounded the same
        way. Xero computes LineAmount itself, at 2 decimals, from the 4-decimal
        quantity and unit amount less the discount [X10]. A line is written only when
        the two agree; otherwise it is refused, naming the field, rather than held
        at an amount nobody meant (a third decimal of a dinar, half a yen).
        """
        at = f"lines[{index}]"
        places = minor_units(currency)
        quantity = round_half_up(line.quantity, UNIT_DECIMALS, f"{at}.quantity")
        unit = round_half_up(line.unit_price, UNIT_DECIMALS, f"{at}.unit_price")
        discount = round_half_up(line.discount_amount, places, f"{at}.discount_amount")
        meant = round_half_up(line.amount, places, f"{at}.amount")
        held = round_half_up(quantity * unit, AMOUNT_DECIMALS, f"{at}.amount")
        violations: list[Violation] = []
        if discount != round_half_up(discount, AMOUNT_DECIMALS, f"{at}.discount_amount"):
            violations.append(
                Violation(
                    f"{at}.discount_amount",
                    "currency_precision",
                    f"Xero keeps amounts to {AMOUNT_DECIMALS} decimals; a discount of "
                    f"{discount} {currency} needs {places}",
                )
            )
        if meant != round_half_up(meant, AMOUNT_DECIMALS, f"{at}.amount"):
            violations.append(
                Violation(
                    f"{at}.amount",
                    "currency_precision",
                    f"Xero keeps line amounts to {AMOUNT_DECIMALS} decimals; "
                    f"{meant} {currency} needs {places}",
                )
            )
        elif held != meant:
            cut = "unit_price" if unit != line.unit_price else "quantity"
            if unit == line.unit_price and quantity == line.quantity:
                cut = "amount"  # whole: the currency has fewer decimals than Xero keeps
            violations.append(
                Violation(
                    f"{at}.{cut}",
                    "currency_precision",
                    f"Xero would hold {quantity} × {unit} as {held} {currency}, "
                    f"not {meant} ({places} decimals, {UNIT_DECIMALS} for quantity and price)",
                )
            )
        if quantity <= 0:
            violations.append(
                Violation(f"{at}.quantity", "positive", f"{line.quantity} is no quantity")
            )
        written: dict[str, Any] = {}
        description = line.description or (None if line.item_ref else line.name)
        if description:
            written["Description"] = description
        if line.item_ref:
            written["ItemCode"] = line.item_ref
        else:
            # Without an item Xero has no account to post the sale to (the item's
            # sales account otherwise) [X8].
            written["AccountCode"] = self._sales_account_code
        if not violations:
            written["Quantity"] = json_number(quantity, f"{at}.quantity")
            written["UnitAmount"] = json_number(unit, f"{at}.unit_price")
            if discount:
                written["DiscountAmount"] = json_number(discount, f"{at}.discount_amount")
        if line.tax_code:
            written["TaxType"] = self._tax_types.get(line.tax_code, line.tax_code)
        return written, violations

    # --- calls ------------------------------------------------------------------------

    def _write(self, method: str, path: str, element: dict[str, Any], key: str) -> TargetRef:
        """One element PUT or POSTed with its Idempotency-Key [X4]; invoices with
        ``unitdp=4`` so their unit amounts keep 4 decimals [X10]."""
        collection = path.strip("/").split("/")[0]
        response = self._api.request(
            method,
            path,
            params=UNITDP if collection == "Invoices" else None,
            json={collection: [element]},
            headers={"Idempotency-Key": idempotency_key(key)},
        )
        refs = (
            [row.ref() for row in _read(response, _Contacts).Contacts]
            if collection == "Contacts"
            else [row.ref() for row in _read(response, _Invoices).Invoices]
        )
        if len(refs) != 1:
            raise Permanent(f"xero answered a {method} {path} with {len(refs)} records, not 1")
        return refs[0]

    def _put_item(self, element: dict[str, Any], key: str) -> _Item:
        response = self._api.request(
            "PUT",
            "/Items",
            params=UNITDP,  # the item's UnitPrice keeps 4 decimals, as the lines' do [X10]
            json={"Items": [element]},
            headers={"Idempotency-Key": idempotency_key(key)},
        )
        made = _read(response, _Items).Items
        if len(made) != 1:
            raise Permanent(f"xero answered a PUT /Items with {len(made)} items, not 1")
        return made[0]

    def _contacts(self, where: str) -> list[_Contact]:
        response = self._api.request("GET", "/Contacts", params={"where": where})
        return _read(response, _Contacts).Contacts


def _name_taken(error: Permanent) -> bool:
    """The ValidationException Xero answers for a name held by another active contact:
    "The contact name … is already assigned to another contact." [X7]"""
    text = str(error)
    return (
        error.code == VALIDATION_EXCEPTION
        and "contact name" in text
        and "already assigned to another contact" in text
    )


def _collection(object_type: ObjectType) -> str:
    if object_type not in _COLLECTION:
        raise ValueError(f"Xero holds no {object_type} records for crmsync")
    return _COLLECTION[object_type]


# --- webhooks ------------------------------------------------------------------------


class _CreditNoteData(BaseModel):
    """A CREDITNOTE event's ``data``: the credit note's ``Type`` and ``Status`` [X12]."""

    Type: str = ""


class _Event(BaseModel):
    """One event of a delivery [X12]."""

    resourceUrl: str
    resourceId: str = Field(min_length=1, max_length=64)
    eventDateUtc: datetime
    eventType: str  # CREATE | UPDATE
    eventCategory: str  # CONTACT | INVOICE | CREDITNOTE (| SUBSCRIPTION, app store apps)
    tenantId: str
    tenantType: str = ""
    data: _CreditNoteData | None = None  # CREDITNOTE events only

    def of_supplier(self) -> bool:
        """A credit note of a supplier's (ACCPAYCREDIT): bills are not the CRM's."""
        return self.data is not None and self.data.Type.upper() not in ("", CREDIT_NOTE_TYPE)


class _Delivery(BaseModel):
    """``{"events": [...], "firstEventSequence", "lastEventSequence", "entropy"}``;
    Intent to Receive sends the same with no events [X12]."""

    events: list[_Event] | None
    firstEventSequence: int
    lastEventSequence: int
    entropy: str


def _kind(event_type: str) -> ChangeKind:
    verb = event_type.upper()
    if verb == "CREATE":
        return ChangeKind.CREATED
    if verb == "DELETE":
        return ChangeKind.DELETED
    return ChangeKind.UPDATED


class XeroWebhooks:
    """``WebhookReceiver`` for Xero webhooks, Intent to Receive included."""

    system = "xero"

    def __init__(self, webhook_key: Callable[[], str], tenant_id: Callable[[], str]) -> None:
        self._webhook_key = webhook_key
        self._tenant_id = tenant_id

    def verify(self, request: InboundWebhook) -> None:
        """``x-xero-signature`` = base64(HMAC-SHA256(key=webhook key, msg=raw body)) [X12].

        Intent to Receive checks exactly this: a wrongly signed request must get a
        401 [X12], which the ``WebhookRejected`` here becomes, with no body: Xero's
        guidelines for every answer ("There is no body in the response") hold for the
        401 too, and Intent to Receive fails one with a body.
        """
        try:
            require_body_hmac(request, "x-xero-signature", self._webhook_key())
        except WebhookRejected as wrong:
            raise WebhookRejected(wrong.status, wrong.reason, empty_answer=True) from None

    def answer(self, request: InboundWebhook, enqueued: int) -> WebhookAnswer:
        """An empty 200: what Intent to Receive requires of a correctly signed request
        (no body, no cookies) [X12], and all a delivery needs."""
        return WebhookAnswer(status=200, content_type="text/plain", body="")

    def normalize(self, request: InboundWebhook, connection_id: str) -> list[ChangeEvent]:
        """CONTACT, INVOICE and sales CREDITNOTE events of this connection's
        organisation; a credit note's is a PAYMENT named by ``credit_note_port_id``.

        A Xero app has one webhook for every organisation connected to it [X12]:
        events of other tenants belong to other connections and are dropped here.
        Intent to Receive (no events) normalizes to nothing.
        """
        payload = request.payload()
        try:
            delivery = _Delivery.model_validate(payload)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "the body"
            raise WebhookRejected(400, f"unrecognised payload at {where}: {first['msg']}") from exc
        return list(self._events(delivery, connection_id))

    def _events(self, delivery: _Delivery, connection_id: str) -> Iterator[ChangeEvent]:
        tenant = self._tenant_id().lower()
        for event in delivery.events or []:
            found = _WEBHOOK_CATEGORIES.get(event.eventCategory.upper())
            if found is None or event.tenantId.lower() != tenant or event.of_supplier():
                continue
            object_type, port_id = found
            version = epoch_ms(event.eventDateUtc)
            yield ChangeEvent(
                connection_id=connection_id,
                source="xero",
                object_type=object_type,
                record_id=port_id(event.resourceId),
                # No event id in Xero's payload: the change itself identifies it.
                event_id=":".join(
                    (event.tenantId, event.eventCategory, event.resourceId, event.eventType)
                )
                + f":{version}",
                kind=_kind(event.eventType),
                occurred_at=event.eventDateUtc,
                version=version,
            )


# --- factories -------------------------------------------------------------------------


def build_xero(
    *,
    api_url: str,
    token_url: str,
    secrets: SecretStore,
    secret_id: str,
    lock: Lock,
    budget: CallBudget,
    sales_account_code: str = DEFAULT_SALES_ACCOUNT,
    tax_types: Mapping[str, str] = DEFAULT_TAX_TYPES,
    transport: httpx.BaseTransport | None = None,
    deadline: Deadline | None = None,
) -> XeroAccounting:
    """The connector for the organisation named by ``tenant_id`` in the secret.

    The secret also holds the OAuth client and the rotating refresh token
    (``RotatingOAuth2``: Xero's refresh tokens are single-use [X1]). Every call
    carries ``xero-tenant-id`` [X1] and takes its slot from the tenant's budget.
    """
    tenant_id = required(secrets.read(secret_id), secret_id, "tenant_id")
    auth = RotatingOAuth2(
        secrets=secrets,
        secret_id=secret_id,
        lock=lock,
        token_url=token_url,
        token_http=httpx.Client(transport=transport, timeout=15.0),
    )
    api = ApiClient(
        vendor="xero",
        base_url=f"{api_url.rstrip('/')}{API_PATH}",
        auth=auth,
        classify=classify,
        limits=CALL_LIMITS,
        budget=budget,
        budget_key=f"xero:{tenant_id}",
        headers={**JSON_HEADERS, "xero-tenant-id": tenant_id},
        transport=transport,
        deadline=deadline,
    )
    return XeroAccounting(
        api, tenant_id=tenant_id, sales_account_code=sales_account_code, tax_types=tax_types
    )


def xero_webhooks(secrets: SecretStore, secret_id: str) -> XeroWebhooks:
    """Reads the webhook key and tenant on each delivery, so a rotated key takes effect."""
    return XeroWebhooks(
        secret_value(secrets, secret_id, "webhook_key"),
        secret_value(secrets, secret_id, "tenant_id"),
    )
