"""The arithmetic of blocks defined in YAML: `"= make_divisible(expand * 0.25, 8)"`.

A small whitelisted walk over Python's `ast` (never `eval`): numbers, the block's parameters and
`in_channels`, + - * / // %, unary minus, parentheses, and the functions in FUNCTIONS. Bounded: at most
MAX_LENGTH characters and MAX_NODES syntax nodes, and every value, intermediate ones included, within
+-MAX_VALUE, so a hostile expression is refused in one line before it costs anything.
"""
from __future__ import annotations

import ast
import math
import operator
from functools import lru_cache
from typing import Any, Callable

from ..errors import did_you_mean
from .scaling import make_divisible

MAX_LENGTH = 200
MAX_NODES = 100
MAX_VALUE = 10 ** 12
Value = int | float | bool | str


class ExprError(ValueError):
    """An expression that cannot be evaluated; the message says why, in one line."""


def _make_divisible(value: float, divisor: float = 8) -> int:
    if divisor != int(divisor) or divisor < 1:
        raise ExprError(f"make_divisible's divisor must be a positive integer, not {divisor!r}")
    return make_divisible(value, int(divisor))


FUNCTIONS: dict[str, tuple[Callable[..., Any], int, int]] = {  # name: (function, fewest, most arguments)
    "round": (round, 1, 1), "int": (int, 1, 1), "float": (float, 1, 1), "min": (min, 2, 8), "max": (max, 2, 8),
    "ceil": (math.ceil, 1, 1), "floor": (math.floor, 1, 1), "make_divisible": (_make_divisible, 1, 2),
}
_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
}
_SYMBOLS = {ast.Pow: "**", ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^", ast.LShift: "<<", ast.RShift: ">>",
            ast.MatMult: "@"}


def is_expression(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("=")


def evaluate(text: str, names: dict[str, Value]) -> Value:
    """The value of `= EXPR` with `names` bound; ExprError for anything outside the grammar or the bounds."""
    return _Walker(names).value(_parse(text[1:].strip()))


@lru_cache(maxsize=1024)  # a defined block's body is substituted at every use: each text is parsed once
def _parse(source: str) -> ast.expr:
    if len(source) > MAX_LENGTH:
        raise ExprError(f"an expression has at most {MAX_LENGTH} characters (this one has {len(source):,})")
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        hint = "; in a flow mapping {...} quote an expression that has commas" if source.count("(") > source.count(")") else ""
        raise ExprError(f"not a valid expression: {exc.msg}{hint}") from None
    except (RecursionError, MemoryError, ValueError):
        raise ExprError("not a valid expression") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise ExprError(f"an expression has at most {MAX_NODES} terms")
    return tree.body


class _Walker:
    def __init__(self, names: dict[str, Value]) -> None:
        self.names = names

    def value(self, node: ast.AST) -> Value:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return self.bounded(node.value)
        if isinstance(node, ast.Name):
            if node.id not in self.names:
                raise ExprError(f"unknown name '{node.id}' (the parameters, in_channels){did_you_mean(node.id, self.names)}")
            return self.names[node.id]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            operand = self.number(node.operand)
            return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.BinOp):
            if type(node.op) not in _BINARY:
                raise ExprError(f"'{_SYMBOLS.get(type(node.op), type(node.op).__name__)}' is not allowed "
                                "(+ - * / // % only)")
            left, right = self.number(node.left), self.number(node.right)
            if isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)) and right == 0:
                raise ExprError("division by zero")
            return self.bounded(_BINARY[type(node.op)](left, right))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
            if node.func.id not in FUNCTIONS:
                raise ExprError(f"unknown function '{node.func.id}' (known: {', '.join(FUNCTIONS)})")
            return self.call(node.func.id, [self.number(arg) for arg in node.args])
        raise ExprError(f"'{ast.unparse(node)[:40]}' is not allowed: numbers, parameters, in_channels, "
                        f"+ - * / // %, and {', '.join(FUNCTIONS)}(...)")

    def number(self, node: ast.AST) -> int | float:
        value = self.value(node)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ExprError(f"'{ast.unparse(node)[:40]}' is {value!r}, not a number")
        return value

    def call(self, name: str, args: list[int | float]) -> Value:
        function, fewest, most = FUNCTIONS[name]
        if not fewest <= len(args) <= most:
            raise ExprError(f"{name}() takes {fewest}" + (f" to {most}" if most > fewest else "") + f" arguments, not {len(args)}")
        return self.bounded(function(*args))

    @staticmethod
    def bounded(value: int | float) -> int | float:
        if isinstance(value, float) and not math.isfinite(value) or abs(value) > MAX_VALUE:
            raise ExprError(f"a value reaches {value:.3g}, outside +-{MAX_VALUE:.0e}")
        return value
