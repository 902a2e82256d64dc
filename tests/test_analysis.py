"""Analysis without torch, checked against the compiled modules and against the papers."""
from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

import archspec
from archspec.language.blocks.base import window_out
from conftest import REPRESENTATIVES, SPECS, spec_params


# One network per family (its members build the same modules at other widths and depths; test_summary checks every
# network's rows against its module), and the networks of no family.
@pytest.mark.parametrize("path", spec_params(REPRESENTATIVES))
def test_every_node_matches_its_compiled_module(path: Path) -> None:
    """Each analysed block's params equal its submodule's numel; its output shape is what torch gives."""
    spec = archspec.load(path)
    model = archspec.compile(spec, device="meta")
    root = spec.analyse()
    for node in root.walk():
        module = model if node is root else model.get_submodule(node.path)
        assert sum(p.numel() for p in module.parameters()) == node.params, node.path
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [model.get_submodule(n.path).register_forward_hook(
        lambda m, i, o, path=n.path: shapes.__setitem__(path, tuple(o.shape[1:]))) for n in root.walk() if n is not root]
    with torch.no_grad():
        model(torch.empty(2, *spec.input.shape, device="meta"))  # training mode: the aux heads run too
    for hook in hooks:
        hook.remove()
    for node in root.walk():
        if node is not root:
            assert shapes[node.path] == node.out_shape, node.path


def test_alexnet_original_matches_the_paper() -> None:
    """Krizhevsky et al. 2012, Figure 2: 60 million parameters, 650,000 neurons.

    Hand derivation (weights + biases; conv2/4/5 see only their own GPU's half, groups=2):
      conv1  96 * 3*11*11 + 96       =     34,944
      conv2 256 * 48*5*5 + 256       =    307,456
      conv3 384 * 256*3*3 + 384      =    885,120
      conv4 384 * 192*3*3 + 384      =    663,936
      conv5 256 * 192*3*3 + 256      =    442,624
      fc6  4096 * 9216 + 4096        = 37,752,832
      fc7  4096 * 4096 + 4096        = 16,781,312
      fc8  1000 * 4096 + 1000        =  4,097,000
      total                          = 60,965,224  ("60 million")
    """
    spec = archspec.load(SPECS / "alexnet_original.yaml")
    by_layer = {n.name: n.params for n in spec.analyse().children if n.params}
    assert by_layer == {"conv1": 34_944, "conv2": 307_456, "conv3": 885_120, "conv4": 663_936,
                        "conv5": 442_624, "fc6": 37_752_832, "fc7": 16_781_312, "fc8": 4_097_000}
    assert spec.params == 60_965_224
    # The feature maps of Figure 2: 55x55x96 -> 27x27x256 -> 13x13x384 -> 13x13x384 -> 13x13x256.
    shapes = {n.name: n.out_shape for n in spec.analyse().children}
    assert shapes["conv1"] == (96, 55, 55) and shapes["conv2"] == (256, 27, 27)
    assert shapes["conv3"] == shapes["conv4"] == (384, 13, 13) and shapes["conv5"] == (256, 13, 13)
    # "650,000 neurons": the conv and fc outputs (the paper counts the 224-input net loosely).
    neurons = sum(torch.Size(n.out_shape).numel() for n in spec.analyse().children if n.type in ("conv", "linear"))
    assert 600_000 < neurons < 700_000


def test_alexnet_original_compiles_with_two_groups() -> None:
    model = archspec.build(SPECS / "alexnet_original.yaml")
    assert [m.groups for m in model.modules() if isinstance(m, torch.nn.Conv2d)] == [1, 2, 1, 2, 2]
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 227, 227)).shape == (1, 1000)


