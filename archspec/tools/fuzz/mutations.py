"""The fuzzer's mutations: of a spec's text, of its bytes, of its parsed tree, and of the files around it."""
from __future__ import annotations

import copy
import math
import random
import re
from typing import Any, Callable

from pydantic import BaseModel

from ...language.blocks import BLOCK_TYPES
from ...language.scaling import annotation_parts
from ...language.spec import Spec


def _field_names(model: type[BaseModel]) -> set[str]:
    """Every field name of a model and of the models its fields hold (a spec: input, scaling, tta, blocks...)."""
    names, seen, todo = set(), set(), [model]
    while todo:
        cls = todo.pop()
        if cls not in seen:
            seen.add(cls)
            names |= set(cls.model_fields)
            todo += [p for info in cls.model_fields.values() for p in annotation_parts(info.annotation)
                     if isinstance(p, type) and issubclass(p, BaseModel)]
    return names


# Every key the spec language knows ('extends' is resolved before validation).
FIELDS = sorted(_field_names(Spec) | {name for cls in BLOCK_TYPES.values() for name in cls.model_fields} | {"extends"})
TYPES = sorted(BLOCK_TYPES) + ["aux_head", "bottlenek", "Conv", "conv2d", ""]
UNICODE = ["é", "名前", "💥", "\u202e", "\u00a0", "ǅ", "Ω", "\ufeff", "𝟘", "²", "١٢"]

# Extreme values, as YAML text and as Python data.
EXTREME_TEXT = ["0", "-1", "-0", "1", "2", "3", "10000", "10001", "1000000", "1000001", "1000000000000",
                "-1000000000000", "9" * 30, "9" * 5000, "1e308", "1e309", "-1e309", ".nan", ".inf", "-.inf", "0.5",
                "-0.5", "1e-320", "0x7fffffff", "0o17", "0b101", "1_000", "1:30", "3.0", "true", "no", "null", "~",
                "''", "'é'", "名前", "💥", '"\\u202e"', '"\\0"', "[]", "{}", "[1, 2, 3]", "[3, 3]", "[0, 0]",
                "{type: conv}", "!!binary aGk=", "2001-12-14", "2001-13-45", "!!float 1", "!!float", "!!int x",
                "!!bool maybe", "!!timestamp x", "!!null 1", "!!str 1", "!!seq", "!!map"]
EXTREME_VALUES: list[Any] = [0, -1, 1, 2, 3, 10 ** 4, 10 ** 4 + 1, 10 ** 6, 10 ** 6 + 1, 10 ** 12, -10 ** 12, 2 ** 63,
                             10 ** 100, math.nan, math.inf, -math.inf, 0.5, -0.5, 1e-320, 1e308, True, False, None,
                             "", "x", "a\nb", "\x00", "same", "auto", "none", "x" * 2000, [], {}, [1, 2], [0, 0],
                             [3, 3, 3], {"type": "conv"}, [{"type": "relu"}], {"a": {"b": {"c": 1}}}, b"bytes", b"\x00\xff",
                             *UNICODE]
YAML_SNIPPETS = ["!!python/object/apply:os.system ['true']", "!!python/name:os.system", "!custom x", "&a", "*a",
                 "*undefined", "<<: *a", "<<: {type: conv}", "? [a, b]\n: 1", "---", "...", "%YAML 1.1", "|\n  text",
                 ">-", "{", "}", "[", "]", "'", '"', "- ", ": ", "#", "@", "`", "!!set {a, b}", "!!omap [a: 1]",
                 "!!binary aGVsbG8=", "&x [*x]", "\t", "\r", "\u2028", "\x85", "\x00", "\x1b[31m", "\\"]
CHARS = ":{}[],-#&*!|>'\"%@`\t\n \\?" + "".join(UNICODE) + "\x00\x07\x7f\u2028\ufeff"


def _lines(text: str) -> list[str]:
    return text.split("\n")


def m_delete_line(rng: random.Random, text: str) -> str:
    lines = _lines(text)
    del lines[rng.randrange(len(lines))]
    return "\n".join(lines)


def m_duplicate_line(rng: random.Random, text: str) -> str:
    lines = _lines(text)
    i = rng.randrange(len(lines))
    lines.insert(i, lines[i])
    return "\n".join(lines)


def m_swap_lines(rng: random.Random, text: str) -> str:
    lines = _lines(text)
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    lines[i], lines[j] = lines[j], lines[i]
    return "\n".join(lines)


