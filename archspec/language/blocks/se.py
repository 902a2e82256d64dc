"""se: squeeze-and-excitation (Hu et al. 2018): global pool, 1x1 reduce, act, 1x1 expand, gate, scale.

The squeeze width is `squeeze` if given, else `make_divisible(ratio * C, divisor, round_limit)`,
where C is the SE's own channels or, inside an mbconv with `ratio_of: input`, the block's input
channels (EfficientNet). SENet: ratio 1/16, divisor 8, round_limit 0 (timm); MobileNetV3: ratio
1/4 of the expanded channels, divisor 8 (torchvision); EfficientNet: ratio 1/4 of the input, divisor 1.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from ...ir.activations import ACTIVATION_FUNCTION, Activation
from ...ir.expr import REQUIRED, Constructor, Expr, backend_class
from ..scaling import Channels, make_divisible
from .base import Block, Node, Shape

if TYPE_CHECKING:
    from torch import nn

    from ...ir.memory import MemoryReplay, Tensor


SQUEEZE_EXCITE = Constructor("SqueezeExcite", (("channels", REQUIRED), ("squeeze", REQUIRED), ("act", "relu"),
                                                ("gate", "sigmoid")),
                             frozenset({"channels", "squeeze"}), backend_class("SqueezeExcite", (ACTIVATION_FUNCTION,)))


class SE(Block):
    kind = "squeeze-excitation"
    type: Literal["se"] = "se"
    squeeze: Channels | None = None
    ratio: Annotated[float, Field(gt=0, le=1)] = 0.25
    ratio_of: Literal["own", "input"] = "own"
    divisor: Annotated[int, Field(ge=1, le=1024)] = 1
    round_limit: Annotated[float, Field(ge=0, le=1)] = 0.0
    activation: Activation = "relu"
    gate: Activation = "sigmoid"

    def squeeze_width(self, channels: int, block_input: int | None = None) -> int:
        if self.squeeze is not None:
            return self.squeeze
        base = block_input if self.ratio_of == "input" and block_input is not None else channels
        if self.divisor == 1 and self.round_limit == 0.0:
            return max(1, math.floor(self.ratio * base + 1e-9))  # torchvision EfficientNet: max(1, C // 4)
        return make_divisible(self.ratio * base, self.divisor, None, self.round_limit)

    def infer(self, x: Shape, path: str) -> tuple[Shape, int, int]:
        c, _, _ = self.need_image(x, path)
        s = self.squeeze_width(c)
        return x, 2 * c * s + s + c, 2 * c * s

    def hyper(self) -> str:
        return f"squeeze {self.squeeze}" if self.squeeze else f"ratio {self.ratio:g}"

    def replay(self, run: "MemoryReplay", node: Node, x: "Tensor") -> "Tensor":
        # x * gate(fc2(act(fc1(avgpool(x)))))
        c = node.in_shape[0]
        s = self.squeeze_width(c)
        pooled = run.new(c)
        squeezed = run.new(s)
        run.keep(pooled)
        run.drop(pooled)
        squeezed = run.activation(self.activation, squeezed, s, inplace=True)
        expanded = run.new(c)
        run.keep(squeezed)
        run.drop(squeezed)
        gate = run.activation(self.gate, expanded, c, inplace=False)
        y = run.new(math.prod(node.out_shape))
        run.keep(x, gate)
        run.drop(gate)
        return y

    def fresh_output(self, node: Node) -> bool:
        return True

    def source(self, node: Node) -> Expr:
        c = node.in_shape[0]
        return SQUEEZE_EXCITE(channels=c, squeeze=self.squeeze_width(c),
                              act=None if self.activation == "none" else self.activation,
                              gate=None if self.gate == "none" else self.gate)

    def build(self, node) -> "nn.Module":
        from ...backend.nn import SqueezeExcite

        c = node.in_shape[0]
        return SqueezeExcite(c, self.squeeze_width(c), self.activation, self.gate)
