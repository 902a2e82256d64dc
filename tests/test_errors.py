"""Broken specs: each gives one located line `FILE:LINE:COL: block (type): message` and exit code 2."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import archspec
from archspec.cli import main
from conftest import ROOT

BROKEN = Path(__file__).parent / "broken"

# file: (line, col, what the message must say)
EXPECTED = {
    "misspelled_field": (10, 43, "layer1.block (bottleneck): 'strid' is not a field of bottleneck; did you mean 'stride'?"),
    "unknown_block_type": (5, 52, "layer1.block: unknown block type 'bottlenek'; did you mean 'bottleneck'?"),
    "zero_kernel": (7, 5, "stem (conv): 'kernel': Input should be greater than or equal to 1 (got 0)"),
    "negative_kernel": (4, 51, "stem (conv): 'kernel': Input should be greater than or equal to 1 (got -3)"),
    "wrong_type": (4, 30, "stem (conv): 'out': Input should be a valid integer"),
    "residual_channel_mismatch": (5, 5, "block1 (residual): cannot add the body's output 64x32x32 to the shortcut's 32x32x32"),
    "stride_too_far": (8, 49, "deep.1 (conv): a 3x3 kernel (stride 1x1, padding 0x0, dilation 1x1) does not fit the 2x2 input"),
    "extends_cycle": (2, 1, "'extends' makes a cycle: extends_cycle.yaml -> extends_cycle_partner.yaml -> extends_cycle.yaml"),
    "extends_cycle_partner": (1, 1, "'extends' makes a cycle"),
    "missing_parent": (2, 1, "parent spec 'resnet_does_not_exist.yaml' not found"),
    "malformed": (3, 7, "not valid YAML: expected ',' or '}'"),
    "tabs": (4, 1, "tab character in indentation"),
    "python_tag": (4, 5, "the YAML tag !!python/object/apply:os.system is not allowed"),
    "missing_field": (4, 5, "stem (conv): missing required field 'out'"),
    "linear_without_flatten": (5, 5, "fc (linear): expects a flat (features,) input but gets 8x8x8; add a flatten"),
    "duplicate_name": (5, 5, "conv1 (conv): the name 'conv1' is used twice"),
    "bad_override_path": (3, 1, "override 'layers.layer9.repeat': no item 'layer9' in layers"),
    "groups_mismatch": (5, 5, "conv2 (conv): groups=3 must divide both the input channels (64) and 'out' (64)"),
    "duplicate_key": (8, 5, "duplicate key 'out' (first at line 6)"),
    "unknown_default_field": (4, 10, "defaults.conv (conv): 'kernal' is not a field of conv; did you mean 'kernel'?"),
    "missing_type": (4, 5, "conv1: a block needs a 'type'"),
    "repeat_zero": (4, 33, "stage1 (stage): 'repeat': Input should be greater than or equal to 1 (got 0)"),
    "not_a_mapping": (1, 1, "a spec must be a YAML mapping"),
    "pool_too_big": (4, 5, "pool (pool): a 5x5 max pool (stride 5x5) does not fit the 4x4 input"),
    "same_padding_stride": (4, 5, "conv1 (conv): padding 'same' needs stride 1"),
    "inception_branch_stride": (5, 5, "mixed (inception): branch 'b3x3' gives 24x14x14 but branch 'b1x1' gives 16x28x28"),
    "wrong_case_value": (4, 50, "conv1 (conv): 'activation': Input should be 'none', 'relu',"),
    "bad_default_in_child": (4, 19, "conv1 (conv): 'activation': Input should be"),
    "merge_itself": (3, 7, "spec: '<<' merges a mapping into itself"),
    "unquoted_colon": (2, 20, "not valid YAML: mapping values are not allowed here (usually a value that contains ': '"),
    "bool_as_size": (2, 9, "input.size: 'size': Input should be a number, not true or false (got True)"),
}
# The cycle is reported where the `extends` that closes it stands.
REPORTED_IN = {"extends_cycle": "extends_cycle_partner", "extends_cycle_partner": "extends_cycle"}


def test_every_broken_spec_has_an_expectation() -> None:
    assert sorted(p.stem for p in BROKEN.glob("*.yaml")) == sorted(EXPECTED)
    assert len(EXPECTED) >= 15


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_broken_spec_gives_located_error(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    line, col, message = EXPECTED[name]
    path = f"tests/broken/{name}.yaml"
    assert main(["validate", str(ROOT / path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    where = ROOT / "tests" / "broken" / f"{REPORTED_IN.get(name, name)}.yaml"
    assert lines[0].startswith(f"{where}:{line}:{col}: "), lines[0]
    assert message in lines[0]


@pytest.mark.parametrize("name", ["misspelled_field", "python_tag", "residual_channel_mismatch"])
def test_cli_process_exit_code_and_no_traceback(name: str) -> None:
    result = subprocess.run([sys.executable, "cli.py", "validate", f"tests/broken/{name}.yaml"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"tests/broken/{name}.yaml:")


def test_validate_keeps_going_and_fails_if_any_fails(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["validate", str(ROOT / "specs/resnet18.yaml"), str(BROKEN / "zero_kernel.yaml")])
    captured = capsys.readouterr()
    assert code == 2
    assert "ok  " in captured.out and "resnet18" in captured.out
    assert "zero_kernel.yaml:7:5" in captured.err


def test_bad_cli_override_is_located(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(ROOT / "specs/resnet50.yaml"), "--set", "layers.layer3.repeat=zero"]) == 2
    err = capsys.readouterr().err
    assert "layer3 (stage): 'repeat'" in err
    assert main(["validate", str(ROOT / "specs/resnet50.yaml"), "--set", "layers.nope.repeat=3"]) == 2
    assert "--set layers.nope.repeat=3:1:1: spec: override 'layers.nope.repeat': no item 'nope'" in capsys.readouterr().err


def test_an_error_in_a_shorthand_stage_block_is_located() -> None:
    """`block: conv` (a bare type name) is located at its key, so an error found in analysis points there."""
    text = ("name: t\ninput: {channels: 3, size: 8}\ndefaults: {conv: {kernel: 3}}\nlayers:\n  - name: s\n"
            "    type: stage\n    repeat: 2\n    block: conv\n")
    with pytest.raises(archspec.SpecError) as info:
        archspec.loads(text, "t.yaml")
    assert str(info.value).startswith("t.yaml:8:5: s.0 (conv): missing required field 'out'"), str(info.value)


# -- values are located where they were written ------------------------------------------------

@pytest.mark.parametrize("defaults,message", [
    ("{conv: {activation: relu7}}", "conv1 (conv): 'activation': Input should be 'none', 'relu'"),
    ("{bottleneck: {se: true}}", "layer1.block (bottleneck): 'se': Input should be a valid dictionary"),
])
def test_a_bad_default_is_located_in_the_child_that_wrote_it(defaults: str, message: str, tmp_path: Path) -> None:
    child = tmp_path / "child.yaml"
    child.write_text(f"extends: {ROOT / 'specs/resnet50.yaml'}\nname: child\ndefaults: {defaults}\n")
    with pytest.raises(archspec.SpecError) as err:
        archspec.load(child)
    assert str(err.value).startswith(f"{child}:3:"), str(err.value)  # not resnet50.yaml, which the user did not edit
    assert message in str(err.value) and "(from defaults." in str(err.value)


# -- messages --------------------------------------------------------------------------------

@pytest.mark.parametrize("layer,hint", [
    ("{type: conv, out: 2, kernel: 1, activation: ReLU}", "(got 'ReLU'); did you mean 'relu'?"),
    ("{type: pool, op: Max, kernel: 1}", "did you mean 'max'?"),
    ("{type: Conv, out: 2, kernel: 1}", "unknown block type 'Conv'; did you mean 'conv'?"),
])
def test_a_wrong_case_value_gets_a_did_you_mean(layer: str, hint: str) -> None:
    with pytest.raises(archspec.SpecError, match=re.escape(hint)):
        archspec.loads(f"name: t\ninput: {{size: 8}}\nlayers: [{layer}]\n")


@pytest.mark.parametrize("text,where,hint", [
    ("description: a: b\n", "2:15", "mapping values are not allowed here (usually a value that contains ': '"),
    ("description: 'open\n", "3:1", "a quote opened at line 2 that is not closed"),
    ("layers: [relu, flatten\n", "3:1", "a '[' that is not closed or a missing comma"),
    ("layers:\n  - relu\n flatten: 1\n", "4:2", "indentation"),
    ("layers: *a\n", "2:9", "an alias (*name) needs an anchor (&name)"),
    ("layers: [relu]\n---\nname: u\n", "3:1", "expected a single document in the stream, but found another document"),
])
def test_yaml_syntax_errors_keep_their_place_and_get_a_hint(text: str, where: str, hint: str) -> None:
    with pytest.raises(archspec.SpecError) as err:
        archspec.loads("name: t\n" + text, "t.yaml")
    assert str(err.value).startswith(f"t.yaml:{where}: spec: not valid YAML: "), str(err.value)
    assert hint in str(err.value)


@pytest.mark.parametrize("text,message", [
    ("name: t\ninput: {size: true}\nlayers: [flatten]\n", "t.yaml:2:9: input.size: 'size': Input should be a number, not true or false"),
    ("name: t\ninput: {size: [8, false]}\nlayers: [flatten]\n", "'size': Input should be a number, not true or false"),
    ("name: t\ninput: {size: 8}\nlayers: [{type: conv, out: true, kernel: 1}]\n", "0 (conv): 'out': Input should be a number, not true"),
    ("name: t\ninput: {size: 8}\nscaling: {width: true}\nlayers: [flatten]\n", "'width': Input should be a number, not true"),
    ("name: !!binary YWJj\ninput: {size: 8}\nlayers: [flatten]\n", "t.yaml:1:7: spec: the YAML tag !!binary is not allowed"),
    ("name: t\ninput: {size: 8, channels: !!binary YWJj}\nlayers: [flatten]\n", "t.yaml:2:28: spec: the YAML tag !!binary"),
    ("name: t\ninput: {size: 8}\nlayers: !!set {relu: null}\n", "the YAML tag !!set is not allowed"),
])
def test_no_true_as_a_number_and_no_bytes(text: str, message: str) -> None:
    with pytest.raises(archspec.SpecError) as err:
        archspec.loads(text, "t.yaml")
    assert message in str(err.value), str(err.value)


def test_coercions_that_stay_and_bytes_from_python() -> None:
    spec = archspec.loads("name: t\ninput: {size: 8.0}\nlayers: [{type: conv, out: 2, kernel: 1, bias: true}]\n")
    assert spec.input.size == 8 and spec.layers[0].bias is True  # an integral float; a real boolean field
    with pytest.raises(archspec.SpecError, match="'name': Input should be text or a number, not bytes"):
        archspec.loads("name: t\ninput: {size: 8}\nlayers: [flatten]\n", overrides={"name": b"abc"})


# -- paths that are not spec files --------------------------------------------------------------

def hostile_paths(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Specs whose file (or parent) cannot be read as a spec: {name: (spec, what the message says)}."""
    (tmp_path / "folder").mkdir()
    os.symlink("loop_b.yaml", tmp_path / "loop_a.yaml")
    os.symlink("loop_a.yaml", tmp_path / "loop_b.yaml")
    os.mkfifo(tmp_path / "fifo.yaml")
    (tmp_path / "latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    cases = {"loop": ("loop_a.yaml", "Symlink loop"), "folder": ("folder", "is a directory"),
             "fifo": ("fifo.yaml", "is not a regular file"), "device": ("/dev/zero", "is not a regular file"),
             "latin1": ("latin1.yaml", "not UTF-8 text: byte 0xe9")}
    specs = {}
    for name, (parent, message) in cases.items():
        spec = tmp_path / f"extends_{name}.yaml"
        spec.write_text(f"extends: {parent}\nname: x\n")
        specs[name] = spec, message
    specs["top_loop"] = tmp_path / "loop_a.yaml", "Too many levels of symbolic links"
    specs["top_fifo"] = tmp_path / "fifo.yaml", "it is not a regular file"
    specs["top_folder"] = tmp_path / "folder", "cannot read the spec file: it is a directory"
    return specs


