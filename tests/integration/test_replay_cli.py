"""``crmsync replay``: a record whose newest audit entry since a date is invalid (or
rejected) gets one fresh event on the events queue, which the (stand-in) sync
function receives; a record applied since, or refused before the date, does not.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from local.runtime import LocalStack
from shared.models import ChangeEvent, ChangeKind, Outcome
from tests.integration.operator_cli import (
    another_connection,
    audited,
    crmsync,
    operator_stack,
)
from tests.integration.test_local_runtime import StandIns

SINCE = datetime.now(UTC) - timedelta(days=1)


@pytest.fixture(scope="module")
def standins() -> StandIns:
    return StandIns()


@pytest.fixture(scope="module")
def running(
    standins: StandIns, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LocalStack, Path]]:
    with operator_stack(standins, tmp_path_factory.mktemp("replay")) as (stack, config):
        another_connection(stack, "initech")
        for hours, record, outcome, connection in (
            (2, "hubspot:contact:fixed", Outcome.INVALID, "demo"),
            (1, "hubspot:contact:fixed", Outcome.CREATED, "demo"),  # applied since
            (3, "hubspot:contact:broken", Outcome.INVALID, "demo"),
            (1, "hubspot:deal:refused", Outcome.REJECTED, "demo"),
            (72, "hubspot:contact:long-ago", Outcome.INVALID, "demo"),  # before SINCE
            (1, "hubspot:company:elsewhere", Outcome.INVALID, "initech"),
        ):
            audited(
                stack,
                record,
                outcome,
                datetime.now(UTC) - timedelta(hours=hours),
                connection=connection,
                reason=f"{outcome}: email is required",
            )
        yield stack, config


@pytest.fixture
def stack(running: tuple[LocalStack, Path], standins: StandIns) -> Iterator[LocalStack]:
    yield running[0]
    standins.reset()


def replay(running: tuple[LocalStack, Path], capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    assert crmsync(running[1], "replay", "--since", SINCE.isoformat(), "--json", *argv) == 0
    return json.loads(capsys.readouterr().out)


def received(stack: LocalStack, standins: StandIns) -> list[ChangeEvent]:
    assert stack.wait_until_drained(10)
    return [ChangeEvent.model_validate_json(body) for body in standins.bodies()]


def test_given_records_refused_as_invalid_when_replayed_then_each_still_refused_is_synced_again(
    stack: LocalStack,
    running: tuple[LocalStack, Path],
    standins: StandIns,
    capsys: pytest.CaptureFixture[str],
) -> None:
    replayed = replay(running, capsys, "--outcome", "invalid")

    # Every connection's: the refusal elsewhere too, not the one fixed nor the one too old.
    assert sorted((e["connection"], e["record"]) for e in replayed["events"]) == [
        ("demo", "hubspot:contact:broken"),
        ("initech", "hubspot:company:elsewhere"),
    ]
    assert replayed["dry_run"] is False
    events = received(stack, standins)
    assert sorted((e.connection_id, e.record_key) for e in events) == [
        ("demo", "hubspot:contact:broken"),
        ("initech", "hubspot:company:elsewhere"),
    ]
    assert all(e.kind is ChangeKind.RECONCILE for e in events), "read as it is now"
    assert {e.event_id for e in events} == {e["event_id"] for e in replayed["events"]}
    assert all(e.event_id.startswith("replay:") for e in events)


def test_given_one_connection_and_rejected_when_replayed_then_only_its_rejected_record(
    stack: LocalStack,
    running: tuple[LocalStack, Path],
    standins: StandIns,
    capsys: pytest.CaptureFixture[str],
) -> None:
    replayed = replay(running, capsys, "--outcome", "rejected", "--connection", "demo")

    assert [e["record"] for e in replayed["events"]] == ["hubspot:deal:refused"]
    assert replayed["events"][0]["reason"] == "rejected: email is required"
    assert [e.record_key for e in received(stack, standins)] == ["hubspot:deal:refused"]


def test_given_a_dry_run_then_it_says_what_it_would_enqueue_and_enqueues_nothing(
    stack: LocalStack,
    running: tuple[LocalStack, Path],
    standins: StandIns,
    capsys: pytest.CaptureFixture[str],
) -> None:
    replayed = replay(running, capsys, "--outcome", "invalid", "--dry-run")

    assert replayed["dry_run"] is True
    assert len(replayed["events"]) == 2
    assert received(stack, standins) == []


def test_given_a_date_that_is_not_one_then_the_usage_says_so(
    running: tuple[LocalStack, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        crmsync(running[1], "replay", "--outcome", "invalid", "--since", "yesterday")

    assert exited.value.code == 2
    assert "'yesterday' is not a date" in capsys.readouterr().err


def test_given_an_outcome_that_is_not_a_refusal_then_the_usage_says_so(
    running: tuple[LocalStack, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        crmsync(running[1], "replay", "--outcome", "failed", "--since", SINCE.isoformat())

    assert "invalid choice: 'failed'" in capsys.readouterr().err
