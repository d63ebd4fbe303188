"""Value transforms: the steps a mapped field's value passes through, in order.

A value in the pipeline is one of four kinds: ``text`` (one source property),
``sources`` (several properties, by name, until ``join`` or ``template`` combine
them), ``decimal`` or ``date``. Each transform says which kinds it accepts and
what it produces, so a chain that cannot work (``decimal`` before ``join``,
``date`` on a number) is refused when the mapping file is loaded, not when a
record arrives. Text transforms applied to ``sources`` work on each property.

In a file a transform is a bare name (``trim``) or a one-key mapping whose value
is the transform's main argument (``{join: " "}``, ``{truncate: 100}``) or all
its arguments (``{decimal: {places: 2, rounding: half_up}}``).
"""

from __future__ import annotations

import re
import string
from abc import ABC, abstractmethod
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import (
    ROUND_05UP,
    ROUND_CEILING,
    ROUND_DOWN,
    ROUND_FLOOR,
    ROUND_HALF_DOWN,
    ROUND_HALF_EVEN,
    ROUND_HALF_UP,
    ROUND_UP,
    Decimal,
    DecimalException,
)
from enum import StrEnum
from typing import Annotated, Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

Sources = dict[str, str | None]
"""Several source properties by name, in the order ``from`` lists them."""

Value = str | Decimal | date | Sources


class Kind(StrEnum):
    TEXT = "text"
    SOURCES = "sources"
    DECIMAL = "decimal"
    DATE = "date"


def config_error(error_type: str, message: str) -> PydanticCustomError:
    """A mapping-file error whose message is used verbatim (no ``{}`` templating)."""
    return PydanticCustomError(error_type, "{message}", {"message": message})


class TransformFailed(Exception):
    """A record's value cannot go through a transform; ``rule`` names which."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message


class _Transform(BaseModel, ABC):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @abstractmethod
    def output(self, kind: Kind) -> Kind:
        """The kind this transform produces from ``kind``; ValueError if it cannot take it."""

    @abstractmethod
    def apply(self, value: Value) -> Value:
        """Raises ``TransformFailed`` when the record's value does not fit."""


class _TextTransform(_Transform):
    """str → str; applied to each property while several are still separate."""

    def output(self, kind: Kind) -> Kind:
        if kind not in (Kind.TEXT, Kind.SOURCES):
            raise ValueError(f"works on text, but the value is a {kind} here")
        return kind

    def apply(self, value: Value) -> Value:
        if isinstance(value, dict):
            return {k: None if v is None else self.text(v) for k, v in value.items()}
        assert isinstance(value, str)
        return self.text(value)

    @abstractmethod
    def text(self, value: str) -> str: ...


class Trim(_TextTransform):
    op: Literal["trim"]

    def text(self, value: str) -> str:
        return value.strip()


class Lower(_TextTransform):
    op: Literal["lower"]

    def text(self, value: str) -> str:
        return value.lower()


class Upper(_TextTransform):
    op: Literal["upper"]

    def text(self, value: str) -> str:
        return value.upper()


class Title(_TextTransform):
    op: Literal["title"]

    def text(self, value: str) -> str:
        return value.title()


class CollapseWhitespace(_TextTransform):
    """Runs of whitespace become one space; leading and trailing whitespace goes."""

    op: Literal["collapse_whitespace"]

    def text(self, value: str) -> str:
        return " ".join(value.split())


class Truncate(_TextTransform):
    op: Literal["truncate"]
    length: int = Field(gt=0)

    def text(self, value: str) -> str:
        return value[: self.length]


class Replace(_TextTransform):
    """``re.sub(pattern, with, value)``: e.g. keep only the digits of a phone number."""

    op: Literal["replace"]
    pattern: str
    replacement: str = Field(default="", alias="with")
    _compiled: re.Pattern[str] = PrivateAttr()

    @model_validator(mode="after")
    def _compile(self) -> Replace:
        try:
            compiled = re.compile(self.pattern)
            compiled.sub(self.replacement, "")  # parses the replacement's group references
        except (re.error, IndexError) as exc:
            raise config_error(
                "regex",
                f"invalid regular expression {self.pattern!r} or replacement "
                f"{self.replacement!r}: {exc}",
            ) from None
        self._compiled = compiled
        return self

    def text(self, value: str) -> str:
        return self._compiled.sub(self.replacement, value)


