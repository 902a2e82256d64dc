"""The JSON Schema of spec files, as an editor sees them: before `extends`, defaults and shorthand.

pydantic's schema describes a resolved spec. A file on disk may leave required fields to its
parent or to `defaults`, write a block as a bare type name (`- relu`), and use dotted override
keys, so the editor schema relaxes exactly those points and keeps every field, type and bound.
A block may also be a use of a type defined under `blocks:`: any such use in the generic schema, or,
for a given spec, each of its defined types with its parameters (so an editor completes them too).
"""
from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from .blocks import BLOCK_TYPES
from .blocks.anyblock import BLOCK_SCHEMA, json_schema_defs
from .blocks.defined import PARAM_TYPES, Definition
from .init_rules import SHORTHANDS
from .spec import Spec

SCHEMA_URI = "https://json-schema.org/draft/2020-12/schema"


ANY_USE = {"type": "object", "required": ["type"], "description": "a use of a block type defined under 'blocks:'",
           "properties": {"type": {"type": "string", "not": {"enum": sorted(BLOCK_TYPES)}}}}


def _relax(node: Any, defined: dict[str, Definition] | None) -> Any:
    if node == BLOCK_SCHEMA:
        return {"$ref": "#/$defs/AnyBlock"}
    if isinstance(node, list):
        return [_relax(item, defined) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _relax(value, defined) for key, value in node.items()}
    if "discriminator" in node:
        kinds = set(node["discriminator"].get("mapping", {}))
        if not kinds <= set(BLOCK_TYPES):  # an init rule: its string shorthands
            return {"anyOf": [node, {"type": "string", "enum": sorted(SHORTHANDS)}]}
        # a block: also allow the bare-string shorthand, and uses of defined types
        shorthand = {"type": "string", "enum": sorted([*BLOCK_TYPES, *(defined or {})])}
        uses = [{"$ref": f"#/$defs/defined_{name}"} for name in defined] if defined is not None else [ANY_USE]
        return {"anyOf": [node, shorthand, *uses]}
    return node


def _use_schema(name: str, definition: Definition) -> dict[str, Any]:
    """A use of one defined type: its name and typed parameters (with defaults and descriptions)."""
    params = {}
    for param, spec in definition.params.items():
        params[param] = {**TypeAdapter(PARAM_TYPES[spec.type]).json_schema(), "description": spec.description or spec.type}
        if spec.default is not None:
            params[param]["default"] = spec.default
    return {"type": "object", "required": ["type"], "additionalProperties": False, "description": definition.description,
            "properties": {"type": {"const": name}, "name": {"type": "string"}, **params}}


def editor_schema(spec: Spec | None = None) -> dict[str, Any]:
    """The schema of spec files; given a spec, its defined block types are listed with their parameters."""
    defined = dict(spec.blocks) if spec is not None else None
    schema = Spec.model_json_schema()
    schema["$defs"].update(json_schema_defs())
    schema = _relax(schema, defined)
    schema["$defs"]["Definition"]["properties"]["body"] = {  # its values may be "= expressions": not typed here
        "type": ["object", "string", "array"], "description": "a block, or a list of blocks; values may be '= expressions'"}
    for name, definition in (defined or {}).items():
        schema["$defs"][f"defined_{name}"] = _use_schema(name, definition)
    for definition in schema["$defs"].values():
        if "required" in definition:
            definition["required"] = [f for f in definition["required"] if f == "type"]
    schema.pop("required", None)
    schema["properties"]["extends"] = {"type": "string", "description": "path of a parent spec to merge onto"}
    schema["patternProperties"] = {r"\.": {"description": "a dotted-path override, e.g. layers.layer3.repeat"}}
    schema["$schema"] = SCHEMA_URI
    return schema
