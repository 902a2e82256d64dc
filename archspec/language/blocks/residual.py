"""residual: `act(body(x) + shortcut(x))`, the generic skip connection.

shortcut `auto` is the identity where the body keeps the shape, else a 1x1 conv + BN
projection with the body's stride (torchvision's `downsample`); `projection` always
projects; `identity` never does (a shape mismatch is then an error); a list of layers
is an explicit shortcut path. `projection_kernel` widens a strided projection's window
(timm's `down_kernel_size`, 3 in SENet-154); a projection that does not stride stays 1x1.
`shortcut_pool: avg` strides a projection by average pooling before a stride-1 1x1 conv instead
(ResNet-D, He et al. 2019 "Bag of Tricks", Figure 2c; timm's `avg_down`).
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, model_validator

from ...ir.activations import Activation
from ...units import plural
from .anyblock import BlockList
from .base import (RESIDUAL_RESERVED, Block, BnEps, BnMomentum, MacroBlock, Node, Norm, PosInt, Shape,
                   chain, check_unique_names, child_path, composite, fmt_shape, group, named, validation_message, window_out)
from .conv import Conv
from .pool import Pool


ProjectionKernel = Literal[1, 3, 5, 7]  # odd: padding (k-1)//2 keeps the 1x1 projection's output size
ShortcutPool = Literal["none", "avg"]


class Residual(Block):
    kind = "residual block"
    type: Literal["residual"]
    body: BlockList
    shortcut: Literal["auto", "identity", "projection"] | BlockList = "auto"
    activation: Activation = "none"
    norm: Norm = "batch"  # of an automatic projection
    projection_kernel: ProjectionKernel = 1  # of an automatic projection that strides
    shortcut_pool: ShortcutPool = "none"  # "avg": an automatic projection that strides average-pools first
    bn_eps: BnEps = 1e-5
    bn_momentum: BnMomentum = 0.1
    drop_path: Annotated[float, Field(ge=0, lt=1)] | None = None  # stochastic depth; None: the spec's rule

    @model_validator(mode="after")
    def _names(self) -> "Residual":
        check_unique_names(self.body, self.name or "", reserved=RESIDUAL_RESERVED)
        if isinstance(self.shortcut, list):
            check_unique_names(self.shortcut, child_path(self.name or "", "shortcut"))
        return self

    def projection(self, x: Shape, out: Shape, path: str) -> Node:
        """The automatic projection's node, named `shortcut`: a conv, or (`shortcut_pool: avg`, strided) a
        group of `pool` and `conv` as timm's `downsample_avg` (AvgPool2d(ceil_mode, count_include_pad=False))."""
        stride = tuple(self._stride(i, o, path, x, out) for i, o in zip(x[1:], out[1:]))
        pooled = self.shortcut_pool == "avg" and max(stride) > 1
        kernel = self.projection_kernel if max(stride) > 1 and not pooled else 1
        try:
            conv = Conv(type="conv", out=out[0], kernel=kernel, stride=(1, 1) if pooled else stride,
                        padding=(kernel - 1) // 2, norm=self.norm, bn_eps=self.bn_eps, bn_momentum=self.bn_momentum)
            pool = Pool(type="pool", name="pool", op="avg", kernel=stride, ceil_mode=True, count_include_pad=False)
        except ValidationError as exc:  # wider or more strided than a conv may be
            self.fail(path, f"cannot project {fmt_shape(x)} to {fmt_shape(out)}: {validation_message(exc)}")
        shortcut_path = child_path(path, "shortcut")
        if pooled:
            layers = [pool.located(self._loc), conv.model_copy(update={"name": "conv"}).located(self._loc)]
            return group(self, "shortcut", "shortcut", shortcut_path, x, layers)
        return conv.located(self._loc).analyse(x, "shortcut", shortcut_path)

    def _stride(self, size: int, out: int, path: str, x: Shape, y: Shape) -> int:
        # The smallest stride s with (size - 1) // s <= out - 1; no other stride can give exactly `out`.
        stride = (size - 1) // out + 1 if out >= 1 else 0
        if stride < 1 or window_out(size, 1, stride, 0) != out:
            self.fail(path, f"no strided 1x1 projection maps the input {fmt_shape(x)} to the body's output "
                            f"{fmt_shape(y)}; give an explicit shortcut")
        return stride

    def analyse(self, x: Shape, name: str, path: str) -> Node:
        if not self.body:
            self.fail(path, "a residual needs at least one layer in its body")
        children = chain(named(self.body), x, path)
        out = children[-1].out_shape
        shortcut_path = child_path(path, "shortcut")
        if isinstance(self.shortcut, list):
            children.append(group(self, "shortcut", "shortcut", shortcut_path, x, self.shortcut))
        elif self.shortcut == "projection" or (self.shortcut == "auto" and x != out):
            if len(x) != 3 or len(out) != 3:
                self.fail(path, f"cannot project {fmt_shape(x)} to {fmt_shape(out)}; give an explicit shortcut")
            children.append(self.projection(x, out, path))
        skip = children[-1].out_shape if children[-1].name == "shortcut" else x
        if skip != out:
            self.fail(path, f"cannot add the body's output {fmt_shape(out)} to the shortcut's {fmt_shape(skip)} "
                            f"(shortcut: {self.shortcut if isinstance(self.shortcut, str) else 'layers'})")
        return composite(self, name, path, x, children, out, form="residual")

    def hyper(self) -> str:
        return f"{plural(len(self.body), 'layer')} + skip"

    def drop_rate(self, node: Node) -> float:
        """The stochastic depth rate of the analysed residual: its own `drop_path`, else the spec's rule."""
        return node.drop_rate if self.drop_path is None else self.drop_path


class ResidualUnit(MacroBlock):
    """What the ResNet family's macro blocks (basic, bottleneck) share: the fields they pass on to the
    residual they expand to, for its activation after the add and its automatic projection."""

    kind = "residual block"
    stride: PosInt = 1
    norm: Norm = "batch"
    activation: Activation = "relu"  # after the body's inner convs and after the addition
    bn_eps: BnEps = 1e-5
    bn_momentum: BnMomentum = 0.1
    shortcut: Literal["auto", "identity", "projection"] = "auto"
    projection_kernel: ProjectionKernel = 1
    shortcut_pool: ShortcutPool = "none"

    def conv_unit(self) -> dict[str, Any]:
        """The fields every conv of the body shares."""
        return dict(type="conv", norm=self.norm, bn_eps=self.bn_eps, bn_momentum=self.bn_momentum)

    def residual(self, body: list[Block]) -> Residual:
        return Residual(type="residual", body=body, shortcut=self.shortcut, projection_kernel=self.projection_kernel,
                        shortcut_pool=self.shortcut_pool, activation=self.activation, norm=self.norm, bn_eps=self.bn_eps, bn_momentum=self.bn_momentum)
