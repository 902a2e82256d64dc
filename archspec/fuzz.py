"""Mutation fuzzing of spec files: every input must give a valid spec or a located SpecError, quickly.

Each case takes a seed spec, applies one to three mutations to its text (delete, duplicate or swap lines,
break the indentation, truncate, insert odd characters or bytes, replace numbers with extreme values or
names with other block types, insert YAML tags, anchors and aliases) or to its parsed tree (delete or
duplicate a field or an item, change a value's type, set 0, negative, huge, NaN, infinite or unicode
values, swap a block's type, move a subtree), and sometimes adds `--set` overrides, a variant or a
compound-scaling phi. It then loads the result as `archspec.load` does for the CLI, and checks that the
answer is a Spec (analysed) or a SpecError that is located (file, line >= 1, column >= 1, a block path
when a block type is named) and fits on one line, in under `time_limit` seconds of CPU time (wall time
is reported too; CPU time does not count the waits of a loaded machine). Anything else (another
exception, a hang, an unlocated error) is a crash. With `check_torch`, each accepted spec is also
compiled on the `meta` device and run (nothing is allocated): its output shape and parameter count must
equal the analysis.

    from archspec.fuzz import fuzz
    report = fuzz(sorted(Path("specs").glob("*.yaml")), cases=2000, seed=0)
    print(report.format()); assert not report.crashes

    python -m archspec.fuzz my_spec.yaml --cases 5000      # fuzz your own specs (or new block types)

Each case is rebuilt from (seed, index) alone, so `case(seeds, seed, index)` reproduces any finding.
Pure Python (torch only for `check_torch`), no hypothesis: used by tests/test_robustness.py and
benchmarks/fuzz.py.
"""
from __future__ import annotations

import argparse
import copy
import gc
import math
import random
import re
import shutil
import signal
import tempfile
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml
from pydantic import BaseModel

from .blocks import BLOCK_TYPES
from .errors import SpecError
from .scaling import annotation_parts
from .inherit import load_raw
from .source import to_plain
from .spec import Spec, load



def _field_names(model: type[BaseModel]) -> set[str]:
    """Every field name of a model and of the models its fields hold (a spec: input, scaling, tta, blocks...)."""
    names, seen, todo = set(), set(), [model]
    while todo:
        cls = todo.pop()
        if cls not in seen:
            seen.add(cls)
            names |= set(cls.model_fields)
            todo += [p for info in cls.model_fields.values() for p in annotation_parts(info.annotation)
                     if isinstance(p, type) and issubclass(p, BaseModel)]
    return names


# Every key the spec language knows ('extends' is resolved before validation).
FIELDS = sorted(_field_names(Spec) | {name for cls in BLOCK_TYPES.values() for name in cls.model_fields} | {"extends"})
TYPES = sorted(BLOCK_TYPES) + ["aux_head", "bottlenek", "Conv", "conv2d", ""]
UNICODE = ["é", "名前", "💥", "\u202e", "\u00a0", "ǅ", "Ω", "\ufeff", "𝟘", "²", "١٢"]

# Extreme values, as YAML text and as Python data.
EXTREME_TEXT = ["0", "-1", "-0", "1", "2", "3", "10000", "10001", "1000000", "1000001", "1000000000000",
                "-1000000000000", "9" * 30, "9" * 5000, "1e308", "1e309", "-1e309", ".nan", ".inf", "-.inf", "0.5",
                "-0.5", "1e-320", "0x7fffffff", "0o17", "0b101", "1_000", "1:30", "3.0", "true", "no", "null", "~",
                "''", "'é'", "名前", "💥", '"\\u202e"', '"\\0"', "[]", "{}", "[1, 2, 3]", "[3, 3]", "[0, 0]",
                "{type: conv}", "!!binary aGk=", "2001-12-14", "2001-13-45", "!!float 1", "!!float", "!!int x",
                "!!bool maybe", "!!timestamp x", "!!null 1", "!!str 1", "!!seq", "!!map"]
EXTREME_VALUES: list[Any] = [0, -1, 1, 2, 3, 10 ** 4, 10 ** 4 + 1, 10 ** 6, 10 ** 6 + 1, 10 ** 12, -10 ** 12, 2 ** 63,
                             10 ** 100, math.nan, math.inf, -math.inf, 0.5, -0.5, 1e-320, 1e308, True, False, None,
                             "", "x", "a\nb", "\x00", "same", "auto", "none", "x" * 2000, [], {}, [1, 2], [0, 0],
                             [3, 3, 3], {"type": "conv"}, [{"type": "relu"}], {"a": {"b": {"c": 1}}}, *UNICODE]
