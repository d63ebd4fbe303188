"""The ``AccountingLedger`` contract: where invoices and customers stand, read back from
the accounting system after a person received payments, issued credits or voided.

Runs against every kit in ``LEDGER_KITS``; a vendor joins by giving its kit the
``LedgerKit`` actions below (as a person does them in that system) and listing it.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Protocol, cast

import pytest

from shared.models import InvoiceStatus, ObjectType
from shared.ports import AccountingLedger
from tests.contracts.conftest import KitPool
from tests.contracts.kits.base import AccountingKit
from tests.contracts.kits.quickbooks import QuickBooksKit
from tests.contracts.kits.xero import XeroKit

TODAY = date.today()
LATER = TODAY + timedelta(days=30)
PAST = TODAY - timedelta(days=10)


class LedgerKit(Protocol):
    """What the suite does to a vendor's books, as a person would."""

    currency: str

    def ledger(self) -> AccountingLedger: ...

    def issue_invoice(self, amount: Decimal, *, due: date) -> tuple[str, str]:
        """A new customer's invoice for ``amount``: (invoice id, customer id)."""
        ...

    def add_invoice(self, customer_id: str, amount: Decimal, *, due: date) -> str: ...

    def pay(self, invoice_id: str, amount: Decimal, *, on: date) -> str:
        """Receive a payment of ``amount`` on the invoice; the payment's id."""
        ...

    def credit(self, invoice_id: str, amount: Decimal) -> str:
        """Issue a credit note for ``amount`` and apply it to the invoice; the id of
        what the change feed names for the credit note."""
        ...

    def void(self, invoice_id: str) -> None: ...

    def refund(self, customer_id: str, amount: Decimal, *, on: date) -> str:
        """Pay ``amount`` back to the customer, as that system records a refund; the id
        of what the change feed names for it."""
        ...

    def unknown_id(self, object_type: ObjectType) -> str: ...


LEDGER_KITS: tuple[type[AccountingKit], ...] = (QuickBooksKit, XeroKit)


@pytest.fixture(params=LEDGER_KITS, ids=lambda kind: kind.name)
def kit(request: pytest.FixtureRequest, kit_pool: KitPool) -> LedgerKit:
    started = kit_pool.fresh(request.param)
    assert isinstance(started.target, AccountingLedger)
    return cast(LedgerKit, started)  # each listed kit has the ledger actions


def test_a_fresh_invoice_is_open_with_nothing_paid(kit: LedgerKit) -> None:
    invoice_id, _ = kit.issue_invoice(Decimal("100.00"), due=LATER)

    standing = kit.ledger().invoice_standing(invoice_id, today=TODAY)

    assert standing is not None
    assert standing.target_id == invoice_id
    assert standing.status is InvoiceStatus.OPEN
    assert (standing.total, standing.balance, standing.amount_paid) == (
        Decimal("100"),
        Decimal("100"),
        Decimal("0"),
    )
    assert standing.currency == kit.currency
    assert standing.due_date == LATER
    assert standing.last_payment_date is None and standing.paid_date is None


def test_a_part_payment_makes_it_partly_paid_with_its_date(kit: LedgerKit) -> None:
    invoice_id, _ = kit.issue_invoice(Decimal("100.00"), due=LATER)
    kit.pay(invoice_id, Decimal("40.00"), on=TODAY - timedelta(days=2))

    standing = kit.ledger().invoice_standing(invoice_id, today=TODAY)

    assert standing is not None
    assert standing.status is InvoiceStatus.PARTLY_PAID
    assert (standing.amount_paid, standing.balance) == (Decimal("40"), Decimal("60"))
    assert standing.last_payment_date == TODAY - timedelta(days=2)
    assert standing.paid_date is None


def test_paid_in_full_over_two_payments_is_paid_on_the_last(kit: LedgerKit) -> None:
    invoice_id, _ = kit.issue_invoice(Decimal("100.00"), due=LATER)
    kit.pay(invoice_id, Decimal("30.00"), on=TODAY - timedelta(days=3))
    kit.pay(invoice_id, Decimal("70.00"), on=TODAY - timedelta(days=1))

    standing = kit.ledger().invoice_standing(invoice_id, today=TODAY)

    assert standing is not None
    assert standing.status is InvoiceStatus.PAID
    assert (standing.amount_paid, standing.balance) == (Decimal("100"), Decimal("0"))
    assert standing.paid_date == standing.last_payment_date == TODAY - timedelta(days=1)