def m_truncate(rng: random.Random, text: str) -> str:
    return text[:rng.randrange(len(text) + 1)]


def m_indent(rng: random.Random, text: str) -> str:
    lines = _lines(text)
    i = rng.randrange(len(lines))
    body = lines[i].lstrip(" ")
    indent = len(lines[i]) - len(body)
    choice = rng.random()
    if choice < 0.4:
        indent += rng.randint(1, 4)
    elif choice < 0.8:
        indent = max(0, indent - rng.randint(1, 4))
    lines[i] = ("\t" + " " * indent if choice >= 0.8 else " " * indent) + body
    return "\n".join(lines)


def m_insert_char(rng: random.Random, text: str) -> str:
    i = rng.randrange(len(text) + 1)
    return text[:i] + rng.choice(CHARS) * rng.choice([1, 1, 1, 2, 3]) + text[i:]


def m_delete_span(rng: random.Random, text: str) -> str:
    i = rng.randrange(len(text) + 1)
    return text[:i] + text[i + rng.randint(1, 12):]


_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e-?\d+)?(?![\w.])")
_WORD = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*\b")
_TYPE = re.compile(r"(type:\s*)([A-Za-z0-9_]+)")


def _replace_match(rng: random.Random, text: str, pattern: re.Pattern, make: Callable[[re.Match], str]) -> str:
    matches = list(pattern.finditer(text))
    if not matches:
        return text
    match = rng.choice(matches)
    return text[:match.start()] + make(match) + text[match.end():]


def m_number(rng: random.Random, text: str) -> str:
    return _replace_match(rng, text, _NUMBER, lambda m: rng.choice(EXTREME_TEXT))


def m_word(rng: random.Random, text: str) -> str:
    pool = [*TYPES, *FIELDS, *UNICODE, "null", "true", "~", "yes", ".nan", "''", "a b", "x" * 300]
    return _replace_match(rng, text, _WORD, lambda m: rng.choice(pool))


def m_swap_type(rng: random.Random, text: str) -> str:
    return _replace_match(rng, text, _TYPE, lambda m: m.group(1) + rng.choice(TYPES))


def m_yaml(rng: random.Random, text: str) -> str:
    lines = _lines(text)
    i = rng.randrange(len(lines))
    snippet = rng.choice(YAML_SNIPPETS)
    if rng.random() < 0.5:
        cut = rng.randrange(len(lines[i]) + 1)
        lines[i] = lines[i][:cut] + " " + snippet + " " + lines[i][cut:]
    else:
        lines.insert(i, snippet)
    return "\n".join(lines)


def m_anchor(rng: random.Random, text: str) -> str:
    """An anchor on one value and aliases to it elsewhere (shared subtrees, merge keys)."""
    lines = _lines(text)
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    if ": " in lines[i]:
        key, value = lines[i].split(": ", 1)
        lines[i] = f"{key}: &fz {value}"
        target = rng.choice(["*fz", "{<<: *fz}", "[*fz, *fz]"])
        if ": " in lines[j]:
            key, _ = lines[j].split(": ", 1)
            lines[j] = f"{key}: {target}"
    return "\n".join(lines)


TEXT_MUTATIONS: dict[str, Callable[[random.Random, str], str]] = {
    "delete_line": m_delete_line, "duplicate_line": m_duplicate_line, "swap_lines": m_swap_lines,
    "truncate": m_truncate, "indent": m_indent, "insert_char": m_insert_char, "delete_span": m_delete_span,
    "number": m_number, "word": m_word, "swap_type_text": m_swap_type, "yaml_syntax": m_yaml, "anchor": m_anchor,
}


def m_bytes(rng: random.Random, data: bytes) -> bytes:
    """Byte-level damage: invalid UTF-8, a BOM, NUL, a flipped bit."""
    i = rng.randrange(len(data) + 1)
    choice = rng.randrange(5)
    if choice == 0:
        return data[:i] + rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"]) + data[i:]
    if choice == 1:
        return b"\xef\xbb\xbf" + data
    if choice == 2:
        return data[:i] + b"\x00" + data[i:]
    if choice == 3 and data:
        j = rng.randrange(len(data))
        return data[:j] + bytes([data[j] ^ (1 << rng.randrange(8))]) + data[j + 1:]
    return rng.choice([b"\xff\xfe", b"\xfe\xff", b""]) + data  # UTF-16 byte-order marks


# -- mutations of the parsed tree ------------------------------------------------------------------