YAML_SNIPPETS = ["!!python/object/apply:os.system ['true']", "!!python/name:os.system", "!custom x", "&a", "*a",
                 "*undefined", "<<: *a", "<<: {type: conv}", "? [a, b]\n: 1", "---", "...", "%YAML 1.1", "|\n  text",
                 ">-", "{", "}", "[", "]", "'", '"', "- ", ": ", "#", "@", "`", "!!set {a, b}", "!!omap [a: 1]",
                 "!!binary aGVsbG8=", "&x [*x]", "\t", "\r", "\u2028", "\x85", "\x00", "\x1b[31m", "\\"]
CHARS = ":{}[],-#&*!|>'\"%@`\t\n \\?" + "".join(UNICODE) + "\x00\x07\x7f\u2028\ufeff"


@dataclass
class Case:
    """One fuzz input: the seed it came from, the mutations applied, and what is loaded."""

    index: int
    seed_file: Path
    ops: list[str]
    data: bytes
    overrides: list[str] | None = None
    variant: str | None = None
    phi: float | None = None

    def describe(self) -> str:
        extra = (f" --set {self.overrides}" if self.overrides else "") + (f" --variant {self.variant!r}" if self.variant else "") \
            + (f" --phi {self.phi}" if self.phi is not None else "")
        return f"#{self.index} {self.seed_file.name}: {'+'.join(self.ops)}{extra}"


@dataclass
class Outcome:
    case: Case
    status: str  # accepted, rejected, crash
    seconds: float  # wall time of the answer
    cpu_seconds: float  # CPU time of the answer (this process)
    error_class: str = ""
    detail: str = ""  # the error line, or the crash's traceback


@dataclass
class FuzzReport:
    """Counts over a fuzz run. A run is clean when `crashes` and `slow` are empty."""

    seed: int
    time_limit: float
    tried: int = 0
    accepted: int = 0
    rejected: Counter = field(default_factory=Counter)  # error class -> count
    crashes: list[Outcome] = field(default_factory=list)
    slow: list[Outcome] = field(default_factory=list)  # answers over time_limit CPU seconds
    slowest: Outcome | None = None  # by wall time
    slowest_cpu: Outcome | None = None  # by CPU time
    ops: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    compiled: int = 0  # accepted specs compiled on meta and run (check_torch)

    def add(self, outcome: Outcome) -> None:
        self.tried += 1
        self.ops.update(outcome.case.ops)
        if outcome.status == "accepted":
            self.accepted += 1
            self.compiled += outcome.detail == "compiled"
        elif outcome.status == "rejected":
            self.rejected[outcome.error_class] += 1
        else:
            self.crashes.append(outcome)
        if outcome.cpu_seconds > self.time_limit:
            self.slow.append(outcome)
        if self.slowest is None or outcome.seconds > self.slowest.seconds:
            self.slowest = outcome
        if self.slowest_cpu is None or outcome.cpu_seconds > self.slowest_cpu.cpu_seconds:
            self.slowest_cpu = outcome

    def format(self, top: int = 40) -> str:
        rejected = sum(self.rejected.values())
        lines = [f"inputs tried      {self.tried:,}  (seed {self.seed}, {self.seconds:.1f} s, "
                 f"{self.seconds / max(self.tried, 1) * 1000:.1f} ms per input)",
                 f"accepted          {self.accepted:,}" + (f"  ({self.compiled:,} compiled on meta and run: output "
                                                             "shape and parameters equal the analysis)" if self.compiled else ""),
                 f"rejected          {rejected:,}  (SpecError, located; {len(self.rejected)} error classes)",
                 f"crashes           {len(self.crashes)}",
                 f"over {self.time_limit:g} s CPU    {len(self.slow)}"]
        for label, outcome in (("slowest answer", self.slowest), ("slowest, CPU", self.slowest_cpu)):
            if outcome is not None:
                lines.append(f"{label:<17} {outcome.seconds * 1000:.0f} ms wall, {outcome.cpu_seconds * 1000:.0f} ms CPU  "
                             f"({outcome.case.describe()}, {outcome.status})")
        lines += ["", f"rejections by error class (top {top}):"]
        for cls, count in self.rejected.most_common(top):
            lines.append(f"  {count:6,}  {cls}")
        if len(self.rejected) > top:
            lines.append(f"  {sum(c for _, c in self.rejected.most_common()[top:]):6,}  ({len(self.rejected) - top} other classes)")
        lines += ["", "mutations applied:"]
        lines += [f"  {count:6,}  {op}" for op, count in sorted(self.ops.items())]
        for outcome in self.crashes[:20]:
            lines += ["", f"CRASH {outcome.case.describe()}", outcome.detail]
        return "\n".join(lines)


