"""In-memory adapters: the queue's SQS FIFO semantics, and what the moto contract tests
in ``tests/integration/test_dynamo_stores.py`` do not cover."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.resources import DESCRIPTION
from local.memory import MemoryCursorStore, MemoryQueue, MemorySecretStore, Received
from shared.errors import Retryable
from shared.models import ChangeEvent, ChangeKind, ObjectType
from shared.ports import EventQueue, SecretStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _event(record: str, version: int, *, event_id: str | None = None) -> ChangeEvent:
    return ChangeEvent(
        connection_id="acme",
        source="hubspot",
        object_type=ObjectType.DEAL,
        record_id=record,
        event_id=event_id or f"{record}-{version}",
        kind=ChangeKind.UPDATED,
        occurred_at=datetime(2025, 3, 1, tzinfo=UTC),
        version=version,
    )


def _ids(received: list[Received]) -> list[str]:
    return [r.event.event_id for r in received]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def queue(clock: Clock) -> MemoryQueue:
    return MemoryQueue(visibility_timeout_s=30, max_receive_count=3, clock=clock)


# --- queue: order -----------------------------------------------------------------------


def test_given_two_groups_when_received_then_each_group_in_order(queue: MemoryQueue) -> None:
    sending: EventQueue = queue
    sending.send([_event("a", 1), _event("b", 1), _event("a", 2), _event("b", 2), _event("a", 3)])

    received = queue.receive(10)

    assert _ids([r for r in received if r.group_id == "acme:hubspot:deal:a"]) == [
        "a-1",
        "a-2",
        "a-3",
    ]
    assert _ids([r for r in received if r.group_id == "acme:hubspot:deal:b"]) == ["b-1", "b-2"]
    assert [r.dedup_id for r in received[:1]] == [_event("a", 1).dedup_id]


def test_given_a_group_in_flight_when_received_then_only_other_groups_come(
    queue: MemoryQueue,
) -> None:
    queue.send([_event("a", 1), _event("a", 2), _event("b", 1)])
    (a1,) = queue.receive(1)

    assert _ids(queue.receive(10)) == ["b-1"]
    assert queue.receive(10) == []

    assert queue.delete(a1.receipt)
    assert _ids(queue.receive(10)) == ["a-2"]


def test_given_a_later_message_deleted_first_when_received_then_group_waits_for_the_head(
    queue: MemoryQueue,
) -> None:
    queue.send([_event("a", 1), _event("a", 2), _event("a", 3)])
    a1, a2 = queue.receive(2)

    queue.delete(a2.receipt)

    assert queue.receive(10) == []
    queue.delete(a1.receipt)
    assert _ids(queue.receive(10)) == ["a-3"]


def test_given_a_shuffling_queue_when_received_then_groups_interleave_but_keep_order(
    clock: Clock,
) -> None:
    queue = MemoryQueue(clock=clock, rng=random.Random(7))
    queue.send([_event(g, v) for v in range(3) for g in "abcdef"])

    delivered: list[str] = []
    while batch := queue.receive(1):
        delivered += _ids(batch)
        queue.delete(batch[0].receipt)

    heads = [d for d in delivered if d.endswith("-0")]
    assert heads != sorted(heads)  # groups came out of send order
    for group in "abcdef":
        assert [d for d in delivered if d[0] == group] == [f"{group}-0", f"{group}-1", f"{group}-2"]


# --- queue: visibility, dead letters, dedup --------------------------------------------------


def test_given_a_message_not_deleted_when_visibility_ends_then_redelivered(
    queue: MemoryQueue, clock: Clock
) -> None:
    queue.send([_event("a", 1)])
    (first,) = queue.receive(10)

    clock.now += 29.9
    assert queue.receive(10) == []
    clock.now += 0.1
    (again,) = queue.receive(10)

    assert (again.message_id, again.receive_count) == (first.message_id, 2)
    assert not queue.delete(first.receipt)  # the first delivery's receipt is stale
    assert queue.delete(again.receipt)
    assert len(queue) == 0


def test_given_a_receive_with_its_own_visibility_when_it_ends_then_redelivered(
    queue: MemoryQueue, clock: Clock
) -> None:
    queue.send([_event("a", 1)])
    queue.receive(10, visibility_timeout_s=5)

    clock.now += 5

    assert _ids(queue.receive(10)) == ["a-1"]


def test_given_visibility_changed_when_time_passes_then_redelivery_follows_the_change(
    queue: MemoryQueue, clock: Clock
) -> None:
    queue.send([_event("a", 1), _event("b", 1)])
    a, b = queue.receive(10)

    assert queue.change_visibility(a.receipt, 0)  # give it back now
    assert queue.change_visibility(b.receipt, 100)  # needs longer
    assert _ids(queue.receive(10)) == ["a-1"]
    clock.now += 30
    assert [r.receive_count for r in queue.receive(10)] == [3]  # a again; b still held
    clock.now += 70
    assert _ids(queue.receive(10)) == ["b-1"]
    assert not queue.change_visibility(a.receipt, 10)


def test_given_a_message_received_max_times_when_it_fails_again_then_dead_lettered(
    queue: MemoryQueue, clock: Clock
) -> None:
    queue.send([_event("a", 1), _event("a", 2)])
    for _ in range(3):
        (head,) = queue.receive(1)
        assert head.event.event_id == "a-1"
        clock.now += 30

    (nxt,) = queue.receive(1)

    assert nxt.event.event_id == "a-2"
    assert [(d.event.event_id, d.receive_count) for d in queue.dead_letters] == [("a-1", 3)]
    assert len(queue) == 1


def test_given_dead_letters_when_redriven_then_delivered_again(
    queue: MemoryQueue, clock: Clock
) -> None:
    queue.send([_event("a", 1)])
    for _ in range(3):
        queue.receive(1)
        clock.now += 30
    assert len(queue) == 0

    assert queue.redrive() == 1

    (again,) = queue.receive(1)
    assert (again.event.event_id, again.receive_count) == ("a-1", 1)
    assert queue.dead_letters == []


def test_given_an_event_sent_twice_within_five_minutes_then_queued_once(
    queue: MemoryQueue, clock: Clock
) -> None:
    queue.send([_event("a", 1), _event("a", 1)])
    clock.now += 299
    queue.send([_event("a", 1)])
    assert len(queue) == 1

    clock.now += 1
    queue.send([_event("a", 1)])

    assert len(queue) == 2


def test_given_the_deployed_queue_spec_when_built_from_it_then_same_limits() -> None:
    spec = DESCRIPTION.queue("Events")

    queue = MemoryQueue.from_spec(spec)

    assert (queue.visibility_timeout_s, queue.max_receive_count) == (
        spec.visibility_timeout_s,
        spec.max_receive_count,
    )


def test_given_an_event_too_large_for_sqs_when_sent_then_rejected(queue: MemoryQueue) -> None:
    with pytest.raises(ValueError, match="SQS takes at most"):
        queue.send([_event("a", 1).model_copy(update={"event_id": "x" * 300_000})])
    assert len(queue) == 0


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["receive", "delete", "release", "wait"]),
            st.integers(min_value=0, max_value=9),
        ),
        max_size=60,
    ),
    shuffle=st.booleans(),
)
def test_given_any_mix_of_receives_and_failures_then_groups_stay_in_order_and_nothing_is_lost(
    steps: list[tuple[str, int]], shuffle: bool
) -> None:
    clock = Clock()
    queue = MemoryQueue(
        visibility_timeout_s=5,
        max_receive_count=3,
        clock=clock,
        rng=random.Random(0) if shuffle else None,
    )
    sent = [_event(g, v) for v in range(4) for g in "abc"]
    queue.send(sent)
    in_flight: dict[str, tuple[Received, float]] = {}  # receipt → (delivery, visible again at)
    gone: set[str] = set()  # deleted or dead-lettered

    for action, n in steps:
        in_flight = {k: v for k, v in in_flight.items() if v[1] > clock.now}
        if action == "receive":
            busy = {r.group_id for r, _ in in_flight.values()}
            batch = queue.receive(n + 1)
            gone |= {d.event.event_id for d in queue.dead_letters}
            for r in batch:
                assert r.group_id not in busy
                assert r.receive_count <= 3
                earlier = {f"{r.event.record_id}-{v}" for v in range(r.event.version)}
                assert earlier <= gone | {b.event.event_id for b in batch[: batch.index(r)]}
                in_flight[r.receipt] = (r, clock.now + 5)
        elif action == "delete" and in_flight:
            receipt = list(in_flight)[n % len(in_flight)]
            assert queue.delete(receipt)
            gone.add(in_flight.pop(receipt)[0].event.event_id)
        elif action == "release" and in_flight:
            receipt = list(in_flight)[n % len(in_flight)]
            del in_flight[receipt]
            assert queue.change_visibility(receipt, 0)
        elif action == "wait":
            clock.now += n

    while len(queue):
        clock.now += 5
        for r in queue.receive(10):
            assert queue.delete(r.receipt)
            gone.add(r.event.event_id)
    gone |= {d.event.event_id for d in queue.dead_letters}
    assert gone == {e.event_id for e in sent}


# --- queue: threads ---------------------------------------------------------------------


def test_given_consumers_on_threads_when_they_drain_then_each_message_once_in_group_order(
    queue: MemoryQueue,
) -> None:
    queue.send([_event(g, v) for v in range(50) for g in "abcdefgh"])
    deleted: list[ChangeEvent] = []
    record = threading.Lock()

    def consume() -> None:
        while batch := queue.receive(3):
            for r in batch:
                with record:  # delete and note under one lock, so the notes keep delete order
                    assert queue.delete(r.receipt)
                    deleted.append(r.event)

    workers = [threading.Thread(target=consume) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()

    assert len(deleted) == 400
    for group in "abcdefgh":
        assert [e.version for e in deleted if e.record_id == group] == list(range(50))


# --- the other memory stores -----------------------------------------------------------


def test_given_secrets_when_read_then_copies_and_fresh_reads_see_writes() -> None:
    store: SecretStore = MemorySecretStore({"crmsync/acme/hubspot": {"access_token": "t1"}})

    store.read("crmsync/acme/hubspot")["access_token"] = "tampered"
    store.write("crmsync/acme/hubspot", {"access_token": "t2"})

    assert store.read("crmsync/acme/hubspot", fresh=True) == {"access_token": "t2"}
    with pytest.raises(Retryable, match="crmsync/acme/quickbooks"):
        store.read("crmsync/acme/quickbooks")


def test_given_threads_moving_a_cursor_when_done_then_it_holds_the_highest() -> None:
    cursors = MemoryCursorStore()
    values = list(range(2000))
    random.Random(3).shuffle(values)

    def move(part: list[int]) -> None:
        for v in part:
            cursors.put("w", v)

    threads = [threading.Thread(target=move, args=(values[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert cursors.get("w") == 1999
