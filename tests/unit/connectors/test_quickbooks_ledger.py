"""The QuickBooks ledger's change feed against the sandbox: it pages past a full CDC
answer (the 1,000-object cap shrunk to 2 on both sides, so three payments fill a page),
and a refund receipt holding a payment's Id is never taken for that payment; invoices
falling due are read over query pages (shrunk to 2 rows)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from local.sandboxes import quickbooks as sandbox_module
from local.sandboxes.base import SandboxServer
from local.sandboxes.quickbooks import QuickBooksBooks, QuickBooksSandbox, QuickBooksSandboxConfig
from shared.connectors.quickbooks import connector, ledger
from shared.errors import Permanent
from shared.models import ObjectType
from shared.ports import AccountingLedger, InboundWebhook
from tests.contracts.kits.base import SandboxConnection
from tests.fakes import OffsetClock
from tests.unit.sandboxes.test_quickbooks_sandbox import Receiver


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


def test_a_refund_holding_a_payments_id_is_named_apart_from_it(
    company: tuple[QuickBooksSandbox, str, OffsetClock],
) -> None:
    """Intuit's Ids are unique per entity only; the sandbox counts them so. The refund's
    webhook must find the refund's change (its customer), never the payment's (its
    invoice and another customer), as the way back looks a webhook up in the feed."""
    sandbox, url, clock = company
    books = QuickBooksBooks(sandbox, url)
    since_ms = int(clock() * 1000)
    receiver = Receiver()
    hook = SandboxServer(receiver.app(), 0).start()
    try:
        sandbox.webhook_url = f"{hook.url}/hook"
        payment = books.record_payment("1", Decimal("50"))  # seed invoice 1, customer 1
        refunds = []
        for amount in ("20", "5"):
            clock.advance(5)  # apart: this company's CDC answers hold two objects
            refunds.append(books.refund("2", Decimal(amount)))
        assert sandbox.wait_for_webhooks_idle(10)
    finally:
        hook.stop()
    assert payment in refunds  # the same Id, of two entities
    connection = SandboxConnection("quickbooks", sandbox, url)
    target = connection.accounting_target()
    assert isinstance(target, AccountingLedger)
    body, headers = receiver.received[-1]
    [event] = connection.webhook_receiver().normalize(
        InboundWebhook(
            method="POST",
            url=f"{hook.url}/hook",
            headers={k.lower(): v for k, v in headers.items()},
            body=body.decode(),
            received_at=datetime.now(UTC),
        ),
        "conn-1",
    )

    changes = list(target.changed_since([ObjectType.PAYMENT], since_ms))

    assert (event.object_type, event.record_id) == (ObjectType.PAYMENT, f"RefundReceipt-{payment}")
    assert [(c.invoice_ids, c.customer_id) for c in changes if c.target_id == event.record_id] == [
        ((), "2")
    ]
    assert [(c.invoice_ids, c.customer_id) for c in changes if c.target_id == payment] == [
        (("1",), "1")
    ]


def test_invoices_falling_due_are_read_over_every_page_oldest_due_first(
    company: tuple[QuickBooksSandbox, str, OffsetClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox, url, _ = company
    monkeypatch.setattr(connector, "QUERY_MAX_RESULTS", 2)
    api = QuickBooksBooks(sandbox, url).api()
    due = {}
    line = {
        "Amount": 10,
        "DetailType": "SalesItemLineDetail",
        "SalesItemLineDetail": {"ItemRef": {"value": "1"}},
    }
    for day, customer in ((31, "1"), (5, "2"), (17, "3")):  # created out of due order
        body = {"CustomerRef": {"value": customer}, "DueDate": f"2031-03-{day:02d}", "Line": [line]}
        created = api.post("/invoice", json=body)
        created.raise_for_status()
        due[day] = (created.json()["Invoice"]["Id"], customer)
    target = SandboxConnection("quickbooks", sandbox, url).accounting_target()
    assert isinstance(target, AccountingLedger)

    changes = list(target.falling_due(date(2031, 3, 1), date(2031, 4, 1)))

    assert [(c.target_id, c.customer_id) for c in changes] == [due[5], due[17], due[31]]
    assert changes[0].changed_at_ms == int(datetime(2031, 3, 5, tzinfo=UTC).timestamp()) * 1000
