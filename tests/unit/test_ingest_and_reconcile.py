"""Webhook ingest and reconciliation on in-memory fakes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from local.memory import MemoryConnections, MemoryCursorStore, MemoryLinkStore, MemoryQueue
from shared.errors import Retryable, WebhookRejected
from shared.mapping import Mapper, load_mapping
from shared.models import (
    ChangeEvent,
    ChangeKind,
    Connection,
    ObjectType,
    RecordLink,
    SourceRecord,
)
from shared.ports import InboundWebhook, WebhookAnswer
from shared.sync.content import Mapped, map_content
from shared.sync.ingest import WebhookIngest
from shared.sync.reconcile import Reconciler
from tests.fakes import DEFAULT_MAPPING, FakeCrm, epoch_ms

CONNECTION = "acme"


def request(body: str = "[]", signature: str = "good") -> InboundWebhook:
    return InboundWebhook(
        method="POST",
        url="https://api.example/webhooks/fake",
        headers={"x-signature": signature},
        body=body,
        received_at=datetime.now(UTC),
    )


class FakeReceiver:
    """Accepts ``x-signature: good``; one event per comma-separated id in the body, in
    that order, a deletion when the id is preceded by ``-``."""

    system = "hubspot"

    def verify(self, req: InboundWebhook) -> None:
        if req.headers.get("x-signature") != "good":
            raise WebhookRejected(401, "signature mismatch")

    def normalize(self, req: InboundWebhook, connection_id: str) -> list[ChangeEvent]:
        if not req.body.startswith("ids:"):
            raise WebhookRejected(400, "body is not an id list")
        return [
            ChangeEvent(
                connection_id=connection_id,
                source="hubspot",
                object_type=ObjectType.CONTACT,
                record_id=token.lstrip("-"),
                event_id=f"e-{position}-{token}",
                kind=ChangeKind.DELETED if token.startswith("-") else ChangeKind.UPDATED,
                occurred_at=datetime.now(UTC),
                version=position + 1,
            )
            for position, token in enumerate(req.body.removeprefix("ids:").split(","))
            if token
        ]

    def answer(self, req: InboundWebhook, enqueued: int) -> WebhookAnswer:
        return WebhookAnswer(content_type="text/plain", body=f"{enqueued} taken")


class BrokenQueue:
    def send(self, events: object) -> None:
        raise Retryable("SQS unavailable")


CONNECTIONS = MemoryConnections(
    [
        Connection(
            id=CONNECTION,
            crm="hubspot",
            accounting="quickbooks",
            mapping_name="services.yaml",
            mapping=DEFAULT_MAPPING.read_text(),
        )
    ]
)


def ingest(queue: object) -> WebhookIngest:
    return WebhookIngest(
        connections=CONNECTIONS,
        receiver_for=lambda vendor, connection_id: FakeReceiver(),
        queue=queue,  # type: ignore[arg-type]
        max_body_bytes=64,
    )


class TestIngest:
    def test_given_a_signed_delivery_then_every_event_is_enqueued(self) -> None:
        queue = MemoryQueue()

        answer = ingest(queue).accept("hubspot", CONNECTION, request("ids:1,2,3"))

        assert answer == WebhookAnswer(content_type="text/plain", body="3 taken")
        assert [m.event.record_id for m in queue.receive(10)] == ["1", "2", "3"]
        assert {m.event.connection_id for m in queue.receive(10)} <= {CONNECTION}

    def test_given_several_events_of_a_record_then_one_is_enqueued_for_it(self) -> None:
        queue = MemoryQueue()

        answer = ingest(queue).accept("hubspot", CONNECTION, request("ids:1,2,1,3,-3,3"))

        events = [m.event for m in queue.receive(10)]
        assert answer.body == "3 taken"
        assert [(e.record_id, e.event_id) for e in events] == [
            ("1", "e-2-1"),  # the newest of record 1
            ("2", "e-1-2"),
            ("3", "e-4--3"),  # nothing after a deletion matters
        ]

    @pytest.mark.parametrize(
        ("vendor", "connection", "req", "status"),
        [
            ("nope", CONNECTION, request("ids:1"), 404),
            ("xero", CONNECTION, request("ids:1"), 404),  # not this connection's system
            ("hubspot", "another", request("ids:1"), 404),  # no such connection
            ("hubspot", CONNECTION, request("ids:" + "1," * 40), 413),
            ("hubspot", CONNECTION, request("ids:1", signature="forged"), 401),
            ("hubspot", CONNECTION, request("{not json"), 400),
        ],
    )
    def test_given_bad_input_then_a_4xx_reason_and_nothing_enqueued(
        self, vendor: str, connection: str, req: InboundWebhook, status: int
    ) -> None:
        queue = MemoryQueue()

        with pytest.raises(WebhookRejected) as rejected:
            ingest(queue).accept(vendor, connection, req)

        assert rejected.value.status == status
        assert rejected.value.reason
        assert len(queue) == 0

    def test_given_the_queue_fails_then_the_error_surfaces_so_the_vendor_retries(self) -> None:
        with pytest.raises(Retryable):
            ingest(BrokenQueue()).accept("hubspot", CONNECTION, request("ids:1"))


def contact(record_id: str, version: int) -> SourceRecord:
    return SourceRecord(
        object_type=ObjectType.CONTACT,
        id=record_id,
        version=version,
        properties={"firstname": "Ada", "lastname": record_id, "email": f"{record_id}@example.com"},
    )


class TestReconcile:
    T0 = epoch_ms("2026-11-20T10:00:00")

    def reconciler(
        self, crm: FakeCrm, links: MemoryLinkStore, cursors: MemoryCursorStore, queue: MemoryQueue
    ) -> Reconciler:
        return Reconciler(
            connection_id=CONNECTION,
            crm=crm,
            mapper=Mapper(load_mapping(DEFAULT_MAPPING)),
            links=links,
            cursors=cursors,
            queue=queue,
            overlap_s=60,
        )

    def test_given_unlinked_and_changed_records_then_only_those_are_enqueued(self) -> None:
        crm, links, cursors, queue = (
            FakeCrm(),
            MemoryLinkStore(),
            MemoryCursorStore(),
            MemoryQueue(),
        )
        mapper = Mapper(load_mapping(DEFAULT_MAPPING))
        for record_id, version in [("1", self.T0), ("2", self.T0 + 1), ("3", self.T0 + 2)]:
            crm.put(contact(record_id, version))
        # 2: written as it is now, though at an older version (content decides);
        # 3: written before its email changed.
        written = {
            "2": contact("2", self.T0),
            "3": contact("3", self.T0).model_copy(
                update={
                    "properties": {"firstname": "Ada", "lastname": "3", "email": "old@example.com"}
                }
            ),
        }
        for record_id, source in written.items():
            content = map_content(mapper, source)
            assert isinstance(content, Mapped)
            links.save(
                RecordLink(
                    connection_id=CONNECTION,
                    source="hubspot",
                    source_type=ObjectType.CONTACT,
                    source_id=record_id,
                    target="quickbooks",
                    target_type=ObjectType.CUSTOMER,
                    target_id=f"q{record_id}",
                    source_version=self.T0,
                    content_hash=content.digest,
                )
            )

        report = self.reconciler(crm, links, cursors, queue).run()

        events = [m.event for m in queue.receive(10)]
        assert sorted(e.record_id for e in events) == ["1", "3"]
        assert {e.kind for e in events} == {ChangeKind.RECONCILE}
        assert report.enqueued[ObjectType.CONTACT] == 2
        assert cursors.get(f"{CONNECTION}:hubspot:contact") == self.T0 + 2

    def test_given_a_second_run_then_it_rescans_only_the_overlap_and_enqueues_nothing_new(
        self,
    ) -> None:
        crm, links, cursors, queue = (
            FakeCrm(),
            MemoryLinkStore(),
            MemoryCursorStore(),
            MemoryQueue(),
        )
        crm.put(contact("1", self.T0 - 3_600_000))  # an hour before the watermark
        crm.put(contact("2", self.T0))
        cursors.put(f"{CONNECTION}:hubspot:contact", self.T0)

        report = self.reconciler(crm, links, cursors, queue).run()

        assert report.scanned[ObjectType.CONTACT] == 1
        assert [m.event.record_id for m in queue.receive(10)] == ["2"]

    def test_given_more_than_a_batch_then_all_are_enqueued_before_the_watermark_moves(
        self,
    ) -> None:
        crm, links, cursors, queue = (
            FakeCrm(),
            MemoryLinkStore(),
            MemoryCursorStore(),
            MemoryQueue(),
        )
        for i in range(25):
            crm.put(contact(str(i), self.T0 + i))

        self.reconciler(crm, links, cursors, queue).run()

        assert len(queue) == 25
        assert cursors.get(f"{CONNECTION}:hubspot:contact") == self.T0 + 24


def test_given_a_run_out_of_time_then_the_next_run_continues_from_its_checkpoint() -> None:
    crm, links, cursors, queue = FakeCrm(), MemoryLinkStore(), MemoryCursorStore(), MemoryQueue()
    t0 = TestReconcile.T0
    for i in range(35):
        crm.put(contact(str(i), t0 + i * 1000))
    reconciler = TestReconcile().reconciler(crm, links, cursors, queue)
    clock = iter([120.0, 30.0])  # plenty of time after the first batch, then too little

    first = reconciler.run(time_left_s=lambda: next(clock))
    second = reconciler.run()

    assert not first.complete
    assert first.enqueued[ObjectType.CONTACT] == 20
    assert cursors.get(f"{CONNECTION}:hubspot:contact") == t0 + 34_000
    assert second.complete
    # the second run re-read the overlap (60 s) and the rest, and enqueued the rest
    received = {m.event.record_id for m in queue.receive(100)}
    assert received == {str(i) for i in range(35)}
