"""batchnorm: batch normalisation on (C, H, W) maps or (features,) vectors."""
from __future__ import annotations

from math import prod
from typing import TYPE_CHECKING, Literal

from ...ir.expr import REQUIRED, Constructor, Expr
from .base import Block, BnEps, BnMomentum, Node, Shape

if TYPE_CHECKING:
    from torch import nn

    from ...ir.memory import MemoryReplay, Tensor


BATCH_NORM = {dims: Constructor(f"nn.BatchNorm{dims}d", (("num_features", REQUIRED), ("eps", 1e-5), ("momentum", 0.1)),
                              frozenset({"num_features"})) for dims in (1, 2)}


class BatchNorm(Block):
    kind = "normalisation"
    type: Literal["batchnorm"]
    eps: BnEps = 1e-5
    momentum: BnMomentum = 0.1

    def infer(self, x: Shape, path: str) -> tuple[Shape, int, int]:
        return x, 2 * x[0], 0

    def replay(self, run: "MemoryReplay", node: Node, x: "Tensor") -> "Tensor":
        return run.batchnorm(x, prod(node.out_shape), node.in_shape[0])

    def fresh_output(self, node: Node) -> bool:
        return len(node.in_shape) == 3  # BatchNorm2d (nn.py checks the 2-D class)

    def buffers(self, node: Node) -> tuple[int, int]:
        return 2 * node.in_shape[0], 1

    def source(self, node: Node) -> Expr:
        return BATCH_NORM[2 if len(node.in_shape) == 3 else 1](num_features=node.in_shape[0], eps=self.eps,
                                                               momentum=self.momentum)

    def build(self, node) -> "nn.Module":
        from torch import nn

        cls = nn.BatchNorm2d if len(node.in_shape) == 3 else nn.BatchNorm1d
        return cls(node.in_shape[0], self.eps, self.momentum)
