"""conv: a 2-D convolution with optional batch norm and activation (conv -> norm -> act).

Its output channels are `out`, or `expansion` x its input channels: torchvision's MobileNetV3 makes its
last conv 6 x the last block's (scaled) width, which a scaled `out` would only round to."""
from __future__ import annotations

from math import prod
from typing import TYPE_CHECKING, Literal

from ...ir.activations import ACTIVATION_FUNCTION, Activation
from ...ir.expr import REQUIRED, Constructor, Expr, Prelude, square
from ..scaling import MAX_CHANNELS, Channels
from .base import (Block, BnEps, BnMomentum, InitStd, Node, NonNegPair, Norm, Pair, PosInt, Shape, pair,
                   window_out)

if TYPE_CHECKING:
    from torch import nn

    from ...ir.memory import MemoryReplay, Tensor


CONV_NORM_ACT = Constructor(
    "ConvNormAct", (("in_channels", REQUIRED), ("out_channels", REQUIRED), ("kernel_size", REQUIRED), ("stride", 1),
                    ("padding", 0), ("dilation", 1), ("groups", 1), ("bias", None), ("norm", True), ("eps", 1e-5),
                    ("momentum", 0.1), ("act", None)),
    frozenset({"in_channels", "out_channels"}), Prelude('''\
class ConvNormAct(nn.Sequential):
    """conv -> batch norm (if norm) -> activation (if act), as the children conv, norm, act.
    The conv has a bias when there is no norm, unless `bias` says otherwise."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=None, norm=True, eps=1e-5, momentum=0.1, act=None):
        layers = OrderedDict(conv=nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation,
                                            groups, bias=not norm if bias is None else bias))
        if norm:
            layers["norm"] = nn.BatchNorm2d(out_channels, eps, momentum)
        if act is not None:
            layers["act"] = activation(act, inplace=True)
        super().__init__(layers)''', ("ConvNormAct",), (ACTIVATION_FUNCTION,)))


