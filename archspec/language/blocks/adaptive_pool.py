"""adaptive_pool: pool to a fixed output size, whatever the input size."""
from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from ...ir.expr import REQUIRED, Constructor, Expr, square
from .base import Block, Node, Pair, Shape, pair

if TYPE_CHECKING:
    from torch import nn

    from ...ir.memory import MemoryReplay, Tensor


ADAPTIVE_POOL = {op: Constructor(f"nn.Adaptive{op.capitalize()}Pool2d", (("output_size", REQUIRED),)) for op in ("max", "avg")}


class AdaptivePool(Block):
    kind = "pooling"
    type: Literal["adaptive_pool"]
    op: Literal["max", "avg"] = "avg"
    output: Pair

    def infer(self, x: Shape, path: str) -> tuple[Shape, int, int]:
        c, _, _ = self.need_image(x, path)
        return (c, *pair(self.output)), 0, 0

    def hyper(self) -> str:
        oh, ow = pair(self.output)
        return f"{self.op} -> {oh}x{ow}"

    def replay(self, run: "MemoryReplay", node: Node, x: "Tensor") -> "Tensor":
        # an average to 1x1 is a mean, whose backward needs only the input's shape
        return run.pool(x, node.out_shape, self.op, reads_input=pair(self.output) != (1, 1))

    def source(self, node: Node) -> Expr:
        return ADAPTIVE_POOL[self.op](output_size=square(pair(self.output)))

    def build(self, node) -> "nn.Module":
        from torch import nn

        cls = nn.AdaptiveMaxPool2d if self.op == "max" else nn.AdaptiveAvgPool2d
        return cls(pair(self.output))
