"""Freshness of the way back: a payment recorded in QuickBooks, until HubSpot shows it.

Method: the local stack with the default connection (HubSpot → QuickBooks, the default
preset, which sends an invoice's standing back): real handlers, moto's SQS FIFO and
DynamoDB, both sandboxes at their documented limits, no reconcile run. One company's
won deals are invoiced first (not timed). Then, one payment at a time (each after the
last one's writes and their echoes have settled, and a second more: the person's calls
share QuickBooks' 10 calls a second with the sync), a person records a payment on a
deal's invoice through QuickBooks' API; the sandbox sends its signed
webhook, and the webhook function, the queue, the sync function and the HubSpot sandbox
do the rest. The bench polls HubSpot's API (every ``POLL_S``, using the app's token and
so its 100 calls / 10 s, beside the sync's own calls) until the deal's amount paid is
the new one.

Freshness per payment = when the deal first showed it − when QuickBooks says the
payment was created (its ``MetaData.CreateTime``). QuickBooks reports that time to the
second, so this figure is up to a second over the truth; the second figure, from when
QuickBooks' answer to the payment's POST came back, has no such error. Both include up
to ``POLL_S`` of polling.
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx

from bench.common import percentile
from local.config import PRESETS, LocalConfig
from local.runtime import LocalStack
from local.sandboxes.hubspot import HubSpotPerson, HubSpotSandbox
from local.sandboxes.quickbooks import QuickBooksBooks, QuickBooksSandbox
from local.sandboxes.registry import DemoLine

POLL_S = 0.2
AMOUNT_PAID = "crmsync_amount_paid"
LINE = DemoLine("Services", "4", "250")  # invoices of 1,000.00
PAYMENT = Decimal(100)
TIMEOUT_S = 120.0


def invoiced_deals(stack: LocalStack, person: HubSpotPerson, n: int) -> dict[str, str]:
    """``n`` won deals of one company, each invoiced: invoice Id → deal id."""
    company = person.create_company("Freshness Ltd", "Boston")
    deals = [
        person.create_deal(f"Retainer {i}", won=True, company=company, contact=None, lines=[LINE])
        for i in range(n)
    ]
    quickbooks: QuickBooksSandbox = stack.sandboxes["quickbooks"]
    memos = {f"HubSpot deal {deal}": deal for deal in deals}
    deadline = time.monotonic() + TIMEOUT_S * 5
    while time.monotonic() < deadline:
        invoices = {
            str(i["Id"]): memos[i["PrivateNote"]]
            for i in quickbooks.entities("Invoice")
            if i.get("PrivateNote") in memos
        }
        if len(invoices) == n:
            break
        time.sleep(0.2)
    else:
        raise RuntimeError(f"only {len(invoices)} of {n} deals were invoiced")
    quiet(stack)
    return invoices


def quiet(stack: LocalStack) -> None:
    """Every webhook delivered and handled, then a second more: the person's calls
    share QuickBooks' 10 calls a second with the sync, and must not take the sync's."""
    hubspot: HubSpotSandbox = stack.sandboxes["hubspot"]
    quickbooks: QuickBooksSandbox = stack.sandboxes["quickbooks"]
    for _ in range(2):  # a drained queue can still receive a late webhook
        hubspot.wait_for_webhooks_idle(TIMEOUT_S)
        stack.wait_until_drained(TIMEOUT_S)
        quickbooks.wait_for_webhooks_idle(TIMEOUT_S)
        stack.wait_until_drained(TIMEOUT_S)
    time.sleep(1)


def created_at(books: QuickBooksBooks, payment: str) -> float:
    """The payment's ``MetaData.CreateTime`` (epoch seconds), as QuickBooks reports it."""
    response = books.api().get(f"/payment/{payment}")
    response.raise_for_status()
    stamp = response.json()["Payment"]["MetaData"]["CreateTime"]
    return datetime.fromisoformat(stamp).timestamp()


def amount_paid(hubspot: httpx.Client, deal: str) -> Decimal | None:
    response = hubspot.get(f"/crm/v3/objects/deals/{deal}", params={"properties": AMOUNT_PAID})
    response.raise_for_status()
    found: Any = response.json()["properties"].get(AMOUNT_PAID)
    return Decimal(found) if found else None


def freshness(n: int) -> None:
    config = LocalConfig.load().with_free_ports().model_copy(update={"reconcile_interval_s": 3600})
    with LocalStack(config.with_mapping(PRESETS / "hubspot" / "services-two-way.yaml")) as stack:
        hubspot_sandbox: HubSpotSandbox = stack.sandboxes["hubspot"]
        person = HubSpotPerson(hubspot_sandbox, stack.urls.sandboxes["hubspot"])
        books = QuickBooksBooks(stack.sandboxes["quickbooks"], stack.urls.sandboxes["quickbooks"])
        hubspot = httpx.Client(
            base_url=stack.urls.sandboxes["hubspot"],
            headers={"Authorization": f"Bearer {hubspot_sandbox.config.access_token}"},
            timeout=10,
        )
        setup = time.perf_counter()
        invoices = invoiced_deals(stack, person, n)
        setup = time.perf_counter() - setup
        from_create: list[float] = []
        from_answer: list[float] = []
        for invoice, deal in invoices.items():
            payment = books.record_payment(invoice, PAYMENT)
            answered = time.time()
            deadline = time.monotonic() + TIMEOUT_S
            while amount_paid(hubspot, deal) != PAYMENT:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"deal {deal} did not show payment {payment}")
                time.sleep(POLL_S)
            seen = time.time()
            quiet(stack)
            from_create.append(seen - created_at(books, payment))
            from_answer.append(seen - answered)
        status = stack.status().workers["Events"]
    print(
        f"way back, QuickBooks payment → HubSpot deal, local stack: {len(from_create)} "
        f"payments, one at a time, polled every {POLL_S:g} s (invoicing the {n} deals "
        f"first took {setup:.0f} s); "
        f"{status.processed} queue events, {status.failed} failed attempts"
    )
    for name, samples in (
        ("from QuickBooks' CreateTime (1 s resolution)", from_create),
        ("from the payment POST's answer", from_answer),
    ):
        print(
            f"  {name:<46} p50={percentile(samples, 50):6.2f} s  "
            f"p99={percentile(samples, 99):6.2f} s  max={max(samples):6.2f} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description="Freshness of the way back")
    parser.add_argument("--payments", type=int, default=30)
    freshness(parser.parse_args().payments)


if __name__ == "__main__":
    main()
