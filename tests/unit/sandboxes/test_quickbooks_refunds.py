"""The QuickBooks sandbox's refund receipts, over real HTTP, and python-quickbooks
(Intuit's community client) recording one against it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from quickbooks.objects import RefundReceipt

from local.sandboxes.base import SandboxServer
from tests.unit.sandboxes.test_quickbooks_payments import invoice, pay, read
from tests.unit.sandboxes.test_quickbooks_sandbox import (
    Harness,
    Receiver,
    fault_of,
    sales_line,
)
from tests.unit.sandboxes.test_quickbooks_sdk import connect, ref
from tests.unit.sandboxes.test_quickbooks_sdk import sales_line as sdk_line

UNDEPOSITED_FUNDS = "6"  # seeded, an Other Current Asset account
SERVICES_INCOME = "1"  # seeded, an Income account


def refund(qbo: Harness, *lines: dict[str, Any], **fields: Any) -> Any:
    body = {
        "CustomerRef": {"value": "1"},
        "DepositToAccountRef": {"value": UNDEPOSITED_FUNDS},
        "Line": list(lines) or [sales_line("1", 1, 30)],
        **fields,
    }
    return qbo.create("RefundReceipt", {k: v for k, v in body.items() if v is not None})


def created(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    receipt: dict[str, Any] = response.json()["RefundReceipt"]
    return receipt


def test_a_refund_receipt_totals_its_lines_and_moves_no_balance(qbo: Harness) -> None:
    inv = invoice(qbo, amount=200)
    assert pay(qbo, 200, ("Invoice", inv["Id"], 200)).status_code == 200
    before = read(qbo, "Customer", "1")["Balance"]
    discount = {"Amount": 10, "DetailType": "DiscountLineDetail", "DiscountLineDetail": {}}

    receipt = created(
        refund(qbo, sales_line("3", 2, 75), discount, TotalAmt=999, TxnDate="2026-03-02")
    )

    assert (receipt["TotalAmt"], receipt["Balance"]) == (140, 0)  # TotalAmt is computed
    assert (receipt["TxnDate"], receipt["DocNumber"]) == ("2026-03-02", "1001")
    assert receipt["CustomerRef"]["value"] == "1"
    assert receipt["DepositToAccountRef"] == {"value": "6", "name": "Undeposited Funds"}
    assert receipt["PrintStatus"] == "NotSet" and "PaymentRefNum" not in receipt
    assert read(qbo, "RefundReceipt", receipt["Id"]) == receipt
    assert read(qbo, "Customer", "1")["Balance"] == before  # paid from an account
    assert read(qbo, "Invoice", inv["Id"])["Balance"] == 0  # it names no invoice


def test_refund_receipts_are_queried_by_customer_and_date(qbo: Harness) -> None:
    older = created(refund(qbo, TxnDate="2026-03-01"))
    newer = created(refund(qbo, TxnDate="2026-03-05"))
    created(refund(qbo, CustomerRef={"value": "2"}))

    found = qbo.query(
        "select * from RefundReceipt where CustomerRef = '1' orderby TxnDate desc"
    ).json()["QueryResponse"]["RefundReceipt"]

    assert [r["Id"] for r in found] == [newer["Id"], older["Id"]]


def test_refund_receipt_validation(qbo: Harness) -> None:
    description = {"Description": "goodwill", "DetailType": "DescriptionOnly"}

    refused = {
        "no account": refund(qbo, DepositToAccountRef=None),
        "an income account": refund(qbo, DepositToAccountRef={"value": SERVICES_INCOME}),
        "a missing account": refund(qbo, DepositToAccountRef={"value": "99"}),
        "no lines": refund(qbo, Line=[]),
        "no item line": refund(qbo, description),
        "an unknown customer": refund(qbo, CustomerRef={"value": "99"}),
        "a payment type": refund(qbo, PaymentType="Barter"),
        "a print status": refund(qbo, PrintStatus="Printed"),
        "printed, no number": refund(qbo, PrintStatus="PrintComplete"),
        "a long number": refund(qbo, PrintStatus="PrintComplete", PaymentRefNum="9" * 101),
    }

    codes = {why: (fault_of(r)["code"], fault_of(r)["element"]) for why, r in refused.items()}
    assert codes == {
        "no account": ("2020", "DepositToAccountRef"),
        "an income account": ("6000", ""),
        "a missing account": ("2500", ""),
        "no lines": ("2020", "Line"),
        "no item line": ("2020", "Line.SalesItemLineDetail"),
        "an unknown customer": ("2500", ""),
        "a payment type": ("2170", "PaymentType"),
        "a print status": ("2170", "PrintStatus"),
        "printed, no number": ("2020", "PaymentRefNum"),
        "a long number": ("2050", "PaymentRefNum"),
    }
    assert "Bank or Other Current Asset" in fault_of(refused["an income account"])["Detail"]
    assert qbo.sandbox.create_count("RefundReceipt") == 0


def test_paid_from_a_bank_account_it_waits_to_be_printed(qbo: Harness) -> None:
    bank = qbo.create("Account", {"Name": "Checking", "AccountType": "Bank"}).json()["Account"]
    account = {"value": bank["Id"]}

    to_print = created(refund(qbo, DepositToAccountRef=account, PaymentRefNum="1042"))
    printed = created(
        refund(
            qbo,
            DepositToAccountRef=account,
            PrintStatus="PrintComplete",
            PaymentRefNum="1042",
            PaymentType="Check",
        )
    )

    # Intuit's create sample: from "Checking", no PrintStatus sent.
    assert (to_print["PrintStatus"], to_print["PaymentRefNum"]) == ("NeedToPrint", "To Print")
    assert (printed["PrintStatus"], printed["PaymentRefNum"]) == ("PrintComplete", "1042")


def test_a_refund_receipt_may_name_no_customer(qbo: Harness) -> None:
    receipt = created(refund(qbo, CustomerRef=None))

    assert "CustomerRef" not in receipt
    assert receipt["TotalAmt"] == 30


def test_sparse_update_and_delete(qbo: Harness) -> None:
    receipt = created(refund(qbo, sales_line("3", 1, 75)))

    stale = qbo.create(
        "RefundReceipt", {"Id": receipt["Id"], "SyncToken": "5", "sparse": True, "PrivateNote": "x"}
    )
    noted = created(
        qbo.create(
            "RefundReceipt",
            {"Id": receipt["Id"], "SyncToken": "0", "sparse": True, "PrivateNote": "late job"},
        )
    )
    deleted = qbo.create(
        "RefundReceipt", {"Id": receipt["Id"], "SyncToken": "1"}, operation="delete"
    )

    assert fault_of(stale)["code"] == "5010"
    assert (noted["SyncToken"], noted["PrivateNote"], noted["TotalAmt"]) == ("1", "late job", 75)
    assert deleted.json()["RefundReceipt"] == {"domain": "QBO", "status": "Deleted", "Id": "1"}
    assert qbo.api("GET", f"refundreceipt/{receipt['Id']}").status_code == 400
    changes = qbo.api(
        "GET", "cdc", params={"entities": "RefundReceipt", "changedSince": receipt["TxnDate"]}
    ).json()["CDCResponse"][0]["QueryResponse"][0]["RefundReceipt"]
    assert [(c["Id"], c.get("status")) for c in changes] == [(receipt["Id"], "Deleted")]


def test_ids_count_per_entity_so_a_refund_may_hold_a_payments_id(qbo: Harness) -> None:
    recv = Receiver()
    server = SandboxServer(recv.app(), 0).start()
    try:
        qbo.sandbox.webhook_url = f"{server.url}/hook"
        receipt = created(refund(qbo))
        assert qbo.sandbox.wait_for_webhooks_idle(10)
    finally:
        server.stop()

    assert receipt["Id"] == "1" == qbo.sandbox.entities("Payment")[0]["Id"]  # the seeded one
    events = [
        (event["type"], event["intuitentityid"])
        for body, _ in recv.received
        for event in json.loads(body)
    ]
    assert events == [("qbo.refundreceipt.created.v1", receipt["Id"])]


def test_python_quickbooks_records_a_refund(qbo: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """Intuit's community client creates and reads a RefundReceipt as documented."""
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # a local test over http
    client = connect(qbo.sandbox, str(qbo.server.url), qbo.refresh_token)
    qbo.refresh_token = client.auth_client.refresh_token

    receipt = RefundReceipt()
    receipt.CustomerRef = ref("1")
    receipt.DepositToAccountRef = ref(UNDEPOSITED_FUNDS)
    receipt.Line = [sdk_line("1", 3, 15)]
    saved = receipt.save(qb=client)

    fetched = RefundReceipt.get(saved.Id, qb=client)
    assert (fetched.TotalAmt, fetched.CustomerRef.value) == (45, "1")
    assert [r.Id for r in RefundReceipt.filter(CustomerRef="1", qb=client)] == [saved.Id]
