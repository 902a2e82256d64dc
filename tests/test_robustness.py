"""Robustness: fuzzed and hostile specs give a valid spec or one located SpecError, fast and in bounded
memory; the resource guard refuses what would not fit. (Property tests of valid specs: test_hypothesis.py.)"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import archspec
from archspec import SpecError
from archspec.language.blocks.base import MAX_BLOCKS
from archspec.cli import main
from archspec.tools.fuzz import check_error, error_class, fuzz
from archspec.reports.guard import MemoryEstimate, available_memory, check_memory, estimate_memory
from archspec.units import human_bytes
from archspec.language.source import MAX_DEPTH, MAX_EXTENDS_DEPTH, MAX_FILE_BYTES
from conftest import ALL_SPECS, ROOT

HEAD = "name: t\ninput: {channels: 3, size: 32}\n"


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def refused(path_or_text: Path | str, match: str, seconds: float = 2.0) -> SpecError:
    """Loading gives a located SpecError matching `match`, within `seconds` of CPU time (not wall time,
    which a loaded CI machine stretches)."""
    start = time.process_time()
    with pytest.raises(SpecError) as info:
        if isinstance(path_or_text, Path):
            archspec.load(path_or_text)
        else:
            archspec.loads(path_or_text, "t.yaml")
    elapsed = time.process_time() - start
    error = info.value
    assert match in str(error), str(error)
    assert error.loc is not None and error.loc.line >= 1 and error.loc.col >= 1, str(error)
    assert "\n" not in str(error)
    assert elapsed < seconds, f"{elapsed:.2f} s"
    return error


# -- the fuzz corpus ---------------------------------------------------------------------------

def test_fuzz_corpus_gives_only_specs_and_located_errors() -> None:
    """A seeded corpus of mutated bundled specs: 0 crashes, every answer within a second of CPU time
    (benchmarks/fuzz.py runs a larger corpus; the slowest answers, analyses stopped by the block budget,
    take about 0.3 s)."""
    report = fuzz(ALL_SPECS, cases=1500, seed=20261128, time_limit=1.0)
    assert not report.crashes, report.format()
    assert not report.slow, report.format()
    assert report.tried == 1500
    # The mutations have teeth: many inputs are refused, for many different reasons, and some pass.
    assert report.accepted > 150 and sum(report.rejected.values()) > 900, report.format()
    assert len(report.rejected) > 70, report.format()
    assert any("not valid YAML" in c for c in report.rejected)
    assert any("is not a field of" in c for c in report.rejected)


def test_fuzzed_specs_that_pass_also_compile_and_agree() -> None:
    """Accepted specs compile on `meta` and run; output shape and parameters equal the analysis."""
    report = fuzz(ALL_SPECS, cases=100, seed=314, time_limit=1.0, check_torch=True)
    assert not report.crashes, report.format()
    assert report.compiled > 15


def test_fuzzed_block_definitions_give_specs_or_located_errors() -> None:
    """The files that define blocks in YAML, fuzzed, with mutations aimed at `blocks:` among the others (hostile
    `= expressions`, bad parameter types and defaults, recursive or missing bodies): 0 crashes; what passes builds."""
    seeds = [p for p in [*ALL_SPECS, *sorted((ROOT / "specs" / "lib").glob("*.yaml"))] if "\nblocks:" in p.read_text()]
    report = fuzz(seeds, cases=200, seed=20261201, time_limit=1.0, check_torch=True)
    assert not report.crashes and not report.slow, report.format()
    assert report.ops["expression"] >= 5 and report.ops["definition"] >= 5, report.format()  # each ~1 case in 16
    assert any(c.startswith("in block '_' defined at") for c in report.rejected), report.format()
    assert report.compiled > 10, report.format()


def test_fuzz_cases_are_reproducible() -> None:
    a = fuzz(ALL_SPECS[:3], cases=30, seed=7)
    b = fuzz(ALL_SPECS[:3], cases=30, seed=7)
    assert (a.accepted, a.rejected) == (b.accepted, b.rejected)


def test_error_classes_blank_the_particulars() -> None:
    assert error_class("'strid' is not a field of bottleneck; did you mean 'stride'?") == "'_' is not a field of bottleneck"
    assert error_class("a 3x3 kernel (stride 1x1, padding 0x0) does not fit the 2x2 input") == \
        "a CxHxW kernel (stride CxHxW, padding CxHxW) does not fit the CxHxW input"
    assert error_class("'kernel': Input should be greater than or equal to 1 (got 0) (+2 more problems)") == \
        "'_': Input should be greater than or equal to N"


def test_check_error_wants_a_location_and_one_line(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    assert check_error(SpecError("m", archspec.Loc(str(path), 1, 1)), path, tmp_path) == ""
    assert check_error(SpecError("m"), path, tmp_path) == "no location"
    assert "more than one line" in check_error(SpecError("a\nb", archspec.Loc(str(path), 1, 1)), path, tmp_path)
    assert "block path" in check_error(SpecError("m", archspec.Loc(str(path), 1, 1), "", "conv"), path, tmp_path)


# -- crashes the fuzzer found, and their fixes ---------------------------------------------------
# (yaml text, line:col, what the message says). Before the fixes most raised another exception (TypeError,
# ValueError, RecursionError, pydantic.ValidationError, yaml.ReaderError), hung or ran out of memory; the
# rest gave an unhelpful or multi-line message, or were accepted while analysing a million blocks.

REGRESSIONS = {
    # blocks/__init__.py: an unhashable `type` met the `defaults` lookup (TypeError)
    "unhashable_type_with_defaults": (HEAD + "defaults: {conv: {out: 8}}\nlayers:\n  - {type: [conv], out: 8, kernel: 3}\n",
                                      "5:6", "a block's 'type' is the name of a block type, not ['conv']"),
    # spec.py: defaults that hold blocks applied themselves inside themselves (pydantic's recursion guard:
    # "Recursion error - maximum validation depth exceeded")
    "recursive_defaults": (HEAD + "defaults: {sequence: {layers: [sequence]}}\nlayers: [sequence]\n",
                           "3:23", "defaults.sequence (sequence): 'layers' holds blocks and cannot have a default"),
    # source.py: an integer of more digits than Python converts (ValueError)
    "integer_too_long": (HEAD + "layers: [{type: conv, out: " + "9" * 5000 + ", kernel: 3}]\n",
                         "3:28", "the integer with 5,000 digits is too long"),
    # source.py: YAML nested thousands of levels deep (RecursionError in the composer)
    "deep_nesting": (HEAD + "layers: " + "[" * 5000 + "]" * 5000 + "\n", "3:72", f"nests deeper than {MAX_DEPTH} levels"),
    # source.py: a dotted-path step of digits int() cannot read (ValueError)
    "unicode_digit_path": (HEAD + "layers: [relu]\nlayers.²: 1\n", "4:1", "no item '²' in layers"),
    # blocks/base.py: a macro block expanding to a conv wider than the 1,000,000-channel bound (ValidationError)
    "bottleneck_expands_too_wide": ("name: t\ninput: {channels: 3, size: 8}\nlayers:\n  - {type: bottleneck, planes: 1000000, expansion: 8}\n",
                                    "4:5", "0 (bottleneck): does not expand at input 3x8x8: its conv's 'out' would be 8000000"),
    "mbconv_expands_too_wide": ("name: t\ninput: {channels: 1000000, size: 8}\nlayers:\n  - {type: mbconv, out: 8}\n",
                                "4:5", "0 (mbconv): does not expand at input 1000000x8x8"),
    # blocks/residual.py: an automatic projection strided past the bound (ValidationError); its stride
    # search looped over every candidate stride (now a closed form)
    "projection_too_strided": ("name: t\ninput: {channels: 3, size: 1000000}\nlayers:\n"
                               "  - {type: conv, out: 3, kernel: 1, padding: 1000000}\n"
                               "  - {type: residual, body: [{type: global_pool}]}\n",
                               "5:5", "1 (residual): cannot project 3x3000000x3000000 to 3x1x1"),
    # source.py: a character YAML refuses, e.g. NUL (yaml.reader.ReaderError, unlocated)
    "nul_character": (HEAD + "layers: [conv\0]\n", "3:14", "the character #x0000 is not allowed in YAML"),
    # spec.py: compound scaling shrank the input to 0x0 (an obscure conv error), widened a block past its
    # bound (ValidationError in the expansion) or multiplied repeats to 10^26 (MemoryError after 20 s); a
    # depth multiplier made a million repetitions (accepted after 2.5 s of analysis)
    "phi_shrinks_input": (HEAD + "layers: [{type: conv, out: 8, kernel: 3}]\ncompound: {gamma: 0.1}\nscaling: {phi: 10}\n",
                          "5:1", "compound scaling with phi=10 makes the input size 0x0"),
    "phi_widens_past_bound": (HEAD + "layers: [{type: bottleneck, planes: 8}]\ncompound: {beta: 10}\nscaling: {phi: 20}\n",
                              "3:10", "0 (bottleneck): scaling (width x1e+20) makes 'planes'"),
    # ... also an optional channel field (`width: Channels | None`), whose bound sits inside the union
    "width_scales_past_bound": (HEAD + "layers: [{type: bottleneck, planes: 8, width: 600000}]\nscaling: {width: 2}\n",
                                "3:10", "0 (bottleneck): scaling (width x2) makes 'width' 1,200,000, over its limit of 1,000,000"),
    "phi_deepens_past_bound": (HEAD + "layers: [{type: stage, repeat: 10000, block: {type: conv, out: 8, kernel: 1}}]\n"
                               "compound: {alpha: 10}\nscaling: {phi: 20}\n", "3:10", "makes 'repeat'"),
    "depth_multiplier_past_bound": (HEAD + "layers: [{type: stage, repeat: 10000, block: {type: relu}}]\nscaling: {depth: 100}\n",
                                    "3:10", "scaling (depth x100) makes 'repeat' 1,000,000, over its limit of 10,000"),
    # blocks/base.py: nested repeats multiply (10^8 blocks: minutes, then MemoryError)
    "nested_repeats": (HEAD + "layers: [{type: stage, repeat: 10000, block: {type: sequence, layers: "
                       "[{type: stage, repeat: 10000, block: {type: conv, out: 8, kernel: 1}}]}}]\n",
                       "3:108", f"the network expands to more than {MAX_BLOCKS:,} blocks"),
    # blocks/base.py: channels doubling without bound (a ValidationError in a later block's expansion, or
    # worse: a float conversion of a huge int)
    "unbounded_channels": (HEAD + "layers:\n" + "  - {type: inception, branches: {a: [], b: []}}\n" * 45
                           + "  - {type: mbconv, out: 8}\n", "42:5", "has a dimension over 2^40"),
    # spec.py: a newline in a block name or type split the one-line error
    "newline_in_name": (HEAD + 'layers: [{type: relu, name: "a\\nb"}]\n', "3:23", "a\\nb (relu)"),
    "newline_in_type": (HEAD + 'layers: [{type: "a\\nb"}]\n', "3:11", "unknown block type 'a\\nb'"),
}


@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_fuzz_regressions_give_located_errors(name: str) -> None:
    text, where, message = REGRESSIONS[name]
    error = refused(text, message)
    assert str(error).startswith(f"t.yaml:{where}: "), str(error)


@pytest.mark.parametrize("value, message", [
    ("2001-13-45", "'2001-13-45' is not a valid date (month must be in 1..12); quote it if it is text"),
    ("2001-12-14t21:59:43.10-25:00", "is not a valid date (offset must be"),
    ("!!timestamp x", "'x' is not a valid date"),
    ("!!float", "'' is not a valid !!float value"),
    ("!!int abc", "'abc' is not a valid !!int value"),
    ("!!bool maybe", "'maybe' is not a valid !!bool value"),
])
def test_fuzz_regression_scalars_their_tag_cannot_hold(value: str, message: str) -> None:
    """PyYAML's constructors raised ValueError, IndexError, KeyError or AttributeError on these, even
    untagged (a date-like `2001-13-45`)."""
    error = refused(f"{HEAD}layers: [relu]\ndescription: {value}\n", message)
    assert str(error).startswith("t.yaml:4:14: ")


def test_fuzz_regression_invalid_utf8_is_located(tmp_path: Path) -> None:
    error = refused(write(tmp_path, "bytes.yaml", HEAD.encode() + b"layers: [r\xffelu]\n"), "not UTF-8 text: byte 0xff")
    assert (error.loc.line, error.loc.col) == (3, 11)


def test_fuzz_regression_extends_with_unusable_paths(tmp_path: Path) -> None:
    error = refused(write(tmp_path, "a.yaml", 'extends: "x\\0y.yaml"\n'), "'extends': cannot use 'x\\x00y.yaml' as a file path")
    assert str(error).startswith(f"{tmp_path / 'a.yaml'}:1:1: ")
    refused(write(tmp_path, "b.yaml", f"extends: {'x' * 5000}.yaml\n"), "'extends'")
    refused(write(tmp_path, "c.yaml", "extends: .\n"), "parent spec '.' is a directory, not a spec file")


def test_api_overrides_with_shared_or_cyclic_data_are_bounded() -> None:
    cyclic: list = []
    cyclic.append(cyclic)
    with pytest.raises(SpecError, match="nests deeper than"):
        archspec.load(ROOT / "specs/resnet18.yaml", overrides={"description": cyclic})
    shared: list = ["x"] * 10
    for _ in range(7):
        shared = [shared] * 10  # 10^8 leaves through shared references
    with pytest.raises(SpecError, match="expands to more than"):
        archspec.load(ROOT / "specs/resnet18.yaml", overrides={"description": shared})


# -- hostile YAML ------------------------------------------------------------------------------

@pytest.mark.parametrize("tag", ["!!python/object/apply:os.system ['echo hacked']", "!!python/name:os.system",
                                 "!!python/module:os", "!!python/object/new:os.system [x]", "!!python/tuple [1, 2]",
                                 "!custom 1"])
def test_python_and_unknown_tags_are_refused(tag: str) -> None:
    error = refused(f"{HEAD}description: {tag}\nlayers: [relu]\n", "is not allowed; a spec holds plain data only")
    assert (error.loc.line, error.loc.col) == (3, 14)


def _bomb(levels: int, item: str = "lol", indent: str = "") -> str:
    """Billion laughs: `levels` anchors, each a list of ten aliases to the one before (10^levels leaves)."""
    lines = [f"a0: &a0 [{', '.join([item] * 10)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "".join(f"{indent}{line}\n" for line in lines)


def _in_subprocess(code: str, memory: int = 1 << 30, timeout: float = 60) -> tuple[dict, float]:
    """Run `code` (which prints one JSON line) under an address-space limit; return its output and time."""
    import resource

    def limit() -> None:
        try:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        except (ValueError, OSError):  # not settable here (some platforms): run unlimited
            pass

    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True,
                            timeout=timeout, preexec_fn=limit)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1]), time.perf_counter() - start


BOMB_PROBE = """
    import json, sys, time
    sys.path.insert(0, ".")
    import archspec
    def peak():  # VmHWM: this process's peak RSS (ru_maxrss would include pytest's, from fork)
        return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    base = peak()
    start, cpu = time.perf_counter(), time.process_time()
    try:
        archspec.loads(open(sys.argv[1] if len(sys.argv) > 1 else {path!r}).read(), "bomb.yaml")
        message = "accepted"
    except archspec.SpecError as exc:
        message = str(exc)
    print(json.dumps({{"message": message, "seconds": time.perf_counter() - start, "cpu": time.process_time() - cpu,
                       "grew_mb": (peak() - base) / 1024}}))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="address-space limit and /proc/self/status: Linux")
