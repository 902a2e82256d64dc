"""lrn: local response normalisation across channels (AlexNet), with torch's formula.

torch divides `alpha` by `size`; the AlexNet paper's alpha multiplies the plain sum,
so the paper's alpha=1e-4 with size 5 is alpha=5e-4 here.
"""
from __future__ import annotations

from math import prod
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from ...ir.expr import REQUIRED, Constructor, Expr
from .base import Block, Node, PosInt, Shape

if TYPE_CHECKING:
    from torch import nn

    from ...ir.memory import MemoryReplay, Tensor


LOCAL_RESPONSE_NORM = Constructor("nn.LocalResponseNorm", (("size", REQUIRED), ("alpha", 1e-4), ("beta", 0.75), ("k", 1.0)))


class LRN(Block):
    kind = "normalisation"
    type: Literal["lrn"]
    size: PosInt = 5
    alpha: Annotated[float, Field(ge=0)] = 1e-4
    beta: Annotated[float, Field(ge=0)] = 0.75
    k: Annotated[float, Field(ge=0)] = 1.0

    def infer(self, x: Shape, path: str) -> tuple[Shape, int, int]:
        self.need_image(x, path)
        return x, 0, 0

    def hyper(self) -> str:
        return f"size {self.size}"

    def replay(self, run: "MemoryReplay", node: Node, x: "Tensor") -> "Tensor":
        # torch.nn.functional.local_response_norm on (B, C, H, W), step by step
        c, h, w = node.in_shape
        n = prod(node.in_shape)
        squares = run.new(n)
        run.keep(x)
        padded = run.new((c + self.size - 1) * h * w)
        run.drop(squares)
        pooled = run.new(n)
        run.keep(padded)
        run.drop(padded)
        scaled = run.new(n)
        shifted = run.new(n)
        run.drop(scaled)
        div = run.new(n)
        run.keep(shifted)  # pow keeps its base
        run.drop(shifted)
        run.drop(pooled)
        y = run.new(n)
        run.keep(x, div)
        run.drop(div)
        return y

    def source(self, node: Node) -> Expr:
        return LOCAL_RESPONSE_NORM(size=self.size, alpha=self.alpha, beta=self.beta, k=self.k)

    def build(self, node) -> "nn.Module":
        from torch import nn

        return nn.LocalResponseNorm(self.size, self.alpha, self.beta, self.k)
