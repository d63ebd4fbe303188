"""Calls per change: QuickBooks requests per sync, AWS requests per event, AWS cost per event.

Method: the local stack (``local.runtime.LocalStack``) for HubSpot → QuickBooks, its
reconcile schedule moved out of the way (hourly), the real Webhook and Sync handlers in
their execution environments, the Sync function in one environment
(``one_sync_environment``). Records are made as a person would, through HubSpot's
public API (the sandbox's ``person``, ``local.sandboxes.registry``). A warm-up (one
reconcile run, as a deployed connection has had; then four contacts with a won deal
each; not counted) starts the functions' environments and fills what they keep (the
OAuth token, items, terms, the customer directory); then each scenario starts on a settled
stack and is counted until it is settled again (HubSpot's webhooks delivered, the queue
drained, QuickBooks' own webhooks about our writes delivered and their events handled,
twice over):

a. a won deal from scratch: a new company, a new contact of it, a won deal of both with
   two line items (QuickBooks' seeded items);
b. one change at a time: customer create (a new contact), customer update (its last
   name), invoice create (a won deal with two lines for that synced contact), invoice
   update (one line's quantity).

What is counted, at the receiving end, never by asking our own code:

* QuickBooks: every request the sandbox's Flask app receives (``request_started``),
  by method and path kind ("GET /query Customer", "POST /customer (update)"); API calls
  (what the 500-a-minute quota counts) apart from the OAuth token endpoint. HubSpot:
  the connector's requests (``User-Agent: crmsync``), not the person's.
* AWS: every request moto's server (in this process) receives, through a WSGI wrapper
  around its app: by service and operation, DynamoDB also by table, with the request
  units each would consume at AWS (item sizes computed from the requests, read sizes
  from the responses; a transactional item costs 2 units; a write to a table with a
  global secondary index whose key the item carries costs one more).
* Lambda: each invocation of the Sync and Webhook functions, timed from its caller (the
  SQS worker, the API adapter); the duration includes the IPC to the environment.
* Events: messages the Sync function handled (the worker's count) and the audit
  entries written in the window; "applied" = created, updated or linked.

The cost per million events prices those measured calls at us-east-1 list prices (arm64
Lambda at the functions' configured memory; SQS FIFO; DynamoDB on demand; HTTP API;
Secrets Manager). SQS's billed requests are the sends, deletes and visibility changes
plus one receive per batch handled: empty long polls cost by the hour, not by the event,
and the harness's own queue-length looks are left out. Vendor latency is ~5 ms here, so
the scenarios run again on a second stack whose sandboxes answer every API call 250 ms
late (``VENDOR_LATENCY_S``, a ``timeout`` fault that waits, then serves), and that
run's cost is measured the same way. Cold starts
(Lambda bills the init phase too) are left out: an environment serves many thousands of
events. The Lambda durations come from a shared 2-core machine running moto in this
process: they vary from run to run, and DynamoDB in AWS answers faster than moto here.
"""

from __future__ import annotations

import io
import json
import math
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from unittest import mock
from urllib.parse import parse_qs

from flask import Flask, request, request_started

import local.runtime
from bench.common import percentile
from infra.resources import DESCRIPTION, ServiceDescription
from local.aws import MotoServer
from local.config import LocalConfig
from local.lambdas import LocalFunction
from local.runtime import LocalStack
from local.sandboxes.base import Fault
from local.sandboxes.hubspot import (
    DEAL_TO_COMPANY,
    DEAL_TO_CONTACT,
    LINE_ITEM_TO_DEAL,
    HubSpotPerson,
)
from local.sandboxes.registry import DemoLine
from shared.models import AuditEntry, Outcome
from shared.stores.audit import DynamoAuditLog

CRM, ACCOUNTING = "hubspot", "quickbooks"
EVENTS = "Events"
LINES = [DemoLine("Services", "3", "150"), DemoLine("Hours", "2.5", "80")]
SETTLE_S = 120.0
APPLIED = frozenset({Outcome.CREATED, Outcome.UPDATED, Outcome.LINKED})
VENDOR_LATENCY_S = 0.250
WARMUP_DEALS = 4

