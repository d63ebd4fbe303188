"""What a sync would write, worked out without writing: ``crmsync mapping preview``
and ``crmsync items``.

Only reads: the CRM record, its link, the target's lookups and the linked (or
matched) target record. The answer is what the engine would send, in the target's
own terms (``AccountingTarget.payload``), and how it differs from what the target
holds now: a sparse write changes only the fields it sends, so only those are
compared.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from shared.errors import RecordInvalid
from shared.mapping import Filtered, Mapper
from shared.models import (
    Deal,
    DealStatus,
    Invoice,
    LineItem,
    ObjectType,
    Party,
    RecordLink,
    SourceRecord,
)
from shared.models.events import record_key
from shared.ports import AccountingTarget, CrmSource, LinkStore, TargetRef
from shared.sync.content import Mapped, map_content
from shared.sync.engine import invoice_of, no_customer


class Action(StrEnum):
    CREATE = "create"
    LINK = "link"  # an existing target record would be matched, then updated
    UPDATE = "update"
    UNCHANGED = "unchanged"
    SKIP = "skip"
    INVALID = "invalid"


@dataclass(frozen=True)
class Change:
    path: str  # in the target's terms: ``Line[0].SalesItemLineDetail.Qty``
    current: Any
    proposed: Any


@dataclass(frozen=True)
class Preview:
    record_key: str
    action: Action
    reason: str
    target_key: str | None = None
    payload: dict[str, Any] | None = None
    changes: tuple[Change, ...] = ()
    new_items: tuple[str, ...] = ()  # items the sync would create first


@dataclass(frozen=True)
class MissingItem:
    """A product the CRM's line items name that the target has no item for."""

    name: str
    sku: str | None
    deals: list[str] = field(default_factory=list)  # record keys of deals naming it


