"""The torchvision/timm models that specs name in `reference:` (bench, weight transfer, tests), and the
randomised norms that make a comparison with one see every layer."""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn


def reference_model(reference: str) -> nn.Module:
    """`torchvision:name` or `timm:name`, randomly initialised (no downloads)."""
    package, name = reference.split(":")
    if package == "torchvision":
        import torchvision

        # GoogLeNet and Inception-v3 warn unless their (default) initialisation is asked for explicitly.
        kwargs = {"init_weights": True} if name in ("googlenet", "inception_v3") else {}
        return torchvision.models.get_model(name, weights=None, **kwargs)
    import timm

    return timm.create_model(name, pretrained=False)


def randomise_norms(state: Mapping[str, torch.Tensor], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random normalisation statistics and affine values for `state`, so that a comparison sees every norm
    and every branch: batch-norm running means ~ N(0, 0.1²) and variances ~ U(0.5, 1.5), and every float
    tensor whose elements are all equal (a fresh norm's weight 1 and bias 0, a zero-initialised last norm
    that switches a residual branch off, ConvNeXt's layer scale of 1e-6): biases ~ N(0, 0.1²), the rest
    ~ U(0.5, 1.5). Weights drawn at random by an initialisation are kept."""
    generator = torch.Generator().manual_seed(seed)
    replaced = {}
    for key, t in state.items():
        if not t.is_floating_point() or t.numel() == 0:
            continue
        if key.endswith("running_mean") or (key.endswith("bias") and _constant(t)):
            replaced[key] = torch.randn(t.shape, generator=generator) * 0.1
        elif key.endswith("running_var") or _constant(t):
            replaced[key] = torch.rand(t.shape, generator=generator) + 0.5
    return replaced


def _constant(t: torch.Tensor) -> bool:
    flat = t.detach().reshape(-1)
    return bool((flat == flat[0]).all())
