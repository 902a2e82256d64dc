"""Summaries and diffs from the spec alone: per-block rows, totals and memory estimates (no torch).

    s = archspec.summary("specs/resnet50.yaml", depth=2, batch=32, dtype="bf16")
    s.rows, s.params, s.macs, s.forward_bytes, s.training_bytes
    print(s)                 # aligned plain text; rich.print(s) draws a table

Counts follow the rest of archspec: `params` are the trainable tensors (every parameter of a compiled
model is trainable; batch-norm running statistics are buffers, counted apart); MACs are the
multiply-accumulates of the conv and linear layers per image, at inference (auxiliary heads apart);
FLOPs are 2 x MACs, as `torch.utils.flop_counter` counts.

Activation memory is defined, and computed, in `memory.py`; `diff.py` compares two summaries.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from math import prod
from pathlib import Path
from typing import Any

from ..language.blocks.base import Block, Node, Shape, fmt_shape
from ..ir.memory import DTYPES, MemoryReplay, buffer_bytes, buffer_counts, dtype_size
from ..language.spec import Spec, as_spec
from ..units import human, human_bytes


def _numel(shape: Shape) -> int:
    return prod(shape)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested fields as {'block.planes': 64, 'layers.conv1.norm': 'batch', ...}; list items by name or index."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not (prefix and key == "name"):
                out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list) and any(isinstance(item, dict) for item in value):
        out = {}
        for i, item in enumerate(value):
            key = item.get("name") if isinstance(item, dict) and item.get("name") else str(i)
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else key))
        return out
    return {prefix: value}


@dataclass(frozen=True)
class ActivationMemory:
    """Activation memory of the compiled module at a batch size and dtype (see the module docstring)."""

    forward_peak: int  # bytes: the peak of live activations in an eval forward pass
    forward_peak_at: str  # the block running at that peak
    training: int  # bytes autograd keeps for backward after a training forward pass
    training_peak: int  # the peak of live activations during that training forward pass


def activation_memory(spec: Spec | Node, batch: int = 1, dtype: str = "fp32") -> ActivationMemory:
    """Forward (eval) peak and training (kept for backward) activation bytes; see the module docstring."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, not {batch}")
    root = spec.analyse() if isinstance(spec, Spec) else spec
    itemsize = dtype_size(dtype)[1]
    infer, train = MemoryReplay(False, batch, itemsize), MemoryReplay(True, batch, itemsize)
    infer.network(root)
    train.network(root)
    return ActivationMemory(infer.peak, infer.peak_at, train.saved, train.peak)


# --- summary -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Row:
    """One block of the summary table."""

    name: str  # the block's path: `model.get_submodule(name)` of the compiled model
    depth: int  # 1 for a top-level layer
    type: str
    hyper: str  # key hyper-parameters, e.g. '3x3 64 /2'
    input_shape: Shape
    output_shape: Shape
    params: int
    macs: int  # per image; for an auxiliary head (and its layers), its cost in training
    aux: bool  # part of a training-only auxiliary head
    share: float  # of all parameters
    block: Block | None = field(default=None, repr=False, compare=False)  # the spec block (for diffs)

    def fields(self) -> dict[str, Any]:
        """The block's fields as resolved (defaults, variant and scaling applied), flattened to dotted keys."""
        if self.block is None:
            return {}
        data = self.block.model_dump()
        data.pop("name", None)
        return _flatten(data)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "depth": self.depth, "type": self.type, "hyper": self.hyper,
                "input_shape": list(self.input_shape), "output_shape": list(self.output_shape),
                "params": self.params, "params_percent": round(100 * self.share, 3), "macs": self.macs,
                "aux": self.aux}


