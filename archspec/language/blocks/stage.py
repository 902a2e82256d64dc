"""stage: one block repeated N times. Only the first repetition applies the block's stride;
the later ones take the first one's output, so channels change once, at the start."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import model_validator

from ..scaling import Repeats
from ..source import LocDict
from .base import Block, build_children, Node, Shape, chain, composite

if TYPE_CHECKING:
    from torch import nn

    from . import OneBlock  # the union of every block type, built in blocks/__init__.py


class Stage(Block):
    kind = "stage / group"
    type: Literal["stage"]
    repeat: Repeats = 1
    block: OneBlock

    @model_validator(mode="before")
    @classmethod
    def _locate_shorthand(cls, data: Any) -> Any:
        """`block: conv` is `block: {type: conv}`, located where it is written (for the block's later errors)."""
        if isinstance(data, LocDict) and isinstance(data.get("block"), str):
            block = LocDict({"type": data["block"]}, loc=data.loc_of("block"))
            data = LocDict({**data, "block": block}, loc=data.loc, key_locs=data.key_locs)
        return data

    def repetitions(self) -> list[tuple[str, Block]]:
        later = self.block.later_repetition()
        return [(str(i), self.block if i == 0 else later) for i in range(self.repeat)]

    def analyse(self, x: Shape, name: str, path: str) -> Node:
        children = chain(self.repetitions(), x, path)
        return composite(self, name, path, x, children, children[-1].out_shape)

    def hyper(self) -> str:
        return f"{self.block.type} x{self.repeat}"

    def build(self, node: Node) -> "nn.Module":
        return build_children(node)
