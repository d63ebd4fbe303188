"""Sandboxes shared by the tests of a module, over real HTTP: one server started per
test module that asks for it (stopping a werkzeug server costs ~0.5 s each), reset to
its seeded company before each test. Modules whose tests change the sandbox's config
or clock in their own way (test_quickbooks_sandbox.py, test_xero_sandbox.py) keep
fixtures of their own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes import OffsetClock
from tests.unit.sandboxes import test_quickbooks_sandbox as quickbooks
from tests.unit.sandboxes import test_xero_sandbox as xero_org


@pytest.fixture(scope="module")
def qbo_shared() -> Iterator[quickbooks.Harness]:
    # The per-second limit is raised: a test's burst of calls is never throttled.
    harness = quickbooks.start_harness(OffsetClock(), rate_per_second=100)
    yield harness
    quickbooks.stop_harness(harness)


@pytest.fixture
def qbo(qbo_shared: quickbooks.Harness) -> quickbooks.Harness:
    """The module's QuickBooks sandbox: its seeded company, no webhook target, a fresh
    access token."""
    qbo_shared.sandbox.reset()
    qbo_shared.sandbox.webhook_url = None
    qbo_shared.refresh()
    return qbo_shared


@pytest.fixture(scope="module")
def xero_shared() -> Iterator[xero_org.Harness]:
    # The minute limit is lifted: a test's burst of calls is never throttled.
    harness = xero_org.start_harness(OffsetClock(), rate_per_minute=10_000)
    yield harness
    xero_org.stop_harness(harness)


@pytest.fixture
def xero(xero_shared: xero_org.Harness) -> xero_org.Harness:
    """The module's Xero sandbox: its seeded organisation at the clock's start, no
    webhook target, a fresh access token."""
    xero_shared.clock.offset = 0.0
    xero_shared.sandbox.reset()
    xero_shared.sandbox.webhook_url = None
    xero_shared.refresh()
    return xero_shared
