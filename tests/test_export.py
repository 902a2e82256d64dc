"""Export: the ONNX file (run in onnxruntime), the torch.export program (.pt2) and the generated standalone
PyTorch file (imported in a process where archspec cannot be imported) give the eager model's outputs, for
the smallest network of each family (conftest.REPRESENTATIVES: the other members run the same code at other
depths and widths). Plus the `export` command: default paths, weights, never writing over its inputs.

Each spec runs at the smallest input size (of a few) that keeps its parameters and output: the formats do
not depend on the resolution, and tracing and ONNX conversion are the cost here, not the convolutions."""
from __future__ import annotations

import ast
import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import archspec
from archspec.cli import main as cli_main
from archspec.errors import SpecError
from archspec.backend.compiler import example_input
from archspec.exports.formats import (export_program, python_source, run_onnx, run_pt2,
                             save_onnx)
from conftest import REPRESENTATIVES, ROOT, SPECS, background_result

TOLERANCE = 1e-4
SIZES = (32, 64, 96, 128, 160, 192, 224, 256, 299)
# Not marked slow. ONNX/.pt2 (5-30 s a network on 2 cores): LRN, groups, flatten + linear; basic blocks;
# inception_v1 and auxiliary heads; mbconv, SE, hardswish. The other families are marked slow.
FAST_FORMATS = {"alexnet_original", "resnet18", "googlenet", "mobilenet_v3_small"}
# The generated Python file (1-5 s): also bottleneck + SE, nested inceptions, depthwise, stochastic depth,
# pass-through branches.
FAST_PYTHON = FAST_FORMATS | {"se_resnet50", "inception_v3", "mobilenet_v1", "efficientnet", "inception_bn", "resnet50"}


def spec_params(fast: set[str]) -> list[Any]:
    return [pytest.param(p, id=p.stem, marks=[] if p.stem in fast else [pytest.mark.slow]) for p in REPRESENTATIVES]


@functools.lru_cache(maxsize=None)
def small_spec(path: Path) -> archspec.Spec:
    """The spec at the smallest input size (of SIZES) with the same parameters and output."""
    native = archspec.load(path)
    for size in SIZES:
        if size >= min(native.input.shape[1:]):
            break
        try:
            spec = archspec.load(path, overrides={"input.size": size})
        except SpecError:
            continue
        if spec.params == native.params and spec.output_shape == native.output_shape:
            return spec
    return native


def eager(spec: archspec.Spec, seed: int = 0, calibrate: bool = True) -> torch.nn.Module:
    """The compiled model in eval mode with well-conditioned random weights, as a trained network's are.

    With the initial weights and statistics, deep networks' activations explode (Inception-v3's logits
    reach 1e11, ResNet-152's 300) and float32 rounding alone moves the outputs by more than 1e-4, in
    eager mode too. So the batch norms are calibrated on random inputs (never amplifying: variance at
    least 1) and the classifier is scaled to logits of standard deviation at most 1: then eager float32
    is within 1e-6 of float64, and an absolute tolerance of 1e-4 tests the export, not the rounding."""
    torch.manual_seed(seed)
    model = archspec.build(spec).eval()
    if not calibrate:
        return model
    x = example_input(spec, batch=8, seed=99)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:  # only the norms learn: no dropout, no stochastic depth, no auxiliary heads
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the calibration batch
        m.train()
    with torch.no_grad():
        model(x)
        for m, momentum in zip(norms, momenta):
            m.running_var.clamp_(min=1.0)
            m.momentum = momentum
            m.eval()
        # The trunk's classifier (heads come before it); SqueezeNet's is a conv.
        classifier = ([m for m in model.modules() if isinstance(m, torch.nn.Linear)]
                      or [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)])[-1]
        spread = model(x).std().item()
        if spread > 1.0:
            classifier.weight.div_(spread)
            if classifier.bias is not None:
                classifier.bias.div_(spread)
    return model


# -- ONNX and torch.export, every family -------------------------------------------------------------------
# Tracing and converting dominate (seconds per network, minutes for the library), so the checks run in
# the background from the start of the session (conftest.py's background jobs), each test waiting for its own.

