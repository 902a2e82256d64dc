"""The JSON Schema of spec files, as an editor sees them: before `extends`, defaults and shorthand.

pydantic's schema describes a resolved spec. A file on disk may leave required fields to its
parent or to `defaults`, write a block as a bare type name (`- relu`), and use dotted override
keys, so the editor schema relaxes exactly those points and keeps every field, type and bound.
"""
from __future__ import annotations

from typing import Any

from .blocks import BLOCK_TYPES
from .init_rules import SHORTHANDS
from .spec import Spec

SCHEMA_URI = "https://json-schema.org/draft/2020-12/schema"


def _relax(node: Any) -> Any:
    if isinstance(node, list):
        return [_relax(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _relax(value) for key, value in node.items()}
    if "discriminator" in node:  # a block or an init rule: also allow the bare-string shorthand
        kinds = set(node["discriminator"].get("mapping", {}))
        names = sorted(BLOCK_TYPES) if kinds <= set(BLOCK_TYPES) else sorted(SHORTHANDS)
        return {"anyOf": [node, {"type": "string", "enum": names}]}
    return node


def editor_schema() -> dict[str, Any]:
    schema = _relax(Spec.model_json_schema())
    for definition in schema["$defs"].values():
        if "required" in definition:
            definition["required"] = [f for f in definition["required"] if f == "type"]
    schema.pop("required", None)
    schema["properties"]["extends"] = {"type": "string", "description": "path of a parent spec to merge onto"}
    schema["patternProperties"] = {r"\.": {"description": "a dotted-path override, e.g. layers.layer3.repeat"}}
    schema["$schema"] = SCHEMA_URI
    return schema
