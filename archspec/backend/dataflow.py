"""Dataflow positions of a model's parametrised modules, independent of registration and call order.

`dataflow(model, input_shape, signatures)` runs the model once on the meta device (nothing is allocated
or computed), in training mode so that auxiliary heads run too, and records every torch function call
into a DAG whose nodes are the graph input, the calls that read a module's tensors (a conv, a batch
norm, a linear: one node per state_dict group) and the calls that merge the tensors of two or more
nodes (add, mul, cat, ...). Every other call (activations, pooling, flatten, dropout, views) is
transparent: its output is the node of its input. Each node gets a structural key, a hash of its kind,
its tensors' roles and shapes and its operands' keys, where the operands of a commutative op (add, mul)
are sorted by key and concat keeps its order (channel order means something). A concat of a concat's output
along the same dim takes that concat's operands in its place: cat(cat(a, b), c) is cat(a, b, c), the same
tensor, whether a model concatenates all earlier features at once (torchvision's DenseNet) or one at a time
(an inception with an identity branch per layer). The canonical sequence
of groups is a post-order walk from the sinks (sorted by key), operands in that order: two models with
the same dataflow give the same sequence, whatever order their modules were registered or called in.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils import _pytree as pytree

COMMUTATIVE = frozenset({"add", "mul"})
_RENAMED = {"iadd": "add", "radd": "add", "imul": "mul", "rmul": "mul", "concat": "cat", "concatenate": "cat"}
_SHAPED_LIKE = frozenset({"expand_as", "type_as", "view_as", "reshape_as"})  # the 2nd tensor gives a shape
_NORMS = frozenset({"batch_norm", "instance_norm", "layer_norm", "group_norm"})
# Calls whose output takes only the shape (or nothing) of its input: constants, not data (a dropout mask).
_FACTORIES = frozenset({"new_empty", "new_zeros", "new_ones", "new_full", "new_tensor", "empty_like", "zeros_like",
                        "ones_like", "full_like", "rand_like", "randn_like", "randint_like", "size", "dim"})


class AmbiguousDataflow(ValueError):
    """Two operands of a commutative op have the same structure: their order cannot be decided."""


@dataclass
class Node:
    kind: str  # "input", "param" or the name of a merging op ("add", "cat", ...)
    operands: list[int]
    groups: list[str] = field(default_factory=list)  # the state_dict groups (module prefixes) of a "param" node
    dim: int | None = None  # the dim a "cat" node concatenates along
    roles_key: str = ""  # structure with tensor roles, without shapes
    full_key: str = ""  # the same with shapes

    def order_key(self) -> tuple[str, str]:
        return self.roles_key, self.full_key


@dataclass
class Dataflow:
    nodes: list[Node]
    sequence: list[tuple[str, int]]  # (group, node) in canonical order
    untraced: list[str]  # groups whose tensors the forward pass never read


def _hash(*parts: Any) -> str:
    return hashlib.blake2b(repr(parts).encode(), digest_size=12).hexdigest()


def _op_name(func: Any) -> str:
    name = getattr(func, "__name__", str(func)).strip("_")
    return _RENAMED.get(name, name)


def _cat_dim(args: tuple, kwargs: dict | None, ndim: int) -> int:
    """The dim of torch.cat(tensors, dim=0), counted from the front."""
    dim = args[1] if len(args) > 1 else (kwargs or {}).get("dim", 0)
    return dim % ndim if isinstance(dim, int) and ndim else dim


class _Recorder(TorchFunctionMode):
    def __init__(self, leaves: dict[int, str], signatures: Mapping[str, tuple]) -> None:
        super().__init__()
        self.nodes = [Node("input", [])]
        self.producer: dict[int, int] = {}
        self.concatenated: dict[int, int] = {}  # id(the output tensor of a cat) -> its "cat" node
        self.owner = leaves  # id(tensor) -> its group, also for tensors derived from a group's tensors only
        self.signatures = signatures
        self.alive: list[Any] = []  # every recorded tensor stays alive, so that no id is reused

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        name = _op_name(func)
        if name in _NORMS:  # shaped like its input; torch computes it on meta through slow Python decompositions
            out = args[0].new_empty(args[0].shape)
        else:
            out = func(*args, **(kwargs or {}))
        if name in _FACTORIES:
            return out
        inputs = [t for t in pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        if name in _SHAPED_LIKE:
            inputs = inputs[:1]
        data = [self.producer[id(t)] for t in inputs if id(t) in self.producer]
        groups = list(dict.fromkeys(self.owner[id(t)] for t in inputs if id(t) in self.owner and id(t) not in self.producer))
        outs = [t for t in pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]
        if not outs or not (data or groups):
            return out
        self.alive += inputs + outs
        if not data:  # a group's tensor transformed (a transposed or standardised weight): still the group's
            for t in outs:
                self.owner[id(t)] = groups[0]
            return out
        if groups:
            node = self._add(Node("param", data, groups))
        elif name == "cat":
            node = self._cat([t for t in inputs if id(t) in self.producer], _cat_dim(args, kwargs, outs[0].dim()))
            if self.nodes[node].kind == "cat":
                self.concatenated[id(outs[0])] = node
        elif len(set(data)) > 1:  # a call on several tensors of one node (x * x) is unary
            node = self._add(Node(name, data))
        else:
            node = data[0]
        for t in outs:
            self.producer[id(t)] = node
        return out

    def _cat(self, inputs: list[torch.Tensor], dim: int) -> int:
        """The node of cat(inputs, dim): an input that is a concat's output along `dim` (that very tensor, not
        a part or view of it) gives that concat's operands; concatenated parts of one node (cat([x0, x1]) of
        a chunked x) are that node."""
        operands: list[int] = []
        for t in inputs:
            node = self.producer[id(t)]
            inner = self.concatenated.get(id(t))
            operands += self.nodes[node].operands if inner == node and self.nodes[node].dim == dim else [node]
        if len(set(operands)) == 1:
            return operands[0]
        return self._add(Node("cat", operands, dim=dim))

    def _add(self, node: Node) -> int:
        keys = [self.nodes[i].order_key() for i in node.operands]
        if node.kind in COMMUTATIVE:
            keys.sort()
        roles = [sorted(r for r, _ in self.signatures[g]) for g in node.groups]
        shapes = [self.signatures[g] for g in node.groups]
        node.roles_key = _hash(node.kind, node.dim, roles, [k[0] for k in keys])
        node.full_key = _hash(node.kind, node.dim, shapes, [k[1] for k in keys])
        self.nodes.append(node)
        return len(self.nodes) - 1


def trace(model: nn.Module, input_shape: tuple[int, ...], signatures: Mapping[str, tuple]) -> list[Node]:
    """The DAG of `model`'s forward pass on a meta batch of two (training mode; the model's own tensors
    and mode are left as they were)."""
    state = model.state_dict(keep_vars=True)
    meta = {k: torch.empty(v.shape, dtype=v.dtype, device="meta") for k, v in state.items()}
    leaves = {id(t): k.rpartition(".")[0] for k, t in meta.items()}
    recorder = _Recorder(leaves, signatures)
    x = torch.empty(2, *input_shape, device="meta")
    recorder.nodes[0].roles_key = recorder.nodes[0].full_key = _hash("input")
    recorder.producer[id(x)] = 0
    modes = {m: m.training for m in model.modules()}
    try:
        model.train()
        with recorder, torch.no_grad():
            torch.func.functional_call(model, meta, (x,), strict=False)
    finally:
        for module, training in modes.items():
            module.training = training
    return recorder.nodes


def _ordered(nodes: list[Node], operands: list[int]) -> list[int]:
    """Operands in canonical order: by structural key; equal keys of distinct nodes are ambiguous."""
    ranked = sorted(dict.fromkeys(operands), key=lambda i: nodes[i].order_key())
    for a, b in zip(ranked, ranked[1:]):
        if nodes[a].order_key() == nodes[b].order_key():
            raise AmbiguousDataflow(f"the dataflow has two parts of the same structure ({_describe(nodes, a)} and "
                                    f"{_describe(nodes, b)}) that a commutative op combines (or two such outputs): "
                                    "nothing decides their order")
    return ranked


def _describe(nodes: list[Node], index: int) -> str:
    """The first group a node's subgraph reaches, going up its first operands."""
    while nodes[index].kind != "param" and nodes[index].operands:
        index = nodes[index].operands[0]
    return nodes[index].groups[0] if nodes[index].groups else "the input"


