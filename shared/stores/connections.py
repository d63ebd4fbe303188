"""The deployment's connections in DynamoDB, read through powertools Parameters.

All connections share one partition (``id = "connections"``, sort key = connection
id), so one cached query serves every lookup: a function rereads them at most once a
``max_age_s``, which is how a connection added or changed reaches running functions
without a redeploy.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from aws_lambda_powertools.utilities.parameters import DynamoDBProvider

from shared.models import Connection

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.service_resource import DynamoDBServiceResource

PARTITION = "connections"


@lru_cache(maxsize=1024)
def _parsed(document: str) -> Connection:
    """Every event and webhook looks its connection up: a stored document is parsed
    once, not on each lookup (a changed one is a new document)."""
    return Connection.model_validate_json(document)


class DynamoConnections:
    """``Connections`` on the Connections table: ``id``, ``sk``, ``value`` (JSON)."""

    def __init__(
        self,
        client: DynamoDBClient,
        resource: DynamoDBServiceResource,
        table_name: str,
        *,
        max_age_s: int = 60,
    ) -> None:
        self._client = client
        self._table = table_name
        self._max_age_s = max_age_s
        self._provider = DynamoDBProvider(table_name=table_name, boto3_client=resource)

    def get(self, connection_id: str) -> Connection | None:
        return next((c for c in self.all() if c.id == connection_id), None)

    def all(self) -> list[Connection]:
        documents = self._provider.get_multiple(PARTITION, max_age=self._max_age_s)
        return [_parsed(str(v)) for _, v in sorted(documents.items())]

    def put(self, connection: Connection) -> None:
        self._client.put_item(
            TableName=self._table,
            Item={
                "id": {"S": PARTITION},
                "sk": {"S": connection.id},
                "value": {"S": connection.model_dump_json()},
            },
        )
        self._provider.clear_cache()  # type: ignore[no-untyped-call]  # powertools lacks a hint
