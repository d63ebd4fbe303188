"""What travels on the queue: one vendor change, normalized."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

# A registered vendor's name (``shared.connectors.registry``): it prefixes record keys
# and names the vendor's webhook route, secret and settings.
System = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=32)]


class ObjectType(StrEnum):
    CONTACT = "contact"
    COMPANY = "company"
    DEAL = "deal"
    LINE_ITEM = "line_item"
    CUSTOMER = "customer"
    INVOICE = "invoice"
    PAYMENT = "payment"
    ITEM = "item"


class ChangeKind(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"
    ASSOCIATION = "association"
    RECONCILE = "reconcile"  # found by the scheduled catch-up, not by a webhook


def record_key(system: System, object_type: ObjectType, record_id: str) -> str:
    """One record across systems: the FIFO message group, link keys, audit keys."""
    return f"{system}:{object_type}:{record_id}"


def split_record_key(key: str) -> tuple[System, ObjectType, str]:
    """``record_key``'s parts. Raises ValueError for a key that is not one."""
    system, _, rest = key.partition(":")
    type_name, _, record_id = rest.partition(":")
    return system, ObjectType(type_name), record_id


class ChangeEvent(BaseModel):
    """One change to one record in one system.

    Webhooks are thin: the event says *which* record changed and when; the sync
    engine fetches the record itself. ``version`` orders events of one record
    (epoch milliseconds of the change) so a stale one can be skipped.
    """

    model_config = ConfigDict(frozen=True)

    connection_id: str = Field(min_length=1, max_length=64)
    source: System
    object_type: ObjectType
    record_id: str = Field(min_length=1, max_length=64)
    event_id: str = Field(min_length=1, max_length=256)
    kind: ChangeKind
    occurred_at: datetime
    version: int = Field(ge=0, description="epoch ms of the change; orders events of one record")

    @property
    def record_key(self) -> str:
        """Identifies the record across systems; the FIFO message group."""
        return record_key(self.source, self.object_type, self.record_id)

    @property
    def message_group(self) -> str:
        """The SQS FIFO message group (≤128 chars): one record of one connection, so
        its events stay in order and two connections never share a group."""
        group = f"{self.connection_id}:{self.record_key}"
        return group if len(group) <= 128 else hashlib.sha256(group.encode()).hexdigest()

    @classmethod
    def found(
        cls,
        connection_id: str,
        source: System,
        object_type: ObjectType,
        record_id: str,
        version: int,
        *,
        by: str,
    ) -> ChangeEvent:
        """A ``RECONCILE`` event: no webhook announced it, a scan (``by``: reconcile,
        backfill) found the record at ``version``."""
        return cls(
            connection_id=connection_id,
            source=source,
            object_type=object_type,
            record_id=record_id,
            event_id=f"{by}:{record_key(source, object_type, record_id)}:{version}",
            kind=ChangeKind.RECONCILE,
            occurred_at=datetime.fromtimestamp(version / 1000, UTC),
            version=version,
        )

    @property
    def dedup_id(self) -> str:
        """SQS FIFO deduplication id (≤128 chars) derived from the vendor's event identity."""
        return hashlib.sha256(f"{self.connection_id}|{self.event_id}".encode()).hexdigest()
