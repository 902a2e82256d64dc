"""Width, depth and resolution scaling (EfficientNet's compound rule, MobileNet's multipliers).

Which fields scale is declared on the block models: a field typed `Channels` scales with the
width multiplier (rounded by `make_divisible`), a field typed `Repeats` with the depth multiplier
(rounded up). Everything else, such as a linear layer's `out` (the classes), never scales, unless the
block's `extra_scaled_fields()` names it (a linear layer with `scales_with_width: true`, as MobileNetV3's fc1).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Iterator, get_args

from pydantic import BaseModel, ConfigDict, Field

from ..errors import SpecError
from .model import SpecModel


class _Scales:
    """Marker in a field's metadata: this field scales with `dimension` ('width' or 'depth')."""

    def __init__(self, dimension: str) -> None:
        self.dimension = dimension

    def __repr__(self) -> str:
        return f"Scales({self.dimension!r})"


WIDTH, DEPTH = _Scales("width"), _Scales("depth")
MAX_CHANNELS = 1_000_000
Channels = Annotated[int, Field(ge=1, le=MAX_CHANNELS), WIDTH]
Repeats = Annotated[int, Field(ge=1, le=10_000), DEPTH]


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9) -> int:
    """Round to the nearest multiple of `divisor`, never below `min_value` (default: the divisor) and
    never more than (1 - round_limit) below `value` (the "10% rule"); torchvision's `_make_divisible`
    and timm's `make_divisible`."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < round_limit * value:
        rounded += divisor
    return rounded


class Compound(SpecModel):
    """EfficientNet's compound rule: depth alpha^phi, width beta^phi, resolution gamma^phi."""

    model_config = ConfigDict(extra="forbid")

    alpha: Annotated[float, Field(gt=0, le=10)] = 1.2
    beta: Annotated[float, Field(gt=0, le=10)] = 1.1
    gamma: Annotated[float, Field(gt=0, le=10)] = 1.15


class Scaling(SpecModel):
    model_config = ConfigDict(extra="forbid")

    width: Annotated[float, Field(gt=0, le=100)] = 1.0  # channel multiplier
    depth: Annotated[float, Field(gt=0, le=100)] = 1.0  # repeat multiplier, rounded up
    divisor: Annotated[int, Field(ge=1, le=1024)] = 8  # channels are rounded to multiples of this
    round_limit: Annotated[float, Field(ge=0, le=1)] = 0.9  # never round down by more than 10%
    phi: Annotated[float, Field(ge=-10, le=20)] | None = None  # a compound-scaling member (needs `compound`)

    def channels(self, value: int) -> int:
        return value if self.width == 1.0 else make_divisible(value * self.width, self.divisor, None, self.round_limit)

    def repeats(self, value: int) -> int:
        return value if self.depth == 1.0 else int(math.ceil(value * self.depth))


@dataclass(frozen=True)
class ScaledField:
    """One scaled value, for `scale --explain`."""

    path: str
    field: str
    dimension: str
    base: int
    raw: float
    scaled: int


def annotation_parts(*items: Any) -> Iterator[Any]:
    """Everything a field's type is made of, depth first: the types, their `Annotated` metadata (bounds,
    scaling markers, pydantic `Field`s and what these hold), inside unions such as `Channels | None` too.
    Pass a field's `FieldInfo` to include its top-level metadata."""
    for item in items:
        yield item
        yield from annotation_parts(*getattr(item, "__metadata__", ()), *getattr(item, "metadata", ()), *get_args(item))


def upper_bound(model: type[BaseModel], name: str) -> int | float | None:
    """A field's `le` bound, wherever its type declares it (also inside `Channels | None`)."""
    info = model.model_fields[name]
    return next((p.le for p in annotation_parts(*info.metadata, info.annotation) if getattr(p, "le", None) is not None), None)


def scaled_fields(model: BaseModel) -> dict[str, str]:
    """{field name: 'width' | 'depth'} for the fields of `model` that scale."""
    found = dict(_typed_scaled_fields(type(model)))
    if hasattr(model, "extra_scaled_fields"):  # a block's own rule, e.g. a hidden linear layer
        found.update(model.extra_scaled_fields())
    return found


@cache
def _typed_scaled_fields(model: type[BaseModel]) -> dict[str, str]:
    """The fields whose type says that they scale (Channels, Repeats)."""
    found = {}
    for name, info in model.model_fields.items():
        markers = [m for m in annotation_parts(*info.metadata, info.annotation) if isinstance(m, _Scales)]
        if markers:
            found[name] = markers[0].dimension
    return found


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def scale_blocks(value: Any, scaling: Scaling, path: str, record: list[ScaledField]) -> Any:
    """A copy of a block (or list / dict of blocks) with every scaling field scaled; `record` collects
    what changed, for `scale --explain`. The copies are not validated again, so a scaled value past its
    field's bound is a located SpecError here."""
    if isinstance(value, list):
        return [scale_blocks(v, scaling, _join(path, v.name or str(i)) if isinstance(v, BaseModel) else path, record)
                for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: scale_blocks(v, scaling, _join(path, k), record) for k, v in value.items()}
    if not isinstance(value, BaseModel):
        return value
    if getattr(value, "width_refused", "") and scaling.width != 1.0:
        raise SpecError(f"scaling.width x{scaling.width:g} does not apply here: {value.width_refused}",
                        getattr(value, "_loc", None), path, getattr(value, "type", ""))
    update: dict[str, Any] = {}
    for name, dimension in scaled_fields(value).items():
        base = getattr(value, name)
        if base is not None:
            factor = scaling.width if dimension == "width" else scaling.depth
            update[name] = scaling.channels(base) if dimension == "width" else scaling.repeats(base)
            if hasattr(value, "scaled_value"):  # a block's own rule, e.g. a conv that never narrows
                update[name] = value.scaled_value(name, base, update[name])
            record.append(ScaledField(path, name, dimension, base, base * factor, update[name]))
            bound = upper_bound(type(value), name)
            if bound is not None and update[name] > bound:
                raise SpecError(f"scaling ({dimension} x{factor:g}) makes '{name}' {update[name]:,}, over its limit of "
                                f"{bound:,}", getattr(value, "_loc", None), path, getattr(value, "type", ""))
    for name in type(value).model_fields:
        child = getattr(value, name)
        if name not in update and isinstance(child, (BaseModel, list, dict)):
            update[name] = scale_blocks(child, scaling, _join(path, name) if isinstance(child, BaseModel) else path, record)
    copy = value.model_copy(update=update)
    if "_loc" in type(value).__private_attributes__:
        copy._loc = value._loc
    return copy
