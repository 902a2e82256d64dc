"""basic: the ResNet basic block (two 3x3 convs and a skip), torchvision's `BasicBlock`."""
from __future__ import annotations

from typing import Literal

from ..scaling import Channels
from .base import Shape
from .conv import Conv
from .residual import Residual, ResidualUnit


class Basic(ResidualUnit):
    type: Literal["basic"]
    out: Channels

    def expand(self, x: Shape) -> Residual:
        unit = dict(self.conv_unit(), out=self.out, kernel=3)
        return self.residual([Conv(name="conv1", stride=self.stride, activation=self.activation, **unit),
                              Conv(name="conv2", **unit)])

    def hyper(self) -> str:
        return f"{self.out}" + (f" /{self.stride}" if self.stride > 1 else "")
