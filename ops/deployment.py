"""The stack a command works on, found by name through its outputs.

Deployed: CloudFormation's ``DescribeStacks`` with the user's AWS profile and region
(boto3's own lookup: ``--profile``/``--region``, else ``AWS_PROFILE``, ``~/.aws``).
Local (``--local``): the same call against the moto server of a running
``crmsync up``, which registers the stack's outputs there under the config's stack name.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
from pydantic import ValidationError

from infra.context import DEFAULT_STACK
from infra.outputs import StackOutputs
from local.config import LOOPBACK, NO_VENDOR, LocalConfig, LocalConfigError
from local.sandboxes.registry import SANDBOXES, sandbox
from ops.command import CommandError
from shared.bootstrap import Container
from shared.models import Connection
from shared.settings import Settings

# What reading AWS may raise besides an answer: unreachable, no or expired
# credentials (an SSO session), a timeout; powertools wraps a table read's errors.
AWS_ERRORS = (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError, GetParameterError)


@dataclass(frozen=True)
class Deployment:
    """A running crmsync stack: its outputs, and clients in its account and region."""

    stack: str
    outputs: StackOutputs
    session: boto3.session.Session
    endpoint_url: str | None = None
    # Locally, the vendors are the sandboxes: {vendor: {setting: value}}.
    vendor_settings: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        return self.session.client(service, endpoint_url=self.endpoint_url)  # type: ignore[call-overload]

    @cached_property
    def container(self) -> Container:
        """The functions' adapters, wired to this stack's resources and deployed
        settings, for commands that run the core here (previews, backfills): the same
        stores, queue, call budgets and vendor environments as the functions."""
        outputs = self.outputs
        settings = Settings.model_validate(
            {
                **outputs.function_settings,
                "connections_table": outputs.connections_table,
                "links_table": outputs.links_table,
                "audit_table": outputs.audit_table,
                "cursors_table": outputs.cursors_table,
                "events_queue_url": outputs.events_queue_url,
                "events_dlq_url": outputs.dead_letter_queue_url,
            }
        )
        vendors = self.vendor_settings or outputs.vendor_settings
        return Container(settings, self.session, self.endpoint_url, vendors)

    def connections(self, connection_id: str | None = None) -> list[Connection]:
        """Every connection of the stack, or the one named: a ``CommandError`` for an
        unknown one (naming those there are) or an unreadable table."""
        table = self.outputs.connections_table
        try:
            connections = self.container.connections.all()
        except AWS_ERRORS as exc:
            raise CommandError(f"cannot read the connections table {table}: {exc}") from None
        if connection_id is None:
            return connections
        named = [c for c in connections if c.id == connection_id]
        if not named:
            known = ", ".join(c.id for c in connections) or "none"
            raise CommandError(f"no connection {connection_id!r} in {table} (there: {known})")
        return named

    @classmethod
    def find(
        cls, stack: str, session: boto3.session.Session, endpoint_url: str | None = None
    ) -> Deployment:
        where = f"at {endpoint_url}" if endpoint_url else f"in {session.region_name or 'AWS'}"
        try:
            found = session.client("cloudformation", endpoint_url=endpoint_url).describe_stacks(
                StackName=stack
            )["Stacks"][0]
        except botocore.exceptions.ClientError as exc:
            if exc.response["Error"]["Code"] == "ValidationError":
                raise CommandError(
                    f"no stack {stack!r} {where}: deploy it (`npx cdk deploy -c stack={stack}`),"
                    " start `crmsync up` for --local, or name another with --stack"
                ) from None
            raise CommandError(f"cannot read stack {stack!r}: {exc}") from None
        except botocore.exceptions.BotoCoreError as exc:
            hint = " (is `crmsync up` running?)" if endpoint_url else ""
            raise CommandError(f"cannot reach AWS {where}: {exc}{hint}") from None
        outputs = {o["OutputKey"]: o["OutputValue"] for o in found.get("Outputs", [])}
        try:
            return cls(stack, StackOutputs.from_outputs(outputs), session, endpoint_url)
        except ValidationError as exc:
            missing = ", ".join(str(e["loc"][0]) for e in exc.errors())
            raise CommandError(
                f"stack {stack!r} lacks the outputs {missing}: is it a crmsync stack of this "
                "version? `npx cdk deploy` it again"
            ) from None


def add_deployment_arguments(parser: argparse.ArgumentParser) -> None:
    """``--stack``/``--profile``/``--region`` for AWS, or ``--local`` for ``crmsync up``."""
    where = parser.add_argument_group("which stack")
    where.add_argument(
        "--stack",
        help=f"the deployed stack's name (default: {DEFAULT_STACK}; with --local, "
        "the config's `stack`)",
    )
    where.add_argument("--profile", help="the AWS profile (default: boto3's usual lookup)")
    where.add_argument("--region", help="the AWS region (default: the profile's)")
    where.add_argument(
        "--local",
        action="store_true",
        help="the stack of a running `crmsync up` (its moto server, per --config)",
    )


def deployment_of(args: argparse.Namespace) -> Deployment:
    """The stack named by the arguments of ``add_deployment_arguments``."""
    if not args.local:
        try:
            session = boto3.session.Session(profile_name=args.profile, region_name=args.region)
        except botocore.exceptions.ProfileNotFound as exc:
            raise CommandError(str(exc)) from None
        return Deployment.find(args.stack or DEFAULT_STACK, session)
    config = load_config(args.config)
    if not config.ports.moto:
        raise CommandError(
            f"{args.config}: --local needs a fixed `ports.moto` (a port of 0 is not findable)"
        )
    session = boto3.session.Session(
        aws_access_key_id=config.aws.access_key_id,
        aws_secret_access_key=config.aws.secret_access_key,
        region_name=config.aws.region,
    )
    found = Deployment.find(
        args.stack or config.stack, session, f"http://{LOOPBACK}:{config.ports.moto}"
    )
    # Every vendor is its sandbox, or nothing: never the real one (a port of 0 is not
    # findable, so such a vendor points nowhere).
    ports = config.ports.sandboxes
    sandboxes = {
        name: sandbox(name).settings(
            f"http://{LOOPBACK}:{ports[name]}" if ports.get(name) else NO_VENDOR
        )
        for name in SANDBOXES
    }
    return replace(found, vendor_settings=sandboxes)


def load_config(path: Path) -> LocalConfig:
    """The local config with valid connections, or a ``CommandError`` saying what is wrong."""
    try:
        return LocalConfig.load(path)
    except LocalConfigError as exc:
        raise CommandError(str(exc)) from None
