"""The deploy form of a compiled spec: the same function, rewritten for inference alone.

    model = archspec.build("specs/resnet50.yaml", deploy=True)                   # CPU, fp32
    model = archspec.build("specs/resnet50.yaml", device="cuda", deploy=True, dtype=torch.bfloat16)
    with torch.no_grad():                                                        # (forward does it anyway)
        logits = model(images)                                                   # compiled on the first call

What `deploy(network)` changes, in this order:
- every batch norm that directly follows a conv in the same `nn.Sequential` (a conv block's `conv, norm`, the
  projection shortcut's, every branch conv's) is folded into that conv: w' = w * s, b' = (b - mean) * s + beta,
  s = gamma / sqrt(var + eps), computed in float64. A norm that follows anything else (a standalone `batchnorm`
  block after a pool) is kept, and so is one without running statistics;
- dropout layers become identities, stochastic depth is switched off and auxiliary heads are removed;
- the weights are cast to `dtype` (pure bf16/fp16, not autocast: every op runs in it) and laid out
  channels_last; `forward` converts its input the same way, and returns the output in `dtype`;
- `forward` runs under `torch.no_grad()`, through `torch.compile` (inductor, fullgraph, a static shape) with
  freezing on (the weights become constants, so inductor folds and prepacks them; on the CPU, oneDNN convs
  with their activations fused), CUDA graphs on CUDA, and max-autotune on request.
A `Deployed` model refuses training mode. `deploy_spec(spec)` is the spec of the same network (norms off,
conv biases on, no auxiliary heads): the standalone Python export of the deploy form is written from it.
"""
from __future__ import annotations

from typing import Any

import torch
from pydantic import BaseModel
from torch import nn

from ..language.blocks.defined import DefinedBlock, Library
from ..language.spec import Spec
from .nn import Network, Residual

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def inductor_options(device: torch.device, autotune: bool = False) -> dict[str, Any]:
    """The inductor settings that serve inference on `device` (applied while dynamo traces: freezing is
    decided then, so torch.compile's `options=` would come too late)."""
    options: dict[str, Any] = {"freezing": True}
    if device.type == "cuda":
        options["triton.cudagraphs"] = True  # one graph replay per call: a static batch
    if autotune:
        options["max_autotune"] = True
    return options


