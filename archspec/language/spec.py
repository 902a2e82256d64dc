"""The resolved spec: the raw tree validated into typed blocks, and its analysis."""
from __future__ import annotations

import re
import reprlib
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo, field_validator, model_validator

from .blocks import BLOCK_TYPES, AuxHead, BlockList, Node
from .blocks.anyblock import holds_blocks, locate
from .blocks.base import Name, PosInt, Shape, block_budget, check_unique_names, pair, residual_units
from .blocks.registry import fields_of, unknown_field, unknown_type
from .blocks.defined import Definition, Library
from .blocks.sequence import Sequence
from ..errors import Loc, SpecError, did_you_mean
from .init_rules import InitRules
from .preprocess import Preprocess, TTASpec
from .scaling import Compound, ScaledField, Scaling, scale_blocks
from .inherit import apply_overrides, fold, load_raw
from .model import SpecModel
from .source import MAX_DEFAULT_VALUES, LocDict, LocList, loc_of, parse_yaml, printable, source_budget, to_plain
from .source import tree_size as _size

INIT_SCHEMES = ("default", "resnet", "vgg", "googlenet", "inception_v3", "efficientnet", "mobilenet",
                "timm_resnet", "timm_efficientnet", "squeezenet")
VARIANT_NAME = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]+$", max_length=64)]
SPEC_NAME = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]+$", max_length=100)]
REFERENCE = Annotated[str, Field(pattern=r"^(torchvision|timm):[A-Za-z0-9_]+$")]
FAMILY = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\- ]+$", max_length=64)]


class InputSpec(SpecModel):
    model_config = ConfigDict(extra="forbid")

    channels: PosInt = 3
    size: PosInt | tuple[PosInt, PosInt]

    @property
    def shape(self) -> Shape:
        return (self.channels, *pair(self.size))


