"""Property-based tests: random VALID specs from the whole block vocabulary compile, and the compiled
module agrees with the analysis exactly (output shape of the network and of every block, parameters,
MACs as torch.utils.flop_counter counts them, auxiliary heads' outputs in training).

The strategy tracks the (C, H, W) or (features,) shape while it draws blocks, so every spec it makes is
valid by construction: blocks inside a stage, a residual body or an inception branch follow the
"regular" size rule out = (in - 1) // stride + 1 (odd kernels, 'auto' padding), which every repetition,
automatic projection and concatenation preserves. (A stage's later repetitions are chained with
archspec's own analysis; a block that cannot take its own output again falls back to one repetition.)
Seeded (derandomize) and bounded for CI: about 100 examples in 30 s, 150 more under `slow`.
"""
from __future__ import annotations

from math import prod
from typing import Any

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

import archspec
from archspec.ir.activations import ACTIVATIONS as ACTIVATION_TABLE
from archspec.language.blocks import BLOCK_TYPES
from archspec.language.blocks.base import window_out

ACTIVATIONS = ["none", *ACTIVATION_TABLE]  # every activation archspec/ir/activations.py defines
LAYER_ACTIVATIONS = ACTIVATIONS[1:]
MAX_CHANNELS = 12
MAX_DEPTH = 3  # composite nesting

Shape = tuple[int, ...]


