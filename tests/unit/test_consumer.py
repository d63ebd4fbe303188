"""The queue consumer's accounting: a deferral is not a failure (issue item 7).

Driven through an in-memory SQS FIFO queue configured like the deployed Events
queue, with a clock the test moves, so a message can be throttled for "hours".
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from infra.resources import DESCRIPTION
from local.memory import MemoryDeferralCounter, MemoryQueue, Received
from shared.errors import RateLimited, Retryable
from shared.models import ChangeEvent, ChangeKind, ObjectType
from shared.sync.consume import Consumer, QueueMessage

SPEC = DESCRIPTION.queue("Events")
MAX_FAILED = SPEC.max_failed_attempts or 0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def change(record_id: str = "1") -> ChangeEvent:
    return ChangeEvent(
        connection_id="acme",
        source="hubspot",
        object_type=ObjectType.CONTACT,
        record_id=record_id,
        event_id=f"e-{record_id}",
        kind=ChangeKind.UPDATED,
        occurred_at=datetime(2026, 11, 20, tzinfo=UTC),
        version=1,
    )


class Rig:
    def __init__(self, apply: Callable[[ChangeEvent], Any]) -> None:
        self.clock = Clock()
        self.queue = MemoryQueue.from_spec(SPEC, clock=self.clock)
        self.consumer = Consumer(
            apply=apply,
            queue=self.queue,
            deferrals=MemoryDeferralCounter(),
            max_failed_attempts=MAX_FAILED,
            retry_delay_s=SPEC.retry_delay_s,
        )

    def next_delivery(self) -> Received | None:
        """Wait (in test time) until a message is delivered, as the event source does."""
        for _ in range(100):
            received = self.queue.receive(1)
            if received:
                return received[0]
            self.clock.now += 30
        return None

    def run(self, deliveries: int) -> int:
        """Handle up to ``deliveries`` deliveries; returns how many it handled."""
        handled = 0
        while handled < deliveries and (received := self.next_delivery()) is not None:
            handled += 1
            message = QueueMessage(
                message_id=received.message_id,
                receipt=received.receipt,
                body=received.body,
                receive_count=received.receive_count,
            )
            try:
                self.consumer.process(message)
            except (RateLimited, Retryable):
                continue  # left on the queue: back after its visibility timeout
            self.queue.delete(received.receipt)
        return handled


def test_given_a_long_throttle_then_the_message_is_applied_not_dead_lettered() -> None:
    applied: list[ChangeEvent] = []
    throttled = iter(range(40))  # 40 deferrals of 60 s: forty minutes of 429s

    def apply(event: ChangeEvent) -> None:
        if next(throttled, None) is not None:
            raise RateLimited("429", retry_after_s=60)
        applied.append(event)

    rig = Rig(apply)
    rig.queue.send([change()])

    rig.run(100)

    assert [e.event_id for e in applied] == ["e-1"]
    assert rig.queue.dead_letters == []
    assert len(rig.queue) == 0


def test_given_a_record_that_keeps_failing_then_dead_lettered_after_the_allowed_attempts() -> None:
    attempts: list[str] = []

    def apply(event: ChangeEvent) -> None:
        attempts.append(event.event_id)
        raise Retryable("503 from the vendor")

    rig = Rig(apply)
    rig.queue.send([change()])

    rig.run(100)

    assert len(attempts) == MAX_FAILED
    assert [m.event.event_id for m in rig.queue.dead_letters] == ["e-1"]
    assert len(rig.queue) == 0


def test_given_invocations_that_died_then_those_receives_count_as_failures() -> None:
    rig = Rig(lambda event: pytest.fail("a message past its attempts is not applied again"))
    rig.queue.send([change()])
    for _ in range(MAX_FAILED):  # received, then the function timed out: never deleted
        assert rig.next_delivery() is not None
        rig.clock.now += SPEC.visibility_timeout_s

    rig.run(1)

    assert [m.event.event_id for m in rig.queue.dead_letters] == ["e-1"]


def test_given_a_message_skipped_behind_a_failed_one_then_it_is_not_counted() -> None:
    rig = Rig(lambda event: None)
    rig.queue.send([change()])
    for _ in range(MAX_FAILED + 3):
        received = rig.next_delivery()
        assert received is not None
        rig.consumer.skipped(
            QueueMessage(
                message_id=received.message_id,
                receipt=received.receipt,
                body=received.body,
                receive_count=received.receive_count,
            )
        )

    assert rig.run(1) == 1
    assert rig.queue.dead_letters == []
    assert len(rig.queue) == 0