class Spec(SpecModel):
    """A validated network spec. `analyse()` gives shapes, parameters and MACs without torch."""

    model_config = ConfigDict(extra="forbid")

    name: SPEC_NAME
    description: str = ""
    reference: REFERENCE | None = None  # the torchvision/timm model this spec reproduces, if any
    family: FAMILY | None = None  # the family `list` groups it in (inherited through extends); None: its name
    input: InputSpec
    init: Literal[INIT_SCHEMES] | InitRules = "default"  # type: ignore[valid-type]  # a preset, or rules per op kind
    defaults: dict[str, dict[str, Any]] = {}
    blocks: dict[Name, Definition] = {}  # block types defined in YAML (validated before the layers that use them)
    layers: BlockList
    aux_heads: list[AuxHead] = []  # training-only heads; `--set aux_heads=[]` removes them
    stochastic_depth: Annotated[float, Field(ge=0, lt=1)] = 0.0  # rate k/n of residual unit k of n
    # k/n (torchvision's EfficientNet) or k/(n-1), torch.linspace(0, rate, n) (torchvision's ConvNeXt, timm)
    stochastic_depth_rule: Literal["efficientnet", "linspace"] = "efficientnet"
    scaling: Annotated[Scaling, Field(validate_default=True)] = {}  # type: ignore[assignment]  # built when used
    compound: Compound | None = None
    variants: dict[VARIANT_NAME, dict[str, Any]] = {}  # name -> dotted-path overrides
    variant: VARIANT_NAME | None = None  # the variant applied (selected by `variant:` or --variant)
    preprocess: Annotated[Preprocess, Field(validate_default=True)] = {}  # type: ignore[assignment]
    tta: TTASpec | None = None  # test-time augmentation, used by `predict --tta` and archspec.backend.tta

    _source: Any = PrivateAttr(default=None)
    _analysis: Node | None = PrivateAttr(default=None)
    _scaled: list[ScaledField] = PrivateAttr(default_factory=list)

    @field_validator("blocks", mode="wrap")
    @classmethod
    def _library(cls, raw: Any, handler: Any, info: ValidationInfo) -> dict[str, Definition]:
        """The defined block types, checked and put in the context, where the layers' validation finds them."""
        definitions = handler(raw)
        if definitions and isinstance(raw, LocDict) and info.context is not None:
            info.context["library"] = Library(definitions, raw, info.context, _translate)
        return definitions

    @field_validator("aux_heads", mode="wrap")
    @classmethod
    def _locate_heads(cls, raw: Any, handler: Any) -> list[AuxHead]:
        heads = handler(raw)
        return [locate(head, item) for head, item in zip(heads, raw)] if isinstance(raw, list) else heads

    @model_validator(mode="after")
    def _check(self) -> "Spec":
        check_unique_names([*self.layers, *self.aux_heads], "")
        return self

    @property
    def source(self) -> dict[str, Any]:
        """The resolved spec as plain data (extends and overrides applied)."""
        return to_plain(self._source)

    def analyse(self) -> Node:
        """The analysis tree: every block's input/output shape, parameters and MACs."""
        if self._analysis is None:
            with block_budget():  # one budget for the trunk and the auxiliary heads (blocks/base.py)
                self._analysis = self._analyse()
        return self._analysis

    def _analyse(self) -> Node:
        if not self.layers:
            raise SpecError("a spec needs at least one layer", loc_of(self._source, None), "layers")
        root = Sequence(type="sequence", layers=self.layers).analyse(self.input.shape, self.name, "")
        trunk = {node.name: node for node in root.children}
        for head in self.aux_heads:
            if head.tap not in trunk:
                head.fail(head.name, f"'tap' names no top-level layer: '{head.tap}'{did_you_mean(head.tap, trunk)}")
            node = head.analyse(trunk[head.tap].out_shape, head.name, head.name)
            root.children.append(node)
            root.params += node.params
        # Stochastic depth grows linearly with the residual unit's index over all of them (torchvision's rule).
        units = list(residual_units([c for c in root.children if not c.aux]))
        steps = len(units) - 1 if self.stochastic_depth_rule == "linspace" else len(units)
        for index, node in enumerate(units):
            node.drop_rate = self.stochastic_depth * index / steps if steps else 0.0
        return root

    @property
    def params(self) -> int:
        return self.analyse().params

    @property
    def macs(self) -> int:
        return self.analyse().macs

    @property
    def aux_params(self) -> int:
        """Parameters of the training-only auxiliary heads (included in `params`)."""
        return sum(node.params for node in self.analyse().children if node.aux)

    @property
    def aux_macs(self) -> int:
        """MACs of the auxiliary heads, spent in training only (not in `macs`)."""
        return sum(node.macs for node in self.analyse().children if node.aux)

    @property
    def output_shape(self) -> Shape:
        return self.analyse().out_shape

    @property
    def scaled_fields(self) -> list[ScaledField]:
        """Every field the scaling rules changed: its base value, raw scaled value and rounding."""
        return list(self._scaled)

    def apply_scaling(self) -> None:
        """Scale channels, repeats and (for a compound member) the resolution, in place."""
        scaling, size = self.scaling, self.input.size
        if scaling.phi is not None:
            if self.compound is None:
                section = self._source.get("scaling") if isinstance(self._source, LocDict) else None
                where = section.loc_of("phi") if isinstance(section, LocDict) and "phi" in section else \
                    loc_of(self._source, None)  # where phi is set: a file, or `override scaling.phi` (--phi)
                raise SpecError("'scaling.phi' needs a 'compound' rule (alpha, beta, gamma)", where, "scaling")
            c, phi = self.compound, scaling.phi
            scaling = scaling.model_copy(update={"width": scaling.width * c.beta ** phi, "depth": scaling.depth * c.alpha ** phi})
            scaled = tuple(round(s * c.gamma ** phi) for s in pair(size))
            if not all(1 <= s <= 1_000_000 for s in scaled):
                raise SpecError(f"compound scaling with phi={phi:g} makes the input size {scaled[0]}x{scaled[1]}, "
                                "outside 1..1000000", self._source.loc_of("scaling") if isinstance(self._source, LocDict) else None,
                                "scaling")
            size = scaled[0] if isinstance(size, int) else scaled
            self.input = self.input.model_copy(update={"size": size})
            self.scaling = scaling
        if scaling.width == 1.0 and scaling.depth == 1.0:
            return
        self._scaled = []
        self.layers = scale_blocks(self.layers, scaling, "", self._scaled)
        self.aux_heads = scale_blocks(self.aux_heads, scaling, "", self._scaled)


