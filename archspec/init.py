"""Weight initialisation schemes, named after the reference family that uses them."""
from __future__ import annotations

from typing import Callable

from torch import nn


def _default(model: nn.Module) -> None:
    """PyTorch's own per-layer defaults (torchvision's AlexNet)."""


def _resnet(model: nn.Module) -> None:
    """torchvision ResNet/ResNeXt/Wide ResNet: Kaiming-normal (fan_out) convs, BN = (1, 0)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


def _vgg(model: nn.Module) -> None:
    """torchvision VGG: Kaiming-normal (fan_out) convs with zero bias, BN = (1, 0), Linear N(0, 0.01)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.constant_(m.bias, 0)


SCHEMES: dict[str, Callable[[nn.Module], None]] = {"default": _default, "resnet": _resnet, "vgg": _vgg}


def initialise(model: nn.Module, scheme: str) -> None:
    SCHEMES[scheme](model)
