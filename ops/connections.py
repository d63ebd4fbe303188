"""``crmsync connection add``: add or change a connection of a deployed stack (or
``--local``): its row in the Connections table, with the mapping, and optionally its
vendor secrets from files. No redeploy: running functions pick it up within a minute.
``crmsync connect <vendor>`` fills a secret through the vendor's authorization flow
instead of a file.
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path

import botocore.exceptions

from ops.command import Command, CommandError, console
from ops.deployment import add_deployment_arguments, deployment_of
from shared.bootstrap import CRM_OBJECTS, mapper_of
from shared.connectors.registry import UnknownVendor, vendor, vendors
from shared.connectors.spec import VendorKind, secret_id
from shared.errors import MappingConfigError
from shared.models import Connection
from shared.secrets.secrets_manager import put_secret
from shared.stores import DynamoConnections


def run_add(args: argparse.Namespace) -> int:
    try:
        connection = Connection(
            id=args.id,
            crm=args.crm,
            accounting=args.accounting,
            mapping_name=args.mapping.name,
            mapping=args.mapping.read_text(encoding="utf-8"),
            sync_since=args.since,
        )
        mapper_of(connection)
        files: list[tuple[Path | None, str, VendorKind]] = [
            (args.crm_secret, connection.crm, "crm"),
            (args.accounting_secret, connection.accounting, "accounting"),
        ]
        secrets = {
            name: _secret_file(path, name, role) for path, name, role in files if path is not None
        }
    except (OSError, ValueError, MappingConfigError, UnknownVendor) as exc:
        raise CommandError(str(exc)) from None
    deployment = deployment_of(args)
    table = deployment.outputs.connections_table
    try:
        secretsmanager = deployment.client("secretsmanager")
        for name, values in secrets.items():
            put_secret(secretsmanager, secret_id(connection.id, name), values)
        DynamoConnections(
            deployment.client("dynamodb"),
            deployment.session.resource("dynamodb", endpoint_url=deployment.endpoint_url),
            table,
        ).put(connection)
    except botocore.exceptions.ClientError as exc:
        raise CommandError(f"cannot store connection {connection.id}: {exc}") from None
    console.print(
        f"connection {connection.id}: {vendor(connection.crm).label} → "
        f"{vendor(connection.accounting).label} stored in {table}; point each vendor's "
        "webhooks at its URL:",
        soft_wrap=True,
    )
    for name in (connection.crm, connection.accounting):
        url = deployment.outputs.webhook_urls.get(name, "")
        console.print(
            f"  {vendor(name).label}: {url.replace('{connection}', connection.id)}",
            soft_wrap=True,
            highlight=False,
        )
    _tell_written_back(connection)
    for name in (connection.crm, connection.accounting):
        if name not in secrets:
            console.print(
                f"{vendor(name).label}'s secret: `crmsync connect {name} --connection "
                f"{connection.id}` (with the same --stack/--local)",
                soft_wrap=True,
            )
    return 0


def _tell_written_back(connection: Connection) -> None:
    """A two-way mapping writes into CRM properties: which, and how they come to be."""
    back = mapper_of(connection).back
    named = {
        object_type: [p.name for p in back.properties(object_type)] for object_type in CRM_OBJECTS
    }
    if not any(named.values()):
        return
    crm = vendor(connection.crm)
    console.print(f"The mapping writes back into these {crm.label} properties:", highlight=False)
    for object_type, names in named.items():
        if names:
            console.print(f"  {object_type}: {', '.join(names)}", soft_wrap=True, highlight=False)
    if crm.written_back_fields:
        console.print(f"{crm.written_back_fields}.", soft_wrap=True, highlight=False)


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


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--connection",
        dest="id",
        required=True,
        help="the connection's id (a-z, 0-9, -)",
    )
    parser.add_argument("--crm", required=True, choices=[s.name for s in vendors("crm")])
    parser.add_argument(
        "--accounting", required=True, choices=[s.name for s in vendors("accounting")]
    )
    parser.add_argument(
        "--mapping", required=True, type=Path, help="the mapping file (anywhere on disk)"
    )
    parser.add_argument(
        "--since",
        type=date.fromisoformat,
        metavar="YYYY-MM-DD",
        help="the first reconcile imports CRM records changed since this day (UTC) only; "
        "default: every record (`crmsync backfill --since` imports older ones later)",
    )
    parser.add_argument(
        "--crm-secret", type=Path, help="the CRM's secret JSON (else `crmsync connect`)"
    )
    parser.add_argument(
        "--accounting-secret",
        type=Path,
        help="the accounting system's secret JSON (else `crmsync connect`)",
    )
    add_deployment_arguments(parser)


def _arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser(
        "add",
        help="add or change a connection: its mapping and, optionally, secret files",
        description=__doc__,
    )
    # Also after the action; SUPPRESS keeps the command's own default when absent.
    add.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="local config file")
    _add_arguments(add)


COMMAND = Command(
    help="add or change a connection of a deployed stack (or --local), no redeploy",
    run=run_add,  # `add` is the only action
    add_arguments=_arguments,
)
