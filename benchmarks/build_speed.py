"""Construction time: `archspec.build` beside the torchvision constructor of the same network, one thread,
in the same process, in interleaved rounds (ours, theirs | theirs, ours | ...), median of the paired ratios;
and a build on the meta device (nothing allocated), which is analysis plus module construction alone.

    python benchmarks/build_speed.py            # prints a table and writes benchmarks/results/build_speed.txt
"""
from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torchvision  # noqa: E402

import archspec  # noqa: E402

NETWORKS = ["resnet50", "resnet152", "efficientnet_b7"]
ROUNDS = 7


def seconds(make: Callable[[], object]) -> float:
    start = time.perf_counter()
    make()
    return time.perf_counter() - start


def compare(name: str) -> tuple[float, float, float]:
    """(median ratio ours/theirs, our median seconds, their median seconds)."""
    path = ROOT / "specs" / f"{name}.yaml"
    ours = lambda: archspec.build(path)  # noqa: E731
    theirs = lambda: getattr(torchvision.models, name)()  # noqa: E731
    ours(), theirs()  # warm: imports, kernels, allocator
    ratios, mine, refs = [], [], []
    for round_ in range(ROUNDS):
        if round_ % 2:
            b, a = seconds(theirs), seconds(ours)
        else:
            a, b = seconds(ours), seconds(theirs)
        ratios.append(a / b)
        mine.append(a)
        refs.append(b)
    return statistics.median(ratios), statistics.median(mine), statistics.median(refs)


def meta_build(name: str) -> float:
    path = ROOT / "specs" / f"{name}.yaml"
    archspec.build(path, device="meta")
    return statistics.median(seconds(lambda: archspec.build(path, device="meta")) for _ in range(ROUNDS))


def main() -> None:
    torch.set_num_threads(1)
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [f"# build speed: torch {torch.__version__}, torchvision {torchvision.__version__}, {platform.machine()}, "
             f"1 thread, {time.strftime('%Y-%m-%d')}, load average at the start {load}",
             "# python benchmarks/build_speed.py", "",
             f"{'network':<18} {'archspec.build':>15} {'torchvision':>12} {'ratio':>7}"]
    for name in NETWORKS:
        ratio, ours, theirs = compare(name)
        lines.append(f"{name:<18} {ours * 1000:12.0f} ms {theirs * 1000:9.0f} ms {ratio:7.3f}")
    lines += ["", f"{'meta build':<18} {'archspec.build(device=meta)':>28}"]
    for name in NETWORKS:
        lines.append(f"{name:<18} {meta_build(name) * 1000:25.0f} ms")
    text = "\n".join(lines) + "\n"
    print(text)
    out = ROOT / "benchmarks" / "results" / "build_speed.txt"
    out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
