"""``crmsync status`` on the local stack: queue depths, dead letters by connection,
what was last applied, outcomes over the last hour and day, and the vendor call
budgets as the Cursors table holds them.

Audit entries are written at times relative to now, dead letters are sent as the
sync function sends them, and lanes are reserved by the call budget itself.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from local.runtime import LocalStack
from ops.command import console
from shared.models import Outcome
from shared.stores.ratelimit import DynamoCallBudget, Pace
from tests.integration.operator_cli import (
    another_connection,
    audited,
    crmsync,
    dead_letter,
    dead_letter_counts,
    event,
    operator_stack,
)
from tests.integration.test_local_runtime import StandIns

# Reserved by a worker whose clock is ten minutes ahead: its lane is taken until then.
AHEAD_S = 600


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalStack, Path]]:
    with operator_stack(StandIns(), tmp_path_factory.mktemp("status")) as (stack, config):
        another_connection(stack, "initech")
        now = datetime.now(UTC)
        for minutes, record, outcome in (
            (3 * 24 * 60, "hubspot:contact:1", Outcome.CREATED),  # the last applied
            (3 * 60, "hubspot:contact:2", Outcome.INVALID),  # today, not this hour
            (30, "hubspot:contact:3", Outcome.INVALID),
            (20, "hubspot:contact:3", Outcome.UNCHANGED),
            (10, "hubspot:deal:4", Outcome.FAILED),
        ):
            audited(stack, record, outcome, now - timedelta(minutes=minutes), reason="why")
        audited(stack, "hubspot:contact:9", Outcome.UPDATED, now, connection="initech")
        for record_id in ("4", "5"):
            dead_letter(stack, event(record_id))
        budget = DynamoCallBudget(
            stack.clients.dynamodb,
            stack.resources.tables["Cursors"],
            clock=lambda: time.time() + AHEAD_S,
        )
        assert budget.acquire("hubspot:demo", limit=100, per_s=10, max_wait_s=1) <= 1
        idle = DynamoCallBudget(
            stack.clients.dynamodb,
            stack.resources.tables["Cursors"],
            clock=lambda: time.time() - AHEAD_S,
        )
        assert idle.acquire("quickbooks:realm-1", limit=500, per_s=60, max_wait_s=1) <= 1
        yield stack, config


def status(config: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    assert crmsync(config, "status", "--json", *argv) == 0
    return json.loads(capsys.readouterr().out)


def test_given_a_stack_when_status_then_each_connection_says_what_it_did_lately(
    running: tuple[LocalStack, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    found = status(running[1], capsys)

    connections = {c["id"]: c for c in found["connections"]}
    assert set(connections) == {"demo", "initech"}
    demo = connections["demo"]
    assert demo["outcomes"] == {
        "last_hour": {"invalid": 1, "unchanged": 1, "failed": 1},
        "last_day": {"invalid": 2, "unchanged": 1, "failed": 1},
    }
    applied = demo["last_applied"]
    assert (applied["record"], applied["outcome"], applied["target"]) == (
        "hubspot:contact:1",
        "created",
        "quickbooks:invoice:9",
    ), "the newest applied entry, however old"
    assert connections["initech"]["last_applied"]["record"] == "hubspot:contact:9"
    assert connections["initech"]["outcomes"]["last_hour"] == {"updated": 1}


def test_given_dead_letters_when_status_then_counted_by_connection_and_left_in_place(
    running: tuple[LocalStack, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    stack, config = running

    found = status(config, capsys)

    dead = found["queues"]["dead_letters"]
    assert (dead["visible"], dead["in_flight"], dead["peeked"]) == (2, 0, 2)
    assert dead["oldest_sent_at"] is not None
    assert {c["id"]: c["dead_letters"] for c in found["connections"]} == {
        "demo": 2,
        "initech": 0,
    }
    assert dead_letter_counts(stack) == (2, 0), "status hides no dead letter"


def test_given_a_local_stack_then_the_events_queues_oldest_age_is_said_to_be_unknown(
    running: tuple[LocalStack, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    events = status(running[1], capsys)["queues"]["events"]

    assert (events["visible"], events["in_flight"]) == (0, 0)
    assert events["oldest_age_s"] is None  # moto publishes no SQS metrics
    assert events["oldest_age_from"].startswith("no CloudWatch datapoint")


def test_given_reserved_call_slots_when_status_then_each_budget_says_how_far_it_is_taken(
    running: tuple[LocalStack, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    found = status(running[1], capsys)
    budgets = {b["key"]: b for b in found["call_budgets"]}

    assert set(budgets) == {"hubspot:demo", "quickbooks:realm-1"}
    busy, idle = budgets["hubspot:demo"], budgets["quickbooks:realm-1"]
    assert (busy["vendor"], busy["limit"], busy["per_s"]) == ("hubspot", 100, 10)
    pace = Pace(100, 10, 1.02)
    assert busy["lanes"] == pace.lanes
    assert busy["lanes_taken"] == 1
    # Its lane is taken up to the slot reserved, AHEAD_S from now: each one in between
    # is passed over, no call's any more (status ran a little after the reservation).
    taken_s = busy["slots_taken"] * pace.interval * pace.lanes
    assert AHEAD_S - 60 < taken_s <= AHEAD_S + pace.interval * pace.lanes
    at = datetime.fromisoformat(found["at"])
    assert datetime.fromisoformat(busy["taken_until"]) > at + timedelta(seconds=AHEAD_S - 60)
    assert (idle["lanes_taken"], idle["slots_taken"]) == (0, 0), "its slots are all past"


def test_given_one_connection_named_then_only_it_is_shown(
    running: tuple[LocalStack, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    found = status(running[1], capsys, "--connection", "initech")

    assert [c["id"] for c in found["connections"]] == ["initech"]


def test_given_an_unknown_connection_then_exit_1_naming_the_known_ones(
    running: tuple[LocalStack, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert crmsync(running[1], "status", "--connection", "nope") == 1

    err = capsys.readouterr().err
    assert "no connection 'nope'" in err and "demo, initech" in err


def test_given_a_stack_when_status_then_tables_say_it_in_words(
    running: tuple[LocalStack, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(console, "width", 200)  # a terminal's: no cell folded

    assert crmsync(running[1], "status") == 0

    out = capsys.readouterr().out
    assert "connection demo: hubspot → quickbooks" in out
    assert "1 failed, 1 invalid, 1 unchanged" in out
    assert "hubspot:contact:1 created → quickbooks:invoice:9" in out
    assert "100 per 10 s" in out and "idle" in out
