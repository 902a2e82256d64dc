"""Initialisation (issue 17.5): the presets and rules given as data draw what the reference models draw,
compared by distribution statistics per op kind and per layer; the data form reproduces a preset exactly."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import archspec
from archspec.backend.references import reference_model
from archspec.errors import SpecError
from conftest import REPRESENTATIVES, SPECS

KINDS = {"conv": nn.Conv2d, "linear": nn.Linear, "norm": nn.modules.batchnorm._BatchNorm}

# The data form of presets: what docs/spec-language.md says each preset does.
RESNET = {"conv": {"weight": {"type": "kaiming_normal", "mode": "fan_out", "nonlinearity": "relu"}},
          "norm": {"weight": "ones", "bias": "zeros"}}
TIMM_RESNET = {"conv": {"weight": {"type": "kaiming_normal", "mode": "fan_out", "nonlinearity": "relu"}},
               "zero_last_norm": True}
EFFICIENTNET = {"conv": {"weight": {"type": "kaiming_normal", "mode": "fan_out"}, "bias": "zeros"},
                "norm": {"weight": "ones", "bias": "zeros"},
                "linear": {"weight": {"type": "uniform", "fan": "fan_out"}, "bias": "zeros"}}


def _tensors(model: nn.Module) -> dict[str, list[torch.Tensor]]:
    """{kind.param: [the tensor of each layer of that kind, in module order]}."""
    found: dict[str, list[torch.Tensor]] = {}
    for m in model.modules():
        for kind, cls in KINDS.items():
            if isinstance(m, cls):
                for param in ("weight", "bias"):
                    if getattr(m, param, None) is not None:
                        found.setdefault(f"{kind}.{param}", []).append(getattr(m, param).detach().flatten())
    return found


def _close(ours: torch.Tensor, ref: torch.Tensor) -> None:
    """Mean, std and fraction of zeros agree within 6 standard errors of the sample size."""
    n, sigma = ref.numel(), ref.std().item() if ref.numel() > 1 else 0.0
    assert ours.numel() == n
    assert abs(ours.mean().item() - ref.mean().item()) <= 6 * sigma / math.sqrt(n) + 1e-7
    if n > 1:
        assert abs(ours.std().item() - sigma) <= 6 * sigma / math.sqrt(2 * (n - 1)) + 1e-7
    ours_zeros, ref_zeros = (ours == 0).float().mean().item(), (ref == 0).float().mean().item()
    assert abs(ours_zeros - ref_zeros) <= 6 * math.sqrt(0.25 / n)


def _compare(spec: archspec.Spec) -> None:
    torch.manual_seed(0)
    ours = _tensors(archspec.compile(spec))
    torch.manual_seed(1)  # another seed: equal statistics must not depend on drawing the same numbers
    ref = _tensors(reference_model(spec.reference))
    assert ours.keys() == ref.keys()
    for key in ref:
        _close(torch.cat(ours[key]), torch.cat(ref[key]))  # the kind as a whole
        assert len(ours[key]) == len(ref[key])
        by_size = lambda ts: sorted(ts, key=lambda t: (t.numel(), t.std().item() if t.numel() > 1 else 0.0))  # noqa: E731
        for a, b in zip(by_size(ours[key]), by_size(ref[key])):  # and layer by layer (by size, then spread)
            _close(a, b)


# Every family's representative (conftest.FAMILIES: its members run the same init code at other widths and
# depths), and a preset written out as rules.
FAMILY_INITS = [(path.stem, None) for path in REPRESENTATIVES if archspec.load(path, analyse=False).reference]


@pytest.mark.parametrize("name, rules", [*FAMILY_INITS, ("efficientnet_v2_s", EFFICIENTNET)])
def test_init_statistics_match_the_reference(name: str, rules: dict | None) -> None:
    spec = archspec.load(SPECS / f"{name}.yaml", overrides={"init": rules} if rules else None)
    _compare(spec)


@pytest.mark.parametrize("name, rules", [("resnet50", RESNET), ("resnet50d", TIMM_RESNET), ("efficientnet_b0", EFFICIENTNET)])
def test_rules_reproduce_the_preset_exactly(name: str, rules: dict) -> None:
    """The data form draws the same numbers, in the same order, as the named preset."""
    torch.manual_seed(0)
    preset = archspec.build(SPECS / f"{name}.yaml").state_dict()
    torch.manual_seed(0)
    data = archspec.build(SPECS / f"{name}.yaml", overrides={"init": rules}).state_dict()
    assert preset.keys() == data.keys() and all(torch.equal(preset[k], data[k]) for k in preset)


def test_each_rule_draws_its_distribution() -> None:
    rules = {"conv": {"weight": {"type": "trunc_normal", "std": 0.5, "a": -0.5, "b": 0.5}, "bias": {"type": "constant", "value": 0.25}},
             "linear": {"weight": {"type": "kaiming_uniform", "mode": "fan_in", "nonlinearity": "linear"}, "bias": "ones"},
             "norm": {"weight": {"type": "normal", "mean": 2.0, "std": 0.1}, "bias": {"type": "uniform", "bound": 0.5}}}
    text = """
name: rules
input: {size: 16}
layers:
  - {name: conv, type: conv, out: 256, kernel: 3, bias: true, norm: batch}
  - {name: pool, type: global_pool, op: avg, flatten: true}
  - {name: fc, type: linear, out: 512}
"""
    model = archspec.compile(archspec.loads(text, overrides={"init": rules}))
    w = model.conv.conv.weight
    assert w.abs().max() <= 0.5 and 0.25 < w.std() < 0.3  # N(0, 0.5) cut at one std: std 0.27
    assert torch.all(model.conv.conv.bias == 0.25)
    bound = math.sqrt(3.0 / 256)  # kaiming_uniform, gain 1, fan_in 256
    assert model.fc.weight.abs().max() <= bound and model.fc.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.02)
    assert torch.all(model.fc.bias == 1)
    assert model.conv.norm.weight.mean().item() == pytest.approx(2.0, abs=0.05) and model.conv.norm.bias.abs().max() <= 0.5


@pytest.mark.parametrize("rules, message", [
    ({"conv": {"weight": {"type": "kaiming_normel"}}}, "init.conv.weight: unknown type 'kaiming_normel'; did you mean 'kaiming_normal'?"),
    ({"conv": {"weight": {"type": "normal"}}}, "init.conv.weight: missing required field 'std'"),
    ({"conv": {"wieght": "zeros"}}, "'wieght' is not a field"),
    ({"norm": {"weight": {"type": "kaiming_normal"}}}, "a norm's weight is a vector with no fan"),
    ({"linear": {"weight": {"type": "uniform"}}}, "give either 'bound' or 'fan'"),
])
def test_bad_rules_are_located_errors(rules: dict, message: str) -> None:
    with pytest.raises(SpecError) as info:
        archspec.load(SPECS / "resnet18.yaml", overrides={"init": rules})
    assert message in str(info.value)
