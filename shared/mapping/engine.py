"""Applies a mapping to one source record: filter, map every field, validate once.

A record either passes the filters or comes back as ``Filtered`` naming the rule
that excluded it. Mapping never stops at the first problem: every field is
evaluated, the canonical model validates what came out, and all violations are
raised together as ``RecordInvalid`` so the audit log shows the whole story.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticUndefined

from shared.errors import RecordInvalid, Violation
from shared.mapping.back import BackPlan
from shared.mapping.schema import (
    BACKWARD,
    DEAL,
    LINE_ITEM,
    PARTY,
    DealMapping,
    Fields,
    FieldSpec,
    FilterRule,
    ItemsSettings,
    MappingConfig,
    Target,
    canonical_field,
    key_path,
)
from shared.mapping.transforms import Kind, TransformFailed, Value
from shared.models import Deal, ObjectType, Party, PartyKind, SourceRecord

M = TypeVar("M", bound=BaseModel)
Properties = Mapping[str, str | None]

# What _Run.value gives for a field whose rule failed (None is a value: "empty").
_FAILED = object()
_CUSTOM_FIELDS = "custom_fields."  # the path prefix of a custom field's violations
_PARTY_KINDS = {ObjectType.CONTACT: PartyKind.PERSON, ObjectType.COMPANY: PartyKind.COMPANY}


@dataclass(frozen=True)
class Filtered:
    """The record was deliberately not mapped; ``reason`` names the filter rule."""

    reason: str


class _Invalid(Exception):
    def __init__(self, rule: str, message: str) -> None:
        self.rule = rule
        self.message = message


_Evaluate = Callable[[Properties], Any]


@dataclass(frozen=True)
class _FieldPlan:
    """One field, compiled once per mapping: where its value goes and how it is made."""

    key: str  # canonical key, possibly dotted (billing_address.city)
    head: str  # the model field the key names (billing_address)
    part: str  # the nested part (city), "" for a plain field
    sources: tuple[str, ...]  # the vendor properties it reads
    origin: str  # where the value comes from, in words, for violation messages
    evaluate: _Evaluate  # the field's value from a record's properties; raises _Invalid

    @classmethod
    def compile(cls, key: str, spec: FieldSpec, required: bool, fallback: Any) -> _FieldPlan:
        """``required``: by the mapping, or because the model has no default for the field;
        ``fallback``: the model's own default for an empty, optional field."""
        head, _, part = key.partition(".")
        origin = _origin(spec.sources)
        evaluate = _evaluator(spec, required, fallback, origin)
        return cls(key, head, part, spec.sources, origin, evaluate)


def _origin(sources: tuple[str, ...]) -> str:
    if not sources:
        return "the default"
    names = ", ".join(repr(s) for s in sources)
    return f"source propert{'y' if len(sources) == 1 else 'ies'} {names}"


def _evaluator(spec: FieldSpec, required: bool, fallback: Any, origin: str) -> _Evaluate:
    """The field's rule as one function; everything a record cannot change is decided here."""
    source = spec.from_ if isinstance(spec.from_, str) else None
    sources = spec.from_ if isinstance(spec.from_, tuple) else None
    steps = tuple(transform.apply for transform in spec.transforms)
    # Only a text result can be blank; comparing a Decimal to "" goes through the numbers
    # ABCs, a cost on every money field of every line.
    may_be_blank = bool(steps) and spec.kind is Kind.TEXT
    value_map = spec.value_map
    default = spec.default
    empty = f"required, but {origin} {'is' if len(spec.sources) == 1 else 'are'} empty"

    def evaluate(properties: Properties) -> Any:
        value: Value | None = None
        if source is not None:
            value = properties.get(source) or None
        elif sources is not None:
            values = {name: properties.get(name) for name in sources}
            value = values if any(values.values()) else None
        if value is not None and steps:
            try:
                for step in steps:
                    value = step(value)
            except TransformFailed as exc:
                raise _Invalid(exc.rule, f"{exc.message} (from {origin})") from None
            if may_be_blank and value == "":
                value = None
        if value_map is not None:
            # Transforms of a value-mapped field end in text (checked at load time).
            key = "" if value is None else str(value)
            if key in value_map:
                return value_map[key]
            if value is not None:
                if default is None:
                    raise _Invalid(
                        "value_map",
                        f"{key!r} (from {origin}) is not in value_map "
                        f"({', '.join(repr(k) for k in value_map)}) and there is no default",
                    )
                return default
        if value is not None:
            return value
        if default is not None:
            return default
        if required:
            raise _Invalid("required", empty)
        return fallback

    return evaluate


