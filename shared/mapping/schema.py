"""The mapping file's schema, validated completely when the file is loaded.

Shape errors (unknown keys, bad transforms, bad regex or time zone) are reported
by pydantic at their key path. What needs the canonical models to judge (unknown
canonical field, a required one left unmapped, a default or value-map target the
field would refuse, a ``decimal``/``date`` result in a field of another type) is
checked by ``MappingConfig`` itself and reported as one ``mapping`` error whose
context lists every problem with its key path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from shared.mapping.transforms import Kind, Template, Transform, config_error
from shared.models import (
    CustomerStanding,
    Deal,
    InvoiceStanding,
    LineItem,
    ObjectType,
    Party,
    System,
)


def _scalar(value: Any) -> Any:
    """Identifiers in files are often bare numbers (pipeline ``12345``): read them as text."""
    if isinstance(value, bool):
        raise config_error("scalar", f"expected text, got {value!r}: quote it")
    if isinstance(value, int):
        return str(value)
    return value


Scalar = Annotated[str, BeforeValidator(_scalar)]


def _sources(value: Any) -> Any:
    if value is None or (isinstance(value, str) and value):
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        if len(set(value)) != len(value):
            raise config_error("from", "`from` lists a property twice")
        return tuple(value)
    raise config_error("from", "`from` is a property name or a non-empty list of property names")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# Which way a mapped field flows. Forward (CRM → accounting) unless it says otherwise;
# ``both`` needs a conflict policy for when both sides changed since the last sync.
Direction = Literal["crm_to_accounting", "accounting_to_crm", "both"]
Conflict = Literal["crm_wins", "accounting_wins", "newest_wins", "hold"]
FORWARD: Direction = "crm_to_accounting"
BACKWARD: Direction = "accounting_to_crm"


class FieldSpec(_Spec):
    """How one canonical field gets its value from the source record."""

    from_: Annotated[str | tuple[str, ...] | None, BeforeValidator(_sources)] = Field(
        default=None, alias="from"
    )
    transforms: tuple[Transform, ...] = ()
    value_map: dict[Scalar, Scalar] | None = None
    default: Scalar | None = None
    required: bool = False
    direction: Direction = FORWARD
    conflict: Conflict | None = None
    _kind: Kind = PrivateAttr()

    @property
    def sources(self) -> tuple[str, ...]:
        if self.from_ is None:
            return ()
        return (self.from_,) if isinstance(self.from_, str) else self.from_

    @property
    def kind(self) -> Kind:
        """What the transforms produce: text, decimal or date."""
        return self._kind

    @model_validator(mode="after")
    def _chain(self) -> FieldSpec:
        if self.direction == "both" and self.conflict is None:
            raise config_error(
                "conflict",
                "direction both needs a `conflict` policy for when both sides changed: "
                "crm_wins, accounting_wins, newest_wins or hold",
            )
        if self.conflict is not None and self.direction != "both":
            raise config_error("conflict", "`conflict` applies to `direction: both` only")
        if self.direction != FORWARD and not isinstance(self.from_, str):
            raise config_error(
                "direction",
                f"direction {self.direction} needs `from` to name the one CRM property "
                "the accounting side's value is written into",
            )
        if self.from_ is None:
            if self.default is None:
                raise config_error("source", "needs `from` (a source property) or a `default`")
            if self.transforms or self.value_map is not None:
                raise config_error("source", "`transforms` and `value_map` need `from`")
        kind = Kind.SOURCES if isinstance(self.from_, tuple) else Kind.TEXT
        for index, transform in enumerate(self.transforms):
            try:
                kind = transform.output(kind)
            except ValueError as exc:
                raise config_error(
                    "transforms", f"transforms[{index}] ({transform.op}) {exc}"
                ) from None
            if isinstance(transform, Template):
                unknown = [p for p in transform.placeholders if p not in self.sources]
                if unknown:
                    raise config_error(
                        "template",
                        f"transforms[{index}]: template placeholder {{{unknown[0]}}} is not "
                        f"listed in `from` ({', '.join(self.sources)})",
                    )
        if kind is Kind.SOURCES:
            raise config_error(
                "transforms",
                f"`from` lists {len(self.sources)} properties: combine them with a "
                "`join` or `template` transform",
            )
        if self.value_map is not None and kind is not Kind.TEXT:
            raise config_error(
                "value_map", f"value_map needs text, but the transforms give a {kind}"
            )
        self._kind = kind
        return self


class FilterRule(_Spec):
    """One condition on a source property; a record must meet every rule of its object.

    ``field`` names the vendor property (``pipeline``), with exactly one of ``in``,
    ``not_in``, ``equals``, ``present`` or ``matches`` (a regex the whole value must
    match). An empty or missing value is "" for ``in``/``not_in``/``equals``/``matches``.
    """

    field: str = Field(min_length=1)
    in_: tuple[Scalar, ...] | None = Field(default=None, alias="in")
    not_in: tuple[Scalar, ...] | None = None
    equals: Scalar | None = None
    present: bool | None = None
    matches: str | None = None
    _pattern: re.Pattern[str] | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _one_operator(self) -> FilterRule:
        operators = [
            name
            for name in ("in_", "not_in", "equals", "present", "matches")
            if getattr(self, name) is not None
        ]
        if len(operators) != 1:
            raise config_error(
                "filter",
                f"a filter rule has exactly one of in, not_in, equals, present, matches "
                f"(got {len(operators)})",
            )
        if self.matches is not None:
            try:
                self._pattern = re.compile(self.matches)
            except re.error as exc:
                raise config_error(
                    "regex", f"invalid regular expression {self.matches!r}: {exc}"
                ) from None
        return self

    def admits(self, value: str | None) -> bool:
        text = value or ""
        if self.in_ is not None:
            return text in self.in_
        if self.not_in is not None:
            return text not in self.not_in
        if self.equals is not None:
            return text == self.equals
        if self._pattern is not None:
            return self._pattern.fullmatch(text) is not None
        return bool(text.strip()) is self.present

    def describe(self) -> str:
        if self.in_ is not None:
            return f"{self.field} in {list(self.in_)}"
        if self.not_in is not None:
            return f"{self.field} not in {list(self.not_in)}"
        if self.equals is not None:
            return f"{self.field} equals {self.equals!r}"
        if self.matches is not None:
            return f"{self.field} matches {self.matches!r}"
        return f"{self.field} {'present' if self.present else 'absent'}"


Fields = dict[str, FieldSpec]
PropertyName = Annotated[str, StringConstraints(min_length=1)]
BackKind = Literal["string", "number", "date", "enumeration"]


class BackField(_Spec):
    """A CRM property filled from the accounting side (two-way, opt-in per field).

    ``from`` names a field of where the invoice (a deal's) or the customer (a company's
    or contact's) stands; ``transforms``, ``value_map`` and ``default`` work as in a
    forward field (a ``default`` when the value is empty or not in the value map).
    ``label`` and ``kind`` describe the property, created in the CRM when missing.
    """

    from_: PropertyName = Field(alias="from")
    label: PropertyName
    kind: BackKind
    transforms: tuple[Transform, ...] = ()
    value_map: dict[Scalar, Scalar] | None = None
    default: Scalar | None = None


class ObjectMapping(_Spec):
    filter: tuple[FilterRule, ...] = ()
    fields: Fields
    # CRM property ← the accounting side's standing (nothing flows back unless listed).
    back: dict[PropertyName, BackField] = {}


class LineItemsMapping(_Spec):
    """Maps each of a deal's line-item children to a ``LineItem``."""

    fields: Fields


class ExtraLine(_Spec):
    """A line built from the deal's own properties (shipping, a fee), appended to its lines.

    Added only when every ``when`` rule admits the deal.
    """

    when: tuple[FilterRule, ...] = ()
    fields: Fields


class DealMapping(ObjectMapping):
    line_items: LineItemsMapping | None = None
    extra_lines: tuple[ExtraLine, ...] = ()
    # The target's own invoice fields, by the name the target shows (text values); only
    # a target with the capability takes them (checked when a connection is loaded).
    custom_fields: dict[Annotated[str, StringConstraints(min_length=1)], FieldSpec] = {}


class ItemsSettings(_Spec):
    """What happens to a line whose product the accounting system has no item for.

    Off by default: a target that needs an item on every line refuses the invoice,
    naming the product, and a person creates the item (``crmsync items`` lists them).
    On, the sync creates the item (named and coded like the line) before the invoice.
    """

    create_missing: bool = False
    # The account new items post their sales to, as the target names accounts (one
    # target takes an account's name or id, another an account code); a target that
    # needs one refuses to create an item without it.
    income_account: Annotated[str, StringConstraints(min_length=1)] | None = None


class Objects(_Spec):
    contact: ObjectMapping | None = None
    company: ObjectMapping | None = None
    deal: DealMapping | None = None


@dataclass(frozen=True)
class Target:
    """A canonical model a mapping fills, and the fields the engine sets itself."""

    model: type[BaseModel]
    engine_fields: Mapping[str, str]  # field → how it gets its value instead


PARTY = Target(Party, {"kind": "a contact is a person, a company a company"})
DEAL = Target(
    Deal,
    {
        "line_items": "map them under objects.deal.line_items",
        "custom_fields": "map them under objects.deal.custom_fields",
    },
)
# A custom field of the target holds text.
CUSTOM_FIELD = FieldInfo(annotation=str | None, default=None)
LINE_ITEM = Target(LineItem, {})

# Where each CRM object's record stands in the accounting system: what ``back`` fields
# and two-way fields read. Identifiers are no standing.
STANDINGS: Mapping[ObjectType, type[InvoiceStanding | CustomerStanding]] = {
    ObjectType.DEAL: InvoiceStanding,
    ObjectType.COMPANY: CustomerStanding,
    ObjectType.CONTACT: CustomerStanding,
}
NOT_STANDING = ("target_id", "version")


class MappingConfig(_Spec):
    """A whole mapping file: which CRM objects become which canonical records, and how."""

    version: Literal[1]
    # The systems the file is written for: the source's property names are what it
    # reads. A connection whose CRM or accounting system differs is refused. Presets
    # name only their source: the canonical records suit any target.
    source: System | None = None
    target: System | None = None
    objects: Objects
    items: ItemsSettings = ItemsSettings()

    def mapping_for(self, object_type: ObjectType) -> ObjectMapping | None:
        if object_type is ObjectType.CONTACT:
            return self.objects.contact
        if object_type is ObjectType.COMPANY:
            return self.objects.company
        if object_type is ObjectType.DEAL:
            return self.objects.deal
        return None

    @model_validator(mode="after")
    def _against_models(self) -> MappingConfig:
        problems: list[str] = []
        objects = self.objects
        if objects.contact is None and objects.company is None and objects.deal is None:
            problems.append("objects: map at least one of contact, company, deal")
        for name, mapping in (("contact", objects.contact), ("company", objects.company)):
            if mapping is not None:
                problems += check_fields(mapping.fields, PARTY, f"objects.{name}.fields")
        if objects.deal is not None:
            problems += check_fields(objects.deal.fields, DEAL, "objects.deal.fields")
            if objects.deal.line_items is not None:
                path = "objects.deal.line_items.fields"
                problems += check_fields(objects.deal.line_items.fields, LINE_ITEM, path)
                problems += _one_way(objects.deal.line_items.fields, path)
            for name, spec in objects.deal.custom_fields.items():
                path = f"objects.deal.custom_fields.{name}"
                problems += _check_types(spec, name, CUSTOM_FIELD, path)
            problems += _one_way(objects.deal.custom_fields, "objects.deal.custom_fields")
            for index, extra in enumerate(objects.deal.extra_lines):
                path = f"objects.deal.extra_lines[{index}].fields"
                problems += check_fields(extra.fields, LINE_ITEM, path)
                problems += _one_way(extra.fields, path)
        for object_type, standing in STANDINGS.items():
            mapping = self.mapping_for(object_type)
            if mapping is not None:
                problems += check_two_way(mapping, standing, f"objects.{object_type}")
        if problems:
            raise PydanticCustomError("mapping", "{problems}", {"problems": "\n".join(problems)})
        return self


# Where the published schema lives, relative to the repository (``config/``, beside the
# presets that name it on their first line for editors).
JSON_SCHEMA_FILE = "config/mapping.schema.json"


def mapping_json_schema() -> dict[str, Any]:
    """The mapping file's JSON Schema, for editors: the file's shape (keys, types,
    enumerations). What it cannot say (a key naming no canonical field, a transform
    that does not suit the field) is still checked when the file is loaded."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **MappingConfig.model_json_schema(),
    }


def canonical_field(target: Target, key: str) -> FieldInfo:
    """The model field a mapping key names (``email``, ``billing_address.city``).

    Raises ``ValueError`` saying why the key cannot be mapped.
    """
    model = target.model
    head, _, tail = key.partition(".")
    if head in target.engine_fields:
        raise ValueError(
            f"{head!r} is set by the mapping engine ({target.engine_fields[head]}), not mapped"
        )
    info = model.model_fields.get(head)
    if info is None:
        raise ValueError(
            f"unknown canonical field {key!r} for {model.__name__} "
            f"(expected one of {', '.join(_mappable(target))})"
        )
    nested = _nested_model(info.annotation)
    if nested is None:
        if tail:
            raise ValueError(f"unknown canonical field {key!r}: {head!r} has no parts")
        return info
    part = nested.model_fields.get(tail)
    if part is None:
        raise ValueError(
            f"unknown canonical field {key!r}: map the parts of {head!r} "
            f"({', '.join(f'{head}.{p}' for p in nested.model_fields)})"
        )
    return part


def check_fields(fields: Fields, target: Target, path: str) -> list[str]:
    """Every problem with mapping ``fields`` onto ``target``, each prefixed by its key path."""
    problems: list[str] = []
    for key, spec in fields.items():
        try:
            info = canonical_field(target, key)
        except ValueError as exc:
            problems.append(f"{path}.{key}: {exc}")
            continue
        problems += _check_types(spec, key, info, f"{path}.{key}")
    missing = [
        name
        for name, info in target.model.model_fields.items()
        if info.is_required() and name not in target.engine_fields and name not in fields
    ]
    problems += [
        f"{path}: missing required canonical field {name!r} "
        f"({target.model.__name__} needs it: map it with `from` or `default`)"
        for name in missing
    ]
    return problems


def field_adapter(info: FieldInfo) -> TypeAdapter[Any]:
    """Validates one value as the field would, constraints included."""
    annotation: Any = info.annotation
    if info.metadata:
        annotation = Annotated[(annotation, *info.metadata)]
    return TypeAdapter(annotation)


def _check_types(spec: FieldSpec, key: str, info: FieldInfo, path: str) -> list[str]:
    problems: list[str] = []
    produced = {Kind.DECIMAL: Decimal, Kind.DATE: date}.get(spec.kind)
    if produced is not None and produced not in _leaf_types(info.annotation):
        problems.append(
            f"{path}.transforms: the transforms give a {spec.kind}, but {key} is "
            f"{_describe(info.annotation)}"
        )
    adapter = field_adapter(info)
    checks = [("default", spec.default)] if spec.default is not None else []
    checks += [(f"value_map.{k}", v) for k, v in (spec.value_map or {}).items()]
    for where, value in checks:
        try:
            adapter.validate_python(value)
        except ValidationError as exc:
            problems.append(
                f"{path}.{where}: {value!r} is not a valid {key}: {exc.errors()[0]['msg']}"
            )
    return problems


def _mappable(target: Target) -> list[str]:
    return [name for name in target.model.model_fields if name not in target.engine_fields]


def _leaf_types(annotation: Any) -> set[Any]:
    """The concrete types a (possibly optional, annotated) annotation admits."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _leaf_types(get_args(annotation)[0])
    if origin is Union or origin is UnionType:
        return set().union(*(_leaf_types(arg) for arg in get_args(annotation)))
    return {annotation}


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    for leaf in _leaf_types(annotation):
        if isinstance(leaf, type) and issubclass(leaf, BaseModel):
            return leaf
    return None


def _describe(annotation: Any) -> str:
    names = sorted(
        getattr(leaf, "__name__", str(leaf))
        for leaf in _leaf_types(annotation)
        if leaf is not NoneType
    )
    return " or ".join(names)


def _one_way(fields: Mapping[str, FieldSpec], path: str) -> list[str]:
    """Lines and custom fields are written, never read back."""
    return [
        f"{path}.{key}.direction: only a contact's, company's or deal's own fields flow back"
        for key, spec in fields.items()
        if spec.direction != FORWARD
    ]


def check_two_way(mapping: ObjectMapping, standing: type[BaseModel], path: str) -> list[str]:
    """Every problem with the fields of one object that flow back from the accounting
    side: its two-way fields (``direction``) and its ``back`` section."""
    problems: list[str] = []
    forward_reads: dict[str, str] = {}  # CRM property → the forward field sending it on
    for key, spec in mapping.fields.items():
        if spec.direction != BACKWARD:
            forward_reads.update((source, key) for source in spec.sources)
        if spec.direction == FORWARD:
            continue
        where = f"{path}.fields.{key}.direction"
        held = standing.model_fields.get(key)
        if held is None or key in NOT_STANDING:
            problems.append(
                f"{where}: the accounting side does not report {key!r} back "
                f"(fields that may flow back: {', '.join(_two_way_keys(mapping, standing))})"
            )
            continue
        info = _forward_field(mapping, key)
        if info is not None and not _same_type(info, held):
            problems.append(
                f"{where}: {key!r} means something else in the accounting system "
                f"({_describe(held.annotation)})"
            )
        if spec.direction == BACKWARD and info is not None and info.is_required():
            problems.append(f"{where}: {key!r} is required to write a record: the CRM must send it")
    filled = {
        spec.sources[0]: key for key, spec in mapping.fields.items() if spec.direction != FORWARD
    }
    for name, back in mapping.back.items():
        problems += _check_back(back, standing, f"{path}.back.{name}")
        if name in filled:
            problems.append(
                f"{path}.back.{name}: {name!r} is already filled by {path}.fields.{filled[name]}"
            )
            continue
        sender = forward_reads.get(name)
        if sender is None:
            continue
        held = standing.model_fields.get(back.from_)
        computed = held is not None and Decimal in _leaf_types(held.annotation)
        problems.append(
            f"{path}.back.{name}: {back.from_!r} is an amount the accounting system "
            f"computes; {name!r} is sent to it by {path}.fields.{sender}, so it would be "
            "written into it"
            if computed
            else f"{path}.back.{name}: {name!r} is sent to the accounting system by "
            f"{path}.fields.{sender}: make that field `direction: both` instead"
        )
    return problems


def _forward_field(mapping: ObjectMapping, key: str) -> FieldInfo | None:
    target = DEAL if isinstance(mapping, DealMapping) else PARTY
    try:
        return canonical_field(target, key)
    except ValueError:
        return None


def _same_type(forward: FieldInfo, held: FieldInfo) -> bool:
    """Whether a canonical field and a standing field hold the same kind of value
    (either may be optional)."""
    return _leaf_types(forward.annotation) - {NoneType} == _leaf_types(held.annotation) - {NoneType}


def _two_way_keys(mapping: ObjectMapping, standing: type[BaseModel]) -> list[str]:
    """The forward fields the accounting side reports back as they were written."""
    names: list[str] = []
    for key, held in standing.model_fields.items():
        info = _forward_field(mapping, key)
        if (
            key not in NOT_STANDING
            and info is not None
            and Decimal not in _leaf_types(held.annotation)
            and _same_type(info, held)
        ):
            names.append(key)
    return names


def standing_kind(info: FieldInfo) -> Kind:
    """What a standing field gives a back field's transforms to start from."""
    leaves = _leaf_types(info.annotation)
    if Decimal in leaves:
        return Kind.DECIMAL
    return Kind.DATE if date in leaves else Kind.TEXT


def _check_back(back: BackField, standing: type[BaseModel], path: str) -> list[str]:
    info = standing.model_fields.get(back.from_)
    if info is None or back.from_ in NOT_STANDING:
        known = [name for name in standing.model_fields if name not in NOT_STANDING]
        return [
            f"{path}.from: {standing.__name__} has no {back.from_!r} "
            f"(expected one of {', '.join(known)})"
        ]
    kind = standing_kind(info)
    for index, transform in enumerate(back.transforms):
        try:
            kind = transform.output(kind)
        except ValueError as exc:
            return [f"{path}.transforms: transforms[{index}] ({transform.op}) {exc}"]
    if back.value_map is not None and kind is not Kind.TEXT:
        return [f"{path}.value_map: value_map needs text, but {back.from_} gives a {kind}"]
    fits = {"number": Kind.DECIMAL, "date": Kind.DATE}.get(back.kind)
    if back.value_map is None and fits is not None and kind is not fits:
        return [f"{path}.kind: a {back.kind} property needs a {fits}, but it gets a {kind}"]
    problems: list[str] = []
    values = enum_values(info)
    if back.value_map is not None and values and back.default is None:
        missing = [value for value in values if value not in back.value_map]
        if missing:
            problems.append(
                f"{path}.value_map: no entry for {', '.join(map(repr, missing))} and no default"
            )
    if back.kind == "enumeration" and back.value_map is None and not values:
        problems.append(f"{path}.kind: an enumeration needs a value_map (its options)")
    return problems


def enum_values(info: FieldInfo) -> list[str]:
    """The values of an enumerated standing field (an invoice's status), else none."""
    for leaf in _leaf_types(info.annotation):
        if isinstance(leaf, type) and issubclass(leaf, StrEnum):
            return [member.value for member in leaf]
    return []


def key_path(loc: tuple[int | str, ...]) -> str:
    """``("fields", "email", "transforms", 0)`` → ``fields.email.transforms[0]``."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else part
    return path
