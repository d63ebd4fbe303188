"""The audit trail in DynamoDB: one partition per connection, newest first, and an
index by record (``by_record``) for one record's history."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from shared.models import AuditEntry, Outcome
from shared.stores.dynamo import from_item, to_item

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

_KEYS = ("pk", "sk", "expires_at", "record_pk")
RECORD_INDEX = "by_record"


def utc(at: datetime) -> datetime:
    """Entries written without a zone are taken as UTC, so every stamp compares."""
    return at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)


def sort_key(entry: AuditEntry) -> str:
    """Fixed-width UTC stamp first, so string order is time order; the suffix keeps
    two entries of the same event at the same microsecond apart."""
    return f"{_stamp(entry.at)}#{entry.event_id}#{uuid4().hex[:8]}"


def _stamp(at: datetime) -> str:
    return utc(at).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class DynamoAuditLog:
    """``AuditLog`` on the Audit table: pk connection id, sk time-ordered, TTL ``expires_at``."""

    def __init__(self, client: DynamoDBClient, table_name: str, ttl_days: int) -> None:
        self._client = client
        self._table = table_name
        self._ttl = timedelta(days=ttl_days)

    def record(self, entry: AuditEntry) -> None:
        item = to_item(entry.model_dump(mode="json"))
        item["pk"] = {"S": entry.connection_id}
        item["sk"] = {"S": sort_key(entry)}
        item["record_pk"] = {"S": _record_pk(entry.connection_id, entry.record_key)}
        item["expires_at"] = {"N": str(int((utc(entry.at) + self._ttl).timestamp()))}
        self._client.put_item(TableName=self._table, Item=item)

    def entries(self, connection_id: str, *, limit: int = 100) -> list[AuditEntry]:
        response = self._client.query(
            TableName=self._table,
            KeyConditionExpression="pk = :c",
            ExpressionAttributeValues={":c": {"S": connection_id}},
            ScanIndexForward=False,
            Limit=limit,
        )
        return _entries(response.get("Items", []))

    def history(self, connection_id: str, record_key: str, *, limit: int = 100) -> list[AuditEntry]:
        # A GSI read is eventually consistent: an entry of a moment ago may not show yet.
        response = self._client.query(
            TableName=self._table,
            IndexName=RECORD_INDEX,
            KeyConditionExpression="record_pk = :r",
            ExpressionAttributeValues={":r": {"S": _record_pk(connection_id, record_key)}},
            ScanIndexForward=False,
            Limit=limit,
        )
        return _entries(response.get("Items", []))

    # --- operator reads (``crmsync status``, ``crmsync replay``): every page ----------

    def entries_since(self, connection_id: str, since: datetime) -> Iterator[AuditEntry]:
        """The connection's entries at or after ``since``, oldest first."""
        pages = self._client.get_paginator("query").paginate(
            TableName=self._table,
            KeyConditionExpression="pk = :c AND sk >= :since",
            ExpressionAttributeValues={":c": {"S": connection_id}, ":since": {"S": _stamp(since)}},
        )
        for page in pages:
            yield from _entries(page.get("Items", []))

    def newest_with(self, connection_id: str, outcomes: Collection[Outcome]) -> AuditEntry | None:
        """The connection's newest entry with one of ``outcomes``, however old."""
        wanted = {f":o{i}": {"S": outcome.value} for i, outcome in enumerate(outcomes)}
        pages = self._client.get_paginator("query").paginate(
            TableName=self._table,
            KeyConditionExpression="pk = :c",
            FilterExpression=f"#outcome IN ({', '.join(wanted)})",
            ExpressionAttributeNames={"#outcome": "outcome"},
            ExpressionAttributeValues={":c": {"S": connection_id}, **wanted},
            ScanIndexForward=False,
        )
        for page in pages:
            found = _entries(page.get("Items", []))
            if found:
                return found[0]
        return None


def _record_pk(connection_id: str, record_key: str) -> str:
    return f"{connection_id}#{record_key}"


def _entries(items: Sequence[Mapping[str, Any]]) -> list[AuditEntry]:
    return [AuditEntry.model_validate(from_item(item, drop=_KEYS)) for item in items]
