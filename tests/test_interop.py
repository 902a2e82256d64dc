"""Weight transfer is right by construction or refused: dataflow matching against a known architecture,
names and unique shapes for a bare state_dict, an explicit mapping, and --verify (docs/weights.md)."""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from torch import nn

import archspec
from archspec.cli import main
from archspec.backend.dataflow import trace
from archspec.backend.interop import WeightsError, load_weights, transfer, verify_transfer
from archspec.backend.references import randomise_norms
from conftest import SPECS

STEM = "  - {name: stem, type: conv, out: 8, kernel: 3}\n"
HEAD = "  - {name: pool, type: global_pool, op: avg, flatten: true}\n  - {name: fc, type: linear, out: 10}\n"


def tiny(tmp_path: Path, block: str, norm: str = "batch") -> archspec.Spec:
    path = tmp_path / "tiny.yaml"
    path.write_text(f"name: tiny\ninput: {{channels: 3, size: 16}}\ndefaults: {{conv: {{norm: {norm}, activation: relu}}}}\n"
                    f"layers:\n{STEM}{block}{HEAD}")
    return archspec.load(path)


def conv_bn(cin: int, cout: int, kernel: int = 1, stride: int = 1, relu: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, *([nn.ReLU()] if relu else []))


class Net(nn.Module):
    """Stem, one block, global average pool and classifier: the tiny spec's frame around `block`."""

    def __init__(self, block: nn.Module, channels: int) -> None:
        super().__init__()
        self.stem, self.block, self.fc = conv_bn(3, 8, 3), block, nn.Linear(channels, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.block(self.stem(x)).mean((2, 3)))


class ShortcutFirst(nn.Module):
    """torchvision's RegNet block: the projection registered, and called, before the body."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = conv_bn(8, 16, 1, 2, relu=False)  # the same shape as the body's first conv
        self.f = nn.Sequential(conv_bn(8, 16), conv_bn(16, 16, 3, 2), conv_bn(16, 16, relu=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.proj(x) + self.f(x))


class SEFirst(nn.Module):
    """A bottleneck whose squeeze-and-excitation is registered before its convs, and gates as `gate * x`."""

    def __init__(self, squeeze: int) -> None:
        super().__init__()
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(16, squeeze, 1), nn.ReLU(), nn.Conv2d(squeeze, 16, 1),
                                nn.Sigmoid())
        self.convs = nn.Sequential(conv_bn(8, 8), conv_bn(8, 8, 3, 2), conv_bn(8, 16, relu=False))
        self.down = conv_bn(8, 16, 1, 2, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.convs(x)
        return torch.relu(self.down(x) + self.se(y) * y)


def with_random_stats(model: nn.Module) -> nn.Module:
    model.load_state_dict({**model.state_dict(), **randomise_norms(model.state_dict(), seed=1)})
    return model.eval()


def assert_same_outputs(ours: nn.Module, ref: nn.Module, size: int = 16) -> None:
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected, got = ref.eval()(x), ours.eval()(x)
    assert (got - expected).abs().max().item() <= 1e-4 * expected.abs().max().item()


def test_a_reference_that_registers_its_shortcut_first(tmp_path: Path) -> None:
    spec = tiny(tmp_path, "  - {name: block, type: bottleneck, planes: 16, expansion: 1, stride: 2}\n")
    ref = with_random_stats(Net(ShortcutFirst(), 16))
    ours = archspec.compile(spec)
    assert tuple(ours.block.conv1.conv.weight.shape) == tuple(ours.block.shortcut.conv.weight.shape)  # same shape
    report = transfer(ref, ours)
    assert report.ok and report.method == "dataflow"
    mapping = dict(report.transferred)
    assert mapping["block.shortcut.conv.weight"] == "block.proj.0.weight"
    assert mapping["block.conv1.conv.weight"] == "block.f.0.0.weight"
    assert_same_outputs(ours, ref)
    assert verify_transfer(ours, ref) <= 1e-4


REGNET = """name: regnet_x_400mf
reference: torchvision:regnet_x_400mf
input: {channels: 3, size: 224}
defaults: {conv: {norm: batch, activation: relu}}
layers:
  - {name: stem, type: conv, out: 32, kernel: 3, stride: 2}
  - {name: s1, type: stage, repeat: 1, block: {type: bottleneck, planes: 32, expansion: 1, width: 32, groups: 2, stride: 2}}
  - {name: s2, type: stage, repeat: 2, block: {type: bottleneck, planes: 64, expansion: 1, width: 64, groups: 4, stride: 2}}
  - {name: s3, type: stage, repeat: 7, block: {type: bottleneck, planes: 160, expansion: 1, width: 160, groups: 10, stride: 2}}
  - {name: s4, type: stage, repeat: 12, block: {type: bottleneck, planes: 400, expansion: 1, width: 400, groups: 25, stride: 2}}
  - {name: avgpool, type: global_pool, op: avg, flatten: true}
  - {name: fc, type: linear, out: 1000}
