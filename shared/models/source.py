"""A CRM record as fetched, before mapping: the mapping engine's input."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from shared.models.events import ObjectType


class SourceRecord(BaseModel):
    """Vendor properties as plain strings, plus associations and child records.

    ``version`` is the record's last-modified time in epoch ms. ``children`` holds
    records fetched with it (a deal's line items); ``associations`` the ids of
    related records by object type (a deal's contacts and companies), in the
    vendor's order, primary first where the vendor says which is primary.
    """

    model_config = ConfigDict(frozen=True)

    object_type: ObjectType
    id: str
    version: int = Field(ge=0)
    properties: dict[str, str | None]
    associations: dict[ObjectType, list[str]] = Field(default_factory=dict)
    children: dict[ObjectType, list[SourceRecord]] = Field(default_factory=dict)
