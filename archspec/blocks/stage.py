"""stage: one block repeated N times. Only the first repetition applies the block's stride;
the later ones take the first one's output, so channels change once, at the start."""
from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from ..scaling import Repeats
from .base import Block, build_children, Node, Shape, chain, composite

if TYPE_CHECKING:
    from torch import nn


class Stage(Block):
    kind = "stage / group"
    type: Literal["stage"]
    repeat: Repeats = 1
    block: OneBlock

    def repetitions(self) -> list[tuple[str, Block]]:
        later = self.block.model_copy(update={"stride": 1}) if "stride" in type(self.block).model_fields else self.block
        later._loc = self.block._loc
        return [(str(i), self.block if i == 0 else later) for i in range(self.repeat)]

    def analyse(self, x: Shape, name: str, path: str) -> Node:
        children = chain(self.repetitions(), x, path)
        return composite(self, name, path, x, children, children[-1].out_shape)

    def hyper(self) -> str:
        return f"{self.block.type} x{self.repeat}"

    def build(self, node: Node) -> "nn.Module":
        return build_children(node)