def test_paths_that_are_not_spec_files_are_located_errors(tmp_path: Path) -> None:
    for name, (spec, message) in hostile_paths(tmp_path).items():
        with pytest.raises(archspec.SpecError) as err:
            archspec.load(spec)
        assert message in str(err.value) and err.value.loc is not None, (name, str(err.value))
        assert err.value.loc.file.startswith(str(tmp_path)), (name, str(err.value))


def test_an_unreadable_file_is_a_located_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "secret.yaml"
    path.write_text("name: s\n")

    def refuse(*args: Any, **kwargs: Any) -> int:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("archspec.language.source.os.open", refuse)  # root reads any file; this test may run as root
    with pytest.raises(archspec.SpecError, match="cannot read the spec file: Permission denied") as err:
        archspec.load(path)
    assert err.value.loc.file == str(path)


def test_validate_reports_every_hostile_path_and_goes_on(tmp_path: Path) -> None:
    """One located line per spec, the good spec still validated, exit 2, and no hang on the FIFO."""
    specs = hostile_paths(tmp_path)
    good = ROOT / "specs/resnet18.yaml"
    args = [str(spec) for spec, _ in specs.values()]
    result = subprocess.run([sys.executable, "cli.py", "validate", args[0], str(good), *args[1:]],
                            cwd=ROOT, capture_output=True, text=True, timeout=20)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stdout.startswith(f"ok  {good}  resnet18: 11,689,512 params")
    lines = result.stderr.splitlines()
    assert len(lines) == len(specs)
    for line, (spec, message) in zip(lines, specs.values()):
        assert re.match(rf"{re.escape(str(tmp_path))}/[\w.]+:\d+:\d+: ", line) and message in line, line
