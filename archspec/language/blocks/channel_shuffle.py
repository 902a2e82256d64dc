"""channel_shuffle: interleave the channels of `groups` groups (ShuffleNet, Zhang et al. 2018), so that the next
grouped layer mixes information across groups; torchvision's `channel_shuffle` (view, transpose, copy)."""
from __future__ import annotations

from math import prod
from typing import TYPE_CHECKING, Literal

from ...ir.expr import REQUIRED, Constructor, Expr, backend_class
from .base import Block, Node, PosInt, Shape

if TYPE_CHECKING:
    from torch import nn

    from ...ir.memory import MemoryReplay, Tensor

CHANNEL_SHUFFLE = Constructor("ChannelShuffle", (("groups", REQUIRED),), prelude=backend_class("ChannelShuffle"))


class ChannelShuffle(Block):
    type: Literal["channel_shuffle"]
    groups: PosInt = 2

    def infer(self, x: Shape, path: str) -> tuple[Shape, int, int]:
        c, _, _ = self.need_image(x, path)
        if c % self.groups:
            self.fail(path, f"groups={self.groups} must divide the input's {c} channels")
        return x, 0, 0

    def hyper(self) -> str:
        return f"{self.groups} groups"

    def replay(self, run: "MemoryReplay", node: Node, x: "Tensor") -> "Tensor":
        return run.new(prod(node.out_shape))  # the copy `contiguous` makes; its backward reads nothing

    def output_layout(self, node: Node, nhwc: bool) -> bool:
        return False  # `contiguous` after the transpose

    def source(self, node: Node) -> Expr:
        return CHANNEL_SHUFFLE(groups=self.groups)

    def build(self, node: Node) -> "nn.Module":
        from ...backend.nn import ChannelShuffle as ChannelShuffleModule

        return ChannelShuffleModule(self.groups)
