"""The resolved spec: the raw tree validated into typed blocks, and its analysis."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from .blocks import BLOCK_TYPES, BlockList, Node
from .blocks.base import PosInt, Shape, check_unique_names, pair
from .blocks.sequence import Sequence
from .errors import Loc, SpecError, did_you_mean
from .source import LocDict, LocList, apply_overrides, load_raw, loc_of, parse_yaml, to_plain

INIT_SCHEMES = ("default", "resnet", "vgg")
SPEC_NAME = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]+$", max_length=100)]
REFERENCE = Annotated[str, Field(pattern=r"^(torchvision|timm):[A-Za-z0-9_]+$")]


class InputSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channels: PosInt = 3
    size: PosInt | tuple[PosInt, PosInt]

    @property
    def shape(self) -> Shape:
        return (self.channels, *pair(self.size))


class Spec(BaseModel):
    """A validated network spec. `analyse()` gives shapes, parameters and MACs without torch."""

    model_config = ConfigDict(extra="forbid")

    name: SPEC_NAME
    description: str = ""
    reference: REFERENCE | None = None  # the torchvision/timm model this spec reproduces, if any
    input: InputSpec
    init: Literal[INIT_SCHEMES] = "default"  # type: ignore[valid-type]
    defaults: dict[str, dict[str, Any]] = {}
    layers: BlockList

    _source: Any = PrivateAttr(default=None)
    _analysis: Node | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _check(self) -> "Spec":
        check_unique_names(self.layers, "")
        return self

    @property
    def source(self) -> dict[str, Any]:
        """The resolved spec as plain data (extends and overrides applied)."""
        return to_plain(self._source)

    def analyse(self) -> Node:
        """The analysis tree: every block's input/output shape, parameters and MACs."""
        if self._analysis is None:
            if not self.layers:
                raise SpecError("a spec needs at least one layer", loc_of(self._source, None), "layers")
            network = Sequence(type="sequence", layers=self.layers)
            self._analysis = network.analyse(self.input.shape, self.name, "")
        return self._analysis

    @property
    def params(self) -> int:
        return self.analyse().params

    @property
    def macs(self) -> int:
        return self.analyse().macs

    @property
    def output_shape(self) -> Shape:
        return self.analyse().out_shape


def load(path: str | Path, overrides: dict[str, Any] | list[str] | None = None, *, analyse: bool = True) -> Spec:
    """Read, resolve and validate a spec file; with `analyse`, also check every shape."""
    raw = apply_overrides(load_raw(path), overrides)
    return resolve(raw, analyse=analyse)


def loads(text: str, file: str = "<string>", overrides: dict[str, Any] | list[str] | None = None) -> Spec:
    """Like `load`, from YAML text (no `extends`)."""
    raw = parse_yaml(text, file)
    if not isinstance(raw, LocDict):
        raise SpecError("a spec must be a YAML mapping (name, input, layers, ...)", Loc(file, 1, 1))
    return resolve(apply_overrides(raw, overrides))


def resolve(raw: LocDict, analyse: bool = True) -> Spec:
    """Validate a raw tree into a Spec; every problem becomes a located SpecError."""
    defaults = raw.get("defaults")
    _check_defaults(defaults)
    try:
        spec = Spec.model_validate(raw, context={"defaults": defaults if isinstance(defaults, LocDict) else {}})
    except ValidationError as exc:
        raise _translate(exc, raw) from None
    spec._source = raw
    if analyse:
        spec.analyse()
    return spec


def _check_defaults(defaults: Any) -> None:
    if not isinstance(defaults, LocDict):
        return
    for type_name, fields in defaults.items():
        loc = defaults.loc_of(type_name)
        if type_name not in BLOCK_TYPES:
            raise SpecError(f"unknown block type '{type_name}'{did_you_mean(type_name, BLOCK_TYPES)}", loc, f"defaults.{type_name}")
        if not isinstance(fields, LocDict):
            raise SpecError("defaults for a block type are a mapping of its fields", loc, f"defaults.{type_name}")
        known = set(BLOCK_TYPES[type_name].model_fields) - {"type", "name"}
        for field in fields:
            if field not in known:
                raise SpecError(f"'{field}' is not a field of {type_name}{did_you_mean(field, known)}",
                                fields.loc_of(field), f"defaults.{type_name}", type_name)


def _translate(exc: ValidationError, raw: LocDict) -> SpecError:
    """The most specific pydantic error, located in the raw tree and worded for a spec author."""
    errors = exc.errors()
    error = max(errors, key=lambda e: len(e["loc"]))  # a union's deepest branch says the most
    position, block, path, field = _locate(error["loc"], raw)
    kind = str(block.get("type", "")) if block else ""
    message = _message(error, block, kind, field)
    if block is not None and error["type"] in ("union_tag_invalid", "union_tag_not_found") and isinstance(block, LocDict):
        position = block.loc_of("type")
    others = {_locate(e["loc"], raw)[2:] for e in errors} - {(path, field)}
    more = f" (+{len(others)} more problems)" if others else ""
    return SpecError(message + more, position, path, kind if kind in BLOCK_TYPES else "")


def _locate(steps: tuple[Any, ...], raw: LocDict) -> tuple[Loc, Any, str, str | None]:
    """Follow a pydantic error location through the raw tree: (position, block dict, block path, field)."""
    node: Any = raw
    position, block, path, field = raw.loc, None, [], None
    for step in steps:
        if isinstance(node, LocDict) and isinstance(step, str) and step in node:
            position, node, field = node.loc_of(step), node[step], step
        elif isinstance(node, LocList) and isinstance(step, int) and 0 <= step < len(node):
            position, node = node.loc_of(step), node[step]
        else:
            continue  # a union member's tag, or a key that is absent (missing / extra)
        if isinstance(node, str) and isinstance(step, int):
            node = {"type": node}
        if isinstance(node, dict) and ("type" in node or isinstance(step, int)):
            block, field = node, None
            path.append(str(node.get("name") or step))
        elif block is None and isinstance(step, str) and step != "layers":
            path.append(step)
    return position, block, ".".join(path), field


def _message(error: dict[str, Any], block: Any, kind: str, field: str | None) -> str:
    etype, last = error["type"], str(error["loc"][-1]) if error["loc"] else ""
    if etype == "union_tag_invalid":
        return f"unknown block type '{kind}'{did_you_mean(kind, BLOCK_TYPES)} (known: {', '.join(sorted(BLOCK_TYPES))})"
    if etype == "union_tag_not_found":
        return f"a block needs a 'type' (one of: {', '.join(sorted(BLOCK_TYPES))})"
    if etype == "model_attributes_type" or (etype == "model_type" and block is None):
        return f"expected a mapping here, got {error['input']!r}"
    fields = list(BLOCK_TYPES[kind].model_fields) if kind in BLOCK_TYPES else []
    if etype == "extra_forbidden":
        owner = kind or "this section"
        return f"'{last}' is not a field of {owner}{did_you_mean(last, fields)}"
    if etype == "missing":
        return f"missing required field '{last}'"
    name = field or last
    return f"'{name}': {error['msg']} (got {error['input']!r})"
