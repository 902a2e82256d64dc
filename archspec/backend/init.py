"""Weight initialisation: the schemes named after the reference family that uses them, and rules
given as data per op kind (archspec.language.init_rules)."""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from ..language.init_rules import InitRules, Rule
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
    _zero_last_norms(model)


def _zero_last_norms(model: nn.Module) -> None:
    """The weight of the last batch norm of every residual body to 0: the block starts as its shortcut."""
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


def initialise(model: nn.Module, scheme: str | InitRules) -> None:
    if isinstance(scheme, InitRules):
        apply_rules(model, scheme)
    else:
        SCHEMES[scheme](model)


def apply_rules(model: nn.Module, rules: InitRules) -> None:
    """Every module in order: its kind's rule for the weight, then for the bias; then zero_last_norm."""
    for m in model.modules():
        kind = rules.conv if isinstance(m, nn.Conv2d) else rules.linear if isinstance(m, nn.Linear) else \
            rules.norm if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)) else None
        if kind is not None:
            _fill(m, m.weight, kind.weight)
            _fill(m, m.bias, kind.bias)
    if rules.zero_last_norm:
        _zero_last_norms(model)


def _fill(module: nn.Module, tensor: torch.Tensor | None, rule: Rule) -> None:
    """Draw `tensor` by `rule` (the same calls, so the same random numbers, as torch.nn.init's)."""
    if tensor is None or rule.type == "default":
        return
    with torch.no_grad():
        if rule.type == "constant":
            tensor.fill_(rule.value)
        elif rule.type == "normal":
            tensor.normal_(rule.mean, getattr(module, "init_std", rule.std))
        elif rule.type == "trunc_normal":
            nn.init.trunc_normal_(tensor, rule.mean, getattr(module, "init_std", rule.std), rule.a, rule.b)
        elif rule.type == "uniform":
            bound = rule.bound or 1.0 / math.sqrt(_fan(module, rule.fan))
            tensor.uniform_(-bound, bound)
        else:  # kaiming_normal / kaiming_uniform, as torch.nn.init's
            std = nn.init.calculate_gain(rule.nonlinearity, rule.a) / math.sqrt(_fan(module, rule.mode))
            if rule.type == "kaiming_normal":
                tensor.normal_(0, std)
            else:
                tensor.uniform_(-math.sqrt(3.0) * std, math.sqrt(3.0) * std)


def _fan(module: nn.Module, mode: str) -> int:
    """torch.nn.init's fan of the module's weight (a bias takes its weight's); fan_out_per_group divides
    a conv's fan_out by its groups (timm's "goog" init)."""
    weight = module.weight
    receptive = weight[0][0].numel() if weight.dim() > 2 else 1
    if mode == "fan_in":
        return weight.shape[1] * receptive
    return weight.shape[0] * receptive // (getattr(module, "groups", 1) if mode == "fan_out_per_group" else 1)
