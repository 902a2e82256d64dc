"""Summaries and diffs from the spec alone: per-block rows, totals and memory estimates (no torch).

    s = archspec.summary("specs/resnet50.yaml", depth=2, batch=32, dtype="bf16")
    s.rows, s.params, s.macs, s.forward_bytes, s.training_bytes
    print(s)                 # aligned plain text; rich.print(s) draws a table
    d = archspec.diff(archspec.load("specs/resnet50.yaml"), archspec.load("specs/resnet152.yaml"))

Counts follow the rest of archspec: `params` are the trainable tensors (every parameter of a compiled
model is trainable; batch-norm running statistics are buffers, counted apart); MACs are the
multiply-accumulates of the conv and linear layers per image, at inference (auxiliary heads apart);
FLOPs are 2 x MACs, as `torch.utils.flop_counter` counts.

Activation memory, defined
--------------------------
Both figures describe eager PyTorch running the compiled module (`archspec.compile(spec)`) on a batch of
`batch` images in `dtype`, and count activation tensors only: not parameters, buffers, gradients or
optimizer state, nor allocator rounding, caches or convolution workspaces. They come from a symbolic run
of the compiled module (`MemoryReplay` below, each leaf block replaying its own module): every tensor the module allocates, in order, with its size, and
when it is freed (as Python reference counting frees it) or kept by autograd.

- forward (inference): the peak of the bytes of live activation tensors during `model.eval()` and
  `torch.no_grad()`, input batch and output included. A tensor is live from the op that makes it until
  its last reference goes; as eager Python runs it, a block's input stays live until the block returns
  (its caller still holds it), a residual keeps its input for the skip (and adds it in place where
  `nn.Residual` does), an inception keeps every branch's output until the concatenation, and a max
  pool's int64 indices live for one op. Batch norm
  is not folded into the conv, so a conv + BN keeps two outputs for a moment.
- training: the bytes of the tensors autograd keeps for the backward pass after one forward pass in
  `model.train()`, counted once per storage: each conv's and linear layer's input, each batch norm's
  input and per-channel statistics, each ReLU's output, a copy of the input of an in-place SiLU / ReLU6 /
  hardswish (autograd copies it before overwriting), max-pool indices, dropout masks, both operands of
  the squeeze-and-excitation product, and so on. The peak during a training step is this plus the
  transient tensors of one layer (forward) or the gradient of a few activations (backward).

`tests/test_summary.py` checks both figures, for every bundled spec, against the tensors torch actually
allocates and saves (on CPU and on the meta device). Other devices can keep slightly different small
tensors (on CUDA, dropout keeps a 1-byte mask rather than a float one): a fraction of a percent here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from math import prod
from pathlib import Path
from typing import Any, Sequence

from .blocks.base import Block, MacroBlock, Node, Shape, fmt_shape
from .spec import Spec, load
from .units import human, human_bytes

# Element sizes by dtype name (the CLI's --dtype and a few aliases, torch's names included).
_DTYPES = {"fp32": ("fp32", 4), "float32": ("fp32", 4), "float": ("fp32", 4),
           "bf16": ("bf16", 2), "bfloat16": ("bf16", 2),
           "fp16": ("fp16", 2), "float16": ("fp16", 2), "half": ("fp16", 2)}
DTYPES = ("fp32", "bf16", "fp16")
INDEX_BYTES, _STAT = 8, 4  # int64 (pooling indices, num_batches_tracked); batch-norm statistics stay fp32 in bf16/fp16 models


def dtype_size(dtype: str) -> tuple[str, int]:
    """('fp32' | 'bf16' | 'fp16', bytes per element) for a dtype name such as 'bf16' or 'torch.bfloat16'."""
    key = str(dtype).removeprefix("torch.").lower()
    if key not in _DTYPES:
        raise ValueError(f"unknown dtype '{dtype}'; use one of {', '.join(DTYPES)}")
    return _DTYPES[key]


def _numel(shape: Shape) -> int:
    return prod(shape)


def _signed(n: int | float, fmt: str = ",") -> str:
    return ("+" if n > 0 else "") + format(n, fmt)


# --- activation memory: a symbolic run of the compiled module -----------------------------------------

# Activations the compiled modules apply in place (nn.activation(..., inplace=True) honours these).
_INPLACE = frozenset({"relu", "relu6", "silu", "hardswish", "hardsigmoid"})
# Activations whose gradient autograd computes from the output (it keeps the output, not the input).
_SAVES_OUTPUT = frozenset({"relu", "sigmoid", "tanh"})


class Tensor:
    """A tensor of the symbolic run: its bytes, its references, whether autograd keeps it."""

    __slots__ = ("nbytes", "refs", "saved")

    def __init__(self, nbytes: int) -> None:
        self.nbytes, self.refs, self.saved = nbytes, 1, False


def concrete(node: Node) -> Block:
    """The block whose module was compiled: a macro block's expansion at the node's input."""
    return node.block.expand_node(node) if isinstance(node.block, MacroBlock) else node.block


class MemoryReplay:
    """Replays what the compiled module allocates, frees and (in training) hands to autograd.

    The composites (sequence, residual, concatenation: `Node.form`) are replayed here as `archspec/nn.py`
    runs them; each leaf block replays its own module (`Block.replay`, beside its builder). A replayed
    module's input is borrowed (the caller holds it) and it returns a new reference to its output. Sizes
    are bytes for the whole batch."""

    def __init__(self, training: bool, batch: int, itemsize: int) -> None:
        self.training, self.batch, self.itemsize = training, batch, itemsize
        self.live = self.peak = self.saved = 0
        self.where = self.peak_at = ""

    # tensors
    def new(self, numel: int, itemsize: int | None = None, per_sample: bool = True) -> Tensor:
        t = Tensor((self.batch if per_sample else 1) * numel * (itemsize or self.itemsize))
        self.live += t.nbytes
        if self.live > self.peak:
            self.peak, self.peak_at = self.live, self.where
        return t

    @staticmethod
    def ref(t: Tensor) -> Tensor:
        t.refs += 1
        return t

    def drop(self, t: Tensor) -> None:
        t.refs -= 1
        if t.refs == 0 and not t.saved:
            self.live -= t.nbytes

    def keep(self, *tensors: Tensor) -> None:
        """Autograd saves these for backward (training only): they live until the backward pass."""
        if self.training:
            for t in tensors:
                if not t.saved:
                    t.saved = True
                    self.saved += t.nbytes

    # the network
    def network(self, root: Node) -> None:
        x = self.new(_numel(root.in_shape))  # the input batch, held by the caller throughout
        taps: dict[str, list[Node]] = {}
        for head in (c for c in root.children if c.aux):
            taps.setdefault(head.block.tap, []).append(head)  # type: ignore[attr-defined]
        outputs, cur = [], self.ref(x)
        for child in (c for c in root.children if not c.aux):
            new = self.run(child, cur)
            if self.training:  # an auxiliary head runs on the layer it taps; its output is returned
                outputs += [self.run(head, new) for head in taps.get(child.name, ())]
            self.drop(cur)
            cur = new

    def run(self, node: Node, x: Tensor) -> Tensor:
        block = concrete(node)
        outer, self.where = self.where, node.path
        if node.form == "chain":
            out = self.sequential(node.children, x)
        elif node.form == "residual":
            out = self.residual(node, block, x)
        elif node.form == "concat":
            out = self.concat(node, x)
        else:
            out = block.replay(self, node, x)
        self.where = outer
        return out

    def sequential(self, children: Sequence[Node], x: Tensor) -> Tensor:
        cur = self.ref(x)  # nn.Sequential: `for module in self: input = module(input)`
        for child in children:
            new = self.run(child, cur)
            self.drop(cur)
            cur = new
        return cur

    def residual(self, node: Node, block: Any, x: Tensor) -> Tensor:
        # nn.Residual: out = drop_path(body(x)); out += shortcut(x) (or out = out + shortcut(x)); act(out)
        body, shortcut = node.residual_parts()
        out = self.sequential(body, x)
        n = _numel(node.out_shape)
        if self.training and block.drop_path > 0:  # out * (B,1,1,1) mask; autograd keeps the mask
            mask = self.new(1)
            dropped = self.new(n)
            self.keep(mask)
            self.drop(mask)
            self.drop(out)
            out = dropped
        skip = self.run(shortcut, x) if shortcut is not None else self.ref(x)
        if not (body and self.fresh_output(body[-1])):  # out of place: a new tensor for the sum
            total = self.new(n)
            self.drop(out)
            out = total
        self.drop(skip)
        return self.activation(block.activation, out, n, inplace=True)

    def fresh_output(self, node: Node) -> bool:
        """Whether nn.Residual adds in place after this body layer (nn.py's `_fresh_output`)."""
        while node.form == "chain" and node.children:  # an nn.Sequential: its last module decides
            node = node.children[-1]
        return not node.children and concrete(node).fresh_output(node)

    def concat(self, node: Node, x: Tensor) -> Tensor:
        outs = [self.run(branch, x) for branch in node.children]  # torch.cat([branch(x) for ...])
        y = self.new(_numel(node.out_shape))
        for o in outs:
            self.drop(o)
        return y

    # the modules the leaves share
    def activation(self, name: str, x: Tensor, n: int, inplace: bool) -> Tensor:
        """Apply an activation to the owned tensor `x` (n elements per image); returns the owned result."""
        if name == "none":
            return x
        if inplace and name in _INPLACE:
            if name == "relu":
                self.keep(x)  # relu's gradient reads its output, which is x itself
            elif self.training:
                copy = self.new(n)  # autograd copies the input before it is overwritten
                self.keep(copy)
                self.drop(copy)
            return x
        y = self.new(n)
        self.keep(y if name in _SAVES_OUTPUT else x)
        self.drop(x)
        return y

    def batchnorm(self, x: Tensor, n: int, channels: int) -> Tensor:
        y = self.new(n)
        if self.training:  # its input, and the batch mean and inverse std per channel (fp32)
            stats = self.new(2 * channels, _STAT, per_sample=False)
            self.keep(x, stats)
            self.drop(stats)
        return y

    def pool(self, x: Tensor, pooled: Shape, op: str, reads_input: bool) -> Tensor:
        """A max or average pool to `pooled`; `reads_input`: an average pool's backward reads its input."""
        y = self.new(_numel(pooled))
        if op == "max":  # max_pool2d_with_indices: int64 indices, kept for backward
            indices = self.new(_numel(pooled), INDEX_BYTES)
            self.keep(x, indices)
            self.drop(indices)
        elif reads_input:
            self.keep(x)
        return y


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


def buffer_counts(root: Node) -> tuple[int, int]:
    """(float elements, int64 elements) of the compiled module's buffers: batch-norm running mean and
    variance, and each batch norm's `num_batches_tracked`."""
    counts = [concrete(node).buffers(node) for node in root.walk() if not node.children]
    return sum(f for f, _ in counts), sum(i for _, i in counts)


def buffer_bytes(root: Node, itemsize: int) -> int:
    """Bytes of the compiled module's buffers, its float ones in a model of `itemsize`-byte elements."""
    floats, ints = buffer_counts(root)
    return floats * itemsize + ints * INDEX_BYTES


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


def _resolve(spec: Spec | str | Path) -> Spec:
    return spec if isinstance(spec, Spec) else load(spec)


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
    spec = _resolve(spec)
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


# --- diff --------------------------------------------------------------------------------------------

_COMPARED = (("type", "type"), ("hyper", "hyper-parameters"), ("input_shape", "input"),
             ("output_shape", "output"), ("params", "params"), ("macs", "MACs"))


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


__all__ = ["ActivationMemory", "DTYPES", "Diff", "DiffRow", "Row", "Summary", "activation_memory", "diff",
           "dtype_size", "summary"]
