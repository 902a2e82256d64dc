"""Loader: positions, extends, dotted overrides (file, API and CLI), shorthand and defaults."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

import archspec
from archspec import SpecError
from archspec.cli import main
from archspec.language.inherit import load_raw
from archspec.language.source import MAX_EXTENDS_DEPTH, MAX_MERGED_PAIRS, MAX_SOURCE_BYTES
from conftest import ALIASES, ROOT, SPECS


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
    with pytest.raises(SpecError, match="expands to more than 250,000 YAML nodes"):
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


def test_null_removes_a_list_item(tmp_path: Path) -> None:
    spec = archspec.load(write(tmp_path, "d.yaml", BASE + "layers.body: null\n"), overrides=["layers.-1=null"])
    assert [b.name for b in spec.layers] == ["stem", "pool"] and spec.output_shape == (8,)
    with pytest.raises(SpecError, match="no item 'body' in layers"):  # gone: a second removal has nothing to remove
        archspec.load(write(tmp_path, "d.yaml", BASE + "layers.body: null\n"), overrides=["layers.body=null"])
    # EfficientNetV2-S is the family base (M) without its seventh stage
    assert [b.name for b in archspec.load(SPECS / "efficientnet_v2_s.yaml").layers][6:8] == ["stage6", "head"]


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
    """A family base is its default member (efficientnet.yaml is B0, convnext.yaml ConvNeXt-T, ...) and
    inception.yaml is GoogLeNet: the per-spec checks that take seconds (export, dynamo, references) run once
    for each such pair (conftest.ALIASES)."""
    assert ALIASES == {"efficientnet_b0": "efficientnet", "inception": "googlenet", "convnext_tiny": "convnext",
                       "mnasnet1_0": "mnasnet", "shufflenet_v2_x1_0": "shufflenet_v2", "regnet_x_400mf": "regnet",
                       "densenet121": "densenet", "efficientnet_v2_m": "efficientnet_v2"}
    for alias, name in ALIASES.items():
        a, b = archspec.load(SPECS / f"{alias}.yaml"), archspec.load(SPECS / f"{name}.yaml")
        assert a.name != b.name and (a.params, a.macs, a.output_shape) == (b.params, b.macs, b.output_shape)


# -- extends and variants: what a file writes wins over what it inherits ------------------------

def efficientnet_child(tmp_path: Path, parent: str, body: str) -> Path:
    return write(tmp_path, "child.yaml", f"extends: {SPECS / parent}\nname: child\n{body}")


def test_a_childs_keys_win_over_the_variant_it_inherits(tmp_path: Path) -> None:
    child = archspec.load(efficientnet_child(tmp_path, "efficientnet_b0.yaml", "scaling: {width: 1.5}\ninput: {size: 260}\n"))
    same = archspec.load(SPECS / "efficientnet.yaml", overrides={"scaling.width": 1.5, "input.size": 260})
    assert (child.scaling.width, child.input.size) == (1.5, 260)
    assert child.params == same.params == 10_789_510 and child.macs == same.macs  # B0 itself: 5,288,548
    assert child.reference is None  # no longer torchvision's B0
    assert archspec.load(SPECS / "efficientnet_b0.yaml").reference == "torchvision:efficientnet_b0"


def test_a_variant_named_lower_in_the_chain_supersedes_the_inherited_one(tmp_path: Path) -> None:
    # B5 sets batch-norm eps 1e-3 through its row; a child that picks b0 gets B0, not B0 with B5's eps.
    spec = archspec.load(efficientnet_child(tmp_path, "efficientnet_b5.yaml", "variant: b0\n"))
    b0 = archspec.load(SPECS / "efficientnet_b0.yaml")
    assert spec.params == b0.params == 5_288_548 and spec.input.size == 224
    assert spec.source["defaults"] == b0.source["defaults"]


def test_a_files_keys_win_over_the_variant_it_names(tmp_path: Path) -> None:
    spec = archspec.load(efficientnet_child(tmp_path, "efficientnet.yaml", "variant: b3\nscaling: {width: 1.5}\n"))
    assert (spec.scaling.width, spec.scaling.depth, spec.input.size) == (1.5, 1.4, 300)  # b3, but this width
    assert spec.layers[-2].p == 0.3 and spec.variant == "b3"


@pytest.mark.parametrize("name", ["efficientnet_b3.yaml", "efficientnet_b5.yaml", "mobilenet_v1.yaml", "resnet152.yaml"])
def test_a_resolved_tree_loads_as_the_same_spec(name: str, tmp_path: Path) -> None:
    """`Spec.source` (the tree a checkpoint stores) written out as a file is the same spec: its `variant`
    names the row already applied, and its own keys win over that row."""
    child = efficientnet_child(tmp_path, name, "layers.dropout.p: 0.1\n") if "efficientnet" in name else SPECS / name
    spec = archspec.load(child)
    again = archspec.load(write(tmp_path, "resolved.yaml", yaml.safe_dump(spec.source, sort_keys=False)))
    assert again.source == spec.source and (again.params, again.macs) == (spec.params, spec.macs)


def test_a_variant_chosen_from_outside_applies_after_every_file(tmp_path: Path) -> None:
    child = efficientnet_child(tmp_path, "efficientnet_b0.yaml", "scaling: {width: 1.5}\n")
    spec = archspec.load(child, variant="b3")
    assert spec.params == archspec.load(SPECS / "efficientnet_b3.yaml").params and spec.scaling.width == 1.2


def test_scale_lists_a_child_that_changes_its_variant(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    child = efficientnet_child(tmp_path, "efficientnet_b0.yaml", "scaling: {width: 1.5}\ninput: {size: 260}\n")
    assert main(["scale", str(child)]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[1].split() == ["child", "1.5", "1", "260x260", "10,789,510", "1,288,696,560"]
    assert [row.split()[0] for row in rows[2:]] == [f"b{i}" for i in range(8)]
    assert main(["scale", str(SPECS / "efficientnet_b3.yaml")]) == 0  # a spec that is one of its rows: rows only
    assert [row.split()[0] for row in capsys.readouterr().out.splitlines()[1:]] == [f"b{i}" for i in range(8)]


# -- limits hold for the whole spec, across extends, variants and overrides ----------------------

def test_limits_hold_across_an_extends_chain(tmp_path: Path) -> None:
    """32 small files, each well under the node limit, are refused together, quickly (they reached 21.5
    million nodes and took a minute when each file had its own limit)."""
    tree = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 4))  # 11,111 nodes per file
    for i in range(MAX_EXTENDS_DEPTH):
        head = f"extends: c{i - 1}.yaml\n" if i else "name: c\ninput: {size: 8}\nlayers: [flatten]\n"
        write(tmp_path, f"c{i}.yaml", head + f"variants:\n  v{i}:\n" + "".join(f"    {line}\n" for line in tree.splitlines()))
    assert archspec.load(tmp_path / "c1.yaml").name == "c"  # two files: 22,222 nodes
    start = time.process_time()
    with pytest.raises(SpecError, match=r"more than 250,000 YAML nodes \(all the spec's files together\)") as err:
        archspec.load(tmp_path / f"c{MAX_EXTENDS_DEPTH - 1}.yaml")
    assert time.process_time() - start < 2 and err.value.loc.file.endswith(".yaml")
    # Bytes: three files of 30,000 bytes each fit alone, not together.
    pad = "# padding\n" * 3000
    write(tmp_path, "p0.yaml", "name: p\ninput: {size: 8}\nlayers: [flatten]\n" + pad)
    write(tmp_path, "p1.yaml", "extends: p0.yaml\n" + pad)
    write(tmp_path, "p2.yaml", "extends: p1.yaml\n" + pad)
    assert archspec.load(tmp_path / "p1.yaml").name == "p"
    with pytest.raises(SpecError, match=f"larger than {MAX_SOURCE_BYTES:,} bytes") as err:
        archspec.load(tmp_path / "p2.yaml")
    assert err.value.loc.file.endswith("p0.yaml")  # the file that crosses the limit (read last)


def test_a_parent_parsed_before_still_spends_the_budget(tmp_path: Path) -> None:
    """A file is parsed once per process (a family's base, extended by each member), but every spec that reads
    it spends its share of the limits again: here the merged pairs (YAML `<<`) of a parent read before."""
    keys = "{" + ", ".join(f"k{i}: {i}" for i in range(100)) + "}"
    merges = "".join(f"  m{i}: {{<<: *keys}}\n" for i in range(MAX_MERGED_PAIRS // 100 * 6 // 10))  # 60% of the limit
    write(tmp_path, "base.yaml", f"name: b\ninput: {{size: 8}}\nlayers: [flatten]\nvariants:\n  keys: &keys {keys}\n{merges}")
    write(tmp_path, "child.yaml", f"extends: base.yaml\nvariants:\n  keys: &keys {keys}\n{merges}")
    for _ in range(2):  # the second time, base.yaml comes from the cache
        assert archspec.load(tmp_path / "base.yaml").name == "b"
        with pytest.raises(SpecError, match=f"merge keys copy more than {MAX_MERGED_PAIRS:,}"):
            archspec.load(tmp_path / "child.yaml")


def test_overrides_share_the_spec_budget(tmp_path: Path) -> None:
    base = write(tmp_path, "b.yaml", "name: b\ninput: {size: 8}\nlayers: [flatten]\n" + "# padding\n" * 6000)
    with pytest.raises(SpecError, match="larger than"):
        archspec.load(base, overrides=[f"description='{'x' * 6000}'"])
    with pytest.raises(SpecError, match="would nest the spec deeper than 64 levels"):
        archspec.load(base, overrides={".".join(["a"] * 70): 1})


@pytest.mark.parametrize("text,message,line", [
    ("a: &a {x: 1, <<: *a}\n", "'<<' merges a mapping into itself", 4),
    ("a: &a {k0: 0, k1: 1, k2: 2, k3: 3, k4: 4, k5: 5, k6: 6, k7: 7, k8: 8, k9: 9}\n"
     + "".join(f"b{i}: {{<<: [{', '.join(['*a'] * 50)}]}}\n" for i in range(60)),
     "the '<<' merge keys copy more than 20,000 key-value pairs", 45),
])
def test_merge_key_bombs_are_refused_quickly(text: str, message: str, line: int) -> None:
    start = time.process_time()
    with pytest.raises(SpecError, match=message) as err:
        archspec.loads("name: m\ninput: {size: 8}\nlayers: [flatten]\n" + text, "m.yaml")
    assert time.process_time() - start < 0.5
    assert (err.value.loc.file, err.value.loc.line) == ("m.yaml", line)


def test_libyaml_and_pyyaml_read_every_spec_alike() -> None:
    """source.py parses printable ASCII with libyaml first (8x faster) and the rest with PyYAML; on every bundled,
    broken and documented spec both give the same tree and positions, or libyaml hands the text to PyYAML."""
    from archspec.errors import SpecError
    from archspec.language import source

    def tree(x: Any) -> Any:
        if isinstance(x, source.LocDict):
            return x.loc, {k: (x.key_locs.get(k), tree(v)) for k, v in x.items()}
        if isinstance(x, source.LocList):
            return x.loc, x.item_locs, [tree(v) for v in x]
        return repr(x)

    fast_paths = 0
    for path in sorted([*SPECS.glob("*.yaml"), *(ROOT / "tests" / "broken").glob("*.yaml")]):
        text = path.read_text(encoding="utf-8", errors="replace")
        fast = source._parse_fast(text, str(path), source.Budget())
        try:
            slow = tree(source._parse_python(text, str(path), source.Budget()))
        except SpecError:
            assert fast is source._REFUSED, path  # what PyYAML refuses, libyaml never accepts
            continue
        if fast is not source._REFUSED:
            fast_paths += 1
            assert tree(fast) == slow, path
    assert fast_paths > 40
    for text in ("a: {b: !!map, c: 1}\n", "a: {b: c?d}\n", "a:\n\tb: 1\n", "a: caf\u00e9\n"):  # where they differ
        assert source._parse_fast(text, "x", source.Budget()) is source._REFUSED
