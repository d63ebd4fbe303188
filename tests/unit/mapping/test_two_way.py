"""Two-way fields in a mapping file: what flows back is refused at load when it cannot
work, and compiled into what the way back writes."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from shared.errors import MappingConfigError
from shared.mapping import Mapper, parse_mapping
from shared.mapping.back import canonical_text
from shared.models import (
    CustomerStanding,
    Deal,
    InvoiceStanding,
    InvoiceStatus,
    ObjectType,
    SourceRecord,
)

BASE: dict[str, Any] = {
    "version": 1,
    "objects": {
        "company": {
            "fields": {
                "display_name": {"from": "name"},
                "credit_limit": {"from": "credit_limit", "transforms": ["decimal"]},
            }
        },
        "deal": {
            "fields": {
                "name": {"from": "dealname"},
                "status": {"default": "won"},
                "currency": {"default": "USD"},
                "due_date": {"from": "due_date", "transforms": ["date"]},
            },
            "line_items": {
                "fields": {
                    "name": {"from": "name"},
                    "quantity": {"from": "quantity"},
                    "unit_price": {"from": "price"},
                }
            },
        },
    },
}


def mapping(change: dict[str, Any], obj: str = "deal") -> str:
    """BASE with ``change`` merged into one object's mapping, as JSON."""
    data = json.loads(json.dumps(BASE))
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(data["objects"][obj].get(key), dict):
            data["objects"][obj][key].update(value)
        else:
            data["objects"][obj][key] = value
    return json.dumps(data)


def refused(text: str) -> str:
    with pytest.raises(MappingConfigError) as caught:
        parse_mapping(text, "two-way.json")
    return str(caught.value)


def standing(**changes: Any) -> InvoiceStanding:
    values: dict[str, Any] = {
        "target_id": "100",
        "version": "3",
        "status": InvoiceStatus.PARTLY_PAID,
        "currency": "USD",
        "total": Decimal("1000.00"),
        "amount_paid": Decimal("400.00"),
        "balance": Decimal("600.00"),
        "due_date": date(2026, 12, 20),
    }
    return InvoiceStanding(**{**values, **changes})


def test_given_both_without_a_policy_then_the_field_is_refused() -> None:
    error = refused(
        mapping(
            {
                "fields": {
                    "due_date": {"from": "due_date", "transforms": ["date"], "direction": "both"}
                }
            }
        )
    )

    assert "objects.deal.fields.due_date" in error
    assert "needs a `conflict` policy" in error


def test_given_a_policy_on_a_one_way_field_then_it_is_refused() -> None:
    error = refused(mapping({"fields": {"due_date": {"from": "due_date", "conflict": "hold"}}}))

    assert "objects.deal.fields.due_date: `conflict` applies to `direction: both` only" in error


@pytest.mark.parametrize(
    ("obj", "field", "spec", "expected"),
    [
        (
            "company",
            "credit_limit",
            {"from": "credit_limit", "direction": "both", "conflict": "crm_wins"},
            "objects.company.fields.credit_limit.direction: the accounting side does not "
            "report 'credit_limit' back",
        ),
        (
            "deal",
            "status",
            {"from": "dealstage", "direction": "accounting_to_crm"},
            "objects.deal.fields.status.direction: 'status' means something else",
        ),
        (
            "deal",
            "currency",
            {"from": "currency", "direction": "accounting_to_crm"},
            "objects.deal.fields.currency.direction: 'currency' is required to write a record",
        ),
    ],
)
def test_given_a_field_the_accounting_side_cannot_send_back_then_it_is_refused(
    obj: str, field: str, spec: dict[str, Any], expected: str
) -> None:
    assert expected in refused(mapping({"fields": {field: spec}}, obj))


def test_given_a_two_way_line_field_then_it_is_refused() -> None:
    data = json.loads(mapping({}))
    data["objects"]["deal"]["line_items"]["fields"]["unit_price"] = {
        "from": "price",
        "direction": "accounting_to_crm",
    }

    error = refused(json.dumps(data))

    assert "objects.deal.line_items.fields.unit_price.direction: only a contact's" in error


def test_given_a_computed_amount_sent_back_into_a_forward_property_then_it_is_refused() -> None:
    back = {"credit_limit": {"from": "open_balance", "label": "Limit", "kind": "number"}}

    error = refused(mapping({"back": back}, "company"))

    assert (
        "objects.company.back.credit_limit: 'open_balance' is an amount the accounting system "
        "computes; 'credit_limit' is sent to it by objects.company.fields.credit_limit"
    ) in error