# -- error classes -------------------------------------------------------------------------------

def error_class(message: str) -> str:
    """A SpecError message with its particulars (names, numbers, shapes, inputs) blanked, for grouping."""
    text = re.sub(r"\s*\(\+\d+ more problems?\)$", "", message)
    text = re.sub(r"; did you mean '.*?'\?", "", text)
    text = re.sub(r"\s*\(known: .*?\)", "", text)
    text = re.sub(r"\(got .*\)$", "", text)
    text = re.sub(r"; names there: .*$", "", text)
    text = re.sub(r"'(?:[^'\\]|\\.)*'", "'_'", text)
    text = re.sub(r"\b\d+(?:x\d+)+\b", "CxHxW", text)
    text = re.sub(r"[-+]?\d[\d,._]*(?:e[-+]?\d+)?", "N", text)
    text = re.sub(r"\s+", " ", text).strip(" ;:")
    return text[:100]


# -- mutations of the text -------------------------------------------------------------------------

def _lines(text: str) -> list[str]:
    return text.split("\n")


def m_delete_line(rng: random.Random, text: str) -> str:
    lines = _lines(text)
    del lines[rng.randrange(len(lines))]
    return "\n".join(lines)


def m_duplicate_line(rng: random.Random, text: str) -> str:
    lines = _lines(text)
    i = rng.randrange(len(lines))
    lines.insert(i, lines[i])
    return "\n".join(lines)


def m_swap_lines(rng: random.Random, text: str) -> str:
    lines = _lines(text)
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    lines[i], lines[j] = lines[j], lines[i]
    return "\n".join(lines)


def m_truncate(rng: random.Random, text: str) -> str:
    return text[:rng.randrange(len(text) + 1)]


def m_indent(rng: random.Random, text: str) -> str:
    lines = _lines(text)
    i = rng.randrange(len(lines))
    body = lines[i].lstrip(" ")
    indent = len(lines[i]) - len(body)
    choice = rng.random()
    if choice < 0.4:
        indent += rng.randint(1, 4)
    elif choice < 0.8:
        indent = max(0, indent - rng.randint(1, 4))
    lines[i] = ("\t" + " " * indent if choice >= 0.8 else " " * indent) + body
    return "\n".join(lines)


def m_insert_char(rng: random.Random, text: str) -> str:
    i = rng.randrange(len(text) + 1)
    return text[:i] + rng.choice(CHARS) * rng.choice([1, 1, 1, 2, 3]) + text[i:]


def m_delete_span(rng: random.Random, text: str) -> str:
    i = rng.randrange(len(text) + 1)
    return text[:i] + text[i + rng.randint(1, 12):]


_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e-?\d+)?(?![\w.])")
_WORD = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*\b")
_TYPE = re.compile(r"(type:\s*)([A-Za-z0-9_]+)")


def _replace_match(rng: random.Random, text: str, pattern: re.Pattern, make: Callable[[re.Match], str]) -> str:
    matches = list(pattern.finditer(text))
    if not matches:
        return text
    match = rng.choice(matches)
    return text[:match.start()] + make(match) + text[match.end():]


def m_number(rng: random.Random, text: str) -> str:
    return _replace_match(rng, text, _NUMBER, lambda m: rng.choice(EXTREME_TEXT))


def m_word(rng: random.Random, text: str) -> str:
    pool = [*TYPES, *FIELDS, *UNICODE, "null", "true", "~", "yes", ".nan", "''", "a b", "x" * 300]
    return _replace_match(rng, text, _WORD, lambda m: rng.choice(pool))


def m_swap_type(rng: random.Random, text: str) -> str:
    return _replace_match(rng, text, _TYPE, lambda m: m.group(1) + rng.choice(TYPES))


