"""The QuickBooks Online sandbox behaves like Intuit documents it, over real HTTP."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from flask import Flask, Response, request

from local.sandboxes import quickbooks_query
from local.sandboxes.base import SandboxServer
from local.sandboxes.quickbooks import QuickBooksSandbox, QuickBooksSandboxConfig
from tests.fakes import OffsetClock

DAY = 24 * 3600.0


@dataclass
class Harness:
    sandbox: QuickBooksSandbox
    server: SandboxServer
    client: httpx.Client
    clock: OffsetClock
    refresh_token: str
    access_token: str = ""

    @property
    def config(self) -> QuickBooksSandboxConfig:
        return self.sandbox.config

    def token_request(self, **form: str) -> httpx.Response:
        auth = (self.config.client_id, self.config.client_secret)
        return self.client.post("/oauth2/v1/tokens/bearer", auth=auth, data=form)

    def refresh(self) -> dict[str, Any]:
        response = self.token_request(grant_type="refresh_token", refresh_token=self.refresh_token)
        assert response.status_code == 200, response.text
        tokens: dict[str, Any] = response.json()
        self.refresh_token = tokens["refresh_token"]
        self.access_token = tokens["access_token"]
        return tokens

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if not self.access_token:
            self.refresh()
        headers = {"Authorization": f"Bearer {self.access_token}", "Accept": "application/json"}
        headers.update(kwargs.pop("headers", {}))
        params = {"minorversion": "75", **kwargs.pop("params", {})}
        url = f"/v3/company/{self.config.realm_id}/{path}"
        return self.client.request(method, url, headers=headers, params=params, **kwargs)

    def query(self, sql: str) -> httpx.Response:
        return self.api("GET", "query", params={"query": sql})

    def create(self, entity: str, body: dict[str, Any], **params: str) -> httpx.Response:
        return self.api("POST", entity.lower(), json=body, params=params)


def start_harness(clock: OffsetClock, **overrides: Any) -> Harness:
    config = QuickBooksSandboxConfig(clock=clock, **overrides)
    sandbox = QuickBooksSandbox(config)
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
    """One server for the module: stopping a werkzeug server costs ~0.5 s each.

    Its per-second limit is raised so a test's burst of calls is never throttled;
    the throttling tests use their own sandbox with Intuit's limits shrunk.
    """
    harness = start_harness(clock, rate_per_second=100)
    yield harness
    stop_harness(harness)


@pytest.fixture
def qbo(shared: Harness, clock: OffsetClock) -> Harness:
    """The shared sandbox, reset to its seeded company with a fresh access token."""
    clock.offset = 0.0
    shared.sandbox.reset()
    shared.sandbox.webhook_url = None
    shared.refresh()
    return shared


@pytest.fixture
def make_harness(clock: OffsetClock) -> Iterator[Callable[..., Harness]]:
    """A dedicated sandbox for tests that need a non-default config."""
    clock.offset = 0.0
    started: list[Harness] = []

    def make(**overrides: Any) -> Harness:
        harness = start_harness(clock, **overrides)
        started.append(harness)
        return harness

    yield make
    for harness in started:
        stop_harness(harness)


@dataclass
class Receiver:
    """A webhook endpoint that records deliveries and can fail the first few."""

    fail_first: int = 0
    received: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Flask:
        app = Flask("receiver")

        @app.post("/hook")
        def hook() -> Response:
            with self.lock:
                self.received.append((request.get_data(), dict(request.headers)))
                failing = len(self.received) <= self.fail_first
            return Response("", status=500 if failing else 200)

        return app


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    recv = Receiver()
    server = SandboxServer(recv.app(), 0).start()
    yield recv, f"{server.url}/hook"
    server.stop()


def company_now(qbo: Harness) -> datetime:
    return datetime.fromtimestamp(qbo.clock(), qbo.sandbox.tz)


def fault_of(response: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["Fault"]["Error"][0]
    return error


def new_customer(qbo: Harness, name: str, **extra: Any) -> dict[str, Any]:
    response = qbo.create("Customer", {"DisplayName": name, **extra})
    assert response.status_code == 200, response.text
    customer: dict[str, Any] = response.json()["Customer"]
    return customer


def sales_line(
    item: str, qty: float, price: float, amount: float | None = None, tax_code: str | None = None
) -> dict[str, Any]:
    detail: dict[str, Any] = {"ItemRef": {"value": item}, "Qty": qty, "UnitPrice": price}
    if tax_code:
        detail["TaxCodeRef"] = {"value": tax_code}
    return {
        "Amount": qty * price if amount is None else amount,
        "DetailType": "SalesItemLineDetail",
        "SalesItemLineDetail": detail,
    }


# --- OAuth -------------------------------------------------------------------------


def test_refresh_rotates_token_and_old_one_works_only_within_grace(qbo: Harness) -> None:
    original = qbo.refresh_token
    first = qbo.refresh()
    assert first["refresh_token"] != original
    assert first["expires_in"] == 3600
    assert first["x_refresh_token_expires_in"] == 8726400
    assert first["token_type"] == "bearer"

    qbo.clock.advance(23 * 3600)
    retry = qbo.token_request(grant_type="refresh_token", refresh_token=original)
    assert retry.status_code == 200
    assert retry.json()["refresh_token"] not in (original, first["refresh_token"])

    qbo.clock.advance(2 * 3600)  # 25 h after the original was superseded
    late = qbo.token_request(grant_type="refresh_token", refresh_token=original)
    assert late.status_code == 400
    assert late.json() == {"error": "invalid_grant"}
    assert late.headers["intuit_tid"]


def test_issued_tokens_are_every_refresh_and_access_token_handed_out(qbo: Harness) -> None:
    before = qbo.sandbox.issued_tokens()
    first, second = qbo.refresh(), qbo.refresh()

    after = qbo.sandbox.issued_tokens()
    assert after["refresh"][0] == qbo.config.initial_refresh_token
    assert after == {
        "refresh": [*before["refresh"], first["refresh_token"], second["refresh_token"]],
        "access": [*before["access"], first["access_token"], second["access_token"]],
    }


def test_token_endpoint_rejects_bad_client_and_unknown_token(qbo: Harness) -> None:
    bad_client = qbo.client.post(
        "/oauth2/v1/tokens/bearer",
        auth=(qbo.config.client_id, "wrong"),
        data={"grant_type": "refresh_token", "refresh_token": qbo.refresh_token},
    )
    assert bad_client.status_code == 401
    assert bad_client.json() == {"error": "invalid_client"}
    unknown = qbo.token_request(grant_type="refresh_token", refresh_token="nope")
    assert (unknown.status_code, unknown.json()) == (400, {"error": "invalid_grant"})
    odd = qbo.token_request(grant_type="password")
    assert odd.json() == {"error": "unsupported_grant_type"}


def test_authorization_code_is_single_use(qbo: Harness) -> None:
    code = qbo.client.post("/_sandbox/oauth/code").json()["code"]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": "https://x/cb"}
    assert qbo.token_request(**form).status_code == 200
    assert qbo.token_request(**form).json() == {"error": "invalid_grant"}


def test_expired_access_token_gets_lower_case_fault(qbo: Harness) -> None:
    qbo.refresh()
    assert qbo.api("GET", "customer/1").status_code == 200
    qbo.clock.advance(3601)
    response = qbo.api("GET", "customer/1")
    assert response.status_code == 401
    body = response.json()
    assert "Fault" not in body
    error = body["fault"]["error"][0]
    assert body["fault"]["type"] == "AUTHENTICATION"
    assert error["code"] == "3200"
    assert error["message"] == "message=AuthenticationFailed; errorCode=003200; statusCode=401"
    assert error["detail"].startswith("Token expired: ")
    missing = qbo.client.get(f"/v3/company/{qbo.config.realm_id}/customer/1")
    assert missing.status_code == 401


def test_other_realm_is_refused(qbo: Harness) -> None:
    qbo.refresh()
    response = qbo.client.get(
        "/v3/company/999/customer/1", headers={"Authorization": f"Bearer {qbo.access_token}"}
    )
    assert response.status_code == 403
    assert response.json()["fault"]["error"][0]["code"] == "3100"


# --- entities ----------------------------------------------------------------------


def test_create_read_and_sparse_update_bump_sync_token(qbo: Harness) -> None:
    created = new_customer(qbo, "Acme Rockets", PrimaryEmailAddr={"Address": "a@acme.test"})
    assert created["SyncToken"] == "0"
    assert created["Id"].isdigit()
    assert created["Active"] is True
    assert created["CurrencyRef"]["value"] == "USD"

    read = qbo.api("GET", f"customer/{created['Id']}")
    assert read.status_code == 200
    assert set(read.json()) == {"Customer", "time"}
    assert read.json()["Customer"]["DisplayName"] == "Acme Rockets"

    qbo.clock.advance(5)
    sparse = {"Id": created["Id"], "SyncToken": "0", "sparse": True, "CompanyName": "Acme Inc"}
    updated = qbo.create("Customer", sparse).json()["Customer"]
    assert updated["SyncToken"] == "1"
    assert updated["CompanyName"] == "Acme Inc"
    assert updated["PrimaryEmailAddr"] == {"Address": "a@acme.test"}
    assert updated["MetaData"]["LastUpdatedTime"] > created["MetaData"]["LastUpdatedTime"]
    assert updated["MetaData"]["CreateTime"] == created["MetaData"]["CreateTime"]


def test_full_update_clears_omitted_fields(qbo: Harness) -> None:
    created = new_customer(qbo, "Full Co", PrimaryEmailAddr={"Address": "f@co.test"})
    body = {"Id": created["Id"], "SyncToken": "0", "DisplayName": "Full Co"}
    updated = qbo.create("Customer", body).json()["Customer"]
    assert "PrimaryEmailAddr" not in updated
    assert updated["SyncToken"] == "1"


def test_stale_sync_token_is_5010(qbo: Harness) -> None:
    created = new_customer(qbo, "Stale Ltd")
    first = {"Id": created["Id"], "SyncToken": "0", "sparse": True, "Notes": "one"}
    assert qbo.create("Customer", first).status_code == 200
    again = qbo.create("Customer", {**first, "Notes": "two"})
    assert again.status_code == 400
    assert fault_of(again)["code"] == "5010"
    assert fault_of(again)["Message"] == "Stale Object Error"
    assert again.json()["Fault"]["type"] == "ValidationFault"


def test_duplicate_names_are_6240(qbo: Harness) -> None:
    response = qbo.create("Customer", {"DisplayName": "amy's bird sanctuary"})
    assert response.status_code == 400
    error = fault_of(response)
    assert error["code"] == "6240"
    assert error["Message"] == "Duplicate Name Exists Error"
    assert "already using this name" in error["Detail"]
    item = qbo.create(
        "Item", {"Name": "Design", "Type": "Service", "IncomeAccountRef": {"value": "1"}}
    )
    assert fault_of(item)["code"] == "6240"


def test_a_taken_doc_number_is_6140_naming_its_invoice_unless_duplicates_are_allowed(
    qbo: Harness,
) -> None:
    body = {"CustomerRef": {"value": "1"}, "Line": [sales_line("3", 1, 75)], "DocNumber": "D-1"}
    first = qbo.create("Invoice", body).json()["Invoice"]

    taken = qbo.create("Invoice", body)
    own = qbo.create(
        "Invoice", {**body, "Id": first["Id"], "SyncToken": first["SyncToken"], "sparse": True}
    )
    allowed = qbo.create("Invoice", body, include="allowduplicatedocnum")

    assert taken.status_code == 400
    assert fault_of(taken)["code"] == "6140"
    assert fault_of(taken)["Detail"].endswith(
        f"DocNumber=D-1 is assigned to TxnType=Invoice with TxnId={first['Id']}"
    )
    assert allowed.json()["Invoice"]["DocNumber"] == "D-1"
    assert own.status_code == 200, "an invoice keeps its own number on update"


def test_customer_needs_a_name(qbo: Harness) -> None:
    response = qbo.create("Customer", {"CompanyName": "No Display"})
    assert fault_of(response)["code"] == "6080"
    named = qbo.create("Customer", {"GivenName": "Ada", "FamilyName": "Lovelace"})
    assert named.json()["Customer"]["DisplayName"] == "Ada Lovelace"


def test_invoice_validation(qbo: Harness) -> None:
    mismatch = qbo.create(
        "Invoice", {"CustomerRef": {"value": "1"}, "Line": [sales_line("3", 2, 75, amount=149)]}
    )
    assert mismatch.status_code == 400
    assert fault_of(mismatch)["code"] == "6070"
    assert "Amount is not equal to Qty * UnitPrice" in fault_of(mismatch)["Detail"]

    no_customer = qbo.create("Invoice", {"Line": [sales_line("3", 1, 75)]})
    assert fault_of(no_customer)["code"] == "2020"
    no_lines = qbo.create("Invoice", {"CustomerRef": {"value": "1"}, "Line": []})
    assert fault_of(no_lines)["code"] == "2020"
    bad_item = qbo.create(
        "Invoice", {"CustomerRef": {"value": "1"}, "Line": [sales_line("999", 1, 5)]}
    )
    assert fault_of(bad_item)["code"] == "2500"
    bad_customer = qbo.create(
        "Invoice", {"CustomerRef": {"value": "999"}, "Line": [sales_line("3", 1, 75)]}
    )
    assert fault_of(bad_customer)["code"] == "2500"
    assert qbo.sandbox.create_count("Invoice") == 0


def test_invoice_totals_discount_tax_and_defaults(qbo: Harness) -> None:
    body = {
        "CustomerRef": {"value": "1"},
        "SalesTermRef": {"value": "2"},
        "TxnDate": "2026-11-01",
        "Line": [
            sales_line("3", 2, 75, tax_code="TAX"),
            sales_line("4", 1, 50),
            {
                "DetailType": "DiscountLineDetail",
                "Amount": 0,
                "DiscountLineDetail": {"PercentBased": True, "DiscountPercent": 10},
            },
        ],
        "TxnTaxDetail": {"TxnTaxCodeRef": {"value": "2"}},
    }
    invoice = qbo.create("Invoice", body).json()["Invoice"]
    # subtotal 200, discount 20, taxable 150 less its 10 % share = 135 at 8 % = 10.80
    assert invoice["TotalAmt"] == 190.8
    assert invoice["Balance"] == 190.8
    assert invoice["TxnTaxDetail"]["TotalTax"] == 10.8
    assert invoice["Line"][-1] == {
        "Amount": 200.0,
        "DetailType": "SubTotalLineDetail",
        "SubTotalLineDetail": {},
    }
    assert invoice["DueDate"] == "2026-11-16"
    assert invoice["DocNumber"] == "1003"
    assert invoice["CurrencyRef"]["value"] == "USD"

    plain = qbo.create("Invoice", {"CustomerRef": {"value": "1"}, "Line": [sales_line("4", 1, 50)]})
    defaulted = plain.json()["Invoice"]
    today = company_now(qbo).date()
    assert defaulted["TxnDate"] == today.isoformat()
    assert defaulted["DocNumber"] == "1004"
    assert defaulted["DueDate"] == (today + timedelta(days=30)).isoformat()  # Amy's Net 30


def test_amounts_are_held_at_the_currencys_minor_unit(
    make_harness: Callable[..., Harness],
) -> None:
    kwd = make_harness(home_currency="KWD")
    # 3 × 1.2345 = 3.7035: a line that dropped the dinar's third decimal is refused.
    dropped = kwd.create(
        "Invoice", {"CustomerRef": {"value": "1"}, "Line": [sales_line("3", 3, 1.2345, 3.70)]}
    )
    assert fault_of(dropped)["code"] == "6070"
    invoice = kwd.create(
        "Invoice",
        {
            "CustomerRef": {"value": "1"},
            "Line": [
                sales_line("3", 3, 1.2345, 3.704),
                {"DetailType": "DiscountLineDetail", "Amount": 0.0015, "DiscountLineDetail": {}},
            ],
        },
    ).json()["Invoice"]
    assert invoice["TotalAmt"] == 3.702
    applied = {"Amount": 3.702, "LinkedTxn": [{"TxnId": invoice["Id"], "TxnType": "Invoice"}]}
    paid = kwd.create(
        "Payment", {"CustomerRef": {"value": "1"}, "TotalAmt": 3.702, "Line": [applied]}
    )
    assert paid.json()["Payment"]["TotalAmt"] == 3.702
    assert kwd.api("GET", f"invoice/{invoice['Id']}").json()["Invoice"]["Balance"] == 0

    jpy = make_harness(home_currency="JPY")
    body = {
        "CustomerRef": {"value": "1"},
        "Line": [
            sales_line("3", 3, 333.5, 1001, tax_code="TAX"),  # 1000.5, half up
            {
                "DetailType": "DiscountLineDetail",
                "Amount": 0,
                "DiscountLineDetail": {"PercentBased": True, "DiscountPercent": 10},
            },
        ],
        "TxnTaxDetail": {"TxnTaxCodeRef": {"value": "2"}},
    }
    yen = jpy.create("Invoice", body).json()["Invoice"]
    # Discount 100.1 → 100; tax 8 % of 901 = 72.08 → 72; every amount in whole yen.
    assert (yen["Line"][1]["Amount"], yen["TxnTaxDetail"]["TotalTax"]) == (100, 72)
    assert yen["TotalAmt"] == 973
    rounded_down = jpy.create(
        "Invoice", {"CustomerRef": {"value": "1"}, "Line": [sales_line("3", 3, 333.5, 1000)]}
    )
    assert fault_of(rounded_down)["code"] == "6070"
    absurd = jpy.create(
        "Invoice", {"CustomerRef": {"value": "1"}, "Line": [sales_line("3", 1, 1e30, 1e30)]}
    )
    assert (absurd.status_code, fault_of(absurd)["code"]) == (400, "2010")


def test_payment_reduces_invoice_and_customer_balance(qbo: Harness) -> None:
    customer = new_customer(qbo, "Payer")
    invoice = qbo.create(
        "Invoice", {"CustomerRef": {"value": customer["Id"]}, "Line": [sales_line("4", 2, 50)]}
    ).json()["Invoice"]
    payment_body = {
        "CustomerRef": {"value": customer["Id"]},
        "TotalAmt": 60,
        "Line": [{"Amount": 60, "LinkedTxn": [{"TxnId": invoice["Id"], "TxnType": "Invoice"}]}],
    }
    payment = qbo.create("Payment", payment_body).json()["Payment"]
    assert payment["UnappliedAmt"] == 0
    after = qbo.api("GET", f"invoice/{invoice['Id']}").json()["Invoice"]
    assert after["Balance"] == 40.0
    assert after["LinkedTxn"] == [{"TxnId": payment["Id"], "TxnType": "Payment"}]
    assert qbo.api("GET", f"customer/{customer['Id']}").json()["Customer"]["Balance"] == 40.0

    locked = qbo.create(
        "Invoice", {"Id": invoice["Id"], "SyncToken": invoice["SyncToken"]}, operation="delete"
    )
    assert fault_of(locked)["code"] == "6000"
    deleted = qbo.create(
        "Payment", {"Id": payment["Id"], "SyncToken": "0"}, operation="delete"
    ).json()["Payment"]
    assert deleted == {"domain": "QBO", "status": "Deleted", "Id": payment["Id"]}
    assert qbo.api("GET", f"invoice/{invoice['Id']}").json()["Invoice"]["Balance"] == 100.0


def test_delete_invoice_and_not_found(qbo: Harness) -> None:
    invoice = qbo.create(
        "Invoice", {"CustomerRef": {"value": "1"}, "Line": [sales_line("4", 1, 50)]}
    ).json()["Invoice"]
    stale = qbo.create("Invoice", {"Id": invoice["Id"], "SyncToken": "7"}, operation="delete")
    assert fault_of(stale)["code"] == "5010"
    gone = qbo.create("Invoice", {"Id": invoice["Id"], "SyncToken": "0"}, operation="delete")
    assert gone.json()["Invoice"]["status"] == "Deleted"
    missing = qbo.api("GET", f"invoice/{invoice['Id']}")
    assert missing.status_code == 400
    assert fault_of(missing)["code"] == "610"
    customer_delete = qbo.create("Customer", {"Id": "1", "SyncToken": "0"}, operation="delete")
    assert fault_of(customer_delete)["code"] == "500"


# --- query -------------------------------------------------------------------------


def names(response: httpx.Response, entity: str = "Customer") -> list[str]:
    assert response.status_code == 200, response.text
    rows = response.json()["QueryResponse"].get(entity, [])
    return [r.get("DisplayName") or r.get("Name") for r in rows]


def test_query_filters(qbo: Harness) -> None:
    assert names(qbo.query("select * from Customer where DisplayName = 'Cool Cars'")) == [
        "Cool Cars"
    ]
    assert names(qbo.query("SELECT * FROM customer WHERE DisplayName LIKE 'd%'")) == [
        "Diego Rodriguez",
        "Dukes Basketball Camp",
    ]
    assert names(qbo.query("select * from Customer where Id in ('1', '3')")) == [
        "Amy's Bird Sanctuary",
        "Cool Cars",
    ]
    assert names(
        qbo.query(r"select * from Customer where DisplayName = 'Amy\'s Bird Sanctuary'")
    ) == ["Amy's Bird Sanctuary"]
    assert names(
        qbo.query("select * from Customer where PrimaryEmailAddr = 'surf@intuit.com'")
    ) == ["Bill's Windsurf Shop"]
    assert names(
        qbo.query("select * from Item where Type = 'Service' and UnitPrice > 40"), "Item"
    ) == [
        "Design",
        "Installation",
    ]


def test_invoices_are_queried_by_due_date_and_balance_and_only_filterable_properties(
    qbo: Harness,
) -> None:
    def invoice(due: str, qty: int) -> str:
        body = {"CustomerRef": {"value": "1"}, "DueDate": due, "Line": [sales_line("3", qty, 75)]}
        created = qbo.create("Invoice", body)
        assert created.status_code == 200, created.text
        return str(created.json()["Invoice"]["Id"])

    first, last = invoice("2031-03-01", 1), invoice("2031-03-31", 2)
    invoice("2031-04-01", 1)
    paid = invoice("2031-03-15", 1)
    payment = {
        "CustomerRef": {"value": "1"},
        "TotalAmt": 75,
        "Line": [{"Amount": 75, "LinkedTxn": [{"TxnId": paid, "TxnType": "Invoice"}]}],
    }
    assert qbo.create("Payment", payment).status_code == 200

    found = qbo.query(
        "select * from Invoice where DueDate >= '2031-03-01' and DueDate < '2031-04-01'"
        " and Balance > '0'"
    )

    assert found.status_code == 200, found.text
    assert [i["Id"] for i in found.json()["QueryResponse"]["Invoice"]] == [first, last]
    for prop, sql in (
        ("PrivateNote", "select * from Invoice where PrivateNote = 'x'"),
        ("Line.Amount", "select * from Invoice where Line.Amount > '0'"),
        ("EmailStatus", "select * from Invoice where EmailStatus = 'NotSet'"),
    ):
        refused = qbo.query(sql)
        assert refused.status_code == 400, sql
        assert (fault_of(refused)["code"], fault_of(refused)["Detail"]) == (
            "4001",
            f"QueryValidationError: property '{prop}' is not queryable",
        )


def test_query_order_and_paging(qbo: Harness) -> None:
    ordered = qbo.query(
        "select * from Customer orderby DisplayName desc startposition 2 maxresults 2"
    )
    body = ordered.json()["QueryResponse"]
    assert [c["DisplayName"] for c in body["Customer"]] == ["Diego Rodriguez", "Cool Cars"]
    assert body["startPosition"] == 2
    assert body["maxResults"] == 2


def test_query_empty_result_has_no_entity_key(qbo: Harness) -> None:
    response = qbo.query("select * from Customer where DisplayName = 'Nobody'")
    assert response.json()["QueryResponse"] == {}


def test_query_count_and_post_form(qbo: Harness) -> None:
    count = qbo.query("select count(*) from Customer")
    assert count.json()["QueryResponse"] == {"totalCount": 5}
    posted = qbo.api(
        "POST",
        "query",
        content="select * from Term where DueDays >= 30",
        headers={"Content-Type": "application/text"},
    )
    assert names(posted, "Term") == ["Net 30", "Net 60"]


def test_query_rejects_or_and_oversized_pages(qbo: Harness) -> None:
    rejected = qbo.query("select * from Customer where Id = '1' or Id = '2'")
    assert rejected.status_code == 400
    assert fault_of(rejected)["code"] == "4000"
    assert fault_of(rejected)["Detail"].startswith("QueryParserError")
    assert fault_of(qbo.query("select * from Customer maxresults 1001"))["code"] == "4001"


def test_query_hides_inactive_names_unless_asked(qbo: Harness) -> None:
    created = new_customer(qbo, "Retired")
    body = {"Id": created["Id"], "SyncToken": "0", "sparse": True, "Active": False}
    assert qbo.create("Customer", body).status_code == 200
    assert names(qbo.query("select * from Customer where DisplayName = 'Retired'")) == []
    inactive = qbo.query("select * from Customer where Active = false")
    assert names(inactive) == ["Retired"]


def test_query_by_last_updated_time(qbo: Harness) -> None:
    stamp = company_now(qbo).isoformat(timespec="seconds")
    qbo.clock.advance(2)
    new_customer(qbo, "Recent")
    sql = "select * from Customer where MetaData.LastUpdatedTime > '%s'"
    response = qbo.query(sql % stamp)  # a timestamp we made, not user input
    assert names(response) == ["Recent"]


def test_parser_reports_like_intuit() -> None:
    query = quickbooks_query.parse(
        "Select Id, DisplayName FROM Customer WHERE Active = true ORDER BY Id"
    )
    assert query.fields == ("Id", "DisplayName")
    assert query.where[0].values == (True,)
    assert query.order_by == (("Id", False),)
    for bad in ("", "select * from Customer group by Id", "select * from A join B", "select *"):
        with pytest.raises(quickbooks_query.QueryError) as raised:
            quickbooks_query.parse(bad)
        assert raised.value.code == "4000"


# --- requestid, batch, CDC ---------------------------------------------------------


def test_requestid_replay_returns_original_and_creates_nothing(qbo: Harness) -> None:
    body = {"CustomerRef": {"value": "1"}, "Line": [sales_line("4", 1, 50)]}
    first = qbo.create("Invoice", body, requestid="req-1")
    second = qbo.create("Invoice", body, requestid="req-1")
    assert first.status_code == second.status_code == 200
    assert first.content == second.content
    assert qbo.sandbox.create_count("Invoice") == 1
    assert len(qbo.sandbox.entities("Invoice")) == 3
    too_long = qbo.create("Invoice", body, requestid="x" * 51)
    assert too_long.status_code == 400


def test_batch_items_fault_independently_and_cannot_see_each_other(qbo: Harness) -> None:
    items = [
        {"bId": "1", "operation": "create", "Customer": {"DisplayName": "Batch One"}},
        {"bId": "2", "operation": "create", "Customer": {"DisplayName": "Cool Cars"}},
        {"bId": "3", "Query": "select * from Customer where DisplayName = 'Batch One'"},
        {"bId": "4", "operation": "update", "Customer": {"Id": "1", "SyncToken": "9"}},
        {
            "bId": "5",
            "operation": "create",
            "Invoice": {"CustomerRef": {"value": "6"}, "Line": [sales_line("4", 1, 50)]},
        },
    ]
    response = qbo.api("POST", "batch", json={"BatchItemRequest": items})
    assert response.status_code == 200
    results = {r["bId"]: r for r in response.json()["BatchItemResponse"]}
    assert results["1"]["Customer"]["Id"] == "6"
    assert results["2"]["Fault"]["Error"][0]["code"] == "6240"
    assert results["3"]["QueryResponse"] == {}
    assert results["4"]["Fault"]["Error"][0]["code"] == "5010"
    assert results["5"]["Fault"]["Error"][0]["code"] == "2500"
    assert names(qbo.query("select * from Customer where DisplayName = 'Batch One'")) == [
        "Batch One"
    ]


def test_batch_limits(qbo: Harness) -> None:
    query = {"Query": "select * from Term"}
    too_many = [{"bId": str(i), **query} for i in range(31)]
    response = qbo.api("POST", "batch", json={"BatchItemRequest": too_many})
    assert response.status_code == 400
    long_bid = [{"bId": "b" * 11, **query}]
    with_id = qbo.api(
        "POST", "batch", json={"BatchItemRequest": long_bid}, params={"requestid": "r1"}
    )
    assert with_id.status_code == 400
    assert qbo.api("POST", "batch", json={"BatchItemRequest": long_bid}).status_code == 200


def batch(qbo: Harness, items: list[dict[str, Any]], **params: str) -> httpx.Response:
    return qbo.api("POST", "batch", json={"BatchItemRequest": items}, params=params)


def answers(response: httpx.Response) -> dict[str, dict[str, Any]]:
    assert response.status_code == 200, response.text
    return {r["bId"]: r for r in response.json()["BatchItemResponse"]}


def test_batch_creates_and_sparse_updates_customers_invoices_and_items(qbo: Harness) -> None:
    customer = new_customer(qbo, "Before Batch", CompanyName="Old Co")
    invoice = qbo.create(
        "Invoice", {"CustomerRef": {"value": customer["Id"]}, "Line": [sales_line("4", 1, 50)]}
    ).json()["Invoice"]
    items = [
        {"bId": "c", "operation": "create", "Customer": {"DisplayName": "Batch New"}},
        {
            "bId": "cu",
            "operation": "update",
            "Customer": {"Id": customer["Id"], "SyncToken": "0", "sparse": True, "Notes": "n"},
        },
        {
            "bId": "i",
            "operation": "create",
            "Invoice": {"CustomerRef": {"value": "1"}, "Line": [sales_line("4", 2, 50)]},
        },
        {
            "bId": "iu",
            "operation": "update",
            "Invoice": {
                "Id": invoice["Id"],
                "SyncToken": invoice["SyncToken"],
                "sparse": True,
                "PrivateNote": "batched",
            },
        },
        {
            "bId": "p",
            "operation": "create",
            "Item": {"Name": "Batch Widget", "Type": "Service", "IncomeAccountRef": {"value": "1"}},
        },
    ]
    results = answers(batch(qbo, items))
    assert list(results) == ["c", "cu", "i", "iu", "p"]  # request order
    assert results["c"]["Customer"]["SyncToken"] == "0"
    updated = results["cu"]["Customer"]
    assert (updated["SyncToken"], updated["Notes"], updated["CompanyName"]) == ("1", "n", "Old Co")
    assert results["i"]["Invoice"]["TotalAmt"] == 100
    sparse_invoice = results["iu"]["Invoice"]
    assert sparse_invoice["PrivateNote"] == "batched"
    assert sparse_invoice["SyncToken"] == "1" and sparse_invoice["Line"][0]["Amount"] == 50
    assert results["p"]["Item"]["Name"] == "Batch Widget"
    assert qbo.sandbox.create_count("Customer") == 2  # one before, one in the batch


def test_batch_item_faults_leave_the_others_written(qbo: Harness) -> None:
    items = [
        {"bId": "dup", "operation": "create", "Customer": {"DisplayName": "Cool Cars"}},
        {"bId": "ok", "operation": "create", "Customer": {"DisplayName": "Fresh"}},
        {"bId": "again", "operation": "create", "Customer": {"DisplayName": "fresh "}},
        {"bId": "stale", "operation": "update", "Customer": {"Id": "1", "SyncToken": "7"}},
        {"bId": "nocust", "operation": "create", "Invoice": {"Line": [sales_line("4", 1, 5)]}},
        {"bId": "math", "operation": "create", "Invoice": {
            "CustomerRef": {"value": "1"}, "Line": [sales_line("4", 2, 50, amount=99)]}},
        {"bId": "noop", "Customer": {"DisplayName": "No Operation"}},
    ]  # fmt: skip
    results = answers(batch(qbo, items))
    codes = {b: r["Fault"]["Error"][0]["code"] for b, r in results.items() if "Fault" in r}
    assert codes == {
        "dup": "6240",
        "again": "6240",  # a name taken earlier in the same batch is still taken
        "stale": "5010",
        "nocust": "2020",
        "math": "6070",
        "noop": "500",
    }
    assert results["ok"]["Customer"]["DisplayName"] == "Fresh"
    assert results["stale"]["Fault"]["type"] == "ValidationFault"


def test_batch_items_do_not_see_each_others_creates(qbo: Harness) -> None:
    items: list[dict[str, Any]] = [
        {"bId": "1", "operation": "create", "Customer": {"DisplayName": "Batch Parent"}},
        {
            "bId": "2",
            "operation": "create",
            "Invoice": {"CustomerRef": {"value": "6"}, "Line": [sales_line("4", 1, 50)]},
        },
        {"bId": "3", "operation": "update", "Customer": {"Id": "6", "SyncToken": "0"}},
        {"bId": "4", "Query": "select * from Customer where Id = '6'"},
    ]
    results = answers(batch(qbo, items))
    assert results["1"]["Customer"]["Id"] == "6"
    assert results["2"]["Fault"]["Error"][0]["code"] == "2500"
    assert results["3"]["Fault"]["Error"][0]["code"] == "610"
    assert results["4"]["QueryResponse"] == {}
    # the next request sees it
    again = batch(qbo, [items[1] | {"bId": "5"}])
    assert answers(again)["5"]["Invoice"]["CustomerRef"]["value"] == "6"


def test_batch_bid_rules(qbo: Harness) -> None:
    query = {"Query": "select * from Term"}
    missing = batch(qbo, [query])
    assert missing.status_code == 400 and fault_of(missing)["code"] == "2020"
    repeated = batch(qbo, [{"bId": "a", **query}, {"bId": "a", **query}])
    assert repeated.status_code == 400 and fault_of(repeated)["code"] == "2010"
    assert batch(qbo, [{"bId": "x" * 40, **query}]).status_code == 200
    assert batch(qbo, [{"bId": "x" * 11, **query}], requestid="r-bid").status_code == 400
    assert batch(qbo, [{"bId": "x" * 10, **query}], requestid="r-bid2").status_code == 200
    assert batch(qbo, [{"bId": "a", **query}], requestid="r" * 37).status_code == 400


def test_batch_over_30_items_is_refused_whole_and_writes_nothing(qbo: Harness) -> None:
    items = [
        {"bId": str(i), "operation": "create", "Customer": {"DisplayName": f"Many {i}"}}
        for i in range(31)
    ]
    response = batch(qbo, items)
    assert response.status_code == 400
    assert fault_of(response)["code"] == "1040"
    assert qbo.sandbox.create_count("Customer") == 0
    assert response.json()["Fault"]["type"] == "ValidationFault"
    assert len(answers(batch(qbo, items[:30]))) == 30


def test_batch_requestid_replays_the_stored_answer(qbo: Harness) -> None:
    items = [
        {"bId": "1", "operation": "create", "Customer": {"DisplayName": "Once"}},
        {"bId": "2", "operation": "create", "Customer": {"DisplayName": "Cool Cars"}},
    ]
    first = batch(qbo, items, requestid="batch-1")
    second = batch(qbo, items, requestid="batch-1")
    assert first.content == second.content
    assert qbo.sandbox.create_count("Customer") == 1
    # a refused batch is replayed too
    too_many = [{"bId": str(i), "Query": "select * from Term"} for i in range(31)]
    refused = batch(qbo, too_many, requestid="batch-2")
    assert batch(qbo, items, requestid="batch-2").content == refused.content


def test_cdc_reports_changes_and_deletions(qbo: Harness) -> None:
    since = company_now(qbo).isoformat(timespec="seconds")
    qbo.clock.advance(1)
    customer = new_customer(qbo, "Changed")
    invoice = qbo.create(
        "Invoice", {"CustomerRef": {"value": customer["Id"]}, "Line": [sales_line("4", 1, 50)]}
    ).json()["Invoice"]
    qbo.create("Invoice", {"Id": invoice["Id"], "SyncToken": "0"}, operation="delete")
    response = qbo.api(
        "GET", "cdc", params={"entities": "Customer,Invoice,Item", "changedSince": since}
    )
    assert response.status_code == 200
    customers, invoices, items = response.json()["CDCResponse"][0]["QueryResponse"]
    assert [c["DisplayName"] for c in customers["Customer"]] == ["Changed"]
    assert invoices["Invoice"] == [
        {
            "domain": "QBO",
            "status": "Deleted",
            "Id": invoice["Id"],
            "MetaData": {"LastUpdatedTime": invoices["Invoice"][0]["MetaData"]["LastUpdatedTime"]},
        }
    ]
    assert items == {}
    old = qbo.api(
        "GET", "cdc", params={"entities": "Customer", "changedSince": "2020-01-01T00:00:00Z"}
    )
    assert old.status_code == 400


# --- throttling and faults ---------------------------------------------------------


def test_per_second_limit_gives_429_without_retry_after(
    make_harness: Callable[..., Harness],
) -> None:
    qbo = make_harness(rate_per_second=3)
    statuses = [qbo.api("GET", "customer/1").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    throttled = qbo.api("GET", "customer/1")
    assert "Retry-After" not in throttled.headers
    error = fault_of(throttled)
    assert error["code"] == "3001"
    assert error["Message"] == "message=ThrottleExceeded; errorCode=003001; statusCode=429"
    assert throttled.json()["Fault"]["type"] == "SERVICE"


def test_the_second_is_counted_per_app_and_the_minute_per_company(
    make_harness: Callable[..., Harness],
) -> None:
    """Intuit: 10 requests a second per company and app, 500 a minute per company."""
    qbo = make_harness(rate_per_second=2, rate_per_minute=4)

    def as_app(app: str) -> dict[str, Any]:
        return {"headers": {"Authorization": f"Bearer {qbo.sandbox.mint_access_token(app)}"}}

    ours = [qbo.api("GET", "customer/1").status_code for _ in range(2)]
    another = [qbo.api("GET", "customer/1", **as_app("another")).status_code for _ in range(2)]
    minute_full = qbo.api("GET", "customer/1", **as_app("a third"))

    assert ours == another == [200, 200]  # each app its own second
    assert minute_full.status_code == 429  # the company's minute: all apps together
    assert fault_of(minute_full)["code"] == "3001"


def test_batch_and_minute_limits(make_harness: Callable[..., Harness]) -> None:
    qbo = make_harness(batch_per_minute=1, rate_per_minute=4, send_retry_after=True)
    batch = {"BatchItemRequest": [{"bId": "1", "Query": "select * from Term"}]}
    assert qbo.api("POST", "batch", json=batch).status_code == 200
    second = qbo.api("POST", "batch", json=batch)
    assert second.status_code == 429
    assert int(second.headers["Retry-After"]) >= 1
    # the throttled batch still counted: two batches + two reads fill the minute
    assert [qbo.api("GET", "customer/1").status_code for _ in range(3)] == [200, 200, 429]
    assert qbo.client.get("/_sandbox/entities/Customer").status_code == 200


def test_a_batch_is_one_request_against_the_minute_and_second(
    make_harness: Callable[..., Harness],
) -> None:
    qbo = make_harness(rate_per_minute=3, rate_per_second=3)
    thirty = [{"bId": str(i), "Query": "select * from Term"} for i in range(30)]
    assert batch(qbo, thirty).status_code == 200
    assert [qbo.api("GET", "customer/1").status_code for _ in range(3)] == [200, 200, 429]


def test_batch_items_metered_reading_counts_every_item(
    make_harness: Callable[..., Harness],
) -> None:
    qbo = make_harness(batch_items_metered=True, rate_per_minute=5, rate_per_second=100)
    three = [{"bId": str(i), "Query": "select * from Term"} for i in range(3)]
    assert batch(qbo, three).status_code == 200
    assert [qbo.api("GET", "customer/1").status_code for _ in range(3)] == [200, 200, 429]


def test_batch_per_realm_minute_limit(make_harness: Callable[..., Harness]) -> None:
    qbo = make_harness(batch_per_minute=10, batch_per_minute_realm=2)
    one = [{"bId": "1", "Query": "select * from Term"}]
    assert [batch(qbo, one).status_code for _ in range(3)] == [200, 200, 429]
    qbo.clock.advance(61)
    assert batch(qbo, one).status_code == 200


def test_fault_injection_drop_response_keeps_the_effect(qbo: Harness) -> None:
    path = f"/v3/company/{qbo.config.realm_id}/invoice"
    qbo.client.post("/_sandbox/faults", json={"kind": "drop_response", "path_prefix": path})
    body = {"CustomerRef": {"value": "1"}, "Line": [sales_line("4", 1, 50)]}
    dropped = qbo.create("Invoice", body, requestid="lost-1")
    assert dropped.status_code == 504
    assert qbo.sandbox.create_count("Invoice") == 1
    retried = qbo.create("Invoice", body, requestid="lost-1")
    assert retried.status_code == 200
    assert qbo.sandbox.create_count("Invoice") == 1
    stats = qbo.client.get("/_sandbox/stats").json()
    assert stats["create"] == {"Invoice": 1}

    qbo.client.post("/_sandbox/faults", json={"kind": "rate_limit", "path_prefix": path})
    limited = qbo.create("Invoice", body)
    assert limited.status_code == 429
    assert fault_of(limited)["code"] == "3001"

    assert qbo.client.post("/_sandbox/reset").status_code == 200
    assert len(qbo.client.get("/_sandbox/entities/Invoice").json()["Invoice"]) == 2
    assert qbo.api("GET", "customer/1").status_code == 200  # tokens survive a reset


# --- webhooks and seed data --------------------------------------------------------


def verify(body: bytes, headers: dict[str, str], key: str) -> bool:
    digest = hmac.new(key.encode(), body, hashlib.sha256).digest()
    return hmac.compare_digest(base64.b64decode(headers["Intuit-Signature"]), digest)


def test_cloudevents_webhook_is_signed_and_retried(
    make_harness: Callable[..., Harness], receiver: tuple[Receiver, str]
) -> None:
    recv, url = receiver
    recv.fail_first = 1
    qbo = make_harness(webhook_url=url)
    customer = new_customer(qbo, "Hooked")
    assert qbo.sandbox.wait_for_webhooks_idle(10)
    assert [d.attempts for d in qbo.sandbox.deliveries] == [[500, 200]]
    body, headers = recv.received[-1]
    assert verify(body, headers, qbo.config.webhook_verifier_token)
    assert not verify(body, headers, "wrong-token")
    (event,) = json.loads(body)
    assert event["specversion"] == "1.0"
    assert event["type"] == "qbo.customer.created.v1"
    assert event["intuitentityid"] == customer["Id"]
    assert event["intuitaccountid"] == qbo.config.realm_id
    assert event["source"].startswith("intuit.")
    assert event["data"] == {}


def test_legacy_webhook_shape(
    make_harness: Callable[..., Harness], receiver: tuple[Receiver, str]
) -> None:
    recv, url = receiver
    qbo = make_harness(webhook_url=url, webhook_format="legacy")
    invoice = qbo.create(
        "Invoice", {"CustomerRef": {"value": "1"}, "Line": [sales_line("4", 1, 50)]}
    ).json()["Invoice"]
    qbo.create("Invoice", {"Id": invoice["Id"], "SyncToken": "0"}, operation="delete")
    assert qbo.sandbox.wait_for_webhooks_idle(10)
    operations = []
    for body, headers in recv.received:
        assert verify(body, headers, qbo.config.webhook_verifier_token)
        (notification,) = json.loads(body)["eventNotifications"]
        assert notification["realmId"] == qbo.config.realm_id
        operations += [
            (e["name"], e["id"], e["operation"])
            for e in notification["dataChangeEvent"]["entities"]
        ]
    assert operations == [
        ("Invoice", invoice["Id"], "Create"),
        ("Invoice", invoice["Id"], "Delete"),
    ]


def test_new_company_comes_with_sample_data(qbo: Harness) -> None:
    accounts = names(qbo.query("select * from Account"), "Account")
    for expected in (
        "Services",
        "Sales of Product Income",
        "Cost of Goods Sold",
        "Inventory Asset",
    ):
        assert expected in accounts
    items = qbo.query("select * from Item").json()["QueryResponse"]["Item"]
    assert {"Services", "Hours", "Design", "Installation", "Pest Control"} <= {
        i["Name"] for i in items
    }
    assert all(i["IncomeAccountRef"]["value"] for i in items)
    terms = qbo.query("select * from Term").json()["QueryResponse"]["Term"]
    assert {t["Name"]: t["DueDays"] for t in terms}["Net 30"] == 30
    assert {"TAX", "NON"} <= set(names(qbo.query("select * from TaxCode"), "TaxCode"))
    company = qbo.api("GET", f"companyinfo/{qbo.config.realm_id}").json()["CompanyInfo"]
    assert company["Country"] == "US"
    amy = qbo.api("GET", "customer/1").json()["Customer"]
    assert amy["PrimaryEmailAddr"]["Address"] == "Birds@Intuit.com"
    invoices = qbo.query("select * from Invoice").json()["QueryResponse"]["Invoice"]
    assert [i["Balance"] for i in invoices] == [200.0, 55.0]
