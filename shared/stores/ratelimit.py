"""Call budgets shared by every Lambda of a connection: calls paced, slots leased in blocks.

Vendors count their limits over a rolling window ("500 requests per minute per
company"). A fixed-window counter lets twice the limit through across a window
boundary, so calls are instead *paced* on a grid of slots ``interval = per_s /
limit * margin`` apart: slot ``g`` is at ``g * interval`` seconds since the epoch,
and each slot is used by at most one call, made no earlier than the slot's time
and at most ``late_s`` after it. (A limit slower than ``LANE_S`` has one lane and
needs no common grid: its slots are counted in millionths of an interval, so a
block starts whenever the lane is free.) Any rolling window of ``per_s`` seconds then
holds the calls of slots in a span of ``per_s + late_s`` seconds, at most
``ceil((per_s + late_s) / interval)`` of them, which is at most ``limit`` because
``late_s`` is at most half of what the margin leaves (``per_s * (margin - 1)``);
the other half absorbs network jitter between our clock and the vendor's.

**Blocks, so a call costs no store round trip.** A worker (one Lambda process)
does not reserve one slot per call: it reserves a *block* of the next ``k`` slots
with one conditional write and then hands them out locally. A vendor call takes
~0.25 s, longer than the interval between slots (0.12 s at 500/min), so a block
of consecutive slots would run ahead of its worker and expire unused. The grid is
therefore dealt into ``lanes``: lane ``j`` holds the slots ``g ≡ j (mod lanes)``,
``lanes`` chosen so a lane's slots are about ``LANE_S`` apart, longer than a call.
Each lane is its own stored item holding its next free slot; a block is ``k``
consecutive slots of one lane. A worker keeps to the lane it had (one write a
block), takes another lane that is idle when it calls faster than its lane, and
when its lane was taken reads every lane (one read) and queues behind the one that
frees first (one write). So ``lanes`` busy workers fill the quota with a round trip
a block instead of two a call; fewer busy workers than lanes leave lanes unused.

**Unused slots are quota not used.** A slot not used within ``late_s`` expires,
and the last block of a worker that stops expires with it. Blocks therefore start
at one slot and double while they are used up, shrink to what was used when
slots expire, span at most ``BLOCK_S`` seconds and never reach past the caller's
``max_wait_s``. Except after a pause: a worker back from idling longer than a block
(events seconds apart, a call or two each) takes a whole block in the lane whose
first slot comes soonest, so the calls of its next burst cost one write, not one
each; what it leaves unused is quota nobody was asking for a moment ago. A slot
further away than the caller is willing to wait is not reserved, so nothing is
wasted when the message goes back to the queue instead.

A change of margin changes the grid: its lanes are stored under new keys.
"""

from __future__ import annotations

import math
import random
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

# Slots are spaced 2 % further apart than the limit allows: half of that slack lets
# a worker use a slot a little late, half covers network jitter. 98 % of the quota
# is the ceiling. ``Settings.call_pacing_margin`` overrides it.
DEFAULT_PACING_MARGIN = 1.02
# The least: a wait under _ROUNDING_S is not slept, and the slack must absorb it.
MIN_PACING_MARGIN = 1.001
# A lane's slots are about this far apart: more than a vendor call takes (~0.25 s),
# so one worker keeps up with its lane and its block's slots do not expire.
LANE_S = 0.4
# Lanes of one limit at most (all are read in one request when every lane is taken).
MAX_LANES = 16
# A block spans at most this long: the slots a stopping worker can leave unused.
BLOCK_S = 2.0
# Leases tried in one acquire before a store slower than the slots gives up (deferral).
_LEASE_TRIES = 3
# A refusal always asks for a wait longer than the caller's maximum.
_MIN_EXCESS_S = 0.001
# A wait this short is rounding (far below any network's jitter), not a wait.
_ROUNDING_S = 1e-4