class Conv(Block):
    kind = "convolution"
    type: Literal["conv"]
    out: Channels | None = None  # output channels; or:
    expansion: PosInt | None = None  # output channels = input channels x expansion (MobileNetV3's last conv)
    kernel: Pair
    stride: Pair = 1
    # 'auto' pads dilation*(kernel-1)//2 per side (torchvision's Conv2dNormActivation);
    # 'same' keeps the size at stride 1 (torch's padding='same').
    padding: NonNegPair | Literal["auto", "same"] = "auto"
    dilation: Pair = 1
    groups: PosInt = 1
    bias: bool | None = None  # default: a bias only when there is no norm
    norm: Norm = "none"
    bn_eps: BnEps = 1e-5
    bn_momentum: BnMomentum = 0.1
    activation: Activation = "none"
    # false: `out` never scales (MNASNet's last conv, a classifier conv); up: a multiplier below 1 keeps it and
    # one above 1 widens it (MobileNetV2's last conv)
    scales_with_width: bool | Literal["up"] = True
    init_std: InitStd | None = None  # this layer's std under the truncated-normal init schemes

    def padding_pair(self) -> tuple[int, int]:
        if self.padding == "same" or self.padding == "auto":
            (kh, kw), (dh, dw) = pair(self.kernel), pair(self.dilation)
            return dh * (kh - 1) // 2, dw * (kw - 1) // 2
        return pair(self.padding)

    def has_bias(self) -> bool:
        return self.norm == "none" if self.bias is None else self.bias

    def scaled_value(self, field: str, base: int, scaled: int) -> int:
        if field != "out":
            return scaled
        if self.scales_with_width is False:
            return base
        return max(base, scaled) if self.scales_with_width == "up" else scaled

    def out_channels(self, c: int) -> int:
        """Output channels at `c` input channels."""
        return self.out if self.out is not None else c * (self.expansion or 1)

    def infer(self, x: Shape, path: str) -> tuple[Shape, int, int]:
        c, h, w = self.need_image(x, path)
        if self.out is None and self.expansion is None:
            self.fail(path, "missing required field 'out' (or 'expansion', a multiple of the input channels)")
        if self.out is not None and self.expansion is not None:
            self.fail(path, "give 'out' (the output channels) or 'expansion' (a multiple of the input channels), not both")
        out = self.out_channels(c)
        if out > MAX_CHANNELS:
            self.fail(path, f"'expansion' {self.expansion} makes {out:,} channels from {c:,}, over the limit of {MAX_CHANNELS:,}")
        if c % self.groups or out % self.groups:
            named = "'out'" if self.out is not None else "the output channels"
            self.fail(path, f"groups={self.groups} must divide both the input channels ({c}) and {named} ({out})")
        (kh, kw), (sh, sw), (dh, dw) = pair(self.kernel), pair(self.stride), pair(self.dilation)
        if self.padding == "same":
            if (sh, sw) != (1, 1):
                self.fail(path, "padding 'same' needs stride 1; use 'auto' or explicit padding with a stride")
            if (dh * (kh - 1)) % 2 or (dw * (kw - 1)) % 2:
                self.fail(path, "padding 'same' needs an odd effective kernel; use explicit padding")
        ph, pw = self.padding_pair()
        oh, ow = window_out(h, kh, sh, ph, dh), window_out(w, kw, sw, pw, dw)
        if oh < 1 or ow < 1:
            self.fail(path, f"a {kh}x{kw} kernel (stride {sh}x{sw}, padding {ph}x{pw}, dilation {dh}x{dw}) "
                            f"does not fit the {h}x{w} input; it would give {oh}x{ow}")
        weights = out * (c // self.groups) * kh * kw
        params = weights + (out if self.has_bias() else 0) + (2 * out if self.norm == "batch" else 0)
        return (out, oh, ow), params, weights * oh * ow

    def hyper(self) -> str:
        k, s = pair(self.kernel), pair(self.stride)
        parts = [f"{k[0]}x{k[1]}", f"{self.out}" if self.out is not None else f"x{self.expansion}"]
        if s != (1, 1):
            parts.append(f"/{s[0]}" if s[0] == s[1] else f"/{s[0]}x{s[1]}")
        if self.groups > 1:
            parts.append(f"g{self.groups}")
        return " ".join(parts)

    def replay(self, run: "MemoryReplay", node: Node, x: "Tensor") -> "Tensor":
        n = prod(node.out_shape)
        y = run.new(n)
        run.keep(x)
        if self.norm == "batch":
            z = run.batchnorm(y, n, node.out_shape[0])
            run.drop(y)
            y = z
        return run.activation(self.activation, y, n, inplace=True)

    def fresh_output(self, node: Node) -> bool:
        return self.activation == "none"

    def buffers(self, node: Node) -> tuple[int, int]:
        return (2 * node.out_shape[0], 1) if self.norm == "batch" else (0, 0)

    def torch_padding(self) -> tuple[int, int] | str:
        return "same" if self.padding == "same" else self.padding_pair()

    def source(self, node: Node) -> Expr:
        norm = self.norm == "batch"
        return CONV_NORM_ACT(in_channels=node.in_shape[0], out_channels=node.out_shape[0],
                             kernel_size=square(pair(self.kernel)), stride=square(pair(self.stride)),
                             padding=square(self.torch_padding()), dilation=square(pair(self.dilation)),
                             groups=self.groups, bias=None if self.has_bias() == (not norm) else self.has_bias(),
                             norm=norm, eps=self.bn_eps if norm else 1e-5, momentum=self.bn_momentum if norm else 0.1,
                             act=None if self.activation == "none" else self.activation)

    def build(self, node) -> "nn.Module":
        from torch import nn

        from ...backend.nn import activation, sequential

        out = node.out_shape[0]
        conv = nn.Conv2d(node.in_shape[0], out, pair(self.kernel), pair(self.stride), self.torch_padding(),
                         pair(self.dilation), self.groups, self.has_bias())
        if self.init_std is not None:
            conv.init_std = self.init_std
        norm = nn.BatchNorm2d(out, self.bn_eps, self.bn_momentum) if self.norm == "batch" else None
        return sequential([("conv", conv), ("norm", norm), ("act", activation(self.activation, inplace=True))])
