"""``crmsync items``: the products the CRM's deals sell that the accounting system has
no item for, found as the sync finds items (by SKU, else by name), so a person knows
what to create there (or turns on the mapping's ``items.create_missing``).

The CRM side of the core reads records, not a product library: the products are the
line items of the deals changed in the last ``--days`` days.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict

from rich.markup import escape
from rich.table import Table

from ops.command import Command, CommandError, console, print_json
from ops.deployment import add_deployment_arguments
from ops.mapping import core_errors, previewer_of
from shared.connectors.registry import vendor
from shared.models import ObjectType

DAY_MS = 86_400_000
SHOWN_DEALS = 3  # deals named per item in the table; --json lists them all


def run(args: argparse.Namespace) -> int:
    if args.days < 1:
        raise CommandError("--days is at least 1")
    previewer, connection = previewer_of(args)
    since_ms = int(time.time() * 1000) - args.days * DAY_MS
    with core_errors():
        missing = previewer.missing_items(previewer.records(ObjectType.DEAL, since_ms=since_ms))
    books = vendor(connection.accounting).label
    if args.json:
        print_json([asdict(item) for item in missing])
        return 0
    crm = vendor(connection.crm).label
    scope = f"the line items of {crm} deals changed in the last {args.days} days"
    if not missing:
        console.print(f"every product in {scope} has a {books} item")
        return 0
    table = Table(title=f"products without a {books} item ({scope})", title_justify="left")
    for column in ("product", "SKU", "deals"):
        table.add_column(column, overflow="fold")
    for item in missing:
        shown = ", ".join(item.deals[:SHOWN_DEALS])
        more = len(item.deals) - SHOWN_DEALS
        table.add_row(
            escape(item.name),
            escape(item.sku or ""),
            escape(shown + (f" and {more} more" if more > 0 else "")),
        )
    console.print(table)
    console.print(
        f"Create them in {books} with that name (or SKU), or set `items: {{create_missing: "
        "true}` in the mapping to have the sync create them.",
        soft_wrap=True,
    )
    return 0


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--connection", required=True, help="the connection's id")
    parser.add_argument(
        "--days", type=int, default=90, help="deals changed in this many days (default: 90)"
    )
    parser.add_argument("--json", action="store_true", help="print the items as JSON")
    add_deployment_arguments(parser)


COMMAND = Command(
    help="CRM products that have no accounting item yet (what to create before syncing)",
    run=run,
    add_arguments=_arguments,
)
