"""``infra.bundling``: the Lambda code directory, built without Docker."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import aws_lambda as lambda_

from infra.bundling import PIP_PLATFORM, PYTHON_VERSION, RUNTIME, BundlingError, build_lambda_code

pytestmark = pytest.mark.infra


class FakePip:
    """Stands in for ``pip install --target``: records calls, drops one file per package."""

    def __init__(self, returncode: int = 0, stderr: str = "") -> None:
        self.calls: list[list[str]] = []
        self.returncode = returncode
        self.stderr = stderr

    def __call__(self, command: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append(command)
        target = Path(command[command.index("--target") + 1])
        for requirement in command[command.index(target.as_posix()) + 1 :]:
            (target / f"{requirement.split('=')[0]}.py").write_text("")
        return subprocess.CompletedProcess(command, self.returncode, "", self.stderr)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    for name in ("shared", "functions", "config"):
        (root / name / "__pycache__").mkdir(parents=True)
        (root / name / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"")
        (root / name / "module.py").write_text(f"# {name}\n")
    _write_deps(root, ["httpx==0.28.1", "PyYAML>=6.0"])
    return root


def _write_deps(root: Path, deps: list[str]) -> None:
    listed = ", ".join(f'"{d}"' for d in deps)
    (root / "pyproject.toml").write_text(f'[project]\nname = "x"\ndependencies = [{listed}]\n')


def _pip(monkeypatch: pytest.MonkeyPatch, fake: FakePip) -> FakePip:
    monkeypatch.setattr("infra.bundling.subprocess.run", fake)
    return fake


def test_given_the_chosen_runtime_then_it_is_the_newest_python_cdk_offers() -> None:
    offered = [
        tuple(int(part) for part in name.removeprefix("PYTHON_").split("_"))
        for name in dir(lambda_.Runtime)
        if name.startswith("PYTHON_3_")
    ]
    assert RUNTIME.name == "python" + ".".join(str(part) for part in max(offered))


def test_given_a_project_when_built_then_sources_and_pyproject_deps_land_in_one_directory(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pip = _pip(monkeypatch, FakePip())

    out = build_lambda_code(project, project / "build" / "lambda")

    (command,) = pip.calls
    assert command[-2:] == ["httpx==0.28.1", "PyYAML>=6.0"]
    for flag, value in (
        ("--platform", PIP_PLATFORM),
        ("--python-version", PYTHON_VERSION),
        ("--implementation", "cp"),
    ):
        assert command[command.index(flag) + 1] == value
    assert "--only-binary=:all:" in command
    assert (out / "httpx.py").is_file()
    for name in ("shared", "functions", "config"):
        assert (out / name / "module.py").read_text() == f"# {name}\n"
        assert not (out / name / "__pycache__").exists()


def test_given_unchanged_deps_when_rebuilt_then_pip_is_skipped_and_sources_are_refreshed(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pip = _pip(monkeypatch, FakePip())
    out = project / "build" / "lambda"
    build_lambda_code(project, out)
    (project / "shared" / "module.py").write_text("# changed\n")
    (project / "shared" / "module2.py").write_text("")
    (project / "functions" / "module.py").unlink()

    build_lambda_code(project, out)

    assert len(pip.calls) == 1
    assert (out / "httpx.py").is_file()
    assert (out / "shared" / "module.py").read_text() == "# changed\n"
    assert (out / "shared" / "module2.py").is_file()
    assert not (out / "functions" / "module.py").exists()


def test_given_changed_deps_when_rebuilt_then_pip_runs_again_into_a_clean_directory(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pip = _pip(monkeypatch, FakePip())
    out = project / "build" / "lambda"
    build_lambda_code(project, out)
    _write_deps(project, ["httpx==0.28.1"])

    build_lambda_code(project, out)

    assert len(pip.calls) == 2
    assert (out / "httpx.py").is_file()
    assert not (out / "PyYAML>.py").exists()


def test_given_pip_fails_when_building_then_a_clear_error_and_the_next_build_retries(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _pip(monkeypatch, FakePip(returncode=1, stderr="No matching distribution found for httpx"))
    out = project / "build" / "lambda"

    with pytest.raises(BundlingError) as failed:
        build_lambda_code(project, out)

    assert "No matching distribution found for httpx" in str(failed.value)
    assert f"Python {PYTHON_VERSION} on {PIP_PLATFORM}" in str(failed.value)
    pip = _pip(monkeypatch, FakePip())
    build_lambda_code(project, out)
    assert len(pip.calls) == 1


def test_given_a_missing_source_directory_when_building_then_it_is_named(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _pip(monkeypatch, FakePip())
    (project / "config" / "module.py").unlink()
    (project / "config" / "__pycache__" / "x.cpython-311.pyc").unlink()
    (project / "config" / "__pycache__").rmdir()
    (project / "config").rmdir()

    with pytest.raises(BundlingError, match=r"config is missing"):
        build_lambda_code(project, project / "build" / "lambda")
