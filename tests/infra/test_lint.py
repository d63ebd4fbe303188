"""cfn-lint on the synthesized template, with the repository's .cfnlintrc."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from infra.bundling import ROOT
from tests.infra.conftest import Synthesized

pytestmark = pytest.mark.infra

CLEAN, WARNINGS_ONLY = 0, 4  # cfn-lint exit codes; 2/6 mean errors


def test_given_the_synthesized_template_when_linted_then_cfn_lint_finds_no_errors(
    synthesized: Synthesized,
) -> None:
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    result = subprocess.run(  # noqa: S603 - fixed command, our own template
        [str(cfn_lint), str(synthesized.template_path)],
        cwd=ROOT,  # picks up .cfnlintrc (W3005 is CDK noise)
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode in (CLEAN, WARNINGS_ONLY), result.stdout + result.stderr
