"""YAML text to a raw tree whose every node knows its file, line and column.

Safe loading only. Resolving a spec (its `extends` chain, variant and overrides) is `inherit.py`.

Limits, so that no input can hang the loader or exhaust memory (each refusal is a located SpecError). They
hold for one spec as a whole: every file of its `extends` chain, its `--set` and API overrides share one
`Budget` (`source_budget`), so 32 files each under a limit cannot add up to 32 times it.

- `MAX_SOURCE_BYTES` (64 KiB): the YAML text read, all files together; the largest bundled spec is under
  8 KiB, and the pure-Python YAML parser reads dense YAML at about 40-150 KiB a second of CPU time.
- `MAX_DEPTH` (64): the deepest nesting of mappings and lists, counted through aliases and dotted keys; a
  real spec nests about 12 levels (Inception-v3's nested branches).
- `MAX_NODES` (250,000): YAML nodes after expanding aliases, also for Python data passed as an override.
  An alias bomb is refused before anything is copied: its expansion is counted on the shared graph. A spec
  under the limit is copied node by node (about 1.3 us each: 0.3 s at the limit); 64 KiB of YAML without
  aliases is at most about 30,000 nodes.
- `MAX_MERGED_PAIRS` (20,000): key-value pairs that merge keys (`<<: *a`) copy, counted as they are copied
  (a real spec's merges copy tens; each copy is built, so a merge bomb must stop early: in about 0.2 s).
- `MAX_DEFAULT_VALUES` (200,000): values that `defaults` may add to the blocks in all (each block gets its
  own copy of its type's defaults to validate). Defaults cannot hold blocks (they would nest without end).
- `MAX_EXTENDS_DEPTH` (32): files in an `extends` chain; a cycle is an error.

Analysis has its own budget (`blocks/base.py`: `MAX_BLOCKS`), and validation bounds every number.
"""
from __future__ import annotations

import os
import re
import stat
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml

from ..errors import Loc, SpecError
from .yaml_messages import yaml_message

MAX_EXTENDS_DEPTH = 32
MAX_NODES = 250_000
MAX_MERGED_PAIRS = 20_000
MAX_DEFAULT_VALUES = 200_000
MAX_DEPTH = 64
MAX_SOURCE_BYTES = 64 * 1024
MAX_FILE_BYTES = MAX_SOURCE_BYTES  # one file may use the whole budget


@dataclass
class Budget:
    """What is left for one spec's sources: text read and YAML nodes built, over all its files and overrides."""

    bytes: int = MAX_SOURCE_BYTES
    nodes: int = MAX_NODES
    merged_pairs: int = MAX_MERGED_PAIRS
    files: int = 0  # files and texts read so far, for the messages

    def spend_bytes(self, size: int, loc: Loc) -> None:
        if size > self.bytes:
            where = "the spec" if self.files == 0 else f"with the {self.files} source(s) read before it, the spec"
            raise SpecError(f"{where} is larger than {MAX_SOURCE_BYTES:,} bytes, over the limit of "
                            f"{MAX_SOURCE_BYTES // 1024} KiB for a spec's sources (all its files together)", loc)
        self.bytes -= size
        self.files += 1

    def spend_nodes(self, count: int, too_many: str, loc: Loc) -> None:
        if count > self.nodes:
            raise SpecError(too_many, loc)
        self.nodes -= count


_BUDGET: ContextVar[Budget | None] = ContextVar("archspec_source_budget", default=None)


@contextmanager
def source_budget() -> Iterator[Budget]:
    """One spec's resolution: every source read inside shares one Budget (nested calls keep the outer one)."""
    current = _BUDGET.get()
    if current is not None:
        yield current
        return
    token = _BUDGET.set(Budget())
    try:
        yield _BUDGET.get()  # type: ignore[misc]
    finally:
        _BUDGET.reset(token)


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


def tree_size(node: Any) -> int:
    """Nodes in a raw tree."""
    if isinstance(node, dict):
        return 1 + sum(tree_size(v) for v in node.values())
    if isinstance(node, list):
        return 1 + sum(tree_size(v) for v in node)
    return 1


def loc_of(node: Any, default: Loc) -> Loc:
    return node.loc if isinstance(node, (LocDict, LocList)) else default


