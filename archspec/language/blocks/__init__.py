"""The block registry: one line per block type, and the discriminated union built from it."""
from __future__ import annotations

from typing import Annotated, Any, Union, get_args

from pydantic import (BeforeValidator, Field, SerializationInfo, SerializerFunctionWrapHandler, ValidationInfo,
                      ValidatorFunctionWrapHandler, WrapSerializer, WrapValidator)

from ...errors import SpecError
from ..source import MAX_DEFAULT_VALUES, LocDict, LocList
from .activation import ActivationLayer
from .adaptive_pool import AdaptivePool
from .aux_head import AuxHead
from .base import Block, MacroBlock, Node, Shape
from .basic import Basic
from .batchnorm import BatchNorm
from .bottleneck import Bottleneck
from .channel_shuffle import ChannelShuffle
from .channel_split import ChannelSplit
from .conv import Conv
from .defined import Body, DefinedBlock
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


BLOCK_TYPES: dict[str, type[Block]] = _registry(BLOCK_CLASSES)


def _with_defaults(item: Any, info: ValidationInfo) -> Any:
    """Spec-level defaults for this block's type, under the block's own fields.

    Every block of the type gets its own copy of the defaults to validate, so the nodes added are
    counted against the context's `budget` (defaults for 10,000 blocks must not multiply validation)."""
    context = info.context or {}
    defaults = context.get("defaults") or {}
    kind = item.get("type") if isinstance(item, LocDict) else None
    if not isinstance(kind, str) or kind not in defaults or not isinstance(defaults[kind], LocDict):
        return item
    base = defaults[kind]
    budget = context.get("budget")
    if budget is not None:
        budget[0] -= context.get("sizes", {}).get(kind, len(base))
        if budget[0] < 0:
            raise SpecError(f"with 'defaults' applied to every block, the spec grows past {MAX_DEFAULT_VALUES:,} values; "
                            f"make the defaults for '{kind}' smaller or use fewer blocks", item.loc, "", kind)
    return LocDict({**base, **item}, loc=item.loc, key_locs={**base.key_locs, **item.key_locs})


def _prepare(item: Any, info: ValidationInfo, loc: Any) -> Any:
    """A bare string is shorthand for `{type: <string>}`; then defaults apply."""
    if isinstance(item, str):
        item = LocDict({"type": item}, loc=loc)
    return _with_defaults(item, info)


def _prepare_one(item: Any, info: ValidationInfo) -> Any:
    return _prepare(item, info, None)


def _prepare_list(items: Any, info: ValidationInfo) -> Any:
    if not isinstance(items, list):
        return items
    locs = items.item_locs if isinstance(items, LocList) else []
    prepared = [_prepare(item, info, locs[i] if i < len(locs) else None) for i, item in enumerate(items)]
    return LocList(prepared, loc=items.loc, item_locs=locs) if isinstance(items, LocList) else prepared


def _defined_or_builtin(item: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
    """A use of a block type the spec defines (`blocks:`, the context's library), else a built-in block."""
    if isinstance(item, DefinedBlock):
        return item
    library = (info.context or {}).get("library")
    if library is not None and isinstance(item, dict) and isinstance(item.get("type"), str) \
            and item["type"] in library.definitions:
        return library.use(item)
    return handler(item)


def _dump(item: Any, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
    return item.dump(info.mode) if isinstance(item, DefinedBlock) else handler(item)


AnyBlock = Annotated[Union[tuple(BLOCK_CLASSES)], Field(discriminator="type"), WrapValidator(_defined_or_builtin),
                     WrapSerializer(_dump)]
OneBlock = Annotated[AnyBlock, BeforeValidator(_prepare_one)]
BlockList = Annotated[list[AnyBlock], BeforeValidator(_prepare_list)]

for _cls in [*BLOCK_CLASSES, AuxHead, Body]:
    _cls.model_rebuild(_types_namespace={"BlockList": BlockList, "OneBlock": OneBlock, "AnyBlock": AnyBlock})


def block_class(type_name: str) -> type[Block]:
    if type_name not in BLOCK_TYPES:
        raise SpecError(f"unknown block type '{type_name}'")
    return BLOCK_TYPES[type_name]


__all__ = ["AnyBlock", "AuxHead", "BLOCK_TYPES", "Block", "BlockList", "MacroBlock", "Node", "OneBlock", "Shape", "block_class"]
