"""The pieces of the generated Python file (`pywriter.py` assembles them): the expressions that build
modules (`Lit`, `Name`, `Call`, `Seq`), read off a compiled module by `module_expr`; the signatures of the
constructors they call and the prelude that defines archspec's own (`ConvNormAct`, `SqueezeExcite`,
`activation`, `drop_path`); and how a value, a name or a text becomes source.
"""
from __future__ import annotations

import json
import keyword
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from ..ir.activations import ACTIVATIONS, python_source
from ..language.blocks.base import Node

if TYPE_CHECKING:
    from torch import nn


class ExportError(ValueError):
    """A model that an export format cannot express (reported as one line by the CLI)."""


# The IR the writer works on: module-building expressions with literal arguments.

@dataclass(frozen=True)
class Lit:
    value: Any


@dataclass(frozen=True)
class Name:
    id: str


@dataclass(frozen=True)
class Call:
    fn: Any  # a str (nn.Conv2d, ConvNormAct, ...) or a ClassDef
    args: tuple[tuple[str, Any], ...]  # (parameter name, Lit | Name | Call | Seq), in signature order


@dataclass(frozen=True)
class Seq:
    items: tuple[tuple[str, Any], ...]  # an nn.Sequential's (child name, expression)


REQUIRED = object()
# Signatures of the constructors the writer emits: (parameter, default or REQUIRED).
SIGNATURES: dict[str, list[tuple[str, Any]]] = {
    "ConvNormAct": [("in_channels", REQUIRED), ("out_channels", REQUIRED), ("kernel_size", REQUIRED), ("stride", 1),
                    ("padding", 0), ("dilation", 1), ("groups", 1), ("bias", None), ("norm", True),
                    ("eps", 1e-5), ("momentum", 0.1), ("act", None)],
    "nn.Conv2d": [("in_channels", REQUIRED), ("out_channels", REQUIRED), ("kernel_size", REQUIRED), ("stride", 1),
                  ("padding", 0), ("dilation", 1), ("groups", 1), ("bias", True)],
    "nn.BatchNorm2d": [("num_features", REQUIRED), ("eps", 1e-5), ("momentum", 0.1)],
    "nn.BatchNorm1d": [("num_features", REQUIRED), ("eps", 1e-5), ("momentum", 0.1)],
    "nn.Linear": [("in_features", REQUIRED), ("out_features", REQUIRED), ("bias", True)],
    "nn.MaxPool2d": [("kernel_size", REQUIRED), ("stride", None), ("padding", 0), ("dilation", 1), ("ceil_mode", False)],
    "nn.AvgPool2d": [("kernel_size", REQUIRED), ("stride", None), ("padding", 0), ("ceil_mode", False),
                     ("count_include_pad", True)],
    "nn.AdaptiveAvgPool2d": [("output_size", REQUIRED)],
    "nn.AdaptiveMaxPool2d": [("output_size", REQUIRED)],
    "nn.LocalResponseNorm": [("size", REQUIRED), ("alpha", 1e-4), ("beta", 0.75), ("k", 1.0)],
    "nn.Dropout": [("p", 0.5)],
    "nn.Flatten": [("start_dim", 1), ("end_dim", -1)],
    "nn.Identity": [],
    "SqueezeExcite": [("channels", REQUIRED), ("squeeze", REQUIRED), ("act", "relu"), ("gate", "sigmoid")],
    **{f"nn.{op.module}": [("inplace", False)] if op.inplace else [] for op in ACTIVATIONS.values()},
    "nn.GELU": [("approximate", "none")],
}
CHANNEL_ARGS = {"in_channels", "out_channels", "num_features", "in_features", "out_features", "channels", "squeeze"}


@dataclass(eq=False)
class ClassDef:
    """A generated class: one block type with one structure, instantiated at `nodes`."""

    type: str
    form: str  # chain (an nn.Sequential), residual, concat
    nodes: list[Node]
    body: "Body"  # with Names for the parameters
    params: list[tuple[str, str, Any]]  # (name, kind, default or REQUIRED)
    module_shortcut: bool = False
    name: str = ""
    order: int = 0


@dataclass(frozen=True)
class Body:
    form: str
    items: tuple[tuple[str, Any], ...]
    shortcut: Any = None  # residual: the shortcut module expression (nn.Identity() when none)
    act: Any = None  # residual: the activation after the add
    drop: Any = None  # residual: Lit(drop rate)


def _simplify(value: Any) -> Any:
    """(3, 3) -> 3: torch takes either; the square form reads better."""
    if isinstance(value, (tuple, list)):
        value = tuple(value)
        return value[0] if len(value) > 0 and all(v == value[0] for v in value) else value
    return value


def _typed(value: Any) -> Any:
    """A literal keyed with its type, so that 1, 1.0 and True stay apart."""
    if isinstance(value, Lit):
        return ("lit", type(value.value).__name__, value.value)
    return value


def _call(fn: str, **args: Any) -> Call:
    names = [p for p, _ in SIGNATURES[fn]]
    unknown = set(args) - set(names)
    assert not unknown, (fn, unknown)
    return Call(fn, tuple((p, args[p] if isinstance(args[p], (Call, Seq, Name)) else Lit(args[p]))
                          for p in names if p in args))