def canonical(nodes: list[Node]) -> list[tuple[str, int]]:
    """(group, node) in a post-order walk from the sinks, operands in canonical order."""
    consumed = {i for node in nodes for i in node.operands}
    sinks = _ordered(nodes, [i for i in range(len(nodes)) if i not in consumed])
    seen: set[int] = set()
    sequence: list[tuple[str, int]] = []
    emitted: set[str] = set()
    for sink in sinks:
        stack: list[tuple[int, bool]] = [(sink, False)]
        while stack:  # iterative: a chain of 200,000 layers is no deeper for it
            index, expanded = stack.pop()
            if expanded:
                for group in nodes[index].groups:
                    if group not in emitted:
                        emitted.add(group)
                        sequence.append((group, index))
                continue
            if index in seen:
                continue
            seen.add(index)
            stack.append((index, True))
            node = nodes[index]
            operands = _ordered(nodes, node.operands) if node.kind in COMMUTATIVE else list(dict.fromkeys(node.operands))
            stack += [(i, False) for i in reversed(operands) if i not in seen]
    return sequence


def dataflow(model: nn.Module, input_shape: tuple[int, ...], signatures: Mapping[str, tuple]) -> Dataflow:
    """`model`'s groups in canonical dataflow order; `signatures`: {group: ((role, shape), ...)}."""
    nodes = trace(model, input_shape, signatures)
    sequence = canonical(nodes)
    traced = {g for g, _ in sequence}
    return Dataflow(nodes, sequence, [g for g in signatures if g not in traced])
