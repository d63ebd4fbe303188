"""The Xero sandbox behaves like Xero documents it, over real HTTP."""

from __future__ import annotations

import base64
import hmac
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.etree import ElementTree

import httpx
import pytest
from flask import Flask, Response, request

from local.sandboxes import xero_where
from local.sandboxes.base import SandboxServer
from local.sandboxes.xero import XeroSandbox, XeroSandboxConfig, sign
from tests.fakes import OffsetClock

DAY = 86400.0
API = "/api.xro/2.0"


@dataclass
class Harness:
    sandbox: XeroSandbox
    server: SandboxServer
    client: httpx.Client
    clock: OffsetClock
    refresh_token: str
    access_token: str = ""

    @property
    def config(self) -> XeroSandboxConfig:
        return self.sandbox.config

    def token_request(self, **form: str) -> httpx.Response:
        auth = (self.config.client_id, self.config.client_secret)
        return self.client.post("/connect/token", auth=auth, data=form)

    def refresh(self) -> dict[str, Any]:
        response = self.token_request(grant_type="refresh_token", refresh_token=self.refresh_token)
        assert response.status_code == 200, response.text
        tokens: dict[str, Any] = response.json()
        self.refresh_token = tokens["refresh_token"]
        self.access_token = tokens["access_token"]
        return tokens

    def headers(self, **extra: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.access_token}",
            "xero-tenant-id": self.config.tenant_id,
            "Accept": "application/json",
            **extra,
        }

    def api(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        if not self.access_token:
            self.refresh()
        return self.client.request(
            method,
            f"{API}/{path}",
            json=body,
            params=params,
            headers=headers if headers is not None else self.headers(),
        )

    def put(self, kind: str, *elements: dict[str, Any], **params: str) -> httpx.Response:
        return self.api("PUT", kind, body={kind: list(elements)}, params=params)

    def post(self, path: str, *elements: dict[str, Any], **params: str) -> httpx.Response:
        kind = path.split("/")[0]
        return self.api("POST", path, body={kind: list(elements)}, params=params)

    def one(self, response: httpx.Response, kind: str) -> dict[str, Any]:
        assert response.status_code == 200, response.text
        rows: list[dict[str, Any]] = response.json()[kind]
        assert len(rows) == 1
        return rows[0]


def start_harness(clock: OffsetClock, **overrides: Any) -> Harness:
    config = XeroSandboxConfig(clock=clock, **overrides)
    sandbox = XeroSandbox(config)
    server = SandboxServer(sandbox.app, 0).start()
    client = httpx.Client(base_url=server.url, timeout=10)
    return Harness(sandbox, server, client, clock, config.initial_refresh_token)


def stop_harness(harness: Harness) -> None:
    harness.client.close()
    harness.server.stop()
    harness.sandbox.close()


@pytest.fixture(scope="module")
def clock() -> OffsetClock:
    return OffsetClock()


@pytest.fixture(scope="module")
def shared(clock: OffsetClock) -> Iterator[Harness]:
    """One server for the module (stopping a werkzeug server costs ~0.5 s); its minute
    limit is lifted so a test's burst is never throttled. The throttling tests start
    their own sandbox with Xero's limits shrunk."""
    harness = start_harness(clock, rate_per_minute=10_000)
    yield harness
    stop_harness(harness)


@pytest.fixture
def xero(shared: Harness, clock: OffsetClock) -> Harness:
    """The shared sandbox reset to its seeded organisation, with a fresh access token."""
    clock.offset = 0.0
    shared.sandbox.reset()
    shared.sandbox.webhook_url = None
    shared.refresh()
    return shared


@pytest.fixture
def make_harness(clock: OffsetClock) -> Iterator[Callable[..., Harness]]:
    clock.offset = 0.0
    started: list[Harness] = []

    def make(**overrides: Any) -> Harness:
        harness = start_harness(clock, **overrides)
        started.append(harness)
        return harness

    yield make
    for harness in started:
        stop_harness(harness)


def ms_datetime(value: str) -> datetime:
    match = re.fullmatch(r"/Date\((\d+)(\+0000)?\)/", value)
    assert match, value
    return datetime.fromtimestamp(int(match.group(1)) / 1000, UTC)


def errors_of(response: httpx.Response) -> list[str]:
    body = response.json()
    assert body["Type"] == "ValidationException", body
    return [e["Message"] for element in body["Elements"] for e in element["ValidationErrors"]]


def contact_id(xero: Harness, name: str) -> str:
    found: str = next(c for c in xero.sandbox.entities("Contacts") if c["Name"] == name)[
        "ContactID"
    ]
    return found


def invoice_body(contact: str, *lines: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"Type": "ACCREC", "Contact": {"ContactID": contact}, "LineItems": list(lines), **fields}


def line(**fields: Any) -> dict[str, Any]:
    return {"Description": "Work", "AccountCode": "200", **fields}


# --- OAuth 2 --------------------------------------------------------------------------------------


def test_refresh_rotates_and_a_used_token_works_only_for_30_minutes(xero: Harness) -> None:
    used = xero.refresh_token
    tokens = xero.refresh()
    assert tokens["refresh_token"] != used
    assert tokens["expires_in"] == 1800
    assert tokens["token_type"] == "Bearer"
    assert "offline_access" in tokens["scope"].split()
    assert tokens["id_token"].count(".") == 2

    xero.clock.advance(29 * 60)  # the response was "lost": retry the used token
    retry = xero.token_request(grant_type="refresh_token", refresh_token=used)
    assert retry.status_code == 200
    xero.clock.advance(2 * 60)  # 31 minutes after its first use
    late = xero.token_request(grant_type="refresh_token", refresh_token=used)
    assert late.status_code == 400
    assert late.content == b'{"error":"invalid_grant"}'  # byte for byte, as SDKs compare
    assert xero.refresh()["refresh_token"]  # the newest one still works


def test_unused_refresh_token_expires_after_60_days(xero: Harness) -> None:
    fresh = xero.refresh()["refresh_token"]
    xero.clock.advance(59 * DAY)
    assert xero.token_request(grant_type="refresh_token", refresh_token=fresh).status_code == 200
    idle = xero.refresh_token
    xero.clock.advance(60 * DAY + 1)
    expired = xero.token_request(grant_type="refresh_token", refresh_token=idle)
    assert expired.json() == {"error": "invalid_grant"}


def test_token_endpoint_refusals(xero: Harness) -> None:
    form = {"grant_type": "refresh_token", "refresh_token": xero.refresh_token}
    wrong = xero.client.post("/connect/token", auth=(xero.config.client_id, "nope"), data=form)
    assert (wrong.status_code, wrong.json()) == (400, {"error": "invalid_client"})
    anonymous = xero.client.post("/connect/token", data=form)
    assert anonymous.json() == {"error": "invalid_client"}
    # Client credentials in the form body work too (xero-python sends them so).
    in_body = xero.client.post(
        "/connect/token",
        data={
            **form,
            "client_id": xero.config.client_id,
            "client_secret": xero.config.client_secret,
        },
    )
    assert in_body.status_code == 200
    assert xero.token_request(grant_type="password").json() == {"error": "unsupported_grant_type"}
    unknown = xero.token_request(grant_type="refresh_token", refresh_token="made-up")
    assert unknown.json() == {"error": "invalid_grant"}


def test_authorization_code_flow(xero: Harness) -> None:
    redirect = xero.config.redirect_uris[0]
    query = {
        "response_type": "code",
        "client_id": xero.config.client_id,
        "redirect_uri": redirect,
        "scope": "openid accounting.contacts offline_access",
        "state": "xyz",
    }
    answer = xero.client.get("/identity/connect/authorize", params=query)
    assert answer.status_code == 302
    location = urlsplit(answer.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == redirect
    returned = parse_qs(location.query)
    assert returned["state"] == ["xyz"]
    code = returned["code"][0]
    wrong_uri = xero.token_request(
        grant_type="authorization_code", code=code, redirect_uri="https://evil.example/cb"
    )
    assert wrong_uri.json() == {"error": "invalid_grant"}  # and the code is spent
    code = parse_qs(
        urlsplit(
            xero.client.get("/identity/connect/authorize", params=query).headers["Location"]
        ).query
    )["code"][0]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect}
    tokens = xero.token_request(**form).json()
    assert tokens["scope"] == "openid accounting.contacts offline_access"
    assert tokens["refresh_token"] and tokens["id_token"]
    assert xero.token_request(**form).json() == {"error": "invalid_grant"}  # single use

    without_offline = {**query, "scope": "accounting.contacts"}
    location = xero.client.get("/identity/connect/authorize", params=without_offline).headers[
        "Location"
    ]
    code = parse_qs(urlsplit(location).query)["code"][0]
    online = xero.token_request(grant_type="authorization_code", code=code, redirect_uri=redirect)
    assert "refresh_token" not in online.json()
    assert "id_token" not in online.json()

    for bad in (
        {**query, "redirect_uri": "https://not-registered.example/cb"},
        {**query, "scope": "accounting.everything"},
        {**query, "client_id": "someone-else"},
    ):
        assert xero.client.get("/identity/connect/authorize", params=bad).status_code == 500

    minted = xero.client.post("/_sandbox/oauth/code", json={}).json()
    exchanged = xero.token_request(
        grant_type="authorization_code", code=minted["code"], redirect_uri=minted["redirect_uri"]
    )
    assert exchanged.status_code == 200
    xero.clock.advance(301)
    late = xero.sandbox.mint_authorization_code()
    xero.clock.advance(301)
    expired = xero.token_request(grant_type="authorization_code", code=late, redirect_uri=redirect)
    assert expired.json() == {"error": "invalid_grant"}


def test_access_token_is_a_jwt_that_expires_after_30_minutes(xero: Harness) -> None:
    payload = xero.access_token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["client_id"] == xero.config.client_id
    assert claims["exp"] - claims["nbf"] == 1800
    assert "accounting.contacts" in claims["scope"]
    assert xero.api("GET", "Organisation").status_code == 200
    xero.clock.advance(1801)
    expired = xero.api("GET", "Organisation")
    assert expired.status_code == 401
    body = expired.json()
    assert (body["Title"], body["Status"]) == ("Unauthorized", 401)
    assert body["Detail"].startswith("TokenExpired: token expired at ")
    anonymous = xero.client.get(
        f"{API}/Organisation", headers={"xero-tenant-id": xero.config.tenant_id}
    )
    assert anonymous.json()["Detail"] == "AuthenticationUnsuccessful"


def test_tenant_header_is_required(xero: Harness) -> None:
    headers = xero.headers()
    del headers["xero-tenant-id"]
    missing = xero.api("GET", "Contacts", headers=headers)
    assert missing.status_code == 403
    assert missing.json()["Title"] == "Forbidden"
    assert missing.json()["Detail"] == "AuthenticationUnsuccessful"
    wrong = xero.api("GET", "Contacts", headers=xero.headers(**{"xero-tenant-id": "0" * 36}))
    assert wrong.status_code == 403


def test_connections_and_disconnect(xero: Harness) -> None:
    connections = xero.client.get("/connections", headers=xero.headers()).json()
    assert len(connections) == 1
    connection = connections[0]
    assert connection["tenantId"] == xero.config.tenant_id
    assert connection["tenantType"] == "ORGANISATION"
    assert connection["tenantName"] == "Demo Company (Global)"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}", connection["createdDateUtc"])
    gone = xero.client.delete(f"/connections/{connection['id']}", headers=xero.headers())
    assert gone.status_code == 204
    assert xero.client.get("/Connections", headers=xero.headers()).json() == []
    assert xero.api("GET", "Contacts").status_code == 403  # disconnected...
    assert xero.refresh()["access_token"]  # ...while the tokens still refresh
    code = xero.sandbox.mint_authorization_code()
    redirect = xero.config.redirect_uris[0]
    xero.token_request(grant_type="authorization_code", code=code, redirect_uri=redirect)
    assert xero.api("GET", "Contacts").status_code == 200  # re-authorising reconnects


