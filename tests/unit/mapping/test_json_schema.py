"""The mapping file's JSON Schema, published for editors: current, and true to the presets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from shared.mapping.schema import JSON_SCHEMA_FILE, mapping_json_schema

ROOT = Path(__file__).resolve().parents[3]
PRESETS = sorted((ROOT / "config").glob("*/*.yaml"))
MODELINE = "# yaml-language-server: $schema=../mapping.schema.json"


def published() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((ROOT / JSON_SCHEMA_FILE).read_text(encoding="utf-8"))
    return loaded


def test_given_the_mapping_models_then_the_published_schema_is_current() -> None:
    assert published() == mapping_json_schema(), "stale: run `make mapping-schema`"


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_given_a_preset_then_it_names_the_schema_and_the_schema_takes_it(preset: Path) -> None:
    text = preset.read_text(encoding="utf-8")

    assert text.splitlines()[0] == MODELINE
    jsonschema.validate(yaml.safe_load(text), published())


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda doc: doc["objects"]["contact"].update(colour="blue"), "colour"),
        (
            lambda doc: doc["objects"]["contact"]["fields"]["email"].update(transforms=["shout"]),
            "shout",
        ),
        (lambda doc: doc.update(version=2), "2"),
    ],
)
def test_given_a_file_the_loader_refuses_then_the_schema_refuses_it_too(
    change: Any, where: str
) -> None:
    doc = yaml.safe_load((ROOT / "config/hubspot/services.yaml").read_text(encoding="utf-8"))
    change(doc)

    with pytest.raises(jsonschema.ValidationError) as refused:
        jsonschema.validate(doc, published())

    assert where in str(refused.value)
