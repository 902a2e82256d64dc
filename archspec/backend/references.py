"""The torchvision/timm models that specs name in `reference:` (bench, weight transfer, tests)."""
from __future__ import annotations

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
