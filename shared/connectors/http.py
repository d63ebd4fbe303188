"""The HTTP machinery every connector shares.

A connector *declares* its base URL, authenticator, call limits and how to read
its vendor's responses (a ``classify`` function, as in Airbyte's ResponseAction
table); ``ApiClient`` does the calling: it takes a slot from the shared call
budget before each request, retries transient failures with jittered
exponential backoff, waits out short rate limits (``Retry-After`` when the
vendor sends one) and turns everything else into the errors of
``shared.errors`` so the sync engine knows what to do next.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

import httpx

from shared.errors import AuthFailed, NotFound, Permanent, RateLimited, Retryable
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
    """A documented vendor limit, e.g. QuickBooks' 500 requests per minute per realm."""

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
    ) -> None:
        self.vendor = vendor
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
            try:
                response = self._http.request(
                    method, path, params=params, json=json, content=content, headers=headers
                )
            except httpx.TransportError as exc:  # timeouts, resets, refused connections
                last_error = Retryable(f"{self.vendor} {method} {path}: {type(exc).__name__}")
                self._sleep(self._retry.backoff(attempt))
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
                wait = verdict.retry_after_s
                if wait is None:
                    wait = retry_after_seconds(response) or self._retry.backoff(attempt)
                if wait > self._retry.max_inline_wait_s:
                    raise RateLimited(message, retry_after_s=wait)
                last_error = RateLimited(message, retry_after_s=wait)
                self._sleep(wait)
                continue
            last_error = Retryable(message, status=response.status_code, code=verdict.code)
            self._sleep(self._retry.backoff(attempt))
        assert last_error is not None
        raise last_error

    def _take_budget(self) -> None:
        """Reserve a slot in every declared limit; a long wait goes back to the queue."""
        longest = self._retry.max_inline_wait_s
        for limit in self._limits:
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
