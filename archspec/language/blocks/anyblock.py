"""The type of a field that holds blocks (`layers`, a residual's `body`, a stage's `block`, ...).

A block is validated by the model of its `type`, looked up when it is validated: a pydantic union of every
block model would build all their schemas whenever any field that holds blocks is built (half of a fresh
`validate`'s time), where this builds only the schemas of the types a spec uses, on first use. Errors keep
the shape of a discriminated union's (`union_tag_invalid`, `union_tag_not_found`, `model_attributes_type`),
located by their path from the spec's root.
"""
from __future__ import annotations

from typing import Annotated, Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler, SerializationInfo, ValidationInfo
from pydantic.fields import FieldInfo
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, PydanticKnownError, core_schema

from ...errors import SpecError
from ..scaling import annotation_parts
from ..source import MAX_DEFAULT_VALUES, LocDict, LocList
from .base import Block
from .registry import BLOCK_TYPES


def _with_defaults(item: Any, info: ValidationInfo) -> Any:
    """Spec-level defaults for this block's type, under the block's own fields.

    Every block of the type gets its own copy of the defaults to validate, so the nodes added are
    counted against the context's `budget` (defaults for 10,000 blocks must not multiply validation)."""
    context = info.context or {}
    defaults = context.get("defaults") or {}
    kind = item.get("type") if isinstance(item, LocDict) else None
    if not isinstance(kind, str) or kind not in defaults or not isinstance(defaults[kind], LocDict):
        return item
    base = defaults[kind]
    budget = context.get("budget")
    if budget is not None:
        budget[0] -= context.get("sizes", {}).get(kind, len(base))
        if budget[0] < 0:
            raise SpecError(f"with 'defaults' applied to every block, the spec grows past {MAX_DEFAULT_VALUES:,} values; "
                            f"make the defaults for '{kind}' smaller or use fewer blocks", item.loc, "", kind)
    return LocDict({**base, **item}, loc=item.loc, key_locs={**base.key_locs, **item.key_locs})


def _prepare(item: Any, loc: Any) -> Any:
    """A bare string is shorthand for `{type: <string>}`, located where it is written."""
    return LocDict({"type": item}, loc=loc) if isinstance(item, str) else item


def _prepare_list(items: Any) -> Any:
    if not isinstance(items, LocList):
        return items
    return LocList([_prepare(item, items.loc_of(i)) for i, item in enumerate(items)], loc=items.loc, item_locs=items.item_locs)


def validate_block(item: Any, info: ValidationInfo) -> Block:
    """One block: its type's defaults apply, then the model of a type the spec defines (`blocks:`, the context's
    library) or of a built-in type validates it."""
    if isinstance(item, Block):
        return item
    item = _prepare(item, None)
    if not isinstance(item, dict):
        raise PydanticKnownError("model_attributes_type")
    item = _with_defaults(item, info)
    kind = item.get("type")
    library = (info.context or {}).get("library")
    if library is not None and isinstance(kind, str) and kind in library.definitions:
        return library.use(item)
    if "type" not in item:
        raise PydanticCustomError("union_tag_not_found", "Unable to extract tag using discriminator {discriminator}",
                                  {"discriminator": "'type'"})
    if not isinstance(kind, str) or kind not in BLOCK_TYPES:
        expected = ", ".join(f"'{name}'" for name in BLOCK_TYPES)
        raise PydanticCustomError("union_tag_invalid", "Input tag {tag} found using {discriminator} does not match any "
                                  "of the expected tags: {expected_tags}",
                                  {"discriminator": "'type'", "tag": str(kind), "expected_tags": expected})
    return locate(BLOCK_TYPES[kind].model_validate(item, context=info.context), item)


def locate(block: Block, raw: Any) -> Block:
    """`block`, validated from `raw`, located where the spec writes it."""
    if isinstance(raw, LocDict):
        block._loc = raw.loc
    return block


def _dump(item: Any, handler: Any, info: SerializationInfo) -> Any:
    return item.dump(info.mode) if hasattr(item, "dump") else handler(item)  # a use of a defined block


# A block in a model's JSON Schema, for schema.py to replace by a reference to `AnyBlock` (pydantic refuses a
# reference to a definition it does not make itself).
BLOCK_SCHEMA = {"x-archspec": "a block"}


def json_schema_defs() -> dict[str, Any]:
    """`$defs` for a JSON Schema of specs: every block model, and `AnyBlock`, their union by `type`."""
    defs: dict[str, Any] = {}
    for cls in dict.fromkeys(BLOCK_TYPES.values()):  # a model of several types (the activations) once
        schema = cls.model_json_schema(ref_template="#/$defs/{model}")
        defs.update(schema.pop("$defs", {}))
        defs[cls.__name__] = schema
    mapping = {name: f"#/$defs/{cls.__name__}" for name, cls in BLOCK_TYPES.items()}
    defs["AnyBlock"] = {"oneOf": [{"$ref": ref} for ref in dict.fromkeys(mapping.values())],
                        "discriminator": {"propertyName": "type", "mapping": mapping}}
    return defs


class _Blocks:
    """The schema of a field that holds a list of blocks (`many`) or one block."""

    def __init__(self, many: bool) -> None:
        self.many = many

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        one = core_schema.with_info_plain_validator_function(
            validate_block, serialization=core_schema.wrap_serializer_function_ser_schema(_dump, info_arg=True))
        if not self.many:
            return one
        return core_schema.no_info_before_validator_function(_prepare_list, core_schema.list_schema(one))

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return {"type": "array", "items": BLOCK_SCHEMA} if self.many else BLOCK_SCHEMA


def holds_blocks(field: FieldInfo) -> bool:
    """Whether a model field holds blocks (anywhere in its type: `dict[Name, BlockList]` too)."""
    return any(isinstance(part, _Blocks) for part in annotation_parts(*field.metadata, field.annotation))


BlockList = Annotated[list[Block], _Blocks(many=True)]
OneBlock = Annotated[Block, _Blocks(many=False)]
