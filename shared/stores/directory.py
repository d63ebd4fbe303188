"""The target's customer emails in DynamoDB, one item an email in the Links table.

Items ``{connection}#email#{email}`` (the email as the core gives it, casefolded) and
one ``{connection}#directory`` holding when the newest listing that filled it began.
No item carries ``target_pk``, so the Links table's index never copies them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from shared.stores.dynamo import put_all

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient


def _marker(connection_id: str) -> str:
    return f"{connection_id}#directory"


def _email(connection_id: str, email: str) -> str:
    return f"{connection_id}#email#{email}"


class DynamoCustomerDirectory:
    """``CustomerDirectory`` on the Links table."""

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def holds(self, connection_id: str, email: str) -> bool | None:
        # The email and whether the directory was ever filled, in one request.
        keys = [_marker(connection_id), _email(connection_id, email)]
        response = self._client.batch_get_item(
            RequestItems={
                self._table: {"Keys": [{"pk": {"S": k}} for k in keys], "ConsistentRead": True}
            }
        )
        if response.get("UnprocessedKeys"):
            return None  # throttled: not known, so the caller looks it up
        found = {item["pk"]["S"] for item in response["Responses"].get(self._table, [])}
        if keys[0] not in found:
            return None
        return keys[1] in found

    def add(self, connection_id: str, emails: Iterable[str]) -> None:
        put_all(
            self._client,
            self._table,
            # One request must not name an item twice; two customers may share an email.
            ({"pk": {"S": _email(connection_id, email)}} for email in dict.fromkeys(emails)),
        )

    def filled_at(self, connection_id: str) -> datetime | None:
        item = self._client.get_item(
            TableName=self._table,
            Key={"pk": {"S": _marker(connection_id)}},
            ConsistentRead=True,
        ).get("Item")
        return datetime.fromisoformat(item["filled_at"]["S"]) if item else None

    def mark_filled(self, connection_id: str, at: datetime) -> None:
        self._client.put_item(
            TableName=self._table,
            Item={"pk": {"S": _marker(connection_id)}, "filled_at": {"S": at.isoformat()}},
        )
