"""What an accounting record's changes reached, beside the links, on moto's DynamoDB and
in memory alike: the way back's only path from a deleted payment to its invoices."""

from __future__ import annotations

import pytest

from shared.ports import LinkStore

BOTH = pytest.mark.parametrize("kind", ["dynamo", "memory"])
PAYMENT = "quickbooks:payment:42"
INVOICE = "quickbooks:invoice:77"
CUSTOMER = "quickbooks:customer:5"


@BOTH
def test_given_nothing_remembered_then_a_record_reaches_nothing(links: LinkStore) -> None:
    links.remember_reach("acme", PAYMENT, [])  # nothing to add: no write, no error

    assert links.reach_of("acme", PAYMENT) == frozenset()


@BOTH
def test_given_reaches_remembered_in_turn_then_all_are_kept(links: LinkStore) -> None:
    links.remember_reach("acme", PAYMENT, [INVOICE, CUSTOMER, INVOICE])
    links.remember_reach("acme", PAYMENT, ["quickbooks:invoice:78", CUSTOMER])

    assert links.reach_of("acme", PAYMENT) == {INVOICE, "quickbooks:invoice:78", CUSTOMER}
    assert links.reach_of("other-connection", PAYMENT) == frozenset()
    assert links.reach_of("acme", "quickbooks:payment:43") == frozenset()
