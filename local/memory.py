"""In-memory adapters of every port in ``shared.ports``, for tests, benchmarks and dry runs.

Each keeps the semantics of its AWS twin (conditional link writes, forward-only
cursors, leases, paced call budgets) and is safe to share between threads.
``MemoryQueue`` stands in for SQS FIFO at scale, where moto's SQS is too slow.
"""

from __future__ import annotations

import heapq
import itertools
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from shared.errors import Retryable, StaleWrite
from shared.models import (
    AuditEntry,
    BackState,
    ChangeEvent,
    Connection,
    PendingCreate,
    RecordLink,
)
from shared.models.drift import DriftReport
from shared.ports import DeadLetter, LinkState
from shared.queues.sqs import message_body
from shared.stores.audit import utc
from shared.stores.lock import LeaseLock
from shared.stores.ratelimit import DEFAULT_PACING_MARGIN, PacedBudget

if TYPE_CHECKING:  # only for a type: Lambdas ship shared/ without infra/
    from infra.resources import QueueSpec


class MemoryLinkStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_source: dict[tuple[str, str], RecordLink] = {}
        self._by_target: dict[tuple[str, str], RecordLink] = {}
        self._pending: dict[tuple[str, str], PendingCreate] = {}
        self._parents: dict[tuple[str, str], str] = {}
        self._back: dict[tuple[str, str], BackState] = {}
        self._reach: dict[tuple[str, str], frozenset[str]] = {}
        self._claims: dict[tuple[str, str], tuple[str, float]] = {}  # owner, until

    def get(self, connection_id: str, source_key: str) -> RecordLink | None:
        with self._lock:
            return self._by_source.get((connection_id, source_key))

    def get_by_target(self, connection_id: str, target_key: str) -> RecordLink | None:
        with self._lock:
            return self._by_target.get((connection_id, target_key))

    def save(self, link: RecordLink) -> None:
        source = (link.connection_id, link.source_key)
        with self._lock:
            stored = self._by_source.get(source)
            if stored is not None:
                if stored.source_version > link.source_version:
                    raise StaleWrite(
                        f"link {link.source_key} holds a version newer than {link.source_version}"
                    )
                # Relinked to another target: the old target no longer points here.
                self._by_target.pop((stored.connection_id, stored.target_key), None)
            self._by_source[source] = link
            self._by_target[(link.connection_id, link.target_key)] = link
            self._pending.pop(source, None)
            self._claims.pop(source, None)

    def mark_writing(self, connection_id: str, source_key: str, digest: str) -> None:
        with self._lock:
            stored = self._by_source.get((connection_id, source_key))
            if stored is not None:
                marked = stored.model_copy(update={"writing": digest})
                self._by_source[(connection_id, source_key)] = marked
                self._by_target[(connection_id, stored.target_key)] = marked

    def set_parent(self, connection_id: str, child_keys: Sequence[str], parent_key: str) -> None:
        with self._lock:
            for child in child_keys:
                self._parents[(connection_id, child)] = parent_key

    def parent_of(self, connection_id: str, child_key: str) -> str | None:
        with self._lock:
            return self._parents.get((connection_id, child_key))

    def state(self, connection_id: str, source_key: str) -> LinkState:
        with self._lock:
            key = (connection_id, source_key)
            return LinkState(self._by_source.get(key), self._pending.get(key))

    def claim_create(
        self, connection_id: str, source_key: str, owner: str, *, now: float, lease_s: float
    ) -> LinkState | None:
        key = (connection_id, source_key)
        with self._lock:
            held = self._claims.get(key)
            if held is not None and held[1] >= now:
                return None
            self._claims[key] = (owner, now + lease_s)
            return LinkState(self._by_source.get(key), self._pending.get(key))

    def release_create(self, connection_id: str, source_key: str, owner: str) -> None:
        key = (connection_id, source_key)
        with self._lock:
            if key in self._claims and self._claims[key][0] == owner:
                del self._claims[key]

    def put_pending_create(self, pending: PendingCreate) -> None:
        with self._lock:
            self._pending[(pending.connection_id, pending.source_key)] = pending

    def drop_pending_create(self, connection_id: str, source_key: str) -> None:
        with self._lock:
            self._pending.pop((connection_id, source_key), None)

    def back_state(self, connection_id: str, source_key: str) -> BackState | None:
        with self._lock:
            return self._back.get((connection_id, source_key))

    def save_back_state(self, state: BackState) -> None:
        key = (state.connection_id, state.source_key)
        with self._lock:
            stored = self._back.get(key)
            if stored is not None and stored.revision != state.revision - 1:
                raise StaleWrite(f"back state of {state.source_key} was saved meanwhile")
            self._back[key] = state

    def remember_reach(self, connection_id: str, target_key: str, reached: Sequence[str]) -> None:
        key = (connection_id, target_key)
        with self._lock:
            self._reach[key] = self._reach.get(key, frozenset()).union(reached)

    def reach_of(self, connection_id: str, target_key: str) -> frozenset[str]:
        with self._lock:
            return self._reach.get((connection_id, target_key), frozenset())


class MemoryAuditLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, list[AuditEntry]] = {}

    def record(self, entry: AuditEntry) -> None:
        with self._lock:
            self._entries.setdefault(entry.connection_id, []).append(entry)

    def entries(self, connection_id: str, *, limit: int = 100) -> list[AuditEntry]:
        return self._newest(connection_id, limit, lambda entry: True)

    def history(self, connection_id: str, record_key: str, *, limit: int = 100) -> list[AuditEntry]:
        return self._newest(connection_id, limit, lambda entry: entry.record_key == record_key)

    def _newest(
        self, connection_id: str, limit: int, keep: Callable[[AuditEntry], bool]
    ) -> list[AuditEntry]:
        with self._lock:
            recorded = [e for e in reversed(self._entries.get(connection_id, [])) if keep(e)]
        # A stable sort of the reversed list: among equal stamps, the latest recorded first.
        return sorted(recorded, key=lambda e: utc(e.at), reverse=True)[:limit]


class MemoryCursorStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, int] = {}

    def get(self, name: str) -> int | None:
        with self._lock:
            return self._values.get(name)

    def put(self, name: str, value: int) -> None:
        """Only forward, like the DynamoDB store: a lower value is ignored."""
        with self._lock:
            if value > self._values.get(name, value - 1):
                self._values[name] = value


class MemoryCustomerDirectory:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._emails: dict[str, set[str]] = {}
        self._filled: dict[str, datetime] = {}

    def holds(self, connection_id: str, email: str) -> bool | None:
        with self._lock:
            if connection_id not in self._filled:
                return None
            return email in self._emails.get(connection_id, set())

    def add(self, connection_id: str, emails: Iterable[str]) -> None:
        with self._lock:
            self._emails.setdefault(connection_id, set()).update(emails)

    def filled_at(self, connection_id: str) -> datetime | None:
        with self._lock:
            return self._filled.get(connection_id)

    def mark_filled(self, connection_id: str, at: datetime) -> None:
        with self._lock:
            self._filled[connection_id] = at


class MemoryDriftStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reports: dict[str, DriftReport] = {}

    def latest(self, connection_id: str) -> DriftReport | None:
        with self._lock:
            return self._reports.get(connection_id)

    def save(self, report: DriftReport) -> None:
        with self._lock:
            self._reports[report.connection_id] = report


class MemoryConnections:
    def __init__(self, connections: Sequence[Connection] = ()) -> None:
        self._connections = {c.id: c for c in connections}

    def get(self, connection_id: str) -> Connection | None:
        return self._connections.get(connection_id)

    def all(self) -> list[Connection]:
        return [self._connections[key] for key in sorted(self._connections)]

    def put(self, connection: Connection) -> None:
        self._connections[connection.id] = connection


class MemoryDeferralCounter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def deferrals(self, message_id: str) -> int:
        with self._lock:
            return self._counts[message_id]

    def add_deferral(self, message_id: str) -> None:
        with self._lock:
            self._counts[message_id] += 1


