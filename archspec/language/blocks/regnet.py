"""regnet: the RegNet design space (Radosavovic et al. 2020, "Designing Network Design Spaces", section 3.3
and Appendix C) as torchvision's `BlockParams.from_init_params` quantises it, expanded into its stages.

From the depth d and the widths' offset w0, slope wa and step wm, block j has the continuous width
u_j = w0 + wa*j, its step c_j = round(log(u_j / w0) / log(wm)) and the width w_j = round(w0 * wm^c_j / 8) * 8;
a run of blocks of equal width is a stage (stride 2 on its first block). Each stage's bottleneck width
int(w * multiplier) is then rounded to a multiple of its group width min(group_width, bottleneck width)
(torchvision's `_adjust_widths_groups_compatibilty`), which sets the stage's width. The blocks are RegNet's
`ResBottleneckBlock`s: a bottleneck with no expansion, its 3x3 grouped by the group width, and (RegNet-Y)
squeeze-excitation after the 3x3 to round(se_ratio * the block's input width).

torchvision computes u_j, c_j and w0 * wm^c_j in float32 tensors; so does `quantise`, rounding after each
operation as torch does, so that every width is torchvision's (tests/test_regnet.py compares them).
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from functools import lru_cache
from itertools import groupby
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from ...ir.activations import Activation
from ..scaling import Repeats, make_divisible
from .base import BnEps, BnMomentum, MacroBlock, Node, Norm, PosInt, Shape
from .bottleneck import Bottleneck
from .se import SE
from .sequence import Sequence
from .stage import Stage

QUANT = 8  # widths are multiples of 8 (the paper's w0 too)
STRIDE = 2  # every stage halves the size


def f32(value: float) -> float:
    """`value` rounded to the nearest float32, as a torch float32 tensor holds it."""
    return struct.unpack("f", struct.pack("f", value))[0]


@dataclass(frozen=True)
class Quantised:
    """Per block j: the continuous width u_j, its step c_j, w0 * wm^c_j and the quantised width w_j."""

    continuous: list[float]
    steps: list[int]
    stepped: list[float]
    widths: list[int]


@dataclass(frozen=True)
class StagePlan:
    """One stage: its blocks and widths, through torchvision's group-width adjustment."""

    depth: int
    quantised: int  # w, the blocks' quantised width
    bottleneck: int  # int(w * multiplier)
    group_width: int  # min(group_width, bottleneck)
    adjusted: int  # the bottleneck width rounded to a multiple of the group width (10% rule)
    width: int  # the stage's output width: int(adjusted / multiplier)
    inner: int  # each block's bottleneck width: int(round(width * multiplier))
    groups: int  # inner // group width


def quantise(depth: int, w0: int, wa: float, wm: float) -> Quantised:
    """Step 1 of torchvision's derivation, each float32 operation rounded as torch rounds it."""
    wa32, log_wm = f32(wa), f32(math.log(wm))  # Python scalars meet float32 tensors as float32
    continuous = [f32(f32(j * wa32) + w0) for j in range(depth)]  # torch.arange(depth) * w_a + w_0
    steps = [round(f32(f32(math.log(f32(u / w0))) / log_wm)) for u in continuous]  # round: half to even, as torch
    stepped = [f32(w0 * f32(f32(wm) ** c)) for c in steps]  # w_0 * torch.pow(w_m, capacity)
    return Quantised(continuous, steps, stepped, [round(f32(w / QUANT)) * QUANT for w in stepped])


