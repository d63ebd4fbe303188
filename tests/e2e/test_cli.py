"""The README's demo command works: ``crmsync demo`` runs its scenario and says it passed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


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
