"""Efficient family: scaling rules and their rounding, EfficientNet B0-B7 as one spec + a table,
MobileNet v1's width x resolution grid against the paper, SE, stochastic depth."""
from __future__ import annotations

import itertools
import pytest
import torch
import torchvision
from torchvision.models._utils import _make_divisible as torchvision_make_divisible

import archspec
from archspec.cli import main
from archspec.language.scaling import Scaling, make_divisible
from conftest import SPECS


def timm_make_divisible(*args: float, **kwargs: float) -> int:
    from timm.layers import make_divisible  # imported when a test runs: timm takes seconds to import

    return make_divisible(*args, **kwargs)


@pytest.mark.parametrize("value,divisor", list(itertools.product(
    [1, 3, 7.2, 8, 12, 15.9, 16, 17.6, 19.2, 28.8, 36, 38.4, 44.8, 60, 100.8, 134.4, 230.4, 1000.1], [1, 3, 8, 16, 32])))
def test_make_divisible_equals_torchvision_and_timm(value: float, divisor: int) -> None:
    assert make_divisible(value, divisor) == torchvision_make_divisible(value, divisor) == timm_make_divisible(value, divisor)
    assert make_divisible(value, divisor, round_limit=0.0) == timm_make_divisible(value, divisor, round_limit=0.0)


@pytest.mark.parametrize("value,divisor,expected", [
    (36, 16, 48),     # nearest multiple is 32 = 0.89 x 36: more than 10% down, so one multiple up
    (11.2, 8, 16),    # MobileNet x0.35: 32 x 0.35 -> nearest 8 = 0.71 x 11.2, so 16
    (71, 16, 64),     # 64 = 0.90 x 71: exactly allowed
    (8.8, 8, 8),      # 8 = 0.91 x 8.8: allowed
    (3, 8, 8),        # never below the divisor
    (38.4, 8, 40),    # EfficientNet-B3 stem: 32 x 1.2
    (134.4, 8, 136),  # EfficientNet-B3 stage 5: 112 x 1.2
])
def test_the_ten_percent_rule(value: float, divisor: int, expected: int) -> None:
    assert make_divisible(value, divisor) == expected == torchvision_make_divisible(value, divisor)


def test_without_the_ten_percent_rule() -> None:
    assert make_divisible(36, 16, round_limit=0.0) == 32 == timm_make_divisible(36, 16, round_limit=0.0)  # timm's SE


def test_depth_rounds_up() -> None:
    scaling = Scaling(depth=1.1)
    assert [scaling.repeats(n) for n in (1, 2, 3, 4)] == [2, 3, 4, 5]  # EfficientNet-B1: 1,2,2,3 -> 2,3,3,4
    assert Scaling(depth=1.0).repeats(3) == 3 and Scaling(width=1.0).channels(13) == 13  # identity at 1.0


def test_efficientnet_variants_equal_torchvision_configs() -> None:
    """The scaled stage table equals torchvision's `_efficientnet_conf` for every variant."""
    from torchvision.models.efficientnet import _efficientnet_conf

    table = {"b0": (1.0, 1.0), "b1": (1.0, 1.1), "b2": (1.1, 1.2), "b3": (1.2, 1.4), "b4": (1.4, 1.8),
             "b5": (1.6, 2.2), "b6": (1.8, 2.6), "b7": (2.0, 3.1)}
    for variant, (width, depth) in table.items():
        spec = archspec.load(SPECS / "efficientnet.yaml", variant=variant)
        settings, _ = _efficientnet_conf("efficientnet_b0", width_mult=width, depth_mult=depth)
        stages = [n for n in spec.analyse().children if n.type == "stage"]
        assert [len(s.children) for s in stages] == [c.num_layers for c in settings]
        assert [s.out_shape[0] for s in stages] == [c.out_channels for c in settings]
        assert spec.analyse().children[0].out_shape[0] == settings[0].input_channels  # stem


def test_variant_files_equal_the_table() -> None:
    for b in range(8):
        by_file = archspec.load(SPECS / f"efficientnet_b{b}.yaml")
        by_flag = archspec.load(SPECS / "efficientnet.yaml", variant=f"b{b}")
        assert (by_file.params, by_file.macs, by_file.input.shape) == (by_flag.params, by_flag.macs, by_flag.input.shape)
        assert by_file.name == by_flag.name == f"efficientnet_b{b}"
        assert by_file.reference == f"torchvision:efficientnet_b{b}"


def test_compound_rule() -> None:
    spec = archspec.load(SPECS / "efficientnet.yaml", phi=2)
    assert spec.scaling.width == pytest.approx(1.1 ** 2) and spec.scaling.depth == pytest.approx(1.2 ** 2)
    assert spec.input.shape == (3, round(224 * 1.15 ** 2), round(224 * 1.15 ** 2))
    stem = spec.analyse().children[0]
    assert stem.out_shape[0] == make_divisible(32 * 1.21, 8)
    with pytest.raises(archspec.SpecError, match="'scaling.phi' needs a 'compound' rule") as info:
        archspec.load(SPECS / "mobilenet_v2.yaml", phi=1)
    assert str(info.value).startswith("override scaling.phi:1:1: scaling: ")  # phi's origin, not the spec's first line


