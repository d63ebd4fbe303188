"""The QuickBooks sandbox's payments, credit memos and voids, over real HTTP, and
python-quickbooks (Intuit's community client) paying an invoice against it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from quickbooks.objects import Invoice, Payment
from quickbooks.objects.payment import PaymentLine

from local.sandboxes.base import SandboxServer
from tests.unit.sandboxes.test_quickbooks_sandbox import (
    Harness,
    Receiver,
    fault_of,
    sales_line,
)
from tests.unit.sandboxes.test_quickbooks_sdk import connect, ref


def invoice(qbo: Harness, customer: str = "1", amount: float = 100) -> dict[str, Any]:
    response = qbo.create(
        "Invoice", {"CustomerRef": {"value": customer}, "Line": [sales_line("1", 1, amount)]}
    )
    assert response.status_code == 200, response.text
    created: dict[str, Any] = response.json()["Invoice"]
    return created


def read(qbo: Harness, entity: str, obj_id: str) -> dict[str, Any]:
    response = qbo.api("GET", f"{entity.lower()}/{obj_id}")
    assert response.status_code == 200, response.text
    obj: dict[str, Any] = response.json()[entity]
    return obj


def pay(qbo: Harness, total: float, *lines: tuple[str, str, float], customer: str = "1") -> Any:
    return qbo.create(
        "Payment",
        {
            "CustomerRef": {"value": customer},
            "TotalAmt": total,
            "Line": [
                {"Amount": amount, "LinkedTxn": [{"TxnId": txn, "TxnType": kind}]}
                for kind, txn, amount in lines
            ],
        },
    )


def test_part_payments_lower_the_invoice_and_customer_balances(qbo: Harness) -> None:
    inv = invoice(qbo, amount=100)
    before = read(qbo, "Customer", "1")["Balance"]

    first = pay(qbo, 30, ("Invoice", inv["Id"], 30))
    second = pay(qbo, 50, ("Invoice", inv["Id"], 20))

    assert first.status_code == second.status_code == 200
    assert second.json()["Payment"]["UnappliedAmt"] == 30  # the rest is a credit
    after = read(qbo, "Invoice", inv["Id"])
    assert after["Balance"] == 50
    assert after["SyncToken"] == inv["SyncToken"]  # a payment does not rewrite the invoice
    assert after["LinkedTxn"] == [
        {"TxnId": first.json()["Payment"]["Id"], "TxnType": "Payment"},
        {"TxnId": second.json()["Payment"]["Id"], "TxnType": "Payment"},
    ]
    customer = read(qbo, "Customer", "1")
    assert customer["Balance"] == customer["BalanceWithJobs"] == before - 50 - 30


def test_deleting_a_payment_restores_the_balance(qbo: Harness) -> None:
    inv = invoice(qbo)
    payment = pay(qbo, 100, ("Invoice", inv["Id"], 100)).json()["Payment"]
    assert read(qbo, "Invoice", inv["Id"])["Balance"] == 0

    deleted = qbo.create("Payment", {"Id": payment["Id"], "SyncToken": "0"}, operation="delete")

    assert deleted.json()["Payment"]["status"] == "Deleted"
    assert read(qbo, "Invoice", inv["Id"])["Balance"] == 100
    assert "LinkedTxn" not in read(qbo, "Invoice", inv["Id"])


def test_payment_validation(qbo: Harness) -> None:
    inv = invoice(qbo, customer="1", amount=100)
    others = invoice(qbo, customer="3", amount=40)

    no_customer = qbo.create("Payment", {"TotalAmt": 10})
    over_balance = pay(qbo, 150, ("Invoice", inv["Id"], 150))
    other_customers = pay(qbo, 40, ("Invoice", others["Id"], 40))
    over_total = pay(qbo, 10, ("Invoice", inv["Id"], 20))
    bad_type = pay(qbo, 10, ("Bill", inv["Id"], 10))

    assert no_customer.status_code == 400
    assert (fault_of(no_customer)["code"], fault_of(no_customer)["element"]) == (
        "2020",
        "CustomerRef",
    )
    assert fault_of(over_balance)["code"] == "6000"
    assert "open balance" in fault_of(over_balance)["Detail"]
    assert fault_of(other_customers)["code"] == "2500"
    assert fault_of(over_total)["code"] == "6000"
    assert fault_of(bad_type)["code"] == "2170"
    assert read(qbo, "Invoice", inv["Id"])["Balance"] == 100  # nothing was applied


def test_a_credit_memo_applied_through_a_zero_payment(qbo: Harness) -> None:
    inv = invoice(qbo, amount=100)
    memo = qbo.create(
        "CreditMemo", {"CustomerRef": {"value": "1"}, "Line": [sales_line("1", 1, 30)]}
    ).json()["CreditMemo"]
    assert (memo["TotalAmt"], memo["RemainingCredit"]) == (30, 30)

    too_much = pay(qbo, 0, ("Invoice", inv["Id"], 40), ("CreditMemo", memo["Id"], 40))
    applied = pay(qbo, 0, ("Invoice", inv["Id"], 30), ("CreditMemo", memo["Id"], 30))

    assert fault_of(too_much)["code"] == "6000"
    assert "remaining credit" in fault_of(too_much)["Detail"]
    assert applied.status_code == 200, applied.text
    assert read(qbo, "Invoice", inv["Id"])["Balance"] == 70
    assert read(qbo, "CreditMemo", memo["Id"])["RemainingCredit"] == 0
    deleting = qbo.create("CreditMemo", {"Id": memo["Id"], "SyncToken": "0"}, operation="delete")
    assert fault_of(deleting)["code"] == "6000"  # a credit in use stays


def test_an_issued_credit_memo_lowers_the_customer_balance_and_sends_its_webhooks(
    qbo: Harness,
) -> None:
    """Issued and not yet applied, a credit memo is credit on the customer's account
    (Intuit's CreditMemoAdd: "It reduces a customer's outstanding balance"); CreditMemo
    is among the webhook entities (Create, Update, Delete)."""
    recv = Receiver()
    server = SandboxServer(recv.app(), 0).start()
    try:
        qbo.sandbox.webhook_url = f"{server.url}/hook"
        before = read(qbo, "Customer", "1")["Balance"]
        memo = qbo.create(
            "CreditMemo", {"CustomerRef": {"value": "1"}, "Line": [sales_line("1", 1, 30)]}
        ).json()["CreditMemo"]
        issued = read(qbo, "Customer", "1")["Balance"]
        qbo.create("CreditMemo", {"Id": memo["Id"], "SyncToken": "0"}, operation="delete")
        assert qbo.sandbox.wait_for_webhooks_idle(10)
    finally:
        server.stop()

    assert issued == before - 30
    assert read(qbo, "Customer", "1")["Balance"] == before
    events = [
        (event["type"], event["intuitentityid"])
        for body, _ in recv.received
        for event in json.loads(body)
    ]
    assert events == [
        ("qbo.creditmemo.created.v1", memo["Id"]),
        ("qbo.creditmemo.deleted.v1", memo["Id"]),
    ]


def test_void_zeroes_the_invoice_keeps_it_and_marks_the_note(qbo: Harness) -> None:
    inv = qbo.create(
        "Invoice",
        {
            "CustomerRef": {"value": "1"},
            "PrivateNote": "deal 42",
            "Line": [sales_line("3", 2, 75)],
        },
    ).json()["Invoice"]
    before = read(qbo, "Customer", "1")["Balance"]

    stale = qbo.create("Invoice", {"Id": inv["Id"], "SyncToken": "7"}, operation="void")
    voided = qbo.create("Invoice", {"Id": inv["Id"], "SyncToken": "0"}, operation="void")

    assert fault_of(stale)["code"] == "5010"
    assert voided.status_code == 200, voided.text
    stored = read(qbo, "Invoice", inv["Id"])
    assert (stored["TotalAmt"], stored["Balance"], stored["SyncToken"]) == (0, 0, "1")
    assert stored["PrivateNote"] == "Voided - deal 42"
    assert stored["DocNumber"] == inv["DocNumber"]
    sales = [line for line in stored["Line"] if line["DetailType"] == "SalesItemLineDetail"]
    assert [(line["Amount"], line["SalesItemLineDetail"]["Qty"]) for line in sales] == [(0, 0)]
    assert read(qbo, "Customer", "1")["Balance"] == before - 150


def test_an_invoice_with_a_payment_cannot_be_voided(qbo: Harness) -> None:
    inv = invoice(qbo)
    assert pay(qbo, 10, ("Invoice", inv["Id"], 10)).status_code == 200

    refused = qbo.create("Invoice", {"Id": inv["Id"], "SyncToken": "0"}, operation="void")

    assert fault_of(refused)["code"] == "6000"
    assert read(qbo, "Invoice", inv["Id"])["TotalAmt"] == 100


def test_payments_are_queried_and_reported_by_cdc(qbo: Harness) -> None:
    inv = invoice(qbo)
    voided = invoice(qbo)
    payment = pay(qbo, 25, ("Invoice", inv["Id"], 25)).json()["Payment"]
    qbo.create("Invoice", {"Id": voided["Id"], "SyncToken": "0"}, operation="void")

    found = qbo.query("select * from Payment where CustomerRef = '1' orderby TxnDate desc")
    cdc = qbo.api(
        "GET",
        "cdc",
        params={"entities": "Payment,Invoice", "changedSince": "2000-01-01T00:00:00Z"},
    )

    assert payment["Id"] in [p["Id"] for p in found.json()["QueryResponse"]["Payment"]]
    assert cdc.status_code == 400  # more than 30 days back
    recent = qbo.api(
        "GET", "cdc", params={"entities": "Payment,Invoice", "changedSince": inv["TxnDate"]}
    ).json()["CDCResponse"][0]["QueryResponse"]
    assert [p["Id"] for p in recent[0]["Payment"]] == [payment["Id"]]
    assert {i["Id"] for i in recent[1]["Invoice"]} == {inv["Id"], voided["Id"]}


def test_payment_and_void_webhooks(qbo: Harness) -> None:
    recv = Receiver()
    server = SandboxServer(recv.app(), 0).start()
    try:
        qbo.sandbox.webhook_url = f"{server.url}/hook"
        inv = invoice(qbo)
        other = invoice(qbo)
        payment = pay(qbo, 100, ("Invoice", inv["Id"], 100)).json()["Payment"]
        qbo.create("Payment", {"Id": payment["Id"], "SyncToken": "0", "sparse": True})
        qbo.create("Invoice", {"Id": other["Id"], "SyncToken": "0"}, operation="void")
        assert qbo.sandbox.wait_for_webhooks_idle(10)
    finally:
        server.stop()

    events = [
        (event["type"], event["intuitentityid"])
        for body, _ in recv.received
        for event in json.loads(body)
    ]
    assert events[2:] == [
        ("qbo.payment.created.v1", payment["Id"]),
        ("qbo.payment.updated.v1", payment["Id"]),
        ("qbo.invoice.voided.v1", other["Id"]),
    ]


def test_python_quickbooks_pays_an_invoice(qbo: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """Intuit's community client creates a Payment against the sandbox as documented."""
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # a local test over http
    inv = invoice(qbo, amount=80)
    client = connect(qbo.sandbox, str(qbo.server.url), qbo.refresh_token)
    qbo.refresh_token = client.auth_client.refresh_token

    payment = Payment()
    payment.CustomerRef = ref("1")
    payment.TotalAmt = 80
    line = PaymentLine()
    line.Amount = 80
    line.LinkedTxn = [Invoice.get(inv["Id"], qb=client).to_linked_txn()]  # the SDK's own link
    payment.Line = [line]
    saved = payment.save(qb=client)

    fetched = Invoice.get(inv["Id"], qb=client)
    assert fetched.Balance == 0
    assert [txn.TxnId for txn in fetched.LinkedTxn] == [saved.Id]
    assert Payment.get(saved.Id, qb=client).UnappliedAmt == 0
