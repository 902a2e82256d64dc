"""Torch modules shared by the block builders. Only imported when a model is built."""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "silu": nn.SiLU,
    "hardswish": nn.Hardswish,
    "hardsigmoid": nn.Hardsigmoid,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
}
_HAS_INPLACE = {"relu", "relu6", "silu", "hardswish", "hardsigmoid"}


def activation(name: str, inplace: bool = False) -> nn.Module | None:
    """The activation module for `name`, or None for 'none'. `inplace` only on fresh tensors."""
    if name == "none":
        return None
    cls = _ACTIVATIONS[name]
    return cls(inplace=True) if inplace and name in _HAS_INPLACE else cls()


def sequential(children: list[tuple[str, nn.Module | None]]) -> nn.Sequential:
    """nn.Sequential with named children, skipping the absent ones."""
    return nn.Sequential(OrderedDict((name, module) for name, module in children if module is not None))


class Residual(nn.Module):
    """`act(body(x) + shortcut(x))` with the body's layers as direct, named children."""

    def __init__(self, body: list[tuple[str, nn.Module]], shortcut: nn.Module | None, act: nn.Module | None) -> None:
        super().__init__()
        self._body_names = [name for name, _ in body]
        for name, module in body:
            self.add_module(name, module)
        self.shortcut = shortcut if shortcut is not None else nn.Identity()
        self.act = act if act is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for name in self._body_names:
            out = self._modules[name](out)
        return self.act(out + self.shortcut(x))


class Network(nn.Sequential):
    """The compiled spec: a named, straight-line sequence of its top-level layers."""

    def __init__(self, children: list[tuple[str, nn.Module]], spec_name: str) -> None:
        super().__init__(OrderedDict(children))
        self.spec_name = spec_name

    def extra_repr(self) -> str:
        return f"spec={self.spec_name!r}"