@pytest.mark.parametrize("kind", ["billion_laughs", "layers_bomb", "flat_alias_list", "defaults_amplifier", "nested_repeats"])
def test_alias_bombs_are_refused_quickly_in_bounded_memory(kind: str, tmp_path: Path) -> None:
    """Under a 1 GiB address-space limit, each bomb is refused (a SpecError, not MemoryError) within 3 s
    of CPU time (about 1 s on an idle 2-core machine), growing the process by less than 400 MB, whether the expansion would happen in the YAML loader
    (aliases), in validation (aliases or defaults multiplied over many blocks) or in analysis (repeats). Each
    text fits the 64 KiB source limit (items joined without spaces), which would stop a longer one first."""
    block = "{type: conv, out: 3, kernel: 1, norm: batch, activation: relu, bias: false, stride: 1, groups: 1}"
    text = {
        "billion_laughs": HEAD + _bomb(9) + "layers: [relu]\n",
        "layers_bomb": HEAD + "variants:\n  x:\n" + _bomb(5, "relu", "    ") + "layers: *a4\n",
        "flat_alias_list": HEAD + f"variants: {{x: {{c: &c {block}}}}}\nlayers: [{','.join(['*c'] * 20500)}]\n",
        "defaults_amplifier": HEAD.replace("channels: 3", "channels: 8") + "defaults: {conv: {out: 8, kernel: 1, padding: "
                              + "&p [" + ", ".join(["0"] * 20) + "]}}\n" + f"layers: [{','.join(['conv'] * 12000)}]\n",
        "nested_repeats": HEAD + "layers: [{type: stage, repeat: 10000, block: {type: stage, repeat: 10000, "
                          "block: {type: bottleneck, planes: 8}}}]\n",
    }[kind]
    path = write(tmp_path, "bomb.yaml", text)
    out, _ = _in_subprocess(BOMB_PROBE.format(path=str(path)))
    expected = {"billion_laughs": "expands to more than 250,000 YAML nodes",
                "layers_bomb": "expected a mapping here, got [[[[...]", "flat_alias_list": "the network expands to more than",
                "defaults_amplifier": "with 'defaults' applied to every block, the spec grows past",
                "nested_repeats": "the network expands to more than"}[kind]
    assert expected in out["message"], out
    assert out["message"].startswith("bomb.yaml:"), out
    assert out["cpu"] < 3 and out["grew_mb"] < 400, out