def _containers(tree: Any) -> list[Any]:
    """Every dict and list in the tree."""
    found, stack = [], [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (dict, list)):
            found.append(node)
            stack.extend(node.values() if isinstance(node, dict) else node)
    return found


def _slots(tree: Any) -> list[tuple[Any, Any]]:
    """Every (container, key or index) place holding a value."""
    return [(c, k) for c in _containers(tree) for k in (list(c) if isinstance(c, dict) else range(len(c)))]


def _value(rng: random.Random) -> Any:
    choice = rng.random()
    if choice < 0.6:
        return rng.choice(EXTREME_VALUES)
    if choice < 0.8:
        return rng.choice(TYPES)
    return rng.randint(-3, 70)


def t_delete_key(rng: random.Random, tree: Any) -> None:
    dicts = [c for c in _containers(tree) if isinstance(c, dict) and c]
    if dicts:
        d = rng.choice(dicts)
        del d[rng.choice(list(d))]


def t_set_value(rng: random.Random, tree: Any) -> None:
    slots = _slots(tree)
    if slots:
        container, key = rng.choice(slots)
        container[key] = _value(rng)


def t_change_type(rng: random.Random, tree: Any) -> None:
    slots = _slots(tree)
    if not slots:
        return
    container, key = rng.choice(slots)
    value = container[key]
    options = [str(value), [value], {"value": value}, None]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        options += [float(value), -value, value * 1000, str(value) + "x"]
    if isinstance(value, dict):
        options.append(list(value.values()))
    if isinstance(value, list):
        options.append({str(i): v for i, v in enumerate(value)})
    container[key] = rng.choice(options)


def t_swap_block_type(rng: random.Random, tree: Any) -> None:
    blocks = [c for c in _containers(tree) if isinstance(c, dict) and "type" in c]
    if blocks:
        rng.choice(blocks)["type"] = rng.choice(TYPES)


def t_add_field(rng: random.Random, tree: Any) -> None:
    dicts = [c for c in _containers(tree) if isinstance(c, dict)]
    if dicts:
        rng.choice(dicts)[rng.choice(FIELDS + UNICODE)] = _value(rng)


def t_duplicate_item(rng: random.Random, tree: Any) -> None:
    lists = [c for c in _containers(tree) if isinstance(c, list) and c]
    if lists:
        items = rng.choice(lists)
        i = rng.randrange(len(items))
        items.insert(i, items[i])  # shared: safe_dump writes an anchor and an alias


def t_delete_item(rng: random.Random, tree: Any) -> None:
    lists = [c for c in _containers(tree) if isinstance(c, list) and c]
    if lists:
        items = rng.choice(lists)
        del items[rng.randrange(len(items))]


def t_move_subtree(rng: random.Random, tree: Any) -> None:
    slots = _slots(tree)
    if len(slots) > 1:
        (a, i), (b, j) = rng.sample(slots, 2)
        b[j] = copy.deepcopy(a[i])  # a copy: the target may lie inside the subtree


def t_wrap(rng: random.Random, tree: Any) -> None:
    slots = _slots(tree)
    if slots:
        container, key = rng.choice(slots)
        container[key] = rng.choice([[container[key]], {"type": "sequence", "layers": [container[key]]}])


def t_extreme_field(rng: random.Random, tree: Any) -> None:
    """A sizing field (repeat, out, kernel, stride, size, ...) set to an extreme number."""
    names = {"repeat", "out", "planes", "kernel", "stride", "padding", "dilation", "groups", "size", "channels",
             "expansion", "width_per_group", "expand_ratio", "p", "width", "depth", "phi", "squeeze", "ratio"}
    places = [(c, k) for c in _containers(tree) if isinstance(c, dict) for k in c if k in names]
    if places:
        container, key = rng.choice(places)
        container[key] = rng.choice([0, -1, 1, 2, 10 ** 4, 10 ** 4 + 1, 10 ** 6, 10 ** 6 + 1, 10 ** 12, math.nan,
                                     math.inf, 0.5, 1e-9, [10 ** 6, 10 ** 6], [1, 2, 3]])


def t_rename_key(rng: random.Random, tree: Any) -> None:
    dicts = [c for c in _containers(tree) if isinstance(c, dict) and c]
    if not dicts:
        return
    d = rng.choice(dicts)
    key = rng.choice(list(d))
    if len(key) > 2 and rng.random() < 0.5:
        i = rng.randrange(len(key) - 1)
        new = key[:i] + key[i + 1] + key[i] + key[i + 2:]
    else:
        new = key + rng.choice(["s", "_", ".", ".0", ".x"] + UNICODE)
    d[new] = d.pop(key)


