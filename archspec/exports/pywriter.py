"""The standalone PyTorch file (`export --format python`), generated from the analysis tree: each block type
that is a module of its own (a macro block such as `bottleneck`, a `residual`, an `inception`) becomes an
`nn.Module` class named after it, whose constructor takes the hyper-parameters that differ between its
instances (channels, stride, ...); the rest stay literals. Each leaf op writes its own constructor call
(`Block.source`, in the op's file), the module its `build` makes, so the file builds the module tree
`archspec.build` does: the same state_dict keys and shapes, the same outputs. It imports only torch (and the standard library). The spec's text is data only in it (`_lit`,
`_doc_text`), and `check_text_is_data` proves that for each file.
"""
from __future__ import annotations

import ast
from collections import Counter, OrderedDict
from typing import Any

from ..ir.activations import activation_expr
from ..ir.memory import concrete
from ..ir.expr import IDENTITY, REQUIRED, Call, Constructor, Lit, Prelude, Ref, Seq
from ..language.blocks.base import MacroBlock, Node, fmt_shape
from .pycode import (DROP_PATH, FILE_NAMES, Body, ClassDef, ExportError, Hole, _camel, _checked_identifier, _doc_text,
                     _holes, _identifier, _lit, _map_body, _name_params, _skeleton, _typed)
from ..language.spec import Spec

CLASS_NAMES = {"mbconv": "MBConv", "inception_v1": "InceptionV1", "basic": "BasicBlock", "se": "SE"}
LINE = 110


def python_source(spec: Spec, weights: str | None = None) -> str:
    """A standalone PyTorch file defining the network of `spec` (see the module docstring)."""
    return _SourceWriter(spec, weights).write()


def check_text_is_data(source: str, spec: Spec, weights: str | None = None) -> None:
    """Raise unless the free text in `source` (the spec's description; `weights`, a file name given on
    the command line) is only data: the source generated with other text must have the same syntax tree,
    string constants aside. Names are identifiers by the spec's Name pattern. So running the file (the
    export's check does, in this process) runs archspec's code only. (An allow-list of node kinds could
    not tell injected code from the template's own calls: getattr, os.path, torch.load.)"""
    neutral = python_source(spec.model_copy(update={"description": "text"}), "text" if weights else None)
    try:
        same = _code_shape(source) == _code_shape(neutral)
    except SyntaxError as exc:
        raise ExportError(f"internal error: the generated source does not parse ({exc.msg}, "
                          f"line {exc.lineno})") from exc
    if not same:
        raise ExportError("internal error: the spec's text changes the generated code, not only its strings")


