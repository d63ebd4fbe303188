"""``crmsync drift --run --local`` on a two-way connection: drift planted on either side
while the webhook that would have told us was lost is found and repaired per policy.

The stack is the two-way one of ``test_two_way`` (QuickBooks → HubSpot back fields). A
lost delivery is planted by taking the sandbox's webhook address away for the time of
the change, as when the vendor gave up on its retries.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Harness, eventually, money, unique
from tests.e2e.test_backfill_cli import (  # noqa: F401  (config_file: the --local config)
    backfill,
    config_file,
    made_unannounced,
    now_iso,
)
from tests.e2e.test_drift_cli import drift
from tests.e2e.test_two_way import DEAL_STATUS, TwoWay, running, two_way  # noqa: F401

pytestmark = pytest.mark.e2e


@contextmanager
def quickbooks_webhooks_lost(e2e: Harness) -> Iterator[None]:
    """QuickBooks delivers no webhook for what happens inside."""
    e2e.settle()
    url = e2e.quickbooks.webhook_url
    e2e.quickbooks.webhook_url = None
    try:
        yield
    finally:
        e2e.quickbooks.webhook_url = url


def findings(run: dict[str, Any], e2e: Harness, crm_key: str) -> list[tuple[Any, ...]]:
    return [
        (f["kind"], f["field"], f["crm_value"], f["accounting_value"], f["done"])
        for f in run[e2e.connection_id]["findings"]
        if f["crm_key"] == crm_key
    ]


def test_given_a_payment_whose_webhook_was_lost_then_drift_writes_it_back(
    e2e: Harness,
    two_way: TwoWay,  # noqa: F811
    config_file: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    deal, invoice = two_way.invoiced_deal()
    with quickbooks_webhooks_lost(e2e):
        two_way.books.record_payment(invoice, Decimal(400))
    e2e.settle()
    assert two_way.deal(deal)[DEAL_STATUS] == "Open"  # nothing told the sync

    run = drift(config_file, capsys, "--run", "--connection", e2e.connection_id)
    e2e.settle()

    found = findings(run, e2e, f"hubspot:deal:{deal}")
    assert ("back", DEAL_STATUS, "Open", "Partly paid", "queued") in found
    paid = {f[1]: (money(f[2]), money(f[3])) for f in found if f[1] != DEAL_STATUS}
    assert paid["crmsync_amount_paid"] == (Decimal(0), Decimal(400))
    assert paid["crmsync_balance_due"] == (Decimal(1000), Decimal(600))
    shown = two_way.deal(deal)
    assert shown[DEAL_STATUS] == "Partly paid"
    assert money(shown["crmsync_balance_due"]) == Decimal(600)
    assert money(two_way.picture()["crmsync_open_balance"]) == Decimal(600)
    again = drift(config_file, capsys, "--run", "--connection", e2e.connection_id)
    assert findings(again, e2e, f"hubspot:deal:{deal}") == []


def test_given_an_invoice_deleted_in_quickbooks_unannounced_then_drift_makes_it_anew(
    e2e: Harness,
    two_way: TwoWay,  # noqa: F811
    config_file: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    deal, invoice = two_way.invoiced_deal()
    books = two_way.books.api()
    stored = books.get(f"/invoice/{invoice}").json()["Invoice"]
    with quickbooks_webhooks_lost(e2e):
        books.post(
            "/invoice",
            params={"operation": "delete"},
            json={"Id": invoice, "SyncToken": stored["SyncToken"]},
        ).raise_for_status()
    e2e.settle()
    assert e2e.invoices_for(deal) == []

    run = drift(config_file, capsys, "--run", "--connection", e2e.connection_id)
    e2e.settle()

    gone = [f for f in findings(run, e2e, f"hubspot:deal:{deal}") if f[0] == "target_gone"]
    assert [f[-1] for f in gone] == ["queued"]
    [remade] = eventually(lambda: e2e.invoices_for(deal), f"deal {deal}'s invoice made anew")
    assert remade["Id"] != invoice
    assert money(remade["TotalAmt"]) == Decimal(1000)
    assert two_way.deal(deal)[DEAL_STATUS] == "Open"


def test_given_a_company_renamed_in_hubspot_unannounced_then_drift_carries_it_over(
    e2e: Harness,
    two_way: TwoWay,  # noqa: F811
    config_file: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    two_way.invoiced_deal()
    renamed = unique("Renamed ")
    with e2e.webhooks_off():
        e2e.crm.update("companies", two_way.company, {"name": renamed})

    run = drift(config_file, capsys, "--run", "--connection", e2e.connection_id)
    e2e.settle()

    company = f"hubspot:company:{two_way.company}"
    found = findings(run, e2e, company)
    assert {(f[1], f[2], f[-1]) for f in found if f[0] == "field"} >= {
        ("DisplayName", renamed, "queued")
    }
    [customer] = eventually(
        lambda: [c for c in e2e.quickbooks.entities("Customer") if c["DisplayName"] == renamed],
        "the customer renamed",
    )
    assert e2e.audit(company)[0].target_key == f"quickbooks:customer:{customer['Id']}"


def test_given_deals_a_backfill_invoiced_in_batches_then_the_drift_check_fills_them(
    e2e: Harness,
    two_way: TwoWay,  # noqa: F811
    config_file: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    since = now_iso()
    made = made_unannounced(e2e, 2)

    assert backfill(config_file, e2e.connection_id, since) == 0
    e2e.settle()

    for _, deal in made:
        [invoice] = e2e.invoices_for(deal)
        assert "(batch)" in e2e.audit_of_target("invoice", invoice["Id"])[0].reason
    # A batch writes forward only; the next drift check finds the new invoices in the
    # accounting change feed and the way back fills their deals.
    drift(config_file, capsys, "--run", "--connection", e2e.connection_id)
    e2e.settle()

    assert [two_way.deal(deal).get(DEAL_STATUS) for _, deal in made] == ["Open", "Open"]
