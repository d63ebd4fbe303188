"""The sync engine: one ChangeEvent in, target writes and exactly one audit entry out.

event → (echo/stale checks) → fetch → filter → map → match → upsert → link → audit

It knows canonical models and ports only. What it guarantees:

* **Nothing duplicated.** Every write carries an idempotency key derived from the
  source record and its version, so a retry after a lost response is answered
  with the original record by the vendor; customers are matched (email, then
  display name) before one is created; links are written conditionally.
* **Order per record.** A link remembers the source version last applied; an
  event older than it, or a fetch that returns a version already applied, is
  skipped and audited.
* **Bad records are reported, not retried.** A mapping violation is audited with
  field and rule and the event ends there; vendor refusals and transient errors
  are audited and re-raised so the queue retries them and, in the end,
  dead-letters them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TypeVar

from pydantic import BaseModel

from shared.errors import RecordInvalid, StaleWrite, Violation
from shared.mapping import Filtered, Mapper
from shared.models import (
    AuditEntry,
    ChangeEvent,
    ChangeKind,
    Deal,
    DealStatus,
    Invoice,
    InvoiceLine,
    ObjectType,
    Outcome,
    Party,
    RecordLink,
    SourceRecord,
)
from shared.models.events import record_key
from shared.models.links import utc_now
from shared.ports import AccountingTarget, AuditLog, CrmSource, LinkStore, TargetRef

M = TypeVar("M", bound=BaseModel)

# A deal's invoice goes to its company when it has one (B2B), else to its contact.
CUSTOMER_SOURCES = (ObjectType.COMPANY, ObjectType.CONTACT)


def idempotency_key(connection_id: str, source_key: str, version: int, digest: str) -> str:
    """Same record, version and content → same key (40 hex chars, under QuickBooks' 50).

    The content is part of it because a deal's invoice also depends on line items and
    associations that can change without the deal's own version moving.
    """
    material = f"{connection_id}|{source_key}|{version}|{digest}"
    return hashlib.sha256(material.encode()).hexdigest()[:40]


def content_hash(model: BaseModel) -> str:
    """Hash of exactly what we would write: unchanged content means no write."""
    return hashlib.sha256(model.model_dump_json(exclude_unset=True).encode()).hexdigest()


@dataclass(frozen=True)
class _Result:
    outcome: Outcome
    reason: str
    target_key: str | None = None
    field: str | None = None
    rule: str | None = None


class SyncEngine:
    def __init__(
        self,
        *,
        connection_id: str,
        crm: CrmSource,
        ledger: AccountingTarget,
        mapper: Mapper,
        links: LinkStore,
        audit: AuditLog,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.connection_id = connection_id
        self._crm = crm
        self._ledger = ledger
        self._mapper = mapper
        self._links = links
        self._audit = audit
        self._clock = clock

    def handle(self, event: ChangeEvent) -> AuditEntry:
        """Apply one event. Returns its audit entry; re-raises vendor errors after auditing."""
        try:
            result = self._dispatch(event)
        except RecordInvalid as invalid:
            first = invalid.violations[0]
            result = _Result(Outcome.INVALID, str(invalid), field=first.field, rule=first.rule)
        except Exception as error:
            # Vendor refusals, outages and bugs alike: audited, then retried by the
            # queue and finally dead-lettered. Messages name ids, never credentials.
            self._record(event, _Result(Outcome.FAILED, f"{type(error).__name__}: {error}"))
            raise
        return self._record(event, result)

    # --- routing ----------------------------------------------------------------

    def _dispatch(self, event: ChangeEvent) -> _Result:
        if event.source is not self._crm.system:
            return self._target_event(event)
        if event.object_type is ObjectType.LINE_ITEM:
            return self._line_item_changed(event)
        if not self._mapper.handles(event.object_type):
            return _Result(Outcome.SKIPPED, f"the mapping has no section for {event.object_type}")
        if event.kind is ChangeKind.DELETED:
            return _Result(
                Outcome.SKIPPED, "deletions are not propagated: accounting records are kept"
            )
        link = self._links.get(self.connection_id, event.record_key)
        if link is not None and event.version < link.source_version:
            return _Result(
                Outcome.SKIPPED,
                f"stale event: version {event.version} is older than the applied "
                f"{link.source_version}",
                target_key=link.target_key,
            )
        record = self._crm.fetch(event.object_type, event.record_id)
        if record is None:
            return _Result(Outcome.SKIPPED, "the record no longer exists in the CRM")
        # An association change (a line item added or removed) need not move the
        # record's own version: for those the content hash decides.
        if (
            link is not None
            and record.version <= link.source_version
            and event.kind is not ChangeKind.ASSOCIATION
        ):
            return _Result(
                Outcome.UNCHANGED,
                f"version {record.version} already applied",
                target_key=link.target_key,
            )
        return self._sync_record(record, link)

    def _line_item_changed(self, event: ChangeEvent) -> _Result:
        """A line item is invoiced through its deal: re-sync the deal, content deciding
        (the deal's own version does not move when one of its line items changes)."""
        if event.kind is ChangeKind.DELETED:
            return _Result(
                Outcome.SKIPPED, "a removed line item reaches its deal as an association change"
            )
        item = self._crm.fetch(ObjectType.LINE_ITEM, event.record_id)
        deals = item.associations.get(ObjectType.DEAL, []) if item else []
        if not deals:
            return _Result(Outcome.SKIPPED, "the line item belongs to no deal")
        deal = self._crm.fetch(ObjectType.DEAL, deals[0])
        if deal is None:
            return _Result(Outcome.SKIPPED, "the line item's deal no longer exists in the CRM")
        deal_key = record_key(self._crm.system, ObjectType.DEAL, deal.id)
        result = self._sync_record(deal, self._links.get(self.connection_id, deal_key))
        return replace(result, reason=f"via {deal_key}: {result.reason}")

    def _target_event(self, event: ChangeEvent) -> _Result:
        """A change in the accounting system. One-way sync: only our own echoes are
        expected here; anything else is noted, and two-way fields are opt-in."""
        target_key = record_key(event.source, event.object_type, event.record_id)
        link = self._links.get_by_target(self.connection_id, target_key)
        if link is not None and event.kind is not ChangeKind.DELETED:
            current = self._ledger.current(event.object_type, event.record_id)
            if current is not None and current.version == link.target_version:
                return _Result(Outcome.SKIPPED, "echo of our own write", target_key=link.source_key)
        return _Result(
            Outcome.SKIPPED,
            f"no two-way fields configured for {event.source} {event.object_type}",
            target_key=link.source_key if link else None,
        )

    def _sync_record(self, record: SourceRecord, link: RecordLink | None) -> _Result:
        mapped = self._mapper.map(record)
        if isinstance(mapped, Filtered):
            return _Result(Outcome.SKIPPED, f"filtered: {mapped.reason}")
        if isinstance(mapped, Party):
            return self._sync_party(record, mapped, link)
        return self._sync_deal(record, mapped, link)

    # --- parties → customers ------------------------------------------------------

    def _sync_party(self, record: SourceRecord, party: Party, link: RecordLink | None) -> _Result:
        return self._write(
            record,
            link,
            ObjectType.CUSTOMER,
            party,
            self._ledger.upsert_customer,
            describe=f"customer ({party.display_name})",
            match=lambda: self._ledger.find_customer(
                email=party.email, display_name=party.display_name
            ),
            match_rule="email or display_name",
        )

    def _customer_for(self, record: SourceRecord) -> str:
        """Target id of the deal's customer, syncing the company/contact first if needed."""
        for object_type in CUSTOMER_SOURCES:
            for party_id in record.associations.get(object_type, []):
                if not self._mapper.handles(object_type):
                    continue
                key = record_key(self._crm.system, object_type, party_id)
                link = self._links.get(self.connection_id, key)
                if link is not None:
                    return link.target_id
                party_record = self._crm.fetch(object_type, party_id)
                if party_record is None:
                    continue
                result = self._sync_record(party_record, None)
                linked = self._links.get(self.connection_id, key)
                if linked is not None:
                    return linked.target_id
                raise RecordInvalid(
                    [Violation(f"associations.{object_type}", "customer", result.reason)]
                )
        raise RecordInvalid(
            [
                Violation(
                    "associations",
                    "required",
                    "the deal has no associated company or contact to invoice",
                )
            ]
        )

    # --- deals → invoices ---------------------------------------------------------

    def _sync_deal(self, record: SourceRecord, deal: Deal, link: RecordLink | None) -> _Result:
        if deal.status is not DealStatus.WON:
            return _Result(Outcome.SKIPPED, f"deal is {deal.status}, only won deals are invoiced")
        invoice = self._invoice_for(record, deal)
        doc_number = invoice.doc_number
        return self._write(
            record,
            link,
            ObjectType.INVOICE,
            invoice,
            self._ledger.upsert_invoice,
            describe=f"invoice for {deal.name}",
            # A create whose response was lost, retried after the deal changed, finds
            # the first invoice by its number instead of writing a second one.
            match=(lambda: self._ledger.find_invoice(doc_number)) if doc_number else None,
            match_rule="doc_number",
        )

    def _invoice_for(self, record: SourceRecord, deal: Deal) -> Invoice:
        if not deal.line_items:
            raise RecordInvalid([Violation("line_items", "required", "the deal has no line items")])
        violations: list[Violation] = []
        lines: list[InvoiceLine] = []
        for index, item in enumerate(deal.line_items):
            item_ref = self._ledger.find_item(name=item.name, sku=item.sku)
            if item_ref is None:
                violations.append(
                    Violation(
                        f"line_items[{index}].name",
                        "item_exists",
                        f"no {self._ledger.system} item named {item.name!r}"
                        + (f" or with SKU {item.sku!r}" if item.sku else ""),
                    )
                )
                continue
            lines.append(
                InvoiceLine(
                    item_ref=item_ref,
                    description=item.description or item.name,
                    quantity=item.quantity,
                    unit_price=item.unit_price,
                    tax_code=item.tax_code,
                )
            )
        terms = None
        if deal.payment_terms:
            terms = self._ledger.find_terms(deal.payment_terms)
            if terms is None:
                violations.append(
                    Violation(
                        "payment_terms",
                        "terms_exist",
                        f"no {self._ledger.system} payment terms named {deal.payment_terms!r}",
                    )
                )
        if violations:
            raise RecordInvalid(violations)
        txn_date = deal.close_date or self._clock().date()
        due_date = deal.due_date
        if due_date is None and terms is not None:
            due_date = txn_date + timedelta(days=terms.due_days)
        return Invoice(
            customer_ref=self._customer_for(record),
            currency=deal.currency,
            lines=lines,
            discount_amount=sum((i.discount_amount for i in deal.line_items), Decimal(0)),
            txn_date=txn_date,
            due_date=due_date,
            terms_ref=terms.id if terms else None,
            doc_number=deal.doc_number,
            memo=deal.memo or deal.name,
        )

    # --- writing ------------------------------------------------------------------

    def _write(
        self,
        record: SourceRecord,
        link: RecordLink | None,
        target_type: ObjectType,
        model: M,
        upsert: Callable[..., TargetRef],
        *,
        describe: str,
        match: Callable[[], TargetRef | None] | None = None,
        match_rule: str = "",
    ) -> _Result:
        """Upsert ``model`` as the linked target record, or as a matched or new one."""
        digest = content_hash(model)
        existing = self._current(target_type, link)
        if existing is not None and link is not None and link.content_hash == digest:
            self._save_link(record, target_type, existing, digest)
            return _Result(
                Outcome.UNCHANGED,
                f"{describe}: no mapped field changed",
                self._target_key(target_type, existing),
            )
        outcome = Outcome.UPDATED
        source_key = record_key(self._crm.system, record.object_type, record.id)
        if existing is None:
            existing = match() if match else None
            outcome = Outcome.CREATED if existing is None else Outcome.LINKED
            if existing is not None:
                self._check_unclaimed(target_type, existing, source_key, match_rule)
        ref = upsert(
            model,
            existing=existing,
            idempotency_key=idempotency_key(self.connection_id, source_key, record.version, digest),
        )
        target_key = self._target_key(target_type, ref)
        if not self._save_link(record, target_type, ref, digest):
            return _Result(Outcome.SKIPPED, "a newer version was applied meanwhile", target_key)
        return _Result(outcome, f"{describe} {ref.id}", target_key)

    # --- links and audit ------------------------------------------------------------

    def _check_unclaimed(
        self, target_type: ObjectType, found: TargetRef, source_key: str, rule: str
    ) -> None:
        """A matched target record linked to another source record is not taken over:
        two CRM records would overwrite one customer (or invoice) in turn."""
        other = self._links.get_by_target(self.connection_id, self._target_key(target_type, found))
        if other is not None and other.source_key != source_key:
            raise RecordInvalid(
                [
                    Violation(
                        rule,
                        "unique_match",
                        f"{self._ledger.system} {target_type} {found.id} matched by {rule} "
                        f"is already linked to {other.source_key}",
                    )
                ]
            )

    def _current(self, target_type: ObjectType, link: RecordLink | None) -> TargetRef | None:
        """The linked target record as it stands now; None if unlinked or deleted there."""
        if link is None or link.target_type is not target_type:
            return None
        return self._ledger.current(target_type, link.target_id)

    def _save_link(
        self, record: SourceRecord, target_type: ObjectType, ref: TargetRef, digest: str
    ) -> bool:
        link = RecordLink(
            connection_id=self.connection_id,
            source=self._crm.system,
            source_type=record.object_type,
            source_id=record.id,
            target=self._ledger.system,
            target_type=target_type,
            target_id=ref.id,
            source_version=record.version,
            target_version=ref.version,
            content_hash=digest,
            updated_at=self._clock(),
        )
        try:
            self._links.save(link)
        except StaleWrite:
            return False
        return True

    def _target_key(self, target_type: ObjectType, ref: TargetRef) -> str:
        return record_key(self._ledger.system, target_type, ref.id)

    def _record(self, event: ChangeEvent, result: _Result) -> AuditEntry:
        entry = AuditEntry(
            connection_id=self.connection_id,
            record_key=event.record_key,
            event_id=event.event_id,
            outcome=result.outcome,
            reason=result.reason,
            field=result.field,
            rule=result.rule,
            target_key=result.target_key,
            source_version=event.version,
            at=self._clock(),
        )
        self._audit.record(entry)
        return entry
