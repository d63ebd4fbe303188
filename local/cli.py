"""``crmsync``: the local stack from the command line.

Each subcommand is one ``Command`` in ``COMMANDS``; every subcommand takes
``--config`` (default ``local/local.yaml``). ``up`` starts the stack and keeps it
running until Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import botocore.exceptions
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from infra.resources import DESCRIPTION, local_name
from local.aws import AwsClients, QueueRef, redrive
from local.config import DEFAULT_CONFIG, LOOPBACK, LocalConfig, LocalConfigError
from local.runtime import LocalStack, LocalStackError
from shared.errors import MappingConfigError
from shared.mapping import load_mapping

console = Console()
errors = Console(stderr=True)


class CommandError(Exception):
    """A problem the user can fix; printed as one readable message, exit status 1."""


@dataclass(frozen=True)
class Command:
    help: str
    run: Callable[[argparse.Namespace], int]
    add_arguments: Callable[[argparse.ArgumentParser], None] = lambda parser: None


def load_config(path: Path) -> LocalConfig:
    """The local config with a valid mapping file, or a ``CommandError`` saying what is wrong."""
    try:
        config = LocalConfig.load(path)
        load_mapping(config.mapping_file)
    except (LocalConfigError, MappingConfigError) as exc:
        raise CommandError(str(exc)) from None
    return config


def start_stack(config: LocalConfig) -> LocalStack:
    """A running stack, or a ``CommandError`` saying why it could not start."""
    try:
        return LocalStack(config).start()
    except (LocalStackError, MappingConfigError) as exc:
        raise CommandError(str(exc)) from None


def print_urls(stack: LocalStack) -> None:
    urls = stack.urls
    table = Table(title="crmsync local stack", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("API (API Gateway)", urls.api)
    for vendor, url in urls.webhooks.items():
        table.add_row(f"  POST webhook: {vendor}", url)
    if urls.hubspot:
        table.add_row("HubSpot sandbox", urls.hubspot)
    if urls.quickbooks:
        table.add_row("QuickBooks sandbox", urls.quickbooks)
    table.add_row("AWS (moto)", urls.moto)
    for queue_id, queue in stack.resources.queues.items():
        table.add_row(f"  queue {queue_id}", queue.url)
        if queue.dead_letter_url:
            table.add_row(f"  queue {queue_id} DLQ", queue.dead_letter_url)
    console.print(table)
    if urls.hubspot:
        console.print(
            "\nTry it: create a contact in the HubSpot sandbox as a person would in its UI;"
            " its signed webhook flows through the webhook and sync handlers into QuickBooks.\n"
            f"  curl -s -X POST {urls.hubspot}/_sandbox/objects/contacts"
            " -H 'content-type: application/json'"
            ' -d \'{"properties": {"email": "ada@example.com", "firstname": "Ada",'
            ' "lastname": "Lovelace"}}\'\n'
            "  then look for her in QuickBooks:"
            f" curl -s {urls.quickbooks}/_sandbox/entities/Customer\n",
            soft_wrap=True,  # commands stay on one line, ready to copy
        )
    console.print(
        f"AWS CLI: aws --endpoint-url {urls.moto} sqs list-queues"
        f" (credentials {stack.config.aws.access_key_id}/{stack.config.aws.secret_access_key})",
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
            print_urls(stack)
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

    problems = demo.run_demo(load_config(args.config))
    if problems:
        for problem in problems:
            errors.print(f"[bold red]✗[/bold red] {escape(problem)}", highlight=False)
        raise CommandError(f"{len(problems)} expectation(s) failed; see above")
    console.print("[bold green]demo passed:[/bold green] every record arrived exactly once.")
    return 0


def run_redrive(args: argparse.Namespace) -> int:
    """Move dead letters back onto the events queue of a stack started by ``crmsync up``."""
    config = load_config(args.config)
    if not config.ports.moto:
        raise CommandError("redrive needs the fixed moto port of a running `crmsync up`")
    clients = AwsClients.connect(f"http://{LOOPBACK}:{config.ports.moto}", config.aws)
    spec = DESCRIPTION.queue("Events")
    name = local_name(config.connection_id, spec.id, fifo=spec.fifo)
    try:
        url = clients.sqs.get_queue_url(QueueName=name)["QueueUrl"]
        attributes = clients.sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["QueueArn", "RedrivePolicy"]
        )["Attributes"]
    except (botocore.exceptions.ClientError, botocore.exceptions.EndpointConnectionError):
        raise CommandError(
            f"no running local stack with queue {name} on port {config.ports.moto}; "
            "start it with `crmsync up`"
        ) from None
    dead_letter_arn = json.loads(attributes["RedrivePolicy"])["deadLetterTargetArn"]
    dead_letter_url = clients.sqs.get_queue_url(QueueName=dead_letter_arn.rsplit(":", 1)[1])
    queue = QueueRef(
        url=url,
        arn=attributes["QueueArn"],
        visibility_timeout_s=spec.visibility_timeout_s,
        dead_letter_url=dead_letter_url["QueueUrl"],
        dead_letter_arn=dead_letter_arn,
    )
    console.print(f"moved {redrive(clients.sqs, queue)} message(s) from the DLQ back to {name}")
    return 0


COMMANDS: dict[str, Command] = {
    "up": Command(
        help="start the local stack (moto, sandboxes, API, worker, schedule) until Ctrl-C",
        run=run_up,
    ),
    "redrive": Command(
        help="move dead-lettered events back onto the queue of a running `crmsync up`",
        run=run_redrive,
    ),
    "demo": Command(
        help="run the HubSpot → QuickBooks scenario on a fresh local stack and check it",
        run=run_demo,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crmsync", description="crmsync's local stack: AWS on moto, vendor sandboxes."
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help=f"local config file (default: {DEFAULT_CONFIG})",
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


if __name__ == "__main__":
    sys.exit(main())
