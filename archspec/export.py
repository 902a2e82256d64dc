"""Export a compiled spec: ONNX, a `torch.export` program (.pt2), or a standalone PyTorch source file.

    archspec.export("specs/resnet50.yaml", "onnx")                      # -> ./resnet50.onnx
    archspec.export(spec, "python", "resnet50.py", weights="tv.pth")    # + resnet50.pth beside it

Every format is the eval-mode network (auxiliary heads, dropout and stochastic depth off) with a
dynamic batch dimension. ONNX and .pt2 come from one `torch.export` program; with `check` the written
file is run again (ONNX in onnxruntime) on a fresh input and compared with the eager model.

The Python source is generated from the analysis tree: each block type that is a module of its own
(a macro block such as `bottleneck`, a `residual`, an `inception`) becomes an `nn.Module` class named
after it; its instances are compared and the hyper-parameters that differ between them (channels,
stride, ...) become constructor arguments, the rest stay literals. Leaf layers are read off the
compiled module (built on `meta`, so nothing is allocated), so the file builds exactly the module tree
`archspec.build` does: the same state_dict keys and shapes (`load_state_dict(strict=True)`), and the
same outputs. The file imports only torch (and the standard library).
"""
from __future__ import annotations

import json
import keyword
import os
import tempfile
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from .blocks.base import MacroBlock, Node, fmt_shape
from .errors import one_line
from .files import write_atomic
from .spec import Spec, load

if TYPE_CHECKING:  # torch is imported by the functions that use it: `import archspec` stays torch-free
    import torch
    from torch import nn

FORMATS = {"onnx": ".onnx", "pt2": ".pt2", "python": ".py"}
ONNX_SINGLE_FILE_LIMIT = 1_800_000_000  # bytes of weights; above, ONNX needs an external data file
EXAMPLE_BATCH = 2  # torch.export specialises a batch of 1, so the example batch is 2


class ExportError(ValueError):
    """A model that an export format cannot express (reported as one line by the CLI)."""


@dataclass
class ExportResult:
    path: Path
    format: str
    files: list[Path] = field(default_factory=list)  # everything written, `path` first
    max_abs_diff: float | None = None  # the check against the eager model, when run
    transfer: Any = None  # the weight transfer report, when weights were given


# -- the high-level entry point ----------------------------------------------------------------------

def default_output(spec: Spec, format: str) -> Path:
    return Path.cwd() / f"{spec.name}{FORMATS[format]}"


def export(spec: str | Path | Spec, format: str, output: str | Path | None = None,
           weights: str | Path | Mapping[str, torch.Tensor] | None = None, *,
           overrides: dict[str, Any] | list[str] | None = None, variant: str | None = None,
           phi: float | None = None, check: bool = True, model: nn.Module | None = None,
           write_weights: bool | None = None, protect: Iterable[str | Path] = (),
           mapping: Mapping[str, str] | str | Path | None = None, verify: bool = False) -> ExportResult:
    """Write `spec` (a path or a loaded Spec) in `format` (onnx, pt2, python) to `output` (default
    ./SPEC_NAME.onnx|.pt2|.py); the eval-mode network, with a dynamic batch dimension.

    `weights`: a torchvision/timm state_dict (file or mapping) or archspec checkpoint, loaded
    as `archspec.interop.load_weights` does, with `mapping` and `verify` (else the spec's
    initialisation). `model`: an already built model of `spec` to
    export instead. For `python`, `write_weights` (default: whether `weights` were given) also writes
    the model's state_dict beside the source as OUTPUT.pth, which the generated `build()` loads.
    `check` runs the written file on a fresh input (another batch size) against the eager model and
    records the max abs difference. Nothing is written over the spec file or `protect`."""
    import torch

    if format not in FORMATS:
        raise ExportError(f"unknown export format '{format}' (one of: {', '.join(FORMATS)})")
    guarded = [Path(p) for p in protect]
    if not isinstance(spec, Spec):
        guarded.append(Path(spec))
        spec = load(spec, overrides, variant=variant, phi=phi)
    elif overrides or variant or phi is not None:  # as compiler.build: a loaded spec is final
        raise ValueError("overrides, variant and phi apply to a spec file; pass a path, or call archspec.load(path, ...)")
    if isinstance(weights, (str, Path)):
        guarded.append(Path(weights))
    out = Path(output) if output is not None else default_output(spec, format)
    write_weights = weights is not None if write_weights is None else write_weights
    check_targets(format, out, write_weights, guarded)
    report = None
    if model is None:
        from .compiler import compile

        model = compile(spec)
    if weights is not None:
        from .interop import load_weights

        report = load_weights(model, weights, mapping=mapping, verify=verify)
    elif verify:
        from .interop import verify_transfer

        verify_transfer(model)
    model = model.eval()
    if format == "python":
        result = _export_python(spec, model, out, guarded, with_weights=write_weights, check=check)
    else:
        program = export_program(model, spec)
        if format == "onnx":
            save_onnx(program, out, guarded)
        else:
            write_atomic(out, lambda tmp: _save_pt2(program, tmp), guarded)
        result = ExportResult(out, format, [out, *_onnx_data_files(out)])
        if check:
            x = example_input(spec, batch=EXAMPLE_BATCH + 1, seed=1).to(_device_of(model))
            got = run_onnx(out, x) if format == "onnx" else run_pt2(out, x)
            with torch.no_grad():
                result.max_abs_diff = (got.to(x.device) - model(x)).abs().max().item()
    result.transfer = report
    return result


def check_targets(format: str, out: Path, write_weights: bool, protect: Iterable[str | Path]) -> list[Path]:
    """The files an export writes (the output, and OUTPUT.pth for python with weights); an ExportError
    if one of them is a file in `protect` (the spec, the weights being read)."""
    targets = [out] + ([out.with_suffix(".pth")] if format == "python" and write_weights else [])
    for target in targets:
        for path in map(Path, protect):
            if target.resolve() == path.resolve():
                what = "spec" if path.suffix in (".yaml", ".yml") else "file"
                raise ExportError(f"refusing to overwrite the input {what} {path}; choose another output (-o)")
    return targets