class Previewer:
    def __init__(
        self,
        *,
        connection_id: str,
        crm: CrmSource,
        ledger: AccountingTarget,
        mapper: Mapper,
        links: LinkStore,
        today: date,
    ) -> None:
        self._connection_id = connection_id
        self._crm = crm
        self._ledger = ledger
        self._mapper = mapper
        self._links = links
        self._today = today

    def records(
        self, object_type: ObjectType, *, since_ms: int = 0, record_id: str | None = None
    ) -> Iterator[SourceRecord]:
        """One record by id, else the CRM's records changed since ``since_ms``, oldest
        first, as reconciliation lists them."""
        if record_id is None:
            yield from self._crm.changed_since(object_type, since_ms)
            return
        record = self._crm.fetch(object_type, record_id)
        if record is not None:
            yield record

    def preview(self, record: SourceRecord) -> Preview:
        key = record_key(self._crm.system, record.object_type, record.id)
        try:
            content = map_content(self._mapper, record)
        except RecordInvalid as invalid:
            return Preview(key, Action.INVALID, str(invalid))
        if isinstance(content, Filtered):
            return Preview(key, Action.SKIP, f"filtered: {content.reason}")
        link = self._links.get(self._connection_id, key)
        try:
            return self._preview(key, content, link)
        except RecordInvalid as invalid:
            return Preview(key, Action.INVALID, str(invalid))

    def recheck(self, key: str, content: Mapped, link: RecordLink) -> Preview:
        """As ``preview`` of ``content``, compared with the linked target record even
        when the link says the target holds it: someone may have edited it there since
        (the drift check)."""
        try:
            return self._preview(key, content, link, trust_link=False)
        except RecordInvalid as invalid:
            return Preview(key, Action.INVALID, str(invalid))

    def missing_items(self, deals: Iterable[SourceRecord]) -> list[MissingItem]:
        """The products the deals' mapped lines name that the target has no item for,
        found as the sync finds them (SKU, else name). Deals the mapping filters out or
        cannot map are passed over: the sync would not invoice them either."""
        missing: dict[tuple[str | None, str], MissingItem] = {}
        for record in deals:
            try:
                mapped = self._mapper.map(record)
            except RecordInvalid:
                continue
            if not isinstance(mapped, Deal):
                continue
            deal_key = record_key(self._crm.system, record.object_type, record.id)
            for line in mapped.line_items:
                if self._ledger.find_item(name=line.name, sku=line.sku) is not None:
                    continue
                item = missing.setdefault(
                    (line.sku, line.name.casefold()), MissingItem(line.name, line.sku)
                )
                if deal_key not in item.deals:
                    item.deals.append(deal_key)
        return sorted(missing.values(), key=lambda item: item.name.casefold())

    # --- one record -------------------------------------------------------------------

    def _preview(
        self, key: str, content: Mapped, link: RecordLink | None, *, trust_link: bool = True
    ) -> Preview:
        model = content.model
        new_items: list[str] = []
        if isinstance(model, Party):
            target_type = ObjectType.CUSTOMER
            record: Party | Invoice = model
        else:
            if model.status is not DealStatus.WON:
                return Preview(key, Action.SKIP, f"deal is {model.status}, only won deals")
            if content.customer is None:
                raise no_customer()
            target_type = ObjectType.INVOICE
            customer = self._customer(content.customer)
            today = self._today if link is None else None
            record = invoice_of(model, customer, self._item(new_items), today)
        if link is not None and link.target_type is target_type:
            if trust_link and link.holds(content.digest):
                return Preview(
                    key,
                    Action.UNCHANGED,
                    "no mapped field changed since the last sync",
                    link.target_key,
                )
            current = self._ledger.read(target_type, link.target_id)
            if current is not None:
                return self._against(
                    key, Action.UPDATE, record, link.target_key, current, new_items
                )
        found = self._match(record)
        if found is not None:
            current = self._ledger.read(target_type, found.id)
            target = record_key(self._ledger.system, target_type, found.id)
            if current is not None:
                return self._against(key, Action.LINK, record, target, current, new_items)
        payload = self._ledger.payload(record, new=True)
        return Preview(
            key, Action.CREATE, f"a new {target_type}", payload=payload, new_items=tuple(new_items)
        )

    def _against(
        self,
        key: str,
        action: Action,
        record: Party | Invoice,
        target_key: str,
        current: Mapping[str, Any],
        new_items: list[str],
    ) -> Preview:
        payload = self._ledger.payload(record, new=False)
        changes = tuple(diff(current, payload))
        reason = f"{len(changes)} field(s) differ" if changes else "the target already holds it"
        if action is Action.LINK:
            reason = f"matches {target_key}; {reason}"
        return Preview(key, action, reason, target_key, payload, changes, tuple(new_items))

    def _match(self, record: Party | Invoice) -> TargetRef | None:
        """The existing target record the engine would take instead of creating one."""
        if isinstance(record, Party):
            return self._ledger.find_customer(email=record.email, display_name=record.display_name)
        return self._ledger.find_invoice(record.doc_number) if record.doc_number else None

    def _customer(self, party: tuple[ObjectType, str]) -> str:
        """The invoice's customer: the linked one, else a stand-in for the one the sync
        would create (or match) first."""
        object_type, party_id = party
        party_key = record_key(self._crm.system, object_type, party_id)
        link = self._links.get(self._connection_id, party_key)
        if link is not None and link.target_type is ObjectType.CUSTOMER:
            return link.target_id
        return f"(the customer of {party_key})"

    def _item(self, new_items: list[str]) -> Callable[[LineItem], str | None]:
        """The engine's item rule, without creating: a missing item it would create is
        noted in ``new_items`` and stands in by name."""

        def item_ref(line: LineItem) -> str | None:
            found = self._ledger.find_item(name=line.name, sku=line.sku)
            if found is not None or not self._mapper.items.create_missing:
                return found
            new_items.append(line.name)
            return f"(new item {line.name})"

        return item_ref


def diff(current: Mapping[str, Any], proposed: Mapping[str, Any]) -> Iterator[Change]:
    """The fields ``proposed`` sends whose value differs from ``current``'s, leaf by
    leaf (a list by position). Numbers compare by value (``100`` equals ``100.0``)."""
    held = dict(_leaves(current))
    for path, value in _leaves(proposed):
        now = held.get(path)
        if _comparable(now) != _comparable(value):
            yield Change(path, now, value)


def _leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for key, child in value.items():
            yield from _leaves(child, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _leaves(child, f"{path}[{index}]")
    else:
        yield path, value


def _comparable(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float | Decimal):
        try:
            return Decimal(str(value)).normalize()
        except InvalidOperation:
            return value
    return value
