"""The pydantic base of every part of a spec (the spec, its sections, the blocks).

Unknown keys are errors, and so are the coercions of pydantic's lax mode that no spec author means:
`true` as the number 1 (`size: true`, `out: [8, false]`) and bytes as text or numbers (YAML's `!!binary`,
refused by the loader already, or bytes passed from Python). Lax mode's other conversions stay: `8.0`
for an integer field, `1` for a float field.
"""
from __future__ import annotations

from functools import cache
from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from .source import LocDict


class SpecModel(BaseModel):
    # A model's schema is built when it first validates: a spec pays only for the block types it uses.
    model_config = ConfigDict(extra="forbid", defer_build=True)

    @model_validator(mode="before")
    @classmethod
    def _no_lax_coercion(cls, data: Any) -> Any:
        """Refuse true/false for a number and bytes anywhere, located at the field (a field validator
        cannot do it: the blocks' `type` is a discriminator, which takes no validators). Only what a spec
        says is checked (a raw tree, overrides included), not the blocks a macro block builds in Python."""
        if not isinstance(data, LocDict):
            return data
        numbers = _number_fields(cls)
        for field, value in data.items():
            for item in value if isinstance(value, (list, tuple)) else (value,):
                if isinstance(item, (bytes, bytearray)):
                    message = "Input should be text or a number, not bytes"
                elif isinstance(item, bool) and field in numbers:
                    message = "Input should be a number, not true or false"
                else:
                    continue
                error = PydanticCustomError("strict_type", message)
                raise ValidationError.from_exception_data(cls.__name__, [InitErrorDetails(type=error, loc=(field,), input=value)])
        return data


@cache
def _number_fields(model: type[BaseModel]) -> frozenset[str]:
    """The fields that take numbers but not true/false (which lax mode would read as 1 and 0)."""
    found = set()
    for name, info in model.model_fields.items():
        parts = set(_types(info.annotation))
        if parts & {int, float} and not parts & {bool, Any}:
            found.add(name)
    return frozenset(found)


def _types(annotation: Any) -> list[Any]:
    """The types a field's annotation is made of, through unions, tuples and Annotated."""
    return [annotation, *(part for arg in get_args(annotation) for part in _types(arg))]
