"""aux_head: a training-only classifier that taps a named top-level layer (GoogLeNet, Inception-v3).

Declared in the spec's `aux_heads` list, not among the layers. In training the compiled model
returns (main logits, *aux logits in list order); in eval mode the heads do not run.
"""
from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from .anyblock import BlockList
from .base import Block, Name, Node, Shape, chain, check_unique_names, composite, named


class AuxHead(Block):
    kind = "stage / group"
    type: Literal["aux_head"] = "aux_head"
    name: Name
    tap: Name
    layers: BlockList

    @model_validator(mode="after")
    def _names(self) -> "AuxHead":
        check_unique_names(self.layers, self.name)
        return self

    def analyse(self, x: Shape, name: str, path: str) -> Node:
        if not self.layers:
            self.fail(path, "an auxiliary head needs at least one layer")
        children = chain(named(self.layers), x, path)
        node = composite(self, name, path, x, children, children[-1].out_shape)
        node.macs = sum(c.macs for c in children)  # its own cost when it runs, in training
        node.aux = True
        return node

    def hyper(self) -> str:
        return f"taps {self.tap}, training only"
