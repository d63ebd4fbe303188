"""HubSpot's own Python SDK (hubspot-api-client) against the HubSpot sandbox.

The SDK is generated from HubSpot's OpenAPI specs, so it sends what HubSpot
documents and parses responses into the documented models: a sandbox shape it
cannot parse, or a request it refuses, is a fidelity bug in the sandbox.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from hubspot import HubSpot
from hubspot.crm.associations.v4 import AssociationSpec
from hubspot.crm.companies import SimplePublicObjectInputForCreate as CompanyInput
from hubspot.crm.contacts import (
    ApiException,
    BatchReadInputSimplePublicObjectId,
    PublicObjectSearchRequest,
    SimplePublicObjectId,
    SimplePublicObjectInput,
)
from hubspot.crm.contacts import SimplePublicObjectInputForCreate as ContactInput
from hubspot.crm.deals import ApiException as DealApiException
from hubspot.crm.deals import SimplePublicObjectInputForCreate as DealInput
from hubspot.crm.line_items import SimplePublicObjectInputForCreate as LineItemInput
from hubspot.crm.properties import OptionInput, PropertyCreate, PropertyGroupCreate

from local.sandboxes.base import SandboxServer
from local.sandboxes.hubspot import HubSpotSandbox, HubSpotSandboxConfig

# HubSpot-defined association type ids
# (https://developers.hubspot.com/docs/api/crm/associations#association-type-id-values).
DEAL_TO_COMPANY_PRIMARY, LINE_ITEM_TO_DEAL, DEAL_TO_LINE_ITEM = 5, 20, 19


@pytest.fixture(scope="module")
def sandbox() -> Iterator[tuple[HubSpotSandbox, str]]:
    # A raised burst limit: the SDK calls in one test come in a burst.
    sandbox = HubSpotSandbox(HubSpotSandboxConfig(rate_limit=1000))
    server = SandboxServer(sandbox.app, 0).start()
    yield sandbox, server.url
    server.stop()
    sandbox.close()


@pytest.fixture
def api(sandbox: tuple[HubSpotSandbox, str]) -> HubSpot:
    hubspot, url = sandbox
    hubspot.reset()
    return HubSpot(access_token=hubspot.config.access_token, host=url)


def new_contact(api: HubSpot, email: str, **properties: str) -> str:
    created = api.crm.contacts.basic_api.create(
        ContactInput(properties={"email": email, **properties})
    )
    contact_id: str = created.id
    return contact_id


def test_create_and_read_with_properties_and_associations(api: HubSpot) -> None:
    company = api.crm.companies.basic_api.create(
        CompanyInput(properties={"name": "Acme", "domain": "acme.example"})
    )
    primary_company = {
        "to": {"id": company.id},
        "types": [
            {
                "associationCategory": "HUBSPOT_DEFINED",
                "associationTypeId": DEAL_TO_COMPANY_PRIMARY,
            }
        ],
    }
    deal = api.crm.deals.basic_api.create(
        DealInput(
            properties={"dealname": "Acme renewal", "amount": "1200.50"},
            associations=[primary_company],
        )
    )
    line_item = api.crm.line_items.basic_api.create(
        LineItemInput(properties={"name": "Seats", "quantity": "3", "price": "400.1"})
    )
    assert line_item.properties["amount"] == "1200.3"  # calculated, returned as a string

    read = api.crm.deals.basic_api.get_by_id(
        deal.id, properties=["dealname", "amount"], associations=["companies"]
    )
    assert read.properties["dealname"] == "Acme renewal"
    assert read.properties["amount"] == "1200.50"
    assert read.created_at.tzinfo is not None
    # A primary (labelled) association implies the unlabelled one: HubSpot lists both.
    assert sorted((a.id, a.type) for a in read.associations["companies"].results) == [
        (company.id, "deal_to_company"),
        (company.id, "deal_to_company_unlabeled"),
    ]


def test_get_page_pages_and_omits_paging_on_the_last_page(api: HubSpot) -> None:
    ids = [new_contact(api, f"person{n}@example.com") for n in range(3)]
    first = api.crm.contacts.basic_api.get_page(limit=2, properties=["email"])
    assert [c.id for c in first.results] == ids[:2]
    assert first.paging.next.after
    last = api.crm.contacts.basic_api.get_page(
        limit=2, after=first.paging.next.after, properties=["email"]
    )
    assert [c.properties["email"] for c in last.results] == ["person2@example.com"]
    assert last.paging is None


def test_search_with_filter_groups(api: HubSpot) -> None:
    new_contact(api, "ada@example.com", firstname="Ada", lastname="Lovelace")
    grace = new_contact(api, "grace@example.com", firstname="Grace", lastname="Hopper")
    new_contact(api, "alan@example.com", firstname="Alan", lastname="Turing")
    request = PublicObjectSearchRequest(
        filter_groups=[
            {"filters": [{"propertyName": "firstname", "operator": "EQ", "value": "Grace"}]},
            {"filters": [{"propertyName": "lastname", "operator": "EQ", "value": "Turing"}]},
        ],
        sorts=["email"],
        properties=["email", "firstname"],
        limit=10,
    )
    found = api.crm.contacts.search_api.do_search(request)
    assert found.total == 2
    assert [c.properties["email"] for c in found.results] == [
        "alan@example.com",
        "grace@example.com",
    ]
    assert found.results[1].id == grace


def test_batch_read_and_update(api: HubSpot) -> None:
    first = new_contact(api, "one@example.com", firstname="One")
    second = new_contact(api, "two@example.com", firstname="Two")
    api.crm.contacts.basic_api.update(
        second, SimplePublicObjectInput(properties={"firstname": "Deux"})
    )
    batch = api.crm.contacts.batch_api.read(
        BatchReadInputSimplePublicObjectId(
            inputs=[SimplePublicObjectId(id=first), SimplePublicObjectId(id=second)],
            properties=["firstname"],
            properties_with_history=[],
        )
    )
    assert batch.status == "COMPLETE"
    assert {c.id: c.properties["firstname"] for c in batch.results} == {
        first: "One",
        second: "Deux",
    }


def test_associations_v4_create_list_and_archive(api: HubSpot) -> None:
    deal = api.crm.deals.basic_api.create(DealInput(properties={"dealname": "Parts"}))
    line_item = api.crm.line_items.basic_api.create(
        LineItemInput(properties={"name": "Bolt", "quantity": "10", "price": "0.25"})
    )
    created = api.crm.associations.v4.basic_api.create(
        "line_items",
        line_item.id,
        "deals",
        deal.id,
        [AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=20)],
    )
    assert created.from_object_id == line_item.id
    assert created.to_object_id == deal.id

    listed = api.crm.associations.v4.basic_api.get_page("deals", deal.id, "line_items")
    assert [(r.to_object_id, [t.type_id for t in r.association_types]) for r in listed.results] == [
        (line_item.id, [DEAL_TO_LINE_ITEM])
    ]
    assert listed.paging is None

    api.crm.associations.v4.basic_api.archive("deals", deal.id, "line_items", line_item.id)
    assert api.crm.associations.v4.basic_api.get_page("deals", deal.id, "line_items").results == []


def test_duplicate_email_is_a_409_api_exception(api: HubSpot) -> None:
    existing = new_contact(api, "dup@example.com")
    with pytest.raises(ApiException) as raised:
        new_contact(api, "dup@example.com")
    assert raised.value.status == 409
    body = json.loads(raised.value.body)
    assert body["category"] == "CONFLICT"
    assert body["message"] == f"Contact already exists. Existing ID: {existing}"


def test_wrong_token_is_a_401_api_exception(sandbox: tuple[HubSpotSandbox, str]) -> None:
    _, url = sandbox
    stranger = HubSpot(access_token="pat-na1-wrong", host=url)
    with pytest.raises(ApiException) as raised:
        stranger.crm.contacts.basic_api.get_page()
    assert raised.value.status == 401
    assert json.loads(raised.value.body)["category"] == "INVALID_AUTHENTICATION"


def test_the_sdk_creates_a_group_and_an_enumeration_and_writes_it(api: HubSpot) -> None:
    properties = api.crm.properties
    group = properties.groups_api.create(
        "deals", PropertyGroupCreate(name="crmsync", label="crmsync", display_order=-1)
    )
    status = properties.core_api.create(
        "deals",
        PropertyCreate(
            name="crmsync_status",
            label="Invoice status",
            type="enumeration",
            field_type="select",
            group_name=group.name,
            options=[
                OptionInput(label="Open", value="open", hidden=False, display_order=0),
                OptionInput(label="Paid", value="paid", hidden=False, display_order=1),
            ],
        ),
    )
    deal = api.crm.deals.basic_api.create(DealInput(properties={"dealname": "Engine"}))

    updated = api.crm.deals.basic_api.update(
        deal.id, SimplePublicObjectInput(properties={status.name: "paid"})
    )

    assert [o.value for o in status.options] == ["open", "paid"]
    assert status.modification_metadata.read_only_value is False
    assert updated.properties["crmsync_status"] == "paid"
    listed = properties.core_api.get_all("deals").results
    assert {"crmsync_status", "dealname"} <= {p.name for p in listed}
    assert properties.core_api.get_by_name("deals", "crmsync_status").group_name == "crmsync"


def test_the_sdk_sees_a_refused_value_as_a_400(api: HubSpot) -> None:
    api.crm.properties.core_api.create(
        "deals",
        PropertyCreate(
            name="crmsync_balance",
            label="Balance",
            type="number",
            field_type="number",
            group_name="dealinformation",
        ),
    )
    deal = api.crm.deals.basic_api.create(DealInput(properties={"dealname": "Engine"}))

    with pytest.raises(DealApiException) as refused:
        api.crm.deals.basic_api.update(
            deal.id, SimplePublicObjectInput(properties={"crmsync_balance": "lots"})
        )

    assert refused.value.status == 400
    assert "INVALID_FLOAT" in str(refused.value.body)
