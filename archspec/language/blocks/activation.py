"""Activations as layers of their own: `{type: relu}` (or just `relu` in a layer list)."""
from __future__ import annotations

from math import prod
from typing import TYPE_CHECKING

from ...ir.activations import ActivationName, activation_expr
from ...ir.expr import Expr
from .base import Block, Node, Shape

if TYPE_CHECKING:
    from torch import nn

    from ...ir.memory import MemoryReplay, Tensor


class ActivationLayer(Block):
    type: ActivationName

    def infer(self, x: Shape, path: str) -> tuple[Shape, int, int]:
        return x, 0, 0

    def replay(self, run: "MemoryReplay", node: Node, x: "Tensor") -> "Tensor":
        return run.activation(self.type, run.ref(x), prod(node.out_shape), inplace=False)

    def source(self, node: Node) -> Expr:
        return activation_expr(self.type)

    def build(self, node) -> "nn.Module":
        from ...backend.nn import activation

        # Not in place: a standalone activation may read a tensor a skip connection also reads.
        return activation(self.type)
