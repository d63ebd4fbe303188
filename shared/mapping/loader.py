"""Reads a mapping file (YAML or JSON) into a validated ``MappingConfig``.

Every problem becomes one ``MappingConfigError`` whose lines each name the file,
the key path and what is wrong, so a bad file stops a deploy or a ``crmsync``
run before any record is processed.

Scalars are read so that nothing is silently reinterpreted: a YAML or JSON
number with a fraction stays the text it was written as (``0.10`` never becomes a
float), YAML dates stay text, only ``true``/``false`` are booleans (``yes``, ``no``,
``on``, ``off`` are text, so a value map can use them as keys), and a key given
twice is an error rather than a silent override.
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from pathlib import Path
from types import NoneType, UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from shared.errors import MappingConfigError
from shared.mapping.schema import MappingConfig, key_path


class _Loader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[Hashable] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable):
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r}", key_node.start_mark
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _as_written(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    assert isinstance(node, yaml.ScalarNode)
    return loader.construct_scalar(node)


def _true_false_only(loader: yaml.SafeLoader, node: yaml.Node) -> bool | str:
    text = _as_written(loader, node)
    return {"true": True, "false": False}.get(text.lower(), text)


_Loader.add_constructor("tag:yaml.org,2002:float", _as_written)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _as_written)
_Loader.add_constructor("tag:yaml.org,2002:bool", _true_false_only)


def load_mapping(path: Path) -> MappingConfig:
    """Load and fully validate a mapping file; raises ``MappingConfigError``."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MappingConfigError(f"{name}: cannot read the mapping file: {exc}") from None
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise MappingConfigError(
            f"{name}: unsupported file type {suffix!r} (expected .yaml, .yml or .json)"
        )
    return parse_mapping(text, name)


def parse_mapping(text: str, name: str) -> MappingConfig:
    """Validate a mapping document (YAML, of which JSON is a subset as we read it:
    a document starting with ``{`` is read as strict JSON). ``name`` is for messages."""
    data = _parse_json(text, name) if text.lstrip().startswith("{") else _parse_yaml(text, name)
    if not isinstance(data, dict):
        raise MappingConfigError(f"{name}: the top level must be a mapping (version, objects)")
    try:
        return MappingConfig.model_validate(data)
    except ValidationError as exc:
        raise MappingConfigError("\n".join(_problems(name, exc))) from None


def _parse_yaml(text: str, name: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise MappingConfigError(f"{name}: invalid YAML{where}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise MappingConfigError(f"{name}: invalid YAML: {exc}") from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _parse_json(text: str, name: str) -> Any:
    try:
        return json.loads(
            text, parse_float=str, parse_constant=str, object_pairs_hook=_no_duplicates
        )
    except json.JSONDecodeError as exc:
        raise MappingConfigError(
            f"{name}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except ValueError as exc:
        raise MappingConfigError(f"{name}: invalid JSON: {exc}") from None


def _problems(name: str, exc: ValidationError) -> list[str]:
    lines: list[str] = []
    for error in exc.errors():
        loc = error["loc"]
        if error["type"] == "mapping":
            lines += [f"{name}: {problem}" for problem in str(error["ctx"]["problems"]).split("\n")]
            continue
        if error["type"] == "extra_forbidden":
            known = _known_keys(loc[:-1])
            expected = f" (expected one of {', '.join(known)})" if known else ""
            message = f"unknown key {loc[-1]!r}{expected}"
            loc = loc[:-1]
        elif error["type"] == "missing":
            message = f"missing key {loc[-1]!r}"
            loc = loc[:-1]
        else:
            message = error["msg"]
        lines.append(f"{name}: {key_path(loc)}: {message}" if loc else f"{name}: {message}")
    return lines


def _known_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys the schema accepts at ``loc``, to suggest next to an unknown one."""
    node: Any = MappingConfig
    for part in loc:
        node = _child(node, part)
    model = _model(node)
    if model is None:
        return []
    return [info.alias or name for name, info in model.model_fields.items() if name != "op"]


def _child(node: Any, part: int | str) -> Any:
    origin = get_origin(node)
    if origin is Annotated:
        return _child(get_args(node)[0], part)
    if origin is Union or origin is UnionType:
        members = [arg for arg in get_args(node) if arg is not NoneType]
        for member in members:  # a transform: the part is its name, the discriminator
            op = getattr(_model(member), "model_fields", {}).get("op")
            if op is not None and get_args(op.annotation) == (part,):
                return member
        return _child(members[0], part) if len(members) == 1 else None
    if origin is dict:
        return get_args(node)[1]
    if origin is tuple or origin is list:
        return get_args(node)[0]
    model = _model(node)
    if model is not None:
        for field_name, info in model.model_fields.items():
            if part in (field_name, info.alias):
                return info.annotation
    return None


def _model(node: Any) -> type[BaseModel] | None:
    if get_origin(node) is Annotated:
        return _model(get_args(node)[0])
    if get_origin(node) in (Union, UnionType):
        members = [arg for arg in get_args(node) if arg is not NoneType]
        return _model(members[0]) if len(members) == 1 else None
    return node if isinstance(node, type) and issubclass(node, BaseModel) else None
