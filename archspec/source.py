"""YAML text to a raw tree whose every node knows its file, line and column.

Safe loading only. `extends: parent.yaml` merges the file onto its parent; keys with dots
(`layers.layer3.repeat: 36`) and `--set` overrides replace one value at a dotted path.

Limits, so that no input can hang the loader or exhaust memory (each refusal is a located SpecError):

- `MAX_FILE_BYTES` (256 KiB): the largest spec file (or YAML text) read; the largest bundled spec is
  under 8 KiB, and the pure-Python YAML parser reads about 150 KiB a second.
- `MAX_DEPTH` (64): the deepest nesting of mappings and lists, counted through aliases; a real spec
  nests about 12 levels (Inception-v3's nested branches).
- `MAX_NODES` (1,000,000): YAML nodes after expanding aliases (a billion-laughs bomb is refused in about
  half a second, with under 100 MB), also for Python data passed as an override.
- `MAX_DEFAULT_VALUES` (200,000): values that `defaults` may add to the blocks in all (each block gets its
  own copy of its type's defaults to validate). Defaults cannot hold blocks (they would nest without end).
- `MAX_EXTENDS_DEPTH` (32): files in an `extends` chain; a cycle is an error.

Analysis has its own budget (`blocks/base.py`: `MAX_BLOCKS`), and validation bounds every number.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from .errors import Loc, SpecError, did_you_mean

MAX_EXTENDS_DEPTH = 32
MAX_NODES = 1_000_000
MAX_DEFAULT_VALUES = 200_000
MAX_DEPTH = 64
MAX_FILE_BYTES = 256 * 1024


class LocDict(dict):
    """A mapping from YAML with the position of the mapping and of each key."""

    loc: Loc
    key_locs: dict[str, Loc]

    def __init__(self, *args: Any, loc: Loc | None = None, key_locs: dict[str, Loc] | None = None) -> None:
        super().__init__(*args)
        self.loc = loc or Loc("<unknown>", 0, 0)
        self.key_locs = dict(key_locs or {})

    def loc_of(self, key: str) -> Loc:
        return self.key_locs.get(key, self.loc)


class LocList(list):
    """A sequence from YAML with the position of the sequence and of each item."""

    loc: Loc
    item_locs: list[Loc]

    def __init__(self, *args: Any, loc: Loc | None = None, item_locs: list[Loc] | None = None) -> None:
        super().__init__(*args)
        self.loc = loc or Loc("<unknown>", 0, 0)
        self.item_locs = list(item_locs or [])

    def loc_of(self, index: int) -> Loc:
        return self.item_locs[index] if 0 <= index < len(self.item_locs) else self.loc


def printable(text: str, limit: int = 80) -> str:
    """User text for a one-line message: control characters escaped, long text shortened."""
    text = str(text)
    if not text.isprintable():
        text = repr(text)[1:-1]
    return text if len(text) <= limit else text[:limit - 3] + "..."


def loc_of(node: Any, default: Loc) -> Loc:
    return node.loc if isinstance(node, (LocDict, LocList)) else default


class _Loader(yaml.SafeLoader):
    """SafeLoader that builds LocDict/LocList, refuses duplicate keys and nests at most MAX_DEPTH levels."""

    file = "<string>"
    _depth = 0  # nesting of the node being composed / constructed

    def _loc(self, node: yaml.Node) -> Loc:
        return Loc(self.file, node.start_mark.line + 1, node.start_mark.column + 1)

    def _too_deep(self, mark: Any) -> SpecError:
        return SpecError(f"the YAML nests deeper than {MAX_DEPTH} levels", Loc(self.file, mark.line + 1, mark.column + 1))

    def compose_node(self, parent: Any, index: Any) -> Any:  # the composer recurses once per level
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise self._too_deep(self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """PyYAML's scalar constructors fail with plain Python errors on values their tag cannot hold
        (`2001-13-45`, `!!float` with no value, `!!bool maybe`, an integer of 5,000 digits)."""
        try:
            return super().construct_object(node, deep)
        except (ValueError, IndexError, KeyError, AttributeError, TypeError, OverflowError) as exc:
            if not isinstance(node, yaml.ScalarNode):
                raise
            tag = str(node.tag).replace("tag:yaml.org,2002:", "!!")
            if tag == "!!int" and "digits" in str(exc):  # more digits than Python converts (4300)
                digits = sum(ch.isdigit() for ch in str(node.value))
                raise SpecError(f"the integer with {digits:,} digits is too long to be a number here", self._loc(node)) from None
            if tag == "!!timestamp":
                why = f" ({printable(str(exc), 100)})" if isinstance(exc, ValueError) else ""
                message = f"'{printable(node.value)}' is not a valid date{why}; quote it if it is text"
            else:
                message = f"'{printable(node.value)}' is not a valid {printable(tag)} value"
            raise SpecError(message, self._loc(node)) from None

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        """`<<: *a` / `<<: [*a, *b]` as the YAML merge-key spec reads them: the mapping's own keys win,
        then the earlier of the merged mappings. (PyYAML 6.0.3 lets a later mapping's key win when it
        is not the same key object as an earlier one's.) Leaves the merged pairs first, then the own ones,
        each merged key once and none that an own key overrides."""
        merged: dict[Any, tuple[yaml.Node, yaml.Node]] = {}
        own: list[tuple[yaml.Node, yaml.Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag != "tag:yaml.org,2002:merge":
                if key_node.tag == "tag:yaml.org,2002:value":
                    key_node.tag = "tag:yaml.org,2002:str"
                own.append((key_node, value_node))
                continue
            sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for source in sources:
                if not isinstance(source, yaml.MappingNode):
                    raise SpecError(f"'<<' merges a mapping or a list of mappings, not {source.id}", self._loc(source))
                self.flatten_mapping(source)
                for pair in source.value:
                    merged.setdefault(_key_identity(pair[0]), pair)
        own_keys = {_key_identity(key_node) for key_node, _ in own}
        node.value = [pair for key, pair in merged.items() if key not in own_keys] + own


def _key_identity(key_node: yaml.Node) -> Any:
    """Equal scalar keys are one key, whichever node wrote them."""
    return (key_node.tag, key_node.value) if isinstance(key_node, yaml.ScalarNode) else id(key_node)


def _nested(construct: Any) -> Any:
    """Count construction depth: aliases can nest a deep subtree deeper than it was written."""
    def wrapper(loader: _Loader, node: yaml.Node) -> Any:
        loader._depth += 1
        try:
            if loader._depth > MAX_DEPTH:
                raise loader._too_deep(node.start_mark)
            return construct(loader, node)
        finally:
            loader._depth -= 1
    return wrapper


@_nested
def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LocDict:
    own = sum(1 for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge")
    loader.flatten_mapping(node)  # `<<: *anchor` pairs first (in precedence order), then the mapping's own keys
    merged = len(node.value) - own
    result = LocDict(loc=loader._loc(node))
    own_keys: set[str] = set()
    for index, (key_node, value_node) in enumerate(node.value):
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, (str, int, float, bool)):
            raise SpecError(f"a mapping key must be a name or a number, not {_kind(key)}", loader._loc(key_node))
        key = str(key)
        if index >= merged:
            if key in own_keys:
                raise SpecError(f"duplicate key '{printable(key)}' (first at line {result.key_locs[key].line})", loader._loc(key_node))
            own_keys.add(key)
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_locs[key] = loader._loc(key_node)
    return result


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {"LocDict": "a mapping", "LocList": "a list"}.get(type(value).__name__, f"a {type(value).__name__}")


@_nested
def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> LocList:
    items = [loader.construct_object(child, deep=True) for child in node.value]
    return LocList(items, loc=loader._loc(node), item_locs=[loader._loc(child) for child in node.value])


_Loader.add_implicit_resolver(  # YAML 1.2 floats such as 1e-3, which YAML 1.1 reads as strings
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))
_Loader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_sequence)


def parse_yaml(text: str, file: str) -> Any:
    """Parse YAML text safely into LocDict/LocList/scalars; YAML problems become SpecErrors."""
    if len(text) > MAX_FILE_BYTES:
        raise SpecError(f"the spec is {len(text):,} characters long, over the limit of {MAX_FILE_BYTES:,} "
                        f"({MAX_FILE_BYTES // 1024} KiB)", Loc(file, 1, 1))
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow, e.g. NUL
        code = exc.character if isinstance(exc.character, int) else ord(exc.character[:1] or "\0")
        raise SpecError(f"the character #x{code:04x} is not allowed in YAML", _position(text, exc.position, file)) from None
    loader.file = file
    try:
        return unshare(loader.get_single_data(), Loc(file, 1, 1))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Loc(file, mark.line + 1, mark.column + 1) if mark else Loc(file, 1, 1)
        raise SpecError(_yaml_message(exc), loc) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"not valid YAML: {' '.join(str(exc).split())}", Loc(file, 1, 1)) from None
    finally:
        loader.dispose()


def _position(text: str, index: int, file: str) -> Loc:
    """The line and column of character `index` of `text`."""
    before = text[:index]
    return Loc(file, before.count("\n") + 1, index - (before.rfind("\n") + 1) + 1)


def _yaml_message(exc: yaml.MarkedYAMLError) -> str:
    problem = exc.problem or str(exc)
    if "'\\t'" in problem or "\\t" in problem:
        return "tab character in indentation; YAML indents with spaces only"
    if isinstance(exc, yaml.constructor.ConstructorError) and "tag" in problem:
        tag = re.search(r"'([^']*)'", problem)
        name = tag.group(1).replace("tag:yaml.org,2002:", "!!") if tag else "?"
        return f"the YAML tag {name} is not allowed; a spec holds plain data only"
    return f"not valid YAML: {' '.join(problem.split())}"


def unshare(node: Any, loc: Loc, limit: int = MAX_NODES, plain: bool = False) -> Any:
    """A raw tree in which no two places share an object (YAML aliases do), so that an override changes
    one place only: a copy of a parsed YAML tree or, with `plain`, of Python data (an API override; dicts,
    lists and tuples become LocDicts and LocLists located at `loc`). Refuses trees that expand past `limit`
    nodes (alias bombs; shared or cyclic Python objects) or nest past MAX_DEPTH levels."""
    if plain:
        too_many, too_deep = f"the override expands to more than {limit:,} nodes", f"the override nests deeper than {MAX_DEPTH} levels"
    else:
        too_many = f"the spec expands to more than {limit:,} YAML nodes (too many aliases?)"
        too_deep = f"the YAML nests deeper than {MAX_DEPTH} levels (through aliases)"
    count = 0

    def copy(item: Any, depth: int, where: Loc) -> Any:
        nonlocal count
        count += 1
        if count > limit:
            raise SpecError(too_many, where)
        if depth > MAX_DEPTH:
            raise SpecError(too_deep, where)
        if isinstance(item, LocDict):
            return LocDict({k: copy(v, depth + 1, item.loc_of(k)) for k, v in item.items()},
                           loc=item.loc, key_locs=item.key_locs)
        if isinstance(item, LocList):
            return LocList([copy(v, depth + 1, item.loc_of(i)) for i, v in enumerate(item)],
                           loc=item.loc, item_locs=item.item_locs)
        if plain and isinstance(item, dict):
            return LocDict({str(k): copy(v, depth + 1, loc) for k, v in item.items()}, loc=loc,
                           key_locs={str(k): loc for k in item})
        if plain and isinstance(item, (list, tuple)):
            return LocList([copy(v, depth + 1, loc) for v in item], loc=loc, item_locs=[loc] * len(item))
        return item

    return copy(node, 0, loc)


def to_loc(value: Any, loc: Loc) -> Any:
    """Plain Python data (an API override) as a raw tree located at `loc`, within the YAML limits."""
    return value if isinstance(value, (LocDict, LocList)) else unshare(value, loc, plain=True)


def read_file(path: Path) -> Any:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise SpecError(f"spec file not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise SpecError(f"cannot read spec file {path}: {exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise SpecError(f"the spec file is larger than {MAX_FILE_BYTES:,} bytes ({MAX_FILE_BYTES // 1024} KiB), "
                        "the limit for a spec", Loc(str(path), 1, 1))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[:exc.start].decode("utf-8", "replace")
        raise SpecError(f"not UTF-8 text: byte 0x{data[exc.start]:02x} cannot be decoded",
                        _position(before, len(before), str(path))) from None
    raw = parse_yaml(text, str(path))
    if not isinstance(raw, LocDict):
        raise SpecError("a spec must be a YAML mapping (name, input, layers, ...)", loc_of(raw, Loc(str(path), 1, 1)))
    return raw


def load_raw(path: str | Path, _chain: tuple[Path, ...] = ()) -> LocDict:
    """Read a spec file and everything it extends, returning one merged raw tree."""
    path = Path(path)
    raw = read_file(path)
    own, dotted = split_dotted(raw)
    merged = _extend(own, path, _chain) if "extends" in own else own
    return apply_dotted(merged, dotted)


def split_dotted(raw: LocDict) -> tuple[LocDict, LocDict]:
    """A file's own keys, and its dotted-path overrides (`layers.layer3.repeat: 23`)."""
    own = LocDict({k: v for k, v in raw.items() if "." not in k}, loc=raw.loc, key_locs=raw.key_locs)
    dotted = LocDict({k: v for k, v in raw.items() if "." in k}, loc=raw.loc, key_locs=raw.key_locs)
    return own, dotted


def apply_dotted(raw: LocDict, dotted: LocDict) -> LocDict:
    for key, value in dotted.items():
        set_path(raw, key, value, dotted.loc_of(key))
    return raw


def _extend(raw: LocDict, path: Path, _chain: tuple[Path, ...]) -> LocDict:
    """`raw` merged onto the parent it names. A variant is another network: `reference` is not inherited."""
    parent_ref = raw.pop("extends")
    extends_loc = raw.key_locs.pop("extends")
    if not isinstance(parent_ref, str):
        raise SpecError("'extends' takes the path of a parent spec file", extends_loc)
    chain = _chain + (path.resolve(),)
    try:
        parent = path.parent / parent_ref
        if parent.resolve() in chain:
            cycle = " -> ".join(p.name for p in chain + (parent,))
            raise SpecError(f"'extends' makes a cycle: {printable(cycle, 1000)}", extends_loc)
        found = parent.is_file()
    except (OSError, ValueError) as exc:  # a NUL byte, a name too long for the file system, ...
        raise SpecError(f"'extends': cannot use '{printable(parent_ref)}' as a file path ({exc})", extends_loc) from None
    if len(chain) > MAX_EXTENDS_DEPTH:
        raise SpecError(f"'extends' chain deeper than {MAX_EXTENDS_DEPTH} files", extends_loc)
    if not found:
        raise SpecError(f"parent spec '{printable(parent_ref)}' not found (looked for {printable(str(parent))})", extends_loc)
    base = load_raw(parent, chain)
    base.pop("reference", None)
    return merge(base, raw)


def merge(base: Any, over: Any) -> Any:
    """Deep-merge `over` onto `base`: mappings merge key by key, anything else is replaced."""
    if isinstance(base, LocDict) and isinstance(over, LocDict):
        result = LocDict(base, loc=base.loc, key_locs=base.key_locs)
        for key, value in over.items():
            result[key] = merge(base[key], value) if key in base else value
            result.key_locs[key] = over.loc_of(key)
        return result
    return over


def set_path(root: LocDict, dotted: str, value: Any, loc: Loc) -> None:
    """Set `value` at `a.b.2.c`; a list step is an index or the `name` of an item."""
    steps = dotted.split(".")
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


def to_plain(node: Any) -> Any:
    """The raw tree as plain dicts and lists (for checkpoints and JSON)."""
    if isinstance(node, dict):
        return {k: to_plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [to_plain(v) for v in node]
    return node