# --- list prices, us-east-1, first pricing tier (checked 2026-11) --------------------------
# https://aws.amazon.com/lambda/pricing/  (Arm)
LAMBDA_PER_GB_S = 0.0000133334
LAMBDA_PER_REQUEST = 0.20 / 1e6
# https://aws.amazon.com/sqs/pricing/  (FIFO; each 64 KB chunk of a request is a request)
SQS_FIFO_PER_REQUEST = 0.50 / 1e6
# https://aws.amazon.com/dynamodb/pricing/on-demand/  (after the November 2024 cut)
DYNAMODB_PER_WRITE_UNIT = 0.625 / 1e6
DYNAMODB_PER_READ_UNIT = 0.125 / 1e6
# https://aws.amazon.com/api-gateway/pricing/  (HTTP APIs, first 300 million a month)
HTTP_API_PER_REQUEST = 1.00 / 1e6
# https://aws.amazon.com/secrets-manager/pricing/  ($0.05 per 10,000 API calls)
SECRETS_PER_CALL = 0.05 / 10_000

# SQS operations a Lambda event source mapping or our handlers pay for, per request.
SQS_BILLED = frozenset(
    {
        "SendMessage",
        "SendMessageBatch",
        "DeleteMessage",
        "DeleteMessageBatch",
        "ChangeMessageVisibility",
        "ChangeMessageVisibilityBatch",
    }
)


# --- counting QuickBooks (and HubSpot) requests at the sandbox ------------------------------


def _kind(method: str, path: str, args: Any, body: Callable[[], bytes]) -> str:
    """``GET /query Customer``, ``POST /invoice (update)``, ``GET /item/{id}``, ``token``."""
    if path.startswith("/oauth2/") or path.startswith("/.well-known/"):
        return "token"
    parts = [p for p in path.split("/") if p]
    if len(parts) < 4 or parts[:2] != ["v3", "company"]:
        return f"{method} {path}"
    resource, rest = parts[3].lower(), parts[4:]
    if resource == "query":
        statement = args.get("query") or body().decode("utf-8", "replace")
        words = statement.split()
        lowered = [w.lower() for w in words]
        entity = words[lowered.index("from") + 1] if "from" in lowered[:-1] else "?"
        return f"{method} /query {entity}"
    if method == "GET" and rest:
        return f"GET /{resource}/{{id}}"
    if method == "POST" and resource not in ("batch", "query"):
        operation = (args.get("operation") or "").lower()
        if not operation:
            try:
                sent = json.loads(body() or b"{}")
            except ValueError:
                sent = {}
            operation = "update" if isinstance(sent, dict) and "Id" in sent else "create"
        return f"POST /{resource} ({operation})"
    return f"{method} /{resource}"


class SandboxRequests:
    """Counts the requests a sandbox's Flask app receives, by kind (``_kind``)."""

    def __init__(self, app: Flask, *, user_agent: str | None = None) -> None:
        self._app = app
        self._user_agent = user_agent
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        request_started.connect(self._started, app, weak=False)

    def _started(self, sender: Flask, **_: Any) -> None:
        if request.path.startswith("/_sandbox/"):
            return  # the admin side: tests and the demo, never the connector
        if self._user_agent and not request.headers.get("User-Agent", "").startswith(
            self._user_agent
        ):
            return
        kind = _kind(
            request.method, request.path, request.args, lambda: request.get_data(cache=True)
        )
        with self._lock:
            self.counts[kind] += 1

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.counts)

    def close(self) -> None:
        request_started.disconnect(self._started, self._app)


# --- counting AWS requests at moto's server -----------------------------------------------


@dataclass(frozen=True)
class AwsRequest:
    service: str
    operation: str
    tables: tuple[str, ...] = ()
    read_units: float = 0.0
    write_units: float = 0.0
    request_bytes: int = 0


def _target(environ: dict[str, Any], body: bytes) -> tuple[str, str]:
    """(service, operation) of a JSON-protocol request, or of a query-protocol one."""
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        prefix, _, operation = target.partition(".")
        service = {
            "DynamoDB_20120810": "dynamodb",
            "AmazonSQS": "sqs",
            "secretsmanager": "secretsmanager",
            "AWSEvents": "events",
        }.get(prefix, prefix.lower())
        return service, operation
    scope = environ.get("HTTP_AUTHORIZATION", "").split("Credential=")[-1].split("/")
    service = scope[3] if len(scope) > 3 else "?"
    action = parse_qs(body.decode("utf-8", "replace")).get("Action") or parse_qs(
        environ.get("QUERY_STRING", "")
    ).get("Action")
    return service, action[0] if action else "?"


