"""A start date for a connection's first reconcile, and the operator's backfill from a
chosen day: what changed before the day is left alone, and an interrupted backfill
carries on from its checkpoint without writing anything twice."""

from __future__ import annotations

from datetime import date

import pytest

from local.memory import MemoryCursorStore
from shared.mapping import Mapper, load_mapping
from shared.models import Connection, ObjectType
from shared.sync.reconcile import Reconciler, ReconcileReport
from tests.fakes import DEFAULT_MAPPING, epoch_ms
from tests.unit.test_backfill import CONNECTION, Rig
from tests.unit.test_engine import T0, contact, deal, event, line

DAY = date(2026, 11, 20)  # T0 is this day, 10:00 UTC
SINCE_MS = epoch_ms("2026-11-20T00:00:00")
BEFORE = T0 - 86_400_000  # the day before
CONTACTS_AND_DEALS = (ObjectType.CONTACT, ObjectType.DEAL)
STEP = 120_000  # between two records' changes: more than the scans' overlap (60 s)


class SinceRig(Rig):
    """Contacts with a won deal each, changed a ``STEP`` apart from ``version`` on."""

    def __init__(self, *, start_ms: int = 0) -> None:
        super().__init__()
        self.cursors = MemoryCursorStore()
        self.reconciler = Reconciler(
            connection_id=CONNECTION,
            crm=self.crm,
            mapper=Mapper(load_mapping(DEFAULT_MAPPING)),
            links=self.links,
            cursors=self.cursors,
            queue=self.queue,
            overlap_s=60,
            start_ms=start_ms,
            batch_writer=self.engine.backfill,
        )

    def people(self, ids: range, version: int) -> None:
        for i in ids:
            at = version + i * STEP
            self.crm.put(contact(str(i), at, email=f"p{i}@example.com", lastname=f"P{i}"))
            lines = [line(f"{i}01", "Services", "1", "100.00")]
            self.crm.put(deal(f"9{i}", at, lines=lines, contacts=[str(i)]))

    def customers(self) -> list[str]:
        return sorted(c.body.display_name for c in self.ledger.customers.values())  # type: ignore[union-attr]

    def backfill(self, **kwargs: object) -> ReconcileReport:
        return self.reconciler.backfill(SINCE_MS, CONTACTS_AND_DEALS, **kwargs)  # type: ignore[arg-type]


def test_a_connections_start_date_is_its_first_millisecond_in_utc() -> None:
    connection = Connection(
        id=CONNECTION,
        crm="hubspot",
        accounting="quickbooks",
        mapping_name="services.yaml",
        mapping="x",
        sync_since=DAY,
    )

    assert connection.start_ms == SINCE_MS
    assert connection.model_copy(update={"sync_since": None}).start_ms == 0


class TestFirstReconcileFromAStartDate:
    def test_given_a_start_date_then_the_first_run_imports_only_what_changed_since(
        self,
    ) -> None:
        rig = SinceRig(start_ms=SINCE_MS)
        rig.people(range(3), BEFORE)
        rig.people(range(3, 5), T0)

        report = rig.reconciler.run()
        rig.drain()

        assert rig.customers() == ["Ada P3", "Ada P4"]
        assert len(rig.ledger.invoices) == 2
        # The daily walk reads every deal, yet leaves the old ones never synced alone.
        assert report.scanned["deal (walk)"] == 5 and report.unsynced["deal (walk)"] == 0

    def test_given_no_start_date_then_the_first_run_imports_everything(self) -> None:
        rig = SinceRig()
        rig.people(range(3), BEFORE)
        rig.people(range(3, 5), T0)

        rig.reconciler.run()
        rig.drain()

        assert len(rig.customers()) == len(rig.ledger.invoices) == 5

    def test_given_an_old_deal_synced_since_then_the_walk_still_catches_its_lost_change(
        self,
    ) -> None:
        rig = SinceRig(start_ms=SINCE_MS)
        rig.people(range(1), BEFORE)
        first, second = line("001", "Services", "1", "100.00"), line("002", "Hours", "2", "80")
        old_deal = rig.crm.put(deal("90", BEFORE, lines=[first, second], contacts=["0"]))
        for record in (contact("0", BEFORE, email="p0@example.com", lastname="P0"), old_deal):
            rig.engine.handle(event(record))  # its webhooks, after the start date
        # A line item removed, its webhook lost: the deal's own version does not move.
        rig.crm.put(deal("90", BEFORE, lines=[first], contacts=["0"]))

        report = rig.reconciler.run()
        rig.drain()

        assert report.enqueued["deal (walk)"] == 1
        [invoice] = rig.ledger.invoices.values()
        assert len(invoice.body.lines) == 1  # type: ignore[union-attr]


