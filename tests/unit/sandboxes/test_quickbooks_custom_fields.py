"""The QuickBooks sandbox's Preferences and Invoice.CustomField, over real HTTP.

Intuit's shapes (docs/vendors/quickbooks.md, [Q15, Q16]): Preferences lists the
sales-form custom fields as ``SalesFormsPrefs.UseSalesCustom<n>`` /
``SalesFormsPrefs.SalesCustomName<n>`` pairs; an invoice's ``CustomField`` names
them by ``DefinitionId`` n. The seeded company has "Crew #" (1) and "PO Number" (2)
enabled and "Sales Rep" (3) named but disabled.
"""

from __future__ import annotations

from typing import Any

import pytest

from local.sandboxes import quickbooks_custom_fields
from tests.fakes import OffsetClock
from tests.unit.sandboxes.test_quickbooks_sandbox import (
    Harness,
    fault_of,
    sales_line,
    start_harness,
    stop_harness,
)


def invoice_with(qbo: Harness, custom: Any) -> dict[str, Any]:
    body = {"CustomerRef": {"value": "1"}, "Line": [sales_line("1", 1, 100)], "CustomField": custom}
    response = qbo.create("Invoice", body)
    assert response.status_code == 200, response.text
    invoice: dict[str, Any] = response.json()["Invoice"]
    return invoice


def values(invoice: dict[str, Any]) -> dict[str, str | None]:
    return {f["Name"]: f.get("StringValue") for f in invoice["CustomField"]}


def test_preferences_list_the_sales_custom_fields_in_intuits_nested_shape(qbo: Harness) -> None:
    response = qbo.api("GET", "preferences")

    assert response.status_code == 200, response.text
    groups = response.json()["Preferences"]["SalesFormsPrefs"]["CustomField"]
    pairs = {
        entry["Name"]: (entry["Type"], entry.get("BooleanValue", entry.get("StringValue")))
        for group in groups
        for entry in group["CustomField"]
    }
    assert pairs == {
        "SalesFormsPrefs.UseSalesCustom1": ("BooleanType", True),
        "SalesFormsPrefs.UseSalesCustom2": ("BooleanType", True),
        "SalesFormsPrefs.UseSalesCustom3": ("BooleanType", False),
        "SalesFormsPrefs.SalesCustomName1": ("StringType", "Crew #"),
        "SalesFormsPrefs.SalesCustomName2": ("StringType", "PO Number"),
        "SalesFormsPrefs.SalesCustomName3": ("StringType", "Sales Rep"),
    }
    queried = qbo.query("select * from Preferences").json()["QueryResponse"]["Preferences"]
    assert queried[0]["SalesFormsPrefs"]["CustomField"] == groups


def test_invoice_keeps_enabled_fields_by_definition_id_on_create_read_and_query(
    qbo: Harness,
) -> None:
    created = invoice_with(
        qbo,
        [
            {"DefinitionId": "2", "StringValue": "PO-4471"},
            {"DefinitionId": "1", "Name": "ignored: read only", "StringValue": "Crew 12"},
        ],
    )

    expected = [
        {"DefinitionId": "1", "Name": "Crew #", "Type": "StringType", "StringValue": "Crew 12"},
        {"DefinitionId": "2", "Name": "PO Number", "Type": "StringType", "StringValue": "PO-4471"},
    ]
    assert created["CustomField"] == expected
    read = qbo.api("GET", f"invoice/{created['Id']}").json()["Invoice"]
    assert read["CustomField"] == expected
    rows = qbo.query("select * from Invoice").json()["QueryResponse"]["Invoice"]
    assert next(r for r in rows if r["Id"] == created["Id"])["CustomField"] == expected


def test_fields_not_enabled_or_without_definition_id_are_dropped_and_the_invoice_saved(
    qbo: Harness,
) -> None:
    created = invoice_with(
        qbo,
        [
            {"DefinitionId": "3", "StringValue": "disabled slot"},
            {"DefinitionId": "9", "StringValue": "no such slot"},
            {"Name": "Crew #", "StringValue": "no DefinitionId"},
        ],
    )

    assert values(created) == {"Crew #": None, "PO Number": None}


