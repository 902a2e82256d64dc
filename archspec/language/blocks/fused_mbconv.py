"""fused_mbconv: EfficientNetV2's Fused-MBConv (Tan & Le 2021, Figure 2), as torchvision's `FusedMBConv`.

MBConv's expand 1x1 and depthwise kxk fused into one full kxk conv with the stride (`expand`), then a linear
1x1 projection (`project`); with `expand_ratio` 1 (expanded width = input width) the kxk conv goes straight to
`out` with the activation (`conv`). A residual add (with stochastic depth) when the stride is 1 and the width
is kept; counted by the stochastic-depth rule either way, as torchvision numbers every block.
"""
from __future__ import annotations

from typing import Literal

from .base import Block, Shape
from .conv import Conv
from .mbconv import MBConv
from .residual import Residual
from .sequence import Sequence


class FusedMBConv(MBConv):
    """MBConv's fields and rules (expanded width, SE squeeze, residual condition); a fused body."""

    type: Literal["fused_mbconv"]  # type: ignore[assignment]

    def expand(self, x: Shape) -> Block:
        c = x[0]
        wide = self.expanded_width(c)
        unit = dict(type="conv", norm=self.norm, bn_eps=self.bn_eps, bn_momentum=self.bn_momentum)
        if wide == c:
            body: list[Block] = [Conv(name="conv", out=self.out, kernel=self.kernel, stride=self.stride,
                                      activation=self.activation, **unit)]
        else:
            body = [Conv(name="expand", out=wide, kernel=self.kernel, stride=self.stride, activation=self.activation, **unit),
                    *([self.se.model_copy(update={"name": "se", "squeeze": self.se.squeeze_width(wide, c)})] if self.se else []),
                    Conv(name="project", out=self.out, kernel=1, **unit)]
        if self.residual and self.stride == 1 and c == self.out:
            return Residual(type="residual", body=body, shortcut="identity", drop_path=self.stochastic_depth)
        return Sequence(type="sequence", layers=body)
