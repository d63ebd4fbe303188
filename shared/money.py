"""Money helpers every connector may use: currencies' minor units, exact JSON numbers.

How a vendor rounds a line or a total is that vendor's rule and stays in its
connector; what a currency's minor unit is and how a Decimal travels as a JSON
number without changing value are the same for all.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from shared.errors import RecordInvalid, Violation

# Digits after the decimal point (ISO 4217 minor units) where a currency has not 2.
DEFAULT_MINOR_UNITS = 2
_NO_DECIMALS = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX VND VUV XAF XOF XPF"
_THREE_DECIMALS = "BHD IQD JOD KWD LYD OMR TND"
MINOR_UNITS = {
    **dict.fromkeys(_NO_DECIMALS.split(), 0),
    **dict.fromkeys(_THREE_DECIMALS.split(), 3),
}


def minor_units(currency: str) -> int:
    return MINOR_UNITS.get(currency, DEFAULT_MINOR_UNITS)


def round_half_up(amount: Decimal, places: int, field: str) -> Decimal:
    """``amount`` rounded half-up to ``places`` decimals; an amount too large for that
    (more digits than a Decimal context holds) is no real amount: ``RecordInvalid``."""
    try:
        return amount.quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP)
    except InvalidOperation:
        raise RecordInvalid(
            [Violation(field, "currency_precision", f"{amount} is out of range")]
        ) from None


def json_number(value: Decimal, field: str) -> int | float:
    """A Decimal as a JSON number carrying exactly the same value.

    httpx's JSON encoder takes no Decimal. An integral value goes out as an int; any
    other through ``float`` only after checking that the float's shortest repr (what
    ``json`` prints) reads back as the same Decimal, so 59.97 is sent as ``59.97``.
    A value a double cannot carry (more than ~15 significant digits) is refused
    rather than rounded, since an amount must not change on the wire.
    """
    if value.is_finite():
        if value == value.to_integral_value() and abs(value) < 2**53:
            return int(value)
        as_float = float(value)
        if Decimal(repr(as_float)) == value:
            return as_float
    raise RecordInvalid(
        [Violation(field, "json_number", f"{value} cannot be sent as an exact JSON number")]
    )
