"""The ``AccountingTarget`` contract, run by every registered accounting vendor against
its own sandbox.

Writes go through the production connector; what they did is read back from the
vendor by the kit, never from the connector's own answer alone.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal

import pytest

from shared.errors import AlreadyExists, Permanent, Retryable
from shared.models import Invoice, InvoiceLine, ObjectType, Party, PartyKind
from shared.ports import NewItem, TargetRef
from shared.sync.preview import diff
from tests.contracts.kits.base import AccountingKit, StoredLine

ZOE = Party(
    kind=PartyKind.PERSON,
    display_name="Zoë O'Hara",  # an accent and a quote: both must survive lookups
    given_name="Zoë",
    family_name="O'Hara",
    email="zoe@example.com",
    phone="+1 555 0100",
)


def _customer(kit: AccountingKit, name: str) -> str:
    party = Party(kind=PartyKind.COMPANY, display_name=name)
    return kit.target.upsert_customer(party, existing=None, idempotency_key=f"ct:{name}").id


def _invoice(
    kit: AccountingKit, customer_id: str, lines: list[tuple[str, str]], doc_number: str
) -> Invoice:
    item = kit.item_id(kit.seeded_item)
    return Invoice(
        customer_ref=customer_id,
        currency=kit.currency,
        lines=[
            InvoiceLine(
                name=kit.seeded_item,
                item_ref=item,
                quantity=Decimal(qty),
                unit_price=Decimal(price),
            )
            for qty, price in lines
        ],
        doc_number=doc_number,
    )


def _expected_lines(kit: AccountingKit, invoice: Invoice) -> list[StoredLine]:
    """docs/vendors/quickbooks.md: each line is quantity × price rounded half up at the
    currency's minor unit; the total is the sum of those."""
    quantum = Decimal(1).scaleb(-kit.currency_decimals)
    return [
        StoredLine(
            item_ref=line.item_ref,
            quantity=line.quantity,
            unit_price=line.unit_price,
            amount=(line.quantity * line.unit_price).quantize(quantum, ROUND_HALF_UP),
        )
        for line in invoice.lines
    ]


# --- customers ---------------------------------------------------------------------------


def test_given_a_new_party_when_upserted_then_the_vendor_holds_it_and_finds_it_by_email_or_name(
    accounting_kit: AccountingKit,
) -> None:
    before = accounting_kit.ids(ObjectType.CUSTOMER)

    created = accounting_kit.target.upsert_customer(ZOE, existing=None, idempotency_key="ct:zoe")

    assert accounting_kit.ids(ObjectType.CUSTOMER) == before | {created.id}
    stored = accounting_kit.customer(created.id)
    assert stored["display_name"] == ZOE.display_name
    assert (stored["given_name"], stored["family_name"]) == (ZOE.given_name, ZOE.family_name)
    assert (stored["email"], stored["phone"]) == (ZOE.email, ZOE.phone)
    target = accounting_kit.target
    assert target.find_customer(email=ZOE.email, display_name="Someone Else") == created
    assert target.find_customer(email="nobody@example.com", display_name="Nobody's Here") is None
    by_name = target.find_customer(email=None, display_name=ZOE.display_name)
    if by_name is None:
        # A target whose names are unique finds the holder on create instead (no lookup).
        by_name = target.upsert_customer(ZOE, existing=None, idempotency_key="ct:zoe-again")
        assert accounting_kit.ids(ObjectType.CUSTOMER) == before | {created.id}
    assert by_name.id == created.id


def test_given_a_customer_when_updated_with_one_field_then_the_fields_not_set_are_kept(
    accounting_kit: AccountingKit,
) -> None:
    target = accounting_kit.target
    created = target.upsert_customer(ZOE, existing=None, idempotency_key="ct:zoe")
    sparse = Party(kind=PartyKind.PERSON, display_name=ZOE.display_name, phone="+1 555 0199")

    updated = target.upsert_customer(sparse, existing=created, idempotency_key="ct:zoe:2")

    assert updated.id == created.id and updated.version != created.version
    stored = accounting_kit.customer(created.id)
    assert stored["phone"] == "+1 555 0199"
    assert (stored["email"], stored["given_name"], stored["family_name"]) == (
        ZOE.email,
        ZOE.given_name,
        ZOE.family_name,
    )


