"""The verdict of a chaos run, read from the two sandboxes, not from the service's links.

HubSpot's final state is mapped with the mapping file, as the service would map it;
what that makes is compared with what QuickBooks holds. Every customer and invoice
is traced to its CRM record by what it carries (a name's tag, ``HS-<deal id>``), so a
duplicate is found even when it was made from a name the record no longer has.

* **duplicates**: more than one customer traced to one contact or company; more than
  one invoice numbered ``HS-<deal id>``;
* **lost**: a valid contact or company with no customer whose fields are what the
  mapping makes of it now; a valid won deal with no invoice;
* **wrong amounts**: an invoice whose lines (item, quantity, unit price, amount) or
  discount or total differ from the deal's line items now, amounts rounded half up
  per line at the cent (``docs/vendors/quickbooks.md``);
* **wrong customers**: an invoice billed to another customer than the deal's company
  (else contact) has;
* **invalid**: an invalid record that reached QuickBooks, or whose last audit entry
  is not INVALID;
* **untraced**: a customer or invoice the run made that no record explains.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from local.chaos.changes import UNKNOWN_ITEM
from local.sandboxes.hubspot import HubSpotSandbox
from local.sandboxes.quickbooks import QuickBooksSandbox
from shared.errors import RecordInvalid
from shared.mapping import Filtered, Mapper
from shared.models import (
    AuditEntry,
    Deal,
    DealStatus,
    ObjectType,
    Outcome,
    Party,
    SourceRecord,
)
from shared.models.events import record_key
from shared.ports import AuditLog
from shared.sync.content import CUSTOMER_SOURCES

CENT = Decimal("0.01")  # every deal of a run is in USD
TAG = re.compile(r"-([ck]\d+)$")
DOC_NUMBER = re.compile(r"^HS-(\d+)$")
_PLURAL = {
    ObjectType.CONTACT: "contacts",
    ObjectType.COMPANY: "companies",
    ObjectType.DEAL: "deals",
    ObjectType.LINE_ITEM: "line_items",
}
Json = dict[str, Any]


@dataclass
class Verdict:
    duplicates: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    wrong_amounts: list[str] = field(default_factory=list)
    wrong_customers: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    untraced: list[str] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)

    def problems(self) -> dict[str, list[str]]:
        """Every kind of violation with its findings, empty kinds left out."""
        kinds = {
            "duplicates": self.duplicates,
            "lost": self.lost,
            "wrong amounts": self.wrong_amounts,
            "wrong customers": self.wrong_customers,
            "invalid": self.invalid,
            "untraced": self.untraced,
        }
        return {kind: found for kind, found in kinds.items() if found}


@dataclass(frozen=True)
class Before:
    """QuickBooks' records before the run (the sandbox company's seed)."""

    customers: frozenset[str]
    invoices: frozenset[str]

    @classmethod
    def of(cls, quickbooks: QuickBooksSandbox) -> Before:
        return cls(
            frozenset(c["Id"] for c in quickbooks.entities("Customer")),
            frozenset(i["Id"] for i in quickbooks.entities("Invoice")),
        )


class Judge:
    def __init__(
        self,
        *,
        hubspot: HubSpotSandbox,
        quickbooks: QuickBooksSandbox,
        mapper: Mapper,
        audit: AuditLog,
        connection_id: str,
        before: Before,
        describe: Callable[[str], str],
    ) -> None:
        self._mapper = mapper
        self._describe = describe
        self._verdict = Verdict()
        self._records = {
            t: {r["id"]: r for r in hubspot.records(p, include_archived=False)}
            for t, p in _PLURAL.items()
        }
        self._items = {
            i["Name"]: i["Id"] for i in quickbooks.entities("Item") if i.get("Active", True)
        }
        self._customers = [
            c for c in quickbooks.entities("Customer") if c["Id"] not in before.customers
        ]
        self._invoices = [
            i for i in quickbooks.entities("Invoice") if i["Id"] not in before.invoices
        ]
        last: dict[str, AuditEntry] = {}
        for entry in audit.entries(connection_id, limit=10**9):  # newest first
            last.setdefault(entry.record_key, entry)
        self._last_entry = last

    def verdict(self) -> Verdict:
        customers = self._trace_customers()
        for object_type in CUSTOMER_SOURCES:
            for record in self._records[object_type].values():
                self._party(object_type, record, customers)
        invoices = self._trace_invoices()
        for record in self._records[ObjectType.DEAL].values():
            self._deal(record, invoices.get(record["id"], []), customers)
        self._verdict.checked = {
            "contacts": len(self._records[ObjectType.CONTACT]),
            "companies": len(self._records[ObjectType.COMPANY]),
            "deals": len(self._records[ObjectType.DEAL]),
            "customers": len(self._customers),
            "invoices": len(self._invoices),
        }
        return self._verdict

    # --- tracing QuickBooks records to CRM records ------------------------------------

    def _trace_customers(self) -> dict[str, list[Json]]:
        """Customers by the id of the contact or company their name's tag names."""
        tags: dict[str, str] = {}
        for object_type, name in ((ObjectType.CONTACT, "lastname"), (ObjectType.COMPANY, "name")):
            for record in self._records[object_type].values():
                found = TAG.search(record["properties"].get(name) or "")
                if found:
                    tags[found.group(1)] = record["id"]
        traced: dict[str, list[Json]] = defaultdict(list)
        for customer in self._customers:
            found = TAG.search(customer.get("DisplayName", ""))
            if found and found.group(1) in tags:
                traced[tags[found.group(1)]].append(customer)
            else:
                self._verdict.untraced.append(f"customer {customer['Id']} {customer!r}")
        for record_id, made in traced.items():
            if len(made) > 1:
                names = ", ".join(f"{c['Id']} {c.get('DisplayName')!r}" for c in made)
                self._verdict.duplicates.append(
                    f"{len(made)} customers for {self._describe(record_id)}: {names}"
                )
        return traced

    def _trace_invoices(self) -> dict[str, list[Json]]:
        traced: dict[str, list[Json]] = defaultdict(list)
        for invoice in self._invoices:
            found = DOC_NUMBER.match(str(invoice.get("DocNumber", "")))
            if found and found.group(1) in self._records[ObjectType.DEAL]:
                traced[found.group(1)].append(invoice)
            else:
                self._verdict.untraced.append(f"invoice {invoice['Id']} {invoice.get('DocNumber')}")
        for deal_id, made in traced.items():
            if len(made) > 1:
                self._verdict.duplicates.append(
                    f"{len(made)} invoices HS-{deal_id} ({', '.join(i['Id'] for i in made)}) "
                    f"for {self._describe(deal_id)}"
                )
        return traced

    # --- contacts and companies --------------------------------------------------------

    def _party(
        self, object_type: ObjectType, record: Json, customers: dict[str, list[Json]]
    ) -> None:
        made = customers.get(record["id"], [])
        mapped = self._map(object_type, record)
        if not isinstance(mapped, Party):
            self._must_be_invalid(object_type, record, synced=bool(made))
            return
        wanted = customer_fields(mapped)
        if not any(customer_view(c) == wanted for c in made):
            found = [customer_view(c) for c in made] or "no customer"
            self._verdict.lost.append(
                f"{self._describe(record['id'])}: wanted {wanted}, QuickBooks has {found}"
            )

    # --- deals ---------------------------------------------------------------------------

    def _deal(self, record: Json, invoices: list[Json], customers: dict[str, list[Json]]) -> None:
        mapped = self._map(ObjectType.DEAL, record)
        if isinstance(mapped, Filtered) or (
            isinstance(mapped, Deal) and mapped.status is not DealStatus.WON
        ):
            return  # not won: nothing is owed, whatever was invoiced while it was
        deal = mapped if isinstance(mapped, Deal) else None
        party = self._party_of(record)
        if (
            deal is None
            or not deal.line_items
            or any(line.name not in self._items for line in deal.line_items)
            or party is None
            or not isinstance(self._map(*party), Party)
        ):
            never_valid = UNKNOWN_ITEM in self._line_item_names(record)
            self._must_be_invalid(ObjectType.DEAL, record, synced=bool(invoices) and never_valid)
            return
        if not invoices:
            self._verdict.lost.append(
                f"no invoice HS-{record['id']} for {self._describe(record['id'])}"
            )
            return
        wanted = self._invoice_view(deal)
        party_customers = customers.get(party[1]["id"], [])
        for invoice in invoices:
            found = invoice_view(invoice)
            if found != wanted:
                self._verdict.wrong_amounts.append(
                    f"invoice {invoice['Id']} HS-{record['id']}: wanted {wanted}, QuickBooks has "
                    f"{found}; {self._describe(record['id'])}"
                )
            billed = invoice.get("CustomerRef", {}).get("value")
            if billed not in {c["Id"] for c in party_customers}:
                self._verdict.wrong_customers.append(
                    f"invoice {invoice['Id']} HS-{record['id']} billed to customer {billed}, "
                    f"not to {party[0]} {party[1]['id']}'s "
                    f"{[c['Id'] for c in party_customers]}; {self._describe(record['id'])}"
                )

    def _party_of(self, deal: Json) -> tuple[ObjectType, Json] | None:
        """The company (else contact) a deal is invoiced to: the first by id."""
        for object_type in CUSTOMER_SOURCES:
            ids = deal.get("associations", {}).get(_PLURAL[object_type], [])
            if ids:
                return object_type, self._records[object_type][ids[0]]
        return None

    def _line_item_names(self, deal: Json) -> list[str]:
        return [
            self._records[ObjectType.LINE_ITEM][i]["properties"].get("name") or ""
            for i in deal.get("associations", {}).get("line_items", [])
        ]

    def _invoice_view(self, deal: Deal) -> InvoiceView:
        lines = sorted(
            (self._items[li.name], li.quantity, li.unit_price, cents(li.quantity * li.unit_price))
            for li in deal.line_items
        )
        discount = cents(sum((li.discount_amount for li in deal.line_items), Decimal(0)))
        total = sum((line[3] for line in lines), Decimal(0)) - discount
        return InvoiceView(lines, discount, total)

    # --- mapping and invalid records -----------------------------------------------------

    def _map(self, object_type: ObjectType, record: Json) -> Party | Deal | Filtered | None:
        """What the mapping makes of the record now; None when it is invalid."""
        try:
            return self._mapper.map(self._source(object_type, record))
        except RecordInvalid:
            return None

    def _source(self, object_type: ObjectType, record: Json) -> SourceRecord:
        linked = record.get("associations", {})
        associations: dict[ObjectType, list[str]] = {}
        children: dict[ObjectType, list[SourceRecord]] = {}
        if object_type is ObjectType.DEAL:
            associations = {t: list(linked.get(_PLURAL[t], [])) for t in CUSTOMER_SOURCES}
            children = {
                ObjectType.LINE_ITEM: [
                    self._source(ObjectType.LINE_ITEM, self._records[ObjectType.LINE_ITEM][i])
                    for i in linked.get("line_items", [])
                ]
            }
        return SourceRecord(
            object_type=object_type,
            id=record["id"],
            version=0,
            properties=record["properties"],
            associations=associations,
            children=children,
        )

    def _must_be_invalid(self, object_type: ObjectType, record: Json, *, synced: bool) -> None:
        key = record_key("hubspot", object_type, record["id"])
        last = self._last_entry.get(key)
        if synced:
            self._verdict.invalid.append(
                f"invalid, yet in QuickBooks: {self._describe(record['id'])}"
            )
        if last is None or last.outcome is not Outcome.INVALID:
            said = f"{last.outcome} ({last.reason}; event {last.event_id})" if last else "never"
            self._verdict.invalid.append(
                f"invalid, last audited {said}: {self._describe(record['id'])}"
            )