def test_merge_key_bomb_is_harmless() -> None:
    lines = ["a0: &a0 {k0: 1, k1: 2}"] + [f"a{i}: &a{i} {{<<: [*a{i - 1}, *a{i - 1}]}}" for i in range(1, 40)]
    text = HEAD + "variants:\n" + "".join(f"  {line}\n" for line in lines) + "layers: [relu]\n"
    start = time.process_time()
    assert archspec.loads(text).variants["a39"] == {"k0": 1, "k1": 2}
    assert time.process_time() - start < 2


def test_recursive_alias_is_refused() -> None:
    refused(HEAD + "layers: &a [*a]\n", "found unconstructable recursive node")


def test_deep_nesting_is_refused_at_the_limit_and_not_before(tmp_path: Path) -> None:
    # Block-style mappings, one level per line: refused where the limit is crossed.
    deep = HEAD + "variants:\n" + "".join(f"{'  ' * (i + 1)}k{i}:\n" for i in range(200)) + "layers: [relu]\n"
    error = refused(deep, f"nests deeper than {MAX_DEPTH} levels")
    assert error.loc.line == 3 + MAX_DEPTH - 1
    # Nested through aliases: each alias adds the depth of what it names.
    chain = "".join(f"v{i}: &v{i} [[[[[[[[[[*v{i - 1}]]]]]]]]]]\n" for i in range(1, 12))
    refused(HEAD + "variants: {x: {}}\nv0: &v0 [x]\n" + chain + "layers: [relu]\n", "nests deeper than")
    # Twenty nested sequences (about 40 YAML levels) are fine.
    layers = "{type: relu}"
    for _ in range(20):
        layers = f"{{type: sequence, layers: [{layers}]}}"
    assert archspec.loads(HEAD + f"layers: [{layers}]\n").output_shape == (3, 32, 32)