def check_formats(path: str) -> dict[str, Any]:
    """Export one spec (small input) to .pt2 and ONNX, run both on another batch size, compare."""
    import tempfile
    import traceback

    try:
        spec = small_spec(Path(path))
        model = eager(spec)
        program = export_program(model, spec)  # exported at batch 2 ...
        x = example_input(spec, batch=3, seed=1)  # ... run at batch 3: the batch dimension is dynamic
        with torch.no_grad():
            expected = model(x)
        result: dict[str, Any] = {"tensor": isinstance(expected, torch.Tensor), "scale": expected.abs().max().item()}
        with tempfile.TemporaryDirectory() as tmp:
            pt2 = Path(tmp) / "model.pt2"
            with open(pt2, "wb") as handle:
                torch.export.save(program, handle)
            result["pt2"] = (run_pt2(pt2, x) - expected).abs().max().item()
            onnx = Path(tmp) / "model.onnx"
            save_onnx(program, onnx)
            result["files"] = sorted(p.name for p in Path(tmp).iterdir())
            got = run_onnx(onnx, x)
            result["onnx_shape"] = list(got.shape) == list(expected.shape)
            result["onnx"] = (got - expected).abs().max().item()
        return result
    except Exception:
        return {"error": traceback.format_exc()}


BACKGROUND_TEST = "test_onnx_and_pt2_match_the_eager_model"


def background_job(path: Path) -> Callable[[], dict[str, Any]]:
    return functools.partial(check_formats, str(path))


@pytest.mark.parametrize("path", spec_params(FAST_FORMATS))
def test_onnx_and_pt2_match_the_eager_model(path: Path) -> None:
    result = background_result(__name__, path)
    assert "error" not in result, result.get("error")
    assert result["tensor"]  # eval mode: the main output only, even with auxiliary heads
    assert result["pt2"] <= TOLERANCE
    assert result["files"] == ["model.onnx", "model.pt2"]  # one self-contained .onnx file, no .data
    assert result["onnx_shape"]
    assert result["onnx"] <= TOLERANCE, f"onnxruntime differs by {result['onnx']:.3g} (outputs up to {result['scale']:.3g})"


# -- the standalone Python file, every family -----------------------------------------------------------

