"""One synthesized app for the whole infra suite: synth is the slow part (seconds)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from aws_cdk import App
    from aws_cdk.assertions import Template

    from infra.stack import CrmSyncStack

# Before the first CDK import starts jsii: its Node end-of-life banner buries test output.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

STACK_NAME = "crmsync-test"
ALARM_EMAIL = "ops@example.com"


@dataclass(frozen=True)
class Synthesized:
    app: App
    stack: CrmSyncStack  # with an alarm email
    template: Template
    template_json: dict[str, Any]
    template_path: Path
    quiet_template: Template  # the same stack without an alarm email


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    from aws_cdk import App
    from aws_cdk import aws_lambda as lambda_
    from aws_cdk.assertions import Template

    from infra.stack import CrmSyncStack

    # A tiny stand-in for build/lambda: the stack needs an asset, not the pip step.
    code_dir = tmp_path_factory.mktemp("code")
    (code_dir / "handler.py").write_text("def handler(event, context): ...\n")
    app = App(outdir=str(tmp_path_factory.mktemp("cdk.out")))
    stack = CrmSyncStack(
        app, STACK_NAME, code=lambda_.Code.from_asset(str(code_dir)), alarm_email=ALARM_EMAIL
    )
    quiet = CrmSyncStack(app, "crmsync-quiet", code=lambda_.Code.from_asset(str(code_dir)))
    assembly = app.synth()  # once for both stacks; Template.from_stack re-synths every call
    artifact = assembly.get_stack_by_name(stack.stack_name)
    template_json: dict[str, Any] = artifact.template
    return Synthesized(
        app=app,
        stack=stack,
        template=Template.from_json(template_json),
        template_json=template_json,
        template_path=Path(artifact.template_full_path),
        quiet_template=Template.from_json(assembly.get_stack_by_name(quiet.stack_name).template),
    )