class TestBackfill:
    def test_given_a_day_then_only_records_changed_since_are_imported_once(self) -> None:
        rig = SinceRig()
        rig.people(range(3), BEFORE)
        rig.people(range(3, 40), T0)

        first = rig.backfill()
        again = rig.backfill()
        rig.drain()

        assert first.batched == {"contact": 37, "deal": 37, "line_item": 0}
        assert len(rig.customers()) == len(rig.ledger.invoices) == 37
        assert "Ada P0" not in rig.customers()
        # Run again, it carries on from its checkpoint: nothing more to write.
        assert sum(again.unsynced.values()) == 0 and len(rig.queue) == 0
        assert again.scanned["contact"] == 1, "the last one again: the scan's overlap"

    def test_given_an_interrupted_backfill_when_run_again_then_it_writes_the_rest_once(
        self,
    ) -> None:
        rig = SinceRig()
        rig.people(range(70), T0)
        checkpoints: list[int] = []

        def interrupt_after_the_first_batch(report: ReconcileReport) -> None:
            checkpoints.append(report.batched["contact"])
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            rig.backfill(progress=interrupt_after_the_first_batch)
        assert checkpoints == [30] and len(rig.ledger.customers) == 30
        left = rig.reconciler.backfill_left(SINCE_MS, CONTACTS_AND_DEALS)
        resumed = rig.backfill()
        rig.drain()

        # From the checkpoint (the overlap re-reads the last record written), not the day.
        assert left["contact"] == resumed.scanned["contact"] == 41
        assert resumed.batched["contact"] == 40
        assert len(rig.ledger.customers) == len(rig.ledger.invoices) == 70
        assert len(set(rig.customers())) == 70

    def test_given_restart_then_it_scans_from_the_day_again_and_writes_nothing_twice(
        self,
    ) -> None:
        rig = SinceRig()
        rig.people(range(12), T0)
        rig.backfill()

        rig.reconciler.restart_backfill(SINCE_MS, CONTACTS_AND_DEALS)
        again = rig.backfill()

        assert again.scanned["contact"] == again.scanned["deal"] == 12
        assert sum(again.unsynced.values()) == 0
        assert len(rig.ledger.customers) == 12

    def test_given_a_dry_run_then_it_counts_what_it_would_import_and_writes_nothing(
        self,
    ) -> None:
        rig = SinceRig()
        rig.people(range(3), BEFORE)
        rig.people(range(3, 8), T0)
        rig.crm.put(contact("99", T0, email=None, lastname="Nobody"))  # no email: invalid

        counted = rig.backfill(dry_run=True)

        assert counted.unsynced == {"contact": 6, "deal": 5, "line_item": 0}
        assert counted.invalid["contact"] == 1
        assert not rig.ledger.customers and len(rig.queue) == 0
        assert rig.backfill().batched["contact"] == 5, "the dry run moved no checkpoint"

    def test_given_chosen_objects_then_only_those_are_imported(self) -> None:
        rig = SinceRig()
        rig.people(range(4), T0)

        report = rig.reconciler.backfill(SINCE_MS, [ObjectType.CONTACT])

        assert set(report.scanned) == {"contact"}
        assert len(rig.ledger.customers) == 4 and not rig.ledger.invoices
