"""Invoice amounts: the total QuickBooks computes is the one the connector meant.

For any quantities (fractional too), unit prices with many decimals, discounts and
currencies with 0, 2 and 3 decimals, the sandbox (which applies Intuit's
Amount = Qty × UnitPrice check and computes the totals) accepts the invoice the
connector writes, and its ``TotalAmt`` is the stated rule computed here on its own:
each line's Qty × UnitPrice rounded half up to the currency's minor unit, summed,
less the discount rounded the same way. No tax: the connector sends no
``TxnTaxCodeRef`` and the sandbox, like a company without automated sales tax, adds none.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from itertools import count

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.connectors.quickbooks.connector import QuickBooksAccounting
from shared.models import Invoice, InvoiceLine

# The sandbox's own limits are raised instead of pacing the connector's calls.
from tests.unit.connectors.sandbox_envs import QuickBooksEnv as Env
from tests.unit.connectors.sandbox_envs import Unmetered
from tests.unit.connectors.test_quickbooks_against_sandbox import stored

MINOR_UNITS = {"USD": 2, "JPY": 0, "KWD": 3}  # ISO 4217


@pytest.fixture(scope="module")
def companies() -> Iterator[dict[str, tuple[Env, QuickBooksAccounting]]]:
    """One company per currency (multicurrency is off: invoices are in the home currency)."""
    envs = {
        currency: Env(home_currency=currency, rate_per_second=10_000, rate_per_minute=1_000_000)
        for currency in MINOR_UNITS
    }
    yield {currency: (env, env.connector(Unmetered())) for currency, env in envs.items()}
    for env in envs.values():
        env.close()


def held(amount: Decimal, currency: str) -> Decimal:
    return amount.quantize(Decimal(1).scaleb(-MINOR_UNITS[currency]), ROUND_HALF_UP)


QUANTITIES = st.decimals(min_value=Decimal("0.0001"), max_value=10_000, places=4)
UNIT_PRICES = st.integers(0, 7).flatmap(
    lambda places: st.decimals(min_value=0, max_value=100_000, places=places)
)
KEYS = count()


@settings(max_examples=60, deadline=None)
@given(
    currency=st.sampled_from(sorted(MINOR_UNITS)),
    lines=st.lists(st.tuples(QUANTITIES, UNIT_PRICES), min_size=1, max_size=4),
    discount_share=st.decimals(min_value=0, max_value=1, places=6),
)
def test_property_the_invoice_is_accepted_and_totals_what_the_connector_meant(
    companies: dict[str, tuple[Env, QuickBooksAccounting]],
    currency: str,
    lines: list[tuple[Decimal, Decimal]],
    discount_share: Decimal,
) -> None:
    env, qbo = companies[currency]
    line_amounts = [held(qty * price, currency) for qty, price in lines]
    # At most the subtotal QuickBooks holds: a larger discount is refused (6000).
    discount = sum(line_amounts, Decimal(0)) * discount_share
    invoice = Invoice(
        customer_ref="1",
        currency=currency,
        lines=[
            InvoiceLine(name="Design", item_ref="3", quantity=qty, unit_price=price)
            for qty, price in lines[:-1]
        ]
        + [
            InvoiceLine(
                name="Design",
                item_ref="3",
                quantity=lines[-1][0],
                unit_price=lines[-1][1],
                discount_amount=discount,
            )
        ],
    )

    ref = qbo.upsert_invoice(invoice, existing=None, idempotency_key=f"amounts:{next(KEYS)}")

    written = stored(env, "Invoice", ref.id)
    sales = [line for line in written["Line"] if line["DetailType"] == "SalesItemLineDetail"]
    assert [Decimal(str(line["Amount"])) for line in sales] == line_amounts
    total = sum(line_amounts, Decimal(0)) - held(discount, currency)
    assert Decimal(str(written["TotalAmt"])) == total
    assert Decimal(str(written["Balance"])) == total
    assert written["TxnTaxDetail"]["TotalTax"] == 0
