"""The Sync function's idempotency records (powertools, on moto's DynamoDB): kept for
every event that may write, none for an event settled by what is stored alone."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from types import ModuleType
from typing import TYPE_CHECKING

import pytest

from infra.resources import DESCRIPTION
from local.aws import create_table
from local.lambdas import LambdaContext
from shared.models import ChangeEvent, ObjectType, Outcome, SourceRecord
from tests.fakes import epoch_ms
from tests.unit.test_observability import cold_started, sqs_event
from tests.unit.test_sync_metrics import ADA, Rig, changed, contact

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

SYNC = DESCRIPTION.function("Sync")
TABLE = "test-idempotency"


@pytest.fixture
def sync_function(
    dynamodb: DynamoDBClient, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ModuleType]:
    """The sync handler's module, cold-started with its idempotency table on moto."""
    create_table(dynamodb, DESCRIPTION.table("Idempotency"), TABLE)
    env = {"CRMSYNC_IDEMPOTENCY_TABLE": TABLE, "POWERTOOLS_TRACE_DISABLED": "true"}
    with cold_started(SYNC, monkeypatch, env) as module:
        yield module


def context() -> LambdaContext:
    return LambdaContext(
        function_name="crmsync-test-sync",
        invoked_function_arn="arn:aws:lambda:us-east-1:000000000000:function:sync",
        memory_limit_in_mb=SYNC.memory_mb,
        deadline=time.monotonic() + SYNC.timeout_s,
    )


def test_given_an_event_older_than_what_was_applied_then_it_is_audited_without_a_record(
    sync_function: ModuleType, dynamodb: DynamoDBClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = Rig()
    rig.crm.put(contact("1", **ADA))
    # The engine on in-memory stores; the idempotency records on DynamoDB, as deployed.
    monkeypatch.setattr(sync_function, "router", lambda: rig.router)
    newer = changed("1", ago=timedelta(seconds=1))
    older = newer.model_copy(update={"event_id": "e-old", "version": newer.version - 1000})

    first, second = ({"Records": [r]} for r in sqs_event(rig, [newer, older])["Records"])
    for batch in (first, second, first):  # the first delivered again
        assert sync_function.handler(batch, context()) == {"batchItemFailures": []}

    records = dynamodb.scan(TableName=TABLE)["Items"]
    assert len(records) == 1  # the applied event's; the stale one wrote nowhere
    outcomes = [(e.event_id, e.outcome) for e in reversed(rig.audit.entries("acme", limit=10))]
    assert outcomes == [("e-1", Outcome.CREATED), ("e-old", Outcome.SKIPPED)]
    assert len(rig.ledger.customers) == 1


def test_given_a_line_item_change_then_it_is_handed_to_its_deal_without_a_record(
    sync_function: ModuleType, dynamodb: DynamoDBClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = Rig()
    item = SourceRecord(
        object_type=ObjectType.LINE_ITEM,
        id="501",
        version=epoch_ms("2026-11-25T11:58:00"),
        properties={"name": "Services", "quantity": "1", "price": "100"},
        associations={ObjectType.DEAL: ["9"]},
    )
    rig.crm.put(item)
    monkeypatch.setattr(sync_function, "router", lambda: rig.router)
    changed_item = changed("1", ago=timedelta(seconds=1)).model_copy(
        update={"object_type": ObjectType.LINE_ITEM, "record_id": "501", "event_id": "e-501"}
    )
    (delivery,) = sqs_event(rig, [changed_item])["Records"]

    for _ in range(2):  # delivered twice
        batch = {"Records": [delivery]}
        assert sync_function.handler(batch, context()) == {"batchItemFailures": []}

    assert dynamodb.scan(TableName=TABLE)["Items"] == []
    entries = rig.audit.entries("acme", limit=10)
    assert [e.outcome for e in entries] == [Outcome.FORWARDED, Outcome.FORWARDED]
    handed = rig.queue.receive(10)
    # The deal's event, once: its id derives from the line item's, so SQS dedups it.
    assert [ChangeEvent.model_validate_json(m.body).record_key for m in handed] == [
        "hubspot:deal:9"
    ]
