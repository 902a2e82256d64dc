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
from archspec.language.blocks import BLOCK_TYPES, AuxHead
from archspec.language.blocks.base import MAX_BLOCKS
from archspec.language.blocks.base import NamedPath, Node, fmt_shape
from archspec.reports.diagram import COLOURS, DETAILS, MAX_BRANCHES, MAX_NODES, MAX_REPEATS, PLAIN, Drawing, diagram, render
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
    "densenet121": (0, 4),          # the first layer of each dense block: its input beside its new features
}


def svg_counts(svg: str) -> dict[str, int]:
    return {kind: len(re.findall(rf'<g id="\w+" class="{kind}"', svg)) for kind in ("node", "edge", "cluster")}


def svg_texts(svg: str) -> list[str]:
    return re.findall(r"<text[^>]*>([^<]*)</text>", svg)


def nodes_of(spec: archspec.Spec) -> dict[str, Node]:
    return {n.path: n for n in spec.analyse().walk()}


def edges(drawing: Drawing) -> list[tuple[str, str, str]]:
    """(tail, head, label or "") of every edge in the dot source."""
    return [(a, b, label or "") for a, b, label in
            re.findall(r'^\s+(\w+) -> (\w+)(?: \[(?:label="?([^" \]]*)"?)?)?', drawing.source, re.M)]


def fill(drawing: Drawing, nid: str) -> str:
    """The fill colour of node `nid`."""
    return re.search(rf'^\s+{nid} \[.*?fillcolor="([^"]+)"', drawing.source, re.M | re.S).group(1)


def legend_colours(drawing: Drawing) -> set[str]:
    return set(re.findall(r'<td bgcolor="([^"]+)" border="1">', drawing.source))


def test_dot_is_installed() -> None:
    assert shutil.which("dot"), "Graphviz's dot is needed for these tests (apt-get install graphviz; .ci/run does)"


def _before_cut(nodes: list[Node], drawn: dict[str, str]) -> list[Node]:
    """`nodes` up to the first one a drawing left out (its "… N more" node stands for it and the rest)."""
    cut = next((i for i, n in enumerate(nodes) if f"{n.path}/elided" in drawn), len(nodes))
    return nodes[:cut]


def _through_sequences(nodes: list) -> list:
    """`nodes`, and the layers of the sequences (and regnet blocks: stages) among them, in drawing order."""
    return [m for n in nodes for m in ([n] if n.type not in ("sequence", "regnet") else [n, *_through_sequences(n.children)])]


@pytest.mark.parametrize("detail", DETAILS)
@pytest.mark.parametrize("path", ALL_SPECS, ids=lambda p: p.stem)
def test_every_spec_renders_with_the_structure_it_declares(path: Path, detail: str, tmp_path: Path) -> None:
    spec = archspec.load(path)
    drawing = diagram(spec, detail)
    out, rendered = render(spec, tmp_path / "d.svg", detail)
    assert rendered and out.suffix == ".svg"
    counts = svg_counts(out.read_text())
    assert counts == {"node": drawing.nodes + 1, "edge": drawing.edges, "cluster": len(drawing.clusters)}  # +1: legend
    # Drawn whole, or, past MAX_NODES (DenseNet at layer detail), cut: each part cut short ends in a node that
    # says what it leaves out ("… 9 more repetitions of dense_layer (not drawn)"), in the drawing itself.
    assert bool(drawing.elided) == (drawing.nodes > MAX_NODES)
    assert all(label in svg_texts(out.read_text()) for label in drawing.elided)

    analysed = nodes_of(spec)
    # One tensor, one label: the edges that leave a node and carry its output are labelled once.
    labelled = [(tail, label) for tail, _, label in edges(drawing) if label]
    assert len(labelled) == len(set(labelled)) == len(drawing.shape_labels)
    # Every colour drawn is in the legend (white included: plain layers and adds), every kind has its row.
    used = set(re.findall(r'fillcolor="([^"]+)"', drawing.source))
    assert used <= legend_colours(drawing) | {PLAIN}
    assert len(re.findall("<tr>", drawing.source)) == len(drawing.kinds) + 1  # + the title row
    # Every edge label is the analysed output shape of the node it leaves.
    for source, label in drawing.shape_labels:
        if source in analysed:
            assert label == fmt_shape(analysed[source].out_shape), source
        else:
            assert source == "/input" and label == fmt_shape(spec.input.shape)

    stages = [n for n in spec.analyse().children if n.type == "stage" and len(n.children) > 1]
    # at block detail, a sequence is drawn as a cluster of its layers: the stages in it are collapsed too
    nested = [n for n in _through_sequences(spec.analyse().children) if n.type == "stage" and len(n.children) > 1]
    drawn = drawing.ids  # the paths drawn (all, unless cut), and "PATH/elided" for the first of a part cut
    residuals = [n for n in analysed.values() if n.form == "residual" and n.path in drawn]
    concats = [n for n in analysed.values() if n.form == "concat" and n.path in drawn]
    if detail == "stage":
        top = [c for c in spec.analyse().children]
        assert drawing.nodes == len(top) + 2  # every top-level layer and head, plus input and output
        assert drawing.collapsed == [s.path for s in stages]
        assert drawing.clusters == [] and drawing.skip_edges == 0
    elif detail == "block":
        assert drawing.collapsed == [s.path for s in nested]  # one collapsed node per repeated stage
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
        branches = [b.path for c in concats for b in _before_cut(c.children, drawn)]
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
    for cls in [*dict.fromkeys(BLOCK_TYPES.values()), AuxHead, NamedPath]:
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


