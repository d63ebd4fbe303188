"""Transforms one by one, and the properties they promise."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter

from shared.mapping.transforms import Kind, Transform, TransformFailed, Value

_ADAPTER: TypeAdapter[Any] = TypeAdapter(Transform)


def transform(spec: Any) -> Any:
    """A transform as a mapping file would spell it."""
    return _ADAPTER.validate_python(spec)


def apply(spec: Any, value: Value) -> Value:
    result: Value = transform(spec).apply(value)
    return result


@pytest.mark.parametrize(
    ("spec", "value", "expected"),
    [
        ("trim", "  Ann  ", "Ann"),
        ("lower", "ANN@X.COM", "ann@x.com"),
        ("upper", "usd", "USD"),
        ("title", "ann LEE", "Ann Lee"),
        ("collapse_whitespace", "  Acme \t  Corp\n ", "Acme Corp"),
        ({"truncate": 4}, "Consulting", "Cons"),
        ({"truncate": {"length": 20}}, "short", "short"),
        ({"replace": {"pattern": "[^0-9+]", "with": ""}}, "+1 (555) 010-2000", "+15550102000"),
        ({"replace": {"pattern": r"(\w+)@(\w+)", "with": r"\2"}}, "ann@acme", "acme"),
    ],
)
def test_given_text_when_a_text_transform_applies_then_result_is_expected(
    spec: Any, value: str, expected: str
) -> None:
    assert apply(spec, value) == expected


def test_given_several_sources_when_a_text_transform_applies_then_each_is_transformed() -> None:
    assert apply("trim", {"firstname": " Ann ", "lastname": None}) == {
        "firstname": "Ann",
        "lastname": None,
    }


@pytest.mark.parametrize(
    ("spec", "sources", "expected"),
    [
        ({"join": " "}, {"a": "Ann", "b": "Lee"}, "Ann Lee"),
        ({"join": ", "}, {"a": "Ann", "b": None, "c": "", "d": "  ", "e": "Lee"}, "Ann, Lee"),
        ("join", {"a": "Ann", "b": "Lee"}, "Ann Lee"),
        ({"template": "{b}, {a}"}, {"a": "Ann", "b": "Lee"}, "Lee, Ann"),
        ({"template": "Deal {a} ({b})"}, {"a": "42", "b": None}, "Deal 42 ()"),
        ({"template": "{{literal}} {a}"}, {"a": "x"}, "{literal} x"),
    ],
)
def test_given_sources_when_combined_then_one_text(
    spec: Any, sources: dict[str, str | None], expected: str
) -> None:
    assert apply(spec, sources) == expected


@pytest.mark.parametrize(
    ("spec", "value", "expected"),
    [
        ("decimal", "150.005", Decimal("150.005")),
        ({"decimal": 2}, "150.005", Decimal("150.01")),
        ({"decimal": {"places": 2, "rounding": "half_even"}}, "150.005", Decimal("150.00")),
        ({"decimal": {"places": 2, "rounding": "down"}}, "-1.999", Decimal("-1.99")),
        ({"decimal": {"places": 0, "rounding": "ceiling"}}, "1.1", Decimal("2")),
        ({"decimal": {"places": 2}}, " 3 ", Decimal("3.00")),
        ({"decimal": {"places": 2}}, Decimal("1.005"), Decimal("1.01")),
    ],
)
def test_given_a_number_when_decimal_applies_then_exact_decimal(
    spec: Any, value: Value, expected: Decimal
) -> None:
    result = apply(spec, value)

    assert isinstance(result, Decimal)
    assert result == expected
    assert str(result) == str(expected)  # places are kept, not only the value


@pytest.mark.parametrize(
    ("spec", "value", "problem"),
    [
        ("decimal", "12,50", "'12,50' is not a decimal number"),
        ("decimal", "NaN", "'NaN' is not a finite number"),
        ("decimal", "-Infinity", "not a finite number"),
        ({"decimal": 2}, "1e40", "'1e40' is too large for 2 places"),
    ],
)
def test_given_a_non_number_when_decimal_applies_then_decimal_rule_fails(
    spec: Any, value: str, problem: str
) -> None:
    with pytest.raises(TransformFailed) as caught:
        apply(spec, value)

    assert caught.value.rule == "decimal"
    assert problem in caught.value.message


@pytest.mark.parametrize(
    ("spec", "value", "expected"),
    [
        ("date", "2024-01-15", date(2024, 1, 15)),
        ("date", "2024-01-15T23:30:00Z", date(2024, 1, 15)),
        ({"date": "America/New_York"}, "2024-01-16T02:00:00.000Z", date(2024, 1, 15)),
        ({"date": {"timezone": "Asia/Tokyo"}}, "2024-01-15T20:00:00+00:00", date(2024, 1, 16)),
        ({"date": "America/New_York"}, "2024-01-16T02:00:00", date(2024, 1, 15)),  # naive = UTC
        ({"date": "America/New_York"}, "1705370400000", date(2024, 1, 15)),  # 02:00 UTC
        ("date", "1705370400000", date(2024, 1, 16)),
        ({"date": "America/New_York"}, "2024-01-15", date(2024, 1, 15)),  # a date stays put
        ("date", "-86400000", date(1969, 12, 31)),
    ],
)
def test_given_a_timestamp_when_date_applies_then_calendar_date_in_the_zone(
    spec: Any, value: str, expected: date
) -> None:
    assert apply(spec, value) == expected


@pytest.mark.parametrize("value", ["15/01/2024", "yesterday", "9" * 30, "2024-13-01", "٣٣"])
def test_given_not_a_date_when_date_applies_then_date_rule_fails(value: str) -> None:
    with pytest.raises(TransformFailed) as caught:
        apply("date", value)

    assert caught.value.rule == "date"
    assert repr(value) in caught.value.message


@pytest.mark.parametrize(
    ("spec", "kind", "expected"),
    [
        ("trim", Kind.TEXT, Kind.TEXT),
        ("trim", Kind.SOURCES, Kind.SOURCES),
        ("join", Kind.SOURCES, Kind.TEXT),
        ("decimal", Kind.TEXT, Kind.DECIMAL),
        ("decimal", Kind.DECIMAL, Kind.DECIMAL),
        ("date", Kind.TEXT, Kind.DATE),
    ],
)
def test_given_an_input_kind_then_transform_says_what_it_produces(
    spec: Any, kind: Kind, expected: Kind
) -> None:
    assert transform(spec).output(kind) is expected


@pytest.mark.parametrize(
    ("spec", "kind"),
    [("trim", Kind.DECIMAL), ("join", Kind.TEXT), ("decimal", Kind.SOURCES), ("date", Kind.DATE)],
)
def test_given_an_input_kind_it_cannot_take_then_transform_refuses(spec: Any, kind: Kind) -> None:
    with pytest.raises(ValueError):
        transform(spec).output(kind)


# --- properties ---------------------------------------------------------------------

ROUNDINGS = st.sampled_from(
    ["up", "down", "ceiling", "floor", "half_up", "half_down", "half_even", "05up"]
)
NUMBER_TEXT = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
    st.integers().map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.text(max_size=12),
)


@given(value=NUMBER_TEXT, places=st.none() | st.integers(0, 6), rounding=ROUNDINGS)
def test_property_decimal_gives_a_decimal_never_a_float_and_is_idempotent(
    value: str, places: int | None, rounding: str
) -> None:
    step = transform({"decimal": {"places": places, "rounding": rounding}})
    try:
        once = step.apply(value)
    except TransformFailed as failed:
        assert failed.rule == "decimal"
        return

    assert isinstance(once, Decimal) and not isinstance(once, float)
    assert once.is_finite()
    assert step.apply(once) == once
    assert str(step.apply(str(once))) == str(once)
    if places is not None:
        assert once.as_tuple().exponent == -places


@given(value=st.text())
@pytest.mark.parametrize("name", ["trim", "lower", "upper", "collapse_whitespace"])
def test_property_text_normalizers_are_idempotent(name: str, value: str) -> None:
    step = transform(name)

    once = step.apply(value)

    assert step.apply(once) == once


@given(
    moment=st.datetimes(
        min_value=datetime(1900, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    ),
    zone=st.sampled_from(["UTC", "America/New_York", "Asia/Kolkata", "Pacific/Kiritimati"]),
)
def test_property_epoch_ms_and_iso_of_one_instant_give_the_same_date(
    moment: datetime, zone: str
) -> None:
    moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    step = transform({"date": zone})
    epoch_ms = str(int(moment.timestamp() * 1000))

    assert (
        step.apply(epoch_ms)
        == step.apply(moment.isoformat())
        == step.apply(moment.isoformat().replace("+00:00", "Z"))
    )
