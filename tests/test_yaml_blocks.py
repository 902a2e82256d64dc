"""Blocks defined in YAML (`blocks:`): definitions, arithmetic, scaling, errors, sharing, and every consumer."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import archspec
from archspec.errors import SpecError
from archspec.language.expr import ExprError, evaluate
from archspec.language.schema import editor_schema
from archspec.reports.diagram import COLOURS, diagram
from archspec.reports.guard import check_memory
from archspec.reports.summary import summary
from conftest import ROOT, SPECS

PAIR = """\
name: t
input: {channels: 3, size: 32}
blocks:
  pair:
    params:
      out: {type: channels}
      k: {type: int, default: 3}
      ratio: {type: float, default: 0.5}
      act: {type: activation, default: relu}
      stride: {type: int, default: 1}
    body:
      - {name: a, type: conv, out: = out, kernel: = k, stride: = stride, activation: = act}
      - {name: b, type: conv, out: "= make_divisible(out * ratio + in_channels, 8)", kernel: 1}
layers:
  - {name: p1, type: pair, out: 16}
  - {name: s, type: stage, repeat: 3, block: {type: pair, out: 24, k: 5, stride: 2}}
  - {type: global_pool, op: avg, flatten: true}
"""


def _convs(spec: archspec.Spec, path: str) -> list[tuple[str, int, int]]:
    """(name, out, kernel) of the conv nodes under `path`."""
    node = next(n for n in spec.analyse().walk() if n.path == path)
    return [(n.name, n.out_shape[0], n.block.kernel) for n in node.walk() if n.type == "conv"]


def test_defaults_arithmetic_and_in_channels() -> None:
    spec = archspec.loads(PAIR)
    # p1: a = 16 (k 3), b = make_divisible(16 * 0.5 + 3, 8) = 16; s.0: a = 24 (k 5), b = make_divisible(12 + 16) = 32
    assert _convs(spec, "p1") == [("a", 16, 3), ("b", 16, 1)]
    assert _convs(spec, "s.0") == [("a", 24, 5), ("b", 32, 1)]
    assert _convs(spec, "s.1") == [("a", 24, 5), ("b", 48, 1)]  # in_channels 32: 12 + 32 = 44 -> 48
    p1 = spec.analyse().children[0]
    assert p1.type == "pair" and p1.block.args.act == "relu" and p1.block.args.ratio == 0.5
    # A stage's later repetitions take a 'stride' parameter as 1, as built-in blocks' stride fields.
    strides = [n.block.stride for n in spec.analyse().walk() if n.name == "a" and n.path.startswith("s.")]
    assert strides == [2, 1, 1]
    assert spec.output_shape == (64,)  # s.2: make_divisible(12 + 48) = 64


def test_first_and_each_set_a_defined_blocks_parameters() -> None:
    text = PAIR.replace("k: 5, stride: 2}}", "k: 5, stride: 2}, first: {ratio: 1.0}, each: {out: [24, 32, 40]}}")
    spec = archspec.loads(text)
    # s.0: out 24, ratio 1 (first): b = make_divisible(24 + 16, 8) = 40; s.1: out 32, b = make_divisible(16 + 40) = 56
    assert _convs(spec, "s.0") == [("a", 24, 5), ("b", 40, 1)] and _convs(spec, "s.1") == [("a", 32, 5), ("b", 56, 1)]
    assert [n.block.stride for n in spec.analyse().walk() if n.name == "a" and n.path.startswith("s.")] == [2, 1, 1]
    strided = archspec.loads(text.replace("each: {out: [24, 32, 40]}", "each: {stride: [2, 2, 1]}"))
    assert [n.block.stride for n in strided.analyse().walk() if n.name == "a" and n.path.startswith("s.")] == [2, 2, 1]
    assert _error(text.replace("each: {out:", "each: {outt:")) == \
        "x.yaml:16:114: s (stage): 'each.outt' is not a field of pair; did you mean 'out'?"
    assert _error(text.replace("[24, 32, 40]", "[24, x, 40]")).startswith(
        "x.yaml:16:114: s (stage): repetition 1: its pair's 'out' would be 'x': Input should be a valid integer")


def test_spec_defaults_apply_to_uses_and_bodies() -> None:
    text = PAIR.replace("layers:\n", "defaults:\n  pair: {k: 1}\n  conv: {norm: batch}\nlayers:\n")
    spec = archspec.loads(text)
    assert _convs(spec, "p1") == [("a", 16, 1), ("b", 16, 1)]
    assert all(n.block.norm == "batch" for n in spec.analyse().walk() if n.type == "conv")


def test_channels_parameters_scale_with_width_and_others_do_not() -> None:
    spec = archspec.loads(PAIR, overrides={"scaling.width": 0.5})
    p1 = spec.analyse().children[0]
    assert p1.block.args.out == 8 and p1.block.args.k == 3  # channels 16 -> 8; the int kernel stays
    assert _convs(spec, "p1")[0] == ("a", 8, 3)
    assert any(f.path == "p1.args" and f.field == "out" and f.scaled == 8 for f in spec.scaled_fields)


def _error(text: str, overrides: dict | None = None) -> str:
    with pytest.raises(SpecError) as info:
        archspec.loads(text, "x.yaml", overrides=overrides)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_argument_errors_are_located_at_the_use() -> None:
    assert _error(PAIR.replace("out: 16}", "out: sixteen}")).startswith(
        "x.yaml:15:28: p1 (pair): 'out': Input should be a valid integer")
    assert _error(PAIR.replace("out: 16}", "outt: 16}")) == \
        "x.yaml:15:28: p1 (pair): 'outt' is not a field of pair; did you mean 'out'? (+1 more problems)"
    assert "missing required field 'out'" in _error(PAIR.replace("out: 16}", "k: 1}"))
    assert _error(PAIR, {"layers.p1.act": "rleu"}).startswith("override layers.p1.act:1:1: p1 (pair): 'act': ")
    assert "did you mean 'pair'?" in _error(PAIR.replace("type: pair, out: 16", "type: piar, out: 16"))


def test_body_errors_name_the_use_and_the_definition() -> None:
    message = _error(PAIR.replace("out: 16}", "out: 16, k: 0}"))
    assert message.startswith("x.yaml:15:5: p1 (pair): in block 'pair' defined at x.yaml:4:3: x.yaml:12:43: a (conv): "
                              "'kernel': Input should be greater than or equal to 1")
    message = _error(PAIR, {"layers.p1.k": 40, "blocks.pair.body.0.padding": 0})  # a shape error, found by the analysis
    assert message.startswith("x.yaml:15:5: p1 (pair): in block 'pair' defined at x.yaml:4:3: x.yaml:12:9: p1.a (conv): ")
    assert "does not fit the 32x32 input" in message
    message = _error(PAIR.replace("kernel: = k,", "kernel: = kk,"))
    assert message.endswith("x.yaml:12:43: blocks.pair.body: '= kk': unknown name 'kk' (the parameters, in_channels); "
                            "did you mean 'k'?")


def test_recursion_shadowing_and_bad_definitions_are_refused() -> None:
    direct = _error(PAIR.replace("- {name: b, type: conv,", "- {name: b, type: pair,"))
    assert direct.startswith("x.yaml:13:19: blocks.pair: a defined block cannot use itself: pair -> pair")
    indirect = PAIR.replace("- {name: b, type: conv,", "- {name: b, type: other,").replace(
        "layers:\n", "  other:\n    body: {type: pair, out: 8}\nlayers:\n", 1)
    assert "a defined block cannot use itself: pair -> other -> pair" in _error(indirect)
    assert _error(PAIR.replace("  pair:\n", "  conv:\n").replace("type: pair", "type: conv")).startswith(
        "x.yaml:4:3: blocks.conv: 'conv' is a built-in block type")
    assert "'in_channels' cannot name a parameter" in _error(PAIR.replace("      k: {", "      in_channels: {"))
    assert _error(PAIR.replace("default: 3}", "default: three}")).startswith(
        "x.yaml:7:7: blocks.pair.params.k: the default 'three' is not a int")
    assert "'type': Input should be 'channels'" in _error(PAIR.replace("{type: int, default: 3}", "{type: integer}"))


def test_a_body_is_checked_for_known_types_and_fields_even_unused() -> None:
    unused = PAIR.replace("layers:\n", "  spare:\n    params: {w: {type: int}}\n    body: [{type: conv, out: = w, kernl: 3}]\n"
                                        "layers:\n", 1)
    assert _error(unused) == "x.yaml:16:35: blocks.spare.body (conv): 'kernl' is not a field of conv; did you mean 'kernel'?"
    assert _error(unused.replace("type: conv, out: = w, kernl: 3", "type: pair, out: = w, kk: 3")) == \
        "x.yaml:16:35: blocks.spare.body (pair): 'kk' is not a field of pair; did you mean 'k'?"
    assert _error(unused.replace("type: conv, out: = w, kernl: 3", "type: cnov")) == \
        "x.yaml:16:13: blocks.spare.body: unknown block type 'cnov'; did you mean 'conv'?"


@pytest.mark.parametrize("expression, message", [
    ("= 2 ** 10 ** 10", "'**' is not allowed"),
    ("= 9 * 9e11 * 9e11", "outside +-1e+12"),
    ("= " + "(" * 120 + "1" + ")" * 120, "at most 200 characters"),
    ("= " + "-" * 150 + "1", "at most 100 terms"),
    ("= " + "1+" * 5000 + "1", "at most 200 characters"),
    ("= __import__('os')", "unknown function '__import__'"),
    ("= __import__('os').system('true')", "is not allowed"),
    ("= k.__class__", "is not allowed"),
    ("= [k] * 10", "is not allowed"),
    ("= lambda: 1", "is not allowed"),
    ("= 'text'", "is not allowed"),
    ("= k / 0", "division by zero"),
    ("= make_divisible(k, 0)", "divisor must be a positive integer"),
    ("= max(k)", "max() takes 2 to 8 arguments, not 1"),
    ("= (1", "not a valid expression"),
])
def test_hostile_expressions_are_refused_in_one_located_line(expression: str, message: str) -> None:
    with pytest.raises(ExprError, match=message.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*").replace("+", r"\+")):
        evaluate(expression, {"k": 3})
    located = _error(PAIR.replace("kernel: = k,", "kernel: REPLACED,"), {"blocks.pair.body.0.kernel": expression})
    assert "override blocks.pair.body.0.kernel:1:1: blocks.pair.body" in located and message in located


def test_the_grammar() -> None:
    names = {"c": 96, "r": 0.25, "flag": True, "act": "silu"}
    assert evaluate("= make_divisible(c * r, 8)", names) == 24
    assert evaluate("= c // 4 + c % 5 - -1", names) == 24 + 1 + 1
    assert evaluate("= max(round(c / 7), int(2.9), min(1, 2))", names) == 14
    assert evaluate("= ceil(c / 64) * floor(1.5)", names) == 2
    assert evaluate("= act", names) == "silu" and evaluate("=flag", names) is True


def test_a_library_file_shared_by_extends_and_overridden_by_name(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "blocks.yaml").write_text(PAIR.split("layers:")[0].replace("name: t\ninput: {channels: 3, size: 32}\n", ""))
    tail = "layers:\n  - {name: p1, type: pair, out: 16}\n  - {type: global_pool, op: avg, flatten: true}\n"
    (tmp_path / "a.yaml").write_text("extends: lib/blocks.yaml\nname: a\ninput: {size: 32}\n" + tail)
    (tmp_path / "b.yaml").write_text("extends: lib/blocks.yaml\nname: b\ninput: {size: 32}\n"
                                     "blocks.pair.params.k.default: 1\n" + tail)
    a, b = archspec.load(tmp_path / "a.yaml"), archspec.load(tmp_path / "b.yaml")
    assert _convs(a, "p1")[0] == ("a", 16, 3) and _convs(b, "p1")[0] == ("a", 16, 1)
    # The SqueezeNet specs: 1.1 extends the library, 1.0 extends 1.1; both use its one definition.
    assert "fire" in archspec.load(SPECS / "squeezenet1_0.yaml", analyse=False).blocks
    assert (SPECS / "lib" / "squeezenet_blocks.yaml").read_text().count("fire:") == 1


def test_squeezenet_summary_rows_and_state_dict_names() -> None:
    s = summary(SPECS / "squeezenet1_1.yaml", depth=2)
    rows = {r.name: r for r in s.rows}
    assert rows["fire2"].type == "fire" and rows["fire2"].depth == 1 and rows["fire2"].hyper == "expand=64 squeeze_ratio=0.125"
    assert rows["fire2.squeeze"].depth == 2 and rows["fire2.squeeze"].output_shape == (16, 55, 55)
    assert rows["fire2"].params == rows["fire2.squeeze"].params + rows["fire2.expand"].params == 11_408
    model = archspec.compile(archspec.load(SPECS / "squeezenet1_1.yaml"), device="meta")
    assert {k for k in model.state_dict() if k.startswith("fire2.")} == {
        "fire2.squeeze.conv.weight", "fire2.squeeze.conv.bias",
        "fire2.expand.expand1x1.0.conv.weight", "fire2.expand.expand1x1.0.conv.bias",
        "fire2.expand.expand3x3.0.conv.weight", "fire2.expand.expand3x3.0.conv.bias"}


def test_squeezenet_diagram_one_node_per_use_expanded_at_layer_detail() -> None:
    spec = archspec.load(SPECS / "squeezenet1_1.yaml")
    block = diagram(spec, "block")
    fires = [p for p in block.ids if p.startswith("fire")]
    assert fires == [f"fire{i}" for i in range(2, 10)]  # one node each, nothing inside drawn
    assert "<b>fire2</b>  fire" in block.source
    layer = diagram(spec, "layer")
    assert "fire2" in layer.clusters and "fire2.squeeze" in layer.ids and layer.concats >= 8


def test_a_defined_block_is_drawn_in_its_bodys_colour() -> None:
    """A use takes the legend kind of what its body is (a list of layers: a group; a residual: a residual block),
    not "other layer (activation, dropout ...)"."""
    drawing = diagram(archspec.loads(PAIR.replace("layers:\n", "blocks.skip:\n  body: {type: residual, body: [relu]}\n"
                                                                "layers:\n  - {name: r, type: skip}\n")), "block")
    assert {"stage / group", "residual block"} <= drawing.kinds and "other" not in drawing.kinds
    [node] = [line for line in drawing.source.splitlines() if "<b>r</b>" in line]
    assert f'fillcolor="{COLOURS["residual block"]}"' in node


def test_editor_schema_lists_the_defined_blocks() -> None:
    import jsonschema
    import yaml

    generic = jsonschema.Draft202012Validator(editor_schema())
    for path in [*SPECS.glob("*.yaml"), *SPECS.glob("lib/*.yaml")]:
        assert not list(generic.iter_errors(yaml.safe_load(path.read_text()))), path.name
    assert list(generic.iter_errors({"layers": [{"type": "conv", "strid": 2}]}))
    schema = editor_schema(archspec.load(SPECS / "squeezenet1_1.yaml", analyse=False))
    fire = schema["$defs"]["defined_fire"]
    assert fire["properties"]["expand"]["minimum"] == 1 and fire["properties"]["squeeze_ratio"]["default"] == 0.125
    specific = jsonschema.Draft202012Validator(schema)
    assert not list(specific.iter_errors({"layers": [{"type": "fire", "expand": 64}, "fire"]}))
    assert list(specific.iter_errors({"layers": [{"type": "fire", "expnd": 64}]}))
    assert list(specific.iter_errors({"layers": [{"type": "fire", "expand": "many"}]}))


def test_memory_guard_names_a_defined_block() -> None:
    spec = archspec.load(SPECS / "squeezenet1_1.yaml", overrides={"input.size": 4096})
    with pytest.raises(SpecError) as info:
        check_memory(spec, limit_bytes=10 ** 9)
    assert "the network needs" in str(info.value) and "\n" not in str(info.value)
    assert info.value.path in {n.name for n in spec.analyse().children}
    estimate = check_memory(archspec.load(SPECS / "squeezenet1_1.yaml"), limit_bytes=10 ** 9)
    assert estimate.fits and estimate.param_bytes == 4 * 1_235_496


def test_export_python_and_onnx_of_squeezenet(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    spec = archspec.load(SPECS / "squeezenet1_1.yaml", overrides={"input.size": 64})
    python = archspec.export(spec, "python", tmp_path / "sq.py")
    assert python.max_abs_diff == 0 and "class Fire(nn.Sequential):" in (tmp_path / "sq.py").read_text()
    onnx = archspec.export(spec, "onnx", tmp_path / "sq.onnx")
    assert onnx.max_abs_diff is not None and onnx.max_abs_diff < 1e-4


def test_inception_v3_modules_are_defined_blocks_with_torchvision_figures() -> None:
    """The spec's InceptionA/C/E are YAML-defined blocks; each module keeps torchvision's parameters and names."""
    import torchvision

    spec = archspec.load(SPECS / "inception_v3.yaml")
    ref = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    types = {n.name: n.type for n in spec.analyse().children}
    assert [types[f"Mixed_{m}"] for m in ("5b", "5c", "5d", "6b", "6c", "6d", "6e", "7b", "7c")] == \
        ["inception_a"] * 3 + ["inception_c"] * 4 + ["inception_e"] * 2
    for node in spec.analyse().children:
        if node.name.startswith("Mixed_"):
            assert node.params == sum(p.numel() for p in getattr(ref, node.name).parameters()), node.name
    keys = archspec.compile(spec, device="meta").state_dict()
    assert "Mixed_5b.branch_pool.1.conv.weight" in keys and keys["Mixed_5b.branch_pool.1.conv.weight"].shape[0] == 32
    assert "Mixed_7c.branch3x3dbl.2.b.0.conv.weight" in keys


def test_validate_prints_one_line_for_a_broken_use(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(PAIR.replace("out: 16}", "out: 16, k: 0}"))
    result = subprocess.run([sys.executable, str(ROOT / "cli.py"), "validate", str(bad)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "in block 'pair' defined at" in result.stderr


def _chain_of_definitions(count: int, use: str) -> str:
    """b0 is a conv; each b_i's body is two uses of b_(i-1): b_i stands for 2^i convs."""
    lines = ["name: chain", "input: {channels: 3, size: 8}", "blocks:", "  b0: {body: {type: conv, out: 4, kernel: 1}}"]
    lines += [f"  b{i}: {{body: [b{i - 1}, b{i - 1}]}}" for i in range(1, count)]
    return "\n".join([*lines, "layers:", f"  - {use}", ""])


