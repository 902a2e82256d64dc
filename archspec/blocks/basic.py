"""basic: the ResNet basic block (two 3x3 convs and a skip), torchvision's `BasicBlock`."""
from __future__ import annotations

from typing import Literal

from ..scaling import Channels
from .base import Activation, BnEps, BnMomentum, MacroBlock, Norm, PosInt, Shape
from .conv import Conv
from .residual import ProjectionKernel, Residual


class Basic(MacroBlock):
    kind = "residual block"
    type: Literal["basic"]
    out: Channels
    stride: PosInt = 1
    norm: Norm = "batch"
    activation: Activation = "relu"
    bn_eps: BnEps = 1e-5
    bn_momentum: BnMomentum = 0.1
    shortcut: Literal["auto", "identity", "projection"] = "auto"
    projection_kernel: ProjectionKernel = 1  # as residual's

    def expand(self, x: Shape) -> Residual:
        unit = dict(type="conv", out=self.out, kernel=3, norm=self.norm, bn_eps=self.bn_eps, bn_momentum=self.bn_momentum)
        return Residual(
            type="residual",
            body=[Conv(name="conv1", stride=self.stride, activation=self.activation, **unit),
                  Conv(name="conv2", **unit)],
            shortcut=self.shortcut, projection_kernel=self.projection_kernel, activation=self.activation,
            norm=self.norm, bn_eps=self.bn_eps, bn_momentum=self.bn_momentum,
        )

    def hyper(self) -> str:
        return f"{self.out}" + (f" /{self.stride}" if self.stride > 1 else "")
