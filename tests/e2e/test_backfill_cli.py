"""``crmsync backfill --local``: the operator's import of what changed since a time, run
by the CLI against a running local stack and its sandboxes, as against AWS.

HubSpot's webhooks are off while the records are made, so only the backfill can bring
them to QuickBooks; records changed before ``--since`` stay out, and a backfill
interrupted after its first batch is finished by the same command, nothing twice.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import ops.backfill
from local.cli import main
from shared.sync.reconcile import ReconcileReport
from tests.e2e.conftest import Harness, Line, Person
from tests.integration.operator_cli import json_output

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def config_file(running: Harness, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    stack = running.stack
    config = stack.running_config
    # The sandboxes listen on free ports too: --local calls them there.
    sandboxes = {name: urlsplit(url).port or 0 for name, url in stack.urls.sandboxes.items()}
    ports = config.ports.model_copy(update={"sandboxes": sandboxes})
    path = tmp_path_factory.mktemp("backfill") / "local.yaml"
    config.model_copy(update={"ports": ports}).write(path)
    yield path


def made_unannounced(e2e: Harness, count: int) -> list[tuple[Person, str]]:
    """People with a won deal each, which no webhook announced."""
    made = []
    with e2e.webhooks_off():
        for _ in range(count):
            person = e2e.create_contact()
            made.append((person, e2e.create_deal(person.id, [Line("Design", "1", "90")])))
    return made


def now_iso() -> str:
    """A time strictly between the records made before and after it."""
    time.sleep(0.01)
    cut = datetime.now(UTC).isoformat(timespec="milliseconds")
    time.sleep(0.01)
    return cut


def backfill(config_file: Path, connection: str, since: str, *extra: str) -> int:
    return main(
        [
            "backfill",
            "--connection",
            connection,
            "--since",
            since,
            "--local",
            "--config",
            str(config_file),
            *extra,
        ]
    )


def imported_once(e2e: Harness, made: list[tuple[Person, str]]) -> bool:
    return all(
        len(e2e.customers_with(person.email)) == 1 and len(e2e.invoices_for(deal)) == 1
        for person, deal in made
    )


def test_given_records_before_and_after_a_time_then_only_those_after_are_imported_once(
    e2e: Harness, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = made_unannounced(e2e, 2)
    since = now_iso()
    after = made_unannounced(e2e, 3)

    assert backfill(config_file, e2e.connection_id, since, "--dry-run", "--json") == 0
    counted = json_output(capsys.readouterr().out)["objects"]
    assert (counted["contact"]["to_import"], counted["deal"]["to_import"]) == (3, 3)
    assert all(e2e.customers_with(p.email) == [] for p, _ in after), "a dry run writes nothing"

    assert backfill(config_file, e2e.connection_id, since, "--json") == 0
    report = json_output(capsys.readouterr().out)["objects"]
    e2e.settle()

    assert (report["contact"]["written"], report["deal"]["written"]) == (3, 3)
    assert imported_once(e2e, after)
    assert all(e2e.customers_with(p.email) == [] for p, _ in before)
    assert all(e2e.invoices_for(deal) == [] for _, deal in before)
    # Run again: from its checkpoint, everything it finds is in sync.
    assert backfill(config_file, e2e.connection_id, since, "--json") == 0
    again = json_output(capsys.readouterr().out)["objects"]
    assert sum(counts["to_import"] for counts in again.values()) == 0


def test_given_a_backfill_interrupted_after_its_first_batch_then_the_next_run_finishes_it(
    e2e: Harness,
    config_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    since = now_iso()
    made = made_unannounced(e2e, 3)
    shown = ops.backfill._Bars.__call__

    def ctrl_c_after_the_first_batch(bars: ops.backfill._Bars, report: ReconcileReport) -> None:
        shown(bars, report)
        if sum(report.batched.values()):
            raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(ops.backfill._Bars, "__call__", ctrl_c_after_the_first_batch)
        assert backfill(config_file, e2e.connection_id, since) == 1
    assert "run the same command again" in capsys.readouterr().err
    assert all(len(e2e.customers_with(p.email)) == 1 for p, _ in made)
    assert all(e2e.invoices_for(deal) == [] for _, deal in made), "stopped before the deals"

    assert backfill(config_file, e2e.connection_id, since, "--json") == 0
    resumed = json_output(capsys.readouterr().out)["objects"]
    e2e.settle()

    assert resumed["contact"]["written"] == 0, "the contacts were done: not written again"
    assert resumed["deal"]["written"] == 3
    assert imported_once(e2e, made)


def test_given_an_unknown_connection_or_a_bad_date_then_it_says_so(
    e2e: Harness, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:  # a usage error, as replay's
        backfill(config_file, e2e.connection_id, "last tuesday")
    assert exited.value.code == 2
    assert "'last tuesday' is not a date" in capsys.readouterr().err

    code = backfill(config_file, "nobody", "2026-01-01")

    assert code == 1
    assert f"no connection 'nobody' in {e2e.stack.outputs.connections_table} (there: " in (
        capsys.readouterr().err
    )
