"""`archspec.summary` / `archspec.diff` and their commands: every row checked against the compiled module
(parameters, MACs, buffers), the memory figures against the tensors torch allocates and saves, and no torch
import on the way."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import weakref
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

import archspec
from archspec.cli import main
from archspec.reports.summary import activation_memory, human_bytes
from conftest import NETWORKS, REPRESENTATIVES, ROOT, SPECS

FULL = 100  # a depth past the deepest block of every bundled spec


def _params(path: Path) -> list:
    return [pytest.param(p, id=p.stem) for p in path]


def _flops_by_path(model: torch.nn.Module, x: torch.Tensor) -> dict[str, int]:
    """FlopCounterMode's count per submodule, keyed by the module path ('' for the whole network)."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    root = type(model).__name__
    out = {}
    for key, counts in counter.get_flop_counts().items():
        if key == root:
            out[""] = sum(counts.values())
        elif key.startswith(root + "."):
            out[key[len(root) + 1:]] = sum(counts.values())
    return out


# --- every row against the compiled module --------------------------------------------------------------

@pytest.mark.parametrize("path", _params(NETWORKS))  # an alias (conftest.ALIASES) is the same network
def test_every_row_matches_the_compiled_module(path: Path) -> None:
    """At every row, down to the leaves: parameters = the submodule's numel sum, MACs = FlopCounterMode's
    count for that submodule / 2 (eval mode; the auxiliary heads in a training pass, where they run).
    On the meta device, where FlopCounterMode counts from shapes alone, so full-size inputs cost nothing;
    a batch of 2 (batch norm refuses one value per channel in training), so the counts are per 2 images."""
    spec = archspec.load(path)
    result = archspec.summary(spec, depth=FULL)
    assert [r.name for r in result.rows] == [n.path for n in spec.analyse().walk()][1:]  # every block, in order
    model = archspec.compile(spec, device="meta")
    x = torch.empty(2, *spec.input.shape, device="meta")
    flops = _flops_by_path(model.eval(), x)
    if spec.aux_heads:
        train = _flops_by_path(model.train(), x)
        flops.update({k: v for k, v in train.items() if k.split(".")[0] in {h.name for h in spec.aux_heads}})
    assert flops[""] == 2 * 2 * result.macs
    for row in result.rows:
        module = model.get_submodule(row.name)
        assert row.params == sum(p.numel() for p in module.parameters()), row.name
        assert 2 * 2 * row.macs == flops.get(row.name, 0), row.name
    assert result.params == sum(p.numel() for p in model.parameters())
    assert result.buffers == sum(b.numel() for b in model.buffers())
    assert result.buffer_bytes == sum(b.numel() * b.element_size() for b in model.buffers())
    assert result.param_bytes == sum(p.numel() * p.element_size() for p in model.parameters())


# --- activation memory against torch ---------------------------------------------------------------------

class _LiveBytes(TorchDispatchMode):
    """Every tensor an aten op returns, tracked by weak reference: after each op, the bytes of the distinct
    storages still referenced (Python frees a tensor as soon as its last reference goes). Parameters and
    buffers are left out; the input batch is counted."""

    def __init__(self, exclude: set[int], x: torch.Tensor) -> None:
        super().__init__()
        self.exclude, self.refs, self.peak = exclude, [weakref.ref(x)], 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        self.refs += [weakref.ref(t) for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        live: dict[int, int] = {}
        alive = []
        for ref in self.refs:
            t = ref()
            if t is not None:
                alive.append(ref)
                storage = t.untyped_storage()
                if storage._cdata not in self.exclude:
                    live[storage._cdata] = storage.nbytes()
        self.refs = alive
        self.peak = max(self.peak, sum(live.values()))
        return out


def measure_activations(spec: archspec.Spec, batch: int, dtype: torch.dtype, device: str) -> tuple[int, int, int]:
    """(eval forward peak, bytes saved for backward, training forward peak) of the compiled module."""
    model = archspec.compile(spec, device=device, dtype=dtype)
    weights = {t.untyped_storage()._cdata for t in [*model.parameters(), *model.buffers()]}
    x = torch.zeros(batch, *spec.input.shape, device=device, dtype=dtype)
    live = _LiveBytes(weights, x)
    with torch.no_grad(), live:
        model.eval()(x)
    forward = live.peak
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage._cdata not in weights:
            saved[storage._cdata] = storage.nbytes()
        return t

    live = _LiveBytes(weights, x)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), live:
        out = model.train()(x)
    del out
    return forward, sum(saved.values()), live.peak


