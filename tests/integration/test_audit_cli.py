"""``crmsync audit``: one record's trail, from the Audit table's record index.

Against the local stack's moto server, as an operator runs it against AWS: entries
of several records and connections are recorded as the functions record them, and
the command prints only the asked record's, newest first.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from local.cli import main
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


def audit(stack: LocalStack, record: str, *extra: str) -> int:
    return main(
        [
            "audit",
            record,
            "--connection",
            "acme",
            "--table",
            stack.resources.tables["Audit"],
            "--endpoint-url",
            stack.urls.moto,
            *extra,
        ]
    )


def test_given_a_record_when_audited_as_json_then_its_own_entries_newest_first(
    stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    assert audit(stack, "hubspot:contact:7", "--json") == 0

    entries = json.loads(capsys.readouterr().out)
    assert [(e["event_id"], e["outcome"]) for e in entries] == [
        ("evt-2", "created"),
        ("evt-0", "invalid"),
    ]
    assert (entries[1]["field"], entries[1]["rule"]) == ("email", "required")


def test_given_a_record_when_audited_then_a_table_says_what_happened_and_why(
    stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    assert audit(stack, "hubspot:contact:7") == 0

    out = capsys.readouterr().out
    assert "invalid" in out and "email: is required" in out
    assert "evt-1" not in out, "another record's entry"
    assert "evt-3" not in out, "another connection's entry"


def test_given_a_record_without_entries_then_it_says_so_and_how_keys_look(
    stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    assert audit(stack, "hubspot:contact:404") == 0

    assert "no audit entries for hubspot:contact:404" in capsys.readouterr().out


def test_given_a_table_that_does_not_exist_then_exit_1_naming_it(
    stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "audit",
            "hubspot:contact:7",
            "--connection",
            "acme",
            "--table",
            "no-such-table",
            "--endpoint-url",
            stack.urls.moto,
        ]
    )

    assert code == 1
    assert "no-such-table" in capsys.readouterr().err
