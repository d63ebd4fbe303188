"""Invoice custom fields: the production QuickBooks connector against the sandbox.

The sandbox company has "Crew #" (DefinitionId 1) and "PO Number" (2) enabled and
"Sales Rep" (3) named but disabled, as ``GET /preferences`` reports them [Q16].
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import httpx
import pytest

from shared.connectors.quickbooks import SPEC
from shared.connectors.quickbooks.connector import (
    CUSTOM_FIELD_VALUE_MAX,
    QuickBooksAccounting,
    SalesCustomField,
    sales_custom_fields,
)
from shared.connectors.spec import INVOICE_CUSTOM_FIELDS
from shared.errors import RecordInvalid
from shared.models import Invoice, InvoiceLine
from shared.ports import TargetRef
from tests.unit.connectors.sandbox_envs import QuickBooksEnv as Env


class CountingTransport(httpx.HTTPTransport):
    """Counts the API paths the connector calls."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return super().handle_request(request)

    def count(self, suffix: str) -> int:
        return sum(1 for path in self.paths if path.endswith(suffix))


@pytest.fixture
def env(quickbooks_once: Env) -> Env:
    quickbooks_once.sandbox.reset()
    return quickbooks_once


@pytest.fixture
def calls() -> CountingTransport:
    return CountingTransport()


@pytest.fixture
def qbo(env: Env, calls: CountingTransport) -> QuickBooksAccounting:
    """A fresh connector per test, so each reads Preferences itself."""
    return env.connector(transport=calls)


def invoice(custom_fields: dict[str, str], doc_number: str = "CF-1") -> Invoice:
    return Invoice(
        customer_ref="1",
        currency="USD",
        lines=[
            InvoiceLine(name="Services", item_ref="1", quantity=Decimal(1), unit_price=Decimal(100))
        ],
        txn_date=date(2026, 1, 5),
        doc_number=doc_number,
        custom_fields=custom_fields,
    )


def custom_values(env: Env, ref: TargetRef) -> dict[str, str | None]:
    row = next(r for r in env.sandbox.entities("Invoice") if r["Id"] == ref.id)
    return {f["Name"]: f.get("StringValue") for f in row["CustomField"]}


def test_the_vendor_spec_declares_invoice_custom_fields() -> None:
    assert INVOICE_CUSTOM_FIELDS in SPEC.capabilities


def test_given_mapped_custom_fields_when_invoiced_then_quickbooks_holds_them_by_name(
    env: Env, qbo: QuickBooksAccounting
) -> None:
    ref = qbo.upsert_invoice(
        invoice({"PO Number": "PO-4471", "crew #": "Crew 12"}), existing=None, idempotency_key="k1"
    )

    assert custom_values(env, ref) == {"Crew #": "Crew 12", "PO Number": "PO-4471"}


def test_given_a_name_the_company_lacks_when_invoiced_then_refused_saying_what_it_has(
    env: Env, qbo: QuickBooksAccounting
) -> None:
    with pytest.raises(RecordInvalid) as refused:
        qbo.upsert_invoice(
            invoice({"Job Code": "J-1", "Sales Rep": "Ann", "PO Number": "PO-1"}),
            existing=None,
            idempotency_key="k2",
        )

    by_field = {v.field: v for v in refused.value.violations}
    assert set(by_field) == {"custom_fields.Job Code", "custom_fields.Sales Rep"}
    job = by_field["custom_fields.Job Code"]
    assert job.rule == "custom_field_exists"
    assert "enabled: 'Crew #', 'PO Number'" in job.message
    assert "defined but not enabled: 'Sales Rep'" in job.message
    assert env.sandbox.create_count("Invoice") == 0


def test_given_a_value_longer_than_allowed_when_invoiced_then_refused_before_writing(
    env: Env, qbo: QuickBooksAccounting
) -> None:
    long_value = "x" * (CUSTOM_FIELD_VALUE_MAX + 1)

    with pytest.raises(RecordInvalid) as refused:
        qbo.upsert_invoice(invoice({"PO Number": long_value}), existing=None, idempotency_key="k3")
    exact = qbo.upsert_invoice(
        invoice({"PO Number": long_value[:-1]}), existing=None, idempotency_key="k4"
    )

    [violation] = refused.value.violations
    assert (violation.field, violation.rule) == ("custom_fields.PO Number", "max_length")
    assert f"at most {CUSTOM_FIELD_VALUE_MAX}" in violation.message
    assert env.sandbox.create_count("Invoice") == 1
    assert custom_values(env, exact)["PO Number"] == long_value[:-1]


def test_given_an_invoice_with_custom_fields_when_updated_then_unmapped_ones_are_kept(
    env: Env, qbo: QuickBooksAccounting
) -> None:
    created = qbo.upsert_invoice(
        invoice({"PO Number": "PO-1", "Crew #": "Crew 12"}), existing=None, idempotency_key="k5"
    )
    changed = qbo.upsert_invoice(
        invoice({"PO Number": "PO-2"}), existing=created, idempotency_key="k6"
    )
    after_change = custom_values(env, changed)
    untouched = qbo.upsert_invoice(invoice({}), existing=changed, idempotency_key="k7")

    assert after_change == {"Crew #": "Crew 12", "PO Number": "PO-2"}
    assert untouched.version == "2"
    assert custom_values(env, untouched) == {"Crew #": "Crew 12", "PO Number": "PO-2"}


def test_given_several_invoices_when_written_then_preferences_is_read_once(
    qbo: QuickBooksAccounting, calls: CountingTransport
) -> None:
    qbo.upsert_invoice(invoice({}, "CF-0"), existing=None, idempotency_key="k8")
    before_any = calls.count("/preferences")
    first = qbo.upsert_invoice(
        invoice({"PO Number": "A"}, "CF-1"), existing=None, idempotency_key="k9"
    )
    qbo.upsert_invoice(invoice({"PO Number": "B"}, "CF-1"), existing=first, idempotency_key="k10")
    with pytest.raises(RecordInvalid):
        qbo.upsert_invoice(invoice({"Nope": "C"}, "CF-2"), existing=None, idempotency_key="k11")

    assert before_any == 0
    assert calls.count("/preferences") == 1


def test_preferences_custom_fields_are_read_nested_or_flat() -> None:
    nested = {
        "SalesFormsPrefs": {
            "CustomField": [
                {
                    "CustomField": [
                        {"Name": "SalesFormsPrefs.UseSalesCustom2", "BooleanValue": False},
                        {"Name": "SalesFormsPrefs.UseSalesCustom1", "BooleanValue": True},
                    ]
                },
                {
                    "CustomField": [
                        {"Name": "SalesFormsPrefs.SalesCustomName1", "StringValue": "Crew #"},
                        {"Name": "SalesFormsPrefs.SalesCustomName2", "StringValue": "Zone"},
                    ]
                },
            ]
        }
    }
    flat = {
        "SalesFormsPrefs": {
            "CustomField": [
                {"Name": "SalesFormsPrefs.UseSalesCustom3", "BooleanValue": True},
                {"Name": "SalesFormsPrefs.SalesCustomName3", "StringValue": "P.O."},
                {"Name": "SalesFormsPrefs.UseSalesCustom1", "BooleanValue": True},
                {"Name": "SalesFormsPrefs.SalesCustomName1", "StringValue": ""},
            ]
        }
    }

    assert sales_custom_fields(nested) == [
        SalesCustomField("1", "Crew #", True),
        SalesCustomField("2", "Zone", False),
    ]
    assert sales_custom_fields(flat) == [SalesCustomField("3", "P.O.", True)]
    assert sales_custom_fields({}) == []
