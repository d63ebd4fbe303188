"""The local stack at the deployed concurrency: two sync invocations at once, each in its
own execution environment (issue items 3 and 12).

A deal and its line items used to sit in different FIFO groups, so two invocations
could both miss the invoice and both create one; several deals of one new contact
could each create its customer. These drive exactly those bursts through the real
handlers.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from infra.resources import DESCRIPTION
from tests.e2e.conftest import Harness, Line, eventually
from tests.e2e.test_invoice_flow import sales_lines

pytestmark = pytest.mark.e2e

SYNC = DESCRIPTION.function("Sync")


def test_given_the_stack_then_the_sync_function_runs_at_its_deployed_concurrency(
    e2e: Harness,
) -> None:
    assert SYNC.max_concurrency is not None and SYNC.max_concurrency >= 2
    assert e2e.stack.functions["Sync"].concurrency == SYNC.max_concurrency


def test_given_a_won_deal_edited_in_a_burst_then_one_invoice_with_the_last_content(
    e2e: Harness,
) -> None:
    person = e2e.create_contact()
    deal = e2e.create_deal(person.id, [], won=False)
    first = e2e.add_line(deal, Line("Services", quantity="1", price="100"))
    second = e2e.add_line(deal, Line("Hours", quantity="1", price="80"))
    e2e.win(deal)
    # Deal and line-item events land together: both sync invocations get work.
    for quantity in ("2", "3", "4"):
        e2e.crm.update("line_items", first, {"quantity": quantity})
        e2e.crm.update("line_items", second, {"price": f"8{quantity}"})
    e2e.crm.update("deals", deal, {"description": "edited"})
    e2e.add_line(deal, Line("Services", quantity="5", price="10"))
    e2e.settle()

    [invoice] = eventually(lambda: e2e.invoices_for(deal), f"an invoice for {deal}")
    assert sales_lines(invoice) == [
        ("Services", Decimal("4"), Decimal("100"), Decimal("400.00")),
        ("Hours", Decimal("1"), Decimal("84"), Decimal("84.00")),
        ("Services", Decimal("5"), Decimal("10"), Decimal("50.00")),
    ]


def test_given_many_won_deals_of_a_new_contact_at_once_then_one_customer(e2e: Harness) -> None:
    with e2e.webhooks_off():
        person = e2e.create_contact()
        deals = [
            e2e.create_deal(person.id, [Line("Services", quantity="1", price="10")], won=False)
            for _ in range(6)
        ]
    for deal in deals:  # six won deals need the one customer none of them has yet
        e2e.win(deal)
    e2e.settle()

    assert len(e2e.customers_with(person.email)) == 1
    for deal in deals:
        assert len(e2e.invoices_for(deal)) == 1
