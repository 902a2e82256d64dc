"""linear: a fully connected layer on a flat (features,) input, or (`over: channels`) on the channels of a
(C, H, W) map at every position, as ConvNeXt's pointwise layers (nn.Linear's weights, on the channels-last view)."""
from __future__ import annotations

from math import prod
from typing import TYPE_CHECKING, Literal

from ...ir.expr import REQUIRED, Constructor, Expr, backend_class
from .base import Block, InitStd, Node, PosInt, Shape, fmt_shape

if TYPE_CHECKING:
    from torch import nn

    from ...ir.memory import MemoryReplay, Tensor


_PARAMS = (("in_features", REQUIRED), ("out_features", REQUIRED), ("bias", True))
LINEAR = Constructor("nn.Linear", _PARAMS, frozenset({"in_features", "out_features"}))
CHANNEL_LINEAR = Constructor("ChannelLinear", _PARAMS, frozenset({"in_features", "out_features"}),
                             backend_class("ChannelLinear"))


class Linear(Block):
    kind = "fully connected"
    type: Literal["linear"]
    out: PosInt
    bias: bool = True
    init_std: InitStd | None = None  # this layer's std under the truncated-normal init schemes
    scales_with_width: bool = False  # `out` is a hidden width that follows scaling.width, not the classes
    over: Literal["features", "channels"] = "features"

    def infer(self, x: Shape, path: str) -> tuple[Shape, int, int]:
        if self.over == "channels":
            c, h, w = self.need_image(x, path)
            return (self.out, h, w), c * self.out + (self.out if self.bias else 0), c * self.out * h * w
        if len(x) != 1:
            self.fail(path, f"expects a flat (features,) input but gets {fmt_shape(x)}; add a flatten before it, "
                            "or set `over: channels` for a linear layer over the channels at every position")
        weights = x[0] * self.out
        return (self.out,), weights + (self.out if self.bias else 0), weights

    def hyper(self) -> str:
        return f"{self.out}"

    def extra_scaled_fields(self) -> dict[str, str]:
        return {"out": "width"} if self.scales_with_width else {}

    def replay(self, run: "MemoryReplay", node: Node, x: "Tensor") -> "Tensor":
        if self.over == "features":
            return super().replay(run, node, x)
        # matmul folds the channels-last view of the map into (positions, channels): a copy, unless the map is
        # laid out channels-last already (then autograd keeps the input itself)
        copy = run.new(prod(node.in_shape)) if not x.nhwc else run.ref(x)
        y = run.new(prod(node.out_shape))
        run.keep(copy)
        run.drop(copy)
        return y

    def output_layout(self, node: Node, nhwc: bool) -> bool:
        return self.over == "channels" or nhwc

    def source(self, node: Node) -> Expr:
        constructor = CHANNEL_LINEAR if self.over == "channels" else LINEAR
        return constructor(in_features=node.in_shape[0], out_features=self.out, bias=self.bias)

    def build(self, node) -> "nn.Module":
        from torch import nn

        from ...backend.nn import ChannelLinear

        linear = (ChannelLinear if self.over == "channels" else nn.Linear)(node.in_shape[0], self.out, self.bias)
        if self.init_std is not None:
            linear.init_std = self.init_std
        return linear