def t_empty(rng: random.Random, tree: Any) -> None:
    containers = [c for c in _containers(tree) if c is not tree and c]
    if containers:
        rng.choice(containers).clear()


TREE_MUTATIONS: dict[str, Callable[[random.Random, Any], None]] = {
    "delete_key": t_delete_key, "set_value": t_set_value, "change_type": t_change_type,
    "swap_block_type": t_swap_block_type, "add_field": t_add_field, "duplicate_item": t_duplicate_item,
    "delete_item": t_delete_item, "move_subtree": t_move_subtree, "wrap": t_wrap, "extreme_field": t_extreme_field,
    "rename_key": t_rename_key, "empty": t_empty,
}



# -- mutations of the files around the spec (extends chains, links, merge keys) -----------------------
# Each returns the case's new text and the other files it needs beside it: {name: bytes}, and symlinks
# {name: target}. The limits of the language hold for the resolved spec, whatever files it is made of.

Files = tuple[str, dict[str, bytes], dict[str, str]]
# Attributes of the torch containers a compiled spec is made of, and dunder/private names: a name that
# validates must build (the check_torch run compiles every accepted spec).
ATTRIBUTE_NAMES = ["append", "extend", "pop", "insert", "body", "drop_rate", "forward", "training", "shortcut", "act",
                   "add_module", "state_dict", "modules", "children", "T_destination", "dump_patches", "call_super_init",
                   "_modules", "_parameters", "_body_names", "__init__", "__class__", "keys", "items", "values", "index",
                   "count", "extra_repr", "spec_name", "transfer_report", "get_submodule", "half", "zero_grad"]