class _Constructor:
    """The constructors of both loaders: LocDict/LocList, duplicate keys refused, depth counted."""

    file = "<string>"
    _depth = 0  # nesting of the node being composed / constructed
    budget: Budget
    _flattening: set[int]  # the mappings whose merge keys are being expanded

    def _loc(self, node: yaml.Node) -> Loc:
        return Loc(self.file, node.start_mark.line + 1, node.start_mark.column + 1)

    def _too_deep(self, mark: Any) -> SpecError:
        return SpecError(f"the YAML nests deeper than {MAX_DEPTH} levels", Loc(self.file, mark.line + 1, mark.column + 1))

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
        each merged key once and none that an own key overrides. Merged pairs are counted as they are
        copied (MAX_MERGED_PAIRS), and a mapping that merges itself is refused."""
        if id(node) in self._flattening:
            raise SpecError("'<<' merges a mapping into itself", self._loc(node))
        merged: dict[Any, tuple[yaml.Node, yaml.Node]] = {}
        own: list[tuple[yaml.Node, yaml.Node]] = []
        self._flattening.add(id(node))
        try:
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
                    self.budget.merged_pairs -= len(source.value)
                    if self.budget.merged_pairs < 0:
                        raise SpecError(f"the '<<' merge keys copy more than {MAX_MERGED_PAIRS:,} key-value pairs",
                                        self._loc(key_node))
                    for pair in source.value:
                        merged.setdefault(_key_identity(pair[0]), pair)
        finally:
            self._flattening.discard(id(node))
        own_keys = {_key_identity(key_node) for key_node, _ in own}
        node.value = [pair for key, pair in merged.items() if key not in own_keys] + own


class _Loader(_Constructor, yaml.SafeLoader):  # PyYAML's pure-Python SafeLoader, nesting at most MAX_DEPTH levels
    def compose_node(self, parent: Any, index: Any) -> Any:  # the composer recurses once per level
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise self._too_deep(self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _CLoader(_Constructor, yaml.CSafeLoader):
    """libyaml's parser (about 8x faster) with the same constructors and resolvers."""


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


for _loader in (_Loader, _CLoader):
    _loader.add_implicit_resolver(  # YAML 1.2 floats such as 1e-3, which YAML 1.1 reads as strings
        "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))
    _loader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)
    _loader.add_constructor("tag:yaml.org,2002:seq", _construct_sequence)


def _refuse_tag(loader: _Loader, node: yaml.Node) -> Any:
    """Tags SafeLoader knows but no spec field takes: bytes (`!!binary`), sets and ordered pairs."""
    tag = str(node.tag).replace("tag:yaml.org,2002:", "!!")
    raise SpecError(f"the YAML tag {tag} is not allowed; a spec holds text, numbers, true/false, lists and mappings",
                    loader._loc(node))


for _tag in ("binary", "set", "omap", "pairs"):
    _Loader.add_constructor(f"tag:yaml.org,2002:{_tag}", _refuse_tag)  # _CLoader never reads a tag ('!')


def parse_yaml(text: str, file: str) -> Any:
    """Parse YAML text safely into LocDict/LocList/scalars; YAML problems become SpecErrors. The text and
    its nodes are spent from the current `source_budget`."""
    with source_budget() as budget:
        budget.spend_bytes(len(text), Loc(file, 1, 1))
        return _parse(text, file, budget)


# {(file, text): (its parsed tree, the merged pairs it spent)}: a parent that many specs extend (a family's base) is
# parsed once per process; every read still gets its own copy and spends its share of the budget.
_PARSED: dict[tuple[str, str], tuple[Any, int]] = {}
MAX_PARSED = 64


def _parse(text: str, file: str, budget: Budget) -> Any:  # PyYAML's errors and limits are the language's
    cached = _PARSED.get((file, text))
    if cached is not None and cached[1] <= budget.merged_pairs:
        tree, merged_pairs = cached
        budget.merged_pairs -= merged_pairs
    else:
        before = budget.merged_pairs
        data = _parse_fast(text, file, budget)
        tree = _parse_python(text, file, budget) if data is _REFUSED else data
        if len(_PARSED) >= MAX_PARSED:
            del _PARSED[next(iter(_PARSED))]
        _PARSED[(file, text)] = (tree, before - budget.merged_pairs)
    return unshare(tree, Loc(file, 1, 1))


_REFUSED, _PRINTABLE_ASCII = object(), re.compile(r"[\n \"-/0-9:;<=>@-~]*")  # ASCII without '!' and '?'


def _parse_fast(text: str, file: str, budget: Budget) -> Any:
    """libyaml's tree, or _REFUSED: what it refuses and where the parsers differ (tabs, a byte-order mark in a line,
    `{a: !!map, b: 1}`, `{a: b?c}`: texts other than ASCII without '!' and '?'; a 16,000-spec fuzz found no other)."""
    if not _PRINTABLE_ASCII.fullmatch(text):
        return _REFUSED
    merged_pairs = budget.merged_pairs
    loader = _CLoader(text)
    loader.file, loader.budget, loader._flattening = file, budget, set()
    try:
        return loader.get_single_data()
    except (yaml.YAMLError, SpecError):
        budget.merged_pairs = merged_pairs
        return _REFUSED
    finally:
        loader.dispose()


def _parse_python(text: str, file: str, budget: Budget) -> Any:
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow, e.g. NUL
        code = exc.character if isinstance(exc.character, int) else ord(exc.character[:1] or "\0")
        raise SpecError(f"the character #x{code:04x} is not allowed in YAML", _position(text, exc.position, file)) from None
    loader.file, loader.budget, loader._flattening = file, budget, set()
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Loc(file, mark.line + 1, mark.column + 1) if mark else Loc(file, 1, 1)
        raise SpecError(yaml_message(exc), loc) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"not valid YAML: {' '.join(str(exc).split())}", Loc(file, 1, 1)) from None
    finally:
        loader.dispose()
    return data


