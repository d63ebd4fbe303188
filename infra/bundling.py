"""Builds the one code directory every Lambda ships with, without Docker.

``build/lambda/`` holds ``shared/``, ``functions/`` and ``config/`` plus the runtime
dependencies from pyproject's ``[project] dependencies``, installed as wheels for
the functions' runtime and architecture. The pip step is skipped while those
dependencies (and the target) are unchanged, so synth stays quick after the first.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path, PurePosixPath

from aws_cdk import aws_lambda as lambda_

ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = ROOT / "build" / "lambda"
SOURCES = ("shared", "functions", "config")

# The newest Python runtime aws-cdk-lib offers (cdk-nag AwsSolutions-L1 flags older ones).
RUNTIME = lambda_.Runtime.PYTHON_3_14
ARCHITECTURE = lambda_.Architecture.ARM_64
PYTHON_VERSION = RUNTIME.name.removeprefix("python")
_PLATFORMS = {"arm64": "manylinux2014_aarch64", "x86_64": "manylinux2014_x86_64"}
PIP_PLATFORM = _PLATFORMS[ARCHITECTURE.name]

# Where Lambda unpacks the code; paths into the bundle are built from it.
TASK_ROOT = PurePosixPath("/var/task")

_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")


class BundlingError(RuntimeError):
    """The Lambda code could not be built; the message says what to fix."""


def runtime_dependencies(pyproject: Path) -> list[str]:
    with pyproject.open("rb") as f:
        deps: list[str] = tomllib.load(f)["project"]["dependencies"]
    return deps


def build_lambda_code(root: Path = ROOT, out: Path = BUILD_DIR) -> Path:
    """Build (or refresh) the code directory and return it."""
    deps = runtime_dependencies(root / "pyproject.toml")
    _install_dependencies(deps, out)
    for name in SOURCES:
        source = root / name
        if not source.is_dir():
            raise BundlingError(f"{source} is missing: the Lambda code needs it")
        shutil.rmtree(out / name, ignore_errors=True)
        shutil.copytree(source, out / name, ignore=_IGNORE)
    return out


def _install_dependencies(deps: list[str], out: Path) -> None:
    key = json.dumps([PYTHON_VERSION, PIP_PLATFORM, sorted(deps)]).encode()
    digest = hashlib.sha256(key).hexdigest()
    # Outside the code directory, so the stamp never becomes part of the asset.
    stamp = out.with_name(out.name + ".deps-sha256")
    if out.is_dir() and stamp.is_file() and stamp.read_text() == digest:
        return
    shutil.rmtree(out, ignore_errors=True)
    stamp.unlink(missing_ok=True)
    out.mkdir(parents=True)
    if deps:
        _pip_install(deps, out)
    stamp.write_text(digest)


def _pip_install(deps: list[str], out: Path) -> None:
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--no-compile",  # host-version .pyc files are useless on the Lambda runtime
        "--platform", PIP_PLATFORM, "--only-binary=:all:",
        "--python-version", PYTHON_VERSION, "--implementation", "cp",
        "--target", str(out), *deps,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        raise BundlingError(
            f"pip could not install the Lambda dependencies for Python {PYTHON_VERSION} on "
            f"{PIP_PLATFORM} into {out}:\n{result.stderr.strip()}"
        )
