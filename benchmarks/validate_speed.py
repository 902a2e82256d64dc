"""Wall time of `validate` and `list` in fresh processes: one spec, every bundled spec and the catalogue, with and without bytecode.

    python benchmarks/validate_speed.py [--runs N]   # prints a table, writes benchmarks/results/validate_speed.txt

The package is copied to a temporary folder twice: once compiled (`compileall`, what `pip install` does) and
once as source only, run with PYTHONDONTWRITEBYTECODE=1 (so every run compiles archspec's modules again; the
installed packages keep their bytecode). Each row is the median of N runs, the rows interleaved run by run so
that a shared machine's load drifts over all of them alike; CPU is user + system time of the process and of
its worker processes (`validate` and `list` share many specs out to one process per CPU; the `-j 1` row reads
them all in one). The
floors are what no change to archspec can remove: Python itself, Python importing pydantic's BaseModel, and
defining one model (its first schema build loads pydantic's plugin machinery, importlib.metadata included).
"""
from __future__ import annotations

import argparse
import compileall
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"one spec": 0.3, "all bundled specs (": 1.0, "list": 1.0}


def copy_tree(source: Path, dest: Path, compiled: bool) -> Path:
    shutil.copytree(source / "archspec", dest / "archspec", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(source / "specs", dest / "specs")
    shutil.copy(source / "cli.py", dest / "cli.py")
    if compiled:
        compileall.compile_dir(dest / "archspec", quiet=1)
    return dest


def run_once(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """(wall, cpu) seconds of one fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=cwd, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--tree", type=Path, default=ROOT, help="another checkout to time (e.g. an older commit's)")
    options = parser.parse_args()
    runs, source = options.runs, options.tree.resolve()
    specs = sorted(p.name for p in (source / "specs").glob("*.yaml"))
    with tempfile.TemporaryDirectory(prefix="speed-validate-") as tmp:
        trees = {"with .pyc": copy_tree(source, Path(tmp) / "pyc", True),
                 "without .pyc": copy_tree(source, Path(tmp) / "src", False)}
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
        env["XDG_CACHE_HOME"] = str(Path(tmp) / "cache")  # list's cache: filled by the warm-up run below
        envs = {"with .pyc": env, "without .pyc": {**env, "PYTHONDONTWRITEBYTECODE": "1"}}
        rows = [(f"{what} ({mode})", mode, args) for mode in trees for what, args in (
            ("validate one spec: resnet50", ["cli.py", "validate", "specs/resnet50.yaml"]),
            (f"validate all bundled specs ({len(specs)})", ["cli.py", "validate", *(f"specs/{s}" for s in specs)]),
            ("validate all bundled specs, -j 1 (one process)", ["cli.py", "validate", "-j", "1",
                                                                *(f"specs/{s}" for s in specs)]),
            ("list, rows from the cache", ["cli.py", "list"]),
            ("list --no-cache: every spec validated and analysed", ["cli.py", "list", "--no-cache"]),
            ("import archspec", ["-c", "import archspec"]),
        )] + [
            ("floor: python, pydantic and one model of one field", "with .pyc",
             ["-c", "from pydantic import BaseModel\nclass M(BaseModel):\n    x: int"]),
            ("floor: python -c 'from pydantic import BaseModel'", "with .pyc", ["-c", "from pydantic import BaseModel"]),
            ("floor: python -c pass", "with .pyc", ["-c", "pass"]),
        ]
        for _, mode, args in rows:  # warm the file cache once
            run_once(args, trees[mode], envs[mode])
        samples: dict[str, list[tuple[float, float]]] = {label: [] for label, _, _ in rows}
        for _ in range(runs):
            for label, mode, args in rows:
                samples[label].append(run_once(args, trees[mode], envs[mode]))
        torch_loaded = subprocess.run([sys.executable, "-c", "import sys, archspec.cli.commands as c; "
                                       "c.main(['validate', 'specs/resnet50.yaml']); print('torch' in sys.modules)"],
                                      cwd=trees["with .pyc"], env=env, capture_output=True, text=True).stdout.split()[-1]
    lines = [f"# validate_speed{'' if source == ROOT else f' of {source}'}: median of {runs} fresh processes (rows interleaved); "
             f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
             f"# load average (1, 5, 15 min) at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
             f"torch imported by validate: {torch_loaded}", "",
             f"{'':<58}{'wall ms':>9}{'CPU ms':>9}"]
    for label, _, _ in rows:
        wall = statistics.median(w for w, _ in samples[label])
        cpu = statistics.median(c for _, c in samples[label])
        target = next((f"  (target {t * 1000:.0f} ms)" for key, t in TARGETS.items()
                       if key in label and not label.startswith("import")), "")
        lines.append(f"{label:<58}{wall * 1000:>9.0f}{cpu * 1000:>9.0f}{target}")
    text = "\n".join(lines)
    print(text)
    if not options.no_write and source == ROOT:
        (ROOT / "benchmarks" / "results" / "validate_speed.txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
