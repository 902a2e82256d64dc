"""Initialisation as data: a rule per parameter of each op kind (`init:` as a mapping, beside the
named family presets). Torch-free: archspec.backend.init applies the rules to a built model."""
from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BeforeValidator, ConfigDict, Field, model_validator

from .model import SpecModel

Finite = Annotated[float, Field(ge=-1e6, le=1e6, allow_inf_nan=False)]
Std = Annotated[float, Field(gt=0, le=10)]
Fan = Literal["fan_in", "fan_out", "fan_out_per_group"]  # fan_out_per_group: kh*kw*out/groups (timm's "goog")


class Kaiming(SpecModel):
    """He et al. 2015: std = gain / sqrt(fan) (normal) or bound = sqrt(3) * that std (uniform)."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["kaiming_normal", "kaiming_uniform"]
    mode: Fan = "fan_in"
    nonlinearity: Literal["relu", "leaky_relu", "linear", "sigmoid", "tanh", "selu"] = "leaky_relu"
    a: Annotated[float, Field(ge=0, le=100)] = 0.0  # the negative slope of leaky_relu


class Normal(SpecModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["normal"]
    mean: Finite = 0.0
    std: Std


class TruncNormal(SpecModel):
    """Normal(mean, std) cut to [a, b], absolute bounds as torch's trunc_normal_."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["trunc_normal"]
    mean: Finite = 0.0
    std: Std
    a: Finite = -2.0
    b: Finite = 2.0

    @model_validator(mode="after")
    def _order(self) -> "TruncNormal":
        if self.a >= self.b:
            raise ValueError(f"the cut [a, b] = [{self.a:g}, {self.b:g}] is empty; a must be below b")
        return self


class Uniform(SpecModel):
    """U(-bound, bound): a fixed `bound`, or 1 / sqrt(fan) with `fan` (torchvision EfficientNet's classifier)."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["uniform"]
    bound: Annotated[float, Field(gt=0, le=1e6)] | None = None
    fan: Fan | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> "Uniform":
        if (self.bound is None) == (self.fan is None):
            raise ValueError("give either 'bound' or 'fan' (bound 1/sqrt(fan))")
        return self


class Constant(SpecModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["constant"]
    value: Finite


class Default(SpecModel):
    """PyTorch's own initialisation of the tensor, left as it is."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["default"]


SHORTHANDS = {"default": {"type": "default"}, "zeros": {"type": "constant", "value": 0.0},
              "ones": {"type": "constant", "value": 1.0}}


def _shorthand(value: object) -> object:
    """`default`, `zeros` and `ones` stand for {type: default} and the constants 0 and 1."""
    return SHORTHANDS.get(value, {"type": value}) if isinstance(value, str) else value


Rule = Annotated[Union[Default, Kaiming, Normal, TruncNormal, Uniform, Constant], Field(discriminator="type"),
                 BeforeValidator(_shorthand)]


class ParamRules(SpecModel):
    model_config = ConfigDict(extra="forbid")
    # Defaults as a spec writes them, validated when used: no model is built when the module is imported.
    weight: Annotated[Rule, Field(validate_default=True)] = "default"  # type: ignore[assignment]
    bias: Annotated[Rule, Field(validate_default=True)] = "default"  # type: ignore[assignment]


class NormRules(ParamRules):
    @model_validator(mode="after")
    def _no_fan(self) -> "NormRules":
        for name, rule in (("weight", self.weight), ("bias", self.bias)):
            if isinstance(rule, Kaiming) or (isinstance(rule, Uniform) and rule.fan):
                raise ValueError(f"a norm's {name} is a vector with no fan; use normal, trunc_normal, uniform with "
                                 "a bound, constant, zeros or ones")
        return self


class InitRules(SpecModel):
    """Per op kind (conv: every Conv2d, SE's included; linear; norm: every batch norm), in module order,
    weight then bias; then `zero_last_norm` zeroes the weight of the last batch norm of every residual body."""

    model_config = ConfigDict(extra="forbid")
    conv: Annotated[ParamRules, Field(validate_default=True)] = {}  # type: ignore[assignment]
    linear: Annotated[ParamRules, Field(validate_default=True)] = {}  # type: ignore[assignment]
    norm: Annotated[NormRules, Field(validate_default=True)] = {}  # type: ignore[assignment]
    zero_last_norm: bool = False