"""


def test_torchvision_regnet_from_a_spec_written_from_the_docs(tmp_path: Path) -> None:
    # The measured case: torchvision's RegNet block registers and calls its projection first, and
    # registration order put it into conv1 (same shape) with a clean report. By dataflow it is exact.
    (tmp_path / "regnet.yaml").write_text(REGNET)
    torch.manual_seed(0)
    ref = with_random_stats(torchvision.models.regnet_x_400mf())
    torch.save(ref.state_dict(), tmp_path / "tv.pth")
    model = archspec.build(tmp_path / "regnet.yaml", weights=tmp_path / "tv.pth", verify=True)
    report = model.transfer_report
    assert report.ok and report.method == "dataflow" and report.verified <= 1e-4
    mapping = dict(report.transferred)
    assert mapping["s1.0.shortcut.conv.weight"] == "trunk_output.block1.block1-0.proj.0.weight"
    assert mapping["s1.0.conv1.conv.weight"] == "trunk_output.block1.block1-0.f.a.0.weight"
    assert_same_outputs(model, ref, size=64)


def test_a_reference_that_registers_its_se_before_its_convs(tmp_path: Path) -> None:
    spec = tiny(tmp_path, "  - {name: block, type: bottleneck, planes: 8, expansion: 2, stride: 2, se: {ratio: 0.25}}\n")
    ours = archspec.compile(spec)
    ref = with_random_stats(Net(SEFirst(ours.block.se.fc1.out_channels), 16))
    report = transfer(ref, ours)
    assert report.ok and report.method == "dataflow"
    mapping = dict(report.transferred)
    assert mapping["block.se.fc1.weight"] == "block.se.1.weight" and mapping["block.se.fc2.bias"] == "block.se.3.bias"
    assert mapping["block.conv1.conv.weight"] == "block.convs.0.0.weight"
    assert mapping["block.shortcut.conv.weight"] == "block.down.0.weight"
    assert_same_outputs(ours, ref)


def test_registration_order_plays_no_part() -> None:
    # torchvision's ResNet-18 with every module's children registered in reverse (fc first, each block's
    # downsample before its convs); Sequentials keep their order, which their forward follows.
    torch.manual_seed(0)
    ref = with_random_stats(torchvision.models.resnet18())
    for module in ref.modules():
        if not isinstance(module, nn.Sequential):
            module._modules = dict(reversed(module._modules.items()))
    assert next(iter(ref.state_dict())) == "fc.weight"
    ours = archspec.build(SPECS / "resnet18.yaml")
    report = transfer(ref, ours)
    assert report.ok and dict(report.transferred)["conv1.conv.weight"] == "conv1.weight"
    assert_same_outputs(ours, ref, size=64)


SIBLINGS = "  - {name: a, type: conv, out: 8, kernel: 3}\n  - {name: b, type: conv, out: 8, kernel: 3}\n"


def siblings_reference() -> nn.Module:
    """Stem and two same-shaped convs, named by position only: nothing in a name tells `a` from `b`."""
    torch.manual_seed(0)
    convs = nn.Sequential(*(nn.Sequential(nn.Conv2d(c, 8, 3, padding=1), nn.ReLU()) for c in (3, 8, 8)))
    return nn.Sequential(convs, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)).eval()


def test_same_shape_siblings_without_names_are_refused_unless_mapped(tmp_path: Path) -> None:
    spec = tiny(tmp_path, SIBLINGS, norm="none")
    ref = siblings_reference()
    ours = archspec.compile(spec)
    with pytest.raises(WeightsError, match=r"cannot tell which weights go where: 'a.conv', 'b.conv' of ours and "
                                           r"'0.1.0', '0.2.0' of theirs all hold bias \[8\], weight \[8, 8, 3, 3\]"):
        transfer(ref.state_dict(), ours)
    # The source's architecture decides: by dataflow, `a` is the first of the two.
    assert transfer(ref, archspec.compile(spec)).method == "dataflow"
    # So does an explicit mapping; the prefixes it does not name (stem, fc) go by unique shapes.
    report = transfer(ref.state_dict(), ours, mapping={"a.conv": "0.1.0", "b.conv": "0.2.0"})
    assert report.ok and report.method == "explicit"
    assert dict(report.transferred)["stem.conv.weight"] == "0.0.0.weight"
    assert_same_outputs(ours, ref)
    # A wrong mapping is the user's word; --verify catches it.
    wrong = archspec.compile(spec)
    transfer(ref.state_dict(), wrong, mapping={"a.conv": "0.2.0", "b.conv": "0.1.0"})
    with pytest.raises(WeightsError, match="verify failed: with the same weights, ours and Sequential differ"):
        load_weights(wrong, ref, verify=True, mapping={"a.conv": "0.2.0", "b.conv": "0.1.0"})


def test_mapping_file_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tiny(tmp_path, SIBLINGS, norm="none")
    weights, mapping = tmp_path / "w.pth", tmp_path / "map.yaml"
    torch.save(siblings_reference().state_dict(), weights)
    spec = str(tmp_path / "tiny.yaml")
    assert main(["build", spec, "--weights", str(weights)]) == 1
    assert "with a line `a.conv: THEIR.PREFIX` for each" in capsys.readouterr().err
    mapping.write_text("a.conv: '0.1.0'\nb.conv: '0.2.0'\n")
    assert main(["build", spec, "--weights", str(weights), "--map", str(mapping)]) == 0
    assert "by explicit (a mapping of 2 prefixes" in capsys.readouterr().out
    mapping.write_text("a.conv: [1, 2]\n")
    assert main(["build", spec, "--weights", str(weights), "--map", str(mapping)]) == 1
    assert f"{mapping}: a mapping file holds one `our.prefix: their.prefix` pair per line" in capsys.readouterr().err


@pytest.fixture(scope="module")
def resnet50_shuffled(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Path]:
    """torchvision's ResNet-50 (norm statistics randomised), saved with its keys in shuffled order."""
    torch.manual_seed(0)
    ref = with_random_stats(torchvision.models.resnet50())
    items = list(ref.state_dict().items())
    random.Random(0).shuffle(items)
    path = tmp_path_factory.mktemp("shuffled") / "resnet50.pth"
    torch.save(dict(items), path)
    return ref, path