class MemorySecretStore:
    def __init__(self, secrets: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self._lock = threading.Lock()
        self._secrets = {name: dict(value) for name, value in (secrets or {}).items()}

    def read(self, secret_id: str, *, fresh: bool = False) -> dict[str, str]:
        with self._lock:
            value = self._secrets.get(secret_id)
        if value is None:
            raise Retryable(f"secret {secret_id!r} could not be read: not found")
        return dict(value)

    def write(self, secret_id: str, value: Mapping[str, str]) -> None:
        with self._lock:
            self._secrets[secret_id] = dict(value)


@dataclass(frozen=True)
class _Lease:
    token: str
    expires_at: int


class MemoryLock(LeaseLock):
    def __init__(
        self,
        owner_id: str = "memory",
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        poll_s: float = 0.01,
    ) -> None:
        super().__init__(owner_id, clock=clock, sleep=sleep, poll_s=poll_s)
        self._lock = threading.Lock()
        self._leases: dict[str, _Lease] = {}

    def _take(self, name: str, token: str, *, now: float, expires_at: int) -> bool:
        with self._lock:
            lease = self._leases.get(name)
            if lease is not None and lease.expires_at >= now:
                return False
            self._leases[name] = _Lease(token, expires_at)
            return True

    def _release(self, name: str, token: str) -> bool:
        with self._lock:
            lease = self._leases.get(name)
            if lease is None or lease.token != token:
                return False
            del self._leases[name]
            return True


class MemorySlots:
    """Each lane's next free slot, as the Cursors table holds them for every worker."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.next_free: dict[str, int] = {}
        # Store round trips, as the Cursors table would count them.
        self.writes = 0  # reservations, made or refused
        self.reads = 0  # reads of every lane of a limit


class MemoryCallBudget(PacedBudget):
    """One worker's call budget. ``worker()`` gives another worker (another Lambda)
    over the same slots, with blocks of its own."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        margin: float = DEFAULT_PACING_MARGIN,
        slots: MemorySlots | None = None,
    ) -> None:
        super().__init__(clock=clock, margin=margin)
        self.slots = slots or MemorySlots()

    def worker(self) -> MemoryCallBudget:
        return MemoryCallBudget(clock=self._clock, margin=self.margin, slots=self.slots)

    def _reserve(
        self,
        bucket: str,
        *,
        earliest: int,
        count: int,
        accept_until: int,
        expires_at: int,
        hint: int | None,
    ) -> tuple[int, bool]:
        with self.slots.lock:
            self.slots.writes += 1
            stored = self.slots.next_free.get(bucket)
            start = earliest if stored is None else max(stored, earliest)
            if start > accept_until:
                return start, False
            self.slots.next_free[bucket] = start + count
            return start, True

    def _peek(self, buckets: list[str]) -> list[int | None]:
        with self.slots.lock:
            self.slots.reads += 1
            return [self.slots.next_free.get(bucket) for bucket in buckets]


# --- the queue ----------------------------------------------------------------------


@dataclass(frozen=True)
class QueuedMessage:
    """A message as SQS would describe it."""

    message_id: str
    body: str
    group_id: str
    dedup_id: str
    sent_at: float
    receive_count: int

    @property
    def event(self) -> ChangeEvent:
        return ChangeEvent.model_validate_json(self.body)


@dataclass(frozen=True)
class Received(QueuedMessage):
    """One delivery: ``receipt`` deletes it or changes its visibility until it is redelivered."""

    receipt: str


@dataclass(eq=False)
class _Message:
    message_id: str
    body: str
    group_id: str
    dedup_id: str
    sent_at: float
    receive_count: int = 0
    receipt: str | None = None  # set while in flight
    visible_at: float = 0.0

    def snapshot(self) -> QueuedMessage:
        return QueuedMessage(
            self.message_id,
            self.body,
            self.group_id,
            self.dedup_id,
            self.sent_at,
            self.receive_count,
        )


