"""archspec: a declarative architecture-spec compiler for convolutional networks.

    spec = archspec.load("specs/resnet50.yaml", overrides={"layers.layer3.repeat": 36})
    spec.params, spec.macs, spec.analyse()       # no torch needed
    model = archspec.build(spec)                 # torch.nn.Module

Everything that needs torch is imported on first use, so loading and analysing stay fast.
"""
from __future__ import annotations

from typing import Any

from .errors import Loc, SpecError
from .spec import Spec, load, loads

__version__ = "0.1.0"


def build(*args: Any, **kwargs: Any) -> Any:
    """`build(path_or_spec, overrides=None, weights=None, device=None, dtype=None) -> nn.Module`."""
    from .compiler import build as _build

    return _build(*args, **kwargs)


def compile(spec: Spec, device: Any = None, dtype: Any = None) -> Any:
    """`compile(spec, device=None, dtype=None) -> nn.Module` for an already loaded spec."""
    from .compiler import compile as _compile

    return _compile(spec, device, dtype)


__all__ = ["Loc", "Spec", "SpecError", "build", "compile", "load", "loads", "__version__"]
