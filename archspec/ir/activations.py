"""The activation functions, each defined once: every consumer reads this table (torch-free).

The spec language takes its names (`activation:` fields and the standalone layers `- relu`), `nn.py` builds
`torch.nn.<module>` from it, `memory.py` replays what the module allocates and what autograd keeps, and the
Python export writes the same table into the files it generates. Adding an activation is one line here
(plus its row in docs/spec-language.md and the tests that read this table).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .expr import Call, Constructor, Prelude


@dataclass(frozen=True)
class ActivationOp:
    name: str  # in a spec
    module: str  # the torch.nn class, built without arguments or with inplace=True
    inplace: bool  # the module takes inplace=True (archspec applies it in place to tensors nothing else reads)
    keeps: Literal["input", "output"]  # what autograd keeps for the backward pass (torch's derivatives.yaml)


ACTIVATIONS: dict[str, ActivationOp] = {op.name: op for op in [
    ActivationOp("relu", "ReLU", inplace=True, keeps="output"),
    ActivationOp("relu6", "ReLU6", inplace=True, keeps="input"),
    ActivationOp("silu", "SiLU", inplace=True, keeps="input"),
    ActivationOp("hardswish", "Hardswish", inplace=True, keeps="input"),
    ActivationOp("hardsigmoid", "Hardsigmoid", inplace=True, keeps="input"),
    ActivationOp("sigmoid", "Sigmoid", inplace=False, keeps="output"),
    ActivationOp("gelu", "GELU", inplace=False, keeps="input"),
    ActivationOp("tanh", "Tanh", inplace=False, keeps="output"),
    ActivationOp("mish", "Mish", inplace=True, keeps="input"),  # Misra 2019; timm's CSPNet, YOLOv4
]}

ActivationName = Literal[tuple(ACTIVATIONS)]  # type: ignore[valid-type]
Activation = Literal[("none", *ACTIVATIONS)]  # type: ignore[valid-type]  # a field that may have none


def inplace_names() -> tuple[str, ...]:
    return tuple(name for name, op in ACTIVATIONS.items() if op.inplace)


def _python_source() -> str:
    """The table and its builder, as the Python export writes them into a standalone file."""
    entries = [f'"{name}": nn.{op.module}' for name, op in ACTIVATIONS.items()]
    lines, line = [], "ACTIVATIONS = {"
    for entry in entries:
        if len(line) + len(entry) > 100:
            lines.append(line.rstrip())
            line = " " * len("ACTIVATIONS = {")
        line += entry + ", "
    lines.append(line.removesuffix(", ") + "}")
    table = "\n".join(lines)
    return f'''\
{table}


def activation(name, inplace=False):
    """The activation called `name` (in place where torch allows it), or None for None."""
    if name is None:
        return None
    if inplace and name in {inplace_names()!r}:
        return ACTIVATIONS[name](inplace=True)
    return ACTIVATIONS[name]()'''


ACTIVATION_FUNCTION = Prelude(_python_source(), ("ACTIVATIONS", "activation"))


def activation_expr(name: str, inplace: bool = False) -> Call | None:
    """The Python source of the module `nn.py`'s `activation(name, inplace)` builds (None for 'none')."""
    if name == "none":
        return None
    op = ACTIVATIONS[name]
    constructor = Constructor(f"nn.{op.module}", (("inplace", False),) if op.inplace else ())
    return constructor(inplace=inplace) if op.inplace else constructor()