def _creator(kit: AccountingKit, object_type: ObjectType) -> Callable[[str], TargetRef]:
    """A create of one record of ``object_type``, sent with the key it is given.

    Invoices matter most here: unlike a customer's name, nothing in one need be
    unique, so only the idempotency key stands between a retry and a second one.
    """
    if object_type is ObjectType.CUSTOMER:
        return lambda key: kit.target.upsert_customer(ZOE, existing=None, idempotency_key=key)
    invoice = _invoice(kit, _customer(kit, "Harbour Cafe"), [("2", "45")], "CT-6")
    return lambda key: kit.target.upsert_invoice(invoice, existing=None, idempotency_key=key)


CREATED_TYPES = [ObjectType.CUSTOMER, ObjectType.INVOICE]


@pytest.mark.parametrize("object_type", CREATED_TYPES, ids=str)
def test_given_one_idempotency_key_sent_twice_when_creating_then_one_record_one_id(
    accounting_kit: AccountingKit, object_type: ObjectType
) -> None:
    create = _creator(accounting_kit, object_type)
    before = accounting_kit.ids(object_type)

    first = create("ct:once")
    second = create("ct:once")

    assert second.id == first.id
    assert accounting_kit.ids(object_type) == before | {first.id}


@pytest.mark.parametrize("object_type", CREATED_TYPES, ids=str)
def test_given_a_create_whose_answer_is_lost_when_retried_with_its_key_then_exactly_one_record(
    accounting_kit: AccountingKit, object_type: ObjectType
) -> None:
    create = _creator(accounting_kit, object_type)
    before = accounting_kit.ids(object_type)
    accounting_kit.lose_next_write_answer()

    ref: TargetRef | None = None
    for _ in range(2):  # the connector may retry by itself; else the engine retries the key
        try:
            ref = create("ct:lost")
            break
        except Retryable:
            continue

    assert ref is not None
    assert accounting_kit.ids(object_type) == before | {ref.id}


def test_given_a_seeded_item_when_found_by_name_then_its_id_and_an_unknown_name_finds_none(
    accounting_kit: AccountingKit,
) -> None:
    target = accounting_kit.target
    found = target.find_item(name=accounting_kit.seeded_item, sku=None)

    assert found == accounting_kit.item_id(accounting_kit.seeded_item)
    assert target.find_item(name="No Such Item 7f3a", sku=None) is None


# --- invoices ------------------------------------------------------------------------------


def test_given_an_invoice_when_upserted_then_the_vendor_holds_its_lines_and_their_rounded_total(
    accounting_kit: AccountingKit,
) -> None:
    customer_id = _customer(accounting_kit, "Harbour Cafe")
    # 1.5 × 99.61 = 149.415 and 3 × 33.335 = 100.005: both round half up, not to even.
    invoice = _invoice(accounting_kit, customer_id, [("1.5", "99.61"), ("3", "33.335")], "CT-1")
    before = accounting_kit.ids(ObjectType.INVOICE)

    ref = accounting_kit.target.upsert_invoice(invoice, existing=None, idempotency_key="ct:inv:1")

    assert accounting_kit.ids(ObjectType.INVOICE) == before | {ref.id}
    stored = accounting_kit.invoice(ref.id)
    expected = _expected_lines(accounting_kit, invoice)
    assert stored.lines == expected
    assert stored.total == sum(line.amount for line in expected)
    assert stored.doc_number == "CT-1"


def test_given_an_invoice_when_updated_then_its_lines_are_replaced_not_added(
    accounting_kit: AccountingKit,
) -> None:
    customer_id = _customer(accounting_kit, "Harbour Cafe")
    target = accounting_kit.target
    first = _invoice(accounting_kit, customer_id, [("1", "10"), ("2", "20")], "CT-2")
    created = target.upsert_invoice(first, existing=None, idempotency_key="ct:inv:2")
    held = accounting_kit.ids(ObjectType.INVOICE)
    second = _invoice(accounting_kit, customer_id, [("4", "12.5")], "CT-2")

    updated = target.upsert_invoice(second, existing=created, idempotency_key="ct:inv:2:b")

    assert updated.id == created.id
    assert accounting_kit.ids(ObjectType.INVOICE) == held
    stored = accounting_kit.invoice(created.id)
    assert stored.lines == _expected_lines(accounting_kit, second)
    assert stored.total == Decimal("50")


