"""``crmsync``: the operator's commands (``ops/``) and the local stack's (``up``,
``demo``), one ``Command`` each in ``COMMANDS``.

Every subcommand takes ``--config`` (default ``local/local.yaml``): ``up`` and ``demo``
run that stack, and ``--local`` finds it while it runs. ``up`` keeps it running until
Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from pydantic import ValidationError
from rich.markup import escape

from local.config import DEFAULT_CONFIG, LocalConfig
from local.runtime import LocalStack, LocalStackError
from ops import (
    audit,
    backfill,
    connect,
    connections,
    drift,
    items,
    mapping,
    redrive,
    replay,
    status,
)
from ops.command import Command, CommandError, console, errors
from ops.deployment import AWS_ERRORS, load_config
from shared.connectors.registry import vendor, vendors
from shared.errors import MappingConfigError


def start_stack(config: LocalConfig) -> LocalStack:
    """A running stack, or a ``CommandError`` saying why it could not start."""
    try:
        return LocalStack(config).start()
    except (LocalStackError, MappingConfigError) as exc:
        raise CommandError(str(exc)) from None


def print_urls(stack: LocalStack, config_path: Path) -> None:
    """The stack's URLs, each whole on its line (no table borders, no folding), so a
    double-click or a terminal's selection copies it."""
    urls = stack.urls
    rows = [("API (API Gateway)", urls.api)]
    rows += [(f"  POST webhook: {name}", url) for name, url in urls.webhooks.items()]
    rows += [(f"{vendor(name).label} sandbox", url) for name, url in urls.sandboxes.items()]
    rows.append(("AWS (moto)", urls.moto))
    for queue_id, queue in stack.resources.queues.items():
        rows.append((f"  queue {queue_id}", queue.url))
        if queue.dead_letter_url:
            rows.append((f"  queue {queue_id} DLQ", queue.dead_letter_url))
    width = max(len(label) for label, _ in rows)
    console.print("[bold]crmsync local stack[/bold]")
    for label, url in rows:
        console.print(f"{escape(label.ljust(width))}  {url}", soft_wrap=True, highlight=False)
    for connection in stack.config.connections:
        console.print(
            f"Connection {connection.id}: {vendor(connection.crm).label} → "
            f"{vendor(connection.accounting).label}, mapping {connection.mapping_file}. "
            "Change a record in the CRM sandbox through the CRM's own API (the README's "
            '"Try it by hand" shows how) and watch it reach the books: '
            "`crmsync status --local`.",
            soft_wrap=True,
        )
    console.print(
        f"AWS CLI: aws --endpoint-url {urls.moto} sqs list-queues"
        f" (credentials {stack.config.aws.access_key_id}/{stack.config.aws.secret_access_key})",
        soft_wrap=True,
    )
    first = stack.config.connections[0]
    config_flag = "" if config_path == DEFAULT_CONFIG else f" --config {config_path}"
    console.print(
        f"A record's audit trail: crmsync audit {first.crm}:contact:<id> "
        f"--connection {first.id} --local{config_flag}",
        soft_wrap=True,
    )
    console.print("[dim]Ctrl-C stops everything.[/dim]")


def _describe(stack: LocalStack) -> str:
    status = stack.status()
    parts = []
    for queue_id, worker in status.workers.items():
        parts.append(f"{queue_id}: {worker.processed} processed, {worker.failed} failed")
    for queue_id, counts in status.queues.items():
        parts.append(f"{queue_id} DLQ: {counts.dead_letters}")
    for schedule_id, scheduler in status.schedulers.items():
        parts.append(f"{schedule_id}: fired {scheduler.fired}")
    return "; ".join(parts)


def run_up(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with console.status("starting moto, the sandboxes and the handlers…"):
            stack = start_stack(config)
        try:
            print_urls(stack, args.config)
            shown = ""
            while not stopping.wait(1.0):
                line = _describe(stack)
                if line != shown:
                    console.print(f"[dim]{line}[/dim]")
                    shown = line
            console.print("stopping…")
        finally:
            stack.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from local import demo  # imports httpx clients and the scenario only when asked for

    config = load_config(args.config)
    if args.crm or args.accounting:
        first = config.connections[0]
        try:
            config = config.with_pair(args.crm or first.crm, args.accounting or first.accounting)
        except ValidationError as exc:
            raise CommandError(f"no demo for that pair: {exc.errors()[0]['msg']}") from None
    problems = demo.run_demo(config)
    if problems:
        for problem in problems:
            errors.print(f"[bold red]✗[/bold red] {escape(problem)}", highlight=False)
        raise CommandError(f"{len(problems)} expectation(s) failed; see above")
    console.print("[bold green]demo passed:[/bold green] every record arrived exactly once.")
    return 0


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    crms = [spec.name for spec in vendors("crm")]
    books = [spec.name for spec in vendors("accounting")]
    parser.add_argument("--crm", choices=crms, help="the CRM (default: the config's first)")
    parser.add_argument(
        "--accounting", choices=books, help="the accounting system (default: the config's first)"
    )


COMMANDS: dict[str, Command] = {
    "up": Command(
        help="start the local stack (moto, sandboxes, API, worker, schedule) until Ctrl-C",
        run=run_up,
    ),
    "status": status.COMMAND,
    "redrive": redrive.COMMAND,
    "replay": replay.COMMAND,
    "connect": connect.COMMAND,
    "connection": connections.COMMAND,
    "audit": audit.COMMAND,
    "backfill": backfill.COMMAND,
    "drift": drift.COMMAND,
    "mapping": mapping.COMMAND,
    "items": items.COMMAND,
    "demo": Command(
        help="run the sample scenario for one CRM → accounting pair on a fresh local stack "
        "and check it",
        run=run_demo,
        add_arguments=lambda parser: _demo_arguments(parser),
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crmsync",
        description="crmsync's operator commands, for a deployed stack (--stack) or the "
        "local one (`crmsync up`, --local), and the local stack itself.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help="the local stack's config, for up, demo and --local (default: "
        f"{DEFAULT_CONFIG.relative_to(DEFAULT_CONFIG.parents[1])})",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        sub = commands.add_parser(name, help=command.help, parents=[common])
        command.add_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command].run(args)
    except CommandError as exc:
        errors.print(
            f"[bold red]crmsync {args.command}:[/bold red] {escape(str(exc))}",
            highlight=False,
            soft_wrap=True,  # paths stay whole
        )
        return 1
    except AWS_ERRORS as exc:  # one a command did not expect: still a message, not a trace
        errors.print(f"[bold red]crmsync {args.command}:[/bold red] AWS: {escape(str(exc))}")
        return 1
    except KeyboardInterrupt:
        errors.print(f"crmsync {args.command}: interrupted")
        return 130
    except BrokenPipeError:
        # The reader (`| head`) left: no error of ours. stdout goes to devnull so that
        # the interpreter's last flush fails no more (Python's signal docs advise so).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
