"""Torch modules shared by the block builders. Only imported when a model is built."""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .activations import ACTIVATIONS

def activation(name: str, inplace: bool = False) -> nn.Module | None:
    """The activation module for `name`, or None for 'none'. `inplace` only on fresh tensors."""
    if name == "none":
        return None
    op = ACTIVATIONS[name]
    cls = getattr(nn, op.module)
    return cls(inplace=True) if inplace and op.inplace else cls()


def sequential(children: list[tuple[str, nn.Module | None]]) -> nn.Sequential:
    """nn.Sequential with named children, skipping the absent ones."""
    return nn.Sequential(OrderedDict((name, module) for name, module in children if module is not None))


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth (Huang et al. 2016): drop whole samples of a residual branch in training,
    rescaling the kept ones; torchvision's `stochastic_depth(mode="row")`."""
    if not training or rate == 0.0:
        return x
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask.div_(keep)


class Residual(nn.Module):
    """`act(drop_path(body(x)) + shortcut(x))` with the body's layers as direct, named children.

    Where the body ends in a conv or batch norm (or SE) layer, whose output is a fresh tensor that no
    backward pass needs, the shortcut is added in place, as torchvision's blocks do (`out += identity`):
    one activation-sized allocation less per block, and the same aten ops as torchvision, op for op.
    Anywhere else (a body ending in an activation, whose output its backward may need, or in a layer
    that can return its input) the add is out of place."""

    def __init__(self, body: list[tuple[str, nn.Module]], shortcut: nn.Module | None, act: nn.Module | None,
                 drop_rate: float = 0.0) -> None:
        super().__init__()
        self._body_names = [name for name, _ in body]
        for name, module in body:
            self.add_module(name, module)
        self.shortcut = shortcut if shortcut is not None else nn.Identity()
        self.act = act if act is not None else nn.Identity()
        self.drop_rate = drop_rate
        self._add_inplace = bool(body) and _fresh_output(body[-1][1])

    def body(self) -> list[nn.Module]:
        """The body's layers, in order (the shortcut and the activation after the add are not in it)."""
        return [self._modules[name] for name in self._body_names]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.body():
            out = layer(out)
        out = drop_path(out, self.drop_rate, self.training)
        if self._add_inplace:
            out += self.shortcut(x)
        else:
            out = out + self.shortcut(x)
        return self.act(out)

    def extra_repr(self) -> str:
        return f"drop_rate={self.drop_rate}" if self.drop_rate else ""


def _fresh_output(module: nn.Module) -> bool:
    """Whether `module` (a layer, or a Sequential ending in one) returns a new tensor that its own
    backward does not read: conv and batch norm save their inputs, SE its inputs, not the output."""
    while isinstance(module, nn.Sequential) and len(module):
        module = module[-1]
    return isinstance(module, (nn.Conv2d, nn.BatchNorm2d, SqueezeExcite))


class SqueezeExcite(nn.Module):
    """x * gate(fc2(act(fc1(avgpool(x))))), with 1x1 convs as torchvision and timm write it."""

    def __init__(self, channels: int, squeeze: int, act: str, gate: str) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.act = activation(act, inplace=True) or nn.Identity()
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.gate = activation(gate) or nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc2(self.act(self.fc1(self.avgpool(x)))))


class Concat(nn.Module):
    """Parallel named branches, concatenated on channels (an inception module)."""

    def __init__(self, branches: list[tuple[str, nn.Module]]) -> None:
        super().__init__()
        for name, module in branches:
            self.add_module(name, module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.children()], 1)


class Network(nn.Module):
    """The compiled spec: its top-level layers run in order, by name.

    Auxiliary heads run after the layer they tap, in training only; then the output is
    (main, *aux in the spec's order), as torchvision's GoogLeNet and Inception-v3 return.
    """

    def __init__(self, layers: list[tuple[str, nn.Module]], heads: list[tuple[str, str, nn.Module]],
                 spec_name: str) -> None:
        super().__init__()
        self.spec_name = spec_name
        self._trunk = [name for name, _ in layers]
        self._heads = [name for name, _, _ in heads]
        self._taps: dict[str, list[str]] = {}
        for name, tap, _ in heads:
            self._taps.setdefault(tap, []).append(name)
        head_modules = {name: module for name, _, module in heads}
        for name, module in layers:  # registered in execution order: a head right after the layer it taps
            self.add_module(name, module)
            for head in self._taps.get(name, ()):
                self.add_module(head, head_modules[head])

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        aux: dict[str, torch.Tensor] = {}
        for name in self._trunk:
            x = self._modules[name](x)
            if self.training:
                for head in self._taps.get(name, ()):
                    aux[head] = self._modules[head](x)
        if self.training and self._heads:
            return (x, *(aux[head] for head in self._heads))
        return x

    def _drop_aux_heads(self) -> None:
        """Remove the auxiliary heads (training only), for the deploy form. Private: a spec's layer names
        (letters first) can never shadow it, so it adds no reserved name to the language."""
        for head in self._heads:
            delattr(self, head)
        self._heads, self._taps = [], {}

    def extra_repr(self) -> str:
        return f"spec={self.spec_name!r}"
