"""DynamoDB plumbing shared by the table adapters: model ↔ item conversion."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

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
