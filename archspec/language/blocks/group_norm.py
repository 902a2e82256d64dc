"""group_norm: group normalisation (Wu & He 2018), torch's nn.GroupNorm: the channels in `groups` groups, each
normalised over its channels and positions, then a learnable scale and shift per channel."""
from __future__ import annotations

from math import prod
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from ...ir.expr import REQUIRED, Constructor, Expr
from .base import Block, Node, PosInt, Shape, fmt_shape

if TYPE_CHECKING:
    from torch import nn

    from ...ir.memory import MemoryReplay, Tensor

GROUP_NORM = Constructor("nn.GroupNorm", (("num_groups", REQUIRED), ("num_channels", REQUIRED), ("eps", 1e-5)),
                         frozenset({"num_channels"}))


class GroupNorm(Block):
    kind = "normalisation"
    type: Literal["group_norm"]
    groups: PosInt
    eps: Annotated[float, Field(gt=0, lt=1)] = 1e-5

    def infer(self, x: Shape, path: str) -> tuple[Shape, int, int]:
        if x[0] % self.groups:
            self.fail(path, f"groups={self.groups} must divide the input's {x[0]} channels")
        if x[0] // self.groups * prod(x[1:]) == 1:
            self.fail(path, f"each of the {self.groups} groups holds one value of the {fmt_shape(x)} input, which "
                            "normalising turns into the bias alone (torch refuses it at batch 1); use fewer groups")
        return x, 2 * x[0], 0

    def hyper(self) -> str:
        return f"{self.groups} groups"

    def replay(self, run: "MemoryReplay", node: Node, x: "Tensor") -> "Tensor":
        y = run.new(prod(node.out_shape))
        mean, rstd = run.new(self.groups), run.new(self.groups)  # per sample and group, kept for backward
        run.keep(x, mean, rstd)
        run.drop(mean)
        run.drop(rstd)
        return y

    def fresh_output(self, node: Node) -> bool:
        return True

    def source(self, node: Node) -> Expr:
        return GROUP_NORM(num_groups=self.groups, num_channels=node.in_shape[0], eps=self.eps)

    def build(self, node: Node) -> "nn.Module":
        from torch import nn

        return nn.GroupNorm(self.groups, node.in_shape[0], self.eps)
