"""Concurrent sync invocations, as Lambda runs them off the queue, and their crashes.

Each worker thread is one execution environment: its own HubSpot and QuickBooks
connectors (own HTTP clients), engine and consumer, composed as
``shared.bootstrap`` composes them, sharing only what Lambdas share in AWS (the
stores and the queue). It takes batches of up to ten messages and handles them the
way ``functions/sync/handler.py`` and the SQS event source do: records in order,
a failed record's later group-mates skipped (``SqsFifoPartialProcessor`` with
``skip_group_on_error``), the successes deleted once the batch is done. There is
no idempotency cache: the engine must be right without one.

Crashes kill an environment the way a runtime kill does: ``Crash`` is a
``BaseException``, so no ``except Exception`` in the engine catches it, and the
environment is rebuilt for the next batch. "After a write" crashes right after a
vendor write returned, before the link is saved; "after apply" right after a
record was handled, before its batch is deleted. Nothing of a crashed batch is
deleted: all of it comes back.

Time is compressed where nothing happens but waiting. A message whose environment
died comes back once the queue's visibility timeout (360 s, six function timeouts)
has passed; nothing works on it meanwhile, so the harness shortens that wait to
about a second (``queue.change_visibility``) instead of sleeping it. (A failed
message comes back after the consumer's retry delay, compressed in the run's
settings.) The visibility timeout itself stays as deployed, so a message is never
handed out again while an invocation still holds it, which SQS FIFO as deployed
never does. The create leases a crashed environment held are released as it dies
(the ``finally`` of the lease runs): by the time its messages would come back in
AWS, the 60 s lease has long expired.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from local.chaos.vendors import CONNECTION, Vendors
from local.memory import (
    MemoryAuditLog,
    MemoryCallBudget,
    MemoryCursorStore,
    MemoryCustomerDirectory,
    MemoryDeferralCounter,
    MemoryLinkStore,
    MemoryLock,
    MemoryQueue,
    MemorySecretStore,
    Received,
)
from shared.bootstrap import CRM_OBJECTS
from shared.connectors.http import Deadline
from shared.connectors.hubspot.connector import build_hubspot
from shared.connectors.quickbooks.connector import build_quickbooks
from shared.connectors.spec import secret_id
from shared.errors import OutOfTime, RateLimited
from shared.mapping import Mapper
from shared.models import Invoice, ObjectType, Party, System
from shared.ports import (
    AccountingTarget,
    CallBudget,
    CustomerListing,
    KnownCustomer,
    NewItem,
    TargetRef,
)
from shared.sync.consume import Consumer, QueueMessage
from shared.sync.engine import SyncEngine

log = logging.getLogger(__name__)

BATCH_SIZE = 10  # the event source mapping's batch size
# The limits both sandboxes enforce are lifted; the shared call budget still paces
# every call, against the documented limits times this.
LIMIT_FACTOR = 1000
# The rest of a crashed batch's visibility timeout, compressed (module docstring).
COME_BACK_S = (0.2, 1.5)
IDLE_POLL_S = 0.01
HARNESS_ERRORS = "harness errors"


class Crash(BaseException):
    """The execution environment dies here (a kill, an out-of-memory, a timeout)."""


@dataclass(frozen=True)
class CrashChaos:
    after_write: float = 0.02  # per vendor write that returned
    after_apply: float = 0.003  # per message handled


class CountingDeferrals(MemoryDeferralCounter):
    """The shared deferral counter, also counting deferrals in all."""

    def __init__(self) -> None:
        super().__init__()
        self._total_lock = threading.Lock()
        self.total = 0

    def add_deferral(self, message_id: str) -> None:
        super().add_deferral(message_id)
        with self._total_lock:
            self.total += 1


@dataclass(frozen=True)
class Stores:
    """What every invocation shares, as the tables, queue and secrets are in AWS."""

    queue: MemoryQueue
    secrets: MemorySecretStore
    links: MemoryLinkStore = field(default_factory=MemoryLinkStore)
    directory: MemoryCustomerDirectory = field(default_factory=MemoryCustomerDirectory)
    audit: MemoryAuditLog = field(default_factory=MemoryAuditLog)
    lock: MemoryLock = field(default_factory=MemoryLock)
    cursors: MemoryCursorStore = field(default_factory=MemoryCursorStore)
    budget: MemoryCallBudget = field(default_factory=MemoryCallBudget)
    deferrals: CountingDeferrals = field(default_factory=CountingDeferrals)


class RaisedLimits:
    """A call budget that paces against the vendors' limits times ``factor``."""

    def __init__(self, budget: CallBudget, factor: int) -> None:
        self._budget = budget
        self._factor = factor

    def acquire(self, key: str, *, limit: int, per_s: float, max_wait_s: float) -> float:
        return self._budget.acquire(
            key, limit=limit * self._factor, per_s=per_s, max_wait_s=max_wait_s
        )


