"""The registered vendors: name → the package that declares its ``VendorSpec``.

A new vendor adds one line here. Packages are imported on first use, so a function
loads only the vendors its connections use.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any

from shared.connectors.spec import VendorKind, VendorSpec

VENDORS: dict[str, str] = {
    "hubspot": "shared.connectors.hubspot",
    "quickbooks": "shared.connectors.quickbooks",
    "salesforce": "shared.connectors.salesforce",
    "xero": "shared.connectors.xero",
}


class UnknownVendor(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


@cache
def vendor(name: str) -> VendorSpec[Any]:
    module = VENDORS.get(name)
    if module is None:
        raise UnknownVendor(f"unknown vendor {name!r}; registered: {', '.join(sorted(VENDORS))}")
    spec = importlib.import_module(module).SPEC
    if not isinstance(spec, VendorSpec) or spec.name != name:
        raise TypeError(f"{module}.SPEC must be the VendorSpec named {name!r}")
    return spec


def vendors(kind: VendorKind | None = None) -> list[VendorSpec[Any]]:
    """Every registered vendor (of one kind), in name order."""
    return [vendor(name) for name in sorted(VENDORS) if kind is None or vendor(name).kind == kind]