def _position(text: str, index: int, file: str) -> Loc:
    """The line and column of character `index` of `text`."""
    before = text[:index]
    return Loc(file, before.count("\n") + 1, index - (before.rfind("\n") + 1) + 1)


def unshare(node: Any, loc: Loc, plain: bool = False) -> Any:
    """A raw tree in which no two places share an object (YAML aliases do), so that an override changes
    one place only: a copy of a parsed YAML tree or, with `plain`, of Python data (an API override; dicts,
    lists and tuples become LocDicts and LocLists located at `loc`). The copy's nodes are spent from the
    current `source_budget`: trees that expand past it (alias bombs; shared or cyclic Python objects) or
    nest past MAX_DEPTH levels are refused."""
    with source_budget() as budget:
        limit = budget.nodes
        if plain:
            too_many, too_deep = f"the override expands to more than {MAX_NODES:,} nodes", f"the override nests deeper than {MAX_DEPTH} levels"
        else:
            together = " (all the spec's files together)" if budget.files > 1 else ""
            too_many = f"the spec expands to more than {MAX_NODES:,} YAML nodes{together} (too many aliases?)"
            too_deep = f"the YAML nests deeper than {MAX_DEPTH} levels (through aliases)"
            _measure(node, loc, limit, too_many, too_deep)  # a bomb is refused before anything is copied
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

        result = copy(node, 0, loc)
        budget.spend_nodes(count, too_many, loc)
        return result


def _measure(node: Any, loc: Loc, limit: int, too_many: str, too_deep: str) -> None:
    """Refuse a parsed tree that would expand past `limit` nodes or MAX_DEPTH levels, without expanding it:
    each distinct node of the shared graph is measured once (size and height), so a bomb costs its own size."""
    known: dict[int, tuple[int, int]] = {}

    def measure(item: Any, depth: int, where: Loc) -> tuple[int, int]:
        if depth > MAX_DEPTH:
            raise SpecError(too_deep, where)
        if not isinstance(item, (LocDict, LocList)):
            return 1, 0
        size_height = known.get(id(item))
        if size_height is None:
            pairs = item.items() if isinstance(item, LocDict) else enumerate(item)
            parts = [measure(value, depth + 1, item.loc_of(key)) for key, value in pairs]
            size_height = 1 + sum(size for size, _ in parts), 1 + max((height for _, height in parts), default=0)
            known[id(item)] = size_height
            if size_height[0] > limit:
                raise SpecError(too_many, where)
        elif depth + size_height[1] > MAX_DEPTH:
            raise SpecError(too_deep, where)
        return size_height

    measure(node, 0, loc)


def to_loc(value: Any, loc: Loc) -> Any:
    """Plain Python data (an API override) as a raw tree located at `loc`, within the YAML limits."""
    return value if isinstance(value, (LocDict, LocList)) else unshare(value, loc, plain=True)


def read_file(path: Path) -> LocDict:
    """A spec file's raw tree, its bytes spent from the current `source_budget`. A path that is not a
    regular file (a directory, a FIFO, a device) is refused without reading from it."""
    with source_budget() as budget:
        data = _read_bytes(path, budget.bytes + 1)
        budget.spend_bytes(len(data), Loc(str(path), 1, 1))
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            before = data[:exc.start].decode("utf-8", "replace")
            raise SpecError(f"not UTF-8 text: byte 0x{data[exc.start]:02x} cannot be decoded",
                            _position(before, len(before), str(path))) from None
        raw = _parse(text, str(path), budget)
    if not isinstance(raw, LocDict):
        raise SpecError("a spec must be a YAML mapping (name, input, layers, ...)", loc_of(raw, Loc(str(path), 1, 1)))
    return raw


def not_a_file(mode: int) -> str:
    """'' for a regular file's `st_mode`, else what the path is instead."""
    if stat.S_ISREG(mode):
        return ""
    return "a directory" if stat.S_ISDIR(mode) else "not a regular file (a FIFO, socket or device)"


def _read_bytes(path: Path, limit: int) -> bytes:
    """At most `limit` bytes of a regular file. Opened non-blocking, so that a FIFO cannot hang the read."""
    where = Loc(str(path), 1, 1)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise SpecError(f"spec file not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise SpecError(f"cannot read the spec file: {exc.strerror if isinstance(exc, OSError) else exc}", where) from None
    kind = not_a_file(os.fstat(fd).st_mode)
    if kind:  # before fdopen, which refuses a directory with an OSError naming the descriptor
        os.close(fd)
        raise SpecError(f"cannot read the spec file: it is {kind}", where)
    with os.fdopen(fd, "rb") as handle:
        try:
            return handle.read(limit)
        except OSError as exc:
            raise SpecError(f"cannot read the spec file: {exc.strerror or exc}", where) from None


def to_plain(node: Any) -> Any:
    """The raw tree as plain dicts and lists (for checkpoints and JSON)."""
    if isinstance(node, dict):
        return {k: to_plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [to_plain(v) for v in node]
    return node
