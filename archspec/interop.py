"""Weight interop: copy a torchvision/timm (or any) state_dict onto a compiled model.

The mapping is structural, not by names: both state_dicts are cut into per-module groups
(a conv's weight, a BN's weight/bias/running stats, ...) in definition order, each group
is reduced to its signature (tensor roles and shapes), and the two signature sequences
are aligned (longest common subsequence; what is left is aligned again, for layers defined
in another order, such as auxiliary heads). Aligned groups are copied; the rest is reported
as missing, unexpected or mismatched (same roles, other shapes).
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from .errors import one_line

Group = tuple[str, dict[str, torch.Tensor]]


class WeightsError(ValueError):
    """Weights that cannot be read, or that do not fit the model: a one-line message, and the
    transfer report (`.report`) where the weights were read."""

    def __init__(self, message: str, report: "TransferReport | None" = None) -> None:
        super().__init__(message)
        self.report = report


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


def _tokens(prefix: str) -> frozenset[str]:
    return frozenset(re.findall(r"[a-z]+|\d+", prefix.lower()))


def _align(ours: list[Group], theirs: list[Group], key: Callable[[Group], Any]) -> list[tuple[int, int]]:
    """Order-preserving alignment of equal keys that keeps the most groups (a longest common
    subsequence). Among equally long alignments it prefers pairs whose names share words, which
    only breaks ties between same-shaped layers (a classifier and an auxiliary head's, say)."""
    a, b = [key(g) for g in ours], [key(g) for g in theirs]
    ta, tb = [_tokens(g[0]) for g in ours], [_tokens(g[0]) for g in theirs]
    n, m = len(a), len(b)
    score = [[0.0] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        row, below = score[i], score[i + 1]
        for j in range(m - 1, -1, -1):
            best = max(below[j], row[j + 1])
            if a[i] == b[j]:
                union = len(ta[i] | tb[j]) or 1
                best = max(best, 1.0 + 1e-4 * len(ta[i] & tb[j]) / union + below[j + 1])
            row[j] = best
    pairs, i, j = [], 0, 0
    while i < n and j < m:
        if a[i] == b[j] and score[i][j] == 1.0 + 1e-4 * len(ta[i] & tb[j]) / (len(ta[i] | tb[j]) or 1) + score[i + 1][j + 1]:
            pairs.append((i, j))
            i, j = i + 1, j + 1
        elif score[i + 1][j] >= score[i][j + 1]:
            i += 1
        else:
            j += 1
    return pairs


def _match(ours: list[Group], theirs: list[Group], key: Callable[[Group], Any]) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Align, then align what is left (layers defined in another order), until nothing more matches."""
    left_ours, left_theirs, pairs = list(range(len(ours))), list(range(len(theirs))), []
    while left_ours and left_theirs:
        found = _align([ours[i] for i in left_ours], [theirs[j] for j in left_theirs], key)
        if not found:
            break
        pairs += [(left_ours[i], left_theirs[j]) for i, j in found]
        used_ours, used_theirs = {left_ours[i] for i, _ in found}, {left_theirs[j] for _, j in found}
        left_ours = [i for i in left_ours if i not in used_ours]
        left_theirs = [j for j in left_theirs if j not in used_theirs]
    return pairs, left_ours, left_theirs


def transfer(source: Mapping[str, torch.Tensor] | nn.Module, model: nn.Module) -> TransferReport:
    """Copy `source` (a state_dict or module) into `model` in place; report what happened."""
    theirs = _groups(source.state_dict() if isinstance(source, nn.Module) else source)
    ours = _groups(model.state_dict())
    report = TransferReport()
    pairs, left_ours, left_theirs = _match(ours, theirs, _signature)
    with torch.no_grad():
        for i, j in sorted(pairs):
            (our_prefix, our_tensors), (their_prefix, their_tensors) = ours[i], theirs[j]
            for role, tensor in our_tensors.items():
                tensor.copy_(their_tensors[role])
                report.transferred.append((_key(our_prefix, role), _key(their_prefix, role)))
                report.values += tensor.numel()
    # What is left has no same-shaped partner: pair same-role layers to report shape mismatches.
    rest_ours, rest_theirs = [ours[i] for i in left_ours], [theirs[j] for j in left_theirs]
    same_roles, _, _ = _match(rest_ours, rest_theirs, _roles)
    for i, j in sorted(same_roles):
        (op, ot), (tp, tt) = rest_ours[i], rest_theirs[j]
        for role in ot:
            report.mismatched.append((_key(op, role), _key(tp, role), tuple(ot[role].shape), tuple(tt[role].shape)))
    paired_ours, paired_theirs = {i for i, _ in same_roles}, {j for _, j in same_roles}
    report.missing += [_key(p, r) for i, (p, ts) in enumerate(rest_ours) if i not in paired_ours for r in ts]
    report.unexpected += [_key(p, r) for j, (p, ts) in enumerate(rest_theirs) if j not in paired_theirs for r in ts]
    return report


def _key(prefix: str, role: str) -> str:
    return f"{prefix}.{role}" if prefix else role


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state_dict from a `torch.save`d file (plain state_dict or archspec checkpoint), loaded safely
    (`weights_only=True`). A missing file is a FileNotFoundError; any other failure a one-line WeightsError."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no such weights file: {path}")
    try:
        with warnings.catch_warnings():  # e.g. torch's note on the pickle protocol
            warnings.simplefilter("ignore")
            data: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises pickle, zip, key and runtime errors alike, over many lines
        refused = re.search(r"WeightsUnpickler error:\s*(.+)", str(exc))
        if refused:
            reason = refused.group(1).strip().split(". ")[0][:160]
            detail = f"it holds more than tensors, refused by weights_only=True ({reason})"
        else:
            detail = f"not a file written by torch.save ({type(exc).__name__}: {one_line(exc)[:160]})"
        raise WeightsError(f"cannot read weights from {path}: {detail}") from None
    if isinstance(data, dict) and "state_dict" in data and isinstance(data["state_dict"], dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise WeightsError(f"cannot read weights from {path}: it holds no state_dict (a mapping of names to tensors)")
    return data


def load_weights(model: nn.Module, weights: str | Path | Mapping[str, torch.Tensor] | nn.Module,
                 strict: bool = True) -> TransferReport:
    """Load weights structurally; with `strict`, anything not transferred is a WeightsError (one line;
    the whole report is its `.report`)."""
    source = read_state_dict(weights) if isinstance(weights, (str, Path)) else weights
    report = transfer(source, model)
    if strict and not report.ok:
        first = ([f"missing {k}" for k in report.missing] + [f"unexpected {k}" for k in report.unexpected]
                 + [f"{ours} is {list(a)} but {theirs} is {list(b)}" for ours, theirs, a, b in report.mismatched])[0]
        origin = f"the weights in {weights}" if isinstance(weights, (str, Path)) else "the weights"
        target = getattr(model, "spec_name", type(model).__name__)
        raise WeightsError(f"{origin} do not fit {target}: {str(report).splitlines()[0]} (e.g. {first})", report)
    return report
