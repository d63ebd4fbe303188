"""The Salesforce sandbox behaves like Salesforce documents it, over real HTTP."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.etree import ElementTree

import httpx
import pytest
from flask import Flask, Response, request

from local.sandboxes.base import SandboxServer
from local.sandboxes.salesforce import (
    OutboundMessageDefinition,
    SalesforceApiError,
    SalesforceSandbox,
    SalesforceSandboxConfig,
)
from tests.fakes import OffsetClock

V = "/services/data/v62.0"
DAY = 24 * 3600.0
STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000$")
SOAP = "{http://schemas.xmlsoap.org/soap/envelope/}"
OM = "{http://soap.sforce.com/2005/09/outbound}"
SF = "{urn:sobject.enterprise.soap.sforce.com}"
XSI = "{http://www.w3.org/2001/XMLSchema-instance}"
ACK = (
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>'
    '<notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound"><Ack>true</Ack>'
    "</notificationsResponse></soapenv:Body></soapenv:Envelope>"
)


@dataclass
class Org:
    sandbox: SalesforceSandbox
    server: SandboxServer
    client: httpx.Client
    clock: OffsetClock
    token: str = ""

    @property
    def config(self) -> SalesforceSandboxConfig:
        return self.sandbox.config

    def token_request(self, **form: str) -> httpx.Response:
        return self.client.post("/services/oauth2/token", data=form)

    def refresh(self) -> dict[str, Any]:
        response = self.token_request(
            grant_type="refresh_token",
            client_id=self.config.client_id,
            client_secret=self.config.client_secret,
            refresh_token=self.config.initial_refresh_token,
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        self.token = body["access_token"]
        return body

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        return self.client.request(method, V + path, headers=headers, **kwargs)

    def create(self, sobject: str, body: Any) -> httpx.Response:
        return self.api("POST", f"/sobjects/{sobject}", json=body)

    def created(self, sobject: str, body: dict[str, Any]) -> str:
        response = self.create(sobject, body)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def get(self, sobject: str, record_id: str) -> dict[str, Any]:
        response = self.api("GET", f"/sobjects/{sobject}/{record_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def patch(self, sobject: str, record_id: str, body: dict[str, Any]) -> httpx.Response:
        return self.api("PATCH", f"/sobjects/{sobject}/{record_id}", json=body)

    def query(self, soql: str, all_rows: bool = False, **kwargs: Any) -> httpx.Response:
        return self.api("GET", "/queryAll" if all_rows else "/query", params={"q": soql}, **kwargs)

    def rows(self, soql: str, all_rows: bool = False) -> list[dict[str, Any]]:
        response = self.query(soql, all_rows)
        assert response.status_code == 200, response.text
        records: list[dict[str, Any]] = response.json()["records"]
        return records

    def entry(self, product: str) -> str:
        rows = self.rows(bind("SELECT Id FROM PricebookEntry WHERE Product2.Name = :p", p=product))
        return str(rows[0]["Id"])


def bind(soql: str, **values: str) -> str:
    """SOQL with each ``:name`` replaced by its value as a quoted, escaped literal."""
    for name, value in values.items():
        escaped = value.replace("\\", "\\\\").replace("'", "\\'")
        soql = soql.replace(f":{name}", "'" + escaped + "'")
    return soql


def parse_xml(body: bytes) -> ElementTree.Element:
    return ElementTree.fromstring(body)  # noqa: S314 - the sandbox's own output


def start_org(clock: OffsetClock, **overrides: Any) -> Org:
    sandbox = SalesforceSandbox(SalesforceSandboxConfig(clock=clock, **overrides))
    server = SandboxServer(sandbox.app, 0).start()
    return Org(sandbox, server, httpx.Client(base_url=server.url, timeout=10), clock)


def stop_org(org: Org) -> None:
    org.client.close()
    org.server.stop()
    org.sandbox.close()


@pytest.fixture(scope="module")
def clock() -> OffsetClock:
    return OffsetClock()


@pytest.fixture(scope="module")
def shared(clock: OffsetClock) -> Iterator[Org]:
    """One server for the module; tests that change the config start their own."""
    org = start_org(clock)
    yield org
    stop_org(org)


@pytest.fixture
def org(shared: Org, clock: OffsetClock) -> Org:
    clock.offset = 0.0
    shared.sandbox.reset()
    shared.refresh()
    return shared


@pytest.fixture
def make_org(clock: OffsetClock) -> Iterator[Callable[..., Org]]:
    started: list[Org] = []

    def make(**overrides: Any) -> Org:
        clock.offset = 0.0
        started.append(start_org(clock, **overrides))
        started[-1].refresh()
        return started[-1]

    yield make
    for org in started:
        stop_org(org)


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert isinstance(body, list) and len(body) == 1, body
    error: dict[str, Any] = body[0]
    return error


def opportunity(org: Org, **fields: Any) -> str:
    body = {"Name": "Deal", "StageName": "Prospecting", "CloseDate": "2026-12-01", **fields}
    return org.created("Opportunity", body)


def get_deleted(org: Org, sobject: str, **dates: datetime | str) -> httpx.Response:
    """sObject Get Deleted; a datetime is sent as ``YYYY-MM-DDThh:mm:ss+00:00``."""
    params = {
        name: value if isinstance(value, str) else value.strftime("%Y-%m-%dT%H:%M:%S+00:00")
        for name, value in dates.items()
    }
    return org.api("GET", f"/sobjects/{sobject}/deleted/", params=params)


# --- OAuth -------------------------------------------------------------------------------


def test_refresh_grant_answers_documented_fields_and_keeps_the_refresh_token(org: Org) -> None:
    body = org.refresh()
    assert set(body) == {
        "access_token",
        "signature",
        "scope",
        "instance_url",
        "id",
        "token_type",
        "issued_at",
    }
    assert body["token_type"] == "Bearer"
    assert body["instance_url"] == org.server.url
    assert body["access_token"].startswith(org.sandbox.org_id[:15] + "!")
    expected = hmac.new(
        org.config.client_secret.encode(),
        (body["id"] + body["issued_at"]).encode(),
        hashlib.sha256,
    ).digest()
    assert base64.b64decode(body["signature"]) == expected
    assert "refresh_token" not in body  # not rotated by default
    org.refresh()  # the same refresh token keeps working
    assert org.api("GET", "/limits").status_code == 200


def test_refresh_tokens_rotate_when_configured(clock: OffsetClock) -> None:
    clock.offset = 0.0
    org = start_org(clock, rotate_refresh_tokens=True)
    try:
        form = {
            "grant_type": "refresh_token",
            "client_id": org.config.client_id,
            "client_secret": org.config.client_secret,
        }
        first = org.token_request(**form, refresh_token=org.config.initial_refresh_token).json()
        assert first["refresh_token"] != org.config.initial_refresh_token
        second = org.token_request(**form, refresh_token=first["refresh_token"])
        assert second.status_code == 200
        again = org.token_request(**form, refresh_token=first["refresh_token"])
        assert again.json()["error"] == "invalid_grant"
    finally:
        stop_org(org)


def test_token_endpoint_refusals(org: Org) -> None:
    config = org.config
    good = {
        "grant_type": "refresh_token",
        "client_id": config.client_id,
        "client_secret": config.client_secret,
        "refresh_token": config.initial_refresh_token,
    }
    cases = [
        ({"refresh_token": "5Aep861nope"}, "invalid_grant", "expired access/refresh token"),
        ({"client_id": "3MVGwrong"}, "invalid_client_id", "client identifier invalid"),
        ({"client_secret": "wrong"}, "invalid_client", "invalid client credentials"),
        ({"grant_type": "password"}, "unsupported_grant_type", "grant type not supported"),
    ]
    for change, error, description in cases:
        response = org.token_request(**{**good, **change})
        assert response.status_code == 400
        assert response.json() == {"error": error, "error_description": description}
    no_secret = {k: v for k, v in good.items() if k != "client_secret"}
    assert org.token_request(**no_secret).json()["error"] == "invalid_client"


def test_refresh_token_lifetime_when_a_policy_sets_one(
    make_org: Callable[..., Org], clock: OffsetClock
) -> None:
    org = make_org(refresh_token_ttl_s=3600.0)
    clock.advance(3600)
    response = org.token_request(
        grant_type="refresh_token",
        client_id=org.config.client_id,
        client_secret=org.config.client_secret,
        refresh_token=org.config.initial_refresh_token,
    )
    assert response.json()["error"] == "invalid_grant"


def authorize(org: Org, **params: str) -> httpx.Response:
    base = {
        "response_type": "code",
        "client_id": org.config.client_id,
        "redirect_uri": org.config.redirect_uris[0],
    }
    return org.client.get("/services/oauth2/authorize", params={**base, **params})


def challenge_of(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def test_web_server_flow_with_pkce(org: Org) -> None:
    verifier = "a-verifier-of-enough-length-0123456789abcdefghijk"
    response = authorize(org, code_challenge=challenge_of(verifier), state="xyz")
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == org.config.redirect_uris[0]
    params = parse_qs(location.query)
    assert params["state"] == ["xyz"]
    code = params["code"][0]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": org.config.client_id,
        "client_secret": org.config.client_secret,
        "redirect_uri": org.config.redirect_uris[0],
    }
    wrong = org.token_request(**form, code_verifier="not-the-verifier")
    assert wrong.json() == {"error": "invalid_grant", "error_description": "invalid code verifier"}
    # A refused exchange uses the code up, as a real one would be.
    assert org.token_request(**form, code_verifier=verifier).json()["error"] == "invalid_grant"

    code = parse_qs(
        urlsplit(authorize(org, code_challenge=challenge_of(verifier)).headers["Location"]).query
    )["code"][0]
    good = org.token_request(**{**form, "code": code}, code_verifier=verifier)
    assert good.status_code == 200, good.text
    tokens = good.json()
    assert tokens["refresh_token"] and tokens["token_type"] == "Bearer"
    again = org.token_request(**{**form, "code": code}, code_verifier=verifier)
    assert again.json() == {
        "error": "invalid_grant",
        "error_description": "invalid authorization code",
    }
    refreshed = org.token_request(
        grant_type="refresh_token",
        client_id=org.config.client_id,
        client_secret=org.config.client_secret,
        refresh_token=tokens["refresh_token"],
    )
    assert refreshed.status_code == 200


def test_authorize_refusals(org: Org) -> None:
    unknown = authorize(org, client_id="3MVGnope")
    assert unknown.status_code == 400
    assert "error=invalid_client_id" in unknown.text
    elsewhere = authorize(org, redirect_uri="https://evil.example/cb")
    assert elsewhere.status_code == 400
    assert "error=redirect_uri_mismatch" in elsewhere.text
    token_flow = authorize(org, response_type="token", state="s")
    assert parse_qs(urlsplit(token_flow.headers["Location"]).query) == {
        "error": ["unsupported_response_type"],
        "error_description": ["response type not supported"],
        "state": ["s"],
    }
    scope = authorize(org, scope="api superpowers")
    assert parse_qs(urlsplit(scope.headers["Location"]).query)["error"] == ["invalid_scope"]


def test_code_exchange_refusals(org: Org, clock: OffsetClock) -> None:
    minted = org.client.post("/_sandbox/oauth/code", json={}).json()["code"]
    form = {
        "grant_type": "authorization_code",
        "code": minted,
        "client_id": org.config.client_id,
        "client_secret": org.config.client_secret,
        "redirect_uri": "http://localhost:9999/other",
    }
    assert org.token_request(**form).json() == {
        "error": "redirect_uri_mismatch",
        "error_description": "redirect_uri must match configuration",
    }
    late = org.sandbox.mint_authorization_code()
    clock.advance(15 * 60)
    response = org.token_request(
        **{**form, "code": late, "redirect_uri": org.config.redirect_uris[0]}
    )
    assert response.json()["error_description"] == "expired authorization code"
    # Without a code challenge, sending a verifier is refused too.
    plain = org.sandbox.mint_authorization_code()
    response = org.token_request(
        **{**form, "code": plain, "redirect_uri": org.config.redirect_uris[0]}, code_verifier="x"
    )
    assert response.json()["error_description"] == "invalid code verifier"


def test_pkce_can_be_required(make_org: Callable[..., Org]) -> None:
    org = make_org(require_pkce=True)
    response = authorize(org)
    assert parse_qs(urlsplit(response.headers["Location"]).query)["error"] == ["invalid_request"]


def test_dead_or_missing_session_is_401_invalid_session_id(org: Org, clock: OffsetClock) -> None:
    expected = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
    for headers in ({}, {"Authorization": "Bearer 00Dnope!AQxyz"}, {"Authorization": "Basic x"}):
        response = org.client.get(f"{V}/limits", headers=headers)
        assert response.status_code == 401
        assert response.json() == expected
        assert response.headers["WWW-Authenticate"] == "Token"
    # "OAuth" is accepted as the scheme as well as "Bearer".
    oauth = org.client.get(f"{V}/limits", headers={"Authorization": f"OAuth {org.token}"})
    assert oauth.status_code == 200
    # The session timeout counts from the last use.
    clock.advance(org.config.session_timeout_s - 60)
    assert org.api("GET", "/limits").status_code == 200
    clock.advance(org.config.session_timeout_s - 60)
    assert org.api("GET", "/limits").status_code == 200
    clock.advance(org.config.session_timeout_s)
    response = org.api("GET", "/limits")
    assert response.status_code == 401
    assert response.json() == expected


# --- REST API ----------------------------------------------------------------------------


def test_versions_without_auth_and_unknown_versions(org: Org) -> None:
    versions = org.client.get("/services/data/").json()
    assert [v["version"] for v in versions] == ["58.0", "59.0", "60.0", "61.0", "62.0"]
    assert versions[-1] == {"label": "Winter '25", "url": "/services/data/v62.0", "version": "62.0"}
    assert org.sandbox.api_usage()[0] == 0  # the Versions resource does not count
    for version in ("v57.0", "v63.0", "vX"):
        response = org.client.get(
            f"/services/data/{version}/limits", headers={"Authorization": f"Bearer {org.token}"}
        )
        assert response.status_code == 404
        assert error_of(response) == {
            "message": "The requested resource does not exist",
            "errorCode": "NOT_FOUND",
        }
    resources = org.api("GET", "/").json()
    assert resources["query"] == f"{V}/query"


def test_create_read_update_delete(org: Org, clock: OffsetClock) -> None:
    response = org.create("Account", {"Name": "Acme", "BillingCity": "Lyon", "Phone": "123"})
    assert response.status_code == 201
    body = response.json()
    assert body["success"] is True and body["errors"] == []
    account_id = body["id"]
    assert len(account_id) == 18 and account_id.startswith("001")
    record = org.get("Account", account_id)
    assert record["attributes"] == {"type": "Account", "url": f"{V}/sobjects/Account/{account_id}"}
    assert record["Name"] == "Acme" and record["BillingCity"] == "Lyon"
    assert record["IsDeleted"] is False and record["AccountNumber"] is None
    for stamp in ("CreatedDate", "LastModifiedDate", "SystemModstamp"):
        assert STAMP.match(record[stamp]), record[stamp]
    assert record["CreatedById"] == record["LastModifiedById"] == org.sandbox.integration_user_id

    clock.advance(60)
    assert org.patch("Account", account_id, {"Phone": "456"}).status_code == 204
    updated = org.get("Account", account_id)
    assert updated["Phone"] == "456"
    assert updated["CreatedDate"] == record["CreatedDate"]
    assert updated["SystemModstamp"] > record["SystemModstamp"]
    assert updated["LastModifiedDate"] > record["LastModifiedDate"]

    assert org.api("DELETE", f"/sobjects/Account/{account_id}").status_code == 204
    gone = org.api("GET", f"/sobjects/Account/{account_id}")
    assert gone.status_code == 404 and error_of(gone)["errorCode"] == "NOT_FOUND"
    for method, body_ in (("PATCH", {"Phone": "1"}), ("DELETE", None)):
        again = org.api(method, f"/sobjects/Account/{account_id}", json=body_)
        assert again.status_code == 404
        assert error_of(again) == {
            "message": "entity is deleted",
            "errorCode": "ENTITY_IS_DELETED",
            "fields": [],
        }
    soql = bind("SELECT Id, IsDeleted FROM Account WHERE Id = :id", id=account_id)
    assert org.rows(soql) == []
    assert org.rows(soql, all_rows=True)[0]["IsDeleted"] is True


def test_read_with_fields_and_id_forms(org: Org) -> None:
    account_id = org.created("Account", {"Name": "Acme", "Phone": "1"})
    record = org.api(
        "GET", f"/sobjects/Account/{account_id}", params={"fields": "name,Phone"}
    ).json()
    assert list(record) == ["attributes", "Name", "Phone", "Id"]
    # The 15-character id and an 18-character one in another case name the same record.
    assert org.get("Account", account_id[:15])["Id"] == account_id
    assert org.get("Account", account_id.lower())["Id"] == account_id
    bad = org.api("GET", f"/sobjects/Account/{account_id}", params={"fields": "Nope"})
    assert bad.status_code == 400 and error_of(bad)["errorCode"] == "INVALID_FIELD"
    malformed = org.api("GET", "/sobjects/Account/xyz")
    assert malformed.status_code == 404
    assert error_of(malformed) == {
        "message": "Provided external ID field does not exist or is not accessible: xyz",
        "errorCode": "NOT_FOUND",
    }
    assert org.api("GET", "/sobjects/Account/001000000000000AAA").status_code == 404
    assert org.api("GET", "/sobjects/Invoice__c").status_code == 404


def test_create_refusals_store_nothing(org: Org) -> None:
    contact_id = org.rows("SELECT Id FROM Contact LIMIT 1")[0]["Id"]
    before = len(org.sandbox.records("Account"))
    cases: list[tuple[dict[str, Any], int, dict[str, Any]]] = [
        (
            {"Phone": "1"},
            400,
            {
                "message": "Required fields are missing: [Name]",
                "errorCode": "REQUIRED_FIELD_MISSING",
                "fields": ["Name"],
            },
        ),
        (
            {"Name": "A", "Colour__c": "red"},
            400,
            {
                "message": "No such column 'Colour__c' on sobject of type Account",
                "errorCode": "INVALID_FIELD",
            },
        ),
        (
            {"Name": "A", "CreatedDate": "2020-01-01T00:00:00Z"},
            400,
            {"errorCode": "INVALID_FIELD_FOR_INSERT_UPDATE", "fields": ["CreatedDate"]},
        ),
        ({"Name": "x" * 256}, 400, {"errorCode": "STRING_TOO_LONG", "fields": ["Name"]}),
        (
            {"Name": "A", "OwnerId": "not-an-id"},
            400,
            {
                "message": "Owner ID: id value of incorrect type: not-an-id",
                "errorCode": "MALFORMED_ID",
                "fields": ["OwnerId"],
            },
        ),
        ({"Name": "A", "OwnerId": contact_id}, 400, {"errorCode": "MALFORMED_ID"}),
        (
            {"Name": "A", "OwnerId": "005000000000099AAA"},
            400,
            {"message": "invalid cross reference id", "errorCode": "INVALID_CROSS_REFERENCE_KEY"},
        ),
        ({"Name": ["A"]}, 400, {"errorCode": "JSON_PARSER_ERROR"}),
    ]
    for body, status, expected in cases:
        response = org.create("Account", body)
        assert response.status_code == status, body
        error = error_of(response)
        assert {k: error.get(k) for k in expected} == expected, error
    assert org.create("Contact", {"LastName": "X", "Email": "nope"}).json()[0]["errorCode"] == (
        "INVALID_EMAIL_ADDRESS"
    )
    not_json = org.api(
        "POST", "/sobjects/Account", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert not_json.status_code == 400 and error_of(not_json)["errorCode"] == "JSON_PARSER_ERROR"
    assert org.create("Account", [{"Name": "A"}]).json()[0]["errorCode"] == "JSON_PARSER_ERROR"
    assert len(org.sandbox.records("Account")) == before
    # A lookup to a record in the recycle bin is refused as deleted.
    account_id = org.created("Account", {"Name": "Gone"})
    org.api("DELETE", f"/sobjects/Account/{account_id}")
    deleted = org.create("Contact", {"LastName": "Y", "AccountId": account_id})
    assert error_of(deleted)["errorCode"] == "ENTITY_IS_DELETED"


def test_methods_the_resource_does_not_take(org: Org) -> None:
    account_id = org.created("Account", {"Name": "A"})
    put = org.api("PUT", f"/sobjects/Account/{account_id}", json={})
    assert put.status_code == 405 and error_of(put)["errorCode"] == "METHOD_NOT_ALLOWED"
    stage = org.create("OpportunityStage", {"MasterLabel": "Mine"})
    assert stage.status_code == 405
    assert error_of(stage)["message"] == "HTTP Method 'POST' not allowed. Allowed are GET,HEAD"


def test_opportunity_takes_closed_and_won_from_its_stage(org: Org) -> None:
    won_id = opportunity(org, StageName="Closed Won", Amount=1000)
    won = org.get("Opportunity", won_id)
    assert (won["IsWon"], won["IsClosed"], won["Probability"]) == (True, True, 100.0)
    assert won["ForecastCategoryName"] == "Closed" and won["ExpectedRevenue"] == 1000.0
    org.patch("Opportunity", won_id, {"StageName": "Closed Lost"})
    lost = org.get("Opportunity", won_id)
    assert (lost["IsWon"], lost["IsClosed"], lost["Probability"]) == (False, True, 0.0)
    org.patch("Opportunity", won_id, {"StageName": "Negotiation/Review", "Probability": 95})
    assert org.get("Opportunity", won_id)["Probability"] == 95.0
    stages = org.rows("SELECT MasterLabel, IsWon FROM OpportunityStage WHERE IsWon = true")
    assert [s["MasterLabel"] for s in stages] == ["Closed Won"]
    bad = org.create("Opportunity", {"Name": "D", "StageName": "Won", "CloseDate": "2026-01-01"})
    assert error_of(bad) == {
        "message": "Stage: bad value for restricted picklist field: Won",
        "errorCode": "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
        "fields": ["StageName"],
    }
    missing = org.create("Opportunity", {"Name": "D"})
    assert error_of(missing)["fields"] == ["StageName", "CloseDate"]
    read_only = org.patch("Opportunity", won_id, {"IsWon": True})
    assert error_of(read_only)["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"


def test_line_items_price_and_roll_up_into_the_opportunity(org: Org, clock: OffsetClock) -> None:
    opp_id = opportunity(org)
    assert org.get("Opportunity", opp_id)["Pricebook2Id"] is None
    services, hours = org.entry("Services"), org.entry("Hours")
    stamp = org.get("Opportunity", opp_id)["SystemModstamp"]
    clock.advance(5)
    first = org.created(
        "OpportunityLineItem",
        {
            "OpportunityId": opp_id,
            "PricebookEntryId": services,
            "Quantity": 3,
            "UnitPrice": 120,
            "Discount": 10,
        },
    )
    line = org.get("OpportunityLineItem", first)
    assert line["Subtotal"] == 360.0 and line["TotalPrice"] == 324.0
    assert line["ListPrice"] == 100.0 and line["Name"] == "Deal Services"
    assert (
        line["Product2Id"] == org.rows("SELECT Id FROM Product2 WHERE Name = 'Services'")[0]["Id"]
    )
    deal = org.get("Opportunity", opp_id)
    standard = org.rows("SELECT Id FROM Pricebook2 WHERE IsStandard = true")[0]["Id"]
    assert deal["Pricebook2Id"] == standard  # the first product sets the price book
    assert deal["Amount"] == 324.0 and deal["HasOpportunityLineItem"] is True
    assert deal["SystemModstamp"] > stamp

    second = org.created(
        "OpportunityLineItem",
        {"OpportunityId": opp_id, "PricebookEntryId": hours, "Quantity": 2, "TotalPrice": 150},
    )
    assert org.get("OpportunityLineItem", second)["UnitPrice"] == 75.0
    assert org.get("Opportunity", opp_id)["Amount"] == 474.0
    # A written Amount is ignored while the opportunity has products; the rest applies.
    assert org.patch("Opportunity", opp_id, {"Amount": 1, "Name": "Bigger deal"}).status_code == 204
    deal = org.get("Opportunity", opp_id)
    assert (deal["Amount"], deal["Name"]) == (474.0, "Bigger deal")
    # Quantity changes keep the unit price and move the total.
    org.patch("OpportunityLineItem", first, {"Quantity": 1})
    assert org.get("OpportunityLineItem", first)["TotalPrice"] == 108.0
    assert org.get("Opportunity", opp_id)["Amount"] == 258.0
    org.api("DELETE", f"/sobjects/OpportunityLineItem/{second}")
    assert org.get("Opportunity", opp_id)["Amount"] == 108.0


def test_line_item_refusals(org: Org) -> None:
    opp_id = opportunity(org)
    services = org.entry("Services")
    base = {"OpportunityId": opp_id, "PricebookEntryId": services, "Quantity": 1}
    both = org.create("OpportunityLineItem", {**base, "UnitPrice": 1, "TotalPrice": 1})
    assert error_of(both)["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
    assert "must specify either UnitPrice or TotalPrice" in error_of(both)["message"]
    neither = org.create("OpportunityLineItem", base)
    assert error_of(neither)["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
    product_only = org.create(
        "OpportunityLineItem",
        {
            "OpportunityId": opp_id,
            "Product2Id": org.rows("SELECT Id FROM Product2 LIMIT 1")[0]["Id"],
            "Quantity": 1,
            "UnitPrice": 1,
        },
    )
    assert error_of(product_only) == {
        "message": "field integrity exception: PricebookEntryId, unknown (versions 3.0 and "
        "higher must specify pricebook entry id; others must specify product id)",
        "errorCode": "FIELD_INTEGRITY_EXCEPTION",
        "fields": ["PricebookEntryId", "unknown"],
    }
    zero = org.create("OpportunityLineItem", {**base, "Quantity": 0, "UnitPrice": 1})
    assert error_of(zero)["fields"] == ["Quantity"]
    discount = org.create("OpportunityLineItem", {**base, "UnitPrice": 1, "Discount": 150})
    assert error_of(discount)["errorCode"] == "NUMBER_OUTSIDE_VALID_RANGE"

    line_id = org.created("OpportunityLineItem", {**base, "UnitPrice": 10})
    change_both = org.patch("OpportunityLineItem", line_id, {"UnitPrice": 5, "TotalPrice": 5})
    assert error_of(change_both) == {
        "message": "Cannot change both 'UnitPrice' and 'TotalPrice' in update call",
        "errorCode": "INVALID_FIELD",
        "fields": ["UnitPrice"],
    }
    ambiguous = org.patch("OpportunityLineItem", line_id, {"Quantity": 2, "Discount": 5})
    assert error_of(ambiguous)["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
    moved = org.patch("OpportunityLineItem", line_id, {"OpportunityId": opp_id})
    assert error_of(moved)["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"

    # An entry from another price book than the opportunity's, and an inactive entry.
    book = org.created("Pricebook2", {"Name": "Partners", "IsActive": True})
    product = org.rows("SELECT Id FROM Product2 WHERE Name = 'Services'")[0]["Id"]
    partner = org.created(
        "PricebookEntry",
        {"Pricebook2Id": book, "Product2Id": product, "UnitPrice": 90, "IsActive": True},
    )
    other_book = org.create(
        "OpportunityLineItem", {**base, "PricebookEntryId": partner, "UnitPrice": 1}
    )
    assert error_of(other_book)["message"] == (
        "field integrity exception: PricebookEntryId (pricebook entry is in a different "
        "pricebook than the one assigned to the opportunity)"
    )
    second_opp = opportunity(org)
    org.patch("PricebookEntry", partner, {"IsActive": False})
    inactive = org.create(
        "OpportunityLineItem",
        {"OpportunityId": second_opp, "PricebookEntryId": partner, "Quantity": 1, "UnitPrice": 1},
    )
    assert error_of(inactive)["message"] == (
        "field integrity exception: PricebookEntryId (pricebook entry is inactive)"
    )
    switch = org.patch("Opportunity", opp_id, {"Pricebook2Id": book})
    assert error_of(switch)["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"


def test_price_book_entries(org: Org) -> None:
    product = org.created("Product2", {"Name": "Training", "ProductCode": "TRN"})
    assert org.get("Product2", product)["IsActive"] is False  # Product2.IsActive defaults to false
    book = org.created("Pricebook2", {"Name": "Partners", "IsActive": True})
    standard = org.rows("SELECT Id FROM Pricebook2 WHERE IsStandard = true")[0]["Id"]
    custom_first = org.create(
        "PricebookEntry", {"Pricebook2Id": book, "Product2Id": product, "UnitPrice": 50}
    )
    assert error_of(custom_first) == {
        "message": "Before creating a custom price, create a standard price.",
        "errorCode": "STANDARD_PRICE_NOT_DEFINED",
        "fields": [],
    }
    std = org.created(
        "PricebookEntry", {"Pricebook2Id": standard, "Product2Id": product, "UnitPrice": 60}
    )
    assert org.get("PricebookEntry", std)["IsActive"] is False
    assert org.get("PricebookEntry", std)["Name"] == "Training"
    again = org.create(
        "PricebookEntry", {"Pricebook2Id": standard, "Product2Id": product, "UnitPrice": 61}
    )
    assert error_of(again)["errorCode"] == "DUPLICATE_VALUE"
    both = org.create(
        "PricebookEntry",
        {"Pricebook2Id": book, "Product2Id": product, "UseStandardPrice": True, "UnitPrice": 5},
    )
    assert error_of(both) == {
        "message": "field integrity exception",
        "errorCode": "FIELD_INTEGRITY_EXCEPTION",
        "fields": [],
    }
    follows = org.created(
        "PricebookEntry", {"Pricebook2Id": book, "Product2Id": product, "UseStandardPrice": True}
    )
    assert org.get("PricebookEntry", follows)["UnitPrice"] == 60.0
    org.patch("PricebookEntry", std, {"UnitPrice": 65})
    assert org.get("PricebookEntry", follows)["UnitPrice"] == 65.0
    fixed = org.patch("PricebookEntry", std, {"Product2Id": product})
    assert error_of(fixed)["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    in_use = org.api("DELETE", f"/sobjects/PricebookEntry/{std}")
    assert error_of(in_use)["errorCode"] == "DELETE_FAILED"  # custom prices still use it
    standard_book = org.api("DELETE", f"/sobjects/Pricebook2/{standard}")
    assert error_of(standard_book)["errorCode"] == "DELETE_FAILED"


def test_one_primary_contact_role(org: Org) -> None:
    opp_id = opportunity(org)
    contacts = [c["Id"] for c in org.rows("SELECT Id FROM Contact ORDER BY LastName")]
    first = org.created(
        "OpportunityContactRole",
        {
            "OpportunityId": opp_id,
            "ContactId": contacts[0],
            "IsPrimary": True,
            "Role": "Decision Maker",
        },
    )
    second = org.created(
        "OpportunityContactRole",
        {"OpportunityId": opp_id, "ContactId": contacts[1], "IsPrimary": True},
    )
    roles = org.rows(
        bind(
            "SELECT Id, IsPrimary FROM OpportunityContactRole WHERE OpportunityId = :opp",
            opp=opp_id,
        )
    )
    assert {r["Id"]: r["IsPrimary"] for r in roles} == {first: False, second: True}
    missing = org.create("OpportunityContactRole", {"OpportunityId": opp_id})
    assert error_of(missing)["fields"] == ["ContactId"]


def test_deleting_cascades_and_refuses_what_is_in_use(org: Org) -> None:
    account_id = org.created("Account", {"Name": "Parent"})
    contact_id = org.created("Contact", {"LastName": "Kid", "AccountId": account_id})
    opp_id = opportunity(org, AccountId=account_id)
    services = org.entry("Services")
    line_id = org.created(
        "OpportunityLineItem",
        {"OpportunityId": opp_id, "PricebookEntryId": services, "Quantity": 1, "UnitPrice": 1},
    )
    product = org.rows("SELECT Id FROM Product2 WHERE Name = 'Services'")[0]["Id"]
    refused = org.api("DELETE", f"/sobjects/Product2/{product}")
    assert refused.status_code == 400 and error_of(refused)["errorCode"] == "DELETE_FAILED"
    assert org.api("DELETE", f"/sobjects/Account/{account_id}").status_code == 204
    deleted = org.rows("SELECT Id FROM Contact WHERE IsDeleted = true", all_rows=True) + org.rows(
        "SELECT Id FROM OpportunityLineItem WHERE IsDeleted = true", all_rows=True
    )
    assert {r["Id"] for r in deleted} == {contact_id, line_id}
    assert org.api("GET", f"/sobjects/Opportunity/{opp_id}").status_code == 404
    assert org.api("DELETE", f"/sobjects/Product2/{product}").status_code == 204


def test_get_deleted_lists_nothing_from_before_the_day_15_days_back(
    org: Org, clock: OffsetClock
) -> None:
    clock.offset = DAY / 2 - clock() % DAY  # noon UTC: no day turns while the test runs
    old = org.sandbox.ui_create("Contact", {"LastName": "Old"})
    org.sandbox.ui_delete("Contact", old)
    clock.advance(DAY)
    recent = org.sandbox.ui_create("Contact", {"LastName": "Recent"})
    org.sandbox.ui_delete("Contact", recent)
    clock.advance(15 * DAY)
    org.refresh()  # the session idled out meanwhile
    now = datetime.fromtimestamp(clock(), UTC)

    response = get_deleted(org, "Contact", start=now - timedelta(days=20), end=now)

    assert response.status_code == 200, response.text
    body = response.json()
    # Deleted 16 days back, within the start asked for, yet no longer listed.
    assert [r["id"] for r in body["deletedRecords"]] == [recent]
    # The cut-off is midnight UTC of the day 15 days back: the day ``recent`` was deleted.
    earliest = body["earliestDateAvailable"]
    assert earliest == body["deletedRecords"][0]["deletedDate"][:10] + "T00:00:00.000+0000"


def test_get_deleted_start_must_precede_end_by_more_than_a_minute(org: Org) -> None:
    minute = datetime.fromtimestamp(org.clock(), UTC).replace(second=0, microsecond=0)
    contact_id = org.created("Contact", {"LastName": "Gone"})
    assert org.api("DELETE", f"/sobjects/Contact/{contact_id}").status_code == 204
    refused = [
        (minute, minute),
        (minute, minute - timedelta(minutes=2)),
        (minute - timedelta(minutes=1), minute),
        # Seconds are ignored: 12:31:59 is 12:31, a minute after 12:30.
        (minute - timedelta(minutes=1), minute + timedelta(seconds=59)),
        # A start more than 30 days back (obs).
        (minute - timedelta(days=31), minute),
    ]
    for start, end in refused:
        response = get_deleted(org, "Contact", start=start, end=end)
        assert response.status_code == 400, (start, end)
        assert error_of(response)["errorCode"] == "INVALID_REPLICATION_DATE", (start, end)

    end = minute + timedelta(minutes=2)  # the deletion's minute may have turned
    listed = get_deleted(org, "Contact", start=minute - timedelta(minutes=1), end=end)

    assert listed.status_code == 200, listed.text
    assert [r["id"] for r in listed.json()["deletedRecords"]] == [contact_id]


def test_get_deleted_refuses_a_missing_or_unreadable_date(org: Org) -> None:
    now = datetime.fromtimestamp(org.clock(), UTC)
    start = now - timedelta(days=1)
    cases: list[tuple[dict[str, datetime | str], str]] = [
        ({"start": start}, "MISSING_ARGUMENT"),
        ({"end": now}, "MISSING_ARGUMENT"),
        ({"start": "yesterday", "end": now}, "INVALID_PARAMETER_VALUE"),
        ({"start": start, "end": "2026-13-01T00:00:00+00:00"}, "INVALID_PARAMETER_VALUE"),
    ]
    for dates, code in cases:
        response = get_deleted(org, "Contact", **dates)
        assert response.status_code == 400, dates
        assert error_of(response)["errorCode"] == code, dates


def test_multi_currency_only_when_enabled(org: Org, make_org: Callable[..., Org]) -> None:
    off = org.create("Account", {"Name": "A", "CurrencyIsoCode": "USD"})
    assert error_of(off)["errorCode"] == "INVALID_FIELD"
    soql = org.query("SELECT CurrencyIsoCode FROM Account")
    assert error_of(soql)["errorCode"] == "INVALID_FIELD"

    multi = make_org(currencies=("USD", "EUR"), corporate_currency="USD")
    opp_id = opportunity(multi)
    assert multi.get("Opportunity", opp_id)["CurrencyIsoCode"] == "USD"
    euro_id = opportunity(multi, CurrencyIsoCode="EUR")
    services = multi.entry("Services")
    mismatch = multi.create(
        "OpportunityLineItem",
        {"OpportunityId": euro_id, "PricebookEntryId": services, "Quantity": 1, "UnitPrice": 1},
    )
    assert "currency code does not match" in error_of(mismatch)["message"]
    bad = multi.create("Account", {"Name": "A", "CurrencyIsoCode": "GBP"})
    assert error_of(bad)["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"


def test_describe_resources(org: Org) -> None:
    everything = org.api("GET", "/sobjects").json()
    names = {o["name"]: o for o in everything["sobjects"]}
    assert names["OpportunityLineItem"]["keyPrefix"] == "00k"
    assert names["PricebookEntry"]["keyPrefix"] == "01u"
    described = org.api("GET", "/sobjects/Opportunity/describe").json()
    stage = next(f for f in described["fields"] if f["name"] == "StageName")
    assert [v["value"] for v in stage["picklistValues"]][-2:] == ["Closed Won", "Closed Lost"]
    assert {
        "childSObject": "OpportunityLineItem",
        "field": "OpportunityId",
        "relationshipName": "OpportunityLineItems",
        "cascadeDelete": True,
    } in described["childRelationships"]


# --- SOQL --------------------------------------------------------------------------------


def test_soql_filters_and_ordering(org: Org) -> None:
    for name, phone, kind in (
        ("Alpha", "100", "Prospect"),
        ("beta", None, "Other"),
        ("Gamma", "300", None),
        ("O'Brien", "400", "Other"),
    ):
        org.created("Account", {"Name": name, "Phone": phone, "Type": kind})

    def names(where: str, order: str = "ORDER BY Name") -> list[str]:
        soql = " ".join(("SELECT Name FROM Account WHERE", where, order))
        return [r["Name"] for r in org.rows(soql)]

    assert names("Name = 'ALPHA'") == ["Alpha"]  # text compares case-insensitively
    assert names("Name LIKE 'b%'") == ["beta", "Burlington Textiles Corp of America"]
    assert names("Name LIKE '_amma'") == ["Gamma"]
    assert names("Name = 'O\\'Brien'") == ["O'Brien"]
    assert names("Name IN ('alpha', 'Gamma')") == ["Alpha", "Gamma"]
    assert names("Name NOT IN ('alpha', 'Gamma') AND Type != null") == [
        "beta",
        "Burlington Textiles Corp of America",
        "Edge Communications",
        "O'Brien",
    ]
    assert names("Phone = null") == ["beta"]
    assert names("Type != 'Other' AND Name > 'B'") == [
        "Burlington Textiles Corp of America",
        "Edge Communications",
        "Gamma",
    ]
    assert names("(Name = 'Alpha' OR Name = 'beta') AND NOT Phone = null") == ["Alpha"]
    assert names("Name != null", "ORDER BY Phone DESC NULLS LAST, Name LIMIT 3") == [
        "O'Brien",
        "Gamma",
        "Alpha",
    ]
    # Nulls sort first by default, and OFFSET skips rows.
    ordered = [r["Name"] for r in org.rows("SELECT Name, Phone FROM Account ORDER BY Phone")]
    assert ordered[0] == "beta"
    assert [
        r["Name"] for r in org.rows("SELECT Name FROM Account ORDER BY Name DESC LIMIT 2 OFFSET 1")
    ] == ["Gamma", "Edge Communications"]


def test_soql_numbers_booleans_dates_and_parents(org: Org) -> None:
    acme = org.created("Account", {"Name": "Acme"})
    opportunity(org, Name="Small", Amount=100, CloseDate="2026-01-10", AccountId=acme)
    opportunity(org, Name="Large", Amount=5000, CloseDate="2026-03-01", StageName="Closed Won")
    rows = org.rows(
        "SELECT Name, Account.Name, Amount, IsWon, CloseDate FROM Opportunity "
        "WHERE Amount >= 100 AND CloseDate < 2026-02-01"
    )
    assert rows == [
        {
            "attributes": rows[0]["attributes"],
            "Name": "Small",
            "Account": {
                "attributes": {"type": "Account", "url": f"{V}/sobjects/Account/{acme}"},
                "Name": "Acme",
            },
            "Amount": 100.0,
            "IsWon": False,
            "CloseDate": "2026-01-10",
        }
    ]
    won = org.rows("SELECT Name, Account.Name FROM Opportunity WHERE IsWon = true")
    assert won[0]["Name"] == "Large" and won[0]["Account"] is None
    assert (
        org.rows("SELECT Name FROM Opportunity WHERE Account.Name = 'Acme'")[0]["Name"] == "Small"
    )
    lines = org.rows(
        "SELECT Name, (SELECT Quantity FROM OpportunityLineItems) FROM Opportunity "
        "WHERE Name = 'Small'"
    )
    assert lines[0]["OpportunityLineItems"] is None  # no children: null, not an empty list


def test_soql_date_time_filters_for_reconciliation(org: Org, clock: OffsetClock) -> None:
    # Written in the UI as the clock moves (the API session would idle out meanwhile).
    clock.advance(-3 * DAY)
    old = org.sandbox.ui_create("Account", {"Name": "Old"})
    clock.advance(2 * DAY)
    middle = org.sandbox.ui_create("Account", {"Name": "Middle"})
    clock.advance(DAY)
    new = org.sandbox.ui_create("Account", {"Name": "New"})
    stamp = datetime.strptime(
        org.get("Account", middle)["SystemModstamp"], "%Y-%m-%dT%H:%M:%S.%f%z"
    )
    literal = stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
    next_second = (stamp + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")

    def ids(where: str) -> list[str]:
        return [
            r["Id"]
            for r in org.rows(
                " ".join(("SELECT Id FROM Account WHERE", where, "ORDER BY SystemModstamp DESC"))
            )
        ]

    assert ids(f"SystemModstamp >= {literal} AND Name != 'x'") == [new, middle]
    assert ids(f"SystemModstamp > {next_second}") == [new]
    shifted = (datetime.strptime(literal, "%Y-%m-%dT%H:%M:%SZ") + timedelta(hours=2)).strftime(
        "%Y-%m-%dT%H:%M:%S"
    )
    assert ids(f"SystemModstamp >= {shifted}+02:00 AND Name LIKE '%d%'") == [middle]
    assert ids("CreatedDate = TODAY AND Name != 'x'") == [new]
    assert ids("CreatedDate = LAST_N_DAYS:1 AND Name LIKE 'M%'") == [middle]
    assert ids("CreatedDate = N_DAYS_AGO:3") == [old]
    assert ids("CreatedDate < YESTERDAY AND Name = 'Old'") == [old]
    quoted = org.query(bind("SELECT Id FROM Account WHERE SystemModstamp > :at", at=literal))
    assert error_of(quoted)["errorCode"] == "INVALID_QUERY_FILTER_OPERATOR"
    assert error_of(quoted)["message"].endswith(
        "value of filter criterion for field 'SystemModstamp' must be of type dateTime and "
        "should not be enclosed in quotes"
    )
    date_only = org.query("SELECT Id FROM Account WHERE SystemModstamp > 2026-01-01")
    assert error_of(date_only)["errorCode"] == "INVALID_QUERY_FILTER_OPERATOR"


def test_soql_errors_in_salesforce_shape(org: Org) -> None:
    cases = {
        "SELECT Id FROM Invoice": ("INVALID_TYPE", "sObject type 'Invoice' is not supported."),
        "SELECT Nme FROM Account": ("INVALID_FIELD", "No such column 'Nme' on entity 'Account'."),
        "SELECT Acount.Name FROM Contact": (
            "INVALID_FIELD",
            "Didn't understand relationship 'Acount' in field path.",
        ),
        "SELECT Id, (SELECT Id FROM Lines) FROM Opportunity": (
            "INVALID_TYPE",
            "Didn't understand relationship 'Lines' in FROM part of query call.",
        ),
        "SELECT Id FORM Account": ("MALFORMED_QUERY", "unexpected token: 'FORM'"),
        "SELECT Id FROM": ("MALFORMED_QUERY", "unexpected token: <EOF>"),
        "SELECT Id FROM Account WHERE Name = 'a' AND Name = 'b' OR Name = 'c'": (
            "MALFORMED_QUERY",
            "unexpected token: 'OR'",
        ),
        "SELECT Id FROM Account WHERE Id = 'xyz'": (
            "INVALID_QUERY_FILTER_OPERATOR",
            "invalid ID field: xyz",
        ),
        "SELECT Id FROM Account WHERE Name = 5": (
            "INVALID_QUERY_FILTER_OPERATOR",
            "must be of type string and should be enclosed in quotes",
        ),
        "SELECT Id FROM Account OFFSET 2001": (
            "NUMBER_OUTSIDE_VALID_RANGE",
            "Maximum SOQL offset allowed is 2000",
        ),
        "SELECT Id, Id FROM Account": ("MALFORMED_QUERY", "duplicate field selected: Id"),
    }
    for soql, (code, fragment) in cases.items():
        response = org.query(soql)
        assert response.status_code == 400, soql
        error = error_of(response)
        assert error["errorCode"] == code, (soql, error)
        assert fragment in error["message"], (soql, error)
    positioned = error_of(org.query("SELECT Id, Nme FROM Account"))["message"]
    assert positioned.startswith(
        "\nSELECT Id, Nme FROM Account\n           ^\nERROR at Row:1:Column:12\nNo such column"
    )
    missing = org.api("GET", "/query")
    assert error_of(missing) == {
        "message": "A query string has to be specified",
        "errorCode": "MALFORMED_QUERY",
    }
    count = org.query("SELECT COUNT() FROM Contact").json()
    assert count == {"totalSize": 2, "done": True, "records": []}


def test_query_pages_at_2000_with_query_locators(org: Org, clock: OffsetClock) -> None:
    for n in range(2100):
        org.sandbox.ui_create("Contact", {"LastName": f"Person {n:04d}"})
    first = org.query("SELECT Id, LastName FROM Contact ORDER BY LastName").json()
    assert (first["totalSize"], first["done"], len(first["records"])) == (2102, False, 2000)
    assert re.fullmatch(r"/services/data/v62\.0/query/01g\w{15}-2000", first["nextRecordsUrl"])
    rest = org.client.get(
        first["nextRecordsUrl"], headers={"Authorization": f"Bearer {org.token}"}
    ).json()
    assert (rest["done"], len(rest["records"])) == (True, 102)
    assert "nextRecordsUrl" not in rest
    names = [r["LastName"] for r in first["records"] + rest["records"]]
    assert names == sorted(names) and len(set(names)) == 2102

    small = org.query(
        "SELECT Id FROM Contact", headers={"Sforce-Query-Options": "batchSize=500"}
    ).json()
    assert len(small["records"]) == 500 and small["nextRecordsUrl"].endswith("-500")
    clamped = org.query(
        "SELECT Id FROM Contact", headers={"Sforce-Query-Options": "batchSize=50"}
    ).json()
    assert len(clamped["records"]) == 200
    # queryAll hands out /query/ locators; /queryAll/ with the same locator works too.
    everything = org.query("SELECT Id FROM Contact", all_rows=True).json()
    locator = everything["nextRecordsUrl"].rsplit("/", 1)[1]
    via_all = org.api("GET", f"/queryAll/{locator}")
    assert via_all.status_code == 200 and len(via_all.json()["records"]) == 102
    bogus = org.api("GET", "/query/01g5g0000000999AAA-2000")
    assert error_of(bogus) == {
        "message": "invalid query locator",
        "errorCode": "INVALID_QUERY_LOCATOR",
    }
    clock.advance(15 * 60)
    expired = org.api("GET", f"/query/{locator}")
    assert error_of(expired)["errorCode"] == "INVALID_QUERY_LOCATOR"


def test_child_records_count_toward_the_batch(make_org: Callable[..., Org]) -> None:
    org = make_org(query_batch_size=3)
    response = org.query("SELECT Name, (SELECT LastName FROM Contacts) FROM Account ORDER BY Name")
    body = response.json()
    # Burlington with its contact weighs 2, so Edge (2 more) waits for the next page.
    assert [r["Name"] for r in body["records"]] == ["Burlington Textiles Corp of America"]
    assert body["records"][0]["Contacts"]["records"][0]["LastName"] == "Rogers"
    nxt = org.client.get(body["nextRecordsUrl"], headers={"Authorization": f"Bearer {org.token}"})
    assert [r["Name"] for r in nxt.json()["records"]] == ["Edge Communications"]


# --- API limits and faults ---------------------------------------------------------------


def test_daily_allocation_header_limits_and_refusal(
    make_org: Callable[..., Org], clock: OffsetClock
) -> None:
    org = make_org(daily_api_limit=3)
    first = org.api("GET", "/limits")
    assert first.headers["Sforce-Limit-Info"] == "api-usage=1/3"
    assert first.json() == {"DailyApiRequests": {"Max": 3, "Remaining": 2}}
    org.api("GET", "/sobjects")
    assert org.api("GET", "/limits").headers["Sforce-Limit-Info"] == "api-usage=3/3"
    refused = org.api("GET", "/limits")
    assert refused.status_code == 403
    assert refused.json() == [
        {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
    ]
    assert org.client.get("/services/data").status_code == 200  # versions stay free
    clock.advance(DAY)  # a rolling 24-hour window
    org.refresh()
    assert org.api("GET", "/limits").status_code == 200


def test_faults_in_salesforce_shape(org: Org) -> None:
    org.client.post("/_sandbox/faults", json={"kind": "rate_limit", "path_prefix": V})
    burst = org.api("GET", "/limits")
    assert burst.status_code == 403
    assert error_of(burst) == {
        "message": "ConcurrentRequests (Concurrent API Requests) Limit exceeded.",
        "errorCode": "REQUEST_LIMIT_EXCEEDED",
    }
    org.client.post("/_sandbox/faults", json={"kind": "error", "status": 503})
    assert org.api("GET", "/limits").status_code == 503
    org.client.post("/_sandbox/faults", json={"kind": "drop_response", "method": "POST"})
    lost = org.create("Account", {"Name": "Lost reply"})
    assert lost.status_code == 504
    assert org.rows("SELECT Name FROM Account WHERE Name = 'Lost reply'")  # the write happened


# --- outbound messages -------------------------------------------------------------------


@dataclass
class Listener:
    """An outbound message endpoint: records every request, answers from a script."""

    answers: list[tuple[int, str]] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    on_request: Callable[[], None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Flask:
        app = Flask("listener")

        @app.post("/om")
        def notify() -> Response:
            with self.lock:
                self.received.append((dict(request.headers), request.get_data()))
                status, body = self.answers.pop(0) if self.answers else (200, ACK)
            if self.on_request is not None:
                self.on_request()
            return Response(body, status=status, content_type="text/xml")

        return app


@pytest.fixture
def listener() -> Iterator[tuple[Listener, str]]:
    state = Listener()
    server = SandboxServer(state.app(), 0).start()
    yield state, f"{server.url}/om"
    server.stop()


def won_deals(url: str, **overrides: Any) -> OutboundMessageDefinition:
    spec: dict[str, Any] = {
        "name": "Won deals",
        "object_type": "Opportunity",
        "fields": ("Name", "StageName", "Amount", "CloseDate", "IsWon", "Description"),
        "endpoint_url": url,
        "trigger": "subsequently_meets",
        "criteria": {"IsWon": True},
    }
    return OutboundMessageDefinition(**{**spec, **overrides})


def notifications_in(body: bytes) -> list[ElementTree.Element]:
    root = parse_xml(body)
    return root.findall(f"./{SOAP}Body/{OM}notifications/{OM}Notification")


def test_outbound_message_envelope_and_ack(
    make_org: Callable[..., Org], listener: tuple[Listener, str]
) -> None:
    state, url = listener
    org = make_org()
    action_id = org.sandbox.add_outbound_message(won_deals(url))
    opp_id = opportunity(org, Amount=1500)
    org.patch("Opportunity", opp_id, {"Description": "still open"})
    assert org.sandbox.wait_for_outbound_idle(10)
    assert state.received == []  # not won yet
    org.patch("Opportunity", opp_id, {"StageName": "Closed Won"})
    assert org.sandbox.wait_for_outbound_idle(10)
    org.patch("Opportunity", opp_id, {"Description": "won, edited again"})  # already met
    assert org.sandbox.wait_for_outbound_idle(10)

    assert len(state.received) == 1
    headers, body = state.received[0]
    assert headers["Content-Type"] == "text/xml; charset=utf-8"
    assert headers["Soapaction"] == '""'
    root = parse_xml(body)
    message = root.find(f"./{SOAP}Body/{OM}notifications")
    assert message is not None
    assert message.findtext(f"{OM}OrganizationId") == org.sandbox.org_id
    assert message.findtext(f"{OM}ActionId") == action_id
    session = message.find(f"{OM}SessionId")
    assert session is not None and session.get(f"{XSI}nil") == "true"
    org15 = org.sandbox.org_id[:15]
    assert (
        message.findtext(f"{OM}EnterpriseUrl") == f"{org.server.url}/services/Soap/c/62.0/{org15}"
    )
    assert message.findtext(f"{OM}PartnerUrl") == f"{org.server.url}/services/Soap/u/62.0/{org15}"
    (notification,) = notifications_in(body)
    assert (notification.findtext(f"{OM}Id") or "").startswith("04l")
    sobject = notification.find(f"{OM}sObject")
    assert sobject is not None and sobject.get(f"{XSI}type") == "sf:Opportunity"
    values = {child.tag.removeprefix(SF): child.text for child in sobject}
    assert values == {
        "Id": opp_id,
        "Amount": "1500.0",
        "CloseDate": "2026-12-01",
        "Description": "still open",
        "IsWon": "true",
        "Name": "Deal",
        "StageName": "Closed Won",
    }
    (delivery,) = org.sandbox.outbound_deliveries()
    assert delivery.acknowledged and delivery.attempts == [200]
    listing = org.client.get("/_sandbox/outbound").json()
    assert listing["deliveries"][0]["acknowledged"] is True
    assert listing["definitions"][0]["actionId"] == action_id


def test_outbound_retries_until_acknowledged_with_the_latest_data(
    make_org: Callable[..., Org], listener: tuple[Listener, str]
) -> None:
    state, url = listener
    org = make_org(outbound_time_scale=0.0001)
    org.sandbox.add_outbound_message(won_deals(url, trigger="created", criteria={}))
    no_ack = ACK.replace("<Ack>true</Ack>", "<Ack>false</Ack>")
    state.answers = [(500, "boom"), (200, "<ok/>"), (200, no_ack)]
    opp_id = opportunity(org)

    def rename_once() -> None:
        if len(state.received) == 1:
            org.sandbox.ui_update("Opportunity", opp_id, {"Name": "Renamed"})

    state.on_request = rename_once
    assert org.sandbox.wait_for_outbound_idle(30)
    (delivery,) = org.sandbox.outbound_deliveries()
    assert delivery.attempts == [500, "nack", "nack", 200] and delivery.acknowledged
    ids = {notifications_in(body)[0].findtext(f"{OM}Id") for _, body in state.received}
    assert len(ids) == 1  # a retry repeats the notification id
    names = [
        notifications_in(body)[0].findtext(f"{OM}sObject/{SF}Name") for _, body in state.received
    ]
    assert names == ["Deal", "Renamed", "Renamed", "Renamed"]


def test_outbound_gives_up_after_the_scaled_day(
    make_org: Callable[..., Org], listener: tuple[Listener, str]
) -> None:
    state, url = listener
    org = make_org(outbound_time_scale=0.00001)
    org.sandbox.add_outbound_message(won_deals(url, trigger="created", criteria={}))
    state.answers = [(503, "down")] * 1000
    opportunity(org)
    assert org.sandbox.wait_for_outbound_idle(30)
    (delivery,) = org.sandbox.outbound_deliveries()
    assert delivery.abandoned and not delivery.acknowledged
    assert len(delivery.attempts) > 10 and set(delivery.attempts) == {503}


def test_outbound_batches_up_to_100_notifications(
    make_org: Callable[..., Org], listener: tuple[Listener, str]
) -> None:
    state, url = listener
    org = make_org(outbound_batch_window_s=2.0)
    org.sandbox.add_outbound_message(
        OutboundMessageDefinition("New accounts", "Account", ["Name"], url, trigger="created")
    )
    for n in range(150):
        org.sandbox.ui_create("Account", {"Name": f"Account {n}"})
    assert org.sandbox.wait_for_outbound_idle(30)
    sizes = sorted(len(notifications_in(body)) for _, body in state.received)
    assert sizes == [50, 100]


def test_outbound_session_id_when_the_definition_sends_one(
    make_org: Callable[..., Org], listener: tuple[Listener, str]
) -> None:
    state, url = listener
    org = make_org()
    org.sandbox.add_outbound_message(won_deals(url, send_session_id=True))
    org.sandbox.ui_create(
        "Opportunity", {"Name": "D", "StageName": "Closed Won", "CloseDate": "2026-01-01"}
    )
    assert org.sandbox.wait_for_outbound_idle(10)
    root = parse_xml(state.received[0][1])
    session = root.findtext(f"./{SOAP}Body/{OM}notifications/{OM}SessionId") or ""
    response = org.client.get(f"{V}/limits", headers={"Authorization": f"Bearer {session}"})
    assert response.status_code == 200  # the listener can call back with it


def test_outbound_definitions_are_checked(org: Org) -> None:
    with pytest.raises(ValueError, match="no field"):
        org.sandbox.add_outbound_message(
            OutboundMessageDefinition("x", "Opportunity", ["Nope"], "http://127.0.0.1:1/")
        )
    with pytest.raises(ValueError, match="trigger"):
        OutboundMessageDefinition(
            "x", "Opportunity", ["Name"], "http://127.0.0.1:1/", trigger="always"
        )
    bad = org.client.post("/_sandbox/outbound/definitions", json={"name": "x"})
    assert bad.status_code == 400


# --- the UI, admin routes and the seeded org ---------------------------------------------


def test_ui_writes_are_another_user_and_not_counted(org: Org) -> None:
    used = org.sandbox.api_usage()[0]
    created = org.client.post("/_sandbox/records/Account", json={"Name": "From the UI"})
    assert created.status_code == 201
    account_id = created.json()["id"]
    assert org.sandbox.api_usage()[0] == used
    record = org.get("Account", account_id)
    assert record["LastModifiedById"] == org.sandbox.ui_user_id != org.sandbox.integration_user_id
    assert (
        org.client.patch(f"/_sandbox/records/Account/{account_id}", json={"Phone": "9"}).status_code
        == 204
    )
    with pytest.raises(SalesforceApiError) as refused:
        org.sandbox.ui_update("Account", account_id, {"Name": None})
    assert refused.value.code == "REQUIRED_FIELD_MISSING"
    assert org.client.delete(f"/_sandbox/records/Account/{account_id}").status_code == 204
    listed = org.client.get("/_sandbox/records/Account", params={"deleted": "true"}).json()
    assert any(r["Id"] == account_id and r["IsDeleted"] for r in listed)
    stats = org.client.get("/_sandbox/stats").json()
    assert stats["writes"]["create"]["Account"] == 1 and stats["apiUsage"]["max"] == 15000


def test_seeded_org_and_reset(org: Org) -> None:
    entries = org.rows(
        "SELECT Product2.Name, UnitPrice, IsActive, Pricebook2.IsStandard FROM PricebookEntry "
        "ORDER BY Product2.Name"
    )
    assert [
        (e["Product2"]["Name"], e["IsActive"], e["Pricebook2"]["IsStandard"]) for e in entries
    ] == [
        ("Hours", True, True),
        ("Services", True, True),
    ]
    accounts = org.rows("SELECT Name, (SELECT Email FROM Contacts) FROM Account ORDER BY Name")
    assert [a["Name"] for a in accounts] == [
        "Burlington Textiles Corp of America",
        "Edge Communications",
    ]
    assert accounts[1]["Contacts"]["records"][0]["Email"] == "rose@edge.com"
    assert len(org.rows("SELECT Id FROM OpportunityStage")) == 10
    org.created("Account", {"Name": "Temporary"})
    assert org.client.post("/_sandbox/reset").status_code == 200
    assert len(org.rows("SELECT Id FROM Account")) == 2
