"""What every block type shares: the pydantic base, the analysis node, shape helpers.

A block type is one file holding its pydantic model, its shape rule and analytic cost
(`analyse`), and its torch builder (`build`, which imports torch lazily).
"""
from __future__ import annotations

from contextlib import contextmanager
from functools import cache
from contextvars import ContextVar
from math import prod
from typing import TYPE_CHECKING, Annotated, Any, Callable, ClassVar, Iterator, Literal, NoReturn, Sequence

from pydantic import ConfigDict, Field, PrivateAttr, ValidationError

from ...errors import Loc, SpecError
from ...ir.node import Node, Shape, child_path, fmt_shape
from ..model import SpecModel
from ..scaling import annotation_parts

if TYPE_CHECKING:
    from torch import nn

    from ...ir.expr import Expr
    from ...ir.memory import MemoryReplay, Tensor

Name = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$", max_length=64)]
PosInt = Annotated[int, Field(ge=1, le=1_000_000)]
NonNegInt = Annotated[int, Field(ge=0, le=1_000_000)]
Pair = PosInt | tuple[PosInt, PosInt]
NonNegPair = NonNegInt | tuple[NonNegInt, NonNegInt]
Norm = Literal["none", "batch"]
BnEps = Annotated[float, Field(gt=0, lt=1)]
BnMomentum = Annotated[float, Field(gt=0, le=1)]
InitStd = Annotated[float, Field(gt=0, le=10)]

# Analysis budget: repeats multiply (a stage of 10,000 holding a stage of 10,000 is 10^8 blocks), so one
# analysis visits at most MAX_BLOCKS blocks (at 30-60 us each with the validation of macro expansions, well
# under a second); the largest bundled spec (EfficientNet-B7) has under 300. No shape dimension may exceed MAX_DIM (2^40), which keeps every
# later computation exact and finite.
MAX_BLOCKS = 10_000
MAX_DIM = 2 ** 40
_BUDGET: ContextVar[list[int] | None] = ContextVar("archspec_block_budget", default=None)
# {(id(block), input shape): (block, its expansion)} of one analysis (the block is kept, so its id is not reused)
_EXPANSIONS: ContextVar[dict[tuple[int, Shape], tuple["Block", "Block"]] | None] = ContextVar("archspec_expansions",
                                                                                           default=None)


@contextmanager
def block_budget(limit: int = MAX_BLOCKS) -> Iterator[None]:
    """One analysis: the blocks visited inside share `limit` (nested calls keep the outer budget), and a macro
    block expands once per input shape."""
    if _BUDGET.get() is not None:
        yield
        return
    token, expansions = _BUDGET.set([limit]), _EXPANSIONS.set({})
    try:
        yield
    finally:
        _BUDGET.reset(token)
        _EXPANSIONS.reset(expansions)


def expanded_once(block: "Block", x: Shape, expand: Callable[[Shape], "Block"]) -> "Block":
    """`expand(x)`, or what it gave for this block at this input shape before in this analysis: a stage's later
    repetitions are one block, so their expansion (and its validation) is done once and shared by their nodes."""
    memo = _EXPANSIONS.get()
    if memo is None:
        return expand(x)
    key = (id(block), x)
    if key not in memo:
        memo[key] = (block, expand(x))
    return memo[key][1]


def pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (value[0], value[1])


