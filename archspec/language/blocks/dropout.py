"""dropout: zero elements with probability `p` in training (identity in eval)."""
from __future__ import annotations

from math import prod
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from ...ir.expr import Constructor, Expr
from .base import Block, Node, Shape

if TYPE_CHECKING:
    from torch import nn

    from ...ir.memory import MemoryReplay, Tensor


DROPOUT = Constructor("nn.Dropout", (("p", 0.5),))


class Dropout(Block):
    type: Literal["dropout"]
    p: Annotated[float, Field(ge=0, lt=1)] = 0.5

    def infer(self, x: Shape, path: str) -> tuple[Shape, int, int]:
        return x, 0, 0

    def hyper(self) -> str:
        return f"p={self.p}"

    def replay(self, run: "MemoryReplay", node: Node, x: "Tensor") -> "Tensor":
        if not run.training or self.p == 0:
            return run.ref(x)  # identity in eval (and with p=0)
        n = prod(node.out_shape)
        noise = run.new(n)  # input * (bernoulli mask / (1 - p)); autograd keeps the mask
        y = run.new(n)
        run.keep(noise)
        run.drop(noise)
        return y

    def source(self, node: Node) -> Expr:
        return DROPOUT(p=self.p)

    def build(self, node) -> "nn.Module":
        from torch import nn

        return nn.Dropout(self.p)