class _FieldsPlan:
    """One object's (or line's) fields, compiled against their canonical model."""

    def __init__(self, fields: Fields, target: Target) -> None:
        self.plans: list[_FieldPlan] = []
        for key, spec in fields.items():
            info = canonical_field(target, key)
            default = info.get_default(call_default_factory=True)
            required = spec.required or default is PydanticUndefined
            self.plans.append(_FieldPlan.compile(key, spec, required, default))
        self.origins = {plan.key: plan.origin for plan in self.plans}

    def sources(self) -> list[str]:
        return [name for plan in self.plans for name in plan.sources]

    def map(self, properties: Properties, prefix: str, run: _Run) -> dict[str, Any]:
        run.sections.append((prefix, self.origins))
        data: dict[str, Any] = {}
        for plan in self.plans:
            value = run.value(plan, properties, prefix)
            if value is _FAILED:
                continue
            if plan.part:
                data.setdefault(plan.head, {})[plan.part] = value
            else:
                data[plan.head] = value
        return data


@dataclass
class _Run:
    """What one ``map`` call collects: violations, and the sections of fields it mapped
    (path prefix, origin by key), to name where a value the model refuses came from."""

    violations: list[Violation]
    sections: list[tuple[str, Mapping[str, str]]]

    def value(self, plan: _FieldPlan, properties: Properties, prefix: str) -> Any:
        """The field's value, or ``_FAILED`` with its violation recorded at its path."""
        try:
            return plan.evaluate(properties)
        except _Invalid as exc:
            self.violations.append(Violation(prefix + plan.key, exc.rule, exc.message))
            return _FAILED

    def origin(self, path: str) -> str:
        for prefix, origins in self.sections:
            if path.startswith(prefix):
                origin = origins.get(path[len(prefix) :])
                if origin is not None:
                    return origin
        return "the mapping"

    def build(self, model: type[M], data: dict[str, Any]) -> M:
        """Validates once; turns every model error into a violation, then raises them all."""
        result: M | None = None
        try:
            result = model.model_validate(data)
        except ValidationError as exc:
            already = {v.field for v in self.violations}
            for error in exc.errors():
                path = key_path(error["loc"])
                if error["type"] == "missing" and path in already:
                    continue  # left out because its own rule failed, reported above
                self.violations.append(
                    Violation(
                        path,
                        error["type"],
                        f"{error['msg']}, got {_shown(error['input'])} (from {self.origin(path)})",
                    )
                )
        if self.violations or result is None:
            raise RecordInvalid(self.violations)
        return result


