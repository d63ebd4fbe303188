"""``crmsync connect <vendor>``: authorize the app for one vendor account and store the
connection's secret for it, in a deployed stack's Secrets Manager or ``--local``.

Vendors that declare an ``OAuthFlow`` go through it (``ops.oauth``): the person signs
in at the vendor and consents in their browser, and the keys the answers carry are
stored. Keys no flow can know (webhook signing keys, a private app's token) come from
``--set KEY=VALUE``. What the secret already holds is kept unless replaced, and the
keys the vendor still needs are listed with what each is.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import secrets
import sys
import webbrowser
from collections.abc import Mapping
from typing import Any

import botocore.exceptions
from rich.markup import escape
from rich.table import Table

from local.config import NO_VENDOR
from ops import oauth
from ops.command import Command, CommandError, console
from ops.deployment import Deployment, add_deployment_arguments, deployment_of
from shared.connectors.registry import vendor, vendors
from shared.connectors.spec import OAuthFlow, VendorSpec, secret_id
from shared.secrets.secrets_manager import put_secret

# Where the client credentials may come from instead of a flag (kept out of the
# shell's history and the process list).
# The app's credentials may come from the environment, per vendor: <prefix>CLIENT_ID.
CLIENT_ID_ENV = "CLIENT_ID"
CLIENT_SECRET_ENV = "CLIENT_SECRET"
# Keys the connector keeps beside a refresh token: stale once a new one is stored.
ACCESS_KEYS = ("access_token", "access_expires_at")


def run(args: argparse.Namespace) -> int:
    spec = vendor(args.vendor)
    given = _assignments(args.set, spec)
    deployment = deployment_of(args)
    client = deployment.client("secretsmanager")
    name = secret_id(args.connection, spec.name)
    stored = _read_secret(client, name)
    values = stored | given
    if spec.oauth is not None:
        settings = spec.read_settings(_vendor_settings(spec, deployment, args)).model_dump()
        authorized = _authorize(spec, spec.oauth, settings, values, given, args)
        if authorized.get("refresh_token") != stored.get("refresh_token"):
            # The stored access token belongs to the grant just replaced (maybe another
            # company's): the functions must refresh with the new one.
            values = {k: v for k, v in values.items() if k not in ACCESS_KEYS}
        values |= authorized
    else:
        console.print(
            f"{spec.label} has no authorization flow here: its keys come from its own "
            "console, given with --set KEY=VALUE.",
            soft_wrap=True,
        )
    try:
        put_secret(client, name, values)
    except botocore.exceptions.ClientError as exc:
        raise CommandError(f"cannot store the secret {name}: {exc}") from None
    _report(spec, name, stored, values, args.connection)
    return 0


def _authorize(
    spec: VendorSpec[Any],
    flow: OAuthFlow,
    settings: Mapping[str, Any],
    values: Mapping[str, str],
    given: Mapping[str, str],
    args: argparse.Namespace,
) -> dict[str, str]:
    """The client's credentials and the keys the vendor's flow fills."""
    client_id = _credential(
        args.client_id, spec.env_prefix + CLIENT_ID_ENV, values.get("client_id"), "client id"
    )
    client_secret = _credential(
        args.client_secret,
        spec.env_prefix + CLIENT_SECRET_ENV,
        values.get("client_secret"),
        "client secret",
    )
    redirect = args.redirect_uri or oauth.redirect_uri(args.port)
    state = secrets.token_urlsafe(32)
    pkce = oauth.pkce_pair() if flow.pkce else None
    url = oauth.authorize_url(
        str(settings[flow.authorize_setting]),
        client_id=client_id,
        redirect=redirect,
        scopes=args.scope or flow.scopes,
        state=state,
        challenge=pkce.challenge if pkce else None,
    )
    console.print(
        f"Register this redirect URI with the {spec.label} app ({flow.docs}):\n  {redirect}",
        soft_wrap=True,
        highlight=False,
    )
    with oauth.callback_server(args.port, state) as server:
        console.print(
            f"Sign in to {spec.label} and allow access at:\n{url}", soft_wrap=True, highlight=False
        )
        if not args.no_browser:
            webbrowser.open(url)
        with console.status(f"waiting for {spec.label} to redirect back (Ctrl-C stops)…"):
            params = oauth.await_redirect(server, args.timeout)
    token = oauth.exchange_code(
        flow,
        str(settings[flow.token_setting]),
        client_id=client_id,
        client_secret=client_secret,
        code=params["code"],
        redirect=redirect,
        verifier=pkce.verifier if pkce else None,
    )
    filled = oauth.collect(flow.fills, token=token, redirect=params, settings=settings, given=given)
    return {"client_id": client_id, "client_secret": client_secret} | filled


def _vendor_settings(
    spec: VendorSpec[Any], deployment: Deployment, args: argparse.Namespace
) -> Mapping[str, str]:
    """The vendor's settings: its sandbox's with ``--local``; else ``--environment``'s,
    or by default those the stack was deployed with."""
    if args.local:
        local = deployment.vendor_settings.get(spec.name)
        if local is None or any(str(v).startswith(NO_VENDOR) for v in local.values()):
            raise CommandError(
                f"{args.config} gives the {spec.label} sandbox no fixed port (ports.sandboxes."
                f"{spec.name}): --local cannot find it"
            )
        return local
    if args.environment is None:
        return deployment.outputs.vendor_settings.get(spec.name, {})
    try:
        return spec.environment_settings(args.environment)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def _credential(flag: str | None, env: str, stored: str | None, what: str) -> str:
    """A client credential: the flag, the environment variable, the stored secret's, or
    asked for (hidden) at a terminal."""
    value = flag or os.environ.get(env) or stored
    if not value and sys.stdin.isatty():
        value = getpass.getpass(f"the app's {what}: ").strip()
    if not value:
        raise CommandError(f"no {what}: pass --{what.replace(' ', '-')} or set {env}")
    return value


def _assignments(pairs: list[str], spec: VendorSpec[Any]) -> dict[str, str]:
    values: dict[str, str] = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not value:
            raise CommandError(f"--set {pair!r}: expected KEY=VALUE")
        if key not in spec.secret_keys:
            raise CommandError(
                f"--set {key}: {spec.label} keeps no such key; it keeps "
                f"{', '.join(spec.secret_keys)}"
            )
        values[key] = value
    return values


def _read_secret(client: Any, name: str) -> dict[str, str]:
    """The secret's keys, or none when it does not exist yet."""
    try:
        found = client.get_secret_value(SecretId=name)
    except client.exceptions.ResourceNotFoundException:
        return {}
    except botocore.exceptions.ClientError as exc:
        raise CommandError(f"cannot read the secret {name}: {exc}") from None
    values = json.loads(found["SecretString"])
    if not isinstance(values, dict):
        raise CommandError(f"the secret {name} is not a JSON object")
    return {str(key): str(value) for key, value in values.items()}