def test_revocation_kills_the_refresh_token_and_the_connection(
    make_harness: Callable[..., Harness],
) -> None:
    xero = make_harness()
    xero.refresh()
    auth = (xero.config.client_id, xero.config.client_secret)
    assert xero.client.post("/connect/revocation", auth=auth, data={"token": xero.refresh_token})
    again = xero.token_request(grant_type="refresh_token", refresh_token=xero.refresh_token)
    assert again.json() == {"error": "invalid_grant"}
    assert xero.client.get("/connections", headers=xero.headers()).status_code == 401


def test_scopes_are_enforced(xero: Harness) -> None:
    code = xero.sandbox.mint_authorization_code(scope="accounting.settings.read offline_access")
    redirect = xero.config.redirect_uris[0]
    tokens = xero.token_request(grant_type="authorization_code", code=code, redirect_uri=redirect)
    xero.access_token = tokens.json()["access_token"]
    assert xero.api("GET", "Items").status_code == 200
    refused = xero.api("GET", "Contacts")
    assert refused.status_code == 401
    assert refused.json()["Detail"] == "AuthorizationUnsuccessful"
    assert xero.put("Items", {"Code": "X1"}).status_code == 401  # .read cannot write


# --- responses, dates, envelopes ------------------------------------------------------------------


def test_envelope_dates_and_every_entity_has_updated_date(xero: Harness) -> None:
    for kind in ("Contacts", "Invoices", "Items", "Accounts"):
        body = xero.api("GET", kind).json()
        assert body["Status"] == "OK"
        assert body["ProviderName"] == "crmsync"
        assert re.fullmatch(r"/Date\(\d+\)/", body["DateTimeUTC"])
        assert uuid_like(body["Id"])
        assert body[kind]
        for row in body[kind]:
            assert ms_datetime(row["UpdatedDateUTC"]) < datetime.now(UTC)
    for kind in ("TaxRates", "Currencies"):
        assert xero.api("GET", kind).json()[kind]
    organisation = xero.api("GET", "Organisation").json()["Organisations"][0]
    assert organisation["OrganisationID"] == xero.config.tenant_id
    assert organisation["BaseCurrency"] == "USD"
    assert ms_datetime(organisation["CreatedDateUTC"])


def uuid_like(text: str) -> bool:
    return (
        re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", text)
        is not None
    )


def test_xml_unless_json_is_asked_for(xero: Harness) -> None:
    headers = xero.headers()
    del headers["Accept"]
    answer = xero.api("GET", "Contacts", headers=headers)
    assert answer.headers["Content-Type"].startswith("text/xml")
    root = ElementTree.fromstring(answer.content)  # noqa: S314 (the sandbox's own reply)
    assert root.tag == "Response"
    assert root.findtext("Status") == "OK"
    names = [c.findtext("Name") for c in root.iter("Contact")]
    assert "ABC Furniture" in names
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", root.findtext("DateTimeUTC") or "")
    refused = xero.api(
        "PUT", "Contacts", body={"Contacts": [{"Name": "ABC Furniture"}]}, headers=headers
    )
    assert ElementTree.fromstring(refused.content).tag == "ApiException"  # noqa: S314


