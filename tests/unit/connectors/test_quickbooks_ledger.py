"""The QuickBooks ledger's change feed pages past a full CDC answer, against the sandbox
with its 1,000-object cap shrunk to 2 (on both sides) so three payments fill a page."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal

import pytest

from local.sandboxes import quickbooks as sandbox_module
from local.sandboxes.base import SandboxServer
from local.sandboxes.quickbooks import QuickBooksBooks, QuickBooksSandbox, QuickBooksSandboxConfig
from shared.connectors.quickbooks import ledger
from shared.errors import Permanent
from shared.models import ObjectType
from shared.ports import AccountingLedger
from tests.contracts.kits.base import SandboxConnection
from tests.fakes import OffsetClock


@pytest.fixture
def company(
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[QuickBooksSandbox, str, OffsetClock]]:
    monkeypatch.setattr(sandbox_module, "CDC_MAX_OBJECTS", 2)
    monkeypatch.setattr(ledger, "CDC_MAX_OBJECTS", 2)
    clock = OffsetClock()
    sandbox = QuickBooksSandbox(QuickBooksSandboxConfig(clock=clock, rate_per_second=100))
    server = SandboxServer(sandbox.app, 0).start()
    yield sandbox, server.url, clock
    server.stop()
    sandbox.close()


def test_the_change_feed_goes_on_from_a_full_answer(
    company: tuple[QuickBooksSandbox, str, OffsetClock],
) -> None:
    sandbox, url, clock = company
    books = QuickBooksBooks(sandbox, url)
    since_ms = int(clock() * 1000)
    # Seed invoice 1 (customer 1) owes 300; each payment a few seconds after the last.
    payments = []
    for _ in range(3):
        clock.advance(5)
        payments.append(books.record_payment("1", Decimal("50")))
    target = SandboxConnection("quickbooks", sandbox, url).accounting_target()
    assert isinstance(target, AccountingLedger)

    changes = list(target.changed_since([ObjectType.PAYMENT], since_ms))

    assert [(c.target_id, c.invoice_ids) for c in changes] == [(p, ("1",)) for p in payments]


def test_a_full_answer_within_one_second_cannot_be_paged(
    company: tuple[QuickBooksSandbox, str, OffsetClock],
) -> None:
    sandbox, url, clock = company
    books = QuickBooksBooks(sandbox, url)
    since_ms = int(time.time() * 1000) - 1000
    clock.advance(60)  # all three in one sandbox second, away from the start
    for _ in range(3):
        books.record_payment("1", Decimal("10"))
    target = SandboxConnection("quickbooks", sandbox, url).accounting_target()
    assert isinstance(target, AccountingLedger)

    with pytest.raises(Permanent, match="within one second"):
        list(target.changed_since([ObjectType.PAYMENT], since_ms))


def test_a_start_beyond_intuits_30_days_reads_from_the_oldest_it_allows(
    company: tuple[QuickBooksSandbox, str, OffsetClock],
) -> None:
    # A drift check that has not run for six weeks: Intuit refuses such a start.
    sandbox, url, clock = company
    books = QuickBooksBooks(sandbox, url)
    six_weeks_ago_ms = int((clock() - 42 * 24 * 3600) * 1000)
    payment = books.record_payment("1", Decimal("50"))
    target = SandboxConnection("quickbooks", sandbox, url).accounting_target()
    assert isinstance(target, AccountingLedger)

    changes = list(target.changed_since([ObjectType.PAYMENT], six_weeks_ago_ms))

    assert [c.target_id for c in changes] == [payment]
