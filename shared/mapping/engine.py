"""Applies a mapping to one source record: filter, map every field, validate once.

A record either passes the filters or comes back as ``Filtered`` naming the rule
that excluded it. Mapping never stops at the first problem: every field is
evaluated, the canonical model validates what came out, and all violations are
raised together as ``RecordInvalid`` so the audit log shows the whole story.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticUndefined

from shared.errors import RecordInvalid, Violation
from shared.mapping.schema import (
    DEAL,
    LINE_ITEM,
    PARTY,
    DealMapping,
    Fields,
    FieldSpec,
    FilterRule,
    MappingConfig,
    Target,
    canonical_field,
    key_path,
)
from shared.mapping.transforms import TransformFailed, Value
from shared.models import Deal, ObjectType, Party, PartyKind, SourceRecord

M = TypeVar("M", bound=BaseModel)
Properties = Mapping[str, str | None]

# What _Run.value gives for a field whose rule failed (None is a value: "empty").
_FAILED = object()
_PARTY_KINDS = {ObjectType.CONTACT: PartyKind.PERSON, ObjectType.COMPANY: PartyKind.COMPANY}


@dataclass(frozen=True)
class Filtered:
    """The record was deliberately not mapped; ``reason`` names the filter rule."""

    reason: str


class _Invalid(Exception):
    def __init__(self, rule: str, message: str) -> None:
        self.rule = rule
        self.message = message


@dataclass(frozen=True)
class _FieldPlan:
    key: str  # canonical key, possibly dotted (billing_address.city)
    spec: FieldSpec
    required: bool  # by the mapping, or because the model has no default for it
    fallback: Any  # the model's own default for an empty, optional field

    @property
    def origin(self) -> str:
        """Where the value comes from, in words, for violation messages."""
        names = ", ".join(repr(s) for s in self.spec.sources)
        if not names:
            return "the default"
        return f"source propert{'y' if len(self.spec.sources) == 1 else 'ies'} {names}"

    def evaluate(self, properties: Properties) -> Any:
        spec = self.spec
        value: Value | None = None
        if isinstance(spec.from_, str):
            value = properties.get(spec.from_) or None
        elif spec.from_ is not None:
            sources = {name: properties.get(name) for name in spec.from_}
            value = sources if any(sources.values()) else None
        if value is not None:
            try:
                for transform in spec.transforms:
                    value = transform.apply(value)
            except TransformFailed as exc:
                raise _Invalid(exc.rule, f"{exc.message} (from {self.origin})") from None
            if value == "":
                value = None
        if spec.value_map is not None:
            # Transforms of a value-mapped field end in text (checked at load time).
            key = "" if value is None else str(value)
            if key in spec.value_map:
                return spec.value_map[key]
            if value is not None:
                if spec.default is None:
                    raise _Invalid(
                        "value_map",
                        f"{key!r} (from {self.origin}) is not in value_map "
                        f"({', '.join(repr(k) for k in spec.value_map)}) and there is no default",
                    )
                return spec.default
        if value is not None:
            return value
        if spec.default is not None:
            return spec.default
        if self.required:
            verb = "is" if len(spec.sources) == 1 else "are"
            raise _Invalid("required", f"required, but {self.origin} {verb} empty")
        return self.fallback


class _FieldsPlan:
    """One object's (or line's) fields, compiled against their canonical model."""

    def __init__(self, fields: Fields, target: Target) -> None:
        self.target = target
        self.plans: list[_FieldPlan] = []
        for key, spec in fields.items():
            info = canonical_field(target, key)
            default = info.get_default(call_default_factory=True)
            required = spec.required or default is PydanticUndefined
            self.plans.append(_FieldPlan(key, spec, required, default))

    def sources(self) -> list[str]:
        return [name for plan in self.plans for name in plan.spec.sources]

    def map(self, properties: Properties, prefix: str, run: _Run) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for plan in self.plans:
            value = run.value(plan, properties, prefix + plan.key)
            if value is _FAILED:
                continue
            head, _, part = plan.key.partition(".")
            if part:
                data.setdefault(head, {})[part] = value
            else:
                data[head] = value
        return data


@dataclass
class _Run:
    """What one ``map`` call collects: violations, and where each path's value came from."""

    violations: list[Violation]
    origins: dict[str, str]

    def value(self, plan: _FieldPlan, properties: Properties, path: str) -> Any:
        """The field's value at ``path``, or ``_FAILED`` with its violation recorded."""
        self.origins[path] = plan.origin
        try:
            return plan.evaluate(properties)
        except _Invalid as exc:
            self.violations.append(Violation(path, exc.rule, exc.message))
            return _FAILED

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
                origin = self.origins.get(path, "the mapping")
                self.violations.append(
                    Violation(
                        path,
                        error["type"],
                        f"{error['msg']}, got {_shown(error['input'])} (from {origin})",
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
                self._fields[object_type] = _FieldsPlan(mapping.fields, target)
        deal = config.objects.deal
        self._lines: _FieldsPlan | None = None
        self._extra_lines: list[tuple[tuple[FilterRule, ...], _FieldsPlan]] = []
        self._custom_fields: list[_FieldPlan] = []
        if deal is not None:
            self._custom_fields = [
                _FieldPlan(name, spec, spec.required, None)
                for name, spec in deal.custom_fields.items()
            ]
            if deal.line_items is not None:
                self._lines = _FieldsPlan(deal.line_items.fields, LINE_ITEM)
            self._extra_lines = [
                (extra.when, _FieldsPlan(extra.fields, LINE_ITEM)) for extra in deal.extra_lines
            ]

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
            names += [name for plan in self._custom_fields for name in plan.spec.sources]
        return _unique(names)

    def map(self, record: SourceRecord) -> Party | Deal | Filtered:
        """Raises ``RecordInvalid`` listing every violated rule."""
        mapping = self._config.mapping_for(record.object_type)
        if mapping is None:
            return Filtered(f"no mapping for {record.object_type} records")
        rejected = _first_rejecting(mapping.filter, record.properties, "filter")
        if rejected is not None:
            return Filtered(rejected)
        run = _Run([], {})
        data = self._fields[record.object_type].map(record.properties, "", run)
        kind = _PARTY_KINDS.get(record.object_type)
        if kind is not None:
            return run.build(Party, {**data, "kind": kind})
        if self._lines is not None or self._extra_lines:
            data["line_items"] = self._line_items(record, run)
        if self._custom_fields:
            data["custom_fields"] = self._custom(record.properties, run)
        return run.build(Deal, data)

    def uses_custom_fields(self) -> bool:
        return bool(self._custom_fields)

    def _custom(self, properties: Properties, run: _Run) -> dict[str, str]:
        """The mapped custom fields that have a value (an empty one is left out)."""
        values: dict[str, str] = {}
        for plan in self._custom_fields:
            value = run.value(plan, properties, f"custom_fields.{plan.key}")
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