def test_unknown_id_is_a_plain_text_404_and_unmodelled_methods_501(xero: Harness) -> None:
    missing = xero.api("GET", "Contacts/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404
    assert missing.text == "The resource you're looking for cannot be found"
    assert xero.api("GET", "BankTransactions").status_code == 404
    organisation = xero.api("POST", "Organisation", body={"Name": "x"})
    assert organisation.status_code == 501
    assert organisation.json()["Type"] == "ApiMethodNotImplementedException"


# --- contacts -------------------------------------------------------------------------------------


def test_put_creates_post_updates(xero: Harness) -> None:
    created = xero.one(
        xero.put(
            "Contacts",
            {
                "Name": "Acme Rockets",
                "EmailAddress": "buyer@acme.example",
                "FirstName": "Wile",
                "LastName": "Coyote",
                "AccountNumber": "ACME-1",
                "TaxNumber": "12-3456789",
                "ContactNumber": "CRM-42",
                "Phones": [{"PhoneType": "mobile", "PhoneNumber": "555-1212"}],
                "Addresses": [{"AddressType": "STREET", "City": "Tucson"}],
            },
        ),
        "Contacts",
    )
    assert uuid_like(created["ContactID"])
    assert created["ContactStatus"] == "ACTIVE"
    assert [p["PhoneType"] for p in created["Phones"]] == ["DEFAULT", "DDI", "FAX", "MOBILE"]
    assert created["Phones"][3]["PhoneNumber"] == "555-1212"
    assert [a["AddressType"] for a in created["Addresses"]] == ["STREET", "POBOX"]
    assert created["Addresses"][0]["City"] == "Tucson"
    assert created["IsCustomer"] is False

    # PUT never updates: an id means an update was meant.
    again = xero.put("Contacts", {"ContactID": created["ContactID"], "Name": "Renamed"})
    assert again.status_code == 400
    assert "use POST" in errors_of(again)[0]

    xero.clock.advance(2)
    updated = xero.one(
        xero.post(f"Contacts/{created['ContactID']}", {"EmailAddress": "ap@acme.example"}),
        "Contacts",
    )
    assert updated["Name"] == "Acme Rockets"  # a POST changes only what it sends
    assert updated["EmailAddress"] == "ap@acme.example"
    assert ms_datetime(updated["UpdatedDateUTC"]) > ms_datetime(created["UpdatedDateUTC"])
    by_number = xero.one(
        xero.post("Contacts", {"ContactNumber": "CRM-42", "LastName": "C."}), "Contacts"
    )
    assert by_number["ContactID"] == created["ContactID"]
    fetched = xero.one(xero.api("GET", "Contacts/CRM-42"), "Contacts")
    assert fetched["LastName"] == "C."
    assert xero.sandbox.create_count("Contacts") == 1
    stray = xero.post("Contacts", {"ContactID": "11111111-1111-1111-1111-111111111111"})
    assert stray.status_code == 400
    unknown_path = xero.post("Contacts/11111111-1111-1111-1111-111111111111", {"Name": "x"})
    assert unknown_path.status_code == 404


def test_contact_validation(xero: Harness) -> None:
    duplicate = xero.put("Contacts", {"Name": "abc furniture"})
    assert duplicate.status_code == 400
    body = duplicate.json()
    assert (body["ErrorNumber"], body["Message"]) == (10, "A validation exception occurred")
    assert errors_of(duplicate) == [
        "The contact name abc furniture is already assigned to another contact. "
        "The contact name must be unique across all active contacts."
    ]
    assert body["Elements"][0]["HasValidationErrors"] is True
    assert errors_of(xero.put("Contacts", {"Name": "Bad Mail", "EmailAddress": "nope"})) == [
        "Email address must be valid."
    ]
    assert errors_of(xero.put("Contacts", {"EmailAddress": "x@y.example"})) == [
        "Contact name cannot be empty."
    ]
    enum = xero.put("Contacts", {"Name": "Odd", "ContactStatus": "SLEEPING"})
    assert enum.status_code == 400
    assert enum.json()["ErrorNumber"] == 14
    assert enum.json()["Type"] == "PostDataInvalidException"
    assert xero.sandbox.create_count("Contacts") == 0


def test_archived_contacts_are_hidden_and_free_their_name(xero: Harness) -> None:
    abc = contact_id(xero, "ABC Furniture")
    assert xero.post(f"Contacts/{abc}", {"ContactStatus": "ARCHIVED"}).status_code == 200
    names = [c["Name"] for c in xero.api("GET", "Contacts").json()["Contacts"]]
    assert "ABC Furniture" not in names
    every = xero.api("GET", "Contacts", params={"includeArchived": "true"}).json()["Contacts"]
    assert "ABC Furniture" in [c["Name"] for c in every]
    assert xero.put("Contacts", {"Name": "ABC Furniture"}).status_code == 200
    on_archived = xero.put("Invoices", invoice_body(abc, line(Quantity=1, UnitAmount=1)))
    assert "archived" in errors_of(on_archived)[0]


# --- invoices -------------------------------------------------------------------------------------


def test_invoice_amounts_follow_rounding_in_xero(xero: Harness) -> None:
    # Xero's own example: tax per line at 15 %, rounded, then summed.
    rate = xero.one(
        xero.api(
            "PUT",
            "TaxRates",
            body={"TaxRates": [{"Name": "GST 15", "TaxComponents": [{"Name": "GST", "Rate": 15}]}]},
        ),
        "TaxRates",
    )
    assert (rate["TaxType"], rate["EffectiveRate"]) == ("TAX001", 15.0)
    abc = contact_id(xero, "ABC Furniture")
    lines = [line(Quantity=1, UnitAmount=u, TaxType="TAX001") for u in (25.06, 25.61, 25.63)]
    invoice = xero.one(xero.put("Invoices", invoice_body(abc, *lines)), "Invoices")
    assert [x["TaxAmount"] for x in invoice["LineItems"]] == [3.76, 3.84, 3.84]
    assert (invoice["SubTotal"], invoice["TotalTax"], invoice["Total"]) == (76.30, 11.44, 87.74)
    assert invoice["AmountDue"] == 87.74
    assert invoice["Status"] == "DRAFT"
    assert invoice["LineAmountTypes"] == "Exclusive"

    inclusive = xero.one(
        xero.put(
            "Invoices",
            invoice_body(
                abc, line(Quantity=1, UnitAmount=115, TaxType="TAX001"), LineAmountTypes="Inclusive"
            ),
        ),
        "Invoices",
    )
    assert (inclusive["SubTotal"], inclusive["TotalTax"], inclusive["Total"]) == (100, 15, 115)
    no_tax = xero.one(
        xero.put(
            "Invoices",
            invoice_body(
                abc, line(Quantity=2, UnitAmount=10, TaxType="TAX001"), LineAmountTypes="NoTax"
            ),
        ),
        "Invoices",
    )
    assert (no_tax["TotalTax"], no_tax["Total"]) == (0, 20)


def test_discounts_unit_decimals_and_line_totals(xero: Harness) -> None:
    abc = contact_id(xero, "ABC Furniture")
    invoice = xero.one(
        xero.put(
            "Invoices",
            invoice_body(
                abc,
                line(Quantity=1.5, UnitAmount=99.61, DiscountRate=10),  # 149.415 x 0.9
                line(Quantity=3, UnitAmount=20, DiscountAmount=5.005),
                line(Quantity=2, LineAmount=30),  # UnitAmount derived
            ),
        ),
        "Invoices",
    )
    first, second, third = invoice["LineItems"]
    assert first["LineAmount"] == 134.47
    assert second["DiscountAmount"] == 5.01 and second["LineAmount"] == 54.99
    assert third["UnitAmount"] == 15
    assert invoice["TotalDiscount"] == round(149.42 - 134.47 + 5.01, 2)
    assert invoice["IsDiscounted"] is True
    assert invoice["TotalTax"] == round(13.45 + 5.50 + 3.00, 2)  # 10 % OUTPUT on account 200

    both = xero.put(
        "Invoices",
        invoice_body(abc, line(Quantity=1, UnitAmount=5, DiscountRate=1, DiscountAmount=1)),
    )
    assert errors_of(both) == [
        "Only one of DiscountRate or DiscountAmount can be used on a line item."
    ]
    mismatch = xero.put(
        "Invoices", invoice_body(abc, line(Quantity=3, UnitAmount=33.33, LineAmount=100))
    )
    assert errors_of(mismatch) == [
        "The line total 100.00 does not match the expected line total 99.99."
    ]

    two_places = xero.one(
        xero.put("Invoices", invoice_body(abc, line(Quantity=1000, UnitAmount=0.0612))), "Invoices"
    )
    assert two_places["LineItems"][0]["UnitAmount"] == 0.06
    assert two_places["SubTotal"] == 60
    four = xero.one(
        xero.put("Invoices", invoice_body(abc, line(Quantity=1000, UnitAmount=0.0612)), unitdp="4"),
        "Invoices",
    )
    assert four["SubTotal"] == 61.20
    shown = xero.one(xero.api("GET", f"Invoices/{four['InvoiceID']}"), "Invoices")
    assert shown["LineItems"][0]["UnitAmount"] == 0.06  # shown at 2 unless unitdp=4
    precise = xero.api("GET", f"Invoices/{four['InvoiceID']}", params={"unitdp": "4"})
    assert xero.one(precise, "Invoices")["LineItems"][0]["UnitAmount"] == 0.0612


def test_invoice_defaults_numbers_and_references(xero: Harness) -> None:
    abc = contact_id(xero, "ABC Furniture")
    invoice = xero.one(
        xero.put(
            "Invoices",
            invoice_body(abc, {"ItemCode": "design", "Quantity": 2}, Reference="Deal 7"),
        ),
        "Invoices",
    )
    assert invoice["InvoiceNumber"] == "INV-0003"  # after the two seeded
    item_line = invoice["LineItems"][0]
    assert (item_line["ItemCode"], item_line["UnitAmount"], item_line["AccountCode"]) == (
        "DESIGN",
        75,
        "200",
    )
    assert item_line["Description"] == "Custom design work"
    today = datetime.now(xero.sandbox.org.tz).date()
    assert invoice["DateString"] == f"{today.isoformat()}T00:00:00"
    assert ms_datetime(invoice["Date"]).date() == today
    # Due 30 days after the invoice date: the organisation's sales terms.
    assert invoice["DueDateString"] == f"{(today + timedelta(days=30)).isoformat()}T00:00:00"
    assert invoice["Reference"] == "Deal 7"
    assert invoice["Contact"]["Name"] == "ABC Furniture"
    assert invoice["CurrencyCode"] == "USD"

    dated = xero.one(
        xero.put(
            "Invoices",
            invoice_body(
                abc,
                line(Quantity=1, UnitAmount=1),
                Date="/Date(1767225600000+0000)/",
                DueDate="2026-02-01",
            ),
        ),
        "Invoices",
    )
    assert (dated["DateString"], dated["DueDateString"]) == (
        "2026-01-01T00:00:00",
        "2026-02-01T00:00:00",
    )
    bad_date = xero.put(
        "Invoices", invoice_body(abc, line(Quantity=1, UnitAmount=1), Date="20100510")
    )
    assert bad_date.json() == {
        "ErrorNumber": 14,
        "Type": "PostDataInvalidException",
        "Message": "The string '20100510' is not a valid AllXsd value.",
    }
    duplicate = xero.put(
        "Invoices", invoice_body(abc, line(Quantity=1, UnitAmount=1), InvoiceNumber="inv-0001")
    )
    assert errors_of(duplicate) == ["Invoice # must be unique."]
    assert duplicate.json()["Elements"][0]["HasErrors"] is True
    bill = xero.put(
        "Invoices",
        {
            **invoice_body(abc, line(Quantity=1, UnitAmount=1)),
            "Type": "ACCPAY",
            "InvoiceNumber": "INV-0001",
        },
    )
    assert bill.status_code == 200  # a bill's number is the supplier's: not unique
    discounted_bill = xero.put(
        "Invoices",
        {**invoice_body(abc, line(Quantity=1, UnitAmount=1, DiscountRate=5)), "Type": "ACCPAY"},
    )
    assert errors_of(discounted_bill) == [
        "Discounts are only supported on sales invoices (ACCREC)."
    ]
    credit = xero.put(
        "Invoices", {**invoice_body(abc, line(Quantity=1, UnitAmount=1)), "Type": "ACCRECCREDIT"}
    )
    assert errors_of(credit) == ["Invoice not of valid type for creation"]


def test_invoice_references_are_checked(xero: Harness) -> None:
    abc = contact_id(xero, "ABC Furniture")
    checks = {
        "610": "Account code '610' is not a valid code for this document.",  # receivables
        "999": "Account code '999' is not a valid code for this document.",
    }
    for code, message in checks.items():
        refused = xero.put(
            "Invoices", invoice_body(abc, line(Quantity=1, UnitAmount=1, AccountCode=code))
        )
        assert errors_of(refused) == [message]
    tax = xero.put("Invoices", invoice_body(abc, line(Quantity=1, UnitAmount=1, TaxType="VAT99")))
    assert "The TaxType code 'VAT99'" in errors_of(tax)[0]
    item = xero.put("Invoices", invoice_body(abc, {"ItemCode": "NOPE", "Quantity": 1}))
    assert errors_of(item) == ["Item code 'NOPE' is not valid."]
    nobody = xero.put("Invoices", {"Type": "ACCREC", "LineItems": [line(Quantity=1, UnitAmount=1)]})
    assert errors_of(nobody) == ["Contact cannot be empty."]
    stranger = xero.put(
        "Invoices",
        invoice_body("22222222-2222-2222-2222-222222222222", line(Quantity=1, UnitAmount=1)),
    )
    assert "does not exist" in errors_of(stranger)[0]
    approve_blank = xero.put("Invoices", invoice_body(abc, Status="AUTHORISED"))
    assert "at least one line item" in errors_of(approve_blank)[0]
    uncoded = xero.put(
        "Invoices",
        invoice_body(
            abc, {"Description": "x", "Quantity": 1, "UnitAmount": 5}, Status="AUTHORISED"
        ),
    )
    assert "Account code must be specified" in errors_of(uncoded)[0]
    currency = xero.put(
        "Invoices", invoice_body(abc, line(Quantity=1, UnitAmount=1), CurrencyCode="EUR")
    )
    assert "EUR" in errors_of(currency)[0]
    added = xero.api("PUT", "Currencies", body={"Code": "EUR"})
    assert xero.one(added, "Currencies") == {"Code": "EUR", "Description": "Euro"}
    euro = xero.put(
        "Invoices",
        invoice_body(abc, line(Quantity=1, UnitAmount=1), CurrencyCode="EUR", CurrencyRate=0.9),
    )
    assert xero.one(euro, "Invoices")["CurrencyRate"] == 0.9
    assert xero.sandbox.create_count("Invoices") == 1


def test_contact_by_name_creates_one_and_marks_customer(xero: Harness) -> None:
    first = xero.one(
        xero.put("Invoices", {"Type": "ACCREC", "Contact": {"Name": "Walk-in Ltd"}}), "Invoices"
    )
    again = xero.one(
        xero.put("Invoices", {"Type": "ACCREC", "Contact": {"Name": "walk-in ltd"}}), "Invoices"
    )
    assert first["Contact"]["ContactID"] == again["Contact"]["ContactID"]
    assert xero.sandbox.create_count("Contacts") == 1
    contact = xero.one(xero.api("GET", f"Contacts/{first['Contact']['ContactID']}"), "Contacts")
    assert contact["IsCustomer"] is True and contact["IsSupplier"] is False


def test_created_by_my_app_leaves_out_what_users_typed(xero: Harness) -> None:
    abc = contact_id(xero, "ABC Furniture")
    mine = xero.one(
        xero.put("Invoices", invoice_body(abc, line(Quantity=1, UnitAmount=1))), "Invoices"
    )
    theirs = xero.sandbox.ui_create("Invoices", invoice_body(abc, line(Quantity=2, UnitAmount=1)))
    assert theirs["InvoiceNumber"] == "INV-0004"
    listed = xero.api("GET", "Invoices", params={"createdByMyApp": "true"}).json()["Invoices"]
    assert [i["InvoiceID"] for i in listed] == [mine["InvoiceID"]]


def test_status_changes_follow_xeros_table(xero: Harness) -> None:
    abc = contact_id(xero, "ABC Furniture")
    invoice = xero.one(
        xero.put("Invoices", invoice_body(abc, line(Quantity=1, UnitAmount=100))), "Invoices"
    )
    path = f"Invoices/{invoice['InvoiceID']}"
    submitted = xero.one(xero.post(path, {"Status": "SUBMITTED"}), "Invoices")
    assert submitted["Status"] == "SUBMITTED"
    assert xero.one(xero.post(path, {"Status": "AUTHORISED"}), "Invoices")["Status"] == "AUTHORISED"
    for refused in ("DRAFT", "DELETED"):
        assert errors_of(xero.post(path, {"Status": refused})) == [
            "Invoice not of valid status for modification"
        ]
    # An authorised invoice with no payment can still be edited.
    edited = xero.one(
        xero.post(path, {"LineItems": [line(Quantity=2, UnitAmount=100)]}), "Invoices"
    )
    assert edited["Total"] == 220
    paid = xero.sandbox.ui_pay_invoice(invoice["InvoiceID"])
    assert (paid["Status"], paid["AmountDue"], paid["AmountPaid"]) == ("PAID", 0, 220)
    assert paid["Payments"][0]["Amount"] == 220
    assert errors_of(xero.post(path, {"LineItems": [line(Quantity=1, UnitAmount=1)]})) == [
        "This document cannot be edited as it has a payment or credit note allocated to it."
    ]
    assert "VOIDED cannot be applied" in errors_of(xero.post(path, {"Status": "VOIDED"}))[0]
    assert (
        xero.one(xero.post(path, {"Reference": "paid by wire"}), "Invoices")["Reference"]
        == "paid by wire"
    )
    draft = xero.one(
        xero.put("Invoices", invoice_body(abc, line(Quantity=1, UnitAmount=1))), "Invoices"
    )
    assert (
        xero.one(xero.post(f"Invoices/{draft['InvoiceID']}", {"Status": "DELETED"}), "Invoices")[
            "Status"
        ]
        == "DELETED"
    )
    assert errors_of(xero.put("Invoices", invoice_body(abc, Status="PAID"))) == [
        "Invoice not of valid status for creation"
    ]


def test_line_items_update_by_id_add_without_and_delete_when_left_out(xero: Harness) -> None:
    abc = contact_id(xero, "ABC Furniture")
    invoice = xero.one(
        xero.put(
            "Invoices",
            invoice_body(abc, line(Quantity=1, UnitAmount=10), line(Quantity=1, UnitAmount=20)),
        ),
        "Invoices",
    )
    kept, dropped = invoice["LineItems"]
    updated = xero.one(
        xero.post(
            f"Invoices/{invoice['InvoiceID']}",
            {
                "LineItems": [
                    {"LineItemID": kept["LineItemID"], "Quantity": 3},
                    line(Quantity=1, UnitAmount=5),
                ]
            },
        ),
        "Invoices",
    )
    ids = [x["LineItemID"] for x in updated["LineItems"]]
    assert ids[0] == kept["LineItemID"] and dropped["LineItemID"] not in ids
    assert [x["LineAmount"] for x in updated["LineItems"]] == [30, 5]
    status_only = xero.one(
        xero.post(f"Invoices/{invoice['InvoiceID']}", {"Status": "SUBMITTED"}), "Invoices"
    )
    assert len(status_only["LineItems"]) == 2  # no LineItems sent: lines kept
    retyped = xero.one(
        xero.post(f"Invoices/{invoice['InvoiceID']}", {"LineAmountTypes": "Inclusive"}), "Invoices"
    )
    assert (retyped["Total"], retyped["TotalTax"]) == (35, 3.18)  # 2.73 + 0.45, per line


# --- reading collections --------------------------------------------------------------------------


def test_paging_and_line_items_only_on_pages(xero: Harness) -> None:
    abc = contact_id(xero, "ABC Furniture")
    for n in range(5):
        assert (
            xero.put("Invoices", invoice_body(abc, line(Quantity=1, UnitAmount=n + 1))).status_code
            == 200
        )
    unpaged = xero.api("GET", "Invoices").json()
    assert "pagination" not in unpaged
    assert len(unpaged["Invoices"]) == 7
    assert all("LineItems" not in i for i in unpaged["Invoices"])
    page = xero.api("GET", "Invoices", params={"page": "2", "pageSize": "3"}).json()
    assert page["pagination"] == {"page": 2, "pageSize": 3, "pageCount": 3, "itemCount": 7}
    assert len(page["Invoices"]) == 3 and all(i["LineItems"] for i in page["Invoices"])
    assert xero.api("GET", "Invoices", params={"page": "1"}).json()["pagination"]["pageSize"] == 100
    capped = xero.api("GET", "Invoices", params={"page": "1", "pageSize": "5000"}).json()
    assert capped["pagination"]["pageSize"] == 1000
    summary = xero.api("GET", "Invoices", params={"summaryOnly": "true"}).json()
    assert "pagination" in summary and all("LineItems" not in i for i in summary["Invoices"])
    contacts = xero.api("GET", "Contacts", params={"page": "1", "summaryOnly": "true"}).json()
    assert all("Addresses" not in c for c in contacts["Contacts"])


def test_where_order_and_explicit_filters(xero: Harness) -> None:
    def names(**params: str) -> list[str]:
        response = xero.api("GET", "Contacts", params=params)
        assert response.status_code == 200, response.text
        return [c["Name"] for c in response.json()["Contacts"]]

    assert names(where='Name=="Boom FM"') == ["Boom FM"]
    assert names(where='Name="boom fm"') == ["Boom FM"]  # single "=" and any case
    assert names(where='Name.StartsWith("B") AND FirstName!="Jane"') == ["Bayside Club"]
    assert names(where='Name.Contains("Club") || Name.EndsWith("FM")') == [
        "Bayside Club",
        "Boom FM",
    ]
    assert names(where='EmailAddress!=null&&EmailAddress.StartsWith("accounts@")') == ["Boom FM"]
    assert names(order="Name DESC")[:2] == ["Ridgeway University", "City Limousines"]
    boom = contact_id(xero, "Boom FM")
    assert names(where=f'ContactID==Guid("{boom.upper()}")') == ["Boom FM"]
    assert names(IDs=f"{boom},{contact_id(xero, 'Bayside Club')}") == ["Bayside Club", "Boom FM"]
    assert names(searchTerm="limo") == ["City Limousines"]
    for bad in ('Nickname=="x"', "Name==", 'Name.Shout("x")', "Name == 5"):
        refused = xero.api("GET", "Contacts", params={"where": bad})
        assert refused.status_code == 400, bad
        assert refused.json()["Type"] == "QueryParseException"
    no_email = xero.put("Contacts", {"Name": "Quiet Co"})
    assert no_email.status_code == 200
    null_method = xero.api("GET", "Contacts", params={"where": 'EmailAddress.StartsWith("a")'})
    assert null_method.status_code == 400  # the docs' warning about optional elements
    assert xero.api("GET", "Contacts", params={"order": "Colour"}).status_code == 400

    invoices = xero.api(
        "GET",
        "Invoices",
        params={"where": 'Status=="AUTHORISED" AND Total > 100 AND Date >= DateTime(2000, 01, 01)'},
    ).json()["Invoices"]
    assert [i["InvoiceNumber"] for i in invoices] == ["INV-0001"]
    statuses = xero.api("GET", "Invoices", params={"Statuses": "DRAFT"}).json()["Invoices"]
    assert [i["InvoiceNumber"] for i in statuses] == ["INV-0002"]
    numbers = xero.api("GET", "Invoices", params={"InvoiceNumbers": "INV-0002,INV-0001"}).json()
    assert sorted(i["InvoiceNumber"] for i in numbers["Invoices"]) == ["INV-0001", "INV-0002"]
    by_contact = xero.api(
        "GET", "Invoices", params={"ContactIDs": contact_id(xero, "Bayside Club")}
    )
    assert [i["InvoiceNumber"] for i in by_contact.json()["Invoices"]] == ["INV-0002"]
    items = xero.api(
        "GET", "Items", params={"where": "IsSold==true AND SalesDetails.UnitPrice > 40"}
    ).json()
    assert [i["Code"] for i in items["Items"]] == ["DESIGN", "INSTALL"]
    accounts = xero.api("GET", "Accounts", params={"where": 'Type=="BANK"'}).json()["Accounts"]
    assert [a["Code"] for a in accounts] == ["090"]


def test_if_modified_since(xero: Harness) -> None:
    before = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    created = xero.one(xero.put("Contacts", {"Name": "Changed Today"}), "Contacts")
    for stamp in (
        before.strftime("%Y-%m-%dT%H:%M:%S"),
        before.strftime("%a, %d %b %Y %H:%M:%S GMT"),
    ):
        recent = xero.api("GET", "Contacts", headers=xero.headers(**{"If-Modified-Since": stamp}))
        assert [c["ContactID"] for c in recent.json()["Contacts"]] == [created["ContactID"]]
    future = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    assert (
        xero.api("GET", "Items", headers=xero.headers(**{"If-Modified-Since": future})).json()[
            "Items"
        ]
        == []
    )


# --- batches and request bodies -------------------------------------------------------------------


def test_summarized_errors_still_save_the_valid_elements(xero: Harness) -> None:
    batch = xero.put(
        "Contacts", {"Name": "Batch One"}, {"Name": "Boom FM"}, {"Name": "Batch Three"}
    )
    assert batch.status_code == 400
    assert [e["Name"] for e in batch.json()["Elements"]] == ["Boom FM"]
    saved = {c["Name"] for c in xero.api("GET", "Contacts").json()["Contacts"]}
    assert {"Batch One", "Batch Three"} <= saved  # non-transactional, as integrators observe
    per_element = xero.put(
        "Contacts", {"Name": "Batch Four"}, {"Name": "Boom FM"}, summarizeErrors="false"
    )
    assert per_element.status_code == 200
    ok, failed = per_element.json()["Contacts"]
    assert ok["StatusAttributeString"] == "OK" and uuid_like(ok["ContactID"])
    assert failed["StatusAttributeString"] == "ERROR"
    assert failed["ValidationErrors"][0]["Message"].startswith("The contact name Boom FM")
    assert xero.sandbox.create_count("Contacts") == 3


def test_request_body_refusals(xero: Harness) -> None:
    empty = xero.client.put(f"{API}/Contacts", headers=xero.headers(), content=b"")
    assert empty.json()["Type"] == "NoDataProcessedException"
    assert xero.put("Contacts").json()["Type"] == "NoDataProcessedException"
    broken = xero.client.put(f"{API}/Contacts", headers=xero.headers(), content=b"{nope")
    assert broken.json()["ErrorNumber"] == 14
    amount_types = xero.put(
        "Invoices", invoice_body(contact_id(xero, "Boom FM"), LineAmountTypes="NO_TAX")
    )
    assert amount_types.json()["Message"].startswith('Error converting value "NO_TAX"')
    single = xero.api("PUT", "Contacts", body={"Name": "Unwrapped"})  # no {"Contacts": [...]}
    assert xero.one(single, "Contacts")["Name"] == "Unwrapped"


# --- items, accounts, tax rates, currencies -------------------------------------------------------


def test_items(xero: Harness) -> None:
    item = xero.one(
        xero.put(
            "Items",
            {
                "Code": "CONSULT",
                "Name": "Consulting",
                "Description": "Advice",
                "SalesDetails": {"UnitPrice": 120.555, "AccountCode": "200"},
            },
        ),
        "Items",
    )
    assert item["SalesDetails"]["UnitPrice"] == 120.56
    assert (item["IsSold"], item["IsPurchased"], item["IsTrackedAsInventory"]) == (
        True,
        True,
        False,
    )
    assert errors_of(xero.put("Items", {"Code": "consult"})) == [
        "Item code 'consult' already exists."
    ]
    assert errors_of(xero.put("Items", {"Name": "No code"})) == ["Item code cannot be empty."]
    bad_account = xero.put("Items", {"Code": "Z", "SalesDetails": {"AccountCode": "777"}})
    assert "Account code '777'" in errors_of(bad_account)[0]
    by_code = xero.one(xero.post("Items", {"Code": "CONSULT", "IsSold": False}), "Items")
    assert by_code["ItemID"] == item["ItemID"]
    assert (by_code["Description"], by_code["SalesDetails"]) == ("", {})  # "will be nulled"
    assert xero.one(xero.api("GET", "Items/consult"), "Items")["Name"] == "Consulting"
    assert xero.api("DELETE", f"Items/{item['ItemID']}").status_code == 204
    assert xero.api("GET", f"Items/{item['ItemID']}").status_code == 404
    assert xero.api("DELETE", f"Items/{item['ItemID']}").status_code == 404


def test_accounts_tax_rates_and_currencies(xero: Harness) -> None:
    account = xero.one(
        xero.api(
            "PUT",
            "Accounts",
            body={
                "Code": "205",
                "Name": "Consulting Income",
                "Type": "REVENUE",
                "TaxType": "OUTPUT",
            },
        ),
        "Accounts",
    )
    assert (account["Class"], account["Status"]) == ("REVENUE", "ACTIVE")
    duplicate = xero.api(
        "PUT", "Accounts", body={"Code": "200", "Name": "Sales", "Type": "REVENUE"}
    )
    assert errors_of(duplicate) == ["Please enter a unique Code.", "Please enter a unique Name."]
    archived = xero.one(
        xero.post(f"Accounts/{account['AccountID']}", {"Status": "ARCHIVED"}), "Accounts"
    )
    assert archived["Status"] == "ARCHIVED"
    abc = contact_id(xero, "ABC Furniture")
    on_archived = xero.put(
        "Invoices", invoice_body(abc, line(Quantity=1, UnitAmount=1, AccountCode="205"))
    )
    assert "has been archived" in errors_of(on_archived)[0]
    assert xero.api("POST", "Accounts", body={"Code": "1"}).status_code == 501  # POST needs an id

    compound = xero.one(
        xero.api(
            "PUT",
            "TaxRates",
            body={
                "Name": "State + City",
                "TaxComponents": [
                    {"Name": "State", "Rate": 5},
                    {"Name": "City", "Rate": 2, "IsCompound": True},
                ],
            },
        ),
        "TaxRates",
    )
    assert compound["EffectiveRate"] == 7.1  # 2 % of 105
    renamed = xero.one(
        xero.api("POST", "TaxRates", body={"TaxType": compound["TaxType"], "Name": "Local"}),
        "TaxRates",
    )
    assert renamed["Name"] == "Local"
    assert errors_of(xero.api("POST", "TaxRates", body={"TaxType": "OUTPUT", "Name": "x"})) == [
        "System tax rates cannot be changed."
    ]
    assert xero.one(xero.api("GET", "TaxRates/OUTPUT"), "TaxRates")["EffectiveRate"] == 10
    assert errors_of(xero.api("PUT", "Currencies", body={"Code": "USD"})) == [
        "The currency USD has already been added."
    ]


# --- idempotency ----------------------------------------------------------------------------------


def test_idempotency_key_replays_and_refuses_a_different_request(xero: Harness) -> None:
    body = {"Contacts": [{"Name": "Once Only"}]}
    first = xero.api(
        "PUT", "Contacts", body=body, headers=xero.headers(**{"Idempotency-Key": "k-1"})
    )
    second = xero.api(
        "PUT", "Contacts", body=body, headers=xero.headers(**{"Idempotency-Key": "k-1"})
    )
    assert first.status_code == second.status_code == 200
    assert first.content == second.content
    assert xero.sandbox.create_count("Contacts") == 1
    other = xero.api(
        "PUT",
        "Contacts",
        body={"Contacts": [{"Name": "Twice"}]},
        headers=xero.headers(**{"Idempotency-Key": "k-1"}),
    )
    assert errors_of(other) == ["Idempotency Key: k-1 is used with a different request."]
    other_path = xero.api(
        "POST", "Contacts", body=body, headers=xero.headers(**{"Idempotency-Key": "k-1"})
    )
    assert other_path.status_code == 400
    too_long = xero.api(
        "PUT", "Contacts", body=body, headers=xero.headers(**{"Idempotency-Key": "x" * 129})
    )
    assert too_long.status_code == 400
    # Refusals are remembered too: the same request gets the same 400.
    refused = xero.api(
        "PUT",
        "Contacts",
        body={"Contacts": [{"Name": "Boom FM"}]},
        headers=xero.headers(**{"Idempotency-Key": "k-2"}),
    )
    xero.api(
        "POST",
        "Contacts/" + contact_id(xero, "Boom FM"),
        body={"Contacts": [{"Name": "Boom Radio"}]},
    )
    replayed = xero.api(
        "PUT",
        "Contacts",
        body={"Contacts": [{"Name": "Boom FM"}]},
        headers=xero.headers(**{"Idempotency-Key": "k-2"}),
    )
    assert replayed.status_code == 400 and replayed.content == refused.content
    xero.clock.advance(361)  # keys are kept 6 minutes
    later = xero.api(
        "PUT", "Contacts", body=body, headers=xero.headers(**{"Idempotency-Key": "k-1"})
    )
    assert later.status_code == 400  # run again: the name is now taken


def test_lost_response_then_retry_with_the_key_creates_once(xero: Harness) -> None:
    xero.client.post(
        "/_sandbox/faults", json={"kind": "drop_response", "path_prefix": f"{API}/Invoices"}
    )
    body = invoice_body(contact_id(xero, "ABC Furniture"), line(Quantity=1, UnitAmount=50))
    headers = xero.headers(**{"Idempotency-Key": "deal-7-v1"})
    lost = xero.api("PUT", "Invoices", body={"Invoices": [body]}, headers=headers)
    assert lost.status_code == 504
    retried = xero.api("PUT", "Invoices", body={"Invoices": [body]}, headers=headers)
    assert retried.status_code == 200
    assert xero.sandbox.create_count("Invoices") == 1
    stats = xero.client.get("/_sandbox/stats").json()
    assert stats["create"] == {"Invoices": 1}


# --- rate limits and faults -----------------------------------------------------------------------


def test_minute_limit(make_harness: Callable[..., Harness]) -> None:
    xero = make_harness(rate_per_minute=3)
    answers = [xero.api("GET", "Organisation") for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["X-MinLimit-Remaining"] for a in answers] == ["2", "1", "0", "0"]
    assert answers[0].headers["X-DayLimit-Remaining"] == "4999"
    assert answers[0].headers["X-AppMinLimit-Remaining"] == "9999"
    limited = answers[3]
    assert limited.headers["X-Rate-Limit-Problem"] == "minute"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert "rate%20limit%20exceeded" in limited.text
    xero.clock.advance(61)  # a fixed window: the next minute starts afresh
    assert xero.api("GET", "Organisation").status_code == 200


def test_day_and_app_limits(make_harness: Callable[..., Harness]) -> None:
    daily = make_harness(rate_per_day=2)
    assert [daily.api("GET", "Items").status_code for _ in range(3)] == [200, 200, 429]
    refused = daily.api("GET", "Items")
    assert refused.headers["X-Rate-Limit-Problem"] == "day"
    assert int(refused.headers["Retry-After"]) > 3600
    app = make_harness(app_rate_per_minute=1)
    assert app.api("GET", "Items").status_code == 200
    assert app.api("GET", "Items").headers["X-Rate-Limit-Problem"] == "appminute"


def test_concurrent_limit(make_harness: Callable[..., Harness]) -> None:
    xero = make_harness(concurrent_limit=1)
    xero.refresh()
    xero.client.post(
        "/_sandbox/faults",
        json={"kind": "timeout", "delay_s": 1.0, "path_prefix": f"{API}/Items"},
    )
    slow: list[httpx.Response] = []
    worker = threading.Thread(target=lambda: slow.append(xero.api("GET", "Items")))
    worker.start()
    for _ in range(500):  # wait until the slow call holds its slot
        if xero.sandbox.in_flight() == 1:
            break
        time.sleep(0.005)
    assert xero.sandbox.in_flight() == 1
    refused = xero.api("GET", "Contacts")
    worker.join()
    assert refused.status_code == 429
    assert refused.headers["X-Rate-Limit-Problem"] == "concurrent"
    assert "Retry-After" not in refused.headers
    assert slow[0].status_code == 200
    assert xero.sandbox.in_flight() == 0


def test_injected_faults_and_reset(xero: Harness) -> None:
    xero.client.post(
        "/_sandbox/faults",
        json={"kind": "rate_limit", "retry_after_s": 7, "path_prefix": f"{API}/Contacts"},
    )
    limited = xero.api("GET", "Contacts")
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "7")
    assert limited.headers["X-Rate-Limit-Problem"] == "minute"
    assert "X-MinLimit-Remaining" in limited.headers
    xero.client.post(
        "/_sandbox/faults", json={"kind": "error", "status": 503, "path_prefix": "/connect/token"}
    )
    assert (
        xero.token_request(grant_type="refresh_token", refresh_token=xero.refresh_token).status_code
        == 503
    )
    xero.put("Contacts", {"Name": "Temporary"})
    assert xero.client.post("/_sandbox/reset").status_code == 200
    names = [c["Name"] for c in xero.client.get("/_sandbox/entities/Contacts").json()["Contacts"]]
    assert "Temporary" not in names and len(names) == 5
    assert xero.api("GET", "Contacts").status_code == 200  # tokens survive a reset


