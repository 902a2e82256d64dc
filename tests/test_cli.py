"""The command line: validate (no torch), build (+ checkpoint), summary, schema."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import archspec
from archspec.cli import main
from conftest import ROOT, SPECS

NO_TORCH = """
import sys, runpy
sys.argv = ["cli.py", *sys.argv[1:]]
try:
    runpy.run_path("cli.py", run_name="__main__")
except SystemExit as exit:
    code = exit.code
leaked = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
print("TORCH-MODULES", len(leaked), file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.parametrize("args", [["validate", *sorted(str(p.relative_to(ROOT)) for p in SPECS.glob("*.yaml"))],
                                  ["summary", "specs/resnet152.yaml"], ["summary", "specs/vgg19_bn.yaml", "--json"]])
def test_spec_commands_do_not_import_torch(args: list[str]) -> None:
    result = subprocess.run([sys.executable, "-c", NO_TORCH, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "TORCH-MODULES 0" in result.stderr


def test_validate_reports_every_spec(capsys: pytest.CaptureFixture[str]) -> None:
    paths = sorted(str(p) for p in SPECS.glob("*.yaml"))
    assert main(["validate", *paths]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(paths) and all(line.startswith("ok  ") for line in out)


def test_validate_reads_many_specs_in_several_processes_as_in_one() -> None:
    """The files are shared out to worker processes (archspec/fanout.py): the same lines in the same order, the
    same errors and exit code as in one process."""
    paths = [*sorted(str(p.relative_to(ROOT)) for p in SPECS.glob("*.yaml")), "tests/broken/bool_as_size.yaml"]
    runs = [subprocess.run([sys.executable, "cli.py", "validate", "-j", jobs, *paths], cwd=ROOT, capture_output=True,
                           text=True, timeout=120) for jobs in ("1", "2")]
    assert [run.returncode for run in runs] == [2, 2]
    assert runs[0].stdout == runs[1].stdout and runs[0].stderr == runs[1].stderr
    assert [line.split()[1] for line in runs[0].stdout.splitlines()] == paths[:-1]
    assert runs[0].stderr.startswith("tests/broken/bool_as_size.yaml:2:9: ")


def test_fan_out_works_in_worker_processes_and_keeps_the_order() -> None:
    code = ("import os, time\n"
            "from archspec.fanout import fan_out\n"
            "def work(i):\n"
            "    time.sleep(0.01 * (i % 3))\n"
            "    return i, os.getpid()\n"
            "if __name__ == '__main__':\n"
            "    for jobs in (2, 1):\n"
            "        found = list(fan_out(work, range(40), jobs))\n"
            "        print([i for i, _ in found] == list(range(40)), len({pid for _, pid in found} - {os.getpid()}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["True 2", "True 0"]


def test_build_prints_totals_and_writes_a_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = tmp_path / "r18.pt"
    assert main(["build", str(SPECS / "resnet18.yaml"), "--set", "layers.fc.out=10", "-o", str(checkpoint)]) == 0
    out = capsys.readouterr().out
    assert "parameters   11,181,642" in out  # resnet18 with a 10-class head
    assert "MACs         1,813,566,464" in out  # 1,814,073,344 - 512 * (1000 - 10)
    assert "output       1x10" in out
    assert [p.name for p in tmp_path.iterdir()] == ["r18.pt"]  # no temporary files left behind

    saved = torch.load(checkpoint, weights_only=True)
    assert saved["spec"]["layers"][-1] == {"name": "fc", "type": "linear", "out": 10}
    # The checkpoint loads back, through the CLI and the API, with every tensor equal.
    assert main(["build", str(SPECS / "resnet18.yaml"), "--set", "layers.fc.out=10", "--weights", str(checkpoint)]) == 0
    assert "missing 0, unexpected 0, mismatched 0" in capsys.readouterr().out
    model = archspec.build(SPECS / "resnet18.yaml", overrides={"layers.fc.out": 10}, weights=checkpoint)
    for key, value in model.state_dict().items():
        assert torch.equal(value, saved["state_dict"][key])


def test_build_refuses_to_overwrite_its_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "net.yaml"
    spec.write_text((SPECS / "resnet18.yaml").read_text())
    assert main(["build", str(spec), "-o", str(spec)]) == 2
    assert "refusing to overwrite the input spec" in capsys.readouterr().err
    assert spec.read_text() == (SPECS / "resnet18.yaml").read_text()


@pytest.mark.parametrize("command", ["build", "export"])
def test_no_input_is_written_over_even_with_force(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  command: str) -> None:
    """The spec's parent (extends), --weights and --map are inputs too."""
    parent, child = tmp_path / "parent.yaml", tmp_path / "child.yaml"
    parent.write_text("name: tiny\ninput: {channels: 3, size: 8}\nlayers:\n  - {name: fc0, type: flatten}\n"
                      "  - {name: fc, type: linear, out: 4}\n")
    child.write_text("extends: parent.yaml\nname: child\n")
    weights, mapping = tmp_path / "w.pt", tmp_path / "map.yaml"
    torch.save(archspec.build(child).state_dict(), weights)
    mapping.write_text("fc: fc\n")
    before = {p: p.read_bytes() for p in (parent, child, weights, mapping)}
    run = ["build", str(child)] if command == "build" else ["export", str(child), "--format", "pt2"]
    for target in (parent, weights, mapping):
        assert main([*run, "--weights", str(weights), "--map", str(mapping), "-o", str(target), "--force"]) == 2
        assert "refusing to overwrite the input" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in before} == before and sorted(tmp_path.iterdir()) == sorted(before)


def test_build_with_wrong_weights_fails_cleanly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights = tmp_path / "r18.pt"
    torch.save(archspec.build(SPECS / "resnet18.yaml").state_dict(), weights)
    assert main(["build", str(SPECS / "resnet34.yaml"), "--weights", str(weights)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and f"the weights in {weights} do not fit resnet34, nothing loaded: would transfer" in err[0], err
    assert "(e.g. missing layer1.2.conv1.conv.weight)" in err[0]


class Pickled:  # not a tensor: torch.load(weights_only=True) refuses it
    pass


@pytest.mark.parametrize("case", ["not torch", "pickle", "no tensors", "missing"])
def test_build_with_unreadable_weights_fails_in_one_line(case: str, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    weights = tmp_path / "w.pt"
    if case == "not torch":
        weights.write_text("hello")
    elif case == "pickle":
        torch.save({"a": Pickled()}, weights)
    elif case == "no tensors":
        torch.save({"a": 1}, weights)
    assert main(["build", str(SPECS / "resnet18.yaml"), "--weights", str(weights)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "internal error" not in err[0], err
    assert {"not torch": f"cannot read weights from {weights}: not a file written by torch.save",
            "pickle": f"cannot read weights from {weights}: it holds more than tensors, refused by weights_only=True",
            "no tensors": f"cannot read weights from {weights}: it holds no state_dict",
            "missing": f"no such weights file: {weights}"}[case] in err[0]


@pytest.mark.slow
def test_readme_build_command() -> None:
    result = subprocess.run([sys.executable, "cli.py", "build", "specs/resnet152.yaml"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "parameters   60,192,808" in result.stdout and "output       1x1000" in result.stdout


def test_summary_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", str(SPECS / "resnet50.yaml"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {k: data[k] for k in ("name", "params", "macs", "input_shape", "output_shape")} == {
        "name": "resnet50", "params": 25_557_032, "macs": 4_089_184_256,
        "input_shape": [3, 224, 224], "output_shape": [1000]}
    assert sum(layer["params"] for layer in data["layers"]) == data["params"]
    assert data["layers"][2] == {"name": "layer1", "type": "stage", "output_shape": [256, 56, 56],
                                 "params": 215_808, "macs": 667_942_912}


def test_summary_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", str(SPECS / "vgg16.yaml")]) == 0
    out = capsys.readouterr().out
    assert "parameters  138,357,544 (138.358 M)" in out
    assert "MACs        15,470,264,320 (15.470 G)" in out and "FLOPs       30.941 G" in out


def test_schema_lists_every_block_type(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    types = {t for d in schema["$defs"].values() for t in _literal_types(d)}
    assert {"conv", "bottleneck", "basic", "stage", "residual", "lrn", "relu"} <= types


def test_editor_schema_accepts_every_bundled_spec_and_catches_typos(capsys: pytest.CaptureFixture[str]) -> None:
    import jsonschema
    import yaml

    assert main(["schema"]) == 0
    validator = jsonschema.Draft202012Validator(json.loads(capsys.readouterr().out))
    for path in SPECS.glob("*.yaml"):  # as an editor sees them: extends, dotted keys, shorthand, defaults
        assert not list(validator.iter_errors(yaml.safe_load(path.read_text()))), path.name
    assert list(validator.iter_errors({"name": "x", "layers": [{"type": "conv", "strid": 2}]}))
    assert list(validator.iter_errors({"name": "x", "layers": ["rleu"]}))


def _literal_types(definition: dict) -> list[str]:
    prop = definition.get("properties", {}).get("type", {})
    return [prop["const"]] if "const" in prop else prop.get("enum", [])


def test_console_script_entry_point() -> None:
    # `archspec` (pyproject [project.scripts]) and `python cli.py` run the same main().
    text = (ROOT / "pyproject.toml").read_text()
    assert 'archspec = "archspec.cli:main"' in text
    result = subprocess.run([sys.executable, "-m", "archspec.cli", "validate", "specs/alexnet.yaml"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "61,100,840 params" in result.stdout


def test_build_guards_memory_and_existing_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", str(SPECS / "resnet18.yaml"), "--set", "input.size=12000"]) == 2
    err = capsys.readouterr().err
    assert "the network needs about" in err and "--allow-large" in err
    out = tmp_path / "r18.pt"
    out.write_bytes(b"keep me")
    assert main(["build", str(SPECS / "resnet18.yaml"), "--set", "input.size=64", "-o", str(out)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err and out.read_bytes() == b"keep me"
    assert main(["build", str(SPECS / "resnet18.yaml"), "--set", "input.size=64", "-o", str(out), "--force"]) == 0
    assert torch.load(out, weights_only=True)["format"] == "archspec-checkpoint/1"


def test_export_replaces_an_existing_file_only_with_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r18.py"
    out.write_text("# mine\n")
    args = ["export", str(SPECS / "resnet18.yaml"), "--set", "input.size=32", "--format", "python", "-o", str(out)]
    assert main(args) == 2
    assert "exists; pass --force" in capsys.readouterr().err and out.read_text() == "# mine\n"
    assert main([*args, "--force"]) == 0
    assert "class " in out.read_text() and "import torch" in out.read_text()


@pytest.mark.parametrize("command", ["build", "bench", "train"])
def test_a_device_the_machine_lacks_is_a_clear_error(command: str, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    spec = str(SPECS / "resnet18.yaml")
    assert main([command, spec, "--device", "gpu0"]) == 2  # a command line the command refuses
    devices = "cpu, cuda, cuda:N or meta" if command == "build" else "cpu, cuda, cuda:N"  # build on meta allocates nothing
    assert capsys.readouterr().err.strip() == f"archspec {command}: 'gpu0' is not a device; use {devices}"
    if command != "build":  # timing or training on meta tensors would print meaningless figures
        assert main([command, spec, "--device", "meta"]) == 2
        assert capsys.readouterr().err.strip() == f"archspec {command}: this command computes on real data: use cpu or cuda, not meta"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on CI, whatever this machine has
    assert main([command, spec, "--device", "cuda:0"]) == 1  # a device this machine lacks
    assert capsys.readouterr().err.strip() == (f"archspec {command}: device cuda:0: CUDA is not available on this "
                                               "machine; use --device cpu")


@pytest.mark.parametrize("missing, args", [("pydantic", ["validate", "specs/resnet18.yaml"]),
                                            ("rich", ["diff", "specs/resnet50.yaml", "specs/resnet101.yaml"])])
def test_a_missing_dependency_is_named_in_one_line(missing: str, args: list[str]) -> None:
    """Run before installing (pydantic: archspec cannot even load) or with a dependency gone (rich, at the
    command's first use): one line naming the package and how to install, exit 1, no traceback."""
    code = (f"import sys; sys.modules[{missing!r}] = None\n"  # any `import {missing}` now fails
            "import runpy; sys.argv = ['cli.py', *sys.argv[1:]]; runpy.run_path('cli.py', run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert f"needs the Python package '{missing}'" in result.stderr and "pip install -e ." in result.stderr


def test_validate_and_build_need_no_graphviz_package() -> None:
    """Only drawing needs the graphviz package: a GPU machine without it still validates and builds."""
    code = ("import sys; sys.modules['graphviz'] = None\n"  # any `import graphviz` now fails
            "import runpy; sys.argv = ['cli.py', *sys.argv[1:]]; runpy.run_path('cli.py', run_name='__main__')")
    for args in (["validate", "specs/googlenet.yaml"], ["build", "specs/resnet18.yaml"]):
        result = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
