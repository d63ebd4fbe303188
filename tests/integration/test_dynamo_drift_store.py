"""Each connection's newest drift report, on moto's DynamoDB and in memory alike."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from infra.resources import DESCRIPTION
from local.aws import create_table
from local.memory import MemoryDriftStore
from shared.models.drift import MAX_FINDINGS, Done, DriftKind, DriftReport, Finding
from shared.ports import DriftStore
from shared.stores.drift import DynamoDriftStore

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

BOTH = pytest.mark.parametrize("kind", ["dynamo", "memory"])


@pytest.fixture
def store(kind: str, request: pytest.FixtureRequest) -> DriftStore:
    if kind == "memory":
        return MemoryDriftStore()
    dynamodb: DynamoDBClient = request.getfixturevalue("dynamodb")
    create_table(dynamodb, DESCRIPTION.table("Cursors"), "test-drift-cursors")
    return DynamoDriftStore(dynamodb, "test-drift-cursors")


def finding(n: int) -> Finding:
    return Finding(
        kind=DriftKind.FIELD,
        crm_key=f"hubspot:contact:{n}",
        target_key=f"quickbooks:customer:{n}",
        field="DisplayName",
        crm_value="Ada Lovelace",
        accounting_value="Ada L. (edited in the books, a longer value than most)",
        done=Done.QUEUED,
        reason="differs from what the sync wrote",
    )


@BOTH
def test_given_two_runs_when_saved_then_the_newest_per_connection_reads_back(
    store: DriftStore,
) -> None:
    assert store.latest("acme") is None
    first = DriftReport.of("acme", [finding(1)], checked=1, complete=True)
    newest = DriftReport.of("acme", [], checked=2, complete=True)
    other = DriftReport.of("globex", [finding(2)], checked=1, complete=False)

    store.save(first)
    store.save(other)
    store.save(newest)

    assert store.latest("acme") == newest
    assert store.latest("globex") == other


@BOTH
def test_given_more_findings_than_an_item_holds_then_all_are_counted_and_the_first_kept(
    store: DriftStore,
) -> None:
    report = DriftReport.of(
        "acme", [finding(n) for n in range(MAX_FINDINGS + 50)], checked=9, complete=True
    )

    store.save(report)

    stored = store.latest("acme")
    assert stored is not None
    assert len(stored.findings) == MAX_FINDINGS
    assert stored.counts[DriftKind.FIELD] == MAX_FINDINGS + 50