def _device_of(model: nn.Module) -> torch.device:
    import torch

    return next(iter(model.parameters()), torch.empty(0)).device


def example_input(spec: Spec, batch: int = EXAMPLE_BATCH, seed: int = 0) -> torch.Tensor:
    import torch

    return torch.randn(batch, *spec.input.shape, generator=torch.Generator().manual_seed(seed))


# -- torch.export and ONNX ---------------------------------------------------------------------------

def export_program(model: nn.Module, spec: Spec) -> torch.export.ExportedProgram:
    """The eval-mode network as a `torch.export` program with a dynamic batch dimension."""
    import torch

    model.eval()
    x = example_input(spec).to(_device_of(model))
    batch = torch.export.Dim("batch", min=1, max=65536)
    try:
        with torch.no_grad():
            return torch.export.export(model, (x,), dynamic_shapes=({0: batch},))
    except Exception as exc:  # torch.export's errors run to pages; the first line says what failed
        raise ExportError(f"torch.export failed: {one_line(exc)}") from exc


def _save_pt2(program: torch.export.ExportedProgram, path: Path) -> None:
    import torch

    with open(path, "wb") as handle:
        torch.export.save(program, handle)


def run_pt2(path: str | Path, x: torch.Tensor) -> torch.Tensor:
    import torch

    with torch.no_grad():
        return torch.export.load(str(path)).module()(x)


def onnx_program(program: torch.export.ExportedProgram) -> Any:
    import torch

    try:
        import onnxscript  # noqa: F401  (torch.onnx's exporter needs it)
    except ImportError as exc:
        raise ExportError("ONNX export needs onnx and onnxscript: pip install 'archspec[export]'") from exc
    args = tuple(program.example_inputs[0])
    try:
        return torch.onnx.export(program, args, dynamo=True, input_names=["input"], output_names=["logits"],
                                 verbose=False)
    except Exception as exc:
        raise ExportError(f"ONNX conversion failed: {one_line(exc)}") from exc


def save_onnx(program: torch.export.ExportedProgram, path: Path, inputs: Iterable[Path] = ()) -> None:
    """One self-contained .onnx file, written atomically; a network whose weights pass ONNX's 2 GB
    limit gets PATH.data beside it (moved in place first, then the .onnx)."""
    converted = onnx_program(program)
    size = sum(t.numel() * t.element_size() for t in program.state_dict.values())
    if size < ONNX_SINGLE_FILE_LIMIT:
        write_atomic(path, lambda tmp: converted.save(str(tmp), external_data=False), list(inputs))
        Path(f"{path}.data").unlink(missing_ok=True)  # left by an earlier, larger export
        return
    check_targets("onnx", path, False, inputs)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{path.name}.", dir=path.parent) as tmp:
        staged = Path(tmp) / path.name
        converted.save(str(staged), external_data=True)
        for data in Path(tmp).glob(f"{path.name}.data"):
            os.replace(data, path.parent / data.name)
        os.replace(staged, path)


def _onnx_data_files(path: Path) -> list[Path]:
    data = Path(f"{path}.data")
    return [data] if path.suffix == ".onnx" and data.exists() else []


def run_onnx(path: str | Path, x: torch.Tensor) -> torch.Tensor:
    """Run an exported .onnx file in onnxruntime (CPU)."""
    import torch

    try:
        import onnxruntime
    except ImportError as exc:
        raise ExportError("checking the ONNX file needs onnxruntime: pip install 'archspec[export]'") from exc
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return torch.from_numpy(session.run(None, {name: x.detach().cpu().numpy()})[0])


# -- standalone PyTorch source -----------------------------------------------------------------------

def _export_python(spec: Spec, model: nn.Module, out: Path, inputs: list[Path], with_weights: bool,
                   check: bool) -> ExportResult:
    import torch

    weights_path = out.with_suffix(".pth") if with_weights else None
    source = python_source(spec, weights=weights_path.name if weights_path else None)
    files = [out]
    if weights_path is not None:
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        write_atomic(weights_path, lambda tmp: torch.save(state, tmp), inputs)
        files.append(weights_path)
    write_atomic(out, lambda tmp: tmp.write_text(source), inputs)
    result = ExportResult(out, "python", files)
    if check:
        result.max_abs_diff = check_python_source(source, spec, model)
    return result


def load_python_source(source: str, name: str = "archspec_generated") -> dict[str, Any]:
    """Execute generated source in a fresh namespace (what importing the file would give)."""
    namespace: dict[str, Any] = {"__name__": name}
    exec(compile(source, f"<{name}>", "exec"), namespace)
    return namespace


def check_python_source(source: str, spec: Spec, model: nn.Module) -> float:
    """Build the generated network, load `model`'s state_dict strictly, compare eval outputs."""
    import torch

    namespace = load_python_source(source)
    device = _device_of(model)
    generated = namespace["build"]().to(device).eval()
    generated.load_state_dict(model.state_dict(), strict=True)
    x = example_input(spec, seed=2).to(device)
    with torch.no_grad():
        return (generated(x) - model.eval()(x)).abs().max().item()


def python_source(spec: Spec, weights: str | None = None) -> str:
    """A standalone PyTorch file defining the network of `spec` (see the module docstring)."""
    return _SourceWriter(spec, weights).write()


# The IR the writer works on: module-building expressions with literal arguments.

@dataclass(frozen=True)
class Lit:
    value: Any


@dataclass(frozen=True)
class Name:
    id: str


@dataclass(frozen=True)
class Call:
    fn: Any  # a str (nn.Conv2d, ConvNormAct, ...) or a ClassDef
    args: tuple[tuple[str, Any], ...]  # (parameter name, Lit | Name | Call | Seq), in signature order


@dataclass(frozen=True)
class Seq:
    items: tuple[tuple[str, Any], ...]  # an nn.Sequential's (child name, expression)


