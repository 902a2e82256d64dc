"""The analysis tree: one node per block analysed at its input shape, which every consumer reads."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

Shape = tuple[int, ...]


def fmt_shape(shape: Shape) -> str:
    return "x".join(str(d) for d in shape)


@dataclass
class Node:
    """One block analysed at its input shape: the unit of summaries, diagrams and compilation."""

    block: Any  # the analysed block (a blocks.base.Block)
    name: str
    path: str
    in_shape: Shape
    out_shape: Shape
    params: int
    macs: int  # for a composite: of the children that run at inference (not the auxiliary heads)
    children: list["Node"] = field(default_factory=list)
    aux: bool = False  # a training-only auxiliary head
    drop_rate: float = 0.0  # stochastic depth of a residual block, from the spec's linear rule
    form: str = "leaf"  # how the children combine: leaf, chain, residual (body + shortcut, added), concat
    expanded: Any = None  # what a macro block stands for at `in_shape` (a Block: its `expand`), as analysed

    def walk(self) -> Iterator["Node"]:
        yield self
        for child in self.children:
            yield from child.walk()

    @property
    def type(self) -> str:
        return self.block.type

    def residual_parts(self) -> tuple[list["Node"], "Node | None"]:
        """A residual node's body layers and its shortcut (None: the identity)."""
        body = [c for c in self.children if c.name != "shortcut"]
        return body, next((c for c in self.children if c.name == "shortcut"), None)


def child_path(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
