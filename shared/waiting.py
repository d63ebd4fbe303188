"""Waiting for something another process holds: asked again and again, up to a limit."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from shared.errors import LockTimeout

T = TypeVar("T")


def wait_for(
    take: Callable[[], T | None],
    *,
    what: str,
    wait_s: float,
    poll_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """What ``take()`` first returns other than None, asked every ``poll_s`` seconds
    for up to ``wait_s``; ``LockTimeout(what)`` when it never does."""
    deadline = clock() + wait_s
    while (taken := take()) is None:
        left = deadline - clock()
        if left <= 0:
            raise LockTimeout(what)
        sleep(min(poll_s, left))
    return taken