class CappedTimeout(httpx.HTTPTransport):
    """Every call times out after ``cap_s`` at most, so an injected timeout costs seconds,
    not the connectors' 15."""

    def __init__(self, cap_s: float) -> None:
        super().__init__()
        self._cap_s = cap_s

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        request.extensions["timeout"] = {
            name: self._cap_s if value is None else min(value, self._cap_s)
            for name, value in timeouts.items()
        }
        return super().handle_request(request)


class CrashingLedger:
    """The accounting connector, dying (sometimes) right after a write returned."""

    def __init__(self, ledger: AccountingTarget, after_write: Callable[[], None]) -> None:
        self._ledger = ledger
        self._after_write = after_write
        self.system: System = ledger.system
        self.checked_on_create = ledger.checked_on_create

    def find_customer(self, *, email: str | None, display_name: str | None) -> TargetRef | None:
        return self._ledger.find_customer(email=email, display_name=display_name)

    def upsert_customer(
        self, party: Party, *, existing: TargetRef | None, idempotency_key: str
    ) -> TargetRef:
        ref = self._ledger.upsert_customer(
            party, existing=existing, idempotency_key=idempotency_key
        )
        self._after_write()
        return ref

    def find_item(self, *, name: str, sku: str | None) -> str | None:
        return self._ledger.find_item(name=name, sku=sku)

    def create_item(self, item: NewItem, *, idempotency_key: str) -> str:
        ref = self._ledger.create_item(item, idempotency_key=idempotency_key)
        self._after_write()
        return ref

    def find_invoice(self, doc_number: str) -> TargetRef | None:
        return self._ledger.find_invoice(doc_number)

    def upsert_invoice(
        self, invoice: Invoice, *, existing: TargetRef | None, idempotency_key: str
    ) -> TargetRef:
        ref = self._ledger.upsert_invoice(
            invoice, existing=existing, idempotency_key=idempotency_key
        )
        self._after_write()
        return ref

    def current(self, object_type: ObjectType, target_id: str) -> TargetRef | None:
        return self._ledger.current(object_type, target_id)

    def read(self, object_type: ObjectType, target_id: str) -> dict[str, Any] | None:
        return self._ledger.read(object_type, target_id)

    def payload(self, record: Party | Invoice, *, new: bool) -> dict[str, Any]:
        return self._ledger.payload(record, new=new)

    def known_customers(self, *, changed_since: datetime | None = None) -> Iterator[KnownCustomer]:
        assert isinstance(self._ledger, CustomerListing)  # QuickBooks lists its customers
        return self._ledger.known_customers(changed_since=changed_since)


@dataclass(frozen=True)
class Environment:
    """One execution environment: what a Lambda builds at cold start."""

    consumer: Consumer
    engine: SyncEngine
    deadline: Deadline
    transport: CappedTimeout


def build_environment(
    vendors: Vendors,
    stores: Stores,
    mapper: Mapper,
    *,
    call_timeout_s: float,
    after_write: Callable[[], None],
) -> Environment:
    """Connectors, engine and consumer over the shared ``stores``, as
    ``shared.bootstrap.Container`` wires them (its connectors with a capped timeout)."""
    deadline = Deadline()
    transport = CappedTimeout(call_timeout_s)
    budget = RaisedLimits(stores.budget, LIMIT_FACTOR)
    crm = build_hubspot(
        base_url=vendors.hubspot_url,
        secrets=stores.secrets,
        secret_id=secret_id(CONNECTION, "hubspot"),
        budget=budget,
        connection_id=CONNECTION,
        properties={t: mapper.source_properties(t) for t in CRM_OBJECTS},
        transport=transport,
        deadline=deadline,
    )
    ledger = build_quickbooks(
        api_url=vendors.quickbooks_url,
        token_url=f"{vendors.quickbooks_url}/oauth2/v1/tokens/bearer",
        secrets=stores.secrets,
        secret_id=secret_id(CONNECTION, "quickbooks"),
        lock=stores.lock,
        budget=budget,
        transport=transport,
        deadline=deadline,
    )
    engine = SyncEngine(
        connection_id=CONNECTION,
        crm=crm,
        ledger=CrashingLedger(ledger, after_write),
        mapper=mapper,
        links=stores.links,
        audit=stores.audit,
        queue=stores.queue,
        directory=stores.directory,
    )
    consumer = Consumer(
        apply=engine.handle,
        queue=stores.queue,
        deferrals=stores.deferrals,
        max_failed_attempts=vendors.settings.max_failed_attempts,
        retry_delay_s=vendors.settings.retry_delay_s,
    )
    return Environment(consumer=consumer, engine=engine, deadline=deadline, transport=transport)


