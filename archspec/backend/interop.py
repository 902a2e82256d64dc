"""Weight interop: copy a torchvision/timm (or any) state_dict onto a compiled model, right or refused.

Both state_dicts are cut into groups, one per module prefix (a conv's weight and bias, a batch norm's
weight, bias and running stats). Groups are paired by one of three methods (docs/weights.md):

- dataflow: when the source's architecture is known (a module, or the spec's `reference:` model for a
  file holding exactly that model's keys), both models are traced on the meta device and their groups
  paired by position in the dataflow (`archspec.backend.dataflow`), never by registration or key order; any
  difference in structure is refused, naming the first differing position on both sides;
- names: a file with our own keys (an archspec checkpoint) pairs by name; otherwise a group pairs with
  the group of the same name, or with the only group of its roles and shapes on each side, and a
  group with several same-shaped candidates is refused, naming them;
- explicit: a mapping {our_prefix: their_prefix} given by the user; the rest as without it.

Nothing is copied until every pair is checked (shapes, and dtypes that copy losslessly).
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from .dataflow import AmbiguousDataflow, dataflow
from ..errors import one_line
from .references import randomise_norms, reference_model

Groups = dict[str, dict[str, torch.Tensor]]
Pairs = list[tuple[str, str]]  # (our group, their group)
COUNTER = "num_batches_tracked"  # a batch norm's step counter: copied when both sides have it, else left
VERIFY_TOLERANCE = 1e-4  # the largest relative difference of outputs that --verify passes (fp32, eval)
_MORE = 5  # candidates named in a refusal


class WeightsError(ValueError):
    """Weights that cannot be read, or that do not fit the model: a one-line message, and the
    transfer report (`.report`) where the weights were read."""

    def __init__(self, message: str, report: "TransferReport | None" = None) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class TransferReport:
    method: str = "names"  # dataflow, names or explicit
    source: str = ""  # what the mapping was derived from: a reference model, or the file's names
    transferred: list[tuple[str, str]] = field(default_factory=list)  # (ours, theirs)
    missing: list[str] = field(default_factory=list)  # ours, left as initialised
    unexpected: list[str] = field(default_factory=list)  # theirs, unused
    mismatched: list[tuple[str, str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    values: int = 0
    verified: float | None = None  # --verify: the largest relative difference from the reference's outputs

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self) -> str:
        how = f"by {self.method}" + (f" ({self.source})" if self.source else "")
        line = (f"transferred {len(self.transferred)} tensors ({self.values:,} values) {how}; "
                f"missing {len(self.missing)}, unexpected {len(self.unexpected)}, mismatched {len(self.mismatched)}")
        if self.verified is not None:
            line += f"; verified: outputs within {self.verified:.2g} of the reference's (relative)"
        return line

    def __str__(self) -> str:
        lines = [self.summary()]
        lines += [f"  missing:    {k}" for k in self.missing[:10]]
        lines += [f"  unexpected: {k}" for k in self.unexpected[:10]]
        lines += [f"  mismatched: {ours} {list(a)} <- {theirs} {list(b)}" for ours, theirs, a, b in self.mismatched[:10]]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "source": self.source, "summary": self.summary(), "values": self.values,
                "mapping": [{"ours": o, "theirs": t} for o, t in self.transferred],
                "missing": self.missing, "unexpected": self.unexpected,
                "mismatched": [{"ours": o, "theirs": t, "ours_shape": list(a), "theirs_shape": list(b)}
                               for o, t, a, b in self.mismatched],
                "verified_max_relative_difference": self.verified}


def _groups(state: Mapping[str, torch.Tensor]) -> Groups:
    groups: Groups = {}
    for key, tensor in state.items():
        prefix, _, role = key.rpartition(".")
        groups.setdefault(prefix, {})[role] = tensor
    return groups


# A group of one tensor pairs with another whatever the tensor is called: a parameter of a module's own
# (torchvision's ConvNeXt `layer_scale`, timm's `gamma`) has no name that conventions agree on.
LONE = "*"


def _signature(group: Mapping[str, torch.Tensor]) -> tuple[tuple[str, tuple[int, ...]], ...]:
    tensors = [(role, tuple(t.shape)) for role, t in group.items() if role != COUNTER]
    if len(tensors) == 1:  # its size-1 dimensions are layout, not data (timm's gamma (C,), torchvision's (C, 1, 1))
        return ((LONE, tuple(d for d in tensors[0][1] if d != 1)),)
    return tuple(sorted(tensors))


def _roles(group: Mapping[str, torch.Tensor]) -> tuple[str, ...]:
    return tuple(role for role, _ in _signature(group))


def _role_pairs(mine: Mapping[str, torch.Tensor], yours: Mapping[str, torch.Tensor]) -> list[tuple[str, str]]:
    """(our role, their role) of two paired groups: the same names, or the one tensor of each."""
    if _roles(mine) == (LONE,) == _roles(yours):
        return [(next(r for r in mine if r != COUNTER), next(r for r in yours if r != COUNTER))]
    return [(role, role) for role in mine if role in yours]


def _key(prefix: str, role: str) -> str:
    return f"{prefix}.{role}" if prefix else role


# -- pairing -------------------------------------------------------------------------------------------

def _by_names(ours: Groups, theirs: Groups) -> Pairs:
    """Pairs by equal names (same roles), then by roles and shapes where one group on each side has them;
    several candidates for a group are refused. Linear in the number of groups."""
    pairs = [(p, p) for p in ours if p in theirs and _roles(ours[p]) == _roles(theirs[p])]
    named = {p for p, _ in pairs}
    left_ours: dict[tuple, list[str]] = {}
    left_theirs: dict[tuple, list[str]] = {}
    for prefix, group in ours.items():
        if prefix not in named:
            left_ours.setdefault(_signature(group), []).append(prefix)
    for prefix, group in theirs.items():
        if prefix not in named:
            left_theirs.setdefault(_signature(group), []).append(prefix)
    for signature, mine in left_ours.items():
        candidates = left_theirs.get(signature, [])
        if len(mine) == 1 and len(candidates) == 1:
            pairs.append((mine[0], candidates[0]))
        elif candidates:
            shapes = ", ".join(f"{r} {list(s)}" for r, s in signature)
            raise WeightsError(f"cannot tell which weights go where: {_listed(mine)} of ours and {_listed(candidates)} "
                               f"of theirs all hold {shapes}, and their names differ; name the model they come from "
                               "(the spec's `reference:`, or a torch model as the source) or give a mapping "
                               f"(--map FILE, `mapping=`) with a line `{sorted(mine)[0]}: THEIR.PREFIX` for each")
    return pairs


def _listed(names: list[str]) -> str:
    names = sorted(names)
    shown = ", ".join(repr(n) for n in names[:_MORE])
    return shown + (f" (and {len(names) - _MORE} more)" if len(names) > _MORE else "")


def _explicit(ours: Groups, theirs: Groups, mapping: Mapping[str, str]) -> Pairs:
    """Pairs that `mapping` ({our_prefix: their_prefix}, longest prefix first, at dot boundaries) names."""
    pairs, used = [], set()
    for prefix in ours:
        parts = prefix.split(".") if prefix else []
        for n in range(len(parts), -1, -1):
            head = ".".join(parts[:n])
            if head in mapping:
                target = ".".join(p for p in (mapping[head], *parts[n:]) if p)
                if target not in theirs:
                    raise WeightsError(f"the mapping sends {prefix!r} to {target!r}, which the weights do not have")
                pairs.append((prefix, target))
                used.add(head)
                break
    unused = [k for k in mapping if k not in used]
    if unused:
        raise WeightsError(f"the mapping names {unused[0]!r}, which is no module of ours with weights (nor a prefix of one)")
    return pairs


def _by_dataflow(source: nn.Module, model: nn.Module, input_shape: tuple[int, ...], origin: str) -> Pairs:
    """Pairs by position in the two models' canonical dataflow sequences; a structural difference
    (the first differing position, named on both sides) is refused."""
    flows = []
    for m in (model, source):
        groups = _groups(m.state_dict(keep_vars=True))
        try:
            flows.append((dataflow(m, input_shape, {p: _signature(g) for p, g in groups.items()}), groups))
        except AmbiguousDataflow as exc:
            raise WeightsError(f"cannot match by dataflow ({'ours' if m is model else origin}): {exc}") from None
        except Exception as exc:  # the model does not run on the meta device with this input
            who = "ours" if m is model else origin
            raise WeightsError(f"cannot trace {who} on the meta device: {one_line(exc)}") from None
    (mine, our_groups), (yours, their_groups) = flows
    for i, ((o, on), (t, tn)) in enumerate(zip(mine.sequence, yours.sequence)):
        if mine.nodes[on].roles_key != yours.nodes[tn].roles_key or _roles(our_groups[o]) != _roles(their_groups[t]):
            raise WeightsError(f"the dataflow of ours differs from {origin}'s at parametrised layer {i + 1} (of "
                               f"{len(mine.sequence)} and {len(yours.sequence)}): ours {o!r} {_shapes(our_groups[o])}, theirs {t!r} "
                               f"{_shapes(their_groups[t])}; the spec is not that network (or give a mapping)")
    if len(mine.sequence) != len(yours.sequence):
        longer, side = (mine, "ours") if len(mine.sequence) > len(yours.sequence) else (yours, origin)
        extra = longer.sequence[min(len(mine.sequence), len(yours.sequence))][0]
        raise WeightsError(f"the dataflow of ours has {len(mine.sequence)} parametrised layers, {origin}'s "
                           f"{len(yours.sequence)}: {side} has more, from {extra!r} on")
    pairs = [(o, t) for (o, _), (t, _) in zip(mine.sequence, yours.sequence)]
    left_ours = {p: our_groups[p] for p in mine.untraced}
    left_theirs = {p: their_groups[p] for p in yours.untraced}
    return pairs + _by_names(left_ours, left_theirs)  # groups no forward pass reads: by names, if any


def _shapes(group: Mapping[str, torch.Tensor]) -> str:
    return "{" + ", ".join(f"{r}: {list(t.shape)}" for r, t in sorted(group.items()) if r != COUNTER) + "}"


# -- transfer -----------------------------------------------------------------------------------------

def transfer(source: Mapping[str, torch.Tensor] | nn.Module, model: nn.Module, *,
             mapping: Mapping[str, str] | None = None, reference: str | nn.Module | None = None,
             input_shape: tuple[int, ...] | None = None, strict: bool = False) -> TransferReport:
    """Copy `source` (a state_dict or a module) into `model` in place. `mapping` ({our_prefix:
    their_prefix}) pairs what it names; the rest pairs by dataflow when the source's architecture is
    known (a module source, or `reference`: a model or `torchvision:NAME`/`timm:NAME`, by default the
    spec's, whose state_dict the source is), else by names and unique shapes. An ambiguous or
    structurally different pairing is a WeightsError; what pairs but does not fit (shapes) is in the
    report; with `strict` it is a WeightsError too, before anything is copied. `input_shape` (C, H, W):
    by default the spec's."""
    ours = _groups(model.state_dict())
    state = source.state_dict() if isinstance(source, nn.Module) else source
    theirs = _groups(state)
    if reference is None:
        reference = getattr(getattr(model, "spec", None), "reference", None)
    architecture = source if isinstance(source, nn.Module) else reference
    explicit = _explicit(ours, theirs, mapping) if mapping else []
    taken_ours, taken_theirs = {o for o, _ in explicit}, {t for _, t in explicit}
    report = TransferReport()
    auto, why_not = _by_architecture(state, model, architecture, input_shape, report, fallible=bool(mapping))
    if auto is None:
        try:
            auto = _by_names({p: g for p, g in ours.items() if p not in taken_ours},
                             {p: g for p, g in theirs.items() if p not in taken_theirs})
        except WeightsError as exc:
            raise WeightsError(f"{exc}; {why_not}" if why_not else str(exc)) from None
        same = not mapping and len(auto) == len(ours) == len(theirs) and all(o == t for o, t in auto)
        report.method, report.source = "names", "same names" if same else "names and unique shapes"
    pairs = explicit + [(o, t) for o, t in auto if o not in taken_ours and t not in taken_theirs]
    if mapping:
        report.method, report.source = "explicit", f"a mapping of {len(mapping)} prefixes, {report.method} for the rest"
    fitting = _check(ours, theirs, pairs, report)
    if strict and not report.ok:
        raise _Misfit(report, getattr(model, "spec_name", type(model).__name__))
    with torch.no_grad():
        for mine, yours in fitting:
            mine.copy_(yours)
    return report


def _by_architecture(state: Mapping[str, torch.Tensor], model: nn.Module, architecture: str | nn.Module | None,
                     input_shape: tuple[int, ...] | None, report: TransferReport,
                     fallible: bool) -> tuple[Pairs | None, str]:
    """(pairs by dataflow, '') when `architecture` (a module, or a reference's name) is the source's: a
    module source, or a file holding exactly the reference's keys (and not ours: an archspec checkpoint).
    Else (None, why the reference did not decide, or ''); so too where the dataflow refuses, if `fallible`."""
    if architecture is None or _same_keys(state, model.state_dict()):
        return None, ""
    origin = architecture if isinstance(architecture, str) else type(architecture).__name__
    module = architecture if isinstance(architecture, nn.Module) else _meta_reference(architecture)
    unfit = _not_state_of(state, module.state_dict(), origin)
    if unfit:
        return None, f"{origin} could not decide: {unfit}"
    try:
        pairs = _by_dataflow(module, model, input_shape or _input_shape(model), origin)
    except WeightsError as exc:
        if not fallible:
            raise
        return None, f"the dataflow could not decide: {exc}"
    report.method, report.source = "dataflow", origin
    return pairs, ""


def _same_keys(state: Mapping[str, torch.Tensor], ours: Mapping[str, torch.Tensor]) -> bool:
    """Whether a state_dict has exactly our keys and shapes (an archspec checkpoint of this spec)."""
    return state.keys() == ours.keys() and all(tuple(state[k].shape) == tuple(v.shape) for k, v in ours.items())


def _not_state_of(state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], origin: str) -> str:
    """Why `state` is not a state_dict of `origin` (whose state_dict is `expected`), or ''."""
    missing = [k for k in expected if k not in state and not k.endswith(COUNTER)]
    unexpected = [k for k in state if k not in expected]
    other = [k for k in state if k in expected and tuple(state[k].shape) != tuple(expected[k].shape)]
    if not (missing or unexpected or other):
        return ""
    first = (f"no {missing[0]!r}" if missing else f"{unexpected[0]!r} is not {origin}'s" if unexpected
             else f"{other[0]!r} is {list(state[other[0]].shape)}, not {list(expected[other[0]].shape)}")
    return (f"the weights are not a state_dict of {origin} ({first}; "
            f"{len(missing)} keys missing, {len(unexpected)} unexpected, {len(other)} of other shapes)")


