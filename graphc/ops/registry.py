"""The op table: every op declared once, as data.

An ``OpDef`` says what an op is (name, inputs, attributes, category flags), how its
result's dtype and shape follow from its inputs, how to compute it with numpy, how it
decomposes into primitives (composites), which sample inputs test it, its scalar LLVM
emitter (``emit``, written with the backend's ``Scalar`` helpers), its gradient
(``grad``), and the facts other stages ask about it: its accuracy class for the tests and
the fuzzer, whether a row kernel may recompute it, its reduction kind, whether it is a
reshape or a gather, which wrappers (``graphc.<name>``, ``Tensor.<name>``, ``F.<name>``)
are generated for it. Nothing else keeps a table keyed by op name.

Eager execution, meta execution, tracing, passes, codegen and the tests all read this
table; passes ask ``Flag.ELEMENTWISE in op.flags``, never ``op.name == "add"``.
"""

from __future__ import annotations

import enum
import inspect
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
    NO_GRAD = "no_grad"          # its result never requires grad, whatever its inputs (detach)


@dataclass(frozen=True)
class Sample:
    """One call of an op for tests: numpy arrays / Python scalars / None, plus attributes."""

    inputs: tuple
    attrs: dict = field(default_factory=dict)
    desc: str = ""
    # the output shape depends on input values (a boolean mask), so meta mode cannot know it
    data_dependent: bool = False


EXACT, ROUNDED, APPROX = "exact", "rounded", "transcendental"


@dataclass(frozen=True)
class Accuracy:
    """How far a correct implementation may be from the exact result (tests and fuzzer).

    ``kind`` is EXACT (0 ulp: selections, comparisons), ROUNDED (one or two roundings) or
    APPROX (a polynomial); ``ulps`` its bound. ``operand_scaled``: the error is relative to
    the largest operand, not to the result (round with decimals, lerp). ``reference_ulps``:
    ulps of max(|input|, |result|) the numpy kernel itself may lose that the decomposition
    keeps (gelu's kernel cancels for negative x).
    """

    kind: str
    ulps: float
    operand_scaled: bool = False
    reference_ulps: float = 0


@dataclass(frozen=True)
class Expose:
    """The thin wrappers generated for an op (``graphc/ops/expose.py``): ``function``
    (``graphc.<name>``, inputs positional or by name, attributes by keyword), ``method``
    (``Tensor.<name>``), ``inplace`` (``Tensor.<name>_``: compute, then copy into self),
    ``functional`` (``graphc.nn.functional.<name>``) and other names for the function."""

    function: bool = True
    method: bool = False
    inplace: bool = False
    functional: bool = False
    aliases: tuple[str, ...] = ()


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
    # the LLVM scalar emitter of an elementwise op: emit(s, *args, **attrs) -> value, where
    # ``s`` is the backend's ``Scalar`` (builder, compute dtype, math library, helpers) and
    # args are already in the compute dtype; None: the op runs through its numpy kernel
    emit: Callable | None = None
    # the vector-Jacobian product, written in ops: grad(ctx, grad_output) -> one entry per
    # input (None where no gradient flows). ctx.input(i) / ctx.inputs, ctx.attrs and
    # ctx.output are the forward call's; ctx.needs(i) says whether input i wants one.
    # Entries may keep broadcast shapes: autograd sums them to each input's shape.
    grad: Callable | None = None
    doc: str = ""
    accuracy: Accuracy | None = None  # None: the policy's default for the op's kind
    cheap: bool = False               # a row kernel recomputes it rather than keeping it
    reduce_kind: str | None = None    # sum prod max min all any argmax argmin
    reshape_like: bool = False        # a view that only regroups dims (fusion looks through)
    gather: bool = False              # data movement the backend lowers to a gather kernel
    error_site: bool = False          # its native code can set an error (integer division)
    expose: Expose | None = None      # generated wrappers; None: written by hand (or none)
    custom: bool = False              # declared by a user with ``graphc.ops.custom_op``

    def __post_init__(self):
        self.flags = frozenset(self.flags)
        self.variadic = bool(self.inputs) and self.inputs[-1].startswith("*")

    def check_emitter(self) -> None:
        """An emitter must suit the op: elementwise, and callable as emit(s, *inputs, **attrs)."""
        if self.emit is None:
            return
        if Flag.ELEMENTWISE not in self.flags:
            raise ValueError(f"op {self.name!r}: only elementwise ops take a scalar emitter")
        try:
            inspect.signature(self.emit).bind(None, *self.inputs, **self.attrs)
        except (TypeError, ValueError) as e:
            raise ValueError(f"op {self.name!r}: its emitter must take (s, {', '.join(self.inputs)}"
                             f"{''.join(f', {a}=...' for a in self.attrs)}): {e}") from None

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

    def unregister(self, name: str) -> None:
        del self._ops[name]

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