EnvironmentFactory = Callable[[Callable[[], None]], Environment]


class Workers:
    """``count`` concurrent invocations polling ``queue`` until stopped."""

    def __init__(
        self,
        *,
        count: int,
        queue: MemoryQueue,
        environment: EnvironmentFactory,
        chaos: CrashChaos,
        function_timeout_s: float,
        seed: int,
    ) -> None:
        self._queue = queue
        self._environment = environment
        self._chaos = chaos
        self._timeout_s = function_timeout_s
        self._stop = threading.Event()
        self._calm = threading.Event()
        self._lock = threading.Lock()
        self._busy = 0
        self.counts: Counter[str] = Counter()
        self._threads = [
            threading.Thread(
                target=self._run,
                args=(random.Random(f"{seed}:worker:{n}"),),
                name=f"chaos-worker-{n}",
                daemon=True,
            )
            for n in range(count)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def calm(self) -> None:
        """No more crashes."""
        self._calm.set()

    def busy(self) -> bool:
        """Whether some worker holds a batch."""
        with self._lock:
            return self._busy > 0

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counts[name] += n

    def _run(self, rng: random.Random) -> None:
        environment: Environment | None = None

        def crash(kind: str, probability: float) -> None:
            if not self._calm.is_set() and rng.random() < probability:
                self._count(f"crashes {kind}")
                raise Crash(kind)

        while not self._stop.is_set():
            with self._lock:
                batch = self._queue.receive(BATCH_SIZE)
                self._busy += bool(batch)
            if not batch:
                self._stop.wait(IDLE_POLL_S)
                continue
            try:
                if environment is None:
                    environment = self._environment(
                        lambda: crash("after write", self._chaos.after_write)
                    )
                    self._count("environments")
                self._handle(environment, batch, rng, crash)
            except Crash:
                self._drop(environment)
                environment = None
            except Exception:
                # A fault of the harness itself, not of the service: counted, so the
                # run cannot pass with it, and the worker carries on.
                log.exception("chaos worker failed outside the consumer")
                self._count(HARNESS_ERRORS)
                self._drop(environment)
                environment = None
            finally:
                with self._lock:
                    self._busy -= 1
        self._drop(environment)

    @staticmethod
    def _drop(environment: Environment | None) -> None:
        if environment is not None:
            environment.transport.close()

    def _handle(
        self,
        environment: Environment,
        batch: list[Received],
        rng: random.Random,
        crash: Callable[[str, float], None],
    ) -> None:
        environment.deadline.start(self._timeout_s)
        self._count("batches")
        done: list[str] = []
        scheduled: set[str] = set()  # receipts the consumer gave a time to come back
        skipped: list[QueueMessage] = []
        failed_groups: set[str] = set()
        try:
            for received in batch:
                message = QueueMessage(
                    message_id=received.message_id,
                    receipt=received.receipt,
                    body=received.body,
                    receive_count=received.receive_count,
                )
                if received.group_id in failed_groups:
                    skipped.append(message)
                    continue
                try:
                    environment.consumer.process(message)
                except Exception as error:
                    # The consumer has set when it comes back: after the vendor's wait
                    # (a deferral) or after its retry delay (a failed attempt).
                    deferral = isinstance(error, RateLimited | OutOfTime)
                    self._count("messages deferred" if deferral else "failed attempts")
                    failed_groups.add(received.group_id)
                    scheduled.add(received.receipt)
                    continue
                self._count("messages handled")
                crash("after apply", self._chaos.after_apply)
                done.append(received.receipt)
        except BaseException:
            # The environment is gone (or the harness failed): nothing is deleted.
            self._come_back([m.receipt for m in batch if m.receipt not in scheduled], rng)
            raise
        for message in skipped:
            environment.consumer.skipped(message)
        self._count("messages skipped", len(skipped))
        for receipt in done:
            self._queue.delete(receipt)

    def _come_back(self, receipts: list[str], rng: random.Random) -> None:
        for receipt in receipts:
            self._queue.change_visibility(receipt, rng.uniform(*COME_BACK_S))
        self._count("messages crashed", len(receipts))
