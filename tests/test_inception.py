"""Inception family: GoogLeNet and Inception-v3 against torchvision (aux heads on and off, eval and
training), BN-Inception against its published figures, and the paper-exact GoogLeNet."""
from __future__ import annotations

import pytest
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

import archspec
from archspec.backend.interop import transfer
from conftest import SPECS

TORCHVISION = {"googlenet": torchvision.models.googlenet, "inception_v3": torchvision.models.inception_v3}
# torchvision's weights metadata: parameters without the aux heads (GoogLeNet) / with (Inception-v3).
PARAMS = {("googlenet", True): 13_004_888, ("googlenet", False): 6_624_904,
          ("inception_v3", True): 27_161_264, ("inception_v3", False): 23_834_568}


def _pair(name: str, aux: bool) -> tuple[torch.nn.Module, torch.nn.Module, archspec.Spec]:
    spec = archspec.load(SPECS / f"{name}.yaml", overrides=None if aux else ["aux_heads=[]"])
    ref = TORCHVISION[name](weights=None, aux_logits=aux, init_weights=True)
    ours = archspec.compile(spec)
    report = transfer(ref, ours)
    assert report.ok, str(report)
    return ref, ours, spec


@pytest.mark.parametrize("aux", [True, False], ids=["aux", "no_aux"])
@pytest.mark.parametrize("name", ["googlenet", "inception_v3"])
def test_matches_torchvision_in_eval(name: str, aux: bool) -> None:
    torch.manual_seed(0)
    ref, ours, spec = _pair(name, aux)
    assert spec.params == sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
    assert spec.params == PARAMS[name, aux]
    published = torchvision.models.get_model_weights(name).DEFAULT.meta["_ops"]
    assert round(spec.macs / 1e9, 3) == published
    ref.eval(), ours.eval()
    counter = FlopCounterMode(display=False)
    x = torch.randn(2, *spec.input.shape)
    with torch.no_grad():
        with counter:
            got = ours(x)
        expected = ref(x)
    assert counter.get_total_flops() == 2 * 2 * spec.macs  # batch of 2, aux heads idle in eval
    assert isinstance(got, torch.Tensor) and (got - expected).abs().max().item() <= 1e-4


@pytest.mark.parametrize("name", ["googlenet", "inception_v3"])
def test_training_mode_returns_main_and_aux_logits_like_torchvision(name: str) -> None:
    torch.manual_seed(0)
    ref, ours, spec = _pair(name, True)
    for model in (ref, ours):  # dropout off, so both see the same computation
        for m in model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
    if name == "googlenet":  # torchvision applies the aux head's 0.7 dropout functionally
        for aux in (ref.aux1, ref.aux2):
            aux.dropout.p = 0.0
    ref.train(), ours.train()
    x = torch.randn(2, *spec.input.shape)  # two values per channel are enough for batch norm in training
    expected, got = ref(x), ours(x)
    assert isinstance(got, tuple) and len(got) == len(expected) == 1 + len(spec.aux_heads)
    for ours_out, ref_out in zip(got, expected):
        assert (ours_out - ref_out).abs().max().item() <= 1e-4


def test_aux_heads_are_counted_apart() -> None:
    googlenet = archspec.load(SPECS / "googlenet.yaml")
    assert googlenet.aux_params == 13_004_888 - 6_624_904
    assert [h.name for h in googlenet.aux_heads] == ["aux2", "aux1"]  # torchvision's output order
    assert googlenet.aux_macs > 0 and googlenet.macs == archspec.load(SPECS / "googlenet.yaml", overrides=["aux_heads=[]"]).macs
    assert archspec.load(SPECS / "inception_v3.yaml").aux_params == 3_326_696


def test_inception_entry_point_is_googlenet() -> None:
    assert archspec.load(SPECS / "inception.yaml").params == archspec.load(SPECS / "googlenet.yaml").params


def test_inception_bn_against_published_figures() -> None:
    """BN-Inception (Ioffe & Szegedy 2015, Figure 5), docs/inception_bn.md.

    The Caffe model's port (Cadene's pretrainedmodels `bninception`, convs with bias + BN) has
    11,295,240 parameters; with bias-free convs (BN supplies the shift) 11,285,224; both 2.033 GMACs
    at 224x224 (shared/reference/reference-numbers.md section 5). Figure 5's module outputs:
    3a 256, 3b 320, 3c 576, 4a-4b 576, 4c-4d 608 (the figure prints 576), 4e 1056 (prints 1024), 5a-5b 1024.
    """
    spec = archspec.load(SPECS / "inception_bn.yaml")
    assert spec.params == 11_295_240
    assert archspec.load(SPECS / "inception_bn.yaml", overrides=["defaults.conv.bias=false"]).params == 11_285_224
    assert round(spec.macs / 1e9, 3) == 2.033
    widths = {n.name: n.out_shape for n in spec.analyse().children if n.type == "inception"}
    assert widths == {"inception3a": (256, 28, 28), "inception3b": (320, 28, 28), "inception3c": (576, 14, 14),
                      "inception4a": (576, 14, 14), "inception4b": (576, 14, 14), "inception4c": (608, 14, 14),
                      "inception4d": (608, 14, 14), "inception4e": (1056, 7, 7), "inception5a": (1024, 7, 7),
                      "inception5b": (1024, 7, 7)}
    model = archspec.compile(spec).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        out = model(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 1000) and counter.get_total_flops() == 2 * spec.macs
    assert sum(isinstance(m, torch.nn.Conv2d) for m in model.modules()) == 69  # as the port
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 69


def test_googlenet_paper_follows_table_1() -> None:
    """Szegedy et al. 2014, Table 1: true 5x5 convs, no BN, module widths 256 ... 1024, 7x7 average pool.
    Table 1's params column sums to about 6.8 M for the trunk; its rows are loose (conv1 is listed as
    2.7K where 7*7*3*64 = 9.4K), so the trunk is checked to 5 %."""
    spec = archspec.load(SPECS / "googlenet_paper.yaml")
    widths = [n.out_shape[0] for n in spec.analyse().children if n.type == "inception_v1"]
    assert widths == [256, 480, 512, 512, 512, 528, 832, 832, 1024]
    trunk = spec.params - spec.aux_params
    assert trunk == pytest.approx(6.8e6, rel=0.05)
    model = archspec.compile(spec)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert model.get_submodule("inception3a.branch3.conv.conv").kernel_size == (5, 5)
    model.train()
    main, aux1, aux2 = model(torch.randn(2, 3, 224, 224))
    assert main.shape == aux1.shape == aux2.shape == (2, 1000)


def test_nested_inception_and_asymmetric_kernels() -> None:
    spec = archspec.load(SPECS / "inception_v3.yaml")
    node = next(n for n in spec.analyse().walk() if n.path == "Mixed_7b.branch3x3.1")
    assert node.type == "inception" and node.out_shape == (768, 8, 8)
    assert [c.path for c in node.children] == ["Mixed_7b.branch3x3.1.a", "Mixed_7b.branch3x3.1.b"]
    model = archspec.compile(spec, device="meta")
    assert model.get_submodule("Mixed_6b.branch7x7.1.conv").kernel_size == (1, 7)


def test_aux_head_tap_must_name_a_layer() -> None:
    with pytest.raises(archspec.SpecError, match="'tap' names no top-level layer: 'inception4x'; did you mean"):
        archspec.load(SPECS / "googlenet.yaml", overrides=["aux_heads.0.tap=inception4x"])
