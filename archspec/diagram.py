"""Graphviz diagrams drawn from the analysed spec (no torch, no forward pass).

Detail levels:
- `stage`: one node per top-level layer; a stage reads `bottleneck x36`.
- `block`: stages show one representative block with its skip edge, add and projection, labelled
  with the repeat count; inception modules show their branches side by side, joined at a concat;
  residual bodies stay one node.
- `layer`: everything down to single layers: every repetition, every conv, SE gates as nodes.
Edges carry the tensor shape; nodes carry key hyper-parameters and parameter counts; auxiliary
heads are dashed clusters marked "training only".
"""
from __future__ import annotations

import html
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .blocks.base import MacroBlock, Node, fmt_shape
from .spec import Spec
from .units import compact

if TYPE_CHECKING:
    import graphviz

Detail = Literal["stage", "block", "layer"]
DETAILS: tuple[str, ...] = ("stage", "block", "layer")
FORMATS = ("svg", "png", "pdf", "dot")
INSTALL_HINT = "Graphviz's `dot` is not installed; wrote the .dot source instead (apt-get install graphviz, brew install graphviz)"

# Colour by kind of block (each block class names its `kind`); the legend lists the kinds a diagram uses.
COLOURS: dict[str, str] = {
    "convolution": "#cfe2f3",
    "pooling": "#e6e6e6",
    "residual block": "#d9ead3",
    "inception": "#fce5cd",
    "squeeze-excitation": "#ead1dc",
    "fully connected": "#fff2cc",
    "normalisation": "#f4f4f4",
    "stage / group": "#eeeeee",
}
PLAIN = "#ffffff"  # kind "other": activations, dropout, flatten


@dataclass
class Drawing:
    """The diagram and what it holds (for tests and callers): counts by role, clusters, skips."""

    graph: graphviz.Digraph
    nodes: int = 0
    edges: int = 0
    clusters: list[str] = field(default_factory=list)
    skip_edges: int = 0
    adds: int = 0
    concats: int = 0
    collapsed: list[str] = field(default_factory=list)  # paths of stages drawn as one block xN
    kinds: set[str] = field(default_factory=set)
    shape_labels: list[tuple[str, str]] = field(default_factory=list)  # (source path, edge label)

    @property
    def source(self) -> str:
        return self.graph.source


def _digraph(name: str, **attrs: Any) -> "graphviz.Digraph":
    """Imported here: loading archspec (a build on a machine without the graphviz package) needs no graphviz."""
    import graphviz

    return graphviz.Digraph(name, **attrs)


