"""QuickBooks Online for the contract suites: the QuickBooks sandbox, read through its
admin listings, changed by a person through the public API."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
from datetime import date
from decimal import Decimal
from typing import Any, ClassVar

import httpx

from local.sandboxes.base import Fault, SandboxServer
from local.sandboxes.quickbooks import QuickBooksBooks, QuickBooksSandbox, QuickBooksSandboxConfig
from shared.connectors.quickbooks.connector import CREDIT_MEMO, REFUND_RECEIPT, port_id
from shared.models import ObjectType
from shared.ports import AccountingLedger
from tests.contracts.kits.base import (
    AccountingKit,
    SandboxConnection,
    StoredInvoice,
    StoredLine,
)

_ENTITIES = {
    ObjectType.CUSTOMER: "Customer",
    ObjectType.INVOICE: "Invoice",
    ObjectType.ITEM: "Item",
}


def _money(value: Any) -> Decimal:
    return Decimal(str(value))


class QuickBooksKit(AccountingKit):
    name = "quickbooks"
    signature_headers: ClassVar[tuple[str, ...]] = ("intuit-signature",)
    currency = "USD"
    currency_decimals = 2
    seeded_item = "Design"
    income_account = "Services"  # the Account by Name
    missing_reference_code = "2500"  # Invalid Reference Id

    def __init__(self) -> None:
        # A person's edits (the ledger suite's payments and voids) go through the API
        # under this app's client id; in QuickBooks' UI they would not draw on the app's
        # 10 requests a second, so that window is widened to leave it to the connector.
        self.config = QuickBooksSandboxConfig(rate_per_second=100)
        self.sandbox = QuickBooksSandbox(self.config)
        self.server = SandboxServer(self.sandbox.app, 0).start()
        connection = SandboxConnection(self.name, self.sandbox, self.server.url)
        self.target = connection.accounting_target()
        self.webhooks = connection.webhook_receiver()
        self.books = QuickBooksBooks(self.sandbox, self.server.url)
        self._numbers = itertools.count(1)

    def close(self) -> None:
        self.books.api().close()
        self.sandbox.close()
        self.server.stop()

    def reset(self) -> None:
        self.sandbox.wait_for_webhooks_idle()
        self.sandbox.faults.clear()
        self.sandbox.reset()

    # --- what the company holds --------------------------------------------------------

    def _row(self, object_type: ObjectType, target_id: str) -> dict[str, Any]:
        (row,) = (r for r in self.sandbox.entities(_ENTITIES[object_type]) if r["Id"] == target_id)
        return row

    def customer(self, target_id: str) -> dict[str, str | None]:
        row = self._row(ObjectType.CUSTOMER, target_id)
        return {
            "display_name": row.get("DisplayName"),
            "given_name": row.get("GivenName"),
            "family_name": row.get("FamilyName"),
            "company_name": row.get("CompanyName"),
            "email": row.get("PrimaryEmailAddr", {}).get("Address"),
            "phone": row.get("PrimaryPhone", {}).get("FreeFormNumber"),
        }

    def invoice(self, target_id: str) -> StoredInvoice:
        row = self._row(ObjectType.INVOICE, target_id)
        lines = [
            StoredLine(
                item_ref=line["SalesItemLineDetail"]["ItemRef"]["value"],
                quantity=_money(line["SalesItemLineDetail"]["Qty"]),
                unit_price=_money(line["SalesItemLineDetail"]["UnitPrice"]),
                amount=_money(line["Amount"]),
            )
            for line in row["Line"]
            if line["DetailType"] == "SalesItemLineDetail"
        ]
        return StoredInvoice(row.get("DocNumber"), lines, _money(row["TotalAmt"]))

    def ids(self, object_type: ObjectType) -> set[str]:
        return {str(row["Id"]) for row in self.sandbox.entities(_ENTITIES[object_type])}

    def item_id(self, name: str) -> str:
        (row,) = (r for r in self.sandbox.entities(_ENTITIES[ObjectType.ITEM]) if r["Name"] == name)
        return str(row["Id"])

    def unknown_id(self, object_type: ObjectType) -> str:
        return "987654"  # ids count up from the seeded handful

    def lose_next_write_answer(self) -> None:
        self.sandbox.faults.add(
            Fault(kind="drop_response", path_prefix="/v3/company/", method="POST")
        )

    # --- webhooks ----------------------------------------------------------------------

    def send_webhooks_to(self, url: str | None) -> None:
        self.sandbox.webhook_url = url

    def make_change(self) -> tuple[ObjectType, str]:
        """A customer added by someone else: the sandbox has no UI, so through the public
        API under a login of its own, as another person's app would."""
        response = self._person_client().post("/customer", json={"DisplayName": "Walk-in Wendy"})
        response.raise_for_status()
        return ObjectType.CUSTOMER, str(response.json()["Customer"]["Id"])

    def _person_client(self) -> httpx.Client:
        return self.books.api()

    # --- the ledger (tests/contracts/test_accounting_ledger.py) ---------------------------

    def ledger(self) -> AccountingLedger:
        assert isinstance(self.target, AccountingLedger)
        return self.target

    def issue_invoice(self, amount: Decimal, *, due: date) -> tuple[str, str]:
        """A new customer's invoice of one ``amount`` line, due on ``due``: its
        (invoice id, customer id)."""
        n = next(self._numbers)
        customer = self.books.add_customer(f"Ledger Customer {n}", f"ledger{n}@example.com")
        return self.add_invoice(customer, amount, due=due), customer

    def add_invoice(self, customer_id: str, amount: Decimal, *, due: date) -> str:
        """Another invoice for the same customer."""
        response = self._person_client().post(
            "/invoice",
            json={
                "CustomerRef": {"value": customer_id},
                "DueDate": due.isoformat(),
                "Line": [
                    {
                        "Amount": float(amount),
                        "DetailType": "SalesItemLineDetail",
                        "SalesItemLineDetail": {"ItemRef": {"value": self.item_id("Services")}},
                    }
                ],
            },
        )
        response.raise_for_status()
        return str(response.json()["Invoice"]["Id"])

    def pay(self, invoice_id: str, amount: Decimal, *, on: date) -> str:
        return self.books.record_payment(invoice_id, amount, received_on=on)

    def credit(self, invoice_id: str, amount: Decimal) -> str:
        """A credit memo applied to the invoice by a zero-total payment; the change
        feed names the memo apart from a payment that may hold the same Id."""
        return port_id(CREDIT_MEMO, self.books.credit_invoice(invoice_id, amount))

    def void(self, invoice_id: str) -> None:
        self.books.void_invoice(invoice_id)

    def refund(self, customer_id: str, amount: Decimal, *, on: date) -> str:
        """A refund receipt for the customer; the change feed names it apart from the
        payment that may hold the same Id."""
        return port_id(REFUND_RECEIPT, self.books.refund(customer_id, amount, refunded_on=on))

    def wait_for_webhooks(self) -> None:
        assert self.sandbox.wait_for_webhooks_idle(), "QuickBooks' webhooks did not go out"

    def sign(self, url: str, body: str) -> dict[str, str]:
        """``intuit-signature``: base64 HMAC-SHA256 of the body under the verifier token."""
        key = self.config.webhook_verifier_token.encode()
        digest = hmac.new(key, body.encode(), hashlib.sha256).digest()
        return {"intuit-signature": base64.b64encode(digest).decode()}
