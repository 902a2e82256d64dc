"""sequence: named layers applied one after another (a reusable group, e.g. a VGG stage)."""
from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from ...units import plural
from .anyblock import BlockList
from .base import Block, Node, Shape, chain, check_unique_names, composite, named


class Sequence(Block):
    kind = "stage / group"
    type: Literal["sequence"]
    layers: BlockList

    @model_validator(mode="after")
    def _names(self) -> "Sequence":
        check_unique_names(self.layers, self.name or "")
        return self

    def analyse(self, x: Shape, name: str, path: str) -> Node:
        if not self.layers:
            self.fail(path, "a sequence needs at least one layer")
        children = chain(named(self.layers), x, path)
        return composite(self, name, path, x, children, children[-1].out_shape)

    def hyper(self) -> str:
        return plural(len(self.layers), "layer")