def _alias_bomb(levels: int, width: int = 10) -> str:
    """A mapping of nested aliases that expands to width**levels leaves (one line each level)."""
    lines = [f"  b0: &b0 [{', '.join(['x'] * width)}]"]
    lines += [f"  b{i}: &b{i} [{', '.join([f'*b{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines)


def x_extends_chain(rng: random.Random, text: str, seed: str) -> Files:
    """The spec extends a chain of small files, the last extending the seed; each file is under every
    per-file limit, and the chain as a whole may not be."""
    count = rng.randint(2, 40)
    payload = rng.choice(["bomb", "bytes", "override", "defaults"])
    files = {}
    for i in range(count):
        parent = f"fuzz_chain_{i + 1}.yaml" if i + 1 < count else seed
        body = f"extends: {parent}\n"
        if payload == "bomb":
            body += f"variants:\n  v{i}:\n    x:\n  {_alias_bomb(5).replace(chr(10), chr(10) + '  ')}\n"
        elif payload == "bytes":
            body += f"description: {'x' * rng.choice([1_000, 30_000, 60_000])}\n"
        elif payload == "defaults":
            body += f"defaults: {{conv: {{init_std: 0.{i + 1}}}}}\n"
        else:
            body += f"layers.{rng.randint(-2, 30)}.name: l{i}\n"
        files[f"fuzz_chain_{i}.yaml"] = body.encode()
    return "extends: fuzz_chain_0.yaml\n" + rng.choice(["", "name: chained\n", text]), files, {}


def x_extends_link(rng: random.Random, text: str, seed: str) -> Files:
    """`extends` through a symlink loop, a dangling link, a link to a folder or to a device."""
    kind = rng.choice(["loop", "self", "dangling", "folder", "device"])
    links = {"loop": {"fuzz_link_a.yaml": "fuzz_link_b.yaml", "fuzz_link_b.yaml": "fuzz_link_a.yaml"},
             "self": {"fuzz_link_a.yaml": "fuzz_link_a.yaml"},
             "dangling": {"fuzz_link_a.yaml": "fuzz_nowhere.yaml"},
             "folder": {"fuzz_link_a.yaml": "."},
             "device": {"fuzz_link_a.yaml": rng.choice(["/dev/null", "/dev/zero", "/dev/urandom"])}}[kind]
    return "extends: fuzz_link_a.yaml\nname: linked\n", {}, links


def x_merge_keys(rng: random.Random, text: str, seed: str) -> Files:
    """Merge keys (`<<`) that merge a mapping into itself, or many times over (a merge bomb)."""
    if rng.random() < 0.3:
        return "fuzz_merge: &m {x: 1, <<: *m}\n" + text, {}, {}
    levels, width = rng.randint(3, 12), rng.randint(2, 12)
    lines = ["fuzz_merge:", "  m0: &m0 {k0: 0}"]
    lines += [f"  m{i}: &m{i} {{<<: [{', '.join([f'*m{i - 1}'] * width)}], k{i}: {i}}}" for i in range(1, levels)]
    return "\n".join(lines) + "\n" + text, {}, {}


FILE_MUTATIONS: dict[str, Callable[[random.Random, str, str], Files]] = {
    "extends_chain": x_extends_chain, "extends_link": x_extends_link, "merge_keys": x_merge_keys,
}


def t_attribute_name(rng: random.Random, tree: Any) -> None:
    """Name a block after an attribute of the torch containers it compiles into."""
    blocks = [c for c in _containers(tree) if isinstance(c, dict) and "type" in c]
    if blocks:
        rng.choice(blocks)["name"] = rng.choice(ATTRIBUTE_NAMES)


TREE_MUTATIONS["attribute_name"] = t_attribute_name


# -- mutations of blocks defined in YAML (`blocks:`) ---------------------------------------------------
# Expressions a spec author could write by mistake or on purpose: huge, undefined, non-finite or
# non-integer results, forbidden syntax (attributes, calls, lambdas, comprehensions), deep nesting.
EXPRESSIONS = ["= 10 ** 10 ** 10", "= 9 ** 999", "= in_channels // 0", "= in_channels % 0", "= in_channels / 3",
               "= __import__('os').system('true')", "= (lambda: 1)()", "= [1] * 10 ** 9", "= 'a' * 10 ** 9",
               "= make_divisible(in_channels, 0)", "= make_divisible(in_channels)", "= in_channels * 1e308",
               "= " + "(" * 200 + "1" + ")" * 200, "= in_channels.__class__", "= undefined_name", "= ",
               "= 1 if in_channels else 2", "= -in_channels", "= float('nan')", "= 1e309", "= in_channels, 2",
               "= [x for x in range(9)]", "= in_channels > 3", "= True", "= min(in_channels)", "= " + "1+" * 300 + "1",
               "= max(in_channels, 2 ** 70)", "= in_channels; import os", "=", "==1", "= 0x10", "= 1_000"]
PARAM_TYPES = ["channels", "int", "float", "bool", "activation", "str", "list", "", None, 3]


def _definitions(tree: Any) -> list[dict[str, Any]]:
    blocks = tree.get("blocks") if isinstance(tree, dict) else None
    return [d for d in blocks.values() if isinstance(d, dict)] if isinstance(blocks, dict) else []


def t_expression(rng: random.Random, tree: Any) -> None:
    """A value in a defined block's body (or a use's argument) becomes a hostile `= expression`."""
    bodies = [d["body"] for d in _definitions(tree) if isinstance(d.get("body"), (dict, list))]
    slots = _slots(rng.choice(bodies)) if bodies else _slots(tree)
    if slots:
        container, key = rng.choice(slots)
        container[key] = rng.choice(EXPRESSIONS)


def t_definition(rng: random.Random, tree: Any) -> None:
    """A definition's parameters or body go wrong: a bad or missing type, an extreme default, a body that uses its
    own type (recursion) or another defined type, no body, a body that is a value, a shadowed built-in name."""
    definitions = _definitions(tree)
    if not definitions:
        return
    name = rng.choice(list(tree["blocks"]))
    definition = tree["blocks"][name] if isinstance(tree["blocks"][name], dict) else {}
    params = definition.setdefault("params", {}) if isinstance(definition.get("params", {}), dict) else {}
    kind = rng.choice(["param_type", "default", "recursion", "no_body", "body_value", "shadow", "many_params"])
    if kind == "param_type" and params:
        param = params[rng.choice(list(params))]
        if isinstance(param, dict):
            param["type"] = rng.choice(PARAM_TYPES)
    elif kind == "default" and params:
        param = params[rng.choice(list(params))]
        if isinstance(param, dict):
            param["default"] = _value(rng)
    elif kind == "recursion":
        definition["body"] = [{"type": rng.choice(list(tree["blocks"]))}, {"type": name}][rng.randrange(2):]
    elif kind == "no_body":
        definition.pop("body", None)
    elif kind == "body_value":
        definition["body"] = _value(rng)
    elif kind == "shadow":
        tree["blocks"][rng.choice(TYPES)] = tree["blocks"].pop(name)
    else:
        params.update({f"p{i}": {"type": "int", "default": i} for i in range(rng.choice([31, 33, 500]))})


TREE_MUTATIONS["expression"] = t_expression
TREE_MUTATIONS["definition"] = t_definition
