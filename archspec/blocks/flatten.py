"""flatten: (C, H, W) -> (C*H*W,), before the linear layers."""
from __future__ import annotations

from math import prod
from typing import TYPE_CHECKING, Literal

from .base import Block, Shape

if TYPE_CHECKING:
    from torch import nn


class Flatten(Block):
    type: Literal["flatten"]

    def infer(self, x: Shape, path: str) -> tuple[Shape, int, int]:
        return (prod(x),), 0, 0

    def build(self, node) -> "nn.Module":
        from torch import nn

        return nn.Flatten(1)
