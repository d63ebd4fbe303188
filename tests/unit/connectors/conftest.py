"""Sandboxes shared by the connector tests of a module: one started per test module,
as one connection holds one account, and stopped after it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.unit.connectors.sandbox_envs import QuickBooksEnv, XeroEnv


@pytest.fixture(scope="module")
def xero_once() -> Iterator[XeroEnv]:
    env = XeroEnv()
    yield env
    env.close()


@pytest.fixture(scope="module")
def quickbooks_once() -> Iterator[QuickBooksEnv]:
    env = QuickBooksEnv()
    yield env
    env.close()