# --- webhooks -------------------------------------------------------------------------------------


@dataclass
class Receiver:
    """A webhook endpoint that checks Xero's signature, as the docs ask receivers to."""

    key: str
    mode: str = "correct"  # correct | always_ok | chatty | fail_events
    fail_first: int = 0
    received: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Flask:
        app = Flask("receiver")

        @app.post("/hook")
        def hook() -> Response:
            body = request.get_data()
            valid = hmac.compare_digest(
                sign(self.key, body), request.headers.get("x-xero-signature", "")
            )
            events = json.loads(body)["events"]
            with self.lock:
                if events:
                    self.received.append((body, dict(request.headers)))
                failing = bool(events) and (
                    self.mode == "fail_events" or len(self.received) <= self.fail_first
                )
            if self.mode == "always_ok":
                return Response("", status=200)
            if failing:
                return Response("", status=500)
            status = 200 if valid else 401
            return Response("thanks" if self.mode == "chatty" else "", status=status)

        return app


@pytest.fixture
def receiver(xero: Harness) -> Iterator[tuple[Receiver, str]]:
    recv = Receiver(xero.config.webhook_key)
    server = SandboxServer(recv.app(), 0).start()
    yield recv, f"{server.url}/hook"
    server.stop()


def test_intent_to_receive(xero: Harness, receiver: tuple[Receiver, str]) -> None:
    recv, url = receiver
    xero.sandbox.webhook_url = url
    xero.put("Contacts", {"Name": "Before Validation"})
    assert xero.sandbox.webhook_status() == "NOT_VALIDATED"
    assert xero.sandbox.deliveries == []  # nothing is sent to an unvalidated URL
    recv.mode = "always_ok"
    failed = xero.client.post("/_sandbox/webhooks/intent-to-receive").json()
    assert failed["ok"] is False and failed["status"] == "FAILED"
    wrongly_signed = next(c for c in failed["checks"] if not c["correctly_signed"])
    assert (wrongly_signed["status"], wrongly_signed["passed"]) == (200, False)
    recv.mode = "chatty"
    assert xero.sandbox.intent_to_receive().ok is False  # a body is not allowed
    recv.mode = "correct"
    outcome = xero.sandbox.intent_to_receive()
    assert outcome.ok
    assert sorted((c.correctly_signed, c.status) for c in outcome.checks) == [
        (False, 401),
        (True, 200),
    ]
    status = xero.client.get("/_sandbox/webhooks").json()
    assert status["status"] == "OK" and status["intentToReceive"]["ok"] is True


