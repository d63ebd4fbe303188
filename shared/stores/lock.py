"""A lease lock shared by every Lambda (e.g. around an OAuth refresh-token rotation).

A holder that dies keeps the lock only until its lease ends; then anyone may take
it. Release deletes the lease only while it is still ours, so a holder that
overran its lease cannot free the lock of whoever took over.
"""

from __future__ import annotations

import logging
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING
from uuid import uuid4

from shared.stores.dynamo import number
from shared.waiting import wait_for

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

log = logging.getLogger(__name__)


def lease_expiry(now: float, lease_s: float) -> int:
    """Whole epoch seconds, as DynamoDB TTL wants; rounded up so a lease never ends early."""
    return math.ceil(now + lease_s)


class LeaseLock(ABC):
    """The acquire/poll/release loop; subclasses store the lease."""

    def __init__(
        self,
        owner_id: str,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        poll_s: float = 0.1,
    ) -> None:
        self._owner_id = owner_id
        self._clock = clock
        self._sleep = sleep
        self._poll_s = poll_s

    @contextmanager
    def hold(self, name: str, *, lease_s: float, wait_s: float) -> Iterator[None]:
        # One token per hold: two threads of one process are two holders.
        token = f"{self._owner_id}#{uuid4().hex[:8]}"

        def take() -> bool | None:
            now = self._clock()
            return self._take(name, token, now=now, expires_at=lease_expiry(now, lease_s)) or None

        wait_for(
            take,
            what=name,
            wait_s=wait_s,
            poll_s=self._poll_s,
            clock=self._clock,
            sleep=self._sleep,
        )
        try:
            yield
        finally:
            if not self._release(name, token):
                log.warning("lease on lock %r ended before release; another holder took it", name)

    @abstractmethod
    def _take(self, name: str, token: str, *, now: float, expires_at: int) -> bool:
        """Store the lease if the lock is free or its lease ended before ``now``."""

    @abstractmethod
    def _release(self, name: str, token: str) -> bool:
        """Drop the lease if ``token`` still holds it; False when it did not."""


class DynamoLock(LeaseLock):
    """``Lock`` on the Cursors table: item pk ``lock#{name}``, ``expires_at`` is also its TTL."""

    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        owner_id: str,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        poll_s: float = 0.1,
    ) -> None:
        super().__init__(owner_id, clock=clock, sleep=sleep, poll_s=poll_s)
        self._client = client
        self._table = table_name

    def _take(self, name: str, token: str, *, now: float, expires_at: int) -> bool:
        try:
            self._client.put_item(
                TableName=self._table,
                Item={
                    "pk": {"S": f"lock#{name}"},
                    "owner": {"S": token},
                    "expires_at": {"N": str(expires_at)},
                },
                ConditionExpression="attribute_not_exists(pk) OR expires_at < :now",
                ExpressionAttributeValues={":now": number(now)},
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def _release(self, name: str, token: str) -> bool:
        try:
            self._client.delete_item(
                TableName=self._table,
                Key={"pk": {"S": f"lock#{name}"}},
                ConditionExpression="#o = :me",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={":me": {"S": token}},
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            return False
        return True