def test_a_shuffled_file_loads_exactly_by_the_reference(resnet50_shuffled: tuple[nn.Module, Path]) -> None:
    ref, path = resnet50_shuffled
    model = archspec.build(SPECS / "resnet50.yaml", weights=path)
    assert model.transfer_report.method == "dataflow" and model.transfer_report.source == "torchvision:resnet50"
    assert dict(model.transfer_report.transferred)["layer1.0.shortcut.conv.weight"] == "layer1.0.downsample.0.weight"
    assert_same_outputs(model, ref, size=64)


def test_a_shuffled_file_without_a_reference_is_refused(resnet50_shuffled: tuple[nn.Module, Path]) -> None:
    _, path = resnet50_shuffled
    with pytest.raises(WeightsError, match=f"the weights in {path}: cannot tell which weights go where: 'conv1.norm'"):
        archspec.build(SPECS / "resnet50.yaml", overrides={"reference": None}, weights=path)


SWAPPED = ("  - {name: maxpool, type: pool, op: max, kernel: 3, stride: 2, padding: 1}\n",
           "  - {name: layer1, type: stage, repeat: 2, block: {type: basic, out: 64}}\n")


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("r18") / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return path


def test_a_wrong_spec_fails_verify(resnet18_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # ResNet-18 with its max pool and layer1 swapped: the same layers and shapes, so the weights pair
    # up by dataflow, but not the same network.
    text = (SPECS / "resnet18.yaml").read_text()
    assert SWAPPED[0] + SWAPPED[1] in text
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(text.replace(SWAPPED[0] + SWAPPED[1], SWAPPED[1] + SWAPPED[0]))
    assert main(["build", str(wrong), "--weights", str(resnet18_file)]) == 0  # pairs, unverified
    capsys.readouterr()
    assert main(["build", str(wrong), "--weights", str(resnet18_file), "--verify"]) == 1
    err = capsys.readouterr().err
    assert "verify failed: with the same weights, ours and torchvision:resnet18 differ by" in err
    assert main(["build", str(wrong), "--verify"]) == 1  # without weights: the spec against its reference
    capsys.readouterr()
    assert main(["build", str(SPECS / "resnet18.yaml"), "--weights", str(resnet18_file), "--verify"]) == 0
    assert "verified     outputs equal torchvision:resnet18's within" in capsys.readouterr().out


def test_an_archspec_checkpoint_verifies_against_the_reference(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = tmp_path / "r18.pt"
    assert main(["build", str(SPECS / "resnet18.yaml"), "-o", str(checkpoint)]) == 0
    assert main(["build", str(SPECS / "resnet18.yaml"), "--weights", str(checkpoint), "--verify"]) == 0
    assert "by names (same names); missing 0, unexpected 0, mismatched 0; verified" in capsys.readouterr().out


def test_build_json_shows_the_mapping(resnet18_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", str(SPECS / "resnet18.yaml"), "--weights", str(resnet18_file), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    weights = result["weights"]
    assert weights["method"] == "dataflow" and weights["source"] == "torchvision:resnet18"
    assert len(weights["mapping"]) == 122 and result["output"] == [1, 1000]
    assert {"ours": "layer2.0.shortcut.norm.running_var", "theirs": "layer2.0.downsample.1.running_var"} in weights["mapping"]
    assert weights["summary"].startswith("transferred 122 tensors (11,699,132 values) by dataflow (torchvision:resnet18)")


@pytest.mark.parametrize("dtype", [torch.complex64, torch.int64, torch.bool])
def test_weights_that_do_not_copy_losslessly_are_refused(tmp_path: Path, dtype: torch.dtype) -> None:
    spec = tiny(tmp_path, "")
    model = archspec.compile(spec)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["stem.conv.weight"] = state["stem.conv.weight"].to(dtype)
    before = model.fc.weight.clone()
    with pytest.raises(WeightsError, match=rf"stem.conv.weight is {str(dtype)[6:]}, which does not copy losslessly "
                                           r"into stem.conv.weight \(float32\)"):
        load_weights(model, state)
    assert torch.equal(model.fc.weight, before)  # nothing copied before the refusal
    # A batch norm's int64 step counter loads (int into int).
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["stem.norm.num_batches_tracked"] = torch.tensor(7)
    load_weights(model, state)
    assert model.stem.norm.num_batches_tracked.item() == 7


def test_a_commutative_tie_is_refused() -> None:
    class TwoSame(nn.Module):  # relu(first(x)) + second(x): the same to the dataflow, not in function
        def __init__(self, first: str, second: str) -> None:
            super().__init__()
            self.names = first, second
            for name in self.names:
                self.add_module(name, nn.Conv2d(3, 3, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(getattr(self, self.names[0])(x)) + getattr(self, self.names[1])(x)

    with pytest.raises(WeightsError, match=r"cannot match by dataflow \(ours\): the dataflow has two parts of the "
                                           r"same structure \(x and y\) that a commutative op combines"):
        transfer(TwoSame("a", "b"), TwoSame("x", "y"), input_shape=(3, 4, 4))
    report = transfer(TwoSame("a", "b"), TwoSame("x", "y"), mapping={"x": "a", "y": "b"})
    assert report.ok and dict(report.transferred)["y.weight"] == "b.weight"


def test_a_file_without_batch_norm_counters_loads(resnet18_file: Path, tmp_path: Path) -> None:
    # Older torchvision checkpoints have no num_batches_tracked: still torchvision's state_dict.
    state = {k: v for k, v in torch.load(resnet18_file, weights_only=True).items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "old.pth")
    report = archspec.build(SPECS / "resnet18.yaml", weights=tmp_path / "old.pth").transfer_report
    assert report.ok and report.method == "dataflow" and len(report.transferred) == len(state)


def test_a_strict_misfit_copies_nothing() -> None:
    # torchvision's ResNet-50 into a 10-class resnet50.yaml: everything pairs, the classifier has other
    # shapes. Strict: refused and the model untouched; not strict: all but fc copied.
    torch.manual_seed(0)
    ref = torchvision.models.resnet50()
    model = archspec.build(SPECS / "resnet50.yaml", overrides={"layers.fc.out": 10})
    before = model.conv1.conv.weight.clone()
    with pytest.raises(WeightsError, match=r"^the weights do not fit resnet50, nothing loaded: would transfer 318 "
                                           r"tensors .* \(e.g. our fc.weight is \[10, 2048\] but their fc.weight is \[1000, 2048\]\)"):
        load_weights(model, ref)
    assert torch.equal(model.conv1.conv.weight, before)
    report = load_weights(model, ref, strict=False)
    assert [m[0] for m in report.mismatched] == ["fc.weight", "fc.bias"]
    assert torch.equal(model.conv1.conv.weight, ref.conv1.weight)


def test_a_mapping_to_nothing_is_refused(tmp_path: Path) -> None:
    ours = archspec.compile(tiny(tmp_path, SIBLINGS, norm="none"))
    with pytest.raises(WeightsError, match="the mapping sends 'a.conv' to '0.9', which the weights do not have"):
        load_weights(ours, siblings_reference().state_dict(), mapping={"a.conv": "0.9"})
    with pytest.raises(WeightsError, match="the mapping names 'a.cnv', which is no module of ours with weights"):
        load_weights(ours, siblings_reference().state_dict(), mapping={"a.conv": "0.1.0", "a.cnv": "0.2.0"})


def test_export_and_predict_verify(resnet18_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r18.py"
    assert main(["export", str(SPECS / "resnet18.yaml"), "--format", "python", "-o", str(out), "--no-check",
                 "--weights", str(resnet18_file), "--verify"]) == 0
    assert "by dataflow (torchvision:resnet18); missing 0, unexpected 0, mismatched 0; verified: outputs within" in \
        capsys.readouterr().err
    from PIL import Image

    Image.new("RGB", (64, 48), (120, 30, 200)).save(tmp_path / "a.png")
    # A mapping that swaps two same-shaped convs (the dataflow pairs the rest): the user's word, so it
    # loads, and --verify refuses it.
    wrong = {"layer1.0.conv1.conv": "layer1.0.conv2", "layer1.0.conv2.conv": "layer1.0.conv1"}
    report = load_weights(archspec.build(SPECS / "resnet18.yaml"), resnet18_file, mapping=wrong)
    assert report.ok and report.source == "a mapping of 2 prefixes, dataflow for the rest"
    assert dict(report.transferred)["layer1.0.conv1.conv.weight"] == "layer1.0.conv2.weight"
    (tmp_path / "map.yaml").write_text(json.dumps(wrong))
    assert main(["predict", str(SPECS / "resnet18.yaml"), "--weights", str(resnet18_file), str(tmp_path / "a.png"),
                 "--map", str(tmp_path / "map.yaml"), "--verify"]) == 1
    assert "verify failed" in capsys.readouterr().err


def test_timm_convnext_weights_fit_the_torchvision_shaped_spec() -> None:
    """timm's ConvNeXt-T (LayerNorm2d stem and downsampling, channels-last LayerNorm and Mlp in the blocks, a
    per-channel `gamma` of shape (C,)) goes into specs/convnext_tiny.yaml, written after torchvision's (whose
    `layer_scale` is (C, 1, 1)): paired by dataflow, the lone tensors reshaped, the same outputs."""
    import timm

    ref = timm.create_model("convnext_tiny", pretrained=False).eval()
    state = ref.state_dict()
    state.update(randomise_norms(state))  # the 1e-6 gammas would hide every block
    ref.load_state_dict(state)
    ours = archspec.build(SPECS / "convnext_tiny.yaml").eval()
    report = transfer(ref, ours, input_shape=(3, 64, 64))
    assert report.ok and report.method == "dataflow" and report.values == sum(t.numel() for t in state.values())
    assert ("stage1.0.layer_scale.gamma", "stages.0.blocks.0.gamma") in report.transferred
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected, got = ref(x), ours(x)
    assert (got - expected).abs().max().item() <= 1e-4 * expected.abs().max().item()
    assert verify_transfer(ours, ref, input_shape=(3, 64, 64)) <= 1e-4


class Dense(nn.Module):
    """Three 3x3 convs, each reading the input and every earlier conv's output, concatenated: all at once from a
    list of features (torchvision's DenseNet) or one concat at a time (a spec's inception with an identity branch)."""

    def __init__(self, at_once: bool) -> None:
        super().__init__()
        self.at_once, self.stem = at_once, conv_bn(3, 4)
        layers = nn.ModuleList(conv_bn(4 + 4 * i, 4, 3) for i in range(3))
        self.layers, self.grow = (layers, None) if at_once else (None, layers)  # other names: not paired by name
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [self.stem(x)]
        for layer in self.layers or self.grow:
            features.append(layer(torch.cat(features, 1) if self.at_once else features[-1]))
            if not self.at_once:
                features[-2:] = [torch.cat(features[-2:], 1)]
        return self.fc(torch.cat(features, 1).mean((2, 3)))


def test_dense_concatenation_all_at_once_or_one_at_a_time_transfers_by_dataflow() -> None:
    ref, ours = Dense(at_once=True).eval(), Dense(at_once=False).eval()
    ref.load_state_dict({**ref.state_dict(), **randomise_norms(ref.state_dict())})
    report = transfer(ref, ours, input_shape=(3, 16, 16))
    assert report.ok and report.method == "dataflow"
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=1e-5)


class ThreeConvs(nn.Module):
    def __init__(self, merge: Any) -> None:
        super().__init__()
        self.a, self.b, self.c, self.merge = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 4, 1), nn.Conv2d(3, 4, 1), merge

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.merge(self.a(x), self.b(x), self.c(x))


@pytest.mark.parametrize("merge, operands", [
    (lambda a, b, c: torch.cat([torch.cat([a, b], 1), c], 1), ["a", "b", "c"]),
    (lambda a, b, c: torch.cat([torch.cat([a, b], -3), c], dim=1), ["a", "b", "c"]),  # dim -3 of 4 is dim 1
    (lambda a, b, c: torch.cat([torch.cat([a, b], 2), c.repeat(1, 1, 2, 1)], 1), ["cat", "c"]),  # another dim
    (lambda a, b, c: torch.cat([torch.cat([a, b], 1).chunk(2, 1)[0], c], 1), ["cat", "c"]),  # a part of it
], ids=["same-dim", "negative-dim", "other-dim", "part"])
def test_a_concat_of_a_concat_is_one_concat_only_along_the_same_dim(merge: Any, operands: list[str]) -> None:
    model = ThreeConvs(merge)
    signatures = {name: tuple((role, tuple(t.shape)) for role, t in m.state_dict().items())
                  for name, m in model.named_children()}
    nodes = trace(model, (3, 8, 8), signatures)
    last = nodes[-1]
    assert last.kind == "cat" and last.dim == 1
    assert [nodes[i].groups[0] if nodes[i].kind == "param" else nodes[i].kind for i in last.operands] == operands