Overrides = dict[str, Any] | list[str] | None


def load(path: str | Path, overrides: Overrides = None, *, variant: str | None = None, phi: float | None = None,
         analyse: bool = True) -> Spec:
    """Read, resolve and validate a spec file; with `analyse`, also check every shape.

    `variant` picks an entry of the spec's `variants` table (applied after every file, before `overrides`,
    so these win); `phi` makes a compound-scaling member (the spec needs a `compound` rule)."""
    with source_budget():  # the files, the variant and the overrides share the limits
        return prepare(load_raw(path, variant), overrides, phi, analyse)


def as_spec(spec: str | Path | Spec, overrides: Overrides = None, *, variant: str | None = None,
            phi: float | None = None) -> Spec:
    """What every API entry (build, export, train, bench, summary) works on: a path is loaded with
    `overrides`, `variant` and `phi`; a loaded Spec is final, and giving those with it is an error."""
    if not isinstance(spec, Spec):
        return load(spec, overrides, variant=variant, phi=phi)
    if overrides or variant or phi is not None:
        raise ValueError("overrides, variant and phi apply to a spec file; pass its path, or call "
                         "archspec.load(path, overrides, variant=..., phi=...)")
    return spec


def loads(text: str, file: str = "<string>", overrides: Overrides = None, *, variant: str | None = None,
          phi: float | None = None) -> Spec:
    """Like `load`, from YAML text (no `extends`)."""
    with source_budget():
        raw = parse_yaml(text, file)
        if not isinstance(raw, LocDict):
            raise SpecError("a spec must be a YAML mapping (name, input, layers, ...)", Loc(file, 1, 1))
        if "extends" in raw:
            raise SpecError("'extends' needs a file to resolve the parent from; use archspec.load(path)", raw.loc_of("extends"))
        return prepare(fold([raw], variant), overrides, phi)


def prepare(raw: LocDict, overrides: Overrides = None, phi: float | None = None, analyse: bool = True) -> Spec:
    """Overrides (after the files and the variant: inherit.py), then validation, scaling and (optionally) analysis."""
    apply_overrides(raw, overrides)
    if phi is not None:
        apply_overrides(raw, {"scaling.phi": phi})
    return resolve(raw, analyse)


def resolve(raw: LocDict, analyse: bool = True) -> Spec:
    """Validate a raw tree into a Spec; every problem becomes a located SpecError."""
    defaults = raw.get("defaults")
    _check_defaults(defaults, _defined(raw))
    defaults = defaults if isinstance(defaults, LocDict) else {}
    # Each block gets its own copy of its type's defaults: the values they add share one budget.
    context = {"defaults": defaults, "budget": [MAX_DEFAULT_VALUES], "sizes": {k: _size(v) for k, v in defaults.items()}}
    try:
        spec = Spec.model_validate(raw, context=context)
    except ValidationError as exc:
        raise _translate(exc, raw) from None
    spec._source = raw
    spec.apply_scaling()
    if analyse:
        spec.analyse()
    return spec


def _defined(raw: Any) -> dict[str, list[str]]:
    """{block type defined under `blocks:`: its parameters}, read from the raw tree (for messages)."""
    blocks = raw.get("blocks") if isinstance(raw, dict) else None
    if not isinstance(blocks, dict):
        return {}
    return {str(name): list(d["params"]) if isinstance(d, dict) and isinstance(d.get("params"), dict) else []
            for name, d in blocks.items()}