REQUIRED = object()
# Signatures of the constructors the writer emits: (parameter, default or REQUIRED).
SIGNATURES: dict[str, list[tuple[str, Any]]] = {
    "ConvNormAct": [("in_channels", REQUIRED), ("out_channels", REQUIRED), ("kernel_size", REQUIRED), ("stride", 1),
                    ("padding", 0), ("dilation", 1), ("groups", 1), ("bias", None), ("norm", True),
                    ("eps", 1e-5), ("momentum", 0.1), ("act", None)],
    "nn.Conv2d": [("in_channels", REQUIRED), ("out_channels", REQUIRED), ("kernel_size", REQUIRED), ("stride", 1),
                  ("padding", 0), ("dilation", 1), ("groups", 1), ("bias", True)],
    "nn.BatchNorm2d": [("num_features", REQUIRED), ("eps", 1e-5), ("momentum", 0.1)],
    "nn.BatchNorm1d": [("num_features", REQUIRED), ("eps", 1e-5), ("momentum", 0.1)],
    "nn.Linear": [("in_features", REQUIRED), ("out_features", REQUIRED), ("bias", True)],
    "nn.MaxPool2d": [("kernel_size", REQUIRED), ("stride", None), ("padding", 0), ("dilation", 1), ("ceil_mode", False)],
    "nn.AvgPool2d": [("kernel_size", REQUIRED), ("stride", None), ("padding", 0), ("ceil_mode", False),
                     ("count_include_pad", True)],
    "nn.AdaptiveAvgPool2d": [("output_size", REQUIRED)],
    "nn.AdaptiveMaxPool2d": [("output_size", REQUIRED)],
    "nn.LocalResponseNorm": [("size", REQUIRED), ("alpha", 1e-4), ("beta", 0.75), ("k", 1.0)],
    "nn.Dropout": [("p", 0.5)],
    "nn.Flatten": [("start_dim", 1), ("end_dim", -1)],
    "nn.Identity": [],
    "nn.GELU": [("approximate", "none")],
    "SqueezeExcite": [("channels", REQUIRED), ("squeeze", REQUIRED), ("act", "relu"), ("gate", "sigmoid")],
    **{f"nn.{name}": [("inplace", False)] for name in ("ReLU", "ReLU6", "SiLU", "Hardswish", "Hardsigmoid")},
    "nn.Sigmoid": [],
    "nn.Tanh": [],
}
CHANNEL_ARGS = {"in_channels", "out_channels", "num_features", "in_features", "out_features", "channels", "squeeze"}
CLASS_NAMES = {"mbconv": "MBConv", "inception_v1": "InceptionV1", "basic": "BasicBlock", "se": "SE"}
PRELUDE_NAMES = {"ConvNormAct", "SqueezeExcite", "activation", "drop_path", "ACTIVATIONS", "OrderedDict",
                 "torch", "nn", "build", "INPUT_SHAPE", "MEAN", "STD", "RESIZE", "WEIGHTS"}
LINE = 110


@dataclass(eq=False)
class ClassDef:
    """A generated class: one block type with one structure, instantiated at `nodes`."""

    type: str
    form: str  # chain (an nn.Sequential), residual, concat
    nodes: list[Node]
    body: "Body"  # with Names for the parameters
    params: list[tuple[str, str, Any]]  # (name, kind, default or REQUIRED)
    module_shortcut: bool = False
    name: str = ""
    order: int = 0


@dataclass(frozen=True)
class Body:
    form: str
    items: tuple[tuple[str, Any], ...]
    shortcut: Any = None  # residual: the shortcut module expression (nn.Identity() when none)
    act: Any = None  # residual: the activation after the add
    drop: Any = None  # residual: Lit(drop rate)


def _simplify(value: Any) -> Any:
    """(3, 3) -> 3: torch takes either; the square form reads better."""
    if isinstance(value, (tuple, list)):
        value = tuple(value)
        return value[0] if len(value) > 0 and all(v == value[0] for v in value) else value
    return value


def _typed(value: Any) -> Any:
    """A literal keyed with its type, so that 1, 1.0 and True stay apart."""
    if isinstance(value, Lit):
        return ("lit", type(value.value).__name__, value.value)
    return value


def _call(fn: str, **args: Any) -> Call:
    names = [p for p, _ in SIGNATURES[fn]]
    unknown = set(args) - set(names)
    assert not unknown, (fn, unknown)
    return Call(fn, tuple((p, args[p] if isinstance(args[p], (Call, Seq, Name)) else Lit(args[p]))
                          for p in names if p in args))


def _activation_name(module: nn.Module | None, path: str) -> str | None:
    from torch import nn

    from .nn import _ACTIVATIONS

    names = {cls: name for name, cls in _ACTIVATIONS.items()}
    if module is None or isinstance(module, nn.Identity):
        return None
    if type(module) not in names or (isinstance(module, nn.GELU) and module.approximate != "none"):
        raise ExportError(f"{path}: cannot write the activation {type(module).__name__} as Python source")
    return names[type(module)]


