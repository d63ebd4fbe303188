"""The CDK app: ``npx cdk synth`` / ``npx cdk deploy`` run ``python -m infra.app``.

Context (``-c key=value``): ``connection`` (default ``default``) names this deployment
and its secrets; ``alarm_email`` subscribes an address to the alarm topic;
``mapping_file`` (default ``config/services.yaml``) is validated before anything is
built and ships inside the Lambda code.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from aws_cdk import App, Environment, Validations
from aws_cdk import aws_lambda as lambda_
from cdk_nag import AwsSolutionsChecks

from infra.bundling import ROOT, BundlingError, build_lambda_code
from infra.stack import CrmSyncStack
from shared.errors import MappingConfigError
from shared.mapping import load_mapping

DEFAULT_CONNECTION = "default"
DEFAULT_MAPPING_FILE = "config/services.yaml"
# Part of the stack name and of every secret name.
_CONNECTION_ID = re.compile(r"[A-Za-z0-9-]{1,64}")


def build_app(
    *,
    outdir: str | None = None,
    context: Mapping[str, Any] | None = None,
    code: lambda_.Code | None = None,
) -> tuple[App, CrmSyncStack]:
    """The app and its stack; ``code`` replaces the built bundle (tests pass a small one).

    Raises ``SystemExit`` with a clear message when the context is wrong.
    """
    app = App(outdir=outdir or os.environ.get("CDK_OUTDIR", "cdk.out"), context=dict(context or {}))
    connection_id = str(app.node.try_get_context("connection") or DEFAULT_CONNECTION)
    if not _CONNECTION_ID.fullmatch(connection_id):
        raise SystemExit(
            f"crmsync: connection {connection_id!r} must be 1-64 letters, digits or hyphens"
        )
    alarm_email = app.node.try_get_context("alarm_email") or None
    mapping_file = _checked_mapping_file(
        str(app.node.try_get_context("mapping_file") or DEFAULT_MAPPING_FILE)
    )
    if code is None:
        try:
            code = lambda_.Code.from_asset(str(build_lambda_code()))
        except BundlingError as exc:
            raise SystemExit(f"crmsync: {exc}") from exc

    stack = CrmSyncStack(
        app,
        f"CrmSync-{connection_id}",
        code=code,
        connection_id=connection_id,
        mapping_file=mapping_file,
        alarm_email=alarm_email,
        description=f"crmsync: HubSpot -> QuickBooks Online sync for connection {connection_id}",
        env=Environment(
            account=os.environ.get("CDK_DEFAULT_ACCOUNT"),
            region=os.environ.get("CDK_DEFAULT_REGION"),
        ),
    )
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app, stack


def _checked_mapping_file(value: str) -> PurePosixPath:
    """Validate the mapping file now, so a broken one stops synth instead of every sync,
    and return its path inside the Lambda bundle."""
    path = Path(value)
    path = path if path.is_absolute() else ROOT / path
    try:
        load_mapping(path)
    except MappingConfigError as exc:
        raise SystemExit(f"crmsync: invalid mapping file: {exc}") from exc
    config = ROOT / "config"
    if not path.resolve().is_relative_to(config):
        raise SystemExit(f"crmsync: mapping file {path} must be under {config} to be deployed")
    return PurePosixPath(path.resolve().relative_to(ROOT).as_posix())


def main() -> None:
    app, _ = build_app()
    app.synth()


if __name__ == "__main__":
    main()