@dataclass(frozen=True)
class Pace:
    """The slot grid of one limit at one margin."""

    limit: int
    per_s: float
    margin: float

    @property
    def interval(self) -> float:
        return self.per_s / self.limit * self.margin

    @property
    def lanes(self) -> int:
        return min(max(1, round(LANE_S / self.interval)), MAX_LANES)

    @property
    def late_s(self) -> float:
        """How late a slot may still be used: half the margin's slack, and at most half
        an interval, so any window of any length holds at most one call more than its
        share of the pace. A per-second limit under a per-minute one (500/min with
        10/s: pacing leaves at most 9 in any second) is still met without a budget
        of its own."""
        return min(self.per_s * (self.margin - 1) / 2, self.interval / 2)

    @property
    def max_block(self) -> int:
        return max(1, int(BLOCK_S / (self.interval * self.lanes)))

    @property
    def fine(self) -> int:
        """Slots are counted in units of ``interval / fine``. Lanes share the grid of
        whole intervals; a limit with one lane needs no grid, so its blocks start
        whenever the lane is free (finely), not at the next whole interval."""
        return 1 if self.lanes > 1 else 1_000_000

    @property
    def stride(self) -> int:
        """Units between two slots of a lane."""
        return self.lanes * self.fine

    def time_of(self, slot: int) -> float:
        return slot * self.interval / self.fine

    def first_slot(self, now: float) -> int:
        """The first unit at which a slot can still be used at ``now``: on the grid, a
        slot up to ``late_s`` past; without one, now."""
        at = now - self.late_s if self.lanes > 1 else now
        return math.ceil(at * self.fine / self.interval)

    def last_slot(self, at: float) -> int:
        """The last unit at or before ``at``."""
        return math.floor(at * self.fine / self.interval)

    def first_in_lane(self, lane: int, unit: int) -> int:
        """The first slot of ``lane`` at or after ``unit``."""
        if self.lanes == 1:
            return unit
        return unit + (lane - unit) % self.lanes


@dataclass
class _Block:
    """``size`` consecutive slots of one lane: ``next``, ``next + stride``, … below ``end``."""

    lane: int
    next: int
    end: int
    size: int
    stride: int
    used: int = 0
    expired: int = 0


@dataclass
class _Lease:
    """One worker's view of one limit: the blocks it holds and what it knows of the lanes."""

    lane: int  # the lane tried first: the one last held
    size: int = 1  # slots in the next block
    blocks: list[_Block] = field(default_factory=list)
    known: dict[int, int] = field(default_factory=dict)  # lane -> its next free slot, as last seen
    refused_at: int | None = None  # the slot a refused reservation would have had
    last_call: float | None = None  # when the last slot handed out is used
    cadence: float | None = None  # seconds from a call to the next acquire, smoothed
    contended: bool = False  # its last block was not in an idle lane
    no_expansion_until: float = 0.0
    round_trip_s: float = 0.0  # how long its last lease took the store to answer


