"""inception_v1: the compact GoogLeNet module of Szegedy et al. 2014, Table 1.

Its columns (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj) expand to a general
`inception` with branches branch1..branch4, as torchvision names them. torchvision's
GoogLeNet uses a 3x3 kernel in the "5x5" branch (pytorch/vision#906): `c5x5_kernel: 3`.
"""
from __future__ import annotations

from typing import Literal

from ...ir.activations import Activation
from ..scaling import Channels
from .base import BnEps, BnMomentum, MacroBlock, Norm, Shape
from .conv import Conv
from .inception import Inception
from .pool import Pool


class InceptionV1(MacroBlock):
    kind = "inception"
    type: Literal["inception_v1"]
    c1x1: Channels
    c3x3_reduce: Channels
    c3x3: Channels
    c5x5_reduce: Channels
    c5x5: Channels
    pool_proj: Channels
    c5x5_kernel: Literal[3, 5] = 5
    pool_ceil_mode: bool = True
    norm: Norm = "none"
    bias: bool | None = None
    activation: Activation = "relu"
    bn_eps: BnEps = 1e-5
    bn_momentum: BnMomentum = 0.1

    def expand(self, x: Shape) -> Inception:
        unit = dict(type="conv", norm=self.norm, bias=self.bias, activation=self.activation,
                    bn_eps=self.bn_eps, bn_momentum=self.bn_momentum)
        return Inception(type="inception", branches={
            "branch1": [Conv(out=self.c1x1, kernel=1, **unit)],
            "branch2": [Conv(name="reduce", out=self.c3x3_reduce, kernel=1, **unit),
                        Conv(name="conv", out=self.c3x3, kernel=3, padding=1, **unit)],
            "branch3": [Conv(name="reduce", out=self.c5x5_reduce, kernel=1, **unit),
                        Conv(name="conv", out=self.c5x5, kernel=self.c5x5_kernel, padding=self.c5x5_kernel // 2, **unit)],
            "branch4": [Pool(type="pool", name="pool", op="max", kernel=3, stride=1, padding=1, ceil_mode=self.pool_ceil_mode),
                        Conv(name="proj", out=self.pool_proj, kernel=1, **unit)],
        })

    def hyper(self) -> str:
        return f"{self.c1x1 + self.c3x3 + self.c5x5 + self.pool_proj} = {self.c1x1}+{self.c3x3}+{self.c5x5}+{self.pool_proj}"
