"""``infra.app.build_app``: context handling (the stack's name, the alarm email)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aws_cdk import aws_lambda as lambda_
from aws_cdk.assertions import Template

from infra.app import build_app
from infra.context import DEFAULT_STACK, context_defaults
from infra.environment import settings_env_name
from infra.stack import CrmSyncStack
from shared.connectors.registry import vendor

ROOT = Path(__file__).resolve().parents[2]

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


# --- deploy context ---------------------------------------------------------------------


def _variables(stack: CrmSyncStack) -> list[dict[str, str]]:
    functions = Template.from_stack(stack).find_resources("AWS::Lambda::Function").values()
    return [f["Properties"]["Environment"]["Variables"] for f in functions]


def test_given_cdk_json_then_its_context_lists_every_setting_with_its_default() -> None:
    listed = json.loads((ROOT / "cdk.json").read_text(encoding="utf-8"))["context"]

    assert listed == context_defaults(), "cdk.json's context is stale: list infra.context's"


def test_given_tuned_settings_when_synthesized_then_every_function_runs_with_them(
    tmp_path: Path, small_code: lambda_.Code
) -> None:
    _, stack = build_app(
        outdir=str(tmp_path / "out"),
        context={"audit_ttl_days": "30", "call_pacing_margin": 1.1, "log_level": "debug"},
        code=small_code,
    )

    for variables in _variables(stack):
        assert variables[settings_env_name("audit_ttl_days")] == "30"
        assert variables[settings_env_name("call_pacing_margin")] == "1.1"
        assert variables["POWERTOOLS_LOG_LEVEL"] == "DEBUG"


def test_given_a_vendor_sandbox_environment_then_its_connector_settings_reach_the_functions(
    tmp_path: Path, small_code: lambda_.Code
) -> None:
    quickbooks = vendor("quickbooks")
    sandbox = quickbooks.environments["sandbox"]
    assert sandbox, "QuickBooks declares its sandbox company's API"

    _, stack = build_app(
        outdir=str(tmp_path / "out"),
        context={"quickbooks_environment": "sandbox"},
        code=small_code,
    )

    for variables in _variables(stack):
        for field, value in sandbox.items():
            assert variables[f"{quickbooks.env_prefix}{field.upper()}"] == value


@pytest.mark.parametrize(
    ("context", "says"),
    [
        ({"alarm_emial": "ops@example.com"}, "unknown context alarm_emial"),
        ({"call_pacing_margin": "5"}, "call_pacing_margin"),
        ({"log_level": "LOUD"}, "log_level 'LOUD'"),
        ({"alarm_email": "ops"}, "alarm_email 'ops' is not an email address"),
        (
            {"quickbooks_environment": "staging"},
            "quickbooks_environment: QuickBooks Online has no 'staging' environment",
        ),
    ],
    ids=["typo", "out-of-range", "log-level", "email", "environment"],
)
def test_given_a_wrong_context_value_then_synth_stops_saying_which_and_why(
    tmp_path: Path, small_code: lambda_.Code, context: dict[str, str], says: str
) -> None:
    with pytest.raises(SystemExit) as stopped:
        build_app(outdir=str(tmp_path / "out"), context=context, code=small_code)

    assert says in str(stopped.value.code)