def _value_size(value: dict[str, Any]) -> int:
    """DynamoDB's size of one attribute value, from its wire form (bytes)."""
    (kind, inner), *_ = value.items()
    if kind == "S":
        return len(str(inner).encode())
    if kind == "N":
        return math.ceil(len(str(inner).lstrip("-").replace(".", "")) / 2) + 1
    if kind == "B":
        return math.ceil(len(str(inner)) * 3 / 4)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "NS", "BS"):
        return sum(_value_size({kind[0]: v}) for v in inner)
    if kind == "L":
        return 3 + sum(1 + _value_size(v) for v in inner)
    if kind == "M":
        return 3 + sum(len(k.encode()) + 1 + _value_size(v) for k, v in inner.items())
    return len(json.dumps(inner))


def item_size(item: dict[str, Any]) -> int:
    """DynamoDB's item size: attribute names plus values (its documented rules)."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


class DynamoUnits:
    """Request units one DynamoDB request consumes at AWS, from the request and response."""

    def __init__(self, index_keys: dict[str, frozenset[str]]) -> None:
        # physical table name -> partition key names of its global secondary indexes
        self._index_keys = index_keys

    def _indexes_touched(self, table: str, attributes: Iterable[str]) -> int:
        return len(self._index_keys.get(table, frozenset()) & set(attributes))

    def _write(self, table: str, item: dict[str, Any] | None, expression: str = "") -> float:
        size = item_size(item) if item else 0
        units = max(1, math.ceil(size / 1024))
        attributes = set(item or {}) | {w.strip("#:,=()") for w in expression.split()}
        return units + self._indexes_touched(table, attributes)

    def __call__(
        self, operation: str, body: dict[str, Any], response_bytes: int
    ) -> tuple[float, float]:
        """(read units, write units)."""
        read = 1.0 if body.get("ConsistentRead") else 0.5
        table = str(body.get("TableName", ""))
        if operation == "GetItem":
            return read * max(1, math.ceil(response_bytes / 4096)), 0.0
        if operation in ("Query", "Scan"):
            return read * max(1, math.ceil(response_bytes / 4096)), 0.0
        if operation == "PutItem":
            return 0.0, self._write(table, body.get("Item"))
        if operation == "UpdateItem":
            values = body.get("ExpressionAttributeValues") or {}
            names = body.get("ExpressionAttributeNames") or {}
            item = {**body.get("Key", {}), **{str(k): v for k, v in values.items()}}
            expression = " ".join([body.get("UpdateExpression", ""), *names.values()])
            return 0.0, self._write(table, item, expression)
        if operation == "DeleteItem":
            return 0.0, 1.0 + len(self._index_keys.get(table, frozenset()))
        if operation == "BatchGetItem":
            requests = body.get("RequestItems", {}).values()
            return sum(
                (1.0 if r.get("ConsistentRead") else 0.5) * len(r.get("Keys", [])) for r in requests
            ), 0.0
        if operation == "BatchWriteItem":
            return 0.0, sum(
                self._write(name, (w.get("PutRequest") or {}).get("Item"))
                for name, writes in body.get("RequestItems", {}).items()
                for w in writes
            )
        if operation == "TransactGetItems":
            return 2.0 * len(body.get("TransactItems", [])), 0.0
        if operation == "TransactWriteItems":
            units = 0.0
            for entry in body.get("TransactItems", []):
                for kind, part in entry.items():
                    item = part.get("Item") if kind == "Put" else part.get("Key")
                    expression = part.get("UpdateExpression", "")
                    units += 2 * self._write(str(part.get("TableName", "")), item, expression)
            return 0.0, units
        return 0.0, 0.0  # control plane (CreateTable, DescribeTable, ...): not per request


def _tables(operation: str, body: dict[str, Any]) -> tuple[str, ...]:
    if "TableName" in body:
        return (str(body["TableName"]),)
    if operation in ("BatchGetItem", "BatchWriteItem"):
        return tuple(body.get("RequestItems", {}))
    if operation in ("TransactGetItems", "TransactWriteItems"):
        return tuple(
            str(part.get("TableName", ""))
            for entry in body.get("TransactItems", [])
            for part in entry.values()
        )
    return ()


class AwsRequests:
    """A WSGI wrapper around moto's server app: every request it receives, classified."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: list[AwsRequest] = []
        self.units = DynamoUnits({})

    def wrap(self, app: Callable[..., Any]) -> Callable[..., Any]:
        def counted(environ: dict[str, Any], start_response: Any) -> Any:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body)
            chunks = list(app(environ, start_response))
            self._record(environ, body, sum(len(c) for c in chunks))
            return chunks

        return counted

    def _record(self, environ: dict[str, Any], body: bytes, response_bytes: int) -> None:
        service, operation = _target(environ, body)
        if service == "?" or environ.get("PATH_INFO", "").startswith("/moto-api"):
            return
        parsed: dict[str, Any] = {}
        if service == "dynamodb":
            try:
                parsed = json.loads(body or b"{}")
            except ValueError:
                parsed = {}
        read, write = self.units(operation, parsed, response_bytes) if parsed else (0.0, 0.0)
        entry = AwsRequest(
            service=service,
            operation=operation,
            tables=_tables(operation, parsed),
            read_units=read,
            write_units=write,
            request_bytes=len(body),
        )
        with self._lock:
            self.requests.append(entry)

    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def since(self, start: int, end: int) -> list[AwsRequest]:
        with self._lock:
            return self.requests[start:end]


