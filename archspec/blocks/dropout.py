"""dropout: zero elements with probability `p` in training (identity in eval)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from .base import Block, Shape

if TYPE_CHECKING:
    from torch import nn


class Dropout(Block):
    type: Literal["dropout"]
    p: Annotated[float, Field(ge=0, lt=1)] = 0.5

    def infer(self, x: Shape, path: str) -> tuple[Shape, int, int]:
        return x, 0, 0

    def hyper(self) -> str:
        return f"p={self.p}"

    def build(self, node) -> "nn.Module":
        from torch import nn

        return nn.Dropout(self.p)
