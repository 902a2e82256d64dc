"""The catalogue: every spec of a folder (by default the specs bundled with archspec), with what a user picks
a network by: family, parameters, MACs, input size, and what the numbers are checked against. No torch."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

from ..errors import SpecError
from ..fanout import fan_out
from ..ir.node import fmt_shape
from ..language.inherit import source_files
from ..language.spec import Spec, load
from .cache import FileCache

# The specs beside the package: a checkout, or an editable install (`pip install -e .`).
BUNDLED = Path(__file__).resolve().parents[2] / "specs"


@dataclass(frozen=True)
class Entry:
    file: str
    name: str
    family: str  # the spec's `family:`, else its name
    params: int
    macs: int
    input: tuple[int, ...]
    reference: str | None  # the torchvision/timm model it equals exactly (tests/test_reference.py)
    description: str
    alias_of: str | None  # the first spec, by file name, that resolves to the same network
    exact: bool  # it, or the network it is an alias of, has a reference

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    @property
    def source(self) -> str:
        """What the figures are checked against: the reference, the network it is an alias of, or its description."""
        if self.alias_of:
            return f"= {self.alias_of}"
        return f"{self.reference} (exact)" if self.reference else self.description

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "input": list(self.input)}


def spec_files(folders: Iterable[Path]) -> list[Path]:
    files = []
    for folder in folders:
        if not folder.is_dir():
            raise ValueError(f"{folder} is not a folder of specs" + (
                " (the bundled specs are in the repository's specs/ folder: use a checkout or `pip install -e .`)"
                if folder == BUNDLED else ""))
        files += sorted(folder.glob("*.yaml"))
    return files


def catalogue(files: Iterable[Path], cached: bool = True, jobs: int | None = None) -> tuple[list[Entry], list[SpecError]]:
    """The entries of the specs that load, by family then MACs, and the errors of those that do not. With `cached`,
    a spec's row is taken from the user's cache (reports/cache.py) while its files and archspec are unchanged;
    the others are read in up to `jobs` processes (`fanout.py`)."""
    store = FileCache("catalogue") if cached else None
    found = {path: _as_row(store.get(str(path.resolve()))) if store else None for path in files}
    missing = [path for path, row in found.items() if row is None]
    errors = []
    for path, row in zip(missing, fan_out(_row_or_error, missing, jobs)):
        if isinstance(row, SpecError):
            errors.append(row)
            continue
        found[path] = row
        if store:
            store.put(str(path.resolve()), row, source_files(path))
    if store:
        store.save()
    rows = [(path, row) for path, row in found.items() if row is not None]
    first: dict[str, dict[str, Any]] = {}
    entries = []
    for path, row in rows:
        original = first.setdefault(row["network"], row)
        alias_of = original["name"] if original is not row else None
        entries.append(Entry(str(path), row["name"], row["family"], row["params"], row["macs"], tuple(row["input"]),
                             row["reference"], row["description"], alias_of, original["reference"] is not None))
    return sorted(entries, key=lambda e: (e.family.lower(), e.macs, e.name)), errors


ROW = {"name": str, "family": str, "params": int, "macs": int, "input": list, "reference": (str, type(None)),
       "description": str, "network": str}


def _as_row(value: Any) -> dict[str, Any] | None:
    """A cached value if it is a row as `_row` makes them (the cache file may have been edited), else None."""
    if not isinstance(value, dict) or value.keys() != ROW.keys():
        return None
    if any(not isinstance(value[key], kind) or isinstance(value[key], bool) for key, kind in ROW.items()):
        return None
    shape = value["input"]
    return value if 1 <= len(shape) <= 3 and all(type(d) is int and d > 0 for d in shape) else None


def _row_or_error(path: Path) -> dict[str, Any] | SpecError:
    try:
        return _row(load(path))
    except SpecError as exc:
        return exc


def _row(spec: Spec) -> dict[str, Any]:
    """What the catalogue shows of a spec, and the network it resolves to, as JSON data."""
    return {"name": spec.name, "family": spec.family or spec.name, "params": spec.params, "macs": spec.macs,
            "input": list(spec.input.shape), "reference": spec.reference, "description": spec.description,
            "network": hashlib.sha256(network_key(spec).encode()).hexdigest()}


def network_key(spec: Spec) -> str:
    """The network a spec resolves to, whatever it is called, described as, or checked against."""
    return json.dumps(spec.model_dump(mode="json", exclude={"name", "description", "reference", "variant"}),
                      sort_keys=True)


def text(entries: list[Entry]) -> str:
    """One aligned row per spec."""
    rows = [("name", "family", "params", "GMACs", "input", "reference (exact) or source")]
    rows += [(e.name, e.family, f"{e.params:,}", f"{e.gmacs:.3f}", fmt_shape(e.input), e.source) for e in entries]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    align = ("<", "<", ">", ">", ">")
    return "\n".join("  ".join(f"{cell:{a}{w}}" for cell, a, w in zip(row, align, widths)) + "  " + row[5]
                     for row in rows)
