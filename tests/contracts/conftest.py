"""The kit of each registered vendor, started once per session and reset before each test.

A suite asks for ``crm_kit``, ``accounting_kit`` or ``vendor_kit`` and runs once per
registered kit of that kind, with the vendor's name as the test id.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

import pytest

from tests.contracts.kits import ACCOUNTING_KITS, CRM_KITS, KITS
from tests.contracts.kits.base import AccountingKit, CrmKit, VendorKit

K = TypeVar("K", bound=VendorKit)


class KitPool:
    """Started kits by class, so the CRM and webhook suites share one HubSpot sandbox."""

    def __init__(self) -> None:
        self._started: dict[type[VendorKit], VendorKit] = {}

    def fresh(self, kind: type[K]) -> K:
        kit = self._started.get(kind)
        if kit is None:
            kit = self._started[kind] = kind()
        kit.reset()
        assert isinstance(kit, kind)
        return kit

    def close(self) -> None:
        for kit in self._started.values():
            kit.close()


@pytest.fixture(scope="session")
def kit_pool() -> Iterator[KitPool]:
    pool = KitPool()
    yield pool
    pool.close()


def _name(kind: type[VendorKit]) -> str:
    return kind.name


@pytest.fixture(params=CRM_KITS, ids=_name)
def crm_kit(request: pytest.FixtureRequest, kit_pool: KitPool) -> CrmKit:
    kind: type[CrmKit] = request.param
    return kit_pool.fresh(kind)


@pytest.fixture(params=ACCOUNTING_KITS, ids=_name)
def accounting_kit(request: pytest.FixtureRequest, kit_pool: KitPool) -> AccountingKit:
    kind: type[AccountingKit] = request.param
    return kit_pool.fresh(kind)


@pytest.fixture(params=KITS, ids=_name)
def vendor_kit(request: pytest.FixtureRequest, kit_pool: KitPool) -> VendorKit:
    kind: type[VendorKit] = request.param
    return kit_pool.fresh(kind)
