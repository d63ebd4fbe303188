"""What every ``crmsync`` subcommand shares: its declaration, its error, its consoles."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.console import Console

console = Console()
errors = Console(stderr=True)


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
