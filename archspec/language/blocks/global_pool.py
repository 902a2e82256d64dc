"""global_pool: pool each channel to 1x1 (`flatten: true` also drops the 1x1)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from ...ir.expr import FLATTEN, Expr, Seq
from .adaptive_pool import ADAPTIVE_POOL
from .base import Block, Node, Shape

if TYPE_CHECKING:
    from torch import nn

    from ...ir.memory import MemoryReplay, Tensor


class GlobalPool(Block):
    kind = "pooling"
    type: Literal["global_pool"]
    op: Literal["max", "avg"] = "avg"
    flatten: bool = False

    def infer(self, x: Shape, path: str) -> tuple[Shape, int, int]:
        c, _, _ = self.need_image(x, path)
        return ((c,) if self.flatten else (c, 1, 1)), 0, 0

    def hyper(self) -> str:
        return self.op

    def replay(self, run: "MemoryReplay", node: Node, x: "Tensor") -> "Tensor":
        # a mean (or max) to 1x1; the flatten after it is a view
        return run.pool(x, (node.in_shape[0], 1, 1), self.op, reads_input=False)

    def source(self, node: Node) -> Expr:
        pool = ADAPTIVE_POOL[self.op](output_size=1)
        return Seq((("0", pool), ("1", FLATTEN(start_dim=1, end_dim=-1)))) if self.flatten else pool

    def build(self, node) -> "nn.Module":
        from torch import nn

        pool = nn.AdaptiveMaxPool2d(1) if self.op == "max" else nn.AdaptiveAvgPool2d(1)
        return nn.Sequential(pool, nn.Flatten(1)) if self.flatten else pool
