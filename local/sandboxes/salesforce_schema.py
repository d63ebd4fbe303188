"""The Salesforce objects the sandbox models: fields, types, ids and value formats.

Field names, types, lengths and which fields are read-only follow the Object
Reference (https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/
object_reference/) for Account, Contact, Opportunity, OpportunityLineItem,
OpportunityContactRole, Product2, Pricebook2, PricebookEntry and OpportunityStage.
Only the fields an integration needs are modelled; anything else is an unknown
field, refused as Salesforce refuses one.

Ids are Salesforce's: a 3-character key prefix per object, 15 case-sensitive
characters, and the 3-character case-safe suffix that makes the 18-character form
("ID Field Type" in https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/
object_reference/field_types.htm). Both forms are accepted on input and
the 18-character one is always returned.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, TypedDict

__all__ = [
    "ID_TYPES",
    "NUMBER_TYPES",
    "STAGES",
    "STRING_TYPES",
    "CoercionError",
    "Field",
    "SObjectType",
    "Stage",
    "build_schema",
    "coerce",
    "digits_fit",
    "format_datetime",
    "make_id",
    "normalize_id",
    "parse_datetime",
    "relationships",
    "to_json",
]

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_ID_CHARS = re.compile(r"^[A-Za-z0-9]+$")
# The 2 "server" characters and the reserved one that follow the key prefix.
_POD = "5g0"

STRING_TYPES = frozenset({"string", "textarea", "email", "phone", "url", "picklist"})
NUMBER_TYPES = frozenset({"currency", "double", "percent", "int"})
ID_TYPES = frozenset({"id", "reference"})
# The names Salesforce uses for field types in messages (SOAP types).
SOAP_TYPES = {
    "id": "id",
    "reference": "id",
    "boolean": "boolean",
    "currency": "currency",
    "double": "double",
    "percent": "double",
    "int": "int",
    "date": "date",
    "datetime": "dateTime",
}


def _suffix(id15: str) -> str:
    """The case-safe suffix: one character per 5-character chunk, a bit per capital."""
    out = []
    for chunk in range(3):
        bits = 0
        for position, char in enumerate(id15[chunk * 5 : chunk * 5 + 5]):
            if "A" <= char <= "Z":
                bits |= 1 << position
        out.append(_SUFFIX[bits])
    return "".join(out)


def make_id(key_prefix: str, sequence: int) -> str:
    """The 18-character id of the ``sequence``-th record with ``key_prefix``."""
    digits = ""
    number = sequence
    while number:
        number, rest = divmod(number, 62)
        digits = _BASE62[rest] + digits
    id15 = f"{key_prefix}{_POD}{digits.rjust(9, '0')}"
    return id15 + _suffix(id15)


def normalize_id(raw: str) -> str | None:
    """The 18-character form of a 15- or 18-character id, or None if it is not one.

    An 18-character id is case-insensitive: its suffix restores the case of the
    first 15 characters.
    """
    if len(raw) not in (15, 18) or not _ID_CHARS.match(raw):
        return None
    if len(raw) == 15:
        return raw + _suffix(raw)
    chars = list(raw[:15])
    for chunk, suffix_char in enumerate(raw[15:].upper()):
        bits = _SUFFIX.find(suffix_char)
        if bits < 0:
            return None
        for position in range(5):
            index = chunk * 5 + position
            upper = bool(bits & (1 << position))
            chars[index] = chars[index].upper() if upper else chars[index].lower()
    id15 = "".join(chars)
    return id15 + _suffix(id15)


def format_datetime(value: datetime) -> str:
    """Salesforce's JSON form: ``2024-01-15T10:30:00.000+0000`` (always UTC)."""
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}+0000"


_DATETIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(Z|[+-]\d{2}:?\d{2})?$"
)


def parse_datetime(text: str) -> datetime | None:
    """An ISO-8601 date-time as REST accepts it (``Z``, ``+hh:mm`` or ``+hhmm``; none = UTC)."""
    match = _DATETIME.match(text.strip())
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micros = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        value = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micros, UTC
        )
    except ValueError:
        return None
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        offset = sign * (int(digits[:2]) * 60 + int(digits[2:]))
        value -= timedelta(minutes=offset)
    return value


