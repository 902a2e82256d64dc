"""The Python API's entries take a spec the same way (spec.as_spec): a path with its overrides, variant and
phi, or a loaded Spec, which is final."""
from __future__ import annotations

import builtins
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

import archspec
import archspec.backend.compiler
from archspec.cli import main
from archspec.files import OutputError
from archspec.tools.bench import bench
from archspec.language.spec import as_spec
from archspec.tools.train import train
from conftest import ROOT, SPECS

ENTRIES: dict[str, Callable[..., Any]] = {
    "build": archspec.build, "export": partial(archspec.export, format="python"), "train": train, "bench": bench,
}


@pytest.mark.parametrize("name", ENTRIES)
@pytest.mark.parametrize("extra", [{"overrides": {"layers.fc.out": 10}}, {"variant": "b1"}, {"phi": 1.0}])
def test_a_loaded_spec_is_final(name: str, extra: dict[str, Any]) -> None:
    """bench used to drop the overrides it was given with a Spec; every entry refuses them alike."""
    spec = archspec.load(SPECS / "resnet18.yaml")
    with pytest.raises(ValueError, match="apply to a spec file"):
        ENTRIES[name](spec, **extra)


def test_a_path_takes_its_overrides() -> None:
    spec = as_spec(SPECS / "resnet18.yaml", {"layers.fc.out": 10})
    assert spec.output_shape == (10,) and as_spec(spec) is spec
    assert archspec.summary(SPECS / "resnet18.yaml").params == archspec.load(SPECS / "resnet18.yaml").params


def test_diagram_takes_a_path_too() -> None:
    drawn = archspec.diagram(SPECS / "resnet18.yaml", detail="stage")
    assert drawn.graph.source == archspec.diagram(archspec.load(SPECS / "resnet18.yaml"), detail="stage").graph.source


# -- the package's public names ------------------------------------------------------------------------------

def test_importing_archspec_loads_only_the_language() -> None:
    """The reports, exports and torch are imported on first use (PEP 562), not by `import archspec`."""
    code = ("import sys, archspec; archspec.load('specs/resnet50.yaml'); "
            "print(sorted(m for m in ('torch', 'archspec.reports.summary', 'archspec.reports.diagram', "
            "'archspec.exports.formats', 'graphviz', 'rich') if m in sys.modules)); "
            "archspec.summary; print('archspec.reports.summary' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:2] == ["[]", "True False"]


def test_every_public_name_resolves_and_none_shadows_a_builtin() -> None:
    for name in archspec.__all__:
        assert getattr(archspec, name) is not None and name in dir(archspec)
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        archspec.nonsense  # noqa: B018
    assert archspec.compile is archspec.backend.compiler.compile_spec
    for module in [m for n, m in sys.modules.items() if n.startswith("archspec.") and m is not None]:
        defined = {n for n, v in vars(module).items() if getattr(v, "__module__", None) == module.__name__}
        assert not defined & set(dir(builtins)), module.__name__


def test_the_analysed_expansion_is_named_expanded() -> None:
    """Node.expanded is what a macro block stands for; `expansion` stays the spec field of conv and bottleneck."""
    root = archspec.load(SPECS / "resnet50.yaml").analyse()
    block = next(n for n in root.walk() if n.type == "bottleneck")
    assert block.expanded.type == "residual" and block.block.expansion == 4 and not hasattr(block, "expansion")


# -- checkpoints: archspec.save and archspec.load_checkpoint --------------------------------------------------

def test_a_checkpoint_rebuilds_the_model(tmp_path: Path) -> None:
    model = archspec.build(SPECS / "resnet18.yaml", overrides={"layers.fc.out": 10, "input.size": 32}).eval()
    path = archspec.save(model, tmp_path / "r18.pt")
    again = archspec.load_checkpoint(path).eval()
    assert again.spec.source == model.spec.source and again.spec.params == model.spec.params
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    x = archspec.example_input(model.spec, 2, seed=0)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
    with pytest.raises(OutputError, match="exists; pass --force"):
        archspec.save(model, path)
    archspec.save((model.spec, model.state_dict()), path, force=True)  # a (spec, state_dict) pair, replaced
    assert torch.load(path, weights_only=True)["format"] == "archspec-checkpoint/1"


def test_the_cli_writes_what_the_api_reads(tmp_path: Path) -> None:
    out = tmp_path / "cli.pt"
    assert main(["build", str(SPECS / "resnet18.yaml"), "--set", "layers.fc.out=10", "-o", str(out)]) == 0
    model = archspec.load_checkpoint(out)
    assert model.spec.output_shape == (10,) and model.spec.name == "resnet18"


def test_load_checkpoint_refuses_a_plain_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "plain.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), path)
    with pytest.raises(ValueError, match="not an archspec checkpoint"):
        archspec.load_checkpoint(path)
    with pytest.raises(ValueError, match="built by archspec"):
        archspec.save(torch.nn.Linear(2, 2), tmp_path / "x.pt")


# -- example_input: one function for bench, export and the CLI -----------------------------------------------

def test_example_input_is_one_function() -> None:
    from archspec.backend.compiler import example_input
    from archspec.exports import formats
    from archspec.tools import bench as bench_module

    assert archspec.example_input is example_input is bench_module.example_input
    assert not hasattr(formats, "example_input")
    spec = archspec.load(SPECS / "resnet18.yaml", overrides={"input.size": 32})
    x = example_input(spec, 3, seed=1)
    assert x.shape == (3, 3, 32, 32) and torch.equal(x, example_input(spec, 3, seed=1))
    assert torch.equal(x, torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1)))
    assert example_input((3, 8, 8), 2, channels_last=True).is_contiguous(memory_format=torch.channels_last)


# -- building on meta ------------------------------------------------------------------------------------------

def test_a_meta_build_skips_fills_but_keeps_every_tensor() -> None:
    """On meta, torch's initialisers fill nothing (they would run Python decompositions); every tensor is there."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Ops(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.seen: set[str] = set()

        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            self.seen.add(func.__name__.split(".")[0])
            return func(*args, **(kwargs or {}))

    spec = archspec.load(SPECS / "efficientnet_b0.yaml")
    with Ops() as ops:
        meta = archspec.compile(spec, device="meta")
    assert "empty" in ops.seen and not ops.seen & {"uniform_", "normal_", "fill_", "zero_"}
    real = archspec.compile(spec)
    assert {k: (v.shape, v.dtype) for k, v in meta.state_dict().items()} == \
        {k: (v.shape, v.dtype) for k, v in real.state_dict().items()}
    assert all(v.is_meta for v in meta.state_dict().values())
    assert torch.empty(3).fill_(2).tolist() == [2, 2, 2]  # outside the build, fills fill
