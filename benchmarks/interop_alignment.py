"""How weight transfer scales: pairing 200,000 groups by names, and tracing a deep model's dataflow.

    python benchmarks/interop_alignment.py            # writes benchmarks/results/interop_alignment.txt

The pairing that replaced the longest-common-subsequence alignment (quadratic: 48 s and 1 GB for a
file of 200,000 groups) is a few dictionary passes. Cases: the same names in shuffled order (an
archspec checkpoint), and other names with a shape of their own per group (pairs by unique shapes).
Tensors are on the meta device: the figures are the pairing's, not copying's. Dataflow matching traces
both models once on meta: a chain of 20,000 1x1 convs shows how that scales.
"""
from __future__ import annotations

import random
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from archspec.backend.interop import _by_names, _by_dataflow, _groups  # noqa: E402

GROUPS = 200_000
CHAIN = 20_000


def state(names: list[str], shapes: list[tuple[int, ...]]) -> dict[str, torch.Tensor]:
    return {f"{n}.{role}": torch.empty(s, device="meta") for n, s in zip(names, shapes) for role in ("weight", "bias")}


def timed(label: str, run) -> str:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    pairs = run()
    line = f"{label}: {len(pairs):,} pairs in {time.perf_counter() - start:.2f} s"
    print(line, flush=True)
    return line


def main() -> None:
    rng = random.Random(0)
    ours_names = [f"stage{i // 1000}.{i % 1000}.conv" for i in range(GROUPS)]
    same = [(8, 8)] * GROUPS
    shuffled = ours_names[:]
    rng.shuffle(shuffled)
    mine, yours = state(ours_names, same), state(shuffled, same)  # built before the clock starts
    lines = [timed(f"{GROUPS:,} groups, same names, shuffled order", lambda: _by_names(_groups(mine), _groups(yours)))]
    unique = [(i + 1,) for i in range(GROUPS)]
    theirs = [f"features.{i}" for i in range(GROUPS)]
    order = list(range(GROUPS))
    rng.shuffle(order)
    mine, yours = state(ours_names, unique), state([theirs[i] for i in order], [unique[i] for i in order])
    lines.append(timed(f"{GROUPS:,} groups, other names, unique shapes, shuffled order",
                       lambda: _by_names(_groups(mine), _groups(yours))))
    with torch.device("meta"):
        a = nn.Sequential(*(nn.Conv2d(4, 4, 1) for _ in range(CHAIN)))
        b = nn.Sequential(nn.Sequential(*(nn.Conv2d(4, 4, 1) for _ in range(CHAIN))))
    lines.append(timed(f"dataflow of two chains of {CHAIN:,} convs", lambda: _by_dataflow(b, a, (4, 2, 2), "chain")))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lines.append(f"peak resident memory of the process: {peak:,.0f} MB")
    print(lines[-1])
    out = ROOT / "benchmarks" / "results" / "interop_alignment.txt"
    out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
