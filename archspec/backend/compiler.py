"""Spec -> torch.nn.Module. The one layer (with the block builders) that imports torch."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.utils._device import DeviceContext

from .init import initialise
from ..ir.memory import concrete, ends_fresh
from ..ir.node import Node
from .nn import Concat, Network, Residual, activation, sequential
from ..language.spec import Spec, as_spec

if TYPE_CHECKING:
    from .deploy import Deployed

# The in-place fills of torch's initialisers (modules' reset_parameters and torch.nn.init).
INITIALISER_FILLS = frozenset({"uniform_", "normal_", "fill_", "zero_", "kaiming_uniform_", "kaiming_normal_",
                               "trunc_normal_", "xavier_uniform_", "xavier_normal_", "constant_", "ones_", "zeros_",
                               "orthogonal_"})


def initialiser_fill(func: Any, args: tuple[Any, ...], kwargs: Any) -> torch.Tensor | None:
    """The tensor an initialiser's in-place fill writes, if the torch function `func` is one."""
    if getattr(func, "__name__", None) not in INITIALISER_FILLS:
        return None
    tensor = args[0] if args else (kwargs or {}).get("tensor")  # torch.nn.init passes it by name
    return tensor if isinstance(tensor, torch.Tensor) else None


class _OnMeta(DeviceContext):
    """`with torch.device("meta")`, whose fills return the tensor as it is: on meta a fill has nothing to fill,
    and torch would run each through its Python decomposition (~1 ms apiece: most of a meta build's time)."""

    def __init__(self) -> None:
        super().__init__(torch.device("meta"))

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        tensor = initialiser_fill(func, args, kwargs)
        if tensor is not None and tensor.is_meta:
            return tensor
        return super().__torch_function__(func, types, args, kwargs)


def _on(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """Where modules are created: under `torch.device` unless it is the default already (the context puts a Python
    function in front of every torch call, which torchvision's constructors do not pay)."""
    if device.type == "meta":
        return _OnMeta()
    return contextlib.nullcontext() if device == torch.get_default_device() else torch.device(device)


def compile_spec(spec: Spec, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> Network:
    """Build the module tree named after the spec. On `meta` nothing is allocated."""
    root = spec.analyse()
    device = torch.device(device or "cpu")
    with _on(device):
        layers = [(c.name, build_node(c)) for c in root.children if not c.aux]
        heads = [(c.name, c.block.tap, build_node(c)) for c in root.children if c.aux]
        model = Network(layers, heads, spec.name)
        if device.type != "meta":
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


def example_input(spec: Spec | tuple[int, ...], batch: int = 1, device: str | torch.device | None = None, *,
                  seed: int | None = None, channels_last: bool = False, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A random batch for the network's input (`spec.input.shape`, or a shape without the batch dimension), drawn
    on `device`; with `seed`, drawn reproducibly on the CPU, then moved there."""
    shape = spec.input.shape if isinstance(spec, Spec) else spec
    if seed is None:
        x = torch.randn(batch, *shape, device=device, dtype=dtype)
    else:
        x = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(seed), dtype=dtype).to(device or "cpu")
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.ndim == 4 else x


def build(spec: str | Path | Spec, overrides: dict[str, Any] | list[str] | None = None,
          weights: str | Path | dict[str, torch.Tensor] | None = None,
          device: str | torch.device | None = None, dtype: torch.dtype | None = None,
          variant: str | None = None, phi: float | None = None, mapping: dict[str, str] | str | Path | None = None,
          verify: bool = False, deploy: bool = False) -> Network | Deployed:
    """Load (if given a path), compile and optionally load weights (`mapping`: where they go, see
    `archspec.backend.interop`). `verify`: check the model against the spec's reference model with the same
    weights (`interop.verify_transfer`; a WeightsError if they differ). `deploy`: the inference form,
    batch norms folded, in `dtype`, channels_last and torch.compiled for inference (`backend.deploy`)."""
    spec = as_spec(spec, overrides, variant=variant, phi=phi)
    model = compile_spec(spec, device, None if deploy else dtype)
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
