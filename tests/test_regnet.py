"""RegNet as a design space (issue 18): the `regnet` block derives every width, depth, group and SE width as
torchvision's `BlockParams` does (the fifteen bundled networks and thousands of other parameter sets), a new
RegNet asked for by its parameters equals torchvision's RegNet with those parameters, and bad parameters are
one located line."""
from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
import torch
import torchvision
from torchvision.models import regnet as tv_regnet

import archspec
from archspec.backend.interop import transfer
from archspec.cli import main
from archspec.language.blocks.regnet import RegNet, plan, quantise
from conftest import SPECS

BASE = SPECS / "regnet.yaml"
ROWS = list(archspec.load(BASE, analyse=False).variants)


def _builder_params(name: str, monkeypatch: pytest.MonkeyPatch) -> tuple[dict, tv_regnet.BlockParams]:
    """The arguments torchvision's builder `regnet_NAME` gives `BlockParams.from_init_params`, and its result
    (no model is built)."""
    seen: dict = {}
    derive = tv_regnet.BlockParams.from_init_params

    def recording(**kwargs: object) -> tv_regnet.BlockParams:
        seen.update(kwargs)
        return derive(**kwargs)

    monkeypatch.setattr(tv_regnet.BlockParams, "from_init_params", recording)
    monkeypatch.setattr(tv_regnet, "_regnet", lambda params, *args, **kwargs: params)
    return seen, getattr(torchvision.models, f"regnet_{name}")()


def _trunk(spec: archspec.Spec) -> RegNet:
    return next(layer for layer in spec.layers if layer.type == "regnet")


def test_the_table_has_torchvisions_fifteen() -> None:
    assert sorted(ROWS) == sorted(n.removeprefix("regnet_") for n in torchvision.models.list_models()
                                  if n.startswith("regnet_"))
    assert sorted(p.stem for p in SPECS.glob("regnet_*.yaml")) == sorted(f"regnet_{row}" for row in ROWS)