def test_past_its_due_date_with_a_balance_it_is_overdue_even_part_paid(kit: LedgerKit) -> None:
    invoice_id, _ = kit.issue_invoice(Decimal("100.00"), due=PAST)
    ledger = kit.ledger()

    fresh = ledger.invoice_standing(invoice_id, today=TODAY)
    kit.pay(invoice_id, Decimal("25.00"), on=TODAY)
    part_paid = ledger.invoice_standing(invoice_id, today=TODAY)

    assert fresh is not None and fresh.status is InvoiceStatus.OVERDUE
    assert part_paid is not None and part_paid.status is InvoiceStatus.OVERDUE
    assert part_paid.balance == 75


def test_a_voided_invoice_is_voided_and_owes_nothing(kit: LedgerKit) -> None:
    invoice_id, _ = kit.issue_invoice(Decimal("100.00"), due=PAST)
    kit.void(invoice_id)

    standing = kit.ledger().invoice_standing(invoice_id, today=TODAY)

    assert standing is not None
    assert standing.status is InvoiceStatus.VOIDED
    assert standing.balance == 0
    assert standing.paid_date is None


def test_a_credit_note_applied_lowers_the_balance_and_counts_as_credited(kit: LedgerKit) -> None:
    invoice_id, _ = kit.issue_invoice(Decimal("100.00"), due=LATER)
    kit.credit(invoice_id, Decimal("30.00"))

    standing = kit.ledger().invoice_standing(invoice_id, today=TODAY)

    assert standing is not None
    assert standing.status is InvoiceStatus.PARTLY_PAID
    assert (standing.credited, standing.amount_paid, standing.balance) == (
        Decimal("30"),
        Decimal("30"),
        Decimal("70"),
    )
    assert standing.last_payment_date is None  # a credit is not money received


def test_an_unknown_invoice_or_customer_has_no_standing(kit: LedgerKit) -> None:
    ledger = kit.ledger()

    assert ledger.invoice_standing(kit.unknown_id(ObjectType.INVOICE), today=TODAY) is None
    assert ledger.customer_standing(kit.unknown_id(ObjectType.CUSTOMER), today=TODAY) is None


def test_a_customer_stands_by_all_its_invoices(kit: LedgerKit) -> None:
    overdue_id, customer_id = kit.issue_invoice(Decimal("100.00"), due=PAST)
    kit.add_invoice(customer_id, Decimal("200.00"), due=LATER)
    voided_id = kit.add_invoice(customer_id, Decimal("50.00"), due=PAST)
    kit.void(voided_id)
    kit.pay(overdue_id, Decimal("40.00"), on=TODAY - timedelta(days=1))

    standing = kit.ledger().customer_standing(customer_id, today=TODAY)

    assert standing is not None
    assert standing.target_id == customer_id
    assert standing.currency == kit.currency
    assert standing.open_balance == 260  # 60 + 200; the voided one owes nothing
    assert standing.overdue_amount == 60
    assert standing.invoiced_to_date == 300  # voided left out
    assert standing.paid_to_date == 40
    assert standing.last_payment_date == TODAY - timedelta(days=1)


def test_the_change_feed_names_a_payments_invoices_and_a_void(kit: LedgerKit) -> None:
    since_ms = int(time.time() * 1000) - 1000
    paid_id, customer_id = kit.issue_invoice(Decimal("100.00"), due=LATER)
    voided_id, _ = kit.issue_invoice(Decimal("80.00"), due=LATER)
    payment_id = kit.pay(paid_id, Decimal("100.00"), on=TODAY)
    kit.void(voided_id)

    changes = list(kit.ledger().changed_since([ObjectType.INVOICE, ObjectType.PAYMENT], since_ms))

    payments = [c for c in changes if c.object_type is ObjectType.PAYMENT]
    assert [(c.target_id, c.invoice_ids, c.customer_id) for c in payments] == [
        (payment_id, (paid_id,), customer_id)
    ]
    voids = [c for c in changes if c.object_type is ObjectType.INVOICE and c.deleted]
    assert [c.target_id for c in voids] == [voided_id]
    assert {c.target_id for c in changes if c.object_type is ObjectType.INVOICE} == {
        paid_id,
        voided_id,
    }
    assert [c.changed_at_ms for c in changes] == sorted(c.changed_at_ms for c in changes)
    assert all(c.changed_at_ms >= since_ms - 1000 for c in changes)


