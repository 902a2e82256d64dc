"""Mutation fuzzing of spec files: every input must give a valid spec or a located SpecError, quickly.

Each case takes a seed spec, applies one to three mutations to its text (delete, duplicate or swap lines,
break the indentation, truncate, insert odd characters or bytes, replace numbers with extreme values or
names with other block types, insert YAML tags, anchors and aliases) or to its parsed tree (delete or
duplicate a field or an item, change a value's type, set 0, negative, huge, NaN, infinite, unicode or
bytes values, swap a block's type, move a subtree, name a block after an attribute of the torch containers
it compiles into; in blocks defined in YAML, hostile `= expressions`, bad parameter types and defaults,
recursive or missing bodies, shadowed built-in names), sometimes surrounds it with other files (an `extends` chain of up to 40 files, each
under the per-file limits; `extends` through a symlink loop, a dangling link, a link to a folder or a
device; merge-key bombs and a mapping merged into itself), and sometimes adds `--set` overrides, a
variant or a compound-scaling phi. It then loads the result as `archspec.load` does for the CLI, and checks that the
answer is a Spec (analysed) or a SpecError that is located (file, line >= 1, column >= 1, a block path
when a block type is named) and fits on one line, in under `time_limit` seconds of CPU time (wall time
is reported too; CPU time does not count the waits of a loaded machine). Anything else (another
exception, a hang, an unlocated error) is a crash. With `check_torch`, each accepted spec is also
compiled on the `meta` device and run (nothing is allocated): its output shape and parameter count must
equal the analysis.

    from archspec.tools.fuzz import fuzz
    report = fuzz(sorted(Path("specs").glob("*.yaml")), cases=2000, seed=0)
    print(report.format()); assert not report.crashes

    python -m archspec.tools.fuzz my_spec.yaml --cases 5000 --jobs 2     # fuzz your own specs (or new block types)

Each case is rebuilt from (seed, index) alone, so `case(seeds, seed, index, folder)` reproduces any finding.
`mutations.py` holds the mutations, `cases.py` builds a case, `run.py` answers and checks it.
Pure Python (torch only for `check_torch`), no hypothesis: used by tests/test_robustness.py and
benchmarks/fuzz.py.
"""
from .cases import Case, make_case
from .run import FuzzReport, Outcome, case, check_error, compile_on_meta, error_class, fuzz, main, run_case

__all__ = ["Case", "FuzzReport", "Outcome", "case", "check_error", "compile_on_meta", "error_class", "fuzz", "main",
           "make_case", "run_case"]
