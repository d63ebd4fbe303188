"""Drift: where the CRM and the accounting system disagree although the sync believes
them agreed, as one run of the drift check found it (``shared.sync.drift``)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from shared.models.links import utc_now


class DriftKind(StrEnum):
    UNSYNCED = "unsynced"  # a CRM record the mapping passes, with no link
    TARGET_GONE = "target_gone"  # its linked accounting record is deleted (or voided)
    CRM_GONE = "crm_gone"  # deleted in the CRM; its accounting record remains
    FIELD = "field"  # a one-way mapped field differs
    TOTAL = "total"  # the invoice's total differs from the deal's lines
    TWO_WAY = "two_way"  # a field both sides write differs
    BACK = "back"  # a field the accounting side fills in the CRM differs


class Done(StrEnum):
    QUEUED = "queued"  # repaired: the record is on the queue for the sync to write
    REPORTED = "reported"  # left to a person: the policy does not repair it


class Finding(BaseModel):
    """One disagreement; values as each side holds them (text, None when absent)."""

    model_config = ConfigDict(frozen=True)

    kind: DriftKind
    crm_key: str
    target_key: str | None = None
    field: str | None = None  # the target's path, or the CRM property
    crm_value: str | None = None
    accounting_value: str | None = None
    done: Done
    reason: str = ""
    persistent: bool = False  # the previous run found it too

    @property
    def key(self) -> str:
        """What makes it the same finding in the next run, whatever its values."""
        return f"{self.kind}|{self.crm_key}|{self.target_key or ''}|{self.field or ''}"


class DriftReport(BaseModel):
    """One connection's drift check. Keeps at most ``MAX_FINDINGS`` findings (a store
    item is bounded); ``counts`` counts them all."""

    model_config = ConfigDict(frozen=True)

    connection_id: str
    at: datetime = Field(default_factory=utc_now)
    checked: int = 0  # CRM records compared with their accounting records
    findings: list[Finding] = Field(default_factory=list)
    counts: dict[DriftKind, int] = Field(default_factory=dict)
    persistent: dict[DriftKind, int] = Field(default_factory=dict)
    complete: bool = True  # False: stopped for time; the next run carries on

    @classmethod
    def of(
        cls, connection_id: str, findings: list[Finding], *, checked: int, complete: bool
    ) -> DriftReport:
        counts = Counter(f.kind for f in findings)
        persistent = Counter(f.kind for f in findings if f.persistent)
        return cls(
            connection_id=connection_id,
            checked=checked,
            findings=findings[:MAX_FINDINGS],
            counts={kind: counts[kind] for kind in DriftKind},
            persistent={kind: persistent[kind] for kind in DriftKind},
            complete=complete,
        )

    @property
    def keys(self) -> set[str]:
        return {finding.key for finding in self.findings}


# A DynamoDB item holds 400 KB: five hundred findings of a few hundred bytes fit.
MAX_FINDINGS = 500
