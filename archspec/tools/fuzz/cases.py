"""Fuzz cases: each one rebuilt from (seed, index) alone."""
from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ...language.inherit import load_raw
from ...language.source import to_plain
from .mutations import EXTREME_TEXT, FILE_MUTATIONS, TEXT_MUTATIONS, TREE_MUTATIONS, YAML_SNIPPETS, m_bytes


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
    files: dict[str, bytes] = field(default_factory=dict)  # other files beside it (an extends chain)
    links: dict[str, str] = field(default_factory=dict)  # symlinks beside it: name -> target

    def describe(self) -> str:
        extra = (f" --set {self.overrides}" if self.overrides else "") + (f" --variant {self.variant!r}" if self.variant else "") \
            + (f" --phi {self.phi}" if self.phi is not None else "")
        return f"#{self.index} {self.seed_file.name}: {'+'.join(self.ops)}{extra}"


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
    if rng.random() < 0.06:
        name = rng.choice(list(FILE_MUTATIONS))
        text, case.files, case.links = FILE_MUTATIONS[name](rng, data.decode("utf-8", "replace"), source.path.name)
        case.data, case.ops = text.encode("utf-8", "surrogatepass"), case.ops + [name]
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