@pytest.mark.parametrize("row", ROWS)
def test_each_row_derives_torchvisions_stages(row: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The row's parameters are the builder's, and every stage's depth, width, group width, bottleneck width,
    groups and SE squeeze width are what torchvision's RegNet makes of them."""
    spec = archspec.load(SPECS / f"regnet_{row}.yaml")
    assert spec.reference == f"torchvision:regnet_{row}" and spec.family == ("RegNetY" if row[0] == "y" else "RegNetX")
    trunk = _trunk(spec)
    kwargs, params = _builder_params(row, monkeypatch)
    assert (trunk.depth, trunk.w0, trunk.wa, trunk.wm, trunk.group_width, trunk.se_ratio) == (
        kwargs["depth"], kwargs["w_0"], kwargs["w_a"], kwargs["w_m"], kwargs["group_width"], kwargs.get("se_ratio"))
    stages = trunk.stages("")
    assert [s.depth for s in stages] == params.depths
    assert [s.width for s in stages] == params.widths
    assert [s.group_width for s in stages] == params.group_widths
    # Each block as torchvision's ResBottleneckBlock builds it, read from the analysis (what is compiled).
    trunk_node = next(n for n in spec.analyse().children if n.type == "regnet")
    width_in = trunk_node.in_shape[0]
    for stage, node, w, g, b in zip(stages, trunk_node.children, params.widths, params.group_widths,
                                    params.bottleneck_multipliers):
        inner = int(round(w * b))  # torchvision's BottleneckTransform
        for block in node.children:
            conv2 = next(c for c in block.children if c.name == "conv2")
            assert (block.out_shape[0], conv2.out_shape[0], conv2.block.groups) == (w, inner, inner // g)
            se = [c for c in block.children if c.name == "se"]
            if trunk.se_ratio:
                assert se[0].block.squeeze == int(round(trunk.se_ratio * width_in))
            else:
                assert se == []
            width_in = w
        assert stage.inner == inner


def _torchvision_quantised(depth: int, w0: int, wa: float, wm: float) -> tuple[list[float], list[float], list[int]]:
    """The first lines of torchvision's `from_init_params` (float32 tensors)."""
    widths_cont = torch.arange(depth) * wa + w0
    capacity = torch.round(torch.log(widths_cont / w0) / math.log(wm))
    widths = (torch.round(torch.divide(w0 * torch.pow(wm, capacity), 8)) * 8).int().tolist()
    return widths_cont.tolist(), capacity.tolist(), widths


def test_the_derivation_equals_torchvisions_on_random_parameters() -> None:
    """3,000 parameter sets around the paper's ranges (and past them): the float32 quantisation, the stages and the
    group-width adjustment agree with torchvision's exactly."""
    rng = random.Random(18)
    for _ in range(3000):
        depth, w0 = rng.randint(1, 40), 8 * rng.randint(1, 64)
        wa, wm = round(rng.uniform(0, 250), rng.choice([0, 1, 2, 3])), round(rng.uniform(1.05, 4), rng.choice([1, 2, 3]))
        group_width, multiplier = rng.choice([1, 3, 8, 16, 24, 56, 120, 264]), rng.choice([1.0, 0.25, 0.5, 0.75, 2.0, 4.0])
        ours = quantise(depth, w0, wa, wm)
        assert (ours.continuous, ours.steps, ours.widths) == _torchvision_quantised(depth, w0, wa, wm)
        params = tv_regnet.BlockParams.from_init_params(depth, w0, wa, wm, group_width, multiplier)
        stages = plan(depth, w0, wa, wm, group_width, multiplier)
        assert [s.depth for s in stages] == params.depths and [s.width for s in stages] == params.widths
        assert [s.group_width for s in stages] == params.group_widths
        # torchvision's BottleneckTransform: w_b = int(round(width * multiplier)), groups = w_b // group width
        assert [(s.inner, s.groups) for s in stages] == [
            (int(round(w * multiplier)), int(round(w * multiplier)) // g) for w, g in zip(params.widths, params.group_widths)]


NEW = {"layers.trunk.depth": 7, "layers.trunk.w0": 16, "layers.trunk.wa": 12.5, "layers.trunk.wm": 2.2,
       "layers.trunk.group_width": 6, "layers.trunk.bottleneck_multiplier": 0.5, "layers.trunk.se_ratio": 0.3,
       "input.size": 64}


def test_a_new_regnet_by_its_parameters_equals_torchvisions() -> None:
    """A RegNet none of the fifteen is (bottleneck multiplier 0.5, group width 6, SE ratio 0.3: round(0.3 * 32) = 10,
    not floor), asked for with --set: parameters, MACs and outputs equal torchvision's RegNet of those parameters."""
    torch.manual_seed(0)
    spec = archspec.load(BASE, overrides=NEW)
    ref = tv_regnet.RegNet(tv_regnet.BlockParams.from_init_params(
        depth=7, w_0=16, w_a=12.5, w_m=2.2, group_width=6, bottleneck_multiplier=0.5, se_ratio=0.3)).eval()
    ours = archspec.compile(spec).eval()
    assert spec.params == sum(p.numel() for p in ref.parameters()) == sum(p.numel() for p in ours.parameters())
    for m in ref.modules():  # normalisation statistics and affine values randomised, as tests/test_reference.py does
        if isinstance(m, torch.nn.BatchNorm2d):
            for t in (m.running_mean, m.weight, m.bias):
                t.data.uniform_(-0.5, 0.5)
            m.running_var.data.uniform_(0.5, 1.5)
    report = transfer(ref, ours)
    assert report.ok and report.method == "dataflow", str(report)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected, got = ref(x), ours(x)
    assert (got - expected).abs().max().item() <= 1e-4 * expected.abs().max().item()


def test_depth_scales_the_design_spaces_depth() -> None:
    """scaling.depth multiplies d (rounded up) and the stages are derived again."""
    scaled = archspec.load(SPECS / "regnet_y_8gf.yaml", overrides={"scaling.depth": 1.5})
    direct = archspec.load(SPECS / "regnet_y_8gf.yaml", overrides={"layers.trunk.depth": 26})
    assert _trunk(scaled).depth == 26 and (scaled.params, scaled.macs) == (direct.params, direct.macs)
    assert [(f.path, f.field, f.base, f.scaled) for f in scaled.scaled_fields if f.scaled != f.base] == [
        ("trunk", "depth", 17, 26)]


@pytest.mark.parametrize("override, message", [
    ({"layers.trunk.wm": 1.0}, r"override layers.trunk.wm:1:1: trunk \(regnet\): 'wm': Input should be greater than 1"),
    ({"layers.trunk.wa": -1}, r"trunk \(regnet\): 'wa': Input should be greater than or equal to 0"),
    ({"layers.trunk.w0": 20}, r"trunk \(regnet\): 'w0': Input should be a multiple of 8"),
    ({"layers.trunk.w0": 0}, r"trunk \(regnet\): 'w0': Input should be greater than or equal to 8"),
    ({"layers.trunk.bottleneck_multiplier": 0.01},
     r"trunk \(regnet\): stage 1's bottleneck width int\(24 x 0.01\) is 0; raise bottleneck_multiplier"),
    ({"scaling.width": 1.5}, r"trunk \(regnet\): scaling.width x1.5 does not apply here: a RegNet's widths come from "
                             r"w0, wa and wm"),
])
def test_bad_parameters_are_one_located_line(override: dict, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(archspec.SpecError, match=message):
        archspec.load(BASE, overrides=override)
    ((path, value),) = override.items()
    assert main(["validate", str(BASE), "--set", f"{path}={value}"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err and "(regnet)" in err


def test_scale_explain_shows_the_derivation(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scale", str(BASE), "--variant", "y_8gf", "--explain"]) == 0
    out = capsys.readouterr().out
    assert "trunk (regnet): RegNet design space: depth 17, w0 192, wa 76.82, wm 2.19, group width 56" in out
    assert "     2      345.64     1      420.48     424" in out  # u_2 = 192 + 2 * 76.82, one step of wm, quantised
    # stage1: quantised 192, adjusted to a multiple of the group width 56: 224, 4 groups; SE 0.25 x 32 / x 224
    assert "stage1        2    192         192       56       224    224       4        8/56" in out
    assert main(["scale", str(BASE)]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert [r.split()[0] for r in rows] == ROWS  # the base is the first row, not listed twice


def test_a_new_regnet_in_a_file_is_located_there(tmp_path: Path) -> None:
    """A variant file of new parameters: a bad one is reported at its line and column, a good one builds."""
    child = tmp_path / "my_regnet.yaml"
    child.write_text(f"extends: {BASE}\nname: my_regnet\nlayers.trunk: {{type: regnet, depth: 10, w0: 36, wa: 20, wm: 2.5, "
                     "group_width: 8}\n")
    with pytest.raises(archspec.SpecError, match=r"my_regnet.yaml:3:41: trunk \(regnet\): 'w0': Input should be a multiple of 8"):
        archspec.load(child)
    child.write_text(child.read_text().replace("w0: 36", "w0: 32"))
    spec = archspec.load(child, overrides={"input.size": 32})
    assert sum(p.numel() for p in archspec.compile(spec).parameters()) == spec.params
