"""End to end: CRM records in, customers and invoices out.

Two figures, because two different things bound the rate:

1. **Through the local stack, at the vendors' documented limits, for every pair of
   registered CRM and accounting system.** Records are created through the CRM
   sandbox's public API; its webhooks go through the API adapter, the real webhook
   handler, moto's SQS FIFO, the worker and the real sync handler, which calls both
   sandboxes over HTTP. The clock runs from the first create until every customer
   and invoice exists and the queue is drained. An accounting system's per-company
   limit (QuickBooks 500 calls a minute, Xero 60) over the ~4 calls a contact costs
   (two lookups, the create, the echo check) sets this rate, not us.
2. **The engine alone, vendor limits lifted** (HubSpot → QuickBooks). The same
   connectors and engine over real HTTP against sandboxes whose limits are raised,
   with an unmetered call budget and the in-memory queue and stores (moto's SQS
   costs time in proportion to the queue's length per call and would measure moto).
   One worker, one thread: a Lambda's view. This is our own overhead per event.
"""

from __future__ import annotations

import time
from typing import Any

from bench.bench_mapping import DEFAULT_MAPPING
from local.config import LocalConfig
from local.memory import (
    MemoryAuditLog,
    MemoryLinkStore,
    MemoryLock,
    MemoryQueue,
    MemorySecretStore,
)
from local.runtime import LocalStack
from local.sandboxes.base import SandboxServer
from local.sandboxes.hubspot import HubSpotSandbox, HubSpotSandboxConfig
from local.sandboxes.quickbooks import QuickBooksSandbox, QuickBooksSandboxConfig
from local.sandboxes.registry import DemoLine, sandbox
from shared.connectors.hubspot.connector import build_hubspot
from shared.connectors.quickbooks.connector import QuickBooksAccounting, build_quickbooks
from shared.connectors.registry import vendors
from shared.mapping import Mapper, load_mapping
from shared.models import ChangeEvent, ChangeKind, ObjectType
from shared.models.links import utc_now
from shared.ports import CallBudget, CrmSource
from shared.sync.engine import SyncEngine

WON = {"dealstage": "closedwon", "pipeline": "default", "closedate": "2026-11-20T15:00:00Z"}


def create_records(hubspot: HubSpotSandbox, contacts: int, deals: int, tag: str) -> list[Any]:
    """Contacts, then won deals (two line items each) on the first contacts; as a person would."""
    created = []
    ids = []
    for i in range(contacts):
        record = hubspot.ui_create(
            "contacts",
            {"firstname": f"Bench{i}", "lastname": tag, "email": f"bench{i}.{tag}@example.com"},
        )
        ids.append(record["id"])
        created.append(("contact", record["id"]))
    for i in range(deals):
        deal = hubspot.ui_create("deals", {"dealname": f"Deal {i} {tag}", **WON})
        hubspot.ui_associate("deals", deal["id"], "contacts", ids[i % len(ids)])
        for name, qty, price in (("Services", "3", "150"), ("Hours", "2.5", "80")):
            item = hubspot.ui_create("line_items", {"name": name, "quantity": qty, "price": price})
            hubspot.ui_associate("line_items", item["id"], "deals", deal["id"])
        created.append(("deal", deal["id"]))
    return created


def through_local_stack(crm: str, accounting: str, contacts: int, deals: int) -> None:
    """One pair on the local stack, records created through the CRM's public API."""
    config = LocalConfig.load().with_pair(crm, accounting).with_free_ports()
    stack = LocalStack(config).start()
    try:
        person_of, books_of = sandbox(crm).person, sandbox(accounting).books
        assert person_of is not None and books_of is not None
        person = person_of(stack.sandboxes[crm], stack.urls.sandboxes[crm])
        books = books_of(stack.sandboxes[accounting], stack.urls.sandboxes[accounting])
        customers_before = {c.id for c in books.customers()}
        invoices_before = {i.id for i in books.invoices()}
        started = time.perf_counter()
        ids = [
            person.create_contact(f"Bench{n}", crm, f"bench{n}.{crm}@example.com")
            for n in range(contacts)
        ]
        for n in range(deals):
            person.create_deal(
                f"Deal {n}",
                won=True,
                company=None,
                contact=ids[n % len(ids)],
                lines=[DemoLine("Services", "3", "150"), DemoLine("Hours", "2.5", "80")],
            )
        deadline = started + 600
        while time.perf_counter() < deadline:
            done_customers = len({c.id for c in books.customers()} - customers_before)
            done_invoices = len({i.id for i in books.invoices()} - invoices_before)
            if done_customers >= contacts and done_invoices >= deals:
                break
            time.sleep(0.2)
        stack.sandboxes[crm].wait_for_webhooks_idle(60)
        stack.wait_until_drained(120)
        elapsed = time.perf_counter() - started
        status = stack.status()
        processed = sum(w.processed for w in status.workers.values())
        failed = sum(w.failed for w in status.workers.values())
        print(
            f"local stack, {crm} → {accounting}, documented limits: {contacts} contacts + "
            f"{deals} won deals → {done_customers} customers, {done_invoices} invoices in "
            f"{elapsed:.1f} s ({(contacts + deals) / elapsed:.2f} records/s; {processed} queue "
            f"events, {processed / elapsed:.1f} events/s, {failed} failed attempts)"
        )
    finally:
        stack.stop()


