"""What changes between two specs (or a spec and its variant), block by block, from their summaries.

    d = archspec.diff("specs/resnet50.yaml", "specs/resnet152.yaml")
    d.changed, d.totals(); print(d)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..language.spec import Spec
from .summary import Row, Summary, summary
from ..ir.node import fmt_shape
from ..units import human_bytes


def _signed(n: int | float, fmt: str = ",") -> str:
    return ("+" if n > 0 else "") + format(n, fmt)


_COMPARED = (("type", "type"), ("hyper", "hyper-parameters"), ("input_shape", "input"),
             ("output_shape", "output"), ("params", "params"), ("macs", "MACs"))


def field_changes(a: Row, b: Row) -> list[str]:
    """'field A -> B' for each spec field that differs between two rows' blocks (dotted for nested ones)."""
    fa, fb = a.fields(), b.fields()
    return [f"{key} {fa.get(key, '-')} -> {fb.get(key, '-')}" for key in [*fa, *(k for k in fb if k not in fa)]
            if fa.get(key, _MISSING) != fb.get(key, _MISSING)]


_MISSING = object()


@dataclass(frozen=True)
class DiffRow:
    """One block, matched by name: 'changed', 'added' (only in B), 'removed' (only in A) or 'same'."""

    name: str
    status: str
    a: Row | None
    b: Row | None
    changes: tuple[str, ...] = ()  # which of type, hyper-parameters, input, output, params, MACs, fields differ

    def to_dict(self) -> dict[str, Any]:
        fields = field_changes(self.a, self.b) if self.a and self.b else []
        return {"name": self.name, "status": self.status, "changes": list(self.changes), "fields": fields,
                "a": self.a.to_dict() if self.a else None, "b": self.b.to_dict() if self.b else None}