@dataclass(frozen=True)
class Field:
    """One field. ``required`` means REQUIRED_FIELD_MISSING on create when absent."""

    name: str
    type: str
    label: str
    length: int = 0
    precision: int = 0
    scale: int = 0
    required: bool = False
    createable: bool = True
    updateable: bool = True
    default: Any = None
    reference_to: str | None = None
    relationship_name: str | None = None
    child_relationship: str | None = None
    cascade_delete: bool = False
    picklist: tuple[str, ...] = ()
    restricted: bool = False
    currency: bool = False  # exists only in a multi-currency org
    custom: bool = False  # made by an admin (``salesforce_fields``), its name ends ``__c``

    @property
    def soap_type(self) -> str:
        return SOAP_TYPES.get(self.type, "string")


@dataclass(frozen=True)
class SObjectType:
    name: str
    label: str
    label_plural: str
    key_prefix: str
    fields: tuple[Field, ...]
    createable: bool = True
    updateable: bool = True
    deletable: bool = True
    _by_name: dict[str, Field] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_name.update({f.name.lower(): f for f in self.fields})

    def field(self, name: str) -> Field | None:
        """A field by name, case-insensitively (SOQL and REST bodies both are)."""
        return self._by_name.get(name.lower())

    def relationship(self, name: str) -> Field | None:
        """The reference field whose relationship name is ``name`` (``Account``)."""
        wanted = name.lower()
        for f in self.fields:
            if f.relationship_name and f.relationship_name.lower() == wanted:
                return f
        return None


@dataclass(frozen=True)
class Stage:
    """One value of the standard OpportunityStage picklist."""

    label: str
    probability: int
    forecast_category: str
    closed: bool
    won: bool


# The standard stages of a new org, with the probability, forecast category and
# closed/won flags Salesforce ships them with
# (https://developer.salesforce.com/docs/platform/object-reference/references/
# standard-objects/object-opportunitystage.html).
STAGES = (
    Stage("Prospecting", 10, "Pipeline", False, False),
    Stage("Qualification", 10, "Pipeline", False, False),
    Stage("Needs Analysis", 20, "Pipeline", False, False),
    Stage("Value Proposition", 50, "Pipeline", False, False),
    Stage("Id. Decision Makers", 60, "Pipeline", False, False),
    Stage("Perception Analysis", 70, "Pipeline", False, False),
    Stage("Proposal/Price Quote", 75, "Pipeline", False, False),
    Stage("Negotiation/Review", 90, "Pipeline", False, False),
    Stage("Closed Won", 100, "Closed", True, True),
    Stage("Closed Lost", 0, "Omitted", True, False),
)


class _Access(TypedDict, total=False):
    createable: bool
    updateable: bool


_RO: _Access = {"createable": False, "updateable": False}
_CREATE_ONLY: _Access = {"updateable": False}


def _system_fields() -> tuple[Field, ...]:
    ro = _RO
    return (
        Field("Id", "id", "Record ID", length=18, **ro),
        Field("IsDeleted", "boolean", "Deleted", **ro),
        Field("CreatedDate", "datetime", "Created Date", **ro),
        Field("CreatedById", "reference", "Created By ID", reference_to="User", **ro),
        Field("LastModifiedDate", "datetime", "Last Modified Date", **ro),
        Field("LastModifiedById", "reference", "Last Modified By ID", reference_to="User", **ro),
        Field("SystemModstamp", "datetime", "System Modstamp", **ro),
    )


def _owner() -> Field:
    return Field("OwnerId", "reference", "Owner ID", reference_to="User", relationship_name=None)


def _currency(createable: bool = True, updateable: bool = True) -> Field:
    return Field(
        "CurrencyIsoCode",
        "picklist",
        "Currency ISO Code",
        length=3,
        createable=createable,
        updateable=updateable,
        restricted=True,
        currency=True,
    )


def _address(prefix: str, label: str) -> tuple[Field, ...]:
    return (
        Field(f"{prefix}Street", "textarea", f"{label} Street", length=255),
        Field(f"{prefix}City", "string", f"{label} City", length=40),
        Field(f"{prefix}State", "string", f"{label} State/Province", length=80),
        Field(f"{prefix}PostalCode", "string", f"{label} Zip/Postal Code", length=20),
        Field(f"{prefix}Country", "string", f"{label} Country", length=80),
    )