TOLERANCE = 1e-3


def _close(predicted: int, measured: int) -> bool:
    return abs(predicted - measured) <= TOLERANCE * measured


@pytest.mark.parametrize("name,size", [("resnet50", 224), ("efficientnet_b0", 224)])
def test_activation_memory_equals_measured_on_cpu(name: str, size: int) -> None:
    """The two activation figures against real CPU tensors (batch 2, fp32):

    - forward: the peak of live activation bytes in an eval, no-grad forward pass, measured op by op by
      a TorchDispatchMode that tracks every tensor torch returns (weak references tell when Python frees
      it; views share one storage, counted once);
    - training: the bytes autograd keeps for backward, one count per storage, as
      `torch.autograd.graph.saved_tensors_hooks` sees them (parameters and buffers left out).

    Tolerance 0.1%, relative. The estimate replays torch's allocations op by op, and on CPU with this
    torch it is exact; the margin is for per-channel tensors whose presence differs between torch
    versions and devices (batch-norm mean and inverse std: C floats beside B*C*H*W activations, at most
    0.01% of these totals). It is smaller than any feature map of these networks, so a missed or
    extra activation tensor fails the test (the smallest at batch 2, ResNet-50's 2048x7x7, is 0.5% of its
    training total and 3.5% of its forward peak; every earlier one is larger).
    """
    spec = archspec.load(SPECS / f"{name}.yaml", overrides={"input.size": size})
    forward, saved, training_peak = measure_activations(spec, 2, torch.float32, "cpu")
    estimate = activation_memory(spec, batch=2, dtype="fp32")
    assert _close(estimate.forward_peak, forward), (human_bytes(estimate.forward_peak), human_bytes(forward))
    assert _close(estimate.training, saved), (human_bytes(estimate.training), human_bytes(saved))
    assert _close(estimate.training_peak, training_peak)
    summary = archspec.summary(spec, batch=2)
    assert (summary.forward_bytes, summary.training_bytes) == (estimate.forward_peak, estimate.training)


@pytest.mark.parametrize("path", _params(REPRESENTATIVES))  # a family's members replay the same ops (conftest.py)
def test_activation_memory_equals_measured_on_meta(path: Path) -> None:
    """The same measurement for one network of each family (the memory zoo below has every op), on the meta
    device (shapes only, so full-size inputs are instant), at batch 3 in bf16. Same 0.1% tolerance (see the CPU test): on meta an eval batch norm
    also returns its per-channel statistics, which CPU does not; everything else matches exactly."""
    spec = archspec.load(path)
    forward, saved, training_peak = measure_activations(spec, 3, torch.bfloat16, "meta")
    estimate = activation_memory(spec, batch=3, dtype="bf16")
    assert _close(estimate.forward_peak, forward), (human_bytes(estimate.forward_peak), human_bytes(forward))
    assert _close(estimate.training, saved), (human_bytes(estimate.training), human_bytes(saved))
    assert _close(estimate.training_peak, training_peak)