class _Drawer:
    def __init__(self, spec: Spec, detail: Detail, rankdir: str) -> None:
        if detail not in DETAILS:
            raise ValueError(f"detail must be one of {', '.join(DETAILS)}")
        self.spec, self.detail = spec, detail
        root = spec.analyse()
        graph = _digraph(spec.name, graph_attr={
            "rankdir": rankdir, "ordering": "out", "newrank": "true", "fontname": "Helvetica", "labelloc": "t", "fontsize": "18", "nodesep": "0.25",
            "ranksep": "0.3", "label": self._title(root)},
            node_attr={"fontname": "Helvetica", "fontsize": "10", "shape": "box", "style": "rounded,filled"},
            edge_attr={"fontname": "Helvetica", "fontsize": "8", "color": "#555555", "arrowsize": "0.6"})
        self.d = Drawing(graph)
        self.ids: dict[str, str] = {}

    def _title(self, root: Node) -> str:
        spec = self.spec
        aux = f" (+{compact(spec.aux_params)} in training-only heads)" if spec.aux_params else ""
        return (f"{spec.name}: input {fmt_shape(root.in_shape)}, {root.params:,} parameters{aux}, "
                f"{root.macs / 1e9:.3f} GMACs ({self.detail} detail)")

    # -- primitives ---------------------------------------------------------------------------
    def node(self, g: graphviz.Digraph, key: str, label: str, kind: str = "", **attrs: str) -> str:
        nid = f"n{len(self.ids)}"
        self.ids[key] = nid
        if kind:
            self.d.kinds.add(kind)
        attrs.setdefault("fillcolor", COLOURS.get(kind, PLAIN))
        g.node(nid, label, **attrs)
        self.d.nodes += 1
        return nid

    def edge(self, g: graphviz.Digraph, src: str, dst: str, shape: tuple[int, ...], source_path: str = "",
             **attrs: str) -> None:
        label = fmt_shape(shape)
        g.edge(src, dst, label=label, **attrs)
        self.d.edges += 1
        self.d.shape_labels.append((source_path, label))

    def box(self, g: graphviz.Digraph, n: Node, count: int = 1, note: str = "", name: str = "") -> str:
        hyper = n.block.hyper()
        title = f"<b>{html.escape(name or n.name)}</b>  {html.escape(n.type)}" + (f" ×{count}" if count > 1 else "")
        lines = [title] + ([html.escape(hyper)] if hyper else [])
        params = n.params * count
        if params:
            lines.append(f"{compact(params)} params")
        if note:
            lines.append(f"<i>{html.escape(note)}</i>")
        return self.node(g, n.path, "<" + "<br/>".join(lines) + ">", n.block.kind)

    def cluster(self, g: graphviz.Digraph, n: Node, label: str, **attrs: str) -> graphviz.Digraph:
        name = f"cluster_{len(self.d.clusters)}"
        self.d.clusters.append(n.path)
        sub = _digraph(name, graph_attr={"label": label, "fontsize": "10", "style": "rounded,dashed"
                                                 if attrs.pop("dashed", "") else "rounded", "color": "#999999",
                                                 "labeljust": "l", **attrs})
        return sub

    # -- drawing ------------------------------------------------------------------------------
    Entry = tuple[list[tuple[str, dict[str, str]]], str]

    def draw(self, g: graphviz.Digraph, n: Node, level: int) -> "_Drawer.Entry":
        """Draw node `n`; return (the ids that take its input, with edge styles) and the id of its output."""
        if self.detail != "layer" and n.type == "stage" and n.children:
            return self.stage(g, n, level)
        if self.detail != "stage":
            if n.form == "residual":
                return self.residual(g, n, level)
            if n.form == "concat":
                return self.concat(g, n, level)
            if n.children and (self.detail == "layer" or n.type == "sequence"):
                return self.chain_cluster(g, n, level)
        nid = self.box(g, n)
        return [(nid, {})], nid

    def stage(self, g: graphviz.Digraph, n: Node, level: int) -> "_Drawer.Entry":
        """A stage collapsed: its first repetition (which may stride and project), then one node for the
        identical rest, labelled with their count; at stage detail, one node for the whole stage."""
        count = len(n.children)
        if count > 1:
            self.d.collapsed.append(n.path)
        if self.detail == "stage":
            nid = self.box(g, n.children[0], count, f"{n.name}") if count > 1 else self.box(g, n)
            self.ids[n.path] = nid
            return [(nid, {})], nid
        sub = self.cluster(g, n, f"{n.name}: {n.children[0].type} ×{count}")
        parts = [(n.children[0], 1)] + ([(n.children[1], count - 1)] if count > 1 else [])
        entry: list[tuple[str, dict[str, str]]] = []
        last, previous = "", None
        for child, times in parts:
            name = child.name if times == 1 else f"{child.name}-{n.children[-1].name}"
            if child.form == "residual":
                ins, out = self.residual(sub, child, level + 1, times, name)
            else:
                out = self.box(sub, child, times, name=name)
                ins = [(out, {})]
            if previous is None:
                entry = ins
            else:
                for nid, attrs in ins:
                    self.edge(sub, last, nid, previous.out_shape, previous.path, **attrs)
            last, previous = out, child
        g.subgraph(sub)
        self.ids[n.path] = last
        return entry, last

    def chain(self, g: graphviz.Digraph, children: list[Node], level: int, x: tuple[int, ...]) -> "_Drawer.Entry | None":
        entry: list[tuple[str, dict[str, str]]] = []
        last = ""
        previous: Node | None = None
        for child in children:
            ins, out = self.draw(g, child, level + 1)
            if not last:
                entry = ins
            else:
                for nid, attrs in ins:
                    self.edge(g, last, nid, previous.out_shape, previous.path, **attrs)
            last, previous = out, child
        return (entry, last) if last else None

    def chain_cluster(self, g: graphviz.Digraph, n: Node, level: int) -> "_Drawer.Entry":
        aux = n.aux
        label = n.name if n.type in ("sequence", "stage", "aux_head") else f"{n.name}: {n.type}"
        sub = self.cluster(g, n, f"{label} (training only)" if aux else label,
                           **({"dashed": "1", "color": "#e69138"} if aux else {}))
        drawn = self.chain(sub, n.children, level, n.in_shape)
        g.subgraph(sub)
        assert drawn is not None
        self.ids[n.path] = drawn[1]
        return drawn

    def residual(self, g: graphviz.Digraph, n: Node, level: int, count: int = 1, name: str = "") -> "_Drawer.Entry":
        body, shortcut = n.residual_parts()
        expanded = n.block.expand_node(n) if isinstance(n.block, MacroBlock) else n.block
        act = expanded.activation  # after the add (a residual's own field; mbconv's residual has none)
        if self.detail == "layer":
            sub = self.cluster(g, n, f"{n.name}: {n.type}")
            ins, out = self.chain(sub, body, level, n.in_shape)  # type: ignore[misc]
            last_shape, last_path = body[-1].out_shape, body[-1].path
        else:
            sub = g
            note = "SE gate inside" if any(c.type == "se" for c in body) else ""
            out = self.box(g, n, count, note, name)
            ins, last_shape, last_path = [(out, {})], n.out_shape, n.path
        add = self.node(sub, n.path + "/add", "+", shape="circle", fillcolor="#ffffff", width="0.3", height="0.3",
                        fixedsize="true", **({"xlabel": act} if act not in ("none", None) else {}))
        self.d.adds += 1
        self.edge(sub, out, add, last_shape, last_path)
        entry = list(ins)
        if shortcut is not None:
            if self.detail == "layer":
                s_ins, s_out = self.draw(sub, shortcut, level + 1)
            else:
                s_out = self.box(sub, shortcut, note="projection" if shortcut.type == "conv" else "")
                s_ins = [(s_out, {})]
            entry += [(nid, {"style": "dashed", "color": "#38761d"}) for nid, _ in s_ins]
            self.edge(sub, s_out, add, shortcut.out_shape, shortcut.path, style="dashed", color="#38761d")
            self.d.skip_edges += 1
        else:
            entry.append((add, {"style": "dashed", "color": "#38761d", "constraint": "false"}))
            self.d.skip_edges += 1
        if sub is not g:
            g.subgraph(sub)
        self.ids[n.path] = add
        return entry, add

    def concat(self, g: graphviz.Digraph, n: Node, level: int) -> "_Drawer.Entry":
        sub = self.cluster(g, n, f"{n.name}: {n.type}")
        entry: list[tuple[str, dict[str, str]]] = []
        ends: list[tuple[str, Node]] = []
        for branch in n.children:
            bsub = self.cluster(sub, branch, branch.name)
            if branch.children:
                ins, out = self.chain(bsub, branch.children, level + 1, branch.in_shape)  # type: ignore[misc]
            else:  # an empty branch passes the input through
                out = self.node(bsub, branch.path, "identity", shape="point")
                ins = [(out, {})]
            entry += ins
            ends.append((out, branch))
            sub.subgraph(bsub)
        join = self.node(sub, n.path + "/concat", f"concat → {n.out_shape[0]}", shape="invhouse", fillcolor="#fce5cd")
        self.d.concats += 1
        for out, branch in ends:
            self.edge(sub, out, join, branch.out_shape, branch.path)
        g.subgraph(sub)
        self.ids[n.path] = join
        return entry, join

    def run(self) -> Drawing:
        root = self.spec.analyse()
        g = self.d.graph
        start = self.node(g, "/input", f"input\n{fmt_shape(root.in_shape)}", shape="oval", fillcolor="#ffffff")
        last, shape, path = start, root.in_shape, "/input"
        outs: dict[str, tuple[str, tuple[int, ...], str]] = {}
        for child in (c for c in root.children if not c.aux):
            ins, out = self.draw(g, child, 0)
            for nid, attrs in ins:
                self.edge(g, last, nid, shape, path, **attrs)
            last, shape, path = out, child.out_shape, child.path
            outs[child.name] = (out, child.out_shape, child.path)
        end = self.node(g, "/output", f"output\n{fmt_shape(root.out_shape)}", shape="oval", fillcolor="#ffffff")
        self.edge(g, last, end, shape, path)
        for head in (c for c in root.children if c.aux):
            src, src_shape, src_path = outs[head.block.tap]
            ins, out = self.chain_cluster(g, head, 0) if self.detail != "stage" else self._aux_box(g, head)
            for nid, attrs in ins:
                self.edge(g, src, nid, src_shape, src_path, style="dashed", color="#e69138", **attrs)
            self.d.kinds.add("auxiliary head (training only)")
        self._legend(g)
        return self.d

    def _aux_box(self, g: graphviz.Digraph, head: Node) -> "_Drawer.Entry":
        nid = self.box(g, head, note="training only")
        g.node(nid, style="rounded,filled,dashed", color="#e69138")
        return [(nid, {})], nid

    def _legend(self, g: graphviz.Digraph) -> None:
        rows = "".join(f'<tr><td bgcolor="{COLOURS.get(k, PLAIN)}" border="1">{html.escape(k)}</td></tr>'
                       for k in sorted(self.d.kinds) if k in COLOURS or k.startswith("auxiliary"))
        g.node("legend", f'<<table border="0" cellspacing="2"><tr><td><b>legend</b></td></tr>{rows}</table>>',
               shape="plaintext", style="")


