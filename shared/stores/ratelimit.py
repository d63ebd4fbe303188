"""Call budgets shared by every Lambda of a connection: fixed-window counters.

QuickBooks allows 500 calls a minute and 10 a second per company; each limit is
its own budget (``per_s`` is part of the window's key), and a caller that is
refused waits until the window turns over.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

# A refusal always asks for a wait: 0 means "granted" in the CallBudget contract.
_MIN_WAIT_S = 0.001


class FixedWindowBudget(ABC):
    """Window arithmetic; subclasses count calls per window."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        # Wall-clock time: windows are shared by processes on different hosts.
        self._clock = clock

    def acquire(self, key: str, *, limit: int, per_s: float) -> float:
        now = self._clock()
        start = math.floor(now / per_s) * per_s
        end = start + per_s
        bucket = f"rate#{key}#{per_s:g}s"
        if self._take(bucket, round(start * 1000), limit=limit, expires_at=math.ceil(end)):
            return 0.0
        return max(end - now, _MIN_WAIT_S)

    @abstractmethod
    def _take(self, bucket: str, start_ms: int, *, limit: int, expires_at: int) -> bool:
        """Count one call in the window of ``bucket`` starting at ``start_ms``, if under limit."""


class DynamoCallBudget(FixedWindowBudget):
    """``CallBudget`` on the Cursors table: item pk ``rate#{key}#{per_s}s#{window_start_ms}``."""

    def __init__(
        self, client: DynamoDBClient, table_name: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(clock=clock)
        self._client = client
        self._table = table_name

    def _take(self, bucket: str, start_ms: int, *, limit: int, expires_at: int) -> bool:
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": f"{bucket}#{start_ms}"}},
                UpdateExpression="ADD calls :one SET expires_at = :exp",
                ConditionExpression="attribute_not_exists(calls) OR calls < :limit",
                ExpressionAttributeValues={
                    ":one": {"N": "1"},
                    ":limit": {"N": str(limit)},
                    ":exp": {"N": str(expires_at)},
                },
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            return False
        return True
