"""Torch modules shared by the block builders. Only imported when a model is built."""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ..ir.activations import ACTIVATIONS

def activation(name: str | None, inplace: bool = False) -> nn.Module | None:
    """The activation module for `name`, or None for 'none' (or None). `inplace` only on fresh tensors."""
    if name is None or name == "none":
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

    `add_inplace` where the body ends in an op whose output is a fresh tensor that no backward pass needs
    (a conv, a batch norm, SE: the IR's `ends_fresh`): the shortcut is then added in place, as torchvision's
    blocks do (`out += identity`): one activation-sized allocation less per block, and the same aten ops as
    torchvision, op for op. Anywhere else (a body ending in an activation, whose output its backward may
    need, or in a layer that can return its input) the add is out of place."""

    def __init__(self, body: list[tuple[str, nn.Module]], shortcut: nn.Module | None, act: nn.Module | None,
                 drop_rate: float = 0.0, add_inplace: bool = False) -> None:
        super().__init__()
        self._body_names = [name for name, _ in body]
        for name, module in body:
            self.add_module(name, module)
        self.shortcut = shortcut if shortcut is not None else nn.Identity()
        self.act = act if act is not None else nn.Identity()
        self.drop_rate = drop_rate
        self._add_inplace = add_inplace

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


class SqueezeExcite(nn.Module):
    """x * gate(fc2(act(fc1(avgpool(x))))), with 1x1 convs as torchvision and timm write it."""

    def __init__(self, channels: int, squeeze: int, act: str | None = "relu", gate: str | None = "sigmoid") -> None:
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


# The modules of the ops torch lacks. The Python export copies each class's source into the files it writes
# (an op's `Prelude.origin`), so they use only torch and `nn`.

class LayerNorm2d(nn.LayerNorm):
    """Layer norm over the channels of an (N, C, H, W) map, at every position (torchvision's and timm's
    `LayerNorm2d`, ConvNeXt's norm)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = nn.functional.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ChannelLinear(nn.Linear):
    """nn.Linear over the channels of an (N, C, H, W) map, at every position (ConvNeXt's pointwise layers,
    which torchvision writes as Permute + Linear + Permute)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class LayerScale(nn.Module):
    """x * gamma: a learnable multiplier per channel (CaiT; ConvNeXt's `layer_scale`), initialised to `init`."""

    def __init__(self, channels: int, init: float = 1e-6, spatial: bool = True) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((channels, 1, 1) if spatial else (channels,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class ChannelShuffle(nn.Module):
    """Interleave the channels of `groups` groups (ShuffleNet), as torchvision's `channel_shuffle` does."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        x = x.view(n, self.groups, c // self.groups, h, w).transpose(1, 2).contiguous()
        return x.view(n, c, h, w)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


class ChannelSplit(nn.Module):
    """Part `take` of the input's channels cut into `parts` equal parts: a view (ShuffleNetV2's split,
    `x.chunk(2, dim=1)`)."""

    def __init__(self, parts: int, take: int) -> None:
        super().__init__()
        self.parts, self.take = parts, take

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.chunk(self.parts, 1)[self.take]

    def extra_repr(self) -> str:
        return f"parts={self.parts}, take={self.take}"