@dataclass(frozen=True)
class InvoiceView:
    """What an invoice amounts to: sorted (item, quantity, unit price, amount) lines,
    the discount and the total."""

    lines: list[tuple[str, Decimal, Decimal, Decimal]]
    discount: Decimal
    total: Decimal


def cents(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, ROUND_HALF_UP)


def invoice_view(invoice: Json) -> InvoiceView:
    lines = []
    discount = Decimal(0)
    for line in invoice.get("Line", []):
        if line.get("DetailType") == "SalesItemLineDetail":
            detail = line["SalesItemLineDetail"]
            lines.append(
                (
                    detail["ItemRef"]["value"],
                    _decimal(detail.get("Qty")),
                    _decimal(detail.get("UnitPrice")),
                    _decimal(line.get("Amount")),
                )
            )
        elif line.get("DetailType") == "DiscountLineDetail":
            discount += _decimal(line.get("Amount"))
    return InvoiceView(sorted(lines), discount, _decimal(invoice.get("TotalAmt")))


def customer_fields(party: Party) -> dict[str, str]:
    """The customer fields the mapped party sets (selective sync writes only those)."""
    fields = {
        "DisplayName": party.display_name,
        "GivenName": party.given_name,
        "FamilyName": party.family_name,
        "CompanyName": party.company_name,
        "Email": party.email,
        "Phone": party.phone,
    }
    return {name: value for name, value in fields.items() if value is not None}


def customer_view(customer: Json) -> dict[str, str]:
    """The same fields of a QuickBooks customer, present ones only; {} when inactive."""
    if not customer.get("Active", True):
        return {}
    fields = {
        "DisplayName": customer.get("DisplayName"),
        "GivenName": customer.get("GivenName"),
        "FamilyName": customer.get("FamilyName"),
        "CompanyName": customer.get("CompanyName"),
        "Email": customer.get("PrimaryEmailAddr", {}).get("Address"),
        "Phone": customer.get("PrimaryPhone", {}).get("FreeFormNumber"),
    }
    return {name: value for name, value in fields.items() if value is not None}


def _decimal(value: Any) -> Decimal:
    return Decimal(str(value)) if value is not None else Decimal(0)


def tally(lines: Iterable[str], limit: int) -> list[str]:
    """The first ``limit`` findings, and how many more there are."""
    found = list(lines)
    return found[:limit] + ([f"… and {len(found) - limit} more"] if len(found) > limit else [])
