"""layer_scale: a learnable multiplier per channel, `x * gamma` (CaiT, Touvron et al. 2021; ConvNeXt scales its
residual branches so, with gamma initialised to 1e-6)."""
from __future__ import annotations

from math import prod
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from ...ir.expr import REQUIRED, Constructor, Expr, backend_class
from .base import Block, Node, Shape

if TYPE_CHECKING:
    from torch import nn

    from ...ir.memory import MemoryReplay, Tensor

LAYER_SCALE = Constructor("LayerScale", (("channels", REQUIRED), ("init", 1e-6), ("spatial", True)),
                          frozenset({"channels"}), backend_class("LayerScale"))


class LayerScale(Block):
    type: Literal["layer_scale"]
    init: Annotated[float, Field(ge=-1e6, le=1e6)] = 1e-6  # gamma's initial value

    def infer(self, x: Shape, path: str) -> tuple[Shape, int, int]:
        if len(x) not in (1, 3):
            self.fail(path, f"scales a (channels, height, width) map or a (features,) vector, not {x}")
        return x, x[0], 0

    def hyper(self) -> str:
        return f"init {self.init:g}"

    def replay(self, run: "MemoryReplay", node: Node, x: "Tensor") -> "Tensor":
        y = run.new(prod(node.out_shape))
        run.keep(x)  # gamma's gradient reads the input
        return y

    def fresh_output(self, node: Node) -> bool:
        return True

    def source(self, node: Node) -> Expr:
        return LAYER_SCALE(channels=node.in_shape[0], init=self.init, spatial=len(node.in_shape) == 3)

    def build(self, node: Node) -> "nn.Module":
        from ...backend.nn import LayerScale as LayerScaleModule

        return LayerScaleModule(node.in_shape[0], self.init, spatial=len(node.in_shape) == 3)