def _counting_moto(counter: AwsRequests) -> type[MotoServer]:
    class CountingMotoServer(MotoServer):
        """moto's server with ``counter`` wrapped around its WSGI app once it listens."""

        def start(self) -> CountingMotoServer:
            super().start()
            # ThreadedMotoServer keeps its werkzeug server private; the server calls
            # ``self.server.app`` for each request, so replacing it counts every one.
            server = self._server._server if self._server is not None else None
            assert server is not None
            server.app = counter.wrap(server.app)
            return self

    return CountingMotoServer


# --- timing invocations -------------------------------------------------------------------


class Invocations:
    """Wraps a function's ``invoke``: the seconds of each invocation, in order."""

    def __init__(self, function: LocalFunction) -> None:
        self._lock = threading.Lock()
        self.durations: list[float] = []
        invoke = function.invoke

        def timed(event: dict[str, Any]) -> Any:
            started = time.perf_counter()
            try:
                return invoke(event)
            finally:
                with self._lock:
                    self.durations.append(time.perf_counter() - started)

        function.invoke = timed  # type: ignore[method-assign]

    def count(self) -> int:
        with self._lock:
            return len(self.durations)

    def since(self, start: int, end: int) -> list[float]:
        with self._lock:
            return self.durations[start:end]


# --- a window of the run ----------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """What one scenario cost, everything counted between two settled moments."""

    name: str
    quickbooks: Counter[str]
    hubspot: Counter[str]  # the connector's requests only
    aws: list[AwsRequest]
    sync: list[float]  # seconds of each invocation
    webhook: list[float]
    events: int  # messages the Sync function handled (deleted after success)
    failed: int  # messages left for a retry
    batches: int  # batches the Sync function handled: one billed receive each
    audit: list[AuditEntry]
    seconds: float

    @property
    def quickbooks_api(self) -> int:
        return sum(n for kind, n in self.quickbooks.items() if kind != "token")

    @property
    def quickbooks_token(self) -> int:
        return self.quickbooks["token"]

    @property
    def applied(self) -> int:
        return sum(1 for e in self.audit if e.outcome in APPLIED)


def _add(windows: list[Window], name: str) -> Window:
    aws = [r for w in windows for r in w.aws]
    return Window(
        name=name,
        quickbooks=sum((w.quickbooks for w in windows), Counter()),
        hubspot=sum((w.hubspot for w in windows), Counter()),
        aws=aws,
        sync=[d for w in windows for d in w.sync],
        webhook=[d for w in windows for d in w.webhook],
        events=sum(w.events for w in windows),
        failed=sum(w.failed for w in windows),
        batches=sum(w.batches for w in windows),
        audit=[e for w in windows for e in w.audit],
        seconds=sum(w.seconds for w in windows),
    )


