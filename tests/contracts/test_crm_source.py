"""The ``CrmSource`` contract, run by every registered CRM against its own sandbox.

Records are made by a person in the CRM (the kit), read through the production
connector and mapped with the vendor's preset, as the sync engine would.
"""

from __future__ import annotations

import time
from decimal import Decimal
from functools import cache
from pathlib import Path

import pytest

from shared.errors import RateLimited
from shared.mapping import Mapper, load_mapping
from shared.models import Deal, DealStatus, ObjectType, Party, PartyKind, SourceRecord
from tests.contracts.kits.base import CrmKit, Line

LINES = [Line("Design", "1.5", "99.61"), Line("Build", "2", "1200.50")]


@cache
def _mapper(preset: Path) -> Mapper:
    return Mapper(load_mapping(preset))


@pytest.fixture
def mapper(crm_kit: CrmKit) -> Mapper:
    return _mapper(crm_kit.preset)


def _fetched(kit: CrmKit, object_type: ObjectType, record_id: str) -> SourceRecord:
    record = kit.crm.fetch(object_type, record_id)
    assert record is not None, f"{object_type} {record_id} made in {kit.name} was not found"
    assert (record.object_type, record.id) == (object_type, record_id)
    return record


def _one_of_each(kit: CrmKit) -> dict[ObjectType, str]:
    contact_id = kit.create_contact(given_name="Cleo", family_name="Park", email="cleo@example.com")
    company_id = kit.create_company(name="Parkside Ltd")
    deal = kit.create_won_deal(
        name="Kiosk", contact_id=contact_id, company_id=company_id, lines=LINES[:1]
    )
    return {
        ObjectType.CONTACT: contact_id,
        ObjectType.COMPANY: company_id,
        ObjectType.DEAL: deal.deal_id,
        ObjectType.LINE_ITEM: deal.line_ids[0],
    }


CRM_TYPES = [ObjectType.CONTACT, ObjectType.COMPANY, ObjectType.DEAL, ObjectType.LINE_ITEM]


def test_given_a_contact_made_in_the_crm_when_fetched_and_mapped_then_a_person_with_its_name(
    crm_kit: CrmKit, mapper: Mapper
) -> None:
    contact_id = crm_kit.create_contact(
        given_name="Ann", family_name="Lee", email="ann.lee@example.com"
    )

    record = _fetched(crm_kit, ObjectType.CONTACT, contact_id)
    party = mapper.map(record)

    assert record.version > 0
    assert record.version == crm_kit.modified_ms(ObjectType.CONTACT)[contact_id]
    assert isinstance(party, Party)
    assert (party.kind, party.display_name, party.email) == (
        PartyKind.PERSON,
        "Ann Lee",
        "ann.lee@example.com",
    )


def test_given_a_company_made_in_the_crm_when_fetched_and_mapped_then_a_company_party(
    crm_kit: CrmKit, mapper: Mapper
) -> None:
    company_id = crm_kit.create_company(name="Acme Rockets Ltd")

    record = _fetched(crm_kit, ObjectType.COMPANY, company_id)
    party = mapper.map(record)

    assert record.version > 0
    assert record.version == crm_kit.modified_ms(ObjectType.COMPANY)[company_id]
    assert isinstance(party, Party)
    assert (party.kind, party.display_name) == (PartyKind.COMPANY, "Acme Rockets Ltd")


@pytest.mark.parametrize("object_type", CRM_TYPES, ids=str)
def test_given_an_id_the_crm_never_issued_when_fetched_then_none(
    crm_kit: CrmKit, object_type: ObjectType
) -> None:
    assert crm_kit.crm.fetch(object_type, crm_kit.unknown_id(object_type)) is None


@pytest.mark.parametrize("object_type", CRM_TYPES, ids=str)
def test_given_a_record_deleted_in_the_crm_when_fetched_then_none(
    crm_kit: CrmKit, object_type: ObjectType
) -> None:
    record_id = _one_of_each(crm_kit)[object_type]
    _fetched(crm_kit, object_type, record_id)  # there before the deletion

    crm_kit.delete(object_type, record_id)

    assert crm_kit.crm.fetch(object_type, record_id) is None


@pytest.mark.parametrize("object_type", CRM_TYPES, ids=str)
def test_given_a_record_deleted_in_the_crm_when_deletions_are_listed_then_it_is_listed_once(
    crm_kit: CrmKit, object_type: ObjectType
) -> None:
    record_id = _one_of_each(crm_kit)[object_type]
    assert list(crm_kit.crm.deleted_since(object_type, 0)) == []

    crm_kit.delete(object_type, record_id)

    assert [d.id for d in crm_kit.crm.deleted_since(object_type, 0)] == [record_id]


