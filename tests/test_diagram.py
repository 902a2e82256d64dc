"""Diagrams: every bundled spec at every detail level, rendered with the real Graphviz `dot`, checked on
the graph's structure (nodes, edges, clusters, skips, concats, shape labels), not on pixels."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import archspec
from archspec.blocks import BLOCK_CLASSES, AuxHead
from archspec.blocks.base import Group, Node, fmt_shape
from archspec.diagram import COLOURS, DETAILS, PLAIN, diagram, render
from conftest import ALL_SPECS, ROOT, SPECS
from test_cli import NO_TORCH


# At block detail a repeated stage shows its first block and one node for the rest, each with its own skip
# and add if residual; inception modules (also nested ones) are drawn out. (adds, concats) per spec:
BLOCK_DETAIL = {
    "resnet50": (8, 0),             # 4 stages x (first block with projection + the rest)
    "resnet18": (8, 0),
    "se_resnet50": (8, 0),
    "googlenet": (0, 9),            # inception 3a-5b
    "inception_v3": (0, 15),        # Mixed_5b..7c, plus the split 1x3/3x1 branches of 7b and 7c
    "efficientnet_b0": (5, 0),      # stages 2-6: the first block strides or widens, the rest add
    "mobilenet_v3_large": (10, 0),  # the stride-1, same-width blocks of its 15
    "mobilenet_v3_small": (6, 0),   # blocks 2, 4, 5, 7, 9, 10 of its 11
    "vgg16": (0, 0),
}


def svg_counts(svg: str) -> dict[str, int]:
    return {kind: len(re.findall(rf'<g id="\w+" class="{kind}"', svg)) for kind in ("node", "edge", "cluster")}


def svg_texts(svg: str) -> list[str]:
    return re.findall(r"<text[^>]*>([^<]*)</text>", svg)


def nodes_of(spec: archspec.Spec) -> dict[str, Node]:
    return {n.path: n for n in spec.analyse().walk()}


def test_dot_is_installed() -> None:
    assert shutil.which("dot"), "Graphviz's dot is needed for these tests (apt-get install graphviz; .ci/run does)"


@pytest.mark.parametrize("detail", DETAILS)
@pytest.mark.parametrize("path", ALL_SPECS, ids=lambda p: p.stem)
def test_every_spec_renders_with_the_structure_it_declares(path: Path, detail: str, tmp_path: Path) -> None:
    spec = archspec.load(path)
    drawing = diagram(spec, detail)
    out, rendered = render(spec, tmp_path / "d.svg", detail)
    assert rendered and out.suffix == ".svg"
    counts = svg_counts(out.read_text())
    assert counts == {"node": drawing.nodes + 1, "edge": drawing.edges, "cluster": len(drawing.clusters)}  # +1: legend

    analysed = nodes_of(spec)
    # Every edge label is the analysed output shape of the node it leaves.
    for source, label in drawing.shape_labels:
        if source in analysed:
            assert label == fmt_shape(analysed[source].out_shape), source
        else:
            assert source == "/input" and label == fmt_shape(spec.input.shape)

    stages = [n for n in spec.analyse().children if n.type == "stage" and len(n.children) > 1]
    residuals = [n for n in analysed.values() if n.form == "residual"]
    concats = [n for n in analysed.values() if n.form == "concat"]
    if detail == "stage":
        top = [c for c in spec.analyse().children]
        assert drawing.nodes == len(top) + 2  # every top-level layer and head, plus input and output
        assert drawing.collapsed == [s.path for s in stages]
        assert drawing.clusters == [] and drawing.skip_edges == 0
    elif detail == "block":
        assert drawing.collapsed == [s.path for s in stages]  # one collapsed node per repeated stage
        # docs/diagrams/ (docs/diagrams/regenerate.sh) holds this drawing: the same texts, in the same order
        # (title, labels, shapes); coordinates are left to the Graphviz version that drew it.
        committed = ROOT / "docs" / "diagrams" / f"{spec.name}.svg"
        assert committed.exists() and svg_texts(committed.read_text()) == svg_texts(out.read_text()), \
            f"{committed.relative_to(ROOT)} is not this spec's drawing: run docs/diagrams/regenerate.sh"
        assert drawing.skip_edges == drawing.adds
        if spec.name in BLOCK_DETAIL:
            assert (drawing.adds, drawing.concats) == BLOCK_DETAIL[spec.name]
    else:
        assert drawing.skip_edges == drawing.adds == len(residuals)  # a skip edge per residual block
        assert drawing.concats == len(concats)
        branches = [b.path for c in concats for b in c.children]
        assert sorted(p for p in drawing.clusters if p in branches) == sorted(branches)  # one cluster per branch
        assert drawing.collapsed == []


def test_inception_branches_sit_in_their_own_clusters() -> None:
    spec = archspec.load(SPECS / "googlenet.yaml")
    drawing = diagram(spec, "block")
    assert drawing.concats == 9
    for module in ("inception3a", "inception5b"):
        assert [p for p in drawing.clusters if p.startswith(module + ".")] == [f"{module}.branch{i}" for i in range(1, 5)]
    assert "training only" in drawing.source and drawing.source.count("style=\"rounded,dashed\"") >= 2  # aux heads


def test_resnet152_stage_detail_stays_small_and_layer_detail_renders(tmp_path: Path) -> None:
    spec = archspec.load(SPECS / "resnet152.yaml")
    small = diagram(spec, "stage")
    assert small.nodes <= 30
    assert "bottleneck ×36" in small.source
    out, rendered = render(spec, tmp_path / "r152.svg", "layer")
    # input, conv1, maxpool, 50 blocks x 3 convs, 4 projections, 50 adds, avgpool, fc, output, legend
    assert rendered and svg_counts(out.read_text())["node"] == 1 + 1 + 1 + 150 + 4 + 50 + 1 + 1 + 1 + 1


def test_se_and_projection_are_marked() -> None:
    layer = diagram(archspec.load(SPECS / "se_resnet50.yaml"), "layer")
    assert "squeeze-excitation" in layer.kinds
    block = diagram(archspec.load(SPECS / "se_resnet50.yaml"), "block").source
    assert "SE gate inside" in block and "projection" in block


def test_every_block_kind_has_a_colour_and_a_legend_entry() -> None:
    for cls in [*BLOCK_CLASSES, AuxHead, Group]:
        assert cls.kind == "other" or cls.kind in COLOURS, f"{cls.__name__}.kind = {cls.kind!r} has no colour"
    drawing = diagram(archspec.load(SPECS / "efficientnet_b0.yaml"), "layer")
    assert {"convolution", "squeeze-excitation", "pooling", "fully connected"} <= drawing.kinds
    legend = drawing.source[drawing.source.index("legend"):]
    for kind in ("convolution", "squeeze-excitation"):
        assert f'bgcolor="{COLOURS[kind]}" border="1">{kind}<' in legend
    assert f'fillcolor="{COLOURS["convolution"]}"' in drawing.source and PLAIN != COLOURS["convolution"]


def test_formats_and_rankdir(tmp_path: Path) -> None:
    spec = archspec.load(SPECS / "resnet18.yaml")
    for suffix, magic in ((".png", b"\x89PNG"), (".pdf", b"%PDF"), (".svg", b"<?xml")):
        out, _ = render(spec, tmp_path / f"r{suffix}", "block", "LR")
        assert out.read_bytes().startswith(magic)
    out, rendered = render(spec, tmp_path / "r.dot", "stage")
    assert out.read_text().startswith("digraph") and "rankdir=TB" in out.read_text()
    with pytest.raises(ValueError, match="unknown diagram format"):
        render(spec, tmp_path / "r.jpeg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.dot", "r.pdf", "r.png", "r.svg"]  # nothing half-written




def test_cli_diagram_default_output_and_no_torch(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", NO_TORCH.replace('"cli.py"', repr(str(ROOT / "cli.py"))),
                             "diagram", str(SPECS / "resnet152.yaml")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert "TORCH-MODULES 0" in result.stderr
    assert (tmp_path / "resnet152.svg").read_text().count('class="node"') > 10


def test_cli_diagram_without_dot_writes_dot_source(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}  # python, but no dot
    result = subprocess.run([sys.executable, str(ROOT / "cli.py"), "diagram", str(SPECS / "googlenet.yaml"),
                             "-o", "g.svg"], cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "g.dot").read_text().startswith("digraph") and not (tmp_path / "g.svg").exists()
    assert "apt-get install graphviz" in result.stdout + result.stderr
    assert len((result.stdout + result.stderr).strip().splitlines()) == 1


def test_cli_diagram_many_specs_into_a_folder(tmp_path: Path) -> None:
    from archspec.cli import main

    assert main(["diagram", str(SPECS / "alexnet.yaml"), str(SPECS / "vgg11.yaml"), "-o", str(tmp_path), "--detail", "stage"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alexnet.svg", "vgg11.svg"]