class Meter:
    """Everything counted on one running stack; ``window`` counts one scenario."""

    def __init__(self, stack: LocalStack, aws: AwsRequests) -> None:
        self.stack = stack
        self.aws = aws
        by_name = {name: spec_id for spec_id, name in stack.resources.tables.items()}
        aws.units = DynamoUnits(
            {
                stack.resources.tables[t.id]: frozenset(i.partition_key.name for i in t.indexes)
                for t in DESCRIPTION.tables
                if t.indexes
            }
        )
        self.table_ids = by_name
        self.quickbooks = SandboxRequests(stack.sandboxes[ACCOUNTING].app)
        self.hubspot = SandboxRequests(stack.sandboxes[CRM].app, user_agent="crmsync")
        self.sync = Invocations(stack.functions["Sync"])
        self.webhook = Invocations(stack.functions[DESCRIPTION.webhook_function])
        self._audit = DynamoAuditLog(stack.clients.dynamodb, stack.resources.tables["Audit"], 1)
        self.connection_id = stack.config.connections[0].id

    def close(self) -> None:
        self.quickbooks.close()
        self.hubspot.close()

    def settle(self) -> None:
        """Every webhook delivered and every message handled, twice over (a drained
        queue can still receive a late webhook batch); raises if that never happens."""
        deadline = time.monotonic() + SETTLE_S

        def left() -> float:
            return max(deadline - time.monotonic(), 0.0)

        for _ in range(2):
            for name in (CRM, ACCOUNTING):
                if not self.stack.sandboxes[name].wait_for_webhooks_idle(left()):
                    raise RuntimeError(f"{name} webhooks still pending after {SETTLE_S:g} s")
                if not self.stack.wait_until_drained(left()):
                    raise RuntimeError(f"the events queue did not drain in {SETTLE_S:g} s")

    def _audit_entries(self) -> set[AuditEntry]:
        return set(self._audit.entries(self.connection_id, limit=100_000))

    def _worker(self) -> tuple[int, int, int]:
        status = self.stack.status().workers[EVENTS]
        return status.processed, status.failed, status.batches

    def measure(self, name: str, act: Callable[[], None]) -> Window:
        """Count from a settled stack through ``act`` until the stack is settled again.

        The audit trail is read before and after, outside the counted requests."""
        audit_before = self._audit_entries()
        worker_before = self._worker()
        quickbooks, hubspot = self.quickbooks.snapshot(), self.hubspot.snapshot()
        sync, webhook = self.sync.count(), self.webhook.count()
        first = self.aws.count()
        started = time.perf_counter()
        act()
        self.settle()
        elapsed = time.perf_counter() - started
        last = self.aws.count()
        sync_after, webhook_after = self.sync.count(), self.webhook.count()
        quickbooks_after, hubspot_after = self.quickbooks.snapshot(), self.hubspot.snapshot()
        worker_after = self._worker()
        audit = sorted(self._audit_entries() - audit_before, key=lambda e: e.at)
        return Window(
            name=name,
            quickbooks=quickbooks_after - quickbooks,
            hubspot=hubspot_after - hubspot,
            # The harness's own requests (queue-length looks while settling) stay in the
            # list; the figures below leave them out by operation.
            aws=self.aws.since(first, last),
            sync=self.sync.since(sync, sync_after),
            webhook=self.webhook.since(webhook, webhook_after),
            events=worker_after[0] - worker_before[0],
            failed=worker_after[1] - worker_before[1],
            batches=worker_after[2] - worker_before[2],
            audit=audit,
            seconds=elapsed,
        )


# --- the scenarios, as a person does them in HubSpot ------------------------------------


def _unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


def won_deal(
    person: HubSpotPerson, contact: str, company: str | None = None
) -> tuple[str, list[str]]:
    """An open deal of the contact (and company), its two line items, then marked won;
    returns the deal's and the line items' ids."""
    to = [(company, DEAL_TO_COMPANY)] if company else []
    deal = person.create(
        "deals",
        {
            "dealname": _unique("Website redesign "),
            "pipeline": "default",
            "dealstage": "appointmentscheduled",
            "closedate": "2026-11-20T15:00:00Z",
        },
        [*to, (contact, DEAL_TO_CONTACT)],
    )
    lines = [
        person.create(
            "line_items",
            {"name": line.name, "quantity": line.quantity, "price": line.unit_price},
            [(deal, LINE_ITEM_TO_DEAL)],
        )
        for line in LINES
    ]
    person.update("deals", deal, {"dealstage": "closedwon"})
    return deal, lines


def new_contact(person: HubSpotPerson, company: str | None = None) -> str:
    last = _unique("Lovelace-")
    return person.create_contact("Ada", last, f"{last.lower()}@example.test", company)


@dataclass
class Run:
    """The windows of one run of the scenarios on one stack."""

    warmup: Window
    won_deal: Window
    changes: list[Window] = field(default_factory=list)
    sync_memory_mb: int = DESCRIPTION.function("Sync").memory_mb
    webhook_memory_mb: int = DESCRIPTION.function(DESCRIPTION.webhook_function).memory_mb
    table_ids: dict[str, str] = field(default_factory=dict)  # physical name -> spec id


