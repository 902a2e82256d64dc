"""A spec's files and edits folded into one raw tree: `extends`, dotted keys, the variant, overrides.

The rule (docs/spec-language.md, section 8): the files of an `extends` chain apply from the root down, and
what a file writes wins over everything it inherits, including the variant it names. In each file:

1. the row of the `variants` table that its `variant:` names, if it is the last file of the chain to name
   one, applies to the tree the file inherits (a variant named higher up the chain is superseded);
2. the file's plain keys merge on top (mappings key by key; anything else replaces);
3. its dotted keys (`layers.layer3.repeat: 36`) apply last.

So a child of efficientnet_b0.yaml that writes `scaling: {width: 1.5}` gets width 1.5 over B0, and a
resolved tree (`Spec.source`) written out as a file loads as the same spec. A `--variant` (or `variant=`)
chosen from outside applies after every file, like `--set`, and supersedes the variant the files name;
then the overrides apply.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import Loc, SpecError, did_you_mean
from .source import (MAX_DEPTH, MAX_EXTENDS_DEPTH, LocDict, LocList, loc_of, not_a_file, parse_yaml, printable,
                     read_file, source_budget, to_loc)


def load_raw(path: str | Path, variant: str | None = None) -> LocDict:
    """Read a spec file and everything it extends, and fold them into one raw tree (with `variant` chosen
    from outside, if given). All the files share one `source_budget`."""
    with source_budget():
        return fold(_chain(Path(path)), variant)


def source_files(path: str | Path) -> list[Path]:
    """The files a spec is made of: the files it extends, the root first, and itself."""
    with source_budget():
        return [Path(raw.loc.file) for raw in _chain(Path(path))]


def _chain(path: Path) -> list[LocDict]:
    """The raw trees of `path` and the files it extends, the root first."""
    files = [read_file(path)]
    seen = [_resolved(path, None)]
    while "extends" in files[-1]:
        raw = files[-1]
        parent_ref, extends_loc = raw["extends"], raw.loc_of("extends")
        if not isinstance(parent_ref, str):
            raise SpecError("'extends' takes the path of a parent spec file", extends_loc)
        parent = Path(raw.loc.file).parent / parent_ref
        resolved = _resolved(parent, extends_loc, parent_ref)
        if resolved in seen:
            cycle = " -> ".join(p.name for p in [*seen, resolved])
            raise SpecError(f"'extends' makes a cycle: {printable(cycle, 1000)}", extends_loc)
        if len(seen) >= MAX_EXTENDS_DEPTH:
            raise SpecError(f"'extends' chain deeper than {MAX_EXTENDS_DEPTH} files", extends_loc)
        _check_parent(parent, parent_ref, extends_loc)
        seen.append(resolved)
        files.append(read_file(parent))
    return files[::-1]


def _resolved(path: Path, loc: Loc | None, ref: str = "") -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # a symlink loop, a NUL byte, a name too long, ...
        raise SpecError(f"'extends': cannot use '{printable(ref)}' as a file path ({printable(str(exc), 200)})"
                        if loc else f"cannot use {printable(str(path))} as a spec file ({printable(str(exc), 200)})",
                        loc or Loc(str(path), 1, 1)) from None


def _check_parent(parent: Path, ref: str, loc: Loc) -> None:
    """The parent exists and is a regular file (not a directory, a FIFO or a device), else a located error."""
    try:
        mode = os.stat(parent).st_mode
    except FileNotFoundError:
        raise SpecError(f"parent spec '{printable(ref)}' not found (looked for {printable(str(parent))})", loc) from None
    except (OSError, ValueError) as exc:
        raise SpecError(f"'extends': cannot use '{printable(ref)}' as a file path ({printable(str(exc), 200)})", loc) from None
    kind = not_a_file(mode)
    if kind:
        raise SpecError(f"parent spec '{printable(ref)}' is {kind}, not a spec file", loc)


def fold(files: list[LocDict], variant: str | None = None) -> LocDict:
    """Apply the files (root first) by the rule in this module's docstring; `variant` comes from outside."""
    chooser = len(files) if variant is not None else max((i for i, raw in enumerate(files) if "variant" in raw), default=-1)
    tree = LocDict(loc=files[0].loc)
    for index, raw in enumerate(files):
        own, dotted = split_dotted(raw)
        own.pop("extends", None)
        if index and "reference" in tree:  # a file that extends another is another network
            tree["reference"] = None  # (kept as null, so that a variant row applied again cannot set it)
        if index == chooser:  # the row goes under the file's own keys, as if inherited
            apply_variant(tree, merge(tree, own))
        tree = merge(tree, own)
        apply_dotted(tree, dotted)
    if variant is not None:
        _choose(tree, variant)
        apply_variant(tree, tree)
    return tree


def _choose(tree: LocDict, variant: str) -> None:
    """Name the variant chosen from outside; a spec that named none is called after it."""
    if tree.get("variant") is None and isinstance(tree.get("name"), str):
        tree["name"] = f"{tree['name']}_{variant}"
    tree["variant"] = variant
    tree.key_locs["variant"] = Loc(f"--variant {printable(variant, 200)}", 1, 1)


