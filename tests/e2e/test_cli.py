"""The README's demo command works: ``crmsync demo`` runs its scenario and says it passed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
PRESET = str(REPO / "config" / "hubspot" / "services.yaml")


def test_given_local_config_when_crmsync_demo_runs_then_it_exits_0_and_says_it_passed() -> None:
    # Its own process: the demo starts its own local stack (free ports) and stops it.
    result = subprocess.run(
        [sys.executable, "-m", "local.cli", "demo"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "demo passed" in result.stdout


def test_given_no_running_stack_when_crmsync_redrive_runs_then_exit_1_saying_so(
    tmp_path: Path,
) -> None:
    from local.config import DEFAULT_CONFIG, ensure_port_free

    config = DEFAULT_CONFIG.read_text().replace("moto: 8711", "moto: 8799")
    config = config.replace("../config/", f"{REPO}/config/")
    ensure_port_free(8799)  # nothing listens there: no stack is up
    (tmp_path / "local.yaml").write_text(config)

    result = subprocess.run(  # noqa: S603 - our own CLI, a path we made
        [
            *(sys.executable, "-m", "local.cli", "redrive", "all", "--local"),
            *("--config", str(tmp_path / "local.yaml")),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 1
    assert "crmsync up" in result.stderr


def test_given_a_reader_that_stops_early_when_a_command_prints_then_no_traceback() -> None:
    # `crmsync … --json | head -1`: the reader goes away before the output is written.
    process = subprocess.Popen(  # noqa: S603 - our own CLI, a path we made
        [sys.executable, "-m", "local.cli", "mapping", "validate", "--json", PRESET],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()

    assert process.wait(timeout=120) == 1
    assert "Traceback" not in process.stderr.read()
