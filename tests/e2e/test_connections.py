"""Two connections on one local stack: HubSpot → QuickBooks and Salesforce → Xero.

One set of functions, tables and queue serves both; each record reaches only its own
connection's books, each connection's audit holds only its own records, a delivery
posted to the other connection's route is refused, and reconcile runs both.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from infra.resources import webhook_path
from local.config import LocalConfig, LocalConnection
from local.demo import settle
from local.runtime import LocalStack
from local.sandboxes.registry import Books, CrmPerson, sandbox
from shared.models import ObjectType, Outcome
from shared.models.events import record_key
from shared.stores.audit import DynamoAuditLog
from tests.e2e.conftest import eventually, fast_retries

pytestmark = pytest.mark.e2e

PRESETS = LocalConfig.load().connections[0].mapping_file.parents[1]
CONNECTIONS = (
    LocalConnection(
        id="acme",
        crm="hubspot",
        accounting="quickbooks",
        mapping_file=PRESETS / "hubspot" / "services.yaml",
    ),
    LocalConnection(
        id="globex",
        crm="salesforce",
        accounting="xero",
        mapping_file=PRESETS / "salesforce" / "services.yaml",
    ),
)


@dataclass
class Side:
    connection: LocalConnection
    person: CrmPerson
    books: Books


@pytest.fixture(scope="module")
def sides() -> Iterator[tuple[LocalStack, dict[str, Side]]]:
    config = LocalConfig.load().model_copy(
        update={"connections": CONNECTIONS, "reconcile_interval_s": 3600}
    )
    config = LocalConfig.model_validate(config.model_dump()).with_free_ports()
    with LocalStack(fast_retries(config)) as stack:
        found = {}
        for connection in CONNECTIONS:
            person_of = sandbox(connection.crm).person
            books_of = sandbox(connection.accounting).books
            assert person_of is not None and books_of is not None
            found[connection.id] = Side(
                connection,
                person_of(stack.sandboxes[connection.crm], stack.urls.sandboxes[connection.crm]),
                books_of(
                    stack.sandboxes[connection.accounting],
                    stack.urls.sandboxes[connection.accounting],
                ),
            )
        yield stack, found


def test_given_two_connections_then_each_contact_reaches_only_its_own_books(
    sides: tuple[LocalStack, dict[str, Side]],
) -> None:
    stack, by_id = sides
    emails = {}
    contacts = {}
    for connection_id, side in by_id.items():
        surname = f"Lovelace{uuid.uuid4().hex[:6]}"
        emails[connection_id] = f"{surname.lower()}@{connection_id}.example"
        contacts[connection_id] = side.person.create_contact("Ada", surname, emails[connection_id])

    for connection_id, side in by_id.items():
        eventually(
            lambda side=side, email=emails[connection_id]: [
                c for c in side.books.customers() if c.email.lower() == email
            ],
            f"a customer in {connection_id}'s books",
            timeout=60,
        )
    settle(stack)

    audit = DynamoAuditLog(stack.clients.dynamodb, stack.resources.tables["Audit"], 1)
    for connection_id, side in by_id.items():
        other = next(c for c in by_id if c != connection_id)
        books_emails = {c.email.lower() for c in side.books.customers()}
        assert emails[connection_id] in books_emails
        assert emails[other] not in books_emails
        entries = audit.entries(connection_id, limit=1000)
        own = record_key(side.connection.crm, ObjectType.CONTACT, contacts[connection_id])
        assert any(e.record_key == own and e.outcome is Outcome.CREATED for e in entries)
        assert {e.connection_id for e in entries} == {connection_id}
        assert not any(e.record_key.startswith(f"{by_id[other].connection.crm}:") for e in entries)


def test_given_a_delivery_on_the_other_connections_route_then_404_and_nothing_enqueued(
    sides: tuple[LocalStack, dict[str, Side]],
) -> None:
    stack, _ = sides
    batches_before = stack.status().workers["Events"].batches

    response = httpx.post(
        f"{stack.urls.api}{webhook_path('hubspot', 'globex')}",
        content=b"[]",
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 404
    assert "no webhook route for 'hubspot' on 'globex'" in response.json()["message"]
    assert stack.wait_until_drained(10)
    assert stack.status().workers["Events"].batches == batches_before


def test_given_two_connections_when_reconcile_runs_then_it_reports_each(
    sides: tuple[LocalStack, dict[str, Side]],
) -> None:
    stack, by_id = sides

    reports = stack.fire_schedule()

    assert set(reports) == set(by_id)
    assert all(report["complete"] for report in reports.values())
