"""The compiled module: names from the spec, straight-line forward, any device/dtype, init schemes."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torchvision

import archspec
from archspec.backend.init import SCHEMES
from archspec.backend.interop import WeightsError, transfer
from archspec.language.spec import INIT_SCHEMES
from conftest import SPECS


def test_module_names_mirror_the_spec() -> None:
    model = archspec.build(SPECS / "resnet50.yaml", device="meta")
    names = set(model.state_dict())
    assert {"conv1.conv.weight", "conv1.norm.running_var", "layer3.5.conv2.conv.weight",
            "layer2.0.shortcut.conv.weight", "fc.weight"} <= names
    assert "layer2.1.shortcut.conv.weight" not in names  # identity shortcut after the first block
    assert isinstance(model.get_submodule("layer1.0.conv2.conv"), torch.nn.Conv2d)


def test_meta_build_is_instant_and_allocates_nothing() -> None:
    model = archspec.build(SPECS / "resnext101_32x8d.yaml", device="meta")
    assert all(p.is_meta for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) == 88_791_336


def test_dtype() -> None:
    model = archspec.build(SPECS / "resnet18.yaml", dtype=torch.float64)
    assert {p.dtype for p in model.parameters()} == {torch.float64}
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 64, 64, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize("name,size", [("resnet50", 64), ("vgg11_bn", 32), ("alexnet_original", 227)])
def test_forward_is_straight_line(name: str, size: int) -> None:
    """torch.fx traces only code without Python branching on tensor values (at any input size: AlexNet's
    classifier takes only its own)."""
    spec = archspec.load(SPECS / f"{name}.yaml", overrides={"input.size": size})
    model = archspec.build(spec).eval()
    traced = torch.fx.symbolic_trace(model)
    x = torch.randn(1, *spec.input.shape)
    with torch.no_grad():
        assert torch.equal(traced(x), model(x))


def test_every_init_scheme_has_an_implementation() -> None:
    assert set(INIT_SCHEMES) == set(SCHEMES)


def test_resnet_init_matches_torchvision() -> None:
    torch.manual_seed(0)
    ours = archspec.build(SPECS / "resnet50.yaml")
    ref = torchvision.models.resnet50()
    conv, ref_conv = ours.get_submodule("layer3.0.conv2.conv"), ref.layer3[0].conv2
    fan_out = conv.out_channels * 9
    for weight in (conv.weight, ref_conv.weight):
        assert weight.std().item() == pytest.approx(math.sqrt(2 / fan_out), rel=0.05)
    norm = ours.get_submodule("layer3.0.conv2.norm")
    assert torch.equal(norm.weight, torch.ones_like(norm.weight)) and torch.equal(norm.bias, torch.zeros_like(norm.bias))
    assert ours.fc.weight.abs().max().item() <= 1 / math.sqrt(2048)  # nn.Linear's own uniform init, as torchvision


def test_vgg_init_matches_torchvision() -> None:
    model = archspec.build(SPECS / "vgg11.yaml")
    assert model.fc7.weight.std().item() == pytest.approx(0.01, rel=0.02)
    assert torch.count_nonzero(model.fc7.bias) == 0
    conv = model.get_submodule("stage3.0.conv")
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (256 * 9)), rel=0.05)
    assert torch.count_nonzero(conv.bias) == 0


def test_training_step_runs() -> None:
    model = archspec.build(SPECS / "resnet18.yaml", overrides={"layers.fc.out": 5}).train()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(4, 3, 64, 64), torch.tensor([0, 1, 2, 3])
    before = model.fc.weight.clone()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    optimiser.step()
    assert not torch.equal(before, model.fc.weight)
    assert model.get_submodule("conv1.norm").num_batches_tracked.item() == 1


def test_transfer_report_names_what_did_not_fit() -> None:
    ours = archspec.build(SPECS / "resnet50.yaml", overrides={"layers.fc.out": 10})
    report = transfer(torchvision.models.resnet50(), ours)
    assert not report.ok
    assert [m[:2] for m in report.mismatched] == [("fc.weight", "fc.weight"), ("fc.bias", "fc.bias")]
    assert report.mismatched[0][2:] == ((10, 2048), (1000, 2048))
    assert len(report.transferred) == 318 and not report.missing and not report.unexpected
    with pytest.raises(ValueError, match="do not fit"):
        archspec.build(SPECS / "resnet50.yaml", overrides={"layers.fc.out": 10}, weights=torchvision.models.resnet50().state_dict())


def test_transfer_report_missing_and_unexpected() -> None:
    # VGG-11's weights (our names) into VGG-11-BN: every conv and linear pairs by name, the BN layers have no source.
    report = transfer(archspec.build(SPECS / "vgg11.yaml", device="meta").state_dict(),
                      archspec.build(SPECS / "vgg11_bn.yaml", device="meta"))
    assert len(report.missing) == 8 * 5 and not report.unexpected and not report.mismatched
    assert report.missing[0] == "stage1.0.norm.weight"
    assert "missing 40" in str(report) and "by names" in str(report)


def test_transfer_refuses_a_model_of_another_dataflow() -> None:
    # torchvision's VGG-11 into VGG-11-BN: the dataflow differs at the first batch norm, which is refused.
    with pytest.raises(WeightsError, match=r"differs from VGG's at parametrised layer 2 \(of 19 and 11\): ours "
                                           r"'stage1.0.norm' \{bias: \[64\].*theirs 'features.3' \{bias: \[128\]"):
        transfer(torchvision.models.vgg11(), archspec.build(SPECS / "vgg11_bn.yaml", device="meta"))


def test_torchvision_state_dict_file_loads(tmp_path: Path) -> None:
    ref = torchvision.models.resnet18().eval()
    torch.save(ref.state_dict(), tmp_path / "resnet18.pth")
    model = archspec.build(SPECS / "resnet18.yaml", weights=tmp_path / "resnet18.pth").eval()
    assert model.transfer_report.ok
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        assert (model(x) - ref(x)).abs().max().item() <= 1e-5


def container_attributes() -> tuple[set[str], set[str]]:
    """What a child module's name must not be: every public attribute (class and instance) of the
    containers whose children a spec names and what archspec.build sets on the model; then what a
    residual's body layers (children of archspec.backend.nn.Residual) must not be besides."""
    import re
    import textwrap

    from archspec.backend.nn import Concat, Residual

    name = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")  # blocks/base.py's Name: nothing else can collide
    weights = archspec.build(SPECS / "resnet18.yaml", device="meta").state_dict()
    model = archspec.build(SPECS / "resnet18.yaml", device="meta", weights=weights)  # + spec, transfer_report

    def attributes(container: torch.nn.Module) -> set[str]:
        return {n for n in [*dir(type(container)), *vars(container)] if name.match(n)}

    names = set().union(*map(attributes, [torch.nn.Module(), torch.nn.Sequential(), Concat([]), model]))  # model: a Network
    residual = Residual([], torch.nn.Identity(), torch.nn.ReLU())
    residual_names = (attributes(residual) | set(residual._modules)) - names  # + its children shortcut, act
    print(textwrap.fill(" ".join(sorted(names)), 112, initial_indent="    ", subsequent_indent="    "))
    return names, residual_names


