"""``infra.app.build_app``: context handling (the stack's name, the alarm email)."""

from __future__ import annotations

from pathlib import Path

import pytest
from aws_cdk import aws_lambda as lambda_
from aws_cdk.assertions import Template

from infra.app import DEFAULT_STACK, build_app
from infra.environment import settings_env_name

pytestmark = pytest.mark.infra


@pytest.fixture
def small_code(tmp_path: Path) -> lambda_.Code:
    code = tmp_path / "code"
    code.mkdir()
    (code / "handler.py").write_text("def handler(event, context): ...\n")
    return lambda_.Code.from_asset(str(code))


@pytest.mark.parametrize(
    "name",
    ["acme corp", "1crmsync", "-crmsync", "crmsync_eu", "crm/sync", "c" * 65],
    ids=["space", "leading-digit", "leading-hyphen", "underscore", "slash", "too-long"],
)
def test_given_a_bad_stack_name_when_building_the_app_then_synth_stops_naming_it(
    tmp_path: Path, small_code: lambda_.Code, name: str
) -> None:
    with pytest.raises(SystemExit) as stopped:
        build_app(outdir=str(tmp_path / "out"), context={"stack": name}, code=small_code)

    message = str(stopped.value.code)
    assert message.startswith(f"crmsync: stack {name!r} must be")
    assert "letters, digits or hyphens" in message


@pytest.mark.parametrize("name", ["c", "c" * 64, "crmsync-EU-2"])
def test_given_a_valid_stack_name_when_building_the_app_then_the_stack_is_named_so(
    tmp_path: Path, small_code: lambda_.Code, name: str
) -> None:
    _, stack = build_app(outdir=str(tmp_path / "out"), context={"stack": name}, code=small_code)

    assert stack.stack_name == name


def test_given_no_context_when_building_the_app_then_the_stack_has_the_default_name(
    tmp_path: Path, small_code: lambda_.Code
) -> None:
    _, stack = build_app(outdir=str(tmp_path / "out"), context={}, code=small_code)

    assert stack.stack_name == DEFAULT_STACK == "crmsync"


def test_given_a_stack_name_and_alarm_email_when_synthesized_then_nag_passes_and_both_are_used(
    tmp_path: Path, small_code: lambda_.Code
) -> None:
    _, stack = build_app(
        outdir=str(tmp_path / "out"),
        context={"stack": "crmsync-eu", "alarm_email": "ops@example.com"},
        code=small_code,
    )

    # The app's own synth, with its cdk-nag plugin: unacknowledged findings would raise here.
    template = Template.from_stack(stack)
    assert stack.stack_name == "crmsync-eu"
    template.has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "ops@example.com"}
    )
    functions = template.find_resources("AWS::Lambda::Function").values()
    assert functions
    for function in functions:
        variables = function["Properties"]["Environment"]["Variables"]
        assert settings_env_name("connections_table") in variables
        # The stack's name is no connection: nothing connection-specific reaches a function.
        assert "crmsync-eu" not in str(variables)