class Mapper:
    """Turns CRM records into canonical ``Party``/``Deal`` records as a mapping file says."""

    def __init__(self, config: MappingConfig) -> None:
        self._config = config
        self._fields: dict[ObjectType, _FieldsPlan] = {}
        for object_type, target in (
            (ObjectType.CONTACT, PARTY),
            (ObjectType.COMPANY, PARTY),
            (ObjectType.DEAL, DEAL),
        ):
            mapping = config.mapping_for(object_type)
            if mapping is not None:
                # A field that only flows back is never written forward.
                forward = {k: v for k, v in mapping.fields.items() if v.direction != BACKWARD}
                self._fields[object_type] = _FieldsPlan(forward, target)
        deal = config.objects.deal
        self._lines: _FieldsPlan | None = None
        self._extra_lines: list[tuple[tuple[FilterRule, ...], _FieldsPlan]] = []
        self._custom_fields: list[_FieldPlan] = []
        if deal is not None:
            self._custom_fields = [
                _FieldPlan.compile(name, spec, spec.required, None)
                for name, spec in deal.custom_fields.items()
            ]
            if deal.line_items is not None:
                self._lines = _FieldsPlan(deal.line_items.fields, LINE_ITEM)
            self._extra_lines = [
                (extra.when, _FieldsPlan(extra.fields, LINE_ITEM)) for extra in deal.extra_lines
            ]
        self._custom_origins = {plan.key: plan.origin for plan in self._custom_fields}
        self.back = BackPlan(config)

    def handles(self, object_type: ObjectType) -> bool:
        """Whether records of this type are mapped (line items only come with their deal)."""
        return object_type in self._fields

    def source_properties(self, object_type: ObjectType) -> list[str]:
        """Vendor properties to fetch for this type: those its fields and filters read.

        For ``LINE_ITEM``, those the deal's ``line_items`` fields read from each child.
        """
        if object_type is ObjectType.LINE_ITEM:
            return _unique(self._lines.sources() if self._lines else [])
        mapping = self._config.mapping_for(object_type)
        if mapping is None:
            return []
        names = [rule.field for rule in mapping.filter] + self._fields[object_type].sources()
        if isinstance(mapping, DealMapping):
            for when, plan in self._extra_lines:
                names += [rule.field for rule in when] + plan.sources()
            names += [name for plan in self._custom_fields for name in plan.sources]
        return _unique(names)

    def map(self, record: SourceRecord) -> Party | Deal | Filtered:
        """Raises ``RecordInvalid`` listing every violated rule."""
        mapping = self._config.mapping_for(record.object_type)
        if mapping is None:
            return Filtered(f"no mapping for {record.object_type} records")
        rejected = _first_rejecting(mapping.filter, record.properties, "filter")
        if rejected is not None:
            return Filtered(rejected)
        run = _Run([], [])
        data = self._fields[record.object_type].map(record.properties, "", run)
        kind = _PARTY_KINDS.get(record.object_type)
        if kind is not None:
            return run.build(Party, {**data, "kind": kind})
        if self._lines is not None or self._extra_lines:
            data["line_items"] = self._line_items(record, run)
        if self._custom_fields:
            data["custom_fields"] = self._custom(record.properties, run)
        return run.build(Deal, data)

    @property
    def items(self) -> ItemsSettings:
        return self._config.items

    def uses_custom_fields(self) -> bool:
        return bool(self._custom_fields)

    def _custom(self, properties: Properties, run: _Run) -> dict[str, str]:
        """The mapped custom fields that have a value (an empty one is left out)."""
        run.sections.append((_CUSTOM_FIELDS, self._custom_origins))
        values: dict[str, str] = {}
        for plan in self._custom_fields:
            value = run.value(plan, properties, _CUSTOM_FIELDS)
            if value is not None and value is not _FAILED:
                values[plan.key] = str(value)
        return values

    def _line_items(self, record: SourceRecord, run: _Run) -> list[dict[str, Any]]:
        lines: list[dict[str, Any]] = []
        if self._lines is not None:
            for child in record.children.get(ObjectType.LINE_ITEM, []):
                lines.append(self._lines.map(child.properties, f"line_items[{len(lines)}].", run))
        for when, plan in self._extra_lines:
            if _first_rejecting(when, record.properties, "when") is None:
                lines.append(plan.map(record.properties, f"line_items[{len(lines)}].", run))
        return lines


def _first_rejecting(rules: Iterable[FilterRule], properties: Properties, name: str) -> str | None:
    for index, rule in enumerate(rules):
        value = properties.get(rule.field)
        if not rule.admits(value):
            return f"{name}[{index}]: {rule.describe()}, but {rule.field} is {value!r}"
    return None


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def _unique(names: list[str]) -> list[str]:
    return list(dict.fromkeys(names))
