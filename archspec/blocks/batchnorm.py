"""batchnorm: batch normalisation on (C, H, W) maps or (features,) vectors."""
from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from .base import Block, BnEps, BnMomentum, Shape

if TYPE_CHECKING:
    from torch import nn


class BatchNorm(Block):
    type: Literal["batchnorm"]
    eps: BnEps = 1e-5
    momentum: BnMomentum = 0.1

    def infer(self, x: Shape, path: str) -> tuple[Shape, int, int]:
        return x, 2 * x[0], 0

    def build(self, node) -> "nn.Module":
        from torch import nn

        cls = nn.BatchNorm2d if len(node.in_shape) == 3 else nn.BatchNorm1d
        return cls(node.in_shape[0], self.eps, self.momentum)
