"""Vendors are plug-ins: a vendor's name and its fields live only in its own places.

A vendor's places are its package (``shared/connectors/<vendor>/``), its sandbox
(``local/sandboxes/<vendor>.py`` and ``<vendor>_*.py``), its mapping presets
(``config/<vendor>/``), its notes (``docs/vendors/<vendor>.md``) and tests. The two
registries hold one line per vendor. Everything else — the core, the handlers, the
infrastructure, the local runtime — must read the same whichever vendors are
registered, so adding one touches none of it.

Harnesses built for one pair on purpose (``local/chaos/``, ``bench/``) count as tests.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from local.sandboxes.registry import SANDBOXES
from shared.connectors.registry import VENDORS

ROOT = Path(__file__).resolve().parents[2]

# Words that give a vendor away besides its name: its brand, its ids, its field names.
VENDOR_WORDS: dict[str, tuple[str, ...]] = {
    "hubspot": ("hubspot", "hs_object_id", "portalid", "portal_id"),
    "quickbooks": ("quickbooks", "intuit", "qbo", "realm", "synctoken", "docnumber"),
    "xero": ("xero", "accrec", "lineamounttypes", "tenant"),
    "salesforce": ("salesforce", "sobject", "soql", "opportunit", "pricebook"),
}
REGISTRIES = {"shared/connectors/registry.py", "local/sandboxes/registry.py"}
HARNESSES = ("local/chaos/", "bench/")


def _python_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"],  # noqa: S607
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return sorted(path for path in listed if (ROOT / path).exists())


def _owner(path: str) -> str | None:
    """The vendor whose place ``path`` is, if any."""
    for name in VENDORS:
        if path.startswith(f"shared/connectors/{name}/"):
            return name
        sandbox = Path(path)
        if sandbox.parent.as_posix() == "local/sandboxes" and (
            sandbox.stem == name or sandbox.stem.startswith(f"{name}_")
        ):
            return name
    return None


def _shared_code() -> list[str]:
    """Every Python file that must not know any vendor."""
    return [
        path
        for path in _python_files()
        if not path.startswith(("tests/", *HARNESSES))
        and path not in REGISTRIES
        and _owner(path) is None
    ]


def test_every_registered_vendor_has_its_words_and_a_sandbox() -> None:
    # A vendor registered without declaring its words here would pass unchecked.
    assert set(VENDOR_WORDS) == set(VENDORS)
    assert set(SANDBOXES) == set(VENDORS)


@pytest.mark.parametrize("vendor", sorted(VENDORS))
def test_a_vendor_appears_only_in_its_own_places(vendor: str) -> None:
    pattern = re.compile("|".join(re.escape(word) for word in VENDOR_WORDS[vendor]), re.I)
    found = [
        f"{path}:{number}: {line.strip()}"
        for path in _shared_code()
        for number, line in enumerate((ROOT / path).read_text().splitlines(), 1)
        if pattern.search(line)
    ]

    assert not found, "\n".join(found)


@pytest.mark.parametrize("vendor", sorted(VENDORS))
def test_a_vendor_package_knows_no_other_vendor(vendor: str) -> None:
    others = [w for name, words in VENDOR_WORDS.items() if name != vendor for w in words]
    pattern = re.compile(r"\b(" + "|".join(re.escape(w) for w in others) + r")\w*", re.I)
    found = [
        f"{path}:{number}: {line.strip()}"
        for path in _python_files()
        if _owner(path) == vendor
        for number, line in enumerate((ROOT / path).read_text().splitlines(), 1)
        if pattern.search(line)
    ]

    assert not found, "\n".join(found)


def test_the_check_reads_the_core() -> None:
    """The rule is not vacuous: the core files it reads are the real ones."""
    core = _shared_code()

    assert "shared/sync/engine.py" in core
    assert "functions/webhook/handler.py" in core
    assert "infra/resources.py" in core
    assert "local/runtime.py" in core
    assert not any(path.startswith("shared/connectors/hubspot/") for path in core)
