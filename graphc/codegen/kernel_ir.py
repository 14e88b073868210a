"""Kernel IR: the loop nest of one kernel, between the fused sub-graph and LLVM.

Values live in buffers the program knows by slot (an index into its pointer table); a
``Ref`` adds the element offset, shape, strides and dtype, so transposed, sliced,
negative-step and broadcast (stride 0) views are read in place; an ``ArangeRef`` is read
the same way but computes its elements (``start + k·step``) instead of loading them. An
``Affine`` index is ``offset + Σ var·stride``; an ``Unravel`` index first forms a flat
position and splits it along another shape (a reshape of an intermediate inside a kernel).

    kernel R_4096_1024  (in0: f32[4096, 1024] @slot 0, out0: f32[4096, 1024] @slot 1)
      parallel for r0 in 0..4096:
        reduce amax: max over c0 in 0..1024 of in0[1024·r0 + c0]
        ...
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .. import dtype as dt
from ..ops.registry import OpDef
from ..symbolic import known


@dataclass(frozen=True)
class Ref:
    """A tensor in memory: pointer-table slot, element offset, shape, strides, dtype."""

    slot: int
    offset: int
    shape: tuple
    strides: tuple
    dtype: dt.dtype

    def broadcast(self, shape: tuple) -> tuple[int, ...]:
        """Strides of this tensor read as ``shape`` (numpy broadcasting: new/size-1 dims get 0)."""
        lead = len(shape) - len(self.shape)
        out = []
        for i in range(len(shape)):
            j = i - lead
            if j < 0 or self.shape[j] == 1:
                out.append(0)
            else:
                out.append(self.strides[j])
        return tuple(out)

    def __str__(self) -> str:
        return f"{self.dtype.short}[{', '.join(map(str, self.shape))}]@{self.slot}"


@dataclass(frozen=True)
class ArangeRef(Ref):
    """Elements that are not in memory: element k of the 1-d base is ``start + k·step``,
    computed where it is read (an ``arange`` inside a kernel; a view of it is an ArangeRef
    with the view's offset, shape and strides, so broadcasting costs nothing). The sum is
    formed as eager ``arange`` forms it: in float64 when ``in_float`` (then converted to
    ``dtype``), else in int64. ``slot`` is None: no buffer holds it."""

    start: object = 0
    step: object = 1
    in_float: bool = False

    def __str__(self) -> str:
        return f"arange({self.start}, step {self.step}) as {super().__str__().rpartition('@')[0]}"


def contiguous(slot: int, shape: tuple, dtype: dt.dtype, offset: int = 0) -> Ref:
    strides, acc = [], 1
    for n in reversed(shape):
        strides.append(acc)
        acc *= max(n, 1)
    return Ref(slot, offset, tuple(shape), tuple(reversed(strides)), dtype)


@dataclass(eq=False)
class Var:
    name: str
    extent: int

    def __repr__(self) -> str:
        return self.name


TID = Var("tid", 1)  # the thread's index (selects a thread's scratch rows)


@dataclass(frozen=True)
class Affine:
    offset: int
    terms: tuple  # ((Var, stride), ...)

    def __str__(self) -> str:
        parts = [f"{s}·{v.name}" if s != 1 else v.name for v, s in self.terms if s]
        if self.offset or not parts:
            parts.append(str(self.offset))
        return " + ".join(parts)


@dataclass(frozen=True)
class Unravel:
    """Element ``offset + Σ j_k·strides_k`` where j = the flat position split along ``shape``."""

    flat: Affine
    shape: tuple
    strides: tuple
    offset: int

    def __str__(self) -> str:
        return f"unravel({self.flat}, {list(self.shape)})"


@dataclass
class Indirect:
    """Element ``base + k·stride`` where k is the integer ``index`` loads (gather,
    index_select); k outside [0, bound) sets the kernel's error ``site`` (and reads k = 0)."""

    base: Affine
    index: object  # a Load of an integer tensor
    stride: int
    bound: int
    site: int

    def __str__(self) -> str:
        return f"{self.base} + {self.stride}·k, k = [{self.index.index}] in [0, {self.bound})"


# ---- expressions ---------------------------------------------------------------------

@dataclass(eq=False)
class Load:
    ref: Ref
    index: Affine | Unravel

    @property
    def dtype(self) -> dt.dtype:
        return self.ref.dtype


@dataclass(eq=False)
class Const:
    value: object
    dtype: dt.dtype


@dataclass(eq=False)
class Apply:
    """``op`` on ``args`` (converted to ``casts``), computed in ``compute``, result as ``dtype``."""

    op: OpDef
    args: tuple
    attrs: dict
    compute: dt.dtype
    casts: tuple
    dtype: dt.dtype
    name: str = ""


@dataclass(eq=False)
class AccValue:
    """The value of a reduction's accumulator after its loop."""

    acc: Acc

    @property
    def dtype(self) -> dt.dtype:
        return self.acc.out_dtype


# ---- statements ----------------------------------------------------------------------

@dataclass(eq=False)
class Acc:
    name: str
    kind: str            # sum, prod, max, min, all, any, argmax, argmin
    acc_dtype: dt.dtype  # what it accumulates in (float32 sums: float64)
    out_dtype: dt.dtype
    value: object        # expression, evaluated per element of the reduction loops


@dataclass(eq=False)
class Loop:
    var: Var
    body: list
    parallel: bool = False


@dataclass(eq=False)
class Store:
    ref: Ref
    index: Affine | Unravel
    value: object


@dataclass(eq=False)
class Reduce:
    """Accumulators updated over ``loops``; ``side`` stores run in the same loop (caching)."""

    accs: list
    loops: list
    side: list = field(default_factory=list)


@dataclass(eq=False)
class AccumStore:
    """``ref[index] = combine(ref[index], value)``: a reduction into memory."""

    ref: Ref
    index: Affine
    kind: str
    value: object


@dataclass(eq=False)
class Gemm:
    """C = A @ B by BLAS, for every position of the enclosing loops (the batch)."""

    a: Ref
    a_index: Affine
    b: Ref
    b_index: Affine
    c: Ref
    c_index: Affine
    m: int
    n: int
    k: int
    trans_a: bool
    trans_b: bool
    lda: int
    ldb: int
    ldc: int
    # (var, block, "rows" or "cols"): only C's rows (or columns) [var·block, var·block + block)
    split: tuple | None = None


@dataclass
class Kernel:
    name: str
    kind: str
    inputs: list          # Refs read
    outputs: list         # Refs written
    body: list
    work: int = 0         # elements of the iteration domain (decides threading)

    def format(self) -> str:
        head = ", ".join([f"in{i}: {r}" for i, r in enumerate(self.inputs)] +
                         [f"out{i}: {r}" for i, r in enumerate(self.outputs)])
        names = {r.slot: f"out{i}" for i, r in reversed(list(enumerate(self.outputs)))}
        names.update({r.slot: f"in{i}" for i, r in reversed(list(enumerate(self.inputs)))})
        printer = _Printer(names)
        printer.lines.append(f"kernel {self.name}  ({head})")
        printer.body(self.body, 1)
        return "\n".join(printer.lines)

    def __str__(self) -> str:
        return self.format()


def _ref_name(ref: Ref, names: dict) -> str:
    if isinstance(ref, ArangeRef):
        return f"arange({ref.start}, step {ref.step})"
    return names.get(ref.slot, f"buf{ref.slot}")


class _Printer:
    """Kernel IR as text: each computed value on its own line (``%name = op(args)``), in
    the innermost loop that first needs it; loads and constants inline."""

    def __init__(self, names: dict):
        self.names = names
        self.lines: list[str] = []
        self.scopes: list[dict] = [{}]
        self.taken: set[str] = set()

    def expr(self, e, pad: str) -> str:
        if isinstance(e, Load):
            return f"{_ref_name(e.ref, self.names)}[{e.index}]"
        if isinstance(e, Const):
            return repr(e.value)
        if isinstance(e, AccValue):
            return f"%{e.acc.name}"
        if e is None:
            return "None"
        for scope in reversed(self.scopes):
            if id(e) in scope:
                return scope[id(e)]
        args = ", ".join(self.expr(a, pad) for a in e.args)
        attrs = "".join(f", {k}={v!r}" for k, v in e.attrs.items())
        if e.op.name == "cast":
            attrs = f", {e.dtype.short}"
        name = e.name or e.op.name
        unique, k = name, 1
        while unique in self.taken:
            unique, k = f"{name}.{k}", k + 1
        self.taken.add(unique)
        self.lines.append(f"{pad}%{unique} = {e.op.name}({args}{attrs})")
        self.scopes[-1][id(e)] = f"%{unique}"
        return f"%{unique}"

    def body(self, body: list, depth: int) -> None:
        pad = "  " * depth
        for s in body:
            if isinstance(s, Loop):
                self.lines.append(f"{pad}{'parallel ' if s.parallel else ''}for {s.var.name} in "
                                  f"0..{s.var.extent}:")
                self.scopes.append({})
                self.body(s.body, depth + 1)
                self.scopes.pop()
            elif isinstance(s, Store):
                value = self.expr(s.value, pad)
                self.lines.append(f"{pad}{_ref_name(s.ref, self.names)}[{s.index}] = {value}")
            elif isinstance(s, AccumStore):
                value = self.expr(s.value, pad)
                self.lines.append(f"{pad}{_ref_name(s.ref, self.names)}[{s.index}] {s.kind}= "
                                  f"{value}")
            elif isinstance(s, Reduce):
                loops = ", ".join(f"{v.name} in 0..{v.extent}" for v in s.loops)
                self.lines.append(f"{pad}reduce over {loops or 'one element'}:")
                self.scopes.append({})
                inner = pad + "  "
                for a in s.accs:
                    value = self.expr(a.value, inner)
                    wide = f"  (in {a.acc_dtype.short})" if a.acc_dtype is not a.out_dtype else ""
                    self.lines.append(f"{inner}%{a.name} {a.kind}= {value}{wide}")
                self.body(list(s.side), depth + 1)
                self.scopes.pop()
            elif isinstance(s, Gemm):
                rows = f" ({s.split[2]} {s.split[0].name}·{s.split[1]}, {s.split[1]} of them)" \
                    if s.split else ""
                self.lines.append(
                    f"{pad}gemm {s.m}x{s.n}x{s.k}{rows}: {_ref_name(s.c, self.names)}[{s.c_index}] = "
                    f"{_ref_name(s.a, self.names)}[{s.a_index}]{'ᵀ' if s.trans_a else ''} @ "
                    f"{_ref_name(s.b, self.names)}[{s.b_index}]{'ᵀ' if s.trans_b else ''}")


def walk_expressions(kernel: Kernel):
    """Every expression node of a kernel, each once."""
    seen: set[int] = set()
    stack = []

    def stmts(body):
        for s in body:
            if isinstance(s, Loop):
                stmts(s.body)
            elif isinstance(s, (Store, AccumStore)):
                stack.append(s.value)
            elif isinstance(s, Reduce):
                stack.extend(a.value for a in s.accs)
                stmts(s.side)
    stmts(kernel.body)
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        if isinstance(e, Apply):
            stack.extend(e.args)
        elif isinstance(e, AccValue):
            stack.append(e.acc.value)


def merge_dims(extents: list[int], maps: list[list[int]], groups: list[int] | None = None):
    """Merge adjacent loop dims where every index map allows it (and ``groups`` agree).

    ``maps`` are stride lists over the dims (one per access). Dims k and k+1 merge when
    each map has stride[k] == stride[k+1]·extent[k+1] for every size (decided without a
    guard: a buffer sliced to a symbolic size, stride 32 and extent s0, stays two dims
    rather than fixing s0 = 32). Returns (extents, maps, kept dim
    groups) with one entry per remaining dim.
    """
    groups = list(groups) if groups is not None else [0] * len(extents)
    keep = [i for i, n in enumerate(extents) if n != 1]  # size-1 dims index nothing
    extents = [extents[i] for i in keep]
    maps = [[m[i] for i in keep] for m in maps]
    groups = [groups[i] for i in keep]
    k = len(extents) - 2
    while k >= 0:
        if groups[k] == groups[k + 1] and all(known(m[k], "==", m[k + 1] * extents[k + 1])
                                               for m in maps):
            extents[k] *= extents[k + 1]
            for m in maps:
                m[k] = m[k + 1]
                del m[k + 1]
            del extents[k + 1]
            del groups[k + 1]
        k -= 1
    return extents, maps, groups


def numel(shape) -> int:
    return math.prod(shape)
