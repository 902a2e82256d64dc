"""archspec: a declarative architecture-spec compiler for convolutional networks.

    spec = archspec.load("specs/resnet50.yaml", overrides={"layers.layer3.repeat": 36})
    spec.params, spec.macs, spec.analyse()       # no torch needed
    print(archspec.summary(spec, depth=2))       # per-block table, totals, memory (no torch either)
    model = archspec.build(spec)                 # torch.nn.Module

Everything that needs torch is imported on first use, so loading and analysing stay fast.
"""
from __future__ import annotations

from typing import Any

from .errors import Loc, SpecError
from .spec import Spec, load, loads
# summary(spec, depth, batch, dtype) and diff(a, b, ...): pure Python, never import torch. Imported here,
# not lazily, because the functions share the submodule's name: this binding wins over the submodule
# (which stays importable as `from archspec.summary import ...`).
from .diff import diff
from .summary import summary
# diagram(spec, detail, rankdir): a Drawing (graphviz); imported eagerly for the same reason (~30 ms).
from .diagram import diagram
# export(spec, format, ...): the same; archspec/export.py imports torch only when a function runs.
from .export import export

__version__ = "0.1.0"


def build(*args: Any, **kwargs: Any) -> Any:
    """`build(path_or_spec, overrides=None, weights=None, device=None, dtype=None, variant=None, phi=None,
    mapping=None, verify=False, deploy=False) -> nn.Module`; `deploy=True`: the inference form (archspec.deploy)."""
    from .compiler import build as _build

    return _build(*args, **kwargs)


def compile(spec: Spec, device: Any = None, dtype: Any = None) -> Any:
    """`compile(spec, device=None, dtype=None) -> nn.Module` for an already loaded spec."""
    from .compiler import compile as _compile

    return _compile(spec, device, dtype)


def with_tta(model: Any, spec: Spec | None = None, mode: str | None = None) -> Any:
    """`with_tta(model, spec=None, mode=None) -> nn.Module`: in eval mode, the softmax averaged over the
    test-time views the spec declares (`tta:`, e.g. AlexNet's ten crops); see `archspec.tta`."""
    from .tta import with_tta as _with_tta

    return _with_tta(model, spec, mode)


__all__ = ["Loc", "Spec", "SpecError", "build", "compile", "diagram", "diff", "export", "load", "loads", "summary", "with_tta",
           "__version__"]
