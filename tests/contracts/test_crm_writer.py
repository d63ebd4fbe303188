"""The ``CrmWriter`` contract: fields written back into CRM records, run against every
CRM whose kit is a ``CrmWriterKit``, through the connector as the service builds it."""

from __future__ import annotations

from decimal import Decimal

import pytest

from shared.errors import Permanent
from shared.models import ObjectType
from shared.ports import CrmProperty, CrmSource, CrmWriter
from tests.contracts.conftest import KitPool
from tests.contracts.kits import CRM_KITS
from tests.contracts.kits.base import CrmWriterKit

WRITER_KITS = [kit for kit in CRM_KITS if issubclass(kit, CrmWriterKit)]


@pytest.fixture(params=WRITER_KITS, ids=lambda kind: kind.name)
def kit(request: pytest.FixtureRequest, kit_pool: KitPool) -> CrmWriterKit:
    kind: type[CrmWriterKit] = request.param
    return kit_pool.fresh(kind)


class Fields:
    """The fields of these tests, named as the kit's CRM spells custom fields."""

    def __init__(self, kit: CrmWriterKit) -> None:
        self.status = CrmProperty(
            name=kit.field_name("crmsync_invoice_status"),
            label="Invoice status",
            kind="enumeration",
            options=("open", "paid", "overdue"),
        )
        self.balance = CrmProperty(
            name=kit.field_name("crmsync_balance"), label="Balance", kind="number"
        )
        self.due = CrmProperty(name=kit.field_name("crmsync_due_date"), label="Due", kind="date")
        self.number = CrmProperty(
            name=kit.field_name("crmsync_invoice_number"), label="Invoice number", kind="string"
        )
        self.all = [self.status, self.balance, self.due, self.number]
        self.names = [p.name for p in self.all]


def connector(kit: CrmWriterKit, fields: Fields, *reads: ObjectType) -> tuple[CrmSource, CrmWriter]:
    """The kit's connector, reading ``fields`` on these types, as a source and a writer."""
    built = kit.writer({t: fields.names for t in reads})
    assert isinstance(built, CrmWriter), f"{kit.name}'s connector writes nothing back"
    return built, built


def given_fields(
    kit: CrmWriterKit, crm: CrmWriter, object_type: ObjectType, properties: list[CrmProperty]
) -> None:
    """The fields exist: made by the connector, or by an admin where it cannot."""
    if not kit.makes_fields:
        kit.make_fields(object_type, properties)
    crm.ensure_properties(object_type, properties)


def makes_fields(kit: CrmWriterKit) -> None:
    if not kit.makes_fields:
        pytest.skip(f"{kit.name}'s connector makes no fields: an admin does")


def test_given_missing_fields_when_ensured_twice_then_created_once(kit: CrmWriterKit) -> None:
    makes_fields(kit)
    fields = Fields(kit)
    _, crm = connector(kit, fields)

    assert sorted(crm.ensure_properties(ObjectType.DEAL, fields.all)) == sorted(fields.names)
    assert crm.ensure_properties(ObjectType.DEAL, fields.all) == []
    # Fields belong to one object type: the company's are still to be made.
    assert crm.ensure_properties(ObjectType.COMPANY, [fields.number]) == [fields.number.name]


def test_given_fields_an_admin_must_make_when_ensured_then_the_missing_are_named(
    kit: CrmWriterKit,
) -> None:
    if kit.makes_fields:
        pytest.skip(f"{kit.name}'s connector makes its own fields")
    fields = Fields(kit)
    _, crm = connector(kit, fields)
    kit.make_fields(ObjectType.DEAL, [fields.status, fields.due])

    with pytest.raises(Permanent) as missing:
        crm.ensure_properties(ObjectType.DEAL, fields.all)

    named = str(missing.value)
    assert fields.balance.name in named and fields.number.name in named
    assert fields.status.name not in named and fields.due.name not in named
    # Nothing was made: asked again, the same two are missing.
    with pytest.raises(Permanent, match=fields.balance.name):
        crm.ensure_properties(ObjectType.DEAL, [fields.balance])
    kit.make_fields(ObjectType.DEAL, [fields.balance, fields.number])
    assert crm.ensure_properties(ObjectType.DEAL, fields.all) == []
    # Fields belong to one object type: the company's are still to be made.
    with pytest.raises(Permanent, match=fields.number.name):
        crm.ensure_properties(ObjectType.COMPANY, [fields.number])


