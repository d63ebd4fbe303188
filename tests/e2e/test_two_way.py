"""The way back on the local stack: a payment, a void, a refund, a credit memo in
QuickBooks reach HubSpot.

A person works in the QuickBooks sandbox (``QuickBooksBooks``, the public API with a
token of their own); the sandbox sends its signed webhook to the local API, and the
webhook function, the queue, the sync function and the HubSpot sandbox do the rest.
The connection's mapping is the two-way services preset, which sends an invoice's
status and a customer's financial picture back (``config/hubspot/services-two-way.yaml``).
What HubSpot shows is read through its public API.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
import pytest

from local.config import PRESETS, LocalConfig
from local.runtime import LocalStack
from local.sandboxes.hubspot import DEAL_TO_COMPANY
from local.sandboxes.quickbooks import QuickBooksBooks
from shared.models import AuditEntry, Outcome
from shared.sync.backflow import ECHO_OF_WRITE_BACK
from tests.e2e.conftest import Harness, Line, eventually, fast_retries, money, unique

pytestmark = pytest.mark.e2e

TWO_WAY = PRESETS / "hubspot" / "services-two-way.yaml"


@pytest.fixture(scope="module")
def running() -> Iterator[Harness]:
    """The harness's stack, its connection on the two-way preset (this module's own:
    the default preset is one-way)."""
    config = LocalConfig.load().with_free_ports().model_copy(update={"reconcile_interval_s": 3600})
    with LocalStack(fast_retries(config.with_mapping(TWO_WAY))) as stack:
        yield Harness(stack)


SERVICES = Line("Services", quantity="4", price="250")  # an invoice of 1,000.00
DEAL_STATUS = "crmsync_invoice_status"
PICTURE = ("crmsync_open_balance", "crmsync_paid_to_date", "crmsync_invoiced_to_date")
REFUNDS = ("crmsync_refunded_to_date", "crmsync_last_refund_date")


class TwoWay:
    """A company with a won deal invoiced in QuickBooks, and ways to look at both."""

    def __init__(self, e2e: Harness) -> None:
        self.e2e = e2e
        self.books = QuickBooksBooks(e2e.quickbooks, e2e.quickbooks_url)
        self.company = e2e.crm.create("companies", {"name": unique("Acme ")})
        self._hubspot = httpx.Client(
            base_url=e2e.hubspot_url,
            headers={"Authorization": f"Bearer {e2e.hubspot.config.access_token}"},
            timeout=10,
        )

    def invoiced_deal(self) -> tuple[str, str]:
        """A won deal of the company, and its QuickBooks invoice's Id, all settled."""
        deal = self.e2e.crm.create(
            "deals",
            {
                "dealname": unique("Retainer "),
                "pipeline": "default",
                "dealstage": "appointmentscheduled",
            },
            to=[(self.company, DEAL_TO_COMPANY)],
        )
        self.e2e.add_line(deal, SERVICES)
        self.e2e.win(deal)
        [invoice] = eventually(lambda: self.e2e.invoices_for(deal), f"an invoice for deal {deal}")
        self.e2e.settle()
        return deal, str(invoice["Id"])

    def read(self, path: str, record_id: str, properties: tuple[str, ...]) -> dict[str, Any]:
        """The record's properties as HubSpot's API answers them."""
        response = self._hubspot.get(
            f"/crm/v3/objects/{path}/{record_id}",
            params={"properties": ",".join((*properties, "hs_lastmodifieddate"))},
        )
        response.raise_for_status()
        found: dict[str, Any] = response.json()["properties"]
        return found

    def deal(self, deal_id: str) -> dict[str, Any]:
        wanted = (DEAL_STATUS, "crmsync_amount_paid", "crmsync_balance_due", "crmsync_paid_date")
        return self.read("deals", deal_id, wanted)

    def picture(self) -> dict[str, Any]:
        return self.read("companies", self.company, PICTURE)

    def refunds(self) -> dict[str, Any]:
        return self.read("companies", self.company, REFUNDS)

    def customer_of(self, invoice_id: str) -> str:
        """The QuickBooks customer the invoice bills (the company's)."""
        [row] = [i for i in self.e2e.quickbooks.entities("Invoice") if i["Id"] == invoice_id]
        return str(row["CustomerRef"]["value"])

    def app_writes(self, object_id: str) -> int:
        """PATCHes our app made to the record, as HubSpot's webhooks report them: one
        propertyChange per property changed, all at the write's modification time."""
        return len(
            {
                event["occurredAt"]
                for delivery in self.e2e.hubspot.deliveries
                for event in json.loads(delivery.body)
                if str(event.get("objectId")) == object_id
                and event["changeSource"] == "INTEGRATION"
            }
        )

    def quickbooks_events(self, kind: str, entity_id: str) -> list[str]:
        """The ids of QuickBooks' webhook events of this type about this entity, one per
        delivery (a retried delivery counts again)."""
        return [
            event["id"]
            for delivery in self.e2e.quickbooks.deliveries
            for event in json.loads(delivery.body)
            if event["type"] == kind and event["intuitentityid"] == entity_id
        ]


