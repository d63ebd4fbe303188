"""Canonical models: the only shapes the sync engine knows."""

from shared.models.connection import Connection, ConnectionId
from shared.models.events import ChangeEvent, ChangeKind, ObjectType, System
from shared.models.links import AuditEntry, BackState, Outcome, PendingCreate, RecordLink
from shared.models.records import (
    Address,
    Deal,
    DealStatus,
    Invoice,
    InvoiceLine,
    LineItem,
    Money,
    Party,
    PartyKind,
    TaxTreatment,
)
from shared.models.source import SourceRecord
from shared.models.standing import CustomerStanding, InvoiceStanding, InvoiceStatus

__all__ = [
    "Address",
    "AuditEntry",
    "BackState",
    "ChangeEvent",
    "ChangeKind",
    "Connection",
    "ConnectionId",
    "CustomerStanding",
    "Deal",
    "DealStatus",
    "Invoice",
    "InvoiceLine",
    "InvoiceStanding",
    "InvoiceStatus",
    "LineItem",
    "Money",
    "ObjectType",
    "Outcome",
    "Party",
    "PartyKind",
    "PendingCreate",
    "RecordLink",
    "SourceRecord",
    "System",
    "TaxTreatment",
]
