"""``crmsync mapping validate FILE``: a mapping file checked as a connection loading it
would be; ``crmsync mapping preview``: what a sync of a connection would write, against
what the accounting system holds now, writing nothing."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from itertools import islice
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from ops.command import Command, CommandError, console, errors, print_json
from ops.deployment import add_deployment_arguments, deployment_of
from shared.bootstrap import mapper_of
from shared.connectors.registry import UnknownVendor, vendors
from shared.errors import ConnectorError, MappingConfigError
from shared.mapping import MappingConfig, load_mapping
from shared.models import Connection, ObjectType
from shared.sync.preview import Preview, Previewer

PREVIEW_OBJECTS = (ObjectType.DEAL, ObjectType.CONTACT, ObjectType.COMPANY)


# --- validate ---------------------------------------------------------------------------


def check(
    path: Path, crm: str | None, accounting: str | None
) -> tuple[MappingConfig | None, list[str]]:
    """The mapping, or every problem a connection loading it would report, one a line."""
    try:
        config = load_mapping(path)
        if crm is not None and accounting is not None:
            mapper_of(
                Connection(
                    id="validate",
                    crm=crm,
                    accounting=accounting,
                    mapping_name=str(path),
                    mapping=path.read_text(encoding="utf-8"),
                )
            )
    except (MappingConfigError, ValueError, UnknownVendor) as exc:
        return None, str(exc).splitlines()
    return config, []


def summary(config: MappingConfig) -> list[str]:
    """What the file maps, in a few lines."""
    lines = [
        f"source {config.source or 'any CRM'} → target {config.target or 'any accounting system'}"
    ]
    for name in ("contact", "company", "deal"):
        mapping = getattr(config.objects, name)
        if mapping is None:
            continue
        parts = [f"{len(mapping.fields)} fields"]
        if mapping.filter:
            parts.append(f"{len(mapping.filter)} filter rule(s)")
        if name == "deal":
            if mapping.line_items is not None:
                parts.append(f"line items: {len(mapping.line_items.fields)} fields")
            if mapping.extra_lines:
                parts.append(f"{len(mapping.extra_lines)} extra line(s)")
            if mapping.custom_fields:
                parts.append(f"{len(mapping.custom_fields)} custom field(s)")
        lines.append(f"{name}: {', '.join(parts)}")
    if config.items.create_missing:
        lines.append("missing items are created")
    return lines


def run_validate(args: argparse.Namespace) -> int:
    if (args.crm is None) != (args.accounting is None):
        raise CommandError("give both --crm and --accounting, or neither")
    config, problems = check(args.file, args.crm, args.accounting)
    if args.json:
        print_json({"valid": not problems, "problems": problems})
        return 1 if problems else 0
    if config is None:
        for problem in problems:
            errors.print(f"[bold red]✗[/bold red] {escape(problem)}", highlight=False)
        raise CommandError(f"{args.file}: {len(problems)} problem(s); see above")
    console.print(f"[bold green]ok[/bold green] {escape(str(args.file))}")
    for line in summary(config):
        console.print(f"  {escape(line)}", highlight=False)
    return 0


# --- preview ----------------------------------------------------------------------------


def previewer_of(
    args: argparse.Namespace, mapping: Path | None = None
) -> tuple[Previewer, Connection]:
    """The core's previewer for ``--connection`` on the stack the arguments name, with
    the ``mapping`` file instead of the connection's when given."""
    deployment = deployment_of(args)
    container = deployment.container
    (connection,) = deployment.connections(args.connection)
    if mapping is not None:
        try:
            text = mapping.read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"{mapping}: {exc}") from None
        connection = connection.model_copy(update={"mapping": text, "mapping_name": str(mapping)})
    with core_errors():
        return container.previewer(connection), connection


