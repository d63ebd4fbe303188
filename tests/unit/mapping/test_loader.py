"""Loading mapping files: the shipped examples load, and every bad file is refused
with the file, the key path and the problem."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.errors import MappingConfigError
from shared.mapping import Mapper, MappingConfig, load_mapping
from shared.models import ObjectType

CONFIG_DIR = Path(__file__).resolve().parents[3] / "config" / "hubspot"

MINIMAL: dict[str, Any] = {
    "version": 1,
    "objects": {
        "contact": {"fields": {"display_name": {"from": "firstname"}}},
        "deal": {
            "fields": {
                "name": {"from": "dealname"},
                "status": {"default": "won"},
                "currency": {"default": "USD"},
            },
            "line_items": {
                "fields": {
                    "name": {"from": "name"},
                    "quantity": {"from": "quantity"},
                    "unit_price": {"from": "price"},
                }
            },
        },
    },
}


def write(tmp_path: Path, content: str, name: str = "mapping.yaml") -> Path:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    return path


def with_field(obj: str, key: str, spec: Any, *, lines: bool = False) -> str:
    """MINIMAL with one field (re)defined, as YAML."""
    data = json.loads(json.dumps(MINIMAL))
    target = data["objects"][obj]["line_items"] if lines else data["objects"][obj]
    target["fields"][key] = spec
    return yaml.safe_dump(data)


def load_error(path: Path) -> str:
    with pytest.raises(MappingConfigError) as caught:
        load_mapping(path)
    return str(caught.value)


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIG_DIR.glob("*.yaml")))
def test_given_a_shipped_config_when_loaded_then_it_validates_and_compiles(name: str) -> None:
    config = load_mapping(CONFIG_DIR / name)

    mapper = Mapper(config)
    assert mapper.handles(ObjectType.DEAL)
    assert "dealstage" in mapper.source_properties(ObjectType.DEAL)


def test_given_the_shipped_configs_then_all_three_business_models_are_there() -> None:
    assert {p.name for p in CONFIG_DIR.glob("*.yaml")} >= {
        "services.yaml",
        "ecommerce.yaml",
        "b2b.yaml",
    }


def test_given_json_when_loaded_then_same_config_as_yaml(tmp_path: Path) -> None:
    from_json = load_mapping(write(tmp_path, json.dumps(MINIMAL), "mapping.json"))
    from_yaml = load_mapping(write(tmp_path, yaml.safe_dump(MINIMAL), "mapping.yml"))

    assert from_json == from_yaml


def test_given_fractional_numbers_when_loaded_then_they_stay_the_text_written(
    tmp_path: Path,
) -> None:
    content = with_field("deal", "discount_amount", {"default": "X"}, lines=True)
    content = content.replace("default: X", "default: 0.10")

    config = load_mapping(write(tmp_path, content))

    assert config.objects.deal is not None and config.objects.deal.line_items is not None
    assert config.objects.deal.line_items.fields["discount_amount"].default == "0.10"


def test_given_yes_no_keys_when_loaded_then_they_are_text_not_booleans(tmp_path: Path) -> None:
    content = with_field("contact", "tax_id", {"from": "vat"}).replace(
        "from: vat", "from: vat\n        value_map: {yes: Y, no: N}"
    )

    config = load_mapping(write(tmp_path, content))

    assert config.objects.contact is not None
    assert config.objects.contact.fields["tax_id"].value_map == {"yes": "Y", "no": "N"}


def test_given_bare_numeric_ids_when_loaded_then_they_are_text(tmp_path: Path) -> None:
    data = json.loads(json.dumps(MINIMAL))
    data["objects"]["deal"]["filter"] = [{"field": "pipeline", "in": [12345]}]

    config = load_mapping(write(tmp_path, yaml.safe_dump(data)))

    assert config.objects.deal is not None
    assert config.objects.deal.filter[0].in_ == ("12345",)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            "version: 1\nobjects:\n\tcontact: {}\n",
            "invalid YAML at line 3, column 1: found character '\\t' that cannot start any token",
        ),
        (
            "version: 1\nobjects:\n  contact: {}\n  contact: {}\n",
            "invalid YAML at line 4, column 3: duplicate key 'contact'",
        ),
        ("- just\n- a list\n", "the top level must be a mapping"),
    ],
)
def test_given_unreadable_yaml_when_loaded_then_error_names_file_and_line(
    tmp_path: Path, content: str, expected: str
) -> None:
    path = write(tmp_path, content)

    message = load_error(path)

    assert message.startswith(f"{path}: ")
    assert expected in message


def test_given_invalid_json_when_loaded_then_error_names_line(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, '{"version": 1,\n "objects": }', "m.json"))

    assert "invalid JSON at line 2" in message


def test_given_duplicate_json_key_when_loaded_then_refused(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, '{"version": 1, "version": 1}', "m.json"))

    assert "duplicate key 'version'" in message


def test_given_other_extension_when_loaded_then_refused(tmp_path: Path) -> None:
    assert "unsupported file type '.toml'" in load_error(write(tmp_path, "", "m.toml"))


def test_given_missing_file_when_loaded_then_error_names_it(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"

    assert load_error(path).startswith(f"{path}: cannot read the mapping file")


BAD_FIELDS = [
    # (object, key, spec, on line items, key path, problem)
    (
        "deal",
        "currency",
        {"from": "c", "transforms": ["uper"]},
        False,
        "objects.deal.fields.currency.transforms[0]",
        "unknown transform 'uper' (expected one of collapse_whitespace, date, decimal",
    ),
    (
        "deal",
        "close_date",
        {"from": "closedate", "transforms": [{"date": {"timezone": "America/NewYork"}}]},
        False,
        "objects.deal.fields.close_date.transforms[0].date.timezone",
        "unknown time zone 'America/NewYork'",
    ),
    (
        "contact",
        "phone",
        {"from": "phone", "transforms": [{"replace": {"pattern": "([", "with": ""}}]},
        False,
        "objects.contact.fields.phone.transforms[0].replace",
        "invalid regular expression '(['",
    ),
    (
        "contact",
        "phone",
        {"from": "phone", "transforms": [{"replace": {"pattern": "a", "with": r"\2"}}]},
        False,
        "objects.contact.fields.phone.transforms[0].replace",
        "invalid group reference",
    ),
    (
        "deal",
        "memo",
        {"from": "m", "transforms": [{"decimal": {"places": 2, "roundin": "up"}}]},
        False,
        "objects.deal.fields.memo.transforms[0].decimal",
        "unknown key 'roundin' (expected one of places, rounding)",
    ),
    (
        "deal",
        "memo",
        {"from": "m", "transforms": [{"decimal": {"rounding": "sideways"}}]},
        False,
        "objects.deal.fields.memo.transforms[0].decimal.rounding",
        "'half_up'",
    ),
    (
        "deal",
        "memo",
        {"from": "m", "transforms": [{"truncate": 0}]},
        False,
        "objects.deal.fields.memo.transforms[0].truncate.length",
        "greater than 0",
    ),
    (
        "deal",
        "memo",
        {"from": "m", "transforms": [{"lower": 3}]},
        False,
        "objects.deal.fields.memo.transforms[0]",
        "transform 'lower' takes no single value",
    ),
    (
        "deal",
        "memo",
        {"from": "m", "transforms": [{"trim": None, "lower": None}]},
        False,
        "objects.deal.fields.memo.transforms[0]",
        "a transform is a name (trim) or a one-key mapping",
    ),
    (
        "deal",
        "memo",
        {"from": ["a", "b"], "transforms": [{"template": "{a} {c}"}]},
        False,
        "objects.deal.fields.memo",
        "template placeholder {c} is not listed in `from` (a, b)",
    ),
    (
        "deal",
        "memo",
        {"from": ["a"], "transforms": [{"template": "{a!r}"}]},
        False,
        "objects.deal.fields.memo.transforms[0].template",
        "must be a plain property name",
    ),
    (
        "deal",
        "memo",
        {"from": ["a", "b"]},
        False,
        "objects.deal.fields.memo",
        "`from` lists 2 properties: combine them with a `join` or `template` transform",
    ),
    (
        "deal",
        "memo",
        {"from": ["a", "a"], "transforms": [{"join": " "}]},
        False,
        "objects.deal.fields.memo.from",
        "`from` lists a property twice",
    ),
    (
        "deal",
        "memo",
        {"from": ""},
        False,
        "objects.deal.fields.memo.from",
        "`from` is a property name or a non-empty list of property names",
    ),
    (
        "deal",
        "memo",
        {"from": "m", "transforms": [{"join": " "}]},
        False,
        "objects.deal.fields.memo",
        "transforms[0] (join) combines several properties: list them in `from`",
    ),
    (
        "deal",
        "memo",
        {"from": "m", "transforms": ["decimal", "trim"]},
        False,
        "objects.deal.fields.memo",
        "transforms[1] (trim) works on text, but the value is a decimal here",
    ),
    (
        "deal",
        "memo",
        {"from": "m", "transforms": ["decimal"], "value_map": {"a": "b"}},
        False,
        "objects.deal.fields.memo",
        "value_map needs text, but the transforms give a decimal",
    ),
    (
        "deal",
        "memo",
        {"required": True},
        False,
        "objects.deal.fields.memo",
        "needs `from` (a source property) or a `default`",
    ),
    (
        "deal",
        "memo",
        {"default": "x", "transforms": ["trim"]},
        False,
        "objects.deal.fields.memo",
        "`transforms` and `value_map` need `from`",
    ),
    (
        "deal",
        "memo",
        {"from": "m", "requird": True},
        False,
        "objects.deal.fields.memo",
        "unknown key 'requird' (expected one of from, transforms, value_map, default, "
        "required, direction, conflict)",
    ),
    (
        "deal",
        "memo",
        {"from": "m", "default": True},
        False,
        "objects.deal.fields.memo.default",
        "expected text, got True: quote it",
    ),
    (
        "contact",
        "emial",
        {"from": "email"},
        False,
        "objects.contact.fields.emial",
        "unknown canonical field 'emial' for Party (expected one of display_name",
    ),
    (
        "contact",
        "kind",
        {"default": "person"},
        False,
        "objects.contact.fields.kind",
        "'kind' is set by the mapping engine",
    ),
    (
        "deal",
        "line_items",
        {"from": "x"},
        False,
        "objects.deal.fields.line_items",
        "map them under objects.deal.line_items",
    ),
    (
        "contact",
        "billing_address",
        {"from": "address"},
        False,
        "objects.contact.fields.billing_address",
        "map the parts of 'billing_address' (billing_address.line1",
    ),
    (
        "contact",
        "billing_address.zip",
        {"from": "zip"},
        False,
        "objects.contact.fields.billing_address.zip",
        "unknown canonical field 'billing_address.zip'",
    ),
    (
        "contact",
        "email.part",
        {"from": "zip"},
        False,
        "objects.contact.fields.email.part",
        "'email' has no parts",
    ),
    (
        "contact",
        "credit_limit",
        {"from": "x", "transforms": ["date"]},
        False,
        "objects.contact.fields.credit_limit.transforms",
        "the transforms give a date, but credit_limit is Decimal",
    ),
    (
        "deal",
        "memo",
        {"from": "x", "transforms": ["decimal"]},
        False,
        "objects.deal.fields.memo.transforms",
        "the transforms give a decimal, but memo is str",
    ),
    (
        "deal",
        "currency",
        {"default": "usd"},
        False,
        "objects.deal.fields.currency.default",
        "'usd' is not a valid currency",
    ),
    (
        "deal",
        "status",
        {"from": "dealstage", "value_map": {"closedwon": "wonn"}},
        False,
        "objects.deal.fields.status.value_map.closedwon",
        "'wonn' is not a valid status",
    ),
    (
        "deal",
        "quantity",
        {"from": "q", "default": "-1"},
        True,
        "objects.deal.line_items.fields.quantity.default",
        "'-1' is not a valid quantity: Input should be greater than 0",
    ),
]


@pytest.mark.parametrize(
    ("obj", "key", "spec", "lines", "path", "problem"),
    BAD_FIELDS,
    ids=[f"{row[4]}-{row[5][:30]}" for row in BAD_FIELDS],
)
def test_given_a_bad_field_when_loaded_then_error_names_file_key_path_and_problem(
    tmp_path: Path, obj: str, key: str, spec: Any, lines: bool, path: str, problem: str
) -> None:
    file = write(tmp_path, with_field(obj, key, spec, lines=lines))

    message = load_error(file)

    assert f"{file}: {path}: " in message
    line = next(line for line in message.splitlines() if f": {path}: " in line)
    assert problem in line


def test_given_a_required_canonical_field_unmapped_when_loaded_then_error_names_it(
    tmp_path: Path,
) -> None:
    data = json.loads(json.dumps(MINIMAL))
    del data["objects"]["deal"]["fields"]["currency"]
    del data["objects"]["deal"]["line_items"]["fields"]["unit_price"]
    file = write(tmp_path, yaml.safe_dump(data))

    message = load_error(file)

    assert (
        f"{file}: objects.deal.fields: missing required canonical field 'currency' "
        "(Deal needs it: map it with `from` or `default`)"
    ) in message
    assert (
        f"{file}: objects.deal.line_items.fields: missing required canonical field 'unit_price'"
    ) in message


@pytest.mark.parametrize(
    ("change", "path", "problem"),
    [
        (
            lambda d: d.update(extra=1),
            "",
            "unknown key 'extra' (expected one of version, source, target, objects, items)",
        ),
        (lambda d: d.update(version=2), "version", "Input should be 1"),
        (lambda d: d.pop("objects"), "", "missing key 'objects'"),
        (
            lambda d: d["objects"].update(contacts={}),
            "objects",
            "unknown key 'contacts' (expected one of contact, company, deal)",
        ),
        (
            lambda d: d["objects"]["deal"].update(filtr=[]),
            "objects.deal",
            "unknown key 'filtr' "
            "(expected one of filter, fields, back, line_items, extra_lines, custom_fields)",
        ),
        (lambda d: d.update(objects={}), "objects", "map at least one of contact, company, deal"),
        (
            lambda d: d["objects"]["deal"].update(
                filter=[{"field": "a", "in": ["x"], "equals": "y"}]
            ),
            "objects.deal.filter[0]",
            "a filter rule has exactly one of in, not_in, equals, present, matches (got 2)",
        ),
        (
            lambda d: d["objects"]["deal"].update(filter=[{"field": "a"}]),
            "objects.deal.filter[0]",
            "a filter rule has exactly one of in, not_in, equals, present, matches (got 0)",
        ),
        (
            lambda d: d["objects"]["deal"].update(filter=[{"field": "a", "matches": "(["}]),
            "objects.deal.filter[0]",
            "invalid regular expression '(['",
        ),
        (
            lambda d: d["objects"]["deal"].update(
                extra_lines=[{"when": [], "fields": {"name": {"default": "Fee"}}}]
            ),
            "objects.deal.extra_lines[0].fields",
            "missing required canonical field 'quantity'",
        ),
    ],
)
def test_given_a_bad_structure_when_loaded_then_error_names_the_key_path(
    tmp_path: Path, change: Any, path: str, problem: str
) -> None:
    data = json.loads(json.dumps(MINIMAL))
    change(data)
    file = write(tmp_path, yaml.safe_dump(data))

    message = load_error(file)

    assert f"{file}: {path + ': ' if path else ''}{problem}" in message


def test_given_many_problems_when_loaded_then_each_is_reported_on_its_own_line(
    tmp_path: Path,
) -> None:
    data = json.loads(json.dumps(MINIMAL))
    data["objects"]["deal"]["fields"]["currency"] = {"from": "c", "transforms": ["uper"]}
    data["objects"]["deal"]["fields"]["memo"] = {"from": "m", "transforms": ["lowr"]}
    file = write(tmp_path, yaml.safe_dump(data))

    lines = load_error(file).splitlines()

    assert [line.split(": ")[1] for line in lines] == [
        "objects.deal.fields.currency.transforms[0]",
        "objects.deal.fields.memo.transforms[0]",
    ]


def test_given_a_config_built_in_code_then_it_is_validated_the_same_way() -> None:
    data = json.loads(json.dumps(MINIMAL))
    data["objects"]["contact"]["fields"]["emial"] = {"from": "email"}

    with pytest.raises(
        ValueError, match=re.escape("objects.contact.fields.emial: unknown canonical")
    ):
        MappingConfig.model_validate(data)
