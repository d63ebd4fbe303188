"""``infra.app.build_app``: context handling and the synth-time mapping-file check."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from aws_cdk import aws_lambda as lambda_
from aws_cdk.assertions import Match, Template

from infra.app import DEFAULT_MAPPING_FILE, build_app
from infra.bundling import ROOT

pytestmark = pytest.mark.infra


@pytest.fixture
def small_code(tmp_path: Path) -> lambda_.Code:
    code = tmp_path / "code"
    code.mkdir()
    (code / "handler.py").write_text("def handler(event, context): ...\n")
    return lambda_.Code.from_asset(str(code))


def test_given_a_broken_mapping_file_when_building_the_app_then_synth_stops_naming_the_problem(
    tmp_path: Path, small_code: lambda_.Code
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\nobjects: {}\ncolour: blue\n")

    with pytest.raises(SystemExit) as stopped:
        build_app(
            outdir=str(tmp_path / "out"), context={"mapping_file": str(broken)}, code=small_code
        )

    message = str(stopped.value.code)
    assert message.startswith("crmsync: invalid mapping file:")
    assert str(broken) in message
    assert "colour" in message


def test_given_a_valid_mapping_file_outside_config_when_building_the_app_then_synth_stops(
    tmp_path: Path, small_code: lambda_.Code
) -> None:
    elsewhere = tmp_path / "services.yaml"
    shutil.copy(ROOT / DEFAULT_MAPPING_FILE, elsewhere)

    with pytest.raises(SystemExit, match=r"must be under .*config to be deployed"):
        build_app(
            outdir=str(tmp_path / "out"), context={"mapping_file": str(elsewhere)}, code=small_code
        )


def test_given_a_connection_id_with_spaces_when_building_the_app_then_synth_stops(
    tmp_path: Path, small_code: lambda_.Code
) -> None:
    with pytest.raises(SystemExit, match="connection 'acme corp' must be"):
        build_app(
            outdir=str(tmp_path / "out"), context={"connection": "acme corp"}, code=small_code
        )


def test_given_a_connection_and_mapping_file_when_synthesized_then_the_stack_uses_them(
    tmp_path: Path, small_code: lambda_.Code
) -> None:
    _, stack = build_app(
        outdir=str(tmp_path / "out"),
        context={"connection": "acme", "mapping_file": "config/ecommerce.yaml"},
        code=small_code,
    )

    # The app's own synth, with its cdk-nag plugin: unacknowledged findings would raise here.
    template = Template.from_stack(stack)
    assert stack.stack_name == "CrmSync-acme"
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Environment": {
                "Variables": Match.object_like(
                    {
                        "CRMSYNC_CONNECTION_ID": "acme",
                        "CRMSYNC_MAPPING_FILE": "/var/task/config/ecommerce.yaml",
                        "CRMSYNC_HUBSPOT_SECRET_ID": "crmsync/acme/hubspot",
                    }
                )
            }
        },
    )