def _input_shape(model: nn.Module) -> tuple[int, ...]:
    spec = getattr(model, "spec", None)
    if spec is None:
        raise WeightsError("matching by dataflow runs the model: pass input_shape=(C, H, W) for a model without a spec")
    return tuple(spec.input.shape)


def _meta_reference(reference: str) -> nn.Module:
    """The reference model on the meta device, or on the CPU where its constructor computes with tensors
    (torchvision's RegNets derive their widths with torch ops, which meta tensors cannot turn into numbers)."""
    try:
        with torch.device("meta"):
            return reference_model(reference)
    except NotImplementedError:
        return reference_model(reference)


def _empty_reference(reference: str) -> nn.Module:
    """The reference model on the CPU, uninitialised (every tensor of its state_dict is given when it runs),
    unless it has buffers outside its state_dict, whose values only its constructor knows."""
    module = _meta_reference(reference)
    if not next(iter(module.state_dict().values())).is_meta:
        return module
    if any(key not in module.state_dict() for key, _ in module.named_buffers()):
        return reference_model(reference)
    return module.to_empty(device="cpu")


def _check(ours: Groups, theirs: Groups, pairs: Pairs, report: TransferReport) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Check every pair (roles, shapes, dtypes) and fill the report; the (ours, theirs) tensors that fit."""
    fitting = []
    for o, t in pairs:
        mine, yours = ours[o], theirs[t]
        if _signature(mine) != _signature(yours):
            report.mismatched += [(_key(o, r), _key(t, q), tuple(mine[r].shape), tuple(yours[q].shape))
                                  for r, q in _role_pairs(mine, yours) if r != COUNTER]
            continue
        for role, theirs_role in _role_pairs(mine, yours):
            tensor = mine[role]
            _check_dtype(_key(t, theirs_role), yours[theirs_role], _key(o, role), tensor)
            fitting.append((tensor, yours[theirs_role].reshape(tensor.shape)))
            report.transferred.append((_key(o, role), _key(t, theirs_role)))
            report.values += tensor.numel()
    paired_ours, paired_theirs = {o for o, _ in pairs}, {t for _, t in pairs}
    report.missing += [_key(p, r) for p, g in ours.items() if p not in paired_ours for r in g]
    report.unexpected += [_key(p, r) for p, g in theirs.items() if p not in paired_theirs for r in g]
    return fitting


class _Misfit(WeightsError):
    """A strict transfer that would leave tensors without a partner, or pair other shapes: nothing copied."""

    def __init__(self, report: TransferReport, target: str) -> None:
        first = ([f"missing {k}" for k in report.missing] + [f"unexpected {k}" for k in report.unexpected]
                 + [f"our {ours} is {list(a)} but their {theirs} is {list(b)}" for ours, theirs, a, b in report.mismatched])[0]
        super().__init__(f"do not fit {target}, nothing loaded: {report.summary().replace('transferred', 'would transfer', 1)} "
                         f"(e.g. {first})", report)


def _check_dtype(their_key: str, theirs: torch.Tensor, our_key: str, ours: torch.Tensor) -> None:
    """Refuse a copy that would lose information: complex values, integers into floating tensors, or floats
    into integer ones (a batch norm's int64 counter takes any integer)."""
    if theirs.is_complex() or ours.is_floating_point() != theirs.is_floating_point():
        raise WeightsError(f"{their_key} is {str(theirs.dtype).removeprefix('torch.')}, which does not copy "
                           f"losslessly into {our_key} ({str(ours.dtype).removeprefix('torch.')})")


# -- files, loading, verification ---------------------------------------------------------------------

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


def read_mapping(path: str | Path) -> dict[str, str]:
    """A mapping {our_prefix: their_prefix} from a YAML or JSON file."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"no such mapping file: {path}") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise WeightsError(f"cannot read the mapping in {path}: {one_line(exc)}") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise WeightsError(f"{path}: a mapping file holds one `our.prefix: their.prefix` pair per line")
    return data


def load_weights(model: nn.Module, weights: str | Path | Mapping[str, torch.Tensor] | nn.Module,
                 strict: bool = True, *, mapping: Mapping[str, str] | str | Path | None = None,
                 reference: str | nn.Module | None = None, verify: bool = False) -> TransferReport:
    """Load weights (see `transfer`); with `strict`, anything not transferred is a WeightsError (one line;
    the whole report is its `.report`) and nothing is copied. `mapping` may be a file; `verify` runs `verify_transfer`."""
    source = read_state_dict(weights) if isinstance(weights, (str, Path)) else weights
    if isinstance(mapping, (str, Path)):
        mapping = read_mapping(mapping)
    origin = f"the weights in {weights}" if isinstance(weights, (str, Path)) else "the weights"
    try:
        report = transfer(source, model, mapping=mapping, reference=reference, strict=strict)
    except _Misfit as exc:
        raise WeightsError(f"{origin} {exc}", exc.report) from None
    except WeightsError as exc:
        raise WeightsError(f"{origin}: {exc}") from None
    if verify:
        architecture = source if isinstance(source, nn.Module) else reference
        state = source.state_dict() if isinstance(source, nn.Module) else source
        if report.source == "same names":  # our own checkpoint: check the spec, with these weights
            state = None
        try:
            report.verified = verify_transfer(model, architecture, source=state, report=report)
        except WeightsError as exc:
            raise WeightsError(f"{origin}: {exc}", report) from None
    return report


def verify_transfer(model: nn.Module, reference: str | nn.Module | None = None, *,
                    source: Mapping[str, torch.Tensor] | None = None, report: TransferReport | None = None,
                    seed: int = 0, tolerance: float = VERIFY_TOLERANCE, input_shape: tuple[int, ...] | None = None) -> float:
    """Run `reference` (a model, or by default the spec's `reference:`) and `model` on the same random batch,
    in eval mode and fp32 on the CPU, normalisation statistics and affine values randomised alike
    (`randomise_norms`); the largest difference
    relative to the reference's largest output, a WeightsError over `tolerance`. The reference runs with
    `source` (its state_dict) and `model` with what `report` says it took from it, which checks the spec
    and the mapping; without them, the reference runs with `model`'s weights paired by dataflow, which
    checks that the spec is that network."""
    if reference is None:
        reference = getattr(getattr(model, "spec", None), "reference", None)
    if reference is None:
        raise WeightsError("verifying needs the model the weights come from: the spec names no `reference:`")
    if any(t.is_meta for t in model.state_dict().values()):
        raise WeightsError("verifying runs the model: build it on a real device, not meta")
    origin = reference if isinstance(reference, str) else type(reference).__name__
    module = _empty_reference(reference) if isinstance(reference, str) else reference
    shape = input_shape or _input_shape(model)
    ours = _fp32_cpu(model.state_dict())
    if source is None or report is None:
        ours.update(randomise_norms(ours, seed))
        our_groups, their_groups = _groups(ours), _groups(module.state_dict())
        theirs = {_key(t, q): our_groups[o][r].reshape(their_groups[t][q].shape)
                  for o, t in _by_dataflow(module, model, shape, origin)
                  for r, q in _role_pairs(our_groups[o], their_groups[t])}
    else:
        theirs = _fp32_cpu(source)
        stats = randomise_norms(theirs, seed)
        theirs.update(stats)
        ours.update((o, stats[t]) for o, t in report.transferred if t in stats)
    unset = _not_state_of(theirs, module.state_dict(), origin)
    if unset:
        raise WeightsError(f"cannot verify: {unset}")
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(seed))
    got, expected = _run_eval(model, ours, x), _run_eval(module, theirs, x)
    if got.shape != expected.shape:
        raise WeightsError(f"verify failed: ours outputs {list(got.shape)}, {origin} {list(expected.shape)}")
    difference = ((got - expected).abs().max() / expected.abs().max().clamp_min(1e-12)).item()
    if not difference <= tolerance:
        raise WeightsError(f"verify failed: with the same weights, ours and {origin} differ by {difference:.3g} "
                           f"relative to the largest output (more than {tolerance:g}): the spec is not that network, "
                           "or the weights went to the wrong layers")
    return difference


def _fp32_cpu(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype) for k, v in state.items()}


def _run_eval(module: nn.Module, state: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """`module`'s eval-mode output with `state` in place of its tensors (the module is left as it was)."""
    modes = {m: m.training for m in module.modules()}
    try:
        module.eval()
        with torch.no_grad():
            out = torch.func.functional_call(module, dict(state), (x,), strict=False)
    finally:
        for m, training in modes.items():
            m.training = training
    return (out[0] if isinstance(out, (tuple, list)) else out).float()
