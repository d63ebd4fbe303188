"""``crmsync connect``: a connection added to a running deployment, no redeploy.

Against the local stack's moto server, as an operator runs it against AWS: the
command checks the mapping and each secret against what the vendors declare, then
stores the secrets and the connection's row, which the functions read at run time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from local.cli import main
from local.runtime import LocalStack
from shared.connectors.registry import vendor
from shared.connectors.spec import secret_id
from shared.stores import DynamoConnections
from tests.integration.test_local_runtime import StandIns, free_config

REPO = Path(__file__).resolve().parents[2]
SALESFORCE_PRESET = REPO / "config" / "salesforce" / "services.yaml"


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with LocalStack(free_config(), handlers=StandIns().handlers(), sandboxes=False) as running:
        yield running


def secret_file(tmp_path: Path, name: str, **leave_out: Any) -> Path:
    """A secret with every key the vendor declares, less those named in ``leave_out``."""
    values = {key: f"{name}-{key}" for key in vendor(name).secret_keys if key not in leave_out}
    path = tmp_path / f"{name}{'-without-' + '-'.join(leave_out) if leave_out else ''}.json"
    path.write_text(json.dumps(values))
    return path


def connect(
    stack: LocalStack, tmp_path: Path, connection_id: str = "initech", **files: Path
) -> int:
    """``crmsync connect`` of a Salesforce → Xero connection; ``files`` replace the
    mapping, the CRM's or the accounting system's secret."""
    return main(
        [
            "connect",
            "--id",
            connection_id,
            "--crm",
            "salesforce",
            "--accounting",
            "xero",
            "--mapping",
            str(files.get("mapping", SALESFORCE_PRESET)),
            "--crm-secret",
            str(files.get("crm") or secret_file(tmp_path, "salesforce")),
            "--accounting-secret",
            str(files.get("accounting") or secret_file(tmp_path, "xero")),
            "--table",
            stack.resources.tables["Connections"],
            "--endpoint-url",
            stack.urls.moto,
        ]
    )


def stored(stack: LocalStack) -> DynamoConnections:
    return DynamoConnections(
        stack.clients.dynamodb,
        boto3.session.Session().resource("dynamodb", endpoint_url=stack.urls.moto),
        stack.resources.tables["Connections"],
    )


def test_given_a_new_connection_when_connected_then_its_row_and_secrets_are_stored(
    stack: LocalStack, tmp_path: Path
) -> None:
    assert connect(stack, tmp_path) == 0

    connection = stored(stack).get("initech")
    assert connection is not None
    assert (connection.crm, connection.accounting) == ("salesforce", "xero")
    assert connection.mapping == SALESFORCE_PRESET.read_text()
    for name in ("salesforce", "xero"):
        value = stack.clients.secretsmanager.get_secret_value(SecretId=secret_id("initech", name))
        assert json.loads(value["SecretString"]) == json.loads(
            secret_file(tmp_path, name).read_text()
        )
    # The connections the stack started with are still there.
    assert {c.id for c in stored(stack).all()} >= {
        "initech",
        *(c.id for c in stack.config.connections),
    }


def test_given_a_connection_again_when_connected_then_it_is_changed_in_place(
    stack: LocalStack, tmp_path: Path
) -> None:
    assert connect(stack, tmp_path) == 0
    rotated = tmp_path / "xero-rotated.json"
    values = json.loads(secret_file(tmp_path, "xero").read_text()) | {"refresh_token": "new"}
    rotated.write_text(json.dumps(values))

    assert connect(stack, tmp_path, accounting=rotated) == 0

    value = stack.clients.secretsmanager.get_secret_value(SecretId=secret_id("initech", "xero"))
    assert json.loads(value["SecretString"])["refresh_token"] == "new"


@pytest.mark.parametrize(
    ("problem", "says"),
    [
        ("secret without a key", "Xero needs tenant_id"),
        ("mapping for another CRM", "written for source 'hubspot'"),
        ("secret that is not JSON strings", "a secret is a JSON object of strings"),
    ],
)
def test_given_a_wrong_connection_when_connected_then_exit_1_saying_why_and_nothing_stored(
    stack: LocalStack,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    problem: str,
    says: str,
) -> None:
    files: dict[str, Path] = {}
    if problem == "secret without a key":
        files["accounting"] = secret_file(tmp_path, "xero", tenant_id=True)
    elif problem == "mapping for another CRM":
        files["mapping"] = REPO / "config" / "hubspot" / "services.yaml"
    else:
        files["crm"] = tmp_path / "bad.json"
        files["crm"].write_text('{"client_id": 7}')
    before = {c.id: c for c in stored(stack).all()}

    status = connect(stack, tmp_path, "umbrella", **files)

    assert status == 1
    assert says in " ".join(capsys.readouterr().err.split())
    assert {c.id: c for c in stored(stack).all()} == before
