"""Wall time of `archspec summary` beside `torchinfo.summary` on the equivalent torchvision model.

    python benchmarks/summary_speed.py     # prints a table, writes benchmarks/results/summary_speed.txt

Two comparisons per network, both at batch 1, depth 3 (torchinfo's default), on the CPU:
- in one process: `archspec.summary(archspec.load(spec), depth=3)` plus rendering the text, against
  `torchinfo.summary(model, input_size, depth=3)` on a torchvision model already built (torchinfo runs a
  forward pass with hooks; building the model is not counted, which favours torchinfo);
- from a fresh process, what a user types: `python cli.py summary SPEC --depth 3` against a script that
  imports torch, torchvision and torchinfo, builds the model and calls `torchinfo.summary` (bytecode
  cache on, as Python's default).
Each time is the best of several runs, the two tools' runs interleaved, so that other load on the
machine hits both alike (timeit's convention: the minimum is the cost without interference). torchinfo
gets one untimed warm-up call in process.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEPTH = 3
CASES = [("ResNet-50 @224", "specs/resnet50.yaml", "resnet50", 224),
         ("EfficientNet-B7 @600", "specs/efficientnet_b7.yaml", "efficientnet_b7", 600)]
RUNS = 5  # interleaved pairs per comparison

TORCHINFO_SCRIPT = """
import sys, torch, torchvision, torchinfo
model = torchvision.models.get_model(sys.argv[1], weights=None)
torchinfo.summary(model, input_size=(1, 3, int(sys.argv[2]), int(sys.argv[2])), depth={depth}, verbose=1)
"""


def timed(func) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def best_of(ours, theirs, runs: int = RUNS) -> tuple[float, float]:
    """Best times of `ours` and `theirs`, run alternately."""
    a, b = [], []
    for _ in range(runs):
        a.append(timed(ours))
        b.append(timed(theirs))
    return min(a), min(b)


def fresh(args: list[str]) -> None:
    """Run in a new interpreter, with Python's default bytecode cache on (installed packages such as torch
    ship compiled; a PYTHONDONTWRITEBYTECODE=1 environment would recompile only archspec's sources)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, *args], cwd=ROOT, check=True, capture_output=True,
                   env={**env, "PYTHONPATH": str(ROOT)})


def main() -> None:
    import archspec
    import torch
    import torchinfo
    import torchvision

    load_before = os.getloadavg()[0]
    rows = []
    for label, spec_path, tv_name, size in CASES:
        spec = archspec.load(ROOT / spec_path)
        assert spec.input.shape == (3, size, size), spec.input.shape

        def ours() -> None:
            str(archspec.summary(archspec.load(ROOT / spec_path), depth=DEPTH))

        model = torchvision.models.get_model(tv_name, weights=None).eval()
        assert sum(p.numel() for p in model.parameters()) == spec.params  # the same network

        def theirs() -> None:
            torchinfo.summary(model, input_size=(1, 3, size, size), depth=DEPTH, verbose=0, device="cpu")

        ours()
        theirs()  # warm-ups (first-call imports and allocator growth)
        api, ti = best_of(ours, theirs)
        script = TORCHINFO_SCRIPT.format(depth=DEPTH)
        cli_cmd = ["cli.py", "summary", spec_path, "--depth", str(DEPTH)]
        fresh(cli_cmd)  # warm-up: fills the bytecode cache
        cli, ti_cli = best_of(lambda: fresh(cli_cmd), lambda: fresh(["-c", script, tv_name, str(size)]))
        rows.append((label, api, ti, cli, ti_cli))
        print(f"{label}: done", file=sys.stderr)

    lines = [f"# summary_speed: archspec summary vs torchinfo.summary (torchinfo {torchinfo.__version__}, "
             f"torch {torch.__version__}, torchvision {torchvision.__version__})",
             f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
             f"torch threads {torch.get_num_threads()}; batch 1, depth {DEPTH}, CPU; best of {RUNS} interleaved runs; "
             f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after",
             "",
             f"{'network':<22}{'':<14}{'archspec':>12}{'torchinfo':>12}{'ratio':>10}"]
    for label, api, ti, cli, ti_cli in rows:
        lines.append(f"{label:<22}{'in process':<14}{api * 1000:>9.1f} ms{ti * 1000:>9.0f} ms{ti / api:>9.0f}x")
        lines.append(f"{'':<22}{'fresh process':<14}{cli * 1000:>9.0f} ms{ti_cli * 1000:>9.0f} ms{ti_cli / cli:>9.1f}x")
    lines += ["",
              "in process: archspec.summary(archspec.load(spec), depth=3) and its text, vs torchinfo.summary(model, ...)",
              "            on a torchvision model built beforehand (its construction is not counted).",
              "fresh process: `python cli.py summary SPEC --depth 3` vs `python -c 'import torch, torchvision, torchinfo;",
              "            build the model; torchinfo.summary(...)'`, each from interpreter start to exit."]
    text = "\n".join(lines)
    print(text)
    out = ROOT / "benchmarks" / "results" / "summary_speed.txt"
    out.write_text(text + "\n")


if __name__ == "__main__":
    main()
