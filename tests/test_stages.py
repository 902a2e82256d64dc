"""Irregular stages (`first`, `each`), stochastic depth over every residual unit, fused_mbconv and
ResNet-D's average-pool shortcut (issue 17)."""
from __future__ import annotations

import pytest
import torch

import archspec
from archspec.errors import SpecError
from conftest import SPECS

HEAD = """
name: {name}
input: {{size: 32}}
defaults:
  conv: {{norm: batch, activation: relu}}
layers:
  - {{name: stem, type: conv, out: 16, kernel: 3}}
"""
IRREGULAR = HEAD.format(name="irregular") + """  - name: s1
    type: stage
    repeat: 3
    block: {type: mbconv, out: 24, kernel: 3}
    first: {stride: 2, expand_ratio: 1}
    each: {kernel: [3, 5, 7]}
"""

WRITTEN_OUT = HEAD.format(name="written_out") + """  - name: s1
    type: sequence
    layers:
      - {type: mbconv, out: 24, kernel: 3, stride: 2, expand_ratio: 1}
      - {type: mbconv, out: 24, kernel: 5}
      - {type: mbconv, out: 24, kernel: 7}
"""


def test_irregular_stage_equals_its_blocks_written_out() -> None:
    stage, written = archspec.loads(IRREGULAR), archspec.loads(WRITTEN_OUT)
    assert (stage.params, stage.macs, stage.output_shape) == (written.params, written.macs, written.output_shape)
    ours, theirs = archspec.compile(stage).eval(), archspec.compile(written).eval()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))


def test_first_overrides_each_and_later_repetitions_do_not_stride() -> None:
    spec = archspec.loads(IRREGULAR.replace("first: {stride: 2, expand_ratio: 1}", "first: {kernel: 9}"))
    reps = spec.analyse().children[1].children
    assert [r.block.kernel for r in reps] == [9, 5, 7]
    assert [r.block.stride for r in reps] == [1, 1, 1]
    strided = archspec.loads(IRREGULAR.replace("    first: {stride: 2, expand_ratio: 1}\n", "")
                             .replace("    each: {kernel: [3, 5, 7]}\n", "").replace("kernel: 3}", "kernel: 3, stride: 2}"))
    assert [r.block.stride for r in strided.analyse().children[1].children] == [2, 1, 1]  # today's default
    each_stride = archspec.loads(IRREGULAR.replace("[3, 5, 7]", "[3, 5, 7], stride: [1, 2, 1]"))
    assert [r.block.stride for r in each_stride.analyse().children[1].children] == [2, 2, 1]


@pytest.mark.parametrize("change, where, message", [
    ("first: {strid: 2}", (12, 13), "s1 (stage): 'first.strid' is not a field of mbconv; did you mean 'stride'?"),
    ("first: {type: conv}", (12, 13), "s1 (stage): 'first' cannot change the block's type"),
    ("each: {kernel: [3, 5]}", (12, 12), "s1 (stage): 'each.kernel' has 2 values but the stage repeats 3 times"),
    ("each: {kernel: [3, 5, 0]}", (12, 12), "s1 (stage): repetition 2: its mbconv's 'kernel' would be 0"),
    ("first: {stride: x}", (12, 13), "s1 (stage): repetition 0: its mbconv's 'stride' would be 'x'"),
])
def test_irregular_stage_errors_are_located(change: str, where: tuple[int, int], message: str) -> None:
    text = IRREGULAR.replace("    each: {kernel: [3, 5, 7]}\n", "").replace("first: {stride: 2, expand_ratio: 1}", change)
    with pytest.raises(SpecError) as info:
        archspec.loads(text, "irregular.yaml")
    assert (info.value.loc.line, info.value.loc.col) == where
    assert message in str(info.value)


RESIDUALS = """
name: units
input: {size: 32}
stochastic_depth: 0.3
defaults:
  conv: {norm: batch, activation: relu}
layers:
  - {name: stem, type: conv, out: 16, kernel: 3}
  - {name: s1, type: stage, repeat: 2, block: {type: basic, out: 16}}
  - {name: s2, type: stage, repeat: 2, block: {type: bottleneck, planes: 8, stride: 2}}
  - {name: res, type: residual, body: [{type: conv, out: 32, kernel: 3}]}
  - {name: fixed, type: residual, body: [{type: conv, out: 32, kernel: 3}], drop_path: 0.05}
  - {name: m, type: mbconv, out: 48, stride: 2}
  - {name: f, type: fused_mbconv, out: 48, expand_ratio: 4}
"""


