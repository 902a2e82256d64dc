"""linear: a fully connected layer on a flat (features,) input."""
from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from ...ir.expr import REQUIRED, Constructor, Expr
from .base import Block, InitStd, Node, PosInt, Shape, fmt_shape

if TYPE_CHECKING:
    from torch import nn


LINEAR = Constructor("nn.Linear", (("in_features", REQUIRED), ("out_features", REQUIRED), ("bias", True)),
                     frozenset({"in_features", "out_features"}))


class Linear(Block):
    kind = "fully connected"
    type: Literal["linear"]
    out: PosInt
    bias: bool = True
    init_std: InitStd | None = None  # this layer's std under the truncated-normal init schemes
    scales_with_width: bool = False  # `out` is a hidden width that follows scaling.width, not the classes

    def infer(self, x: Shape, path: str) -> tuple[Shape, int, int]:
        if len(x) != 1:
            self.fail(path, f"expects a flat (features,) input but gets {fmt_shape(x)}; add a flatten before it")
        weights = x[0] * self.out
        return (self.out,), weights + (self.out if self.bias else 0), weights

    def hyper(self) -> str:
        return f"{self.out}"

    def extra_scaled_fields(self) -> dict[str, str]:
        return {"out": "width"} if self.scales_with_width else {}

    def source(self, node: Node) -> Expr:
        return LINEAR(in_features=node.in_shape[0], out_features=self.out, bias=self.bias)

    def build(self, node) -> "nn.Module":
        from torch import nn

        linear = nn.Linear(node.in_shape[0], self.out, self.bias)
        if self.init_std is not None:
            linear.init_std = self.init_std
        return linear
