"""The mapping's ``items.create_missing``: the sync engine with the production
QuickBooks connector against the QuickBooks sandbox, which needs an item on every
line and refuses a second item of the same name (6240).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from local.memory import MemoryAuditLog, MemoryLinkStore, MemoryQueue
from shared.mapping import Mapper, parse_mapping
from shared.models import ChangeEvent, ChangeKind, ObjectType, Outcome, SourceRecord
from shared.ports import AccountingTarget
from shared.sync.engine import SyncEngine
from tests.fakes import DEFAULT_MAPPING, FakeCrm, epoch_ms
from tests.unit.connectors.sandbox_envs import QuickBooksEnv

T0 = epoch_ms("2026-11-20T10:00:00")
NEW_PRODUCT = "Window Cleaning"
CREATE_MISSING = "items: {create_missing: true, income_account: Services}\n"


@pytest.fixture
def env(quickbooks_once: QuickBooksEnv) -> Iterator[QuickBooksEnv]:
    quickbooks_once.sandbox.reset()
    yield quickbooks_once


def mapper(extra: str = "") -> Mapper:
    text = DEFAULT_MAPPING.read_text(encoding="utf-8") + extra
    return Mapper(parse_mapping(text, "services.yaml"))


def engine(crm: FakeCrm, ledger: AccountingTarget, mapping: Mapper) -> SyncEngine:
    return SyncEngine(
        connection_id="acme",
        crm=crm,
        ledger=ledger,
        mapper=mapping,
        links=MemoryLinkStore(),
        audit=MemoryAuditLog(),
        queue=MemoryQueue(),
        clock=lambda: datetime(2026, 11, 25, 12, tzinfo=UTC),
    )


def won_deal(crm: FakeCrm, deal_id: str, price: str) -> ChangeEvent:
    """A won deal of its own contact, selling NEW_PRODUCT at ``price``."""
    crm.put(
        SourceRecord(
            object_type=ObjectType.CONTACT,
            id=f"c{deal_id}",
            version=T0,
            properties={"firstname": "Ada", "lastname": deal_id, "email": f"{deal_id}@ex.com"},
        )
    )
    line = SourceRecord(
        object_type=ObjectType.LINE_ITEM,
        id=f"l{deal_id}",
        version=T0,
        properties={"name": NEW_PRODUCT, "quantity": "3", "price": price},
    )
    crm.put(
        SourceRecord(
            object_type=ObjectType.DEAL,
            id=deal_id,
            version=T0,
            properties={
                "dealname": f"Deal {deal_id}",
                "dealstage": "closedwon",
                "pipeline": "default",
                "closedate": "2026-11-20T15:00:00Z",
            },
            associations={ObjectType.CONTACT: [f"c{deal_id}"]},
            children={ObjectType.LINE_ITEM: [line]},
        )
    )
    return ChangeEvent(
        connection_id="acme",
        source="hubspot",
        object_type=ObjectType.DEAL,
        record_id=deal_id,
        event_id=f"evt-{deal_id}",
        kind=ChangeKind.UPDATED,
        occurred_at=datetime.fromtimestamp(T0 / 1000, UTC),
        version=T0,
    )


def items_named(env: QuickBooksEnv, name: str) -> list[str]:
    return [str(row["Id"]) for row in env.sandbox.entities("Item") if row["Name"] == name]


def invoiced_items(env: QuickBooksEnv) -> set[str]:
    return {
        line["SalesItemLineDetail"]["ItemRef"]["value"]
        for invoice in env.sandbox.entities("Invoice")
        for line in invoice["Line"]
        if line.get("DetailType") == "SalesItemLineDetail"
    }


def test_given_create_missing_off_when_a_line_has_no_item_then_invalid_naming_item_and_setting(
    env: QuickBooksEnv,
) -> None:
    crm = FakeCrm()
    before = len(env.sandbox.entities("Item"))

    entry = engine(crm, env.connector(), mapper()).handle(won_deal(crm, "1", "12.50"))

    assert entry.outcome is Outcome.INVALID
    assert NEW_PRODUCT in entry.reason and "items.create_missing" in entry.reason
    assert len(env.sandbox.entities("Item")) == before
    assert env.sandbox.create_count("Invoice") == 0


def test_given_create_missing_when_two_workers_race_for_one_new_item_then_one_item_both_invoiced(
    env: QuickBooksEnv,
) -> None:
    """Two Lambdas, each with its own connector: the second read the item list before
    the first created the item, so it tries to create it too (with another price)."""
    crm = FakeCrm()
    first, second = env.connector(), env.connector()
    assert second.find_item(name=NEW_PRODUCT, sku=None) is None  # its list, read now, kept
    invoices_before = env.sandbox.create_count("Invoice")

    one = engine(crm, first, mapper(CREATE_MISSING)).handle(won_deal(crm, "1", "12.50"))
    two = engine(crm, second, mapper(CREATE_MISSING)).handle(won_deal(crm, "2", "14.00"))

    assert (one.outcome, two.outcome) == (Outcome.CREATED, Outcome.CREATED)
    (item,) = items_named(env, NEW_PRODUCT)
    assert env.sandbox.create_count("Invoice") - invoices_before == 2
    assert item in invoiced_items(env)
    created = next(row for row in env.sandbox.entities("Item") if row["Id"] == item)
    assert created["Type"] == "Service" and created["IncomeAccountRef"]["value"] == "1"


def test_given_create_missing_when_the_same_deal_is_synced_again_then_the_item_is_made_once(
    env: QuickBooksEnv,
) -> None:
    crm = FakeCrm()
    event = won_deal(crm, "1", "12.50")

    engine(crm, env.connector(), mapper(CREATE_MISSING)).handle(event)
    # Another Lambda, its links lost: it re-creates from scratch with the same key.
    engine(crm, env.connector(), mapper(CREATE_MISSING)).handle(event)

    assert len(items_named(env, NEW_PRODUCT)) == 1
    assert env.sandbox.create_count("Item") == 1
