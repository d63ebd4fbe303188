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
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import boto3
import botocore.exceptions
from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table

from infra.resources import DESCRIPTION, local_name
from local.aws import AwsClients, QueueRef, put_secret, redrive
from local.config import DEFAULT_CONFIG, LOOPBACK, LocalConfig, LocalConfigError
from local.runtime import LocalStack, LocalStackError
from ops import audit
from ops.command import Command, CommandError, console, errors
from shared.bootstrap import mapper_of
from shared.connectors.registry import UnknownVendor, vendor, vendors
from shared.connectors.spec import VendorKind, secret_id
from shared.errors import MappingConfigError
from shared.models import Connection
from shared.stores import DynamoConnections


def load_config(path: Path) -> LocalConfig:
    """The local config with valid connections, or a ``CommandError`` saying what is wrong."""
    try:
        return LocalConfig.load(path)
    except LocalConfigError as exc:
        raise CommandError(str(exc)) from None


def start_stack(config: LocalConfig) -> LocalStack:
    """A running stack, or a ``CommandError`` saying why it could not start."""
    try:
        return LocalStack(config).start()
    except (LocalStackError, MappingConfigError) as exc:
        raise CommandError(str(exc)) from None


def print_urls(stack: LocalStack, config_path: Path) -> None:
    urls = stack.urls
    table = Table(title="crmsync local stack", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("API (API Gateway)", urls.api)
    for name, url in urls.webhooks.items():
        table.add_row(f"  POST webhook: {name}", url)
    for name, url in urls.sandboxes.items():
        table.add_row(f"{vendor(name).label} sandbox", url)
    table.add_row("AWS (moto)", urls.moto)
    for queue_id, queue in stack.resources.queues.items():
        table.add_row(f"  queue {queue_id}", queue.url)
        if queue.dead_letter_url:
            table.add_row(f"  queue {queue_id} DLQ", queue.dead_letter_url)
    console.print(table)
    for connection in stack.config.connections:
        console.print(
            f"Connection {connection.id}: {vendor(connection.crm).label} → "
            f"{vendor(connection.accounting).label}, mapping {connection.mapping_file}. "
            "Change a record in the CRM sandbox (`crmsync demo` shows how, through the "
            "CRM's own API) and watch it reach the books.",
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


def run_redrive(args: argparse.Namespace) -> int:
    """Move dead letters back onto the events queue of a stack started by ``crmsync up``."""
    config = load_config(args.config)
    if not config.ports.moto:
        raise CommandError("redrive needs the fixed moto port of a running `crmsync up`")
    clients = AwsClients.connect(f"http://{LOOPBACK}:{config.ports.moto}", config.aws)
    spec = DESCRIPTION.queue("Events")
    name = local_name(config.stack, spec.id, fifo=spec.fifo)
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


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    crms = [spec.name for spec in vendors("crm")]
    books = [spec.name for spec in vendors("accounting")]
    parser.add_argument("--crm", choices=crms, help="the CRM (default: the config's first)")
    parser.add_argument(
        "--accounting", choices=books, help="the accounting system (default: the config's first)"
    )


def run_connect(args: argparse.Namespace) -> int:
    """Add or change a connection of a deployed stack (or of a running ``crmsync up``):
    its secrets and its row in the Connections table. No redeploy: running functions
    pick it up within a minute."""
    try:
        connection = Connection(
            id=args.id,
            crm=args.crm,
            accounting=args.accounting,
            mapping_name=args.mapping.name,
            mapping=args.mapping.read_text(encoding="utf-8"),
        )
        mapper_of(connection)
        secrets = {
            connection.crm: _secret_file(args.crm_secret, connection.crm, "crm"),
            connection.accounting: _secret_file(
                args.accounting_secret, connection.accounting, "accounting"
            ),
        }
    except (OSError, ValueError, MappingConfigError, UnknownVendor) as exc:
        raise CommandError(str(exc)) from None
    session = boto3.session.Session()
    secretsmanager = session.client("secretsmanager", endpoint_url=args.endpoint_url)
    for name, values in secrets.items():
        put_secret(secretsmanager, secret_id(connection.id, name), values)
    DynamoConnections(
        session.client("dynamodb", endpoint_url=args.endpoint_url),
        session.resource("dynamodb", endpoint_url=args.endpoint_url),
        args.table,
    ).put(connection)
    console.print(
        f"connection {connection.id}: {vendor(connection.crm).label} → "
        f"{vendor(connection.accounting).label} stored in {args.table}; point each vendor's "
        f"webhooks at <WebhookUrl>/webhooks/<vendor>/{connection.id}"
    )
    return 0


def _secret_file(path: Path, name: str, role: VendorKind) -> dict[str, str]:
    """A vendor secret's JSON, checked against what the vendor declares it needs."""
    spec = vendor(name)
    if spec.kind != role:
        raise ValueError(f"{spec.label} is not a {role} system")
    values = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
        raise ValueError(f"{path}: a secret is a JSON object of strings")
    missing = [key for key in spec.secret_keys if key not in values]
    if missing:
        needed = "; ".join(f"{key}: {why}" for key, why in spec.secret_keys.items())
        raise ValueError(f"{path}: {spec.label} needs {', '.join(missing)} ({needed})")
    return values


def _connect_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--id", required=True, help="the connection's id (a-z, 0-9, -)")
    parser.add_argument("--crm", required=True, choices=[s.name for s in vendors("crm")])
    parser.add_argument(
        "--accounting", required=True, choices=[s.name for s in vendors("accounting")]
    )
    parser.add_argument("--mapping", required=True, type=Path, help="the mapping file")
    parser.add_argument("--crm-secret", required=True, type=Path, help="the CRM's secret JSON")
    parser.add_argument(
        "--accounting-secret", required=True, type=Path, help="the accounting secret JSON"
    )
    parser.add_argument("--table", required=True, help="the stack's ConnectionsTableName output")
    parser.add_argument("--endpoint-url", help="an AWS endpoint (a running `crmsync up`)")


COMMANDS: dict[str, Command] = {
    "up": Command(
        help="start the local stack (moto, sandboxes, API, worker, schedule) until Ctrl-C",
        run=run_up,
    ),
    "redrive": Command(
        help="move dead-lettered events back onto the queue of a running `crmsync up`",
        run=run_redrive,
    ),
    "connect": Command(
        help="add or change a connection (secrets and mapping) of a deployed stack",
        run=run_connect,
        add_arguments=_connect_arguments,
    ),
    "audit": audit.COMMAND,
    "demo": Command(
        help="run the sample scenario for one CRM → accounting pair on a fresh local stack "
        "and check it",
        run=run_demo,
        add_arguments=lambda parser: _demo_arguments(parser),
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
