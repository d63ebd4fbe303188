"""No loops, proven on fakes: with two-way fields on both sides, every write (ours
included) comes back as a change event, and still the two systems settle after a
bounded number of writes, agreeing on every two-way field as its policy says."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from local.memory import MemoryAuditLog, MemoryLinkStore
from shared.mapping import Mapper, parse_mapping
from shared.models import ChangeEvent, ChangeKind, Invoice, ObjectType, SourceRecord
from shared.sync.engine import SyncEngine
from tests.fakes import FakeCrm, FakeLedger, Ticks

CONNECTION = "acme"
TODAY = datetime(2026, 11, 25, 12, tzinfo=UTC)
START = date(2026, 12, 1)
POLICIES = ("crm_wins", "accounting_wins", "newest_wins", "hold")
# A change is applied once to each record it reaches on the other side (a payment: the
# deal, and its company's balance), and its echoes write nothing.
WRITES_PER_CHANGE = 2
MAX_DELIVERIES = 400


def mapping(policy: str) -> str:
    return f"""
version: 1
objects:
  company:
    fields:
      display_name: {{from: name, required: true}}
    back:
      open_balance: {{from: open_balance, label: Open balance, kind: number}}
  deal:
    fields:
      name: {{from: dealname, required: true}}
      status: {{default: won}}
      currency: {{default: USD}}
      due_date: {{from: due_date, transforms: [date], direction: both, conflict: {policy}}}
    line_items:
      fields:
        name: {{from: name, required: true}}
        quantity: {{from: quantity, transforms: [decimal], required: true}}
        unit_price: {{from: price, transforms: [decimal], required: true}}
    back:
      invoice_status: {{from: status, label: Invoice status, kind: enumeration}}
      amount_paid: {{from: amount_paid, label: Amount paid, kind: number}}
"""


@dataclass
class ListQueue:
    """The engine's queue: what it sends is delivered like any other event."""

    sent: list[ChangeEvent] = field(default_factory=list)

    def send(self, events: Sequence[ChangeEvent]) -> None:
        self.sent.extend(events)

    def defer(self, receipt: str, seconds: float) -> None:
        raise AssertionError("nothing is deferred here")

    def dead_letter(self, event: ChangeEvent, *, message_id: str) -> None:
        raise AssertionError("nothing is dead-lettered here")


@dataclass
class World:
    """Both systems, the engine between them, and every change event not delivered yet."""

    policy: str
    crm: FakeCrm = field(default_factory=FakeCrm)
    ledger: FakeLedger = field(default_factory=FakeLedger)
    queue: ListQueue = field(default_factory=ListQueue)
    pending: list[ChangeEvent] = field(default_factory=list)
    seen_crm: int = 0
    seen_ledger: int = 0
    seen_queue: int = 0
    delivered: int = 0

    def __post_init__(self) -> None:
        # One clock for both sides: which change is newest is as they were made.
        self.crm.clock = self.ledger.clock = Ticks()
        self.engine = SyncEngine(
            connection_id=CONNECTION,
            crm=self.crm,
            ledger=self.ledger,
            mapper=Mapper(parse_mapping(mapping(self.policy), "loops.yaml")),
            links=MemoryLinkStore(),
            audit=MemoryAuditLog(),
            queue=self.queue,
            clock=lambda: TODAY,
            standings=self.ledger,
            crm_writer=self.crm,
        )
        self.crm.put(
            SourceRecord(
                object_type=ObjectType.COMPANY, id="5", version=1, properties={"name": "Acme"}
            )
        )
        deal = SourceRecord(
            object_type=ObjectType.DEAL,
            id="9",
            version=1,
            properties={"dealname": "Redesign", "due_date": START.isoformat()},
            associations={ObjectType.COMPANY: ["5"]},
            children={
                ObjectType.LINE_ITEM: [
                    SourceRecord(
                        object_type=ObjectType.LINE_ITEM,
                        id="71",
                        version=1,
                        properties={"name": "Services", "quantity": "1", "price": "900"},
                    )
                ]
            },
        )
        self.crm.edit(self.crm.put(deal), {})
        self.settle()

    # --- the two sides' changes, and their events -------------------------------------

    def edit_crm(self, due: date) -> None:
        self.crm.edit(self.crm.records[(ObjectType.DEAL, "9")], {"due_date": due.isoformat()})

    def edit_accounting(self, due: date) -> None:
        self.ledger.edit(ObjectType.INVOICE, self.invoice_id, due_date=due)

    def pay(self, amount: int) -> None:
        self.ledger.pay({self.invoice_id: Decimal(amount)}, date(2026, 11, 24))

    def collect(self) -> None:
        for object_type, record_id, version in self.crm.changes[self.seen_crm :]:
            self.pending.append(self._event(self.crm.system, object_type, record_id, version))
        for change in self.ledger.feed[self.seen_ledger :]:
            self.pending.append(
                self._event(
                    self.ledger.system, change.object_type, change.target_id, change.changed_at_ms
                )
            )
        self.pending += self.queue.sent[self.seen_queue :]
        self.seen_crm, self.seen_ledger = len(self.crm.changes), len(self.ledger.feed)
        self.seen_queue = len(self.queue.sent)

    def deliver(self, index: int) -> None:
        self.collect()
        if self.pending:
            self.engine.handle(self.pending.pop(index % len(self.pending)))
            self.delivered += 1
            self.collect()

    def settle(self) -> None:
        """Deliver every event, theirs and ours, until none is left (or fail)."""
        self.collect()
        for _ in range(MAX_DELIVERIES):
            if not self.pending:
                return
            self.deliver(0)
        raise AssertionError(f"not settled after {MAX_DELIVERIES} deliveries: a loop")

    def _event(
        self, system: str, object_type: ObjectType, record_id: str, version: int
    ) -> ChangeEvent:
        return ChangeEvent(
            connection_id=CONNECTION,
            source=system,
            object_type=object_type,
            record_id=record_id,
            event_id=f"{system}:{object_type}:{record_id}:{version}:{len(self.pending)}",
            kind=ChangeKind.UPDATED,
            occurred_at=TODAY,
            version=version,
        )

    # --- what each side holds ----------------------------------------------------------

    @property
    def invoice_id(self) -> str:
        (only,) = self.ledger.invoices
        return only

    def crm_due(self) -> date:
        return date.fromisoformat(
            self.crm.records[(ObjectType.DEAL, "9")].properties["due_date"] or ""
        )

    def accounting_due(self) -> date | None:
        invoice = self.ledger.invoices[self.invoice_id].body
        assert isinstance(invoice, Invoice)
        return invoice.due_date

    def writes(self) -> int:
        """Writes to either side made by the sync (each under its own key), not the
        people's edits."""
        return len(self.crm.writes) + len(self.ledger.replies)


