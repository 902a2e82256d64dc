"""Resource guard: refuse a spec whose parameters and activations would not fit, before allocating anything.

Pure Python (torch is never imported): the estimate comes from the spec's analysis.

    from archspec.guard import check_memory
    estimate = check_memory(spec)                                   # SpecError if over the limit
    estimate = check_memory(spec, device="cuda", device_memory=torch.cuda.mem_get_info()[0])
    estimate = check_memory(spec, allow_large=True)                 # never raises; see estimate.fits

The estimate is what `build` allocates for the model and its one inference pass: parameters and buffers
(batch-norm running statistics) x `dtype_bytes`, plus the peak of the activations of an eval forward pass
at `batch` images, input and output included: the summary's figures (`archspec summary`; summary.py's
`MemoryReplay` defines them, and tests check them against what torch allocates). Allocator rounding,
caches and convolution workspaces are not counted, hence the margin of the default limit.

The default limit is `DEFAULT_FRACTION` (half) of the memory available: on the CPU, MemAvailable from
/proc/meminfo (or os.sysconf), lowered to a cgroup's memory limit where one applies; on another device,
the `device_memory` the caller read (e.g. `torch.cuda.mem_get_info()[0]`); without it there is no
limit. On `meta` nothing is allocated and nothing is refused.
"""
from __future__ import annotations

import os
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import SpecError
from .source import loc_of
from .units import human_bytes

DEFAULT_FRACTION = 0.5


@dataclass(frozen=True)
class MemoryEstimate:
    """What building and running a spec needs, and the limit it was compared with."""

    params: int
    param_bytes: int
    buffer_bytes: int
    activation_bytes: int  # the peak of live activations in an eval forward pass at `batch`
    peak_at: str  # the block running at that peak
    batch: int
    dtype_bytes: int
    limit_bytes: int | None = None  # None: no limit applies (meta, or an unknown device memory)
    limit_source: str = ""  # where the limit came from, for messages

    @property
    def total_bytes(self) -> int:
        return self.param_bytes + self.buffer_bytes + self.activation_bytes

    @property
    def fits(self) -> bool:
        return self.limit_bytes is None or self.total_bytes <= self.limit_bytes

    def describe(self) -> str:
        parts = [f"{self.params:,} parameters x {self.dtype_bytes} bytes = {human_bytes(self.param_bytes)}"]
        if self.buffer_bytes:
            parts.append(f"buffers {human_bytes(self.buffer_bytes)}")
        parts.append(f"activations at their peak {human_bytes(self.activation_bytes)} at batch {self.batch}"
                     + (f", in {self.peak_at}" if self.peak_at else ""))
        text = f"about {human_bytes(self.total_bytes)} ({', '.join(parts)})"
        if self.limit_bytes is not None:
            text += f"; limit {human_bytes(self.limit_bytes)} ({self.limit_source})"
        return text


def estimate_memory(spec: Any, batch: int = 1, dtype_bytes: int = 4) -> MemoryEstimate:
    """Parameter, buffer and activation memory of `spec` (an archspec.Spec) from its analysis alone."""
    from .memory import MemoryReplay, buffer_bytes

    root = spec.analyse()
    forward = MemoryReplay(False, batch, dtype_bytes)  # the eval pass build runs (training is not replayed)
    forward.network(root)
    return MemoryEstimate(root.params, root.params * dtype_bytes, buffer_bytes(root, dtype_bytes),
                          forward.peak, forward.peak_at, batch, dtype_bytes)


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
    cgroup = _cgroup_headroom()
    return min(found, cgroup) if cgroup is not None else found


def _cgroup_headroom() -> int | None:
    """A container's memory limit minus its usage (cgroup v2, then v1), if one is set."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = Path(limit_file).read_text().strip()
            if limit == "max" or int(limit) >= 1 << 60:  # no limit
                return None
            return max(0, int(limit) - int(Path(usage_file).read_text().strip()))
        except (OSError, ValueError):
            continue
    return None


def check_memory(spec: Any, limit_bytes: int | None = None, device: Any = "cpu", batch: int = 1, *,
                 device_memory: int | None = None, fraction: float = DEFAULT_FRACTION, dtype_bytes: int = 4,
                 allow_large: bool = False) -> MemoryEstimate:
    """Compare the spec's parameter + activation memory with a limit; raise a located SpecError when it
    is over, unless `allow_large`. Returns the estimate (with the limit used) either way.

    The limit is `limit_bytes` if given, else `fraction` of `device_memory` if given, else, on the CPU,
    `fraction` of the available RAM. On `meta` (and on another device without `device_memory`) there
    is no limit. `device` is a string or a torch.device ('cpu', 'cuda:0', 'meta')."""
    estimate = estimate_memory(spec, batch, dtype_bytes)
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
               "Reduce it, or pass --allow-large (allow_large=True) to build anyway")
    return SpecError(message, loc, layer.path, layer.type)
