"""Each activation is one entry of archspec/ir/activations.py, and every consumer reads it from there: the
entry agrees with torch (module, in-place support, what autograd keeps), and the language, the builder,
the memory model and the Python export all take every entry without another list to update."""
from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch
from torch import nn

import archspec
from archspec.ir.activations import ACTIVATIONS
from test_summary import _close, measure_activations

NAMES = list(ACTIVATIONS)


@pytest.mark.parametrize("name", NAMES)
def test_the_entry_is_torchs(name: str) -> None:
    op = ACTIVATIONS[name]
    module = getattr(nn, op.module)
    assert ("inplace" in inspect.signature(module).parameters) == op.inplace
    x = torch.randn(2, 3, 5, 5, requires_grad=True)
    saved: list[int] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.data_ptr()) or t, lambda t: t):
        y = module()(x)
    assert saved == [x.data_ptr() if op.keeps == "input" else y.data_ptr()]


def every_activation_spec() -> str:
    """Each activation after a conv with and without batch norm (applied in place where torch can), as a
    layer of its own (never in place), and after a residual's add."""
    layers = []
    for name in NAMES:
        layers += [f"{{name: {name}_bn, type: conv, out: 8, kernel: 3, norm: batch, activation: {name}}}",
                   f"{{name: {name}_conv, type: conv, out: 8, kernel: 1, activation: {name}}}",
                   f"{{name: {name}_layer, type: {name}}}",
                   f"{{name: {name}_res, type: residual, activation: {name}, body: [{{type: conv, out: 8, kernel: 3}}]}}"]
    return "name: activations\ninput: {channels: 3, size: 12}\nlayers:\n" + "".join(f"  - {layer}\n" for layer in layers)


def test_every_activation_validates_builds_and_is_remembered_right() -> None:
    spec = archspec.loads(every_activation_spec())
    model = archspec.compile(spec)
    for name, op in ACTIVATIONS.items():
        act = model.get_submodule(f"{name}_bn.act")
        assert type(act) is getattr(nn, op.module) and getattr(act, "inplace", False) == op.inplace
        assert getattr(model.get_submodule(f"{name}_layer"), "inplace", False) is False
    forward, saved, training_peak = measure_activations(spec, 3, torch.float32, "cpu")
    estimate = archspec.summary(spec, batch=3)
    assert _close(estimate.forward_bytes, forward) and _close(estimate.training_bytes, saved)


def test_every_activation_exports_as_python(tmp_path: Path) -> None:
    path = tmp_path / "activations.yaml"
    path.write_text(every_activation_spec(), encoding="utf-8")
    result = archspec.export(path, "python", tmp_path / "activations.py")
    assert result.max_abs_diff is not None and result.max_abs_diff < 1e-5
    source = (tmp_path / "activations.py").read_text(encoding="utf-8")
    assert all(f'"{name}": nn.{op.module}' in source for name, op in ACTIVATIONS.items())