ZOO = """
name: zoo  # every block type and activation, each way the memory model treats them
input: {channels: 3, size: 16}
blocks:
  duo: {params: {w: {type: channels}}, body: [{type: conv, out: = w, kernel: 1, activation: relu}, {type: conv, out: = w * 2, kernel: 3}]}
layers:
  - {name: c1, type: conv, out: 8, kernel: 3, activation: gelu, norm: batch}
  - {name: c2, type: conv, out: 8, kernel: 3, activation: tanh}
  - {name: c3, type: conv, out: 8, kernel: 3, activation: sigmoid, norm: batch}
  - {name: c4, type: conv, out: 8, kernel: 1}
  - {name: bn, type: batchnorm}
  - silu
  - hardswish
  - mish
  - relu6
  - hardsigmoid
  - gelu
  - tanh
  - sigmoid
  - relu
  - {name: res, type: residual, activation: silu, body: [{type: conv, out: 16, kernel: 3, stride: 2, norm: batch, activation: relu6}], shortcut: [{type: pool, op: avg, kernel: 2}, {type: conv, out: 16, kernel: 1}]}
  - {name: res2, type: residual, activation: hardswish, body: [{type: conv, out: 16, kernel: 3}], drop_path: 0.2}
  - {name: stage, type: stage, repeat: 2, block: {type: sequence, layers: [{type: conv, out: 16, kernel: 3, activation: silu}, {type: conv, out: 16, kernel: 3, activation: hardsigmoid, norm: batch}]}}
  - {name: gn, type: group_norm, groups: 4}
  - {name: ln, type: layer_norm}
  - {name: res3, type: residual, body: [{type: linear, over: channels, out: 32}, gelu, {type: linear, over: channels, out: 16}, {type: layer_scale, init: 0.5}]}
  - {name: shuf, type: channel_shuffle, groups: 4}
  - {name: split, type: inception, branches: {a: [{type: channel_split, take: 0}], b: [{type: channel_split, take: 1}, {type: conv, out: 8, kernel: 1}]}}
  - {name: inc, type: inception, branches: {a: [], b: [{type: conv, out: 8, kernel: 3}], c: [{type: pool, op: max, kernel: 3, stride: 1, padding: 1}]}}
  - {name: duo, type: duo, w: 8}
  - {name: se, type: se, ratio: 0.25, gate: hardsigmoid, activation: relu}
  - {name: se2, type: se, squeeze: 4, gate: sigmoid, activation: silu}
  - {name: apool, type: adaptive_pool, op: avg, output: 3}
  - {name: amax, type: adaptive_pool, op: max, output: 2}
  - {name: lrn, type: lrn, size: 3}
  - {name: gmax, type: global_pool, op: max}
  - flatten
  - {name: bn1d, type: batchnorm}
  - {name: ln1d, type: layer_norm}
  - {name: ls1d, type: layer_scale}
  - {name: d0, type: dropout, p: 0.0}
  - {name: d1, type: dropout, p: 0.5}
  - {name: fc, type: linear, out: 10}
"""


def test_activation_memory_of_every_block_type() -> None:
    """Each rule of the memory model (in-place and out-of-place activations of every kind, a standalone
    batch norm on maps and on vectors, group and layer norm, layer scale, linear layers over channels,
    channel shuffle and split, explicit and identity shortcuts with stochastic depth, an empty
    inception branch, both SE gates, a block defined in YAML, adaptive max pooling, LRN, dropout with p=0 and p>0) against real
    CPU tensors, at the tolerance of the tests above (here it is exact)."""
    spec = archspec.loads(ZOO)
    forward, saved, training_peak = measure_activations(spec, 3, torch.float32, "cpu")
    estimate = activation_memory(spec, batch=3, dtype="fp32")
    assert _close(estimate.forward_peak, forward) and _close(estimate.training, saved)
    assert _close(estimate.training_peak, training_peak)
    model = archspec.compile(spec, device="meta")
    flops = _flops_by_path(model.eval(), torch.empty(2, *spec.input.shape, device="meta"))
    for row in archspec.summary(spec, depth=FULL).rows:
        assert row.params == sum(p.numel() for p in model.get_submodule(row.name).parameters()), row.name
        assert 2 * 2 * row.macs == flops.get(row.name, 0), row.name


def test_memory_scales_with_batch_and_dtype() -> None:
    spec = archspec.load(SPECS / "resnet50.yaml")
    one, many = archspec.summary(spec), archspec.summary(spec, batch=8, dtype="bf16")
    assert many.training_bytes < 8 * one.training_bytes < 2 * many.training_bytes  # int64 indices stay 8 bytes
    assert many.input_bytes == 8 * 3 * 224 * 224 * 2 and one.input_bytes == 3 * 224 * 224 * 4
    assert many.param_bytes == 2 * spec.params and one.param_bytes == 4 * spec.params
    assert one.forward_bytes < one.training_bytes
    with pytest.raises(ValueError, match="unknown dtype"):
        archspec.summary(spec, dtype="int3")


# --- the summary ---------------------------------------------------------------------------------------------

