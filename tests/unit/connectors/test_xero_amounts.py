"""Invoice amounts in Xero: what Xero holds is the amount crmsync meant, or nothing.

crmsync's rule (docs/vendors/xero.md): a line is quantity × unit price rounded
half up to the currency's ISO 4217 minor unit, its discount rounded the same way.
Xero computes each LineAmount itself from a 4-decimal quantity and unit amount, less
the discount, and holds it at 2 decimals whatever the currency (Rounding in Xero).
So a JPY line of half a yen, or a KWD line needing its third decimal, cannot be held
as meant: the connector refuses it naming the field, and writes everything else.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from itertools import count

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.connectors.xero.connector import XeroAccounting
from shared.errors import RecordInvalid
from shared.models import Invoice, InvoiceLine
from tests.unit.connectors.sandbox_envs import XeroEnv as Env
from tests.unit.connectors.test_xero import money, seeded_contact

MINOR_UNITS = {"USD": 2, "JPY": 0, "KWD": 3}  # ISO 4217
KEYS = count()


@pytest.fixture(scope="module")
def org() -> Iterator[tuple[Env, XeroAccounting, str]]:
    """One organisation with JPY and KWD turned on; its minute limit lifted so the
    examples are never throttled (the connector's budget is unmetered)."""
    env = Env(rate_per_minute=1_000_000, rate_per_day=1_000_000)
    for currency in MINOR_UNITS:
        env.add_currency(currency)
    yield env, env.connector(), seeded_contact(env, "Boom FM")
    env.close()


def meant(amount: Decimal, currency: str) -> Decimal:
    return amount.quantize(Decimal(1).scaleb(-MINOR_UNITS[currency]), ROUND_HALF_UP)


def line(quantity: str, price: str, discount: str = "0") -> InvoiceLine:
    return InvoiceLine(
        name="Design",
        item_ref="DESIGN",
        quantity=Decimal(quantity),
        unit_price=Decimal(price),
        discount_amount=Decimal(discount),
    )


def write(org: tuple[Env, XeroAccounting, str], currency: str, *lines: InvoiceLine) -> str:
    _, xero, customer = org
    invoice = Invoice(customer_ref=customer, currency=currency, lines=list(lines))
    return xero.upsert_invoice(invoice, existing=None, idempotency_key=f"amt:{next(KEYS)}").id


@pytest.mark.parametrize(
    ("currency", "written", "held"),
    [
        ("JPY", line("3", "333"), "999"),
        ("JPY", line("1", "1000", discount="0.4"), "1000"),  # a discount under a yen rounds away
        ("KWD", line("2", "1.25"), "2.5"),
        ("USD", line("1.5", "99.61"), "149.42"),  # 149.415, half up
        ("USD", line("1", "1.00005"), "1.00"),  # the price's fifth decimal changes nothing
    ],
)
def test_given_a_line_xero_can_hold_as_meant_when_invoiced_then_held_so(
    org: tuple[Env, XeroAccounting, str], currency: str, written: InvoiceLine, held: str
) -> None:
    row = org[0].row("Invoices", write(org, currency, written))

    (stored,) = row["LineItems"]
    assert row["CurrencyCode"] == currency
    assert money(stored["LineAmount"]) == Decimal(held)


@pytest.mark.parametrize(
    ("currency", "written", "field"),
    [
        ("JPY", line("3", "333.5"), "lines[0].amount"),  # 1000.5 yen: Xero would keep the .50
        ("KWD", line("3", "1.2345"), "lines[0].amount"),  # 3.7035 → 3.704: a third decimal
        ("KWD", line("1", "10", discount="0.005"), "lines[0].discount_amount"),
        ("USD", line("1000", "0.12345"), "lines[0].unit_price"),  # 0.1235 × 1000 = 123.50
    ],
)
def test_given_a_line_xero_cannot_hold_as_meant_when_invoiced_then_refused_naming_it(
    org: tuple[Env, XeroAccounting, str], currency: str, written: InvoiceLine, field: str
) -> None:
    before = org[0].sandbox.create_count("Invoices")

    with pytest.raises(RecordInvalid) as refused:
        write(org, currency, line("1", "10"), written)

    assert [v.field for v in refused.value.violations] == [field.replace("[0]", "[1]")]
    assert org[0].sandbox.create_count("Invoices") == before


QUANTITIES = st.decimals(min_value=Decimal("0.0001"), max_value=10_000, places=4)
UNIT_PRICES = st.integers(0, 7).flatmap(
    lambda places: st.decimals(min_value=0, max_value=100_000, places=places)
)


@settings(max_examples=60, deadline=None)
@given(
    currency=st.sampled_from(sorted(MINOR_UNITS)),
    lines=st.lists(st.tuples(QUANTITIES, UNIT_PRICES), min_size=1, max_size=4),
    discount_share=st.decimals(min_value=0, max_value=1, places=6),
)
def test_property_an_invoice_is_held_at_the_amounts_meant_or_refused(
    org: tuple[Env, XeroAccounting, str],
    currency: str,
    lines: list[tuple[Decimal, Decimal]],
    discount_share: Decimal,
) -> None:
    *others, (last_qty, last_price) = lines
    discount = meant(last_qty * last_price, currency) * discount_share
    written = [
        *(
            InvoiceLine(name="Design", item_ref="DESIGN", quantity=q, unit_price=p)
            for q, p in others
        ),
        InvoiceLine(
            name="Design",
            item_ref="DESIGN",
            quantity=last_qty,
            unit_price=last_price,
            discount_amount=discount,
        ),
    ]

    try:
        invoice_id = write(org, currency, *written)
    except RecordInvalid as refused:
        assert all(v.field.startswith("lines[") for v in refused.violations), refused
        # Refused only for what Xero cannot hold: never a 2-decimal currency's line
        # whose quantity and price fit Xero's 4 decimals.
        assert not (currency == "USD" and all(p == p.quantize(Decimal("0.0001")) for _, p in lines))
        return

    stored = org[0].row("Invoices", invoice_id)["LineItems"]
    gross = [money(s["LineAmount"]) + money(s.get("DiscountAmount", 0)) for s in stored]
    assert gross == [meant(q * p, currency) for q, p in lines]
    assert money(stored[-1].get("DiscountAmount", 0)) == meant(discount, currency)
