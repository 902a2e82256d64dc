"""Export a compiled spec: ONNX, a `torch.export` program (.pt2), or a standalone PyTorch source file.

    archspec.export("specs/resnet50.yaml", "onnx")                      # -> ./resnet50.onnx
    archspec.export(spec, "python", "resnet50.py", weights="tv.pth")    # + resnet50.pth beside it

Every format is the eval-mode network (auxiliary heads, dropout and stochastic depth off) with a
dynamic batch dimension. ONNX and .pt2 come from one `torch.export` program; with `check` the written
file is run again (ONNX in onnxruntime) on a fresh input and compared with the eager model.

The Python source is written by `pywriter.py` (its pieces: `pycode.py`).
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from ..errors import one_line
from ..files import OutputError, check_output, cleanup_on_signals, save_torch, write_atomic, write_bytes
from .pycode import ExportError
from .pywriter import check_text_is_data, python_source
from ..language.inherit import source_files
from ..language.spec import Spec, as_spec

if TYPE_CHECKING:  # torch is imported by the functions that use it: `import archspec` stays torch-free
    import torch
    from torch import nn

FORMATS = {"onnx": ".onnx", "pt2": ".pt2", "python": ".py"}
ONNX_SINGLE_FILE_LIMIT = 1_800_000_000  # bytes of weights; above, ONNX needs an external data file
EXAMPLE_BATCH = 2  # torch.export specialises a batch of 1, so the example batch is 2


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
           write_weights: bool | None = None, protect: Iterable[str | Path] = (), force: bool = False,
           mapping: Mapping[str, str] | str | Path | None = None, verify: bool = False,
           deploy: bool = False) -> ExportResult:
    """Write `spec` (a path or a loaded Spec) in `format` (onnx, pt2, python) to `output` (default
    ./SPEC_NAME.onnx|.pt2|.py); the eval-mode network, with a dynamic batch dimension.

    `weights`: a torchvision/timm state_dict (file or mapping) or archspec checkpoint, loaded
    as `archspec.backend.interop.load_weights` does, with `mapping` and `verify` (else the spec's
    initialisation). `model`: an already built model of `spec` to
    export instead. For `python`, `write_weights` (default: whether `weights` were given) also writes
    the model's state_dict beside the source as OUTPUT.pth, which the generated `build()` loads.
    `check` runs the written file on a fresh input (another batch size) against the eager model and
    records the max abs difference. `deploy`: the deploy form (archspec.backend.deploy: batch norms folded into
    the convs, no dropout or auxiliary heads; fp32, contiguous). Nothing is written over the spec file or `protect`, nor over an
    existing file unless `force` (archspec.files.write_atomic: atomic, no partial file)."""
    import torch

    if format not in FORMATS:
        raise ExportError(f"unknown export format '{format}' (one of: {', '.join(FORMATS)})")
    guarded = [Path(p) for p in protect]
    if not isinstance(spec, Spec):
        guarded += source_files(spec)  # the spec and every file it extends
    spec = as_spec(spec, overrides, variant=variant, phi=phi)
    guarded += [Path(p) for p in (weights, mapping) if isinstance(p, (str, Path))]
    out = Path(output) if output is not None else default_output(spec, format)
    write_weights = weights is not None if write_weights is None else write_weights
    check_targets(format, out, write_weights, guarded, force=force)
    report = None
    from ..backend.compiler import compile_spec, example_input

    if model is None:
        model = compile_spec(spec)
    if weights is not None:
        from ..backend.interop import load_weights

        report = load_weights(model, weights, mapping=mapping, verify=verify)
    elif verify:
        from ..backend.interop import verify_transfer

        verify_transfer(model)
    model = model.eval()
    if deploy:
        from ..backend.deploy import deploy as deploy_form, deploy_spec

        model, spec = deploy_form(model, channels_last=False, compile=False).network, deploy_spec(spec)
    if format == "python":
        result = _export_python(spec, model, out, guarded, with_weights=write_weights, check=check, force=force)
    else:
        program = export_program(model, spec)
        if format == "onnx":
            written = save_onnx(program, out, guarded, force=force)
        else:
            write_bytes(out, _pt2_bytes(program), force=force, protect=guarded)
            written = [out]
        result = ExportResult(out, format, written)
        if check:
            x = example_input(spec, EXAMPLE_BATCH + 1, _device_of(model), seed=1)
            got = run_onnx(out, x) if format == "onnx" else run_pt2(out, x)
            with torch.no_grad():
                result.max_abs_diff = (got.to(x.device) - model(x)).abs().max().item()
    result.transfer = report
    return result


def check_targets(format: str, out: Path, write_weights: bool, protect: Iterable[str | Path],
                  force: bool = False) -> list[Path]:
    """The files an export writes (the output, and OUTPUT.pth for python with weights); an OutputError
    if one of them is a file in `protect` (the spec, the weights being read), is no regular file, or
    exists (without `force`)."""
    targets = [out] + ([out.with_suffix(".pth")] if format == "python" and write_weights else [])
    if len(set(targets)) < len(targets):
        raise OutputError(f"{out}: the Python file and its weights (OUTPUT.pth) would be one file; "
                          "name the output .py")
    protect = list(protect)
    for target in targets:
        check_output(target, force=force, protect=protect)
    return targets


def _device_of(model: nn.Module) -> torch.device:
    import torch

    return next(iter(model.parameters()), torch.empty(0)).device


# -- torch.export and ONNX ---------------------------------------------------------------------------

def export_program(model: nn.Module, spec: Spec) -> torch.export.ExportedProgram:
    """The eval-mode network as a `torch.export` program with a dynamic batch dimension."""
    import torch

    from ..backend.compiler import example_input

    model.eval()
    x = example_input(spec, EXAMPLE_BATCH, _device_of(model), seed=0)
    batch = torch.export.Dim("batch", min=1, max=65536)
    try:
        with torch.no_grad():
            return torch.export.export(model, (x,), dynamic_shapes=({0: batch},))
    except Exception as exc:  # torch.export's errors run to pages; the first line says what failed
        raise ExportError(f"torch.export failed: {one_line(exc)}") from exc


def _pt2_bytes(program: torch.export.ExportedProgram) -> bytes:
    """The .pt2 file's bytes, serialised in memory: torch.export.save aborts the process (SIGABRT, from
    C++) when a write to a file fails, a full disk for one; the bytes are then written by write_atomic."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    return buffer.getvalue()