def test_events_are_signed_and_describe_the_change(
    xero: Harness, receiver: tuple[Receiver, str]
) -> None:
    recv, url = receiver
    xero.sandbox.webhook_url = url
    assert xero.sandbox.intent_to_receive().ok
    invoice = xero.one(
        xero.put("Invoices", {"Type": "ACCREC", "Contact": {"Name": "Hooked Ltd"}}), "Invoices"
    )
    xero.put("Items", {"Code": "NOHOOK"})  # items have no webhooks
    xero.post(f"Invoices/{invoice['InvoiceID']}", {"Reference": "R-1"})
    assert xero.sandbox.wait_for_webhooks_idle(10)
    assert len(recv.received) == 2
    body, headers = recv.received[0]
    assert headers["X-Xero-Signature"] == sign(xero.config.webhook_key, body)
    payload = json.loads(body)
    created = sorted((e["eventCategory"], e["eventType"]) for e in payload["events"])
    assert created == [("CONTACT", "CREATE"), ("INVOICE", "CREATE")]
    event = next(e for e in payload["events"] if e["eventCategory"] == "INVOICE")
    assert event["resourceId"] == invoice["InvoiceID"]
    assert event["resourceUrl"] == f"{xero.server.url}{API}/Invoices/{invoice['InvoiceID']}"
    assert (event["tenantId"], event["tenantType"]) == (xero.config.tenant_id, "ORGANISATION")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}", event["eventDateUtc"])
    assert (payload["firstEventSequence"], payload["lastEventSequence"]) == (1, 2)
    assert re.fullmatch(r"[A-Z]{20}", payload["entropy"])
    update = json.loads(recv.received[1][0])
    assert [e["eventType"] for e in update["events"]] == ["UPDATE"]
    assert update["firstEventSequence"] == 3