def test_cli_diagram_without_dot_writes_dot_source_and_exits_2(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}  # python, but no dot
    assert shutil.which("dot", path=env["PATH"]) is None
    result = subprocess.run([sys.executable, str(ROOT / "cli.py"), "diagram", str(SPECS / "googlenet.yaml"),
                             "-o", "g.svg"], cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 2 and result.stdout == ""
    assert (tmp_path / "g.dot").read_text().startswith("digraph") and sorted(os.listdir(tmp_path)) == ["g.dot"]
    message = result.stderr.strip()
    assert "\n" not in message and "googlenet.yaml: wrote g.dot but not g.svg" in message
    for install in ("apt-get install graphviz", "brew install graphviz", "conda install -c conda-forge graphviz",
                    "winget install graphviz", "choco install graphviz"):
        assert install in message


def test_cli_diagram_many_specs_into_a_folder(tmp_path: Path) -> None:
    from archspec.cli import main

    assert main(["diagram", str(SPECS / "alexnet.yaml"), str(SPECS / "vgg11.yaml"), "-o", str(tmp_path), "--detail", "stage"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alexnet.svg", "vgg11.svg"]


def test_cli_diagram_refuses_what_it_cannot_write_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two specs of one name into one folder (the second would replace the first), a name the file system refuses,
    a format it does not draw: exit 2, one line each, nothing written over."""
    from archspec.cli import main

    twin = tmp_path / "twin"
    twin.mkdir()
    (twin / "alexnet.yaml").write_text((SPECS / "alexnet.yaml").read_text())
    out = tmp_path / "out"
    assert main(["diagram", str(SPECS / "alexnet.yaml"), str(twin / "alexnet.yaml"), "-o", str(out), "--detail", "stage"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"archspec diagram: {twin / 'alexnet.yaml'}: its name 'alexnet' is {SPECS / 'alexnet.yaml'}'s too, "
                   f"whose diagram is {out / 'alexnet.svg'}; draw them to different folders"]
    assert sorted(p.name for p in out.iterdir()) == ["alexnet.svg"]
    for name, message in ((f"{'a' * 300}.svg", "File name too long"), ("x.yaml", "unknown diagram format '.yaml'")):
        assert main(["diagram", str(SPECS / "alexnet.yaml"), "-o", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and message in err[0]


def test_title_says_what_the_parameter_count_includes() -> None:
    title = diagram(archspec.load(SPECS / "googlenet.yaml")).graph.graph_attr["label"]
    assert "6,624,904 parameters at inference (+6,379,984 in training-only auxiliary heads; 13,004,888 in all)" in title
    assert "resnet50: input 3x224x224, 25,557,032 parameters, 4.089 GMACs" in \
        diagram(archspec.load(SPECS / "resnet50.yaml")).graph.graph_attr["label"]


def test_a_block_without_a_skip_is_not_coloured_residual() -> None:
    spec = archspec.load(SPECS / "efficientnet_b0.yaml")
    drawing = diagram(spec, "block")
    residual, plain = COLOURS["residual block"], COLOURS["block without skip"]
    for stage in ("stage2", "stage6"):  # the first block strides or widens (no skip), the rest add
        first = drawing.ids[f"{stage}.0"]
        assert nodes_of(spec)[f"{stage}.0"].form != "residual" and fill(drawing, first) == plain
        add = drawing.ids[f"{stage}.1"]  # a residual's output is its add; its body box feeds it the labelled edge
        body = next(tail for tail, head, label in edges(drawing) if head == add and label)
        assert nodes_of(spec)[f"{stage}.1"].form == "residual" and fill(drawing, body) == residual
    assert {"residual block", "block without skip"} <= drawing.kinds and {residual, plain} <= legend_colours(drawing)


def test_inception_branch_heads_share_a_rank() -> None:
    drawing = diagram(archspec.load(SPECS / "googlenet.yaml"), "block")
    firsts = ((1, 0), (2, "reduce"), (3, "reduce"), (4, "pool"))
    heads = [drawing.ids[f"inception3a.branch{i}.{first}"] for i, first in firsts]
    assert "\t\t{\n\t\t\trank=same\n" + "".join(f"\t\t\t{nid}\n" for nid in heads) + "\t\t}" in drawing.source


def test_legend_lists_concat_adds_and_plain_layers() -> None:
    legend = diagram(archspec.load(SPECS / "googlenet.yaml")).source.split('legend [label=')[1]
    assert f'bgcolor="{COLOURS["concat"]}" border="1">concat<' in legend and ">other layer (" in legend
    assert COLOURS["concat"] != COLOURS["inception"]
    assert ">+  add (body + skip)<" in diagram(archspec.load(SPECS / "resnet18.yaml")).source


def test_stage_detail_names_the_stage() -> None:
    source = diagram(archspec.load(SPECS / "resnet50.yaml"), "stage").source
    assert "<b>layer3</b>  bottleneck ×6" in source and "<b>0</b>" not in source and "<i>layer3</i>" not in source


def write_spec(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(f"name: {name}\ninput: {{channels: 3, size: 8}}\n{text}")
    return path


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60)  # a hang guard, not a timing test


def test_a_3000_branch_inception_is_drawn_with_the_rest_elided(tmp_path: Path) -> None:
    branches = "".join(f"      b{i}: []\n" for i in range(3000))
    spec = write_spec(tmp_path, "wide", f"layers:\n  - name: inc\n    type: inception\n    branches:\n{branches}")
    assert spec.stat().st_size < 50_000
    drawing = diagram(archspec.load(spec))
    assert drawing.elided == [f"… {3000 - MAX_BRANCHES:,} more branches (not drawn)"]
    assert len([p for p in drawing.clusters if p.startswith("inc.")]) == MAX_BRANCHES
    result = run_cli("diagram", str(spec), "-o", "wide.svg", cwd=tmp_path)
    assert result.returncode == 0 and result.stderr == "" and result.stdout.strip() == "wide.svg"
    assert f"{3000 - MAX_BRANCHES:,} more branches (not drawn)" in (tmp_path / "wide.svg").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wide.svg", "wide.yaml"]


def test_a_network_at_the_block_budget_at_layer_detail_is_drawn_with_the_rest_elided(tmp_path: Path) -> None:
    first, second = MAX_BLOCKS // 2, MAX_BLOCKS // 2 - 5  # with the stem and the stages: just under the budget
    spec = write_spec(tmp_path, "deep", "layers:\n  - {name: stem, type: conv, out: 4, kernel: 1}\n"
                      f"  - {{name: s1, type: stage, repeat: {first}, block: {{type: conv, out: 4, kernel: 1}}}}\n"
                      f"  - {{name: s2, type: stage, repeat: {second}, block: {{type: conv, out: 4, kernel: 1}}}}\n")
    drawing = diagram(archspec.load(spec), "layer")
    assert drawing.elided == [f"… {first - MAX_REPEATS:,} more repetitions of conv (not drawn)",
                              f"… {second - MAX_REPEATS:,} more repetitions of conv (not drawn)"]
    result = run_cli("diagram", str(spec), "--detail", "layer", cwd=tmp_path)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert svg_counts((tmp_path / "deep.svg").read_text())["node"] == drawing.nodes + 1 <= MAX_NODES
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep.svg", "deep.yaml"]


def test_the_node_budget_elides_the_rest_of_a_long_chain() -> None:
    layers = "".join("  - {type: conv, out: 4, kernel: 1}\n" for _ in range(2 * MAX_NODES))
    drawing = diagram(archspec.loads(f"name: long\ninput: {{channels: 3, size: 8}}\nlayers:\n{layers}"), "stage")
    assert drawing.elided == [f"… {MAX_NODES + 1:,} more layers (not drawn)"] and drawing.nodes == MAX_NODES + 2
    assert edges(drawing)[-1][2] == "4x8x8"  # the elided part still passes on its output shape


@pytest.mark.parametrize("script, message", [
    ("kill -ABRT $$", "Graphviz's dot crashed (SIGABRT)"),
    ("echo 'Error: <stdin>: syntax error in line 1' >&2; exit 1",
     "Graphviz's dot failed (exit 1: Error: <stdin>: syntax error in line 1)"),
    ("exec sleep 30", "Graphviz's dot took over 0.5 s and was stopped"),
    (None, "Graphviz's dot could not be run (Permission denied)"),
], ids=["crash", "failure", "timeout", "not-runnable"])
def test_a_failing_dot_is_one_line_exit_2_and_writes_nothing(script: str | None, message: str, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from archspec.cli import main

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "dot").write_text(f"#!/bin/sh\ncat > /dev/null\n{script}\n")
    (bin_dir / "dot").chmod(0o755 if script else 0o644)  # which() skips a file that is not executable ...
    if script is None:  # ... so make it look executable to which() only
        monkeypatch.setattr(shutil, "which", lambda name, *a, **k: str(bin_dir / name))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(sys.modules["archspec.reports.diagram"], "DOT_TIMEOUT_S", 0.5)  # the module (archspec.diagram is the function)
    out = tmp_path / "out"
    out.mkdir()
    assert main(["diagram", str(SPECS / "resnet18.yaml"), "-o", str(out / "r.svg")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"archspec diagram: {SPECS / 'resnet18.yaml'}: {message}")
    assert f"--detail stage or block, or write the source with -o {out / 'r.dot'}; nothing written" in err
    assert list(out.iterdir()) == []
