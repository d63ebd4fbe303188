"""``crmsync drift --run --local``: a drift planted in QuickBooks by a person is found
with both values, repaired by the sync per the mapping's policy, and the report kept;
one planted in HubSpot, a synced contact deleted there, is reported.

A contact's customer is renamed through QuickBooks' public API (a token of the
person's own), as someone would in the books; the connection's mapping sends a
customer's name one way (CRM → accounting), so the check queues the contact and the
deployed functions of the local stack write the CRM's name back over the edit.
A contact deleted through HubSpot's public API leaves its customer behind, as
deletions are not propagated: the check finds it among HubSpot's archived contacts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from local.sandboxes.quickbooks import QuickBooksBooks
from tests.e2e.conftest import Harness, eventually
from tests.e2e.test_backfill_cli import config_file  # noqa: F401  (the --local config)
from tests.integration.operator_cli import crmsync, json_output

pytestmark = pytest.mark.e2e


def drift(config: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, Any]:
    capsys.readouterr()
    assert crmsync(config, "drift", "--json", *extra) == 0
    reports: dict[str, Any] = json_output(capsys.readouterr().out)
    return reports


def test_given_a_customer_renamed_in_quickbooks_then_drift_finds_it_and_the_sync_repairs_it(
    e2e: Harness,
    config_file: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    person = e2e.create_contact()
    [customer] = eventually(lambda: e2e.customers_with(person.email), "the contact's customer")
    e2e.settle()
    books = QuickBooksBooks(e2e.quickbooks, e2e.quickbooks_url).api()
    stored = books.get(f"/customer/{customer['Id']}").json()["Customer"]
    edited = f"{person.display_name} (edited in the books)"
    books.post(
        "/customer",
        json={
            "Id": customer["Id"],
            "SyncToken": stored["SyncToken"],
            "sparse": True,
            "DisplayName": edited,
        },
    ).raise_for_status()
    e2e.settle()  # its webhook changes nothing: a customer's name goes one way

    run = drift(config_file, capsys, "--run", "--connection", e2e.connection_id)
    e2e.settle()

    contact_key = f"hubspot:contact:{person.id}"
    found = [f for f in run[e2e.connection_id]["findings"] if f["crm_key"] == contact_key]
    assert [
        (f["kind"], f["field"], f["crm_value"], f["accounting_value"], f["done"]) for f in found
    ] == [("field", "DisplayName", person.display_name, edited, "queued")]
    assert e2e.customers_with(person.email)[0]["DisplayName"] == person.display_name
    # The stored report is the one shown without --run, as JSON or as a table.
    assert drift(config_file, capsys, "--connection", e2e.connection_id) == run
    assert crmsync(config_file, "drift", "--connection", e2e.connection_id) == 0
    shown = capsys.readouterr().out
    assert f"connection {e2e.connection_id}: hubspot ↔ quickbooks" in shown
    assert f"{run[e2e.connection_id]['counts']['field']} field" in shown
    again = drift(config_file, capsys, "--run", "--connection", e2e.connection_id)
    assert [f for f in again[e2e.connection_id]["findings"] if f["crm_key"] == contact_key] == []


def test_given_a_synced_contact_deleted_in_hubspot_then_drift_reports_the_customer_left(
    e2e: Harness,
    config_file: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    person = e2e.create_contact()
    [customer] = eventually(lambda: e2e.customers_with(person.email), "the contact's customer")
    e2e.settle()
    e2e.crm.delete("contacts", person.id)
    e2e.settle()  # its webhook changes nothing: deletions are not propagated

    run = drift(config_file, capsys, "--run", "--connection", e2e.connection_id)

    contact_key = f"hubspot:contact:{person.id}"
    found = [f for f in run[e2e.connection_id]["findings"] if f["crm_key"] == contact_key]
    assert [(f["kind"], f["target_key"], f["done"]) for f in found] == [
        ("crm_gone", f"quickbooks:customer:{customer['Id']}", "reported")
    ]
    assert [c["Id"] for c in e2e.customers_with(person.email)] == [customer["Id"]]