def test_large_files_are_refused_before_parsing(tmp_path: Path) -> None:
    big = HEAD + "layers: [relu]\n" + "# padding\n" * (MAX_FILE_BYTES // 10 + 1)
    error = refused(write(tmp_path, "big.yaml", big), f"larger than {MAX_FILE_BYTES:,} bytes", seconds=0.5)
    assert (error.loc.line, error.loc.col) == (1, 1)
    refused(big, "over the limit of", seconds=0.5)
    with open(tmp_path / "huge.yaml", "wb") as handle:  # 2 GB, sparse: only the first 256 KiB are read
        handle.truncate(2 * 10 ** 9)
    refused(tmp_path / "huge.yaml", "larger than", seconds=0.5)
    # Just under the limit: read and validated.
    fits = HEAD + "layers: [relu]\n" + "# padding\n" * ((MAX_FILE_BYTES - 200) // 10)
    assert archspec.load(write(tmp_path, "fits.yaml", fits)).output_shape == (3, 32, 32)


def test_extends_cannot_loop_or_chain_forever(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", HEAD + "layers: [relu]\n")
    refused(write(tmp_path, "self.yaml", "extends: self.yaml\n"), "'extends' makes a cycle: self.yaml -> self.yaml")
    write(tmp_path, "x.yaml", "extends: y.yaml\n")
    write(tmp_path, "y.yaml", "extends: z.yaml\n")
    write(tmp_path, "z.yaml", "extends: ./x.yaml\n")
    refused(tmp_path / "x.yaml", "'extends' makes a cycle: x.yaml -> y.yaml -> z.yaml -> x.yaml")
    for i in range(MAX_EXTENDS_DEPTH + 5):  # a long chain without a cycle
        write(tmp_path, f"c{i}.yaml", f"extends: c{i + 1}.yaml\n")
    write(tmp_path, f"c{MAX_EXTENDS_DEPTH + 5}.yaml", HEAD + "layers: [relu]\n")
    refused(tmp_path / "c0.yaml", f"'extends' chain deeper than {MAX_EXTENDS_DEPTH} files")
    write(tmp_path, "short.yaml", "extends: c30.yaml\n")
    assert archspec.load(tmp_path / "short.yaml").name == "t"
    refused(write(tmp_path, "dir.yaml", "extends: ..\n"), "parent spec '..' is a directory")


def test_repeat_of_a_hundred_million_is_refused_at_once() -> None:
    error = refused(HEAD + "layers: [{type: stage, repeat: 100000000, block: {type: relu}}]\n", "'repeat'", seconds=0.5)
    assert "less than or equal to 10000" in str(error)


def test_hostile_specs_exit_2_from_the_cli_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = {"deep.yaml": HEAD + "layers: " + "[" * 3000 + "]" * 3000 + "\n",
             "laughs.yaml": HEAD + _bomb(9) + "layers: [relu]\n",
             "nul.yaml": HEAD + "layers: [relu\0]\n",
             "tag.yaml": HEAD + "description: !!python/object/apply:os.system [ls]\nlayers: [relu]\n",
             "repeats.yaml": REGRESSIONS["nested_repeats"][0]}
    for name, text in cases.items():
        path = write(tmp_path, name, text)
        assert main(["validate", str(path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"{path}:"), err


# -- the resource guard ------------------------------------------------------------------------

TINY = HEAD.replace("size: 32", "size: 8") + "layers:\n  - {name: c1, type: conv, out: 8, kernel: 3}\n  - {name: pool, type: global_pool, flatten: true}\n  - {name: fc, type: linear, out: 10}\n"


def test_estimate_is_parameters_buffers_and_the_forward_peak() -> None:
    spec = archspec.loads(TINY)
    estimate = estimate_memory(spec)
    assert estimate.params == spec.params == (8 * 3 * 9 + 8) + (8 * 10 + 10)
    assert estimate.param_bytes == 4 * spec.params and estimate.buffer_bytes == 0
    # The peak: the pool's output is written while the input and the conv's output are still live.
    assert estimate.activation_bytes == 4 * (3 * 64 + 8 * 64 + 8) and estimate.peak_at == "pool"
    assert estimate_memory(spec, batch=16, dtype_bytes=2).activation_bytes == 16 * 2 * (3 * 64 + 8 * 64 + 8)
    # The same figures as the summary's (which tests/test_summary.py checks against torch's allocations).
    for name in ("resnet50", "efficientnet_b0", "googlenet"):
        full = archspec.summary(ROOT / f"specs/{name}.yaml", depth=0, batch=8, dtype="bf16")
        estimate = estimate_memory(archspec.load(ROOT / f"specs/{name}.yaml"), batch=8, dtype_bytes=2)
        assert (estimate.param_bytes, estimate.buffer_bytes, estimate.activation_bytes, estimate.peak_at) == (
            full.param_bytes, full.buffer_bytes, full.forward_bytes, full.forward_peak_at)


def test_guard_refuses_over_the_limit_with_the_estimate_in_the_message() -> None:
    spec = archspec.load(ROOT / "specs/vgg16.yaml")
    with pytest.raises(SpecError) as info:
        check_memory(spec, limit_bytes=100 * 2 ** 20)
    message = str(info.value)
    assert "138,357,544 parameters x 4 bytes = 527.8 MiB" in message and "limit 100.0 MiB" in message
    assert "--allow-large" in message and "this layer's parameters alone take 392.0 MiB" in message
    # Parameters dominate: located at the layer holding the most (fc6, declared in the family base vgg11.yaml).
    assert message.startswith(f"{ROOT / 'specs/vgg11.yaml'}:") and info.value.path == "fc6"
    estimate = check_memory(spec, limit_bytes=100 * 2 ** 20, allow_large=True)
    assert not estimate.fits and estimate.limit_bytes == 100 * 2 ** 20
    assert check_memory(spec, limit_bytes=10 ** 12).fits


def test_guard_limits_by_device() -> None:
    spec = archspec.loads(TINY)
    big = archspec.load(ROOT / "specs/resnet50.yaml", {"input.size": 100_000})  # 8 TiB of activations
    assert estimate_memory(big).activation_bytes > 2 ** 40
    with pytest.raises(SpecError, match="available RAM"):
        check_memory(big)  # default: half the available RAM
    assert check_memory(big, device="meta").limit_bytes is None  # nothing is allocated on meta
    assert check_memory(big, device="cuda").limit_bytes is None  # no GPU figure given: no limit
    with pytest.raises(SpecError, match="50% of 80.0 GiB cuda memory") as info:
        check_memory(big, device="cuda:0", device_memory=80 * 2 ** 30)
    # Activations dominate: located at the layer where they peak (the first stage, at full resolution).
    assert info.value.path == "layer1" and "the activations peak in this layer" in str(info.value)
    assert check_memory(spec, device="cuda", device_memory=2 ** 30, fraction=0.9).limit_bytes == int(0.9 * 2 ** 30)
    assert check_memory(spec).fits and (available_memory() or 1) > 0


def test_guard_is_pure_python_and_fast() -> None:
    code = """
        import json, sys, time
        sys.path.insert(0, ".")
        import archspec
        from archspec.reports.guard import check_memory
        spec = archspec.load("specs/resnet50.yaml", {"input.size": 1000000})
        start = time.process_time()
        try:
            check_memory(spec)
            message = "fits"
        except archspec.SpecError as exc:
            message = str(exc)
        print(json.dumps({"message": message, "seconds": time.process_time() - start, "torch": "torch" in sys.modules}))
    """
    out, _ = _in_subprocess(code, memory=4 << 30)
    assert not out["torch"] and out["seconds"] < 1
    assert "the network needs about" in out["message"]


def test_human_bytes() -> None:
    assert human_bytes(512) == "512 B"
    assert human_bytes(1536) == "1.5 KiB"
    assert human_bytes(3 * 2 ** 30) == "3.0 GiB"
    assert human_bytes(2 ** 20 - 1) == "1.0 MiB" and human_bytes(int(2.96 * 2 ** 20)) == "3.0 MiB"  # rounded
    assert human_bytes(-1536) == "-1.5 KiB"  # a diff's change
    assert human_bytes(10 ** 40) == "8.882e+24 PiB" and human_bytes(10 ** 400) == "8.882e+384 PiB"
    assert MemoryEstimate(params=1, param_bytes=4, buffer_bytes=0, activation_bytes=4, peak_at="", batch=1, dtype_bytes=4).fits
