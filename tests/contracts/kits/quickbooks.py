"""QuickBooks Online for the contract suites: the QuickBooks sandbox, read through its
admin listings, changed by a person through the public API."""

from __future__ import annotations

import base64
import hashlib
import hmac
from decimal import Decimal
from typing import Any, ClassVar

import httpx

from local.sandboxes.base import Fault, SandboxServer
from local.sandboxes.quickbooks import QuickBooksBooks, QuickBooksSandbox, QuickBooksSandboxConfig
from shared.models import ObjectType
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
        self.config = QuickBooksSandboxConfig()
        self.sandbox = QuickBooksSandbox(self.config)
        self.server = SandboxServer(self.sandbox.app, 0).start()
        connection = SandboxConnection(self.name, self.sandbox, self.server.url)
        self.target = connection.accounting_target()
        self.webhooks = connection.webhook_receiver()
        self._person: httpx.Client | None = None

    def close(self) -> None:
        if self._person is not None:
            self._person.close()
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
        if self._person is None:
            self._person = QuickBooksBooks(self.sandbox, self.server.url).api()
        return self._person

    def wait_for_webhooks(self) -> None:
        assert self.sandbox.wait_for_webhooks_idle(), "QuickBooks' webhooks did not go out"

    def sign(self, url: str, body: str) -> dict[str, str]:
        """``intuit-signature``: base64 HMAC-SHA256 of the body under the verifier token."""
        key = self.config.webhook_verifier_token.encode()
        digest = hmac.new(key, body.encode(), hashlib.sha256).digest()
        return {"intuit-signature": base64.b64encode(digest).decode()}
