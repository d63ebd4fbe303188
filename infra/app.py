"""The CDK app: ``npx cdk synth`` / ``npx cdk deploy`` run ``python -m infra.app``.

Context (``-c key=value``): ``stack`` (default ``crmsync``) names the deployment;
``alarm_email`` subscribes an address to the alarm topic. One deployment serves many
connections, each added at run time (``crmsync connect``), so no mapping ships here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from aws_cdk import App, Environment, Validations
from aws_cdk import aws_lambda as lambda_
from cdk_nag import AwsSolutionsChecks

from infra.bundling import BundlingError, build_lambda_code
from infra.stack import CrmSyncStack

DEFAULT_STACK = "crmsync"
_STACK_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,63}")


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
    stack_name = str(app.node.try_get_context("stack") or DEFAULT_STACK)
    if not _STACK_NAME.fullmatch(stack_name):
        raise SystemExit(
            f"crmsync: stack {stack_name!r} must be 1-64 letters, digits or hyphens, "
            "starting with a letter"
        )
    alarm_email = app.node.try_get_context("alarm_email") or None
    if code is None:
        try:
            code = lambda_.Code.from_asset(str(build_lambda_code()))
        except BundlingError as exc:
            raise SystemExit(f"crmsync: {exc}") from exc

    stack = CrmSyncStack(
        app,
        stack_name,
        code=code,
        alarm_email=alarm_email,
        description="crmsync: CRM -> accounting sync for the connections in its table",
        env=Environment(
            account=os.environ.get("CDK_DEFAULT_ACCOUNT"),
            region=os.environ.get("CDK_DEFAULT_REGION"),
        ),
    )
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app, stack


def main() -> None:
    app, _ = build_app()
    app.synth()


if __name__ == "__main__":
    main()