def module_expr(m: nn.Module, path: str) -> Any:
    """The constructor call that rebuilds a leaf module of the compiled network."""
    from torch import nn

    from .nn import SqueezeExcite
    kind = type(m)
    norm = m._modules.get("norm")
    if isinstance(m, nn.Sequential) and list(m._modules)[:1] == ["conv"] and set(m._modules) <= {"conv", "norm", "act"} \
            and type(m.conv) is nn.Conv2d and m.conv.padding_mode == "zeros" \
            and (norm is None or type(norm) is nn.BatchNorm2d):
        conv = m.conv
        has_bias = conv.bias is not None
        if norm is not None:
            _check_bn(norm, path)
        return _call("ConvNormAct", in_channels=conv.in_channels, out_channels=conv.out_channels,
                     kernel_size=_simplify(conv.kernel_size), stride=_simplify(conv.stride),
                     padding=_simplify(conv.padding), dilation=_simplify(conv.dilation), groups=conv.groups,
                     bias=None if has_bias == (norm is None) else has_bias, norm=norm is not None,
                     eps=norm.eps if norm is not None else 1e-5, momentum=norm.momentum if norm is not None else 0.1,
                     act=_activation_name(m._modules.get("act"), path))
    if kind is nn.Sequential:
        return Seq(tuple((name, module_expr(child, f"{path}.{name}")) for name, child in m._modules.items()))
    if kind is nn.Conv2d:
        if m.padding_mode != "zeros":
            raise ExportError(f"{path}: cannot write padding_mode={m.padding_mode!r}")
        return _call("nn.Conv2d", in_channels=m.in_channels, out_channels=m.out_channels,
                     kernel_size=_simplify(m.kernel_size), stride=_simplify(m.stride), padding=_simplify(m.padding),
                     dilation=_simplify(m.dilation), groups=m.groups, bias=m.bias is not None)
    if kind in (nn.BatchNorm2d, nn.BatchNorm1d):
        _check_bn(m, path)
        return _call(f"nn.{kind.__name__}", num_features=m.num_features, eps=m.eps, momentum=m.momentum)
    if kind is nn.Linear:
        return _call("nn.Linear", in_features=m.in_features, out_features=m.out_features, bias=m.bias is not None)
    if kind is nn.MaxPool2d:
        if m.return_indices:
            raise ExportError(f"{path}: cannot write a max pool that returns indices")
        k, s = _simplify(m.kernel_size), _simplify(m.stride)
        return _call("nn.MaxPool2d", kernel_size=k, stride=None if s == k else s, padding=_simplify(m.padding),
                     dilation=_simplify(m.dilation), ceil_mode=m.ceil_mode)
    if kind is nn.AvgPool2d:
        if m.divisor_override is not None:
            raise ExportError(f"{path}: cannot write an average pool with divisor_override")
        k, s = _simplify(m.kernel_size), _simplify(m.stride)
        return _call("nn.AvgPool2d", kernel_size=k, stride=None if s == k else s, padding=_simplify(m.padding),
                     ceil_mode=m.ceil_mode, count_include_pad=m.count_include_pad)
    if kind in (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d):
        if getattr(m, "return_indices", False):
            raise ExportError(f"{path}: cannot write an adaptive max pool that returns indices")
        return _call(f"nn.{kind.__name__}", output_size=_simplify(m.output_size))
    if kind is nn.LocalResponseNorm:
        return _call("nn.LocalResponseNorm", size=m.size, alpha=m.alpha, beta=m.beta, k=m.k)
    if kind is nn.Dropout:
        return _call("nn.Dropout", p=m.p)
    if kind is nn.Flatten:
        return _call("nn.Flatten", start_dim=m.start_dim, end_dim=m.end_dim)
    if kind is nn.Identity:
        return _call("nn.Identity")
    if kind is nn.GELU:
        return _call("nn.GELU", approximate=m.approximate)
    if kind in (nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish, nn.Hardsigmoid):
        return _call(f"nn.{kind.__name__}", inplace=m.inplace)
    if kind in (nn.Sigmoid, nn.Tanh):
        return _call(f"nn.{kind.__name__}")
    if kind is SqueezeExcite:
        return _call("SqueezeExcite", channels=m.fc1.in_channels, squeeze=m.fc1.out_channels,
                     act=_activation_name(m.act, path), gate=_activation_name(m.gate, path))
    raise ExportError(f"{path}: cannot write a {kind.__module__}.{kind.__name__} as Python source")


def _check_bn(m: nn.Module, path: str) -> None:
    if not (m.affine and m.track_running_stats):
        raise ExportError(f"{path}: cannot write a batch norm without affine parameters or running stats")


def _skeleton(expr: Any) -> Any:
    if isinstance(expr, Lit):
        return "L"
    if isinstance(expr, Name):
        return ("N", expr.id)
    if isinstance(expr, Call):
        return ("C", expr.fn if isinstance(expr.fn, str) else id(expr.fn), tuple((k, _skeleton(v)) for k, v in expr.args))
    if isinstance(expr, Seq):
        return ("S", tuple((n, _skeleton(e)) for n, e in expr.items))
    raise TypeError(expr)


def _arg_kind(fn: Any, arg: str) -> str:
    if isinstance(fn, ClassDef):
        return next(kind for name, kind, _ in fn.params if name == arg)
    return "channels" if arg in CHANNEL_ARGS else arg


Hole = tuple[tuple[str, ...], str, str]  # (item path, argument, kind)


def _map(expr: Any, fn: Callable[[Hole, Lit], Any], path: tuple[str, ...], arg: str = "", kind: str = "") -> Any:
    """Rebuild `expr`, replacing each literal (a hole) by `fn(hole, literal)`, in a fixed order."""
    if isinstance(expr, Lit):
        return fn((path, arg, kind), expr)
    if isinstance(expr, Name):
        return expr
    if isinstance(expr, Call):
        return Call(expr.fn, tuple((k, _map(v, fn, path, k, _arg_kind(expr.fn, k))) for k, v in expr.args))
    if isinstance(expr, Seq):
        return Seq(tuple((n, _map(e, fn, (*path, n))) for n, e in expr.items))
    raise TypeError(expr)


def _map_body(body: Body, fn: Callable[[Hole, Lit], Any], shortcut: bool = True) -> Body:
    items = tuple((n, _map(e, fn, (n,))) for n, e in body.items)
    if body.form != "residual":
        return Body(body.form, items)
    return Body(body.form, items, _map(body.shortcut, fn, ("shortcut",)) if shortcut else body.shortcut,
                _map(body.act, fn, ("act",)), fn(((), "drop_rate", "drop_rate"), body.drop))


def _holes(body: Body, shortcut: bool = True) -> list[tuple[Hole, Lit]]:
    found: list[tuple[Hole, Lit]] = []

    def collect(hole: Hole, lit: Lit) -> Lit:
        found.append((hole, lit))
        return lit

    _map_body(body, collect, shortcut)
    return found


