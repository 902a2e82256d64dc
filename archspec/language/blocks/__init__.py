"""The blocks: the language's vocabulary. `BLOCK_TYPES` maps each built-in type to its model (blocks/registry.py)."""
from __future__ import annotations

from .anyblock import BlockList, OneBlock
from .aux_head import AuxHead
from .base import Block, MacroBlock, Node, Shape
from .registry import BLOCK_TYPES

__all__ = ["AuxHead", "BLOCK_TYPES", "Block", "BlockList", "MacroBlock", "Node", "OneBlock", "Shape"]
