"""Resource guard: refuse a spec whose parameters and activations would not fit, before allocating anything.

Pure Python (torch is never imported): the estimate comes from the spec's analysis.

    from archspec.reports.guard import check_memory
    estimate = check_memory(spec)                                   # SpecError if over the limit
    estimate = check_memory(spec, device="cuda", device_memory=torch.cuda.mem_get_info()[0])
    estimate = check_memory(spec, allow_large=True)                 # never raises; see estimate.fits

The estimate is what a command allocates for the model and its passes: parameters and buffers
(batch-norm running statistics) x `dtype_bytes`, plus the peak of the activations of an eval forward pass
at `batch` images, input and output included: the summary's figures (`archspec summary`; summary.py's
`MemoryReplay` defines them, and tests check them against what torch allocates). With `training`, the
peak of a training forward pass (what autograd keeps for backward included), a gradient per parameter and
the optimizer's state. Allocator rounding, caches and convolution workspaces are not counted, hence the
margin of the default limit. Every command that allocates (build, predict, export, bench, train) checks
first, through `cli_args.check_fits`.

The default limit is `DEFAULT_FRACTION` (half) of the memory available: on the CPU, MemAvailable from
/proc/meminfo (or os.sysconf), lowered to what this process's cgroups leave it where they set a limit
(`cgroup_headroom`: its own cgroup and each parent, v1 or v2, the tightest); on another device,
the `device_memory` the caller read (e.g. `torch.cuda.mem_get_info()[0]`); without it there is no
limit. On `meta` nothing is allocated and nothing is refused.
"""
from __future__ import annotations

import os
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SpecError
from ..language.source import loc_of
from ..units import human_bytes

DEFAULT_FRACTION = 0.5


@dataclass(frozen=True)
class MemoryEstimate:
    """What building and running a spec needs, and the limit it was compared with."""

    params: int
    param_bytes: int
    buffer_bytes: int
    activation_bytes: int  # the peak of live activations in a forward pass at `batch` (eval, or training)
    peak_at: str  # the block running at that peak
    batch: int
    dtype_bytes: int
    limit_bytes: int | None = None  # None: no limit applies (meta, or an unknown device memory)
    limit_source: str = ""  # where the limit came from, for messages
    training: bool = False  # a training step: activations kept for backward, gradients, optimizer state
    state_bytes: int = 0  # training: the gradients and the optimizer's state

    @property
    def total_bytes(self) -> int:
        return self.param_bytes + self.buffer_bytes + self.activation_bytes + self.state_bytes

    @property
    def fits(self) -> bool:
        return self.limit_bytes is None or self.total_bytes <= self.limit_bytes

    def describe(self) -> str:
        parts = [f"{self.params:,} parameters x {self.dtype_bytes} bytes = {human_bytes(self.param_bytes)}"]
        if self.buffer_bytes:
            parts.append(f"buffers {human_bytes(self.buffer_bytes)}")
        if self.state_bytes:
            parts.append(f"gradients and optimizer state {human_bytes(self.state_bytes)}")
        parts.append(f"{'training ' if self.training else ''}activations at their peak "
                     f"{human_bytes(self.activation_bytes)} at batch {self.batch}"
                     + (f", in {self.peak_at}" if self.peak_at else ""))
        text = f"about {human_bytes(self.total_bytes)} ({', '.join(parts)})"
        if self.limit_bytes is not None:
            text += f"; limit {human_bytes(self.limit_bytes)} ({self.limit_source})"
        return text


def estimate_memory(spec: Any, batch: int = 1, dtype_bytes: int = 4, training: bool = False,
                    optimizer_states: int = 0) -> MemoryEstimate:
    """Parameter, buffer and activation memory of `spec` (an archspec.Spec) from its analysis alone: an eval
    forward pass, or with `training` a training forward pass (its peak holds what autograd keeps for
    backward) plus a gradient and `optimizer_states` tensors (SGD with momentum 1, Adam 2) per parameter."""
    from ..ir.memory import MemoryReplay, buffer_bytes

    root = spec.analyse()
    forward = MemoryReplay(training, batch, dtype_bytes)
    forward.network(root)
    state = root.params * dtype_bytes * (1 + optimizer_states) if training else 0
    return MemoryEstimate(root.params, root.params * dtype_bytes, buffer_bytes(root, dtype_bytes), forward.peak,
                          forward.peak_at, batch, dtype_bytes, training=training, state_bytes=state)


CGROUP_ROOT = Path("/sys/fs/cgroup")  # where the cgroup hierarchies are mounted (tests point it elsewhere)
SELF_CGROUP = Path("/proc/self/cgroup")  # this process's cgroup in each hierarchy
NO_LIMIT = 1 << 60  # cgroup v1 writes "no limit" as a huge number (9223372036854771712)


