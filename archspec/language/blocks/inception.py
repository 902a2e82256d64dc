"""inception: named parallel branches, each a list of layers, concatenated on channels.

Every branch must end at the same height and width. A branch may pool first, use asymmetric
kernels or strides, hold a nested inception (Inception-v3's split 1x3/3x1 branches), or be a
bare pool (BN-Inception's pass-through); `[]` passes the input through unchanged.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from ...units import plural
from .anyblock import BlockList
from .base import RESERVED_NAMES, Block, Name, Node, Shape, check_unique_names, child_path, composite, fmt_shape, group


class Inception(Block):
    kind = "inception"
    type: Literal["inception"]
    branches: Annotated[dict[Name, BlockList], Field(min_length=1)]

    @model_validator(mode="after")
    def _names(self) -> "Inception":
        for branch, layers in self.branches.items():
            check_unique_names(layers, child_path(self.name or "", branch))
        return self

    def analyse(self, x: Shape, name: str, path: str) -> Node:
        self.need_image(x, path)
        for branch in self.branches:
            if branch in RESERVED_NAMES:
                self.fail(path, f"the branch name '{branch}' is reserved (an attribute of the compiled module)")
        children = [group(self, "branch", branch, child_path(path, branch), x, layers)
                    for branch, layers in self.branches.items()]
        first = children[0]
        for child in children:
            if len(child.out_shape) != 3:
                self.fail(path, f"branch '{child.name}' gives {fmt_shape(child.out_shape)}, not a (C, H, W) map")
            if child.out_shape[1:] != first.out_shape[1:]:
                self.fail(path, f"branch '{child.name}' gives {fmt_shape(child.out_shape)} but branch '{first.name}' "
                                f"gives {fmt_shape(first.out_shape)}; branches must end at the same height and width "
                                "to be concatenated")
        out = (sum(c.out_shape[0] for c in children), *first.out_shape[1:])
        return composite(self, name, path, x, children, out, form="concat")

    def hyper(self) -> str:
        return plural(len(self.branches), "branch", "branches")