@dataclass(frozen=True)
class Diff:
    """What `archspec diff` prints: the blocks that differ between two summaries, then the totals."""

    a: Summary
    b: Summary
    rows: tuple[DiffRow, ...]
    label_a: str = ""
    label_b: str = ""

    @property
    def changed(self) -> tuple[DiffRow, ...]:
        return tuple(r for r in self.rows if r.status != "same")

    def totals(self) -> list[tuple[str, int | str, int | str]]:
        """(what, A, B) for every total the two summaries have."""
        a, b = self.a, self.b
        return [("input", fmt_shape(a.input_shape), fmt_shape(b.input_shape)),
                ("output", fmt_shape(a.output_shape), fmt_shape(b.output_shape)),
                ("parameters", a.params, b.params),
                ("  in auxiliary heads", a.aux_params, b.aux_params),
                ("MACs", a.macs, b.macs),
                ("  auxiliary heads (training)", a.aux_macs, b.aux_macs),
                ("FLOPs", a.flops, b.flops),
                ("parameter memory", a.param_bytes, b.param_bytes),
                ("activations, forward peak", a.forward_bytes, b.forward_bytes),
                ("activations, training", a.training_bytes, b.training_bytes)]

    def to_dict(self) -> dict[str, Any]:
        totals = []
        for what, x, y in self.totals():
            entry: dict[str, Any] = {"name": what.strip(), "a": x, "b": y}
            if isinstance(x, int) and isinstance(y, int):
                entry["delta"] = y - x
            totals.append(entry)
        return {"a": self.label_a or self.a.name, "b": self.label_b or self.b.name, "depth": self.a.depth,
                "batch": self.a.batch, "dtype": self.a.dtype, "layers": [r.to_dict() for r in self.rows],
                "totals": totals}

    # rendering
    def shown(self, everything: bool = False) -> list[DiffRow]:
        """The rows a table shows: the changed ones (or all), without the insides of added/removed blocks."""
        out, gone = [], ()
        for r in self.rows:
            if gone and r.name.startswith(gone):
                continue
            gone = tuple(f"{g}." for g in ([r.name] if r.status in ("added", "removed") else []))
            if everything or r.status != "same":
                out.append(r)
        return out

    def _cells(self, everything: bool) -> list[list[str]]:
        cells = []
        for r in self.shown(everything):
            a, b = r.a, r.b
            name = "  " * ((a or b).depth - 1) + r.name  # type: ignore[union-attr]

            def pair(get: Any, fmt: Any = str) -> str:
                if a is None or b is None:
                    return fmt(get(a or b))
                x, y = fmt(get(a)), fmt(get(b))
                return x if x == y else f"{x} -> {y}"

            dp = (b.params if b else 0) - (a.params if a else 0)
            dm = (b.macs if b else 0) - (a.macs if a else 0)
            what = ""
            if a and b:
                fields = field_changes(a, b)
                what = "; ".join(fields[:3]) + (f"; +{len(fields) - 3} more" if len(fields) > 3 else "")
                if not what and a.hyper != b.hyper:
                    what = pair(lambda s: s.hyper)
            else:
                what = f"{(a or b).type} {(a or b).hyper}".strip()  # type: ignore[union-attr]
            cells.append([name, r.status, pair(lambda s: fmt_shape(s.output_shape)),
                          pair(lambda s: s.params, lambda v: f"{v:,}"), _signed(dp) if dp else "",
                          pair(lambda s: s.macs, lambda v: f"{v:,}"), _signed(dm) if dm else "", what])
        return cells

    def _total_cells(self) -> list[list[str]]:
        out = []
        for what, x, y in self.totals():
            if isinstance(x, str) or isinstance(y, str):
                out.append([what, str(x), str(y), "" if x == y else "changed"])
                continue
            if x == 0 and y == 0 and what.startswith("  "):
                continue
            is_bytes = "memory" in what or "activations" in what
            fmt = human_bytes if is_bytes else (lambda v: f"{v:,}")
            delta = y - x
            change = "" if not delta else (human_bytes(delta) if is_bytes else _signed(delta))
            if delta and is_bytes and delta > 0:
                change = "+" + change
            if delta and x:
                ratio = delta / x
                change += f" ({ratio:+.1%})" if abs(ratio) >= 0.001 else f" ({100 * ratio:+.2g}%)"
            out.append([what, fmt(x), fmt(y), change])
        return out

    def _title(self) -> str:
        return f"{self.label_a or self.a.name} -> {self.label_b or self.b.name}"

    def text(self, everything: bool = False) -> str:
        out = [self._title()]
        cells = self._cells(everything)
        header = ["layer", "change", "output", "params", "delta", "MACs", "delta", "what changed"]
        if cells:
            widths = [max(len(row[i]) for row in [header, *cells]) for i in range(len(header))]
            for row in [header, *cells]:
                parts = [c.rjust(widths[i]) if i in (2, 3, 4, 5, 6) else c.ljust(widths[i]) for i, c in enumerate(row)]
                out.append("  ".join(parts).rstrip())
        else:
            out.append("no block differs")
        same = len(self.rows) - len(self.changed)
        if same and not everything:
            out.append(f"({same} unchanged {'block' if same == 1 else 'blocks'} not shown; --all lists them)")
        out.append("")
        totals = [["total", "A", "B", "change"], *self._total_cells()]
        widths = [max(len(row[i]) for row in totals) for i in range(4)]
        for row in totals:
            out.append("  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(row)).rstrip())
        out.append(f"(memory at batch {self.a.batch}, {self.a.dtype})")
        return "\n".join(out)

    def __str__(self) -> str:
        return self.text()

    def __repr__(self) -> str:
        return f"<Diff {self._title()}: {len(self.changed)} of {len(self.rows)} blocks differ>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.text())

    def __rich__(self) -> Any:
        return self.rich()

    def rich(self, everything: bool = False) -> Any:
        from rich import box
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        table = Table(title=self._title(), title_justify="left", title_style="bold", header_style="bold",
                      box=box.SIMPLE_HEAD, pad_edge=False)
        for title, justify in (("layer", "left"), ("change", "left"), ("output", "right"), ("params", "right"),
                               ("delta", "right"), ("MACs", "right"), ("delta", "right"), ("what changed", "left")):
            table.add_column(title, justify=justify, no_wrap=True)  # type: ignore[arg-type]
        styles = {"added": "green", "removed": "red", "same": "dim"}
        for row, cells in zip(self.shown(everything), self._cells(everything)):
            table.add_row(*cells, style=styles.get(row.status))
        totals = Table(header_style="bold", caption=f"memory at batch {self.a.batch}, {self.a.dtype}",
                       caption_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        for title, justify in (("total", "left"), ("A", "right"), ("B", "right"), ("change", "right")):
            totals.add_column(title, justify=justify)  # type: ignore[arg-type]
        for cells in self._total_cells():
            totals.add_row(*cells)
        same = len(self.rows) - len(self.changed)
        note = Text(f"({same} unchanged blocks not shown; --all lists them)", style="dim") if same and not everything else Text("")
        return Group(table if self.changed or everything else Text("no block differs"), note, totals)


def _compare(a: Row, b: Row) -> tuple[str, ...]:
    changes = tuple(label for attr, label in _COMPARED if getattr(a, attr) != getattr(b, attr))
    return changes + (("fields",) if field_changes(a, b) else ())


def diff(a: Spec | Summary | str | Path, b: Spec | Summary | str | Path, depth: int = 1, batch: int = 1,
         dtype: str = "fp32", labels: tuple[str, str] | None = None) -> Diff:
    """Blocks matched by name down to `depth` (1: the top-level layers and auxiliary heads), with what
    changed in type, hyper-parameters, shapes, parameters and MACs, and the totals of both sides."""
    import difflib

    sa = a if isinstance(a, Summary) else summary(a, depth, batch, dtype)
    sb = b if isinstance(b, Summary) else summary(b, depth, batch, dtype)
    ra, rb = {r.name: r for r in sa.rows}, {r.name: r for r in sb.rows}
    names_a, names_b = [r.name for r in sa.rows], [r.name for r in sb.rows]
    merged: list[DiffRow] = []
    matcher = difflib.SequenceMatcher(a=names_a, b=names_b, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            for name in names_a[i1:i2]:
                changes = _compare(ra[name], rb[name])
                merged.append(DiffRow(name, "changed" if changes else "same", ra[name], rb[name], changes))
            continue
        # Names only on one side; a name on both sides but moved is matched where B has it.
        for name in names_a[i1:i2]:
            if name not in rb:
                merged.append(DiffRow(name, "removed", ra[name], None))
        for name in names_b[j1:j2]:
            if name in ra:
                changes = _compare(ra[name], rb[name])
                merged.append(DiffRow(name, "changed" if changes else "same", ra[name], rb[name], changes + ("order",)))
            else:
                merged.append(DiffRow(name, "added", None, rb[name]))
    label_a, label_b = labels or ("", "")
    return Diff(sa, sb, tuple(merged), label_a, label_b)


__all__ = ["Diff", "DiffRow", "diff"]
