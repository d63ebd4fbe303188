"""Each connection's newest drift report, one item in the Cursors table.

The Cursors table, not the Audit table: a report is state replaced by each run (the
next run reads it back to tell a persistent finding), not history; the Audit table
keeps one entry per record and event, expires them, and is read newest first by record.
The Cursors table already holds the reconcile function's small state (watermarks),
which it reads and writes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.models.drift import DriftReport

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient


def _pk(connection_id: str) -> str:
    return f"drift#{connection_id}"


class DynamoDriftStore:
    """``shared.sync.drift.DriftStore`` on the Cursors table, pk ``drift#{connection}``."""

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def latest(self, connection_id: str) -> DriftReport | None:
        item = self._client.get_item(
            TableName=self._table, Key={"pk": {"S": _pk(connection_id)}}, ConsistentRead=True
        ).get("Item")
        return DriftReport.model_validate_json(item["report"]["S"]) if item else None

    def save(self, report: DriftReport) -> None:
        self._client.put_item(
            TableName=self._table,
            Item={
                "pk": {"S": _pk(report.connection_id)},
                "report": {"S": report.model_dump_json()},
            },
        )
