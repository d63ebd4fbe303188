"""``crmsync drift``: where the CRM and the accounting system disagree although the sync
believes them agreed, per connection, as the reconcile function's last drift check
found it; ``--run`` checks now, in this process (``shared.sync.drift``), wired to the
stack's tables and queue: what the mapping's policy repairs is queued for the deployed
functions, as the scheduled check does, and the report is kept as theirs is.
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.markup import escape
from rich.table import Table

from ops.command import Command, CommandError, console, print_json
from ops.deployment import AWS_ERRORS, add_deployment_arguments, deployment_of
from shared.errors import CrmSyncError, MappingConfigError
from shared.models import Connection
from shared.models.drift import DriftReport

COLUMNS = (
    "kind",
    "CRM record",
    "target record",
    "field",
    "CRM value",
    "accounting value",
    "done",
    "persistent",
)


def run(args: argparse.Namespace) -> int:
    deployment = deployment_of(args)
    container = deployment.container
    connections = deployment.connections(args.connection)
    reports: dict[str, DriftReport | None] = {}
    for connection in connections:
        try:
            reports[connection.id] = (
                container.drift_check(connection).run()
                if args.run
                else container.drift_reports.latest(connection.id)
            )
        except (ValueError, MappingConfigError) as exc:  # the stored mapping no longer loads
            raise CommandError(f"connection {connection.id!r}: {exc}") from None
        except (CrmSyncError, *AWS_ERRORS) as exc:
            raise CommandError(
                f"connection {connection.id!r}: drift check stopped: {exc}"
            ) from None
    if args.json:
        print_json(
            {
                connection_id: None if report is None else report.model_dump(mode="json")
                for connection_id, report in reports.items()
            }
        )
    else:
        for connection in connections:
            _print(connection, reports[connection.id], deployment.stack)
    return 0


def _print(connection: Connection, report: DriftReport | None, stack: str) -> None:
    title = f"connection {connection.id}: {connection.crm} ↔ {connection.accounting}"
    if report is None:
        console.print(
            f"{escape(title)}: no drift check yet (the reconcile function runs one on its "
            f"schedule; `crmsync drift --run --stack {stack}` runs one now)"
        )
        return
    counts = ", ".join(f"{n} {kind}" for kind, n in report.counts.items() if n) or "no drift"
    heading = (
        f"{title} — checked {report.at:%Y-%m-%d %H:%M:%S} UTC, {report.checked} record(s): "
        f"{counts}" + ("" if report.complete else " (stopped for time)")
    )
    if not report.findings:
        console.print(escape(heading))
        return
    table = Table(title=escape(heading), title_justify="left")
    for column in COLUMNS:
        table.add_column(column, overflow="fold")
    for finding in report.findings:
        row: list[Any] = [
            finding.kind,
            finding.crm_key,
            finding.target_key,
            finding.field,
            finding.crm_value,
            finding.accounting_value,
            finding.done,
            "yes" if finding.persistent else "",
        ]
        table.add_row(*(escape("—" if value is None else str(value)) for value in row))
    console.print(table)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Show where the two systems disagree although the sync believes them agreed: "
        "records missing on either side, fields that differ (with both values), invoice "
        "totals, two-way and back fields. What the mapping's policy lets the sync repair "
        "is queued (one-way fields always, two-way ones unless their policy holds them); "
        "the rest is reported. A finding also found by the check before is persistent."
    )
    parser.add_argument("--connection", help="only this connection (default: every one)")
    parser.add_argument(
        "--run",
        action="store_true",
        help="check now and queue the repairs, instead of showing the last check's report",
    )
    parser.add_argument("--json", action="store_true", help="print the reports as JSON")
    add_deployment_arguments(parser)


COMMAND = Command(
    help="where the CRM and the accounting system disagree (--run checks now and repairs)",
    run=run,
    add_arguments=_arguments,
)
