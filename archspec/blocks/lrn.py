"""lrn: local response normalisation across channels (AlexNet), with torch's formula.

torch divides `alpha` by `size`; the AlexNet paper's alpha multiplies the plain sum,
so the paper's alpha=1e-4 with size 5 is alpha=5e-4 here.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from .base import Block, PosInt, Shape

if TYPE_CHECKING:
    from torch import nn


class LRN(Block):
    type: Literal["lrn"]
    size: PosInt = 5
    alpha: Annotated[float, Field(ge=0)] = 1e-4
    beta: Annotated[float, Field(ge=0)] = 0.75
    k: Annotated[float, Field(ge=0)] = 1.0

    def infer(self, x: Shape, path: str) -> tuple[Shape, int, int]:
        self.need_image(x, path)
        return x, 0, 0

    def hyper(self) -> str:
        return f"size {self.size}"

    def build(self, node) -> "nn.Module":
        from torch import nn

        return nn.LocalResponseNorm(self.size, self.alpha, self.beta, self.k)
