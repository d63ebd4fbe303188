"""What every ``crmsync`` subcommand shares: its declaration, its error, its consoles."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rich.console import Console

console = Console()
errors = Console(stderr=True)


def moment(text: str) -> datetime:
    """An argument naming a day or a time (``--since``), UTC unless it has an offset."""
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date: 2026-11-28, or 2026-11-28T09:00 (UTC unless it says)"
        ) from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


class CommandError(Exception):
    """A problem the user can fix; printed as one readable message, exit status 1."""


@dataclass(frozen=True)
class Command:
    help: str
    run: Callable[[argparse.Namespace], int]
    add_arguments: Callable[[argparse.ArgumentParser], None] = lambda parser: None


def print_json(value: Any) -> None:
    """``--json`` output: plain JSON on stdout, nothing else, for ``jq`` and scripts."""
    print(json.dumps(value, indent=2, default=str))
