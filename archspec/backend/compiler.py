"""Spec -> torch.nn.Module. The one layer (with the block builders) that imports torch."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .init import initialise
from ..ir.memory import concrete, ends_fresh
from ..ir.node import Node
from .nn import Concat, Network, Residual, activation, sequential
from ..language.spec import Spec, as_spec


def compile(spec: Spec, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> Network:
    """Build the module tree named after the spec. On `meta` nothing is allocated."""
    root = spec.analyse()
    with torch.device(device or "cpu"):
        layers = [(c.name, build_node(c)) for c in root.children if not c.aux]
        heads = [(c.name, c.block.tap, build_node(c)) for c in root.children if c.aux]
        model = Network(layers, heads, spec.name)
        if torch.device(device or "cpu").type != "meta":
            initialise(model, spec.init)
    if dtype is not None:
        model = model.to(dtype)
    model.spec = spec
    return model


def build_node(node: Node) -> torch.nn.Module:
    """The module of an analysed node: a leaf op's own builder, a container's by its form; named as in the spec."""
    if node.form == "leaf":
        return concrete(node).build(node)
    if node.form == "residual":
        residual = concrete(node)  # the residual block, as a macro block expands it
        body, shortcut = node.residual_parts()
        return Residual([(c.name, build_node(c)) for c in body], build_node(shortcut) if shortcut else None,
                        activation(residual.activation, inplace=True), residual.drop_rate(node),
                        add_inplace=bool(body) and ends_fresh(body[-1]))
    children = [(c.name, build_node(c)) for c in node.children]
    return Concat(children) if node.form == "concat" else sequential(children)


def build(spec: str | Path | Spec, overrides: dict[str, Any] | list[str] | None = None,
          weights: str | Path | dict[str, torch.Tensor] | None = None,
          device: str | torch.device | None = None, dtype: torch.dtype | None = None,
          variant: str | None = None, phi: float | None = None, mapping: dict[str, str] | str | Path | None = None,
          verify: bool = False) -> Network:
    """Load (if given a path), compile and optionally load weights (`mapping`: where they go, see
    `archspec.backend.interop`). `verify`: check the model against the spec's reference model with the same
    weights (`interop.verify_transfer`; a WeightsError if they differ)."""
    spec = as_spec(spec, overrides, variant=variant, phi=phi)
    model = compile(spec, device, dtype)
    if weights is not None:
        from .interop import load_weights

        model.transfer_report = load_weights(model, weights, mapping=mapping, verify=verify)
    elif verify:
        from .interop import verify_transfer

        verify_transfer(model)
    return model