def _activation_name(module: nn.Module | None, path: str) -> str | None:
    from torch import nn

    names = {getattr(nn, op.module): name for name, op in ACTIVATIONS.items()}
    if module is None or isinstance(module, nn.Identity):
        return None
    if type(module) not in names or (isinstance(module, nn.GELU) and module.approximate != "none"):
        raise ExportError(f"{path}: cannot write the activation {type(module).__name__} as Python source")
    return names[type(module)]


def module_expr(m: nn.Module, path: str) -> Any:
    """The constructor call that rebuilds a leaf module of the compiled network."""
    from torch import nn

    from ..backend.nn import SqueezeExcite
    kind = type(m)
    norm = m._modules.get("norm")
    if isinstance(m, nn.Sequential) and list(m._modules)[:1] == ["conv"] and set(m._modules) <= {"conv", "norm", "act"} \
            and type(m.conv) is nn.Conv2d and m.conv.padding_mode == "zeros" \
            and (norm is None or type(norm) is nn.BatchNorm2d):
        conv = m.conv
        has_bias = conv.bias is not None
        if norm is not None:
            _check_bn(norm, path)
        return _call("ConvNormAct", in_channels=conv.in_channels, out_channels=conv.out_channels,
                     kernel_size=_simplify(conv.kernel_size), stride=_simplify(conv.stride),
                     padding=_simplify(conv.padding), dilation=_simplify(conv.dilation), groups=conv.groups,
                     bias=None if has_bias == (norm is None) else has_bias, norm=norm is not None,
                     eps=norm.eps if norm is not None else 1e-5, momentum=norm.momentum if norm is not None else 0.1,
                     act=_activation_name(m._modules.get("act"), path))
    if kind is nn.Sequential:
        return Seq(tuple((name, module_expr(child, f"{path}.{name}")) for name, child in m._modules.items()))
    if kind is nn.Conv2d:
        if m.padding_mode != "zeros":
            raise ExportError(f"{path}: cannot write padding_mode={m.padding_mode!r}")
        return _call("nn.Conv2d", in_channels=m.in_channels, out_channels=m.out_channels,
                     kernel_size=_simplify(m.kernel_size), stride=_simplify(m.stride), padding=_simplify(m.padding),
                     dilation=_simplify(m.dilation), groups=m.groups, bias=m.bias is not None)
    if kind in (nn.BatchNorm2d, nn.BatchNorm1d):
        _check_bn(m, path)
        return _call(f"nn.{kind.__name__}", num_features=m.num_features, eps=m.eps, momentum=m.momentum)
    if kind is nn.Linear:
        return _call("nn.Linear", in_features=m.in_features, out_features=m.out_features, bias=m.bias is not None)
    if kind is nn.MaxPool2d:
        if m.return_indices:
            raise ExportError(f"{path}: cannot write a max pool that returns indices")
        k, s = _simplify(m.kernel_size), _simplify(m.stride)
        return _call("nn.MaxPool2d", kernel_size=k, stride=None if s == k else s, padding=_simplify(m.padding),
                     dilation=_simplify(m.dilation), ceil_mode=m.ceil_mode)
    if kind is nn.AvgPool2d:
        if m.divisor_override is not None:
            raise ExportError(f"{path}: cannot write an average pool with divisor_override")
        k, s = _simplify(m.kernel_size), _simplify(m.stride)
        return _call("nn.AvgPool2d", kernel_size=k, stride=None if s == k else s, padding=_simplify(m.padding),
                     ceil_mode=m.ceil_mode, count_include_pad=m.count_include_pad)
    if kind in (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d):
        if getattr(m, "return_indices", False):
            raise ExportError(f"{path}: cannot write an adaptive max pool that returns indices")
        return _call(f"nn.{kind.__name__}", output_size=_simplify(m.output_size))
    if kind is nn.LocalResponseNorm:
        return _call("nn.LocalResponseNorm", size=m.size, alpha=m.alpha, beta=m.beta, k=m.k)
    if kind is nn.Dropout:
        return _call("nn.Dropout", p=m.p)
    if kind is nn.Flatten:
        return _call("nn.Flatten", start_dim=m.start_dim, end_dim=m.end_dim)
    if kind is nn.Identity:
        return _call("nn.Identity")
    if kind is nn.GELU:
        return _call("nn.GELU", approximate=m.approximate)
    activation = next((op for op in ACTIVATIONS.values() if kind is getattr(nn, op.module)), None)
    if activation is not None:
        return _call(f"nn.{activation.module}", **({"inplace": m.inplace} if activation.inplace else {}))
    if kind is SqueezeExcite:
        return _call("SqueezeExcite", channels=m.fc1.in_channels, squeeze=m.fc1.out_channels,
                     act=_activation_name(m.act, path), gate=_activation_name(m.gate, path))
    raise ExportError(f"{path}: cannot write a {kind.__module__}.{kind.__name__} as Python source")


