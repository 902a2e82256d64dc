"""flatten: (C, H, W) -> (C*H*W,), before the linear layers."""
from __future__ import annotations

from math import prod
from typing import TYPE_CHECKING, Literal

from ...ir.expr import FLATTEN, Expr
from .base import Block, Node, Shape

if TYPE_CHECKING:
    from torch import nn

    from ...ir.memory import MemoryReplay, Tensor


class Flatten(Block):
    type: Literal["flatten"]

    def infer(self, x: Shape, path: str) -> tuple[Shape, int, int]:
        return (prod(x),), 0, 0

    def replay(self, run: "MemoryReplay", node: Node, x: "Tensor") -> "Tensor":
        return run.ref(x)  # a view

    def source(self, node: Node) -> Expr:
        return FLATTEN(start_dim=1, end_dim=-1)

    def build(self, node) -> "nn.Module":
        from torch import nn

        return nn.Flatten(1)
