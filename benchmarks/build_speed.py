"""Construction time: `archspec.build` beside the torchvision constructor of the same network, one thread,
in the same process, in interleaved rounds (ours, theirs | theirs, ours | ...), median of the paired ratios;
and the same on the meta device (nothing allocated): analysis plus module construction alone for archspec,
the constructor under `with torch.device("meta")` for torchvision. On meta a third column times torchvision's
constructor on meta with every initialiser skipped (the modules' `reset_parameters` and torch.nn.init's fills):
creating the network's modules and parameters and nothing else, what torch.nn's module construction costs for
a network of that many modules (the last column counts them, archspec's and torchvision's).
Each is timed in wall-clock and in CPU time of the process (`time.process_time`; one thread, so the same work):
on a shared, loaded machine the CPU figures are the ones to read.

    python benchmarks/build_speed.py            # prints a table and writes benchmarks/results/build_speed.txt
"""
from __future__ import annotations

import contextlib
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torchvision  # noqa: E402

import archspec  # noqa: E402
from archspec.backend.compiler import _OnMeta  # noqa: E402

NETWORKS = ["resnet50", "resnet152", "efficientnet_b7"]
ROUNDS = 7


def seconds(make: Callable[[], object]) -> tuple[float, float]:
    """(wall, CPU) seconds of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    make()
    return time.perf_counter() - wall, time.process_time() - cpu


@contextlib.contextmanager
def initialisers_skipped() -> Iterator[None]:
    """Meta device, every torch.nn.init fill skipped (archspec's meta builds do this too) and, for this benchmark
    only, the reset_parameters of every module type replaced by a no-op: what torch's constructors cost alone."""
    kinds = [kind for kind in vars(torch.nn).values()
             if isinstance(kind, type) and issubclass(kind, torch.nn.Module) and "reset_parameters" in vars(kind)]
    saved = {kind: vars(kind)["reset_parameters"] for kind in kinds}
    for kind in kinds:
        kind.reset_parameters = lambda self: None
    try:
        with _OnMeta():
            yield
    finally:
        for kind, method in saved.items():
            kind.reset_parameters = method


def floor(name: str) -> float:
    """Median CPU seconds of torchvision's constructor on meta with its initialisers skipped: its modules alone."""
    make = getattr(torchvision.models, name)
    with initialisers_skipped():
        make()
        return statistics.median(seconds(make)[1] for _ in range(ROUNDS))


def compare(name: str, meta: bool = False) -> list[tuple[float, float, float]]:
    """[(median ratio ours/theirs, our median seconds, their median seconds)] in wall time, then in CPU time.
    With `meta`, both build on the meta device: archspec.build(device="meta") from the spec file (analysis
    included), torchvision's constructor under `with torch.device("meta")`."""
    path = ROOT / "specs" / f"{name}.yaml"
    ours = lambda: archspec.build(path, device="meta" if meta else None)  # noqa: E731

    def theirs() -> object:
        with torch.device("meta") if meta else contextlib.nullcontext():
            return getattr(torchvision.models, name)()
    ours(), theirs()  # warm: imports, kernels, allocator
    pairs = []
    for round_ in range(ROUNDS):
        if round_ % 2:
            b, a = seconds(theirs), seconds(ours)
        else:
            a, b = seconds(ours), seconds(theirs)
        pairs.append((a, b))
    return [(statistics.median(a[k] / b[k] for a, b in pairs), statistics.median(a[k] for a, _ in pairs),
             statistics.median(b[k] for _, b in pairs)) for k in (0, 1)]


def main() -> None:
    torch.set_num_threads(1)
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [f"# build speed: torch {torch.__version__}, torchvision {torchvision.__version__}, {platform.machine()}, "
             f"1 thread, {time.strftime('%Y-%m-%d')}, load average at the start {load}",
             "# python benchmarks/build_speed.py", "",
             f"{'network':<18} {'time':<5} {'archspec.build':>15} {'torchvision':>12} {'ratio':>7}"]
    for name in NETWORKS:
        for kind, (ratio, ours, theirs) in zip(("wall", "CPU"), compare(name)):
            lines.append(f"{name:<18} {kind:<5} {ours * 1000:12.0f} ms {theirs * 1000:9.0f} ms {ratio:7.3f}")
    lines += ["", f"{'on meta':<18} {'time':<5} {'archspec.build':>15} {'torchvision':>12} {'ratio':>7}   "
                  "torchvision's modules without initialisers (CPU); modules: archspec / torchvision"]
    for name in NETWORKS:
        rows, bottom = compare(name, meta=True), floor(name)
        with torch.device("meta"):
            counts = [sum(1 for _ in model.modules()) for model in
                      (archspec.build(ROOT / "specs" / f"{name}.yaml", device="meta"), getattr(torchvision.models, name)())]
        for kind, (ratio, ours, theirs) in zip(("wall", "CPU"), rows):
            lines.append(f"{name:<18} {kind:<5} {ours * 1000:12.0f} ms {theirs * 1000:9.0f} ms {ratio:7.3f}"
                         + (f"   {bottom * 1000:.0f} ms; {counts[0]:,} / {counts[1]:,}" if kind == "CPU" else ""))
    text = "\n".join(lines) + "\n"
    print(text)
    out = ROOT / "benchmarks" / "results" / "build_speed.txt"
    out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