def diagram(spec: Spec, detail: Detail = "block", rankdir: str = "TB") -> Drawing:
    """The diagram of an analysed spec, as a `Drawing` (its `.graph` is a graphviz.Digraph)."""
    if rankdir not in ("TB", "LR", "BT", "RL"):
        raise ValueError("rankdir must be TB, LR, BT or RL")
    return _Drawer(spec, detail, rankdir).run()


def has_dot() -> bool:
    return shutil.which("dot") is not None


def render(spec: Spec, output: str | Path, detail: Detail = "block", rankdir: str = "TB",
           inputs: tuple[Path, ...] = ()) -> tuple[Path, bool]:
    """Render to `output` (.svg, .png, .pdf or .dot), atomically. Without Graphviz's `dot`, writes the
    .dot source beside it instead; returns (the path written, whether it was rendered)."""
    from .files import write_atomic, write_bytes

    output = Path(output)
    fmt = output.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise ValueError(f"unknown diagram format '{output.suffix}'; use one of .{', .'.join(FORMATS)}")
    drawing = diagram(spec, detail, rankdir)
    if fmt == "dot" or not has_dot():
        target = output.with_suffix(".dot")
        write_atomic(target, lambda tmp: tmp.write_text(drawing.source), force=True, protect=inputs)
        return target, fmt == "dot"
    data = drawing.graph.pipe(format=fmt)
    write_bytes(output, data, force=True, protect=inputs)
    return output, True
