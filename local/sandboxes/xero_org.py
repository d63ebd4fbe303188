"""One Xero organisation as the Accounting API sees it: entities, validation, maths.

HTTP, OAuth, limits, idempotency and webhooks live in ``xero``; this module holds
the organisation's data and the rules Xero applies to it, apart from HTTP. Sources,
all developer.xero.com:

* object shapes: the Accounting OpenAPI spec (XeroAPI/Xero-OpenAPI
  ``xero_accounting.yaml``) and /documentation/api/accounting/{contacts,invoices,
  creditnotes,items,accounts,taxrates,currencies,organisation}; a credit note is
  entered, priced, approved and numbered as an invoice is (``Document``);
* dates and paging: /documentation/api/accounting/requests-and-responses;
* rounding: /documentation/guides/how-to-guides/rounding-in-xero (formerly
  /documentation/api-guides/rounding-in-xero);
* errors: /documentation/api/accounting/responsecodes.

Messages marked "(obs)" were seen in integrations' fixtures of real answers, not
in Xero's pages; the few this sandbox had to word itself are listed in
docs/vendors/xero.md.
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from local.sandboxes import xero_payments, xero_where

JsonObj = dict[str, Any]

SEED_AGE = timedelta(days=45)
PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
CENT = Decimal("0.01")
QUANTITY_PLACES = Decimal("0.0001")

_XERO_TIMEZONES = {
    "America/Los_Angeles": "PACIFICSTANDARDTIME",
    "America/New_York": "EASTERNSTANDARDTIME",
    "Europe/London": "GMTSTANDARDTIME",
    "Pacific/Auckland": "NEWZEALANDSTANDARDTIME",
    "Australia/Sydney": "AUSEASTERNSTANDARDTIME",
}
_CURRENCY_NAMES = {
    "USD": "United States Dollar",
    "GBP": "British Pound",
    "EUR": "Euro",
    "NZD": "New Zealand Dollar",
    "AUD": "Australian Dollar",
    "CAD": "Canadian Dollar",
}


class ElementError(Exception):
    """Validation errors of one element (``ValidationErrors[].Message``)."""

    def __init__(self, *messages: str) -> None:
        super().__init__("; ".join(messages))
        self.messages = list(messages)


class ApiError(Exception):
    """A refusal of the whole request: HTTP status and Xero's body (JSON or text)."""

    def __init__(self, status: int, body: JsonObj | str) -> None:
        super().__init__(f"{status} {body}")
        self.status = status
        self.body = body


def post_data_invalid(message: str) -> ApiError:
    # ErrorNumber 14 is what Xero answers when a body cannot be deserialised (obs).
    return ApiError(
        400, {"ErrorNumber": 14, "Type": "PostDataInvalidException", "Message": message}
    )


def query_parse_error(message: str) -> ApiError:
    # A bad ``where``/``order`` (obs: ErrorNumber 16, QueryParseException).
    return ApiError(400, {"ErrorNumber": 16, "Type": "QueryParseException", "Message": message})


def not_found() -> ApiError:
    # Plain text, not JSON: "Verified response from the live API" in pyxero's tests;
    # https://developer.xero.com/documentation/api/accounting/responsecodes lists 404.
    return ApiError(404, "The resource you're looking for cannot be found")


def not_implemented() -> ApiError:
    # 501 "The method you have called has not been implemented (e.g. POST Organisation)".
    return ApiError(
        501,
        {
            "ErrorNumber": 20,
            "Type": "ApiMethodNotImplementedException",
            "Message": "The Api Method called is not implemented",
        },
    )


# --- dates and numbers ------------------------------------------------------------


def ms_timestamp(at: float) -> str:
    """An instant in Microsoft JSON form, as ``UpdatedDateUTC`` carries it."""
    return f"/Date({round(at * 1000)}+0000)/"


def ms_day(day: date) -> str:
    """A calendar date as Xero renders ``Date``/``DueDate``: midnight UTC, MS form."""
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return f"/Date({round(midnight.timestamp() * 1000)}+0000)/"


