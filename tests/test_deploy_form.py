"""The deploy form (archspec/backend/deploy.py): batch norms folded into the convs exactly, training-only parts
removed, pure low precision, channels_last, inductor freezing; refused training; export of the form."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

import archspec
from archspec.backend.compiler import compile_spec
from archspec.backend.deploy import Deployed, deploy, deploy_spec, fold_batchnorms
from conftest import REPRESENTATIVES, SPECS, spec_params


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def randomise_norms(model: nn.Module, seed: int = 0) -> None:
    """Statistics and affine values away from a fresh norm's identity, so that every fold is seen."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def training_form(spec: archspec.Spec) -> nn.Module:
    torch.manual_seed(0)
    model = compile_spec(spec)
    randomise_norms(model)
    return model.eval()


def norms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


# Every block kind the folding meets: conv+bn and the projection shortcut (resnet18), grouped convs (resnext),
# depthwise convs and dropout (mobilenet_v2), mbconv with SE (efficientnet_b0), inception branches and
# auxiliary heads (googlenet), convs without norms beside LRN (googlenet_paper), the branches of a generic
# inception (shufflenet_v2_x0_5) and blocks defined in YAML (inception_v3, whose auxiliary head needs 299x299).
KINDS = {"resnet18": {"input.size": 64}, "resnext50_32x4d": {"input.size": 64}, "mobilenet_v2": {"input.size": 64},
         "efficientnet_b0": {"input.size": 64}, "googlenet": {"input.size": 96}, "googlenet_paper": {"input.size": 224},
         "shufflenet_v2_x0_5": {"input.size": 64}, "inception_v3": {"input.size": 75, "aux_heads": []}}


@pytest.mark.parametrize("name", list(KINDS))
def test_fold_is_exact_and_matches_the_deploy_spec(name: str) -> None:
    spec = archspec.load(SPECS / f"{name}.yaml", overrides=KINDS[name])
    model = training_form(spec)
    x = torch.randn(2, *spec.input.shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x)
    before = norms(model)
    deployed = deploy(model, compile=False)
    assert len(deployed.folded) == before and norms(deployed.network) == 0
    assert not any(isinstance(m, nn.Dropout) for m in deployed.network.modules())
    got = deployed(x)
    assert got.dtype == torch.float32 and rel(got, expected) <= 1e-5, rel(got, expected)
    # The folded tree is the network of deploy_spec: same tensors, same shapes (the Python export relies on it).
    plain = compile_spec(deploy_spec(spec), "meta")
    assert {k: v.shape for k, v in plain.state_dict().items()} == \
           {k: v.shape for k, v in deployed.network.state_dict().items()}
    assert deploy_spec(spec).params == sum(p.numel() for p in deployed.network.parameters())


@pytest.mark.parametrize("path", spec_params(REPRESENTATIVES))
def test_deploy_spec_is_the_folded_network_for_every_family(path: Path) -> None:
    """On meta (shapes only): the deploy spec's parameters and state_dict are the folded network's, however the
    family holds its norms (nested blocks, branches, bodies defined in YAML)."""
    spec = archspec.load(path)
    folded = deploy(compile_spec(spec, "meta").eval(), compile=False).network
    plain = compile_spec(deploy_spec(spec), "meta")
    assert {k: v.shape for k, v in plain.state_dict().items()} == {k: v.shape for k, v in folded.state_dict().items()}
    assert deploy_spec(spec).params == sum(p.numel() for p in folded.parameters())


def test_auxiliary_heads_are_removed() -> None:
    spec = archspec.load(SPECS / "googlenet.yaml", overrides={"input.size": 96})
    assert spec.aux_heads
    deployed = deploy(training_form(spec), compile=False)
    names = {name for name, _ in deployed.network.named_children()}
    assert not names & {head.name for head in spec.aux_heads}
    assert deploy_spec(spec).aux_params == 0 and deploy_spec(spec).params < spec.params - spec.aux_params


TINY = """
name: kept_norm
input: {channels: 3, size: 16}
layers:
  - {name: stem, type: conv, out: 8, kernel: 3, padding: 1, norm: batch, activation: relu}
  - {name: pool, type: pool, kernel: 2}
  - {name: bn, type: batchnorm}
  - {name: conv2, type: conv, out: 8, kernel: 3, padding: 1}
  - {name: bn2, type: batchnorm}
  - {name: head, type: sequence, layers: [global_pool, flatten, {type: linear, out: 4}]}
"""


