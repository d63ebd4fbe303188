"""The way back, compiled: what each CRM object gets from the accounting side.

Two kinds of field flow back, both opt-in: a ``back`` field fills a CRM property from
where the invoice or customer stands (an invoice's status, a customer's open balance),
and a forward field with ``direction: accounting_to_crm`` or ``both`` writes the
accounting side's value of that canonical field into the property it is read from.
Values are compared and written as text: the CRM's terms for a back field (after its
transforms and value map), the canonical text for a two-way field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from pydantic import BaseModel

from shared.mapping.schema import (
    FORWARD,
    STANDINGS,
    BackField,
    Conflict,
    Direction,
    MappingConfig,
    enum_values,
    standing_kind,
)
from shared.mapping.transforms import Kind, Value
from shared.models import ObjectType
from shared.ports import CrmProperty


def canonical_text(value: object) -> str | None:
    """A canonical or standing value as text: what is compared, digested and written."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


@dataclass(frozen=True)
class TwoWayField:
    """A forward field whose value also flows from the accounting side into ``prop``."""

    key: str  # the canonical field (due_date), as the standing names it too
    prop: str  # the CRM property the forward field reads
    direction: Direction
    conflict: Conflict | None
    to_crm: Mapping[str, str]  # canonical text → the CRM's own (the value map, reversed)

    def crm_text(self, canonical: str | None) -> str | None:
        if canonical is None:
            return None
        return self.to_crm.get(canonical, canonical)


@dataclass(frozen=True)
class _BackPlan:
    prop: str
    evaluate: Callable[[BaseModel], str | None]


def _evaluator(spec: BackField, start: Kind) -> Callable[[BaseModel], str | None]:
    steps = tuple(transform.apply for transform in spec.transforms)
    value_map = spec.value_map
    default = spec.default
    text_steps = start is Kind.TEXT

    def evaluate(standing: BaseModel) -> str | None:
        raw = getattr(standing, spec.from_)
        value: Value | None = raw if raw is None or not text_steps else str(raw)
        if value is not None:
            for step in steps:
                value = step(value)
        text = canonical_text(value) or None
        if value_map is not None:
            return value_map.get(text or "", default if default is not None else text)
        return text if text is not None else default

    return evaluate


class BackPlan:
    """Per CRM object: the properties to create, the back values, the two-way fields."""

    def __init__(self, config: MappingConfig) -> None:
        self._back: dict[ObjectType, list[_BackPlan]] = {}
        self._properties: dict[ObjectType, list[CrmProperty]] = {}
        self._two_way: dict[ObjectType, tuple[TwoWayField, ...]] = {}
        for object_type, standing in STANDINGS.items():
            mapping = config.mapping_for(object_type)
            if mapping is None:
                continue
            self._back[object_type] = [
                _BackPlan(prop, _evaluator(spec, standing_kind(standing.model_fields[spec.from_])))
                for prop, spec in mapping.back.items()
            ]
            self._properties[object_type] = [
                CrmProperty(
                    name=prop, label=spec.label, kind=spec.kind, options=_options(spec, standing)
                )
                for prop, spec in mapping.back.items()
            ]
            self._two_way[object_type] = tuple(
                TwoWayField(
                    key=key,
                    prop=spec.sources[0],
                    direction=spec.direction,
                    conflict=spec.conflict,
                    to_crm={v: k for k, v in reversed((spec.value_map or {}).items())},
                )
                for key, spec in mapping.fields.items()
                if spec.direction != FORWARD
            )

    def sends_back(self, object_type: ObjectType) -> bool:
        return bool(self._back.get(object_type) or self._two_way.get(object_type))

    def properties(self, object_type: ObjectType) -> list[CrmProperty]:
        """The CRM properties ``back`` fills, to create where missing."""
        return self._properties.get(object_type, [])

    def values(self, object_type: ObjectType, standing: BaseModel) -> dict[str, str | None]:
        """The ``back`` properties' values for where the record stands now."""
        return {plan.prop: plan.evaluate(standing) for plan in self._back.get(object_type, [])}

    def two_way(self, object_type: ObjectType) -> tuple[TwoWayField, ...]:
        return self._two_way.get(object_type, ())

    def tracked(self, object_type: ObjectType) -> frozenset[str]:
        """The canonical fields that go both ways: settled field by field, not by
        the record's content digest."""
        return frozenset(f.key for f in self.two_way(object_type) if f.direction == "both")


def _options(spec: BackField, standing: type[BaseModel]) -> tuple[str, ...]:
    if spec.kind != "enumeration":
        return ()
    if spec.value_map is None:  # an enumerated standing field (checked at load)
        return tuple(enum_values(standing.model_fields[spec.from_]))
    values = [*spec.value_map.values(), *([spec.default] if spec.default else [])]
    return tuple(dict.fromkeys(values))