def test_given_a_lost_create_answer_when_ensured_then_the_field_counts_as_present(
    kit: CrmWriterKit,
) -> None:
    makes_fields(kit)
    fields = Fields(kit)
    source, crm = connector(kit, fields, ObjectType.COMPANY)
    company = kit.create_company(name="Lost Answer Ltd")
    assert crm.ensure_properties(ObjectType.COMPANY, [fields.number]) == [fields.number.name]
    kit.lose_next_field_create_answer()

    created = crm.ensure_properties(ObjectType.COMPANY, fields.all)

    # The retried create met the field its first attempt made: present, not an error.
    assert fields.number.name not in created and len(created) == len(fields.all) - 2
    assert crm.ensure_properties(ObjectType.COMPANY, fields.all) == []
    values: dict[str, str | None] = {fields.status.name: "open", fields.balance.name: "1"}
    crm.write_properties(ObjectType.COMPANY, company, values, idempotency_key="k")
    record = source.fetch(ObjectType.COMPANY, company)
    assert record is not None and record.properties[fields.status.name] == "open"


def test_given_written_fields_when_fetched_then_values_and_version_match(
    kit: CrmWriterKit,
) -> None:
    fields = Fields(kit)
    source, crm = connector(kit, fields, ObjectType.COMPANY)
    given_fields(kit, crm, ObjectType.COMPANY, fields.all)
    company = kit.create_company(name="Paid Up Ltd")
    values: dict[str, str | None] = {
        fields.status.name: "paid",
        fields.balance.name: "12.50",
        fields.due.name: "2026-12-31",
        fields.number.name: "INV-1001",
    }

    version = crm.write_properties(ObjectType.COMPANY, company, values, idempotency_key="k1")

    record = source.fetch(ObjectType.COMPANY, company)
    assert record is not None
    assert record.properties[fields.status.name] == "paid"
    assert Decimal(str(record.properties[fields.balance.name])) == Decimal("12.50")
    assert record.properties[fields.due.name] == "2026-12-31"
    assert record.properties[fields.number.name] == "INV-1001"
    # The version returned is the record's own: what its webhook and fetch report.
    assert version == record.version == kit.modified_ms(ObjectType.COMPANY)[company]


def test_given_a_deal_when_written_then_the_version_is_the_deals(kit: CrmWriterKit) -> None:
    fields = Fields(kit)
    source, crm = connector(kit, fields, ObjectType.DEAL)
    given_fields(kit, crm, ObjectType.DEAL, fields.all)
    contact = kit.create_contact(given_name="Ada", family_name="Byron", email="ada@example.com")
    company = kit.create_company(name="Engines Ltd")
    deal = kit.create_won_deal(name="Engine", contact_id=contact, company_id=company, lines=[])
    before = kit.modified_ms(ObjectType.DEAL)[deal.deal_id]

    version = crm.write_properties(
        ObjectType.DEAL, deal.deal_id, {fields.status.name: "overdue"}, idempotency_key="k2"
    )

    assert version == kit.modified_ms(ObjectType.DEAL)[deal.deal_id] >= before
    record = source.fetch(ObjectType.DEAL, deal.deal_id)
    assert record is not None and record.properties[fields.status.name] == "overdue"


def test_given_none_when_written_then_the_field_is_cleared(kit: CrmWriterKit) -> None:
    fields = Fields(kit)
    source, crm = connector(kit, fields, ObjectType.COMPANY)
    given_fields(kit, crm, ObjectType.COMPANY, fields.all)
    company = kit.create_company(name="Cleared Ltd")
    crm.write_properties(
        ObjectType.COMPANY,
        company,
        {fields.number.name: "INV-9", fields.balance.name: "5"},
        idempotency_key="k3",
    )

    crm.write_properties(
        ObjectType.COMPANY, company, {fields.number.name: None}, idempotency_key="k4"
    )

    record = source.fetch(ObjectType.COMPANY, company)
    assert record is not None
    assert record.properties.get(fields.number.name) is None
    assert Decimal(str(record.properties[fields.balance.name])) == Decimal(5)  # untouched


def test_given_an_unknown_field_when_written_then_refused_naming_it(kit: CrmWriterKit) -> None:
    fields = Fields(kit)
    _, crm = connector(kit, fields, ObjectType.COMPANY)
    company = kit.create_company(name="Strict Ltd")
    before = kit.modified_ms(ObjectType.COMPANY)[company]
    unknown = kit.field_name("crmsync_no_such_field")

    with pytest.raises(Permanent) as refused:
        crm.write_properties(ObjectType.COMPANY, company, {unknown: "x"}, idempotency_key="k5")

    assert unknown in str(refused.value)
    assert kit.modified_ms(ObjectType.COMPANY)[company] == before  # nothing was written
