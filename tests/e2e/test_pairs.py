"""Every registered CRM into every registered accounting system, on the local stack.

The same scenarios for each pair, driven only through the vendors' own APIs (the
sandboxes' person and books roles): contact → customer, matched before one is made;
won deal → invoice; a change → an update, never a second invoice; a bad record → an
audited reason; a 429 and a lost answer → the invoice written exactly once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import pytest

from local.config import LocalConfig
from local.demo import change_won_deal, check, create_sample_data, settle
from local.runtime import LocalStack
from local.sandboxes.registry import Books, CrmPerson, DemoLine, sandbox
from shared.connectors.registry import vendors
from shared.models import AuditEntry, ObjectType, Outcome
from shared.models.events import record_key
from shared.stores.audit import DynamoAuditLog
from tests.e2e.conftest import eventually, fast_retries

pytestmark = pytest.mark.e2e

PAIRS = [(crm.name, books.name) for crm in vendors("crm") for books in vendors("accounting")]


@dataclass
class Pair:
    stack: LocalStack
    crm: str
    accounting: str
    person: CrmPerson
    books: Books

    @property
    def connection_id(self) -> str:
        return self.stack.config.connections[0].id

    def settle(self) -> None:
        settle(self.stack)

    def audit(self) -> list[AuditEntry]:
        log = DynamoAuditLog(self.stack.clients.dynamodb, self.stack.resources.tables["Audit"], 1)
        return log.entries(self.connection_id, limit=1000)

    def invoices_for(self, deal: str) -> list[str]:
        number = self.person.invoice_number(deal)
        return [i.total for i in self.books.invoices() if i.number == number]


@pytest.fixture(scope="module", params=PAIRS, ids=[f"{crm}-{books}" for crm, books in PAIRS])
def pair(request: pytest.FixtureRequest) -> Iterator[Pair]:
    crm, accounting = request.param
    person_of, books_of = sandbox(crm).person, sandbox(accounting).books
    assert person_of is not None, f"the {crm} sandbox has no person role"
    assert books_of is not None, f"the {accounting} sandbox has no books role"
    config = (
        LocalConfig.load()
        .with_pair(crm, accounting)
        .with_free_ports()
        .model_copy(update={"reconcile_interval_s": 3600})  # fired when a test means to
    )
    with LocalStack(fast_retries(config)) as stack:
        yield Pair(
            stack=stack,
            crm=crm,
            accounting=accounting,
            person=person_of(stack.sandboxes[crm], stack.urls.sandboxes[crm]),
            books=books_of(stack.sandboxes[accounting], stack.urls.sandboxes[accounting]),
        )


def test_given_the_demo_scenario_then_every_record_arrives_once(pair: Pair) -> None:
    """Customers, won deals invoiced, the open deal not, a changed deal updated, the
    contact without an email audited invalid, nothing dead-lettered."""
    customers_before = {c.id for c in pair.books.customers()}
    invoices_before = {i.id for i in pair.books.invoices()}

    scenario = create_sample_data(pair.person)
    pair.settle()
    change_won_deal(pair.person, scenario)
    pair.settle()
    pair.stack.fire_schedule()
    pair.settle()

    customers = [c for c in pair.books.customers() if c.id not in customers_before]
    invoices = [i for i in pair.books.invoices() if i.id not in invoices_before]
    dead_letters = sum(q.dead_letters for q in pair.stack.status().queues.values())
    problems = check(
        scenario, pair.person, pair.crm, customers, invoices, pair.audit(), dead_letters
    )
    assert problems == []
    assert len(invoices) == len(scenario.won_deals)


def test_given_a_customer_already_in_the_books_when_its_contact_syncs_then_it_is_linked(
    pair: Pair,
) -> None:
    surname = f"Torvalds{uuid.uuid4().hex[:6]}"
    email = f"{surname.lower()}@example.test"
    existing = pair.books.add_customer(f"Linus {surname}", email)

    contact = pair.person.create_contact("Linus", surname, email)
    pair.settle()

    assert [c.id for c in pair.books.customers() if c.email.lower() == email] == [existing]
    outcomes = [e.outcome for e in pair.audit() if e.record_key == _contact_key(pair, contact)]
    assert Outcome.LINKED in outcomes
    assert Outcome.CREATED not in outcomes


def test_given_a_429_then_a_lost_answer_when_an_invoice_is_written_then_it_exists_once(
    pair: Pair,
) -> None:
    surname = f"Hopper{uuid.uuid4().hex[:6]}"
    contact = pair.person.create_contact("Grace", surname, f"{surname.lower()}@example.test")
    pair.settle()
    pair.books.fail_next_invoice_writes(["rate_limit", "drop_response"])

    deal = pair.person.create_deal(
        f"Audit {surname}",
        won=True,
        company=None,
        contact=contact,
        lines=[DemoLine("Design", "2", "75")],
    )
    eventually(lambda: pair.invoices_for(deal), f"an invoice for deal {deal}", timeout=60)
    pair.settle()

    assert [Decimal(total) for total in pair.invoices_for(deal)] == [Decimal("150")]
    assert sum(q.dead_letters for q in pair.stack.status().queues.values()) == 0


def _contact_key(pair: Pair, contact: str) -> str:
    return record_key(pair.crm, ObjectType.CONTACT, contact)
