"""What the functions tell CloudWatch: EMF metrics by connection and vendor, and log
lines that name their event (issue 11).

The EMF documents are read as CloudWatch would: the JSON lines printed on stdout.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from types import ModuleType
from typing import Any

import boto3
import httpx
import pytest

from infra.resources import DESCRIPTION, FunctionSpec
from local.lambdas import LambdaContext
from shared.models import ChangeEvent, ChangeKind, ObjectType
from shared.observability import EmfSyncMetrics, correlated, log_metrics, logger, metric_sets
from shared.ports import Tally
from shared.settings import get_settings
from tests.unit.test_http_machinery import Script, client
from tests.unit.test_sync_metrics import ADA, NOW, Rig, changed, contact

SYNC = DESCRIPTION.function("Sync")


@pytest.fixture(autouse=True)
def metrics_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in Lambda: powertools' metrics on (the local stack turns them off)."""
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)


def emf(out: str) -> list[dict[str, Any]]:
    """The EMF documents among printed lines."""
    documents = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [d for d in documents if "_aws" in d]


def dimension_sets(document: dict[str, Any]) -> list[set[str]]:
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    return [set(names) for names in directive["Dimensions"]]


def event(connection_id: str, object_type: ObjectType) -> ChangeEvent:
    return ChangeEvent(
        connection_id=connection_id,
        source="hubspot",
        object_type=object_type,
        record_id="1",
        event_id="e-1",
        kind=ChangeKind.UPDATED,
        occurred_at=NOW,
        version=1,
    )


# --- EMF -------------------------------------------------------------------------------