class Join(_Transform):
    """Joins the listed properties with ``separator``, skipping empty ones."""

    op: Literal["join"]
    separator: str = " "

    def output(self, kind: Kind) -> Kind:
        if kind is not Kind.SOURCES:
            raise ValueError("combines several properties: list them in `from`")
        return Kind.TEXT

    def apply(self, value: Value) -> Value:
        assert isinstance(value, dict)
        return self.separator.join(v for v in value.values() if v is not None and v.strip())


class Template(_Transform):
    """Fills ``{property}`` placeholders with the listed properties (empty → "")."""

    op: Literal["template"]
    template: str
    _parts: tuple[tuple[str, str | None], ...] = PrivateAttr()

    @model_validator(mode="after")
    def _parse(self) -> Template:
        parts: list[tuple[str, str | None]] = []
        try:
            parsed = list(string.Formatter().parse(self.template))
        except ValueError as exc:
            raise config_error("template", f"invalid template {self.template!r}: {exc}") from None
        for literal, name, spec, conversion in parsed:
            if name is not None and (not name.isidentifier() or spec or conversion):
                raise config_error(
                    "template",
                    f"template placeholder {{{name}}} must be a plain property name "
                    "like {firstname}",
                )
            parts.append((literal, name))
        self._parts = tuple(parts)
        return self

    @property
    def placeholders(self) -> list[str]:
        return [name for _, name in self._parts if name is not None]

    def output(self, kind: Kind) -> Kind:
        if kind is not Kind.SOURCES:
            raise ValueError("fills in several properties: list them in `from`")
        return Kind.TEXT

    def apply(self, value: Value) -> Value:
        assert isinstance(value, dict)
        return "".join(
            literal + ((value.get(name) or "") if name is not None else "")
            for literal, name in self._parts
        )


Rounding = Literal["up", "down", "ceiling", "floor", "half_up", "half_down", "half_even", "05up"]
_ROUNDING: dict[str, str] = {
    "up": ROUND_UP,
    "down": ROUND_DOWN,
    "ceiling": ROUND_CEILING,
    "floor": ROUND_FLOOR,
    "half_up": ROUND_HALF_UP,
    "half_down": ROUND_HALF_DOWN,
    "half_even": ROUND_HALF_EVEN,
    "05up": ROUND_05UP,
}


class ToDecimal(_Transform):
    """Parses a plain decimal number; with ``places`` rounds it (``rounding``, default half_up)."""

    op: Literal["decimal"]
    places: int | None = Field(default=None, ge=0, le=12)
    rounding: Rounding = "half_up"

    def output(self, kind: Kind) -> Kind:
        if kind not in (Kind.TEXT, Kind.DECIMAL):
            raise ValueError(f"parses one number, but the value is a {kind} here")
        return Kind.DECIMAL

    def apply(self, value: Value) -> Value:
        if isinstance(value, Decimal):
            number = value
        else:
            assert isinstance(value, str)
            try:
                number = Decimal(value.strip())
            except DecimalException:
                raise TransformFailed("decimal", f"{value!r} is not a decimal number") from None
        if not number.is_finite():
            raise TransformFailed("decimal", f"{value!r} is not a finite number")
        if self.places is None:
            return number
        try:
            return number.quantize(
                Decimal(1).scaleb(-self.places), rounding=_ROUNDING[self.rounding]
            )
        except DecimalException:
            raise TransformFailed(
                "decimal", f"{value!r} is too large for {self.places} places"
            ) from None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_MS = re.compile(r"-?[0-9]+", re.ASCII)