def run_pt2(path: str | Path, x: torch.Tensor) -> torch.Tensor:
    import io

    import torch

    # From its bytes: torch.export.load fails on a name that is not UTF-8 (a surrogate in the str)
    with torch.no_grad():
        return torch.export.load(io.BytesIO(Path(path).read_bytes())).module()(x)


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


def save_onnx(program: torch.export.ExportedProgram, path: Path, inputs: Iterable[Path] = (),
              force: bool = False) -> list[Path]:
    """One self-contained .onnx file, written atomically; a network whose weights pass ONNX's 2 GB
    limit gets PATH.data beside it (published first, then the .onnx). Returns the files written. A PATH.data
    that a self-contained file does not need is left as it is: only the files named are ever replaced."""
    converted = onnx_program(program)
    size = sum(t.numel() * t.element_size() for t in program.state_dict.values())
    inputs = list(inputs)
    if size < ONNX_SINGLE_FILE_LIMIT:
        write_atomic(path, lambda tmp: converted.save(str(tmp), external_data=False), force=force, protect=inputs)
        return [path]
    data = Path(f"{path}.data")
    for target in (path, data):
        check_output(target, force=force, protect=inputs)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Staged under the final names (the .onnx names its data file), then each moved into write_atomic's
    # temporary file and published by it.
    with cleanup_on_signals(), tempfile.TemporaryDirectory(prefix=f".{path.name}.", dir=path.parent) as tmp:
        staged = Path(tmp) / path.name
        converted.save(str(staged), external_data=True)
        for source, target in ((Path(f"{staged}.data"), data), (staged, path)):
            if source.exists():
                write_atomic(target, lambda t, source=source: os.replace(source, t), force=force, protect=inputs)
    return [path, data] if data.exists() else [path]


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
                   check: bool, force: bool) -> ExportResult:
    weights_path = out.with_suffix(".pth") if with_weights else None
    weights_name = weights_path.name if weights_path else None
    source = python_source(spec, weights=weights_name)
    check_text_is_data(source, spec, weights_name)  # before anything is written, or run by the check
    files = [out]
    if weights_path is not None:
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        save_torch(weights_path, state, force=force, protect=inputs)
        files.append(weights_path)
    try:
        write_bytes(out, source.encode("utf-8"), force=force, protect=inputs)
    except BaseException:  # e.g. a full disk: the weights alone are half the output
        if weights_path is not None:
            weights_path.unlink(missing_ok=True)
        raise
    result = ExportResult(out, "python", files)
    if check:  # as a user runs it: the file's own build(), loading the weights written beside it
        result.max_abs_diff = _compare_python_source(source, spec, model, out if with_weights else None)
    return result


def load_python_source(source: str, name: str = "archspec_generated", file: Path | None = None) -> dict[str, Any]:
    """Execute generated source in a fresh namespace (what importing the file would give; `file`: its path)."""
    namespace: dict[str, Any] = {"__name__": name, **({"__file__": str(file)} if file is not None else {})}
    exec(compile(source, str(file) if file is not None else f"<{name}>", "exec"), namespace)
    return namespace


def check_python_source(source: str, spec: Spec, model: nn.Module, weights: str | None = None) -> float:
    """Build the network of `source` (python_source's, for `spec` and `weights`), load `model`'s
    state_dict strictly, compare eval outputs; after check_text_is_data, as it runs the source."""
    check_text_is_data(source, spec, weights)
    return _compare_python_source(source, spec, model)


def _compare_python_source(source: str, spec: Spec, model: nn.Module, file: Path | None = None) -> float:
    """The largest difference between the outputs of `model` and of the network `source` builds: with `file`, the
    written file's build() with its default weights; without, random weights replaced by `model`'s."""
    import torch

    from ..backend.compiler import example_input

    namespace = load_python_source(source, file=file)
    device = _device_of(model)
    if file is not None:
        generated = namespace["build"]()
    else:
        generated = namespace["build"](None)
        generated.load_state_dict(model.state_dict(), strict=True)
    generated = generated.to(device).eval()
    x = example_input(spec, EXAMPLE_BATCH, device, seed=2)
    with torch.no_grad():
        return (generated(x) - model.eval()(x)).abs().max().item()


__all__ = ["ExportError", "ExportResult", "FORMATS", "check_python_source", "check_targets", "check_text_is_data",
           "default_output", "export", "export_program", "load_python_source", "python_source",
           "run_onnx", "run_pt2", "save_onnx"]