@lru_cache(maxsize=1024)  # a spec asks for its plan several times (analysis, summary, scale)
def plan(depth: int, w0: int, wa: float, wm: float, group_width: int, multiplier: float) -> tuple[StagePlan, ...]:
    """The stages of a RegNet; a ValueError says why the parameters give none that builds."""
    runs = [(w, len(list(run))) for w, run in groupby(quantise(depth, w0, wa, wm).widths)]
    stages = []
    for i, (w, blocks) in enumerate(runs, 1):
        bottleneck = int(w * multiplier)
        if bottleneck < 1:
            raise ValueError(f"stage {i}'s bottleneck width int({w} x {multiplier:g}) is 0; "
                             "raise bottleneck_multiplier")
        g = min(group_width, bottleneck)
        adjusted = make_divisible(bottleneck, g)
        width = int(adjusted / multiplier)
        inner = int(round(width * multiplier))
        if inner < g:
            raise ValueError(f"stage {i}'s bottleneck width {inner} is narrower than its group width {g}")
        stages.append(StagePlan(blocks, w, bottleneck, g, adjusted, width, inner, inner // g))
    return tuple(stages)


class RegNet(MacroBlock):
    kind = "stage / group"
    width_refused: ClassVar[str] = ("a RegNet's widths come from w0, wa and wm; for a wider one, multiply w0 (keeping "
                                    "it a multiple of 8) and wa instead")
    type: Literal["regnet"]
    depth: Repeats  # blocks in all (d); scales with the depth multiplier, rounded up
    w0: Annotated[int, Field(ge=QUANT, le=1_000_000, multiple_of=QUANT)]  # the first block's width
    wa: Annotated[float, Field(ge=0, le=1_000_000)]  # the width's slope per block
    wm: Annotated[float, Field(gt=1, le=100)]  # the width's step from one stage to the next
    group_width: PosInt  # channels per group of the 3x3 convs
    bottleneck_multiplier: Annotated[float, Field(gt=0, le=64)] = 1.0  # bottleneck width = width x this (1/b)
    se_ratio: Annotated[float, Field(gt=0, le=1)] | None = None  # RegNet-Y: SE to this x the block's input width
    norm: Norm = "batch"
    activation: Activation = "relu"
    bn_eps: BnEps = 1e-5
    bn_momentum: BnMomentum = 0.1

    def stages(self, path: str) -> tuple[StagePlan, ...]:
        try:
            return plan(self.depth, self.w0, self.wa, self.wm, self.group_width, self.bottleneck_multiplier)
        except ValueError as exc:
            self.fail(path, str(exc))

    def expand(self, x: Shape) -> Sequence:
        layers, width_in = [], x[0]
        for i, stage in enumerate(self.stages(""), 1):
            first = {"se": self._se(width_in).model_dump()} if self.se_ratio else {}  # its input: the stage before's
            layers.append(Stage(type="stage", name=f"stage{i}", repeat=stage.depth, block=self._block(stage),
                                first=first))
            width_in = stage.width
        return Sequence(type="sequence", layers=layers)

    def _block(self, stage: StagePlan) -> Bottleneck:
        """The stage's blocks after its first: torchvision's ResBottleneckBlock at the stage's width."""
        se = {"se": self._se(stage.width), "se_after": "conv2"} if self.se_ratio else {}
        return Bottleneck(type="bottleneck", planes=stage.width, expansion=1, width=stage.inner, groups=stage.groups,
                          stride=STRIDE, norm=self.norm, activation=self.activation, bn_eps=self.bn_eps,
                          bn_momentum=self.bn_momentum, **se)

    def _se(self, width_in: int) -> SE:
        """torchvision's squeeze width: int(round(se_ratio * the block's input width))."""
        return SE(squeeze=int(round((self.se_ratio or 0) * width_in)), activation=self.activation)

    def analyse(self, x: Shape, name: str, path: str) -> Node:
        self.stages(path)  # a located error for parameters that give no network
        return super().analyse(x, name, path)

    def hyper(self) -> str:
        stages = self.stages("")
        return (f"depths {[s.depth for s in stages]}, widths {[s.width for s in stages]}, "
                f"g{self.group_width}" + (f", SE {self.se_ratio:g}" if self.se_ratio else ""))

    def derivation(self, x: Shape) -> list[str]:
        """The parameters, every block's widths and every stage's, as torchvision derives them."""
        width_in, q = x[0], quantise(self.depth, self.w0, self.wa, self.wm)
        lines = [f"RegNet design space: depth {self.depth}, w0 {self.w0}, wa {self.wa:g}, wm {self.wm:g}, "
                 f"group width {self.group_width}, bottleneck multiplier {self.bottleneck_multiplier:g}"
                 + (f", SE ratio {self.se_ratio:g}" if self.se_ratio else ""),
                 "block j: u_j = w0 + wa*j, c_j = round(log(u_j / w0) / log(wm)), w_j = round(w0 * wm^c_j / 8) * 8",
                 f"  {'j':>4}{'u_j':>12}{'c_j':>6}{'w0*wm^c_j':>12}{'w_j':>8}"]
        for j, (u, c, stepped, w) in enumerate(zip(q.continuous, q.steps, q.stepped, q.widths)):
            lines.append(f"  {j:>4}{u:>12.2f}{c:>6}{stepped:>12.2f}{w:>8}")
        lines += ["stages: the runs of equal w_j, each first block strided 2; bottleneck = int(w_j * multiplier), "
                  "rounded to",
                  "a multiple of group w = min(group_width, bottleneck) (never 10% down); width = that / multiplier"]
        if self.se_ratio:
            lines.append("SE squeeze = round(se_ratio * the block's input width): the first block's / the others'")
        lines.append(f"  {'stage':<8}{'blocks':>7}{'w_j':>7}{'bottleneck':>12}{'group w':>9}{'adjusted':>10}{'width':>7}"
                     f"{'groups':>8}" + (f"{'SE squeeze':>12}" if self.se_ratio else ""))
        for i, s in enumerate(self.stages(""), 1):
            row = (f"  {f'stage{i}':<8}{s.depth:>7}{s.quantised:>7}{s.bottleneck:>12}{s.group_width:>9}"
                   f"{s.adjusted:>10}{s.width:>7}{s.groups:>8}")
            if self.se_ratio:
                squeeze = [self._se(width_in).squeeze, *([self._se(s.width).squeeze] if s.depth > 1 else [])]
                row += f"{'/'.join(map(str, squeeze)):>12}"
            lines.append(row)
            width_in = s.width
        return lines