def test_ui_changes_send_webhooks_and_failures_are_retried(
    xero: Harness, receiver: tuple[Receiver, str]
) -> None:
    recv, url = receiver
    recv.fail_first = 1
    xero.sandbox.webhook_url = url
    assert xero.sandbox.intent_to_receive().ok
    contact = xero.sandbox.ui_create("Contacts", {"Name": "Typed In Xero"})
    xero.sandbox.ui_update("Contacts", contact["ContactID"], {"EmailAddress": "ui@example.com"})
    admin = xero.client.post(
        f"/_sandbox/ui/Contacts/{contact['ContactID']}", json={"FirstName": "Ui"}
    )
    assert admin.json()["FirstName"] == "Ui"
    assert xero.sandbox.wait_for_webhooks_idle(10)
    assert [d.attempts for d in xero.sandbox.deliveries] == [[500, 200], [200], [200]]
    kinds = [json.loads(b)["events"][0]["eventType"] for b, _ in recv.received[1:]]
    assert kinds == ["CREATE", "UPDATE", "UPDATE"]
    assert xero.sandbox.webhook_status() == "OK"


def test_a_delivery_out_of_retries_disables_the_subscription(
    make_harness: Callable[..., Harness],
) -> None:
    xero = make_harness(webhook_retry_delays_s=[0.01, 0.01])
    recv = Receiver(xero.config.webhook_key, mode="fail_events")
    server = SandboxServer(recv.app(), 0).start()
    try:
        xero.sandbox.webhook_url = f"{server.url}/hook"
        assert xero.sandbox.intent_to_receive().ok
        xero.put("Contacts", {"Name": "Never Heard"})
        assert xero.sandbox.wait_for_webhooks_idle(10)
        assert xero.sandbox.deliveries[0].attempts == [500, 500, 500]
        assert xero.sandbox.webhook_status() == "DISABLED"
        xero.put("Contacts", {"Name": "Not Sent"})
        assert len(xero.sandbox.deliveries) == 1
        recv.mode = "correct"
        assert xero.sandbox.intent_to_receive().ok  # re-enabling validates again
        xero.put("Contacts", {"Name": "Heard"})
        assert xero.sandbox.wait_for_webhooks_idle(10)
        assert xero.sandbox.deliveries[-1].attempts == [200]
    finally:
        server.stop()


