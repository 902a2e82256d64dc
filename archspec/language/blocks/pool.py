"""pool: max or average pooling over a fixed window (with `ceil_mode`, as torch)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from ...ir.expr import REQUIRED, Constructor, Expr, square
from .base import Block, Node, NonNegPair, Pair, Shape, pair, window_out

if TYPE_CHECKING:
    from torch import nn

    from ...ir.memory import MemoryReplay, Tensor


MAX_POOL = Constructor("nn.MaxPool2d", (("kernel_size", REQUIRED), ("stride", None), ("padding", 0), ("dilation", 1),
                                        ("ceil_mode", False)))
AVG_POOL = Constructor("nn.AvgPool2d", (("kernel_size", REQUIRED), ("stride", None), ("padding", 0), ("ceil_mode", False),
                                        ("count_include_pad", True)))


class Pool(Block):
    kind = "pooling"
    type: Literal["pool"]
    op: Literal["max", "avg"] = "max"
    kernel: Pair
    stride: Pair | None = None  # default: the kernel size
    padding: NonNegPair = 0
    ceil_mode: bool = False
    count_include_pad: bool = True  # avg only

    def infer(self, x: Shape, path: str) -> tuple[Shape, int, int]:
        c, h, w = self.need_image(x, path)
        (kh, kw), (ph, pw) = pair(self.kernel), pair(self.padding)
        sh, sw = pair(self.stride or self.kernel)
        if ph > kh // 2 or pw > kw // 2:
            self.fail(path, f"padding {ph}x{pw} must be at most half the {kh}x{kw} kernel (torch's rule)")
        oh, ow = window_out(h, kh, sh, ph, 1, self.ceil_mode), window_out(w, kw, sw, pw, 1, self.ceil_mode)
        if oh < 1 or ow < 1:
            self.fail(path, f"a {kh}x{kw} {self.op} pool (stride {sh}x{sw}) does not fit the {h}x{w} input")
        return (c, oh, ow), 0, 0

    def hyper(self) -> str:
        k, s = pair(self.kernel), pair(self.stride or self.kernel)
        return f"{self.op} {k[0]}x{k[1]}/{s[0]}" + (" ceil" if self.ceil_mode else "")

    def replay(self, run: "MemoryReplay", node: Node, x: "Tensor") -> "Tensor":
        return run.pool(x, node.out_shape, self.op, reads_input=True)

    def source(self, node: Node) -> Expr:
        k, s, p = square(pair(self.kernel)), square(pair(self.stride or self.kernel)), square(pair(self.padding))
        stride = None if s == k else s
        if self.op == "max":
            return MAX_POOL(kernel_size=k, stride=stride, padding=p, dilation=1, ceil_mode=self.ceil_mode)
        return AVG_POOL(kernel_size=k, stride=stride, padding=p, ceil_mode=self.ceil_mode,
                        count_include_pad=self.count_include_pad)

    def build(self, node) -> "nn.Module":
        from torch import nn

        k, s, p = pair(self.kernel), pair(self.stride or self.kernel), pair(self.padding)
        if self.op == "max":
            return nn.MaxPool2d(k, s, p, ceil_mode=self.ceil_mode)
        return nn.AvgPool2d(k, s, p, ceil_mode=self.ceil_mode, count_include_pad=self.count_include_pad)