def test_classifier_classes_never_scale() -> None:
    spec = archspec.load(SPECS / "efficientnet.yaml", variant="b7")
    assert spec.output_shape == (1000,)
    assert not any(f.path == "classifier" for f in spec.scaled_fields)


def test_unknown_variant_is_located() -> None:
    with pytest.raises(archspec.SpecError, match=r"unknown variant 'b9'.*variants: b0, b1"):
        archspec.load(SPECS / "efficientnet.yaml", variant="b9")


# MobileNet v1 (Howard et al. 2017): Table 6 (width multiplier at 224) and Table 7 (resolution at
# width 1.0): millions of mult-adds and of parameters, as printed.
PAPER_GRID = {"1.0-224": (569, 4.2), "0.75-224": (325, 2.6), "0.5-224": (149, 1.3), "0.25-224": (41, 0.5),
              "1.0-192": (418, 4.2), "1.0-160": (290, 4.2), "1.0-128": (186, 4.2)}


@pytest.mark.parametrize("variant", sorted(PAPER_GRID))
def test_mobilenet_v1_grid_matches_the_paper(variant: str, capsys: pytest.CaptureFixture[str]) -> None:
    macs, params = PAPER_GRID[variant]
    assert main(["scale", str(SPECS / "mobilenet_v1.yaml"), "--variant", variant]) == 0
    row = capsys.readouterr().out.splitlines()[1].split()
    our_params, our_macs = int(row[-2].replace(",", "")), int(row[-1].replace(",", ""))
    assert abs(our_macs / 1e6 - macs) < 1.0  # within one unit of the printed figure
    assert round(our_params / 1e6, 1) == params


