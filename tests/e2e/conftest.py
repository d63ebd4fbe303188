"""The end-to-end harness: the real handlers on the local stack, driven through the sandboxes.

One stack per test module and process (``LocalStack`` is one per process; pytest-xdist
may hand a module's tests to both workers, and each then starts its own). The stack
uses a test description whose Events queue hides a failed message for seconds, not
minutes, so redelivery and the move to the DLQ happen within a test. Tests share
their module's stack: each one creates its own records (fresh names and emails) and
asserts on what changed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from infra.resources import DESCRIPTION
from local.config import FailuresConfig, LocalConfig
from local.runtime import LocalStack
from local.sandboxes.hubspot import (
    DEAL_TO_CONTACT,
    LINE_ITEM_TO_DEAL,
    HubSpotPerson,
    HubSpotSandbox,
)
from local.sandboxes.quickbooks import QuickBooksSandbox
from shared.models import AuditEntry, ChangeEvent
from shared.stores.audit import DynamoAuditLog
from shared.sync.backflow import ECHO_OF_WRITE_BACK

T = TypeVar("T")

EVENTS = "Events"
# Seconds before a failed message is tried again (doubled on each failure): short here,
# so redelivery and the move to the DLQ happen within a test.
RETRY_DELAY_S = 1
# Failed attempts after which the consumer moves a message to the DLQ.
MAX_FAILED = DESCRIPTION.queue(EVENTS).max_failed_attempts or 0
SETTLE_S = 60.0


def fast_retries(config: LocalConfig) -> LocalConfig:
    """``config`` with failed messages retried after seconds, not minutes, and
    dead-lettered after the deployed number of attempts (whatever ``local.yaml`` says)."""
    failures = FailuresConfig(retry_delay_s=RETRY_DELAY_S)
    return config.model_copy(update={"failures": failures})


def eventually(probe: Callable[[], T | None], what: str, timeout: float = 30.0) -> T:
    """Poll ``probe`` until it returns something truthy; fail saying ``what`` never happened."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() >= deadline:
            raise AssertionError(f"within {timeout:g} s: {what}")
        time.sleep(0.05)


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Line:
    """A HubSpot line item as the tests create it; names are QuickBooks' seeded items."""

    name: str
    quantity: str
    price: str
    discount: str | None = None  # HubSpot's unit discount


@dataclass(frozen=True)
class Person:
    id: str
    email: str
    display_name: str


class PairHarness:
    """A running stack of any one CRM and accounting system (``pair_config``): waiting
    for it, its audit trail and its dead letters."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.connection_id = stack.config.connections[0].id
        self._audit = DynamoAuditLog(stack.clients.dynamodb, stack.resources.tables["Audit"], 1)

    def settle(self, timeout: float = SETTLE_S) -> None:
        """Every sandbox's webhooks delivered and every message handled (or dead-lettered)."""
        deadline = time.monotonic() + timeout

        def left() -> float:
            return max(deadline - time.monotonic(), 0.0)

        for _ in range(2):  # a drained queue can still receive a late webhook batch
            for name, running in self.stack.sandboxes.items():
                assert running.wait_for_webhooks_idle(left()), f"{name} webhooks still pending"
                assert self.stack.wait_until_drained(left()), "the events queue did not drain"

    def audit(self, record_key: str, *, echoes: bool = False) -> list[AuditEntry]:
        """The audit trail of one record's events, oldest first; without the CRM's
        webhooks about what the way back wrote into the record (a two-way mapping
        sends an invoice's standing back), unless ``echoes``."""
        return [
            e
            for e in self.audit_log()
            if e.record_key == record_key and (echoes or e.reason != ECHO_OF_WRITE_BACK)
        ]

    def audit_log(self) -> list[AuditEntry]:
        """The connection's whole audit trail, oldest first."""
        return list(reversed(self._audit.entries(self.connection_id, limit=1000)))

    def dead_letters(self) -> int:
        return sum(q.dead_letters for q in self.stack.status().queues.values())


