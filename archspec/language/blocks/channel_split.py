"""channel_split: one of `parts` equal parts of the input's channels, a view (ShuffleNetV2's channel split,
`x.chunk(2, dim=1)`: an inception whose branches start with part 0 and part 1 splits, works and concatenates)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from ...ir.expr import REQUIRED, Constructor, Expr, backend_class
from .base import Block, NonNegInt, Node, PosInt, Shape

if TYPE_CHECKING:
    from torch import nn

    from ...ir.memory import MemoryReplay, Tensor

CHANNEL_SPLIT = Constructor("ChannelSplit", (("parts", REQUIRED), ("take", REQUIRED)),
                            prelude=backend_class("ChannelSplit"))


class ChannelSplit(Block):
    type: Literal["channel_split"]
    parts: PosInt = 2
    take: NonNegInt  # which part, from 0

    def infer(self, x: Shape, path: str) -> tuple[Shape, int, int]:
        c, h, w = self.need_image(x, path)
        if c % self.parts:
            self.fail(path, f"cannot cut the input's {c} channels into {self.parts} equal parts")
        if self.take >= self.parts:
            self.fail(path, f"'take' is {self.take}, but the parts are numbered 0 to {self.parts - 1}")
        return (c // self.parts, h, w), 0, 0

    def hyper(self) -> str:
        return f"part {self.take} of {self.parts}"

    def replay(self, run: "MemoryReplay", node: Node, x: "Tensor") -> "Tensor":
        return run.ref(x)  # a view

    def source(self, node: Node) -> Expr:
        return CHANNEL_SPLIT(parts=self.parts, take=self.take)

    def build(self, node: Node) -> "nn.Module":
        from ...backend.nn import ChannelSplit as ChannelSplitModule

        return ChannelSplitModule(self.parts, self.take)