class Unmetered:
    """A call budget that never waits: the limits are lifted for this measurement."""

    def acquire(self, key: str, *, limit: int, per_s: float, max_wait_s: float) -> float:
        return 0.0


def unmetered_hubspot() -> HubSpotSandbox:
    """A HubSpot sandbox whose limits are lifted: the CRM side is not what is measured."""
    return HubSpotSandbox(
        HubSpotSandboxConfig(
            access_token="bench",
            client_secret="bench",
            rate_limit=10**9,
            daily_limit=10**9,
            search_rate_per_s=10**9,
        )
    )


def bench_quickbooks(**limits: int) -> QuickBooksSandbox:
    """A QuickBooks company for a bench: Intuit's documented limits unless ``limits``."""
    return QuickBooksSandbox(
        QuickBooksSandboxConfig(
            realm_id="1",
            client_id="c",
            client_secret="s",
            initial_refresh_token="r",
            webhook_verifier_token="v",
            **limits,
        )
    )


def bench_connectors(
    hubspot_url: str, quickbooks_url: str, mapper: Mapper, quickbooks_budget: CallBudget
) -> tuple[CrmSource, QuickBooksAccounting]:
    """The production connectors over HTTP to the bench's sandboxes (HubSpot unmetered)."""
    secrets = MemorySecretStore(
        {
            "hubspot": {"access_token": "bench", "client_secret": "bench"},
            "quickbooks": {
                "client_id": "c",
                "client_secret": "s",
                "refresh_token": "r",
                "realm_id": "1",
            },
        }
    )
    crm = build_hubspot(
        base_url=hubspot_url,
        secrets=secrets,
        secret_id="hubspot",
        budget=Unmetered(),
        connection_id="bench",
        properties={t: mapper.source_properties(t) for t in ObjectType},
    )
    ledger = build_quickbooks(
        api_url=quickbooks_url,
        token_url=f"{quickbooks_url}/oauth2/v1/tokens/bearer",
        secrets=secrets,
        secret_id="quickbooks",
        lock=MemoryLock(),
        budget=quickbooks_budget,
    )
    return crm, ledger


def engine_alone(contacts: int, deals: int) -> None:
    hubspot = unmetered_hubspot()
    quickbooks = bench_quickbooks(rate_per_minute=10**9, rate_per_second=10**9)
    servers = [SandboxServer(hubspot.app).start(), SandboxServer(quickbooks.app).start()]
    try:
        mapper = Mapper(load_mapping(DEFAULT_MAPPING))
        crm, ledger = bench_connectors(servers[0].url, servers[1].url, mapper, Unmetered())
        queue = MemoryQueue()
        engine = SyncEngine(
            connection_id="bench",
            crm=crm,
            ledger=ledger,
            mapper=mapper,
            links=MemoryLinkStore(),
            audit=MemoryAuditLog(),
            queue=queue,
        )
        queue.send(
            [
                ChangeEvent(
                    connection_id="bench",
                    source="hubspot",
                    object_type=ObjectType(object_type),
                    record_id=record_id,
                    event_id=f"{object_type}-{record_id}",
                    kind=ChangeKind.CREATED,
                    occurred_at=utc_now(),
                    version=0,
                )
                for object_type, record_id in create_records(hubspot, contacts, deals, "engine")
            ]
        )
        events = len(queue)
        started = time.perf_counter()
        while batch := queue.receive(10):
            for message in batch:
                engine.handle(message.event)
                queue.delete(message.receipt)
        elapsed = time.perf_counter() - started
        print(
            f"engine alone, limits lifted:    {events} events ({contacts} contacts, {deals} deals)"
            f" in {elapsed:.2f} s → {events / elapsed:.1f} events/s, "
            f"{elapsed / events * 1e3:.1f} ms/event; QuickBooks now holds "
            f"{quickbooks.create_count('Customer')} created customers, "
            f"{quickbooks.create_count('Invoice')} created invoices"
        )
    finally:
        for server in servers:
            server.stop()
        hubspot.close()
        quickbooks.close()


def main() -> None:
    for crm in vendors("crm"):
        for accounting in vendors("accounting"):
            through_local_stack(crm.name, accounting.name, contacts=20, deals=5)
    engine_alone(contacts=200, deals=50)


if __name__ == "__main__":
    main()