class Block(SpecModel):
    """Base of every block model. Subclasses set `type: Literal[...]` and their fields."""

    model_config = ConfigDict(extra="forbid")

    type: str
    name: Name | None = None
    _loc: Loc | None = PrivateAttr(default=None)  # where the spec writes it (set by `locate`)
    # The diagram colours a block by its kind and lists the kinds in its legend ("other": plain white).
    kind: ClassVar[str] = "other"
    # Counted by the stochastic-depth rule even where it expands to no skip (torchvision's EfficientNet
    # numbers every MBConv, residual or not); a node that is a residual always counts.
    residual_unit: ClassVar[bool] = False
    # Why `scaling.width` cannot apply to this block (its widths derive from other parameters); "": it can.
    width_refused: ClassVar[str] = ""

    # -- analysis -------------------------------------------------------------------------
    def analyse(self, x: Shape, name: str, path: str) -> Node:
        """Shape rule and analytic cost. Leaves override `infer`; composites override this."""
        out, params, macs = self.infer(x, path)
        return Node(self, name, path, x, out, params, macs)

    def infer(self, x: Shape, path: str) -> tuple[Shape, int, int]:
        """(output shape, parameters, MACs) of a leaf block at input shape `x`."""
        raise NotImplementedError(f"{type(self).__name__} must implement infer or analyse")

    def build(self, node: Node) -> "nn.Module":
        raise NotImplementedError(f"{type(self).__name__} has no torch builder")

    def source(self, node: Node) -> "Expr":
        """The Python source of the module `build` makes (`archspec/ir/expr.py`): the Python export's form."""
        raise NotImplementedError(f"{type(self).__name__} has no Python-source form")

    def hyper(self) -> str:
        """Key hyper-parameters, one short line, for summaries and diagrams."""
        return ""

    # -- memory (summary.py's symbolic run of the compiled module) -------------------------------
    def replay(self, run: "MemoryReplay", node: Node, x: "Tensor") -> "Tensor":
        """What this leaf's module allocates, frees and hands to autograd, on input `x` (borrowed);
        returns a new reference to its output. The default: a new output, its input kept for backward."""
        y = run.new(prod(node.out_shape))
        run.keep(x)
        return y

    def output_layout(self, node: Node, nhwc: bool) -> bool:
        """Whether this leaf's output is laid out channels-last, given its input's layout: as its input by
        default (convs, norms and elementwise ops follow their input's memory format)."""
        return nhwc

    def fresh_output(self, node: Node) -> bool:
        """Whether this leaf's module returns a new tensor that its own backward does not read, so that
        nn.Residual may add the shortcut into it in place (`ir.memory.ends_fresh`)."""
        return False

    def buffers(self, node: Node) -> tuple[int, int]:
        """(float elements, int64 elements) of this leaf module's buffers (batch-norm running statistics)."""
        return 0, 0

    def derivation(self, x: Shape) -> list[str]:
        """How a block derives what it expands to from its parameters, as lines for `scale --explain`
        (a regnet block's stages); none by default."""
        return []

    def scaled_value(self, field: str, base: int, scaled: int) -> int:
        """The value a scaling field takes: `scaled`, the multiplier's rounding of `base`, unless the block
        has its own rule (a conv with `scales_with_width: up`)."""
        return scaled

    def extra_scaled_fields(self) -> dict[str, str]:
        """Fields that scale in this instance beyond those typed Channels / Repeats: {field: 'width' | 'depth'}."""
        return {}

    def legend_kind(self, node: Node) -> str:
        """Its kind in a diagram's legend, at its analysed node: `kind`."""
        return self.kind

    def settable_fields(self) -> set[str]:
        """The fields a stage's `first` and `each` may give per repetition."""
        return set(type(self).model_fields) - {"type", "name"}

    def with_fields(self, fields: dict[str, Any]) -> "Block":
        """This block with `fields` replaced, validated again (a ValidationError names the field)."""
        return type(self).model_validate({**self.model_dump(), **fields})

    def later_repetition(self) -> "Block":
        """This block as a stage's later repetitions take it: at stride 1 (only the first one strides)."""
        if "stride" not in type(self).model_fields:
            return self
        later = self.model_copy(update={"stride": 1})
        later._loc = self._loc
        return later

    def fail(self, path: str, message: str) -> NoReturn:
        raise SpecError(message, self._loc, path, self.type)

    def need_image(self, x: Shape, path: str) -> tuple[int, int, int]:
        if len(x) != 3:
            self.fail(path, f"expects a (channels, height, width) input but gets {fmt_shape(x)}; "
                            "a flatten came too early?")
        return x[0], x[1], x[2]

    def located(self, loc: Loc | None) -> "Block":
        """This block (and the blocks it holds) located at `loc`: used by macro blocks."""
        self._loc = loc
        for value in (getattr(self, name) for name in _block_fields(type(self))):
            if isinstance(value, Block):
                value.located(loc)
            elif isinstance(value, (list, dict)):  # a list of blocks, or inception branches (lists of blocks)
                for item in value.values() if isinstance(value, dict) else value:
                    for block in item if isinstance(item, list) else (item,):
                        if isinstance(block, Block):
                            block.located(loc)
        return self


@cache
def _block_fields(model: type[Block]) -> tuple[str, ...]:
    """The fields of a block model that hold blocks (a list of layers, a stage's block, an SE, branches)."""
    return tuple(name for name, info in model.model_fields.items()
                 if any(isinstance(part, type) and issubclass(part, Block) for part in annotation_parts(*info.metadata, info.annotation)))


class MacroBlock(Block):
    """A block defined by what it expands to at its input shape (e.g. bottleneck -> residual of convs)."""

    def expand(self, x: Shape) -> Block:
        raise NotImplementedError

    def analyse(self, x: Shape, name: str, path: str) -> Node:
        try:
            expanded = expanded_once(self, x, lambda x: self.expand(x).located(self._loc))
        except ValidationError as exc:  # e.g. a layer wider than the 1,000,000-channel bound
            self.fail(path, f"does not expand at input {fmt_shape(x)}: {validation_message(exc)}")
        node = expanded.analyse(x, name, path)
        node.block, node.expanded = self, expanded
        return node

    def expand_node(self, node: Node) -> Block:
        """The expansion an analysed node stands for (what its module is built from)."""
        return node.expanded if node.expanded is not None else self.expand(node.in_shape)


