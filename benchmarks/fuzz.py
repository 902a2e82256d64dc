"""Robustness benchmark: a large mutation-fuzz corpus over the bundled specs, then hostile inputs.

    python benchmarks/fuzz.py                    # 20,000 cases, seed 1; writes benchmarks/results/fuzz.txt
    python benchmarks/fuzz.py --cases 2000 --seed 5 --out /tmp/fuzz.txt

Part 1 (archspec.fuzz): inputs tried, accepted, rejected by error class, crashes (must be 0), answers over
the time limit (1 s) and the slowest answer. Each accepted spec is also compiled on `meta` and run (its
output shape and parameter count must equal the analysis; `--no-torch` skips this). The process runs
under an 8 GiB address-space limit, so a memory bomb would show as a crash (MemoryError) instead of
swapping the machine.
Part 2: each hostile input in a fresh process under a 1 GiB limit: the answer, its time and how much the
process grew. Exit status 1 if anything crashed or was slow.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from archspec.fuzz import fuzz  # noqa: E402

HEAD = "name: t\ninput: {channels: 3, size: 32}\n"
BLOCK = "{type: conv, out: 3, kernel: 1, norm: batch, activation: relu, bias: false, stride: 1, groups: 1}"


def bomb(levels: int, item: str = "lol", indent: str = "") -> str:
    lines = [f"a0: &a0 [{', '.join([item] * 10)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "".join(f"{indent}{line}\n" for line in lines)


def hostile() -> dict[str, str]:
    """Hostile inputs by name (YAML text; `@sparse:N` is a sparse file of N bytes)."""
    nested = "{type: conv, out: 8, kernel: 1}"
    for _ in range(20):
        nested = f"{{type: sequence, layers: [{nested}]}}"
    return {
        "billion laughs (10^9 leaves)": HEAD + bomb(9) + "layers: [relu]\n",
        "alias bomb as the layers (10^5 nested)": HEAD + "variants:\n  x:\n" + bomb(5, "relu", "    ") + "layers: *a4\n",
        "25,000 aliases to one conv block": HEAD + f"variants: {{x: {{c: &c {BLOCK}}}}}\nlayers: [{', '.join(['*c'] * 25000)}]\n",
        "defaults x 15,000 blocks": HEAD.replace("channels: 3", "channels: 8") + "defaults: {conv: {out: 8, kernel: 1, padding: ["
                                    + ", ".join(["0"] * 20) + "]}}\n" + f"layers: [{', '.join(['conv'] * 15000)}]\n",
        "recursive defaults": HEAD + "defaults: {sequence: {layers: [sequence]}}\nlayers: [sequence]\n",
        "stage 10^4 of stage 10^4 (10^8 blocks)": HEAD + "layers: [{type: stage, repeat: 10000, block: {type: stage, repeat: 10000, "
                                                  "block: {type: bottleneck, planes: 8}}}]\n",
        "repeat: 100000000": HEAD + "layers: [{type: stage, repeat: 100000000, block: {type: relu}}]\n",
        "phi 20 with alpha 10 (10^26 repeats)": HEAD + "layers: [{type: stage, repeat: 10000, block: {type: conv, out: 8, kernel: 1}}]\n"
                                                "compound: {alpha: 10}\nscaling: {phi: 20}\n",
        "100,000 nested brackets": HEAD + "layers: " + "[" * 100_000 + "]" * 100_000 + "\n",
        "nesting through aliases": HEAD + "v0: &v0 [x]\n" + "".join(
            f"v{i}: &v{i} [[[[[[[[[[*v{i - 1}]]]]]]]]]]\n" for i in range(1, 40)) + "layers: [relu]\n",
        "20 nested sequences (valid)": HEAD + f"layers: [{nested}]\n",
        "integer of 100,000 digits": HEAD + "layers: [{type: conv, out: " + "9" * 100_000 + ", kernel: 3}]\n",
        "python object tag": HEAD + "description: !!python/object/apply:os.system ['echo hacked']\nlayers: [relu]\n",
        "2 GB file (sparse)": "@sparse:2000000000",
        "255 KiB of comments (valid, under the limit)": HEAD + "layers: [relu]\n" + "# padding\n" * 26000,
        "self-extends": "extends: hostile.yaml\n",
    }


PROBE = """
    import json, sys, time
    sys.path.insert(0, {root!r})
    import archspec
    def peak():  # VmHWM: this process's peak RSS (ru_maxrss would include the parent's, from fork)
        return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    base = peak()
    start = time.perf_counter()
    try:
        spec = archspec.load({path!r})
        message = f"accepted: {{spec.params:,}} params"
    except archspec.SpecError as exc:
        message = str(exc)
    except BaseException as exc:
        message = f"CRASH {{type(exc).__name__}}: {{exc}}"
    print(json.dumps({{"message": message, "seconds": time.perf_counter() - start,
                       "grew_mb": (peak() - base) / 1024}}))