@dataclass(eq=False)
class MemoryQueue:
    """An at-least-once FIFO queue with SQS FIFO's semantics, in memory.

    * ``send`` drops an event whose dedup id was sent in the last ``dedup_window_s``.
    * Messages of one group are delivered in order, and not at all while one of the
      group's messages is in flight; different groups interleave (in a shuffled
      order when ``rng`` is given).
    * A message not deleted within its visibility timeout is delivered again with a
      higher ``receive_count``; once received ``max_receive_count`` times it moves to
      ``dead_letters`` instead.
    * A dead letter read by ``peek`` is hidden from the next reads for
      ``dead_letter_hide_s``, as SQS hides a received message.
    """

    visibility_timeout_s: float = 30.0
    max_receive_count: int | None = None
    dedup_window_s: float = 300.0
    clock: Callable[[], float] = time.monotonic
    rng: random.Random | None = None
    dead_letter_hide_s: float = 120.0
    dead_letters: list[QueuedMessage] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._letters_hidden_until: dict[str, float] = {}
        self._ids = itertools.count(1)
        self._groups: dict[str, deque[_Message]] = {}
        # Groups with messages and none in flight, in the order they became ready.
        self._ready: dict[str, None] = {}
        self._in_flight: dict[str, _Message] = {}  # receipt → message
        self._in_flight_per_group: Counter[str] = Counter()
        self._expiries: list[tuple[float, int, str]] = []  # heap of (visible_at, n, receipt)
        self._recent: dict[str, float] = {}  # dedup id → sent at, oldest first
        self._size = 0

    @classmethod
    def from_spec(
        cls,
        spec: QueueSpec,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> MemoryQueue:
        """A queue configured like the deployed one."""
        return cls(
            visibility_timeout_s=spec.visibility_timeout_s,
            max_receive_count=spec.max_receive_count,
            clock=clock,
            rng=rng,
        )

    def __len__(self) -> int:
        """Messages not yet deleted nor dead-lettered, in flight or waiting."""
        with self._lock:
            self._release_expired(self.clock())
            return self._size

    def send(self, events: Sequence[ChangeEvent]) -> None:
        bodies = [message_body(event) for event in events]
        with self._lock:
            now = self.clock()
            self._forget_old_dedup_ids(now)
            for event, body in zip(events, bodies, strict=True):
                if event.dedup_id in self._recent:
                    continue
                self._recent[event.dedup_id] = now
                self._enqueue(
                    _Message(f"m{next(self._ids)}", body, event.message_group, event.dedup_id, now)
                )

    def receive(
        self, max_messages: int = 10, visibility_timeout_s: float | None = None
    ) -> list[Received]:
        timeout = visibility_timeout_s
        if timeout is None:
            timeout = self.visibility_timeout_s
        received: list[Received] = []
        with self._lock:
            now = self.clock()
            self._release_expired(now)
            while self._ready and len(received) < max_messages:
                group = self.rng.choice(list(self._ready)) if self.rng else next(iter(self._ready))
                del self._ready[group]
                # A ready group has nothing in flight: its messages go out from the head.
                for message in itertools.islice(self._groups[group], max_messages - len(received)):
                    received.append(self._deliver(message, now, timeout))
        return received

    def delete(self, receipt: str) -> bool:
        """False when the receipt is stale: the message became visible again or is gone."""
        with self._lock:
            self._release_expired(self.clock())
            message = self._in_flight.pop(receipt, None)
            if message is None:
                return False
            self._remove(message)
            return True

    def change_visibility(self, receipt: str, seconds: float) -> bool:
        """Delay redelivery (0 = now, like SQS); False when the receipt is stale."""
        with self._lock:
            now = self.clock()
            self._release_expired(now)
            message = self._in_flight.get(receipt)
            if message is None:
                return False
            if seconds <= 0:
                self._make_visible(message)
            else:
                message.visible_at = now + seconds
                heapq.heappush(self._expiries, (message.visible_at, next(self._ids), receipt))
            return True

    def defer(self, receipt: str, seconds: float) -> None:
        self.change_visibility(receipt, seconds)

    def dead_letter(self, event: ChangeEvent, *, message_id: str) -> None:
        with self._lock:
            self.dead_letters.append(
                QueuedMessage(
                    message_id,
                    message_body(event),
                    event.message_group,
                    event.dedup_id,
                    self.clock(),
                    receive_count=0,
                )
            )

    def peek(self, max_messages: int) -> list[DeadLetter]:
        """The dead letters not hidden by an earlier read, as ``DeadLetters`` reads them
        (receipt: the message id); each is hidden from the next reads for a while."""
        with self._lock:
            now = self.clock()
            visible = [
                letter
                for letter in self.dead_letters
                if self._letters_hidden_until.get(letter.message_id, now) <= now
            ][:max_messages]
            for letter in visible:
                self._letters_hidden_until[letter.message_id] = now + self.dead_letter_hide_s
            return [DeadLetter(receipt=letter.message_id, event=letter.event) for letter in visible]

    def discard(self, letter: DeadLetter) -> None:
        with self._lock:
            self.dead_letters = [m for m in self.dead_letters if m.message_id != letter.receipt]

    def redrive(self) -> int:
        """Send the dead letters back to the queue, like SQS's DLQ redrive; returns how many."""
        with self._lock:
            letters, self.dead_letters = self.dead_letters, []
            for letter in letters:
                self._enqueue(
                    _Message(
                        letter.message_id,
                        letter.body,
                        letter.group_id,
                        letter.dedup_id,
                        self.clock(),
                    )
                )
            return len(letters)

    # --- internals; the caller holds self._lock ----------------------------------

    def _enqueue(self, message: _Message) -> None:
        self._groups.setdefault(message.group_id, deque()).append(message)
        self._size += 1
        if not self._in_flight_per_group[message.group_id]:
            self._ready[message.group_id] = None

    def _deliver(self, message: _Message, now: float, timeout: float) -> Received:
        message.receive_count += 1
        # A fresh receipt per delivery, so a stale one can never touch the redelivery.
        receipt = f"{message.message_id}.{next(self._ids)}"
        message.receipt = receipt
        message.visible_at = now + timeout
        self._in_flight[receipt] = message
        self._in_flight_per_group[message.group_id] += 1
        heapq.heappush(self._expiries, (message.visible_at, next(self._ids), receipt))
        return Received(**vars(message.snapshot()), receipt=receipt)

    def _release_expired(self, now: float) -> None:
        while self._expiries and self._expiries[0][0] <= now:
            visible_at, _, receipt = heapq.heappop(self._expiries)
            message = self._in_flight.get(receipt)
            # Entries left behind by a delete or a visibility change are skipped.
            if message is not None and message.visible_at == visible_at:
                self._make_visible(message)

    def _make_visible(self, message: _Message) -> None:
        assert message.receipt is not None
        del self._in_flight[message.receipt]
        message.receipt = None
        if self.max_receive_count is not None and message.receive_count >= self.max_receive_count:
            self.dead_letters.append(message.snapshot())
            self._remove(message)
        else:
            self._settle(message.group_id)

    def _remove(self, message: _Message) -> None:
        group = self._groups[message.group_id]
        group.remove(message)
        self._size -= 1
        if not group:
            del self._groups[message.group_id]
        self._settle(message.group_id)

    def _settle(self, group_id: str) -> None:
        """A message of the group left flight: the group is ready once none is in flight."""
        self._in_flight_per_group[group_id] -= 1
        if self._in_flight_per_group[group_id] <= 0:
            del self._in_flight_per_group[group_id]
            if group_id in self._groups:
                self._ready[group_id] = None

    def _forget_old_dedup_ids(self, now: float) -> None:
        while self._recent:
            dedup_id, sent_at = next(iter(self._recent.items()))
            if now - sent_at < self.dedup_window_s:
                return
            del self._recent[dedup_id]
