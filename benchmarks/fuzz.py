"""Robustness benchmark: a large mutation-fuzz corpus over the bundled specs, then hostile inputs.

    python benchmarks/fuzz.py                    # 100,000 cases, seed 1, one process per core; writes benchmarks/results/fuzz.txt
    python benchmarks/fuzz.py --cases 2000 --seed 5 --jobs 1 --out /tmp/fuzz.txt

Part 1 (archspec.tools.fuzz): inputs tried, accepted, rejected by error class, crashes (must be 0), answers over
the time limit (1 s of CPU) and the slowest answer. Each accepted spec is also compiled on `meta` and run
(its output shape and parameter count must equal the analysis; `--no-torch` skips this). The processes run
under an 8 GiB address-space limit, so a memory bomb would show as a crash (MemoryError) instead of
swapping the machine.
Part 2: each hostile input in a fresh process: a spec (or a chain of files) loaded under a 1 GiB limit (the
answer, its time and how much the process grew; over 2 s is a failure), and specs given to the commands
that draw, export and build (exit 0, or exit 2 with one line; no traceback; nothing left beside the output;
a diagram within 2 s). Exit status 1 if anything crashed or was slow.
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

from archspec.tools.fuzz import fuzz  # noqa: E402

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
        "60 KiB of comments (valid, under the limit)": HEAD + "layers: [relu]\n" + "# padding\n" * 6100,
        "self-extends": "extends: hostile.yaml\n",
        "recursive merge key": HEAD + "a: &a {x: 1, <<: *a}\nlayers: [relu]\n",
        "merge-key bomb (909 bytes)": HEAD + "m:\n  m0: &m0 {k0: 0}\n" + "".join(
            f"  m{i}: &m{i} {{<<: [{', '.join([f'*m{i - 1}'] * 10)}], k{i}: {i}}}\n" for i in range(1, 9)) + "layers: [relu]\n",
        "!!binary name": HEAD + "layers: [{name: !!binary Zm9v, type: relu}]\n",
        "!!binary channel count": HEAD + "layers: [{type: conv, out: !!binary MTY=, kernel: 1}]\n",
        "true as a size": "name: t\ninput: {channels: 3, size: true}\nlayers: [relu]\n",
    }


def chain(files: int, per_file: str) -> dict[str, str]:
    """`hostile.yaml` extends a chain of `files` files, each holding `per_file` (under every per-file limit)."""
    chained = {f"c{i}.yaml": f"extends: c{i + 1}.yaml\n{per_file}" for i in range(files - 1)}
    chained[f"c{files - 1}.yaml"] = HEAD + "layers: [{type: conv, out: 2, kernel: 1}]\n" + per_file
    return {"hostile.yaml": "extends: c0.yaml\n", **chained}


def hostile_files() -> dict[str, dict[str, str]]:
    """Hostile inputs made of several files, by name: {file name: text}, loaded from `hostile.yaml`; a text
    `@link:TARGET` is a symlink."""
    return {
        "32 chained files, an alias bomb each": chain(32, "variants:\n  x:\n" + bomb(6, "x", "    ")),
        "32 chained files of 60 KB each": chain(32, "description: " + "x" * 60_000 + "\n"),
        "symlink loop in extends": {"hostile.yaml": "extends: loop.yaml\n", "loop.yaml": "@link:loop2.yaml",
                                    "loop2.yaml": "@link:loop.yaml"},
    }


def hostile_commands() -> dict[str, tuple[str, list[str]]]:
    """Hostile specs for the commands that write or draw, by name: (spec text, the CLI arguments after
    `cli.py`, with SPEC for the spec and OUT for a file in a fresh folder)."""
    branches = ", ".join(f"b{i}: [{{type: conv, out: 1, kernel: 1}}]" for i in range(3000))
    injection = HEAD + 'description: "\\"\\"\\"; import os; os.system(\'touch PWNED\') #\\N{x}"\nlayers: [{type: conv, out: 4, kernel: 1}]\n'
    return {
        "diagram: inception of 3,000 branches": (HEAD + f"layers: [{{type: inception, branches: {{{branches}}}}}]\n",
                                                 ["diagram", "SPEC", "-o", "OUT.svg"]),
        "diagram --detail layer: 19,999 blocks": (HEAD + "layers: [{type: stage, repeat: 19999, block: relu}]\n",
                                                  ["diagram", "SPEC", "--detail", "layer", "-o", "OUT.svg"]),
        "export python: code in the description": (injection, ["export", "SPEC", "--format", "python", "-o", "OUT.py"]),
        "build: a layer named 'append'": (HEAD + "layers: [{name: append, type: relu}]\n", ["build", "SPEC", "--device", "meta"]),
        "build: 100 TB of weights": (HEAD + "layers: [flatten, {type: linear, out: 1000000}, {type: linear, out: 1000000}]\n",
                                     ["build", "SPEC"]),
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


def _probe(folder: Path, limit: int) -> dict:
    """Load folder/hostile.yaml in a fresh process under an address-space limit: its answer, time and growth."""
    import resource

    code = textwrap.dedent(PROBE.format(root=str(ROOT), path=str(folder / "hostile.yaml")))
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))
    try:
        return json.loads(result.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"message": f"CRASH exit {result.returncode}: {result.stderr.strip()[-300:]}",
                "seconds": time.perf_counter() - start, "grew_mb": -1}


def _write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = folder / name
        if text.startswith("@sparse:"):
            with open(path, "wb") as handle:
                handle.truncate(int(text.split(":")[1]))
        elif text.startswith("@link:"):
            path.symlink_to(text.split(":", 1)[1])
        else:
            path.write_text(text, encoding="utf-8")


def _line(name: str, seconds: float, extra: str, message: str, bad: bool, folder: Path) -> str:
    message = message.replace(f"{folder}/", "")
    message = message if len(message) <= 150 else message[:147] + "..."
    return f"{'!! ' if bad else ''}{name:<46} {seconds * 1000:7.0f} ms  {extra}  {message}"


def run_hostile(limit: int = 1 << 30) -> tuple[list[str], bool]:
    lines, ok = [], True
    loads = {name: {"hostile.yaml": text} for name, text in hostile().items()} | hostile_files()
    for name, files in loads.items():
        with tempfile.TemporaryDirectory() as tmp:
            _write(Path(tmp), files)
            out = _probe(Path(tmp), limit)
            bad = out["message"].startswith("CRASH") or out["seconds"] > 2
            ok &= not bad
            lines.append(_line(name, out["seconds"], f"+{out['grew_mb']:5.0f} MB", out["message"], bad, Path(tmp)))
    for name, (text, args) in hostile_commands().items():
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            (folder / "hostile.yaml").write_text(text, encoding="utf-8")
            argv = [str(folder / "hostile.yaml") if a == "SPEC" else a.replace("OUT", str(folder / "out")) for a in args]
            start = time.perf_counter()
            done = subprocess.run([sys.executable, str(ROOT / "cli.py"), *argv], capture_output=True, text=True,
                                  timeout=300, cwd=folder)
            seconds = time.perf_counter() - start
            said = (done.stderr.strip() or done.stdout.strip()).splitlines()
            left = sorted(p.name for p in folder.iterdir() if p.name not in ("hostile.yaml",) and not p.name.startswith("out"))
            bad = (done.returncode not in (0, 2) or "Traceback" in done.stderr or (done.returncode == 2 and len(said) != 1)
                   or bool(left) or (args[0] == "diagram" and seconds > 2))
            ok &= not bad
            message = f"exit {done.returncode}: {said[-1] if said else ''}" + (f" (left behind: {left})" if left else "")
            lines.append(_line(name, seconds, "         ", message, bad, folder))
    return lines, ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--time-limit", type=float, default=1.0)
    parser.add_argument("--no-torch", action="store_true", help="do not compile the accepted specs")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes for the corpus (default: one per core)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "fuzz.txt"))
    args = parser.parse_args()
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))  # torch maps a lot of address space
    except (ImportError, ValueError, OSError):
        pass
    specs = sorted((ROOT / "specs").glob("*.yaml"))
    report = fuzz(specs, args.cases, args.seed, args.time_limit, check_torch=not args.no_torch, jobs=args.jobs)
    import resource

    peak = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024
    hostile_lines, hostile_ok = run_hostile()
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    header = (f"# fuzz: {len(specs)} bundled specs mutated; {platform.machine()}, {os.cpu_count()} cpus, Python "
              f"{platform.python_version()}, {time.strftime('%Y-%m-%d')}; load average at the end {load}\n"
              f"# python benchmarks/fuzz.py --cases {args.cases} --seed {args.seed} --time-limit {args.time_limit:g} --jobs {args.jobs}"
              f"{' --no-torch' if args.no_torch else ''}\n")
    text = (header + "\n" + report.format() + f"\n\npeak memory of a fuzzing process: {peak:.0f} MB\n\n"
            "hostile inputs (each in a fresh process; loads limited to 1 GiB of address space; commands run as the CLI):\n" + "\n".join(hostile_lines) + "\n")
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text, encoding="utf-8")
    return 0 if not report.crashes and not report.slow and hostile_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
