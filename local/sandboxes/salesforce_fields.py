"""Custom fields of the Salesforce sandbox, as an admin creates them in Setup.

Salesforce's REST API cannot create a field: an admin adds one in Setup → Object
Manager → Fields & Relationships (https://help.salesforce.com/s/articleView?id=platform.adding_fields.htm),
or a deployment does through the Metadata or Tooling API. The sandbox takes them from
its configuration (``SalesforceSandboxConfig.custom_fields``) or from
``SalesforceSandbox.add_custom_field``, the admin at work, and from then on treats
them like any field: the sObject Describe lists them with ``custom: true``
(https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_sobject_describe.htm),
SOQL reads them and writes are checked against their type, length and picklist.

Types are Setup's names, described as the Object Reference's field types
(https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/field_types.htm):
Text → ``string`` with its length, Number → ``double`` (``precision`` counts every
digit, ``scale`` those after the point, so Number(16, 2) is precision 18, scale 2),
Currency → ``currency``, Date → ``date``, Checkbox → ``boolean``, Picklist →
``picklist``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from local.sandboxes.salesforce_schema import Field, SObjectType

__all__ = ["CustomField", "add_fields", "with_custom_fields"]

FieldKind = Literal["Text", "Number", "Currency", "Date", "Checkbox", "Picklist"]

# Setup's rules for a field name: a letter first, letters, digits and single
# underscores, no underscore at the end, at most 40 characters; the API name adds
# ``__c`` (https://help.salesforce.com/s/articleView?id=platform.custom_field_attributes.htm).
_FIELD_NAME = re.compile(r"[A-Za-z](?:[A-Za-z0-9]|_(?!_))*(?<!_)__c")
MAX_NAME = 40
MAX_TEXT = 255  # a Text field's longest length
MAX_DIGITS = 18  # a Number or Currency field's digits, both sides of the point


@dataclass(frozen=True)
class CustomField:
    """One field as its Setup page asks for it. ``length`` is a Text field's characters
    or a Number's digits before the point; ``decimals`` those after it."""

    name: str  # the API name, ``Crmsync_Invoice_Status__c``
    label: str
    type: FieldKind
    length: int = 0
    decimals: int = 0
    values: tuple[str, ...] = ()  # a picklist's values, in order
    # "Restrict picklist to the values defined in the value set" (unconfirmed whether
    # Setup ticks it by default; docs/vendors/salesforce.md).
    restricted: bool = True

    def __post_init__(self) -> None:
        if not _FIELD_NAME.fullmatch(self.name) or len(self.name) - 3 > MAX_NAME:
            raise ValueError(f"{self.name!r} is no custom field API name (Name__c)")
        if self.type == "Text" and not 1 <= self.length <= MAX_TEXT:
            raise ValueError(f"{self.name}: a Text field holds 1 to {MAX_TEXT} characters")
        if self.type in ("Number", "Currency") and (
            self.length < 1 or self.decimals < 0 or self.length + self.decimals > MAX_DIGITS
        ):
            raise ValueError(f"{self.name}: a number has 1 to {MAX_DIGITS} digits in all")
        if self.type == "Picklist" and not self.values:
            raise ValueError(f"{self.name}: a Picklist needs its values")

    def described(self) -> Field:
        """The field as the schema (and so the describe and every write) sees it."""
        field = Field(self.name, "string", self.label, custom=True)
        if self.type == "Text":
            return replace(field, length=self.length)
        if self.type in ("Number", "Currency"):
            kind = "double" if self.type == "Number" else "currency"
            digits = self.length + self.decimals
            return replace(field, type=kind, precision=digits, scale=self.decimals)
        if self.type == "Date":
            return replace(field, type="date")
        if self.type == "Checkbox":
            return replace(field, type="boolean", default=False)
        return replace(
            field,
            type="picklist",
            length=MAX_TEXT,
            picklist=self.values,
            restricted=self.restricted,
        )


def add_fields(obj: SObjectType, fields: Sequence[CustomField]) -> SObjectType:
    """``obj`` with these custom fields after its own; a name it has already is refused,
    as Setup refuses a field whose name is taken."""
    added: list[Field] = []
    for custom in fields:
        if obj.field(custom.name) or any(f.name.lower() == custom.name.lower() for f in added):
            raise ValueError(f"{obj.name} has a field {custom.name} already")
        added.append(custom.described())
    return SObjectType(
        obj.name,
        obj.label,
        obj.label_plural,
        obj.key_prefix,
        (*obj.fields, *added),
        obj.createable,
        obj.updateable,
        obj.deletable,
    )


def with_custom_fields(
    schema: Mapping[str, SObjectType], custom: Mapping[str, Sequence[CustomField]]
) -> dict[str, SObjectType]:
    """Every object, with the custom fields configured for it."""
    unknown = set(custom) - set(schema)
    if unknown:
        raise ValueError(f"custom fields on unknown objects {sorted(unknown)}")
    return {name: add_fields(obj, custom.get(name, ())) for name, obj in schema.items()}