class Draw:
    """Draws one valid spec, block by block, from `st.data()`, tracking the shape."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data
        self.drawn: set[str] = set()  # block types used, for the coverage test

    # -- primitives ---------------------------------------------------------------------------
    def int(self, lo: int, hi: int) -> int:
        return self.data.draw(st.integers(lo, hi))

    def pick(self, options: list[Any]) -> Any:
        return self.data.draw(st.sampled_from(options))

    def flag(self) -> bool:
        return self.data.draw(st.booleans())

    def maybe(self, p_of_4: int = 1) -> bool:
        return self.int(1, 4) <= p_of_4

    def unit(self, lo: float, hi: float) -> float:
        return self.data.draw(st.floats(lo, hi, allow_nan=False, allow_infinity=False))

    def options(self, block: dict[str, Any], **fields: Any) -> dict[str, Any]:
        """Add each optional field with probability 1/2 (its default applies otherwise)."""
        for name, strategy in fields.items():
            if self.flag():
                block[name] = strategy()
        return block

    def norm_act(self, block: dict[str, Any]) -> dict[str, Any]:
        return self.options(block, norm=lambda: self.pick(["none", "batch"]), activation=lambda: self.pick(ACTIVATIONS),
                            bn_eps=lambda: self.pick([1e-5, 1e-3]), bn_momentum=lambda: self.pick([0.1, 0.01]))

    def mark(self, block: dict[str, Any] | str) -> dict[str, Any] | str:
        self.drawn.add(block if isinstance(block, str) else block["type"])
        return block

    # -- the spec -----------------------------------------------------------------------------
    def spec(self, first: str | None = None) -> dict[str, Any]:
        """A whole spec; `first` forces the type of the first layer ('aux_head': at least one head)."""
        channels = self.int(1, 3)
        size = self.pick([self.int(8, 32), [self.int(8, 24), self.int(8, 24)]])
        h, w = (size, size) if isinstance(size, int) else size
        shape: Shape = (channels, h, w)
        layers: list[Any] = []
        if first in ("linear",):  # needs a flat input
            layers.append(self.mark({"type": "global_pool", "flatten": True}))
            shape = (channels,)
        if first is not None and first != "aux_head":
            kind = "activation" if first in LAYER_ACTIVATIONS else first
            block, shape = getattr(self, f"b_{kind}")(shape, 0, False, False)
            if kind == "activation":
                block = {"type": first}
            layers.append(self.mark(block))
        if not layers or self.flag():
            more, shape = self.layers(shape, 0, 4, regular=False)
            layers += more
        if self.maybe(3):  # a classifier head
            if len(shape) == 3:
                layers.append(self.mark({"type": "global_pool", "op": self.pick(["avg", "max"]), "flatten": True}))
                shape = (shape[0],)
            layers.append(self.mark({"type": "linear", "out": self.int(1, 10)}))
            shape = (layers[-1]["out"],)
        for i, layer in enumerate(layers):  # top-level names (auxiliary heads tap them)
            if isinstance(layer, str):
                layers[i] = layer = {"type": layer}
            layer["name"] = f"l{i}"
        spec: dict[str, Any] = {"name": "hypothesis", "input": {"channels": channels, "size": size}, "layers": layers}
        heads = self.aux_heads(layers, (channels, h, w), at_least_one=first == "aux_head")
        if heads:
            spec["aux_heads"] = heads
        if self.maybe():
            spec["defaults"] = {"conv": self.norm_act({}), "mbconv": self.options({}, activation=lambda: self.pick(ACTIVATIONS))}
        if self.maybe():
            spec["stochastic_depth"] = self.pick([0.1, 0.2])
        return spec

    def aux_heads(self, layers: list[dict[str, Any]], shape: Shape, at_least_one: bool = False) -> list[dict[str, Any]]:
        shapes = []
        for layer in layers:
            shape = _shape_after(layer, shape)
            shapes.append(shape)
        heads = []
        for k in range(self.pick([1, 2] if at_least_one else [0, 0, 0, 1, 2])):
            i = self.int(0, len(layers) - 1)
            if len(shapes[i]) == 3:
                head = [{"type": "adaptive_pool", "output": self.int(1, 2)},
                        {"type": "conv", "out": self.int(1, 6), "kernel": 1, "norm": "batch", "activation": "relu"},
                        {"type": "flatten"}, {"type": "dropout", "p": 0.5}, {"type": "linear", "out": self.int(1, 5)}]
            else:
                head = [{"type": "linear", "out": self.int(1, 5)}]
            heads.append({"name": f"aux{k}", "tap": layers[i]["name"], "layers": head})
            self.drawn.add("aux_head")
        return heads

    # -- layer lists --------------------------------------------------------------------------
    def layers(self, shape: Shape, depth: int, most: int, regular: bool, repeat_safe: bool = False) -> tuple[list, Shape]:
        layers = []
        for _ in range(self.int(1, most)):
            block, shape = self.block(shape, depth, regular, repeat_safe)
            layers.append(block)
        return layers, shape

    def block(self, shape: Shape, depth: int, regular: bool, repeat_safe: bool = False) -> tuple[Any, Shape]:
        """One block valid at `shape`. `regular`: keep out = (in - 1) // stride + 1 in H and W;
        `repeat_safe`: also valid when fed its own output again (no grouped plain convs)."""
        if len(shape) == 1:
            kinds = ["linear", "dropout", "activation", "batchnorm", "flatten", "group_norm", "layer_norm", "layer_scale"]
            if depth < MAX_DEPTH:
                kinds += ["sequence", "stage", "residual"]
        else:
            kinds = ["conv", "conv", "pool", "lrn", "dropout", "activation", "batchnorm", "se", "basic", "bottleneck",
                     "inception_v1", "depthwise", "mbconv", "fused_mbconv", "group_norm", "layer_norm", "layer_scale",
                     "channel_shuffle", "linear"]
            if not repeat_safe:  # it changes the channels
                kinds += ["channel_split"]
            if not regular:
                kinds += ["adaptive_pool", "global_pool", "flatten"]
            if depth < MAX_DEPTH:
                kinds += ["sequence", "stage", "residual", "inception"]
        kind = self.pick(kinds)
        block, out = getattr(self, f"b_{kind}")(shape, depth, regular, repeat_safe)
        return self.mark(block), out

    # -- leaves -------------------------------------------------------------------------------
    def b_conv(self, x: Shape, depth: int, regular: bool, repeat_safe: bool) -> tuple[dict, Shape]:
        c, h, w = x
        groups = 1 if repeat_safe or regular and self.flag() else self.pick([g for g in range(1, c + 1) if c % g == 0])
        out = groups * self.int(1, max(1, MAX_CHANNELS // groups))
        block: dict[str, Any] = {"type": "conv", "out": out}
        if groups > 1:
            block["groups"] = groups
        if regular:
            k = self.pick([1, 3, 5, [1, 3], [3, 1]])
            stride = self.pick([1, 1, 2, [1, 2], [2, 1]])
            dilation = self.pick([1, 1, 2])
            padding = self.pick(["auto", "same"]) if stride == 1 else "auto"
            block.update(kernel=k, stride=stride, dilation=dilation, padding=padding)
            (sh, sw) = _pair(stride)
            out_shape = (out, (h - 1) // sh + 1, (w - 1) // sw + 1)
        else:
            k, stride, dilation = self.pick([1, 2, 3, 4, 5, [2, 3]]), self.pick([1, 2, 3, [1, 2]]), self.pick([1, 2])
            padding = self.pick(["auto", 0, 1, 2, [0, 1]])
            block.update(kernel=k, stride=stride, dilation=dilation, padding=padding)
            (kh, kw), (sh, sw), d = _pair(k), _pair(stride), dilation
            ph, pw = (d * (kh - 1) // 2, d * (kw - 1) // 2) if padding == "auto" else _pair(padding)
            oh, ow = window_out(h, kh, sh, ph, d), window_out(w, kw, sw, pw, d)
            if oh < 1 or ow < 1:  # does not fit: a 1x1 always does
                block.update(kernel=1, padding=0, dilation=1)
                oh, ow = (h - 1) // sh + 1, (w - 1) // sw + 1
            out_shape = (out, oh, ow)
        self.norm_act(block)
        self.options(block, bias=self.flag, init_std=lambda: self.pick([0.01, 0.1]))
        return block, out_shape

    def b_pool(self, x: Shape, depth: int, regular: bool, repeat_safe: bool) -> tuple[dict, Shape]:
        c, h, w = x
        op = self.pick(["max", "avg"])
        if regular:
            k, s = self.pick([1, 3]), self.pick([1, 2])
            block = {"type": "pool", "op": op, "kernel": k, "stride": s, "padding": k // 2}
            return block, (c, (h - 1) // s + 1, (w - 1) // s + 1)
        k = self.pick([1, 2, 3, [2, 3]])
        s = self.pick([None, 1, 2, 3])
        (kh, kw) = _pair(k)
        p = self.int(0, min(kh, kw) // 2)
        ceil = self.flag()
        block = {"type": "pool", "op": op, "kernel": k, "padding": p, "ceil_mode": ceil}
        if s is not None:
            block["stride"] = s
        if op == "avg":
            self.options(block, count_include_pad=self.flag)
        sh, sw = _pair(s or k)
        oh, ow = window_out(h, kh, sh, p, 1, ceil), window_out(w, kw, sw, p, 1, ceil)
        if oh < 1 or ow < 1:
            return {"type": "pool", "op": op, "kernel": 1}, x
        return block, (c, oh, ow)

    def b_adaptive_pool(self, x: Shape, *_: Any) -> tuple[dict, Shape]:
        output = self.pick([1, 2, 3, [1, 2]])
        return {"type": "adaptive_pool", "op": self.pick(["max", "avg"]), "output": output}, (x[0], *_pair(output))

    def b_global_pool(self, x: Shape, *_: Any) -> tuple[dict, Shape]:
        flatten = self.flag()
        return {"type": "global_pool", "op": self.pick(["max", "avg"]), "flatten": flatten}, (x[0],) if flatten else (x[0], 1, 1)

    def b_flatten(self, x: Shape, *_: Any) -> tuple[dict, Shape]:
        if prod(x) > 768:  # keep the linear layers small: pool first
            return {"type": "global_pool", "flatten": True}, (x[0],)
        return {"type": "flatten"}, (prod(x),)

    def b_lrn(self, x: Shape, *_: Any) -> tuple[dict, Shape]:
        return self.options({"type": "lrn"}, size=lambda: self.int(1, 5), alpha=lambda: self.pick([1e-4, 1e-3]),
                            beta=lambda: self.pick([0.75, 0.5]), k=lambda: self.pick([1.0, 2.0])), x

    def b_dropout(self, x: Shape, *_: Any) -> tuple[dict, Shape]:
        return self.options({"type": "dropout"}, p=lambda: self.pick([0.0, 0.2, 0.5])), x

    def b_activation(self, x: Shape, *_: Any) -> tuple[Any, Shape]:
        kind = self.pick(LAYER_ACTIVATIONS)
        return (kind if self.flag() else {"type": kind}), x  # the bare-string shorthand, too

    def b_batchnorm(self, x: Shape, *_: Any) -> tuple[dict, Shape]:
        return self.options({"type": "batchnorm"}, eps=lambda: self.pick([1e-5, 1e-3]), momentum=lambda: 0.1), x

    def b_linear(self, x: Shape, depth: int = 0, regular: bool = False, repeat_safe: bool = False) -> tuple[dict, Shape]:
        if len(x) == 3:  # over the channels at every position
            out = x[0] if repeat_safe else self.int(1, 16)
            return self.options({"type": "linear", "out": out, "over": "channels"}, bias=self.flag), (out, *x[1:])
        out = self.int(1, 16)
        return self.options({"type": "linear", "out": out}, bias=self.flag, init_std=lambda: 0.01), (out,)

    def divisor_of(self, channels: int) -> int:
        return self.pick([g for g in (1, 2, 3, 4) if channels % g == 0])

    def b_group_norm(self, x: Shape, *_: Any) -> tuple[dict, Shape]:
        if prod(x) == 1:  # one value: no group holds more (archspec refuses it, as torch does at batch 1)
            return {"type": "dropout"}, x
        groups = self.pick([g for g in (1, 2, 3, 4) if x[0] % g == 0 and x[0] // g * prod(x[1:]) > 1])
        return self.options({"type": "group_norm", "groups": groups}, eps=lambda: 1e-3), x

    def b_layer_norm(self, x: Shape, *_: Any) -> tuple[dict, Shape]:
        return self.options({"type": "layer_norm"}, eps=lambda: self.pick([1e-6, 1e-3])), x

    def b_layer_scale(self, x: Shape, *_: Any) -> tuple[dict, Shape]:
        return self.options({"type": "layer_scale"}, init=lambda: self.pick([1e-6, 0.5, -2.0])), x

    def b_channel_shuffle(self, x: Shape, *_: Any) -> tuple[dict, Shape]:
        return {"type": "channel_shuffle", "groups": self.divisor_of(x[0])}, x

    def b_channel_split(self, x: Shape, *_: Any) -> tuple[dict, Shape]:
        parts = self.divisor_of(x[0])
        return {"type": "channel_split", "parts": parts, "take": self.int(0, parts - 1)}, (x[0] // parts, *x[1:])

    def se(self) -> dict[str, Any]:
        block: dict[str, Any] = {}
        if self.maybe():
            block["squeeze"] = self.int(1, 6)
        else:
            self.options(block, ratio=lambda: self.pick([0.25, 0.5, 1.0, 1 / 16]), divisor=lambda: self.pick([1, 4, 8]),
                         round_limit=lambda: self.pick([0.0, 0.9]))
        self.options(block, activation=lambda: self.pick(ACTIVATIONS), gate=lambda: self.pick(["sigmoid", "hardsigmoid"]))
        self.drawn.add("se")
        return block

    def b_se(self, x: Shape, *_: Any) -> tuple[dict, Shape]:
        return {"type": "se", **self.se()}, x

    # -- macro blocks (all regular and repeat-safe) ---------------------------------------------
    def _strided(self, x: Shape, stride: int, out: int) -> Shape:
        return (out, (x[1] - 1) // stride + 1, (x[2] - 1) // stride + 1)

    def _shortcut(self, block: dict[str, Any], keeps: bool) -> None:
        choices = ["auto", "projection"] + (["identity"] if keeps else [])
        if self.flag():
            block["shortcut"] = self.pick(choices)
        self.options(block, shortcut_pool=lambda: self.pick(["none", "avg"]))

    def b_basic(self, x: Shape, *_: Any) -> tuple[dict, Shape]:
        out, stride = self.int(1, MAX_CHANNELS), self.pick([1, 2])
        block = self.norm_act({"type": "basic", "out": out, "stride": stride})
        self._shortcut(block, stride == 1 and out == x[0])
        return block, self._strided(x, stride, out)

    def b_bottleneck(self, x: Shape, *_: Any) -> tuple[dict, Shape]:
        planes, expansion, stride = self.int(1, 6), self.pick([1, 2, 4]), self.pick([1, 2])
        block: dict[str, Any] = {"type": "bottleneck", "planes": planes, "expansion": expansion, "stride": stride}
        groups = self.pick([1, 1, 2, 3])
        if groups > 1:
            block["groups"] = groups
        wpg = self.pick([64, 32, 128, 16])
        if int(planes * wpg / 64) < 1 or self.maybe():
            block["width"] = groups * self.int(1, 4)
        elif wpg != 64:
            block["width_per_group"] = wpg
        self.options(block, stride_on=lambda: self.pick(["3x3", "1x1"]))
        self.norm_act(block)
        if self.maybe(2):
            block["se"] = self.se()
        self._shortcut(block, stride == 1 and planes * expansion == x[0])
        return block, self._strided(x, stride, planes * expansion)

    def b_depthwise(self, x: Shape, *_: Any) -> tuple[dict, Shape]:
        out, stride = self.int(1, MAX_CHANNELS), self.pick([1, 2])
        block = self.norm_act({"type": "depthwise", "out": out, "kernel": self.pick([1, 3, 5]), "stride": stride})
        self.options(block, pw_activation=lambda: self.pick(ACTIVATIONS))
        return block, self._strided(x, stride, out)

    def b_mbconv(self, x: Shape, *_: Any) -> tuple[dict, Shape]:
        out, stride = self.int(1, MAX_CHANNELS), self.pick([1, 2])
        block: dict[str, Any] = {"type": "mbconv", "out": out, "kernel": self.pick([1, 3, 5]), "stride": stride}
        if self.maybe():
            block["expanded"] = self.int(1, 16)
        else:
            self.options(block, expand_ratio=lambda: self.pick([1, 2.5, 4, 6]), divisor=lambda: self.pick([1, 4, 8]))
        if self.maybe(2):
            block["se"] = {**self.se(), **({"ratio_of": "input"} if self.flag() else {})}
        self.norm_act(block)
        self.options(block, residual=self.flag, stochastic_depth=lambda: self.pick([0.0, 0.1]))
        return block, self._strided(x, stride, out)

    def b_fused_mbconv(self, x: Shape, *_: Any) -> tuple[dict, Shape]:
        block, out = self.b_mbconv(x)
        return {**block, "type": "fused_mbconv"}, out

    def b_regnet(self, x: Shape, *_: Any) -> tuple[dict, Shape]:
        block = {"type": "regnet", "depth": self.int(1, 4), "w0": 8 * self.int(1, 2), "wa": self.pick([0.0, 3.5, 8.25]),
                 "wm": self.pick([1.5, 2.0, 2.5]), "group_width": self.int(1, 8)}
        # an SE of round(ratio x the input width) needs at least one channel
        self.options(block, bottleneck_multiplier=lambda: self.pick([0.5, 1.0, 2.0]),
                     se_ratio=lambda: self.pick([0.5, 1.0] if x[0] >= 2 else [1.0]))
        self.norm_act(block)
        return block, _shape_after(block, x)

    def b_inception_v1(self, x: Shape, *_: Any) -> tuple[dict, Shape]:
        cols = {k: self.int(1, 6) for k in ("c1x1", "c3x3_reduce", "c3x3", "c5x5_reduce", "c5x5", "pool_proj")}
        block = {"type": "inception_v1", **cols}
        self.options(block, c5x5_kernel=lambda: self.pick([3, 5]), pool_ceil_mode=self.flag, bias=self.flag)
        self.norm_act(block)
        return block, (cols["c1x1"] + cols["c3x3"] + cols["c5x5"] + cols["pool_proj"], x[1], x[2])

    # -- composites ---------------------------------------------------------------------------
    def b_sequence(self, x: Shape, depth: int, regular: bool, repeat_safe: bool) -> tuple[dict, Shape]:
        layers, out = self.layers(x, depth + 1, 3, regular, repeat_safe)
        return {"type": "sequence", "layers": _named(layers, self)}, out

    def b_stage(self, x: Shape, depth: int, regular: bool, repeat_safe: bool) -> tuple[dict, Shape]:
        block, first = self.block(x, depth + 1, regular=len(x) == 3, repeat_safe=True)
        stage = {"type": "stage", "repeat": self.int(1, 3), "block": block}
        if stage["repeat"] == 1:
            return stage, first
        try:  # a block fed its own output again may not fit (an identity shortcut, a changed width)
            return stage, _shape_after(stage, x)
        except archspec.SpecError:
            return {**stage, "repeat": 1}, first

    def b_residual(self, x: Shape, depth: int, regular: bool, repeat_safe: bool) -> tuple[dict, Shape]:
        block: dict[str, Any] = {"type": "residual"}
        if len(x) == 1:  # linear layers back to the input width, then add
            body, _ = self.layers(x, depth + 1, 2, False, repeat_safe)
            body.append({"type": "linear", "out": x[0]})
            block["body"] = _named(body, self)
            if self.flag():
                block["shortcut"] = self.pick(["auto", "identity", [{"type": "linear", "out": x[0]}]])
            return block, x
        body, out = self.layers(x, depth + 1, 3, True, repeat_safe)
        block["body"] = _named(body, self)
        sh, sw = (_projection_stride(x[1], out[1]), _projection_stride(x[2], out[2]))
        choice = self.pick(["auto", "auto", "projection", "explicit"] + (["identity"] if out == x else []))
        if choice == "explicit":
            block["shortcut"] = [{"type": "conv", "out": out[0], "kernel": 1, "stride": [sh, sw], "padding": 0},
                                 {"type": "batchnorm"}]
        elif choice != "auto" or self.flag():
            block["shortcut"] = choice
        self.options(block, activation=lambda: self.pick(ACTIVATIONS), norm=lambda: self.pick(["none", "batch"]),
                     drop_path=lambda: self.pick([0.0, 0.2]))
        return block, out

    def b_inception(self, x: Shape, depth: int, regular: bool, repeat_safe: bool) -> tuple[dict, Shape]:
        stride = self.pick([1, 1, 2])
        target = self._strided(x, stride, 0)[1:]
        branches, channels = {}, 0
        for name in ["b1", "b2", "b3", "pool"][:self.int(1, 4)]:
            layers, out = ([], x) if stride == 1 and self.maybe() else self.layers(x, depth + 1, 2, True, repeat_safe)
            layers = _named(layers, self)
            if out[1:] != target and out[1:] == x[1:]:  # bring the branch to the common stride
                layers.append({"type": "pool", "op": "max", "kernel": 3, "stride": stride, "padding": 1})
            elif out[1:] != target:  # strided otherwise: one strided conv instead
                layers = [{"type": "conv", "out": self.int(1, 6), "kernel": 3, "stride": stride}]
                out = (layers[0]["out"], *target)
            branches[name] = layers
            channels += out[0]
        return {"type": "inception", "branches": branches}, (channels, *target)


def _pair(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (v[0], v[1])


def _projection_stride(size: int, out: int) -> int:
    return (size - 1) // out + 1


def _named(layers: list[Any], draw: Draw) -> list[Any]:
    """Give some layers names (unique in their list); the rest go by index."""
    named = []
    for i, layer in enumerate(layers):
        if draw.flag():
            layer = {"type": layer} if isinstance(layer, str) else dict(layer)
            layer["name"] = f"n{i}"
        named.append(layer)
    return named


def _shape_after(block: Any, x: Shape) -> Shape:
    """The output shape by archspec's own analysis (used only to chain repetitions and taps)."""
    spec = archspec.loads(yaml.safe_dump({"name": "probe", "input": {"channels": x[0], "size": [x[1], x[2]]} if len(x) == 3
                                          else {"channels": 1, "size": 1},
                                          "layers": ([{"type": "flatten"}, {"type": "linear", "out": x[0]}] if len(x) == 1 else [])
                                          + [block]}), "probe.yaml")
    return spec.output_shape