def test_scale_lists_every_variant_and_explains(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scale", str(SPECS / "efficientnet.yaml"), "--explain"]) == 0
    out = capsys.readouterr().out
    assert all(f"b{b} " in out for b in range(8))
    assert "66,347,960" in out  # B7's parameters, as torchvision's
    assert "stage5.block            out            112      134.40      136" in out  # B3: 112 x 1.2 -> 136


def test_scale_with_phi_reads_only_that_member(capsys: pytest.CaptureFixture[str]) -> None:
    """--phi is one row: an --set that fits that member but not all the variants table's rows is no error."""
    spec = archspec.load(SPECS / "efficientnet.yaml", phi=1)
    repeats = next(n for n in spec.analyse().children if n.name == "stage2").block.repeat
    each = f"layers.stage2.each.kernel=[{', '.join(['3'] * repeats)}]"  # as long as phi 1's stage2, not b0's
    assert main(["scale", str(SPECS / "efficientnet.yaml"), "--phi", "1", "--set", each]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == ["variant", "phi=1"]


def test_stochastic_depth_grows_like_torchvision() -> None:
    ours = archspec.build(SPECS / "efficientnet_b0.yaml", device="meta")
    ref = torchvision.models.efficientnet_b0()
    ref_rates = [m.stochastic_depth.p for m in ref.modules() if hasattr(m, "use_res_connect") and m.use_res_connect]
    our_rates = [m.drop_rate for m in ours.modules() if type(m).__name__ == "Residual"]
    assert our_rates == pytest.approx(ref_rates)
    assert max(our_rates) < 0.2 and our_rates[0] > 0


def test_drop_path_only_in_training() -> None:
    model = archspec.build(SPECS / "mobilenet_v2.yaml", overrides={"stochastic_depth": 0.0})
    assert all(m.drop_rate == 0 for m in model.modules() if type(m).__name__ == "Residual")
    torch.manual_seed(0)
    model = archspec.build(SPECS / "efficientnet_b0.yaml", overrides={"layers.dropout.p": 0.0})
    x = torch.randn(4, 3, 64, 64)
    model.train()
    assert not torch.equal(model(x), model(x))  # stochastic depth draws anew
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


def test_se_squeeze_rules() -> None:
    b0 = archspec.build(SPECS / "efficientnet_b0.yaml", device="meta")
    assert b0.get_submodule("stage2.0.se.fc1").out_channels == 16 // 4  # a quarter of the block's input
    v3 = archspec.build(SPECS / "mobilenet_v3_large.yaml", device="meta")
    assert v3.get_submodule("blocks.3.se.fc1").out_channels == make_divisible(72 // 4, 8) == 24  # of the expanded
    se = archspec.build(SPECS / "se_resnet50.yaml", device="meta")
    assert se.get_submodule("layer1.0.se.fc1").out_channels == 16  # 256 / 16


def test_timm_resnet_init_starts_blocks_as_identity() -> None:
    model = archspec.build(SPECS / "se_resnet50.yaml")
    assert torch.count_nonzero(model.get_submodule("layer2.1.conv3.norm").weight) == 0
    assert torch.count_nonzero(model.get_submodule("layer2.1.conv2.norm").weight) > 0
    # In a block with a projection it is still the body's last BN, never the shortcut's (timm's bn3).
    assert torch.count_nonzero(model.get_submodule("layer1.0.conv3.norm").weight) == 0
    assert torch.count_nonzero(model.get_submodule("layer1.0.shortcut.norm").weight) > 0


def test_depthwise_block() -> None:
    spec = archspec.loads("name: d\ninput: {size: 32}\nlayers: [{type: depthwise, out: 64, stride: 2, kernel: 5}]\n")
    node = spec.analyse().children[0]
    assert node.out_shape == (64, 16, 16)
    assert node.params == (3 * 25 + 6) + (3 * 64 + 128)  # dw 5x5 + BN, pw 1x1 + BN (no biases)
    assert node.macs == 16 * 16 * (3 * 25 + 3 * 64)


def test_optional_channel_fields_scale_too() -> None:
    """mbconv's explicit `expanded` widths (MobileNetV3's table) follow the width multiplier, as torchvision's."""
    spec = archspec.load(SPECS / "mobilenet_v3_large.yaml", overrides={"scaling.width": 0.75})
    block = spec.analyse().children[1].children[3]  # blocks.3: expanded 72
    assert block.children[0].out_shape[0] == make_divisible(72 * 0.75, 8) == 56
    ref = torchvision.models.mobilenet_v3_large(width_mult=0.75)
    assert block.children[0].out_shape[0] == ref.features[4].block[0].out_channels


@pytest.mark.parametrize("name, fc1", [("mobilenet_v3_large", 1280), ("mobilenet_v3_small", 1024)])
# 0.33 and 0.35: the last conv (6 x the last block's width) is not the scaled 960 or 576 rounded to 8.
@pytest.mark.parametrize("width", [0.33, 0.35, 0.5, 0.75, 1.25])
def test_mobilenet_v3_width_equals_torchvision_width_mult(name: str, fc1: int, width: float) -> None:
    """Every width follows torchvision's `width_mult`, fc1 (a hidden linear layer) included; the classes stay."""
    from archspec.backend.interop import transfer

    torch.manual_seed(0)
    spec = archspec.load(SPECS / f"{name}.yaml", overrides={"scaling.width": width})
    ref = getattr(torchvision.models, name)(width_mult=width).eval()
    ours = archspec.compile(spec).eval()
    assert spec.params == sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
    assert ours.fc1.out_features == ref.classifier[0].out_features == make_divisible(fc1 * width, 8)
    assert ours.classifier.out_features == 1000
    assert transfer(ref, ours).ok
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert (ours(x) - ref(x)).abs().max().item() <= 1e-4


@pytest.mark.parametrize("width", [0.35, 0.5, 0.75, 1.4])
def test_mobilenet_v2_width_equals_torchvision_width_mult(width: float) -> None:
    """Below width 1 the last conv keeps 1280 channels (`scales_with_width: up`), above it widens."""
    from archspec.backend.interop import transfer

    torch.manual_seed(0)
    spec = archspec.load(SPECS / "mobilenet_v2.yaml", overrides={"scaling.width": width})
    ref = torchvision.models.mobilenet_v2(width_mult=width).eval()
    ours = archspec.compile(spec).eval()
    assert spec.params == sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
    assert ours.head.conv.out_channels == ref.features[-1][0].out_channels == make_divisible(1280 * max(1.0, width), 8)
    assert transfer(ref, ours).ok
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert (ours(x) - ref(x)).abs().max().item() <= 1e-4


def test_efficientnet_head_follows_timm_and_expansion_4_follows_torchvision() -> None:
    """The head conv is 1280 x width, rounded (timm's rule); torchvision's is 4 x the last block's scaled
    width. They agree at B0-B7 and differ at other widths, e.g. 1.13: 1448 (timm) and 4 x 360 = 1440
    (torchvision), which `expansion: 4` on the head gives."""
    from timm.models.efficientnet import _gen_efficientnet
    from torchvision.models.efficientnet import EfficientNet, _efficientnet_conf

    from archspec.backend.interop import transfer

    width = 1.13
    timm_ref = _gen_efficientnet("efficientnet_b0", channel_multiplier=width, depth_multiplier=1.0, pretrained=False)
    spec = archspec.load(SPECS / "efficientnet.yaml", overrides={"scaling.width": width})
    assert spec.params == sum(p.numel() for p in timm_ref.parameters())
    head = next(n for n in spec.analyse().children if n.name == "head")
    assert head.out_shape[0] == timm_ref.conv_head.out_channels == 1448

    torch.manual_seed(0)
    settings, last_channel = _efficientnet_conf("efficientnet_b0", width_mult=width, depth_mult=1.0)
    ref = EfficientNet(settings, 0.2, last_channel=last_channel).eval()
    spec = archspec.load(SPECS / "efficientnet.yaml", overrides=[f"scaling.width={width}", "layers.head.out=null",
                                                                  "layers.head.expansion=4"])
    ours = archspec.compile(spec).eval()
    assert spec.params == sum(p.numel() for p in ref.parameters())
    assert ours.head.conv.out_channels == ref.features[-1][0].out_channels == 1440
    assert transfer(ref, ours).ok
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert (ours(x) - ref(x)).abs().max().item() <= 1e-4
