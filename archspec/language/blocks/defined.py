"""Blocks defined in YAML: a spec's `blocks:` section declares block types without Python.

A definition has typed parameters (with defaults) and a body of existing blocks whose values may be
`= expressions` of the parameters and of `in_channels` (expr.py). A use, `{type: fire, squeeze: 16}`,
is a `DefinedBlock`, a macro block: its arguments are checked against the parameter types when the spec
is validated, the `channels` ones scale with the width multiplier, and at its input shape it expands to
its body (a `sequence` of a list, or the one block), so shapes, costs, module, memory and exports follow
from existing blocks. Errors inside the body are located in the definition and name the use.
"""
from __future__ import annotations

import copy
from functools import lru_cache
from typing import Annotated, Any, Callable, Literal

from pydantic import ConfigDict, Field, PrivateAttr, TypeAdapter, ValidationError, create_model

from ...errors import Loc, SpecError
from ...ir.activations import Activation
from ..expr import FUNCTIONS, MAX_VALUE, ExprError, evaluate, is_expression
from ..model import SpecModel
from ..scaling import Channels
from ..source import LocDict, LocList, loc_of, printable, tree_size
from .anyblock import BlockList
from .base import Block, MacroBlock, Name, Node, Shape, expanded_once
from .registry import BLOCK_TYPES, fields_of, unknown_field, unknown_type
from .sequence import Sequence

MAX_DEFINITIONS = 64
MAX_PARAMS = 32
# Uses expanded in one analysis (repeats and nesting multiply them): each costs about 0.2 ms of CPU, so
# a hostile spec is refused within about half a second. The bundled specs expand at most 9.
MAX_EXPANSIONS = 2_000
PARAM_TYPES: dict[str, Any] = {
    "channels": Channels,  # scaled by the width multiplier, as a block's Channels fields
    "int": Annotated[int, Field(ge=-MAX_VALUE, le=MAX_VALUE)],
    "float": Annotated[float, Field(ge=-MAX_VALUE, le=MAX_VALUE, allow_inf_nan=False)],
    "bool": bool,
    "activation": Activation,
}
RESERVED_PARAMS = frozenset({"type", "name", "in_channels", *FUNCTIONS})


