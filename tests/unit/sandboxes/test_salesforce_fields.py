"""Custom fields in the Salesforce sandbox: made as an admin makes them in Setup, listed
by the sObject Describe, and every write checked against them, over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from local.sandboxes.base import SandboxServer
from local.sandboxes.salesforce import CustomField, SalesforceSandbox, SalesforceSandboxConfig
from local.sandboxes.salesforce_fields import add_fields
from tests.fakes import OffsetClock

V = "/services/data/v62.0"
CONFIGURED = {
    "Opportunity": [
        CustomField("Invoice_Status__c", "Invoice status", "Picklist", values=("Open", "Paid")),
        CustomField("Balance__c", "Balance", "Number", length=16, decimals=2),
        CustomField("Due_Date__c", "Due date", "Date"),
        CustomField("Invoice_Number__c", "Invoice number", "Text", length=10),
        CustomField("Region__c", "Region", "Picklist", values=("North", "South"), restricted=False),
    ]
}


class Org:
    def __init__(self, clock: OffsetClock) -> None:
        self.clock = clock
        self.sandbox = SalesforceSandbox(
            SalesforceSandboxConfig(clock=clock, custom_fields=CONFIGURED)
        )
        self.server = SandboxServer(self.sandbox.app, 0).start()
        self.client = httpx.Client(base_url=self.server.url, timeout=10)
        config = self.sandbox.config
        token = self.client.post(
            "/services/oauth2/token",
            data={
                "grant_type": "refresh_token",
                "client_id": config.client_id,
                "client_secret": config.client_secret,
                "refresh_token": config.initial_refresh_token,
            },
        ).json()["access_token"]
        self.client.headers["Authorization"] = f"Bearer {token}"

    def deal(self) -> str:
        body = {"Name": "Engine", "StageName": "Prospecting", "CloseDate": "2026-12-01"}
        response = self.client.post(f"{V}/sobjects/Opportunity", json=body)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def patch(self, record_id: str, body: dict[str, Any]) -> httpx.Response:
        return self.client.patch(f"{V}/sobjects/Opportunity/{record_id}", json=body)

    def read(self, record_id: str) -> dict[str, Any]:
        response = self.client.get(f"{V}/sobjects/Opportunity/{record_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture(scope="module")
def started() -> Iterator[Org]:
    org = Org(OffsetClock())
    yield org
    org.client.close()
    org.server.stop()
    org.sandbox.close()


@pytest.fixture
def org(started: Org) -> Org:
    started.clock.offset = 0.0
    started.sandbox.reset()
    return started


def refusal(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    body = response.json()
    assert isinstance(body, list) and len(body) == 1, body
    error: dict[str, Any] = body[0]
    return error


def test_describe_lists_custom_fields_with_their_types(org: Org) -> None:
    response = org.client.get(f"{V}/sobjects/Opportunity/describe")

    fields = {f["name"]: f for f in response.json()["fields"]}
    status, balance = fields["Invoice_Status__c"], fields["Balance__c"]
    assert status["custom"] is True and status["updateable"] is True and status["nillable"]
    assert status["type"] == "picklist" and status["restrictedPicklist"] is True
    assert [v["value"] for v in status["picklistValues"]] == ["Open", "Paid"]
    assert (balance["type"], balance["precision"], balance["scale"]) == ("double", 18, 2)
    assert fields["Due_Date__c"]["type"] == "date"
    assert (fields["Invoice_Number__c"]["type"], fields["Invoice_Number__c"]["length"]) == (
        "string",
        10,
    )
    assert fields["Region__c"]["restrictedPicklist"] is False
    assert fields["Name"]["custom"] is False


def test_a_patch_answers_204_and_moves_the_modstamp(org: Org) -> None:
    deal = org.deal()
    before = org.read(deal)
    org.clock.offset = 5.0

    response = org.patch(
        deal,
        {"Invoice_Status__c": "Paid", "Balance__c": "12.5", "Due_Date__c": "2026-12-31"},
    )

    assert response.status_code == 204 and response.content == b""
    after = org.read(deal)
    assert (after["Invoice_Status__c"], after["Balance__c"]) == ("Paid", 12.5)
    assert after["Due_Date__c"] == "2026-12-31"
    assert after["SystemModstamp"] == after["LastModifiedDate"] > before["SystemModstamp"]


def test_null_clears_a_custom_field(org: Org) -> None:
    deal = org.deal()
    org.patch(deal, {"Invoice_Number__c": "INV-1", "Balance__c": 3})

    assert org.patch(deal, {"Invoice_Number__c": None}).status_code == 204

    after = org.read(deal)
    assert after["Invoice_Number__c"] is None and after["Balance__c"] == 3.0


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (
            {"Invoice_Total__c": 1},
            "INVALID_FIELD",
            "No such column 'Invoice_Total__c' on sobject of type Opportunity",
        ),
        (
            {"Balance__c": "lots"},
            "JSON_PARSER_ERROR",
            "Cannot deserialize instance of double from VALUE_STRING value lots",
        ),
        (
            {"Due_Date__c": "2026-13-01"},
            "JSON_PARSER_ERROR",
            "Cannot deserialize instance of date from VALUE_STRING value 2026-13-01",
        ),
        (
            {"Invoice_Status__c": "Lost"},
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            "Invoice status: bad value for restricted picklist field: Lost",
        ),
        (
            {"Invoice_Number__c": "INV-0123456789"},
            "STRING_TOO_LONG",
            "Invoice number: data value too large: INV-0123456789 (max length=10)",
        ),
        (
            {"Balance__c": "12345678901234567"},
            "NUMBER_OUTSIDE_VALID_RANGE",
            "Balance: value outside of valid range on numeric field: 12345678901234567.00",
        ),
    ],
)
def test_writes_that_do_not_fit_the_field_are_refused_and_change_nothing(
    org: Org, body: dict[str, Any], code: str, message: str
) -> None:
    deal = org.deal()
    before = org.read(deal)
    org.clock.offset = 5.0

    error = refusal(org.patch(deal, {"Name": "Renamed", **body}))

    assert error["errorCode"] == code and error["message"].startswith(message)
    assert org.read(deal) == before


def test_an_unrestricted_picklist_takes_a_value_it_does_not_list(org: Org) -> None:
    deal = org.deal()

    assert org.patch(deal, {"Region__c": "East"}).status_code == 204

    assert org.read(deal)["Region__c"] == "East"


def test_a_field_an_admin_adds_later_is_null_until_written_and_gone_after_reset(
    org: Org,
) -> None:
    deal = org.deal()
    org.sandbox.add_custom_field("opportunity", CustomField("Paid_On__c", "Paid on", "Date"))

    assert org.read(deal)["Paid_On__c"] is None
    assert org.patch(deal, {"Paid_On__c": "2026-11-30"}).status_code == 204
    query = org.client.get(f"{V}/query", params={"q": "SELECT Paid_On__c FROM Opportunity"})
    assert [r["Paid_On__c"] for r in query.json()["records"]] == ["2026-11-30"]

    org.sandbox.reset()

    fields = org.client.get(f"{V}/sobjects/Opportunity/describe").json()["fields"]
    names = {f["name"] for f in fields}
    assert "Paid_On__c" not in names and "Invoice_Status__c" in names


@pytest.mark.parametrize(
    ("name", "kind", "extra"),
    [
        ("Invoice_Status", "Text", {"length": 10}),  # no __c
        ("Invoice__Status__c", "Text", {"length": 10}),  # two underscores
        ("Status___c", "Text", {"length": 10}),  # ends in an underscore
        ("1Status__c", "Text", {"length": 10}),
        ("Status__c", "Text", {"length": 256}),
        ("Status__c", "Number", {"length": 17, "decimals": 2}),
        ("Status__c", "Picklist", {}),
    ],
)
def test_setup_refuses_a_field_it_would_not_make(
    name: str, kind: Any, extra: dict[str, Any]
) -> None:
    with pytest.raises(ValueError, match=name):
        CustomField(name, "Status", kind, **extra)


def test_a_field_name_taken_or_an_unknown_object_is_refused(org: Org) -> None:
    taken = CustomField("balance__c", "Balance", "Number", length=16, decimals=2)
    with pytest.raises(ValueError, match="already"):
        add_fields(org.sandbox.schema["Opportunity"], [taken])
    with pytest.raises(ValueError, match="unknown objects"):
        SalesforceSandbox(
            SalesforceSandboxConfig(custom_fields={"Invoice": [CustomField("X__c", "X", "Date")]})
        )