# --- seed data ------------------------------------------------------------------------------------


def test_seeded_demo_organisation(make_harness: Callable[..., Harness]) -> None:
    xero = make_harness(base_currency="GBP", tenant_name="Demo Company (UK)", country="GB")
    accounts = {a["Code"]: a for a in xero.api("GET", "Accounts").json()["Accounts"]}
    assert (accounts["200"]["Name"], accounts["200"]["Type"]) == ("Sales", "REVENUE")
    assert accounts["400"]["Name"] == "Advertising"
    assert accounts["610"]["SystemAccount"] == "DEBTORS"
    tax_types = {t["TaxType"] for t in xero.api("GET", "TaxRates").json()["TaxRates"]}
    assert {"OUTPUT", "INPUT", "NONE", "EXEMPTOUTPUT"} <= tax_types
    assert xero.api("GET", "Currencies").json()["Currencies"] == [
        {"Code": "GBP", "Description": "British Pound"}
    ]
    items = {i["Name"] for i in xero.api("GET", "Items").json()["Items"]}
    assert {"Services", "Hours"} <= items
    organisation = xero.api("GET", "Organisation").json()["Organisations"][0]
    assert (organisation["Name"], organisation["BaseCurrency"]) == ("Demo Company (UK)", "GBP")
    invoices = xero.api("GET", "Invoices").json()["Invoices"]
    assert [(i["InvoiceNumber"], i["Status"], i["Total"]) for i in invoices] == [
        ("INV-0001", "AUTHORISED", 220),
        ("INV-0002", "DRAFT", 115.5),
    ]
    assert all(i["CurrencyCode"] == "GBP" for i in invoices)


