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


class SpecModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_lax_coercion(cls, data: Any) -> Any:
        """Refuse true/false for a number and bytes anywhere, located at the field (a field validator
        cannot do it: the blocks' `type` is a discriminator, which takes no validators)."""
        if not isinstance(data, dict):
            return data
        errors = [InitErrorDetails(type=_error(cls, field, item), loc=(field,), input=value)
                  for field, value in data.items() if field in cls.model_fields
                  for item in (value if isinstance(value, (list, tuple)) else (value,)) if _error(cls, field, item)]
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors[:1])
        return data


def _error(model: type[BaseModel], field: str, item: Any) -> PydanticCustomError | None:
    if isinstance(item, (bytes, bytearray)):
        return PydanticCustomError("bytes_type", "Input should be text or a number, not bytes")
    if isinstance(item, bool) and _number_not_bool(model, field):
        return PydanticCustomError("bool_as_number", "Input should be a number, not true or false")
    return None


@cache
def _number_not_bool(model: type[BaseModel], field: str) -> bool:
    """Whether a field takes numbers but not true/false (which lax mode would read as 1 and 0)."""
    parts = set(_types(model.model_fields[field].annotation))
    return bool(parts & {int, float}) and not parts & {bool, Any}


def _types(annotation: Any) -> list[Any]:
    """The types a field's annotation is made of, through unions, tuples and Annotated."""
    return [annotation, *(part for arg in get_args(annotation) for part in _types(arg))]