"""


def run_hostile(limit: int = 1 << 30) -> tuple[list[str], bool]:
    import resource

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    lines, ok = [], True
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hostile.yaml"
        for name, text in hostile().items():
            if text.startswith("@sparse:"):
                path.write_bytes(b"")
                with open(path, "r+b") as handle:
                    handle.truncate(int(text.split(":")[1]))
            else:
                path.write_text(text, encoding="utf-8")
            code = textwrap.dedent(PROBE.format(root=str(ROOT), path=str(path)))
            start = time.perf_counter()
            result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                                    preexec_fn=cap)
            wall = time.perf_counter() - start
            try:
                out = json.loads(result.stdout.strip().splitlines()[-1])
            except (IndexError, ValueError):
                out = {"message": f"CRASH exit {result.returncode}: {result.stderr.strip()[-300:]}", "seconds": wall, "grew_mb": -1}
            bad = out["message"].startswith("CRASH") or out["seconds"] > 5
            ok &= not bad
            message = out["message"].replace(str(path), "hostile.yaml")
            message = message if len(message) <= 150 else message[:147] + "..."
            lines.append(f"{'!! ' if bad else ''}{name:<46} {out['seconds'] * 1000:7.0f} ms  +{out['grew_mb']:5.0f} MB  {message}")
    return lines, ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--time-limit", type=float, default=1.0)
    parser.add_argument("--no-torch", action="store_true", help="do not compile the accepted specs")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "fuzz.txt"))
    args = parser.parse_args()
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))  # torch maps a lot of address space
    except (ImportError, ValueError, OSError):
        pass
    specs = sorted((ROOT / "specs").glob("*.yaml"))
    done = [0]

    def progress(outcome: object) -> None:
        done[0] += 1
        if done[0] % 1000 == 0:
            print(f"  {done[0]:,} / {args.cases:,}", file=sys.stderr, flush=True)

    report = fuzz(specs, args.cases, args.seed, args.time_limit, on_outcome=progress, check_torch=not args.no_torch)
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    hostile_lines, hostile_ok = run_hostile()
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    header = (f"# fuzz: {len(specs)} bundled specs mutated; {platform.machine()}, {os.cpu_count()} cpus, Python "
              f"{platform.python_version()}, {time.strftime('%Y-%m-%d')}; load average at the end {load}\n"
              f"# python benchmarks/fuzz.py --cases {args.cases} --seed {args.seed} --time-limit {args.time_limit:g}"
              f"{' --no-torch' if args.no_torch else ''}\n")
    text = (header + "\n" + report.format() + f"\n\npeak memory of the fuzzing process: {peak:.0f} MB\n\n"
            "hostile inputs (each in a fresh process limited to 1 GiB of address space):\n" + "\n".join(hostile_lines) + "\n")
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text, encoding="utf-8")
    return 0 if not report.crashes and not report.slow and hostile_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
