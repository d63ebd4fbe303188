"""Backfill into one QuickBooks company: batch writes against one call per record.

Method: a HubSpot sandbox with N contacts, each with one won deal of two line items,
none of them in the books yet; a QuickBooks sandbox at Intuit's documented limits (500
requests a minute, 10 a second, 40 batch requests a minute per company and app).
The product's own code runs it, in one process, over real HTTP: a reconcile run with
the engine's batch writer (``SyncEngine.backfill``) and then the queue drained through
the engine for what the run left; the call budget paces calls as deployed. The same
run then repeats against a fresh company without the batch writer: every record goes
through the queue and the engine one by one, as before batches.

The CRM side's limits are lifted (HubSpot allows 100 calls per 10 s; reading the deals
is not what this measures). The quota-bound time is what Intuit's limits allow for the
requests a batch backfill needs: one batch request per 30 customers and per 30
invoices, at 40 batch requests a minute, plus the reads of the company's customers
and items, at 500 requests a minute.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from bench.bench_end_to_end import WON, bench_connectors, bench_quickbooks, unmetered_hubspot
from bench.bench_mapping import DEFAULT_MAPPING
from local.memory import (
    MemoryAuditLog,
    MemoryCallBudget,
    MemoryCursorStore,
    MemoryLinkStore,
    MemoryQueue,
)
from local.sandboxes.base import SandboxServer
from local.sandboxes.hubspot import HubSpotSandbox
from shared.connectors.quickbooks.connector import BATCH_MAX_ITEMS
from shared.mapping import Mapper, load_mapping
from shared.sync.engine import SyncEngine
from shared.sync.reconcile import Reconciler

DEALS = 150
BATCH_PER_MINUTE = 40
CALLS_PER_MINUTE = 500


@dataclass(frozen=True)
class BackfillFigures:
    deals: int
    batch_seconds: float
    batch_calls: int
    single_seconds: float
    single_calls: int
    quota_bound_seconds: float

    @property
    def batch_deals_per_minute(self) -> float:
        return self.deals / self.batch_seconds * 60

    @property
    def single_deals_per_minute(self) -> float:
        return self.deals / self.single_seconds * 60

    @property
    def quota_bound_deals_per_minute(self) -> float:
        return self.deals / self.quota_bound_seconds * 60


def seed_crm(hubspot: HubSpotSandbox, deals: int) -> None:
    """A contact a deal, each deal won with two line items, as a person would make them."""
    for i in range(deals):
        person = hubspot.ui_create(
            "contacts",
            {"firstname": f"Backfill{i}", "lastname": "Bench", "email": f"backfill{i}@example.com"},
        )
        deal = hubspot.ui_create("deals", {"dealname": f"Backfill deal {i}", **WON})
        hubspot.ui_associate("deals", deal["id"], "contacts", person["id"])
        for name, qty, price in (("Services", "3", "150"), ("Hours", "2.5", "80")):
            item = hubspot.ui_create("line_items", {"name": name, "quantity": qty, "price": price})
            hubspot.ui_associate("line_items", item["id"], "deals", deal["id"])


def quota_bound_seconds(deals: int) -> float:
    """Intuit's limits over the requests a batch backfill of ``deals`` needs."""
    batches = 2 * math.ceil(deals / BATCH_MAX_ITEMS)  # customers, then invoices
    reads = 2  # the company's customers and its items, a query each (≤ 1,000 rows)
    return max(batches / BATCH_PER_MINUTE, (batches + reads) / CALLS_PER_MINUTE) * 60


def run(hubspot_url: str, deals: int, *, batched: bool) -> tuple[float, int, int, int]:
    """One backfill into a fresh company: seconds, QuickBooks calls, customers, invoices."""
    quickbooks = bench_quickbooks()
    calls = [0]
    quickbooks.app.before_request(lambda: _count(calls))
    server = SandboxServer(quickbooks.app).start()
    try:
        mapper = Mapper(load_mapping(DEFAULT_MAPPING))
        crm, ledger = bench_connectors(hubspot_url, server.url, mapper, MemoryCallBudget())
        links, queue = MemoryLinkStore(), MemoryQueue()
        engine = SyncEngine(
            connection_id="bench",
            crm=crm,
            ledger=ledger,
            mapper=mapper,
            links=links,
            audit=MemoryAuditLog(),
            queue=queue,
        )
        reconciler = Reconciler(
            connection_id="bench",
            crm=crm,
            mapper=mapper,
            links=links,
            cursors=MemoryCursorStore(),
            queue=queue,
            overlap_s=0,
            batch_writer=engine.backfill if batched else None,
        )
        customers_before = quickbooks.create_count("Customer")
        started = time.perf_counter()
        reconciler.run()
        while batch := queue.receive(10):
            for message in batch:
                engine.handle(message.event)
                queue.delete(message.receipt)
        elapsed = time.perf_counter() - started
        return (
            elapsed,
            calls[0],
            quickbooks.create_count("Customer") - customers_before,
            quickbooks.create_count("Invoice"),
        )
    finally:
        server.stop()
        quickbooks.close()


def _count(calls: list[int]) -> Any:
    calls[0] += 1
    return None


def measure_backfill(deals: int = DEALS) -> BackfillFigures:
    hubspot = unmetered_hubspot()
    server = SandboxServer(hubspot.app).start()
    try:
        seed_crm(hubspot, deals)
        batch_s, batch_calls, batch_customers, batch_invoices = run(server.url, deals, batched=True)
        single_s, single_calls, single_customers, single_invoices = run(
            server.url, deals, batched=False
        )
    finally:
        server.stop()
        hubspot.close()
    for label, customers, invoices in (
        ("batch", batch_customers, batch_invoices),
        ("one by one", single_customers, single_invoices),
    ):
        if (customers, invoices) != (deals, deals):
            raise RuntimeError(
                f"{label} backfill made {customers} customers and {invoices} invoices, "
                f"not {deals} of each"
            )
    return BackfillFigures(
        deals=deals,
        batch_seconds=batch_s,
        batch_calls=batch_calls,
        single_seconds=single_s,
        single_calls=single_calls,
        quota_bound_seconds=quota_bound_seconds(deals),
    )


def main() -> None:
    figures = measure_backfill()
    bound = figures.quota_bound_seconds
    print(f"backfill of {figures.deals} won deals (new customers) into one QuickBooks company")
    print(
        f"  batch writes      {figures.batch_seconds:6.1f} s  {figures.batch_calls:4} calls  "
        f"{figures.batch_deals_per_minute:7.0f} deals/min  "
        f"({figures.batch_seconds / bound:.2f}× the quota-bound {bound:.1f} s; goal ≤ 1.1×)"
    )
    print(
        f"  one by one        {figures.single_seconds:6.1f} s  {figures.single_calls:4} calls  "
        f"{figures.single_deals_per_minute:7.0f} deals/min"
    )
    hours = 100_000 / figures.batch_deals_per_minute / 60
    print(f"  100,000 deals in batches: about {hours:.1f} h")


if __name__ == "__main__":
    main()
