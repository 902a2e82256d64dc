"""Every spec with a torchvision/timm reference matches it exactly: parameters, MACs, outputs."""
from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode

import archspec
from archspec.backend.compiler import initialiser_fill
from archspec.backend.references import reference_model
from archspec.backend.interop import transfer
from archspec.backend.references import randomise_norms
from conftest import REFERENCED, SPECS, background_result, spec_params


def _published_gmacs(reference: str, size: int) -> float | None:
    """The `_ops` of the reference's weights for the spec's input size: DEFAULT's, unless another entry is made
    for that size and DEFAULT is not (regnet_y_128gf's DEFAULT is its 384 px SWAG weights, 224 px is SWAG_LINEAR)."""
    package, name = reference.split(":")
    if package != "torchvision":
        return None
    import torchvision

    weights = torchvision.models.get_model_weights(name)
    fitting = [w for w in (weights.DEFAULT, *weights) if w.transforms.keywords.get("crop_size") == size]
    return (fitting[0] if fitting else weights.DEFAULT).meta["_ops"]


class _ZeroFills(TorchFunctionMode):
    """Initialisers' random fills write zeros (a memset; `random_reference` draws every parameter afterwards).
    Zeros, not the memory as it is: an initialiser goes on computing on what it filled (trunc_normal_'s erfinv),
    which on reused memory's denormals and NaNs takes minutes."""

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        tensor = initialiser_fill(func, args, kwargs)
        if tensor is not None:
            with torch.no_grad():
                return tensor.zero_()
        return func(*args, **(kwargs or {}))


def random_reference(reference: str) -> torch.nn.Module:
    """The reference built live from its package (`weights=None`) without running its initialisers (most of a
    big network's comparison: RegNetY-128GF's take 14 of 26 s on one core), every parameter then drawn:
    weights ~ U(±1/sqrt(fan_in)) (PyTorch's default for conv and linear), and each vector constant, for
    randomise_norms to draw (norm weights and biases, layer scales; and the running statistics, which a zeroed
    fill of 1 leaves at 0)."""
    with _ZeroFills():
        model = reference_model(reference)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim > 1:
                bound = 1 / math.sqrt(p[0].numel())
                p.uniform_(-bound, bound, generator=generator)
            else:
                p.zero_()
    return model


def compare_with_reference(path: str) -> dict[str, Any]:
    """The figures test_matches_reference checks, computed in a background worker (conftest.py)."""
    torch.manual_seed(0)
    spec = archspec.load(path)
    ref = random_reference(spec.reference).eval()
    ours = archspec.compile(spec, device="meta").eval()  # allocated below, where the reference's weights fill it
    found: dict[str, Any] = {"ref_params": sum(p.numel() for p in ref.parameters()),
                             "ours_params": sum(p.numel() for p in ours.parameters()),
                             "published_gmacs": _published_gmacs(spec.reference, spec.input.shape[1])}
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():  # on meta: FlopCounterMode counts from the shapes, nothing is computed
        ours(torch.randn(1, *spec.input.shape, device="meta"))
    found["flops"] = counter.get_total_flops()

    # Copy the reference's random weights, normalisation statistics and affine values randomised (fresh ones
    # normalise nothing; a zero-initialised last norm or a layer scale of 1e-6 hides a branch), over to ours by
    # dataflow (every tensor of ours), and compare in eval mode.
    state = ref.state_dict()  # keeps its version metadata (MNASNet's loader reads it)
    state.update(randomise_norms(state))
    ref.load_state_dict(state)
    ours = ours.to_empty(device="cpu")
    report = transfer(ref, ours)
    found |= {"transfer_ok": report.ok, "report": str(report), "method": report.method, "values": report.values,
              "ref_values": sum(t.numel() for t in ref.state_dict().values())}
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        expected, got = ref(x), ours(x)
    return found | {"shapes": (tuple(got.shape), tuple(expected.shape)),
                    "difference": (got - expected).abs().max().item(), "scale": expected.abs().max().item()}


BACKGROUND_TEST = "test_matches_reference"


def background_job(path: Path) -> Callable[[], dict[str, Any]]:
    return functools.partial(compare_with_reference, str(path))


@pytest.mark.parametrize("path", spec_params(REFERENCED))
def test_matches_reference(path: Path) -> None:
    spec = archspec.load(path)
    found = background_result(__name__, path)

    # Parameters: reference count, compiled count and the analysis all agree.
    assert found["ours_params"] == found["ref_params"]
    assert spec.params == found["ref_params"]

    # MACs: torchvision's published GFLOPS (really GMACs, 3 decimals) and FlopCounter (2 FLOPs per MAC).
    if found["published_gmacs"] is not None:
        assert round(spec.macs / 1e9, 3) == pytest.approx(found["published_gmacs"], abs=1e-9)
    assert found["flops"] == 2 * spec.macs

    # Outputs, after the transfer of every tensor by dataflow: equal relative to the largest output.
    assert found["transfer_ok"] and found["method"] == "dataflow", found["report"]
    assert found["values"] == found["ref_values"]
    got_shape, expected_shape = found["shapes"]
    assert got_shape == expected_shape
    assert found["difference"] <= 1e-4 * found["scale"]


@pytest.mark.parametrize("name", ["efficientnet_b0", "efficientnet_v2_s", "convnext_tiny"])
def test_training_mode_matches_reference(name: str) -> None:
    """Stochastic depth (rate k/n of unit k) and dropout draw their masks in the reference's order: with the
    same seed before each forward, training-mode outputs (batch statistics, masks and all) are equal."""
    spec = archspec.load(SPECS / f"{name}.yaml")
    ref = reference_model(spec.reference).train()
    state = ref.state_dict()  # keeps its version metadata (MNASNet's loader reads it)
    state.update(randomise_norms(state))  # ConvNeXt's 1e-6 layer scales too
    ref.load_state_dict(state)
    ours = archspec.compile(spec).train()
    assert transfer(ref, ours).ok
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        torch.manual_seed(1)
        expected = ref(x)
        torch.manual_seed(1)
        got = ours(x)
        torch.manual_seed(2)
        other = ours(x)
    scale = expected.abs().max().item()
    assert (got - expected).abs().max().item() <= 1e-4 * scale
    assert (other - expected).abs().max().item() > 1e-2 * scale  # the masks matter: another seed differs
