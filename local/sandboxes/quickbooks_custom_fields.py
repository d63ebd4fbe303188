"""Sales-form custom fields of the QuickBooks sandbox: Preferences and Invoice.CustomField.

What Intuit documents, and where:

* ``Preferences.SalesFormsPrefs.CustomField`` lists the company's sales-form custom
  fields as name/value pairs: ``SalesFormsPrefs.UseSalesCustom<n>`` (``BooleanType``,
  ``BooleanValue``: enabled) and ``SalesFormsPrefs.SalesCustomName<n>``
  (``StringType``, ``StringValue``: the name the company shows), grouped in nested
  ``{"CustomField": [...]}`` objects. Shape from Intuit's Preferences sample,
  https://developer.intuit.com/app/developer/qbo/docs/api/accounting/all-entities/preferences
  (copied verbatim into python-quickbooks ``tests/unit/objects/test_preferences.py``).
* Up to three of them, created in the QuickBooks UI only ("Create custom field
  names: UI Yes, API No"),
  https://developer.intuit.com/app/developer/qbo/docs/develop/tutorials/create-custom-fields
* ``Invoice.CustomField``: "One of, up to three custom fields for the transaction.
  Available for custom fields so configured for the company. Check
  Preferences.SalesFormsPrefs.CustomField"; ``DefinitionId`` (required),
  ``StringValue``, ``Name`` (read only), ``Type`` (read only, only ``StringType``),
  https://developer.intuit.com/app/developer/qbo/docs/api/accounting/all-entities/invoice
* The ``DefinitionId`` is the slot number n: Intuit's PurchaseOrder sample pairs
  ``DefinitionId`` "1"/"2" with ``PurchaseCustomName1``/``2`` ("Crew #", "Sales Rep"),
  listing them without ``StringValue`` when they have none; Intuit's invoice sample
  answers ``{"DefinitionId": "1", "StringValue": "102", "Type": "StringType",
  "Name": "Crew #"}``.

Choices where the documentation is silent (docs/vendors/quickbooks.md):

* A ``CustomField`` entry whose ``DefinitionId`` is missing, unknown or not enabled
  is dropped and the write succeeds, as integrators report of QuickBooks
  (github.com/ruckus/quickbooks-ruby/issues/219, myleshyson/laravel-quickbooks/issues/2).
* Every enabled field is returned on every invoice, ``StringValue`` only when set.
* A sparse update changes the fields it names, by ``DefinitionId``, and keeps the
  others; a full update keeps only those it sends. An empty ``StringValue`` clears.
* Intuit documents no maximum for ``StringValue``. The sandbox refuses more than
  ``VALUE_MAX`` (31) characters with 2050, Intuit's string-length fault; the number
  is not verified against QuickBooks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

JsonObj = dict[str, Any]

SLOTS = 3  # "up to three custom fields" on sales forms (create-custom-fields tutorial)
VALUE_MAX = 31  # not documented by Intuit: see the module docstring


class CustomFieldError(ValueError):
    """A CustomField the sandbox refuses; ``code`` is the Intuit error code."""

    def __init__(self, code: str, detail: str, element: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.element = element


@dataclass(frozen=True)
class SalesCustomField:
    """One sales-form custom field slot as Preferences reports it."""

    definition_id: str  # the slot number, "1".."3"
    name: str
    enabled: bool


def definitions(fields: tuple[tuple[str, bool], ...]) -> list[SalesCustomField]:
    """Slots 1..n from ``(name, enabled)`` pairs (at most three)."""
    if len(fields) > SLOTS:
        raise ValueError(f"QuickBooks has at most {SLOTS} sales-form custom fields")
    return [
        SalesCustomField(str(slot), name, enabled)
        for slot, (name, enabled) in enumerate(fields, start=1)
    ]


def preferences_custom_field(defs: list[SalesCustomField]) -> list[JsonObj]:
    """``SalesFormsPrefs.CustomField`` in Intuit's nested shape: the enabled flags
    (highest slot first, as in Intuit's sample), then the names that are set."""
    flags: list[JsonObj] = [
        {
            "Name": f"SalesFormsPrefs.UseSalesCustom{d.definition_id}",
            "Type": "BooleanType",
            "BooleanValue": d.enabled,
        }
        for d in reversed(defs)
    ]
    names: list[JsonObj] = [
        {
            "Name": f"SalesFormsPrefs.SalesCustomName{d.definition_id}",
            "Type": "StringType",
            "StringValue": d.name,
        }
        for d in reversed(defs)
        if d.name
    ]
    groups: list[JsonObj] = [{"CustomField": flags}]
    if names:
        groups.append({"CustomField": names})
    return groups


def _entries(raw: Any) -> list[JsonObj]:
    if raw is None:
        return []
    if isinstance(raw, dict):  # one object where a list is expected: taken as a list of one
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(e, dict) for e in raw):
        raise CustomFieldError(
            "2010", "Property Name:CustomField specified is unsupported or invalid", "CustomField"
        )
    return raw


def values_of(raw: Any, defs: list[SalesCustomField]) -> dict[str, str]:
    """The ``StringValue`` a request gives each enabled field, by DefinitionId.

    Entries for fields that are not enabled (or name no DefinitionId) are dropped;
    a value longer than ``VALUE_MAX`` is refused (2050).
    """
    enabled = {d.definition_id for d in defs if d.enabled}
    out: dict[str, str] = {}
    for entry in _entries(raw):
        definition_id = str(entry.get("DefinitionId") or "")
        if definition_id not in enabled or "StringValue" not in entry:
            continue
        value = entry["StringValue"]
        text = "" if value is None else str(value)
        if len(text) > VALUE_MAX:
            raise CustomFieldError(
                "2050",
                "String length is either shorter or longer than supported by specification, "
                "String length specified does not match the supported length. "
                f"Min:0 Max:{VALUE_MAX} supported. Supplied length:{len(text)}",
                "CustomField.StringValue",
            )
        out[definition_id] = text
    return out


def stored(values: dict[str, str], defs: list[SalesCustomField]) -> list[JsonObj]:
    """``Invoice.CustomField`` as QuickBooks returns it: every enabled field, in slot
    order, with ``StringValue`` when it has a non-empty one."""
    out: list[JsonObj] = []
    for d in defs:
        if not d.enabled:
            continue
        field: JsonObj = {"DefinitionId": d.definition_id, "Name": d.name, "Type": "StringType"}
        if values.get(d.definition_id):
            field["StringValue"] = values[d.definition_id]
        out.append(field)
    return out


def current(stored_fields: Any) -> dict[str, str]:
    """The values an invoice holds now, by DefinitionId (from its stored CustomField)."""
    if not isinstance(stored_fields, list):
        return {}
    return {
        str(f["DefinitionId"]): str(f["StringValue"])
        for f in stored_fields
        if isinstance(f, dict) and "StringValue" in f
    }


def sparse_merge(stored_fields: Any, incoming: Any) -> Any:
    """A sparse update's ``CustomField``: the stored entries, then the request's, so
    the request's value wins for the fields it names and the others keep theirs."""
    if isinstance(incoming, dict):
        incoming = [incoming]
    if not isinstance(incoming, list):
        return incoming  # refused by ``values_of``
    kept = stored_fields if isinstance(stored_fields, list) else []
    return [*kept, *incoming]
