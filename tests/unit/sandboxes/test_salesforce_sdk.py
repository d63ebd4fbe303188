"""simple-salesforce, a widely used Salesforce client, against the Salesforce sandbox.

simple-salesforce knows nothing of the sandbox: it sends what Salesforce's REST API
takes and parses what it answers (records, query pages followed through
``nextRecordsUrl``, the ``Sforce-Limit-Info`` header, error arrays turned into
its exceptions). A shape it cannot handle is a fidelity bug in the sandbox.

The client always speaks ``https://<instance>``; the sandbox serves plain HTTP on
127.0.0.1, so the test session carries the client's requests to it over HTTP.
Nothing else about the requests changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from local.sandboxes.base import SandboxServer
from local.sandboxes.salesforce import CustomField, SalesforceSandbox, SalesforceSandboxConfig
from tests.fakes import OffsetClock


class _PlainHTTP(HTTPAdapter):
    """Sends the client's ``https://127.0.0.1:<port>`` requests over plain HTTP."""

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        request.url = (request.url or "").replace("https://", "http://", 1)
        return super().send(request, **kwargs)


@pytest.fixture(scope="module")
def clock() -> OffsetClock:
    return OffsetClock()


@pytest.fixture(scope="module")
def sandbox(clock: OffsetClock) -> Iterator[tuple[SalesforceSandbox, str]]:
    sandbox = SalesforceSandbox(SalesforceSandboxConfig(clock=clock))
    server = SandboxServer(sandbox.app, 0).start()
    yield sandbox, server.url
    server.stop()
    sandbox.close()


def connect(sandbox: SalesforceSandbox, url: str) -> Salesforce:
    """What an integration does: refresh the session at the token endpoint, then open
    a client on the ``instance_url`` and ``access_token`` the answer names."""
    session = requests.Session()
    session.mount(url.replace("http://", "https://"), _PlainHTTP())
    config = sandbox.config
    response = session.post(
        f"{url}/services/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "client_id": config.client_id,
            "client_secret": config.client_secret,
            "refresh_token": config.initial_refresh_token,
        },
    )
    response.raise_for_status()
    tokens = response.json()
    return Salesforce(
        instance_url=tokens["instance_url"],
        session_id=tokens["access_token"],
        session=session,
        version="62.0",
    )


@pytest.fixture
def sf(sandbox: tuple[SalesforceSandbox, str], clock: OffsetClock) -> Salesforce:
    org, url = sandbox
    clock.offset = 0.0
    org.reset()
    return connect(org, url)


def test_create_get_update_delete(sf: Salesforce) -> None:
    created = sf.Account.create({"Name": "Acme", "BillingCity": "Lyon"})
    assert created["success"] is True and created["errors"] == []
    account = sf.Account.get(created["id"])
    assert account["Name"] == "Acme" and account["attributes"]["type"] == "Account"
    assert sf.Account.update(created["id"], {"Phone": "555"}) == 204
    assert sf.Account.get(created["id"])["Phone"] == "555"
    contact = sf.Contact.create({"LastName": "Doe", "AccountId": created["id"]})
    assert sf.Contact.get(contact["id"])["AccountId"] == created["id"]
    assert sf.Account.delete(created["id"]) == 204
    with pytest.raises(SalesforceResourceNotFound):
        sf.Account.get(created["id"])
    with pytest.raises(SalesforceResourceNotFound):  # the contact went with its account
        sf.Contact.get(contact["id"])


def test_won_deal_with_products(sf: Salesforce) -> None:
    entry = sf.query("SELECT Id FROM PricebookEntry WHERE Product2.Name = 'Hours'")["records"][0]
    deal = sf.Opportunity.create(
        {"Name": "Retainer", "StageName": "Prospecting", "CloseDate": "2026-12-01"}
    )
    sf.OpportunityLineItem.create(
        {
            "OpportunityId": deal["id"],
            "PricebookEntryId": entry["Id"],
            "Quantity": 8,
            "UnitPrice": 80,
        }
    )
    sf.Opportunity.update(deal["id"], {"StageName": "Closed Won"})
    won = sf.query(
        "SELECT Name, Amount, IsWon, (SELECT Quantity, TotalPrice FROM OpportunityLineItems) "
        "FROM Opportunity WHERE IsWon = true"
    )["records"]
    assert [(w["Name"], w["Amount"], w["IsWon"]) for w in won] == [("Retainer", 640.0, True)]
    lines = won[0]["OpportunityLineItems"]["records"]
    assert [(line["Quantity"], line["TotalPrice"]) for line in lines] == [(8.0, 640.0)]


