"""DynamoDB plumbing shared by the table adapters: model ↔ item conversion."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from itertools import islice
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, WriteRequestTypeDef

BATCH_WRITE_MAX = 25  # items per BatchWriteItem

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def to_item(values: Mapping[str, Any]) -> dict[str, AttributeValueTypeDef]:
    """Attribute values for a write. ``None`` is left out: absent means unset."""
    return {name: _serializer.serialize(v) for name, v in values.items() if v is not None}


def from_item(
    item: Mapping[str, AttributeValueTypeDef], *, drop: Collection[str] = ()
) -> dict[str, Any]:
    """Plain values of an item without its key/bookkeeping attributes (numbers are Decimal)."""
    return {name: _deserializer.deserialize(v) for name, v in item.items() if name not in drop}


def number(value: float) -> AttributeValueTypeDef:
    """A number attribute; ``TypeSerializer`` refuses floats, DynamoDB takes their text."""
    return {"N": repr(value)}


def put_all(
    client: DynamoDBClient, table: str, items: Iterable[dict[str, AttributeValueTypeDef]]
) -> None:
    """Put ``items``, ``BATCH_WRITE_MAX`` a request. What DynamoDB leaves unprocessed
    (throttled) is sent once more; if it is left again, this raises, so the caller's
    retry puts them all again (a put is the same the second time)."""
    remaining = iter(items)
    while chunk := list(islice(remaining, BATCH_WRITE_MAX)):
        requests: list[WriteRequestTypeDef] = [{"PutRequest": {"Item": item}} for item in chunk]
        unprocessed = client.batch_write_item(RequestItems={table: requests}).get(
            "UnprocessedItems", {}
        )
        if unprocessed:
            unprocessed = client.batch_write_item(RequestItems=unprocessed).get(
                "UnprocessedItems", {}
            )
        if unprocessed:
            raise RuntimeError(f"DynamoDB left writes to {table} unprocessed twice (throttled)")
