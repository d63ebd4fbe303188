"""``crmsync demo``: the whole flow on the local stack, checked, in about a minute.

It starts the local stack for one connection (any registered CRM and accounting
system: ``--crm``, ``--accounting``), creates sample data in the CRM's sandbox through
the CRM's public API (as any integration would), lets the signed webhooks flow
through the real handlers, changes a won deal, runs the reconciliation schedule,
and then prints what the books hold and the audit trail. It exits 0 only when every
expectation below holds, and otherwise says which did not.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal

from rich.console import Console
from rich.table import Table

from local.config import LocalConfig
from local.runtime import LocalStack
from local.sandboxes.registry import BookCustomer, BookInvoice, Books, CrmPerson, DemoLine, sandbox
from shared.connectors.registry import vendor
from shared.models import AuditEntry, ObjectType, Outcome
from shared.models.events import record_key
from shared.stores.audit import DynamoAuditLog

# Wide enough for the audit table when output is not a terminal (CI logs, pipes).
console = Console(width=None if sys.stdout.isatty() else 150)

CHANGED_LINES = ["Services", "Hours", "Installation"]
# 10 × 150 + 2.5 × 80 − 20 + 1 × 50
CHANGED_TOTAL = Decimal("1730")


@dataclass
class Scenario:
    """Ids of what the demo created, and what it expects to see in the books."""

    company: str = ""
    contacts: dict[str, str] = field(default_factory=dict)
    won_deals: dict[str, str] = field(default_factory=dict)  # deal id → customer display name
    open_deal: str = ""
    bad_contact: str = ""
    changed_deal: str = ""


def create_sample_data(person: CrmPerson) -> Scenario:
    s = Scenario()
    s.company = person.create_company("Globex Corporation", "Springfield")
    s.contacts["ada"] = person.create_contact(
        "Ada", "Lovelace", "ada@globex.example", company=s.company
    )
    s.contacts["grace"] = person.create_contact("Grace", "Hopper", "Grace@Navy.example")
    # A record with a bad field: the mapping requires an email.
    s.bad_contact = person.create_contact("No", "Email", None)
    redesign = person.create_deal(
        "Website redesign",
        won=True,
        company=s.company,
        contact=s.contacts["ada"],
        lines=[
            DemoLine("Services", "10", "150"),
            DemoLine("Hours", "2.5", "80", discount="20"),
        ],
    )
    training = person.create_deal(
        "Training day",
        won=True,
        company=None,
        contact=s.contacts["grace"],
        lines=[DemoLine("Design", "1", "1200")],
    )
    s.open_deal = person.create_deal(
        "Support retainer", won=False, company=None, contact=s.contacts["grace"], lines=[]
    )
    s.won_deals = {redesign: "Globex Corporation", training: "Grace Hopper"}
    s.changed_deal = redesign
    return s


def change_won_deal(person: CrmPerson, s: Scenario) -> None:
    """A won deal gains a line item and a new name: its invoice must follow, once."""
    person.add_line(s.changed_deal, DemoLine("Installation", "1", "50"))
    person.rename_deal(s.changed_deal, "Website redesign + install")


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
        for running in stack.sandboxes.values():
            running.wait_for_webhooks_idle(max(deadline - time.monotonic(), 0))
            stack.wait_until_drained(max(deadline - time.monotonic(), 0))


def check(
    s: Scenario,
    person: CrmPerson,
    crm: str,
    customers: list[BookCustomer],
    invoices: list[BookInvoice],
    audit: list[AuditEntry],
    dead_letters: int,
) -> list[str]:
    """Every expectation the demo makes; returns what failed, in words."""
    problems: list[str] = []
    for name in ("Globex Corporation", "Ada Lovelace", "Grace Hopper"):
        matching = [c for c in customers if c.name == name]
        if len(matching) != 1:
            problems.append(f"expected one customer {name!r}, found {len(matching)}")
    for deal_id, customer_name in s.won_deals.items():
        billed = [i for i in invoices if i.number == person.invoice_number(deal_id)]
        if len(billed) != 1:
            problems.append(f"expected one invoice for deal {deal_id}, found {len(billed)}")
            continue
        invoice = billed[0]
        if invoice.customer != customer_name:
            problems.append(f"invoice for deal {deal_id} is not billed to {customer_name!r}")
        if deal_id == s.changed_deal:
            names = [name for name, _ in invoice.lines]
            if names != CHANGED_LINES:
                problems.append(f"the changed deal's invoice has lines {names}")
            if Decimal(invoice.total) != CHANGED_TOTAL:
                problems.append(f"the changed deal's invoice totals {invoice.total}")
    if any(i.number == person.invoice_number(s.open_deal) for i in invoices):
        problems.append("the open deal was invoiced")
    bad_key = record_key(crm, ObjectType.CONTACT, s.bad_contact)
    bad = [e for e in audit if e.record_key == bad_key]
    if not any(e.outcome is Outcome.INVALID and e.field == "email" for e in bad):
        problems.append("the contact without email was not audited as invalid (field email)")
    if dead_letters:
        problems.append(f"{dead_letters} message(s) in the dead-letter queue")
    return problems


def show(
    label: str, customers: list[BookCustomer], invoices: list[BookInvoice], audit: list[AuditEntry]
) -> None:
    table = Table(title=f"{label} customers written by crmsync", title_justify="left")
    for column in ("Id", "Name", "Email", "Version"):
        table.add_column(column)
    for c in customers:
        table.add_row(c.id, c.name, c.email, c.version)
    console.print(table)
    table = Table(title=f"{label} invoices", title_justify="left")
    for column in ("Id", "Number", "Customer", "Lines", "Total", "Due", "Version"):
        table.add_column(column)
    for i in invoices:
        lines = ", ".join(f"{quantity} × {name}" for name, quantity in i.lines)
        table.add_row(
            i.id, i.number, i.customer, lines, f"{i.total} {i.currency}", i.due, i.version
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
    """Runs the scenario on a fresh stack for the config's first connection; returns the
    failed expectations."""
    connection = config.connections[0]
    crm, accounting = vendor(connection.crm), vendor(connection.accounting)
    person_of, books_of = sandbox(crm.name).person, sandbox(accounting.name).books
    if person_of is None or books_of is None:
        return [f"the {crm.label} or {accounting.label} sandbox has no demo role"]
    title = f"starting the local stack (moto, {crm.label} and {accounting.label} sandboxes)"
    with step(title):
        stack = LocalStack(config.with_free_ports()).start()
    try:
        person = person_of(stack.sandboxes[crm.name], stack.urls.sandboxes[crm.name])
        books: Books = books_of(
            stack.sandboxes[accounting.name], stack.urls.sandboxes[accounting.name]
        )
        seeded_customers = {c.id for c in books.customers()}
        seeded_invoices = {i.id for i in books.invoices()}
        with step(f"creating {crm.label} sample data: a company, 3 contacts, 3 deals, lines"):
            scenario = create_sample_data(person)
        with step(f"letting the webhooks flow: webhook → SQS FIFO → sync → {accounting.label}"):
            settle(stack)
        with step("changing a won deal (new line item, new name)"):
            change_won_deal(person, scenario)
            settle(stack)
        with step("running the reconciliation schedule (the catch-up for missed webhooks)"):
            stack.fire_schedule()
            settle(stack)
        customers = [c for c in books.customers() if c.id not in seeded_customers]
        invoices = [i for i in books.invoices() if i.id not in seeded_invoices]
        audit = DynamoAuditLog(
            stack.clients.dynamodb, stack.resources.tables["Audit"], ttl_days=1
        ).entries(connection.id, limit=200)
        show(accounting.label, customers, invoices, audit)
        dead_letters = sum(q.dead_letters for q in stack.status().queues.values())
        return check(scenario, person, crm.name, customers, invoices, audit, dead_letters)
    finally:
        stack.stop()