def iso_seconds(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_MS_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")
_ISO_DATE = re.compile(r"^\d{4}-\d\d-\d\d(T\d\d:\d\d(:\d\d(\.\d+)?)?)?(Z|[+-]\d\d:?\d\d)?$")


def parse_day(value: Any, path: str) -> date:
    """``YYYY-MM-DD``, ``YYYY-MM-DDThh:mm:ss`` or ``/Date(ms)/`` as Xero accepts them."""
    text = str(value).strip()
    match = _MS_DATE.match(text)
    try:
        if match:
            return datetime.fromtimestamp(int(match.group(1)) / 1000, UTC).date()
        if _ISO_DATE.match(text):
            return datetime.fromisoformat(text.replace("Z", "+00:00")).date()
    except (ValueError, OverflowError):
        pass
    # The wording Xero gives a date it cannot read (obs, ErrorNumber 14).
    raise post_data_invalid(f"The string '{text}' is not a valid AllXsd value.")


def number(value: Any, path: str) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise _conversion(value, "System.Decimal", path)
    try:
        result = Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise _conversion(value, "System.Decimal", path) from exc
    if not result.is_finite() or abs(result) >= Decimal("1e15"):
        raise _conversion(value, "System.Decimal", path)
    return result


def round_to(value: Decimal, places: Decimal) -> Decimal:
    # Xero rounds half up: "2.165 rounded up to 2.17 and 2.164 will be rounded
    # down to 2.16" (Xero community manager, on tax per line).
    return value.quantize(places, ROUND_HALF_UP)


def _conversion(value: Any, type_name: str, path: str) -> ApiError:
    shown = json.dumps(value) if not isinstance(value, Decimal) else str(value)
    return post_data_invalid(
        f"Error converting value {shown} to type '{type_name}'. Path '{path}'."
    )


def truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


# --- entity kinds -----------------------------------------------------------------


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


@dataclass(frozen=True)
class Kind:
    """One Accounting API collection and what its paths allow (from the OpenAPI spec)."""

    name: str  # collection key and path segment, e.g. "Contacts"
    type_name: str  # the element type Xero names in errors, e.g. "Contact"
    id_field: str
    collection_methods: frozenset[str]
    item_methods: frozenset[str]
    fields: frozenset[str]
    default_order: str
    paged: bool = False
    modified_since: bool = False
    webhook_category: str | None = None
    scope: str = "accounting.settings"

    def knows(self, name: str) -> bool:
        return name.lower() in {f.lower() for f in self.fields}


_CONTACT_FIELDS = _words(
    "ContactID ContactNumber AccountNumber ContactStatus Name FirstName LastName CompanyNumber "
    "EmailAddress BankAccountDetails TaxNumber AccountsReceivableTaxType AccountsPayableTaxType "
    "Addresses Phones IsSupplier IsCustomer DefaultCurrency UpdatedDateUTC ContactGroups "
    "ContactPersons PaymentTerms HasAttachments HasValidationErrors Website XeroNetworkKey "
    "SalesDefaultAccountCode PurchasesDefaultAccountCode"
)
_INVOICE_FIELDS = _words(
    "Type InvoiceID InvoiceNumber Reference Contact Date DueDate Status LineAmountTypes LineItems "
    "SubTotal TotalTax Total TotalDiscount CurrencyCode CurrencyRate AmountDue AmountPaid "
    "AmountCredited FullyPaidOnDate UpdatedDateUTC SentToContact Payments IsDiscounted "
    "HasAttachments HasErrors Url BrandingThemeID ExpectedPaymentDate"
)
_ITEM_FIELDS = _words(
    "ItemID Code Name Description PurchaseDescription SalesDetails PurchaseDetails IsSold "
    "IsPurchased IsTrackedAsInventory UpdatedDateUTC"
)
_ACCOUNT_FIELDS = _words(
    "AccountID Code Name Type TaxType Status Description Class SystemAccount BankAccountNumber "
    "BankAccountType CurrencyCode EnablePaymentsToAccount ShowInExpenseClaims ReportingCode "
    "ReportingCodeName HasAttachments UpdatedDateUTC AddToWatchlist"
)
_CREDIT_NOTE_FIELDS = _words(
    "Type CreditNoteID CreditNoteNumber Reference Contact Date DueDate Status LineAmountTypes "
    "LineItems SubTotal TotalTax Total CurrencyCode CurrencyRate RemainingCredit Allocations "
    "Payments FullyPaidOnDate UpdatedDateUTC SentToContact BrandingThemeID HasAttachments "
    "HasErrors AppliedAmount"
)
_ALLOCATION_FIELDS = _words("AllocationID Invoice CreditNote Amount Date IsDeleted")
_PAYMENT_FIELDS = _words(
    "PaymentID Invoice CreditNote Prepayment Overpayment InvoiceNumber CreditNoteNumber Account "
    "Code Date CurrencyRate Amount BankAmount Reference IsReconciled Status PaymentType "
    "UpdatedDateUTC BatchPaymentID BatchPayment HasAccount HasValidationErrors"
)
_TAX_RATE_FIELDS = _words(
    "Name TaxType TaxComponents Status ReportTaxType CanApplyToAssets CanApplyToEquity "
    "CanApplyToExpenses CanApplyToLiabilities CanApplyToRevenue DisplayTaxRate EffectiveRate"
)

_GET = frozenset({"GET"})
KINDS = {
    kind.name.lower(): kind
    for kind in (
        Kind(
            "Contacts",
            "Contact",
            "ContactID",
            frozenset({"GET", "PUT", "POST"}),
            frozenset({"GET", "POST"}),
            _CONTACT_FIELDS,
            "Name ASC",
            paged=True,
            modified_since=True,
            webhook_category="CONTACT",
            scope="accounting.contacts",
        ),
        Kind(
            "Invoices",
            "Invoice",
            "InvoiceID",
            frozenset({"GET", "PUT", "POST"}),
            frozenset({"GET", "POST"}),
            _INVOICE_FIELDS,
            # The documented default order (UpdatedDateUTC, then id).
            "UpdatedDateUTC ASC, InvoiceID ASC",
            paged=True,
            modified_since=True,
            webhook_category="INVOICE",
            scope="accounting.transactions",
        ),
        Kind(
            "CreditNotes",
            "CreditNote",
            "CreditNoteID",
            frozenset({"GET", "PUT", "POST"}),
            frozenset({"GET", "POST"}),
            _CREDIT_NOTE_FIELDS,
            # NOT documented for credit notes: the invoices' documented default order.
            "UpdatedDateUTC ASC, CreditNoteID ASC",
            paged=True,
            modified_since=True,
            webhook_category="CREDITNOTE",
            scope="accounting.transactions",
        ),
        Kind(
            "Payments",
            "Payment",
            "PaymentID",
            frozenset({"GET", "PUT", "POST"}),
            frozenset({"GET", "POST"}),
            _PAYMENT_FIELDS,
            # "The default order is UpdatedDateUTC ASC, PaymentId ASC" (Payments page).
            "UpdatedDateUTC ASC, PaymentID ASC",
            paged=True,
            modified_since=True,
            # No webhooks of their own: Xero's cover contacts and invoices only, and a
            # payment updates its invoice (xero_payments).
            scope="accounting.transactions",
        ),
        Kind(
            "Items",
            "Item",
            "ItemID",
            frozenset({"GET", "PUT", "POST"}),
            frozenset({"GET", "POST", "DELETE"}),
            _ITEM_FIELDS,
            "Code ASC",
            modified_since=True,
        ),
        Kind(
            "Accounts",
            "Account",
            "AccountID",
            frozenset({"GET", "PUT"}),
            frozenset({"GET", "POST"}),
            _ACCOUNT_FIELDS,
            "Code ASC",
            modified_since=True,
        ),
        Kind(
            "TaxRates",
            "TaxRate",
            "TaxType",
            frozenset({"GET", "PUT", "POST"}),
            _GET,
            _TAX_RATE_FIELDS,
            "Name ASC",
        ),
        Kind(
            "Currencies",
            "Currency",
            "Code",
            frozenset({"GET", "PUT"}),
            frozenset(),
            frozenset({"Code", "Description"}),
            "Code ASC",
        ),
        Kind(
            "Organisation",
            "Organisation",
            "OrganisationID",
            _GET,
            frozenset(),
            frozenset({"OrganisationID", "Name", "BaseCurrency", "CountryCode"}),
            "Name ASC",
        ),
    )
}


def kind_of(name: str) -> Kind | None:
    """Paths are case-insensitive in Xero (``/contacts`` works as ``/Contacts``)."""
    return KINDS.get(name.lower())


# A credit note's allocations: written under ``PUT /CreditNotes/{id}/Allocations`` only,
# never a collection of their own (so not in KINDS).
ALLOCATIONS = Kind(
    "Allocations",
    "Allocation",
    "AllocationID",
    frozenset(),
    frozenset({"PUT"}),
    _ALLOCATION_FIELDS,
    "Date ASC",
)


# Enumerations Xero deserialises (case-insensitively, as Json.NET does); an unknown
# value refuses the whole request with ErrorNumber 14.
_ENUMS: dict[str, tuple[str, frozenset[str]]] = {
    "ContactStatus": ("ContactStatus", _words("ACTIVE ARCHIVED GDPRREQUEST")),
    "AddressType": ("AddressType", _words("POBOX STREET")),
    "PhoneType": ("PhoneType", _words("DEFAULT DDI MOBILE FAX OFFICE")),
    "InvoiceType": (
        "InvoiceType",
        _words(
            "ACCPAY ACCPAYCREDIT APOVERPAYMENT APPREPAYMENT "
            "ACCREC ACCRECCREDIT AROVERPAYMENT ARPREPAYMENT"
        ),
    ),
    "CreditNoteType": ("CreditNoteType", _words("ACCPAYCREDIT ACCRECCREDIT")),
    "InvoiceStatus": ("InvoiceStatus", _words("DRAFT SUBMITTED DELETED AUTHORISED PAID VOIDED")),
    "LineAmountTypes": ("LineAmountType", _words("Exclusive Inclusive NoTax")),
    "AccountType": (
        "AccountType",
        _words(
            "BANK CURRENT CURRLIAB DEPRECIATN DIRECTCOSTS EQUITY EXPENSE FIXED INVENTORY "
            "LIABILITY NONCURRENT OTHERINCOME OVERHEADS PREPAYMENT REVENUE SALES TERMLIAB PAYG"
        ),
    ),
    "AccountStatus": ("AccountStatus", _words("ACTIVE ARCHIVED DELETED")),
    "TaxRateStatus": ("TaxRateStatus", _words("ACTIVE DELETED ARCHIVED PENDING")),
    "PaymentTermType": (
        "PaymentTermType",
        _words("DAYSAFTERBILLDATE DAYSAFTERBILLMONTH OFCURRENTMONTH OFFOLLOWINGMONTH"),
    ),
}

_ACCOUNT_CLASSES = {
    **dict.fromkeys(("REVENUE", "SALES", "OTHERINCOME"), "REVENUE"),
    **dict.fromkeys(("EXPENSE", "OVERHEADS", "DIRECTCOSTS", "DEPRECIATN"), "EXPENSE"),
    **dict.fromkeys(("BANK", "CURRENT", "FIXED", "INVENTORY", "NONCURRENT", "PREPAYMENT"), "ASSET"),
    **dict.fromkeys(("CURRLIAB", "LIABILITY", "TERMLIAB", "PAYG"), "LIABILITY"),
    "EQUITY": "EQUITY",
}

# Invoice status changes Xero allows (Invoices page, "Invoice status codes").
_TRANSITIONS = {
    "DRAFT": {"DRAFT", "SUBMITTED", "AUTHORISED", "DELETED"},
    "SUBMITTED": {"SUBMITTED", "AUTHORISED", "DRAFT", "DELETED"},
    "AUTHORISED": {"AUTHORISED", "VOIDED"},
}
# Xero's answer to editing a document a payment or credit note settles part of (obs).
LOCKED = "This document cannot be edited as it has a payment or credit note allocated to it."
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_MISSING = object()


@dataclass
class Change:
    """One record a call changed (webhooks follow for the kinds Xero sends them for)."""

    kind: str
    record_id: str
    created: bool
    at: float


@dataclass
class Changes:
    items: list[Change] = field(default_factory=list)


@dataclass(frozen=True)
class OrgSettings:
    tenant_id: str
    name: str
    country: str
    base_currency: str
    timezone: str
    sales_tax_percent: Decimal


class Organisation:
    """The organisation's records, keyed by collection then id."""

    def __init__(self, settings: OrgSettings, clock: Callable[[], float]) -> None:
        self.settings = settings
        self.clock = clock
        self.tz = ZoneInfo(settings.timezone)
        self.rows: dict[str, dict[str, JsonObj]] = {}
        self.counts: Counter[tuple[str, str]] = Counter()
        self.reset()

    # --- seed --------------------------------------------------------------------

    def reset(self) -> None:
        """A demo organisation like the one Xero gives every developer account."""
        self.rows = {kind.name: {} for kind in KINDS.values()}
        self.counts.clear()
        seeded_at = self.clock() - SEED_AGE.total_seconds()
        s = self.settings
        self.rows["Organisation"][s.tenant_id] = {
            "OrganisationID": s.tenant_id,
            "APIKey": uuid.uuid5(uuid.NAMESPACE_URL, s.tenant_id).hex[:30].upper(),
            "Name": s.name,
            "LegalName": s.name,
            "PaysTax": True,
            "Version": {"AU": "AU", "NZ": "NZ", "GB": "UK", "US": "US"}.get(s.country, "GLOBAL"),
            "OrganisationType": "COMPANY",
            "BaseCurrency": s.base_currency,
            "CountryCode": s.country,
            "IsDemoCompany": True,
            "OrganisationStatus": "ACTIVE",
            "FinancialYearEndDay": 31,
            "FinancialYearEndMonth": 12,
            "SalesTaxBasis": "ACCRUALS",
            "SalesTaxPeriod": "QUARTERLY",
            "DefaultSalesTax": "Tax Exclusive",
            "DefaultPurchasesTax": "Tax Exclusive",
            "CreatedDateUTC": ms_timestamp(seeded_at),
            "Timezone": _XERO_TIMEZONES.get(s.timezone, "UTC"),
            "OrganisationEntityType": "COMPANY",
            "ShortCode": "!" + s.tenant_id[:5],
            "Class": "DEMO",
            "Edition": "BUSINESS",
            "LineOfBusiness": "Consulting",
            "Addresses": [],
            "Phones": [],
            "ExternalLinks": [],
            # Sales due 30 days after the invoice date unless the contact says otherwise.
            "PaymentTerms": {
                "Sales": {"Day": 30, "Type": "DAYSAFTERBILLDATE"},
                "Bills": {"Day": 15, "Type": "OFFOLLOWINGMONTH"},
            },
            "_updated": seeded_at,
        }
        self.rows["Currencies"][s.base_currency] = {
            "Code": s.base_currency,
            "Description": _CURRENCY_NAMES.get(s.base_currency, s.base_currency),
        }
        rate = s.sales_tax_percent
        for name, tax_type, percent, revenue, expenses, liabilities in (
            ("Tax on Sales", "OUTPUT", rate, True, False, False),
            ("Tax on Purchases", "INPUT", rate, False, True, False),
            ("Tax Exempt", "NONE", Decimal(0), True, True, True),
            ("Exempt Sales", "EXEMPTOUTPUT", Decimal(0), True, False, False),
            ("Exempt Expenses", "EXEMPTEXPENSES", Decimal(0), False, True, False),
            ("Sales Tax on Imports", "GSTONIMPORTS", Decimal(0), False, False, True),
        ):
            self.rows["TaxRates"][tax_type] = {
                "Name": name,
                "TaxType": tax_type,
                "ReportTaxType": tax_type if tax_type in ("OUTPUT", "INPUT") else "NONE",
                "TaxComponents": [
                    {"Name": "Tax", "Rate": percent, "IsCompound": False, "IsNonRecoverable": False}
                ],
                "Status": "ACTIVE",
                "CanApplyToAssets": expenses,
                "CanApplyToEquity": expenses,
                "CanApplyToExpenses": expenses,
                "CanApplyToLiabilities": liabilities or expenses,
                "CanApplyToRevenue": revenue,
                "DisplayTaxRate": percent,
                "EffectiveRate": percent,
                "_system": True,
            }
        accounts = [
            ("090", "Business Bank Account", "BANK", "NONE", ""),
            ("200", "Sales", "REVENUE", "OUTPUT", ""),
            ("260", "Other Revenue", "REVENUE", "OUTPUT", ""),
            ("270", "Interest Income", "REVENUE", "NONE", ""),
            ("310", "Cost of Goods Sold", "DIRECTCOSTS", "INPUT", ""),
            ("400", "Advertising", "OVERHEADS", "INPUT", ""),
            ("404", "Bank Fees", "OVERHEADS", "NONE", ""),
            ("429", "General Expenses", "OVERHEADS", "INPUT", ""),
            ("610", "Accounts Receivable", "CURRENT", "NONE", "DEBTORS"),
            ("800", "Accounts Payable", "CURRLIAB", "NONE", "CREDITORS"),
            ("820", "Sales Tax", "CURRLIAB", "NONE", "GST"),
            ("860", "Rounding", "CURRLIAB", "NONE", "ROUNDING"),
            ("960", "Retained Earnings", "EQUITY", "NONE", "RETAINEDEARNINGS"),
        ]
        for code, name, acc_type, tax_type, system in accounts:
            account: JsonObj = {
                "AccountID": self._seed_id("account", code),
                "Code": code,
                "Name": name,
                "Type": acc_type,
                "TaxType": tax_type,
                "Status": "ACTIVE",
                "Class": _ACCOUNT_CLASSES[acc_type],
                "EnablePaymentsToAccount": False,
                "ShowInExpenseClaims": acc_type in ("OVERHEADS", "EXPENSE"),
                "ReportingCode": "",
                "HasAttachments": False,
                "AddToWatchlist": False,
                "_updated": seeded_at,
            }
            if system:
                account["SystemAccount"] = system
            if acc_type == "BANK":
                account.update(
                    BankAccountNumber="0987654321",
                    BankAccountType="BANK",
                    CurrencyCode=s.base_currency,
                )
            self.rows["Accounts"][account["AccountID"]] = account
        # The items the crmsync demo's deals name ("Services", "Hours", "Design",
        # "Installation"), so its invoice lines find them by name.
        items = [
            ("SERVICES", "Services", "Professional services", 0),
            ("HOURS", "Hours", "Hourly work", 0),
            ("DESIGN", "Design", "Custom design work", 75),
            ("INSTALL", "Installation", "Installation of landscape design", 50),
            ("PEST", "Pest Control", "Pest control service", 35),
            ("SPRINKLER", "Sprinklers", "Sprinkler heads", 4),
        ]
        for code, name, description, price in items:
            item_id = self._seed_id("item", code)
            self.rows["Items"][item_id] = {
                "ItemID": item_id,
                "Code": code,
                "Name": name,
                "Description": description,
                "PurchaseDescription": "",
                "SalesDetails": {
                    "UnitPrice": Decimal(price),
                    "AccountCode": "200",
                    "TaxType": "OUTPUT",
                },
                "PurchaseDetails": {},
                "IsSold": True,
                "IsPurchased": False,
                "IsTrackedAsInventory": False,
                "_updated": seeded_at,
            }
        contacts = [
            ("ABC Furniture", "Trish", "Rawlings", "info@abcfurniture.example"),
            ("Bayside Club", "Bob", "Partridge", "secretary@baysideclub.example"),
            ("Boom FM", "Jane", "Lee", "accounts@boomfm.example"),
            ("City Limousines", "Dave", "Kirkpatrick", "bookings@citylimos.example"),
            ("Ridgeway University", "Ann", "Faulkner", "finance@ridgeway.example"),
        ]
        for name, first, last, email in contacts:
            contact_id = self._seed_id("contact", name)
            self.rows["Contacts"][contact_id] = {
                "ContactID": contact_id,
                "ContactStatus": "ACTIVE",
                "Name": name,
                "FirstName": first,
                "LastName": last,
                "EmailAddress": email,
                "Addresses": [],
                "Phones": [],
                "ContactPersons": [],
                "_updated": seeded_at,
                "_by_app": False,
            }
        today = self.today()
        for position, (number_, contact_name, status, lines, days_ago) in enumerate(
            (
                ("INV-0001", "ABC Furniture", "AUTHORISED", [("DESIGN", 2), ("INSTALL", 1)], 20),
                ("INV-0002", "Bayside Club", "DRAFT", [("PEST", 3)], 10),
            )
        ):
            body: JsonObj = {
                "Type": "ACCREC",
                "InvoiceNumber": number_,
                "Contact": {"ContactID": self._seed_id("contact", contact_name)},
                "Date": (today - timedelta(days=days_ago)).isoformat(),
                "Status": status,
                "LineItems": [{"ItemCode": code, "Quantity": Decimal(qty)} for code, qty in lines],
            }
            invoice = self._prepare_document(INVOICE, body, None, Changes(), CENT)
            invoice_id = self._seed_id("invoice", number_)
            invoice.update(InvoiceID=invoice_id, _updated=seeded_at + position, _by_app=False)
            self.rows["Invoices"][invoice_id] = invoice

    def _seed_id(self, what: str, key: str) -> str:
        """Stable ids for seed records, so a reset brings back the same ones."""
        return str(uuid.uuid5(uuid.UUID(self.settings.tenant_id), f"{what}:{key}"))

    # --- time ----------------------------------------------------------------------

    def today(self) -> date:
        # "If the Date element is not specified it will default to the current date
        # based on the timezone setting of the organisation" (Invoice.Date, spec).
        return datetime.fromtimestamp(self.clock(), self.tz).date()

    # --- reading ---------------------------------------------------------------------

    def get(self, kind: Kind, key: str, unit_places: Decimal) -> JsonObj:
        """GET /{Kind}/{id}; Contacts also by ContactNumber, Invoices by InvoiceNumber,
        Items by Code (as Xero documents)."""
        record = self._find(kind, key, alternate=True)
        if record is None:
            raise not_found()
        return self.render(kind, record, unit_places)

    def _find(self, kind: Kind, key: str, alternate: bool) -> JsonObj | None:
        rows = self.rows[kind.name]
        for record_id, record in rows.items():
            if record_id.lower() == key.lower():
                return record
        if not alternate:
            return None
        alt_field = {
            "Contacts": "ContactNumber",
            "Invoices": "InvoiceNumber",
            "Items": "Code",
            "TaxRates": "Name",
        }.get(kind.name)
        if alt_field is None:
            return None
        for record in rows.values():
            if _text(record.get(alt_field)).lower() == key.strip().lower() != "":
                return record
        return None

    def query(
        self,
        kind: Kind,
        args: Mapping[str, str],
        modified_since: float | None,
        unit_places: Decimal,
    ) -> tuple[list[JsonObj], JsonObj | None]:
        """GET /{Kind}: filters, order and paging; returns rows and ``pagination``."""
        records = list(self.rows[kind.name].values())
        if kind.name == "Contacts" and not truthy(args.get("includearchived")):
            # "Contacts with a status of ARCHIVED will be included" only on request.
            records = [r for r in records if r.get("ContactStatus") != "ARCHIVED"]
        if modified_since is not None and kind.modified_since:
            # "Only items created or updated since the specified timestamp will be
            # returned (accurate to the second)". NOT documented: whether a change in
            # that very second is returned; chosen: it is (at or after, to the second).
            records = [r for r in records if int(r["_updated"]) >= int(modified_since)]
        if kind.name == "Invoices" and truthy(args.get("createdbymyapp")):
            records = [r for r in records if r.get("_by_app")]
        summary = kind.paged and truthy(args.get("summaryonly"))
        paged = kind.paged and (
            args.get("page") is not None or args.get("pagesize") is not None or summary
        )
        rendered = [self.render(kind, r, unit_places) for r in records]
        rendered = self._explicit_filters(kind, args, rendered)
        where_text = args.get("where")
        if where_text:
            try:
                where = xero_where.parse(where_text, kind.type_name, kind.knows)
                rendered = [r for r in rendered if where.matches(r)]
            except xero_where.WhereError as exc:
                raise query_parse_error(str(exc)) from exc
        try:
            order = xero_where.parse_order(
                args.get("order") or kind.default_order, kind.type_name, kind.knows
            )
        except xero_where.WhereError as exc:
            raise query_parse_error(str(exc)) from exc
        try:
            for path, descending in reversed(order):
                rendered.sort(key=_sort_key(path), reverse=descending)
        except (xero_where.WhereError, TypeError) as exc:
            raise query_parse_error(f"The order clause cannot be applied: {exc}") from exc
        pagination: JsonObj | None = None
        if paged:
            page = max(_int_arg(args.get("page"), 1), 1)
            size = _int_arg(args.get("pagesize"), PAGE_SIZE)
            # pageSize above 1000 is served as 1000, below 1 as the default 100.
            size = min(size, MAX_PAGE_SIZE) if size >= 1 else PAGE_SIZE
            total = len(rendered)
            rendered = rendered[(page - 1) * size : page * size]
            pagination = {
                "page": page,
                "pageSize": size,
                "pageCount": -(-total // size),
                "itemCount": total,
            }
        if kind.name in ("Invoices", "CreditNotes", "Contacts") and not paged:
            # "page=1 – Up to 100 invoices (credit notes) will be returned in a single
            # API call with line items shown": without paging, a list carries no line
            # items; a contact's Balances come "on GET requests for a single contact or
            # when pagination is used" (Contacts page).
            for row in rendered:
                row.pop("Balances" if kind.name == "Contacts" else "LineItems", None)
        if summary:
            rendered = [_summarise(kind, row) for row in rendered]
        return rendered, pagination

    def _explicit_filters(
        self, kind: Kind, args: Mapping[str, str], rows: list[JsonObj]
    ) -> list[JsonObj]:
        """IDs, InvoiceNumbers, ContactIDs, Statuses and searchTerm (comma lists);
        ``args`` has lower-cased names (Xero's query names are case-insensitive)."""

        def listed(name: str) -> set[str] | None:
            raw = args.get(name)
            if raw is None:
                return None
            return {p.strip().strip('"').lower() for p in raw.split(",") if p.strip()}

        ids = listed("ids")
        if ids is not None and kind.paged:
            rows = [r for r in rows if str(r[kind.id_field]).lower() in ids]
        if kind.name == "Invoices":
            numbers = listed("invoicenumbers")
            if numbers is not None:
                rows = [r for r in rows if _text(r.get("InvoiceNumber")).lower() in numbers]
            contacts = listed("contactids")
            if contacts is not None:
                rows = [r for r in rows if r["Contact"]["ContactID"].lower() in contacts]
            statuses = listed("statuses")
            if statuses is not None:
                rows = [r for r in rows if r["Status"].lower() in statuses]
        term = _text(args.get("searchterm")).casefold()
        if term and kind.paged:
            fields = (
                ("Name", "FirstName", "LastName", "ContactNumber", "EmailAddress")
                if kind.name == "Contacts"
                else ("InvoiceNumber", "Reference")
            )
            rows = [r for r in rows if any(term in _text(r.get(f)).casefold() for f in fields)]
        return rows

    # --- rendering -------------------------------------------------------------------

    def render(self, kind: Kind, record: JsonObj, unit_places: Decimal) -> JsonObj:
        """A stored record as the API returns it (derived fields filled in)."""
        # The id first, as Xero lists it.
        out: JsonObj = {kind.id_field: record.get(kind.id_field)}
        out.update((k, copy.deepcopy(v)) for k, v in record.items() if not k.startswith("_"))
        if "_updated" in record and kind.knows("UpdatedDateUTC"):
            out["UpdatedDateUTC"] = ms_timestamp(record["_updated"])
        if kind.name == "Contacts":
            self._render_contact(out)
        elif kind.name in ("Invoices", "CreditNotes"):
            self._render_document(out, record, unit_places)
            if kind.name == "Invoices":
                out["IsDiscounted"] = any(
                    "DiscountRate" in line or "DiscountAmount" in line
                    for line in record["LineItems"]
                )
                out.update(
                    CreditNotes=xero_payments.render_credit_notes(record),
                    Prepayments=[],
                    Overpayments=[],
                )
            else:
                # The examples repeat the id as ``ID``.
                out["ID"] = record["CreditNoteID"]
                out["Allocations"] = xero_payments.render_allocations(self, record)
        elif kind.name == "Payments":
            xero_payments.render_payment(self, out, record)
        elif kind.name == "Items":
            for details in ("SalesDetails", "PurchaseDetails"):
                price = out.get(details, {}).get("UnitPrice")
                if isinstance(price, Decimal):
                    out[details]["UnitPrice"] = round_to(price, unit_places)
        return out

    def _render_contact(self, out: JsonObj) -> None:
        # Xero always lists both address types and four phone types, empty or not.
        addresses = {a.get("AddressType"): a for a in out.get("Addresses", [])}
        out["Addresses"] = [
            {
                "City": "",
                "Region": "",
                "PostalCode": "",
                "Country": "",
                **addresses.get(t, {}),
                "AddressType": t,
            }
            for t in ("STREET", "POBOX")
        ] + [a for t, a in addresses.items() if t not in ("STREET", "POBOX")]
        phones = {p.get("PhoneType"): p for p in out.get("Phones", [])}
        out["Phones"] = [
            {
                "PhoneNumber": "",
                "PhoneAreaCode": "",
                "PhoneCountryCode": "",
                **phones.get(t, {}),
                "PhoneType": t,
            }
            for t in ("DEFAULT", "DDI", "FAX", "MOBILE")
        ] + [p for t, p in phones.items() if t not in ("DEFAULT", "DDI", "FAX", "MOBILE")]
        # IsCustomer/IsSupplier "cannot be set via PUT or POST – it is automatically set
        # when an accounts receivable/payable invoice is generated against this contact".
        kinds = {
            inv["Type"]
            for inv in self.rows["Invoices"].values()
            if inv["Contact"]["ContactID"] == out["ContactID"] and inv["Status"] != "DELETED"
        }
        out["IsCustomer"] = "ACCREC" in kinds
        out["IsSupplier"] = "ACCPAY" in kinds
        out.setdefault("ContactGroups", [])
        out.setdefault("ContactPersons", [])
        out["HasAttachments"] = False
        out["HasValidationErrors"] = False
        out["Balances"] = xero_payments.balances(self, out["ContactID"])

    def _render_document(self, out: JsonObj, record: JsonObj, unit_places: Decimal) -> None:
        """What an invoice and a credit note render alike: the contact summarised, the
        dates in MS form with their strings, unit amounts to ``unitdp``, payments."""
        contact = self.rows["Contacts"].get(record["Contact"]["ContactID"], {})
        out["Contact"] = {
            "ContactID": record["Contact"]["ContactID"],
            "ContactStatus": contact.get("ContactStatus", "ACTIVE"),
            "Name": contact.get("Name", ""),
            "Addresses": [],
            "Phones": [],
            "ContactGroups": [],
            "ContactPersons": [],
            "HasValidationErrors": False,
        }
        for key in ("Date", "DueDate", "FullyPaidOnDate"):
            value = record.get(key)
            if value:
                day = date.fromisoformat(value)
                out[key] = ms_day(day)
                if key != "FullyPaidOnDate":
                    out[f"{key}String"] = f"{day.isoformat()}T00:00:00"
        out["UpdatedDateUTCString"] = iso_seconds(record["_updated"])
        for line in out["LineItems"]:
            if isinstance(line.get("UnitAmount"), Decimal):
                line["UnitAmount"] = round_to(line["UnitAmount"], unit_places)
        out["Payments"] = [
            {**p, "Date": ms_day(date.fromisoformat(p["Date"]))} for p in record["Payments"]
        ]
        out.update(HasAttachments=False, HasErrors=False)

    # --- writing ---------------------------------------------------------------------

    def save(
        self,
        kind: Kind,
        element: JsonObj,
        *,
        method: str,
        path_id: str | None,
        unit_places: Decimal,
        changes: Changes,
        by_app: bool,
    ) -> JsonObj:
        """Create (PUT, or POST without a match) or update (POST) one element.

        Raises ElementError for a validation failure of this element only.
        """
        existing = self._existing(kind, element, method, path_id)
        if kind.name == "Contacts":
            record = self._prepare_contact(element, existing)
        elif kind.name in ("Invoices", "CreditNotes"):
            doc = INVOICE if kind.name == "Invoices" else CREDIT_NOTE
            record = self._prepare_document(doc, element, existing, changes, unit_places)
        elif kind.name == "Payments":
            record = xero_payments.prepare_payment(self, element, existing, changes)
        elif kind.name == "Items":
            record = self._prepare_item(element, existing, unit_places)
        elif kind.name == "Accounts":
            record = self._prepare_account(element, existing)
        elif kind.name == "TaxRates":
            record = self._prepare_tax_rate(element, existing)
        else:
            record = self._prepare_currency(element)
        return self._store(kind, record, existing, changes, by_app, unit_places)

    def _existing(
        self, kind: Kind, element: JsonObj, method: str, path_id: str | None
    ) -> JsonObj | None:
        if path_id is not None:
            found = self._find(kind, path_id, alternate=False)
            if found is None:
                raise not_found()
            return found
        given = _text(element.get(kind.id_field))
        if method == "PUT":
            if given and kind.name not in ("TaxRates", "Currencies"):
                # PUT only creates ("PUT = create only"); an id means an update was meant.
                raise ElementError(
                    f"{kind.id_field} cannot be specified when creating a {kind.type_name} "
                    "with PUT; use POST to update it."
                )
            return None
        if given:
            found = self._find(kind, given, alternate=False)
            if found is None:
                raise ElementError(
                    # The spec's example for a credit note; the others' are ours.
                    "An existing Credit Note with the specified CreditNoteID could not be found"
                    if kind.name == "CreditNotes"
                    else f"{kind.type_name} with {kind.id_field} {given} does not exist."
                )
            return found
        # POST without an id updates the record its natural key names, where Xero has one.
        natural = {"Contacts": "ContactNumber", "Items": "Code", "TaxRates": "Name"}.get(kind.name)
        if natural and _text(element.get(natural)):
            return self._find(kind, _text(element[natural]), alternate=True)
        return None

    def _store(
        self,
        kind: Kind,
        record: JsonObj,
        existing: JsonObj | None,
        changes: Changes,
        by_app: bool,
        unit_places: Decimal,
    ) -> JsonObj:
        now = self.clock()
        if existing is None:
            record[kind.id_field] = record.get(kind.id_field) or str(uuid.uuid4())
            record["_by_app"] = by_app
        else:
            record[kind.id_field] = existing[kind.id_field]
            record["_by_app"] = existing.get("_by_app", False)
        record["_updated"] = now
        key = record[kind.id_field]
        self.rows[kind.name][key] = record
        operation = "create" if existing is None else "update"
        self.counts[(operation, kind.name)] += 1
        changes.items.append(Change(kind.name, key, existing is None, now))
        return self.render(kind, record, unit_places)

    def check_types(self, kind: Kind, elements: list[Any], root: str) -> list[JsonObj]:
        """Deserialise a body as Xero does before validating anything: a wrong type
        or enumeration anywhere refuses the whole request (ErrorNumber 14)."""
        checked: list[JsonObj] = []
        for index, element in enumerate(elements):
            path = f"{root}[{index}]"
            if not isinstance(element, dict):
                raise _conversion(element, f"Xero.API.Library.DataContracts.{kind.type_name}", path)
            out = copy.deepcopy(element)
            _check_element(kind, out, path)
            checked.append(out)
        return checked

    # --- contacts --------------------------------------------------------------------

    def _prepare_contact(self, body: JsonObj, existing: JsonObj | None) -> JsonObj:
        writable = _words(
            "ContactNumber AccountNumber ContactStatus Name FirstName LastName CompanyNumber "
            "EmailAddress BankAccountDetails TaxNumber AccountsReceivableTaxType "
            "AccountsPayableTaxType Addresses Phones DefaultCurrency PaymentTerms ContactPersons "
            "XeroNetworkKey SalesDefaultAccountCode PurchasesDefaultAccountCode"
        )
        record = {k: v for k, v in (existing or {}).items() if not k.startswith("_")}
        record.pop("ContactID", None)
        for key in writable:
            if key in body:
                record[key] = body[key]
        record.setdefault("ContactStatus", "ACTIVE")
        record.setdefault("Addresses", [])
        record.setdefault("Phones", [])
        record.setdefault("ContactPersons", [])
        errors: list[str] = []
        name = _text(record.get("Name"))
        if not name:
            errors.append("Contact name cannot be empty.")
        record["Name"] = name
        email = _text(record.get("EmailAddress"))
        if email and not _EMAIL.match(email):
            # The example Xero gives for a 400 (responsecodes page).
            errors.append("Email address must be valid.")
        others = [
            c for c in self.rows["Contacts"].values() if existing is None or c is not existing
        ]
        if (
            name
            and record["ContactStatus"] == "ACTIVE"
            and any(
                c.get("ContactStatus") == "ACTIVE"
                and _text(c.get("Name")).casefold() == name.casefold()
                for c in others
            )
        ):
            # Verbatim from the spec's 400 example for PUT/POST Contacts.
            errors.append(
                f"The contact name {name} is already assigned to another contact. "
                "The contact name must be unique across all active contacts."
            )
        number_ = _text(record.get("ContactNumber"))
        if number_ and any(
            _text(c.get("ContactNumber")).lower() == number_.lower() for c in others
        ):
            errors.append(f"The contact number {number_} is already assigned to another contact.")
        if errors:
            raise ElementError(*errors)
        # Addresses and Phones replace the lists held (one entry per type).
        record["Addresses"] = list({a["AddressType"]: a for a in record["Addresses"]}.values())
        record["Phones"] = list({p["PhoneType"]: p for p in record["Phones"]}.values())
        return record

    def _resolve_contact(self, ref: Any, changes: Changes) -> JsonObj:
        """The Contact of an invoice: by ContactID, ContactNumber or Name.

        A Name that matches no active contact creates one, as Xero does ("posting an
        invoice with a new contact name creates a new contact"); other fields sent
        beside ContactID update that contact.
        """
        if not isinstance(ref, dict) or not any(
            _text(ref.get(k)) for k in ("ContactID", "ContactNumber", "Name")
        ):
            raise ElementError("Contact cannot be empty.")
        contact_id, number_, name = (
            _text(ref.get(k)) for k in ("ContactID", "ContactNumber", "Name")
        )
        contact: JsonObj | None = None
        if contact_id:
            contact = self.rows["Contacts"].get(contact_id) or self._find(
                KINDS["contacts"], contact_id, alternate=False
            )
            if contact is None:
                raise ElementError(f"Contact with ContactID {contact_id} does not exist.")
        elif number_:
            contact = self._find(KINDS["contacts"], number_, alternate=True)
            if contact is None:
                raise ElementError(f"Contact with ContactNumber {number_} does not exist.")
        else:
            contact = next(
                (
                    c
                    for c in self.rows["Contacts"].values()
                    if c.get("ContactStatus") == "ACTIVE"
                    and _text(c.get("Name")).casefold() == name.casefold()
                ),
                None,
            )
        kind = KINDS["contacts"]
        extra = {k: v for k, v in ref.items() if k not in ("ContactID", "ContactNumber")}
        if contact is None:
            record = self._prepare_contact(extra, None)
            self._store(kind, record, None, changes, True, CENT)
            return record
        if contact.get("ContactStatus") != "ACTIVE":
            raise ElementError(f"The contact '{contact['Name']}' is archived and cannot be used.")
        if set(extra) - {"Name"} or (_text(extra.get("Name")) not in ("", contact["Name"])):
            record = self._prepare_contact(extra, contact)
            self._store(kind, record, contact, changes, True, CENT)
            return record
        return contact

    # --- items -----------------------------------------------------------------------

    def _prepare_item(
        self, body: JsonObj, existing: JsonObj | None, unit_places: Decimal
    ) -> JsonObj:
        record = {k: v for k, v in (existing or {}).items() if not k.startswith("_")}
        record.pop("ItemID", None)
        for key in ("Code", "Name", "Description", "PurchaseDescription", "IsSold", "IsPurchased"):
            if key in body:
                record[key] = body[key]
        errors: list[str] = []
        if body.get("InventoryAssetAccountCode"):
            errors.append("Tracked inventory items are not supported by this sandbox.")
        code = _text(record.get("Code"))
        if not code:
            errors.append("Item code cannot be empty.")
        elif len(code) > 30:
            errors.append("Item code must not be more than 30 characters long.")
        elif any(
            _text(i.get("Code")).lower() == code.lower()
            for i in self.rows["Items"].values()
            if i is not existing
        ):
            errors.append(f"Item code '{code}' already exists.")
        name = _text(record.get("Name"))
        if len(name) > 50:
            errors.append("Item name must not be more than 50 characters long.")
        record["Code"], record["Name"] = code, name
        record["IsSold"] = record.get("IsSold", True) is not False
        record["IsPurchased"] = record.get("IsPurchased", True) is not False
        for details in ("SalesDetails", "PurchaseDetails"):
            current = dict(record.get(details) or {})
            current.update(body.get(details) or {})
            if "UnitPrice" in current:
                # "By default UnitPrice is rounded to two decimal places. You can use 4
                # decimal places by adding the unitdp=4 querystring parameter".
                current["UnitPrice"] = round_to(current["UnitPrice"], unit_places)
            code_ = _text(current.get("AccountCode"))
            if code_:
                errors.extend(self._account_errors(code_, for_line=False))
            tax_type = _text(current.get("TaxType"))
            if tax_type:
                errors.extend(self._tax_type_errors(tax_type))
            record[details] = current
        # "If IsSold is updated to false then Description and SalesDetails values will be
        # nulled" (and likewise for IsPurchased).
        if not record["IsSold"]:
            record["Description"], record["SalesDetails"] = "", {}
        if not record["IsPurchased"]:
            record["PurchaseDescription"], record["PurchaseDetails"] = "", {}
        record["IsTrackedAsInventory"] = False
        if errors:
            raise ElementError(*errors)
        return record

    def delete_item(self, key: str) -> None:
        found = self._find(KINDS["items"], key, alternate=False)
        if found is None:
            raise not_found()
        del self.rows["Items"][found["ItemID"]]
        self.counts[("delete", "Items")] += 1

    # --- accounts, tax rates, currencies ------------------------------------------------

    def _account_errors(self, code: str, *, for_line: bool) -> list[str]:
        account = next(
            (a for a in self.rows["Accounts"].values() if a["Code"].lower() == code.lower()), None
        )
        # Bank and system accounts (receivables, payables, tax...) take no invoice lines.
        if account is None or (
            for_line and (account["Type"] == "BANK" or account.get("SystemAccount"))
        ):
            return [f"Account code '{code}' is not a valid code for this document."]  # (obs)
        if account["Status"] != "ACTIVE":
            return [  # (obs)
                f"Account code '{code}' has been archived, or has been deleted. "
                "Each line item must reference a valid account."
            ]
        return []

    def _tax_type_errors(self, tax_type: str) -> list[str]:
        rate = self._tax_rate(tax_type)
        if rate is None or rate["Status"] != "ACTIVE":
            return [
                f"The TaxType code '{tax_type}' does not exist or cannot be used with this "
                "type of transaction."
            ]
        return []

    def _tax_rate(self, tax_type: str) -> JsonObj | None:
        return next(
            (r for r in self.rows["TaxRates"].values() if r["TaxType"].lower() == tax_type.lower()),
            None,
        )

    def _prepare_account(self, body: JsonObj, existing: JsonObj | None) -> JsonObj:
        record = {k: v for k, v in (existing or {}).items() if not k.startswith("_")}
        record.pop("AccountID", None)
        for key in _words(
            "Code Name Type TaxType Status Description BankAccountNumber BankAccountType "
            "CurrencyCode EnablePaymentsToAccount ShowInExpenseClaims AddToWatchlist"
        ):
            if key in body:
                record[key] = body[key]
        errors: list[str] = []
        if (
            existing is not None
            and existing.get("SystemAccount")
            and (
                body.get("Type", existing["Type"]) != existing["Type"]
                or body.get("Status", "ACTIVE") != "ACTIVE"
            )
        ):
            errors.append("System accounts cannot be archived or change type.")
        code, name = _text(record.get("Code")), _text(record.get("Name"))
        others = [a for a in self.rows["Accounts"].values() if a is not existing]
        if not code and record.get("Type") != "BANK":
            errors.append("Please enter a code.")
        elif code and any(a["Code"].lower() == code.lower() for a in others):
            errors.append("Please enter a unique Code.")
        if not name:
            errors.append("Please enter a name.")
        elif any(a["Name"].lower() == name.lower() for a in others):
            errors.append("Please enter a unique Name.")
        if not record.get("Type"):
            errors.append("Please select an account type.")
        if record.get("Type") == "BANK" and not _text(record.get("BankAccountNumber")):
            errors.append("Bank account number is required for bank accounts.")
        tax_type = _text(record.get("TaxType"))
        if tax_type:
            errors.extend(self._tax_type_errors(tax_type))
        if errors:
            raise ElementError(*errors)
        record.update(Code=code, Name=name, TaxType=tax_type or "NONE")
        record.setdefault("Status", "ACTIVE")
        record["Class"] = _ACCOUNT_CLASSES[record["Type"]]
        record.setdefault("EnablePaymentsToAccount", False)
        record.setdefault("ShowInExpenseClaims", False)
        record.setdefault("ReportingCode", "")
        record.setdefault("HasAttachments", False)
        record.setdefault("AddToWatchlist", False)
        return record

    def _prepare_tax_rate(self, body: JsonObj, existing: JsonObj | None) -> JsonObj:
        if existing is not None and existing.get("_system"):
            raise ElementError("System tax rates cannot be changed.")
        record = {k: v for k, v in (existing or {}).items() if not k.startswith("_")}
        for key in ("Name", "TaxComponents", "Status", "ReportTaxType"):
            if key in body:
                record[key] = body[key]
        errors: list[str] = []
        name = _text(record.get("Name"))
        if not name:
            errors.append("Tax rate name cannot be empty.")
        elif any(
            r["Name"].lower() == name.lower() and r["Status"] == "ACTIVE"
            for r in self.rows["TaxRates"].values()
            if r is not existing
        ):
            errors.append(f"A tax rate with the name '{name}' already exists.")
        components = record.get("TaxComponents") or []
        if not components:
            errors.append("At least one tax component is required.")
        if errors:
            raise ElementError(*errors)
        effective = Decimal(0)
        for component in components:
            rate = component["Rate"]
            # A compound component taxes the price plus the components before it.
            effective += rate * (100 + effective) / 100 if component.get("IsCompound") else rate
        effective = round_to(effective, QUANTITY_PLACES)
        if existing is None:
            taken = {r["TaxType"] for r in self.rows["TaxRates"].values()}
            record["TaxType"] = next(
                f"TAX{n:03d}" for n in range(1, 1000) if f"TAX{n:03d}" not in taken
            )
        record.update(
            Name=name,
            Status=record.get("Status") or "ACTIVE",
            ReportTaxType=record.get("ReportTaxType") or "OUTPUT",
            DisplayTaxRate=effective,
            EffectiveRate=effective,
            CanApplyToAssets=True,
            CanApplyToEquity=True,
            CanApplyToExpenses=True,
            CanApplyToLiabilities=True,
            CanApplyToRevenue=True,
        )
        return record

    def _prepare_currency(self, body: JsonObj) -> JsonObj:
        code = _text(body.get("Code")).upper()
        if not re.fullmatch(r"[A-Z]{3}", code):
            raise ElementError("Currency code must be a valid ISO 4217 code.")
        if code in self.rows["Currencies"]:
            raise ElementError(f"The currency {code} has already been added.")
        return {"Code": code, "Description": _CURRENCY_NAMES.get(code, code)}

    # --- invoices and credit notes -----------------------------------------------------

    def _prepare_document(
        self,
        doc: Document,
        body: JsonObj,
        existing: JsonObj | None,
        changes: Changes,
        unit_places: Decimal,
    ) -> JsonObj:
        """An invoice or credit note created or updated: contact, dates, currency,
        priced lines, number, status and totals, by the rules both share."""
        record = copy.deepcopy({k: v for k, v in (existing or {}).items() if not k.startswith("_")})
        record.pop(KINDS[doc.kind.lower()].id_field, None)
        if existing is not None and (existing["Payments"] or existing.get(doc.applied)):
            wanted = body.get("Status", existing["Status"])
            if wanted == "VOIDED":
                raise ElementError(doc.void_refused)
            if set(body) - doc.editable_when_paid - {"Status"} or wanted != existing["Status"]:
                raise ElementError(LOCKED)
        status = self._document_status(doc, body, existing)
        for key in doc.writable:
            if key in body:
                record[key] = body[key]
        record["Status"] = status
        line_side = doc.line_sides.get(str(record.get("Type")))
        if line_side is None:
            # The docs' bulk example answers a credit-note type sent as an invoice so.
            raise ElementError(f"{doc.label} not of valid type for creation")
        errors: list[str] = []
        if "Contact" in body or existing is None:
            try:
                contact = self._resolve_contact(body.get("Contact"), changes)
                record["Contact"] = {"ContactID": contact["ContactID"]}
            except ElementError as exc:
                errors.extend(exc.messages)
                contact = {}
        else:
            contact = self.rows["Contacts"][record["Contact"]["ContactID"]]
        day = parse_day(body["Date"], "Date") if body.get("Date") else None
        if day is not None or existing is None:
            record["Date"] = (day or self.today()).isoformat()
        if body.get("DueDate"):
            record["DueDate"] = parse_day(body["DueDate"], "DueDate").isoformat()
        elif existing is None and doc.due_by_terms:
            record["DueDate"] = self._due_date(contact, date.fromisoformat(record["Date"]))
        record["LineAmountTypes"] = body.get(
            "LineAmountTypes", record.get("LineAmountTypes", "Exclusive")
        )
        currency = _text(body.get("CurrencyCode")) or record.get("CurrencyCode")
        currency = (currency or self.settings.base_currency).upper()
        if currency not in self.rows["Currencies"]:
            errors.append(f"The currency code {currency} is not set up for this organisation.")
        record["CurrencyCode"] = currency
        if currency == self.settings.base_currency:
            record["CurrencyRate"] = Decimal(1)
        elif "CurrencyRate" in body:
            record["CurrencyRate"] = number(body["CurrencyRate"], "CurrencyRate")
        else:
            record.setdefault("CurrencyRate", Decimal(1))
        if "LineItems" in body or (existing is not None and "LineAmountTypes" in body):
            # New line amount types re-price the lines held (their tax was for the old).
            lines = body.get(
                "LineItems",
                [
                    {k: v for k, v in line.items() if k != "TaxAmount"}
                    for line in record.get("LineItems", [])
                ],
            )
            record["LineItems"], line_errors = self._invoice_lines(
                lines, existing, line_side, record["LineAmountTypes"], unit_places
            )
            errors.extend(line_errors)
        record.setdefault("LineItems", [])
        errors.extend(self._number_errors(doc, record, existing))
        if status in ("SUBMITTED", "AUTHORISED"):
            errors.extend(_approval_errors(record["LineItems"]))
        if errors:
            raise ElementError(*errors)
        record.setdefault("Payments", [])
        record.setdefault(doc.applied, [])
        record.setdefault("SentToContact", False)
        doc.totals(record)
        return record

    def _document_status(self, doc: Document, body: JsonObj, existing: JsonObj | None) -> str:
        wanted: str = body.get("Status") or (existing["Status"] if existing else "DRAFT")
        if existing is None:
            if wanted not in ("DRAFT", "SUBMITTED", "AUTHORISED"):
                raise ElementError(f"{doc.label} not of valid status for creation")
            return wanted
        current = existing["Status"]
        if current in ("VOIDED", "DELETED") or (
            current != "PAID" and wanted not in _TRANSITIONS[current]
        ):
            # The answer integrators get for a change the status table forbids (obs).
            raise ElementError(f"{doc.label} not of valid status for modification")
        if current == "PAID" and wanted != "PAID":
            raise ElementError(f"{doc.label} not of valid status for modification")
        return wanted

    def _due_date(self, contact: JsonObj, invoice_date: date) -> str | None:
        """DueDate from the contact's sales payment terms, else the organisation's."""
        org = next(iter(self.rows["Organisation"].values()))
        terms = (contact.get("PaymentTerms") or {}).get("Sales") or org["PaymentTerms"]["Sales"]
        day, term_type = int(terms["Day"]), terms["Type"]
        if term_type == "DAYSAFTERBILLDATE":
            return (invoice_date + timedelta(days=day)).isoformat()
        first_next = (invoice_date.replace(day=28) + timedelta(days=4)).replace(day=1)
        if term_type == "DAYSAFTERBILLMONTH":
            return (first_next - timedelta(days=1) + timedelta(days=day)).isoformat()
        month_start = invoice_date.replace(day=1) if term_type == "OFCURRENTMONTH" else first_next
        next_month = (month_start.replace(day=28) + timedelta(days=4)).replace(day=1)
        last = (next_month - timedelta(days=1)).day
        return month_start.replace(day=min(day, last)).isoformat()

    def _number_errors(self, doc: Document, record: JsonObj, existing: JsonObj | None) -> list[str]:
        """A sales document's number: generated when missing ("when missing will
        auto-generate from your Organisation Invoice Settings"), else unique."""
        if record["Type"] != doc.sales_type:
            return []  # bills' numbers are the supplier's and need not be unique
        field_ = doc.number_field
        number_ = _text(record.get(field_))
        if not number_:
            pattern = re.escape(doc.number_prefix) + r"(\d+)"
            taken = [
                int(m.group(1))
                for other in self.rows[doc.kind].values()
                if (m := re.fullmatch(pattern, _text(other.get(field_))))
            ]
            record[field_] = f"{doc.number_prefix}{max(taken, default=0) + 1:04d}"
            return []
        record[field_] = number_
        for other in self.rows[doc.kind].values():
            if (
                other is not existing
                and other["Type"] == doc.sales_type
                and other["Status"] != "DELETED"
                and _text(other.get(field_)).lower() == number_.lower()
            ):
                return [f"{doc.label} # must be unique."]  # "Invoice # must be unique." (obs)
        return []

    def _invoice_lines(
        self,
        lines: Any,
        existing: JsonObj | None,
        invoice_type: str,
        amount_types: str,
        unit_places: Decimal,
    ) -> tuple[list[JsonObj], list[str]]:
        """Validate and price the lines. A line with a known LineItemID updates that
        line, one without is added, and lines left out are deleted (Invoices page,
        "Creating, updating and deleting line items when updating invoices")."""
        held = {line["LineItemID"]: line for line in (existing or {}).get("LineItems", [])}
        out: list[JsonObj] = []
        errors: list[str] = []
        for raw in lines or []:
            before = held.get(_text(raw.get("LineItemID")))
            # Amounts are recomputed; a unit amount held is kept at its own precision.
            line = {
                **{k: v for k, v in (before or {}).items() if k not in ("LineAmount", "TaxAmount")},
                **raw,
            }
            places = unit_places if before is None or "UnitAmount" in raw else QUANTITY_PLACES
            if before is None:
                line["LineItemID"] = str(uuid.uuid4())
            try:
                out.append(self._price_line(line, invoice_type, amount_types, places))
            except ElementError as exc:
                errors.extend(exc.messages)
        return out, errors

    def _price_line(
        self, line: JsonObj, invoice_type: str, amount_types: str, unit_places: Decimal
    ) -> JsonObj:
        """One line's amounts, rounded as "Rounding in Xero" describes: unit amounts
        to 2 decimals (4 with unitdp=4), LineAmount and tax to 2, tax per line."""
        errors: list[str] = []
        out: JsonObj = {"LineItemID": line["LineItemID"], "Tracking": line.get("Tracking") or []}
        item: JsonObj | None = None
        item_code = _text(line.get("ItemCode"))
        if item_code:
            item = next(
                (i for i in self.rows["Items"].values() if i["Code"].lower() == item_code.lower()),
                None,
            )
            if item is None:
                errors.append(f"Item code '{item_code}' is not valid.")
        details = (item or {}).get(
            "SalesDetails" if invoice_type == "ACCREC" else "PurchaseDetails"
        ) or {}
        if item is not None:
            out["ItemCode"] = item["Code"]
            out["Item"] = {"ItemID": item["ItemID"], "Name": item["Name"], "Code": item["Code"]}
        description = _text(line.get("Description")) or _text(
            (item or {}).get("Description" if invoice_type == "ACCREC" else "PurchaseDescription")
        )
        if description:
            out["Description"] = description
        account_code = _text(line.get("AccountCode")) or _text(details.get("AccountCode"))
        if account_code:
            errors.extend(self._account_errors(account_code, for_line=True))
            out["AccountCode"] = account_code
        tax_type = _text(line.get("TaxType")) or _text(details.get("TaxType"))
        if not tax_type and account_code:
            account = next(
                (a for a in self.rows["Accounts"].values() if a["Code"] == account_code), None
            )
            tax_type = account["TaxType"] if account else ""
        if tax_type:
            errors.extend(self._tax_type_errors(tax_type))
            out["TaxType"] = tax_type
        quantity = line.get("Quantity")
        unit = line.get("UnitAmount", details.get("UnitPrice"))
        supplied_total = line.get("LineAmount")
        rate = line.get("DiscountRate")
        discount = line.get("DiscountAmount")
        if rate is not None and discount is not None:
            errors.append("Only one of DiscountRate or DiscountAmount can be used on a line item.")
        if invoice_type == "ACCPAY" and (rate is not None or discount is not None):
            # DiscountRate/DiscountAmount are "only supported on ACCREC invoices".
            errors.append("Discounts are only supported on sales invoices (ACCREC).")
        if not description and not item_code:
            errors.append("Description needs to be at least 1 char long")
        if errors:
            raise ElementError(*errors)
        if quantity is None and unit is None and supplied_total is None:
            # "A line item with just a description ... can be created"
            out.update(LineAmount=Decimal("0.00"), TaxAmount=Decimal("0.00"))
            return out
        if quantity is None:
            quantity = supplied_total / unit if supplied_total is not None and unit else Decimal(1)
        quantity = round_to(quantity, QUANTITY_PLACES)
        if unit is None:
            unit = (
                supplied_total / quantity if supplied_total is not None and quantity else Decimal(0)
            )
        unit = round_to(unit, unit_places)
        gross = quantity * unit
        if rate is not None:
            rate = round_to(rate, CENT)
            expected = round_to(gross * (100 - rate) / 100, CENT)
            out["DiscountRate"] = rate
        elif discount is not None:
            discount = round_to(discount, CENT)
            expected = round_to(gross - discount, CENT)
            out["DiscountAmount"] = discount
        else:
            expected = round_to(gross, CENT)
        if supplied_total is not None and round_to(supplied_total, CENT) != expected:
            raise ElementError(  # (obs, Xero community)
                f"The line total {round_to(supplied_total, CENT)} does not match the expected "
                f"line total {expected}."
            )
        percent = Decimal(0)
        if tax_type and amount_types != "NoTax":
            percent = self._tax_rate(tax_type)["EffectiveRate"]  # type: ignore[index]
        if line.get("TaxAmount") is not None and amount_types != "NoTax":
            # "This value can be overriden if the calculated <TaxAmount> is not correct."
            tax = round_to(line["TaxAmount"], CENT)
        elif amount_types == "Inclusive":
            tax = round_to(expected * percent / (100 + percent), CENT)
        else:
            tax = round_to(expected * percent / 100, CENT)
        out.update(Quantity=quantity, UnitAmount=unit, LineAmount=expected, TaxAmount=tax)
        return out


def _approval_errors(lines: list[JsonObj]) -> list[str]:
    if not lines:
        return ["A document must have at least one line item to be submitted or approved."]
    if any(line.get("LineAmount") and not line.get("AccountCode") for line in lines):
        return ["Account code must be specified on every line item to submit or approve."]
    return []


def _line_totals(record: JsonObj) -> Decimal:
    """SubTotal, TotalTax and Total from the priced lines; the Total."""
    lines = record["LineItems"]
    line_total = sum((line["LineAmount"] for line in lines), Decimal("0.00"))
    tax = sum((line["TaxAmount"] for line in lines), Decimal("0.00"))
    if record["LineAmountTypes"] == "Inclusive":
        total, subtotal = line_total, line_total - tax
    else:
        subtotal, total = line_total, line_total + tax
    record.update(SubTotal=subtotal, TotalTax=tax, Total=total)
    return total


def _sum(entries: Iterable[JsonObj], key: str) -> Decimal:
    return sum((entry[key] for entry in entries), Decimal("0.00"))


def invoice_totals(record: JsonObj) -> None:
    """SubTotal, tax, Total and what is paid, credited and still due (a payment or
    credit note changes the last three: xero_payments)."""
    total = _line_totals(record)
    record["TotalDiscount"] = sum(
        (
            round_to(line["Quantity"] * line["UnitAmount"], CENT) - line["LineAmount"]
            for line in record["LineItems"]
            if "DiscountRate" in line or "DiscountAmount" in line
        ),
        Decimal("0.00"),
    )
    paid = _sum(record["Payments"], "Amount")
    credited = _sum(record["CreditNotes"], "AppliedAmount")
    record.update(AmountPaid=paid, AmountCredited=credited, AmountDue=total - paid - credited)


def credit_note_totals(record: JsonObj) -> None:
    """SubTotal, tax, Total and the ``RemainingCredit``: "The remaining credit balance
    on the Credit Note", what neither an allocation nor a refund took (xero_payments)."""
    total = _line_totals(record)
    used = _sum(record["Allocations"], "Amount") + _sum(record["Payments"], "Amount")
    record["RemainingCredit"] = total - used


@dataclass(frozen=True)
class Document:
    """What sets an invoice and a credit note apart: Xero enters, prices, approves and
    totals both alike ("Entering a credit note is very similar to entering an invoice
    - credit notes use similar fields and the same 'grid' for entering line items",
    https://help.xero.com/nz/Accounts_AR_AddCredit)."""

    kind: str  # the collection
    label: str  # as Xero's messages name it
    number_field: str
    number_prefix: str  # of the numbers generated for the sales type
    sales_type: str  # numbered by Xero when no number is given, and uniquely
    line_sides: Mapping[str, str]  # type → the side its lines price on: ACCREC or ACCPAY
    writable: frozenset[str]  # taken from the body as given
    applied: str  # the list of what settles it besides its Payments
    outstanding: str  # the amount payments and allocations may still take
    editable_when_paid: frozenset[str]  # what one with payments or allocations accepts
    void_refused: str  # the answer to voiding one with payments or allocations
    due_by_terms: bool  # a DueDate from the contact's payment terms when none is given
    totals: Callable[[JsonObj], None]


INVOICE = Document(
    kind="Invoices",
    label="Invoice",
    number_field="InvoiceNumber",
    number_prefix="INV-",
    sales_type="ACCREC",
    line_sides={"ACCREC": "ACCREC", "ACCPAY": "ACCPAY"},
    writable=_words(
        "Type InvoiceNumber Reference Url SentToContact BrandingThemeID ExpectedPaymentDate"
    ),
    applied="CreditNotes",
    outstanding="AmountDue",
    editable_when_paid=_words("InvoiceID Reference DueDate InvoiceNumber Url SentToContact"),
    void_refused=(  # (obs)
        "The status VOIDED cannot be applied to the invoice because it has payments or "
        "credit notes allocated to it."
    ),
    due_by_terms=True,
    totals=invoice_totals,
)
# NOT documented for credit notes: which fields stay editable once one is allocated or
# refunded (chosen: the invoice's counterparts), the texts of a wrong type or status
# (chosen: the invoice's, naming the credit note) and of a voided one (chosen: the
# edit refusal integrators quote for credit notes).
CREDIT_NOTE = Document(
    kind="CreditNotes",
    label="Credit Note",
    number_field="CreditNoteNumber",
    number_prefix="CN-",
    sales_type="ACCRECCREDIT",
    line_sides={"ACCRECCREDIT": "ACCREC", "ACCPAYCREDIT": "ACCPAY"},
    writable=_words("Type CreditNoteNumber Reference SentToContact BrandingThemeID"),
    applied="Allocations",
    outstanding="RemainingCredit",
    editable_when_paid=_words("CreditNoteID Reference CreditNoteNumber SentToContact"),
    void_refused=LOCKED,
    due_by_terms=False,
    totals=credit_note_totals,
)


def _summarise(kind: Kind, row: JsonObj) -> JsonObj:
    """summaryOnly=true: "only lightweight fields, excluding computation-heavy fields"."""
    heavy = (
        {
            "Addresses",
            "Phones",
            "ContactPersons",
            "ContactGroups",
            "IsSupplier",
            "IsCustomer",
            "PaymentTerms",
            "Balances",
        }
        if kind.name == "Contacts"
        else {
            "LineItems",
            "Payments",
            "CreditNotes",
            "Prepayments",
            "Overpayments",
            "HasAttachments",
        }
    )
    return {k: v for k, v in row.items() if k not in heavy}


def _sort_key(path: tuple[str, ...]) -> Callable[[JsonObj], tuple[int, Any]]:
    def key(row: JsonObj) -> tuple[int, Any]:
        return xero_where.sort_key(xero_where.field_value(row, path))

    return key


def _int_arg(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


# --- deserialisation checks ----------------------------------------------------------


def _enum(container: JsonObj, key: str, enum: str, path: str) -> None:
    if key not in container or container[key] is None:
        return
    type_name, values = _ENUMS[enum]
    value = container[key]
    match = next((v for v in values if isinstance(value, str) and v.lower() == value.lower()), None)
    if match is None:
        raise _conversion(value, f"Xero.API.Library.DataContracts.{type_name}", f"{path}.{key}")
    container[key] = match


def _numbers(container: JsonObj, keys: Iterable[str], path: str) -> None:
    for key in keys:
        if container.get(key) is not None:
            container[key] = number(container[key], f"{path}.{key}")


def _list_of_objects(container: JsonObj, key: str, path: str) -> list[JsonObj]:
    value = container.get(key, _MISSING)
    if value is _MISSING or value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise _conversion(value, f"System.Collections.Generic.List`1[{key}]", f"{path}.{key}")
    return value


def _bools(container: JsonObj, keys: Iterable[str], path: str) -> None:
    for key in keys:
        value = container.get(key)
        if value is None:
            continue
        if isinstance(value, str) and value.lower() in ("true", "false"):
            container[key] = value.lower() == "true"
        elif not isinstance(value, bool):
            raise _conversion(value, "System.Boolean", f"{path}.{key}")


def _check_element(kind: Kind, element: JsonObj, path: str) -> None:
    if kind.name == "Contacts":
        _enum(element, "ContactStatus", "ContactStatus", path)
        for i, address in enumerate(_list_of_objects(element, "Addresses", path)):
            _enum(address, "AddressType", "AddressType", f"{path}.Addresses[{i}]")
        for i, phone in enumerate(_list_of_objects(element, "Phones", path)):
            _enum(phone, "PhoneType", "PhoneType", f"{path}.Phones[{i}]")
        terms = element.get("PaymentTerms")
        if isinstance(terms, dict):
            for side in ("Sales", "Bills"):
                if isinstance(terms.get(side), dict):
                    _enum(terms[side], "Type", "PaymentTermType", f"{path}.PaymentTerms.{side}")
        _bools(element, ("IsSupplier", "IsCustomer"), path)
    elif kind.name in ("Invoices", "CreditNotes"):
        _enum(element, "Type", "InvoiceType" if kind.name == "Invoices" else "CreditNoteType", path)
        _enum(element, "Status", "InvoiceStatus", path)
        _enum(element, "LineAmountTypes", "LineAmountTypes", path)
        _numbers(element, ("CurrencyRate",), path)
        _bools(element, ("SentToContact",), path)
        for key in ("Date", "DueDate"):
            if element.get(key):
                parse_day(element[key], f"{path}.{key}")
        for i, line in enumerate(_list_of_objects(element, "LineItems", path)):
            _numbers(
                line,
                (
                    "Quantity",
                    "UnitAmount",
                    "LineAmount",
                    "DiscountRate",
                    "DiscountAmount",
                    "TaxAmount",
                ),
                f"{path}.LineItems[{i}]",
            )
        contact = element.get("Contact")
        if contact is not None and not isinstance(contact, dict):
            raise _conversion(contact, "Xero.API.Library.DataContracts.Contact", path)
        if contact:
            _check_element(KINDS["contacts"], contact, f"{path}.Contact")
    elif kind.name in ("Payments", "Allocations"):
        _numbers(element, ("Amount", "CurrencyRate"), path)
        _bools(element, ("IsReconciled",), path)
        if element.get("Date"):
            parse_day(element["Date"], f"{path}.Date")
        for key in ("Invoice", "CreditNote"):
            ref = element.get(key)
            if ref is not None and not isinstance(ref, dict):
                raise _conversion(ref, f"Xero.API.Library.DataContracts.{key}", path)
    elif kind.name == "Items":
        _bools(element, ("IsSold", "IsPurchased"), path)
        for details in ("SalesDetails", "PurchaseDetails"):
            value = element.get(details)
            if value is not None and not isinstance(value, dict):
                raise _conversion(value, "Xero.API.Library.DataContracts.Purchase", path)
            if value:
                _numbers(value, ("UnitPrice",), f"{path}.{details}")
    elif kind.name == "Accounts":
        _enum(element, "Type", "AccountType", path)
        _enum(element, "Status", "AccountStatus", path)
    elif kind.name == "TaxRates":
        _enum(element, "Status", "TaxRateStatus", path)
        for i, component in enumerate(_list_of_objects(element, "TaxComponents", path)):
            _numbers(component, ("Rate",), f"{path}.TaxComponents[{i}]")
            if component.get("Rate") is None:
                component["Rate"] = Decimal(0)
            _bools(component, ("IsCompound", "IsNonRecoverable"), f"{path}.TaxComponents[{i}]")
