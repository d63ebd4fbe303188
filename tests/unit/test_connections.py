"""Many connections, one deployment: each event reaches its own connection's engine, and
two connections never see each other's records, even with the same ids in their CRMs.

The stores (links, audit, queue) are shared, as the DynamoDB tables and the SQS queue
are in AWS; the connection id in every key is what keeps the connections apart.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache

import pytest

from local.memory import (
    MemoryAuditLog,
    MemoryConnections,
    MemoryCursorStore,
    MemoryLinkStore,
    MemoryQueue,
)
from shared.bootstrap import mapper_of
from shared.errors import Retryable
from shared.models import (
    ChangeEvent,
    ChangeKind,
    Connection,
    ObjectType,
    Outcome,
    SourceRecord,
)
from shared.sync.engine import SyncEngine
from shared.sync.reconcile import Reconciler, reconcile_all
from shared.sync.route import ConnectionRouter
from tests.fakes import DEFAULT_MAPPING, FakeCrm, FakeLedger, epoch_ms

T0 = epoch_ms("2026-11-20T10:00:00")
NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


def connection(connection_id: str) -> Connection:
    return Connection(
        id=connection_id,
        crm="hubspot",
        accounting="quickbooks",
        mapping_name=DEFAULT_MAPPING.name,
        mapping=DEFAULT_MAPPING.read_text(),
    )


def contact(email: str) -> SourceRecord:
    return SourceRecord(
        object_type=ObjectType.CONTACT,
        id="1",  # the same id in both CRMs: ids are only unique within an account
        version=T0,
        properties={"firstname": "Ada", "lastname": "Lovelace", "email": email},
    )


def created(connection_id: str, event_id: str = "e-1") -> ChangeEvent:
    return ChangeEvent(
        connection_id=connection_id,
        source="hubspot",
        object_type=ObjectType.CONTACT,
        record_id="1",
        event_id=event_id,  # vendors' event ids repeat across accounts too
        kind=ChangeKind.CREATED,
        occurred_at=NOW,
        version=T0,
    )


class Deployment:
    """Two connections, each with its own CRM account and books, over shared stores."""

    def __init__(self) -> None:
        self.crms = {"acme": FakeCrm(), "globex": FakeCrm()}
        self.books = {"acme": FakeLedger(), "globex": FakeLedger()}
        self.links = MemoryLinkStore()
        self.audit = MemoryAuditLog()
        self.queue = MemoryQueue()
        self.connections = MemoryConnections([connection("acme"), connection("globex")])
        self.router = ConnectionRouter(
            connections=self.connections, engine_for=self.engine, audit=self.audit
        )

    @cache  # noqa: B019 - one per test
    def engine(self, of: Connection) -> SyncEngine:
        return SyncEngine(
            connection_id=of.id,
            crm=self.crms[of.id],
            ledger=self.books[of.id],
            mapper=mapper_of(of),
            links=self.links,
            audit=self.audit,
            queue=self.queue,
            clock=lambda: NOW,
        )


def test_given_the_same_record_id_in_two_connections_then_each_books_get_their_own() -> None:
    deployment = Deployment()
    deployment.crms["acme"].put(contact("ada@acme.example"))
    deployment.crms["globex"].put(contact("ada@globex.example"))

    first = deployment.router.handle(created("acme"))
    second = deployment.router.handle(created("globex"))

    assert (first.outcome, second.outcome) == (Outcome.CREATED, Outcome.CREATED)
    acme_customers = [s.body for s in deployment.books["acme"].customers.values()]
    globex_customers = [s.body for s in deployment.books["globex"].customers.values()]
    assert [p.email for p in acme_customers] == ["ada@acme.example"]  # type: ignore[union-attr]
    assert [p.email for p in globex_customers] == ["ada@globex.example"]  # type: ignore[union-attr]
    acme_link = deployment.links.get("acme", "hubspot:contact:1")
    globex_link = deployment.links.get("globex", "hubspot:contact:1")
    assert acme_link is not None and globex_link is not None
    assert acme_link.target_id in deployment.books["acme"].customers
    assert globex_link.target_id in deployment.books["globex"].customers
    assert [e.connection_id for e in deployment.audit.entries("acme")] == ["acme"]
    assert [e.connection_id for e in deployment.audit.entries("globex")] == ["globex"]


def test_given_a_change_in_one_connection_then_the_other_is_untouched() -> None:
    deployment = Deployment()
    for name in ("acme", "globex"):
        deployment.crms[name].put(contact(f"ada@{name}.example"))
        deployment.router.handle(created(name))
    globex_before = {
        k: (s.sync_token, s.body) for k, s in deployment.books["globex"].customers.items()
    }

    renamed = contact("ada@acme.example").model_copy(
        update={
            "version": T0 + 1000,
            "properties": {"firstname": "Augusta", "lastname": "King", "email": "ada@acme.example"},
        }
    )
    deployment.crms["acme"].put(renamed)
    updated = deployment.router.handle(
        created("acme", "e-2").model_copy(update={"kind": ChangeKind.UPDATED, "version": T0 + 1000})
    )

    assert updated.outcome is Outcome.UPDATED
    assert {
        k: (s.sync_token, s.body) for k, s in deployment.books["globex"].customers.items()
    } == globex_before
    assert deployment.crms["globex"].fetches == 1  # its one create; nothing since


def test_given_an_event_of_an_unknown_connection_then_it_is_rejected_and_audited() -> None:
    deployment = Deployment()

    entry = deployment.router.handle(created("initech"))

    assert entry.outcome is Outcome.REJECTED
    assert "no connection 'initech'" in entry.reason
    assert deployment.audit.entries("initech") == [entry]
    assert all(not books.customers for books in deployment.books.values())


def test_given_an_event_from_a_system_the_connection_does_not_use_then_it_is_rejected() -> None:
    deployment = Deployment()
    foreign = created("acme").model_copy(update={"source": "salesforce"})

    entry = deployment.router.handle(foreign)

    assert entry.outcome is Outcome.REJECTED
    assert "not salesforce" in entry.reason
    assert deployment.crms["acme"].fetches == 0


def test_given_two_connections_then_their_events_never_share_a_message_group() -> None:
    assert created("acme").record_key == created("globex").record_key
    assert created("acme").message_group != created("globex").message_group
    assert created("acme").dedup_id != created("globex").dedup_id


def test_given_a_mapping_with_invoice_custom_fields_then_only_a_target_with_them_takes_it() -> None:
    text = DEFAULT_MAPPING.read_text().replace(
        "    line_items:\n",
        '    custom_fields:\n      "PO Number": {from: po_number}\n    line_items:\n',
        1,
    )
    with_custom = connection("acme").model_copy(update={"mapping": text})

    assert mapper_of(with_custom).uses_custom_fields()  # QuickBooks has invoice custom fields
    with pytest.raises(ValueError, match="maps invoice custom fields, which Xero invoices do not"):
        mapper_of(with_custom.model_copy(update={"accounting": "xero"}))


def test_given_a_mapping_for_another_crm_then_the_connection_is_refused() -> None:
    with pytest.raises(ValueError, match=r"written for source 'hubspot'.* uses 'salesforce'"):
        mapper_of(connection("acme").model_copy(update={"crm": "salesforce"}))


# --- reconcile over every connection ------------------------------------------------


def reconciler_of(deployment: Deployment, of: Connection) -> Reconciler:
    if of.id == "broken":
        raise Retryable("the CRM is down")
    return Reconciler(
        connection_id=of.id,
        crm=deployment.crms[of.id],
        mapper=mapper_of(of),
        links=deployment.links,
        cursors=MemoryCursorStore(),
        queue=deployment.queue,
        overlap_s=300,
        audit=deployment.audit,
    )


def test_given_dead_letters_of_two_connections_then_one_run_resolves_both() -> None:
    """A dead letter read is hidden for a while: were each connection to read the queue
    itself, the first would hide the second's letters from it."""
    deployment = Deployment()
    for name in ("acme", "globex"):
        deployment.crms[name].put(contact(f"ada@{name}.example"))
        deployment.router.handle(created(name))  # applied since it was dead-lettered
        deployment.queue.dead_letter(created(name), message_id=f"m-{name}")
    connections = deployment.connections.all()

    fleet = reconcile_all(connections, lambda of: reconciler_of(deployment, of), deployment.queue)

    assert fleet.dead_letters_resolved == {"acme": 1, "globex": 1}
    assert deployment.queue.dead_letters == []
    assert fleet.failed == {}
    for name in ("acme", "globex"):
        outcomes = [e.outcome for e in deployment.audit.entries(name)]
        assert Outcome.RESOLVED in outcomes


def test_given_one_connections_crm_down_then_the_others_reconcile_and_it_is_reported() -> None:
    deployment = Deployment()
    broken = connection("broken")

    fleet = reconcile_all(
        [broken, *deployment.connections.all()],
        lambda of: reconciler_of(deployment, of),
        deployment.queue,
    )

    assert fleet.failed == {"broken": "Retryable: the CRM is down"}
    assert set(fleet.reports) == {"acme", "globex"}
    assert all(report.complete for report in fleet.reports.values())
