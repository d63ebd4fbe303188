"""A handler's cold start loads what its invocations use, and makes nothing yet.

Each handler module is imported in a fresh interpreter, as Lambda's init phase does
(tracing off, as the local stack runs): no AWS client is made (each is made on first
use), and neither the X-Ray SDK, the vendors' HTTP client nor the mapping is imported.
Structural checks, not timings: ``bench/bench_cold_import.py`` measures the time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.bench_cold_import import environment
from infra.resources import DESCRIPTION
from shared.observability import Untraced, tracer

ROOT = Path(__file__).resolve().parents[2]
HANDLERS = [function.handler.rsplit(".", 1)[0] for function in DESCRIPTION.functions]
# X-Ray's SDK only with tracing on; the others once a connection's connectors or mapping
# are built.
NOT_AT_COLD_START = ("aws_xray_sdk.core", "httpx", "shared.connectors.http", "shared.mapping")

# Imports the module named in argv[1]; prints the AWS clients made and the modules loaded.
PROBE = r"""
import importlib, json, sys
import botocore.session

made = []
create_client = botocore.session.Session.create_client

def recorded(self, service_name, *args, **kwargs):
    made.append(service_name)
    return create_client(self, service_name, *args, **kwargs)

botocore.session.Session.create_client = recorded
importlib.import_module(sys.argv[1])
print(json.dumps({"clients": made, "modules": sorted(sys.modules)}))
"""


def cold_start(module: str, env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run(  # noqa: S603 - the project's own Python and probe
        [sys.executable, "-c", PROBE, module],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    started: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return started


@pytest.mark.parametrize("module", HANDLERS)
def test_given_a_cold_start_then_no_client_is_made_and_nothing_is_loaded_before_use(
    module: str,
) -> None:
    started = cold_start(module, environment())

    assert started["clients"] == []
    assert [m for m in NOT_AT_COLD_START if m in started["modules"]] == []


def test_given_tracing_on_in_lambda_then_the_tracer_is_x_rays() -> None:
    env = {k: v for k, v in environment().items() if k != "POWERTOOLS_TRACE_DISABLED"}
    env["LAMBDA_TASK_ROOT"] = str(ROOT)  # what tells powertools it runs in Lambda

    started = cold_start("shared.observability", env)

    assert "aws_xray_sdk.core" in started["modules"]


def test_given_tracing_off_then_the_traced_handler_answers_and_raises_as_itself() -> None:
    @tracer.capture_lambda_handler
    def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
        if event.get("fail"):
            raise ValueError("failed")
        return {"echo": event}

    assert isinstance(tracer.provider, Untraced)
    assert handler({"a": 1}, None) == {"echo": {"a": 1}}
    with pytest.raises(ValueError, match="failed"):
        handler({"fail": True}, None)
