"""Record links in DynamoDB: source record ↔ target record, written conditionally.

A record's ``PendingCreate`` lives in the same item as its link (attribute
``pending_create``), so saving the link clears it in the same atomic write. Its
``BackState`` (two-way) is an item of its own (``back#`` key): saving a link puts the
whole item and must not drop it. So is what an accounting record's changes reached
(``reach#`` key, a string set), keyed by that record's target key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import suppress
from typing import TYPE_CHECKING

from shared.errors import StaleWrite
from shared.models import BackState, PendingCreate, RecordLink
from shared.ports import LinkState
from shared.stores.dynamo import from_item, number, put_all, to_item

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

TARGET_INDEX = "by_target"
PENDING = "pending_create"
# The create lease: who holds it, until when (epoch seconds). A saved link is a whole
# new item, so saving it ends the lease in the same write.
CLAIM_OWNER, CLAIM_UNTIL = "create_owner", "create_until"
_KEYS = ("pk", "target_pk", PENDING, CLAIM_OWNER, CLAIM_UNTIL)


def _pk(connection_id: str, key: str) -> str:
    return f"{connection_id}#{key}"


class DynamoLinkStore:
    """``LinkStore`` on the Links table: pk ``{connection}#{source_key}``, GSI on ``target_pk``."""

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def get(self, connection_id: str, source_key: str) -> RecordLink | None:
        return self.state(connection_id, source_key).link

    def state(self, connection_id: str, source_key: str) -> LinkState:
        item = self._client.get_item(
            TableName=self._table,
            Key={"pk": {"S": _pk(connection_id, source_key)}},
            ConsistentRead=True,
        ).get("Item", {})
        return _state(item)

    def claim_create(
        self, connection_id: str, source_key: str, owner: str, *, now: float, lease_s: float
    ) -> LinkState | None:
        try:
            item = self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": _pk(connection_id, source_key)}},
                UpdateExpression="SET #o = :o, #u = :u",
                ConditionExpression="attribute_not_exists(#o) OR #u < :now",
                ExpressionAttributeNames={"#o": CLAIM_OWNER, "#u": CLAIM_UNTIL},
                ExpressionAttributeValues={
                    ":o": {"S": owner},
                    ":u": number(now + lease_s),
                    ":now": number(now),
                },
                ReturnValues="ALL_NEW",
            )["Attributes"]
        except self._client.exceptions.ConditionalCheckFailedException:
            return None
        return _state(item)

    def release_create(self, connection_id: str, source_key: str, owner: str) -> None:
        # Not ours any more: it ran out and was taken over.
        with suppress(self._client.exceptions.ConditionalCheckFailedException):
            self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": _pk(connection_id, source_key)}},
                UpdateExpression="REMOVE #o, #u",
                ConditionExpression="#o = :o",
                ExpressionAttributeNames={"#o": CLAIM_OWNER, "#u": CLAIM_UNTIL},
                ExpressionAttributeValues={":o": {"S": owner}},
            )

    def get_by_target(self, connection_id: str, target_key: str) -> RecordLink | None:
        # A GSI read is eventually consistent: a link saved a moment ago may not show yet.
        response = self._client.query(
            TableName=self._table,
            IndexName=TARGET_INDEX,
            KeyConditionExpression="target_pk = :t",
            ExpressionAttributeValues={":t": {"S": _pk(connection_id, target_key)}},
            Limit=1,
        )
        items = response.get("Items", [])
        return RecordLink.model_validate(from_item(items[0], drop=_KEYS)) if items else None

    def save(self, link: RecordLink) -> None:
        item = to_item(link.model_dump(mode="json"))
        item["pk"] = {"S": _pk(link.connection_id, link.source_key)}
        item["target_pk"] = {"S": _pk(link.connection_id, link.target_key)}
        try:
            self._client.put_item(
                TableName=self._table,
                Item=item,
                ConditionExpression=(
                    "attribute_not_exists(source_version) OR source_version <= :v"
                ),
                ExpressionAttributeValues={":v": {"N": str(link.source_version)}},
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            raise StaleWrite(
                f"link {link.source_key} holds a version newer than {link.source_version}"
            ) from None

    def mark_writing(self, connection_id: str, source_key: str, digest: str) -> None:
        self._client.update_item(
            TableName=self._table,
            Key={"pk": {"S": _pk(connection_id, source_key)}},
            UpdateExpression="SET writing = :d",
            ExpressionAttributeValues={":d": {"S": digest}},
        )

    def set_parent(self, connection_id: str, child_keys: Sequence[str], parent_key: str) -> None:
        put_all(
            self._client,
            self._table,
            (
                {"pk": {"S": _pk(connection_id, f"parent#{child}")}, "parent": {"S": parent_key}}
                for child in child_keys
            ),
        )

    def parent_of(self, connection_id: str, child_key: str) -> str | None:
        item = self._client.get_item(
            TableName=self._table,
            Key={"pk": {"S": _pk(connection_id, f"parent#{child_key}")}},
            ConsistentRead=True,
        ).get("Item")
        return item["parent"]["S"] if item else None

    def put_pending_create(self, pending: PendingCreate) -> None:
        self._client.update_item(
            TableName=self._table,
            Key={"pk": {"S": _pk(pending.connection_id, pending.source_key)}},
            UpdateExpression="SET #p = :p",
            ExpressionAttributeNames={"#p": PENDING},
            ExpressionAttributeValues={":p": {"S": pending.model_dump_json()}},
        )

    def drop_pending_create(self, connection_id: str, source_key: str) -> None:
        self._client.update_item(
            TableName=self._table,
            Key={"pk": {"S": _pk(connection_id, source_key)}},
            UpdateExpression="REMOVE #p",
            ExpressionAttributeNames={"#p": PENDING},
        )

    def back_state(self, connection_id: str, source_key: str) -> BackState | None:
        item = self._client.get_item(
            TableName=self._table,
            Key={"pk": {"S": _pk(connection_id, f"back#{source_key}")}},
            ConsistentRead=True,
        ).get("Item")
        return BackState.model_validate_json(item["state"]["S"]) if item else None

    def save_back_state(self, state: BackState) -> None:
        try:
            self._client.put_item(
                TableName=self._table,
                Item={
                    "pk": {"S": _pk(state.connection_id, f"back#{state.source_key}")},
                    "revision": {"N": str(state.revision)},
                    "state": {"S": state.model_dump_json()},
                },
                ConditionExpression="attribute_not_exists(pk) OR revision = :r",
                ExpressionAttributeValues={":r": {"N": str(state.revision - 1)}},
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            raise StaleWrite(f"back state of {state.source_key} was saved meanwhile") from None

    def remember_reach(self, connection_id: str, target_key: str, reached: Sequence[str]) -> None:
        if not reached:  # DynamoDB refuses an empty set
            return
        # ADD to a string set: a union in one atomic write, whoever added before.
        self._client.update_item(
            TableName=self._table,
            Key={"pk": {"S": _pk(connection_id, f"reach#{target_key}")}},
            UpdateExpression="ADD reach :r",
            ExpressionAttributeValues={":r": {"SS": sorted(set(reached))}},
        )

    def reach_of(self, connection_id: str, target_key: str) -> frozenset[str]:
        item = self._client.get_item(
            TableName=self._table,
            Key={"pk": {"S": _pk(connection_id, f"reach#{target_key}")}},
            ConsistentRead=True,
        ).get("Item")
        return frozenset(item["reach"]["SS"]) if item else frozenset()


def _state(item: Mapping[str, AttributeValueTypeDef]) -> LinkState:
    pending = item.get(PENDING, {}).get("S")
    return LinkState(
        # Nothing, or only a pending create or a lease, is no link.
        link=RecordLink.model_validate(from_item(item, drop=_KEYS))
        if "target_id" in item
        else None,
        pending=PendingCreate.model_validate_json(pending) if pending else None,
    )