def m_yaml(rng: random.Random, text: str) -> str:
    lines = _lines(text)
    i = rng.randrange(len(lines))
    snippet = rng.choice(YAML_SNIPPETS)
    if rng.random() < 0.5:
        cut = rng.randrange(len(lines[i]) + 1)
        lines[i] = lines[i][:cut] + " " + snippet + " " + lines[i][cut:]
    else:
        lines.insert(i, snippet)
    return "\n".join(lines)


def m_anchor(rng: random.Random, text: str) -> str:
    """An anchor on one value and aliases to it elsewhere (shared subtrees, merge keys)."""
    lines = _lines(text)
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    if ": " in lines[i]:
        key, value = lines[i].split(": ", 1)
        lines[i] = f"{key}: &fz {value}"
        target = rng.choice(["*fz", "{<<: *fz}", "[*fz, *fz]"])
        if ": " in lines[j]:
            key, _ = lines[j].split(": ", 1)
            lines[j] = f"{key}: {target}"
    return "\n".join(lines)


TEXT_MUTATIONS: dict[str, Callable[[random.Random, str], str]] = {
    "delete_line": m_delete_line, "duplicate_line": m_duplicate_line, "swap_lines": m_swap_lines,
    "truncate": m_truncate, "indent": m_indent, "insert_char": m_insert_char, "delete_span": m_delete_span,
    "number": m_number, "word": m_word, "swap_type_text": m_swap_type, "yaml_syntax": m_yaml, "anchor": m_anchor,
}


def m_bytes(rng: random.Random, data: bytes) -> bytes:
    """Byte-level damage: invalid UTF-8, a BOM, NUL, a flipped bit."""
    i = rng.randrange(len(data) + 1)
    choice = rng.randrange(5)
    if choice == 0:
        return data[:i] + rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"]) + data[i:]
    if choice == 1:
        return b"\xef\xbb\xbf" + data
    if choice == 2:
        return data[:i] + b"\x00" + data[i:]
    if choice == 3 and data:
        j = rng.randrange(len(data))
        return data[:j] + bytes([data[j] ^ (1 << rng.randrange(8))]) + data[j + 1:]
    return rng.choice([b"\xff\xfe", b"\xfe\xff", b""]) + data  # UTF-16 byte-order marks


# -- mutations of the parsed tree ------------------------------------------------------------------

def _containers(tree: Any) -> list[Any]:
    """Every dict and list in the tree."""
    found, stack = [], [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (dict, list)):
            found.append(node)
            stack.extend(node.values() if isinstance(node, dict) else node)
    return found


def _slots(tree: Any) -> list[tuple[Any, Any]]:
    """Every (container, key or index) place holding a value."""
    return [(c, k) for c in _containers(tree) for k in (list(c) if isinstance(c, dict) else range(len(c)))]


def _value(rng: random.Random) -> Any:
    choice = rng.random()
    if choice < 0.6:
        return rng.choice(EXTREME_VALUES)
    if choice < 0.8:
        return rng.choice(TYPES)
    return rng.randint(-3, 70)


def t_delete_key(rng: random.Random, tree: Any) -> None:
    dicts = [c for c in _containers(tree) if isinstance(c, dict) and c]
    if dicts:
        d = rng.choice(dicts)
        del d[rng.choice(list(d))]


def t_set_value(rng: random.Random, tree: Any) -> None:
    slots = _slots(tree)
    if slots:
        container, key = rng.choice(slots)
        container[key] = _value(rng)


def t_change_type(rng: random.Random, tree: Any) -> None:
    slots = _slots(tree)
    if not slots:
        return
    container, key = rng.choice(slots)
    value = container[key]
    options = [str(value), [value], {"value": value}, None]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        options += [float(value), -value, value * 1000, str(value) + "x"]
    if isinstance(value, dict):
        options.append(list(value.values()))
    if isinstance(value, list):
        options.append({str(i): v for i, v in enumerate(value)})
    container[key] = rng.choice(options)


def t_swap_block_type(rng: random.Random, tree: Any) -> None:
    blocks = [c for c in _containers(tree) if isinstance(c, dict) and "type" in c]
    if blocks:
        rng.choice(blocks)["type"] = rng.choice(TYPES)