def test_given_two_connections_then_each_gets_its_metric_set_by_object_type_and_alone(
    capsys: pytest.CaptureFixture[str],
) -> None:
    sync = EmfSyncMetrics()

    with metric_sets.collected():
        sync.count(event("acme", ObjectType.CONTACT), Tally.APPLIED)
        sync.count(event("acme", ObjectType.CONTACT), Tally.APPLIED)
        sync.freshness(event("acme", ObjectType.CONTACT), 1500.0)
        sync.count(event("globex", ObjectType.DEAL), Tally.FAILED)

    documents = {d["Connection"]: d for d in emf(capsys.readouterr().out)}
    assert set(documents) == {"acme", "globex"}
    acme, globex = documents["acme"], documents["globex"]
    assert (acme["ObjectType"], acme["service"]) == ("contact", "crmsync")
    assert acme["Applied"] == [1.0, 1.0]
    assert acme["Freshness"] == [1500.0]
    assert "Failed" not in acme
    assert (globex["ObjectType"], globex["Failed"]) == ("deal", [1.0])
    assert dimension_sets(acme) == [
        {"Connection", "ObjectType", "service"},
        {"Connection", "service"},  # the connection over all its object types
    ]
    (directive,) = acme["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "crmsync"
    units = {m["Name"]: m["Unit"] for m in directive["Metrics"]}
    assert units == {"Applied": "Count", "Freshness": "Milliseconds"}


def test_given_no_invocation_collecting_then_nothing_is_kept_or_printed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The operator's commands run the same connectors outside any handler.
    EmfSyncMetrics().count(event("acme", ObjectType.CONTACT), Tally.APPLIED)

    with metric_sets.collected():
        pass

    assert emf(capsys.readouterr().out) == []


def test_given_metrics_turned_off_then_an_invocation_prints_none(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")

    with metric_sets.collected():
        EmfSyncMetrics().count(event("acme", ObjectType.CONTACT), Tally.APPLIED)

    assert emf(capsys.readouterr().out) == []


def test_given_a_429_then_both_attempts_count_as_vendor_calls_and_one_as_rate_limited(
    capsys: pytest.CaptureFixture[str],
) -> None:
    script = Script(httpx.Response(429, headers={"Retry-After": "1"}), httpx.Response(200))

    with metric_sets.collected():
        client(script, []).request("GET", "/things/1")

    (document,) = emf(capsys.readouterr().out)
    assert document["Vendor"] == "vendor"
    assert sum(document["VendorCalls"]) == 2
    assert sum(document["RateLimited"]) == 1
    assert dimension_sets(document) == [{"Vendor", "service"}]


def test_given_a_decorated_handler_that_raises_then_its_metrics_are_still_written(
    capsys: pytest.CaptureFixture[str],
) -> None:
    @log_metrics
    def handler(event: dict[str, Any], context: object) -> None:
        EmfSyncMetrics().count(changed("1", ago=timedelta(0)), Tally.FAILED)
        raise RuntimeError("crashed")

    with pytest.raises(RuntimeError):
        handler({}, None)

    # (powertools' own ``metrics`` may flush what earlier tests left in it, too)
    (document,) = [d for d in emf(capsys.readouterr().out) if "Connection" in d]
    assert document["Failed"] == [1.0]


# --- correlation ids --------------------------------------------------------------------


class Lines(logging.Handler):
    """The logger's lines as powertools formats them (JSON), the appended keys included."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logger.registered_formatter)
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def lines() -> Iterator[Lines]:
    captured = Lines()
    logging.getLogger(logger.name).addHandler(captured)
    yield captured
    logging.getLogger(logger.name).removeHandler(captured)


def test_given_nested_work_then_lines_after_an_event_no_longer_carry_its_keys(
    lines: Lines,
) -> None:
    with correlated(record_key="hubspot:contact:1", event_id="e-1"):
        logger.info("inside")
    logger.info("after")

    inside, after = lines.lines
    assert (inside["record_key"], inside["event_id"]) == ("hubspot:contact:1", "e-1")
    assert "record_key" not in after and "event_id" not in after


@contextmanager
def cold_started(
    function: FunctionSpec, monkeypatch: pytest.MonkeyPatch, env: Mapping[str, str]
) -> Iterator[ModuleType]:
    """The function's handler module imported afresh (a cold start), ``env`` set."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    module_name = function.handler.rpartition(".")[0]
    sys.modules.pop(module_name, None)
    try:
        yield importlib.import_module(module_name)
    finally:
        sys.modules.pop(module_name, None)
        get_settings.cache_clear()


@pytest.fixture
def sync_function(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The sync handler's module, cold-started against a fake AWS environment."""
    env = {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    with cold_started(SYNC, monkeypatch, env) as module:
        yield module
    boto3.DEFAULT_SESSION = None


def sqs_event(rig: Rig, events: list[ChangeEvent]) -> dict[str, Any]:
    """One SQS batch of ``events`` as the event source delivers it."""
    rig.queue.send(events)
    records = []
    for number, received in enumerate(rig.queue.receive(len(events)), 1):
        body = ChangeEvent.model_validate_json(received.body)
        records.append(
            {
                "messageId": received.message_id,
                "receiptHandle": received.receipt,
                "body": received.body,
                "attributes": {
                    "ApproximateReceiveCount": str(received.receive_count),
                    "SentTimestamp": "0",
                    "SequenceNumber": str(number),
                    "MessageGroupId": body.message_group,
                    "SenderId": "test",
                    "MessageDeduplicationId": body.dedup_id,
                    "ApproximateFirstReceiveTimestamp": "0",
                },
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:events.fifo",
                "awsRegion": "us-east-1",
            }
        )
    return {"Records": records}


def test_given_two_events_in_one_batch_then_each_line_names_its_own_record_and_metrics_follow(
    sync_function: ModuleType,
    lines: Lines,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The function's own metrics, over in-memory stores instead of DynamoDB and SQS.
    rig = Rig(metrics=sync_function.container.sync_metrics)
    rig.crm.put(contact("1", **ADA))
    rig.crm.put(contact("2", firstname="Bob"))  # no email: invalid
    monkeypatch.setattr(sync_function, "consumer", lambda: rig.consumer)
    batch = sqs_event(rig, [changed("1", ago=timedelta(seconds=3)), changed("2", ago=timedelta(0))])
    context = LambdaContext(
        function_name="crmsync-test-sync",
        invoked_function_arn="arn:aws:lambda:us-east-1:000000000000:function:sync",
        memory_limit_in_mb=SYNC.memory_mb,
        deadline=time.monotonic() + SYNC.timeout_s,
    )

    response = sync_function.handler(batch, context)

    assert response == {"batchItemFailures": []}
    handled = [line for line in lines.lines if line["message"] == "event handled"]
    assert [line["record_key"] for line in handled] == ["hubspot:contact:1", "hubspot:contact:2"]
    assert [line["event_id"] for line in handled] == ["e-1", "e-2"]
    assert all(line["connection_id"] == "acme" for line in handled)
    assert all(line["message_id"] for line in handled)
    assert handled[0]["message_id"] != handled[1]["message_id"]
    # Once the batch is done, no line carries an event's keys.
    logger.info("between invocations")
    assert "record_key" not in lines.lines[-1]
    (document,) = [d for d in emf(capsys.readouterr().out) if d.get("Connection") == "acme"]
    assert (document["Applied"], document["Invalid"]) == ([1.0], [1.0])
    # The record the engine applied at NOW changed 3 s before, by the vendor's clock.
    assert document["Freshness"] == [3000.0]