# --- the where parser on its own ------------------------------------------------------------------


def test_where_parser() -> None:
    def known(name: str) -> bool:
        return name.lower() in {"name", "total", "date", "status", "contact"}

    row = {
        "Name": "Boom FM",
        "Total": 10.5,
        "Date": "/Date(1420070400000+0000)/",
        "Status": "PAID",
        "Contact": {"Name": "X"},
    }
    matches = {
        'Name=="boom fm"': True,
        "NOT (Total > 10)": False,
        "Total >= 10.5 and Total <= 10.5": True,
        "Date == DateTime(2015, 1, 1)": True,
        "Date < DateTime(2015, 1, 1, 0, 0, 1)": True,
        'Status != "DRAFT" OR Total < 0': True,
        'Contact.Name == "x"': True,
        'Name.ToUpper() == "BOOM FM"': True,
        'Name <> "Boom FM"': False,
    }
    for text, expected in matches.items():
        assert xero_where.parse(text, "Invoice", known).matches(row) is expected, text
    for bad in (
        "",
        "Name ==",
        "Total > 1 AND",
        "Colour == 1",
        "DateTime(2015, 13, 1) == Date",
        '"x"',
    ):
        with pytest.raises(xero_where.WhereError):
            xero_where.parse(bad, "Invoice", known).matches(row)
    assert xero_where.parse_order("Name DESC, Total", "Invoice", known) == [
        (("Name",), True),
        (("Total",), False),
    ]
