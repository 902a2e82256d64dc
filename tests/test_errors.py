"""Broken specs: each gives one located line `FILE:LINE:COL: block (type): message` and exit code 2."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
