"""Running fuzz cases: each answer must be a Spec or a located one-line SpecError, within the time limit."""
from __future__ import annotations

import argparse
import gc
import multiprocessing
import re
import shutil
import signal
import tempfile
import threading
import time
import traceback
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from ...errors import SpecError
from ...language.spec import load
from .cases import Case, _Seed, make_case


@dataclass
class Outcome:
    case: Case
    status: str  # accepted, rejected, crash
    seconds: float  # wall time of the answer
    cpu_seconds: float  # CPU time of the answer (this process)
    error_class: str = ""
    detail: str = ""  # the error line, or the crash's traceback


@dataclass
class FuzzReport:
    """Counts over a fuzz run. A run is clean when `crashes` and `slow` are empty."""

    seed: int
    time_limit: float
    tried: int = 0
    accepted: int = 0
    rejected: Counter = field(default_factory=Counter)  # error class -> count
    crashes: list[Outcome] = field(default_factory=list)
    slow: list[Outcome] = field(default_factory=list)  # answers over time_limit CPU seconds
    slowest: Outcome | None = None  # by wall time
    slowest_cpu: Outcome | None = None  # by CPU time
    ops: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    compiled: int = 0  # accepted specs compiled on meta and run (check_torch)

    def add(self, outcome: Outcome) -> None:
        self.tried += 1
        self.ops.update(outcome.case.ops)
        if outcome.status == "accepted":
            self.accepted += 1
            self.compiled += outcome.detail == "compiled"
        elif outcome.status == "rejected":
            self.rejected[outcome.error_class] += 1
        else:
            self.crashes.append(outcome)
        if outcome.cpu_seconds > self.time_limit:
            self.slow.append(outcome)
        if self.slowest is None or outcome.seconds > self.slowest.seconds:
            self.slowest = outcome
        if self.slowest_cpu is None or outcome.cpu_seconds > self.slowest_cpu.cpu_seconds:
            self.slowest_cpu = outcome

    def merge(self, other: "FuzzReport") -> None:
        """Add the counts of another part of the same run."""
        self.tried, self.accepted, self.compiled = self.tried + other.tried, self.accepted + other.accepted, \
            self.compiled + other.compiled
        self.rejected.update(other.rejected)
        self.ops.update(other.ops)
        self.crashes += other.crashes
        self.slow += other.slow
        for attr, measure in (("slowest", "seconds"), ("slowest_cpu", "cpu_seconds")):
            mine, theirs = getattr(self, attr), getattr(other, attr)
            if theirs is not None and (mine is None or getattr(theirs, measure) > getattr(mine, measure)):
                setattr(self, attr, theirs)

    def format(self, top: int = 40) -> str:
        rejected = sum(self.rejected.values())
        lines = [f"inputs tried      {self.tried:,}  (seed {self.seed}, {self.seconds:.1f} s, "
                 f"{self.seconds / max(self.tried, 1) * 1000:.1f} ms per input)",
                 f"accepted          {self.accepted:,}" + (f"  ({self.compiled:,} compiled on meta and run: output "
                                                             "shape and parameters equal the analysis)" if self.compiled else ""),
                 f"rejected          {rejected:,}  (SpecError, located; {len(self.rejected)} error classes)",
                 f"crashes           {len(self.crashes)}",
                 f"over {self.time_limit:g} s CPU    {len(self.slow)}"]
        for label, outcome in (("slowest answer", self.slowest), ("slowest, CPU", self.slowest_cpu)):
            if outcome is not None:
                lines.append(f"{label:<17} {outcome.seconds * 1000:.0f} ms wall, {outcome.cpu_seconds * 1000:.0f} ms CPU  "
                             f"({outcome.case.describe()}, {outcome.status})")
        lines += ["", f"rejections by error class (top {top}):"]
        for cls, count in self.rejected.most_common(top):
            lines.append(f"  {count:6,}  {cls}")
        if len(self.rejected) > top:
            lines.append(f"  {sum(c for _, c in self.rejected.most_common()[top:]):6,}  ({len(self.rejected) - top} other classes)")
        lines += ["", "mutations applied:"]
        lines += [f"  {count:6,}  {op}" for op, count in sorted(self.ops.items())]
        for outcome in self.crashes[:20]:
            lines += ["", f"CRASH {outcome.case.describe()}", outcome.detail]
        return "\n".join(lines)


# -- error classes -------------------------------------------------------------------------------