def test_an_invoice_without_custom_fields_lists_the_enabled_ones_without_values(
    qbo: Harness,
) -> None:
    created = invoice_with(qbo, None)

    assert created["CustomField"] == [
        {"DefinitionId": "1", "Name": "Crew #", "Type": "StringType"},
        {"DefinitionId": "2", "Name": "PO Number", "Type": "StringType"},
    ]


def test_a_value_over_the_length_limit_is_refused_with_2050(qbo: Harness) -> None:
    too_long = "x" * (quickbooks_custom_fields.VALUE_MAX + 1)
    body = {
        "CustomerRef": {"value": "1"},
        "Line": [sales_line("1", 1, 100)],
        "CustomField": [{"DefinitionId": "1", "StringValue": too_long}],
    }

    response = qbo.create("Invoice", body)

    assert response.status_code == 400
    assert fault_of(response)["code"] == "2050"
    exact = {**body, "CustomField": [{"DefinitionId": "1", "StringValue": too_long[:-1]}]}
    assert qbo.create("Invoice", exact).status_code == 200


def test_sparse_update_changes_named_fields_and_full_update_keeps_only_what_it_sends(
    qbo: Harness,
) -> None:
    created = invoice_with(
        qbo,
        [
            {"DefinitionId": "1", "StringValue": "Crew 12"},
            {"DefinitionId": "2", "StringValue": "PO-1"},
        ],
    )
    sparse = {
        "Id": created["Id"],
        "SyncToken": created["SyncToken"],
        "sparse": True,
        "CustomField": [{"DefinitionId": "2", "StringValue": "PO-2"}],
    }
    after_sparse = qbo.create("Invoice", sparse).json()["Invoice"]
    untouched = qbo.create(
        "Invoice",
        {
            "Id": created["Id"],
            "SyncToken": after_sparse["SyncToken"],
            "sparse": True,
            "PrivateNote": "n",
        },
    ).json()["Invoice"]
    cleared = qbo.create(
        "Invoice",
        {
            "Id": created["Id"],
            "SyncToken": untouched["SyncToken"],
            "sparse": True,
            "CustomField": [{"DefinitionId": "1", "StringValue": ""}],
        },
    ).json()["Invoice"]
    full = {
        "Id": created["Id"],
        "SyncToken": cleared["SyncToken"],
        "CustomerRef": {"value": "1"},
        "Line": [sales_line("1", 1, 100)],
    }
    after_full = qbo.create("Invoice", full).json()["Invoice"]

    assert values(after_sparse) == {"Crew #": "Crew 12", "PO Number": "PO-2"}
    assert values(untouched) == {"Crew #": "Crew 12", "PO Number": "PO-2"}
    assert values(cleared) == {"Crew #": None, "PO Number": "PO-2"}
    assert values(after_full) == {"Crew #": None, "PO Number": None}


def test_a_company_configured_with_other_fields_reports_and_takes_those() -> None:
    harness = start_harness(OffsetClock(), sales_custom_fields=(("Job", False), ("Site", True)))
    try:
        harness.refresh()
        created = invoice_with(
            harness,
            [
                {"DefinitionId": "1", "StringValue": "J-1"},
                {"DefinitionId": "2", "StringValue": "S"},
            ],
        )
        prefs = harness.api("GET", "preferences").json()["Preferences"]
    finally:
        stop_harness(harness)

    assert created["CustomField"] == [
        {"DefinitionId": "2", "Name": "Site", "Type": "StringType", "StringValue": "S"}
    ]
    flags = prefs["SalesFormsPrefs"]["CustomField"][0]["CustomField"]
    assert {f["Name"]: f["BooleanValue"] for f in flags} == {
        "SalesFormsPrefs.UseSalesCustom2": True,
        "SalesFormsPrefs.UseSalesCustom1": False,
    }


def test_more_than_three_sales_custom_fields_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="at most 3"):
        quickbooks_custom_fields.definitions((("a", True), ("b", True), ("c", True), ("d", True)))
