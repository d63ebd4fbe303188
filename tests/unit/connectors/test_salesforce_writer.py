"""The Salesforce connector as a ``CrmWriter``: the requests it sends and how it reads
Salesforce's answers, against a scripted Salesforce."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from local.memory import MemoryCallBudget, MemoryLock, MemorySecretStore
from shared.connectors.http import RetryPolicy
from shared.connectors.salesforce.connector import FIELDS_HELP, SalesforceCrm, build_salesforce
from shared.errors import NotFound, Permanent
from shared.models import ObjectType
from shared.ports import CrmProperty, CrmWriter

STATUS = CrmProperty(
    name="Invoice_Status__c", label="Status", kind="enumeration", options=("Open", "Paid")
)
BALANCE = CrmProperty(name="Balance__c", label="Balance", kind="number")
DUE = CrmProperty(name="Due_Date__c", label="Due", kind="date")
DEAL_ID = "0065g0000000001AAA"
INSTANCE = "https://acme.my.salesforce.test"
V = "/services/data/v62.0"

Handler = Callable[[httpx.Request], httpx.Response]


def crm(handler: Handler, seen: list[httpx.Request]) -> SalesforceCrm:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/services/oauth2/token":
            return httpx.Response(
                200, json={"access_token": "00D!session", "instance_url": INSTANCE}
            )
        seen.append(request)
        return handler(request)

    secret = {"client_id": "id", "client_secret": "secret", "refresh_token": "refresh"}
    return build_salesforce(
        token_url="https://login.salesforce.test/services/oauth2/token",
        api_version="62.0",
        secrets=MemorySecretStore({"sf": secret}),
        secret_id="sf",
        lock=MemoryLock(),
        budget=MemoryCallBudget(),
        connection_id="c1",
        properties={},
        transport=httpx.MockTransport(answer),
        retry=RetryPolicy(max_attempts=2),
        sleep=lambda _: None,
    )


def describe(*fields: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, json={"name": "Opportunity", "fields": list(fields)})


def described(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "string", "custom": True, "updateable": True, **extra}


def picklist(name: str, values: list[str], *, restricted: bool = True) -> dict[str, Any]:
    return described(
        name,
        type="picklist",
        restrictedPicklist=restricted,
        picklistValues=[{"value": v, "label": v, "active": True} for v in values],
    )


def test_given_every_field_when_ensured_then_one_describe_and_nothing_made() -> None:
    seen: list[httpx.Request] = []
    # API names are case-insensitive: a mapping's spelling need not match Setup's.
    fields = (picklist("invoice_status__c", ["Open", "Paid", "Void"]), described("BALANCE__C"))
    writer = crm(lambda _: describe(*fields, described("Due_Date__c")), seen)

    assert isinstance(writer, CrmWriter)
    assert writer.ensure_properties(ObjectType.DEAL, [STATUS, BALANCE, DUE]) == []
    assert [(r.method, r.url.host, r.url.path) for r in seen] == [
        ("GET", "acme.my.salesforce.test", f"{V}/sobjects/Opportunity/describe")
    ]


def test_given_fields_missing_or_unusable_when_ensured_then_permanent_naming_each() -> None:
    seen: list[httpx.Request] = []
    fields = (picklist("Invoice_Status__c", ["Open"]), described("Balance__c", updateable=False))
    writer = crm(lambda _: describe(*fields), seen)

    with pytest.raises(Permanent) as refused:
        writer.ensure_properties(ObjectType.COMPANY, [STATUS, BALANCE, DUE])

    message = str(refused.value)
    assert "Account" in message and FIELDS_HELP in message
    assert "Due_Date__c is missing" in message
    assert "Balance__c is read-only" in message
    assert "Invoice_Status__c lacks the picklist values ['Paid']" in message
    assert refused.value.code == "MISSING_CUSTOM_FIELDS"
    assert [r.method for r in seen] == ["GET"]  # nothing made, nothing written


def test_given_an_unrestricted_picklist_when_ensured_then_any_option_goes() -> None:
    fields = (picklist("Invoice_Status__c", [], restricted=False),)
    writer = crm(lambda _: describe(*fields), [])

    assert writer.ensure_properties(ObjectType.DEAL, [STATUS]) == []


def test_given_values_when_written_then_patched_with_null_and_the_modstamp_read_back() -> None:
    seen: list[httpx.Request] = []

    def salesforce(request: httpx.Request) -> httpx.Response:
        if request.method == "PATCH":
            return httpx.Response(204)
        return httpx.Response(
            200,
            json={
                "attributes": {"type": "Opportunity"},
                "Id": DEAL_ID,
                "SystemModstamp": "2026-11-28T10:00:00.250+0000",
            },
        )

    writer = crm(salesforce, seen)

    version = writer.write_properties(
        ObjectType.DEAL,
        DEAL_ID,
        {"Invoice_Status__c": "Paid", "Balance__c": None},
        idempotency_key="k",
    )

    patch, read = seen
    assert (patch.method, patch.url.path) == ("PATCH", f"{V}/sobjects/Opportunity/{DEAL_ID}")
    assert json.loads(patch.content) == {"Invoice_Status__c": "Paid", "Balance__c": None}
    assert (read.method, read.url.path) == ("GET", f"{V}/sobjects/Opportunity/{DEAL_ID}")
    assert read.url.params["fields"] == "Id,SystemModstamp"
    assert version == 1_795_860_000_250


def test_given_a_refused_field_when_written_then_permanent_with_salesforces_words() -> None:
    seen: list[httpx.Request] = []
    message = "No such column 'Nope__c' on sobject of type Opportunity"
    writer = crm(
        lambda _: httpx.Response(400, json=[{"message": message, "errorCode": "INVALID_FIELD"}]),
        seen,
    )

    with pytest.raises(Permanent) as refused:
        writer.write_properties(ObjectType.DEAL, DEAL_ID, {"Nope__c": "x"}, idempotency_key="k")

    assert message in str(refused.value) and refused.value.code == "INVALID_FIELD"
    assert [r.method for r in seen] == ["PATCH"]  # no read of a version never made


def test_given_no_salesforce_id_when_written_then_not_found_without_a_call() -> None:
    seen: list[httpx.Request] = []
    writer = crm(lambda _: httpx.Response(204), seen)

    with pytest.raises(NotFound):
        writer.write_properties(ObjectType.DEAL, "../Account", {"X__c": "1"}, idempotency_key="k")

    assert seen == []