def _check_defaults(defaults: Any, defined: dict[str, list[str]]) -> None:
    if not isinstance(defaults, LocDict):
        return
    for type_name, fields in defaults.items():
        loc = defaults.loc_of(type_name)
        if type_name not in BLOCK_TYPES and type_name not in defined:
            raise SpecError(unknown_type(type_name, defined), loc, f"defaults.{printable(type_name, 64)}")
        if not isinstance(fields, LocDict):
            raise SpecError("defaults for a block type are a mapping of its fields", loc, f"defaults.{type_name}")
        model_fields = BLOCK_TYPES[type_name].model_fields if type_name in BLOCK_TYPES else {}
        known = fields_of(type_name, defined)
        for field in fields:
            if field not in known:
                raise SpecError(unknown_field(field, type_name, known), fields.loc_of(field), f"defaults.{type_name}",
                                type_name)
            if field in model_fields and holds_blocks(model_fields[field]):
                # A default that holds blocks would be applied inside itself, without end.
                raise SpecError(f"'{field}' holds blocks and cannot have a default; write it in each {type_name}",
                                fields.loc_of(field), f"defaults.{type_name}", type_name)


def _translate(exc: ValidationError, raw: LocDict) -> SpecError:
    """The most specific pydantic error, located in the raw tree and worded for a spec author."""
    errors = exc.errors()
    # A union's deepest branch says the most; a misspelt key explains a missing one.
    error = max(errors, key=lambda e: (len(e["loc"]), e["type"] == "extra_forbidden"))
    place = _place(error, raw)
    position, block, path, field = place[:4]
    kind = str(block.get("type", "")) if block else ""
    defined = _defined(raw)
    message = _message(error, block, kind, field, defined) + (f" (from defaults.{kind})" if place.default else "")
    if block is not None and error["type"] in ("union_tag_invalid", "union_tag_not_found") and isinstance(block, LocDict):
        position = block.loc_of("type")
    others = {_place(e, raw)[2:4] for e in errors} - {(path, field)}
    more = f" (+{len(others)} more problems)" if others else ""
    return SpecError(message + more, position, path, kind if kind in BLOCK_TYPES or kind in defined else "")


class _Place(NamedTuple):
    position: Loc
    block: Any  # the raw mapping of the block the error is in, if any
    path: str  # the block's path
    field: str | None
    default: bool  # the value is the block type's default (`defaults`), located there


def _place(error: dict[str, Any], raw: LocDict) -> _Place:
    if error["type"] != "extra_forbidden":
        return _locate(error["loc"], raw)
    # An unknown key belongs to the block (or section) that holds it, not to its own value.
    place = _locate(error["loc"][:-1], raw)
    owner, key = _node_at(error["loc"][:-1], raw), str(error["loc"][-1])
    return place._replace(position=owner.loc_of(key) if isinstance(owner, LocDict) else place.position, field=key)


def _locate(steps: tuple[Any, ...], raw: LocDict) -> _Place:
    """Follow a pydantic error location through the raw tree: the position, block dict, block path and field.
    A field a block does not write but takes from `defaults` is followed there: located where it was written."""
    node: Any = raw
    position, block, path, field, default = raw.loc, None, [], None, False
    in_block_list = False
    defaults = raw.get("defaults") if isinstance(raw.get("defaults"), LocDict) else LocDict()
    for step in steps:
        if isinstance(node, LocDict) and isinstance(step, str) and step in node:
            position, node, field = node.loc_of(step), node[step], step
        elif isinstance(node, LocList) and isinstance(step, int) and 0 <= step < len(node):
            position, node = node.loc_of(step), node[step]
        elif block is not None and node is block and isinstance(step, str) and step in (given := _defaults_for(defaults, block)):
            position, node, field, default = given.loc_of(step), given[step], step, True
        else:
            continue  # a union member's tag, or a key that is absent (missing / extra)
        if isinstance(node, str) and isinstance(step, int):
            node = {"type": node}
        if in_block_list and not isinstance(node, dict):
            block, field = None, None
            path.append(str(step))  # a layer list item that is not a block at all
        in_block_list = step in ("layers", "body") and isinstance(node, LocList)
        if isinstance(node, dict) and ("type" in node or isinstance(step, int)):
            block, field, default = node, None, False
            path.append(printable(str(node.get("name") or step), 64))
        elif isinstance(step, str) and step not in ("layers", "body", "aux_heads") and (block is None or _is_block_list(node)):
            path.append(printable(step, 64))  # a top-level section, or a named list inside a block (a branch, a shortcut)
    return _Place(position, block, ".".join(path), field, default)


