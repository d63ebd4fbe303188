"""The README's "Try it by hand" commands, run as printed against a running local stack:
only its ports and config file are this test's (the README assumes `make up`'s)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import Harness, eventually

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
BASH = shutil.which("bash") or "/bin/bash"


def _block() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### Try it by hand") :]
    found = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert found, "the README's by-hand section has its bash block"
    return found.group(1)


def _bash(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 (the README's own commands)
        [BASH, "-euo", "pipefail", "-c", script],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_given_the_readmes_commands_then_the_contact_and_won_deal_reach_quickbooks(
    e2e: Harness, tmp_path: Path
) -> None:
    config = tmp_path / "local.yaml"
    e2e.stack.running_config.write(config)
    commands, audits = _block().split("sleep 10", 1)
    hubspot = e2e.hubspot_url.removeprefix("http://")
    assert "127.0.0.1:8712" in commands, "the README points at `make up`'s HubSpot port"
    commands = commands.replace("127.0.0.1:8712", hubspot)
    audits = audits.replace("--local", f"--local --config {config}")

    created = _bash(f"{commands}\necho deal=$DEAL contact=$CONTACT")
    assert created.returncode == 0, created.stderr
    ids = dict(re.findall(r"(deal|contact)=(\d+)", created.stdout))
    eventually(lambda: e2e.invoices_for(ids["deal"]), f"an invoice for deal {ids['deal']}")
    e2e.settle()

    shown = _bash(f"DEAL={ids['deal']}\nCONTACT={ids['contact']}\n{audits}")
    assert shown.returncode == 0, shown.stderr
    (invoice,) = e2e.invoices_for(ids["deal"])
    assert f"quickbooks:invoice:{invoice['Id']}" in shown.stdout
    assert shown.stdout.count("created") >= 2, shown.stdout
    assert [
        line["SalesItemLineDetail"]["Qty"]
        for line in invoice["Line"]
        if "SalesItemLineDetail" in line
    ] == [3]
