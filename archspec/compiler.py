"""Spec -> torch.nn.Module. The one layer (with the block builders) that imports torch."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .init import initialise
from .nn import Network
from .spec import Spec, as_spec

if TYPE_CHECKING:
    from .deploy import Deployed


def compile(spec: Spec, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> Network:
    """Build the module tree named after the spec. On `meta` nothing is allocated."""
    root = spec.analyse()
    with torch.device(device or "cpu"):
        layers = [(c.name, c.block.build(c)) for c in root.children if not c.aux]
        heads = [(c.name, c.block.tap, c.block.build(c)) for c in root.children if c.aux]
        model = Network(layers, heads, spec.name)
        if torch.device(device or "cpu").type != "meta":
            initialise(model, spec.init)
    if dtype is not None:
        model = model.to(dtype)
    model.spec = spec
    return model


def build(spec: str | Path | Spec, overrides: dict[str, Any] | list[str] | None = None,
          weights: str | Path | dict[str, torch.Tensor] | None = None,
          device: str | torch.device | None = None, dtype: torch.dtype | None = None,
          variant: str | None = None, phi: float | None = None, mapping: dict[str, str] | str | Path | None = None,
          verify: bool = False, deploy: bool = False) -> Network | Deployed:
    """Load (if given a path), compile and optionally load weights (`mapping`: where they go, see
    `archspec.interop`). `verify`: check the model against the spec's reference model with the same
    weights (`interop.verify_transfer`; a WeightsError if they differ). `deploy`: the inference form,
    batch norms folded, in `dtype`, channels_last and torch.compiled for inference (`archspec.deploy`)."""
    spec = as_spec(spec, overrides, variant=variant, phi=phi)
    model = compile(spec, device, None if deploy else dtype)
    if weights is not None:
        from .interop import load_weights

        model.transfer_report = load_weights(model, weights, mapping=mapping, verify=verify)
    elif verify:
        from .interop import verify_transfer

        verify_transfer(model)
    if deploy:
        from .deploy import deploy as deploy_form

        return deploy_form(model, dtype)
    return model
