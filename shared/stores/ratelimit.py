"""Call budgets shared by every Lambda of a connection: calls paced evenly.

Vendors count their limits over a rolling window ("10 requests per second per
company"). A fixed-window counter lets twice the limit through across a window
boundary, so calls are instead *paced*: one every ``per_s / limit`` seconds
(the generic cell rate algorithm with no burst). Any rolling window of
``per_s`` seconds then holds at most ``limit`` calls. Each caller reserves the
next free slot with one conditional write and sleeps until it; a slot further
away than the caller is willing to wait is not reserved, so nothing is wasted
when the message goes back to the queue instead.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

# Calls leave 5 % further apart than the limit allows: requests reserved exactly
# per_s/limit apart can reach the vendor closer together (network jitter).
PACING_MARGIN = 1.05
# A refusal always asks for a wait longer than the caller's maximum.
_MIN_EXCESS_S = 0.001


class PacedBudget(ABC):
    """The pacing arithmetic; subclasses store each bucket's next free slot."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        # Wall-clock time: slots are shared by processes on different hosts.
        self._clock = clock

    def acquire(self, key: str, *, limit: int, per_s: float, max_wait_s: float) -> float:
        interval = per_s / limit * PACING_MARGIN
        bucket = f"rate#{key}#{limit}/{per_s:g}s"
        while True:
            now = self._clock()
            next_free, version = self._read(bucket)
            slot = max(next_free, now)
            wait = slot - now
            if wait > max_wait_s:
                return max(wait, max_wait_s + _MIN_EXCESS_S)
            expires_at = math.ceil(slot + interval + per_s)
            if self._swap(bucket, version, slot + interval, expires_at=expires_at):
                return wait
            # Another caller took that slot first: read again.

    @abstractmethod
    def _read(self, bucket: str) -> tuple[float, str | None]:
        """The bucket's next free slot (0 when new) and a version for ``_swap``."""

    @abstractmethod
    def _swap(self, bucket: str, version: str | None, next_free: float, *, expires_at: int) -> bool:
        """Store ``next_free`` if the bucket still has ``version``; False if it changed."""


class DynamoCallBudget(PacedBudget):
    """``CallBudget`` on the Cursors table: item pk ``rate#{key}#{limit}/{per_s}s``."""

    def __init__(
        self, client: DynamoDBClient, table_name: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(clock=clock)
        self._client = client
        self._table = table_name

    def _read(self, bucket: str) -> tuple[float, str | None]:
        item = self._client.get_item(
            TableName=self._table, Key={"pk": {"S": bucket}}, ConsistentRead=True
        ).get("Item")
        if item is None:
            return 0.0, None
        version = item["next_free"]["N"]
        return float(version), version

    def _swap(self, bucket: str, version: str | None, next_free: float, *, expires_at: int) -> bool:
        item: dict[str, AttributeValueTypeDef] = {
            "pk": {"S": bucket},
            "next_free": {"N": f"{next_free:.6f}"},
            "expires_at": {"N": str(expires_at)},
        }
        try:
            if version is None:
                self._client.put_item(
                    TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(pk)"
                )
            else:
                self._client.put_item(
                    TableName=self._table,
                    Item=item,
                    ConditionExpression="next_free = :version",
                    ExpressionAttributeValues={":version": {"N": version}},
                )
        except self._client.exceptions.ConditionalCheckFailedException:
            return False
        return True
