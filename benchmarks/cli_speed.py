"""Wall time of the spec-only commands (validate, summary, diagram) in fresh processes, beside `import torch`.

    python benchmarks/cli_speed.py            # prints a table and writes benchmarks/results/cli_speed.txt
"""
from __future__ import annotations

import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = 5


def wall(args: list[str]) -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], cwd=ROOT, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    specs = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "specs").glob("*.yaml"))
    rows = [
        ("validate all bundled specs", ["cli.py", "validate", *specs]),
        ("validate specs/resnet152.yaml", ["cli.py", "validate", "specs/resnet152.yaml"]),
        ("summary specs/resnet152.yaml", ["cli.py", "summary", "specs/resnet152.yaml"]),
        ("diagram specs/resnet152.yaml (block, svg)", ["cli.py", "diagram", "specs/resnet152.yaml", "-o", "/tmp/archspec-bench.svg"]),
        ("diagram specs/resnet152.yaml --detail layer", ["cli.py", "diagram", "specs/resnet152.yaml", "--detail", "layer",
                                                          "-o", "/tmp/archspec-bench.svg"]),
        ("reference: python -c 'import torch'", ["-c", "import torch"]),
        ("reference: python -c 'pass'", ["-c", "pass"]),
    ]
    lines = [f"# cli_speed: median of {RUNS} fresh processes; {platform.processor() or platform.machine()}, "
             f"Python {platform.python_version()}, {len(specs)} specs", ""]
    for label, args in rows:
        lines.append(f"{label:<40} {wall(args) * 1000:8.0f} ms")
    text = "\n".join(lines)
    print(text)
    (ROOT / "benchmarks" / "results" / "cli_speed.txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