@pytest.fixture
def two_way(e2e: Harness) -> TwoWay:
    return TwoWay(e2e)


def after(entries: list[AuditEntry], event_ids: set[str]) -> list[AuditEntry]:
    return [e for e in entries if e.event_id not in event_ids]


def test_given_an_invoiced_deal_when_paid_in_parts_then_hubspot_shows_where_it_stands(
    e2e: Harness, two_way: TwoWay
) -> None:
    deal, invoice = two_way.invoiced_deal()
    assert two_way.deal(deal)[DEAL_STATUS] == "Open"
    assert money(two_way.picture()["crmsync_open_balance"]) == Decimal(1000)

    payment = two_way.books.record_payment(invoice, Decimal(400), received_on=date(2026, 11, 20))
    e2e.settle()

    # One delivery of the Payment webhook did it: no reconcile ran, nothing was retried.
    assert len(two_way.quickbooks_events("qbo.payment.created.v1", payment)) == 1
    shown = two_way.deal(deal)
    assert shown[DEAL_STATUS] == "Partly paid"
    assert (money(shown["crmsync_amount_paid"]), money(shown["crmsync_balance_due"])) == (
        Decimal(400),
        Decimal(600),
    )
    picture = two_way.picture()
    assert [money(picture[p]) for p in PICTURE] == [Decimal(600), Decimal(400), Decimal(1000)]
    [applied] = e2e.audit(f"quickbooks:payment:{payment}")
    assert applied.outcome is Outcome.FORWARDED

    two_way.books.record_payment(invoice, Decimal(600), received_on=date(2026, 11, 27))
    e2e.settle()

    paid = two_way.deal(deal)
    assert (paid[DEAL_STATUS], paid["crmsync_paid_date"]) == ("Paid", "2026-11-27")
    assert money(paid["crmsync_balance_due"]) == Decimal(0)
    assert money(two_way.picture()["crmsync_open_balance"]) == Decimal(0)


def test_given_an_open_invoice_when_voided_then_its_deal_shows_voided(
    e2e: Harness, two_way: TwoWay
) -> None:
    deal, invoice = two_way.invoiced_deal()
    assert money(two_way.picture()["crmsync_open_balance"]) == Decimal(1000)

    two_way.books.void_invoice(invoice)
    e2e.settle()

    assert two_way.deal(deal)[DEAL_STATUS] == "Voided"
    picture = two_way.picture()
    assert (money(picture["crmsync_open_balance"]), money(picture["crmsync_invoiced_to_date"])) == (
        Decimal(0),
        Decimal(0),
    )
    [void] = two_way.quickbooks_events("qbo.invoice.voided.v1", invoice)
    [voided] = [e for e in e2e.audit(f"quickbooks:invoice:{invoice}") if e.event_id == void]
    assert (voided.outcome, voided.target_key) == (Outcome.UPDATED, f"hubspot:deal:{deal}")