def test_shared_definitions_are_checked_once_and_expansions_are_bounded() -> None:
    # 60 definitions, each using the one before twice: checking for cycles path by path would take 2^60 steps.
    assert archspec.loads(_chain_of_definitions(60, "b3")).params == (3 * 4 + 4) + 7 * (4 * 4 + 4)  # 8 convs
    message = _error(_chain_of_definitions(60, "b40"))  # 2^40 convs: refused after 2,000 expansions
    assert message.startswith("x.yaml:65:5: 0 (b40): in block 'b")  # at the use, naming the innermost definition
    assert "more than 2,000 uses of blocks defined under 'blocks:' to expand" in message


def test_uses_with_the_same_arguments_share_one_validated_body() -> None:
    """DenseNet-121's 58 dense layers take the same arguments and their body does not read `in_channels`: one
    body, validated once. A transition's body reads `in_channels`: one body per input width."""
    nodes = [n for n in archspec.load(SPECS / "densenet121.yaml").analyse().walk()
             if n.type in ("dense_layer", "transition")]
    dense = [n for n in nodes if n.type == "dense_layer"]
    assert len(dense) == 58 and len({id(n.expanded) for n in dense}) == 1
    assert len({id(n.expanded) for n in nodes if n.type == "transition"}) == 3
    library = dense[0].block._library
    assert library.reads_in_channels == {"dense_layer": False, "transition": True}
    assert sorted(key[2] or 0 for key in library.bodies) == [0, 256, 512, 1024]
    # The shared body still gives every use its own input shape and cost.
    assert len({n.in_shape for n in dense}) == 58 and dense[0].params != dense[-1].params