def test_stochastic_depth_numbers_every_residual_unit() -> None:
    """Rate 0.3 * k / n for unit k of n: basic, bottleneck, residual and (fused) MBConv blocks, residual or
    not (the strided mbconv counts but has no skip); an explicit drop_path keeps its own rate."""
    model = archspec.build(archspec.loads(RESIDUALS), device="meta")
    rates = {name: m.drop_rate for name, m in model.named_modules() if type(m).__name__ == "Residual"}
    n = 8
    expected = {"s1.0": 0, "s1.1": 0.3 / n, "s2.0": 0.6 / n, "s2.1": 0.9 / n, "res": 1.2 / n, "fixed": 0.05,
                "f": 0.3 * 7 / n}
    assert rates == pytest.approx(expected)


def test_fused_mbconv_layers() -> None:
    spec = archspec.loads(RESIDUALS)
    model = archspec.compile(spec, device="meta")
    names = [name for name, _ in model.f.named_children()]
    assert names == ["expand", "project", "shortcut", "act"]
    assert model.f.expand.conv.kernel_size == (3, 3) and model.f.expand.conv.out_channels == 192
    one = archspec.loads(RESIDUALS.replace("expand_ratio: 4", "expand_ratio: 1, stride: 2"))
    f = archspec.compile(one, device="meta").f
    assert [name for name, _ in f.named_children()] == ["conv"] and f.conv.conv.stride == (2, 2)


def test_avg_pool_shortcut() -> None:
    spec = archspec.loads(RESIDUALS.replace("planes: 8, stride: 2}", "planes: 8, stride: 2, shortcut_pool: avg}"))
    shortcut = archspec.compile(spec).s2[0].shortcut
    pool, conv = shortcut.pool, shortcut.conv.conv
    assert isinstance(pool, torch.nn.AvgPool2d) and pool.ceil_mode and not pool.count_include_pad
    assert conv.stride == (1, 1) and conv.kernel_size == (1, 1)
    assert isinstance(archspec.compile(spec).s2[1].shortcut, torch.nn.Identity)
    odd = archspec.loads(RESIDUALS.replace("size: 32", "size: 33")
                         .replace("planes: 8, stride: 2}", "planes: 8, stride: 2, shortcut_pool: avg}"))
    assert odd.analyse().children[2].out_shape == (32, 17, 17)  # ceil_mode: 33 -> 17, as the strided 3x3
    with torch.no_grad():
        assert archspec.compile(odd).eval()(torch.randn(1, 3, 33, 33)).shape == (1, *odd.output_shape)




# RegNetY-400MF written out by hand: the stages that specs/regnet_y_400mf.yaml's regnet block derives.
REGNET_Y_400MF_BY_HAND = """
name: regnet_y_400mf_by_hand
reference: torchvision:regnet_y_400mf
input: {channels: 3, size: 224}
defaults:
  conv: {norm: batch, activation: relu}
  bottleneck: {expansion: 1, se_after: conv2, se: {ratio: 0.25, ratio_of: input, activation: relu}}
layers:
  - {name: stem, type: conv, out: 32, kernel: 3, stride: 2}
  - {name: stage1, type: stage, repeat: 1, block: {type: bottleneck, planes: 48, width: 48, groups: 6, stride: 2}}
  - {name: stage2, type: stage, repeat: 3, block: {type: bottleneck, planes: 104, width: 104, groups: 13, stride: 2}}
  - {name: stage3, type: stage, repeat: 6, block: {type: bottleneck, planes: 208, width: 208, groups: 26, stride: 2}}
  - {name: stage4, type: stage, repeat: 6, block: {type: bottleneck, planes: 440, width: 440, groups: 55, stride: 2}}
  - {name: avgpool, type: global_pool, op: avg, flatten: true}
  - {name: fc, type: linear, out: 1000}
"""


@pytest.mark.parametrize("by_hand", [True, False], ids=["by_hand", "regnet_block"])
def test_bottleneck_se_after_the_3x3_is_regnet_y(by_hand: bool) -> None:
    """SE on the 3x3's output, squeezed to a quarter of the block's input (torchvision's RegNet-Y): written as
    bottlenecks with `se_after: conv2` and `ratio_of: input`, or derived by the regnet block."""
    from archspec.backend.interop import transfer
    from archspec.backend.references import randomise_norms, reference_model

    spec = archspec.loads(REGNET_Y_400MF_BY_HAND) if by_hand else archspec.load(SPECS / "regnet_y_400mf.yaml")
    ref = reference_model(spec.reference).eval()
    assert spec.params == sum(p.numel() for p in ref.parameters())
    state = ref.state_dict()  # keeps its version metadata (MNASNet's loader reads it)
    state.update(randomise_norms(state))
    ref.load_state_dict(state)
    ours = archspec.compile(spec).eval()
    stage2 = ours.stage2 if by_hand else ours.trunk.stage2
    assert [n for n, _ in stage2[1].named_children()][:4] == ["conv1", "conv2", "se", "conv3"]
    assert transfer(ref, ours).ok
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected, got = ref(x), ours(x)
    assert (got - expected).abs().max().item() <= 1e-4 * expected.abs().max().item()