def one_sync_environment() -> ServiceDescription:
    """The stack with one Sync environment, so every change lands in the one the
    warm-up filled. Each environment reads the item and term lists once (two calls) and
    keeps them 15 minutes; with several, which one a change lands in is chance (a
    batch's message groups), and a fresh one adds those two calls to whatever change
    it serves first: a cost per environment, not per change (the warm-up's detail
    shows it)."""
    functions = tuple(
        spec.model_copy(update={"max_concurrency": 1}) if spec.id == "Sync" else spec
        for spec in DESCRIPTION.functions
    )
    return DESCRIPTION.model_copy(update={"functions": functions})


def run_scenarios(latency_s: float = 0.0) -> Run:
    """Start the stack, run the warm-up and the scenarios, each counted until settled;
    with ``latency_s``, every vendor API call is answered that much later."""
    aws = AwsRequests()
    # No reconcile run while counting: it would add its own calls to a window.
    config = (
        LocalConfig.load()
        .with_pair(CRM, ACCOUNTING)
        .with_free_ports()
        .model_copy(update={"reconcile_interval_s": 3600})
    )
    with mock.patch.object(local.runtime, "MotoServer", _counting_moto(aws)):
        stack = LocalStack(config, description=one_sync_environment()).start()
    try:
        meter = Meter(stack, aws)
        person = HubSpotPerson(stack.sandboxes[CRM], stack.urls.sandboxes[CRM])
        meter.settle()
        for name, api in ((CRM, "/crm/"), (ACCOUNTING, "/v3/")):
            if latency_s:
                late = Fault(kind="timeout", count=10**9, delay_s=latency_s, path_prefix=api)
                stack.sandboxes[name].faults.add(late)

        def warmup() -> None:
            # A deployed connection has run its first reconcile: the customer directory
            # is filled, so a create looks up only emails some customer holds.
            stack.fire_schedule()
            for contact in [new_contact(person) for _ in range(WARMUP_DEALS)]:
                won_deal(person, contact)

        warm = meter.measure(f"warm-up: {WARMUP_DEALS} contacts, a won deal each", warmup)

        def from_scratch() -> None:
            company = person.create_company(_unique("Acme "), "Boston")
            contact = new_contact(person, company)
            won_deal(person, contact, company)

        run = Run(
            warmup=warm,
            won_deal=meter.measure("won deal from scratch", from_scratch),
            table_ids=meter.table_ids,
        )
        contact = ""
        lines: list[str] = []

        def customer_create() -> None:
            nonlocal contact
            contact = new_contact(person)

        def invoice_create() -> None:
            nonlocal lines
            _, lines = won_deal(person, contact)

        steps: list[tuple[str, Callable[[], None]]] = [
            ("customer create", customer_create),
            (
                "customer update",
                lambda: person.update("contacts", contact, {"lastname": _unique("Byron-")}),
            ),
            ("invoice create", invoice_create),
            ("invoice update", lambda: person.update("line_items", lines[0], {"quantity": "4"})),
        ]
        for name, act in steps:
            run.changes.append(meter.measure(name, act))
        meter.close()
        return run
    finally:
        stack.stop()


# --- the figures ----------------------------------------------------------------------------


@dataclass(frozen=True)
class QuickBooksCalls:
    """QuickBooks requests for one scenario, counted at the sandbox until all settled."""

    scenario: str
    api: int  # accounting API requests: queries, reads, writes, batches (the quota's)
    token: int  # OAuth token endpoint and discovery requests
    by_kind: dict[str, int]
    events: int  # queue events the Sync function handled
    hubspot: int  # the connector's HubSpot requests


def quickbooks_calls(window: Window) -> QuickBooksCalls:
    return QuickBooksCalls(
        scenario=window.name,
        api=window.quickbooks_api,
        token=window.quickbooks_token,
        by_kind=dict(window.quickbooks.most_common()),
        events=window.events,
        hubspot=sum(window.hubspot.values()),
    )


@dataclass(frozen=True)
class DynamoPerEvent:
    """DynamoDB requests (moto's count) over events: applied ones and all handled."""

    calls: int
    by_operation: dict[str, int]
    by_table: dict[str, dict[str, int]]  # table -> operation -> requests
    read_units: float
    write_units: float
    applied: int  # audit entries created, updated or linked: events that wrote a record
    handled: int  # audit entries of any outcome
    events: int  # queue events the Sync function handled

    @property
    def per_applied(self) -> float:
        return self.calls / self.applied if self.applied else math.inf

    @property
    def per_handled(self) -> float:
        return self.calls / self.handled if self.handled else math.inf

    @property
    def per_event(self) -> float:
        return self.calls / self.events if self.events else math.inf


