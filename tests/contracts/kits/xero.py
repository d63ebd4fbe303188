"""Xero for the contract suites: the Xero sandbox, read through its admin listings,
changed by a person through its "UI" helpers.

Xero sends webhooks only to a URL that passed Intent to Receive (a 200 to a correctly
signed request, a 401 to a wrongly signed one, empty bodies), so the sandbox posts to
an endpoint of this kit that answers as crmsync's webhook function does, through the
connector's own receiver, and passes every delivery on, as it arrived, to wherever
the suite listens.
"""

from __future__ import annotations

import itertools
import threading
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, ClassVar

import httpx
from flask import Flask, Response, request

from local.sandboxes.base import Fault, SandboxServer, received_webhook
from local.sandboxes.xero import API_PREFIX, XeroBooks, XeroSandbox, XeroSandboxConfig, sign
from shared.connectors.xero.connector import credit_note_port_id
from shared.errors import WebhookRejected
from shared.models import ObjectType
from shared.ports import AccountingLedger
from tests.contracts.kits.base import (
    CONNECTION_ID,
    AccountingKit,
    SandboxConnection,
    StoredInvoice,
    StoredLine,
)

HOOK_PATH = "/webhooks/xero"
_COLLECTIONS = {
    ObjectType.CUSTOMER: ("Contacts", "ContactID"),
    ObjectType.INVOICE: ("Invoices", "InvoiceID"),
    ObjectType.ITEM: ("Items", "Code"),  # the connector's item ref is the item's Code
}


def _money(value: Any) -> Decimal:
    return Decimal(str(value))


