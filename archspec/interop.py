"""Weight interop: copy a torchvision/timm (or any) state_dict onto a compiled model.

The mapping is structural, not by names: both state_dicts are cut into per-module groups
(a conv's weight, a BN's weight/bias/running stats, ...) in definition order, each group
is reduced to its signature (tensor roles and shapes), and the two signature sequences
are aligned. Aligned groups are copied; the rest is reported as missing, unexpected or
mismatched (same roles, other shapes).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

Group = tuple[str, dict[str, torch.Tensor]]


@dataclass
class TransferReport:
    transferred: list[tuple[str, str]] = field(default_factory=list)  # (ours, theirs)
    missing: list[str] = field(default_factory=list)  # ours, left as initialised
    unexpected: list[str] = field(default_factory=list)  # theirs, unused
    mismatched: list[tuple[str, str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    values: int = 0

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def __str__(self) -> str:
        lines = [f"transferred {len(self.transferred)} tensors ({self.values:,} values); "
                 f"missing {len(self.missing)}, unexpected {len(self.unexpected)}, mismatched {len(self.mismatched)}"]
        lines += [f"  missing:    {k}" for k in self.missing[:10]]
        lines += [f"  unexpected: {k}" for k in self.unexpected[:10]]
        lines += [f"  mismatched: {ours} {list(a)} <- {theirs} {list(b)}" for ours, theirs, a, b in self.mismatched[:10]]
        return "\n".join(lines)


def _groups(state: Mapping[str, torch.Tensor]) -> list[Group]:
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        prefix, _, role = key.rpartition(".")
        groups.setdefault(prefix, {})[role] = tensor
    return list(groups.items())


def _signature(group: Group) -> tuple[tuple[str, tuple[int, ...]], ...]:
    return tuple(sorted((role, tuple(t.shape)) for role, t in group[1].items()))


def _roles(group: Group) -> tuple[str, ...]:
    return tuple(sorted(group[1]))


def transfer(source: Mapping[str, torch.Tensor] | nn.Module, model: nn.Module) -> TransferReport:
    """Copy `source` (a state_dict or module) into `model` in place; report what happened."""
    theirs = _groups(source.state_dict() if isinstance(source, nn.Module) else source)
    ours = _groups(model.state_dict())
    report = TransferReport()
    matcher = SequenceMatcher(None, [_signature(g) for g in ours], [_signature(g) for g in theirs], autojunk=False)
    with torch.no_grad():
        for op, a0, a1, b0, b1 in matcher.get_opcodes():
            if op == "equal":
                for (our_prefix, our_tensors), (their_prefix, their_tensors) in zip(ours[a0:a1], theirs[b0:b1]):
                    for role, tensor in our_tensors.items():
                        tensor.copy_(their_tensors[role])
                        report.transferred.append((_key(our_prefix, role), _key(their_prefix, role)))
                        report.values += tensor.numel()
                continue
            pairs = list(zip(ours[a0:a1], theirs[b0:b1])) if a1 - a0 == b1 - b0 else []
            if pairs and all(_roles(o) == _roles(t) for o, t in pairs):
                for (op_, ot), (tp, tt) in pairs:
                    for role in ot:
                        if ot[role].shape != tt[role].shape:
                            report.mismatched.append((_key(op_, role), _key(tp, role), tuple(ot[role].shape), tuple(tt[role].shape)))
                        else:
                            report.missing.append(_key(op_, role))
                continue
            report.missing += [_key(p, r) for p, ts in ours[a0:a1] for r in ts]
            report.unexpected += [_key(p, r) for p, ts in theirs[b0:b1] for r in ts]
    return report


def _key(prefix: str, role: str) -> str:
    return f"{prefix}.{role}" if prefix else role


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state_dict from a `torch.save`d file (plain state_dict or archspec checkpoint), loaded safely."""
    data: Any = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(data, dict) and "state_dict" in data and isinstance(data["state_dict"], dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ValueError(f"{path} holds no state_dict (a mapping of names to tensors)")
    return data


def load_weights(model: nn.Module, weights: str | Path | Mapping[str, torch.Tensor] | nn.Module,
                 strict: bool = True) -> TransferReport:
    """Load weights structurally; with `strict`, anything not transferred is an error."""
    source = read_state_dict(weights) if isinstance(weights, (str, Path)) else weights
    report = transfer(source, model)
    if strict and not report.ok:
        raise ValueError(f"the weights do not fit this spec:\n{report}")
    return report
