"""The Python-source form of the IR: each op writes itself as a constructor call (`Call` of a `Constructor`
with literal arguments), which the Python export (`archspec/exports/pywriter.py`) formats, groups into classes
and prints. A constructor is torch's (`nn.Conv2d`) or archspec's own (`ConvNormAct`), whose definition the op
declares beside it as a `Prelude` that the generated file includes when it is used.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

REQUIRED = object()  # a constructor parameter without a default


@dataclass(frozen=True)
class Prelude:
    """Source that a generated file defines before its classes, and the module-level names it defines: the
    text, or `origin` ("module:Class"), a class of archspec's torch backend whose own source is copied."""

    source: str
    defines: tuple[str, ...]
    needs: tuple["Prelude", ...] = ()
    origin: str = ""

    def text(self) -> str:
        if not self.origin:
            return self.source
        import importlib
        import inspect

        module, name = self.origin.split(":")
        return inspect.getsource(getattr(importlib.import_module(module), name))


def backend_class(name: str, needs: tuple[Prelude, ...] = ()) -> Prelude:
    """The prelude that copies the class `name` of `archspec/backend/nn.py` (an op's module torch lacks)."""
    return Prelude("", (name,), needs, origin=f"archspec.backend.nn:{name}")


@dataclass(frozen=True)
class Constructor:
    """A callable the generated file calls: its signature (parameter, default or REQUIRED, in order), which
    of its parameters count channels (a class's constructor takes those as its own parameters), and, for
    archspec's own, the prelude that defines it."""

    name: str
    params: tuple[tuple[str, Any], ...] = ()
    channels: frozenset[str] = frozenset()
    prelude: Prelude | None = None

    def __call__(self, **args: Any) -> "Call":
        names = [p for p, _ in self.params]
        unknown = set(args) - set(names)
        if unknown:
            raise TypeError(f"{self.name} takes no {sorted(unknown)}")
        return Call(self, tuple((p, args[p] if isinstance(args[p], (Call, Seq, Ref)) else Lit(args[p]))
                                for p in names if p in args))


@dataclass(frozen=True)
class Lit:
    value: Any


@dataclass(frozen=True)
class Ref:
    """A parameter of a generated class, used in its body."""

    id: str


@dataclass(frozen=True)
class Call:
    fn: Any  # a Constructor, or a generated class (exports/pycode.ClassDef)
    args: tuple[tuple[str, Any], ...]  # (parameter name, Lit | Ref | Call | Seq), in signature order


@dataclass(frozen=True)
class Seq:
    items: tuple[tuple[str, Any], ...]  # an nn.Sequential's (child name, expression)


Expr = Lit | Ref | Call | Seq

IDENTITY = Constructor("nn.Identity")
FLATTEN = Constructor("nn.Flatten", (("start_dim", 1), ("end_dim", -1)))


def square(value: Any) -> Any:
    """(3, 3) -> 3: torch takes either; the square form reads better."""
    if isinstance(value, (tuple, list)):
        value = tuple(value)
        return value[0] if len(value) > 0 and all(v == value[0] for v in value) else value
    return value