class PacedBudget(ABC):
    """The pacing and leasing arithmetic; subclasses store each lane's next free slot.

    One instance is one worker: its blocks are its own, shared by its threads.
    """

    def __init__(
        self, *, clock: Callable[[], float] = time.time, margin: float = DEFAULT_PACING_MARGIN
    ) -> None:
        if margin < MIN_PACING_MARGIN:
            raise ValueError(
                f"a pacing margin under {MIN_PACING_MARGIN} ({margin}) leaves no room for a "
                "call made a rounding early or a network's jitter: it could exceed the limit"
            )
        # Wall-clock time: slots are shared by processes on different hosts.
        self._clock = clock
        self.margin = margin
        self._leases_lock = threading.Lock()
        self._leases: dict[str, _Lease] = {}

    def acquire(self, key: str, *, limit: int, per_s: float, max_wait_s: float) -> float:
        pace = Pace(limit, per_s, self.margin)
        bucket = f"rate#{key}#{limit}/{per_s:g}s"
        with self._leases_lock:
            lease = self._leases.get(bucket)
            if lease is None:
                lease = self._leases[bucket] = _Lease(lane=random.randrange(pace.lanes))
            now = self._clock()
            _expire(lease, pace, now)
            _observe_cadence(lease, pace, now)
            slot = _earliest(lease)
            for _ in range(_LEASE_TRIES):
                if slot is not None and not _keeps_up_with_more(
                    lease, pace, pace.time_of(slot) - now
                ):
                    break
                # Slots from when the store will have answered, as long as it last took.
                started = now
                self._lease_block(bucket, lease, pace, now + lease.round_trip_s, max_wait_s)
                # The round trip took time: the wait counts from its end, and a slot it
                # made late (a slow write, a throttled retry) is not used.
                now = self._clock()
                lease.round_trip_s = now - started
                _expire(lease, pace, now)
                slot = _earliest(lease)
                if slot is not None or lease.refused_at is not None:
                    break
            if slot is None:
                if lease.refused_at is None:  # every block lapsed in a slow round trip
                    return max_wait_s + _MIN_EXCESS_S
                wait = pace.time_of(lease.refused_at) - now
                return max(wait, max_wait_s + _MIN_EXCESS_S)
            wait = pace.time_of(slot) - now
            wait = wait if wait > _ROUNDING_S else 0.0
            if wait > max_wait_s:
                return max(wait, max_wait_s + _MIN_EXCESS_S)
            _take(lease, pace, slot)
            lease.last_call = now + wait
            return wait

    def _lease_block(
        self, bucket: str, lease: _Lease, pace: Pace, now: float, max_wait_s: float
    ) -> None:
        """Reserve a block in an idle lane, else (holding nothing) behind the lane that
        frees first; adds it to ``lease.blocks`` or sets ``lease.refused_at``."""
        first, latest = pace.first_slot(now), pace.last_slot(now + max_wait_s + _ROUNDING_S)
        lease.refused_at = None
        held = {block.lane for block in lease.blocks}
        lanes = [
            (lease.lane + i) % pace.lanes
            for i in range(pace.lanes)
            if (lease.lane + i) % pace.lanes not in held
        ]
        # Back from idling longer than a block, a worker holds no lane and takes a whole
        # block: at a sparse pace (a call or two an event, events seconds apart) blocks
        # sized by use would be one slot each, a store write a call.
        back = lease.last_call is not None and now - lease.last_call > BLOCK_S
        wanted = pace.max_block if back else lease.size
        size = max(1, min(wanted, pace.max_block, (latest - first) // pace.stride + 1))
        count = size * pace.stride
        expires_at = math.ceil(pace.time_of(max(latest, first) + count) + pace.per_s)

        def believed_free(lane: int) -> int:
            return max(lease.known.get(lane, 0), pace.first_in_lane(lane, first))

        def attempt(lane: int, accept_until: int) -> bool:
            earliest = pace.first_in_lane(lane, first)
            return self._try(bucket, lease, pace, lane, earliest, accept_until, size, expires_at)

        if lease.blocks:
            # One more lane for a worker ahead of its own: an idle one only, one try,
            # and none for a while after a lane it thought idle was taken.
            idle = [
                lane for lane in lanes if believed_free(lane) == pace.first_in_lane(lane, first)
            ]
            if (
                idle
                and now >= lease.no_expansion_until
                and not attempt(idle[0], pace.first_in_lane(idle[0], first))
            ):
                lease.no_expansion_until = now + BLOCK_S
            return
        if not lanes:
            return
        if pace.lanes > 1:
            # Its own lane, idle as this worker left it: one write; back from idling, the
            # lane whose first slot comes soonest.
            mine = min(lanes, key=believed_free) if back else lanes[0]
            if not lease.contended and attempt(mine, pace.first_in_lane(mine, first)):
                return
            # Taken: learn where every lane stands (one read) and queue where it frees first.
            stored = self._peek([_lane_key(bucket, lane, pace) for lane in lanes])
            for lane, value in zip(lanes, stored, strict=True):
                lease.known[lane] = 0 if value is None else value
        attempt(min(lanes, key=believed_free), latest)

    def _try(
        self,
        bucket: str,
        lease: _Lease,
        pace: Pace,
        lane: int,
        earliest: int,
        accept_until: int,
        size: int,
        expires_at: int,
    ) -> bool:
        count = size * pace.stride
        start, reserved = self._reserve(
            _lane_key(bucket, lane, pace),
            earliest=earliest,
            count=count,
            accept_until=accept_until,
            expires_at=expires_at,
            hint=lease.known.get(lane),
        )
        if not reserved:
            lease.known[lane] = start
            lease.contended = True
            lease.refused_at = start if lease.refused_at is None else min(lease.refused_at, start)
            return False
        lease.known[lane] = start + count
        lease.lane = lane
        lease.contended = start > earliest
        lease.refused_at = None
        lease.blocks.append(_Block(lane, start, start + count, size, pace.stride))
        return True

    @abstractmethod
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
        """Atomically: ``start = max(stored next free slot, earliest)`` (``earliest`` when
        new); if ``start <= accept_until``, store ``start + count`` and return
        ``(start, True)``, else store nothing and return ``(start, False)``.

        ``hint`` is the next free slot this worker last saw (a guess, may be stale).
        """

    @abstractmethod
    def _peek(self, buckets: list[str]) -> list[int | None]:
        """Each bucket's next free slot (None when new), read consistently in one go."""


def _lane_key(bucket: str, lane: int, pace: Pace) -> str:
    return f"{bucket}#{lane}/{pace.lanes}@{pace.interval * 1e6:.0f}us"


def _observe_cadence(lease: _Lease, pace: Pace, now: float) -> None:
    """Smooth the time this worker takes between calls; a pause longer than a block
    is idleness, not cadence."""
    if lease.last_call is None:
        return
    sample = now - lease.last_call
    if 0 <= sample <= BLOCK_S:
        lease.cadence = sample if lease.cadence is None else 0.75 * lease.cadence + 0.25 * sample


def _keeps_up_with_more(lease: _Lease, pace: Pace, wait: float) -> bool:
    """Whether a worker that must wait ``wait`` for its next slot would use the slots of
    one more lane: it is ahead of its lanes by more than an interval, and calls often
    enough to use every slot of one lane more (else they would expire unused)."""
    if wait <= pace.interval or lease.cadence is None:
        return False
    lanes_held = len({block.lane for block in lease.blocks})
    return lease.cadence * (lanes_held + 1) <= pace.interval * pace.lanes


def _expire(lease: _Lease, pace: Pace, now: float) -> None:
    """Drop the slots too late to use; a block used up or expired sizes the next one."""
    for block in list(lease.blocks):
        while block.next < block.end and pace.time_of(block.next) + pace.late_s < now:
            block.next += block.stride
            block.expired += 1
        if block.next >= block.end:
            _retire(lease, block, pace)


def _earliest(lease: _Lease) -> int | None:
    return min((block.next for block in lease.blocks), default=None)


def _take(lease: _Lease, pace: Pace, slot: int) -> None:
    block = next(block for block in lease.blocks if block.next == slot)
    block.next += block.stride
    block.used += 1
    if block.next >= block.end:
        _retire(lease, block, pace)


def _retire(lease: _Lease, block: _Block, pace: Pace) -> None:
    lease.blocks.remove(block)
    lease.size = min(_next_size(lease.size, block), pace.max_block)


def _next_size(size: int, block: _Block) -> int:
    """Double while blocks are used up; after slots expired, what was used."""
    if block.expired:
        return max(1, block.used)
    return max(size, block.size * 2)


class DynamoCallBudget(PacedBudget):
    """``CallBudget`` on the Cursors table: one item per lane,
    pk ``rate#{key}#{limit}/{per_s}s#{lane}/{lanes}@{interval}us``, attribute
    ``next_slot``. One round trip per block when the lane is as this worker last saw
    it (its own lane, or an idle one), two when it guessed wrong."""

    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        *,
        clock: Callable[[], float] = time.time,
        margin: float = DEFAULT_PACING_MARGIN,
    ) -> None:
        super().__init__(clock=clock, margin=margin)
        self._client = client
        self._table = table_name

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
        if earliest > accept_until:  # as MemoryCallBudget: nothing reserved past the limit
            return earliest, False
        idle = hint is None or hint <= earliest
        while True:
            if idle:  # no slot of the lane is reserved from ``earliest`` on: start there
                done, stored = self._write(
                    bucket,
                    "SET next_slot = :next, expires_at = :expires",
                    "attribute_not_exists(pk) OR next_slot <= :earliest",
                    {":next": earliest + count, ":earliest": earliest, ":expires": expires_at},
                )
                if done:
                    return earliest, True
            else:  # the lane is taken up to some slot: extend it, if that is soon enough
                done, stored = self._write(
                    bucket,
                    "SET next_slot = next_slot + :count, expires_at = :expires",
                    "next_slot BETWEEN :earliest AND :until",
                    {
                        ":count": count,
                        ":earliest": earliest,
                        ":until": accept_until,
                        ":expires": expires_at,
                    },
                )
                if done:
                    assert stored is not None
                    return stored - count, True
            # The condition failed: ``stored`` is the lane's next free slot now, None
            # when there is no item. A refused claim means there is one: read it if
            # the failure did not carry it.
            if stored is None and idle:
                (stored,) = self._peek([bucket])
            if stored is None or stored <= earliest:
                idle = True
            elif stored > accept_until:
                return stored, False
            else:
                idle = False

    def _peek(self, buckets: list[str]) -> list[int | None]:
        answer = self._client.batch_get_item(
            RequestItems={
                self._table: {
                    "Keys": [{"pk": {"S": bucket}} for bucket in buckets],
                    "ConsistentRead": True,
                    "ProjectionExpression": "pk, next_slot",
                }
            }
        )
        # Unprocessed keys (throttling) read as unknown: the write that follows is
        # conditional either way.
        found = {
            item["pk"]["S"]: int(item["next_slot"]["N"])
            for item in answer["Responses"].get(self._table, [])
            if "next_slot" in item
        }
        return [found.get(bucket) for bucket in buckets]

    def _write(
        self, bucket: str, update: str, condition: str, values: dict[str, int]
    ) -> tuple[bool, int | None]:
        """One conditional update: whether it was made, and ``next_slot`` after it (when
        made) or as stored (when refused; None when the lane has no item)."""
        attributes: dict[str, AttributeValueTypeDef] = {
            name: {"N": str(value)} for name, value in values.items()
        }
        try:
            answer = self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": bucket}},
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeValues=attributes,
                ReturnValues="UPDATED_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except self._client.exceptions.ConditionalCheckFailedException as exc:
            item: Any = exc.response.get("Item") or {}
            if "next_slot" not in item:
                return False, None
            return False, int(item["next_slot"]["N"])
        return True, int(answer["Attributes"]["next_slot"]["N"])

    def lanes(self) -> list[LaneReading]:
        """Every lane stored in the table, read-only (``crmsync status``)."""
        readings = []
        for page in self._client.get_paginator("scan").paginate(
            TableName=self._table,
            FilterExpression="begins_with(pk, :rate)",
            ExpressionAttributeValues={":rate": {"S": "rate#"}},
            ProjectionExpression="pk, next_slot",
            ConsistentRead=True,
        ):
            for item in page["Items"]:
                reading = LaneReading.parse(item["pk"]["S"], int(item["next_slot"]["N"]))
                if reading is not None:
                    readings.append(reading)
        return readings


_LANE_KEY = re.compile(
    r"rate#(?P<key>.+)#(?P<limit>\d+)/(?P<per_s>[^/#]+)s"
    r"#(?P<lane>\d+)/(?P<lanes>\d+)@(?P<interval_us>\d+)us"
)


@dataclass(frozen=True)
class LaneReading:
    """One stored lane (``_lane_key``): the budget key and limit it paces, its next free slot."""

    key: str
    pace: Pace
    lane: int
    next_slot: int

    @classmethod
    def parse(cls, pk: str, next_slot: int) -> LaneReading | None:
        """The lane a stored key names; None for a key of another shape."""
        match = _LANE_KEY.fullmatch(pk)
        if match is None:
            return None
        limit, per_s = int(match["limit"]), float(match["per_s"])
        # The key's interval, in whole microseconds, is too coarse to place a slot in
        # time (slots count from the epoch); the margin it came from has few decimals,
        # and the key it gives back must be the stored one.
        margin = round(int(match["interval_us"]) * 1e-6 * limit / per_s, 4)
        pace = Pace(limit, per_s, margin)
        lane = int(match["lane"])
        if _lane_key(f"rate#{match['key']}#{limit}/{per_s:g}s", lane, pace) != pk:
            return None
        return cls(match["key"], pace, lane, next_slot)