def dynamodb_per_event(window: Window, table_ids: dict[str, str]) -> DynamoPerEvent:
    dynamo = [r for r in window.aws if r.service == "dynamodb"]
    by_table: dict[str, Counter[str]] = {}
    for r in dynamo:
        for table in r.tables:
            by_table.setdefault(table_ids.get(table, table), Counter())[r.operation] += 1
    tables = sorted(by_table.items(), key=lambda item: -item[1].total())
    return DynamoPerEvent(
        calls=len(dynamo),
        by_operation=dict(Counter(r.operation for r in dynamo).most_common()),
        by_table={table: dict(ops.most_common()) for table, ops in tables},
        read_units=sum(r.read_units for r in dynamo),
        write_units=sum(r.write_units for r in dynamo),
        applied=window.applied,
        handled=len(window.audit),
        events=window.events,
    )


@dataclass(frozen=True)
class CostPerMillion:
    """AWS list-price cost per million queue events, from the measured calls per event."""

    events: int
    per_event: dict[str, float]  # measured quantity per event, by name
    dollars: dict[str, float]  # $ per million events, by service
    vendor_calls_per_event: float
    # Each function's invocations: (count, p50 ms, p90 ms, max ms), to see where time goes.
    invocations: dict[str, tuple[int, float, float, float]]

    @property
    def total(self) -> float:
        return sum(self.dollars.values())


def cost_per_million(window: Window, run: Run) -> CostPerMillion:
    events = max(window.events, 1)
    sqs = [r for r in window.aws if r.service == "sqs" and r.operation in SQS_BILLED]
    sqs_requests = sum(max(1, math.ceil(r.request_bytes / 65_536)) for r in sqs)
    dynamo = [r for r in window.aws if r.service == "dynamodb"]
    secrets = [r for r in window.aws if r.service == "secretsmanager"]
    sync_s, webhook_s = sum(window.sync), sum(window.webhook)
    gb_s = sync_s * run.sync_memory_mb / 1024 + webhook_s * run.webhook_memory_mb / 1024
    per_event = {
        "Lambda invocations": (len(window.sync) + len(window.webhook)) / events,
        "Lambda ms (Sync)": sync_s * 1e3 / events,
        "Lambda ms (Webhook)": webhook_s * 1e3 / events,
        "Lambda GB-s": gb_s / events,
        "HTTP API requests": len(window.webhook) / events,
        "SQS requests": (sqs_requests + window.batches) / events,
        "DynamoDB read units": sum(r.read_units for r in dynamo) / events,
        "DynamoDB write units": sum(r.write_units for r in dynamo) / events,
        "Secrets Manager calls": len(secrets) / events,
    }
    dollars = {
        "Lambda": 1e6
        * (
            per_event["Lambda invocations"] * LAMBDA_PER_REQUEST
            + per_event["Lambda GB-s"] * LAMBDA_PER_GB_S
        ),
        "API Gateway": 1e6 * per_event["HTTP API requests"] * HTTP_API_PER_REQUEST,
        "SQS": 1e6 * per_event["SQS requests"] * SQS_FIFO_PER_REQUEST,
        "DynamoDB": 1e6
        * (
            per_event["DynamoDB read units"] * DYNAMODB_PER_READ_UNIT
            + per_event["DynamoDB write units"] * DYNAMODB_PER_WRITE_UNIT
        ),
        "Secrets Manager": 1e6 * per_event["Secrets Manager calls"] * SECRETS_PER_CALL,
    }
    vendor_calls = sum(window.quickbooks.values()) + sum(window.hubspot.values())
    return CostPerMillion(
        events=window.events,
        per_event=per_event,
        dollars=dollars,
        vendor_calls_per_event=vendor_calls / events,
        invocations={
            name: (len(d), percentile(d, 50) * 1e3, percentile(d, 90) * 1e3, max(d) * 1e3)
            for name, d in (("Sync", window.sync), ("Webhook", window.webhook))
            if d
        },
    )