def test_summary_rows_follow_the_depth() -> None:
    spec = archspec.load(SPECS / "googlenet.yaml")
    top = archspec.summary(spec)
    assert [r.name for r in top.rows][-2:] == ["aux2", "aux1"] and all(r.depth == 1 for r in top.rows)
    assert sum(r.params for r in top.rows) == top.params == 13_004_888
    assert sum(r.share for r in top.rows) == pytest.approx(1.0)
    assert top.aux_params == 6_379_984 and top.inference_params == 6_624_904
    assert top.flops == 2 * top.macs and top.aux_macs == 8_372_224
    two = archspec.summary(spec, depth=2)
    assert {r.depth for r in two.rows} == {1, 2}
    assert [r.name for r in two.rows if r.depth == 1] == [r.name for r in top.rows]
    assert all(r.aux == r.name.startswith("aux") for r in two.rows)
    row = next(r for r in two.rows if r.name == "inception3a")
    assert (row.type, row.hyper, row.input_shape, row.output_shape) == (
        "inception_v1", "256 = 64+128+32+32", (192, 28, 28), (256, 28, 28))
    assert archspec.summary(spec, depth=0).rows == ()


def test_hyper_parameters_count_in_english() -> None:
    spec = archspec.loads("name: t\ninput: {channels: 4, size: 8}\nlayers:\n"
                          "  - {name: s, type: sequence, layers: [relu]}\n"
                          "  - {name: r, type: residual, body: [relu, relu]}\n"
                          "  - {name: i, type: inception, branches: {a: []}}\n")
    assert [r.hyper for r in archspec.summary(spec).rows] == ["1 layer", "2 layers + skip", "1 branch"]


def test_summary_json_keeps_the_old_keys_and_adds_rows(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", str(SPECS / "inception_v3.yaml"), "--json", "--depth", "2", "--batch", "4",
                 "--dtype", "fp16"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"name", "params", "macs", "aux_params", "aux_macs", "input_shape", "output_shape", "layers",
            "aux_heads"} <= set(data)
    assert all(set(r) == {"name", "type", "output_shape", "params", "macs"} for r in data["layers"] + data["aux_heads"])
    assert [r["name"] for r in data["aux_heads"]][0] == "AuxLogits"
    assert len(data["layers"]) + len(data["aux_heads"]) == len(data["rows"])
    assert {r["depth"] for r in data["rows"]} == {1, 2}
    assert (data["batch"], data["dtype"], data["depth"]) == (4, "fp16", 2)
    assert data["memory"]["input_bytes"] == 4 * 3 * 299 * 299 * 2
    assert data["flops"] == 2 * data["macs"] and data["inference_params"] == 23_834_568


def test_summary_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", str(SPECS / "resnet50.yaml"), "--depth", "2", "--batch", "32"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "resnet50  input 3x224x224  (batch 32, fp32)"
    assert lines[1].split() == ["layer", "type", "output", "params", "%", "MACs", "hyper-parameters"]
    assert any(line.split()[:4] == ["layer3.5", "bottleneck", "1024x14x14", "1,117,184"] for line in lines)
    assert "parameters  25,557,032 (25.557 M), all trainable" in out
    assert "MACs        4,089,184,256 (4.089 G)" in out and "FLOPs       8.178 G" in out
    assert "  batch 32  130.854 GMACs, 261.708 GFLOPs per forward pass" in out
    assert "parameters 97.5 MiB + buffers" in out and "input 32x3x224x224: 18.4 MiB" in out
    assert "activations, forward (eval): peak" in out and "kept for backward" in out


def test_summary_draws_a_rich_table_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stdout", buffer)
    monkeypatch.setattr(buffer, "isatty", lambda: True, raising=False)
    monkeypatch.setenv("COLUMNS", "60")  # narrower than the table: it widens rather than cut a number
    assert main(["summary", str(SPECS / "resnet18.yaml")]) == 0
    out = buffer.getvalue()
    assert "━" in out or "─" in out  # a drawn table, not the plain text
    assert "11,689,512" in out and "1,814,073,344" in out and "…" not in out


# --- diff --------------------------------------------------------------------------------------------------

NET = """
name: net
input: {channels: 3, size: 32}
defaults: {conv: {norm: batch, activation: relu}}
layers:
  - {name: stem, type: conv, out: 16, kernel: 3}
  - {name: body, type: stage, repeat: 2, block: {type: basic, out: 16}}
  - {name: pool, type: global_pool, flatten: true}
  - {name: fc, type: linear, out: 10}
"""


