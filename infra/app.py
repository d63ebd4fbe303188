"""The CDK app: ``npx cdk synth`` / ``npx cdk deploy`` run ``python -m infra.app``.

Context (``cdk.json`` lists every key with its default; ``-c key=value`` overrides):
read by ``infra.context``. One deployment serves many connections, each added at run
time (``crmsync connection add``), so no mapping ships here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from aws_cdk import App, Environment, Validations
from aws_cdk import aws_lambda as lambda_
from cdk_nag import AwsSolutionsChecks

from infra.bundling import BundlingError, build_lambda_code
from infra.context import ContextError, DeployContext
from infra.stack import CrmSyncStack


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
    try:
        deploy = DeployContext.read(app.node.get_all_context())
    except ContextError as exc:
        raise SystemExit(f"crmsync: {exc}") from None
    if code is None:
        try:
            code = lambda_.Code.from_asset(str(build_lambda_code()))
        except BundlingError as exc:
            raise SystemExit(f"crmsync: {exc}") from exc

    stack = CrmSyncStack(
        app,
        deploy.stack,
        code=code,
        alarm_email=deploy.alarm_email,
        settings=deploy.settings,
        vendor_settings=deploy.vendor_settings,
        log_level=deploy.log_level,
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
