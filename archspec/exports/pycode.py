"""The pieces of the generated Python file (`pywriter.py` assembles them): the generated classes (`ClassDef`,
`Body`), the holes (literal arguments) that become their parameters, the prelude that every file may need
(`drop_path`), and how a value, a name or a text becomes source. The expressions themselves are the IR's
(`archspec/ir/expr.py`): each leaf op writes its own (`Block.source`).
"""
from __future__ import annotations

import json
import keyword
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

from ..ir.expr import Call, Constructor, Lit, Prelude, Ref, Seq
from ..ir.node import Node


class ExportError(ValueError):
    """A model that an export format cannot express (reported as one line by the CLI)."""


@dataclass(eq=False)
class ClassDef:
    """A generated class: one block type with one structure, instantiated at `nodes`."""

    type: str
    form: str  # chain (an nn.Sequential), residual, concat
    nodes: list[Node]
    body: "Body"  # with Refs for the parameters
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


def _typed(value: Any) -> Any:
    """A literal keyed with its type, so that 1, 1.0 and True stay apart."""
    if isinstance(value, Lit):
        return ("lit", type(value.value).__name__, value.value)
    return value


def _skeleton(expr: Any) -> Any:
    if isinstance(expr, Lit):
        return "L"
    if isinstance(expr, Ref):
        return ("N", expr.id)
    if isinstance(expr, Call):
        return ("C", expr.fn.name if isinstance(expr.fn, Constructor) else id(expr.fn),
                tuple((k, _skeleton(v)) for k, v in expr.args))
    if isinstance(expr, Seq):
        return ("S", tuple((n, _skeleton(e)) for n, e in expr.items))
    raise TypeError(expr)


def _arg_kind(fn: Any, arg: str) -> str:
    if isinstance(fn, ClassDef):
        return next(kind for name, kind, _ in fn.params if name == arg)
    return "channels" if arg in fn.channels else arg


Hole = tuple[tuple[str, ...], str, str]  # (item path, argument, kind)


def _map(expr: Any, fn: Callable[[Hole, Lit], Any], path: tuple[str, ...], arg: str = "", kind: str = "") -> Any:
    """Rebuild `expr`, replacing each literal (a hole) by `fn(hole, literal)`, in a fixed order."""
    if isinstance(expr, Lit):
        return fn((path, arg, kind), expr)
    if isinstance(expr, Ref):
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


# The module-level names of every generated file besides the preludes': a generated class or parameter never
# takes one.
FILE_NAMES = {"OrderedDict", "torch", "nn", "build", "DESCRIPTION", "INPUT_SHAPE", "MEAN", "STD", "RESIZE", "WEIGHTS"}

DROP_PATH = Prelude('''\
def drop_path(x, rate, training):
    """Stochastic depth: in training, drop whole samples of a residual branch and rescale the rest."""
    if not training or rate == 0.0:
        return x
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask.div_(keep)''', ("drop_path",))


def _name_params(plist: list[dict[str, Any]], in_ch: tuple[int, ...], out_ch: tuple[int, ...],
                 reserved: set[str]) -> None:
    """Name a class's constructor parameters: the block's input and output channels, then the hole's
    argument where that is unique, else its path; each a distinct identifier."""
    for p in plist:
        p["name"] = None
        if p["kind"] == "channels" and p["values"] == in_ch:
            p["name"] = "in_channels"
        elif p["kind"] == "channels" and p["values"] == out_ch:
            p["name"] = "out_channels"
    inner_channels = [p for p in plist if p["kind"] == "channels" and p["name"] is None]
    kinds = Counter(p["kind"] for p in plist if p["name"] is None)
    for p in plist:
        if p["name"] is not None:
            continue
        path, arg, kind = p["holes"][0]
        if kind == "channels" and len(inner_channels) == 1:
            p["name"] = "width"
        elif kind != "channels" and kinds[kind] == 1:
            p["name"] = kind
        else:
            short = {"out_channels": "out", "in_channels": "in", "out_features": "out", "in_features": "in",
                     "num_features": "channels"}.get(arg, arg)
            p["name"] = "_".join([*path, short]) if path else short
    taken: set[str] = set()
    for p in plist:
        name = p["name"] if _identifier(p["name"]) and p["name"][0].isalpha() else f"p_{p['name']}"
        base, n = name, 2
        while name in taken or name in reserved or name in ("self", "x", "out", "shortcut", "super"):
            name, n = f"{base}{n}", n + 1
        taken.add(name)
        p["name"] = _checked_identifier(name)