def test_given_a_back_field_the_standing_lacks_then_it_is_refused() -> None:
    back = {"paid": {"from": "amount_received", "label": "Paid", "kind": "number"}}

    error = refused(mapping({"back": back}))

    assert "objects.deal.back.paid.from: InvoiceStanding has no 'amount_received'" in error


def test_given_a_status_map_missing_a_status_without_default_then_it_is_refused() -> None:
    back = {
        "invoice_status": {
            "from": "status",
            "label": "Status",
            "kind": "enumeration",
            "value_map": {"paid": "Paid", "open": "Open"},
        }
    }

    error = refused(mapping({"back": back}))

    assert "no entry for 'voided', 'overdue', 'partly_paid' and no default" in error


def test_given_a_number_property_fed_a_date_then_it_is_refused() -> None:
    back = {"due": {"from": "due_date", "label": "Due", "kind": "number"}}

    assert "a number property needs a decimal, but it gets a date" in refused(
        mapping({"back": back})
    )


def test_given_back_fields_then_they_give_the_crm_its_own_terms() -> None:
    config = parse_mapping(
        mapping(
            {
                "back": {
                    "invoice_status": {
                        "from": "status",
                        "label": "Status",
                        "kind": "enumeration",
                        "value_map": {"paid": "Paid", "partly_paid": "Part paid"},
                        "default": "Unpaid",
                    },
                    "paid": {
                        "from": "amount_paid",
                        "label": "Paid",
                        "kind": "number",
                        "transforms": [{"decimal": {"places": 0}}],
                    },
                    "paid_on": {"from": "paid_date", "label": "Paid on", "kind": "date"},
                }
            }
        ),
        "two-way.json",
    )
    plan = Mapper(config).back

    values = plan.values(ObjectType.DEAL, standing())
    overdue = plan.values(ObjectType.DEAL, standing(status=InvoiceStatus.OVERDUE))

    assert values == {"invoice_status": "Part paid", "paid": "400", "paid_on": None}
    assert overdue["invoice_status"] == "Unpaid"
    (status, *_) = plan.properties(ObjectType.DEAL)
    assert status.options == ("Paid", "Part paid", "Unpaid")


def test_given_an_accounting_to_crm_field_then_it_is_not_written_forward() -> None:
    spec = {"from": "due_date", "transforms": ["date"], "direction": "accounting_to_crm"}
    mapper = Mapper(parse_mapping(mapping({"fields": {"due_date": spec}}), "two-way.json"))

    (field,) = mapper.back.two_way(ObjectType.DEAL)
    deal = mapper.map(
        SourceRecord(
            object_type=ObjectType.DEAL,
            id="9",
            version=1,
            properties={"dealname": "Redesign", "due_date": "2026-12-20"},
        )
    )

    assert isinstance(deal, Deal)
    assert "due_date" not in deal.model_fields_set

    assert (field.key, field.prop, field.direction) == ("due_date", "due_date", "accounting_to_crm")
    assert mapper.back.sends_back(ObjectType.DEAL)
    assert not mapper.back.sends_back(ObjectType.COMPANY)


def test_given_a_customer_standing_then_company_fields_read_it() -> None:
    back = {"balance": {"from": "open_balance", "label": "Balance", "kind": "number"}}
    plan = Mapper(parse_mapping(mapping({"back": back}, "company"), "two-way.json")).back
    customer = CustomerStanding(
        target_id="7",
        currency="EUR",
        open_balance=Decimal("12.50"),
        overdue_amount=Decimal("0"),
        invoiced_to_date=Decimal("100"),
        paid_to_date=Decimal("87.50"),
    )

    assert plan.values(ObjectType.COMPANY, customer) == {"balance": "12.50"}
    assert canonical_text(Decimal("1E+2")) == "100"


def test_given_a_back_field_into_a_two_way_field_s_property_then_it_is_refused() -> None:
    change = {
        "fields": {"due_date": {"from": "due_date", "direction": "both", "conflict": "hold"}},
        "back": {"due_date": {"from": "due_date", "label": "Due", "kind": "date"}},
    }

    error = refused(mapping(change))

    assert (
        "objects.deal.back.due_date: 'due_date' is already filled by objects.deal.fields" in error
    )


def test_given_a_two_way_currency_on_a_company_then_it_loads() -> None:
    spec = {"from": "currency", "direction": "both", "conflict": "accounting_wins"}

    plan = Mapper(parse_mapping(mapping({"fields": {"currency": spec}}, "company"), "x.json")).back

    (field,) = plan.two_way(ObjectType.COMPANY)
    assert (field.key, field.conflict) == ("currency", "accounting_wins")
