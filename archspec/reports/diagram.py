"""Graphviz diagrams drawn from the analysed spec (no torch, no forward pass).

Detail levels:
- `stage`: one node per top-level layer; a stage reads `bottleneck x36`.
- `block`: stages show one representative block with its skip edge, add and projection, labelled
  with the repeat count; inception modules show their branches side by side, joined at a concat;
  residual bodies stay one node.
- `layer`: everything down to single layers: every repetition, every conv, SE gates as nodes.
Edges carry the tensor shape; nodes carry key hyper-parameters and parameter counts; auxiliary
heads are dashed clusters marked "training only".

What is drawn is bounded (MAX_BRANCHES per inception, MAX_REPEATS per stage at layer detail, MAX_NODES in
all); the rest is elided into a visible "… N more ... (not drawn)" node. `dot` runs under DOT_TIMEOUT_S.
"""
from __future__ import annotations

import html
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..errors import UsageError
from ..language.blocks.base import MacroBlock, Node, fmt_shape
from ..language.spec import Spec, as_spec
from ..units import compact

if TYPE_CHECKING:
    import graphviz

Detail = Literal["stage", "block", "layer"]
DETAILS: tuple[str, ...] = ("stage", "block", "layer")
FORMATS = ("svg", "png", "pdf", "dot")
INSTALL_HINT = ("apt-get install graphviz, brew install graphviz, conda install -c conda-forge graphviz, "
                "or winget install graphviz / choco install graphviz on Windows")
# Bounds on what is drawn (the bundled specs stay under them, at most 4 branches, 48 repetitions, 356 nodes,
# but for DenseNet's 400+ at layer detail)
# and on dot's time: a drawing of MAX_NODES nodes takes dot well under a second.
MAX_BRANCHES = 32  # per inception module
MAX_REPEATS = 64  # per stage, at layer detail
MAX_NODES = 400  # in all
DOT_TIMEOUT_S = 20.0