def test_norm_not_after_a_conv_is_kept() -> None:
    spec = archspec.loads(TINY)
    model = training_form(spec)
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        expected = model(x)
    folded = fold_batchnorms(model)
    assert folded == ["stem.norm"]  # a standalone norm after a pool, or after another block, stays
    assert isinstance(model.bn, nn.BatchNorm2d) and isinstance(model.bn2, nn.BatchNorm2d)
    with torch.no_grad():
        assert rel(model(x), expected) <= 1e-6


def test_norm_without_running_stats_is_kept() -> None:
    seq = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False))
    assert fold_batchnorms(seq) == [] and isinstance(seq[1], nn.BatchNorm2d)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_is_pure_and_close(dtype: torch.dtype) -> None:
    spec = archspec.load(SPECS / "resnet18.yaml", overrides={"input.size": 64})
    model = training_form(spec)
    x = torch.randn(2, *spec.input.shape)
    with torch.no_grad():
        expected = model(x)
    deployed = deploy(model, dtype=dtype, compile=False)
    assert {p.dtype for p in deployed.parameters()} == {dtype}
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in deployed.parameters() if p.ndim == 4)
    got = deployed(x)
    assert got.dtype == dtype
    assert rel(got, expected) <= 5e-2, rel(got, expected)  # an 8-bit (bf16) or 11-bit (fp16) mantissa


def test_training_mode_is_refused() -> None:
    spec = archspec.load(SPECS / "resnet18.yaml", overrides={"input.size": 32})
    deployed = deploy(compile_spec(spec), compile=False)
    with pytest.raises(RuntimeError, match="inference only"):
        deployed.train()
    assert not deployed.eval().training
    assert not any(p.requires_grad for p in deployed.parameters())


def test_build_deploy_compiles_with_freezing() -> None:
    """build(deploy=True) runs through torch.compile with inductor freezing: the weights are constants of
    the generated code, whose entry point takes the input alone."""
    from torch._inductor.utils import run_and_get_code

    torch._dynamo.reset()
    spec = archspec.loads(TINY)
    reference = training_form(spec)
    deployed = archspec.build(spec, deploy=True)
    assert isinstance(deployed, Deployed) and deployed.options["freezing"]
    deployed.network.load_state_dict(deploy(training_form(spec), compile=False).network.state_dict())
    x = torch.randn(2, *spec.input.shape)
    got, (code, *_) = run_and_get_code(deployed, x)
    assert re.search(r"^\s*\w+, = args$", code, re.M), "the compiled code takes more than the input"
    with torch.no_grad():
        assert rel(got, reference(x)) <= 1e-5


@pytest.mark.parametrize("fmt", ["pt2", "python"])
def test_export_takes_the_deploy_form(tmp_path, fmt: str) -> None:
    spec = archspec.loads(TINY)  # a folded norm and a kept one
    result = archspec.export(spec, fmt, tmp_path / f"m.{'py' if fmt == 'python' else fmt}", deploy=True)
    # The check ran the written file (the Python one with the folded state_dict, loaded strictly).
    assert result.max_abs_diff is not None and result.max_abs_diff <= 1e-4


@pytest.mark.parametrize("args, message", [
    (["build", "--dtype", "bf16"], "--dtype is the deploy form's weight dtype; give --deploy too"),
    (["build", "--deploy", "-o", "x.pt"], "a checkpoint holds the trainable network; write it without --deploy"),
    (["build", "--deploy", "--device", "meta"], "--deploy folds weights and runs the network"),
    (["bench", "--autotune"], "--autotune applies to the deploy form; give --deploy too"),
    (["bench", "--deploy", "--train"], "the deploy form runs inference only"),
])
def test_cli_refuses_what_the_deploy_form_cannot_do(args: list[str], message: str, tmp_path, monkeypatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from archspec.cli import main as run_cli

    monkeypatch.chdir(tmp_path)
    assert run_cli([args[0], str(SPECS / "resnet18.yaml"), *args[1:]]) == 2  # a command line it refuses
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and not (tmp_path / "x.pt").exists()


def test_bench_header_names_the_reference_only_when_one_runs() -> None:
    from archspec.tools.bench import BenchSettings

    settings = BenchSettings(deploy=True)
    assert settings.describe().endswith("; reference compiled, fp32")
    assert settings.describe(reference=False) == "batch 8, inference; ours deploy form (fp32 weights, folded, " \
                                                 "channels_last, frozen)"