WORKER = r'''
import importlib.abc, importlib.util, json, os, sys

class NoArchspec(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "archspec" or name.startswith("archspec."):
            raise ImportError("the generated file imported " + name)
        return None

sys.meta_path.insert(0, NoArchspec())
sys.dont_write_bytecode = True  # -I ignores PYTHONDONTWRITEBYTECODE: no __pycache__ beside the generated files
for name in [m for m in sys.modules if m == "archspec" or m.startswith("archspec.")]:
    del sys.modules[name]
import torch

for line in sys.stdin:
    request = json.loads(line)
    torch.set_num_threads(request["threads"])  # the test's: the same summation order, the same outputs
    try:
        os.chdir(request["cwd"])  # where text that ran as code would leave its traces
        loader = importlib.util.spec_from_file_location(request["module"], request["py"])
        module = importlib.util.module_from_spec(loader)
        loader.loader.exec_module(module)
        if "io" not in request:  # only imported and built: what the file holds as data
            print(json.dumps([module.DESCRIPTION, module.WEIGHTS, module.__doc__ is not None,
                              type(module.build()).__name__]), flush=True)
            continue
        net = module.build(request["weights"])  # load_state_dict(strict=True) inside
        io = torch.load(request["io"], weights_only=True)
        with torch.no_grad():
            out = net(io["x"])
        reply = {"diff": (out - io["y"]).abs().max().item(), "keys": list(net.state_dict()),
                 "training_outputs": len(net.train()(io["x"])) if io["aux"] else 1,
                 "archspec": sorted(m for m in sys.modules if m.split(".")[0] == "archspec")}
    except Exception as exc:
        reply = {"error": type(exc).__name__ + ": " + str(exc)}
    print(json.dumps(reply), flush=True)
'''


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One isolated Python process (`-I`: no PYTHONPATH, no current folder, no user site; archspec
    imports refused) that imports generated files and runs them, each in its own folder: torch is
    imported once."""
    folder = tmp_path_factory.mktemp("standalone")
    process = subprocess.Popen([sys.executable, "-I", "-c", WORKER], cwd=folder, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)

    def ask(**request: Any) -> dict[str, Any]:
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(json.dumps(request) + "\n")
        process.stdin.flush()
        line = process.stdout.readline()
        assert line, "the standalone process died"
        return json.loads(line)

    yield ask
    assert process.stdin is not None
    process.stdin.close()
    process.wait(timeout=60)


ALLOWED_IMPORTS = {"torch", "collections", "os", "sys"}


def imported_modules(source: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0])
    return names


@pytest.mark.parametrize("path", spec_params(FAST_PYTHON))
def test_python_file_runs_standalone(path: Path, tmp_path: Path, standalone: Any) -> None:
    spec = small_spec(path)
    model = eager(spec, seed=7, calibrate=False)  # the same modules: the outputs are equal, not just close
    result = archspec.export(spec, "python", tmp_path / f"{path.stem}.py", model=model, write_weights=True,
                             check=False)
    assert [f.name for f in result.files] == [f"{path.stem}.py", f"{path.stem}.pth"]
    source = result.path.read_text()
    assert imported_modules(source) <= ALLOWED_IMPORTS
    x = example_input(spec, batch=2, seed=3)
    with torch.no_grad():
        y = model(x)
    aux = bool(spec.aux_heads)
    torch.save({"x": x, "y": y, "aux": aux}, tmp_path / "io.pt")
    reply = standalone(module=f"generated_{path.stem}", cwd=str(tmp_path), py=str(result.path),
                       weights=str(result.files[1]), io=str(tmp_path / "io.pt"), threads=torch.get_num_threads())
    assert "error" not in reply, reply.get("error")
    assert reply["archspec"] == []
    assert reply["keys"] == list(model.state_dict())  # the same names, in the same order
    assert reply["diff"] <= TOLERANCE
    assert reply["training_outputs"] == 1 + len(spec.aux_heads)


def test_generated_source_reads_like_the_spec() -> None:
    """Classes named after the block types, constructor arguments where the instances differ."""
    source = python_source(archspec.load(SPECS / "resnet50.yaml"))
    assert "class Bottleneck(nn.Module):" in source and "class Resnet50(nn.Module):" in source
    assert "def __init__(self, in_channels, width, out_channels, stride=1, shortcut=None):" in source
    assert "Bottleneck(64, 64, 256, shortcut=ConvNormAct(64, 256, 1))," in source
    assert "*[Bottleneck(1024, 256, 1024) for _ in range(5)]," in source
    assert imported_modules(source) == {"collections", "torch", "os", "sys"}
    compile(source, "resnet50.py", "exec")
    v3 = python_source(archspec.load(SPECS / "inception_v3.yaml"))
    assert all(f"class Inception{letter}(nn.Module):" in v3 for letter in "ABCDE")
    assert "if self.training:\n            return x, aux_AuxLogits" in v3
    assert max(len(line) for line in v3.splitlines()) <= 120


def _structure(module: torch.nn.Module) -> list[tuple[str, str, tuple[int, ...]]]:
    """Every submodule's name and repr (leaves) or type (containers), and every tensor's name and shape."""
    mods = [(n, repr(m) if not m._modules else type(m).__name__, ()) for n, m in module.named_modules() if n]
    return mods + [(n, "tensor", tuple(t.shape)) for n, t in module.state_dict().items()]


def test_every_leaf_op_writes_the_module_it_builds() -> None:
    """Each leaf op's Python-source form (`Block.source`, beside its `build` in the op's file) evaluates, with
    the preludes it asks for, to the module its builder makes: the same children, hyper-parameters and
    tensors. The memory zoo holds every leaf type (checked here), each way it is built."""
    from archspec.exports.pywriter import _SourceWriter
    from archspec.language.blocks import BLOCK_TYPES
    from test_summary import ZOO

    spec = archspec.loads(ZOO)
    writer = _SourceWriter(spec, None)
    leaves = [n for n in spec.analyse().walk() if n.form == "leaf"]
    exprs = [(node, writer.leaf(node)) for node in leaves]
    namespace: dict[str, Any] = {}
    exec("from collections import OrderedDict\nimport torch\nfrom torch import nn\n" + "\n".join(writer.prelude()),
         namespace)
    for node, expr in exprs:
        written = eval(writer.fmt(expr, 0), namespace)
        assert _structure(written) == _structure(node.block.build(node)), node.path
    leaf_types = {name for name, cls in BLOCK_TYPES.items() if "source" in vars(cls)}
    assert leaf_types == {n.type for n in leaves}
    composite = {name for name, cls in BLOCK_TYPES.items() if name not in leaf_types}
    assert composite == {"sequence", "stage", "residual", "basic", "bottleneck", "inception", "inception_v1",
                         "depthwise", "mbconv", "fused_mbconv", "regnet"}  # containers and macros: the writer's forms and expansions


# -- the public API and the command ----------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["onnx", "pt2", "python"])
def test_export_api_checks_what_it_wrote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    monkeypatch.chdir(tmp_path)
    result = archspec.export(SPECS / "resnet18.yaml", fmt, overrides={"input.size": 32})
    suffix = {"onnx": ".onnx", "pt2": ".pt2", "python": ".py"}[fmt]
    assert result.path == tmp_path / f"resnet18{suffix}"
    assert result.files == [result.path] and result.max_abs_diff is not None and result.max_abs_diff <= TOLERANCE
    assert sorted(p.name for p in tmp_path.iterdir()) == [result.path.name]  # no temporary files left


def test_export_command_python_with_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    import torchvision

    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None).eval()
    torch.save(reference.state_dict(), tmp_path / "tv.pth")
    # Written to another folder than the current one: the check runs the file's build() as a user would.
    assert cli_main(["export", str(SPECS / "resnet18.yaml"), "--format", "python", "-o", "out/resnet18.py",
                     "--weights", "tv.pth"]) == 0
    captured = capsys.readouterr()
    assert "transferred 122 tensors" in captured.err
    assert "wrote out/resnet18.py (" in captured.out and " and out/resnet18.pth (" in captured.out
    assert "the generated module matches the eager model (max abs diff 0)" in captured.out
    # The generated file alone, with the weights written beside it, gives torchvision's outputs, whatever the
    # current folder holds (here a file of the same name that is not weights).
    (tmp_path / "resnet18.pth").write_bytes(b"not weights")
    namespace: dict[str, Any] = {"__name__": "resnet18_generated", "__file__": str(tmp_path / "out" / "resnet18.py")}
    exec(compile((tmp_path / "out" / "resnet18.py").read_text(), "resnet18.py", "exec"), namespace)
    net = namespace["build"]()  # WEIGHTS = "resnet18.pth", beside the file
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert (net(x) - reference(x)).abs().max().item() <= TOLERANCE


def test_pt2_to_a_name_that_is_not_utf8(tmp_path: Path) -> None:
    """A file name of bytes that are not UTF-8 (a surrogate in Python's str) is written and checked."""
    out = tmp_path / os.fsdecode(b"\xffbad.pt2")
    result = archspec.export(SPECS / "squeezenet1_1.yaml", "pt2", out, overrides={"input.size": 32})
    assert result.files == [out] and result.max_abs_diff is not None and result.max_abs_diff <= TOLERANCE


def test_export_command_onnx_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from test_deploy import run_cli

    out = tmp_path / "g.onnx"
    assert run_cli(["export", str(SPECS / "squeezenet1_1.yaml"), "--set", "input.size=32", "--format", "onnx",
                    "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"wrote {out}" in text and "input (batch, 3, 32, 32) -> (batch, 1000)" in text
    assert "checked: onnxruntime matches the eager model" in text


@pytest.mark.parametrize("target", ["spec", "weights"])
def test_export_never_writes_over_its_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str) -> None:
    spec = tmp_path / "resnet18.yaml"
    spec.write_text((SPECS / "resnet18.yaml").read_text())
    weights = tmp_path / "resnet18.pth"
    torch.save(archspec.build(spec).state_dict(), weights)
    before = spec.read_bytes(), weights.read_bytes()
    args = ["-o", str(spec)] if target == "spec" else ["-o", str(tmp_path / "resnet18.py")]  # .py + resnet18.pth
    assert cli_main(["export", str(spec), "--format", "python", "--weights", str(weights), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refusing to overwrite the input" in err[0]
    assert (spec.read_bytes(), weights.read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["resnet18.pth", "resnet18.yaml"]


def test_export_spec_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["export", str(SPECS / "resnet18.yaml"), "--format", "pt2", "--set", "layers.fc.outt=1"]) == 2
    assert "did you mean 'out'?" in capsys.readouterr().err


def test_export_refuses_overrides_for_a_loaded_spec(tmp_path: Path) -> None:
    """As archspec.build: overrides, variant and phi apply to a file; a loaded Spec is final."""
    with pytest.raises(ValueError, match="apply to a spec file"):
        archspec.export(archspec.load(SPECS / "resnet18.yaml"), "python", tmp_path / "r.py", overrides=["input.size=64"])
    assert not (tmp_path / "r.py").exists()


# -- text from a spec reaches the Python file as data only ---------------------------------------------

HOSTILE = ['"""; import os; os.system(\'touch PWNED\') #', "'''; import os; os.system('touch PWNED') #",
           "ends in a backslash \\", "\\N{DIGIT ONE} and \\N, \\x41, \\u0041", "two\nlines\r\nand\ttabs",
           "quotes: \" '' \"\"\" ''' `", "non-ASCII: é, 中文, 😀", "null \x00 byte, NEL \x85, LS \u2028, surrogate \ud800"]


def tiny_spec(folder: Path, description: str) -> Path:
    import yaml

    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump({
        "name": "tiny", "description": description, "input": {"channels": 3, "size": 8},
        "layers": [{"type": "conv", "out": 4, "kernel": 3, "name": "stem"},
                   {"type": "residual", "name": "block", "body": [{"type": "conv", "out": 4, "kernel": 3, "padding": 1}]},
                   {"type": "global_pool"}, {"type": "flatten"}, {"type": "linear", "out": 2, "name": "fc"}]}))
    return path


@pytest.mark.parametrize("description", HOSTILE, ids=range(len(HOSTILE)))
def test_spec_text_reaches_the_python_file_as_data_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str], standalone: Any,
                                                        description: str) -> None:
    monkeypatch.chdir(tmp_path)
    spec = tiny_spec(tmp_path, description)
    assert archspec.load(spec).description == description  # YAML gives the text back exactly
    assert cli_main(["export", str(spec), "--format", "python", "--weights", str(weights_of(spec)),
                     "-o", str(tmp_path / 'w"""x.py')]) == 0, capsys.readouterr().err
    assert "checked: the generated module matches" in capsys.readouterr().out
    # Imported by another Python, in this folder (where PWNED would be created), the file gives the text back as data.
    reply = standalone(module="g", cwd=str(tmp_path), py=str(tmp_path / 'w"""x.py'), threads=1)
    assert reply == [description, 'w"""x.pth', True, "Tiny"], reply
    assert not list(tmp_path.rglob("PWNED")) and not (ROOT / "PWNED").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.yaml", "tv.pth", 'w"""x.pth', 'w"""x.py']


def weights_of(spec: Path) -> Path:
    path = spec.parent / "tv.pth"
    torch.save(archspec.build(spec).state_dict(), path)
    return path


def test_the_check_refuses_source_whose_code_the_text_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """With the docstrings written unescaped (as before), the text is code: refused before anything is
    written or run."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys.modules["archspec.exports.pywriter"], "_doc_text", lambda text: text)
    spec = tiny_spec(tmp_path, '""" + str(__import__("os").system("touch PWNED")) + """')
    assert cli_main(["export", str(spec), "--format", "python"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the spec's text changes the generated code, not only its strings" in err
    spec = tiny_spec(tmp_path, "\\N")
    assert cli_main(["export", str(spec), "--format", "python"]) == 1
    assert "internal error: the generated source does not parse" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.yaml"]  # nothing written, nothing run


# -- every name that validates builds and exports --------------------------------------------------------

NEAR_MISSES = ["add", "appendix", "bodies", "drop", "rate", "module", "Training", "to_", "pop1", "trainer", "ipu2",
               "named", "half_", "Spec", "cuda0", "state", "forward_", "Forward", "extra", "children_"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(name="append", where="sequence")  # these validated, then failed to build: always tried
@example(name="pop", where="aux")
@example(name="body", where="residual")
@example(name="drop_rate", where="residual")
@example(name="extend", where="top")
@example(name="body", where="top")  # a residual's attribute, not the network's: accepted, and it builds
@example(name="insert", where="branch")
@given(name=st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,10}", fullmatch=True) | st.sampled_from(NEAR_MISSES),
       where=st.sampled_from(["top", "sequence", "residual", "branch", "aux"]))
def test_every_name_that_validates_builds_and_exports(tmp_path: Path, name: str, where: str) -> None:
    from archspec.language.blocks.base import RESERVED_NAMES, RESIDUAL_RESERVED
    from test_compile import named_spec

    path = tmp_path / "net.yaml"
    path.write_text(named_spec(name, where))
    try:
        spec = archspec.load(path)
    except SpecError as exc:  # refused: reserved, or the name of a sibling in the small spec
        reserved = RESERVED_NAMES | (RESIDUAL_RESERVED if where == "residual" else set())
        assert name in reserved | {"c", "other", "stem", "fc", "seq", "res", "mix", "head"}, exc
        return
    model = archspec.build(spec)
    result = archspec.export(spec, "python", tmp_path / "net.py", model=model, force=True)
    assert result.max_abs_diff is not None and result.max_abs_diff <= TOLERANCE
    assert name in dict(model.named_modules()) or any(k.endswith(f".{name}") for k in dict(model.named_modules()))