def error_class(message: str) -> str:
    """A SpecError message with its particulars (names, numbers, shapes, inputs) blanked, for grouping."""
    text = re.sub(r"\s*\(\+\d+ more problems?\)$", "", message)
    text = re.sub(r"; did you mean '.*?'\?", "", text)
    text = re.sub(r"\s*\(known: .*?\)", "", text)
    text = re.sub(r"\(got .*\)$", "", text)
    text = re.sub(r"; names there: .*$", "", text)
    text = re.sub(r"'(?:[^'\\]|\\.)*'", "'_'", text)
    text = re.sub(r"\b\d+(?:x\d+)+\b", "CxHxW", text)
    text = re.sub(r"[-+]?\d[\d,._]*(?:e[-+]?\d+)?", "N", text)
    text = re.sub(r"\s+", " ", text).strip(" ;:")
    return text[:100]


# -- running ---------------------------------------------------------------------------------------

class _Hang(BaseException):
    """Raised by the alarm when one answer takes longer than the hang limit."""


def _allowed_file(file: str, path: Path, folder: Path) -> bool:
    if file.startswith(("--set ", "--variant ", "override ")):
        return True
    # The folder's own files and those of its subfolders (specs/lib/), links included (a case may `extends` a
    # symlink that points elsewhere).
    root = folder.resolve()
    return root in Path(file).resolve().parents or root in (Path(file).parent.resolve(), *Path(file).parent.resolve().parents)


def check_error(error: SpecError, path: Path, folder: Path) -> str:
    """'' if the error is what a spec author must get (located, one line), else what is wrong."""
    text = str(error)
    if error.loc is None:
        return "no location"
    if error.loc.line < 1 or error.loc.col < 1:
        return f"bad position {error.loc}"
    if not _allowed_file(error.loc.file, path, folder):
        return f"located in an unexpected file {error.loc.file!r}"
    if "\n" in text or "\r" in text:
        return "message on more than one line"
    if not error.message.strip():
        return "empty message"
    if error.block_type and not error.path:
        return "names a block type but no block path"
    return ""


def run_case(case: Case, folder: Path, hang_limit: float = 20.0, check_torch: bool = False) -> Outcome:
    """Load one case from `folder` (which holds copies of the seed specs, so `extends` resolves)."""
    from ...reports.guard import estimate_memory

    with written(case, folder) as path:
        return _answer(case, path, folder, hang_limit, check_torch, estimate_memory)


def _answer(case: Case, path: Path, folder: Path, hang_limit: float, check_torch: bool,
            estimate_memory: Callable[[Any], Any]) -> Outcome:
    alarm = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if alarm:
        previous = signal.signal(signal.SIGALRM, _raise_hang)
        signal.setitimer(signal.ITIMER_REAL, hang_limit)
    start, cpu = time.perf_counter(), time.process_time()
    try:
        spec = load(path, case.overrides, variant=case.variant, phi=case.phi)
        spec.params, spec.macs, spec.output_shape, spec.aux_params, spec.source  # noqa: B018 (all must answer)
        size = estimate_memory(spec).total_bytes
        status, cls, detail = "accepted", "", ""
    except SpecError as exc:
        problem = check_error(exc, path, folder)
        status, cls, detail = ("crash", "", f"{problem}: {exc}") if problem else ("rejected", error_class(exc.message.replace(str(folder), "FOLDER")), str(exc))
    except _Hang:
        status, cls, detail = "crash", "", f"no answer within {hang_limit:g} s"
    except BaseException as exc:  # noqa: BLE001 (anything else is the finding)
        if isinstance(exc, KeyboardInterrupt):
            raise
        status, cls, detail = "crash", "", "".join(traceback.format_exception(exc)[-6:])
    finally:
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        if alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    if status == "accepted" and check_torch and size < 2 ** 50:
        problem = compile_on_meta(spec)
        status, detail = ("crash", problem) if problem else (status, "compiled")
    return Outcome(case, status, seconds, cpu, cls, detail)


def compile_on_meta(spec: Any) -> str:
    """'' if the spec compiles on `meta` and its forward pass gives the analysed shape; else the problem."""
    try:
        import torch

        from ...backend.compiler import compile_spec

        model = compile_spec(spec, "meta").eval()
        with torch.no_grad():
            y = model(torch.empty(1, *spec.input.shape, device="meta"))
        params = sum(p.numel() for p in model.parameters())
    except Exception:  # noqa: BLE001
        return "accepted, but does not compile or run:\n" + "".join(traceback.format_exc().splitlines(True)[-6:])
    if tuple(y.shape) != (1, *spec.output_shape) or params != spec.params:
        return (f"accepted, but the compiled module gives {tuple(y.shape)} and {params:,} parameters; the analysis "
                f"says {(1, *spec.output_shape)} and {spec.params:,}")
    return ""


def _raise_hang(signum: int, frame: Any) -> None:
    raise _Hang()


