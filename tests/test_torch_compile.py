"""GPU-readiness on the CPU: one dynamo graph per family, inductor, channels_last and bf16 autocast.

Tolerances (relative L2 error of the logits, ||y - y_fp32|| / ||y_fp32||, which does not depend on the
scale of the outputs; randomly initialised nets in eval mode give logits from 1e-13 to 1e11):
- inductor vs eager, fp32: 1e-4. The same fp32 arithmetic, fused and reordered by inductor; the
  differences are rounding (2^-24 per operation) summed over the convolutions; measured <= 2e-6.
- channels_last vs contiguous, fp32: 1e-4. The same arithmetic in another memory order, where oneDNN
  picks other blockings (other summation orders); measured <= 5e-5.
- bf16 autocast vs fp32: 5e-2. bf16 keeps 8 significant bits (unit roundoff 2^-9 = 2e-3); autocast
  rounds every conv/linear's input and weight to it (accumulating in fp32), so each layer adds
  0.1-1% relative error (measured worst layer 1.2e-2) and the network sums them: measured 1.5e-3
  (GoogLeNet) to 1.3e-2 (EfficientNet-B0, MobileNet-V3) end to end. A block that mishandled reduced
  precision would be off by O(1).
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable

import pytest
import torch

import archspec
from archspec.tools.bench import explain_graphs
from archspec.language.blocks.base import Node
from conftest import NETWORKS, REPRESENTATIVES, SPECS, background_result

EXPLAIN_SIZE = 64  # small inputs where the net allows them; else the spec's own size


def explain_size(path: Path) -> int | None:
    try:
        archspec.load(path, {"input.size": EXPLAIN_SIZE})
        return EXPLAIN_SIZE
    except archspec.SpecError:  # e.g. Inception-v3 (299), BN-Inception (224): fixed-size classifiers
        return None


def training_paths(root: Node) -> set[tuple[str, bool, bool]]:
    """What a spec runs in training mode beyond what it runs in eval mode: (block type, inside an auxiliary
    head, drops: dropout or stochastic depth). Heads run in training only, and dropout, stochastic depth
    and batch norm take their training branches there; the rest is the eval-mode code."""
    paths: set[tuple[str, bool, bool]] = set()

    def visit(node: Node, in_head: bool) -> None:
        in_head = in_head or node.aux
        drops = node.drop_rate > 0 or (node.type == "dropout" and node.block.p > 0)
        paths.add((node.type, in_head, drops))
        for child in node.children:
            visit(child, in_head)

    visit(root, False)
    return paths


def _traced_in_training() -> set[str]:
    """Smallest first, each spec with a training path that no smaller spec has."""
    seen: set[tuple[str, bool, bool]] = set()
    chosen = set()
    roots = {path.stem: archspec.load(path).analyse() for path in REPRESENTATIVES}
    for name in sorted(roots, key=lambda name: (sum(1 for _ in roots[name].walk()), name)):
        if not (paths := training_paths(roots[name])) <= seen:
            chosen.add(name)
            seen |= paths
    return chosen


# Eval mode is traced for the smallest network of each family (conftest.REPRESENTATIVES: a deeper member runs
# the same code); training mode for those that, between them, run every training path of every network.
TRAINED = _traced_in_training()
BACKGROUND_TEST = "test_one_graph_no_breaks"


def background_job(path: Path) -> Callable[[], dict[str, tuple[int, int, list[str]]]]:
    """`torch._dynamo.explain` of a spec, batch 2, on the meta device (dynamo traces with fake tensors, so
    graphs and breaks are those of any device; nothing is allocated or computed). Seconds per spec: it
    runs in the background (conftest.py)."""
    modes = ("eval", "train") if path.stem in TRAINED else ("eval",)
    return functools.partial(explain_graphs, str(path), size=explain_size(path), batch=2, modes=modes)


@pytest.mark.slow
@pytest.mark.parametrize("path", REPRESENTATIVES, ids=[p.stem for p in REPRESENTATIVES])
def test_one_graph_no_breaks(path: Path) -> None:
    """Eval mode; train mode (auxiliary heads, dropout, stochastic depth, batch norm) where TRAINED says."""
    result = background_result(__name__, path)
    assert list(result) == (["eval", "train"] if path.stem in TRAINED else ["eval"])
    for mode, (graphs, breaks, reasons) in result.items():
        assert (graphs, breaks) == (1, 0), f"{path.stem} ({mode}): {graphs} graphs; breaks: {reasons}"


def test_training_mode_is_traced_for_every_training_path() -> None:
    paths = {path.stem: training_paths(archspec.load(path).analyse()) for path in NETWORKS}
    assert set().union(*(paths[name] for name in TRAINED)) == set().union(*paths.values())
    # Auxiliary heads (each family's own), dropout, stochastic depth, LRN, SE, depthwise, pass-through branches:
    assert {"googlenet", "inception_v3", "alexnet", "efficientnet", "alexnet_original", "mobilenet_v3_small",
            "mobilenet_v1"} <= TRAINED
    assert len(TRAINED) < len(NETWORKS) / 2


def _model(name: str, size: int = 64) -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = archspec.build(SPECS / f"{name}.yaml", overrides={"input.size": size}).eval()
    return model, torch.randn(2, 3, size, size)


def _rel(y: torch.Tensor, ref: torch.Tensor) -> float:
    return ((y.float() - ref.float()).norm() / ref.float().norm()).item()


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_inductor_matches_eager(name: str) -> None:
    model, x = _model(name)
    compiled = torch.compile(model, backend="inductor", fullgraph=True)
    with torch.no_grad():
        ref = model(x)
        y = compiled(x)
        y2 = compiled(x + 1)  # the compiled graph is reused, and still right, for new values
        ref2 = model(x + 1)
    assert _rel(y, ref) <= 1e-4 and _rel(y2, ref2) <= 1e-4


REPRESENTATIVE = [  # bottleneck + projection; MBConv + SE + SiLU + stochastic depth; inception concat;
    ("resnet50", 64), ("efficientnet_b0", 64), ("googlenet", 64),  # hardswish + hardsigmoid SE;
    ("mobilenet_v3_large", 64), ("alexnet_original", 75),  # LRN + grouped convs (its smallest input)
]


@pytest.mark.parametrize("name,size", REPRESENTATIVE, ids=[n for n, _ in REPRESENTATIVE])
def test_channels_last_and_bf16_autocast_match_fp32(name: str, size: int) -> None:
    model, x = _model(name, size)
    seen: list[bool] = []
    last_conv = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    last_conv.register_forward_hook(lambda m, i, out: seen.append(out.is_contiguous(memory_format=torch.channels_last)))
    with torch.no_grad():
        ref = model(x)
        model = model.to(memory_format=torch.channels_last)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        y_cl = model(x_cl)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y_bf16 = model(x_cl)
    assert seen == [False, True, True]  # channels_last all the way to the last conv
    assert y_cl.dtype == torch.float32 and _rel(y_cl, ref) <= 1e-4
    assert y_bf16.dtype == torch.bfloat16 and _rel(y_bf16, ref) <= 5e-2


def test_prepare_model_channels_last() -> None:
    from archspec.backend.compiler import example_input
    from archspec.tools.bench import prepare_model

    model = prepare_model(archspec.build(SPECS / "resnet18.yaml", overrides={"input.size": 32}), channels_last=True)
    assert model.conv1.conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = example_input((3, 32, 32), batch=2, channels_last=True)
    assert x.is_contiguous(memory_format=torch.channels_last) and x.shape == (2, 3, 32, 32)
    with torch.no_grad():
        assert model.eval()(x).shape == (2, 1000)


@pytest.mark.parametrize("train", [False, True], ids=["inference", "training"])
def test_bench_times_ours_and_the_reference(train: bool) -> None:
    from archspec.tools.bench import BenchSettings, bench

    settings = BenchSettings(batch=2, train=train, warmup=1, iters=3)
    report = bench(SPECS / "resnet18.yaml", {"input.size": 32}, settings=settings, reference=True, progress=False)
    ours, ref = report.timings
    assert (ours.label, ref.label) == ("archspec resnet18", "torchvision:resnet18")
    assert ours.params == ref.params == 11_689_512 and not report.notes
    assert len(ours.latencies) == len(ref.latencies) == 3 and ours.peak_memory is None  # n/a on the CPU
    per_round = sorted(r / o for o, r in zip(ours.latencies, ref.latencies))
    assert report.ratio == pytest.approx(per_round[1]) and report.ratio > 0  # the median round
    text = report.text()
    assert ("training step" if train else "inference") in text and "ratio ours/reference (throughput)" in text


def test_bench_notes_a_changed_network_and_refuses_without_reference() -> None:
    from archspec.tools.bench import BenchSettings, bench

    settings = BenchSettings(batch=1, warmup=1, iters=1)
    report = bench(SPECS / "resnet18.yaml", {"input.size": 32, "layers.fc.out": 10}, settings=settings,
                   reference=True, progress=False)
    assert "parameter counts differ" in report.notes[0]
    with pytest.raises(ValueError, match="names no reference"):
        bench(SPECS / "googlenet_paper.yaml", settings=settings, reference=True, progress=False)


def test_cli_bench(capsys: pytest.CaptureFixture[str]) -> None:
    from archspec.cli import main

    code = main(["bench", str(SPECS / "mobilenet_v2.yaml"), "--set", "input.size=32", "--batch", "2",
                 "--channels-last", "--amp", "bf16", "--reference", "--warmup", "1", "--iters", "2"])
    out = capsys.readouterr().out
    assert code == 0
    assert "mobilenet_v2 on cpu" in out and "batch 2, inference, eager, bf16, channels_last" in out
    assert "archspec mobilenet_v2" in out and "torchvision:mobilenet_v2" in out and "ratio ours/reference" in out


def test_the_gpu_scripts_checks_run_on_the_cpu(tmp_path: Path) -> None:
    """benchmarks/gpu_checks.py (step 1 of gpu_check.sh) on the CPU, so that the GPU run cannot rot
    unseen: GoogLeNet's fp32 training step with both auxiliary heads, then channels_last and bf16/fp16
    autocast against fp32, each a PASS line (fp16 may SKIP on range, never FAIL)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_checks", SPECS.parent / "benchmarks" / "gpu_checks.py")
    gpu_checks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_checks)
    checks = tmp_path / "checks.txt"
    assert gpu_checks.main(["specs", str(checks), "--device", "cpu", "--only", "googlenet"]) == 0
    lines = checks.read_text().splitlines()
    assert [line.split(":")[0] for line in lines[:3]] == ["PASS googlenet"] * 3, lines
    assert "3 output(s)" in lines[0] and "bf16 autocast" in lines[2]
    assert lines[3].startswith(("PASS googlenet: fp16", "SKIP googlenet: fp16")), lines
    assert lines[-1] == "specs checks: {'PASS': %d, 'FAIL': 0, 'SKIP': %d}" % (
        sum(line.startswith("PASS") for line in lines), sum(line.startswith("SKIP") for line in lines))
