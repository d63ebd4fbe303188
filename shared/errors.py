"""Errors the core understands, by what should happen next.

* ``WebhookRejected`` → a 4xx with a short reason (logged only, for a vendor that wants
  no body), nothing enqueued.
* ``RecordInvalid`` → audited with field and rule, not retried.
* ``Retryable`` → the message is retried, and dead-lettered after a few failures.
* ``RateLimited`` / ``OutOfTime`` → the message comes back after the wait; not a failure.
* ``Permanent`` → the vendor refused the record for good; audited once, not retried.
* ``AuthFailed`` → credentials refused; retried, then dead-lettered for a person.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.ports import TargetRef


class CrmSyncError(Exception):
    """Base of every error this package raises on purpose."""


class WebhookRejected(CrmSyncError):
    def __init__(self, status: int, reason: str, *, empty_answer: bool = False) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        # For a vendor that counts an answer with a body as a failed delivery or
        # validation: the reason is logged only.
        self.empty_answer = empty_answer


@dataclass(frozen=True)
class Violation:
    """One way a record broke the mapping: which field, which rule, in words."""

    field: str
    rule: str
    message: str


class RecordInvalid(CrmSyncError):
    def __init__(self, violations: list[Violation]) -> None:
        self.violations = violations
        super().__init__("; ".join(f"{v.field}: {v.message} ({v.rule})" for v in violations))


class MappingConfigError(CrmSyncError):
    """A mapping file is wrong. The message names the file, the key and the problem."""


class ConnectorError(CrmSyncError):
    """A vendor call failed."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


class Retryable(ConnectorError):
    """Transient: 5xx, timeout, connection reset, stale version we can re-read."""


class RateLimited(Retryable):
    def __init__(self, message: str, *, retry_after_s: float, status: int | None = 429):
        super().__init__(message, status=status)
        self.retry_after_s = retry_after_s


class OutOfTime(Retryable):
    """The invocation has too little time left to call a vendor and get the answer
    back: the message goes back to the queue for the next invocation, not as a failure."""


class Permanent(ConnectorError):
    """The vendor refused the request for good (validation, duplicate, forbidden)."""


class AlreadyExists(Permanent):
    """A create refused because ``holder`` holds its unique key (a name, a number; the
    match ``rule``): the engine takes it as a lookup before the create would have."""

    def __init__(self, message: str, *, holder: TargetRef, rule: str, code: str | None = None):
        super().__init__(message, code=code)
        self.holder = holder
        self.rule = rule


class NotFound(Permanent):
    """The record does not exist (any more)."""


class AuthFailed(Permanent):
    """Credentials are wrong or revoked: a person must re-authorize."""


class StaleWrite(CrmSyncError):
    """A conditional write lost: a newer version was stored first."""


class LockTimeout(Retryable):
    def __init__(self, name: str) -> None:
        super().__init__(f"lock {name!r} not acquired in time")
