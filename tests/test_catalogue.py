"""`cli.py list`: the catalogue of the bundled specs (or a folder's), and docs/zoo.md, generated from it."""
from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import archspec
from archspec.cli import main
from conftest import ALIASES, ALL_SPECS, ROOT, SPECS
from test_cli import NO_TORCH


@pytest.fixture(scope="module")
def rows() -> dict[str, list[str]]:
    """{name: the row's cells} of `list`'s text output (the last cell, free text, whole)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["list"]) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].split()[:5] == ["name", "family", "params", "GMACs", "input"]
    return {cells[0]: cells for cells in (line.split(maxsplit=5) for line in lines[1:])}


@pytest.mark.parametrize("name, family, source", [
    ("resnet50", "ResNet", "torchvision:resnet50 (exact)"),
    ("resnext101_32x8d", "ResNeXt", "torchvision:resnext101_32x8d (exact)"),  # its own family, not its parent's
    ("resnet152", "ResNet", "torchvision:resnet152 (exact)"),  # family inherited from resnet50.yaml
    ("regnet_y_8gf", "RegNetY", "torchvision:regnet_y_8gf (exact)"),  # family and reference from its variant row
    ("inception_v3", "Inception", "torchvision:inception_v3 (exact)"),
    ("inception", "Inception", "= googlenet"),  # an alias names the network it is
    ("googlenet_paper", "Inception", "GoogLeNet as in the 2014 paper (5x5 convs, LRN, no BN)"),  # no reference
])
def test_columns_are_the_analysis(name: str, family: str, source: str, rows: dict[str, list[str]]) -> None:
    spec = archspec.load(SPECS / f"{name}.yaml")
    row = rows[name]
    size = "x".join(str(d) for d in spec.input.shape)
    assert row == [name, family, f"{spec.params:,}", f"{spec.macs / 1e9:.3f}", size, source]


def test_json_lists_every_bundled_spec_once(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert sorted(Path(e["file"]).name for e in entries) == sorted(p.name for p in ALL_SPECS)
    by_name = {e["name"]: e for e in entries}
    assert {name: e["alias_of"] for name, e in by_name.items() if e["alias_of"]} == ALIASES
    for path in (SPECS / "efficientnet_b3.yaml", SPECS / "alexnet_original.yaml"):
        spec = archspec.load(path)
        entry = by_name[spec.name]
        assert (entry["params"], entry["macs"], entry["input"]) == (spec.params, spec.macs, list(spec.input.shape))
        assert entry["exact"] == (spec.reference is not None) and entry["reference"] == spec.reference
    assert by_name["inception"]["exact"] and not by_name["inception_bn"]["exact"]


def test_a_folder_lists_its_specs_and_reports_a_broken_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "mine.yaml").write_text("extends: " + str(SPECS / "resnet18.yaml") + "\nname: mine\nfamily: Mine\n"
                                        "layers.fc.out: 10\n")
    (tmp_path / "broken.yaml").write_text((ROOT / "tests" / "broken" / "misspelled_field.yaml").read_text())
    assert main(["list", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert [line.split()[:2] for line in out.splitlines()[1:]] == [["mine", "Mine"]]
    assert len(err.splitlines()) == 1 and "broken.yaml:10:43: " in err and "'strid'" in err


def test_list_reads_a_folder_in_several_processes_as_in_one(tmp_path: Path) -> None:
    """`list --no-cache` shares the specs out to worker processes (archspec/fanout.py): the same rows and the
    same error, whatever the number of processes."""
    for width in range(8, 28):
        (tmp_path / f"r{width}.yaml").write_text(f"extends: {SPECS / 'resnet18.yaml'}\nname: r{width}\n"
                                                 f"layers.fc.out: {width}\n")
    (tmp_path / "broken.yaml").write_text((ROOT / "tests" / "broken" / "misspelled_field.yaml").read_text())
    runs = [subprocess.run([sys.executable, "cli.py", "list", str(tmp_path), "--no-cache", "-j", jobs], cwd=ROOT,
                           capture_output=True, text=True, timeout=120) for jobs in ("1", "2")]
    assert [run.returncode for run in runs] == [2, 2]
    assert runs[0].stdout == runs[1].stdout and runs[0].stderr == runs[1].stderr
    assert len(runs[0].stdout.splitlines()) == 1 + 20 and "broken.yaml:10:43: " in runs[0].stderr


def test_list_does_not_import_torch() -> None:
    result = subprocess.run([sys.executable, "-c", NO_TORCH, "list", "--json"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "TORCH-MODULES 0" in result.stderr
    assert len(json.loads(result.stdout)) == len(ALL_SPECS)


def test_zoo_page_is_current() -> None:
    spec = importlib.util.spec_from_file_location("zoo", ROOT / "docs" / "zoo.py")
    zoo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(zoo)
    for path, text in zoo.pages().items():
        assert path.exists() and path.read_text(encoding="utf-8") == text, \
            f"{path.relative_to(ROOT)} is not what docs/zoo.py writes today: run `{zoo.COMMAND}`"
    legend = re.findall(r'<line x1="[^"]*" y1="[^"]*" x2="[^"]*" y2="[^"]*" (stroke="[^"]*" stroke-width="3"[^/]*)/>\s*'
                        r'<text[^>]*>([^<]*)</text>', (ROOT / "docs" / "zoo_top1.svg").read_text(encoding="utf-8"))
    assert len(legend) > len(zoo.COLOURS) and len({style for style, _ in legend}) == len(legend), legend  # none alike
    page = (ROOT / "docs" / "zoo.md").read_text(encoding="utf-8")
    for path in ALL_SPECS:  # one row per network, an alias in its network's row, each linked to its diagram
        name = archspec.load(path, analyse=False).name
        if path.stem in ALIASES:
            assert f"(= `{name}`)" in page
        else:
            assert page.count(f"| [{name}](diagrams/{name}.svg)") == 1 and (ROOT / "docs" / "diagrams" / f"{name}.svg").exists()


def test_every_torchvision_cnn_is_bundled_and_exact() -> None:
    """The zoo is whole: each torchvision classification model that is a CNN (all but the vision transformers,
    Swin and MaxViT) is the reference of a bundled spec, which tests/test_reference.py checks exactly."""
    import torchvision

    cnns = [name for name in torchvision.models.list_models(module=torchvision.models)
            if not name.startswith(("vit_", "swin_", "maxvit"))]
    referenced = {archspec.load(path, analyse=False).reference for path in ALL_SPECS}
    assert len(cnns) >= 68 and [name for name in cnns if f"torchvision:{name}" not in referenced] == []


def test_list_reuses_a_row_while_its_files_and_archspec_are_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The catalogue's cache (reports/cache.py): a row is reused while the spec, the files it extends and archspec's
    source keep their bytes; an edit to a parent recomputes its children; a broken or unwritable cache is ignored."""
    from archspec.reports import cache, catalogue as cat

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / "parent.yaml").write_text("name: parent\ninput: {size: 32}\nlayers:\n  - {name: c, type: conv, out: 8, kernel: 3}\n")
    (folder / "child.yaml").write_text("extends: parent.yaml\nname: child\n")
    files = cat.spec_files([folder])
    first, _ = cat.catalogue(files)
    assert [e.params for e in first] == [224, 224] and first[1].alias_of == "child"
    real_load = cat.load
    monkeypatch.setattr(cat, "load", lambda path: pytest.fail(f"{path} was loaded, not taken from the cache"))
    assert cat.catalogue(files)[0] == first
    (folder / "parent.yaml").write_text((folder / "parent.yaml").read_text().replace("out: 8", "out: 16"))
    loaded: list[str] = []
    monkeypatch.setattr(cat, "load", lambda path: loaded.append(Path(path).name) or real_load(path))
    assert [e.params for e in cat.catalogue(files)[0]] == [448, 448] and sorted(loaded) == ["child.yaml", "parent.yaml"]
    loaded.clear()
    monkeypatch.setattr(cache, "code_fingerprint", lambda: "other code")
    cat.catalogue(files)
    assert sorted(loaded) == ["child.yaml", "parent.yaml"]  # rows computed by other code are not reused
    (tmp_path / "cache" / "archspec" / "catalogue.json").write_text("{not json")
    assert [e.params for e in cat.catalogue(files)[0]] == [448, 448]
    monkeypatch.setenv("XDG_CACHE_HOME", str(folder / "parent.yaml"))  # a file where the folder should be
    assert [e.params for e in cat.catalogue(files)[0]] == [448, 448]


@pytest.mark.parametrize("edit", ["params", "empty", "list", "input", "fifo"])
def test_an_edited_or_odd_cache_file_is_a_miss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edit: str) -> None:
    """Valid JSON whose rows are not rows (a hand edit, another program), or a FIFO where the file should be (whose
    read would block forever): the rows are computed again."""
    from archspec.reports import catalogue as cat

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "net.yaml").write_text("name: net\ninput: {size: 8}\nlayers: [{type: conv, out: 2, kernel: 1}]\n")
    files = cat.spec_files([tmp_path])
    expected, _ = cat.catalogue(files)
    store = tmp_path / "cache" / "archspec" / "catalogue.json"
    data = json.loads(store.read_text())
    [record] = data["records"].values()
    if edit == "fifo":
        store.unlink()
        os.mkfifo(store)
    else:
        record["value"] = {"params": {**record["value"], "params": "garbage"}, "empty": {}, "list": [1, 2],
                           "input": {**record["value"], "input": None}}[edit]
        store.write_text(json.dumps(data))
    assert cat.catalogue(files)[0] == expected