Edit = tuple[str, int]
EDITS = st.one_of(
    st.tuples(st.sampled_from(["crm", "accounting"]), st.integers(1, 60)),
    st.tuples(st.just("pay"), st.integers(1, 400)),
    st.tuples(st.just("deliver"), st.integers(0, 50)),
)


@settings(max_examples=60, deadline=None)
@given(policy=st.sampled_from(POLICIES), edits=st.lists(EDITS, max_size=12))
def test_random_edits_on_both_sides_settle_and_agree(policy: str, edits: list[Edit]) -> None:
    world = World(policy)
    before = world.writes()
    crm_values, accounting_values = {START}, {START}
    changes = 0
    for kind, amount in edits:
        due = START + timedelta(days=amount)
        if kind == "crm":
            world.edit_crm(due)
            crm_values.add(due)
        elif kind == "accounting":
            world.edit_accounting(due)
            accounting_values.add(due)
        elif kind == "pay":
            world.pay(amount)
        else:
            world.deliver(amount)
            continue
        changes += 1

    world.settle()

    # Bounded: each change costs a few writes, whatever echoes it made.
    assert world.writes() - before <= WRITES_PER_CHANGE * changes
    # Nothing invented: each side holds a value one side was given.
    assert world.crm_due() in crm_values | accounting_values
    assert world.accounting_due() in crm_values | accounting_values
    if policy != "hold":
        assert world.crm_due() == world.accounting_due()
    # One-way back fields always show where the invoice stands now.
    standing = world.ledger.invoice_standing(world.invoice_id, today=TODAY.date())
    assert standing is not None
    deal = world.crm.records[(ObjectType.DEAL, "9")].properties
    assert (deal["invoice_status"], deal["amount_paid"]) == (
        standing.status.value,
        format(standing.amount_paid, "f"),
    )
    (customer,) = world.ledger.customers
    picture = world.ledger.customer_standing(customer, today=TODAY.date())
    assert picture is not None
    company = world.crm.records[(ObjectType.COMPANY, "5")].properties
    assert company["open_balance"] == format(picture.open_balance, "f")


@pytest.mark.parametrize("policy", POLICIES)
@settings(max_examples=20, deadline=None)
@given(crm_first=st.booleans(), order=st.lists(st.integers(0, 10), min_size=6, max_size=6))
def test_both_sides_edited_at_once_take_the_policy_s_value(
    policy: str, crm_first: bool, order: list[int]
) -> None:
    world = World(policy)
    crm_due, accounting_due = START + timedelta(days=10), START + timedelta(days=20)
    if crm_first:
        world.edit_crm(crm_due)
        world.edit_accounting(accounting_due)
    else:
        world.edit_accounting(accounting_due)
        world.edit_crm(crm_due)
    newest = accounting_due if crm_first else crm_due

    for index in order:  # the two sides' events, in any order
        world.deliver(index)
    world.settle()

    expected = {
        "crm_wins": (crm_due, crm_due),
        "accounting_wins": (accounting_due, accounting_due),
        "newest_wins": (newest, newest),
        "hold": (crm_due, accounting_due),
    }[policy]
    assert (world.crm_due(), world.accounting_due()) == expected
