"""The HTTP machinery every connector shares.

A connector *declares* its base URL, authenticator, call limits and how to read
its vendor's responses (a ``classify`` function, as in Airbyte's ResponseAction
table); ``ApiClient`` does the calling: it takes a slot from the shared call
budget before each request, retries transient failures with jittered
exponential backoff, waits out short rate limits (``Retry-After`` when the
vendor sends one) and turns everything else into the errors of
``shared.errors`` so the sync engine knows what to do next. It counts every attempt
(``VendorCalls``) and every rate-limited answer (``RateLimited``) by vendor.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

import httpx
from aws_lambda_powertools.metrics import MetricUnit

from shared.errors import AuthFailed, NotFound, OutOfTime, Permanent, RateLimited, Retryable
from shared.observability import RATE_LIMITED, VENDOR, VENDOR_CALLS, metric_sets
from shared.ports import CallBudget

T = TypeVar("T")


class ResponseAction(StrEnum):
    SUCCESS = "success"
    RETRY = "retry"  # transient: try again after a backoff
    RATE_LIMITED = "rate_limited"  # wait (Retry-After if given), then try again
    NOT_FOUND = "not_found"
    AUTH_FAILED = "auth_failed"  # credentials refused: a person must re-authorize
    FAIL = "fail"  # permanent: retrying will not help


@dataclass(frozen=True)
class Classified:
    action: ResponseAction
    message: str = ""
    code: str | None = None
    retry_after_s: float | None = None


@dataclass(frozen=True)
class CallLimit:
    """A documented vendor limit, e.g. 500 requests per minute per company."""

    limit: int
    per_s: float


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 20.0
    # A rate-limit wait longer than this is not slept inside a Lambda: the message
    # goes back to the queue and comes back after the wait instead.
    max_inline_wait_s: float = 20.0

    def backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff for the given 1-based attempt."""
        return random.uniform(0, min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1)))