def _code_shape(source: str) -> str:
    """The syntax tree of `source` with every string constant blanked: what it runs, without its data."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            node.value = ""
    return ast.dump(tree)


class _SourceWriter:
    def __init__(self, spec: Spec, weights: str | None) -> None:
        self.spec = spec
        self.weights = weights
        self.root = spec.analyse()
        self.resolved: dict[int, Call] = {}
        self.classes: list[ClassDef] = []
        self.preludes: dict[Prelude, None] = {}  # what the file defines before its classes, in order

    def need(self, prelude: Prelude) -> None:
        for first in prelude.needs:
            self.need(first)
        self.preludes.setdefault(prelude)

    def leaf(self, node: Node) -> Any:
        """The op's own source (its `build`'s module), with the preludes its constructors need."""
        expr = node.block.source(node)
        stack = [expr]
        while stack:
            item = stack.pop()
            if isinstance(item, Call):
                if isinstance(item.fn, Constructor) and item.fn.prelude is not None:
                    self.need(item.fn.prelude)
                stack += [value for _, value in item.args]
            elif isinstance(item, Seq):
                stack += [value for _, value in item.items]
        return expr

    def reserved(self) -> set[str]:
        return FILE_NAMES | set(DROP_PATH.defines) | {name for p in self.preludes for name in p.defines}

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
            return self.leaf(node)
        if node.form != "chain":
            raise ExportError(f"{node.path}: cannot write a '{node.form}' node as Python source")
        return Seq(tuple((c.name, self.expr(c)) for c in node.children))

    def body(self, node: Node) -> Body:
        if node.form == "residual":
            residual = concrete(node)  # the residual block, as a macro block expands it
            layers, shortcut = node.residual_parts()
            body = tuple((c.name, self.expr(c)) for c in layers)
            return Body("residual", body, self.expr(shortcut) if shortcut else IDENTITY(),
                        activation_expr(residual.activation, inplace=True) or IDENTITY(),
                        Lit(float(residual.drop_rate(node))))
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
        plist = list(params.values())
        _name_params(plist, in_ch, out_ch, self.reserved())
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
            return lit if param is None else Ref(param["name"])

        body = _map_body(first, substitute, shortcut=not module_shortcut)
        if module_shortcut:
            identity = IDENTITY()
            values = tuple(None if b.shortcut == identity else b.shortcut for b in bodies)
            default = None if None in values else REQUIRED
            entry = ("shortcut", "module", default)
            signature = [*signature[:len(required)], entry, *signature[len(required):]] if default is REQUIRED \
                else [*signature, entry]
            body = Body(body.form, body.items, Ref("shortcut"), body.act, body.drop)
        cls = ClassDef(nodes[0].type, first.form, nodes, body, signature, module_shortcut)
        by_name = {p["name"]: p for p in plist}
        for i, node in enumerate(nodes):
            args = []
            for name, kind, _ in signature:
                if kind == "module":
                    value = bodies[i].shortcut
                    args.append((name, Lit(None) if value == IDENTITY() else value))
                else:
                    value = by_name[name]["values"][i]
                    args.append((name, value if isinstance(value, (Call, Seq)) else Lit(value)))
            self.resolved[id(node)] = Call(cls, tuple(args))
        return cls

    def name_classes(self) -> None:
        by_type: dict[str, list[ClassDef]] = OrderedDict()
        for cls in sorted(self.classes, key=lambda c: c.order):
            by_type.setdefault(cls.type, []).append(cls)
        for node in self.root.children:  # the network's own leaves: their preludes' names are taken too
            self.expr(node)
        taken = self.reserved()
        for type_name, classes in by_type.items():
            base = CLASS_NAMES.get(type_name, _camel(type_name))
            for i, cls in enumerate(classes):
                suffix = "" if len(classes) == 1 else (chr(ord("A") + i) if len(classes) <= 26 else str(i + 1))
                name, n = base + suffix, 2
                while name in taken:
                    name, n = f"{base}{suffix}{n}", n + 1
                taken.add(name)
                cls.name = _checked_identifier(name)
        self.network_name = _checked_identifier(_camel(self.spec.name))
        while self.network_name in taken:
            self.network_name += "Net"

    # -- formatting --------------------------------------------------------------------------------
    def fmt(self, expr: Any, indent: int, lead: int | None = None) -> str:
        """`expr` as source; continuation lines indented from `indent`; `lead`: columns already used
        on the first line (default: `indent`)."""
        lead = indent if lead is None else lead
        if isinstance(expr, Lit):
            return _lit(expr.value)
        if isinstance(expr, Ref):
            return expr.id
        if isinstance(expr, Seq):
            return self.fmt_seq(expr, indent, "nn.Sequential(", lead)
        if isinstance(expr, Call):
            name = expr.fn.name
            if isinstance(expr.fn, ClassDef):
                signature = [(p, d) for p, _, d in expr.fn.params]
            else:
                signature = list(expr.fn.params)
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
        lines = [f"{pad}({_lit(n)}, {self.fmt(e, indent + 4, indent + 8 + len(n))}),\n" for n, e in seq.items]
        return opener + "OrderedDict([\n" + "".join(lines) + " " * indent + "]))"

    @staticmethod
    def attr(name: str) -> str:
        return f"self.{name}" if _identifier(name) else f"getattr(self, {_lit(name)})"

    def assign(self, name: str, expr: Any) -> str:
        if _identifier(name):
            return f"        self.{name} = {self.fmt(expr, 8, 8 + len(name) + 8)}"
        return f"        self.add_module({_lit(name)}, {self.fmt(expr, 8, 8 + len(name) + 20)})"

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
        doc = _doc_text(doc + f", at {self.where(cls.nodes)}.")
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
        identity = IDENTITY()
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
        drop_attr = "drop_rate"  # a reserved name: no child of the block has it
        if has_drop:
            lines.append(f"        self.{drop_attr} = {self.fmt(body.drop, 8)}  # stochastic depth, in training")
        lines += ["", "    def forward(self, x):"]
        current = "x"
        for name, _ in body.items:
            lines.append(f"        out = {self.attr(name)}({current})")
            current = "out"
        if has_drop:
            self.need(DROP_PATH)
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
        doc = _doc_text(doc + ("" if doc.endswith((".", "!", "?")) else "."))
        lines = [f"class {self.network_name}(nn.Module):",
                 f'    """{doc}', "",
                 f"    Input {fmt_shape(root.in_shape)}, output {fmt_shape(root.out_shape)}, {root.params:,} parameters."
                 + (" The auxiliary heads run in training only." if heads else ""), '    """', "",
                 "    def __init__(self):", "        super().__init__()"]
        for node in trunk:
            lines.append(self.assign(node.name, self.expr(node)))
            for head in taps.get(node.name, ()):
                lines.append(f"        # auxiliary head, training only (taps {_doc_text(node.name)})")
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
        return _checked_identifier(f"aux_{head.name}")  # head names are identifiers (the spec's Name pattern)

    def prelude(self) -> list[str]:
        return [line for prelude in self.preludes for line in [*prelude.text().splitlines(), "", ""]]

    def write(self) -> str:
        from .. import __version__ as version
        from ..language.preprocess import resize_size

        self.build_classes()
        classes = [line for cls in sorted(self.classes, key=lambda c: (self._height(c), c.order))
                   for line in [*self.write_class(cls), "", ""]]
        network = self.write_network()
        spec, root = self.spec, self.root
        weights = self.weights
        usage = f'build("{_doc_text(weights)}")' if weights else 'build("weights.pth")'
        header = [
            f'"""{_doc_text(spec.name)}: {_doc_text(spec.description or "a network")}.',
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
            f"DESCRIPTION = {_lit(spec.description)}",
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
            '    loaded strictly: by default WEIGHTS, the file written beside this one; another path as given.',
            '    Without weights: random ones."""',
            "    if weights is None:",
            f"        return {self.network_name}().eval()",
            "    import os",
            "",
            "    path = weights",
            "    if weights == WEIGHTS and not os.path.isabs(weights):",
            "        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), weights)",
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
