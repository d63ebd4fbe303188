"""Secrets stay secret: at log level DEBUG, nothing the functions print holds a credential.

A contact and a won deal sync HubSpot → QuickBooks (which refreshes QuickBooks' OAuth
tokens and stores the rotated ones back in Secrets Manager) on a local stack in a child
process (``tests/e2e/debug_log_run.py``). Everything that process prints, the output of
the functions' execution environments included, is read from its stdout and stderr and
searched for every credential: each value of the local secrets and every token the
QuickBooks sandbox handed out during the run.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
# The QuickBooks company id: part of every API path, shown in QuickBooks' own UI.
NOT_CREDENTIALS = {"realm_id"}


def credentials(secrets: dict[str, dict[str, str]], issued: dict[str, list[str]]) -> dict[str, str]:
    """Every credential of the run by a name for it, in the forms that travel."""
    found = {
        f"{vendor} {key}": value
        for vendor, values in secrets.items()
        for key, value in values.items()
        if key not in NOT_CREDENTIALS
    }
    quickbooks = secrets["quickbooks"]
    client = f"{quickbooks['client_id']}:{quickbooks['client_secret']}"
    found["quickbooks Basic authorization"] = base64.b64encode(client.encode()).decode()
    for kind, tokens in issued.items():
        found |= {f"quickbooks {kind} token #{n}": token for n, token in enumerate(tokens)}
    return found


def test_given_debug_logging_when_a_won_deal_syncs_then_no_credential_is_printed(
    tmp_path: Path,
) -> None:
    tokens_file = tmp_path / "tokens.json"

    run = subprocess.run(  # noqa: S603 - this interpreter, our own module
        [sys.executable, "-m", "tests.e2e.debug_log_run", str(tokens_file)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=300,  # a hang guard, not a measurement
        check=False,
    )

    assert run.returncode == 0, run.stderr[-5000:]
    written = json.loads(tokens_file.read_text(encoding="utf-8"))
    issued, secrets = written["issued"], written["secrets"]
    # The run rotated QuickBooks' tokens, and what the functions print was read: the sync
    # function's token request (httpx, through the root logger) and powertools' log lines.
    assert len(issued["refresh"]) >= 2 and issued["access"], issued
    assert "/oauth2/v1/tokens/bearer" in run.stderr
    assert '"function_request_id"' in run.stdout
    printed = run.stdout + run.stderr
    leaked = [name for name, value in credentials(secrets, issued).items() if value in printed]
    assert not leaked, f"printed: {', '.join(leaked)}"
