"""Deferrals per queue message in DynamoDB, so a deferral is not taken for a failure."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

# As long as SQS keeps a message (14 days at most): a count outlives its message.
KEEP_S = 14 * 24 * 3600


def _pk(message_id: str) -> str:
    return f"deferrals#{message_id}"


class DynamoDeferralCounter:
    """``DeferralCounter`` on the Cursors table: item pk ``deferrals#{message id}``."""

    def __init__(
        self, client: DynamoDBClient, table_name: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._client = client
        self._table = table_name
        self._clock = clock

    def deferrals(self, message_id: str) -> int:
        item = self._client.get_item(
            TableName=self._table, Key={"pk": {"S": _pk(message_id)}}, ConsistentRead=True
        ).get("Item")
        return int(item["deferrals"]["N"]) if item else 0

    def add_deferral(self, message_id: str) -> None:
        self._client.update_item(
            TableName=self._table,
            Key={"pk": {"S": _pk(message_id)}},
            UpdateExpression="ADD deferrals :one SET expires_at = :expires",
            ExpressionAttributeValues={
                ":one": {"N": "1"},
                ":expires": {"N": str(int(self._clock()) + KEEP_S)},
            },
        )