@dataclass(frozen=True)
class Summary:
    """What `archspec summary` prints: rows down to `depth`, then totals. Sizes are bytes."""

    name: str
    depth: int
    batch: int
    dtype: str
    input_shape: Shape  # of one image
    output_shape: Shape
    rows: tuple[Row, ...]
    params: int  # all trainable, auxiliary heads included
    aux_params: int  # in training-only auxiliary heads
    macs: int  # per image, at inference
    aux_macs: int  # per image, added by the auxiliary heads in training
    buffers: int  # batch-norm running statistics (elements)
    param_bytes: int
    buffer_bytes: int
    input_bytes: int  # the input batch
    output_bytes: int
    forward_bytes: int  # activations: peak of an eval forward pass (see the module docstring)
    forward_peak_at: str
    training_bytes: int  # activations kept for backward in training

    @property
    def inference_params(self) -> int:
        return self.params - self.aux_params

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready. `layers`/`aux_heads` keep the original row keys; `rows` has every column."""
        def short(r: Row) -> dict[str, Any]:
            return {"name": r.name, "type": r.type, "output_shape": list(r.output_shape), "params": r.params,
                    "macs": r.macs}

        return {"name": self.name, "params": self.params, "macs": self.macs,
                "aux_params": self.aux_params, "aux_macs": self.aux_macs,
                "input_shape": list(self.input_shape), "output_shape": list(self.output_shape),
                "layers": [short(r) for r in self.rows if not r.aux],
                "aux_heads": [short(r) for r in self.rows if r.aux],
                "depth": self.depth, "batch": self.batch, "dtype": self.dtype,
                "trainable_params": self.params, "inference_params": self.inference_params,
                "flops": self.flops, "buffers": self.buffers,
                "memory": {"param_bytes": self.param_bytes, "buffer_bytes": self.buffer_bytes,
                           "input_bytes": self.input_bytes, "output_bytes": self.output_bytes,
                           "forward_activation_bytes": self.forward_bytes,
                           "forward_peak_at": self.forward_peak_at,
                           "training_activation_bytes": self.training_bytes},
                "rows": [r.to_dict() for r in self.rows]}

    # rendering
    def _cells(self) -> list[list[str]]:
        return [["  " * (r.depth - 1) + r.name, r.type, fmt_shape(r.output_shape), f"{r.params:,}",
                 f"{100 * r.share:.1f}%", f"{r.macs:,}", r.hyper] for r in self.rows]

    def _totals(self) -> list[tuple[str, str]]:
        lines = [("parameters", f"{self.params:,} ({human(self.params)}), all trainable")]
        if self.aux_params:
            lines.append(("  of which", f"{self.aux_params:,} in training-only auxiliary heads; "
                                        f"{self.inference_params:,} at inference"))
        lines.append(("MACs", f"{self.macs:,} ({human(self.macs)}), multiply-adds of the conv and linear "
                              "layers, per image"))
        lines.append(("FLOPs", f"{human(self.flops)} (2 per MAC, as torch.utils.flop_counter counts), per image"))
        if self.aux_macs:
            lines.append(("  training", f"+ {self.aux_macs:,} MACs in the auxiliary heads"))
        if self.batch > 1:
            lines.append((f"  batch {self.batch}", f"{human(self.batch * self.macs, 'MACs')}, "
                                                  f"{human(self.batch * self.flops, 'FLOPs')} per forward pass"))
        lines.append(("memory", f"parameters {human_bytes(self.param_bytes)} + buffers "
                                f"{human_bytes(self.buffer_bytes)} ({self.dtype})"))
        lines.append(("", f"input {fmt_shape((self.batch, *self.input_shape))}: {human_bytes(self.input_bytes)}"))
        lines.append(("", f"activations, forward (eval): peak {human_bytes(self.forward_bytes)}"
                          + (f", at {self.forward_peak_at}" if self.forward_peak_at else "")))
        lines.append(("", f"activations, training: {human_bytes(self.training_bytes)} kept for backward"))
        lines.append(("output", fmt_shape(self.output_shape)))
        return lines

    def text(self) -> str:
        """The table as aligned plain text."""
        header = ["layer", "type", "output", "params", "%", "MACs", "hyper-parameters"]
        cells = self._cells()
        out = [f"{self.name}  input {fmt_shape(self.input_shape)}  (batch {self.batch}, {self.dtype})"]
        if cells:
            widths = [max(len(row[i]) for row in [header, *cells]) for i in range(len(header))]
            right = {2, 3, 4, 5}
            for row in [header, *cells]:
                parts = [c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(row)]
                out.append("  ".join(parts).rstrip())
        out += [f"{label:<12}{value}" for label, value in self._totals()]
        return "\n".join(out)

    def __str__(self) -> str:
        return self.text()

    def __repr__(self) -> str:
        return (f"<Summary {self.name}: {len(self.rows)} rows, {self.params:,} params, {self.macs:,} MACs, "
                f"batch {self.batch} {self.dtype}>")

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # IPython / Jupyter show the table
        printer.text(self.text())

    def __rich__(self) -> Any:
        from rich import box
        from rich.console import Group
        from rich.table import Table

        table = Table(title=f"{self.name}  input {fmt_shape(self.input_shape)}  (batch {self.batch}, {self.dtype})",
                      title_justify="left", title_style="bold", header_style="bold", box=box.SIMPLE_HEAD,
                      pad_edge=False)
        for title, justify in (("layer", "left"), ("type", "left"), ("output", "right"), ("params", "right"),
                               ("%", "right"), ("MACs", "right"), ("hyper-parameters", "left")):
            table.add_column(title, justify=justify, no_wrap=True)  # type: ignore[arg-type]
        for r, cells in zip(self.rows, self._cells()):
            table.add_row(*cells, style="dim" if r.aux else None)
        totals = Table.grid(padding=(0, 2))
        totals.add_column(style="bold")
        totals.add_column()
        for label, value in self._totals():
            totals.add_row(label, value)
        return Group(table, totals) if self.rows else totals


def rows(root: Node, depth: int, total_params: int | None = None) -> list[Row]:
    """The nodes under `root` down to `depth` (1: its children), in order, trunk before aux heads."""
    total = total_params if total_params is not None else root.params
    out: list[Row] = []

    def visit(node: Node, level: int, aux: bool) -> None:
        aux = aux or node.aux
        out.append(Row(node.path, level, node.type, node.block.hyper(), node.in_shape, node.out_shape,
                       node.params, node.macs, aux, node.params / total if total else 0.0, node.block))
        if level < depth:
            for child in node.children:
                visit(child, level + 1, aux)

    if depth >= 1:
        for child in root.children:
            visit(child, 1, False)
    return out


def summary(spec: Spec | str | Path, depth: int = 1, batch: int = 1, dtype: str = "fp32") -> Summary:
    """Rows down to `depth` (1: the top-level layers and auxiliary heads; 0: totals only) and totals,
    with memory at `batch` images in `dtype` ('fp32', 'bf16' or 'fp16'). Never imports torch."""
    if depth < 0:
        raise ValueError(f"depth must be 0 or more, not {depth}")
    spec = as_spec(spec)
    name, itemsize = dtype_size(dtype)
    root = spec.analyse()
    memory = activation_memory(root, batch, name)
    floats, ints = buffer_counts(root)
    return Summary(
        name=spec.name, depth=depth, batch=batch, dtype=name, input_shape=root.in_shape, output_shape=root.out_shape,
        rows=tuple(rows(root, depth)), params=root.params, aux_params=spec.aux_params, macs=root.macs,
        aux_macs=spec.aux_macs, buffers=floats + ints, param_bytes=root.params * itemsize,
        buffer_bytes=buffer_bytes(root, itemsize), input_bytes=batch * _numel(root.in_shape) * itemsize,
        output_bytes=batch * _numel(root.out_shape) * itemsize, forward_bytes=memory.forward_peak,
        forward_peak_at=memory.forward_peak_at, training_bytes=memory.training)


__all__ = ["ActivationMemory", "DTYPES", "Row", "Summary", "activation_memory", "dtype_size", "summary"]