def test_reserved_names_are_every_container_attribute(capsys: pytest.CaptureFixture[str]) -> None:
    """RESERVED_NAMES is text (validation needs no torch), derived from the installed torch: a name it
    lacks would validate, then fail to build. On failure, the derived list is printed to paste."""
    from archspec.language.blocks.base import RESERVED_NAMES, RESIDUAL_RESERVED

    derived, residual = container_attributes()
    assert derived <= RESERVED_NAMES, f"missing: {sorted(derived - RESERVED_NAMES)}; paste:\n{capsys.readouterr().out}"
    assert residual <= RESIDUAL_RESERVED, f"missing from RESIDUAL_RESERVED: {sorted(residual - RESIDUAL_RESERVED)}"
    assert {"append", "extend", "insert", "pop", "training", "spec", "transfer_report"} <= derived
    assert {"body", "drop_rate", "shortcut", "act"} == residual


@pytest.mark.parametrize("where", ["top", "sequence", "residual", "branch", "aux"])
def test_every_reserved_name_is_refused_where_it_is(tmp_path: Path, where: str) -> None:
    from archspec.language.blocks.base import RESERVED_NAMES, RESIDUAL_RESERVED
    from archspec.errors import SpecError

    reserved = RESERVED_NAMES | (RESIDUAL_RESERVED if where == "residual" else set())
    for name in sorted(reserved | {"append", "extend", "insert", "pop"}):  # these validated, then failed to build
        path = tmp_path / "net.yaml"
        path.write_text(named_spec(name, where))
        with pytest.raises(SpecError) as caught:
            archspec.load(path)
        assert str(caught.value).startswith(f"{path}:"), str(caught.value)  # located: FILE:LINE:COL
        assert f"'{name}' is reserved" in str(caught.value)


def named_spec(name: str, where: str) -> str:
    """A small spec with a block (or a branch) called `name` at `where`."""
    conv = "{type: conv, out: 4, kernel: 3, padding: 1, name: %s}"
    layer = {"top": conv % name,
             "sequence": "{type: sequence, name: seq, layers: [%s]}" % (conv % name),
             "residual": "{type: residual, name: res, body: [%s]}" % (conv % name),
             "branch": "{type: inception, name: mix, branches: {%s: [%s], other: []}}" % (name, conv % "c"),
             "aux": conv % "stem"}[where]
    aux = ("aux_heads:\n  - {name: head, tap: stem, layers: [%s, {type: global_pool}, {type: flatten}, "
           "{type: linear, out: 2}]}\n" % (conv % name)) if where == "aux" else ""
    return ("name: net\ninput: {channels: 4, size: 8}\nlayers:\n"
            f"  - {layer}\n  - {{type: global_pool}}\n  - {{type: flatten}}\n  - {{type: linear, out: 2, name: fc}}\n"
            + aux)
