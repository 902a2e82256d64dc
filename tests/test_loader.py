"""Loader: positions, extends, dotted overrides (file, API and CLI), shorthand and defaults."""
from __future__ import annotations

from pathlib import Path

import pytest

import archspec
from archspec import SpecError
from archspec.inherit import load_raw
from conftest import ALIASES, SPECS


def write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text)
    return path


BASE = """\
name: base
input: {size: 32}
defaults:
  conv: {kernel: 3, activation: relu}
layers:
  - {name: stem, type: conv, out: 8}
  - {name: body, type: stage, repeat: 2, block: {type: basic, out: 8}}
  - {name: pool, type: global_pool, flatten: true}
  - {name: fc, type: linear, out: 10}
"""


def test_every_node_keeps_its_position(tmp_path: Path) -> None:
    raw = load_raw(write(tmp_path, "base.yaml", BASE))
    assert (raw.loc_of("layers").line, raw.loc_of("layers").col) == (5, 1)
    stage = raw["layers"][1]
    assert (stage.loc.line, stage.loc.col) == (7, 5)
    assert stage["block"].loc_of("out").line == 7


def test_extends_merges_and_overrides_by_name_and_index(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", BASE)
    child = write(tmp_path, "child.yaml", """\
extends: base.yaml
name: child
input: {size: 64}            # merges: channels stay 3
defaults.conv.norm: batch    # dotted path into a mapping
layers.body.repeat: 5        # a list step by name
layers.3.out: 100            # ... or by index
""")
    spec = archspec.load(child)
    assert spec.name == "child"
    assert spec.input.shape == (3, 64, 64)
    assert spec.layers[1].repeat == 5
    assert spec.layers[3].out == 100
    assert spec.layers[0].norm == "batch" and spec.layers[0].activation == "relu"
    assert spec.output_shape == (100,)


def test_api_and_cli_overrides_agree() -> None:
    by_api = archspec.load(SPECS / "resnet50.yaml", overrides={"layers.layer3.repeat": 36, "layers.layer2.repeat": 8})
    by_cli = archspec.load(SPECS / "resnet50.yaml", overrides=["layers.layer3.repeat=36", "layers.layer2.repeat=8"])
    resnet152 = archspec.load(SPECS / "resnet152.yaml")
    assert by_api.params == by_cli.params == resnet152.params == 60_192_808
    assert by_api.macs == resnet152.macs


def test_override_can_replace_a_whole_block() -> None:
    spec = archspec.load(SPECS / "resnet18.yaml", overrides=["layers.fc={type: linear, out: 10}"])
    assert spec.output_shape == (10,)


def test_overrides_are_typed_and_located() -> None:
    with pytest.raises(SpecError) as err:
        archspec.load(SPECS / "resnet50.yaml", overrides=["layers.layer3.repeat=many"])
    assert err.value.path == "layer3" and err.value.block_type == "stage"
    with pytest.raises(SpecError, match="reads PATH=VALUE"):
        archspec.load(SPECS / "resnet50.yaml", overrides=["layers.layer3.repeat"])


def test_deep_extends_chain_and_parent_unchanged() -> None:
    # resnext101_32x8d extends resnet101 extends resnet50; resnet50 itself stays as it is.
    assert archspec.load(SPECS / "resnext101_32x8d.yaml").params == 88_791_336
    assert archspec.load(SPECS / "resnet50.yaml").params == 25_557_032


def test_bare_string_is_shorthand_for_a_type(tmp_path: Path) -> None:
    spec = archspec.load(write(tmp_path, "s.yaml", "name: s\ninput: {size: 4}\nlayers: [flatten, relu, {type: linear, out: 3}]\n"))
    assert [b.type for b in spec.layers] == ["flatten", "relu", "linear"]
    assert spec.params == 48 * 3 + 3


def test_block_fields_win_over_defaults(tmp_path: Path) -> None:
    spec = archspec.load(write(tmp_path, "d.yaml", """\
name: d
input: {size: 8}
defaults:
  conv: {kernel: 3, bias: false}
layers:
  - {type: conv, out: 4}
  - {type: conv, out: 4, kernel: 1, bias: true}
"""))
    assert spec.layers[0].kernel == 3 and spec.layers[0].bias is False
    assert spec.layers[1].kernel == 1 and spec.layers[1].bias is True


def test_loads_from_text() -> None:
    spec = archspec.loads("name: t\ninput: {channels: 1, size: [8, 6]}\nlayers: [{type: conv, out: 2, kernel: 3, padding: 0}]\n")
    assert spec.output_shape == (2, 6, 4)


def test_errors_from_a_parent_point_into_the_parent(tmp_path: Path) -> None:
    write(tmp_path, "parent.yaml", BASE.replace("out: 10", "out: 0"))
    child = write(tmp_path, "child.yaml", "extends: parent.yaml\nname: child\n")
    with pytest.raises(SpecError) as err:
        archspec.load(child)
    assert err.value.loc.file.endswith("parent.yaml") and err.value.loc.line == 9


def test_aliases_become_independent_copies(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", """\
name: a
input: {size: 8}
layers:
  - {name: c1, type: conv, out: 4, kernel: 3, bias: &b false}
  - &block {name: c2, type: conv, out: 4, kernel: 3}
  - {<<: *block, name: c3, out: 6}     # a merge key; the mapping's own keys win
""")
    spec = archspec.load(path, overrides={"layers.c2.out": 5})
    assert [b.out for b in spec.layers] == [4, 5, 6]  # overriding c2 leaves its copy in c3 alone


def test_merge_keys_follow_the_yaml_merge_spec(tmp_path: Path) -> None:
    path = write(tmp_path, "m.yaml", """\
name: m
input: {size: 8}
layers:
  - &a {name: c0, type: conv, out: 4, kernel: 3}
  - &b {<<: *a, name: c1, kernel: 1}          # own keys win over merged ones
  - {<<: *b, name: c2}                          # merging a mapping that merged: its own keys still win
  - {<<: [*a, *b], name: c3}                    # a list of merges: the earlier mapping wins a shared key
  - {<<: [*b, *a], name: c4}
""")
    assert [b.kernel for b in archspec.load(path).layers] == [3, 1, 1, 3, 1]


def test_a_merge_of_a_scalar_is_located(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="'<<' merges a mapping or a list of mappings, not scalar") as err:
        archspec.load(write(tmp_path, "s.yaml", "name: s\ninput: {size: 8}\nlayers:\n  - {<<: [{type: relu}, 3]}\n"))
    assert (err.value.loc.line, err.value.loc.col) == (4, 25)


def test_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    lines = ["name: bomb", "input: {size: 8}", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, "
              f"*a{i - 1}, *a{i - 1}]" for i in range(1, 9)]
    with pytest.raises(SpecError, match="expands to more than 1,000,000 YAML nodes"):
        archspec.load(write(tmp_path, "bomb.yaml", "\n".join(lines) + "\nlayers: [flatten]\n"))


def test_yaml12_floats(tmp_path: Path) -> None:
    spec = archspec.load(write(tmp_path, "f.yaml", "name: f\ninput: {size: 8}\nlayers: [{type: batchnorm, eps: 1e-3}]\n"))
    assert spec.source["layers"][0]["eps"] == 0.001


def test_dict_overrides_get_defaults_and_checks() -> None:
    by_dict = archspec.load(SPECS / "resnet50.yaml", overrides={"layers.conv1": {"type": "conv", "out": 64, "kernel": 7, "stride": 2}})
    assert by_dict.params == 25_557_032  # the spec's conv defaults (BN, ReLU, no bias) still apply
    assert by_dict.layers[0].name == "conv1"  # a replaced named item keeps its name
    with pytest.raises(SpecError, match="missing required field 'kernel'") as err:  # located at the override
        archspec.load(SPECS / "resnet50.yaml", overrides=["layers.conv1={type: conv, out: 64}"])
    assert err.value.loc.file.startswith("--set layers.conv1=") and err.value.path == "conv1"
    with pytest.raises(SpecError, match="'kernal' is not a field of conv"):
        archspec.load(SPECS / "resnet50.yaml", overrides={"defaults": {"conv": {"kernal": 3}}})


def test_dotted_keys_without_extends(tmp_path: Path) -> None:
    spec = archspec.load(write(tmp_path, "d.yaml", BASE + "layers.body.repeat: 3\n"))
    assert spec.layers[1].repeat == 3


def test_reference_is_not_inherited(tmp_path: Path) -> None:
    child = write(tmp_path, "deeper.yaml", f"extends: {SPECS / 'resnet50.yaml'}\nname: deeper\nlayers.layer3.repeat: 9\n")
    assert archspec.load(child).reference is None
    assert archspec.load(SPECS / "resnet101.yaml").reference == "torchvision:resnet101"


@pytest.mark.parametrize("text,message", [
    ("layers: [{name: forward, type: relu}]", "'forward' is reserved"),
    ("layers: [{type: residual, body: [{name: act, type: relu}]}]", "'act' is reserved"),
    ("layers: [{type: residual, body: [relu], shortcut: [{name: a, type: relu}, {name: a, type: relu}]}]",
     "the name 'a' is used twice"),
    ("layers: [{type: inception, branches: {a: [{name: x, type: relu}, {name: x, type: relu}]}}]", "'x' is used twice"),
    ("layers: [{type: inception, branches: {train: [relu]}}]", "'train' is reserved"),
])
def test_module_names_are_checked(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        archspec.loads("name: n\ninput: {size: 8}\n" + text)


def test_a_layer_that_is_not_a_block_is_named_by_its_index() -> None:
    with pytest.raises(SpecError) as err:
        archspec.loads("name: n\ninput: {size: 8}\nlayers:\n  - relu\n  - {type: residual, body: [relu, 7]}\n")
    assert str(err.value) == "<string>:5:35: 1.1: expected a mapping here, got 7"


def test_family_entry_points_resolve_to_a_member() -> None:
    """efficientnet.yaml is B0 and inception.yaml is GoogLeNet: the per-spec checks that take seconds
    (export, dynamo, references) run once for each such pair (conftest.ALIASES)."""
    assert ALIASES == {"efficientnet_b0": "efficientnet", "inception": "googlenet"}
    for alias, name in ALIASES.items():
        a, b = archspec.load(SPECS / f"{alias}.yaml"), archspec.load(SPECS / f"{name}.yaml")
        assert a.name != b.name and (a.params, a.macs, a.output_shape) == (b.params, b.macs, b.output_shape)
