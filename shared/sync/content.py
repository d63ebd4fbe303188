"""What a source record amounts to once mapped, and the digest that says whether it changed.

The sync engine and reconciliation both decide by content, not by version: a deal's
invoice also depends on its line items and on the party it is invoiced to, none of
which moves the deal's own last-modified time. The digest covers exactly what the
engine would write from, so equal digests mean nothing to write.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from pydantic import BaseModel

from shared.mapping import Filtered, Mapper
from shared.models import Deal, ObjectType, Party, SourceRecord

# A deal's invoice goes to its company when it has one (B2B), else to its contact.
CUSTOMER_SOURCES = (ObjectType.COMPANY, ObjectType.CONTACT)


def content_hash(model: BaseModel, *context: str) -> str:
    """Hash of a model's set fields (what selective sync writes) and any context."""
    material = "|".join((model.model_dump_json(exclude_unset=True), *context))
    return hashlib.sha256(material.encode()).hexdigest()


@dataclass(frozen=True)
class Mapped:
    """A record after mapping: the canonical model, its digest, and for a deal the
    (object type, id) of the party it is invoiced to, when it has one."""

    model: Party | Deal
    digest: str
    customer: tuple[ObjectType, str] | None = None


def map_content(mapper: Mapper, record: SourceRecord) -> Mapped | Filtered:
    """Map ``record``; raises ``RecordInvalid`` like ``Mapper.map``."""
    mapped = mapper.map(record)
    if isinstance(mapped, Filtered):
        return mapped
    if isinstance(mapped, Party):
        return Mapped(mapped, content_hash(mapped))
    customer = next(
        (
            (object_type, party_id)
            for object_type in CUSTOMER_SOURCES
            if mapper.handles(object_type)
            for party_id in record.associations.get(object_type, [])[:1]
        ),
        None,
    )
    context = f"{customer[0]}:{customer[1]}" if customer else "no-customer"
    return Mapped(mapped, content_hash(mapped, context), customer)