_ACCOUNT_TYPES = (
    "Prospect",
    "Customer - Direct",
    "Customer - Channel",
    "Channel Partner / Reseller",
    "Installation Partner",
    "Technology Partner",
    "Other",
)
_OPPORTUNITY_TYPES = (
    "Existing Customer - Upgrade",
    "Existing Customer - Replacement",
    "Existing Customer - Downgrade",
    "New Customer",
)
_LEAD_SOURCES = ("Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other")
_FORECAST_CATEGORIES = ("Omitted", "Pipeline", "Best Case", "Commit", "Closed")
_ROLES = (
    "Business User",
    "Decision Maker",
    "Economic Buyer",
    "Economic Decision Maker",
    "Evaluator",
    "Executive Sponsor",
    "Influencer",
    "Technical Buyer",
    "Other",
)


def _objects() -> tuple[SObjectType, ...]:
    ro = _RO
    create_only = _CREATE_ONLY
    account = SObjectType(
        "Account",
        "Account",
        "Accounts",
        "001",
        (
            *_system_fields(),
            Field("Name", "string", "Account Name", length=255, required=True),
            Field("AccountNumber", "string", "Account Number", length=40),
            Field("Type", "picklist", "Account Type", length=255, picklist=_ACCOUNT_TYPES),
            Field("Phone", "phone", "Account Phone", length=40),
            Field("Website", "url", "Website", length=255),
            Field("Description", "textarea", "Account Description", length=32000),
            *_address("Billing", "Billing"),
            *_address("Shipping", "Shipping"),
            _owner(),
            _currency(),
        ),
    )
    contact = SObjectType(
        "Contact",
        "Contact",
        "Contacts",
        "003",
        (
            *_system_fields(),
            Field(
                "AccountId",
                "reference",
                "Account ID",
                reference_to="Account",
                relationship_name="Account",
                child_relationship="Contacts",
                cascade_delete=True,
            ),
            Field("FirstName", "string", "First Name", length=40),
            Field("LastName", "string", "Last Name", length=80, required=True),
            Field("Name", "string", "Full Name", length=121, **ro),
            Field("Title", "string", "Title", length=128),
            Field("Email", "email", "Email", length=80),
            Field("Phone", "phone", "Business Phone", length=40),
            Field("MobilePhone", "phone", "Mobile Phone", length=40),
            Field("Description", "textarea", "Contact Description", length=32000),
            *_address("Mailing", "Mailing"),
            _owner(),
            _currency(),
        ),
    )
    stage_names = tuple(s.label for s in STAGES)
    opportunity = SObjectType(
        "Opportunity",
        "Opportunity",
        "Opportunities",
        "006",
        (
            *_system_fields(),
            Field(
                "AccountId",
                "reference",
                "Account ID",
                reference_to="Account",
                relationship_name="Account",
                child_relationship="Opportunities",
                cascade_delete=True,
            ),
            Field("Name", "string", "Name", length=120, required=True),
            Field("Description", "textarea", "Description", length=32000),
            Field(
                "StageName",
                "picklist",
                "Stage",
                length=255,
                required=True,
                picklist=stage_names,
                restricted=True,
            ),
            Field("Amount", "currency", "Amount", precision=18, scale=2),
            Field("Probability", "percent", "Probability (%)", precision=3, scale=0),
            Field("ExpectedRevenue", "currency", "Expected Amount", precision=18, scale=2, **ro),
            Field("CloseDate", "date", "Close Date", required=True),
            Field("Type", "picklist", "Opportunity Type", length=255, picklist=_OPPORTUNITY_TYPES),
            Field("NextStep", "string", "Next Step", length=255),
            Field("LeadSource", "picklist", "Lead Source", length=255, picklist=_LEAD_SOURCES),
            Field("IsClosed", "boolean", "Closed", **ro),
            Field("IsWon", "boolean", "Won", **ro),
            Field(
                "ForecastCategoryName",
                "picklist",
                "Forecast Category",
                length=255,
                picklist=_FORECAST_CATEGORIES,
                restricted=True,
            ),
            Field(
                "Pricebook2Id",
                "reference",
                "Price Book ID",
                reference_to="Pricebook2",
                relationship_name="Pricebook2",
                child_relationship="Opportunities",
            ),
            Field("HasOpportunityLineItem", "boolean", "Has Line Item", **ro),
            _owner(),
            _currency(),
        ),
    )
    line_item = SObjectType(
        "OpportunityLineItem",
        "Opportunity Product",
        "Opportunity Product",
        "00k",
        (
            *_system_fields(),
            Field(
                "OpportunityId",
                "reference",
                "Opportunity ID",
                required=True,
                reference_to="Opportunity",
                relationship_name="Opportunity",
                child_relationship="OpportunityLineItems",
                cascade_delete=True,
                **create_only,
            ),
            Field("SortOrder", "int", "Sort Order", precision=9, **ro),
            Field(
                "PricebookEntryId",
                "reference",
                "Price Book Entry ID",
                reference_to="PricebookEntry",
                relationship_name="PricebookEntry",
                child_relationship="OpportunityLineItems",
                **create_only,
            ),
            Field(
                "Product2Id",
                "reference",
                "Product ID",
                reference_to="Product2",
                relationship_name="Product2",
                **create_only,
            ),
            Field("ProductCode", "string", "Product Code", length=255, **ro),
            Field("Name", "string", "Opportunity Product Name", length=376, **ro),
            Field("Quantity", "double", "Quantity", precision=12, scale=2, required=True),
            Field("TotalPrice", "currency", "Total Price", precision=18, scale=2),
            Field("UnitPrice", "currency", "Sales Price", precision=18, scale=2),
            Field("ListPrice", "currency", "List Price", precision=18, scale=2, **ro),
            Field("Subtotal", "currency", "Subtotal", precision=18, scale=2, **ro),
            Field("Discount", "percent", "Discount", precision=5, scale=2),
            Field("ServiceDate", "date", "Date"),
            Field("Description", "string", "Line Description", length=255),
            _currency(createable=False, updateable=False),
        ),
    )
    contact_role = SObjectType(
        "OpportunityContactRole",
        "Opportunity Contact Role",
        "Opportunity Contact Role",
        "00K",
        (
            *_system_fields(),
            Field(
                "OpportunityId",
                "reference",
                "Opportunity ID",
                required=True,
                reference_to="Opportunity",
                relationship_name="Opportunity",
                child_relationship="OpportunityContactRoles",
                cascade_delete=True,
                **create_only,
            ),
            Field(
                "ContactId",
                "reference",
                "Contact ID",
                required=True,
                reference_to="Contact",
                relationship_name="Contact",
                child_relationship="OpportunityContactRoles",
                cascade_delete=True,
            ),
            Field("Role", "picklist", "Role", length=40, picklist=_ROLES),
            Field("IsPrimary", "boolean", "Primary", default=False),
        ),
    )
    product = SObjectType(
        "Product2",
        "Product",
        "Products",
        "01t",
        (
            *_system_fields(),
            Field("Name", "string", "Product Name", length=255, required=True),
            Field("ProductCode", "string", "Product Code", length=255),
            Field("Description", "textarea", "Product Description", length=4000),
            # "Defaulted on create"; false, as a new product is inactive until priced.
            Field("IsActive", "boolean", "Active", default=False),
            _currency(),
        ),
    )
    pricebook = SObjectType(
        "Pricebook2",
        "Price Book",
        "Price Books",
        "01s",
        (
            *_system_fields(),
            Field("Name", "string", "Price Book Name", length=255, required=True),
            Field("Description", "string", "Description", length=255),
            Field("IsActive", "boolean", "Active", default=False),
            Field("IsStandard", "boolean", "Is Standard Price Book", **ro),
        ),
    )
    entry = SObjectType(
        "PricebookEntry",
        "Price Book Entry",
        "Price Book Entries",
        "01u",
        (
            *_system_fields(),
            Field("Name", "string", "Product Name", length=255, **ro),
            Field(
                "Pricebook2Id",
                "reference",
                "Price Book ID",
                required=True,
                reference_to="Pricebook2",
                relationship_name="Pricebook2",
                child_relationship="PricebookEntries",
                cascade_delete=True,
                **create_only,
            ),
            Field(
                "Product2Id",
                "reference",
                "Product ID",
                required=True,
                reference_to="Product2",
                relationship_name="Product2",
                child_relationship="PricebookEntries",
                cascade_delete=True,
                **create_only,
            ),
            Field("ProductCode", "string", "Product Code", length=255, **ro),
            Field("UnitPrice", "currency", "List Price", precision=18, scale=2),
            Field("IsActive", "boolean", "Active", default=False),
            Field("UseStandardPrice", "boolean", "Use Standard Price", default=False),
            _currency(updateable=False),
        ),
    )
    stage = SObjectType(
        "OpportunityStage",
        "Opportunity Stage",
        "Opportunity Stages",
        "01J",
        (
            *_system_fields(),
            Field("MasterLabel", "string", "Master Label", length=255, **ro),
            Field("ApiName", "string", "API Name", length=255, **ro),
            Field("IsActive", "boolean", "Is Active", **ro),
            Field("SortOrder", "int", "Sort Order", precision=9, **ro),
            Field("IsClosed", "boolean", "Closed", **ro),
            Field("IsWon", "boolean", "Won", **ro),
            Field(
                "ForecastCategoryName",
                "picklist",
                "Forecast Category Name",
                length=255,
                picklist=_FORECAST_CATEGORIES,
                **ro,
            ),
            Field("DefaultProbability", "percent", "Probability (%)", precision=3, **ro),
        ),
        createable=False,
        updateable=False,
        deletable=False,
    )
    return (
        account,
        contact,
        opportunity,
        line_item,
        contact_role,
        product,
        pricebook,
        entry,
        stage,
    )