def apply_variant(tree: LocDict, chosen: LocDict) -> None:
    """Apply to `tree` the row of `chosen`'s `variants` table that `chosen`'s `variant` names."""
    name = chosen.get("variant")
    if name is None:
        return
    table = chosen.get("variants")
    loc = chosen.loc_of("variant")
    if not isinstance(table, LocDict) or str(name) not in table:
        names = list(table) if isinstance(table, LocDict) else []
        known = f"; variants: {', '.join(names)}" if names else "; this spec has no 'variants' table"
        raise SpecError(f"unknown variant '{printable(name)}'{did_you_mean(str(name), names)}{known}", loc, "variant")
    entry = table[str(name)]
    if not isinstance(entry, LocDict):
        raise SpecError("a variant is a mapping of dotted paths to values", table.loc_of(str(name)), f"variants.{printable(name)}")
    for path, value in entry.items():
        set_path(tree, path, value, entry.loc_of(path))


def split_dotted(raw: LocDict) -> tuple[LocDict, LocDict]:
    """A file's own keys, and its dotted-path overrides (`layers.layer3.repeat: 23`)."""
    own = LocDict({k: v for k, v in raw.items() if "." not in k}, loc=raw.loc, key_locs=raw.key_locs)
    dotted = LocDict({k: v for k, v in raw.items() if "." in k}, loc=raw.loc, key_locs=raw.key_locs)
    return own, dotted


def apply_dotted(raw: LocDict, dotted: LocDict) -> LocDict:
    for key, value in dotted.items():
        set_path(raw, key, value, dotted.loc_of(key))
    return raw


def merge(base: Any, over: Any) -> Any:
    """Deep-merge `over` onto `base`: mappings merge key by key, anything else is replaced."""
    if isinstance(base, LocDict) and isinstance(over, LocDict):
        result = LocDict(base, loc=base.loc, key_locs=base.key_locs)
        for key, value in over.items():
            result[key] = merge(base[key], value) if key in base else value
            result.key_locs[key] = over.loc_of(key)
        return result
    return over


def _height(node: Any) -> int:
    """Levels of mappings and lists in a raw tree (at most MAX_DEPTH: the loader refuses deeper trees)."""
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    return 1 + max((_height(child) for child in children), default=0) if isinstance(node, (dict, list)) else 0


def set_path(root: LocDict, dotted: str, value: Any, loc: Loc) -> None:
    """Set `value` at `a.b.2.c`; a list step is an index or the `name` of an item (null removes an item)."""
    steps = dotted.split(".")
    if len(steps) + _height(value) > MAX_DEPTH:
        raise SpecError(f"override '{printable(dotted)}' would nest the spec deeper than {MAX_DEPTH} levels", loc)
    node: Any = root
    walked: list[str] = []
    for i, step in enumerate(steps):
        last = i == len(steps) - 1
        if isinstance(node, LocDict):
            if last:
                node[step] = value
                node.key_locs[step] = loc
                return
            if step not in node:
                node[step] = LocDict(loc=loc)
                node.key_locs[step] = loc
            node = node[step]
        elif isinstance(node, LocList):
            index = _list_index(node, step)
            if index is None:
                names = [printable(item.get("name")) for item in node if isinstance(item, dict) and "name" in item]
                hint = did_you_mean(step, names) or (f"; names there: {printable(', '.join(names), 200)}" if names else "")
                where = ".".join(walked) or "the spec"
                raise SpecError(f"override '{printable(dotted)}': no item '{printable(step)}' in {printable(where)} "
                               f"(an index 0..{len(node) - 1} or a name){hint}", loc)
            if last and value is None:  # null removes the item: a variant without that layer
                del node[index]
                if index < len(node.item_locs):
                    del node.item_locs[index]
                return
            if last:
                old = node[index]
                if isinstance(value, LocDict) and isinstance(old, dict) and "name" in old and "name" not in value:
                    value = LocDict({"name": old["name"], **value}, loc=value.loc, key_locs=value.key_locs)
                node[index] = value
                if index < len(node.item_locs):
                    node.item_locs[index] = loc_of(value, loc)
                return
            node = node[index]
        else:
            raise SpecError(f"override '{printable(dotted)}': '{printable('.'.join(walked))}' is a value, not a mapping or list", loc)
        walked.append(step)


def _list_index(items: LocList, step: str) -> int | None:
    if step.lstrip("-").isdigit():
        try:
            index = int(step)
        except ValueError:  # digits int() does not read, such as '²'
            return None
        return index if -len(items) <= index < len(items) else None
    for index, item in enumerate(items):
        if isinstance(item, dict) and item.get("name") == step:
            return index
    return None


def parse_override(text: str) -> tuple[str, Any, Loc]:
    """`stages.2.repeat=36` from the command line into (path, value, loc)."""
    loc = Loc(f"--set {printable(text, 200)}", 1, 1)
    if "=" not in text:
        raise SpecError("an override reads PATH=VALUE, e.g. layers.layer3.repeat=36", loc)
    path, value_text = text.split("=", 1)
    if not path or any(not step for step in path.split(".")):
        raise SpecError(f"'{printable(path)}' is not a dotted path", loc)
    return path, parse_yaml(value_text, loc.file) if value_text else "", loc


def apply_overrides(raw: LocDict, overrides: dict[str, Any] | list[str] | None) -> LocDict:
    """Apply `{path: value}` (API) or `['path=value', ...]` (CLI) overrides in order."""
    if not overrides:
        return raw
    if isinstance(overrides, dict):
        items = [(str(path), value, Loc(f"override {printable(str(path), 200)}", 1, 1)) for path, value in overrides.items()]
    else:
        items = [parse_override(text) for text in overrides]
    for path, value, loc in items:
        set_path(raw, path, to_loc(value, loc), loc)
    return raw
