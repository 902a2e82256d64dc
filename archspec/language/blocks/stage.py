"""stage: one block repeated N times. By default only the first repetition applies the block's stride;
the later ones take the first one's output, so channels change once, at the start.

Irregular stages (RegNet, ResNet-D, EfficientNetV2 as their tables say): `first` sets fields of the
first repetition, `each` gives a field one value per repetition; both replace the block's value
(`first` wins over `each`), are validated per repetition and are not scaled.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import PrivateAttr, ValidationError, model_validator

from ...errors import Loc, SpecError, did_you_mean
from ..scaling import Repeats
from ..source import LocDict
from .anyblock import OneBlock
from .base import Block, Node, Shape, chain, composite, validation_message


class Stage(Block):
    kind = "stage / group"
    type: Literal["stage"]
    repeat: Repeats = 1
    block: OneBlock
    first: dict[str, Any] = {}  # fields of the first repetition that differ from `block`
    each: dict[str, list[Any]] = {}  # field -> one value per repetition
    _field_locs: dict[tuple[str, str], Loc | None] = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _locate_shorthand(cls, data: Any) -> Any:
        """`block: conv` is `block: {type: conv}`, located where it is written (for the block's later errors)."""
        if isinstance(data, LocDict) and isinstance(data.get("block"), str):
            block = LocDict({"type": data["block"]}, loc=data.loc_of("block"))
            data = LocDict({**data, "block": block}, loc=data.loc, key_locs=data.key_locs)
        return data

    @model_validator(mode="wrap")
    @classmethod
    def _remember_field_locs(cls, data: Any, handler: Any) -> "Stage":
        stage = handler(data)
        if not isinstance(data, dict):  # an instance validated again (e.g. in a sequence): already done
            return stage
        for section in ("first", "each"):
            given = data.get(section) if isinstance(data, LocDict) else None
            for field in stage.__dict__[section]:
                stage._field_locs[section, field] = given.loc_of(field) if isinstance(given, LocDict) else stage._loc
        stage._check_fields()
        return stage

    def _check_fields(self) -> None:
        known = self.block.settable_fields()
        for (section, field), loc in self._field_locs.items():
            if field in ("type", "name"):
                raise SpecError(f"'{section}' cannot change the block's {field} (repetitions are named 0, 1, ...; "
                                "write a different block as a layer of its own)", loc, self.name or "", self.type)
            if field not in known:
                raise SpecError(f"'{section}.{field}' is not a field of {self.block.type}{did_you_mean(field, known)}",
                                loc, self.name or "", self.type)

    def repetitions(self, path: str) -> list[tuple[str, Block]]:
        if not self.first and not self.each:
            later = self.block.later_repetition()
            return [(str(i), self.block if i == 0 else later) for i in range(self.repeat)]
        for field, values in self.each.items():
            if len(values) != self.repeat:
                raise SpecError(f"'each.{field}' has {len(values)} values but the stage repeats {self.repeat} times "
                                "(depth scaling changes the count)", self._field_locs.get(("each", field)),
                                path, self.type)
        later = self.block.later_repetition()
        return [(str(i), self._repetition(i, path, later if i else self.block,
                                          {**{f: v[i] for f, v in self.each.items()}, **(self.first if i == 0 else {})}))
                for i in range(self.repeat)]

    def _repetition(self, i: int, path: str, base: Block, fields: dict[str, Any]) -> Block:
        try:
            block = base.with_fields(fields)
        except ValidationError as exc:
            field = str(exc.errors()[0]["loc"][0]) if exc.errors()[0]["loc"] else ""
            section = "first" if i == 0 and field in self.first else "each"
            raise SpecError(f"repetition {i}: {validation_message(exc, self.block.type)}", self._field_locs.get((section, field), self._loc),
                            path, self.type) from None
        return block.located(self.block._loc)

    def analyse(self, x: Shape, name: str, path: str) -> Node:
        children = chain(self.repetitions(path), x, path)
        return composite(self, name, path, x, children, children[-1].out_shape)

    def hyper(self) -> str:
        return f"{self.block.type} x{self.repeat}"