class RenderError(RuntimeError):
    """Graphviz's `dot` could not run, timed out, crashed or failed; one line that says what to do instead."""


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
    "block without skip": "#d0e0e3",  # a residual-kind block whose stride or width change leaves no skip
    "concat": "#f9cb9c",
}
PLAIN = "#ffffff"  # kind "other": activations, dropout, flatten; the + of a residual; elided parts
LEGEND_TEXT = {"other": "other layer (activation, dropout ...)", "add": "+  add (body + skip)",
               "elided": "… not drawn (over the limits)"}


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
    elided: list[str] = field(default_factory=list)  # the labels of the "… N more (not drawn)" nodes
    ids: dict[str, str] = field(default_factory=dict)  # the node id of each drawn path
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
        self.ids = self.d.ids

    def _title(self, root: Node) -> str:
        spec, aux = self.spec, self.spec.aux_params
        head = f"{spec.name}: input {fmt_shape(root.in_shape)}"
        tail = f"{root.macs / 1e9:.3f} GMACs ({self.detail} detail)"
        if not aux:
            return f"{head}, {root.params:,} parameters, {tail}"
        return (f"{head}, {tail}\n{root.params - aux:,} parameters at inference "
                f"(+{aux:,} in training-only auxiliary heads; {root.params:,} in all)")

    # -- primitives ---------------------------------------------------------------------------
    def node(self, g: graphviz.Digraph, key: str, label: str, kind: str = "", **attrs: str) -> str:
        nid = f"n{self.d.nodes}"
        self.ids[key] = nid
        if kind:
            self.d.kinds.add(kind)
        attrs.setdefault("fillcolor", COLOURS.get(kind, PLAIN))
        g.node(nid, label, **attrs)
        self.d.nodes += 1
        return nid

    def edge(self, g: graphviz.Digraph, src: str, dst: str, shape: tuple[int, ...] | None, source_path: str = "",
             **attrs: str) -> None:
        """An edge labelled with the tensor `shape` it carries (None: unlabelled)."""
        if shape is not None:
            attrs["label"] = fmt_shape(shape)
            self.d.shape_labels.append((source_path, attrs["label"]))
        g.edge(src, dst, **attrs)
        self.d.edges += 1

    def fan_out(self, g: graphviz.Digraph, src: str, ins: list[tuple[str, dict[str, str]]],
                shape: tuple[int, ...], source_path: str) -> None:
        """Edges from `src` into every entry of the next part; one tensor, so only the first is labelled."""
        for i, (nid, attrs) in enumerate(ins):
            self.edge(g, src, nid, shape if i == 0 else None, source_path, **attrs)

    def elide(self, g: graphviz.Digraph, key: str, count: int, what: str) -> str:
        label = f"… {count:,} more {what} (not drawn)"
        self.d.elided.append(label)
        return self.node(g, key + "/elided", label, "elided", shape="note", style="dashed")

    @staticmethod
    def kind(n: Node) -> str:
        """The legend kind of a drawn node: a residual-kind block that has no skip here is not a residual."""
        kind = n.block.legend_kind(n)
        return "block without skip" if kind == "residual block" and n.form != "residual" else kind

    def box(self, g: graphviz.Digraph, n: Node, count: int = 1, note: str = "", name: str = "",
            kind: str = "") -> str:
        hyper = n.block.hyper()
        title = f"<b>{html.escape(name or n.name)}</b>  {html.escape(n.type)}" + (f" ×{count}" if count > 1 else "")
        lines = [title] + ([html.escape(hyper)] if hyper else [])
        params = n.params * count
        if params:
            lines.append(f"{compact(params)} params")
        if note:
            lines.append(f"<i>{html.escape(note)}</i>")
        return self.node(g, n.path, "<" + "<br/>".join(lines) + ">", kind or self.kind(n))

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
            # a sequence, or a block that expands to stages (regnet), is a cluster of its layers
            if n.children and (self.detail == "layer" or n.type == "sequence" or n.children[0].type == "stage"):
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
            nid = self.box(g, n.children[0], count, name=n.name, kind=self.kind(n.children[-1])) if count > 1 \
                else self.box(g, n)
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
            elif child.form == "concat" and times == 1:  # a DenseNet layer: its input beside its new features
                ins, out = self.concat(sub, child, level + 1)
            else:
                out = self.box(sub, child, times, name=name)
                ins = [(out, {})]
            if previous is None:
                entry = ins
            else:
                self.fan_out(sub, last, ins, previous.out_shape, previous.path)
            last, previous = out, child
        g.subgraph(sub)
        self.ids[n.path] = last
        return entry, last

    def chain(self, g: graphviz.Digraph, children: list[Node], level: int, limit: int = MAX_NODES,
              what: str = "layers") -> "_Drawer.Entry | None":
        """Children one after another; past `limit` of them or the node budget, one node for the rest."""
        entry: list[tuple[str, dict[str, str]]] = []
        last = ""
        previous: Node | None = None
        for i, child in enumerate(children):
            elided = i >= limit or self.d.nodes >= MAX_NODES
            if elided:  # it stands for children[i:], and passes on the last one's output
                out = self.elide(g, child.path, len(children) - i, what)
                ins, child = [(out, {})], children[-1]
            else:
                ins, out = self.draw(g, child, level + 1)
            if previous is None:
                entry = ins
            else:
                self.fan_out(g, last, ins, previous.out_shape, previous.path)
            last, previous = out, child
            if elided:
                break
        return (entry, last) if last else None

    def chain_cluster(self, g: graphviz.Digraph, n: Node, level: int) -> "_Drawer.Entry":
        aux = n.aux
        label = n.name if n.type in ("sequence", "stage", "aux_head") else f"{n.name}: {n.type}"
        sub = self.cluster(g, n, f"{label} (training only)" if aux else label,
                           **({"dashed": "1", "color": "#e69138"} if aux else {}))
        limit = MAX_REPEATS if n.type == "stage" else MAX_NODES
        drawn = self.chain(sub, n.children, level, limit, f"repetitions of {n.children[0].type}"
                           if n.type == "stage" else "layers")
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
            ins, out = self.chain(sub, body, level)  # type: ignore[misc]
            last_shape, last_path = body[-1].out_shape, body[-1].path
        else:
            sub = g
            note = "SE gate inside" if any(c.type == "se" for c in body) else ""
            out = self.box(g, n, count, note, name)
            ins, last_shape, last_path = [(out, {})], n.out_shape, n.path
        add = self.node(sub, n.path + "/add", "+", "add", shape="circle", width="0.3", height="0.3",
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
        ends: list[tuple[str, Node | None]] = []
        heads: list[str] = []  # each branch's first node, drawn side by side on one rank
        for i, branch in enumerate(n.children):
            if i >= MAX_BRANCHES or self.d.nodes >= MAX_NODES:
                out = self.elide(sub, branch.path, len(n.children) - i, "branches")
                ins, branch = [(out, {})], None
            else:
                bsub = self.cluster(sub, branch, branch.name)
                if branch.children:
                    ins, out = self.chain(bsub, branch.children, level + 1)  # type: ignore[misc]
                else:  # an empty branch passes the input through
                    out = self.node(bsub, branch.path, "identity", shape="point")
                    ins = [(out, {})]
                sub.subgraph(bsub)
            entry += ins
            heads.append(ins[0][0])
            ends.append((out, branch))
            if branch is None:
                break
        with sub.subgraph() as rank:
            rank.attr(rank="same")
            for nid in heads:
                rank.node(nid)
        join = self.node(sub, n.path + "/concat", f"concat → {n.out_shape[0]}", "concat", shape="invhouse")
        self.d.concats += 1
        for out, branch in ends:  # the elided branches' edge carries no single shape
            self.edge(sub, out, join, branch and branch.out_shape, branch.path if branch else "")
        g.subgraph(sub)
        self.ids[n.path] = join
        return entry, join

    def run(self) -> Drawing:
        root = self.spec.analyse()
        g = self.d.graph
        start = self.node(g, "/input", f"input\n{fmt_shape(root.in_shape)}", shape="oval")
        main = [c for c in root.children if not c.aux]
        ins, last = self.chain(g, main, -1)  # type: ignore[misc]
        self.fan_out(g, start, ins, root.in_shape, "/input")
        end = self.node(g, "/output", f"output\n{fmt_shape(root.out_shape)}", shape="oval")
        self.edge(g, last, end, root.out_shape, main[-1].path)
        for head in (c for c in root.children if c.aux):
            ins, out = self.chain_cluster(g, head, 0) if self.detail != "stage" else self._aux_box(g, head)
            if head.block.tap in self.ids:  # else its tap is among the elided layers
                for nid, attrs in ins:  # the tap's output edge already carries the shape
                    self.edge(g, self.ids[head.block.tap], nid, None, style="dashed", color="#e69138", **attrs)
            self.d.kinds.add("auxiliary head (training only)")
        self._legend(g)
        return self.d

    def _aux_box(self, g: graphviz.Digraph, head: Node) -> "_Drawer.Entry":
        nid = self.box(g, head)  # its hyper-parameters say "training only"
        g.node(nid, style="rounded,filled,dashed", color="#e69138")
        return [(nid, {})], nid

    def _legend(self, g: graphviz.Digraph) -> None:
        rows = "".join(f'<tr><td bgcolor="{COLOURS.get(k, PLAIN)}" border="1">{html.escape(LEGEND_TEXT.get(k, k))}'
                       '</td></tr>' for k in sorted(self.d.kinds))
        g.node("legend", f'<<table border="0" cellspacing="2"><tr><td><b>legend</b></td></tr>{rows}</table>>',
               shape="plaintext", style="")


def diagram(spec: Spec | str | Path, detail: Detail = "block", rankdir: str = "TB") -> Drawing:
    """The diagram of a spec (a loaded Spec or a path), as a `Drawing` (its `.graph` is a graphviz.Digraph)."""
    if rankdir not in ("TB", "LR", "BT", "RL"):
        raise ValueError("rankdir must be TB, LR, BT or RL")
    return _Drawer(as_spec(spec), detail, rankdir).run()


def has_dot() -> bool:
    return shutil.which("dot") is not None


def run_dot(source: str, fmt: str, dot_file: Path) -> bytes:
    """`dot -T<fmt>` on `source` within DOT_TIMEOUT_S (a killed dot leaves nothing behind); a failure is a
    RenderError that points to `dot_file`, the source a user can keep instead."""
    advice = f"try --detail stage or block, or write the source with -o {dot_file}"
    try:
        done = subprocess.run([shutil.which("dot") or "dot", f"-T{fmt}"], input=source.encode(), capture_output=True,
                              timeout=DOT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise RenderError(f"Graphviz's dot took over {DOT_TIMEOUT_S:g} s and was stopped; {advice}") from None
    except OSError as exc:  # found on the PATH but not runnable
        raise RenderError(f"Graphviz's dot could not be run ({exc.strerror or exc}); {advice}") from None
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name if -done.returncode in signal.valid_signals() else "a signal"
        raise RenderError(f"Graphviz's dot crashed ({name}); {advice}")
    if done.returncode:
        said = next((line for line in done.stderr.decode(errors="replace").splitlines() if line.strip()), "")
        said = f": {said.strip()}" if said else ""
        raise RenderError(f"Graphviz's dot failed (exit {done.returncode}{said}); {advice}")
    return done.stdout


def render(spec: Spec, output: str | Path, detail: Detail = "block", rankdir: str = "TB",
           inputs: tuple[Path, ...] = ()) -> tuple[Path, bool]:
    """Render to `output` (.svg, .png, .pdf or .dot), atomically. Without Graphviz's `dot`, writes the
    .dot source beside it instead; returns (the path written, whether it was rendered). A dot that times
    out, crashes or fails raises RenderError and writes nothing."""
    from ..files import write_atomic, write_bytes

    output = Path(output)
    fmt = output.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise UsageError(f"unknown diagram format '{output.suffix}'; use one of .{', .'.join(FORMATS)}")
    drawing = diagram(spec, detail, rankdir)
    if fmt == "dot" or not has_dot():
        target = output.with_suffix(".dot")
        write_atomic(target, lambda tmp: tmp.write_text(drawing.source), force=True, protect=inputs)
        return target, fmt == "dot"
    data = run_dot(drawing.source, fmt, output.with_suffix(".dot"))
    write_bytes(output, data, force=True, protect=inputs)
    return output, True
