"""The declarative mapping engine: CRM records → canonical ``Party`` / ``Deal``.

A mapping file (YAML or JSON) says which CRM objects are synced, which records
are excluded, and how each canonical field gets its value::

    version: 1
    objects:
      contact:                      # → Party(kind=person); company → Party(kind=company)
        fields:
          display_name: {from: [firstname, lastname], transforms: [{join: " "}], required: true}
          email: {from: email, transforms: [trim, lower], required: true}
          billing_address.city: {from: city}          # parts of a nested canonical field
      deal:                         # → Deal
        filter:                     # every rule must admit the record, else Filtered(reason)
          - {field: pipeline, in: [default]}
          - {field: dealstage, in: [closedwon]}
        fields:
          name: {from: dealname, required: true}
          status: {from: dealstage, value_map: {closedwon: won, closedlost: lost}, default: open}
          currency: {from: deal_currency_code, transforms: [upper], default: USD}
          close_date: {from: closedate, transforms: [{date: {timezone: America/New_York}}]}
        line_items:                 # each LINE_ITEM child → LineItem
          fields:
            name: {from: name, required: true}
            unit_price: {from: price, transforms: [{decimal: {places: 2}}], required: true}
        extra_lines:                # lines built from the deal's own properties
          - when: [{field: shipping_amount, present: true}]
            fields: {name: {default: Shipping}, quantity: {default: "1"},
                     unit_price: {from: shipping_amount, transforms: [decimal]}}

A top-level ``items: {create_missing: true, income_account: …}`` lets the sync
create an item the accounting system lacks for a line (off by default).

A field: ``from`` (one vendor property, or a list combined by ``join``/``template``),
``transforms`` (in order: trim, lower, upper, title, collapse_whitespace,
``{truncate: n}``, ``{replace: {pattern, with}}``, ``{join: sep}``,
``{template: "{a} {b}"}``, ``decimal`` / ``{decimal: {places, rounding}}``,
``date`` / ``{date: {timezone}}``), then ``value_map`` (a key ``""`` maps an empty
value), then ``default`` (used when the value is empty, or not in the value map),
then ``required``. Filter rules (``filter``, ``when``) name a vendor property in
``field`` and take one of ``in``, ``not_in``, ``equals``, ``present``, ``matches``.

Two-way, opt-in per field: an object's ``back`` section fills CRM properties from
where its invoice or customer stands in the accounting system, and a forward field may
say ``direction: accounting_to_crm`` or ``both`` (with a ``conflict`` policy); see
``shared.mapping.back`` and ``config/README.md``.

Selective sync: the output model's ``model_fields_set`` holds exactly the listed
fields (plus ``kind`` on a Party and ``line_items`` on a Deal with lines mapped);
a listed field with an empty source is set to the model's default (usually None),
so the accounting side writes listed fields and never touches the others.
"""

from shared.mapping.engine import Filtered, Mapper
from shared.mapping.loader import load_mapping, parse_mapping
from shared.mapping.schema import MappingConfig

__all__ = ["Filtered", "Mapper", "MappingConfig", "load_mapping", "parse_mapping"]
