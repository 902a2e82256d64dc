"""depthwise: a depthwise-separable conv (MobileNet v1): depthwise kxk + BN + act, then pointwise
1x1 + BN + act, as the modules `dw` and `pw`."""
from __future__ import annotations

from typing import Literal

from ...ir.activations import Activation
from ..scaling import Channels
from .base import BnEps, BnMomentum, MacroBlock, Norm, PosInt, Shape
from .conv import Conv
from .sequence import Sequence


class Depthwise(MacroBlock):
    kind = "convolution"
    type: Literal["depthwise"]
    out: Channels
    kernel: PosInt = 3
    stride: PosInt = 1
    norm: Norm = "batch"
    activation: Activation = "relu"
    pw_activation: Activation | None = None  # default: the same as `activation`
    bn_eps: BnEps = 1e-5
    bn_momentum: BnMomentum = 0.1

    def expand(self, x: Shape) -> Sequence:
        unit = dict(type="conv", norm=self.norm, bn_eps=self.bn_eps, bn_momentum=self.bn_momentum)
        pw_act = self.activation if self.pw_activation is None else self.pw_activation
        return Sequence(type="sequence", layers=[
            Conv(name="dw", out=x[0], kernel=self.kernel, stride=self.stride, groups=x[0], activation=self.activation, **unit),
            Conv(name="pw", out=self.out, kernel=1, activation=pw_act, **unit),
        ])

    def hyper(self) -> str:
        return f"dw {self.kernel}x{self.kernel}" + (f"/{self.stride}" if self.stride > 1 else "") + f" -> {self.out}"