def build_schema(currencies: Iterable[str]) -> dict[str, SObjectType]:
    """Every modelled object by name; ``CurrencyIsoCode`` only in a multi-currency org."""
    codes = tuple(currencies)
    out: dict[str, SObjectType] = {}
    for obj in _objects():
        fields = []
        for f in obj.fields:
            if f.currency:
                if not codes:
                    continue
                f = Field(**{**vars(f), "picklist": codes})
            fields.append(f)
        out[obj.name] = SObjectType(
            obj.name,
            obj.label,
            obj.label_plural,
            obj.key_prefix,
            tuple(fields),
            obj.createable,
            obj.updateable,
            obj.deletable,
        )
    return out


class CoercionError(ValueError):
    """A JSON value that does not fit the field's type (JSON_PARSER_ERROR)."""

    def __init__(self, f: Field, raw: Any) -> None:
        token = "VALUE_STRING" if isinstance(raw, str) else "VALUE_" + type(raw).__name__.upper()
        super().__init__(
            f"Cannot deserialize instance of {f.soap_type} from {token} value {raw} "
            "or request may be missing a required field"
        )


def coerce(f: Field, raw: Any) -> Any:
    """A JSON value as the field stores it (str, Decimal, bool, date, datetime or None).

    Numbers are held at the field's scale, rounded half up; strings that spell a
    number or boolean are accepted as Salesforce's JSON reader accepts them.
    """
    if raw is None or (raw == "" and f.type not in STRING_TYPES):
        return None
    if f.type in STRING_TYPES or f.type in ID_TYPES:
        if isinstance(raw, bool | dict | list):
            raise CoercionError(f, raw)
        text = str(raw)
        return text if text != "" else None
    if f.type == "boolean":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        raise CoercionError(f, raw)
    if f.type in NUMBER_TYPES:
        if isinstance(raw, bool) or not isinstance(raw, int | float | str):
            raise CoercionError(f, raw)
        try:
            number = Decimal(str(raw).strip())
        except InvalidOperation as exc:
            raise CoercionError(f, raw) from exc
        if not number.is_finite():
            raise CoercionError(f, raw)
        if f.type == "int":
            return int(number.to_integral_value(ROUND_HALF_UP))
        return number.quantize(Decimal(1).scaleb(-f.scale), ROUND_HALF_UP)
    if f.type == "date":
        if not isinstance(raw, str):
            raise CoercionError(f, raw)
        try:
            return date.fromisoformat(raw.strip()[:10])
        except ValueError as exc:
            raise CoercionError(f, raw) from exc
    if f.type == "datetime":
        parsed = parse_datetime(raw) if isinstance(raw, str) else None
        if parsed is None:
            raise CoercionError(f, raw)
        return parsed
    raise CoercionError(f, raw)


def to_json(value: Any) -> Any:
    """A stored value as Salesforce writes it in JSON (numbers as floats, dates as text)."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def digits_fit(f: Field, value: Decimal) -> bool:
    """Whether a number fits the field's precision (digits left of the point)."""
    whole = f.precision - f.scale
    return abs(value) < Decimal(10) ** whole


def relationships(schema: Mapping[str, SObjectType]) -> dict[str, dict[str, tuple[str, Field]]]:
    """Child relationships per parent object: name (lower-case) -> (child object, field)."""
    out: dict[str, dict[str, tuple[str, Field]]] = {name: {} for name in schema}
    for obj in schema.values():
        for f in obj.fields:
            if f.child_relationship and f.reference_to in out:
                out[f.reference_to][f.child_relationship.lower()] = (obj.name, f)
    return out