@contextmanager
def core_errors() -> Iterator[None]:
    """A bad mapping or a vendor's refusal as the one-line error of a command."""
    try:
        yield
    except (MappingConfigError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    except ConnectorError as exc:
        raise CommandError(f"{type(exc).__name__}: {exc}") from None


def run_preview(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise CommandError("--limit is at least 1")
    previewer, _ = previewer_of(args, args.mapping)
    with core_errors():
        records = previewer.records(ObjectType(args.object), record_id=args.record)
        previews = [previewer.preview(record) for record in islice(records, args.limit)]
    if args.json:
        print_json([asdict(preview) for preview in previews])
        return 0
    if not previews:
        console.print(f"no {args.object} records found in the CRM")
        return 0
    _print_previews(previews, args.connection)
    return 0


def _print_previews(previews: list[Preview], connection_id: str) -> None:
    table = Table(
        title=f"{connection_id}: what a sync would write (nothing was written)",
        title_justify="left",
    )
    for column in ("record", "action", "why", "target"):
        table.add_column(column, overflow="fold")
    table.columns[2].ratio = 3
    for preview in previews:
        table.add_row(
            escape(preview.record_key),
            preview.action.value,
            escape(preview.reason),
            escape(preview.target_key or ""),
        )
    console.print(table)
    for preview in previews:
        if preview.new_items:
            console.print(
                f"{escape(preview.record_key)}: would first create item(s) "
                + ", ".join(escape(repr(name)) for name in preview.new_items)
            )
        if preview.changes:
            changes = Table(
                title=f"{preview.record_key} → {preview.target_key}", title_justify="left"
            )
            for column in ("field", "now", "would be"):
                changes.add_column(column, overflow="fold")
            for change in preview.changes:
                changes.add_row(
                    escape(change.path), _shown(change.current), _shown(change.proposed)
                )
            console.print(changes)
        elif preview.payload is not None and not preview.target_key:
            console.print(f"{escape(preview.record_key)} would be sent as:")
            console.print_json(json.dumps(preview.payload, default=str))


def _shown(value: Any) -> str:
    return "(none)" if value is None else escape(str(value))


# --- the command ------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    return int(args.mapping_run(args))


def _arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="mapping_command", required=True, metavar="ACTION")
    validate = actions.add_parser(
        "validate",
        help="check a mapping file as a connection loading it would (needs no stack)",
        description="Check a mapping file: every problem with its location, exit 1 if any.",
    )
    validate.add_argument("file", type=Path, help="the mapping file (.yaml, .yml or .json)")
    validate.add_argument(
        "--crm", choices=[s.name for s in vendors("crm")], help="check it for this CRM"
    )
    validate.add_argument(
        "--accounting",
        choices=[s.name for s in vendors("accounting")],
        help="check it for this accounting system (with --crm)",
    )
    validate.add_argument("--json", action="store_true", help='print {"valid", "problems"}')
    validate.set_defaults(mapping_run=run_validate)

    preview = actions.add_parser(
        "preview",
        help="what a sync would write for a few CRM records, and how it differs from the "
        "accounting record now; writes nothing",
        description="Map real CRM records of a connection and show what a sync would "
        "write and the difference from the linked (or matched) accounting record. "
        "Nothing is written: no vendor write, link, audit entry or queue message.",
    )
    preview.add_argument("--connection", required=True, help="the connection's id")
    preview.add_argument(
        "--mapping", type=Path, help="preview with this mapping file instead of the connection's"
    )
    preview.add_argument(
        "--object",
        choices=[t.value for t in PREVIEW_OBJECTS],
        default=ObjectType.DEAL.value,
        help="which CRM records (default: deal)",
    )
    preview.add_argument("--record", help="one record by its CRM id")
    preview.add_argument("--limit", type=int, default=5, help="records at most (default: 5)")
    preview.add_argument("--json", action="store_true", help="print the previews as JSON")
    preview.add_argument(
        "--config", type=Path, default=argparse.SUPPRESS, help="local config file, with --local"
    )
    add_deployment_arguments(preview)
    preview.set_defaults(mapping_run=run_preview)


COMMAND = Command(
    help="check a mapping file (validate), or preview what a sync would write (preview)",
    run=run,
    add_arguments=_arguments,
)