def test_a_refund_shows_on_the_customer_and_leaves_the_invoice_paid(kit: LedgerKit) -> None:
    invoice_id, customer_id = kit.issue_invoice(Decimal("100.00"), due=LATER)
    kit.pay(invoice_id, Decimal("100.00"), on=TODAY - timedelta(days=3))
    kit.refund(customer_id, Decimal("30.00"), on=TODAY - timedelta(days=1))
    kit.refund(customer_id, Decimal("5.00"), on=TODAY - timedelta(days=2))

    customer = kit.ledger().customer_standing(customer_id, today=TODAY)
    invoice = kit.ledger().invoice_standing(invoice_id, today=TODAY)

    assert customer is not None and invoice is not None
    assert customer.refunded_to_date == 35
    assert customer.last_refund_date == TODAY - timedelta(days=1)
    assert customer.paid_to_date == 100  # what was paid on its invoices, refunds apart
    assert customer.last_payment_date == TODAY - timedelta(days=3)  # a refund is no payment
    assert invoice.status is InvoiceStatus.PAID  # no vendor ties a refund to an invoice


def test_a_customer_never_refunded_has_refunded_nothing(kit: LedgerKit) -> None:
    invoice_id, customer_id = kit.issue_invoice(Decimal("100.00"), due=LATER)
    kit.pay(invoice_id, Decimal("100.00"), on=TODAY)

    customer = kit.ledger().customer_standing(customer_id, today=TODAY)

    assert customer is not None
    assert customer.refunded_to_date == 0 and customer.last_refund_date is None


def test_the_change_feed_names_a_refunds_customer(kit: LedgerKit) -> None:
    since_ms = int(time.time() * 1000) - 1000
    invoice_id, customer_id = kit.issue_invoice(Decimal("100.00"), due=LATER)
    kit.pay(invoice_id, Decimal("100.00"), on=TODAY)
    refund_id = kit.refund(customer_id, Decimal("20.00"), on=TODAY)

    changes = list(kit.ledger().changed_since([ObjectType.PAYMENT], since_ms))

    refunds = [c for c in changes if c.target_id == refund_id]
    assert [(c.object_type, c.invoice_ids, c.customer_id) for c in refunds] == [
        (ObjectType.PAYMENT, (), customer_id)
    ]


def test_the_change_feed_names_a_credits_customer_and_the_invoice_it_reached(
    kit: LedgerKit,
) -> None:
    since_ms = int(time.time() * 1000) - 1000
    invoice_id, customer_id = kit.issue_invoice(Decimal("100.00"), due=LATER)
    credit_id = kit.credit(invoice_id, Decimal("30.00"))

    changes = list(kit.ledger().changed_since([ObjectType.PAYMENT], since_ms))

    credits = [c for c in changes if c.target_id == credit_id]
    assert [(c.object_type, c.deleted, c.customer_id) for c in credits] == [
        (ObjectType.PAYMENT, False, customer_id)
    ]
    # QuickBooks applies a credit memo through a payment, Xero allocates the credit
    # note itself: either way a payment-type change names the invoice.
    assert invoice_id in {i for c in changes for i in c.invoice_ids}


def test_invoices_falling_due_in_a_window_are_listed_with_their_customer(kit: LedgerKit) -> None:
    start, end = TODAY - timedelta(days=5), TODAY + timedelta(days=5)  # [start, end)
    due_id, customer_id = kit.issue_invoice(Decimal("100.00"), due=TODAY)
    part_paid_id = kit.add_invoice(customer_id, Decimal("50.00"), due=start)
    kit.pay(part_paid_id, Decimal("20.00"), on=TODAY)
    paid_id = kit.add_invoice(customer_id, Decimal("80.00"), due=TODAY)
    kit.pay(paid_id, Decimal("80.00"), on=TODAY)
    voided_id = kit.add_invoice(customer_id, Decimal("60.00"), due=TODAY)
    kit.void(voided_id)
    before_id = kit.add_invoice(customer_id, Decimal("70.00"), due=start - timedelta(days=1))
    at_end_id = kit.add_invoice(customer_id, Decimal("90.00"), due=end)
    ours = {due_id, part_paid_id, paid_id, voided_id, before_id, at_end_id}

    listed = [c for c in kit.ledger().falling_due(start, end) if c.target_id in ours]

    assert [(c.target_id, c.object_type, c.customer_id, c.deleted) for c in listed] == [
        (part_paid_id, ObjectType.INVOICE, customer_id, False),
        (due_id, ObjectType.INVOICE, customer_id, False),
    ]
    assert [c.changed_at_ms for c in listed] == [
        int(datetime.combine(day, datetime.min.time(), UTC).timestamp()) * 1000
        for day in (start, TODAY)
    ]
