"""The archspec checkpoint: one `torch.save` file holding the resolved spec (plain data: extends, variant and
overrides applied) and the model's state_dict, so that the file alone rebuilds the model."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import torch

from .compiler import compile_spec
from .nn import Network
from ..files import save_torch
from ..language.spec import Spec, loads

FORMAT = "archspec-checkpoint/1"


def save(model: Network | tuple[Spec, dict[str, torch.Tensor]], path: str | Path, *, force: bool = False,
         protect: Iterable[str | Path] = ()) -> Path:
    """Write `model` (built by archspec: it carries its `.spec`), or a `(spec, state_dict)` pair, as a checkpoint,
    atomically (`archspec.files`); an existing file is replaced only with `force`, one of `protect` never."""
    spec, state = model if isinstance(model, tuple) else (getattr(model, "spec", None), model.state_dict())
    if not isinstance(spec, Spec):
        raise ValueError("archspec.save takes a model built by archspec (it carries its .spec) or a (spec, state_dict) pair")
    payload = {"format": FORMAT, "spec": spec.source, "state_dict": {k: v.detach().cpu() for k, v in state.items()}}
    save_torch(path, payload, force=force, protect=protect)
    return Path(path)


def load_checkpoint(path: str | Path, device: str | torch.device | None = None,
                    dtype: torch.dtype | None = None) -> Network:
    """The model a checkpoint holds: its spec compiled on `device` (in `dtype`), with its state_dict (strict)."""
    data: Any = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path} is not an archspec checkpoint ({FORMAT}); to load a torchvision/timm state_dict "
                         "into a spec, use archspec.build(spec, weights=...)")
    spec = loads(json.dumps(data["spec"]), f"{path} (its spec)")
    model = compile_spec(spec, device, dtype)
    model.load_state_dict(data["state_dict"])
    return model
