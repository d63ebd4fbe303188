"""Reconciliation watermarks in DynamoDB; they only ever move forward."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient


def _pk(name: str) -> str:
    return f"cursor#{name}"


class DynamoCursorStore:
    """``CursorStore`` on the Cursors table, item pk ``cursor#{name}``."""

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def get(self, name: str) -> int | None:
        response = self._client.get_item(
            TableName=self._table, Key={"pk": {"S": _pk(name)}}, ConsistentRead=True
        )
        item = response.get("Item")
        return int(item["value"]["N"]) if item else None

    def put(self, name: str, value: int) -> None:
        """Moves the watermark to ``value`` unless it is already there or beyond:
        two overlapping reconcile runs must not drag it back."""
        try:
            self._client.put_item(
                TableName=self._table,
                Item={"pk": {"S": _pk(name)}, "value": {"N": str(value)}},
                ConditionExpression="attribute_not_exists(pk) OR #v < :v",
                ExpressionAttributeNames={"#v": "value"},
                ExpressionAttributeValues={":v": {"N": str(value)}},
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            return
