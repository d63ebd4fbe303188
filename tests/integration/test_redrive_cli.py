"""``crmsync redrive list|show|pick|all`` on the local stack's dead-letter queue.

Dead letters are change events sent to the DLQ as the sync function sends them, with
audit entries saying why. Listing leaves every letter in the queue and visible;
picking moves only the named ones, in their record's group, onto the events queue,
where the (stand-in) sync function receives them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.cli import main
from local.runtime import LocalStack
from ops.command import console
from shared.models import ChangeEvent, ObjectType, Outcome
from tests.integration.operator_cli import (
    T0,
    audited,
    crmsync,
    dead_letter,
    dead_letter_counts,
    empty_dead_letters,
    event,
    operator_stack,
)
from tests.integration.test_local_runtime import StandIns

FAILED_WHY = "AuthFailed: QuickBooks refused the credentials (401)"
REJECTED_WHY = "QuickBooks refused the invoice: Duplicate Document Number (6140)"


@pytest.fixture(scope="module")
def standins() -> StandIns:
    return StandIns()


@pytest.fixture(scope="module")
def running(
    standins: StandIns, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LocalStack, Path]]:
    with operator_stack(standins, tmp_path_factory.mktemp("redrive")) as found:
        yield found


@pytest.fixture
def stack(running: tuple[LocalStack, Path], standins: StandIns) -> Iterator[LocalStack]:
    yield running[0]
    empty_dead_letters(running[0])
    standins.reset()


@pytest.fixture
def config(running: tuple[LocalStack, Path]) -> Path:
    return running[1]


@pytest.fixture
def letters(stack: LocalStack) -> dict[str, ChangeEvent]:
    """Three dead letters of three records, by message id; the first two with audit
    entries saying why, the newest of which is the reason."""
    # Records of their own: the audit table outlives a test.
    deal, contact, company = (
        event(uuid.uuid4().hex[:8]),
        event(uuid.uuid4().hex[:8], object_type=ObjectType.CONTACT),
        event(uuid.uuid4().hex[:8], object_type=ObjectType.COMPANY),
    )
    audited(stack, deal.record_key, Outcome.FAILED, T0, reason="Timeout: no answer")
    audited(stack, deal.record_key, Outcome.FAILED, T0.replace(minute=5), reason=FAILED_WHY)
    audited(stack, contact.record_key, Outcome.REJECTED, T0, reason=REJECTED_WHY)
    return {dead_letter(stack, e): e for e in (deal, contact, company)}


def redrive(config: Path, *argv: str) -> int:
    return crmsync(config, "redrive", *argv)


def received(standins: StandIns) -> list[tuple[str, str, str]]:
    """What reached the sync function: body, group and deduplication id."""
    return [
        (
            record["body"],
            record["attributes"]["MessageGroupId"],
            record["attributes"]["MessageDeduplicationId"],
        )
        for batch in standins.sync_batches
        for record in batch
    ]


def test_given_dead_letters_when_listed_then_each_says_what_and_why_and_all_stay_visible(
    stack: LocalStack,
    config: Path,
    letters: dict[str, ChangeEvent],
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert redrive(config, "list", "--json") == 0

    listed = json.loads(capsys.readouterr().out)
    assert listed["visible"] == 3
    by_id = {message["id"]: message for message in listed["messages"]}
    assert set(by_id) == set(letters)
    for message_id, dead in letters.items():
        shown = by_id[message_id]
        assert (shown["record"], shown["connection"], shown["event_id"], shown["kind"]) == (
            dead.record_key,
            "demo",
            dead.event_id,
            "updated",
        )
        assert shown["receive_count"] == 1  # this listing's own receive
    assert [(by_id[i]["outcome"], by_id[i]["reason"]) for i in letters] == [
        ("failed", FAILED_WHY),  # the newest of the deal's two failures
        ("rejected", REJECTED_WHY),
        (None, None),  # no entry: the table says nothing
    ]
    assert dead_letter_counts(stack) == (3, 0), "a listing consumes and hides nothing"


def test_given_dead_letters_when_listed_then_a_table_names_them(
    config: Path,
    letters: dict[str, ChangeEvent],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(console, "width", 200)  # a terminal's: no cell folded

    deal = next(iter(letters.values()))

    assert redrive(config, "list") == 0

    out = capsys.readouterr().out
    assert f"{deal.record_key} (demo)" in out and FAILED_WHY in out
    assert all(message_id in out for message_id in letters)


def test_given_a_dead_letter_when_shown_then_its_event_and_its_records_trail(
    stack: LocalStack,
    config: Path,
    letters: dict[str, ChangeEvent],
    capsys: pytest.CaptureFixture[str],
) -> None:
    message_id, deal = next(iter(letters.items()))

    assert redrive(config, "show", message_id, "--json") == 0

    shown = json.loads(capsys.readouterr().out)
    assert ChangeEvent.model_validate(shown["event"]) == deal
    assert [entry["reason"] for entry in shown["audit"]] == [FAILED_WHY, "Timeout: no answer"]
    assert dead_letter_counts(stack) == (3, 0)


def test_given_dead_letters_when_one_is_picked_then_only_it_reaches_the_events_queue(
    stack: LocalStack,
    config: Path,
    letters: dict[str, ChangeEvent],
    standins: StandIns,
    capsys: pytest.CaptureFixture[str],
) -> None:
    picked, deal = next(iter(letters.items()))

    assert redrive(config, "pick", picked) == 0

    assert "moved 1 message(s)" in capsys.readouterr().out
    assert stack.wait_until_drained(10)
    assert received(standins) == [(deal.model_dump_json(), deal.message_group, f"redrive-{picked}")]
    assert dead_letter_counts(stack) == (2, 0), "the others stay, visible"


def test_given_an_unknown_id_when_picked_then_exit_1_naming_it_and_nothing_moves(
    stack: LocalStack,
    config: Path,
    letters: dict[str, ChangeEvent],
    standins: StandIns,
    capsys: pytest.CaptureFixture[str],
) -> None:
    known = next(iter(letters))

    assert redrive(config, "pick", known, "no-such-message") == 1

    assert "no message no-such-message in the dead-letter queue" in capsys.readouterr().err
    assert stack.wait_until_drained(10)
    assert received(standins) == []
    assert dead_letter_counts(stack) == (3, 0)


def test_given_two_letters_of_one_record_when_all_are_moved_then_every_one_in_order(
    stack: LocalStack,
    config: Path,
    letters: dict[str, ChangeEvent],
    standins: StandIns,
    capsys: pytest.CaptureFixture[str],
) -> None:
    deal = next(iter(letters.values()))
    later = deal.model_copy(update={"event_id": f"{deal.event_id}-later", "version": 2_000})
    dead_letter(stack, later)

    assert redrive(config, "all") == 0

    assert "moved 4 message(s)" in capsys.readouterr().out
    assert stack.wait_until_drained(10)
    bodies = [body for body, _, _ in received(standins)]
    assert sorted(bodies) == sorted([e.model_dump_json() for e in (*letters.values(), later)])
    assert bodies.index(deal.model_dump_json()) < bodies.index(later.model_dump_json())
    assert dead_letter_counts(stack) == (0, 0)


def test_given_no_action_when_asked_for_help_then_the_actions_are_named(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["redrive", "--help"])

    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert all(action in out for action in ("list", "show", "pick", "all"))