def t_add_field(rng: random.Random, tree: Any) -> None:
    dicts = [c for c in _containers(tree) if isinstance(c, dict)]
    if dicts:
        rng.choice(dicts)[rng.choice(FIELDS + UNICODE)] = _value(rng)


def t_duplicate_item(rng: random.Random, tree: Any) -> None:
    lists = [c for c in _containers(tree) if isinstance(c, list) and c]
    if lists:
        items = rng.choice(lists)
        i = rng.randrange(len(items))
        items.insert(i, items[i])  # shared: safe_dump writes an anchor and an alias


def t_delete_item(rng: random.Random, tree: Any) -> None:
    lists = [c for c in _containers(tree) if isinstance(c, list) and c]
    if lists:
        items = rng.choice(lists)
        del items[rng.randrange(len(items))]


def t_move_subtree(rng: random.Random, tree: Any) -> None:
    slots = _slots(tree)
    if len(slots) > 1:
        (a, i), (b, j) = rng.sample(slots, 2)
        b[j] = copy.deepcopy(a[i])  # a copy: the target may lie inside the subtree


def t_wrap(rng: random.Random, tree: Any) -> None:
    slots = _slots(tree)
    if slots:
        container, key = rng.choice(slots)
        container[key] = rng.choice([[container[key]], {"type": "sequence", "layers": [container[key]]}])


def t_extreme_field(rng: random.Random, tree: Any) -> None:
    """A sizing field (repeat, out, kernel, stride, size, ...) set to an extreme number."""
    names = {"repeat", "out", "planes", "kernel", "stride", "padding", "dilation", "groups", "size", "channels",
             "expansion", "width_per_group", "expand_ratio", "p", "width", "depth", "phi", "squeeze", "ratio"}
    places = [(c, k) for c in _containers(tree) if isinstance(c, dict) for k in c if k in names]
    if places:
        container, key = rng.choice(places)
        container[key] = rng.choice([0, -1, 1, 2, 10 ** 4, 10 ** 4 + 1, 10 ** 6, 10 ** 6 + 1, 10 ** 12, math.nan,
                                     math.inf, 0.5, 1e-9, [10 ** 6, 10 ** 6], [1, 2, 3]])


def t_rename_key(rng: random.Random, tree: Any) -> None:
    dicts = [c for c in _containers(tree) if isinstance(c, dict) and c]
    if not dicts:
        return
    d = rng.choice(dicts)
    key = rng.choice(list(d))
    if len(key) > 2 and rng.random() < 0.5:
        i = rng.randrange(len(key) - 1)
        new = key[:i] + key[i + 1] + key[i] + key[i + 2:]
    else:
        new = key + rng.choice(["s", "_", ".", ".0", ".x"] + UNICODE)
    d[new] = d.pop(key)


def t_empty(rng: random.Random, tree: Any) -> None:
    containers = [c for c in _containers(tree) if c is not tree and c]
    if containers:
        rng.choice(containers).clear()


TREE_MUTATIONS: dict[str, Callable[[random.Random, Any], None]] = {
    "delete_key": t_delete_key, "set_value": t_set_value, "change_type": t_change_type,
    "swap_block_type": t_swap_block_type, "add_field": t_add_field, "duplicate_item": t_duplicate_item,
    "delete_item": t_delete_item, "move_subtree": t_move_subtree, "wrap": t_wrap, "extreme_field": t_extreme_field,
    "rename_key": t_rename_key, "empty": t_empty,
}


def _paths(tree: Any, prefix: str = "", depth: int = 0) -> list[str]:
    """Dotted paths into the tree (list items by name or index), for --set overrides."""
    found = []
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else []
    for key, value in items:
        step = str(value.get("name")) if isinstance(value, dict) and isinstance(value.get("name"), str) else str(key)
        path = f"{prefix}.{step}" if prefix else step
        found.append(path)
        if depth < 6:
            found += _paths(value, path, depth + 1)
    return found


# -- cases -----------------------------------------------------------------------------------------

