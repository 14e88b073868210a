"""The op table: every op declared once, as data.

An ``OpDef`` says what an op is (name, inputs, attributes, category flags), how its
result's dtype and shape follow from its inputs, how to compute it with numpy, how it
decomposes into primitives (composites), and which sample inputs test it. Later stages
fill the slots they own: ``emit`` (the LLVM backend's scalar emitter) and ``grad``
(autograd's vector-Jacobian product).

Eager execution, meta execution, tracing, passes, codegen and the tests all read this
table; passes ask ``Flag.ELEMENTWISE in op.flags``, never ``op.name == "add"``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import OpTypeError


class _Required:
    """The default of an attribute every call must give (printed IR always shows it)."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED = _Required()


class Flag(enum.Enum):
    ELEMENTWISE = "elementwise"  # output[i] depends on input[i] only (after broadcasting)
    REDUCTION = "reduction"      # reduces over some dims of its first input
    VIEW = "view"                # output aliases its first input's storage (no compute)
    MATMUL = "matmul"            # a contraction that belongs to BLAS
    COMPOSITE = "composite"      # has a decomposition into primitive ops
    IMPURE = "impure"            # has an effect or randomness: never CSE'd, never removed
    MUTATES = "mutates"          # writes into its first input (and returns it)
    RANDOM = "random"            # draws from a generator
    FACTORY = "factory"          # makes a tensor from attributes alone (no tensor inputs)


@dataclass(frozen=True)
class Sample:
    """One call of an op for tests: numpy arrays / Python scalars / None, plus attributes."""

    inputs: tuple
    attrs: dict = field(default_factory=dict)
    desc: str = ""
    # the output shape depends on input values (a boolean mask), so meta mode cannot know it
    data_dependent: bool = False


@dataclass(eq=False)
class OpDef:
    name: str
    inputs: tuple[str, ...]          # input names; a leading '*' marks a variadic last input
    kernel: Callable                 # numpy: kernel(*arrays, **attrs) -> array | tuple | None
    dtype_rule: Callable             # (name, *inputs, **attrs) -> (input casts, output dtypes)
    shape_rule: Callable | None = None   # (name, *inputs, **attrs) -> shape | tuple of shapes
    view_rule: Callable | None = None    # views: (name, x, **attrs) -> (shape, stride, offset)
    attrs: dict[str, Any] = field(default_factory=dict)  # attribute name -> default
    flags: frozenset[Flag] = frozenset()
    outputs: int = 1
    decomposition: Callable | None = None  # composites: the same op written in graphc ops
    samples: Callable | None = None        # (dtype, rng) -> list[Sample]
    dtypes: tuple = ()                     # input dtypes the op accepts (for tests)
    emit: Callable | None = None           # filled by the LLVM backend
    # the vector-Jacobian product, written in ops: grad(ctx, grad_output) -> one entry per
    # input (None where no gradient flows). ctx.input(i) / ctx.inputs, ctx.attrs and
    # ctx.output are the forward call's; ctx.needs(i) says whether input i wants one.
    # Entries may keep broadcast shapes: autograd sums them to each input's shape.
    grad: Callable | None = None
    doc: str = ""

    def __post_init__(self):
        self.flags = frozenset(self.flags)
        self.variadic = bool(self.inputs) and self.inputs[-1].startswith("*")

    def bind_attrs(self, attrs: dict) -> dict:
        """Fill defaults and reject unknown attribute names."""
        if attrs.keys() - self.attrs.keys():
            unknown = sorted(attrs.keys() - self.attrs.keys())
            accepted = ", ".join(self.attrs) or "none"
            raise OpTypeError(self.name, f"unexpected argument(s) {', '.join(unknown)} "
                              f"(accepted: {accepted})")
        if len(attrs) == len(self.attrs):
            return attrs
        bound = {**self.attrs, **attrs}
        missing = [k for k, v in bound.items() if v is REQUIRED]
        if missing:
            raise OpTypeError(self.name, f"missing required argument(s) {', '.join(missing)}")
        return bound

    def __repr__(self) -> str:
        return f"<op {self.name}>"

    # ops are identified by name in printed IR
    def __str__(self) -> str:
        return self.name


class OpTable:
    """All ops by name; ``OPS.add`` or ``OPS["add"]``; iterate for every op."""

    def __init__(self):
        self._ops: dict[str, OpDef] = {}

    def register(self, op: OpDef) -> OpDef:
        if op.name in self._ops:
            raise ValueError(f"op {op.name!r} is declared twice")
        self._ops[op.name] = op
        return op

    def __getattr__(self, name: str) -> OpDef:
        try:
            return self.__dict__["_ops"][name]
        except KeyError:
            raise AttributeError(f"no op named {name!r}") from None

    def __getitem__(self, name: str) -> OpDef:
        return self._ops[name]

    def __contains__(self, name) -> bool:
        return name in self._ops

    def __iter__(self) -> Iterator[OpDef]:
        return iter(self._ops.values())

    def __len__(self) -> int:
        return len(self._ops)

    def names(self) -> list[str]:
        return list(self._ops)

    def with_flag(self, flag: Flag) -> frozenset[OpDef]:
        return frozenset(op for op in self._ops.values() if flag in op.flags)


OPS = OpTable()


def register(**fields) -> OpDef:
    return OPS.register(OpDef(**fields))
