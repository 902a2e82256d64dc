"""bottleneck: 1x1 reduce, 3x3 (grouped for ResNeXt), 1x1 expand, plus a skip.

As torchvision's `Bottleneck`: width = int(planes * width_per_group / 64) * groups,
out = planes * expansion, and the stride sits on the 3x3 (ResNet v1.5). `stride_on: 1x1`
gives the original Caffe ResNet, which strides the first 1x1. As timm's, the first 1x1 may
reduce to width // reduce_first (SENet-154).
"""
from __future__ import annotations

from typing import Literal

from ..scaling import Channels
from .base import Block, PosInt, Shape
from .conv import Conv
from .residual import Residual, ResidualUnit
from .se import SE


class Bottleneck(ResidualUnit):
    type: Literal["bottleneck"]
    planes: Channels
    expansion: PosInt = 4
    groups: PosInt = 1
    width_per_group: PosInt = 64
    width: Channels | None = None  # the 3x3's channels; overrides the groups/width_per_group rule
    reduce_first: PosInt = 1  # conv1 has width // reduce_first channels (timm's `reduce_first`, 2 in SENet-154)
    stride_on: Literal["3x3", "1x1"] = "3x3"
    se: SE | None = None  # squeeze-and-excitation after conv3, before the add (SE-ResNet, SE-ResNeXt)
    se_after: Literal["conv3", "conv2"] = "conv3"  # conv2: on the 3x3's output (RegNet-Y)

    @property
    def inner_width(self) -> int:
        return self.width or int(self.planes * (self.width_per_group / 64.0)) * self.groups

    @property
    def first_width(self) -> int:
        return self.inner_width // self.reduce_first

    def expand(self, x: Shape) -> Residual:
        unit = self.conv_unit()
        first_stride, mid_stride = (self.stride, 1) if self.stride_on == "1x1" else (1, self.stride)
        body: list[Block] = [
            Conv(name="conv1", out=self.first_width, kernel=1, stride=first_stride, activation=self.activation, **unit),
            Conv(name="conv2", out=self.inner_width, kernel=3, stride=mid_stride, groups=self.groups,
                 activation=self.activation, **unit),
            Conv(name="conv3", out=self.planes * self.expansion, kernel=1, **unit)]
        if self.se:
            channels = self.inner_width if self.se_after == "conv2" else self.planes * self.expansion
            # ratio_of input: RegNet-Y squeezes to a ratio of the block's input channels
            squeeze = {"squeeze": self.se.squeeze_width(channels, x[0])} if self.se.ratio_of == "input" else {}
            body.insert(3 if self.se_after == "conv3" else 2, self.se.model_copy(update={"name": "se", **squeeze}))
        return self.residual(body)

    def hyper(self) -> str:
        text = f"{self.inner_width}->{self.planes * self.expansion}"
        if self.reduce_first > 1:
            text = f"{self.first_width}->{text}"
        if self.groups > 1:
            text += f" g{self.groups}"
        return text + (f" /{self.stride}" if self.stride > 1 else "")
