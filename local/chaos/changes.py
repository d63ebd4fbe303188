"""A seeded person editing HubSpot the way people do, through the sandbox's UI helpers.

Contacts and companies are created and edited (renames, new emails, phones), deals
are created, tied to companies and contacts, given line items (QuickBooks' seeded
item names, fractional quantities, prices with more decimals than a cent, unit
discounts), won, reopened and renamed; line items are edited and deleted; and edits
are undone: a property set back to a value it had before.

A few records are invalid by the mapping on purpose and stay so: contacts without
an email (``email`` is required) and deals whose first line item names an item
QuickBooks does not have. They must end audited INVALID and never synced.

Every name a record ever has carries its tag (``-c12`` for contact 12, ``-k3`` for
company 3), and every email the contact's (``.c12@``), so anything in QuickBooks
can be traced to the record it was made from, whatever that record is called now.
Each call of a UI helper is one change.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from local.sandboxes.hubspot import HubSpotSandbox

# QuickBooks' seeded items (local/sandboxes/quickbooks.py) and one it does not have.
ITEMS = ("Services", "Hours", "Design", "Installation", "Pest Control", "Sprinklers")
UNKNOWN_ITEM = "Consulting"
QUANTITIES = ("1", "2", "3", "5", "10", "0.5", "1.5", "2.25", "0.333", "7.125", "12.75")
PRICES = ("75", "150", "99.61", "0.125", "35", "1234.5", "19.99", "333.33", "4.005", "80")
UNIT_DISCOUNT_SHARES = (Decimal("0.05"), Decimal("0.1"), Decimal("0.2"))
OPEN_STAGES = ("appointmentscheduled", "qualifiedtobuy", "presentationscheduled", "contractsent")
WON = "closedwon"
CLOSE_DATES = ("2026-11-20T15:00:00Z", "2026-12-01T03:30:00Z", "2027-01-15T23:59:00Z")
FIRST = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Radia", "Donald", "Frances")
LAST = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Thompson", "Perlman", "Knuth")
COMPANY_WORDS = ("Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark")
COMPANY_KINDS = ("Labs", "Industries", "Holdings", "Works", "Partners", "Systems")
DEAL_WORDS = ("Renewal", "Expansion", "Pilot", "Rollout", "Audit", "Migration", "Retainer")
DOMAINS = ("example.com", "example.org", "example.net")
LINE_ITEM_TO_DEAL = 20  # HubSpot's HUBSPOT_DEFINED association type id
# Picks of a record to edit: this share among the most recent of its kind.
RECENT_SHARE, RECENT = 0.6, 8

# What the person did that is not a property: kept in a record's history under these.
LINE_ITEMS, LINKED, DEAL = "line items", "associations", "deal"
# Properties an undo may set back, per object type.
UNDOABLE = {
    "contacts": ("firstname", "lastname", "email", "phone"),
    "companies": ("name", "phone"),
    "deals": ("dealname", "dealstage", "closedate"),
    "line_items": ("quantity", "price"),
}


@dataclass
class Record:
    """One record the person made, with every value each property had, oldest first."""

    object_type: str
    id: str
    tag: str = ""
    fixed: bool = False  # invalid on purpose, and kept so (never given what it lacks)
    history: dict[str, list[str]] = field(default_factory=dict)
    deleted: bool = False

    def now(self, name: str) -> str | None:
        values = self.history.get(name)
        return values[-1] if values else None

    def describe(self) -> str:
        changes = "; ".join(f"{name}: {' → '.join(vals)}" for name, vals in self.history.items())
        return f"{self.object_type} {self.id} ({changes})"


class Person:
    """Makes one change at a time in ``hubspot``; ``rng`` decides everything."""

    def __init__(self, hubspot: HubSpotSandbox, rng: random.Random, invalid: float) -> None:
        self._hubspot = hubspot
        self._rng = rng
        self._invalid = invalid
        self.records: dict[str, Record] = {}  # by HubSpot id
        self._by_type: dict[str, list[Record]] = {t: [] for t in UNDOABLE}
        self._actions: list[tuple[Callable[[], int], int]] = [
            (self._create_contact, 8),
            (self._create_company, 4),
            (self._edit_contact, 10),
            (self._edit_company, 4),
            (self._create_deal, 6),
            (self._associate_deal, 4),
            (self._add_line_item, 12),
            (self._edit_line_item, 12),
            (self._delete_line_item, 2),
            (self._win_deal, 6),
            (self._reopen_deal, 1),
            (self._rename_deal, 2),
            (self._undo, 8),
        ]

    def describe(self, record_id: str) -> str:
        """Everything the person did to a record (and to a deal's line items), for a
        finding to be followed up."""
        record = self.records.get(record_id)
        if record is None:
            return record_id
        items = [
            self.records[entry[1:].split()[0]].describe()
            for entry in record.history.get(LINE_ITEMS, [])
            if entry.startswith("+")
        ]
        return "; ".join([record.describe(), *items])

    def act(self) -> int:
        """Make one change (a few for a new deal); returns how many UI calls it took."""
        actions = [action for action, _ in self._actions]
        weights = [weight for _, weight in self._actions]
        action: Callable[[], int] = self._rng.choices(actions, weights)[0]
        return action()

    # --- contacts and companies -------------------------------------------------------

    def _create_contact(self) -> int:
        tag = f"c{len(self._by_type['contacts']) + 1}"
        first, last = self._rng.choice(FIRST), self._rng.choice(LAST)
        properties = {"firstname": first, "lastname": f"{last}-{tag}"}
        fixed = self._rng.random() < self._invalid
        if not fixed:
            properties["email"] = self._email(first, last, tag)
        if self._rng.random() < 0.3:
            properties["phone"] = self._phone()
        self._create("contacts", properties, tag=tag, fixed=fixed)
        return 1

    def _create_company(self) -> int:
        tag = f"k{len(self._by_type['companies']) + 1}"
        properties = {"name": self._company_name(tag)}
        if self._rng.random() < 0.3:
            properties["phone"] = self._phone()
        self._create("companies", properties, tag=tag)
        return 1

    def _edit_contact(self) -> int:
        contact = self._pick("contacts")
        if contact is None:
            return self._create_contact()
        first = contact.now("firstname") or ""
        choices: list[tuple[str, str]] = [
            ("firstname", self._rng.choice(FIRST)),
            ("lastname", f"{self._rng.choice(LAST)}-{contact.tag}"),
            ("phone", self._phone()),
        ]
        if not contact.fixed:
            choices.append(("email", self._email(first, self._rng.choice(LAST), contact.tag)))
        name, value = self._rng.choice(choices)
        self._update(contact, {name: value})
        return 1

    def _edit_company(self) -> int:
        company = self._pick("companies")
        if company is None:
            return self._create_company()
        name, value = self._rng.choice(
            [("name", self._company_name(company.tag)), ("phone", self._phone())]
        )
        self._update(company, {name: value})
        return 1

    # --- deals ----------------------------------------------------------------------------

    def _create_deal(self) -> int:
        tag = f"d{len(self._by_type['deals']) + 1}"
        bad = self._rng.random() < self._invalid
        deal = self._create(
            "deals",
            {
                "dealname": f"{self._rng.choice(DEAL_WORDS)} {tag}",
                "dealstage": self._rng.choice(OPEN_STAGES),
                "pipeline": "default",
            },
            tag=tag,
        )
        calls = 1
        if bad:
            # Its first line item names an item QuickBooks lacks, and stays.
            self._create_line_item(deal, UNKNOWN_ITEM, fixed=True)
            calls += 1
        for other, share in (("companies", 0.6), ("contacts", 0.7)):
            party = self._pick(other) if self._rng.random() < share else None
            if party is not None:
                self._associate(deal, other, party)
                calls += 1
        return calls

    def _associate_deal(self) -> int:
        deal = self._pick("deals")
        other = self._rng.choice(("companies", "contacts"))
        party = self._pick(other)
        if deal is None or party is None:
            return self._create_deal()
        self._associate(deal, other, party)
        return 1

    def _associate(self, deal: Record, other: str, party: Record) -> None:
        self._hubspot.ui_associate("deals", deal.id, other, party.id)
        deal.history.setdefault(LINKED, []).append(f"+{other} {party.id}")

    def _win_deal(self) -> int:
        deal = self._pick("deals", lambda d: d.now("dealstage") != WON)
        if deal is None:
            return self._create_deal()
        self._update(deal, {"dealstage": WON, "closedate": self._rng.choice(CLOSE_DATES)})
        return 1

    def _reopen_deal(self) -> int:
        deal = self._pick("deals", lambda d: d.now("dealstage") == WON)
        if deal is None:
            return self._win_deal()
        self._update(deal, {"dealstage": self._rng.choice((*OPEN_STAGES, "closedlost"))})
        return 1

    def _rename_deal(self) -> int:
        deal = self._pick("deals")
        if deal is None:
            return self._create_deal()
        self._update(deal, {"dealname": f"{self._rng.choice(DEAL_WORDS)} {deal.tag}"})
        return 1

    # --- line items ---------------------------------------------------------------------

    def _add_line_item(self) -> int:
        deal = self._pick("deals")
        if deal is None:
            return self._create_deal()
        self._create_line_item(deal, self._rng.choice(ITEMS), fixed=False)
        return 1

    def _create_line_item(self, deal: Record, name: str, *, fixed: bool) -> None:
        price = self._rng.choice(PRICES)
        properties = {"name": name, "quantity": self._rng.choice(QUANTITIES), "price": price}
        if self._rng.random() < 0.1:
            properties["discount"] = self._unit_discount(price)
        item = self._create(
            "line_items",
            properties,
            fixed=fixed,
            associations=[
                {
                    "to": {"id": deal.id},
                    "types": [
                        {
                            "associationCategory": "HUBSPOT_DEFINED",
                            "associationTypeId": LINE_ITEM_TO_DEAL,
                        }
                    ],
                }
            ],
        )
        item.history[DEAL] = [deal.id]
        deal.history.setdefault(LINE_ITEMS, []).append(f"+{item.id} {name}")

    def _edit_line_item(self) -> int:
        item = self._pick("line_items", lambda i: not i.fixed)
        if item is None:
            return self._add_line_item()
        price = self._rng.choice(PRICES)
        changes = self._rng.choice(
            [
                {"quantity": self._rng.choice(QUANTITIES)},
                {"price": price},
                {"quantity": self._rng.choice(QUANTITIES), "price": price},
                {"discount": self._unit_discount(item.now("price") or "0")},
            ]
        )
        self._update(item, changes)
        return 1

    def _delete_line_item(self) -> int:
        item = self._pick("line_items", lambda i: not i.fixed)
        if item is None:
            return self._add_line_item()
        self._hubspot.ui_archive("line_items", item.id)
        item.deleted = True
        self.records[item.history[DEAL][0]].history[LINE_ITEMS].append(f"-{item.id}")
        return 1

    # --- undo ---------------------------------------------------------------------------

    def _undo(self) -> int:
        """Set a property back to a value it had before (not the one it has now)."""
        candidates = [
            (record, name)
            for records in self._by_type.values()
            for record in records
            if not record.fixed and not record.deleted
            for name in UNDOABLE[record.object_type]
            if len(set(record.history.get(name, ()))) > 1
        ]
        if not candidates:
            return self._edit_line_item()
        record, name = self._rng.choice(candidates)
        current = record.now(name)
        earlier = sorted({v for v in record.history[name] if v != current})
        self._update(record, {name: self._rng.choice(earlier)})
        return 1

    # --- helpers ------------------------------------------------------------------------

    def _create(
        self,
        object_type: str,
        properties: dict[str, str],
        *,
        tag: str = "",
        fixed: bool = False,
        associations: list[dict[str, Any]] | None = None,
    ) -> Record:
        made = self._hubspot.ui_create(object_type, properties, associations)
        record = Record(
            object_type,
            str(made["id"]),
            tag=tag,
            fixed=fixed,
            history={name: [value] for name, value in properties.items()},
        )
        self.records[record.id] = record
        self._by_type[object_type].append(record)
        return record

    def _update(self, record: Record, changes: dict[str, str]) -> None:
        if "price" in changes and record.now("discount"):
            # A unit discount follows its price, as a person keeps it under the price
            # (QuickBooks refuses an invoice discounted below zero).
            changes = {"discount": self._unit_discount(changes["price"]), **changes}
        self._hubspot.ui_update(record.object_type, record.id, changes)
        for name, value in changes.items():
            record.history.setdefault(name, []).append(value)

    def _pick(
        self, object_type: str, where: Callable[[Record], bool] = lambda _: True
    ) -> Record | None:
        live = [r for r in self._by_type[object_type] if not r.deleted and where(r)]
        if live and self._rng.random() < RECENT_SHARE:
            # People work on what they just made: its edits race its own sync.
            live = live[-RECENT:]
        return self._rng.choice(live) if live else None

    def _email(self, first: str, last: str, tag: str) -> str:
        return f"{first}.{last}.{tag}@{self._rng.choice(DOMAINS)}".lower()

    def _phone(self) -> str:
        return f"+1 555 {self._rng.randrange(100, 1000)} {self._rng.randrange(1000, 10000)}"

    def _company_name(self, tag: str) -> str:
        words = (self._rng.choice(COMPANY_WORDS), self._rng.choice(COMPANY_KINDS))
        return f"{words[0]} {words[1]}-{tag}"

    def _unit_discount(self, price: str) -> str:
        share = self._rng.choice(UNIT_DISCOUNT_SHARES)
        return str((Decimal(price) * share).quantize(Decimal("0.01")))