def test_given_an_invoice_when_found_by_its_doc_number_then_it_and_an_unknown_one_is_none(
    accounting_kit: AccountingKit,
) -> None:
    customer_id = _customer(accounting_kit, "Harbour Cafe")
    invoice = _invoice(accounting_kit, customer_id, [("1", "10")], "CT-3")
    ref = accounting_kit.target.upsert_invoice(invoice, existing=None, idempotency_key="ct:inv:3")

    assert accounting_kit.target.find_invoice("CT-3") == ref
    assert accounting_kit.target.find_invoice("CT-404") is None


def test_given_written_records_when_asked_for_their_current_version_then_the_last_written(
    accounting_kit: AccountingKit,
) -> None:
    target = accounting_kit.target
    created = target.upsert_customer(ZOE, existing=None, idempotency_key="ct:zoe")
    updated = target.upsert_customer(
        Party(kind=PartyKind.PERSON, display_name=ZOE.display_name, phone="+1 555 0111"),
        existing=created,
        idempotency_key="ct:zoe:3",
    )
    invoice = _invoice(accounting_kit, created.id, [("1", "10")], "CT-4")
    invoiced = target.upsert_invoice(invoice, existing=None, idempotency_key="ct:inv:4")

    assert target.current(ObjectType.CUSTOMER, created.id) == updated
    assert target.current(ObjectType.INVOICE, invoiced.id) == invoiced
    for object_type in (ObjectType.CUSTOMER, ObjectType.INVOICE):
        assert target.current(object_type, accounting_kit.unknown_id(object_type)) is None


def test_given_an_invoice_for_a_customer_that_does_not_exist_when_upserted_then_permanent(
    accounting_kit: AccountingKit,
) -> None:
    missing = accounting_kit.unknown_id(ObjectType.CUSTOMER)
    invoice = _invoice(accounting_kit, missing, [("1", "10")], "CT-5")
    before = accounting_kit.ids(ObjectType.INVOICE)

    with pytest.raises(Permanent) as refused:
        accounting_kit.target.upsert_invoice(invoice, existing=None, idempotency_key="ct:inv:5")

    assert not isinstance(refused.value, Retryable)
    assert refused.value.code == accounting_kit.missing_reference_code
    assert accounting_kit.ids(ObjectType.INVOICE) == before


# --- items ---------------------------------------------------------------------------------


def test_given_a_missing_item_when_created_then_one_item_whatever_the_retries_and_races(
    accounting_kit: AccountingKit,
) -> None:
    target = accounting_kit.target
    item = NewItem(
        name="Window Cleaning",
        description="Per window",
        unit_price=Decimal("12.50"),
        income_account=accounting_kit.income_account,
    )
    assert target.find_item(name=item.name, sku=None) is None

    made = target.create_item(item, idempotency_key="ct:item")
    retried = target.create_item(item, idempotency_key="ct:item")  # the answer was lost
    with pytest.raises(AlreadyExists) as raced:  # another line's create, another price
        target.create_item(
            item.model_copy(update={"unit_price": Decimal("13")}), idempotency_key="ct:item:2"
        )

    assert retried == made and raced.value.holder.id == made
    assert accounting_kit.item_id(item.name) == made  # exactly one item by that name
    assert target.find_item(name=item.name, sku=None) == made


# --- reads for a preview ---------------------------------------------------------------------


def test_given_a_written_customer_when_read_then_its_payload_differs_only_where_it_changed(
    accounting_kit: AccountingKit,
) -> None:
    target = accounting_kit.target
    created = target.upsert_customer(ZOE, existing=None, idempotency_key="ct:zoe")
    current = target.read(ObjectType.CUSTOMER, created.id)
    assert current is not None

    same = list(diff(current, target.payload(ZOE, new=False)))
    moved = ZOE.model_copy(update={"email": "zoe@elsewhere.example"})
    changed = list(diff(current, target.payload(moved, new=False)))

    assert same == []
    assert [(c.current, c.proposed) for c in changed] == [
        ("zoe@example.com", "zoe@elsewhere.example")
    ]
    unknown = accounting_kit.unknown_id(ObjectType.CUSTOMER)
    assert target.read(ObjectType.CUSTOMER, unknown) is None
