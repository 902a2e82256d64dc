"""Resource guard: refuse a spec whose parameters and activations would not fit, before allocating anything.

Pure Python (torch is never imported): the estimate comes from the spec's analysis.

    from archspec.guard import check_memory
    estimate = check_memory(spec)                                   # SpecError if over the limit
    estimate = check_memory(spec, device="cuda", device_memory=torch.cuda.mem_get_info()[0])
    estimate = check_memory(spec, allow_large=True)                 # never raises; see estimate.fits

The estimate is parameters x `dtype_bytes` plus activations: the input and the output of every leaf
block (conv, pool, linear, ...) x `batch` x `dtype_bytes`, which is about what a training step keeps for
the backward pass, so a safe upper bound for one inference pass. BatchNorm running statistics and
temporary buffers are not counted.

The default limit is `DEFAULT_FRACTION` (half) of the memory available: on the CPU, MemAvailable from
/proc/meminfo (or os.sysconf), lowered to a cgroup's memory limit where one applies; on another device,
the `device_memory` the caller read (e.g. `torch.cuda.mem_get_info()[0]`); without it there is no
limit. On `meta` nothing is allocated and nothing is refused.
"""
from __future__ import annotations

import os
import dataclasses
from dataclasses import dataclass
from math import prod
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
    activation_bytes: int  # input + every leaf block's output, x batch x dtype_bytes
    batch: int
    dtype_bytes: int
    limit_bytes: int | None = None  # None: no limit applies (meta, or an unknown device memory)
    limit_source: str = ""  # where the limit came from, for messages

    @property
    def total_bytes(self) -> int:
        return self.param_bytes + self.activation_bytes

    @property
    def fits(self) -> bool:
        return self.limit_bytes is None or self.total_bytes <= self.limit_bytes

    def describe(self) -> str:
        text = (f"about {human_bytes(self.total_bytes)} ({self.params:,} parameters x {self.dtype_bytes} bytes = "
                f"{human_bytes(self.param_bytes)}, activations {human_bytes(self.activation_bytes)} at batch {self.batch})")
        if self.limit_bytes is not None:
            text += f"; limit {human_bytes(self.limit_bytes)} ({self.limit_source})"
        return text


def _leaf_elements(node: Any) -> int:
    """Elements of every layer output under `node` (one image): the activations its layers write."""
    return sum(prod(n.out_shape) for n in node.walk() if not n.children)


def estimate_memory(spec: Any, batch: int = 1, dtype_bytes: int = 4) -> MemoryEstimate:
    """Parameter and activation memory of `spec` (an archspec.Spec) from its analysis alone."""
    root = spec.analyse()
    activations = prod(root.in_shape) + _leaf_elements(root)
    return MemoryEstimate(root.params, root.params * dtype_bytes, activations * batch * dtype_bytes, batch, dtype_bytes)


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
    """The error names the top-level layer that needs the most memory: the place to edit first."""
    root = spec.analyse()

    def need(node: Any) -> int:
        return (node.params + _leaf_elements(node) * estimate.batch) * estimate.dtype_bytes

    largest = max(root.children, key=need)
    loc = largest.block._loc or loc_of(spec._source, None)
    message = (f"the network needs {estimate.describe()}; this layer alone needs {human_bytes(need(largest))}. "
               "Reduce it, or pass --allow-large (allow_large=True) to build anyway")
    return SpecError(message, loc, largest.path, largest.type)