class XeroKit(AccountingKit):
    name = "xero"
    signature_headers: ClassVar[tuple[str, ...]] = ("x-xero-signature",)
    currency = "USD"
    currency_decimals = 2
    seeded_item = "Design"
    income_account = "200"  # Sales, by account Code
    # A ValidationException (ErrorNumber 10): "Contact with ContactID … does not exist."
    missing_reference_code = "10"

    def __init__(self) -> None:
        self.config = XeroSandboxConfig()
        self.sandbox = XeroSandbox(self.config)
        self.server = SandboxServer(self.sandbox.app, 0).start()
        connection = SandboxConnection(self.name, self.sandbox, self.server.url)
        self.target = connection.accounting_target()
        self.webhooks = connection.webhook_receiver()
        self._forward_to: str | None = None
        self._forward_lock = threading.Lock()
        self.endpoint = SandboxServer(self._endpoint_app(), 0).start()
        self.books = XeroBooks(self.sandbox, self.server.url)
        self._numbers = itertools.count(1)

    def close(self) -> None:
        self.books.api().close()
        self.sandbox.close()
        self.server.stop()
        self.endpoint.stop()

    def reset(self) -> None:
        self.sandbox.wait_for_webhooks_idle()
        self.sandbox.faults.clear()
        self.sandbox.reset()

    # --- what the organisation holds ------------------------------------------------------

    def _rows(self, object_type: ObjectType) -> list[dict[str, Any]]:
        collection, _ = _COLLECTIONS[object_type]
        return self.sandbox.entities(collection)

    def _row(self, object_type: ObjectType, target_id: str) -> dict[str, Any]:
        _, key = _COLLECTIONS[object_type]
        (row,) = (r for r in self._rows(object_type) if r[key] == target_id)
        return row

    def customer(self, target_id: str) -> dict[str, str | None]:
        row = self._row(ObjectType.CUSTOMER, target_id)
        phone: dict[str, Any] = next((p for p in row["Phones"] if p["PhoneType"] == "DEFAULT"), {})
        return {
            "display_name": row.get("Name"),
            "given_name": row.get("FirstName"),
            "family_name": row.get("LastName"),
            "company_name": None,  # Xero's contact name is the company: no field of its own
            "email": row.get("EmailAddress"),
            "phone": phone.get("PhoneNumber") or None,
        }

    def invoice(self, target_id: str) -> StoredInvoice:
        """The lines before their discount (Xero's LineAmount is after it) and the
        invoice's SubTotal: Xero adds each line's tax on top (LineAmountTypes
        Exclusive), and the lines' total the contract checks is the one before tax."""
        row = self._row(ObjectType.INVOICE, target_id)
        lines = [
            StoredLine(
                item_ref=line["ItemCode"],
                quantity=_money(line["Quantity"]),
                unit_price=_money(line["UnitAmount"]),
                amount=_money(line["LineAmount"]) + _money(line.get("DiscountAmount", 0)),
            )
            for line in row["LineItems"]
        ]
        return StoredInvoice(row.get("InvoiceNumber"), lines, _money(row["SubTotal"]))

    def ids(self, object_type: ObjectType) -> set[str]:
        _, key = _COLLECTIONS[object_type]
        return {str(row[key]) for row in self._rows(object_type)}

    def item_id(self, name: str) -> str:
        (row,) = (r for r in self._rows(ObjectType.ITEM) if r["Name"] == name)
        return str(row["Code"])

    def unknown_id(self, object_type: ObjectType) -> str:
        return "5f0c0c6e-0b1a-4c2d-8e3f-00000000dead"  # ids are random UUIDs

    def lose_next_write_answer(self) -> None:
        # Creates are PUTs (Xero's "PUT = create only").
        self.sandbox.faults.add(Fault(kind="drop_response", path_prefix=API_PREFIX, method="PUT"))

    # --- webhooks ----------------------------------------------------------------------

    def send_webhooks_to(self, url: str | None) -> None:
        """Point Xero at the kit's endpoint and pass Intent to Receive, as a person does
        in the developer portal; deliveries then reach ``url``."""
        with self._forward_lock:
            self._forward_to = url
        if url is None:
            self.sandbox.webhook_url = None
            return
        self.sandbox.webhook_url = self.endpoint.url + HOOK_PATH
        outcome = self.sandbox.intent_to_receive()
        assert outcome.ok, f"Intent to Receive failed: {outcome.checks}"

    def _endpoint_app(self) -> Flask:
        app = Flask("xero-kit-endpoint")

        @app.post(HOOK_PATH)
        def hook() -> Response:
            delivery = received_webhook()
            try:
                self.webhooks.verify(delivery)
                events = self.webhooks.normalize(delivery, CONNECTION_ID)
            except WebhookRejected as rejected:
                return Response(b"", status=rejected.status)
            with self._forward_lock:
                forward_to = self._forward_to
            if events and forward_to is not None:
                passed = httpx.post(
                    forward_to,
                    content=delivery.body.encode(),
                    headers={
                        "Content-Type": request.headers.get("Content-Type", "application/json"),
                        "x-xero-signature": delivery.headers["x-xero-signature"],
                    },
                    timeout=5.0,
                )
                if passed.status_code >= 300:
                    return Response(b"", status=passed.status_code)
            answer = self.webhooks.answer(delivery, len(events))
            return Response(answer.body, status=answer.status, content_type=answer.content_type)

        return app

    def make_change(self) -> tuple[ObjectType, str]:
        """A contact typed into Xero by a person (a CONTACT CREATE event follows)."""
        contact = self.sandbox.ui_create("Contacts", {"Name": "Walk-in Wendy"})
        return ObjectType.CUSTOMER, str(contact["ContactID"])

    def wait_for_webhooks(self) -> None:
        assert self.sandbox.wait_for_webhooks_idle(), "Xero's webhooks did not go out"

    def sign(self, url: str, body: str) -> dict[str, str]:
        """``x-xero-signature``: base64 HMAC-SHA256 of the body under the webhook key."""
        return {"x-xero-signature": sign(self.config.webhook_key, body.encode())}

    # --- the ledger (tests/contracts/test_accounting_ledger.py) ---------------------------

    def ledger(self) -> AccountingLedger:
        assert isinstance(self.target, AccountingLedger)
        return self.target

    def issue_invoice(self, amount: Decimal, *, due: date) -> tuple[str, str]:
        """A new contact's approved invoice of one untaxed ``amount`` line, due on
        ``due``: its (invoice id, contact id)."""
        n = next(self._numbers)
        contact = self.sandbox.ui_create(
            "Contacts", {"Name": f"Ledger Customer {n}", "EmailAddress": f"ledger{n}@example.com"}
        )
        contact_id = str(contact["ContactID"])
        return self.add_invoice(contact_id, amount, due=due), contact_id

    def add_invoice(self, customer_id: str, amount: Decimal, *, due: date) -> str:
        """Another approved invoice for the same contact, dated before any payment."""
        invoice = self.sandbox.ui_create(
            "Invoices",
            {
                "Type": "ACCREC",
                "Contact": {"ContactID": customer_id},
                "Date": (min(due, date.today()) - timedelta(days=30)).isoformat(),
                "DueDate": due.isoformat(),
                "Status": "AUTHORISED",
                "LineAmountTypes": "NoTax",  # the total is the amount, as the suite expects
                "LineItems": [
                    {
                        "Description": "Services",
                        "Quantity": 1,
                        "UnitAmount": float(amount),
                        "AccountCode": self.income_account,
                    }
                ],
            },
        )
        return str(invoice["InvoiceID"])

    def pay(self, invoice_id: str, amount: Decimal, *, on: date) -> str:
        return self.books.record_payment(invoice_id, amount, received_on=on)

    def credit(self, invoice_id: str, amount: Decimal) -> str:
        """A credit note allocated to the invoice; the change feed names it apart."""
        return credit_note_port_id(self.books.credit_invoice(invoice_id, amount))

    def void(self, invoice_id: str) -> None:
        self.books.void_invoice(invoice_id)

    def refund(self, customer_id: str, amount: Decimal, *, on: date) -> str:
        """A credit note refunded in cash: the refund's PaymentID, which the change
        feed names."""
        return self.books.refund(customer_id, amount, refunded_on=on)