def available_memory() -> int | None:
    """Bytes of RAM available to this process now, or None where that cannot be read."""
    found = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        pass
    if found is None:
        try:
            found = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, OSError, ValueError):
            return None
    cgroup = cgroup_headroom()
    return min(found, cgroup) if cgroup is not None else found


def cgroup_headroom(root: Path | None = None, self_cgroup: Path | None = None) -> int | None:
    """The memory this process's cgroups leave it: the smallest limit minus usage over its own cgroup and
    every ancestor, in cgroup v2 (`0::/path` -> memory.max, memory.current) and v1's memory controller
    (`N:memory:/path` -> memory/path/memory.limit_in_bytes, memory.usage_in_bytes); None where none is set.
    A level whose files are missing (a container that sees only its own part of the tree) is skipped."""
    root = root or CGROUP_ROOT
    try:
        lines = (self_cgroup or SELF_CGROUP).read_text().splitlines()
    except OSError:
        return None
    found: list[int] = []
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "" and path:  # v2 (mounted at the root, or at root/unified beside v1)
            base = root if (root / "cgroup.controllers").exists() else root / "unified"
            names = ("memory.max", "memory.current")
        elif "memory" in controllers.split(","):
            base, names = root / "memory", ("memory.limit_in_bytes", "memory.usage_in_bytes")
        else:
            continue
        parts = [p for p in path.split("/") if p not in ("", ".", "..")]
        for depth in range(len(parts), -1, -1):  # the process's own cgroup, then each parent up to the root
            headroom = _headroom(base.joinpath(*parts[:depth]), *names)
            if headroom is not None:
                found.append(headroom)
    return min(found, default=None)


def _headroom(folder: Path, limit_name: str, usage_name: str) -> int | None:
    """One cgroup's limit minus its usage, or None where it sets no limit (or its files cannot be read)."""
    try:
        limit = (folder / limit_name).read_text().strip()
        if limit == "max" or int(limit) >= NO_LIMIT:
            return None
        return max(0, int(limit) - int((folder / usage_name).read_text().strip()))
    except (OSError, ValueError):
        return None


def check_memory(spec: Any, limit_bytes: int | None = None, device: Any = "cpu", batch: int = 1, *,
                 device_memory: int | None = None, fraction: float = DEFAULT_FRACTION, dtype_bytes: int = 4,
                 training: bool = False, optimizer_states: int = 0, allow_large: bool = False) -> MemoryEstimate:
    """Compare the spec's parameter + activation memory with a limit; raise a located SpecError when it
    is over, unless `allow_large`. Returns the estimate (with the limit used) either way.

    The limit is `limit_bytes` if given, else `fraction` of `device_memory` if given, else, on the CPU,
    `fraction` of the available RAM. On `meta` (and on another device without `device_memory`) there
    is no limit. `device` is a string or a torch.device ('cpu', 'cuda:0', 'meta'). `training` and
    `optimizer_states`: see `estimate_memory`."""
    estimate = estimate_memory(spec, batch, dtype_bytes, training, optimizer_states)
    kind = str(device).split(":")[0]
    if limit_bytes is not None:
        limit, source = int(limit_bytes), "the limit given"
    elif kind == "meta":
        return estimate
    elif device_memory is not None:
        limit, source = int(device_memory * fraction), f"{fraction:.0%} of {human_bytes(device_memory)} {kind} memory"
    elif kind == "cpu":
        available = available_memory()
        if available is None:
            return estimate
        limit, source = int(available * fraction), f"{fraction:.0%} of {human_bytes(available)} available RAM"
    else:
        return estimate
    estimate = dataclasses.replace(estimate, limit_bytes=limit, limit_source=source)
    if estimate.fits or allow_large:
        return estimate
    raise _too_large(spec, estimate)


def _too_large(spec: Any, estimate: MemoryEstimate) -> SpecError:
    """The error names the place to edit first: the top-level layer holding the most parameters when
    parameters are most of the need, else the one where the activations peak."""
    layers = spec.analyse().children
    heaviest = max(layers, key=lambda node: node.params)
    if heaviest.params * estimate.dtype_bytes >= estimate.activation_bytes or not estimate.peak_at:
        layer = heaviest
        why = f"this layer's parameters alone take {human_bytes(heaviest.params * estimate.dtype_bytes)}"
    else:
        top = estimate.peak_at.split(".")[0]
        layer = next((node for node in layers if node.path == top), heaviest)
        why = "the activations peak in this layer"
    loc = layer.block._loc or loc_of(spec._source, None)
    message = (f"the network needs {estimate.describe()}; {why}. "
               "Reduce it, or pass --allow-large (allow_large=True) to run anyway")
    return SpecError(message, loc, layer.path, layer.type)
