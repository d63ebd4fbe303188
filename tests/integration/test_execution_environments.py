"""The local stack runs a function as Lambda does: execution environments in child
processes, up to the function's concurrency, killed at the function's timeout.

Each test starts its own stack (the timeouts differ) whose sync function is
``tests.integration.local_handlers.journal``: it writes what it saw to a journal file.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from infra.resources import DESCRIPTION, ServiceDescription
from local.lambdas import FunctionTimedOut, LocalFunction
from local.runtime import LocalStack, LocalStackError
from tests.integration.test_local_runtime import free_config, send, wait_for

JOURNAL_HANDLER = "tests.integration.local_handlers.journal"


def description(*, handler: str, timeout_s: int, visibility_s: int) -> ServiceDescription:
    """The deployed description with a test sync handler, its timeout and the queue's."""
    functions = tuple(
        f.model_copy(update={"handler": handler, "timeout_s": timeout_s}) if f.id == "Sync" else f
        for f in DESCRIPTION.functions
    )
    queues = tuple(
        q.model_copy(update={"visibility_timeout_s": visibility_s}) if q.id == "Events" else q
        for q in DESCRIPTION.queues
    )
    return DESCRIPTION.model_copy(update={"functions": functions, "queues": queues})


@contextmanager
def journal_stack(
    *, timeout_s: int, visibility_s: int, handler: str = JOURNAL_HANDLER
) -> Iterator[LocalStack]:
    """A stack whose sync function runs ``handler`` in child processes; the webhook and
    reconcile functions are stand-ins in this process."""
    stand_ins = {"Webhook": lambda event, context: None, "Reconcile": lambda event, context: None}
    config = free_config(reconcile_interval_s=3600)
    test_description = description(handler=handler, timeout_s=timeout_s, visibility_s=visibility_s)
    with LocalStack(
        config, handlers=stand_ins, sandboxes=False, description=test_description
    ) as stack:
        yield stack


def order(journal: Path, name: str, **extra: Any) -> str:
    return json.dumps({"name": name, "journal": str(journal), **extra})


def entries(journal: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in journal.read_text().splitlines()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_given_an_invocation_past_its_timeout_then_it_is_killed_and_retried_in_a_fresh_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = tmp_path / "journal"
    with journal_stack(timeout_s=2, visibility_s=3) as stack:
        worker = stack.workers["Events"]
        before = worker.status()

        send(stack, order(journal, "slow", sleep_s=60), "slow")

        assert stack.wait_until_drained(30)
        killed, retried = entries(journal)
        after = worker.status()
    assert (killed["name"], killed["receive"]) == ("slow", 1)
    assert 0 < killed["remaining_ms"] <= 2000  # the child's context counts down the timeout
    assert not alive(killed["pid"])
    assert (retried["name"], retried["receive"]) == ("slow", 2)
    assert retried["pid"] not in (killed["pid"], os.getpid())
    assert retried["invocation"] == 1  # a cold start: module state begins again
    assert (after.errors - before.errors, after.processed - before.processed) == (1, 1)
    assert "Task timed out after 2.00 seconds" in caplog.text


def test_given_two_groups_when_handled_then_two_environments_run_them_at_once(
    tmp_path: Path,
) -> None:
    journal, meeting = tmp_path / "journal", tmp_path / "meeting"
    with journal_stack(timeout_s=30, visibility_s=60) as stack:
        assert stack.functions["Sync"].concurrency == DESCRIPTION.function("Sync").max_concurrency

        send(stack, order(journal, "a", meet=str(meeting)), "group-a")
        # "a" waits in its environment for "b", which a second poller must hand to another.
        assert wait_for(lambda: meeting.exists(), timeout=30)
        send(stack, order(journal, "b", meet=str(meeting)), "group-b")

        assert stack.wait_until_drained(60)
    a, b = sorted(entries(journal), key=lambda entry: entry["name"])
    assert (a["met"], b["met"]) == (True, True)
    assert a["pid"] != b["pid"]
    assert os.getpid() not in (a["pid"], b["pid"])


def test_given_several_groups_under_concurrency_then_each_keeps_its_order_and_logs_show_here(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = tmp_path / "journal"
    groups = {group: [f"{group}{n}" for n in range(4)] for group in "wxyz"}
    printed = ""

    def printed_every_name() -> bool:
        nonlocal printed
        printed += capsys.readouterr().out
        return all(f"handling {name}\n" in printed for names in groups.values() for name in names)

    with journal_stack(timeout_s=30, visibility_s=60) as stack:
        for n in range(4):
            for group, names in groups.items():
                send(stack, order(journal, names[n], sleep_s=0.05), group)

        assert stack.wait_until_drained(60)
        # What the children print reaches this process's sys.stdout, line by line.
        assert wait_for(printed_every_name)
    handled = [entry["name"] for entry in entries(journal)]
    for names in groups.values():
        assert [name for name in handled if name in names] == names


def test_given_a_handler_that_cannot_be_imported_then_the_stack_does_not_start() -> None:
    with (
        pytest.raises(
            LocalStackError, match=r"Sync function's handler .* failed its cold start"
        ) as raised,
        journal_stack(timeout_s=5, visibility_s=10, handler="tests.integration.no_such.handler"),
    ):
        pass
    assert "ModuleNotFoundError" in str(raised.value)


def test_given_a_queue_hiding_messages_shorter_than_the_timeout_then_the_stack_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with journal_stack(timeout_s=5, visibility_s=2):
        pass
    assert "queue Events hides a received message for 2 s, less than the 5 s" in caplog.text


def test_given_a_stand_in_past_its_timeout_then_the_invocation_fails_though_it_runs_on() -> None:
    release, finished = threading.Event(), threading.Event()

    def stuck(event: dict[str, Any], context: Any) -> None:
        release.wait(30)
        finished.set()

    spec = DESCRIPTION.function("Sync").model_copy(update={"timeout_s": 1})
    function = LocalFunction(spec, name="stuck", arn="arn", concurrency=1, handler=stuck)

    with pytest.raises(FunctionTimedOut, match=r"Task timed out after 1\.00 seconds"):
        function.invoke({})

    assert not finished.is_set()  # a thread cannot be killed: it runs on
    release.set()
    assert finished.wait(10)