class Param(SpecModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["channels", "int", "float", "bool", "activation"]
    default: bool | int | float | str | None = None  # absent (or null): the parameter is required
    description: Annotated[str, Field(max_length=500)] = ""


class Definition(SpecModel):
    model_config = ConfigDict(extra="forbid")

    description: Annotated[str, Field(max_length=2000)] = ""
    params: Annotated[dict[Name, Param], Field(max_length=MAX_PARAMS)] = {}
    body: Any  # a block, or a list of blocks; values may be "= expressions"
    _loc: Loc | None = PrivateAttr(default=None)  # where it is defined (set by the Library)
    _raw: Any = PrivateAttr(default=None)  # its raw mapping, with positions

    @property
    def loc(self) -> Loc | None:
        return self._loc


class Body(SpecModel):
    """What a use's substituted body is validated as."""

    body: BlockList


class DefinitionError(SpecError):
    """A problem inside a defined block's body, reported at the (outermost) use, naming the definition."""


class DefinedBlock(MacroBlock):
    """A use of a block type defined under `blocks:`; `type` is the definition's name."""

    type: str
    args: Any = None  # the use's arguments, an instance of its definition's argument model
    _library: "Library | None" = PrivateAttr(default=None)

    def expand(self, x: Shape) -> Block:
        assert self._library is not None, "a defined block is made by its spec's Library"
        return self._library.expand(self, x)

    def analyse(self, x: Shape, name: str, path: str) -> Node:
        """As a macro block's, but the body keeps its own positions (in the definition), and any error
        found in it is reported at the use, naming the definition."""
        assert self._library is not None
        try:
            expanded = self.expand(x)
            node = expanded.analyse(x, name, path)
        except SpecError as exc:
            if isinstance(exc, DefinitionError):  # from a use nested in the body: keep its definition's account
                raise DefinitionError(exc.message, self._loc, path, self.type) from None
            where = self._library.definitions[self.type].loc
            raise DefinitionError(f"in block '{self.type}' defined at {where}: {exc}", self._loc, path, self.type) from None
        node.block, node.expanded = self, expanded
        return node

    def legend_kind(self, node: Node) -> str:
        """Its body's kind (a residual, an inception, a group of layers), which says more than "other"."""
        return node.expanded.kind if node.expanded is not None else self.kind

    def settable_fields(self) -> set[str]:
        return set(type(self.args).model_fields)

    def with_fields(self, fields: dict[str, Any]) -> "DefinedBlock":
        args = type(self.args).model_validate({**self.args.model_dump(), **fields})
        return self.model_copy(update={"args": args})  # the copy keeps the library

    def later_repetition(self) -> "DefinedBlock":
        if "stride" not in type(self.args).model_fields or isinstance(self.args.stride, bool):
            return self
        copy = self.model_copy(update={"args": self.args.model_copy(update={"stride": 1})})
        copy._loc = self._loc
        return copy

    def hyper(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.args.model_dump().items())

    def dump(self, mode: str = "python") -> dict[str, Any]:
        """The use as a spec writes it: its type, name and arguments (defaults included)."""
        return {"type": self.type, **({"name": self.name} if self.name else {}), **self.args.model_dump(mode=mode)}


class Library:
    """The block types one spec defines (`blocks:`, validated), and what makes and expands their uses."""

    def __init__(self, definitions: dict[str, Definition], raw: LocDict, context: dict[str, Any],
                 translate: Callable[[ValidationError, LocDict], SpecError]) -> None:
        self.definitions, self.context, self.translate = definitions, context, translate
        if len(definitions) > MAX_DEFINITIONS:
            raise SpecError(f"a spec defines at most {MAX_DEFINITIONS} block types (this one {len(definitions)})",
                            raw.loc, "blocks")
        for name, definition in definitions.items():
            definition._loc, definition._raw = raw.loc_of(name), raw[name]
            _check_definition(name, definition)
        _check_cycles(definitions)
        params = {name: list(d.params) for name, d in definitions.items()}
        for name, definition in definitions.items():
            _check_body_fields(name, definition.body, params)
        self.models = {name: _args_model(name, _signature(d)) for name, d in definitions.items()}
        self.sizes = {name: tree_size(d.body) for name, d in definitions.items()}
        self.expansions_left = MAX_EXPANSIONS
        # {(type, arguments[, in_channels]): validated body}: uses with the same arguments (and input width, where
        # the body reads it) share one body, as a stage's repetitions share one expansion (DenseNet-201: 98 uses)
        self.bodies: dict[tuple[str, str, int | None], Block] = {}
        self.reads_in_channels: dict[str, bool] = {}
        self.transform: Callable[[Block], Block] | None = None

    def transformed(self, transform: Callable[[Block], Block]) -> "Library":
        """The same definitions, each use's body passed through `transform` once made (a derived spec's rewrite of
        its blocks, e.g. the deploy form's norms off, reaching the bodies too)."""
        derived = copy.copy(self)
        derived.bodies, derived.transform = {}, transform
        return derived

    def use(self, raw: dict[str, Any]) -> DefinedBlock:
        """A use of a defined type, its arguments checked (a ValidationError locates the bad one)."""
        kind = raw["type"]
        args = self.models[kind].model_validate(type(raw)({k: v for k, v in raw.items() if k not in ("type", "name")},
                                                          **_positions(raw)))
        block = DefinedBlock.model_validate({"type": kind, "name": raw.get("name"), "args": args})
        block._library, block._loc = self, getattr(raw, "loc", None)
        return block

    def expand(self, block: DefinedBlock, x: Shape) -> Block:
        definition = self.definitions[block.type]
        self.expansions_left -= 1
        if self.expansions_left < 0:
            raise SpecError(f"more than {MAX_EXPANSIONS:,} uses of blocks defined under 'blocks:' to expand (repeats and "
                            "nesting multiply them); use fewer", definition.loc, f"blocks.{block.type}")
        budget = self.context.get("budget")
        if budget is not None:  # expansions copy their body: they share the spec's budget of values
            budget[0] -= self.sizes[block.type]
            if budget[0] < 0:
                raise SpecError("the uses of blocks defined under 'blocks:' expand to too many values; "
                                "use fewer or smaller ones", definition.loc, f"blocks.{block.type}")
        return expanded_once(block, x, lambda x: self._shared_body(block, x))

    def _shared_body(self, block: DefinedBlock, x: Shape) -> Block:
        """The use's body, validated once for its arguments (and input width, where the body reads it)."""
        reads = self.reads_in_channels.get(block.type, True)  # unknown until its first body is made
        body = self.bodies.get((block.type, repr(block.args), x[0] if reads else None))
        if body is None:
            names = _Names({**block.args.model_dump(), "in_channels": x[0]})
            body = self._body(block, names)
            if self.transform is not None:
                body = self.transform(body)
            reads = self.reads_in_channels[block.type] = "in_channels" in names.read
            self.bodies[(block.type, repr(block.args), x[0] if reads else None)] = body
        return body

    def _body(self, block: DefinedBlock, names: dict[str, Any]) -> Block:
        """The use's body, its expressions evaluated, validated as blocks."""
        definition = self.definitions[block.type]
        body = _substitute(definition.body, names, block.type)
        many = isinstance(body, list)
        items = body if many else LocList([body], loc=loc_of(body, definition.loc), item_locs=[loc_of(body, definition.loc)])
        root = LocDict({"body": items}, loc=definition.loc, key_locs={"body": definition._raw.loc_of("body")})
        try:
            layers = Body.model_validate(root, context=self.context).body
        except ValidationError as exc:
            raise self.translate(exc, root) from None
        if not layers:
            raise SpecError("the body has no blocks", definition.loc, f"blocks.{block.type}")
        if not many:
            return layers[0]
        sequence = Sequence(type="sequence", layers=layers)
        sequence._loc = definition.loc
        return sequence


class _Names(dict[str, Any]):
    """The names a body's expressions may read, recording which they did."""

    def __init__(self, names: dict[str, Any]) -> None:
        super().__init__(names)
        self.read: set[str] = set()

    def __getitem__(self, name: str) -> Any:
        self.read.add(name)
        return super().__getitem__(name)


def _check_definition(name: str, definition: Definition) -> None:
    raw = definition._raw
    if name in BLOCK_TYPES:
        raise SpecError(f"'{name}' is a built-in block type; a defined block needs another name", definition.loc,
                        f"blocks.{name}")
    if "body" not in raw:
        raise SpecError("a defined block needs a 'body' (a block, or a list of blocks)", definition.loc, f"blocks.{name}")
    params = raw.get("params") if isinstance(raw.get("params"), LocDict) else LocDict()
    for param, spec in definition.params.items():
        where = params.loc_of(param)
        if param in RESERVED_PARAMS:
            raise SpecError(f"'{param}' cannot name a parameter (reserved: {', '.join(sorted(RESERVED_PARAMS))})",
                            where, f"blocks.{name}.params")
        if spec.default is not None:
            try:
                TypeAdapter(PARAM_TYPES[spec.type]).validate_python(spec.default, strict=spec.type != "float")
            except ValidationError as exc:
                raise SpecError(f"the default {spec.default!r} is not a {spec.type}: {exc.errors()[0]['msg']}",
                                where, f"blocks.{name}.params.{param}") from None


def _check_body_fields(name: str, template: Any, defined: dict[str, list[str]]) -> None:
    """The block types and field names a body writes are known ones, checked once, used or not (as `defaults` are):
    a misspelt field in a definition is an error before any use expands it."""
    if isinstance(template, LocList):
        for item in template:
            _check_body_fields(name, item, defined)
    if not isinstance(template, LocDict):
        return
    kind = template.get("type")
    if isinstance(kind, str) and not is_expression(kind):
        if kind not in BLOCK_TYPES and kind not in defined:
            raise SpecError(unknown_type(kind, defined), template.loc_of("type"), f"blocks.{name}.body")
        known = fields_of(kind, defined)
        for field in template:
            if field not in known | {"type", "name"}:
                raise SpecError(unknown_field(field, kind, known), template.loc_of(field), f"blocks.{name}.body", kind)
    for value in template.values():
        _check_body_fields(name, value, defined)


def _check_cycles(definitions: dict[str, Definition]) -> None:
    """A defined block may use other defined blocks, but not itself, directly or through others."""
    uses = {name: {kind for kind, _ in _types(d.body) if kind in definitions} for name, d in definitions.items()}
    done: set[str] = set()  # explored: no cycle runs through them (each is visited once)

    def visit(name: str, trail: list[str]) -> None:
        for used in sorted(uses[name] - done):
            if used in trail:
                cycle = " -> ".join([*trail[trail.index(used):], used])
                where = next(loc for kind, loc in _types(definitions[name].body) if kind == used)
                raise SpecError(f"a defined block cannot use itself: {cycle}", where, f"blocks.{name}")
            visit(used, [*trail, used])
        done.add(name)

    for name in definitions:
        visit(name, [name])


def _types(template: Any) -> list[tuple[str, Any]]:
    """Every block type a body names, with its position (a `type:` value, or a bare name in a list)."""
    found: list[tuple[str, Any]] = []
    if isinstance(template, LocDict):
        for key, value in template.items():
            if key == "type" and isinstance(value, str):
                found.append((value, template.loc_of(key)))
            found += _types(value)
    elif isinstance(template, list):
        for i, item in enumerate(template):
            if isinstance(item, str):
                found.append((item, template.loc_of(i) if isinstance(template, LocList) else None))
            found += _types(item)
    elif isinstance(template, str):
        found.append((template, None))
    return found


def _signature(definition: Definition) -> tuple[tuple[str, str, bool, Any], ...]:
    return tuple((p, s.type, s.default is not None, s.default) for p, s in definition.params.items())


@lru_cache(maxsize=256)
def _args_model(name: str, signature: tuple[tuple[str, str, bool, Any], ...]) -> type[SpecModel]:
    """The pydantic model of a use's arguments: one field per parameter, typed, with its default."""
    fields: dict[str, Any] = {param: (PARAM_TYPES[kind], default if has_default else ...)
                              for param, kind, has_default, default in signature}
    return create_model(f"{name}_args", __base__=SpecModel, **fields)


def _positions(raw: Any) -> dict[str, Any]:
    return {"loc": raw.loc, "key_locs": raw.key_locs} if isinstance(raw, LocDict) else {}


def _substitute(template: Any, names: dict[str, Any], kind: str) -> Any:
    """A copy of a body with every `= expression` replaced by its value (positions kept)."""
    if isinstance(template, LocDict):
        return LocDict({key: _value(value, names, kind, template.loc_of(key)) for key, value in template.items()},
                       loc=template.loc, key_locs=template.key_locs)
    if isinstance(template, LocList):
        return LocList([_value(item, names, kind, template.loc_of(i)) for i, item in enumerate(template)],
                       loc=template.loc, item_locs=template.item_locs)
    return _value(template, names, kind, None)


def _value(value: Any, names: dict[str, Any], kind: str, where: Any) -> Any:
    if isinstance(value, (LocDict, LocList)):
        return _substitute(value, names, kind)
    if not is_expression(value):
        return value
    try:
        return evaluate(value, names)
    except ExprError as exc:
        raise SpecError(f"'{printable(value, 60)}': {exc}", where, f"blocks.{kind}.body") from None


__all__ = ["Body", "DefinedBlock", "Definition", "Library", "Param"]
