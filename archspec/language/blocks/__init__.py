"""The block registry: one line per block type."""
from __future__ import annotations

from typing import get_args

from ...errors import SpecError
from .activation import ActivationLayer
from .adaptive_pool import AdaptivePool
from .anyblock import BLOCK_TYPES, BlockList, OneBlock
from .aux_head import AuxHead
from .base import Block, MacroBlock, Node, Shape
from .basic import Basic
from .batchnorm import BatchNorm
from .bottleneck import Bottleneck
from .channel_shuffle import ChannelShuffle
from .channel_split import ChannelSplit
from .conv import Conv
from .depthwise import Depthwise
from .dropout import Dropout
from .flatten import Flatten
from .fused_mbconv import FusedMBConv
from .global_pool import GlobalPool
from .group_norm import GroupNorm
from .inception import Inception
from .inception_v1 import InceptionV1
from .linear import Linear
from .layer_norm import LayerNorm
from .layer_scale import LayerScale
from .lrn import LRN
from .mbconv import MBConv
from .pool import Pool
from .regnet import RegNet
from .residual import Residual
from .se import SE
from .sequence import Sequence
from .stage import Stage

BLOCK_CLASSES: list[type[Block]] = [
    Conv, Pool, AdaptivePool, GlobalPool, LRN, Linear, Dropout, Flatten, ActivationLayer, BatchNorm,
    GroupNorm, LayerNorm, LayerScale, ChannelShuffle, ChannelSplit,
    Sequence, Stage, Residual, Basic, Bottleneck, Inception, InceptionV1, SE, Depthwise, MBConv, FusedMBConv,
    RegNet,
]


def _registry(classes: list[type[Block]]) -> dict[str, type[Block]]:
    registry: dict[str, type[Block]] = {}
    for cls in classes:
        for name in get_args(cls.model_fields["type"].annotation):
            if name in registry:
                raise RuntimeError(f"block type '{name}' registered twice ({registry[name].__name__}, {cls.__name__})")
            registry[name] = cls
    return registry


BLOCK_TYPES.update(_registry(BLOCK_CLASSES))


def block_class(type_name: str) -> type[Block]:
    if type_name not in BLOCK_TYPES:
        raise SpecError(f"unknown block type '{type_name}'")
    return BLOCK_TYPES[type_name]


__all__ = ["AuxHead", "BLOCK_TYPES", "Block", "BlockList", "MacroBlock", "Node", "OneBlock", "Shape", "block_class"]