@contextmanager
def written(case: Case, folder: Path) -> Iterator[Path]:
    """The case's spec file in `folder`, with the files and links it needs beside it (removed afterwards)."""
    path = folder / f"fuzz_{case.seed_file.stem}.yaml"
    path.write_bytes(case.data)
    beside = [folder / name for name in [*case.files, *case.links]]
    try:
        for name, data in case.files.items():
            (folder / name).write_bytes(data)
        for name, target in case.links.items():
            (folder / name).symlink_to(target)
        yield path
    finally:
        for other in beside:
            other.unlink(missing_ok=True)


def fuzz(seed_files: Iterable[str | Path], cases: int = 1000, seed: int = 0, time_limit: float = 1.0,
         hang_limit: float = 20.0, on_outcome: Callable[[Outcome], None] | None = None,
         check_torch: bool = False, jobs: int = 1) -> FuzzReport:
    """Run `cases` mutated inputs drawn from `seed_files`; see the package docstring. `jobs` > 1 splits the
    cases over that many processes (case i in process i % jobs; the report is the same as with one)."""
    files = [Path(p) for p in seed_files]
    start = time.perf_counter()
    if jobs <= 1:
        report = fuzz_part(files, range(cases), seed, time_limit, hang_limit, check_torch, on_outcome)
    else:
        if on_outcome is not None:
            raise ValueError("on_outcome runs in this process: use jobs=1")
        report = FuzzReport(seed, time_limit)
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(jobs, mp_context=context) as pool:
            parts = [pool.submit(fuzz_part, files, range(job, cases, jobs), seed, time_limit, hang_limit, check_torch)
                     for job in range(jobs)]
            for part in parts:
                report.merge(part.result())
    report.seconds = time.perf_counter() - start
    return report


def fuzz_part(files: list[Path], indices: Iterable[int], seed: int, time_limit: float, hang_limit: float,
              check_torch: bool, on_outcome: Callable[[Outcome], None] | None = None) -> FuzzReport:
    """The cases `indices` of the run seeded `seed`, in this process."""
    report = FuzzReport(seed, time_limit)
    if check_torch:
        import torch  # noqa: F401  (import it now, not inside the first timed answer)
    # Keep the objects already alive (torch's, or a test session's) out of the garbage collector's scans,
    # so that answers are timed as in a fresh `archspec validate` process.
    gc.collect()
    gc.freeze()
    try:
        with tempfile.TemporaryDirectory(prefix="archspec-fuzz-") as tmp:
            folder = Path(tmp)
            seeds = [_Seed(path) for path in copy_seeds(files, folder)]
            for index in indices:
                outcome = run_case(make_case(seeds, seed, index), folder, hang_limit, check_torch)
                report.add(outcome)
                if on_outcome is not None:
                    on_outcome(outcome)
    finally:
        gc.unfreeze()
    return report


def copy_seeds(files: list[Path], folder: Path) -> list[Path]:
    """Copy the seeds and their neighbours (the parents they extend, libraries of defined blocks in
    subfolders such as specs/lib/) into `folder`; the seeds' copies."""
    for parent in {p.parent for p in files}:
        for other in parent.rglob("*.yaml"):
            target = folder / other.relative_to(parent)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(other, target)
    return [folder / p.name for p in files]


def case(seed_files: Iterable[str | Path], seed: int, index: int, folder: str | Path) -> Path:
    """Write case `index` of a run into `folder` (with copies of the seeds, and the files and links the case
    needs beside it) and return its path, to reproduce it."""
    folder = Path(folder)
    made = make_case([_Seed(p) for p in copy_seeds([Path(p) for p in seed_files], folder)], seed, index)
    path = folder / f"fuzz_{made.seed_file.stem}.yaml"
    path.write_bytes(made.data)
    for name, data in made.files.items():
        (folder / name).write_bytes(data)
    for name, target in made.links.items():
        (folder / name).unlink(missing_ok=True)
        (folder / name).symlink_to(target)
    print(made.describe())
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m archspec.tools.fuzz", description="Mutation fuzzing of spec files")
    parser.add_argument("specs", nargs="+", help="seed spec files")
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-limit", type=float, default=1.0, help="seconds one answer may take")
    parser.add_argument("--torch", action="store_true", help="also compile each accepted spec on meta and run it")
    parser.add_argument("--jobs", type=int, default=1, help="processes to run the cases in")
    args = parser.parse_args(argv)
    report = fuzz(args.specs, args.cases, args.seed, args.time_limit, check_torch=args.torch, jobs=args.jobs)
    print(report.format())
    return 1 if report.crashes or report.slow else 0