# -- the properties ----------------------------------------------------------------------------

def check_against_torch(spec_dict: dict[str, Any]) -> archspec.Spec:
    """Compile the spec; compare output shapes (network and every block), parameters and MACs."""
    text = yaml.safe_dump(spec_dict, sort_keys=False)
    spec = archspec.loads(text, "hypothesis.yaml")
    model = archspec.compile(spec).eval()
    nodes = {n.path: n for n in spec.analyse().walk() if n.path and not _in_aux(n.path, spec)}
    seen: dict[str, tuple[int, ...]] = {}
    handles = [model.get_submodule(path).register_forward_hook(
        lambda module, args, out, path=path: seen.__setitem__(path, tuple(out.shape))) for path in nodes]
    x = torch.randn(1, *spec.input.shape)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        y = model(x)
    for handle in handles:
        handle.remove()
    assert tuple(y.shape) == (1, *spec.output_shape), text
    assert sum(p.numel() for p in model.parameters()) == spec.params, text
    assert counter.get_total_flops() == 2 * spec.macs, text
    assert set(seen) == set(nodes), text
    for path, node in nodes.items():
        assert seen[path] == (1, *node.out_shape), f"{path}: torch {seen[path]}, analysis {node.out_shape}\n{text}"
    heads = [n for n in spec.analyse().children if n.aux]
    if heads:  # they run in training only (batch 2, for batch norm)
        model.train()
        with torch.no_grad():
            outputs = model(torch.randn(2, *spec.input.shape))
        assert [tuple(o.shape) for o in outputs] == [(2, *spec.output_shape)] + [(2, *h.out_shape) for h in heads], text
    return spec