@pytest.mark.parametrize("size,kernel,stride,padding,ceil", [
    c for c in itertools.product([1, 2, 4, 5, 6, 7, 13, 14, 55, 56], [1, 2, 3, 5, 7], [1, 2, 3], [0, 1, 2, 3], [False, True])
    if c[3] <= c[1] // 2])  # torch's own rule for pooling padding
def test_window_arithmetic_equals_torch(size: int, kernel: int, stride: int, padding: int, ceil: bool) -> None:
    try:
        expected = torch.nn.functional.max_pool2d(torch.zeros(1, 1, size, size), kernel, stride, padding,
                                                  ceil_mode=ceil).shape[-1]
    except RuntimeError:
        expected = 0  # torch refuses: the window does not fit
    assert max(window_out(size, kernel, stride, padding, 1, ceil), 0) == expected


def test_analysis_does_not_need_torch_tensors() -> None:
    spec = archspec.load(SPECS / "resnet152.yaml")
    counts = {t: sum(1 for n in spec.analyse().walk() if n.type == t) for t in ("bottleneck", "conv")}
    assert counts["bottleneck"] == 3 + 8 + 36 + 3
    assert counts["conv"] == 1 + 3 * 50 + 4  # stem, three per block, four projection shortcuts


SENET_BLOCK = """
name: t
input: {channels: 3, size: 32}
layers:
  - {name: stem, type: conv, out: 256, kernel: 3, norm: batch, activation: relu}
  - {name: block, type: bottleneck, planes: 128, stride: 2, groups: 64, width_per_group: 4, KEYS}
"""


def test_reduce_first_and_a_3x3_strided_projection() -> None:
    """SENet-154's layer2.0 (timm's Bottleneck with reduce_first=2 and down_kernel_size=3), by hand."""
    spec = archspec.loads(SENET_BLOCK.replace("KEYS", "reduce_first: 2, projection_kernel: 3"))
    block = spec.analyse().children[1]
    convs = {n.name: n for n in block.walk() if n.type == "conv"}
    width, first, out, c = 512, 256, 512, 256  # width int(128*4/64)*64; conv1 width // 2; out 128*4
    assert [convs[k].out_shape for k in ("conv1", "conv2", "conv3", "shortcut")] == [
        (first, 32, 32), (width, 16, 16), (out, 16, 16), (out, 16, 16)]
    assert convs["conv1"].params == c * first + 2 * first
    assert convs["conv2"].params == 9 * first * (width // 64) + 2 * width
    assert convs["shortcut"].params == 9 * c * out + 2 * out  # a 3x3 projection
    assert convs["shortcut"].macs == 9 * c * out * 16 * 16
    assert block.block.hyper() == "256->512->512 g64 /2"
    model = archspec.compile(spec)
    projection = model.get_submodule("block.shortcut.conv")
    assert (projection.kernel_size, projection.stride, projection.padding) == ((3, 3), (2, 2), (1, 1))
    assert sum(p.numel() for p in model.parameters()) == spec.params
    # A projection that does not stride stays 1x1 (timm's downsample_conv), whatever projection_kernel says.
    flat = archspec.loads(SENET_BLOCK.replace("stride: 2, ", "").replace("KEYS", "projection_kernel: 3"))
    shortcut = next(n for n in flat.analyse().walk() if n.name == "shortcut")
    assert shortcut.params == c * out + 2 * out


def test_reduce_first_and_projection_kernel_errors() -> None:
    with pytest.raises(archspec.SpecError) as info:
        archspec.loads(SENET_BLOCK.replace("KEYS", "reduce_first: 1024")).analyse()
    assert info.value.path == "block" and "'out' would be 0" in info.value.message
    with pytest.raises(archspec.SpecError) as info:
        archspec.loads(SENET_BLOCK.replace("KEYS", "projection_kernel: 2"))
    assert "projection_kernel" in str(info.value) and "1, 3, 5 or 7" in str(info.value)


def test_conv_expansion_follows_its_input_width() -> None:
    text = ("name: t\ninput: {channels: 3, size: 8}\nlayers:\n  - {name: a, type: conv, out: 40, kernel: 3}\n"
            "  - {name: b, type: conv, expansion: 6, kernel: 1, norm: batch, activation: hardswish}\n")
    spec = archspec.loads(text)
    b = spec.analyse().children[1]
    assert b.out_shape == (240, 8, 8) and b.params == 40 * 240 + 2 * 240 and b.block.hyper() == "1x1 x6"
    scaled = archspec.loads(text, overrides={"scaling.width": 0.5}).analyse().children[1]
    assert scaled.out_shape[0] == 6 * 24  # 6 x make_divisible(40 * 0.5, 8), not make_divisible(240 * 0.5, 8)
    model = archspec.compile(spec)
    assert model.b.conv.out_channels == model.b.norm.num_features == 240
    for fields, message in (("out: 8, expansion: 2", "not both"), ("", "missing required field 'out' (or 'expansion'"),
                            ("expansion: 100000", "makes 4,000,000 channels from 40, over the limit of 1,000,000")):
        bad = text.replace("expansion: 6", fields).replace("{name: b, type: conv, , ", "{name: b, type: conv, ")
        with pytest.raises(archspec.SpecError) as info:
            archspec.loads(bad)
        assert info.value.path == "b" and message in info.value.message, info.value
