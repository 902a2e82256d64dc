"""Activation and buffer memory of a compiled spec, from its analysis alone: a symbolic run of the module.

Both figures describe eager PyTorch running the compiled module (`archspec.compile(spec)`) on a batch of
`batch` images in `dtype`, and count activation tensors only: not parameters, buffers, gradients or
optimizer state, nor allocator rounding, caches or convolution workspaces. They come from a symbolic run
of the compiled module (`MemoryReplay`, each leaf block replaying its own module): every tensor the module allocates, in order, with its size, and
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

from math import prod
from typing import Any, Sequence

from .activations import ACTIVATIONS
from .node import Node, Shape

# Element sizes by dtype name (the CLI's --dtype and a few aliases, torch's names included).
_DTYPES = {"fp32": ("fp32", 4), "float32": ("fp32", 4), "float": ("fp32", 4),
           "bf16": ("bf16", 2), "bfloat16": ("bf16", 2),
           "fp16": ("fp16", 2), "float16": ("fp16", 2), "half": ("fp16", 2)}
DTYPES = ("fp32", "bf16", "fp16")
INDEX_BYTES, STAT_BYTES = 8, 4  # int64 (pooling indices, num_batches_tracked); batch-norm statistics stay fp32 in bf16/fp16 models


def dtype_size(dtype: str) -> tuple[str, int]:
    """('fp32' | 'bf16' | 'fp16', bytes per element) for a dtype name such as 'bf16' or 'torch.bfloat16'."""
    key = str(dtype).removeprefix("torch.").lower()
    if key not in _DTYPES:
        raise ValueError(f"unknown dtype '{dtype}'; use one of {', '.join(DTYPES)}")
    return _DTYPES[key]


def _numel(shape: Shape) -> int:
    return prod(shape)


# --- activation memory: a symbolic run of the compiled module -----------------------------------------



class Tensor:
    """A tensor of the symbolic run: its bytes, its references, whether autograd keeps it."""

    __slots__ = ("nbytes", "refs", "saved", "nhwc")

    def __init__(self, nbytes: int) -> None:
        self.nbytes, self.refs, self.saved = nbytes, 1, False
        self.nhwc = False  # laid out channels-last (what a layer norm or linear over channels leaves)


def concrete(node: Node) -> Any:
    """The block whose module was compiled: a macro block's (a node with an expansion) expansion at the node's
    input, with what was set on the node after analysis (mbconv's stochastic depth rate)."""
    return node.block.expand_node(node) if node.expanded is not None else node.block


def ends_fresh(node: Node) -> bool:
    """Whether the module of `node` returns a fresh tensor that its own backward does not read, so that a
    residual may add its shortcut into it in place (nn.Residual's `add_inplace`)."""
    while node.form == "chain" and node.children:  # an nn.Sequential: its last module decides
        node = node.children[-1]
    return not node.children and concrete(node).fresh_output(node)


class MemoryReplay:
    """Replays what the compiled module allocates, frees and (in training) hands to autograd.

    The composites (sequence, residual, concatenation: `Node.form`) are replayed here as `archspec/backend/nn.py`
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
            if out is not x:  # a new tensor (a view keeps its base's layout)
                out.nhwc = block.output_layout(node, x.nhwc)
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
        if self.training and block.drop_rate(node) > 0:  # out * (B,1,1,1) mask; autograd keeps the mask
            mask = self.new(1)
            dropped = self.new(n)
            self.keep(mask)
            self.drop(mask)
            self.drop(out)
            out = dropped
        skip = self.run(shortcut, x) if shortcut is not None else self.ref(x)
        if not (body and ends_fresh(body[-1])):  # out of place: a new tensor for the sum
            total = self.new(n)
            total.nhwc = out.nhwc
            self.drop(out)
            out = total
        self.drop(skip)
        return self.activation(block.activation, out, n, inplace=True)


    def concat(self, node: Node, x: Tensor) -> Tensor:
        outs = [self.run(branch, x) for branch in node.children]  # torch.cat([branch(x) for ...])
        y = self.new(_numel(node.out_shape))
        y.nhwc = all(o.nhwc for o in outs)  # torch.cat keeps channels-last when every part has it
        for o in outs:
            self.drop(o)
        return y

    # the modules the leaves share
    def activation(self, name: str, x: Tensor, n: int, inplace: bool) -> Tensor:
        """Apply an activation to the owned tensor `x` (n elements per image); returns the owned result."""
        if name == "none":
            return x
        op = ACTIVATIONS[name]
        if inplace and op.inplace:
            if op.keeps == "output":
                self.keep(x)  # e.g. relu: its gradient reads its output, which is x itself
            elif self.training:
                copy = self.new(n)  # autograd copies the input before it is overwritten
                self.keep(copy)
                self.drop(copy)
            return x
        y = self.new(n)
        self.keep(y if op.keeps == "output" else x)
        self.drop(x)
        return y

    def batchnorm(self, x: Tensor, n: int, channels: int) -> Tensor:
        y = self.new(n)
        if self.training:  # its input, and the batch mean and inverse std per channel (fp32)
            stats = self.new(2 * channels, STAT_BYTES, per_sample=False)
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


def buffer_counts(root: Node) -> tuple[int, int]:
    """(float elements, int64 elements) of the compiled module's buffers: batch-norm running mean and
    variance, and each batch norm's `num_batches_tracked`."""
    counts = [concrete(node).buffers(node) for node in root.walk() if not node.children]
    return sum(f for f, _ in counts), sum(i for _, i in counts)


def buffer_bytes(root: Node, itemsize: int) -> int:
    """Bytes of the compiled module's buffers, its float ones in a model of `itemsize`-byte elements."""
    floats, ints = buffer_counts(root)
    return floats * itemsize + ints * INDEX_BYTES