def test_query_all_follows_next_records_url(
    sf: Salesforce, sandbox: tuple[SalesforceSandbox, str]
) -> None:
    org, _ = sandbox
    for n in range(450):
        org.ui_create("Contact", {"LastName": f"Person {n:03d}"})
    soql = "SELECT Id, LastName FROM Contact ORDER BY LastName"
    batch = {"Sforce-Query-Options": "batchSize=200"}
    first = sf.query(soql, headers=batch)
    assert (first["totalSize"], first["done"], len(first["records"])) == (452, False, 200)
    everything = sf.query_all(soql, headers=batch)
    assert everything["totalSize"] == 452
    names = [r["LastName"] for r in everything["records"]]
    assert names == sorted(names) and len(set(names)) == 452
    # include_deleted goes through queryAll and sees the recycle bin.
    gone = sf.query("SELECT Id FROM Contact WHERE LastName = 'Person 000'")["records"][0]["Id"]
    sf.Contact.delete(gone)
    deleted = sf.query_all("SELECT Id FROM Contact WHERE IsDeleted = true", include_deleted=True)
    assert [r["Id"] for r in deleted["records"]] == [gone]


def test_get_deleted_lists_what_the_sdk_deleted(
    sf: Salesforce, sandbox: tuple[SalesforceSandbox, str], clock: OffsetClock
) -> None:
    org, _ = sandbox
    gone = sf.Contact.create({"LastName": "Gone"})["id"]
    sf.Contact.delete(gone)
    clock.advance(120)  # so the deletion's minute is before the end's (seconds are ignored)
    end = datetime.fromtimestamp(clock(), UTC)

    # The SDK sends start and end with +00:00 offsets, URL-encoded, to ".../deleted/".
    listed = sf.Contact.deleted(end - timedelta(days=1), end)

    stored = {r["Id"]: r for r in org.records("Contact", include_deleted=True)}[gone]
    assert listed["deletedRecords"] == [{"id": gone, "deletedDate": stored["SystemModstamp"]}]
    assert listed["latestDateCovered"] <= end.strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def test_bad_soql_is_a_malformed_request(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.query("SELECT Id FORM Account")
    assert raised.value.status == 400
    assert raised.value.content[0]["errorCode"] == "MALFORMED_QUERY"
    with pytest.raises(SalesforceMalformedRequest) as missing:
        sf.Account.create({"Phone": "1"})
    assert missing.value.content[0]["errorCode"] == "REQUIRED_FIELD_MISSING"


def test_expired_session(sf: Salesforce, clock: OffsetClock) -> None:
    assert sf.limits()["DailyApiRequests"]["Max"] == 15000
    clock.offset += 3 * 3600
    with pytest.raises(SalesforceExpiredSession) as raised:
        sf.limits()
    assert raised.value.content == [
        {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
    ]


def test_limits_and_api_usage_header(sf: Salesforce) -> None:
    limits = sf.limits()
    assert set(limits) == {"DailyApiRequests"}
    daily = limits["DailyApiRequests"]
    assert daily["Max"] - daily["Remaining"] == sf.api_usage["api-usage"].used
    assert sf.api_usage["api-usage"].total == 15000


def test_request_limit_exceeded(clock: OffsetClock) -> None:
    clock.offset = 0.0
    org = SalesforceSandbox(SalesforceSandboxConfig(clock=clock, daily_api_limit=2))
    server = SandboxServer(org.app, 0).start()
    try:
        sf = connect(org, server.url)
        sf.limits()
        sf.query("SELECT Id FROM Account")
        with pytest.raises(SalesforceRefusedRequest) as raised:
            sf.limits()
        assert raised.value.content == [
            {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
        ]
    finally:
        server.stop()
        org.close()


def test_describe(sf: Salesforce) -> None:
    names = {o["name"] for o in sf.describe()["sobjects"]}
    assert {"Account", "Opportunity", "OpportunityLineItem", "PricebookEntry"} <= names
    stage = next(f for f in sf.Opportunity.describe()["fields"] if f["name"] == "StageName")
    assert "Closed Won" in [v["value"] for v in stage["picklistValues"]]


def test_the_sdk_describes_and_updates_a_custom_field(
    sandbox: tuple[SalesforceSandbox, str], sf: Salesforce
) -> None:
    org, _ = sandbox
    org.add_custom_field(
        "Opportunity",
        CustomField("Invoice_Status__c", "Invoice status", "Picklist", values=("Open", "Paid")),
    )
    deal = sf.Opportunity.create(
        {"Name": "Engine", "StageName": "Prospecting", "CloseDate": "2026-12-01"}
    )

    assert sf.Opportunity.update(deal["id"], {"Invoice_Status__c": "Paid"}) == 204

    described = sf.Opportunity.describe()["fields"]
    status = next(f for f in described if f["name"] == "Invoice_Status__c")
    assert status["custom"] is True and status["updateable"] is True
    assert [v["value"] for v in status["picklistValues"]] == ["Open", "Paid"]
    assert sf.Opportunity.get(deal["id"])["Invoice_Status__c"] == "Paid"
    with pytest.raises(SalesforceMalformedRequest) as refused:
        sf.Opportunity.update(deal["id"], {"Invoice_Status__c": "Lost"})
    assert refused.value.content[0]["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    with pytest.raises(SalesforceMalformedRequest) as unknown:
        sf.Opportunity.update(deal["id"], {"Invoice_Number__c": "INV-1"})
    assert unknown.value.content == [
        {
            "message": "No such column 'Invoice_Number__c' on sobject of type Opportunity",
            "errorCode": "INVALID_FIELD",
        }
    ]
