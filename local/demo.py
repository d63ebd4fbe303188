"""``crmsync demo``: the whole flow on the local stack, checked, in about a minute.

It starts the local stack, creates sample data in the HubSpot sandbox through
HubSpot's public API (as any integration would), lets the signed webhooks flow
through the real handlers, changes a won deal, runs the reconciliation schedule,
and then prints what QuickBooks holds and the audit trail. It exits 0 only when
every expectation below holds, and otherwise says which did not.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from local.config import LocalConfig
from local.runtime import LocalStack
from shared.models import AuditEntry, Outcome
from shared.stores.audit import DynamoAuditLog

# Wide enough for the audit table when output is not a terminal (CI logs, pipes).
console = Console(width=None if sys.stdout.isatty() else 150)

# HubSpot's default association type ids (HUBSPOT_DEFINED).
DEAL_TO_CONTACT, DEAL_TO_COMPANY, LINE_ITEM_TO_DEAL, CONTACT_TO_COMPANY = 3, 5, 20, 279


class HubSpotApi:
    """The few CRM v3 calls the demo makes, with the private-app token."""

    def __init__(self, base_url: str, token: str) -> None:
        self._http = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=10
        )

    def create(
        self, object_type: str, properties: dict[str, str], to: Sequence[tuple[str, int]] = ()
    ) -> str:
        body: dict[str, Any] = {"properties": properties}
        if to:
            body["associations"] = [
                {
                    "to": {"id": target_id},
                    "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": t}],
                }
                for target_id, t in to
            ]
        response = self._http.post(f"/crm/v3/objects/{object_type}", json=body)
        response.raise_for_status()
        return str(response.json()["id"])

    def update(self, object_type: str, record_id: str, properties: dict[str, str]) -> None:
        self._http.patch(
            f"/crm/v3/objects/{object_type}/{record_id}", json={"properties": properties}
        ).raise_for_status()


@dataclass
class Scenario:
    """Ids of what the demo created, and what it expects to see in QuickBooks."""

    company: str = ""
    contacts: dict[str, str] = field(default_factory=dict)
    won_deals: dict[str, str] = field(default_factory=dict)  # deal id → customer display name
    open_deal: str = ""
    bad_contact: str = ""
    changed_deal: str = ""


def create_sample_data(api: HubSpotApi) -> Scenario:
    s = Scenario()
    s.company = api.create("companies", {"name": "Globex Corporation", "city": "Springfield"})
    s.contacts["ada"] = api.create(
        "contacts",
        {"firstname": "Ada", "lastname": "Lovelace", "email": "ada@globex.example"},
        to=[(s.company, CONTACT_TO_COMPANY)],
    )
    s.contacts["grace"] = api.create(
        "contacts", {"firstname": "Grace", "lastname": "Hopper", "email": "Grace@Navy.example"}
    )
    # A record with a bad field: the mapping requires an email.
    s.bad_contact = api.create("contacts", {"firstname": "No", "lastname": "Email"})

    won = {"dealstage": "closedwon", "pipeline": "default", "closedate": "2026-11-20T15:00:00Z"}
    redesign = api.create(
        "deals",
        {"dealname": "Website redesign", **won},
        to=[(s.company, DEAL_TO_COMPANY), (s.contacts["ada"], DEAL_TO_CONTACT)],
    )
    api.create(
        "line_items",
        {"name": "Services", "quantity": "10", "price": "150"},
        to=[(redesign, LINE_ITEM_TO_DEAL)],
    )
    api.create(
        "line_items",
        {"name": "Hours", "quantity": "2.5", "price": "80", "discount": "8"},
        to=[(redesign, LINE_ITEM_TO_DEAL)],
    )
    training = api.create(
        "deals",
        {"dealname": "Training day", **won},
        to=[(s.contacts["grace"], DEAL_TO_CONTACT)],
    )
    api.create(
        "line_items",
        {"name": "Design", "quantity": "1", "price": "1200"},
        to=[(training, LINE_ITEM_TO_DEAL)],
    )
    s.open_deal = api.create(
        "deals",
        {"dealname": "Support retainer", "dealstage": "appointmentscheduled"},
        to=[(s.contacts["grace"], DEAL_TO_CONTACT)],
    )
    s.won_deals = {redesign: "Globex Corporation", training: "Grace Hopper"}
    s.changed_deal = redesign
    return s


def change_won_deal(api: HubSpotApi, s: Scenario) -> None:
    """A won deal gains a line item and a new name: its invoice must follow, once."""
    api.create(
        "line_items",
        {"name": "Installation", "quantity": "1", "price": "50"},
        to=[(s.changed_deal, LINE_ITEM_TO_DEAL)],
    )
    api.update("deals", s.changed_deal, {"dealname": "Website redesign + install"})


@contextmanager
def step(title: str) -> Iterator[None]:
    started = time.monotonic()
    with console.status(title):
        yield
    console.print(f"[green]✓[/green] {title} [dim]({time.monotonic() - started:.1f} s)[/dim]")


def settle(stack: LocalStack, timeout: float = 60.0) -> None:
    """Wait until the sandboxes have delivered their webhooks and the queue is drained."""
    deadline = time.monotonic() + timeout
    for _ in range(2):  # a drained queue can still receive a late webhook batch
        assert stack.hubspot is not None and stack.quickbooks is not None
        stack.hubspot.wait_for_webhooks_idle(max(deadline - time.monotonic(), 0))
        stack.wait_until_drained(max(deadline - time.monotonic(), 0))
        stack.quickbooks.wait_for_webhooks_idle(max(deadline - time.monotonic(), 0))
        stack.wait_until_drained(max(deadline - time.monotonic(), 0))


def quickbooks_state(stack: LocalStack) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    assert stack.urls.quickbooks
    with httpx.Client(base_url=stack.urls.quickbooks, timeout=10) as http:
        customers = http.get("/_sandbox/entities/Customer").json()
        invoices = http.get("/_sandbox/entities/Invoice").json()
    return _rows(customers, "Customer"), _rows(invoices, "Invoice")


def _rows(payload: Any, entity: str) -> list[dict[str, Any]]:
    if isinstance(payload, dict):
        payload = payload.get(entity, payload.get("entities", []))
    return list(payload)


def check(
    s: Scenario,
    customers: list[dict[str, Any]],
    invoices: list[dict[str, Any]],
    audit: list[AuditEntry],
    dead_letters: int,
) -> list[str]:
    """Every expectation the demo makes; returns what failed, in words."""
    problems: list[str] = []
    for name in ("Globex Corporation", "Ada Lovelace", "Grace Hopper"):
        matching = [c for c in customers if c.get("DisplayName") == name]
        if len(matching) != 1:
            problems.append(f"expected one QuickBooks customer {name!r}, found {len(matching)}")
    for deal_id, customer_name in s.won_deals.items():
        memo = f"HubSpot deal {deal_id}"
        matching = [i for i in invoices if i.get("PrivateNote") == memo]
        if len(matching) != 1:
            problems.append(f"expected one invoice for deal {deal_id}, found {len(matching)}")
            continue
        invoice = matching[0]
        if invoice.get("CustomerRef", {}).get("name") != customer_name:
            problems.append(f"invoice for deal {deal_id} is not billed to {customer_name!r}")
        if deal_id == s.changed_deal:
            items = [
                line["SalesItemLineDetail"]["ItemRef"]["name"]
                for line in invoice.get("Line", [])
                if line.get("DetailType") == "SalesItemLineDetail"
            ]
            if items != ["Services", "Hours", "Installation"]:
                problems.append(f"the changed deal's invoice has lines {items}")
            if Decimal(str(invoice.get("TotalAmt"))) != Decimal("1730.00"):
                problems.append(f"the changed deal's invoice totals {invoice.get('TotalAmt')}")
    if any(i.get("PrivateNote") == f"HubSpot deal {s.open_deal}" for i in invoices):
        problems.append("the open deal was invoiced")
    bad = [e for e in audit if e.record_key == f"hubspot:contact:{s.bad_contact}"]
    if not any(e.outcome is Outcome.INVALID and e.field == "email" for e in bad):
        problems.append("the contact without email was not audited as invalid (field email)")
    if dead_letters:
        problems.append(f"{dead_letters} message(s) in the dead-letter queue")
    return problems


def show(
    customers: list[dict[str, Any]], invoices: list[dict[str, Any]], audit: list[AuditEntry]
) -> None:
    table = Table(title="QuickBooks customers written by crmsync", title_justify="left")
    for column in ("Id", "DisplayName", "Email", "SyncToken"):
        table.add_column(column)
    for c in customers:
        table.add_row(
            c["Id"],
            c.get("DisplayName", ""),
            (c.get("PrimaryEmailAddr") or {}).get("Address", ""),
            c.get("SyncToken", ""),
        )
    console.print(table)
    table = Table(title="QuickBooks invoices", title_justify="left")
    for column in ("Id", "Customer", "Lines", "Total", "Due", "SyncToken", "Memo"):
        table.add_column(column)
    for i in invoices:
        lines = ", ".join(
            f"{ln['SalesItemLineDetail']['Qty']} × {ln['SalesItemLineDetail']['ItemRef']['name']}"
            for ln in i.get("Line", [])
            if ln.get("DetailType") == "SalesItemLineDetail"
        )
        table.add_row(
            i["Id"],
            i.get("CustomerRef", {}).get("name", ""),
            lines,
            f"{i.get('TotalAmt')} {i.get('CurrencyRef', {}).get('value', '')}",
            i.get("DueDate", ""),
            i.get("SyncToken", ""),
            i.get("PrivateNote", ""),
        )
    console.print(table)
    table = Table(title="Audit trail (oldest first)", title_justify="left")
    for column in ("record", "outcome", "why", "field / rule", "target"):
        table.add_column(column)
    colour = {Outcome.INVALID: "red", Outcome.FAILED: "red", Outcome.SKIPPED: "yellow"}
    for e in reversed(audit):
        style = colour.get(e.outcome, "green")
        table.add_row(
            e.record_key,
            f"[{style}]{e.outcome}[/{style}]",
            e.reason,
            f"{e.field} / {e.rule}" if e.field else "",
            e.target_key or "",
        )
    console.print(table)


def run_demo(config: LocalConfig) -> list[str]:
    """Runs the scenario on a fresh stack; returns the failed expectations."""
    with step("starting the local stack (moto, HubSpot and QuickBooks sandboxes, handlers)"):
        stack = LocalStack(config.with_free_ports()).start()
    try:
        assert stack.urls.hubspot and stack.urls.quickbooks
        seeded_customers = {c["Id"] for c in quickbooks_state(stack)[0]}
        seeded_invoices = {i["Id"] for i in quickbooks_state(stack)[1]}
        api = HubSpotApi(stack.urls.hubspot, config.hubspot.access_token)
        with step("creating HubSpot sample data: a company, 3 contacts, 3 deals, line items"):
            scenario = create_sample_data(api)
        with step("letting the signed webhooks flow: webhook → SQS FIFO → sync → QuickBooks"):
            settle(stack)
        with step("changing a won deal (new line item, new name)"):
            change_won_deal(api, scenario)
            settle(stack)
        with step("running the reconciliation schedule (the catch-up for missed webhooks)"):
            stack.fire_schedule()
            settle(stack)
        customers, invoices = quickbooks_state(stack)
        customers = [c for c in customers if c["Id"] not in seeded_customers]
        invoices = [i for i in invoices if i["Id"] not in seeded_invoices]
        audit = DynamoAuditLog(
            stack.clients.dynamodb, stack.resources.tables["Audit"], ttl_days=1
        ).entries(config.connection_id, limit=200)
        show(customers, invoices, audit)
        dead_letters = sum(q.dead_letters for q in stack.status().queues.values())
        return check(scenario, customers, invoices, audit, dead_letters)
    finally:
        stack.stop()
