"""Batched writes: an optional capability of an ``AccountingTarget``.

Bulk work (a backfill, a reconcile catch-up) can write many customers and invoices in
few vendor calls when the target offers it. A target that does implements
``BatchingTarget`` next to ``AccountingTarget``; the core asks
``isinstance(target, BatchingTarget)`` and otherwise writes one record a call.

A batch is no transaction: every write succeeds or fails on its own, and each write's
result is what its single write would have returned or raised. Writes of one batch
must not depend on each other: a vendor may run a batch's items one after another
yet let no item see what an earlier one created, so an invoice for a customer
created in the same batch would be refused. Create the customers first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.errors import ConnectorError, RecordInvalid
from shared.models import Invoice, ObjectType, Party
from shared.ports import CustomerListing, TargetRef

# What one write of a batch came to, in the order the writes were given:
# * ``TargetRef``: written; the record's id and new version.
# * ``ConnectorError``: the vendor refused this write (the class its single write would
#   raise, e.g. ``Permanent`` with the vendor's code), or it was left unanswered
#   (``Retryable``); the other writes are not affected.
# * ``RecordInvalid``: refused before sending, as the single write would be.
BatchResult = TargetRef | ConnectorError | RecordInvalid

BATCHED_TYPES = (ObjectType.CUSTOMER, ObjectType.INVOICE)


class BatchWrite(BaseModel):
    """One create or update in a batch: what to write, over what, with which key.

    ``existing`` is the target record to update (its id and the version it was read
    at), or None to create. ``idempotency_key`` means what it means for the single
    write (``AccountingTarget``): one content over one version of the record.
    """

    model_config = ConfigDict(frozen=True)

    object_type: Literal[ObjectType.CUSTOMER, ObjectType.INVOICE]
    record: Party | Invoice
    existing: TargetRef | None = None
    idempotency_key: str = Field(min_length=1)

    @model_validator(mode="after")
    def _record_fits_type(self) -> BatchWrite:
        wanted = Party if self.object_type is ObjectType.CUSTOMER else Invoice
        if not isinstance(self.record, wanted):
            raise ValueError(f"a {self.object_type} write carries a {wanted.__name__}")
        return self

    @classmethod
    def customer(
        cls, party: Party, *, existing: TargetRef | None = None, idempotency_key: str
    ) -> BatchWrite:
        return cls(
            object_type=ObjectType.CUSTOMER,
            record=party,
            existing=existing,
            idempotency_key=idempotency_key,
        )

    @classmethod
    def invoice(
        cls, invoice: Invoice, *, existing: TargetRef | None = None, idempotency_key: str
    ) -> BatchWrite:
        return cls(
            object_type=ObjectType.INVOICE,
            record=invoice,
            existing=existing,
            idempotency_key=idempotency_key,
        )


@runtime_checkable
class BatchingTarget(CustomerListing, Protocol):
    """An ``AccountingTarget`` that can write many customers and invoices a call.

    ``batch_max_items`` is how many writes one vendor call carries;
    ``batch_upsert`` splits longer sequences itself, one vendor call per chunk, each
    drawing on the vendor's call budget like any call. A failure of a whole call
    (throttled, auth, a 5xx, a malformed answer) raises, as a single write would; the
    writes of chunks already answered are written, so the caller retries the batch
    with the same keys and gets those answered again, not done twice.
    """

    batch_max_items: int

    def batch_upsert(self, writes: Sequence[BatchWrite]) -> list[BatchResult]: ...