class NamedPath(Block):
    """The analysis node of a named path inside a block (an inception branch, a shortcut path).
    Not a spec block type: it is not in the registry."""

    kind = "stage / group"
    type: str


def validation_message(exc: ValidationError, kind: str | None = None) -> str:
    """A pydantic error raised while expanding a block (or making a repetition of a block of type `kind`), as one
    line for a spec author."""
    error = exc.errors()[0]
    field = ".".join(str(step) for step in error["loc"])
    return f"its {kind or exc.title.lower()}'s '{field}' would be {error['input']!r}: {error['msg']}"


def chain(blocks: Sequence[tuple[str, Block]], x: Shape, path: str) -> list[Node]:
    """Analyse blocks one after another, each fed the previous output, within the block budget."""
    with block_budget():
        budget = _BUDGET.get()
        nodes = []
        for name, block in blocks:
            budget[0] -= 1
            if budget[0] < 0:
                block.fail(child_path(path, name), f"the network expands to more than {MAX_BLOCKS:,} blocks "
                                                   "(repeats multiply); reduce the stages' 'repeat'")
            node = block.analyse(x, name, child_path(path, name))
            if max(node.out_shape) > MAX_DIM:
                block.fail(node.path, f"its output {fmt_shape(node.out_shape)} has a dimension over 2^40; "
                                      "the shapes grow without bound")
            nodes.append(node)
            x = node.out_shape
        return nodes


def composite(block: Block, name: str, path: str, x: Shape, children: list[Node], out: Shape,
              form: str = "chain") -> Node:
    """A node whose cost is its children's: all their parameters, the MACs of those that run at inference."""
    return Node(block, name, path, x, out, sum(c.params for c in children),
                sum(c.macs for c in children if not c.aux), children, form=form)


def group(owner: Block, kind: str, name: str, path: str, x: Shape, blocks: Sequence[Block]) -> Node:
    """Analyse a named path of layers (`[]` is the identity) as one NamedPath node."""
    children = chain(named(blocks), x, path)
    return composite(NamedPath(type=kind).located(owner._loc), name, path, x, children,
                     children[-1].out_shape if children else x)


def residual_units(nodes: Sequence[Node]) -> Iterator[Node]:
    """The residual units among `nodes` and their descendants, outermost only, in execution order: what
    torchvision's stochastic-depth rule numbers (every MBConv / FusedMBConv of EfficientNet, every CNBlock
    of ConvNeXt): a node that is a residual (whatever block it expands from) or a `residual_unit` block."""
    for node in nodes:
        if node.form == "residual" or node.block.residual_unit:
            yield node
        else:
            yield from residual_units(node.children)


def named(blocks: Sequence[Block]) -> list[tuple[str, Block]]:
    """Each block with its module name: its `name`, else its index."""
    return [(block.name or str(i), block) for i, block in enumerate(blocks)]


# The names a child module cannot take: the public attributes (of the class and of an instance) of the
# containers whose children a spec names: torch.nn.Module, nn.Sequential (every list of layers), archspec.backend.nn's
# Network and Concat, and what archspec.build sets on the model (spec, transfer_report); a residual's body
# layers are children of archspec.backend.nn's Residual, which adds its own attributes and children. Derived from
# torch, not written by hand: tests/test_compile.py derives both again from the installed torch and prints
# the new list if a name is missing. Here as text, so that validating needs no torch.
RESERVED_NAMES = frozenset("""
    T_destination add_module append apply bfloat16 buffers call_super_init children compile cpu cuda double
    dump_patches eval extend extra_repr float forward get_buffer get_extra_state get_parameter get_submodule
    half insert ipu load_state_dict modules mtia named_buffers named_children named_modules named_parameters
    parameters pop register_backward_hook register_buffer register_forward_hook register_forward_pre_hook
    register_full_backward_hook register_full_backward_pre_hook register_load_state_dict_post_hook
    register_load_state_dict_pre_hook register_module register_parameter register_state_dict_post_hook
    register_state_dict_pre_hook requires_grad_ set_extra_state set_submodule share_memory spec spec_name
    state_dict to to_empty train training transfer_report type xpu zero_grad
""".split())
RESIDUAL_RESERVED = frozenset({"body", "drop_rate", "shortcut", "act"})  # Residual's attributes and children


def check_unique_names(blocks: Sequence[Block], path: str, reserved: frozenset[str] = frozenset()) -> None:
    """Names in one list are unique and usable as module names."""
    seen: set[str] = set()
    for name, block in named(blocks):
        if name in seen:
            block.fail(child_path(path, name), f"the name '{name}' is used twice in one list")
        if name in RESERVED_NAMES or name in reserved:
            block.fail(child_path(path, name), f"'{name}' is reserved (an attribute of the compiled module); "
                                               "choose another name")
        seen.add(name)


def window_out(size: int, kernel: int, stride: int, padding: int, dilation: int = 1, ceil_mode: bool = False) -> int:
    """Output length of a conv or pool window, exactly as torch computes it."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out