class ToDate(_Transform):
    """ISO-8601 or epoch-milliseconds text → the calendar date in ``timezone``.

    A date-only value is taken as is; a date-time without an offset is UTC (what
    CRMs return); a date-time is converted to ``timezone`` before its date is
    taken, so a deal closed at 02:00 UTC is dated the day before in New York.
    """

    op: Literal["date"]
    timezone: str = "UTC"
    _zone: ZoneInfo = PrivateAttr()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise config_error(
                "timezone", f"unknown time zone {name!r} (expected an IANA name like Europe/Paris)"
            ) from None
        return name

    @model_validator(mode="after")
    def _load_zone(self) -> ToDate:
        self._zone = ZoneInfo(self.timezone)
        return self

    def output(self, kind: Kind) -> Kind:
        if kind is not Kind.TEXT:
            raise ValueError(f"parses one date text, but the value is a {kind} here")
        return Kind.DATE

    def apply(self, value: Value) -> Value:
        assert isinstance(value, str)
        text = value.strip()
        try:
            if _EPOCH_MS.fullmatch(text):
                moment = _EPOCH + timedelta(milliseconds=int(text))
            else:
                try:
                    return date.fromisoformat(text)
                except ValueError:
                    moment = datetime.fromisoformat(text)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            return moment.astimezone(self._zone).date()
        except (ValueError, OverflowError):
            raise TransformFailed(
                "date", f"{value!r} is not an ISO-8601 date/time or epoch milliseconds"
            ) from None


_TRANSFORMS: dict[str, type[_Transform]] = {
    get_args(cls.model_fields["op"].annotation)[0]: cls
    for cls in (
        Trim,
        Lower,
        Upper,
        Title,
        CollapseWhitespace,
        Truncate,
        Replace,
        Join,
        Template,
        ToDecimal,
        ToDate,
    )
}
# The argument a one-key mapping's scalar value fills: {truncate: 40}, {join: ", "}.
_MAIN_ARGUMENT = {
    "truncate": "length",
    "join": "separator",
    "template": "template",
    "decimal": "places",
    "date": "timezone",
}


def _expand(item: Any) -> Any:
    """``trim`` / ``{join: " "}`` / ``{decimal: {places: 2}}`` → ``{"op": …, **arguments}``."""
    if isinstance(item, str):
        name, argument = item, None
    elif isinstance(item, Mapping) and len(item) == 1:
        ((name, argument),) = item.items()
    else:
        raise config_error(
            "transform", "a transform is a name (trim) or a one-key mapping ({join: ' '})"
        )
    if name not in _TRANSFORMS:
        raise config_error(
            "unknown_transform",
            f"unknown transform {name!r} (expected one of {', '.join(sorted(_TRANSFORMS))})",
        )
    if argument is None:
        return {"op": name}
    if isinstance(argument, Mapping):
        return {**argument, "op": name}
    if name in _MAIN_ARGUMENT:
        return {_MAIN_ARGUMENT[name]: argument, "op": name}
    raise config_error(
        "transform", f"transform {name!r} takes no single value: write it alone or with a mapping"
    )


def _written_forms() -> dict[str, Any]:
    """The JSON Schema of a transform as a mapping file writes it (``_expand``'s input):
    a name alone, or a one-key mapping to its main argument or to its arguments."""
    alone = []
    forms: list[dict[str, Any]] = []
    for name, cls in sorted(_TRANSFORMS.items()):
        arguments = cls.model_json_schema()
        arguments["properties"].pop("op")
        required = [field for field in arguments.get("required", []) if field != "op"]
        arguments["required"] = required
        if not required:
            alone.append(name)
        written = [arguments]
        if name in _MAIN_ARGUMENT:
            written.insert(0, arguments["properties"][_MAIN_ARGUMENT[name]])
        forms.append(
            {
                "type": "object",
                "properties": {name: {"anyOf": written}},
                "required": [name],
                "additionalProperties": False,
            }
        )
    return {"anyOf": [{"enum": alone}, *forms]}


Transform = Annotated[
    Annotated[
        Trim
        | Lower
        | Upper
        | Title
        | CollapseWhitespace
        | Truncate
        | Replace
        | Join
        | Template
        | ToDecimal
        | ToDate,
        Field(discriminator="op"),
    ],
    BeforeValidator(_expand),
    WithJsonSchema(_written_forms()),
]