@dataclass(frozen=True)
class CallsFigures:
    warmup: QuickBooksCalls
    won_deal: QuickBooksCalls
    changes: list[QuickBooksCalls]  # customer create, customer update, invoice create, update
    dynamodb: DynamoPerEvent  # over the won deal and the four changes
    cost: CostPerMillion  # over the same
    # The same scenarios on another stack whose sandboxes answer every API call
    # ``VENDOR_LATENCY_S`` late, as a vendor across the internet does.
    cost_at_latency: CostPerMillion
    # Every other AWS request over the same, "service Operation" -> count (the harness's
    # queue-length looks and the pollers' receives included: see ``cost_per_million``).
    aws_by_operation: dict[str, int]
    sync_batches: int  # batches the Sync function handled: the receives that got messages
    seconds: float  # the scenarios' time to settle, warm-up left out


def measure_calls() -> CallsFigures:
    """Run the scenarios on a fresh local stack; every figure of this module."""
    run = run_scenarios()
    counted = _add([run.won_deal, *run.changes], "won deal + four changes")
    slow = run_scenarios(latency_s=VENDOR_LATENCY_S)
    slow_counted = _add([slow.won_deal, *slow.changes], "the same, vendors 250 ms late")
    return CallsFigures(
        warmup=quickbooks_calls(run.warmup),
        won_deal=quickbooks_calls(run.won_deal),
        changes=[quickbooks_calls(w) for w in run.changes],
        dynamodb=dynamodb_per_event(counted, run.table_ids),
        cost=cost_per_million(counted, run),
        cost_at_latency=cost_per_million(slow_counted, slow),
        aws_by_operation=dict(
            Counter(
                f"{r.service} {r.operation}" for r in counted.aws if r.service != "dynamodb"
            ).most_common()
        ),
        sync_batches=counted.batches,
        seconds=counted.seconds,
    )


# --- printing -------------------------------------------------------------------------------


def _breakdown(counts: dict[str, int]) -> str:
    return ", ".join(f"{kind} ×{n}" for kind, n in counts.items()) or "none"


def print_figures(figures: CallsFigures) -> None:
    print(f"QuickBooks requests per change, {CRM} → {ACCOUNTING}, counted at the sandbox")
    for calls in (figures.warmup, figures.won_deal, *figures.changes):
        print(
            f"  {calls.scenario:<46} {calls.api:>3} API calls + {calls.token} token; "
            f"{calls.events} queue events; {calls.hubspot} HubSpot calls"
        )
        print(f"      {_breakdown({k: n for k, n in calls.by_kind.items() if k != 'token'})}")
    d = figures.dynamodb
    print(
        f"DynamoDB, won deal + four changes: {d.calls} requests ({d.read_units:g} RRU, "
        f"{d.write_units:g} WRU) for {d.events} queue events, {d.handled} audited, "
        f"{d.applied} applied → {d.per_applied:.1f} per applied event, "
        f"{d.per_handled:.1f} per audited event, {d.per_event:.1f} per queue event"
    )
    print(f"  by operation: {_breakdown(d.by_operation)}")
    for table, operations in d.by_table.items():
        print(f"  {table:<12} {sum(operations.values()):>4}: {_breakdown(operations)}")
    print(
        f"other AWS requests, same scenarios ({figures.sync_batches} Sync batches): "
        f"{_breakdown(figures.aws_by_operation)}"
    )
    c = figures.cost
    print(f"AWS cost per million queue events at us-east-1 list prices ({c.events} events)")
    print("  per event: " + ", ".join(f"{k} {v:.3g}" for k, v in c.per_event.items()))
    print(
        "  $ per million events: "
        + ", ".join(f"{k} {v:.2f}" for k, v in c.dollars.items())
        + f"; total {c.total:.2f}"
    )
    print(
        "  invocations: "
        + "; ".join(
            f"{name} ×{n} p50 {p50:.0f} ms, p90 {p90:.0f} ms, max {top:.0f} ms"
            for name, (n, p50, p90, top) in c.invocations.items()
        )
    )
    slow = figures.cost_at_latency
    print(
        f"  again with every vendor API call answered {VENDOR_LATENCY_S * 1e3:.0f} ms late "
        f"({slow.vendor_calls_per_event:.1f} calls per event), measured: "
        f"${slow.total:.2f}; Lambda ms (Sync) {slow.per_event['Lambda ms (Sync)']:.0f} "
        f"per event"
    )


def main() -> None:
    print_figures(measure_calls())


if __name__ == "__main__":
    main()
