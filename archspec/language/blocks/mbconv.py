"""mbconv: the inverted residual of MobileNetV2/V3 and EfficientNet.

expand 1x1 (skipped when the expanded width equals the input) -> depthwise kxk with the stride ->
optional squeeze-and-excitation -> linear 1x1 projection, as the modules `expand`, `dw`, `se`,
`project`; a residual add (with stochastic depth) when the stride is 1 and the width is kept.
The expanded width is `expanded` if given, else make_divisible(input * expand_ratio, divisor).
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from ...ir.activations import Activation
from ..scaling import Channels, make_divisible
from .base import Block, BnEps, BnMomentum, MacroBlock, Norm, PosInt, Shape
from .conv import Conv
from .residual import Residual
from .se import SE
from .sequence import Sequence


class MBConv(MacroBlock):
    kind = "residual block"
    residual_unit = True
    type: Literal["mbconv"]
    out: Channels
    expand_ratio: Annotated[float, Field(ge=1, le=64)] = 6.0
    expanded: Channels | None = None
    divisor: Annotated[int, Field(ge=1, le=1024)] = 8
    kernel: PosInt = 3
    stride: PosInt = 1
    se: SE | None = None
    activation: Activation = "silu"
    norm: Norm = "batch"
    bn_eps: BnEps = 1e-5
    bn_momentum: BnMomentum = 0.1
    residual: bool = True  # add the input when the shapes allow
    stochastic_depth: Annotated[float, Field(ge=0, lt=1)] | None = None  # default: the spec's rule

    def expanded_width(self, c: int) -> int:
        return self.expanded or make_divisible(c * self.expand_ratio, self.divisor)

    def expand(self, x: Shape) -> Block:
        c = x[0]
        wide = self.expanded_width(c)
        unit = dict(type="conv", norm=self.norm, bn_eps=self.bn_eps, bn_momentum=self.bn_momentum)
        body: list[Block] = []
        if wide != c:
            body.append(Conv(name="expand", out=wide, kernel=1, activation=self.activation, **unit))
        body.append(Conv(name="dw", out=wide, kernel=self.kernel, stride=self.stride, groups=wide,
                         activation=self.activation, **unit))
        if self.se is not None:
            body.append(self.se.model_copy(update={"name": "se", "squeeze": self.se.squeeze_width(wide, c)}))
        body.append(Conv(name="project", out=self.out, kernel=1, **unit))
        if self.residual and self.stride == 1 and c == self.out:
            return Residual(type="residual", body=body, shortcut="identity", drop_path=self.stochastic_depth)
        return Sequence(type="sequence", layers=body)

    def hyper(self) -> str:
        text = f"k{self.kernel}" + (f"/{self.stride}" if self.stride > 1 else "")
        text += f" x{self.expand_ratio:g}" if self.expanded is None else f" {self.expanded}"
        return text + f" -> {self.out}" + (" SE" if self.se else "")
