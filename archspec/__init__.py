"""archspec: a declarative architecture-spec compiler for convolutional networks.

    spec = archspec.load("specs/resnet50.yaml", overrides={"layers.layer3.repeat": 36})
    spec.params, spec.macs, spec.analyse()       # no torch needed
    print(archspec.summary(spec, depth=2))       # per-block table, totals, memory (no torch either)
    model = archspec.build(spec)                 # torch.nn.Module

Only the spec language is imported with the package; every other public name is imported on first use
(PEP 562), so that loading and validating import neither torch nor the reports and exports they do not use.
"""
from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .errors import Loc, SpecError
from .language.spec import Spec, load, loads

if TYPE_CHECKING:  # for readers and type checkers; at run time __getattr__ imports them
    from .backend.checkpoint import load_checkpoint, save
    from .backend.compiler import build, compile_spec as compile, example_input
    from .backend.tta import with_tta
    from .exports.formats import export
    from .reports.diagram import diagram
    from .reports.diff import diff
    from .reports.summary import summary

__version__ = "0.1.0"

# public name -> (module, attribute). summary, diff and diagram never import torch; the others do when they run.
_LAZY = {
    "summary": ("reports.summary", "summary"),      # summary(spec, depth, batch, dtype) -> Summary
    "diff": ("reports.diff", "diff"),               # diff(a, b, ...) -> Diff
    "diagram": ("reports.diagram", "diagram"),      # diagram(spec, detail, rankdir) -> Drawing (graphviz)
    "export": ("exports.formats", "export"),        # export(spec, "onnx"|"pt2"|"python", ...)
    "build": ("backend.compiler", "build"),         # build(path_or_spec_or_checkpoint, ..., deploy=False) -> nn.Module
    "compile": ("backend.compiler", "compile_spec"),  # compile(spec, device, dtype) -> nn.Module
    "save": ("backend.checkpoint", "save"),         # save(model, path, force=False): an archspec checkpoint
    "load_checkpoint": ("backend.checkpoint", "load_checkpoint"),  # -> (Spec, state_dict)
    "with_tta": ("backend.tta", "with_tta"),        # with_tta(model, spec, mode) -> nn.Module
    "example_input": ("backend.compiler", "example_input"),  # a seeded input batch for a spec
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'archspec' has no attribute '{name}'")
    module, attribute = _LAZY[name]
    value = getattr(import_module(f".{module}", __name__), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = ["Loc", "Spec", "SpecError", "build", "compile", "diagram", "diff", "example_input", "export", "load",
           "load_checkpoint", "loads", "save", "summary", "with_tta", "__version__"]
