"""layer_norm: layer normalisation over the channels, at every position of a (C, H, W) map (ConvNeXt's norm:
torchvision's and timm's `LayerNorm2d`) or over the features of a vector (torch's nn.LayerNorm)."""
from __future__ import annotations

from math import prod
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from ...ir.expr import REQUIRED, Constructor, Expr, backend_class
from .base import Block, Node, Shape

from ...ir.memory import STAT_BYTES

if TYPE_CHECKING:
    from torch import nn

    from ...ir.memory import MemoryReplay, Tensor

_PARAMS = (("normalized_shape", REQUIRED), ("eps", 1e-5))
LAYER_NORM = Constructor("nn.LayerNorm", _PARAMS, frozenset({"normalized_shape"}))
LAYER_NORM_2D = Constructor("LayerNorm2d", _PARAMS, frozenset({"normalized_shape"}), backend_class("LayerNorm2d"))


class LayerNorm(Block):
    kind = "normalisation"
    type: Literal["layer_norm"]
    eps: Annotated[float, Field(gt=0, lt=1)] = 1e-5

    def infer(self, x: Shape, path: str) -> tuple[Shape, int, int]:
        if len(x) not in (1, 3):
            self.fail(path, f"normalises a (channels, height, width) map or a (features,) vector, not {x}")
        return x, 2 * x[0], 0

    def replay(self, run: "MemoryReplay", node: Node, x: "Tensor") -> "Tensor":
        n = prod(node.out_shape)
        positions = prod(node.in_shape[1:])
        # On a map, layer_norm runs on the channels-last view, which the kernel copies to a contiguous tensor
        # unless the map is laid out channels-last already (the output of a previous layer norm or linear).
        copy = run.new(n) if len(node.in_shape) == 3 and not x.nhwc else None
        y = run.new(n)
        # per position, kept for backward with the input; fp32 in a bf16/fp16 model on CUDA (and on meta), as
        # batch norm's statistics (CPU keeps the model's dtype: a few bytes per position less than this says)
        mean, rstd = run.new(positions, STAT_BYTES), run.new(positions, STAT_BYTES)
        if copy is not None:
            run.drop(copy)
        run.keep(x, mean, rstd)
        run.drop(mean)
        run.drop(rstd)
        return y

    def output_layout(self, node: Node, nhwc: bool) -> bool:
        return len(node.in_shape) == 3 or nhwc  # the channels-last result, viewed as (N, C, H, W)

    def fresh_output(self, node: Node) -> bool:
        return len(node.in_shape) == 1

    def source(self, node: Node) -> Expr:
        constructor = LAYER_NORM_2D if len(node.in_shape) == 3 else LAYER_NORM
        return constructor(normalized_shape=node.in_shape[0], eps=self.eps)

    def build(self, node: Node) -> "nn.Module":
        from torch import nn

        from ...backend.nn import LayerNorm2d

        return (LayerNorm2d if len(node.in_shape) == 3 else nn.LayerNorm)(node.in_shape[0], self.eps)