def _report(
    spec: VendorSpec[Any],
    name: str,
    before: Mapping[str, str],
    after: Mapping[str, str],
    connection: str,
) -> None:
    table = Table(title=f"{name} ({spec.label})", title_justify="left")
    for column in ("key", "state", "what it is"):
        table.add_column(column, overflow="fold")
    for key, what in spec.secret_keys.items():
        if key not in after:
            state = "[bold red]missing[/bold red]"
        elif before.get(key) == after[key]:
            state = "kept"
        else:
            state = "[green]stored[/green]"
        table.add_row(key, state, escape(what))
    console.print(table)
    missing = [key for key in spec.secret_keys if key not in after]
    if missing:
        console.print(
            f"Still missing: {', '.join(missing)}. Add them with `crmsync connect "
            f"{spec.name} --connection {connection} --set KEY=VALUE` (the other keys stay).",
            soft_wrap=True,
        )


def _arguments(parser: argparse.ArgumentParser) -> None:
    specs = vendors()
    environments = sorted({name for spec in specs for name in spec.environments} | {"production"})
    parser.add_argument("vendor", choices=[spec.name for spec in specs], help="the vendor")
    parser.add_argument("--connection", required=True, help="the connection's id")
    parser.add_argument(
        "--environment",
        choices=environments,
        help="the vendor's environment (default: the one the stack was deployed with, "
        "its <vendor>_environment; ignored with --local)",
    )
    parser.add_argument(
        "--client-id",
        help=f"the app's OAuth client id (else $CRMSYNC_<VENDOR>_{CLIENT_ID_ENV}, the stored one)",
    )
    parser.add_argument(
        "--client-secret",
        help=f"the app's OAuth client secret (else $CRMSYNC_<VENDOR>_{CLIENT_SECRET_ENV}, the "
        "stored one, a prompt)",
    )
    parser.add_argument(
        "--scope", action="append", help="a scope to ask for instead of the vendor's (repeat it)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a secret key the flow does not fill (a webhook key, say); repeat it",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=oauth.DEFAULT_PORT,
        help=f"the local port the redirect comes back to (default: {oauth.DEFAULT_PORT})",
    )
    parser.add_argument(
        "--redirect-uri",
        help="the registered redirect URI, when it is not http://localhost:<port>/callback "
        "(a tunnel to the port)",
    )
    parser.add_argument(
        "--no-browser", action="store_true", help="print the authorize URL, open no browser"
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait for the redirect"
    )
    add_deployment_arguments(parser)


COMMAND = Command(
    help="authorize crmsync at a vendor (OAuth in the browser) and store the connection's "
    "secret for it (a deployed stack, or --local)",
    run=run,
    add_arguments=_arguments,
)