def retry_after_seconds(response: httpx.Response) -> float | None:
    """``Retry-After`` as seconds (delta form; the HTTP-date form is rare from APIs)."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None


class Deadline:
    """The time left in the current invocation, shared by every connector of a process.

    A Lambda is stopped at its timeout wherever it is, so no call, retry or wait may
    start that cannot end before it. The handler starts it with the invocation's
    remaining time; unstarted (tests, tools) it never runs out.
    """

    def __init__(
        self, *, reserve_s: float = 5.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.reserve_s = reserve_s  # kept back to audit, link and answer after the last call
        self._clock = clock
        self._ends_at = math.inf

    def start(self, remaining_s: float) -> None:
        self._ends_at = self._clock() + remaining_s

    def left(self) -> float:
        """Seconds still usable for vendor calls and waits."""
        return self._ends_at - self.reserve_s - self._clock()


# A call needs at least this long to be worth starting.
MIN_CALL_S = 1.0


class ApiClient:
    """One vendor API, as a connector declared it."""

    def __init__(
        self,
        *,
        vendor: str,
        base_url: str,
        auth: httpx.Auth,
        classify: Callable[[httpx.Response], Classified],
        limits: Sequence[CallLimit],
        budget: CallBudget,
        budget_key: str,
        retry: RetryPolicy | None = None,
        timeout_s: float = 15.0,
        headers: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
        deadline: Deadline | None = None,
    ) -> None:
        self.vendor = vendor
        self._timeout_s = timeout_s
        self._deadline = deadline or Deadline()
        self._classify = classify
        self._limits = limits
        self._budget = budget
        self._budget_key = budget_key
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=base_url,
            auth=auth,
            timeout=timeout_s,
            headers={"Accept": "application/json", "User-Agent": "crmsync/0.1", **(headers or {})},
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: str | bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send one logical request; returns the successful response or raises.

        Raises ``NotFound``, ``AuthFailed``, ``Permanent`` (with the vendor's code), ``RateLimited``
        (wait longer than ``max_inline_wait_s``) or ``Retryable`` (attempts used up).
        """
        last_error: Retryable | None = None
        for attempt in range(1, self._retry.max_attempts + 1):
            self._take_budget()
            self._count(VENDOR_CALLS)  # each attempt spends a slot of the vendor's limit
            try:
                response = self._http.request(
                    method,
                    path,
                    params=params,
                    json=json,
                    content=content,
                    headers=headers,
                    timeout=self._call_timeout(method, path),
                )
            except httpx.TransportError as exc:  # timeouts, resets, refused connections
                last_error = Retryable(f"{self.vendor} {method} {path}: {type(exc).__name__}")
                self._wait(self._retry.backoff(attempt), last_error)
                continue
            verdict = self._classify(response)
            if verdict.action is ResponseAction.SUCCESS:
                return response
            message = f"{self.vendor} {method} {path} → {response.status_code}: {verdict.message}"
            if verdict.action is ResponseAction.NOT_FOUND:
                raise NotFound(message, status=response.status_code, code=verdict.code)
            if verdict.action is ResponseAction.AUTH_FAILED:
                raise AuthFailed(message, status=response.status_code, code=verdict.code)
            if verdict.action is ResponseAction.FAIL:
                raise Permanent(message, status=response.status_code, code=verdict.code)
            if verdict.action is ResponseAction.RATE_LIMITED:
                self._count(RATE_LIMITED)
                wait = verdict.retry_after_s
                if wait is None:
                    wait = retry_after_seconds(response) or self._retry.backoff(attempt)
                if wait > self._inline_wait_limit():
                    raise RateLimited(message, retry_after_s=wait)
                last_error = RateLimited(message, retry_after_s=wait)
                self._sleep(wait)
                continue
            last_error = Retryable(message, status=response.status_code, code=verdict.code)
            self._wait(self._retry.backoff(attempt), last_error)
        assert last_error is not None
        raise last_error

    def _count(self, metric: str) -> None:
        metric_sets.add(metric, MetricUnit.Count, 1, {VENDOR: self.vendor})

    def _call_timeout(self, method: str, path: str) -> float:
        """The declared timeout, cut to the invocation's time left; too little left
        to make the call at all is ``OutOfTime``."""
        left = self._deadline.left()
        if left < MIN_CALL_S:
            raise OutOfTime(f"{self.vendor} {method} {path}: the invocation is out of time")
        return min(self._timeout_s, left)

    def _wait(self, seconds: float, error: Retryable) -> None:
        """Back off before a retry, unless the retry could not finish in time: then the
        error stands now and the queue brings the message back."""
        if seconds + MIN_CALL_S > self._deadline.left():
            raise error
        self._sleep(seconds)

    def _inline_wait_limit(self) -> float:
        """The longest rate-limit wait slept here; a longer one goes back to the queue."""
        return min(self._retry.max_inline_wait_s, self._deadline.left() - MIN_CALL_S)

    def _take_budget(self) -> None:
        """Reserve a slot in every declared limit; a long wait goes back to the queue.

        A slot taken first is used late by the waits taken after it. The longest window
        goes first, then the slowest pace (its own long wait is slept before the next
        limit is asked); a long wait on a later limit can still make an earlier slot late
        by more than the budget allows, and the vendor's 429 then defers the message."""
        longest = max(self._inline_wait_limit(), 0.0)
        for limit in sorted(self._limits, key=lambda x: (x.per_s, x.per_s / x.limit), reverse=True):
            # The budget keys each limit by its own rate: one key serves them all.
            wait = self._budget.acquire(
                self._budget_key, limit=limit.limit, per_s=limit.per_s, max_wait_s=longest
            )
            if wait > longest:
                raise RateLimited(f"{self.vendor} call budget exhausted", retry_after_s=wait)
            if wait:
                self._sleep(wait)


def paginate(fetch_page: Callable[[str | None], tuple[list[T], str | None]]) -> Iterator[T]:
    """Yield every item of a cursor- or offset-paginated listing.

    ``fetch_page(cursor)`` returns the page's items and the next cursor (None at
    the end); the first call gets ``None``.
    """
    cursor: str | None = None
    while True:
        items, cursor = fetch_page(cursor)
        yield from items
        if cursor is None:
            return


def bounded_key(idempotency_key: str, limit: int) -> str:
    """An idempotency key a vendor takes: itself when short enough, else a prefix of its
    SHA-256 hex digest. Deterministic, so the retry of a write sends the first one's key."""
    if len(idempotency_key) <= limit:
        return idempotency_key
    return hashlib.sha256(idempotency_key.encode()).hexdigest()[:limit]


def json_object(response: httpx.Response, vendor: str) -> dict[str, Any]:
    """A success's body, which must be a JSON object.

    A 2xx that is not (an HTML page from a proxy or captive portal) is transient from
    here: the message comes back later rather than failing for good.
    """
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        kind = response.headers.get("content-type", "no content type")
        raise Retryable(
            f"{vendor}: unexpected response, not a JSON object "
            f"(HTTP {response.status_code}, {kind})",
            status=response.status_code,
        )
    return body