def _check_bn(m: nn.Module, path: str) -> None:
    if not (m.affine and m.track_running_stats):
        raise ExportError(f"{path}: cannot write a batch norm without affine parameters or running stats")


def _skeleton(expr: Any) -> Any:
    if isinstance(expr, Lit):
        return "L"
    if isinstance(expr, Name):
        return ("N", expr.id)
    if isinstance(expr, Call):
        return ("C", expr.fn if isinstance(expr.fn, str) else id(expr.fn), tuple((k, _skeleton(v)) for k, v in expr.args))
    if isinstance(expr, Seq):
        return ("S", tuple((n, _skeleton(e)) for n, e in expr.items))
    raise TypeError(expr)


def _arg_kind(fn: Any, arg: str) -> str:
    if isinstance(fn, ClassDef):
        return next(kind for name, kind, _ in fn.params if name == arg)
    return "channels" if arg in CHANNEL_ARGS else arg


Hole = tuple[tuple[str, ...], str, str]  # (item path, argument, kind)


def _map(expr: Any, fn: Callable[[Hole, Lit], Any], path: tuple[str, ...], arg: str = "", kind: str = "") -> Any:
    """Rebuild `expr`, replacing each literal (a hole) by `fn(hole, literal)`, in a fixed order."""
    if isinstance(expr, Lit):
        return fn((path, arg, kind), expr)
    if isinstance(expr, Name):
        return expr
    if isinstance(expr, Call):
        return Call(expr.fn, tuple((k, _map(v, fn, path, k, _arg_kind(expr.fn, k))) for k, v in expr.args))
    if isinstance(expr, Seq):
        return Seq(tuple((n, _map(e, fn, (*path, n))) for n, e in expr.items))
    raise TypeError(expr)


def _map_body(body: Body, fn: Callable[[Hole, Lit], Any], shortcut: bool = True) -> Body:
    items = tuple((n, _map(e, fn, (n,))) for n, e in body.items)
    if body.form != "residual":
        return Body(body.form, items)
    return Body(body.form, items, _map(body.shortcut, fn, ("shortcut",)) if shortcut else body.shortcut,
                _map(body.act, fn, ("act",)), fn(((), "drop_rate", "drop_rate"), body.drop))


def _holes(body: Body, shortcut: bool = True) -> list[tuple[Hole, Lit]]:
    found: list[tuple[Hole, Lit]] = []

    def collect(hole: Hole, lit: Lit) -> Lit:
        found.append((hole, lit))
        return lit

    _map_body(body, collect, shortcut)
    return found


def _camel(name: str) -> str:
    parts = [p for p in "".join(c if c.isalnum() else " " for c in name).split()]
    out = ""
    for part in parts:
        piece = part[:1].upper() + part[1:]
        out += ("_" if out and out[-1].isdigit() and piece[:1].isdigit() else "") + piece
    if not out or not out[0].isalpha():
        out = "Net" + out
    return out


def _identifier(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name)


def _checked_identifier(name: str) -> str:
    """`name`, which the source uses as a Python identifier: the spec's Name pattern makes every name one."""
    if not _identifier(name):
        raise ExportError(f"internal error: {name!r} is not a Python identifier")
    return name


def _doc_text(text: str) -> str:
    """`text` for a docstring or a comment: as is where it cannot end or escape one (printable, no quote,
    no backslash: not even a newline), else as repr shows it (the docstring reads `\\n`, not a newline)."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        return text
    return repr(text)[1:-1].replace("\\", "\\\\").replace('"', '\\"')


def _lit(value: Any) -> str:
    """A Python literal of `value`. Strings (spec text among them) become data only: JSON's string
    escapes are Python's, and with ensure_ascii no character is left that the source could misread."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, tuple):
        inner = ", ".join(_lit(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, float):
        short = float(f"{value:.12g}")  # 0.07500000000000001 (a drop rate) reads as 0.075
        return repr(short if abs(short - value) <= 1e-15 * max(1.0, abs(value)) else value)
    return repr(value)


# The module-level names of every generated file: a generated class or parameter never takes one.
PRELUDE_NAMES = {"ConvNormAct", "SqueezeExcite", "activation", "drop_path", "ACTIVATIONS", "OrderedDict",
                 "torch", "nn", "build", "DESCRIPTION", "INPUT_SHAPE", "MEAN", "STD", "RESIZE", "WEIGHTS"}
PRELUDE_ACTIVATIONS = python_source()

PRELUDE_CONV = '''\
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
        super().__init__(layers)'''

PRELUDE_SE = '''\
class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: x * gate(fc2(act(fc1(avgpool(x))))), with 1x1 convs."""

    def __init__(self, channels, squeeze, act="relu", gate="sigmoid"):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.act = activation(act, inplace=True) or nn.Identity()
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.gate = activation(gate) or nn.Identity()

    def forward(self, x):
        return x * self.gate(self.fc2(self.act(self.fc1(self.avgpool(x)))))'''

PRELUDE_DROP_PATH = '''\
def drop_path(x, rate, training):
    """Stochastic depth: in training, drop whole samples of a residual branch and rescale the rest."""
    if not training or rate == 0.0:
        return x
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask.div_(keep)'''
