"""Mapping records: filters, fields, violations, selective sync, line items."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.errors import RecordInvalid
from shared.mapping import Filtered, Mapper, MappingConfig, load_mapping
from shared.models import Deal, DealStatus, LineItem, ObjectType, Party, PartyKind, SourceRecord

CONFIG_DIR = Path(__file__).resolve().parents[3] / "config" / "hubspot"

DEAL_FIELDS: dict[str, Any] = {
    "name": {"from": "dealname", "required": True},
    "status": {"from": "dealstage", "value_map": {"closedwon": "won"}, "default": "open"},
    "currency": {"from": "deal_currency_code", "transforms": ["upper"], "default": "USD"},
}
LINE_FIELDS: dict[str, Any] = {
    "name": {"from": "name", "required": True},
    "quantity": {"from": "quantity", "transforms": ["decimal"], "required": True},
    "unit_price": {"from": "price", "transforms": [{"decimal": 2}], "required": True},
}


def mapper(**objects: Any) -> Mapper:
    return Mapper(MappingConfig.model_validate({"version": 1, "objects": objects}))


def contact_mapper(**fields: Any) -> Mapper:
    return mapper(contact={"fields": {"display_name": {"from": "firstname"}, **fields}})


def record(
    object_type: ObjectType, lines: Sequence[Mapping[str, str | None]] = (), /, **props: str | None
) -> SourceRecord:
    children = {
        ObjectType.LINE_ITEM: [
            SourceRecord(
                object_type=ObjectType.LINE_ITEM, id=f"li{i}", version=1, properties=dict(p)
            )
            for i, p in enumerate(lines)
        ]
    }
    return SourceRecord(
        object_type=object_type, id="1", version=1, properties=props, children=children
    )


def contact(**props: str | None) -> SourceRecord:
    return record(ObjectType.CONTACT, firstname="Ann", **props)


def party(mapped: object) -> Party:
    assert isinstance(mapped, Party)
    return mapped


def deal_of(mapped: object) -> Deal:
    assert isinstance(mapped, Deal)
    return mapped


def violations(the_mapper: Mapper, source: SourceRecord) -> list[tuple[str, str, str]]:
    with pytest.raises(RecordInvalid) as caught:
        the_mapper.map(source)
    return [(v.field, v.rule, v.message) for v in caught.value.violations]


# --- fields -------------------------------------------------------------------------


def test_given_contact_and_company_when_mapped_then_party_kind_follows_the_object() -> None:
    fields = {"fields": {"display_name": {"from": "name"}}}
    the_mapper = mapper(contact=fields, company=fields)

    person = party(the_mapper.map(record(ObjectType.CONTACT, name="Ann")))
    company = party(the_mapper.map(record(ObjectType.COMPANY, name="Acme")))

    assert (person.kind, person.display_name) == (PartyKind.PERSON, "Ann")
    assert (company.kind, company.display_name) == (PartyKind.COMPANY, "Acme")


def test_given_from_list_with_join_when_mapped_then_non_empty_parts_joined() -> None:
    the_mapper = mapper(
        contact={
            "fields": {
                "display_name": {
                    "from": ["firstname", "lastname"],
                    "transforms": ["trim", {"join": " "}],
                }
            }
        }
    )

    full = party(the_mapper.map(record(ObjectType.CONTACT, firstname=" Ann ", lastname="Lee")))
    first_only = party(the_mapper.map(record(ObjectType.CONTACT, firstname="Ann")))

    assert full.display_name == "Ann Lee"
    assert first_only.display_name == "Ann"


def test_given_template_when_mapped_then_placeholders_filled() -> None:
    the_mapper = contact_mapper(
        company_name={
            "from": ["lastname", "firstname"],
            "transforms": [{"template": "{lastname}, {firstname}"}],
        }
    )

    assert party(the_mapper.map(contact(lastname="Lee"))).company_name == "Lee, Ann"


def test_given_transforms_in_order_when_mapped_then_applied_in_that_order() -> None:
    the_mapper = contact_mapper(
        email={"from": "email", "transforms": ["trim", "lower", {"truncate": 5}]}
    )

    assert party(the_mapper.map(contact(email="  ANN@EXAMPLE.COM"))).email == "ann@e"


def test_given_nested_canonical_parts_when_mapped_then_only_those_parts_are_set() -> None:
    the_mapper = contact_mapper(**{"billing_address.city": {"from": "city"}})

    address = party(the_mapper.map(contact(city="Boston"))).billing_address

    assert address is not None
    assert address.city == "Boston"
    assert address.model_fields_set == {"city"}


def test_given_value_map_when_value_is_mapped_then_canonical_value() -> None:
    the_mapper = mapper(deal={"fields": DEAL_FIELDS})

    mapped = deal_of(the_mapper.map(record(ObjectType.DEAL, dealname="D", dealstage="closedwon")))

    assert mapped.status is DealStatus.WON


def test_given_value_map_with_default_when_value_is_unmapped_then_default() -> None:
    the_mapper = mapper(deal={"fields": DEAL_FIELDS})

    mapped = deal_of(the_mapper.map(record(ObjectType.DEAL, dealname="D", dealstage="qualified")))

    assert mapped.status is DealStatus.OPEN


def test_given_value_map_without_default_when_value_is_unmapped_then_value_map_violation() -> None:
    fields = {**DEAL_FIELDS, "status": {"from": "dealstage", "value_map": {"closedwon": "won"}}}

    found = violations(
        mapper(deal={"fields": fields}),
        record(ObjectType.DEAL, dealname="D", dealstage="qualified"),
    )

    assert found == [
        (
            "status",
            "value_map",
            "'qualified' (from source property 'dealstage') is not in value_map ('closedwon') "
            "and there is no default",
        )
    ]


def test_given_value_map_with_empty_key_when_source_empty_then_empty_key_used() -> None:
    the_mapper = contact_mapper(tax_id={"from": "vat", "value_map": {"": "NONE", "x": "X"}})

    assert party(the_mapper.map(contact())).tax_id == "NONE"
    assert party(the_mapper.map(contact(vat=""))).tax_id == "NONE"
    assert party(the_mapper.map(contact(vat="x"))).tax_id == "X"


@pytest.mark.parametrize("empty", [None, "", "   "])
def test_given_default_when_source_is_empty_then_default_used(empty: str | None) -> None:
    the_mapper = contact_mapper(
        payment_terms={"from": "terms", "transforms": ["trim"], "default": "Net 30"}
    )

    assert party(the_mapper.map(contact(terms=empty))).payment_terms == "Net 30"


def test_given_default_only_when_mapped_then_constant_value() -> None:
    the_mapper = contact_mapper(payment_terms={"default": "Net 15"})

    assert party(the_mapper.map(contact(terms="Net 60"))).payment_terms == "Net 15"


def test_given_required_field_when_source_empty_then_required_violation_names_property() -> None:
    the_mapper = contact_mapper(email={"from": "email", "transforms": ["trim"], "required": True})

    found = violations(the_mapper, contact(email="  "))

    assert found == [("email", "required", "required, but source property 'email' is empty")]


def test_given_canonical_required_field_when_source_empty_then_required_violation() -> None:
    the_mapper = mapper(
        contact={
            "fields": {"display_name": {"from": ["firstname", "lastname"], "transforms": ["join"]}}
        }
    )

    found = violations(the_mapper, record(ObjectType.CONTACT))

    assert found == [
        (
            "display_name",
            "required",
            "required, but source properties 'firstname', 'lastname' are empty",
        )
    ]


def test_given_decimal_and_date_transforms_when_mapped_then_typed_values() -> None:
    the_mapper = contact_mapper(credit_limit={"from": "limit", "transforms": [{"decimal": 2}]})
    deal_mapper = mapper(
        deal={
            "fields": {
                **DEAL_FIELDS,
                "close_date": {"from": "closedate", "transforms": [{"date": "America/New_York"}]},
            }
        }
    )

    limit = party(the_mapper.map(contact(limit="1000.5"))).credit_limit
    closed = deal_of(
        deal_mapper.map(record(ObjectType.DEAL, dealname="D", closedate="1705370400000"))
    ).close_date

    assert limit == Decimal("1000.50") and isinstance(limit, Decimal)
    assert closed == date(2024, 1, 15)


def test_given_a_non_number_when_mapped_then_decimal_violation_names_property() -> None:
    the_mapper = contact_mapper(credit_limit={"from": "limit", "transforms": ["decimal"]})

    found = violations(the_mapper, contact(limit="ten"))

    assert found == [
        (
            "credit_limit",
            "decimal",
            "'ten' is not a decimal number (from source property 'limit')",
        )
    ]


def test_given_a_non_date_when_mapped_then_date_violation_names_property() -> None:
    fields = {**DEAL_FIELDS, "close_date": {"from": "closedate", "transforms": ["date"]}}

    found = violations(
        mapper(deal={"fields": fields}), record(ObjectType.DEAL, dealname="D", closedate="soon")
    )

    assert found == [
        (
            "close_date",
            "date",
            "'soon' is not an ISO-8601 date/time or epoch milliseconds "
            "(from source property 'closedate')",
        )
    ]


def test_given_value_the_model_refuses_when_mapped_then_pydantic_rule_and_property_named() -> None:
    the_mapper = mapper(
        deal={"fields": {**DEAL_FIELDS, "currency": {"from": "deal_currency_code"}}}
    )

    found = violations(the_mapper, record(ObjectType.DEAL, dealname="D", deal_currency_code="usd"))

    assert found == [
        (
            "currency",
            "string_pattern_mismatch",
            "String should match pattern '^[A-Z]{3}$', got 'usd' "
            "(from source property 'deal_currency_code')",
        )
    ]


def test_given_an_empty_optional_field_when_mapped_then_it_is_set_to_none() -> None:
    the_mapper = contact_mapper(phone={"from": "phone"})

    mapped = party(the_mapper.map(contact(phone=None)))

    assert mapped.phone is None
    assert "phone" in mapped.model_fields_set  # cleared in the target, not left alone


def test_given_listed_fields_when_mapped_then_only_they_are_set() -> None:
    the_mapper = contact_mapper(email={"from": "email"})

    mapped = party(the_mapper.map(contact(email="a@b.c", phone="555", lastname="Lee")))

    assert mapped.model_fields_set == {"kind", "display_name", "email"}


# --- filters ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "value", "admitted"),
    [
        ({"in": ["default", "sales"]}, "sales", True),
        ({"in": ["default"]}, "other", False),
        ({"in": ["default"]}, None, False),
        ({"in": [""]}, None, True),
        ({"not_in": ["closedlost"]}, "closedwon", True),
        ({"not_in": ["closedlost"]}, "closedlost", False),
        ({"equals": "default"}, "default", True),
        ({"equals": "default"}, "Default", False),
        ({"present": True}, "x", True),
        ({"present": True}, "  ", False),
        ({"present": False}, None, True),
        ({"present": False}, "x", False),
        ({"matches": "[0-9]+"}, "123", True),
        ({"matches": "[0-9]+"}, "123a", False),
    ],
)
def test_given_a_filter_rule_when_mapped_then_record_admitted_or_filtered(
    rule: dict[str, Any], value: str | None, admitted: bool
) -> None:
    the_mapper = mapper(deal={"filter": [{"field": "pipeline", **rule}], "fields": DEAL_FIELDS})

    mapped = the_mapper.map(record(ObjectType.DEAL, dealname="D", pipeline=value))

    assert isinstance(mapped, Deal) is admitted
    assert isinstance(mapped, Filtered) is not admitted


def test_given_filters_when_a_rule_excludes_then_reason_names_the_rule_and_value() -> None:
    the_mapper = mapper(
        deal={
            "filter": [
                {"field": "pipeline", "in": ["default"]},
                {"field": "dealstage", "in": ["closedwon"]},
            ],
            "fields": DEAL_FIELDS,
        }
    )

    mapped = the_mapper.map(record(ObjectType.DEAL, pipeline="default", dealstage="qualified"))

    assert mapped == Filtered("filter[1]: dealstage in ['closedwon'], but dealstage is 'qualified'")


def test_given_a_filtered_record_when_mapped_then_its_violations_do_not_matter() -> None:
    the_mapper = mapper(
        deal={"filter": [{"field": "dealstage", "equals": "closedwon"}], "fields": DEAL_FIELDS}
    )

    assert isinstance(the_mapper.map(record(ObjectType.DEAL, dealstage="open")), Filtered)


def test_given_an_unmapped_object_type_when_mapped_then_filtered_with_reason() -> None:
    the_mapper = contact_mapper()

    assert the_mapper.map(record(ObjectType.COMPANY, name="Acme")) == Filtered(
        "no mapping for company records"
    )
    assert not the_mapper.handles(ObjectType.COMPANY)
    assert the_mapper.handles(ObjectType.CONTACT)


# --- deals and line items -----------------------------------------------------------


def test_given_a_deal_with_line_items_when_mapped_then_each_child_becomes_a_line() -> None:
    the_mapper = mapper(deal={"fields": DEAL_FIELDS, "line_items": {"fields": LINE_FIELDS}})
    source = record(
        ObjectType.DEAL,
        [
            {"name": "Consulting", "quantity": "3", "price": "150.005", "hs_sku": "C-1"},
            {"name": "Travel", "quantity": "1.5", "price": "80"},
        ],
        dealname="Big deal",
    )

    mapped = deal_of(the_mapper.map(source))

    assert [(li.name, li.quantity, li.unit_price) for li in mapped.line_items] == [
        ("Consulting", Decimal("3"), Decimal("150.01")),
        ("Travel", Decimal("1.5"), Decimal("80.00")),
    ]
    assert mapped.line_items[0].model_fields_set == {"name", "quantity", "unit_price"}
    assert "line_items" in mapped.model_fields_set


def test_given_no_line_item_mapping_when_mapped_then_line_items_are_not_set() -> None:
    the_mapper = mapper(deal={"fields": DEAL_FIELDS})

    mapped = deal_of(the_mapper.map(record(ObjectType.DEAL, [{"name": "x"}], dealname="D")))

    assert "line_items" not in mapped.model_fields_set


def test_given_an_optional_line_field_with_a_model_default_when_empty_then_model_default() -> None:
    fields = {**LINE_FIELDS, "discount_amount": {"from": "hs_total_discount"}}
    the_mapper = mapper(deal={"fields": DEAL_FIELDS, "line_items": {"fields": fields}})
    source = record(ObjectType.DEAL, [{"name": "A", "quantity": "1", "price": "1"}], dealname="D")

    line = deal_of(the_mapper.map(source)).line_items[0]

    assert line.discount_amount == Decimal("0")
    assert "discount_amount" in line.model_fields_set


def test_given_many_broken_rules_when_mapped_then_every_violation_is_listed_with_its_path() -> None:
    fields = {**LINE_FIELDS, "tax_code": {"from": "tax", "value_map": {"": "NON"}}}
    the_mapper = mapper(deal={"fields": DEAL_FIELDS, "line_items": {"fields": fields}})
    source = record(
        ObjectType.DEAL,
        [
            {"name": "Fine", "quantity": "1", "price": "10"},
            {"name": "", "quantity": "0", "price": "-1", "tax": "77"},
            {"name": "X", "quantity": "two", "price": "1"},
        ],
        deal_currency_code="euro",
    )

    found = [(path, rule) for path, rule, _ in violations(the_mapper, source)]

    assert found == [
        ("name", "required"),
        ("line_items[1].name", "required"),
        ("line_items[1].tax_code", "value_map"),
        ("line_items[2].quantity", "decimal"),
        ("currency", "string_pattern_mismatch"),
        ("line_items[1].quantity", "greater_than"),
        ("line_items[1].unit_price", "greater_than_equal"),
    ]


def test_given_extra_lines_when_condition_holds_then_line_built_from_deal_properties() -> None:
    extra = {
        "when": [{"field": "shipping_amount", "present": True}],
        "fields": {
            "name": {"default": "Shipping"},
            "quantity": {"default": "1"},
            "unit_price": {"from": "shipping_amount", "transforms": [{"decimal": 2}]},
            "tax_code": {"default": "NON"},
        },
    }
    the_mapper = mapper(
        deal={"fields": DEAL_FIELDS, "line_items": {"fields": LINE_FIELDS}, "extra_lines": [extra]}
    )
    line = {"name": "Widget", "quantity": "2", "price": "5"}

    shipped = deal_of(
        the_mapper.map(record(ObjectType.DEAL, [line], dealname="D", shipping_amount="7.5"))
    )
    picked_up = deal_of(the_mapper.map(record(ObjectType.DEAL, [line], dealname="D")))

    assert [li.name for li in shipped.line_items] == ["Widget", "Shipping"]
    assert shipped.line_items[1] == LineItem(
        name="Shipping", quantity=Decimal("1"), unit_price=Decimal("7.50"), tax_code="NON"
    )
    assert [li.name for li in picked_up.line_items] == ["Widget"]


def test_given_an_extra_line_violation_then_path_is_its_position_among_lines() -> None:
    extra = {
        "fields": {
            "name": {"default": "Fee"},
            "quantity": {"default": "1"},
            "unit_price": {"from": "fee", "transforms": ["decimal"]},
        }
    }
    the_mapper = mapper(
        deal={"fields": DEAL_FIELDS, "line_items": {"fields": LINE_FIELDS}, "extra_lines": [extra]}
    )
    source = record(ObjectType.DEAL, [{"name": "A", "quantity": "1", "price": "1"}], dealname="D")

    assert violations(the_mapper, source) == [
        ("line_items[1].unit_price", "required", "required, but source property 'fee' is empty")
    ]


# --- what a connector fetches -------------------------------------------------------


def test_given_the_services_config_then_source_properties_are_exactly_those_used() -> None:
    the_mapper = Mapper(load_mapping(CONFIG_DIR / "services.yaml"))

    assert the_mapper.source_properties(ObjectType.DEAL) == [
        "pipeline",
        "dealstage",
        "dealname",
        "deal_currency_code",
        "closedate",
        "hs_object_id",
    ]
    assert the_mapper.source_properties(ObjectType.LINE_ITEM) == [
        "name",
        "description",
        "hs_sku",
        "quantity",
        "price",
        "hs_total_discount",
        "hs_tax_rate_group_id",
    ]
    assert "email" in the_mapper.source_properties(ObjectType.CONTACT)
    assert the_mapper.source_properties(ObjectType.INVOICE) == []


def test_given_extra_lines_then_their_deal_properties_are_fetched_with_the_deal() -> None:
    the_mapper = Mapper(load_mapping(CONFIG_DIR / "ecommerce.yaml"))

    assert "shipping_amount" in the_mapper.source_properties(ObjectType.DEAL)
    assert the_mapper.source_properties(ObjectType.COMPANY) == []


def test_given_the_services_config_when_a_won_deal_is_mapped_then_an_invoice_ready_deal() -> None:
    the_mapper = Mapper(load_mapping(CONFIG_DIR / "services.yaml"))
    source = record(
        ObjectType.DEAL,
        [{"name": "Audit", "quantity": "2", "price": "1200", "hs_total_discount": "100"}],
        pipeline="default",
        dealstage="closedwon",
        dealname="ACME audit",
        closedate="2024-03-01T03:00:00Z",
        hs_object_id="9001",
    )

    mapped = deal_of(the_mapper.map(source))

    assert mapped == Deal(
        name="ACME audit",
        status=DealStatus.WON,
        currency="USD",
        close_date=date(2024, 2, 29),
        payment_terms="Net 30",
        doc_number="HS-9001",
        memo="HubSpot deal 9001",
        line_items=[
            LineItem(
                name="Audit",
                quantity=Decimal("2"),
                unit_price=Decimal("1200.00"),
                discount_amount=Decimal("100.00"),
                tax_code="exempt",
            )
        ],
    )


@pytest.mark.parametrize("config", ["b2b.yaml", "ecommerce.yaml", "services.yaml"])
def test_given_a_preset_when_money_has_more_decimals_than_cents_then_it_is_kept_whole(
    config: str,
) -> None:
    # Rounding before multiplying turns 1000 × 0.125 into 1000 × 0.13 = 130, and a
    # dinar's third decimal is lost; the connector rounds each line amount instead.
    the_mapper = Mapper(load_mapping(CONFIG_DIR / config))
    source = record(
        ObjectType.DEAL,
        [
            {
                "name": "Audit",
                "hs_sku": "AUD",
                "quantity": "1000",
                "price": "0.125",
                "hs_total_discount": "1.125",
            },
            {"name": "Hours", "hs_sku": "HRS", "quantity": "2.33335", "price": "3"},
        ],
        pipeline="default",
        dealstage="closedwon",
        dealname="Audit",
        deal_currency_code="KWD",
        amount="132",
        shipping_amount="4.125",
        hs_object_id="9001",
    )

    lines = deal_of(the_mapper.map(source)).line_items

    amounts = [(li.quantity * li.unit_price, li.discount_amount) for li in lines]
    assert amounts[:2] == [(Decimal("125"), Decimal("1.125")), (Decimal("7.00005"), Decimal(0))]
    assert [li.unit_price for li in lines[2:]] == (
        [Decimal("4.125")] if config == "ecommerce.yaml" else []
    )


# --- properties ---------------------------------------------------------------------

OPTIONAL_PARTY_FIELDS = [
    "given_name",
    "family_name",
    "company_name",
    "email",
    "phone",
    "tax_id",
    "payment_terms",
    "billing_address.city",
]
ANY_VALUE = st.one_of(
    st.none(),
    st.text(max_size=20),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
    st.sampled_from(
        ["", " ", "0", "1", "-1", "USD", "closedwon", "default", "2024-01-15T10:00:00Z"]
    ),
)


@settings(max_examples=60)
@given(
    listed=st.sets(st.sampled_from(OPTIONAL_PARTY_FIELDS)),
    values=st.lists(ANY_VALUE, min_size=9, max_size=9),
)
def test_property_mapping_never_sets_an_unlisted_canonical_field(
    listed: set[str], values: list[str | None]
) -> None:
    the_mapper = mapper(
        contact={
            "fields": {
                "display_name": {"from": "p0", "default": "Someone"},
                **{key: {"from": f"p{i + 1}"} for i, key in enumerate(sorted(listed))},
            }
        }
    )
    source = record(ObjectType.CONTACT, **{f"p{i}": v for i, v in enumerate(values)})

    try:
        mapped = party(the_mapper.map(source))
    except RecordInvalid:
        return

    assert mapped.model_fields_set == {"kind", "display_name"} | {k.split(".")[0] for k in listed}
    if mapped.billing_address is not None:
        assert mapped.billing_address.model_fields_set == {"city"}


CONFIG_MAPPERS = {
    path.name: Mapper(load_mapping(path)) for path in sorted(CONFIG_DIR.glob("*.yaml"))
}


@settings(max_examples=40)
@given(
    config=st.sampled_from(sorted(CONFIG_MAPPERS)),
    object_type=st.sampled_from([ObjectType.CONTACT, ObjectType.COMPANY, ObjectType.DEAL]),
    data=st.data(),
)
def test_property_any_string_input_maps_or_raises_record_invalid(
    config: str, object_type: ObjectType, data: st.DataObject
) -> None:
    the_mapper = CONFIG_MAPPERS[config]

    def props(object_type: ObjectType) -> dict[str, str | None]:
        names = the_mapper.source_properties(object_type)
        return data.draw(st.fixed_dictionaries({n: ANY_VALUE for n in names}))

    lines = [props(ObjectType.LINE_ITEM) for _ in range(data.draw(st.integers(0, 3)))]
    properties = props(object_type)
    if data.draw(st.booleans()):  # past the filters, so the fields are exercised too
        properties.update(pipeline="default", dealstage="closedwon", amount="1")
    source = record(object_type, lines, **properties)

    try:
        mapped = the_mapper.map(source)
    except RecordInvalid as invalid:
        assert invalid.violations
        assert all(v.field and v.rule and v.message for v in invalid.violations)
        return

    assert isinstance(mapped, Party | Deal | Filtered)


# --- the target's own invoice fields --------------------------------------------------


def custom_field_mapper(**custom_fields: Any) -> Mapper:
    return mapper(deal={"fields": DEAL_FIELDS, "custom_fields": custom_fields})


def test_given_custom_fields_when_mapped_then_the_deal_carries_them_by_target_name() -> None:
    the_mapper = custom_field_mapper(
        **{
            "PO Number": {"from": "po_number", "transforms": ["trim", "upper"]},
            "Crew #": {"default": "A-team"},
            "Sales Rep": {"from": "owner"},  # empty: left out, not written blank
        }
    )
    mapped = deal_of(the_mapper.map(record(ObjectType.DEAL, dealname="X", po_number=" po-7 ")))

    assert mapped.custom_fields == {"PO Number": "PO-7", "Crew #": "A-team"}
    assert {"po_number", "owner"} <= set(the_mapper.source_properties(ObjectType.DEAL))
    assert the_mapper.uses_custom_fields()
    assert not mapper(deal={"fields": DEAL_FIELDS}).uses_custom_fields()


def test_given_a_required_custom_field_without_value_then_its_violation_names_it() -> None:
    the_mapper = custom_field_mapper(**{"PO Number": {"from": "po_number", "required": True}})

    assert violations(the_mapper, record(ObjectType.DEAL, dealname="X")) == [
        (
            "custom_fields.PO Number",
            "required",
            "required, but source property 'po_number' is empty",
        )
    ]


def test_given_a_custom_field_made_a_number_when_loaded_then_refused_as_not_text() -> None:
    with pytest.raises(ValueError, match=r"custom_fields\.Budget\.transforms: .* gives? a decimal"):
        custom_field_mapper(Budget={"from": "amount", "transforms": ["decimal"]})