def _in_aux(path: str, spec: archspec.Spec) -> bool:
    return path.split(".")[0] in {h.name for h in spec.aux_heads}


SETTINGS = dict(deadline=None, derandomize=True, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
# Every registered block type (one activation stands for the activation layers), and auxiliary heads.
FIRST = sorted({t for t in BLOCK_TYPES if t not in LAYER_ACTIVATIONS} | {"relu", "gelu", "aux_head"})


def test_every_block_type_is_drawn() -> None:
    assert set(BLOCK_TYPES) - set(LAYER_ACTIVATIONS) <= set(FIRST)


@pytest.mark.parametrize("first", FIRST)
@settings(max_examples=3, **SETTINGS)
@given(data=st.data())
def test_each_block_type_compiles_and_matches_the_analysis(first: str, data: st.DataObject) -> None:
    check_against_torch(Draw(data).spec(first))


@settings(max_examples=40, **SETTINGS)
@given(st.data())
def test_random_valid_specs_compile_and_match_the_analysis(data: st.DataObject) -> None:
    check_against_torch(Draw(data).spec())


@pytest.mark.slow
@settings(max_examples=150, **SETTINGS)
@given(st.data())
def test_random_valid_specs_many(data: st.DataObject) -> None:
    check_against_torch(Draw(data).spec())
