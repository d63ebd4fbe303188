"""What a source record amounts to once mapped, and the digest that says whether it changed.

The sync engine and reconciliation both decide by content, not by version: a deal's
invoice also depends on its line items and on the party it is invoiced to, none of
which moves the deal's own last-modified time. The digest covers exactly what the
engine would write from, so equal digests mean nothing to write.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace

from pydantic import BaseModel

from shared.mapping import Filtered, Mapper
from shared.models import Deal, ObjectType, Party, SourceRecord

# A deal's invoice goes to its company when it has one (B2B), else to its contact.
CUSTOMER_SOURCES = (ObjectType.COMPANY, ObjectType.CONTACT)


def content_hash(model: BaseModel, *context: str, leave_out: frozenset[str] = frozenset()) -> str:
    """Hash of a model's set fields (what selective sync writes) and any context."""
    material = "|".join(
        (model.model_dump_json(exclude_unset=True, exclude=set(leave_out)), *context)
    )
    return hashlib.sha256(material.encode()).hexdigest()


@dataclass(frozen=True)
class Mapped:
    """A record after mapping: the canonical model, its digest, and for a deal the
    (object type, id) of the party it is invoiced to, when it has one.

    Two-way fields (``both``) are left out of the digest: whether one goes forward is
    decided field by field against the accounting side (``shared.sync.backflow``), so
    a value that came from there does not count as a change to send back to it.
    """

    model: Party | Deal
    digest: str
    customer: tuple[ObjectType, str] | None = None
    two_way: frozenset[str] = frozenset()

    def settled(self, keep: Mapping[str, object], moving: Mapping[str, str | None]) -> Mapped:
        """The record as its forward write sends it once its two-way fields are settled:
        ``keep``, the accounting side's values where that side wins or holds; ``moving``,
        the CRM's values that go forward, counted in the digest so that they make a write."""
        model = self.model.model_copy(update=keep)
        moved = (json.dumps(sorted(moving.items())),) if moving else ()
        return replace(
            self, model=model, digest=_digest(model, self.customer, self.two_way, *moved)
        )


def map_content(mapper: Mapper, record: SourceRecord) -> Mapped | Filtered:
    """Map ``record``; raises ``RecordInvalid`` like ``Mapper.map``."""
    mapped = mapper.map(record)
    if isinstance(mapped, Filtered):
        return mapped
    two_way = mapper.back.tracked(record.object_type)
    if isinstance(mapped, Party):
        return Mapped(mapped, _digest(mapped, None, two_way), two_way=two_way)
    customer = next(
        (
            (object_type, party_id)
            for object_type in CUSTOMER_SOURCES
            if mapper.handles(object_type)
            for party_id in record.associations.get(object_type, [])[:1]
        ),
        None,
    )
    return Mapped(mapped, _digest(mapped, customer, two_way), customer, two_way)


def _digest(
    model: Party | Deal,
    customer: tuple[ObjectType, str] | None,
    leave_out: frozenset[str],
    *moved: str,
) -> str:
    if isinstance(model, Party):
        return content_hash(model, *moved, leave_out=leave_out)
    context = f"{customer[0]}:{customer[1]}" if customer else "no-customer"
    return content_hash(model, context, *moved, leave_out=leave_out)