class Deployed(nn.Module):
    """The deploy form: `network` (folded, in `dtype`, channels_last) behind the input conversion and
    `torch.compile`. Inference only; see the module's docstring."""

    def __init__(self, network: Network, dtype: torch.dtype, channels_last: bool, compile: bool,
                 autotune: bool = False) -> None:
        super().__init__()
        self.network = network
        self.folded: list[str] = []  # the paths of the batch norms folded into their convs
        self.dtype = dtype
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        device = next(iter(network.parameters()), torch.empty(0)).device
        self.options = inductor_options(device, autotune) if compile else None
        self._run = torch.compile(self._convert_and_run, fullgraph=True, dynamic=False) if compile \
            else self._convert_and_run
        super().train(False)

    def _convert_and_run(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            x = x.to(self.dtype, memory_format=self.memory_format)
        else:
            x = x.to(self.dtype)
        return self.network(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.options is None:
            with torch.no_grad():
                return self._run(x)
        import torch._inductor.config as inductor_config

        with torch.no_grad(), inductor_config.patch(self.options):
            return self._run(x)

    def train(self, mode: bool = True) -> "Deployed":
        if mode:
            raise RuntimeError("a deploy model runs inference only (its batch norms are folded into the convs, "
                               "dropout and auxiliary heads removed); build the spec without deploy to train it")
        return super().train(False)

    def extra_repr(self) -> str:
        compiled = f"compiled {self.options}" if self.options is not None else "eager"
        return f"dtype={self.dtype}, memory_format={self.memory_format}, {compiled}"


def deploy(network: Network, dtype: torch.dtype | str | None = None, channels_last: bool = True,
           compile: bool = True, autotune: bool = False) -> Deployed:
    """The deploy form of `network` (changed in place: fold it once, after its weights are loaded)."""
    dtype = DTYPES[dtype] if isinstance(dtype, str) else dtype or torch.float32
    network.eval()
    folded = fold_batchnorms(network)
    strip_training_only(network)
    network.requires_grad_(False)
    network.to(dtype=dtype, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    deployed = Deployed(network, dtype, channels_last, compile, autotune)
    deployed.folded = folded
    return deployed


def fold_batchnorms(model: nn.Module) -> list[str]:
    """Fold each batch norm that directly follows a conv in an `nn.Sequential` into the conv (which gains a
    bias) and remove it; returns the paths of the norms folded. Other norms are kept as they are."""
    folded = []
    for path, seq in list(model.named_modules()):
        if not isinstance(seq, nn.Sequential):
            continue
        children = list(seq._modules.items())
        for (_, conv), (name, norm) in zip(children, children[1:]):
            if type(conv) is nn.Conv2d and type(norm) is nn.BatchNorm2d and _foldable(norm):
                fold_into(conv, norm)
                delattr(seq, name)
                folded.append(f"{path}.{name}" if path else name)
    return folded


def _foldable(norm: nn.BatchNorm2d) -> bool:
    """In eval mode the norm is a fixed affine map only when it keeps running statistics."""
    return norm.track_running_stats and norm.running_mean is not None and norm.running_var is not None


@torch.no_grad()
def fold_into(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> None:
    """conv <- norm(conv) in eval mode, exactly (float64 arithmetic, then the conv's dtype)."""
    dtype = conv.weight.dtype
    scale = norm.running_var.double().add(norm.eps).rsqrt()
    if norm.weight is not None:
        scale = scale * norm.weight.double()
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
    bias = (bias - norm.running_mean.double()) * scale
    if norm.bias is not None:
        bias = bias + norm.bias.double()
    conv.weight.copy_((conv.weight.double() * scale.view(-1, 1, 1, 1)).to(dtype))
    conv.bias = nn.Parameter(bias.to(dtype), requires_grad=conv.weight.requires_grad)


def strip_training_only(model: Network) -> None:
    """Dropout becomes the identity, stochastic depth goes off, auxiliary heads go."""
    for module in list(model.modules()):
        for name, child in list(module._modules.items()):
            if isinstance(child, nn.Dropout):
                setattr(module, name, nn.Identity())
        if isinstance(module, Residual):
            module.drop_rate = 0.0
    if isinstance(model, Network):
        model._drop_aux_heads()


def deploy_spec(spec: Spec) -> Spec:
    """The spec of the deploy form's network: every block's batch norm off (its conv then has a bias,
    as the folded conv does), in every field that holds blocks and in the bodies of blocks defined in YAML,
    and no auxiliary heads. Standalone `batchnorm` blocks stay."""
    copy = _NormsOff().rewrite(spec).model_copy(update={"aux_heads": []})
    copy._analysis = None  # model_copy keeps the private cache of the original's analysis
    return copy


class _NormsOff:
    """Rewrites a spec's models with their batch norms off; one derived library per library it meets."""

    def __init__(self) -> None:
        self.libraries: dict[int, Library] = {}

    def rewrite(self, value: Any) -> Any:
        """`value` with its models rewritten; a list or dict (an inception's branches) that holds none is kept."""
        if isinstance(value, BaseModel):
            return self._model(value)
        if isinstance(value, list):
            items = [self.rewrite(item) for item in value]
            return value if all(new is old for new, old in zip(items, value)) else items
        if isinstance(value, dict):
            entries = {key: self.rewrite(item) for key, item in value.items()}
            return value if all(entries[key] is item for key, item in value.items()) else entries
        return value

    def _model(self, model: BaseModel) -> BaseModel:
        update = {name: self.rewrite(field) for name, field in model}
        if getattr(model, "norm", None) == "batch":
            update["norm"] = "none"
            if getattr(model, "bias", None) is False:
                update["bias"] = True
        copy = model.model_copy(update=update)
        if isinstance(copy, DefinedBlock) and copy._library is not None:
            library = copy._library
            if id(library) not in self.libraries:
                self.libraries[id(library)] = library.transformed(self.rewrite)
            copy._library = self.libraries[id(library)]
        return copy
