"""What the service remembers: record links and the audit trail."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from shared.models.events import ObjectType, System, record_key


def utc_now() -> datetime:
    return datetime.now(UTC)


class RecordLink(BaseModel):
    """Source record ↔ target record, with what was last applied.

    ``source_version`` is the newest version the sync that wrote the target had read:
    the record's own, or a child's (a deal's line item) when newer. Events older than
    it are stale: that sync read what they changed. ``target_version``,
    ``target_changed_at_ms`` and ``content_hash`` describe the target as we left it,
    so the target's own webhook echoing our write back is recognised without a read.
    ``writing`` is the digest of an update sent whose answer has not come back: until a
    link is saved again, the target may hold that content instead, so nothing counts
    as unchanged.
    """

    model_config = ConfigDict(frozen=True)

    connection_id: str
    source: System
    source_type: ObjectType
    source_id: str
    target: System
    target_type: ObjectType
    target_id: str
    source_version: int = Field(ge=0)
    target_version: str | None = None
    target_changed_at_ms: int | None = None  # TargetRef.changed_at_ms of our write
    content_hash: str | None = None
    children_digest: str | None = None  # of the child records' keys last linked to it
    writing: str | None = None
    updated_at: datetime = Field(default_factory=utc_now)

    def holds(self, digest: str) -> bool:
        """Whether the target surely holds this content: what was written, no update
        in doubt since."""
        return self.content_hash == digest and self.writing is None

    @property
    def source_key(self) -> str:
        return record_key(self.source, self.source_type, self.source_id)

    @property
    def target_key(self) -> str:
        return record_key(self.target, self.target_type, self.target_id)


class BackState(BaseModel):
    """What the way back last left in one CRM record (two-way sync): for each CRM
    property it fills, a digest of the value both sides then held (the value written
    back, or a two-way field's value the two systems agreed on). A field whose digest
    still matches is not written again; a two-way field differing from it on both
    sides is a conflict. Kept beside the link, not in it: a forward write replaces the
    link whole and would drop it.
    """

    model_config = ConfigDict(frozen=True)

    connection_id: str
    source_key: str  # the CRM record's key, as ``RecordLink.source_key``
    written: dict[str, str] = Field(default_factory=dict)  # CRM property → value digest
    revision: int = Field(default=0, ge=0)  # each save is the next; a concurrent one fails
    # The record's version (last-modified time) our last write left: the CRM's webhook
    # announcing that version is our echo.
    crm_version: int | None = None


class PendingCreate(BaseModel):
    """A create about to be sent, written down before it is sent (write-ahead).

    If the create commits but its answer is lost, the next attempt finds this and
    repeats the very same request (same idempotency key, same body), so the vendor
    answers with the record it already made, whatever the source record became
    since (renamed, say). Cleared when the link is saved.
    """

    model_config = ConfigDict(frozen=True)

    connection_id: str
    source_key: str
    target_type: ObjectType
    idempotency_key: str
    body: str  # the canonical model sent, as JSON of its set fields
    content_hash: str  # of the source content the body was made from
    source_version: int = Field(ge=0)
    created_at: datetime = Field(default_factory=utc_now)


class Outcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    LINKED = "linked"  # matched an existing target record and linked it
    UNCHANGED = "unchanged"
    SKIPPED = "skipped"  # deliberately not applied: filter, stale, echo, unsupported
    FORWARDED = "forwarded"  # handed to the record it belongs to (a line item's deal)
    INVALID = "invalid"  # the record violates the mapping: not retried
    REJECTED = "rejected"  # the target system refused it for good: not retried
    FAILED = "failed"  # an error that will be retried or dead-lettered
    RESOLVED = "resolved"  # a dead-lettered event whose record was applied since


class AuditEntry(BaseModel):
    """One line of the audit trail: what happened to one event and why."""

    model_config = ConfigDict(frozen=True)

    connection_id: str
    record_key: str
    event_id: str
    outcome: Outcome
    reason: str = ""
    field: str | None = None
    rule: str | None = None
    target_key: str | None = None
    source_version: int | None = None
    at: datetime = Field(default_factory=utc_now)