def _defaults_for(defaults: LocDict, block: dict[str, Any]) -> LocDict:
    given = defaults.get(block["type"]) if isinstance(block.get("type"), str) else None
    return given if isinstance(given, LocDict) else LocDict()


def _node_at(steps: tuple[Any, ...], raw: LocDict) -> Any:
    node: Any = raw
    for step in steps:
        if isinstance(node, dict) and isinstance(step, str) and step in node:
            node = node[step]
        elif isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node):
            node = node[step]
    return node


def _is_block_list(node: Any) -> bool:
    return isinstance(node, LocList) and all(isinstance(item, (dict, str)) for item in node)


def _message(error: dict[str, Any], block: Any, kind: str, field: str | None, defined: dict[str, list[str]]) -> str:
    etype, last = error["type"], str(error["loc"][-1]) if error["loc"] else ""
    tags = re.findall(r"'([^']*)'", str(error.get("ctx", {}).get("expected_tags", "")))
    if etype == "union_tag_invalid" and tags and not set(tags) & set(BLOCK_TYPES):  # not a block: an init rule
        tag = str(error["ctx"].get("tag", ""))
        return f"unknown type '{printable(tag)}'{did_you_mean(tag, tags)} (known: {', '.join(tags)})"
    if etype == "union_tag_invalid":
        if isinstance(block, dict) and not isinstance(block.get("type"), str):
            return f"a block's 'type' is the name of a block type, not {_short(block.get('type'))}"
        return (f"{unknown_type(kind, defined)} "
                f"(known: {', '.join(sorted(BLOCK_TYPES))}" + (f"; defined: {', '.join(sorted(defined))}" if defined else "") + ")")
    if etype == "union_tag_not_found":
        return f"a block needs a 'type' (one of: {', '.join(sorted(BLOCK_TYPES))})"
    if etype == "model_attributes_type" or (etype == "model_type" and block is None):
        return f"expected a mapping here, got {_short(error['input'])}"
    fields = list(BLOCK_TYPES[kind].model_fields) if kind in BLOCK_TYPES else ["type", "name", *defined.get(kind, [])]
    if etype == "extra_forbidden":
        if not kind and len(error["loc"]) == 1:
            return f"'{printable(last)}' is not a top-level key{did_you_mean(last, Spec.model_fields)}"
        return unknown_field(last, kind or "this section", fields)
    if etype == "missing":
        return f"missing required field '{last}'"
    name = field or last
    hint = ""
    if etype == "literal_error" and isinstance(error["input"], str):  # e.g. 'ReLU' for 'relu'
        hint = did_you_mean(error["input"], re.findall(r"'([^']*)'", str(error.get("ctx", {}).get("expected", ""))))
    return f"'{printable(name)}': {error['msg']} (got {_short(error['input'])}){hint}"


class _Repr(reprlib.Repr):
    """A bounded repr of raw-tree values: long lists, strings and numbers are cut short."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxlist, self.maxdict, self.maxstring, self.maxother, self.maxlong = 3, 6, 6, 60, 60, 40

    def repr_LocDict(self, value: Any, level: int) -> str:
        return self.repr_dict(value, level)

    def repr_LocList(self, value: Any, level: int) -> str:
        return self.repr_list(value, level)

    def repr_int(self, value: int, level: int) -> str:
        return f"an integer of {len(str(abs(value))):,} digits" if abs(value) >= 10 ** self.maxlong else repr(value)


def _short(value: Any) -> str:
    return _Repr().repr(value)
