"""The HubSpot sandbox's Properties API: each object type's property definitions.

HubSpot documents it at https://developers.hubspot.com/docs/api/crm/properties
(the guide, with the ``type``/``fieldType`` table) and in its OpenAPI spec
(``HubSpot/HubSpot-public-api-spec-collection``,
``PublicApiSpecs/CRM/Properties/Rollouts/145899/v3/properties.json``). Notes and what
is unconfirmed: docs/vendors/hubspot.md, "Properties".

Every object type has the built-in properties the sandbox serves (HubSpot defines
many more; the sandbox lists only those it stores, with their HubSpot type). Custom
properties are created through ``POST /crm/v3/properties/{objectType}`` and hold one
of the documented types; a record's value is then validated against its property:
numbers must parse, a ``date`` is a day at midnight UTC, an ``enumeration`` takes one
of its options (``checkbox`` several, ``;``-separated), a ``bool`` true or false.
Built-in enumerations (deal stages, pipelines, owners, …) are listed with their
type, but their options depend on the account and are neither listed nor enforced.

The sandbox calls these with its lock held; nothing here locks.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

JSON = dict[str, Any]

# type → the fieldType values it may be shown with (the guide's table).
FIELD_TYPES: dict[str, frozenset[str]] = {
    "bool": frozenset({"booleancheckbox", "calculation_equation"}),
    "enumeration": frozenset(
        {"booleancheckbox", "checkbox", "radio", "select", "calculation_equation"}
    ),
    "date": frozenset({"date"}),
    "datetime": frozenset({"date"}),
    "string": frozenset({"file", "text", "textarea", "calculation_equation", "html"}),
    "number": frozenset({"number", "calculation_equation"}),
    "phone_number": frozenset({"phonenumber"}),
}
# Internal names: lowercase letters, digits and underscores, starting with a letter, at
# most 100 characters (HubSpot's knowledge base, read second-hand: unconfirmed).
_NAME = re.compile(r"[a-z][a-z0-9_]{0,99}")
_MAX_STRING = 65_536  # "A plain text string, limited to 65,536 characters" (the guide)
_REQUIRED = ("name", "label", "type", "fieldType", "groupName")


class ApiError(Exception):
    """Raised anywhere in a request; rendered as HubSpot's error body."""

    def __init__(self, status: int, category: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.category = category
        self.message = message
        self.extra = extra

    def body(self) -> JSON:
        return {
            "status": "error",
            "message": self.message,
            "correlationId": str(uuid.uuid4()),
            "category": self.category,
            **self.extra,
        }

    def batch_item(self, context: Mapping[str, list[str]] | None = None) -> JSON:
        """The ``StandardError`` shape used inside a 207's ``errors``."""
        return {
            "status": "error",
            "category": self.category,
            "message": self.message,
            "context": dict(context or {}),
            "errors": [],
            "links": {},
        }


def problem(name: str, message: str, error: str) -> JSON:
    """One entry of a ``VALIDATION_ERROR``'s "Property values were not valid" list."""
    return {
        "isValid": False,
        "message": message,
        "error": error,
        "name": name,
        "localizedErrorMessage": message,
    }


def invalid_values(problems: Sequence[JSON], portal_id: int) -> ApiError:
    """HubSpot's 400 for property values it refuses, as its error-handling page shows
    it (https://developers.hubspot.com/docs/api-reference/latest/error-handling): the
    problems as JSON inside ``message``, and each again in ``errors``."""
    listed = [{**p, "portalId": portal_id} for p in problems]
    return ApiError(
        400,
        "VALIDATION_ERROR",
        f"Property values were not valid: {json.dumps(listed)}",
        errors=[
            {"message": p["message"], "code": p["error"], "context": {"propertyName": [p["name"]]}}
            for p in problems
        ],
    )


def decimal_or_none(text: str) -> Decimal | None:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def epoch_ms(text: str) -> int | None:
    """Epoch ms from epoch-ms digits or ISO-8601 (naive = UTC); ``None`` if neither."""
    if re.fullmatch(r"-?\d+", text.strip()):
        return int(text)
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return (parsed - _EPOCH) // _MS  # exact: a float timestamp x 1000 can fall 1 ms short


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ms(ts: float) -> int:
    """Epoch seconds in epoch ms, cut to the millisecond as ``iso`` shows them."""
    return (datetime.fromtimestamp(ts, UTC) - _EPOCH) // _MS


@dataclass(frozen=True)
class Option:
    label: str
    value: str
    hidden: bool = False
    description: str = ""
    display_order: int = -1

    def render(self) -> JSON:
        return {
            "label": self.label,
            "value": self.value,
            "hidden": self.hidden,
            "description": self.description,
            "displayOrder": self.display_order,
        }


@dataclass(frozen=True)
class Property:
    """One property definition, in HubSpot's ``Property`` shape when rendered."""

    name: str
    label: str
    type: str
    field_type: str
    group_name: str
    created_at: float
    updated_at: float
    description: str = ""
    options: tuple[Option, ...] = ()
    hubspot_defined: bool = False
    read_only: bool = False  # maintained by HubSpot: a write is READ_ONLY_VALUE
    calculated: bool = False

    def render(self) -> JSON:
        return {
            "name": self.name,
            "label": self.label,
            "type": self.type,
            "fieldType": self.field_type,
            "groupName": self.group_name,
            "description": self.description,
            "options": [o.render() for o in self.options],
            "displayOrder": -1,
            "calculated": self.calculated,
            "externalOptions": False,
            "hasUniqueValue": False,
            "hidden": False,
            "hubspotDefined": self.hubspot_defined,
            "formField": not self.read_only,
            "createdAt": iso(self.created_at),
            "updatedAt": iso(self.updated_at),
            "archived": False,
            "modificationMetadata": {
                "archivable": not self.hubspot_defined,
                "readOnlyDefinition": self.hubspot_defined,
                "readOnlyValue": self.read_only,
            },
        }

    def check(self, text: str) -> tuple[str | None, JSON | None]:
        """A written value as stored, or the problem HubSpot reports for it.

        Non-string values may not have leading or trailing whitespace (HubSpot's
        changelog, "Enhanced validations for non-string properties", January 2025).
        """
        if self.type in ("string", "phone_number"):
            if len(text) > _MAX_STRING:
                msg = f"{self.name} is longer than {_MAX_STRING} characters"
                return None, problem(self.name, msg, "INVALID_STRING_LENGTH")
            return text, None
        if text != text.strip():
            msg = f'"{text}" includes leading or trailing whitespace.'
            return None, problem(self.name, msg, "LEADING_TRAILING_WHITESPACE")
        return _CHECKS[self.type](self, text)


def _check_number(prop: Property, text: str) -> tuple[str | None, JSON | None]:
    if decimal_or_none(text) is None:
        return None, problem(prop.name, f"{text} was not a valid number.", "INVALID_FLOAT")
    return text, None


def _check_datetime(prop: Property, text: str) -> tuple[str | None, JSON | None]:
    ms = epoch_ms(text)
    if ms is None:
        msg = f"{text} was not a valid date; use ISO-8601 or epoch milliseconds."
        return None, problem(prop.name, msg, "INVALID_DATE")
    return iso(ms / 1000), None


def _check_date(prop: Property, text: str) -> tuple[str | None, JSON | None]:
    """A day, sent as ISO-8601 or epoch ms "(i.e. midnight UTC)" (the guide); it reads
    back as ``YYYY-MM-DD``."""
    ms = epoch_ms(text)
    if ms is None:
        msg = f"{text} was not a valid date; use ISO-8601 or epoch milliseconds."
        return None, problem(prop.name, msg, "INVALID_DATE")
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    if moment.time() != datetime.min.time():
        msg = f"{text} is at {moment.time().isoformat()} UTC, not midnight!"
        return None, problem(prop.name, msg, "INVALID_DATE")
    return moment.date().isoformat(), None


def _check_enumeration(prop: Property, text: str) -> tuple[str | None, JSON | None]:
    if prop.hubspot_defined and not prop.options:
        return text, None  # the account's own options (stages, owners): not modelled
    allowed = [o.value for o in prop.options]
    chosen = text.split(";") if prop.field_type == "checkbox" else [text]
    for value in chosen:
        if value not in allowed:
            msg = f"{value} was not one of the allowed options: [{', '.join(allowed)}]"
            return None, problem(prop.name, msg, "INVALID_OPTION")
    return text, None


def _check_bool(prop: Property, text: str) -> tuple[str | None, JSON | None]:
    if text.lower() not in ("true", "false"):
        msg = f"{text} was not a valid boolean; use true or false."
        return None, problem(prop.name, msg, "INVALID_BOOLEAN")
    return text.lower(), None


_CHECKS: dict[str, Callable[[Property, str], tuple[str | None, JSON | None]]] = {
    "number": _check_number,
    "datetime": _check_datetime,
    "date": _check_date,
    "enumeration": _check_enumeration,
    "bool": _check_bool,
}


@dataclass(frozen=True)
class BuiltIn:
    """What the sandbox knows of one object type's HubSpot-defined properties."""

    group: str  # the type's default group, e.g. ``dealinformation``
    group_label: str
    names: tuple[str, ...]
    numbers: frozenset[str] = frozenset()
    datetimes: frozenset[str] = frozenset()
    enumerations: Mapping[str, str] = field(default_factory=dict)  # name → fieldType
    read_only: frozenset[str] = frozenset()
    calculated: frozenset[str] = frozenset()

    def definition(self, name: str, now: float) -> Property:
        if name in self.numbers:
            kind, shown = "number", "number"
        elif name in self.datetimes:
            kind, shown = "datetime", "date"
        elif name in self.enumerations:
            kind, shown = "enumeration", self.enumerations[name]
        else:
            kind, shown = "string", "text"
        return Property(
            name=name,
            label=name.replace("_", " ").capitalize(),
            type=kind,
            field_type=shown,
            group_name=self.group,
            created_at=now,
            updated_at=now,
            hubspot_defined=True,
            read_only=name in self.read_only,
            calculated=name in self.calculated,
        )


@dataclass(frozen=True)
class Group:
    name: str
    label: str
    display_order: int = -1

    def render(self) -> JSON:
        return {
            "name": self.name,
            "label": self.label,
            "displayOrder": self.display_order,
            "archived": False,
        }


def _not_valid(message: str) -> ApiError:
    return ApiError(400, "VALIDATION_ERROR", message)


def _string(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise _not_valid(f"{key} must be a non-empty string")
    return value


class PropertyCatalog:
    """Every object type's property definitions and groups in one account.

    ``preset`` names custom string properties the account is made with (the sandbox
    config's ``custom_properties``); API-created ones are forgotten on ``reset``.
    """

    def __init__(
        self,
        built_in: Mapping[str, BuiltIn],
        preset: Mapping[str, Sequence[str]],
        clock: Callable[[], float],
    ) -> None:
        self._built_in = built_in
        self._preset = preset
        self._clock = clock
        self._properties: dict[str, dict[str, Property]] = {}
        self._groups: dict[str, dict[str, Group]] = {}
        self.reset()

    def reset(self) -> None:
        now = self._clock()
        for otype, known in self._built_in.items():
            self._properties[otype] = {n: known.definition(n, now) for n in known.names}
            self._groups[otype] = {known.group: Group(known.group, known.group_label)}
            for name in self._preset.get(otype, ()):
                self._properties[otype][name] = Property(
                    name, name, "string", "text", known.group, now, now
                )

    def get(self, otype: str, name: str) -> Property | None:
        return self._properties[otype].get(name)

    def listed(self, otype: str) -> list[JSON]:
        return [p.render() for _, p in sorted(self._properties[otype].items())]

    def read(self, otype: str, name: str) -> Property:
        found = self.get(otype, name)
        if found is None:
            raise ApiError(404, "OBJECT_NOT_FOUND", f"Unable to find property {name}")
        return found

    def create(self, otype: str, body: Mapping[str, Any]) -> Property:
        """A new custom property; 409 ``OBJECT_ALREADY_EXISTS`` when the name is taken."""
        missing = [key for key in _REQUIRED if key not in body]
        if missing:
            raise _not_valid(f"Property definition is missing required fields: {missing}")
        name = _string(body, "name")
        if not _NAME.fullmatch(name):
            raise _not_valid(
                f"Property name {name!r} is invalid: use lowercase letters, digits and "
                "underscores, starting with a letter, at most 100 characters"
            )
        if name in self._properties[otype]:
            raise ApiError(409, "OBJECT_ALREADY_EXISTS", f"Property named {name!r} already exists.")
        now = self._clock()
        created = self._definition(
            otype, Property(name, "", "", "", "", now, now), body, required=True
        )
        self._properties[otype][name] = created
        return created

    def update(self, otype: str, name: str, body: Mapping[str, Any]) -> Property:
        current = self.read(otype, name)
        if current.hubspot_defined:
            raise _not_valid(f"{name} is a HubSpot-defined property; its definition is read-only")
        updated = self._definition(
            otype, replace(current, updated_at=self._clock()), body, required=False
        )
        self._properties[otype][name] = updated
        return updated

    def _definition(
        self, otype: str, base: Property, body: Mapping[str, Any], *, required: bool
    ) -> Property:
        """``base`` with the fields ``body`` sets, each validated as HubSpot does."""

        def given(key: str, current: str) -> str:
            return _string(body, key) if required or key in body else current

        label = given("label", base.label)
        kind = given("type", base.type)
        if kind not in FIELD_TYPES:
            valid = sorted(FIELD_TYPES)
            raise _not_valid(f"{kind!r} is not a valid property type; use one of {valid}")
        shown = given("fieldType", base.field_type)
        if shown not in FIELD_TYPES[kind]:
            raise _not_valid(
                f"fieldType {shown!r} is not valid for type {kind!r}; use one of "
                f"{sorted(FIELD_TYPES[kind])}"
            )
        group = given("groupName", base.group_name)
        if group not in self._groups[otype]:
            raise _not_valid(f"Property group {group!r} does not exist")
        description = body.get("description", base.description)
        if not isinstance(description, str):
            raise _not_valid("description must be a string")
        options = _options(body["options"]) if "options" in body else base.options
        if kind == "enumeration" and not options:
            raise _not_valid("options are required for an enumeration property")
        return replace(
            base,
            label=label,
            type=kind,
            field_type=shown,
            group_name=group,
            description=description,
            options=options if kind == "enumeration" else (),
        )

    def groups(self, otype: str) -> list[JSON]:
        return [g.render() for _, g in sorted(self._groups[otype].items())]

    def create_group(self, otype: str, body: Mapping[str, Any]) -> Group:
        name, label = _string(body, "name"), _string(body, "label")
        if not _NAME.fullmatch(name):
            raise _not_valid(f"Property group name {name!r} is invalid")
        if name in self._groups[otype]:
            raise ApiError(409, "OBJECT_ALREADY_EXISTS", f"Property group {name!r} already exists.")
        order = body.get("displayOrder", -1)
        if not isinstance(order, int):
            raise _not_valid("displayOrder must be an integer")
        group = self._groups[otype][name] = Group(name, label, order)
        return group

    def read_group(self, otype: str, name: str) -> Group:
        found = self._groups[otype].get(name)
        if found is None:
            raise ApiError(404, "OBJECT_NOT_FOUND", f"Unable to find property group {name}")
        return found


def _options(raw: Any) -> tuple[Option, ...]:
    """``OptionInput`` list: ``label``, ``value`` and ``hidden`` are required (the
    spec); labels and values are unique within a property (HubSpot's knowledge base)."""
    if not isinstance(raw, list):
        raise _not_valid("options must be a list")
    options: list[Option] = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("hidden"), bool):
            raise _not_valid("each option needs label, value and hidden")
        label, value = _string(item, "label"), _string(item, "value")
        order = item.get("displayOrder", -1)
        description = item.get("description", "")
        if not isinstance(order, int) or not isinstance(description, str):
            raise _not_valid("an option's displayOrder is an integer, its description a string")
        options.append(Option(label, value, item["hidden"], description, order))
    for key in ("label", "value"):
        seen = [getattr(o, key) for o in options]
        if len(set(seen)) != len(seen):
            raise _not_valid(f"option {key}s must be unique")
    return tuple(options)