class Harness(PairHarness):
    """A running HubSpot → QuickBooks stack plus the ways a test drives it and looks
    into it."""

    def __init__(self, stack: LocalStack) -> None:
        super().__init__(stack)
        self.hubspot: HubSpotSandbox = stack.sandboxes["hubspot"]
        self.quickbooks: QuickBooksSandbox = stack.sandboxes["quickbooks"]
        self.hubspot_url = stack.urls.sandboxes["hubspot"]
        self.quickbooks_url = stack.urls.sandboxes["quickbooks"]
        self.crm = HubSpotPerson(self.hubspot, self.hubspot_url)

    # --- the schedule ---------------------------------------------------------------

    def reconcile(self) -> dict[str, Any]:
        """Fire the reconcile schedule now; the connection's report of the run."""
        reports: dict[str, Any] = self.stack.fire_schedule()
        return reports[self.connection_id]

    # --- HubSpot, through its public API ----------------------------------------------

    def create_contact(self, *, email: bool = True) -> Person:
        first, last = "Ada", unique("Lovelace-")
        address = f"{last.lower()}@example.test"
        properties = {"firstname": first, "lastname": last}
        if email:
            properties["email"] = address
        contact_id = self.crm.create("contacts", properties)
        return Person(contact_id, address if email else "", f"{first} {last}")

    def create_deal(
        self, contact_id: str, lines: list[Line], *, won: bool = True, **properties: str
    ) -> str:
        """An open deal with its contact and line items, then (by default) marked won.

        Won last, so whichever of its webhook events the engine handles first, a won
        deal is only ever read with all its line items.
        """
        deal_id = self.crm.create(
            "deals",
            {
                "dealname": unique("Website redesign "),
                "pipeline": "default",
                "dealstage": "appointmentscheduled",
                "closedate": "2026-11-20T15:00:00Z",
                **properties,
            },
            to=[(contact_id, DEAL_TO_CONTACT)],
        )
        for line in lines:
            self.add_line(deal_id, line)
        if won:
            self.win(deal_id)
        return deal_id

    def win(self, deal_id: str) -> None:
        self.crm.update("deals", deal_id, {"dealstage": "closedwon"})

    def won_deal_announced_once(self, contact_id: str, lines: list[Line], **properties: str) -> str:
        """A won deal whose only webhook event is its stage change: one message to follow."""
        with self.webhooks_off():
            deal_id = self.create_deal(contact_id, lines, won=False, **properties)
        self.win(deal_id)
        return deal_id

    def add_line(self, deal_id: str, line: Line) -> str:
        properties = {"name": line.name, "quantity": line.quantity, "price": line.price}
        if line.discount is not None:
            properties["discount"] = line.discount
        return self.crm.create("line_items", properties, to=[(deal_id, LINE_ITEM_TO_DEAL)])

    @contextmanager
    def webhooks_off(self) -> Iterator[None]:
        """HubSpot sends no webhook for what happens inside (as when deliveries are lost)."""
        self.settle()
        self._webhook_target(None)
        try:
            yield
        finally:
            self._webhook_target(self.stack.urls.webhooks["hubspot"])

    def _webhook_target(self, url: str | None) -> None:
        httpx.put(
            f"{self.hubspot_url}/_sandbox/webhooks/target", json={"url": url}, timeout=10
        ).raise_for_status()

    # --- the sandboxes' admin side and QuickBooks' state ------------------------------

    def add_fault(self, sandbox_url: str, **fault: Any) -> None:
        """Queue a fault (``local.sandboxes.base.Fault``'s fields) in one sandbox."""
        httpx.post(f"{sandbox_url}/_sandbox/faults", json=fault, timeout=10).raise_for_status()

    def invoices_for(self, deal_id: str) -> list[dict[str, Any]]:
        memo = f"HubSpot deal {deal_id}"
        return [i for i in self.quickbooks.entities("Invoice") if i.get("PrivateNote") == memo]

    def customers_with(self, email: str) -> list[dict[str, Any]]:
        return [
            c
            for c in self.quickbooks.entities("Customer")
            if (c.get("PrimaryEmailAddr") or {}).get("Address") == email
        ]

    def invoice_path(self) -> str:
        return f"/v3/company/{self.quickbooks.config.realm_id}/invoice"

    # --- the service's own records ------------------------------------------------------

    def audit_of_target(self, entity: str, target_id: str) -> list[AuditEntry]:
        """Entries, of whichever record's events, that name this QuickBooks record."""
        key = f"quickbooks:{entity}:{target_id}"
        return [e for e in self.audit_log() if e.target_key == key]

    def worker(self) -> tuple[int, int]:
        """(records handled, records failed) by the Events worker so far."""
        status = self.stack.status().workers[EVENTS]
        return status.processed, status.failed

    def dead_lettered_keys(self) -> set[str]:
        """Record keys of the messages in the DLQ (peeked: they stay there)."""
        url = self.stack.resources.queues[EVENTS].dead_letter_url
        assert url is not None
        messages = self.stack.clients.sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0
        ).get("Messages", [])
        return {ChangeEvent.model_validate_json(m["Body"]).record_key for m in messages}


def money(value: Any) -> Decimal:
    return Decimal(str(value))


@pytest.fixture(scope="module")
def running() -> Iterator[Harness]:
    # No background reconcile runs: a test fires the schedule when it means to.
    config = LocalConfig.load().with_free_ports().model_copy(update={"reconcile_interval_s": 3600})
    with LocalStack(fast_retries(config)) as stack:
        yield Harness(stack)


@pytest.fixture
def e2e(running: Harness) -> Harness:
    """The module's stack, quiet: what earlier tests set in motion has finished."""
    running.settle()
    return running


def pair_config(crm: str, accounting: str, mapping_file: Path) -> LocalConfig:
    """One connection from ``crm`` to ``accounting`` on this mapping file, on free
    ports, failed messages retried within a test and no background reconcile."""
    config = LocalConfig.load().with_pair(crm, accounting).with_mapping(mapping_file)
    quiet = config.with_free_ports().model_copy(update={"reconcile_interval_s": 3600})
    return fast_retries(quiet)