def test_given_a_paid_invoice_when_refunded_then_the_company_shows_the_refund(
    e2e: Harness, two_way: TwoWay
) -> None:
    deal, invoice = two_way.invoiced_deal()
    two_way.books.record_payment(invoice, Decimal(1000), received_on=date(2026, 11, 20))
    e2e.settle()
    assert two_way.deal(deal)[DEAL_STATUS] == "Paid"
    assert not two_way.refunds()["crmsync_last_refund_date"]

    refund = two_way.books.refund(
        two_way.customer_of(invoice), Decimal(150), refunded_on=date(2026, 11, 24)
    )
    e2e.settle()

    # One delivery of the RefundReceipt webhook did it: no reconcile ran.
    assert len(two_way.quickbooks_events("qbo.refundreceipt.created.v1", refund)) == 1
    shown = two_way.refunds()
    assert (money(shown["crmsync_refunded_to_date"]), shown["crmsync_last_refund_date"]) == (
        Decimal(150),
        "2026-11-24",
    )
    assert money(two_way.picture()["crmsync_paid_to_date"]) == Decimal(1000)  # refunds apart
    assert two_way.deal(deal)[DEAL_STATUS] == "Paid"  # a refund receipt names no invoice
    [applied] = e2e.audit(f"quickbooks:payment:RefundReceipt-{refund}")
    assert applied.outcome is Outcome.FORWARDED
    assert f"quickbooks:customer:{two_way.customer_of(invoice)}" in applied.reason


def test_given_an_open_invoice_when_a_credit_memo_is_issued_then_the_balance_falls(
    e2e: Harness, two_way: TwoWay
) -> None:
    deal, invoice = two_way.invoiced_deal()
    customer = two_way.customer_of(invoice)
    assert money(two_way.picture()["crmsync_open_balance"]) == Decimal(1000)

    memo = two_way.books.credit_memo(customer, Decimal(300))
    e2e.settle()

    # One delivery of the CreditMemo webhook did it: no reconcile ran, and the memo is
    # applied to no invoice, so nothing else announced it.
    assert len(two_way.quickbooks_events("qbo.creditmemo.created.v1", memo)) == 1
    assert money(two_way.picture()["crmsync_open_balance"]) == Decimal(700)
    assert two_way.deal(deal)[DEAL_STATUS] == "Open"  # the invoice still owes it all
    [applied] = e2e.audit(f"quickbooks:payment:CreditMemo-{memo}")
    assert applied.outcome is Outcome.FORWARDED
    assert f"quickbooks:customer:{customer}" in applied.reason


def test_given_a_payment_written_back_then_its_echoes_write_nothing_more(
    e2e: Harness, two_way: TwoWay
) -> None:
    deal, invoice = two_way.invoiced_deal()
    before = {e.event_id for e in e2e.audit_log()}
    writes = (two_way.app_writes(deal), two_way.app_writes(two_way.company))
    [version] = [i["SyncToken"] for i in e2e.quickbooks.entities("Invoice") if i["Id"] == invoice]

    two_way.books.record_payment(invoice, Decimal(250))
    e2e.settle()
    shown = (two_way.deal(deal), two_way.picture())
    e2e.settle()

    # One write to each record, then HubSpot's webhooks about them change nothing.
    assert (two_way.app_writes(deal), two_way.app_writes(two_way.company)) == (
        writes[0] + 1,
        writes[1] + 1,
    )
    assert (two_way.deal(deal), two_way.picture()) == shown
    echoes = after(e2e.audit(f"hubspot:deal:{deal}", echoes=True), before)
    echoes += after(e2e.audit(f"hubspot:company:{two_way.company}", echoes=True), before)
    assert echoes, "HubSpot's webhooks about our writes reached the sync"
    assert {(e.outcome, e.reason) for e in echoes} == {(Outcome.SKIPPED, ECHO_OF_WRITE_BACK)}
    [still] = [i["SyncToken"] for i in e2e.quickbooks.entities("Invoice") if i["Id"] == invoice]
    assert still == version