class _Seed:
    """A seed spec's text, its own parsed tree and its resolved tree (extends merged), read once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.text = path.read_text(encoding="utf-8")
        self.own = yaml.safe_load(self.text)
        self.resolved = to_plain(load_raw(path))
        self.paths = _paths(self.resolved)
        self.variants = list(self.resolved.get("variants") or {})


def _dump(rng: random.Random, tree: Any) -> str:
    return yaml.safe_dump(tree, sort_keys=False, allow_unicode=rng.random() < 0.5,
                          default_flow_style=rng.choice([False, None]), width=rng.choice([80, 10 ** 6]))


def make_case(seeds: list[_Seed], seed: int, index: int) -> Case:
    """Case `index` of the run seeded `seed` (deterministic)."""
    rng = random.Random(f"{seed}:{index}")
    source = rng.choice(seeds)
    ops: list[str] = []
    count = rng.choices([1, 2, 3], [0.6, 0.25, 0.15])[0]
    if rng.random() < 0.5:  # text mutations of the file as written
        text = source.text
        for _ in range(count):
            name = rng.choice(list(TEXT_MUTATIONS))
            text, ops = TEXT_MUTATIONS[name](rng, text), ops + [name]
        data = text.encode("utf-8", "surrogatepass")
        if rng.random() < 0.1:
            data, ops = m_bytes(rng, data), ops + ["bytes"]
    else:  # tree mutations, of the resolved tree or (when it extends a parent) of the file's own keys
        own = rng.random() < 0.2 and isinstance(source.own, dict)
        tree = copy.deepcopy(source.own if own else source.resolved)
        ops.append("own_tree" if own else "resolved_tree")
        for _ in range(count):
            name = rng.choice(list(TREE_MUTATIONS))
            TREE_MUTATIONS[name](rng, tree)
            ops.append(name)
        data = _dump(rng, tree).encode("utf-8", "surrogatepass")
    case = Case(index, source.path, ops, data)
    if rng.random() < 0.12:
        paths = source.paths + ["layers.999", "nope.x", "layers..x", "layers.-1.out", "", ".", "layers.²"]
        case.overrides = [f"{rng.choice(paths)}={rng.choice(EXTREME_TEXT + YAML_SNIPPETS + ['{type: linear, out: 10}'])}"
                          if rng.random() < 0.9 else rng.choice(["nonsense", "=1", "a.b", "x=1=2"])
                          for _ in range(rng.randint(1, 3))]
        case.ops.append("set")
    if rng.random() < 0.05:
        case.variant = rng.choice(source.variants + ["nope", "", "b9", "é"]) if source.variants else rng.choice(["b1", "x"])
        case.ops.append("variant")
    if rng.random() < 0.05:
        case.phi = rng.choice([-100.0, -10.0, -1.0, 0.0, 0.5, 3.0, 20.0, 21.0, math.nan, math.inf, 1e308])
        case.ops.append("phi")
    return case


# -- running ---------------------------------------------------------------------------------------

class _Hang(BaseException):
    """Raised by the alarm when one answer takes longer than the hang limit."""


def _allowed_file(file: str, path: Path, folder: Path) -> bool:
    if file.startswith(("--set ", "--variant ", "override ")):
        return True
    return Path(file).resolve().parent == folder.resolve()


def check_error(error: SpecError, path: Path, folder: Path) -> str:
    """'' if the error is what a spec author must get (located, one line), else what is wrong."""
    text = str(error)
    if error.loc is None:
        return "no location"
    if error.loc.line < 1 or error.loc.col < 1:
        return f"bad position {error.loc}"
    if not _allowed_file(error.loc.file, path, folder):
        return f"located in an unexpected file {error.loc.file!r}"
    if "\n" in text or "\r" in text:
        return "message on more than one line"
    if not error.message.strip():
        return "empty message"
    if error.block_type and not error.path:
        return "names a block type but no block path"
    return ""


def run_case(case: Case, folder: Path, hang_limit: float = 20.0, check_torch: bool = False) -> Outcome:
    """Load one case from `folder` (which holds copies of the seed specs, so `extends` resolves)."""
    from .guard import estimate_memory

    path = folder / f"fuzz_{case.seed_file.stem}.yaml"
    path.write_bytes(case.data)
    alarm = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if alarm:
        previous = signal.signal(signal.SIGALRM, _raise_hang)
        signal.setitimer(signal.ITIMER_REAL, hang_limit)
    start, cpu = time.perf_counter(), time.process_time()
    try:
        spec = load(path, case.overrides, variant=case.variant, phi=case.phi)
        spec.params, spec.macs, spec.output_shape, spec.aux_params, spec.source  # noqa: B018 (all must answer)
        size = estimate_memory(spec).total_bytes
        status, cls, detail = "accepted", "", ""
    except SpecError as exc:
        problem = check_error(exc, path, folder)
        status, cls, detail = ("crash", "", f"{problem}: {exc}") if problem else ("rejected", error_class(exc.message), str(exc))
    except _Hang:
        status, cls, detail = "crash", "", f"no answer within {hang_limit:g} s"
    except BaseException as exc:  # noqa: BLE001 (anything else is the finding)
        if isinstance(exc, KeyboardInterrupt):
            raise
        status, cls, detail = "crash", "", "".join(traceback.format_exception(exc)[-6:])
    finally:
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        if alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    if status == "accepted" and check_torch and size < 2 ** 50:
        problem = compile_on_meta(spec)
        status, detail = ("crash", problem) if problem else (status, "compiled")
    return Outcome(case, status, seconds, cpu, cls, detail)


def compile_on_meta(spec: Any) -> str:
    """'' if the spec compiles on `meta` and its forward pass gives the analysed shape; else the problem."""
    try:
        import torch

        from .compiler import compile as compile_spec

        model = compile_spec(spec, "meta").eval()
        with torch.no_grad():
            y = model(torch.empty(1, *spec.input.shape, device="meta"))
        params = sum(p.numel() for p in model.parameters())
    except Exception:  # noqa: BLE001
        return "accepted, but does not compile or run:\n" + "".join(traceback.format_exc().splitlines(True)[-6:])
    if tuple(y.shape) != (1, *spec.output_shape) or params != spec.params:
        return (f"accepted, but the compiled module gives {tuple(y.shape)} and {params:,} parameters; the analysis "
                f"says {(1, *spec.output_shape)} and {spec.params:,}")
    return ""


def _raise_hang(signum: int, frame: Any) -> None:
    raise _Hang()


def fuzz(seed_files: Iterable[str | Path], cases: int = 1000, seed: int = 0, time_limit: float = 1.0,
         hang_limit: float = 20.0, on_outcome: Callable[[Outcome], None] | None = None,
         check_torch: bool = False) -> FuzzReport:
    """Run `cases` mutated inputs drawn from `seed_files`; see the module docstring."""
    files = [Path(p) for p in seed_files]
    report = FuzzReport(seed, time_limit)
    if check_torch:
        import torch  # noqa: F401  (import it now, not inside the first timed answer)
    # Keep the objects already alive (torch's, or a test session's) out of the garbage collector's scans,
    # so that answers are timed as in a fresh `archspec validate` process.
    gc.collect()
    gc.freeze()
    start = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="archspec-fuzz-") as tmp:
            folder = Path(tmp)
            for parent in {p.parent for p in files}:  # the seeds and their neighbours (the parents they extend)
                for other in parent.glob("*.yaml"):
                    shutil.copy(other, folder / other.name)
            seeds = [_Seed(folder / p.name) for p in files]
            for index in range(cases):
                outcome = run_case(make_case(seeds, seed, index), folder, hang_limit, check_torch)
                report.add(outcome)
                if on_outcome is not None:
                    on_outcome(outcome)
    finally:
        gc.unfreeze()
    report.seconds = time.perf_counter() - start
    return report


def case(seed_files: Iterable[str | Path], seed: int, index: int, folder: str | Path) -> Path:
    """Write case `index` of a run into `folder` (with copies of the seeds) and return its path, to reproduce it."""
    folder = Path(folder)
    files = [Path(p) for p in seed_files]
    for parent in {p.parent for p in files}:
        for other in parent.glob("*.yaml"):
            shutil.copy(other, folder / other.name)
    made = make_case([_Seed(folder / p.name) for p in files], seed, index)
    path = folder / f"fuzz_{made.seed_file.stem}.yaml"
    path.write_bytes(made.data)
    print(made.describe())
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m archspec.fuzz", description=__doc__.split("\n")[0])
    parser.add_argument("specs", nargs="+", help="seed spec files")
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-limit", type=float, default=1.0, help="seconds one answer may take")
    parser.add_argument("--torch", action="store_true", help="also compile each accepted spec on meta and run it")
    args = parser.parse_args(argv)
    report = fuzz(args.specs, args.cases, args.seed, args.time_limit, check_torch=args.torch)
    print(report.format())
    return 1 if report.crashes or report.slow else 0


if __name__ == "__main__":
    raise SystemExit(main())