def test_given_two_deletions_when_listed_since_the_second_then_the_first_is_not_listed(
    crm_kit: CrmKit,
) -> None:
    first = crm_kit.create_contact(given_name="Ida", family_name="One", email="ida@example.com")
    second = crm_kit.create_contact(given_name="Ian", family_name="Two", email="ian@example.com")
    crm_kit.delete(ObjectType.CONTACT, first)
    time.sleep(0.005)  # so the second is deleted later at the vendor's millisecond
    crm_kit.delete(ObjectType.CONTACT, second)
    deleted = {d.id: d.deleted_at_ms for d in crm_kit.crm.deleted_since(ObjectType.CONTACT, 0)}
    assert deleted[first] < deleted[second]

    listed = list(crm_kit.crm.deleted_since(ObjectType.CONTACT, deleted[second]))

    assert [(d.id, d.deleted_at_ms) for d in listed] == [(second, deleted[second])]


def test_given_a_watermark_of_now_when_deletions_are_listed_then_none_and_no_refusal(
    crm_kit: CrmKit,
) -> None:
    contact_id = crm_kit.create_contact(
        given_name="Eve", family_name="Now", email="eve@example.com"
    )
    crm_kit.delete(ObjectType.CONTACT, contact_id)
    time.sleep(0.005)  # so the deletion is older than now at the millisecond
    now_ms = time.time_ns() // 1_000_000

    assert list(crm_kit.crm.deleted_since(ObjectType.CONTACT, now_ms)) == []


def test_given_a_won_deal_with_two_lines_when_fetched_then_its_parties_and_lines_map_to_a_deal(
    crm_kit: CrmKit, mapper: Mapper
) -> None:
    contact_id = crm_kit.create_contact(given_name="Bo", family_name="Ek", email="bo@example.com")
    company_id = crm_kit.create_company(name="Ek & Sons")
    deal = crm_kit.create_won_deal(
        name="Website", contact_id=contact_id, company_id=company_id, lines=LINES
    )

    record = _fetched(crm_kit, ObjectType.DEAL, deal.deal_id)
    mapped = mapper.map(record)

    assert record.associations.get(ObjectType.CONTACT) == [contact_id]
    assert record.associations.get(ObjectType.COMPANY) == [company_id]
    assert [child.id for child in record.children.get(ObjectType.LINE_ITEM, [])] == deal.line_ids
    assert isinstance(mapped, Deal)
    assert (mapped.name, mapped.status) == ("Website", DealStatus.WON)
    assert [(line.name, line.quantity, line.unit_price) for line in mapped.line_items] == [
        (line.name, Decimal(line.quantity), Decimal(line.unit_price)) for line in LINES
    ]


def test_given_a_line_item_of_a_deal_when_fetched_then_it_names_its_deal(crm_kit: CrmKit) -> None:
    made = _one_of_each(crm_kit)

    record = _fetched(crm_kit, ObjectType.LINE_ITEM, made[ObjectType.LINE_ITEM])

    assert record.associations.get(ObjectType.DEAL) == [made[ObjectType.DEAL]]


def test_given_changes_over_several_pages_when_listed_since_t_then_each_newer_once_oldest_first(
    crm_kit: CrmKit,
) -> None:
    older = [
        crm_kit.create_contact(given_name="Old", family_name=f"N{n}", email=f"old{n}@example.com")
        for n in range(3)
    ]
    time.sleep(0.005)  # so the older ones are older than t at the vendor's millisecond
    newer = [
        crm_kit.create_contact(given_name="New", family_name=f"N{n}", email=f"new{n}@example.com")
        for n in range(2 * crm_kit.page_size + 10)
    ]
    modified = crm_kit.modified_ms(ObjectType.CONTACT)
    since = modified[newer[0]]
    assert all(modified[old] < since for old in older)

    listed = list(crm_kit.crm.changed_since(ObjectType.CONTACT, since))

    ids = [record.id for record in listed]
    assert len(ids) == len(set(ids))
    assert sorted(ids) == sorted(newer)
    assert len(listed) > crm_kit.page_size
    assert [record.version for record in listed] == sorted(modified[i] for i in ids)


def test_given_a_429_burst_when_fetching_then_waited_out_or_rate_limited_never_a_wrong_answer(
    crm_kit: CrmKit, mapper: Mapper
) -> None:
    contact_id = crm_kit.create_contact(given_name="Rae", family_name="Te", email="rae@example.com")
    burst = 2
    crm_kit.rate_limit_fetches(burst)

    record = None
    for _ in range(burst + 1):  # the engine would defer and come back; here, at once
        try:
            record = crm_kit.crm.fetch(ObjectType.CONTACT, contact_id)
            break
        except RateLimited as exc:
            assert exc.retry_after_s > 0

    assert crm_kit.pending_faults() == 0  # the burst was met, not skipped
    assert record is not None and record.id == contact_id
    party = mapper.map(record)
    assert isinstance(party, Party)
    assert (party.display_name, party.email) == ("Rae Te", "rae@example.com")