def _camel(name: str) -> str:
    parts = [p for p in "".join(c if c.isalnum() else " " for c in name).split()]
    out = ""
    for part in parts:
        piece = part[:1].upper() + part[1:]
        out += ("_" if out and out[-1].isdigit() and piece[:1].isdigit() else "") + piece
    if not out or not out[0].isalpha():
        out = "Net" + out
    return out


def _identifier(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name)


def _lit(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, tuple):
        inner = ", ".join(_lit(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, float):
        short = float(f"{value:.12g}")  # 0.07500000000000001 (a drop rate) reads as 0.075
        return repr(short if abs(short - value) <= 1e-15 * max(1.0, abs(value)) else value)
    return repr(value)


class _SourceWriter:
    def __init__(self, spec: Spec, weights: str | None) -> None:
        from .compiler import compile

        self.spec = spec
        self.weights = weights
        self.root = spec.analyse()
        self.model = compile(spec, device="meta")
        self.resolved: dict[int, Call] = {}
        self.classes: list[ClassDef] = []
        self.used: set[str] = set()

    # -- from the analysis tree to expressions ---------------------------------------------------
    @staticmethod
    def is_class(node: Node) -> bool:
        return bool(node.children) and (isinstance(node.block, MacroBlock) or node.form in ("residual", "concat"))

    def expr(self, node: Node) -> Any:
        if self.is_class(node):
            return self.resolved[id(node)]
        if node.form == "leaf" or not node.children:
            if node.form != "leaf" and not node.children:
                return Seq(())
            return module_expr(self.model.get_submodule(node.path), node.path or node.name)
        if node.form != "chain":
            raise ExportError(f"{node.path}: cannot write a '{node.form}' node as Python source")
        return Seq(tuple((c.name, self.expr(c)) for c in node.children))

    def body(self, node: Node) -> Body:
        if node.form == "residual":
            module = self.model.get_submodule(node.path)
            layers, shortcut = node.residual_parts()
            body = tuple((c.name, self.expr(c)) for c in layers)
            return Body("residual", body, self.expr(shortcut) if shortcut else _call("nn.Identity"), module_expr(module.act, f"{node.path}.act"),
                        Lit(float(module.drop_rate)))
        return Body(node.form if node.form == "concat" else "chain", tuple((c.name, self.expr(c)) for c in node.children))

    # -- classes ---------------------------------------------------------------------------------
    def build_classes(self) -> None:
        nodes = [n for n in self.root.walk() if n is not self.root and self.is_class(n)]
        order = {id(n): i for i, n in enumerate(self.root.walk())}
        height: dict[int, int] = {}

        def measure(node: Node) -> int:
            below = max((measure(c) for c in node.children), default=0)
            h = below + 1 if self.is_class(node) else below
            height[id(node)] = h
            return h

        measure(self.root)
        for level in sorted({height[id(n)] for n in nodes}):
            groups: dict[Any, list[tuple[Node, Body]]] = OrderedDict()
            for node in (n for n in nodes if height[id(n)] == level):
                body = self.body(node)
                key = (node.type, body.form, tuple((n, _skeleton(e)) for n, e in body.items),
                       None if body.form != "residual" else (_skeleton(body.act),))
                groups.setdefault(key, []).append((node, body))
            for members in groups.values():
                cls = self.finalise(members)
                cls.order = min(order[id(n)] for n, _ in members)
                self.classes.append(cls)
        self.name_classes()

    def finalise(self, members: list[tuple[Node, Body]]) -> ClassDef:
        nodes, bodies = [n for n, _ in members], [b for _, b in members]
        first = bodies[0]
        module_shortcut = first.form == "residual" and len({_skeleton(b.shortcut) for b in bodies}) > 1
        holes = [_holes(b, shortcut=not module_shortcut) for b in bodies]
        if len({len(h) for h in holes}) != 1:
            raise ExportError(f"{nodes[0].path}: internal error: instances of one structure differ")
        in_ch = tuple(n.in_shape[0] for n in nodes)
        out_ch = tuple(n.out_shape[0] for n in nodes)
        params: dict[tuple[str, tuple[Any, ...]], dict[str, Any]] = OrderedDict()  # (kind, vector) -> param
        hole_param: list[Any] = []
        for i, (hole, _) in enumerate(holes[0]):
            vector = tuple(_typed(h[i][1]) for h in holes)
            values = tuple(h[i][1].value for h in holes)
            if len(set(vector)) == 1:
                hole_param.append(None)
                continue
            kind = hole[2]
            key = (kind, vector)
            if kind == "groups" and ("channels", vector) in params:
                key = ("channels", vector)
            if key not in params:
                params[key] = {"kind": key[0], "values": values, "holes": [hole]}
            else:
                params[key]["holes"].append(hole)
            hole_param.append(params[key])
        # Names: the block's input and output channels, then the hole's argument where that is unique.
        plist = list(params.values())
        for p in plist:
            p["name"] = None
            if p["kind"] == "channels" and p["values"] == in_ch:
                p["name"] = "in_channels"
            elif p["kind"] == "channels" and p["values"] == out_ch:
                p["name"] = "out_channels"
        inner_channels = [p for p in plist if p["kind"] == "channels" and p["name"] is None]
        kinds = Counter(p["kind"] for p in plist if p["name"] is None)
        for p in plist:
            if p["name"] is not None:
                continue
            path, arg, kind = p["holes"][0]
            if kind == "channels" and len(inner_channels) == 1:
                p["name"] = "width"
            elif kind != "channels" and kinds[kind] == 1:
                p["name"] = kind
            else:
                short = {"out_channels": "out", "in_channels": "in", "out_features": "out", "in_features": "in",
                         "num_features": "channels"}.get(arg, arg)
                p["name"] = "_".join([*path, short]) if path else short
        taken: set[str] = set()
        for p in plist:
            name = p["name"] if _identifier(p["name"]) and p["name"][0].isalpha() else f"p_{p['name']}"
            base, n = name, 2
            while name in taken or name in PRELUDE_NAMES or name in ("self", "x", "out", "shortcut", "super"):
                name, n = f"{base}{n}", n + 1
            taken.add(name)
            p["name"] = name
        # Defaults: channels are required; any other argument defaults to its most common value.
        for p in plist:
            default = REQUIRED
            if p["kind"] != "channels" and all(not isinstance(v, (Call, Seq)) for v in p["values"]):
                default = Counter(_typed(Lit(v)) for v in p["values"]).most_common(1)[0][0][2]
            p["default"] = default
        required = [p for p in plist if p["default"] is REQUIRED]
        optional = [p for p in plist if p["default"] is not REQUIRED]
        signature = [(p["name"], p["kind"], p["default"]) for p in required + optional]
        # The class body: holes become parameter names or stay literals.
        counter = iter(range(len(hole_param)))

        def substitute(hole: Hole, lit: Lit) -> Any:
            param = hole_param[next(counter)]
            return lit if param is None else Name(param["name"])

        body = _map_body(first, substitute, shortcut=not module_shortcut)
        if module_shortcut:
            identity = _call("nn.Identity")
            values = tuple(None if b.shortcut == identity else b.shortcut for b in bodies)
            default = None if None in values else REQUIRED
            entry = ("shortcut", "module", default)
            signature = [*signature[:len(required)], entry, *signature[len(required):]] if default is REQUIRED \
                else [*signature, entry]
            body = Body(body.form, body.items, Name("shortcut"), body.act, body.drop)
        cls = ClassDef(nodes[0].type, first.form, nodes, body, signature, module_shortcut)
        by_name = {p["name"]: p for p in plist}
        for i, node in enumerate(nodes):
            args = []
            for name, kind, _ in signature:
                if kind == "module":
                    value = bodies[i].shortcut
                    args.append((name, Lit(None) if value == _call("nn.Identity") else value))
                else:
                    value = by_name[name]["values"][i]
                    args.append((name, value if isinstance(value, (Call, Seq)) else Lit(value)))
            self.resolved[id(node)] = Call(cls, tuple(args))
        return cls

    def name_classes(self) -> None:
        by_type: dict[str, list[ClassDef]] = OrderedDict()
        for cls in sorted(self.classes, key=lambda c: c.order):
            by_type.setdefault(cls.type, []).append(cls)
        taken = set(PRELUDE_NAMES)
        for type_name, classes in by_type.items():
            base = CLASS_NAMES.get(type_name, _camel(type_name))
            for i, cls in enumerate(classes):
                suffix = "" if len(classes) == 1 else (chr(ord("A") + i) if len(classes) <= 26 else str(i + 1))
                name, n = base + suffix, 2
                while name in taken:
                    name, n = f"{base}{suffix}{n}", n + 1
                taken.add(name)
                cls.name = name
        self.network_name = _camel(self.spec.name)
        while self.network_name in taken:
            self.network_name += "Net"

    # -- formatting --------------------------------------------------------------------------------
    def fmt(self, expr: Any, indent: int, lead: int | None = None) -> str:
        """`expr` as source; continuation lines indented from `indent`; `lead`: columns already used
        on the first line (default: `indent`)."""
        lead = indent if lead is None else lead
        if isinstance(expr, Lit):
            return _lit(expr.value)
        if isinstance(expr, Name):
            return expr.id
        if isinstance(expr, Seq):
            return self.fmt_seq(expr, indent, "nn.Sequential(", lead)
        if isinstance(expr, Call):
            name = expr.fn.name if isinstance(expr.fn, ClassDef) else expr.fn
            if name in ("ConvNormAct", "SqueezeExcite"):
                self.used.add(name)
            if isinstance(expr.fn, ClassDef):
                signature = [(p, d) for p, _, d in expr.fn.params]
            else:
                signature = SIGNATURES[expr.fn]
            defaults = dict(signature)
            parts = []
            for arg, value in expr.args:
                default = defaults[arg]
                if default is REQUIRED:
                    parts.append(self.fmt(value, indent + 4))
                elif not (isinstance(value, Lit) and _typed(value) == _typed(Lit(default))):
                    parts.append(f"{arg}={self.fmt(value, indent + 4, indent + 5 + len(arg))}")
            one = f"{name}({', '.join(parts)})"
            if "\n" not in one and lead + len(one) <= LINE:
                return one
            pad = " " * (indent + 4)
            return f"{name}(\n" + "".join(f"{pad}{p},\n" for p in parts) + " " * indent + ")"
        raise TypeError(expr)

    def fmt_seq(self, seq: Seq, indent: int, opener: str, lead: int | None = None) -> str:
        lead = indent if lead is None else lead
        pad = " " * (indent + 4)
        if not seq.items:
            return opener + ")"
        if [n for n, _ in seq.items] == [str(i) for i in range(len(seq.items))]:
            parts = [self.fmt(e, indent + 4) for _, e in seq.items]
            runs: list[str] = []
            i = 0
            while i < len(parts):
                j = i
                while j < len(parts) and parts[j] == parts[i]:
                    j += 1
                if j - i >= 3 and "\n" not in parts[i]:
                    runs.append(f"*[{parts[i]} for _ in range({j - i})]")
                else:
                    runs += parts[i:j]
                i = j
            one = opener + ", ".join(runs) + ")"
            if len(runs) <= 2 and "\n" not in one and "Sequential" not in one[len(opener):] and lead + len(one) <= LINE:
                return one
            return opener + "\n" + "".join(f"{pad}{r},\n" for r in runs) + " " * indent + ")"
        lines = [f'{pad}("{n}", {self.fmt(e, indent + 4, indent + 8 + len(n))}),\n' for n, e in seq.items]
        return opener + "OrderedDict([\n" + "".join(lines) + " " * indent + "]))"

    @staticmethod
    def attr(name: str) -> str:
        return f"self.{name}" if _identifier(name) else f'getattr(self, "{name}")'

    def assign(self, name: str, expr: Any) -> str:
        if _identifier(name):
            return f"        self.{name} = {self.fmt(expr, 8, 8 + len(name) + 8)}"
        return f'        self.add_module("{name}", {self.fmt(expr, 8, 8 + len(name) + 20)})'

    @staticmethod
    def where(nodes: list[Node], limit: int = 6) -> str:
        paths = [n.path for n in nodes]
        text = ", ".join(paths[:limit])
        return text + (f" and {len(paths) - limit} more" if len(paths) > limit else "")

    def write_class(self, cls: ClassDef) -> list[str]:
        params = []
        for name, _, default in cls.params:
            params.append(name if default is REQUIRED else f"{name}={_lit(default)}")
        signature = ", ".join(["self", *params])
        if len(f"    def __init__({signature}):") > LINE:  # wrap, aligned after the parenthesis
            lines, line = [], "self"
            for param in params:
                if len(f"    def __init__({line}, {param},") > LINE:
                    lines.append(line + ",")
                    line = param
                else:
                    line += f", {param}"
            signature = ("\n" + " " * 17).join([*lines, line])
        hyper = cls.nodes[0].block.hyper()
        doc = f"{cls.type}" + (f" ({hyper})" if hyper and len(cls.nodes) == 1 else "")
        doc += f", at {self.where(cls.nodes)}."
        body = cls.body
        if cls.form == "chain":
            lines = [f"class {cls.name}(nn.Sequential):", f'    """{doc}"""', "",
                     f"    def __init__({signature}):"]
            lines.append("        " + self.fmt_seq(Seq(body.items), 8, "super().__init__("))
            return lines
        lines = [f"class {cls.name}(nn.Module):", f'    """{doc}"""', "", f"    def __init__({signature}):",
                 "        super().__init__()"]
        for name, expr in body.items:
            lines.append(self.assign(name, expr))
        if cls.form == "concat":
            calls = ", ".join(f"{self.attr(n)}(x)" for n, _ in body.items)
            lines += ["", "    def forward(self, x):"]
            one = f"        return torch.cat([{calls}], 1)"
            if len(one) <= LINE:
                lines.append(one)
            else:
                lines.append("        return torch.cat([")
                lines += [f"            {self.attr(n)}(x)," for n, _ in body.items]
                lines.append("        ], 1)")
            return lines
        # residual: act(drop_path(body(x)) + shortcut(x))
        identity = _call("nn.Identity")
        has_shortcut = cls.module_shortcut or body.shortcut != identity
        if cls.module_shortcut:
            default = dict((p, d) for p, _, d in cls.params)["shortcut"]
            lines.append("        self.shortcut = shortcut" + (" if shortcut is not None else nn.Identity()"
                                                              if default is None else ""))
        elif has_shortcut:
            lines.append(self.assign("shortcut", body.shortcut))
        has_act = body.act != identity
        if has_act:
            lines.append(self.assign("act", body.act))
        has_drop = not (isinstance(body.drop, Lit) and body.drop.value == 0.0)
        drop_attr = "drop_rate" if "drop_rate" not in dict(body.items) else "_drop_rate"
        if has_drop:
            lines.append(f"        self.{drop_attr} = {self.fmt(body.drop, 8)}  # stochastic depth, in training")
        lines += ["", "    def forward(self, x):"]
        current = "x"
        for name, _ in body.items:
            lines.append(f"        out = {self.attr(name)}({current})")
            current = "out"
        if has_drop:
            self.used.add("drop_path")
            current = f"drop_path({current}, self.{drop_attr}, self.training)"
        total = f"{current} + " + ("self.shortcut(x)" if has_shortcut else "x")
        lines.append(f"        return self.act({total})" if has_act else f"        return {total}")
        return lines

    def write_network(self) -> list[str]:
        spec, root = self.spec, self.root
        trunk = [c for c in root.children if not c.aux]
        heads = [c for c in root.children if c.aux]
        taps: dict[str, list[Node]] = {}
        for head in heads:
            taps.setdefault(head.block.tap, []).append(head)
        doc = spec.description or spec.name
        doc += "" if doc.endswith((".", "!", "?")) else "."
        lines = [f"class {self.network_name}(nn.Module):",
                 f'    """{doc}', "",
                 f"    Input {fmt_shape(root.in_shape)}, output {fmt_shape(root.out_shape)}, {root.params:,} parameters."
                 + (" The auxiliary heads run in training only." if heads else ""), '    """', "",
                 "    def __init__(self):", "        super().__init__()"]
        for node in trunk:
            lines.append(self.assign(node.name, self.expr(node)))
            for head in taps.get(node.name, ()):
                lines.append(f"        # auxiliary head, training only (taps {node.name})")
                lines.append(self.assign(head.name, self.expr(head)))
        lines += ["", "    def forward(self, x):"]
        for node in trunk:
            lines.append(f"        x = {self.attr(node.name)}(x)")
            if taps.get(node.name):
                lines.append("        if self.training:")
                lines += [f"            {self.aux_var(h)} = {self.attr(h.name)}(x)" for h in taps[node.name]]
        if heads:
            lines += ["        if self.training:",
                      f"            return x, {', '.join(self.aux_var(h) for h in heads)}"]
        lines.append("        return x")
        return lines

    @staticmethod
    def aux_var(head: Node) -> str:
        return f"aux_{head.name}"  # head names are identifiers (the spec's Name pattern)

    def prelude(self) -> list[str]:
        lines: list[str] = []
        if self.used & {"ConvNormAct", "SqueezeExcite"}:
            lines += PRELUDE_ACTIVATIONS.splitlines() + ["", ""]
        if "ConvNormAct" in self.used:
            lines += PRELUDE_CONV.splitlines() + ["", ""]
        if "SqueezeExcite" in self.used:
            lines += PRELUDE_SE.splitlines() + ["", ""]
        if "drop_path" in self.used:
            lines += PRELUDE_DROP_PATH.splitlines() + ["", ""]
        return lines

    def write(self) -> str:
        from . import __version__ as version
        from .preprocess import resize_size

        self.build_classes()
        classes = [line for cls in sorted(self.classes, key=lambda c: (self._height(c), c.order))
                   for line in [*self.write_class(cls), "", ""]]
        network = self.write_network()
        spec, root = self.spec, self.root
        weights = self.weights
        usage = f'build("{weights}")' if weights else 'build("weights.pth")'
        header = [
            f'"""{spec.name}: {spec.description or "a network"}.',
            "",
            f"Generated by archspec {version} (`archspec export --format python`); plain PyTorch, it imports",
            "only torch. The module names and the state_dict keys are those of `archspec.build`, so",
            "weights saved from archspec (a state_dict, or a checkpoint of `archspec build -o`) load strictly:",
            "",
            f"    model = {usage}   # or {self.network_name}() for random weights",
            "    logits = model(images)           # (N, " + ", ".join(str(d) for d in root.in_shape)
            + "), normalised with MEAN and STD",
            "",
            f"{root.params:,} parameters; {root.macs / 1e9:.3f} GMACs at {fmt_shape(root.in_shape[1:])}."
            + (" The auxiliary heads run in training only." if any(c.aux for c in root.children) else ""),
            '"""',
            "from collections import OrderedDict",
            "",
            "import torch",
            "from torch import nn",
            "",
            f"INPUT_SHAPE = {_lit(tuple(root.in_shape))}",
            f"RESIZE = {resize_size(spec)}  # shorter side before the centre crop to the input size",
            f"MEAN = {_lit(tuple(spec.preprocess.mean))}",
            f"STD = {_lit(tuple(spec.preprocess.std))}",
            f"WEIGHTS = {_lit(weights)}  # written beside this file by `archspec export --weights`" if weights
            else "WEIGHTS = None",
            "",
            "",
        ]
        footer = [
            'def build(weights=WEIGHTS, map_location="cpu"):',
            f'    """{self.network_name} in eval mode, with `weights` (a state_dict file, or an archspec checkpoint)',
            '    loaded strictly; a relative path is looked up beside this file. Without weights: random ones."""',
            "    if weights is None:",
            f"        return {self.network_name}().eval()",
            "    import os",
            "",
            "    path = weights if os.path.isabs(weights) or os.path.exists(weights) else \\",
            "        os.path.join(os.path.dirname(os.path.abspath(__file__)), weights)",
            "    state = torch.load(path, map_location=map_location, weights_only=True)",
            '    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):',
            '        state = state["state_dict"]  # an archspec checkpoint',
            '    with torch.device("meta"):  # no random initialisation to throw away',
            f"        model = {self.network_name}()",
            "    model.load_state_dict(state, assign=True)",
            "    return model.eval()",
            "",
            "",
            'if __name__ == "__main__":',
            "    import sys",
            "",
            "    net = build(sys.argv[1] if len(sys.argv) > 1 else WEIGHTS)",
            "    with torch.no_grad():",
            "        y = net(torch.randn(1, *INPUT_SHAPE))",
            "    params = sum(p.numel() for p in net.parameters())",
            '    print(f"{type(net).__name__}: {params:,} parameters, output {tuple(y.shape)}")',
        ]
        body = classes + network + ["", ""]
        return "\n".join(header + self.prelude() + body + footer) + "\n"

    def _height(self, cls: ClassDef) -> int:
        def h(node: Node) -> int:
            below = max((h(c) for c in node.children), default=0)
            return below + 1 if self.is_class(node) else below

        return h(cls.nodes[0])


PRELUDE_ACTIVATIONS = '''\
ACTIVATIONS = {"relu": nn.ReLU, "relu6": nn.ReLU6, "silu": nn.SiLU, "hardswish": nn.Hardswish,
               "hardsigmoid": nn.Hardsigmoid, "sigmoid": nn.Sigmoid, "gelu": nn.GELU, "tanh": nn.Tanh}


def activation(name, inplace=False):
    """The activation called `name` (in place where torch allows it), or None for None."""
    if name is None:
        return None
    if inplace and name in ("relu", "relu6", "silu", "hardswish", "hardsigmoid"):
        return ACTIVATIONS[name](inplace=True)
    return ACTIVATIONS[name]()'''

PRELUDE_CONV = '''\
class ConvNormAct(nn.Sequential):
    """conv -> batch norm (if norm) -> activation (if act), as the children conv, norm, act.
    The conv has a bias when there is no norm, unless `bias` says otherwise."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=None, norm=True, eps=1e-5, momentum=0.1, act=None):
        layers = OrderedDict(conv=nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation,
                                            groups, bias=not norm if bias is None else bias))
        if norm:
            layers["norm"] = nn.BatchNorm2d(out_channels, eps, momentum)
        if act is not None:
            layers["act"] = activation(act, inplace=True)
        super().__init__(layers)'''

PRELUDE_SE = '''\
class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: x * gate(fc2(act(fc1(avgpool(x))))), with 1x1 convs."""

    def __init__(self, channels, squeeze, act="relu", gate="sigmoid"):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.act = activation(act, inplace=True) or nn.Identity()
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.gate = activation(gate) or nn.Identity()

    def forward(self, x):
        return x * self.gate(self.fc2(self.act(self.fc1(self.avgpool(x)))))'''

PRELUDE_DROP_PATH = '''\
def drop_path(x, rate, training):
    """Stochastic depth: in training, drop whole samples of a residual branch and rescale the rest."""
    if not training or rate == 0.0:
        return x
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask.div_(keep)'''


__all__ = ["ExportError", "ExportResult", "FORMATS", "check_python_source", "check_targets", "default_output",
           "example_input", "export", "export_program", "load_python_source", "python_source", "run_onnx", "run_pt2",
           "save_onnx"]
