"""The built-in block types. The type `x` is defined in blocks/x.py (the activations, one model of several types, in
activation.py); a module is imported the first time a spec uses one of its types, so a command pays only for the
models its specs use (defining a pydantic model costs about 1.5 ms)."""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from importlib import import_module
from typing import get_args

from ...errors import did_you_mean
from ...ir.activations import ACTIVATIONS
from ..source import printable
from .base import Block

# The modules that define block types, in the order messages list the types. Adding a block type: its file, and
# its name here (tests/test_registry.py checks both ways).
MODULES = ("conv", "pool", "adaptive_pool", "global_pool", "lrn", "linear", "dropout", "flatten", "activation",
           "batchnorm", "group_norm", "layer_norm", "layer_scale", "channel_shuffle", "channel_split", "sequence",
           "stage", "residual", "basic", "bottleneck", "inception", "inception_v1", "se", "depthwise", "mbconv",
           "fused_mbconv", "regnet")


def type_names(model: type[Block]) -> tuple[str, ...]:
    """The type names a block model validates (its `type` field's literal values)."""
    return get_args(model.model_fields["type"].annotation)


def models_in(module: str) -> list[type[Block]]:
    """The block models that blocks/<module>.py defines."""
    namespace = import_module(f"{__package__}.{module}")
    return [value for value in vars(namespace).values() if isinstance(value, type) and issubclass(value, Block)
            and value.__module__ == namespace.__name__ and "type" in value.model_fields and type_names(value)]


class Registry(Mapping[str, type[Block]]):
    """{block type: its model}; each module imported when one of its types is first looked up."""

    def __init__(self) -> None:
        self._module = {name: module for module in MODULES
                        for name in (ACTIVATIONS if module == "activation" else (module,))}
        self._models: dict[str, type[Block]] = {}

    def __getitem__(self, name: str) -> type[Block]:
        model = self._models.get(name)
        if model is None:
            for found in models_in(self._module[name]):  # KeyError for an unknown name, as a dict
                self._models.update(dict.fromkeys(type_names(found), found))
            model = self._models[name]
        return model

    def __contains__(self, name: object) -> bool:
        return name in self._module

    def __iter__(self) -> Iterator[str]:
        return iter(self._module)

    def __len__(self) -> int:
        return len(self._module)


BLOCK_TYPES = Registry()


def fields_of(kind: str, defined: Mapping[str, Iterable[str]]) -> set[str]:
    """What a block of type `kind` may write besides `type` and `name`: a built-in type its model's fields, a type
    defined in YAML (`defined`: each one's parameters) its parameters."""
    return set(BLOCK_TYPES[kind].model_fields) - {"type", "name"} if kind in BLOCK_TYPES else set(defined[kind])


def unknown_type(kind: str, defined: Iterable[str]) -> str:
    return f"unknown block type '{printable(kind)}'{did_you_mean(kind, [*BLOCK_TYPES, *defined])}"


def unknown_field(field: str, kind: str, known: Iterable[str]) -> str:
    return f"'{printable(field)}' is not a field of {kind}{did_you_mean(field, known)}"
