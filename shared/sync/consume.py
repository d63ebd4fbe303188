"""One queue message in: apply its event, and decide what a failure means.

SQS counts every receive toward the queue's ``maxReceiveCount``, deferrals included,
so a record throttled for a while would be dead-lettered without ever failing. The
consumer therefore keeps its own count: a message's failed attempts are its receives
minus its deferrals (a crash or a timeout counts as a failed attempt, as it should),
and after ``max_failed_attempts`` the consumer moves it to the dead-letter queue
itself. A failed message comes back after ``retry_delay_s``, doubled on each failure,
rather than after the queue's visibility timeout (which must cover the longest
invocation). The queue's own ``maxReceiveCount`` stays as a backstop for a consumer
that cannot run at all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from shared.errors import OutOfTime, RateLimited
from shared.models import ChangeEvent
from shared.ports import DeferralCounter, EventQueue, SyncMetrics, Tally, Unmeasured


@dataclass(frozen=True)
class QueueMessage:
    """What the consumer needs of one received SQS message."""

    message_id: str
    receipt: str
    body: str
    receive_count: int

    @cached_property
    def event(self) -> ChangeEvent:
        """The body's event, parsed once: the handler reads its ids for the logs first."""
        return ChangeEvent.model_validate_json(self.body)


class Consumer:
    def __init__(
        self,
        *,
        apply: Callable[[ChangeEvent], Any],
        queue: EventQueue,
        deferrals: DeferralCounter,
        max_failed_attempts: int,
        retry_delay_s: float,
        metrics: SyncMetrics | None = None,
    ) -> None:
        self._apply = apply
        self._queue = queue
        self._deferrals = deferrals
        self._max_failed = max_failed_attempts
        self._retry_delay_s = retry_delay_s
        self._metrics = metrics or Unmeasured()

    def process(self, message: QueueMessage) -> Any:
        """Apply the message's event; returns what ``apply`` returned, or None when the
        message was dead-lettered. Raises to have the message retried."""
        event = message.event
        failed_before = self._failed_attempts(message)
        if failed_before >= self._max_failed:
            # Its last attempts ended without a word from us (crash, timeout).
            self._queue.dead_letter(event, message_id=message.message_id)
            return None
        try:
            return self._apply(event)
        except RateLimited as limited:
            # Not a failure: the vendor asked us to wait, so the message waits that long.
            self._deferrals.add_deferral(message.message_id)
            self._queue.defer(message.receipt, limited.retry_after_s)
            self._metrics.count(event, Tally.DEFERRED)
            raise
        except OutOfTime:
            # This invocation ran out of time before the event's turn: next one, now.
            self._deferrals.add_deferral(message.message_id)
            self._queue.defer(message.receipt, 0)
            raise
        except Exception:
            self._metrics.count(event, Tally.FAILED)
            if failed_before + 1 >= self._max_failed:
                self._queue.dead_letter(event, message_id=message.message_id)
                return None
            # Back sooner than the queue's visibility timeout (sized for the longest
            # invocation), later with each failure: an outage gets time to pass.
            self._queue.defer(message.receipt, self._retry_delay_s * 2**failed_before)
            raise

    def skipped(self, message: QueueMessage) -> None:
        """The message was received but not tried (an earlier message of its group
        failed): visible again at once, it waits behind that one, and is not counted."""
        self._deferrals.add_deferral(message.message_id)
        self._queue.defer(message.receipt, 0)

    def _failed_attempts(self, message: QueueMessage) -> int:
        """Receives before this one that were not deferrals."""
        if message.receive_count <= 1:
            return 0  # the first receive: nothing to look up
        return message.receive_count - 1 - self._deferrals.deferrals(message.message_id)