def test_diff_matches_blocks_by_name() -> None:
    a = archspec.loads(NET)
    b = archspec.loads(NET.replace("repeat: 2", "repeat: 3").replace("  - {name: pool", "  - {name: extra, type: relu}\n  - {name: pool"),
                       overrides={"layers.fc.out": 100})
    d = archspec.diff(a, b)
    status = {r.name: r.status for r in d.rows}
    assert status == {"stem": "same", "body": "changed", "extra": "added", "pool": "same", "fc": "changed"}
    assert [r.name for r in d.rows] == ["stem", "body", "extra", "pool", "fc"]
    body = next(r for r in d.rows if r.name == "body")
    assert body.a and body.b and body.b.params - body.a.params == 2 * (16 * 16 * 9 + 32)
    assert "repeat 2 -> 3" in d.text()
    fc = next(r for r in d.rows if r.name == "fc")
    assert set(fc.changes) >= {"output", "params", "MACs", "fields"}
    totals = {what.strip(): (x, y) for what, x, y in d.totals()}
    assert totals["parameters"] == (a.params, b.params) and totals["output"] == ("10", "100")
    assert archspec.diff(a, a).changed == ()
    removed = archspec.diff(b, a)
    assert {r.name: r.status for r in removed.changed} == {"body": "changed", "extra": "removed", "fc": "changed"}


def test_diff_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", str(SPECS / "resnet50.yaml"), "--set", "layers.layer3.repeat=36"]) == 0
    out = capsys.readouterr().out
    assert "layer3" in out and "7,098,368 -> 40,613,888" in out and "repeat 6 -> 36" in out
    assert "(7 unchanged blocks not shown; --all lists them)" in out
    assert "25,557,032" in out and "59,072,552" in out  # the totals before and after
    assert main(["diff", str(SPECS / "resnet50.yaml"), str(SPECS / "resnet152.yaml"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in data["layers"] if r["status"] != "same"] == ["layer2", "layer3"]
    totals = {t["name"]: t for t in data["totals"]}
    assert (totals["parameters"]["a"], totals["parameters"]["b"]) == (25_557_032, 60_192_808)
    assert main(["diff", str(SPECS / "efficientnet.yaml"), "--variant", "b3", "--depth", "2", "--all"]) == 0
    out = capsys.readouterr().out
    assert "stage6.5" in out and "added" in out and "3x224x224" in out and "3x300x300" in out
    assert main(["diff", str(SPECS / "resnet50.yaml")]) == 2  # a command line diff refuses
    assert "nothing to compare" in capsys.readouterr().err


def test_diff_spec_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", str(SPECS / "resnet50.yaml"), "--set", "layers.layer3.block.strid=2"]) == 2
    assert "'strid' is not a field of bottleneck" in capsys.readouterr().err


# --- no torch ------------------------------------------------------------------------------------------------

NO_TORCH = """
import sys, runpy
sys.argv = ["cli.py", *sys.argv[1:]]
code = 0
try:
    runpy.run_path("cli.py", run_name="__main__")
except SystemExit as exit:
    code = exit.code
import archspec
spec = archspec.load("specs/googlenet.yaml")
text = str(archspec.summary(spec, depth=3, batch=8, dtype="bf16"))
text += str(archspec.diff(spec, archspec.load("specs/googlenet.yaml", overrides={"aux_heads": []}), depth=2))
import io
from rich.console import Console
Console(file=io.StringIO(), force_terminal=True).print(archspec.summary(spec), archspec.diff(spec, spec))
leaked = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
print("TORCH-MODULES", len(leaked), leaked[:3], file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.parametrize("args", [
    ["summary", "specs/efficientnet_b7.yaml", "--depth", "3", "--batch", "64", "--dtype", "bf16"],
    ["summary", "specs/inception_v3.yaml", "--json", "--depth", "2"],
    ["diff", "specs/resnet50.yaml", "specs/resnext50_32x4d.yaml", "--depth", "2"],
    ["diff", "specs/efficientnet.yaml", "--variant", "b7", "--json"],
], ids=["summary", "summary-json", "diff", "diff-json"])
def test_summary_and_diff_do_not_import_torch(args: list[str]) -> None:
    result = subprocess.run([sys.executable, "-c", NO_TORCH, *args], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "TORCH-MODULES 0" in result.stderr, result.stderr
    assert result.stdout.strip()
