"""``crmsync audit``: one record's trail, from the Audit table's record index.

Against the local stack's moto server, as an operator runs it against AWS: entries
of several records and connections are recorded as the functions record them, and
the command prints only the asked record's, newest first.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from local.cli import main
from local.config import Ports
from local.runtime import LocalStack
from shared.models import AuditEntry, Outcome
from shared.stores import DynamoAuditLog
from tests.integration.test_local_runtime import StandIns, free_config

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with LocalStack(free_config(), handlers=StandIns().handlers(), sandboxes=False) as running:
        log = DynamoAuditLog(running.clients.dynamodb, running.resources.tables["Audit"], 30)
        for minutes, connection, record, outcome in (
            (0, "acme", "hubspot:contact:7", Outcome.INVALID),
            (1, "acme", "hubspot:contact:8", Outcome.CREATED),
            (2, "acme", "hubspot:contact:7", Outcome.CREATED),
            (3, "initech", "hubspot:contact:7", Outcome.CREATED),
        ):
            log.record(
                AuditEntry(
                    connection_id=connection,
                    record_key=record,
                    event_id=f"evt-{minutes}",
                    outcome=outcome,
                    reason="email: is required (required)" if outcome is Outcome.INVALID else "",
                    field="email" if outcome is Outcome.INVALID else None,
                    rule="required" if outcome is Outcome.INVALID else None,
                    at=T0 + timedelta(minutes=minutes),
                )
            )
        yield running


@pytest.fixture(scope="module")
def config_file(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("audit") / "local.yaml"
    stack.running_config.write(path)
    return path


def audit(config_file: Path, record: str, *extra: str) -> int:
    return main(
        [
            "audit",
            record,
            "--connection",
            "acme",
            "--local",
            "--config",
            str(config_file),
            *extra,
        ]
    )


def test_given_a_record_when_audited_as_json_then_its_own_entries_newest_first(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert audit(config_file, "hubspot:contact:7", "--json") == 0

    entries = json.loads(capsys.readouterr().out)
    assert [(e["event_id"], e["outcome"]) for e in entries] == [
        ("evt-2", "created"),
        ("evt-0", "invalid"),
    ]
    assert (entries[1]["field"], entries[1]["rule"]) == ("email", "required")


def test_given_a_record_when_audited_then_a_table_says_what_happened_and_why(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert audit(config_file, "hubspot:contact:7") == 0

    out = capsys.readouterr().out
    assert "invalid" in out and "email: is required" in out
    assert "evt-1" not in out, "another record's entry"
    assert "evt-3" not in out, "another connection's entry"


def test_given_a_record_without_entries_then_it_says_so_and_how_keys_look(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert audit(config_file, "hubspot:contact:404") == 0

    assert "no audit entries for hubspot:contact:404" in capsys.readouterr().out


def test_given_a_stack_that_does_not_exist_then_exit_1_naming_it_and_what_to_do(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = audit(config_file, "hubspot:contact:7", "--stack", "no-such-stack")

    assert code == 1
    err = capsys.readouterr().err
    assert "no stack 'no-such-stack'" in err and "cdk deploy" in err


def test_given_no_running_local_stack_then_exit_1_asking_whether_it_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        unused = probe.getsockname()[1]
    config = free_config().model_copy(update={"ports": Ports(moto=unused, api=0)})
    config.write(tmp_path / "local.yaml")

    assert audit(tmp_path / "local.yaml", "hubspot:contact:7") == 1
    assert "is `crmsync up` running?" in capsys.readouterr().err
