"""The way back from Xero on the local stack: a payment, a void or a refund in Xero
reaches the HubSpot deal and company.

The connection runs from HubSpot to Xero on the two-way preset
(``config/hubspot/services-two-way.yaml``). Xero sends no event before its Intent to
Receive has validated the webhook URL, which a person starts in the developer portal
when saving it (https://developer.xero.com/documentation/guides/webhooks/configuring-your-server):
the module's stack passes it once it is up. A bookkeeper approves each invoice (a new
one is a draft), receives payments (``PUT /Payments``,
https://developer.xero.com/documentation/api/accounting/payments) and voids an invoice
(``POST /Invoices/{id}`` with ``Status: VOIDED``,
https://developer.xero.com/documentation/api/accounting/invoices) and refunds a credit
note (``PUT /Payments`` naming it,
https://developer.xero.com/documentation/api/accounting/creditnotes) through the
Accounting API with a token of their own (``XeroBooks``); Xero's signed INVOICE or
CREDITNOTE webhook (https://developer.xero.com/documentation/guides/webhooks/overview)
reaches the local API, and the functions and the HubSpot sandbox do the rest. What
HubSpot shows is read through its public API.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
import pytest

from local.config import PRESETS
from local.runtime import LocalStack
from local.sandboxes.base import Delivery
from local.sandboxes.hubspot import HubSpotPerson, HubSpotSandbox
from local.sandboxes.registry import DemoLine
from local.sandboxes.xero import XeroBooks, XeroSandbox, sign
from shared.models import Outcome
from tests.e2e.conftest import PairHarness, eventually, money, pair_config, unique

pytestmark = pytest.mark.e2e

TWO_WAY = PRESETS / "hubspot" / "services-two-way.yaml"
SERVICES = DemoLine("Services", "4", "250")  # an invoice of 1,000.00, not taxed
STATUS = "crmsync_invoice_status"
DEAL = (STATUS, "crmsync_amount_paid", "crmsync_balance_due", "crmsync_paid_date")
PICTURE = ("crmsync_open_balance", "crmsync_paid_to_date", "crmsync_invoiced_to_date")
REFUNDS = ("crmsync_refunded_to_date", "crmsync_last_refund_date")
# Xero paces a connection to 60 calls a minute: a deal and its company take seconds.
SLOW_S = 120.0


@pytest.fixture(scope="module")
def running() -> Iterator[PairHarness]:
    with LocalStack(pair_config("hubspot", "xero", TWO_WAY)) as stack:
        xero: XeroSandbox = stack.sandboxes["xero"]
        outcome = xero.intent_to_receive()
        assert outcome.ok, outcome.checks
        yield PairHarness(stack)


@pytest.fixture
def e2e(running: PairHarness) -> PairHarness:
    running.settle(SLOW_S)
    return running


class HubSpotToXero:
    """A company with a won deal invoiced in Xero, and ways to look at both sides."""

    def __init__(self, e2e: PairHarness) -> None:
        stack = e2e.stack
        self.e2e = e2e
        self.xero: XeroSandbox = stack.sandboxes["xero"]
        self.books = XeroBooks(self.xero, stack.urls.sandboxes["xero"])
        hubspot: HubSpotSandbox = stack.sandboxes["hubspot"]
        self.person = HubSpotPerson(hubspot, stack.urls.sandboxes["hubspot"])
        self.company = self.person.create_company(unique("Acme "), "Auckland")
        self._hubspot = httpx.Client(
            base_url=stack.urls.sandboxes["hubspot"],
            headers={"Authorization": f"Bearer {hubspot.config.access_token}"},
            timeout=10,
        )

    def approved_invoice(self) -> tuple[str, str]:
        """A won deal of the company, and its Xero invoice's id, approved by the
        bookkeeper (payments need an AUTHORISED invoice); all settled."""
        deal = self.person.create_deal(
            unique("Retainer "), won=False, company=self.company, contact=None, lines=[SERVICES]
        )
        self.person.update("deals", deal, {"dealstage": "closedwon"})  # won last
        number = self.person.invoice_number(deal)
        [invoice] = eventually(
            lambda: [i.id for i in self.books.invoices() if i.number == number],
            f"a Xero invoice numbered {number}",
            timeout=SLOW_S,
        )
        self.e2e.settle(SLOW_S)
        approval = self.books.api().post(f"Invoices/{invoice}", json={"Status": "AUTHORISED"})
        approval.raise_for_status()
        self.e2e.settle(SLOW_S)
        return deal, invoice

    def read(self, path: str, record_id: str, properties: tuple[str, ...]) -> dict[str, Any]:
        """The record's properties as HubSpot's API answers them."""
        response = self._hubspot.get(
            f"/crm/v3/objects/{path}/{record_id}", params={"properties": ",".join(properties)}
        )
        response.raise_for_status()
        found: dict[str, Any] = response.json()["properties"]
        return found

    def deal(self, deal_id: str) -> dict[str, Any]:
        return self.read("deals", deal_id, DEAL)

    def picture(self) -> list[Decimal]:
        shown = self.read("companies", self.company, PICTURE)
        return [money(shown[p]) for p in PICTURE]

    def refunds(self) -> dict[str, Any]:
        return self.read("companies", self.company, REFUNDS)

    def contact_of(self, invoice: str) -> str:
        """The Xero contact the invoice bills (the company's)."""
        response = self.books.api().get(f"Invoices/{invoice}")
        response.raise_for_status()
        return str(response.json()["Invoices"][0]["Contact"]["ContactID"])

    def refunded_credit_note(self, payment: str) -> str:
        """The credit note a refund paid out: a refund names it as its ``Invoice``."""
        response = self.books.api().get(f"Payments/{payment}")
        response.raise_for_status()
        return str(response.json()["Payments"][0]["Invoice"]["InvoiceID"])

    def credit_note_events(self, note: str) -> list[str]:
        """The types of Xero's CREDITNOTE events about this credit note, one per
        delivery."""
        return [
            e["eventType"]
            for delivery in self.xero.deliveries
            for e in json.loads(delivery.body)["events"]
            if (e["eventCategory"], e["resourceId"]) == ("CREDITNOTE", note)
        ]

    def invoice_updates(self, invoice: str) -> list[Delivery]:
        """Xero's deliveries that announce an UPDATE of this invoice."""
        return [
            delivery
            for delivery in self.xero.deliveries
            if any(
                (e["eventCategory"], e["eventType"], e["resourceId"])
                == ("INVOICE", "UPDATE", invoice)
                for e in json.loads(delivery.body)["events"]
            )
        ]


@pytest.fixture
def pair(e2e: PairHarness) -> HubSpotToXero:
    return HubSpotToXero(e2e)


def test_given_xero_validates_the_webhook_url_then_both_of_its_checks_pass(
    e2e: PairHarness,
) -> None:
    # A wrongly signed check must get a 401 with no body, as every answer to Xero.
    outcome = e2e.stack.sandboxes["xero"].intent_to_receive()

    assert sorted((c.correctly_signed, c.status, c.body) for c in outcome.checks) == [
        (False, 401, ""),
        (True, 200, ""),
    ]
    assert outcome.ok


def test_given_an_approved_invoice_when_paid_in_parts_then_hubspot_shows_where_it_stands(
    e2e: PairHarness, pair: HubSpotToXero
) -> None:
    deal, invoice = pair.approved_invoice()
    assert pair.deal(deal)[STATUS] == "Open"
    assert pair.picture() == [Decimal(1000), Decimal(0), Decimal(1000)]
    announced = len(pair.invoice_updates(invoice))

    pair.books.record_payment(invoice, Decimal(400), received_on=date(2026, 11, 20))
    e2e.settle(SLOW_S)

    # One signed INVOICE UPDATE, delivered at once, did it (Xero has no payment events).
    [update] = pair.invoice_updates(invoice)[announced:]
    assert update.attempts == [200]
    assert update.headers["x-xero-signature"] == sign(pair.xero.config.webhook_key, update.body)
    shown = pair.deal(deal)
    assert shown[STATUS] == "Partly paid"
    assert [money(shown[p]) for p in ("crmsync_amount_paid", "crmsync_balance_due")] == [
        Decimal(400),
        Decimal(600),
    ]
    assert pair.picture() == [Decimal(600), Decimal(400), Decimal(1000)]

    pair.books.record_payment(invoice, Decimal(600), received_on=date(2026, 11, 27))
    e2e.settle(SLOW_S)

    paid = pair.deal(deal)
    assert (paid[STATUS], paid["crmsync_paid_date"]) == ("Paid", "2026-11-27")
    assert money(paid["crmsync_balance_due"]) == Decimal(0)
    assert pair.picture() == [Decimal(0), Decimal(1000), Decimal(1000)]
    assert e2e.dead_letters() == 0


def test_given_an_approved_invoice_when_voided_in_xero_then_its_deal_shows_voided(
    e2e: PairHarness, pair: HubSpotToXero
) -> None:
    deal, invoice = pair.approved_invoice()
    assert pair.picture()[0] == Decimal(1000)

    pair.books.void_invoice(invoice)
    e2e.settle(SLOW_S)

    assert pair.deal(deal)[STATUS] == "Voided"
    assert pair.picture() == [Decimal(0), Decimal(0), Decimal(0)]
    written = [e for e in e2e.audit(f"xero:invoice:{invoice}") if e.outcome is Outcome.UPDATED]
    assert written[-1].target_key == f"hubspot:deal:{deal}"
    assert e2e.dead_letters() == 0


def test_given_a_paid_invoice_when_a_credit_note_is_refunded_then_the_company_shows_it(
    e2e: PairHarness, pair: HubSpotToXero
) -> None:
    deal, invoice = pair.approved_invoice()
    pair.books.record_payment(invoice, Decimal(1000), received_on=date(2026, 11, 20))
    e2e.settle(SLOW_S)
    assert pair.deal(deal)[STATUS] == "Paid"
    assert not pair.refunds()["crmsync_last_refund_date"]
    contact = pair.contact_of(invoice)

    # A credit note raised for the contact, then paid out from the bank account.
    refund = pair.books.refund(contact, Decimal(150), refunded_on=date(2026, 11, 24))
    e2e.settle(SLOW_S)

    # Xero's CREDITNOTE events did it: a refund moves no invoice, and Xero has no
    # payment events.
    note = pair.refunded_credit_note(refund)
    assert pair.credit_note_events(note) == ["CREATE", "UPDATE"]
    shown = pair.refunds()
    assert (money(shown["crmsync_refunded_to_date"]), shown["crmsync_last_refund_date"]) == (
        Decimal(150),
        "2026-11-24",
    )
    assert pair.picture() == [Decimal(0), Decimal(1000), Decimal(1000)]  # refunds apart
    assert pair.deal(deal)[STATUS] == "Paid"  # a refund names no invoice
    applied = e2e.audit(f"xero:payment:CreditNote-{note}")
    assert applied and {e.outcome for e in applied} == {Outcome.FORWARDED}
    assert all(f"xero:customer:{contact}" in e.reason for e in applied)
    assert e2e.dead_letters() == 0
