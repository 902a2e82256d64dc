"""Weight initialisation schemes, named after the reference family that uses them."""
from __future__ import annotations

import math
from typing import Callable

from torch import nn

from .nn import Residual


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


def _truncated_normal(default_std: float) -> Callable[[nn.Module], None]:
    """torchvision GoogLeNet (std 0.01) and Inception-v3 (std 0.1): truncated normal on [-2, 2] for every
    conv and linear weight, a layer's own `init_std` where the spec gives one (torchvision's `stddev`)."""

    def init(model: nn.Module) -> None:
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, mean=0.0, std=getattr(m, "init_std", default_std), a=-2, b=2)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    return init


def _efficientnet(model: nn.Module) -> None:
    """torchvision EfficientNet: Kaiming-normal (fan_out) convs, zero biases, BN = (1, 0),
    Linear U(-1/sqrt(out), 1/sqrt(out)) with zero bias."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            bound = 1.0 / math.sqrt(m.out_features)
            nn.init.uniform_(m.weight, -bound, bound)
            nn.init.zeros_(m.bias)


def _mobilenet(model: nn.Module) -> None:
    """torchvision MobileNetV2/V3: as EfficientNet, but Linear N(0, 0.01) with zero bias."""
    _efficientnet(model)
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)


def _timm_resnet(model: nn.Module) -> None:
    """timm ResNet (SE-ResNet, SE-ResNeXt): Kaiming-normal (fan_out) convs, and the last BN of each
    residual body starts at zero ("zero_init_last"), so every block starts as the identity."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    for m in model.modules():
        if isinstance(m, Residual):
            body = m.body()
            norms = [u.norm for u in body if isinstance(u, nn.Sequential) and hasattr(u, "norm")]
            if norms:
                nn.init.zeros_(norms[-1].weight)


def _timm_efficientnet(model: nn.Module) -> None:
    """timm EfficientNet/MobileNet ("goog" init): N(0, sqrt(2 / fan_out)) convs with the fan-out per
    group, zero biases; BN and Linear as torchvision's EfficientNet."""
    _efficientnet(model)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0, math.sqrt(2.0 / fan_out))


def _squeezenet(model: nn.Module) -> None:
    """torchvision SqueezeNet: Kaiming-uniform convs, the last one (the classifier) N(0, 0.01); zero biases."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    for m in convs:
        if m is convs[-1]:
            nn.init.normal_(m.weight, mean=0.0, std=0.01)
        else:
            nn.init.kaiming_uniform_(m.weight)
        if m.bias is not None:
            nn.init.constant_(m.bias, 0)


SCHEMES: dict[str, Callable[[nn.Module], None]] = {
    "default": _default, "resnet": _resnet, "vgg": _vgg,
    "googlenet": _truncated_normal(0.01), "inception_v3": _truncated_normal(0.1),
    "efficientnet": _efficientnet, "mobilenet": _mobilenet,
    "timm_resnet": _timm_resnet, "timm_efficientnet": _timm_efficientnet, "squeezenet": _squeezenet,
}


def initialise(model: nn.Module, scheme: str) -> None:
    SCHEMES[scheme](model)
