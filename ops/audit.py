"""``crmsync audit <record>``: one record's trail, newest first, from the Audit table's
record index."""

from __future__ import annotations

import argparse
from datetime import UTC

import botocore.exceptions
from rich.markup import escape
from rich.table import Table

from ops.command import Command, CommandError, console, print_json
from ops.deployment import add_deployment_arguments, deployment_of
from shared.settings import Settings
from shared.stores import DynamoAuditLog


def run(args: argparse.Namespace) -> int:
    """One record's audit trail, newest first: what happened to it and why."""
    deployment = deployment_of(args)
    log = DynamoAuditLog(
        deployment.client("dynamodb"), deployment.outputs.audit_table, Settings().audit_ttl_days
    )
    try:
        entries = log.history(args.connection, args.record, limit=args.limit)
    except botocore.exceptions.ClientError as exc:
        raise CommandError(
            f"cannot read the audit table {deployment.outputs.audit_table}: {exc}"
        ) from None
    if args.json:
        print_json([entry.model_dump(mode="json") for entry in entries])
        return 0
    if not entries:
        console.print(
            f"no audit entries for {escape(args.record)} in connection {escape(args.connection)}"
            " (a record key is <system>:<object type>:<id>: the CRM or accounting system,"
            " 'contact', 'company', 'deal', 'customer' or 'invoice', and the id there)"
        )
        return 0
    table = Table(title=f"{args.record} ({args.connection}), newest first", title_justify="left")
    for column in ("at (UTC)", "outcome", "why", "target", "event"):
        table.add_column(column, overflow="fold")
    table.columns[2].ratio = 3  # the reason gets the room
    for entry in entries:
        table.add_row(
            entry.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            entry.outcome.value,
            # The reason of an invalid record names its field and rule already.
            escape(entry.reason),
            escape(entry.target_key or ""),
            escape(entry.event_id),
        )
    console.print(table)
    return 0


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("record", help="the record key: <system>:<object type>:<id>")
    parser.add_argument("--connection", required=True, help="the connection's id")
    parser.add_argument("--limit", type=int, default=50, help="entries at most (default: 50)")
    parser.add_argument("--json", action="store_true", help="print the entries as JSON")
    add_deployment_arguments(parser)


COMMAND = Command(
    help="one record's audit trail, newest first (a deployed stack, or --local)",
    run=run,
    add_arguments=_arguments,
)
