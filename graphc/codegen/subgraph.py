"""A fused kernel's sub-graph as kernel IR: where its inputs and their views live
(``SubGraph``), and the one builder of its values' expressions (``Values``).

Every kernel kind (``schedule``) builds its expressions with a ``Values`` of its own,
which says how the kind reads an input, which values it holds already (a matmul's result,
an accumulator, a scratch row) and which ops it computes; the recursion over the
sub-graph, the sharing of computed values and the ops' dtype rules are here, once.
"""

from __future__ import annotations

import dataclasses

from ..ir.fused import FusedKernel
from ..ir.node import Node
from ..ops.registry import OPS, Flag
from ..tensor import Storage, Tensor, empty_meta
from .. import dtype as dt
from .kernel_ir import Apply, ArangeRef, Const, Ref, contiguous, numel
from .loop_space import copy_nest


class Unsupported(Exception):
    """This kernel has no native schedule; the program falls back to numpy for it."""


class Scratch:
    """Hands out scratch buffers (new pointer-table slots) for the program to allocate."""

    def __init__(self, first_slot: int):
        self.next = first_slot
        self.buffers: list[tuple[int, int, bool]] = []  # slot, bytes, per_thread

    def alloc(self, nbytes: int, per_thread: bool) -> int:
        slot = self.next
        self.next += 1
        self.buffers.append((slot, nbytes, per_thread))
        return slot


def meta_view(ref: Ref, node: Node) -> Ref:
    """The Ref a view op makes of ``ref`` (the op's own view rule on a meta tensor)."""
    results = []
    for base in (1 << 40, 1 << 41):  # positive offsets under negative strides
        t = Tensor._make(Storage.meta(ref.dtype, 1 << 62), ref.shape, ref.strides,
                         ref.offset + base)
        shape, stride, offset = node.target.view_rule(node.target.name, t, **node.kwargs) or \
            (None, None, None)
        if shape is None:
            raise Unsupported(f"{node.target.name} of this layout needs a copy")
        results.append((tuple(shape), tuple(stride), offset - base))
    if results[0] != results[1]:  # the view does not move with its base (as_strided)
        raise Unsupported(f"{node.target.name} sets an absolute storage offset")
    shape, stride, offset = results[0]
    return dataclasses.replace(ref, offset=offset, shape=shape, strides=stride)


def arange_ref(node: Node) -> ArangeRef:
    """An ``arange`` node's values, computed where read (see ArangeRef)."""
    attrs = {**node.target.attrs, **node.kwargs}
    start, end, step = attrs["start"], attrs["end"], attrs["step"]
    d = node.meta["dtype"]
    if d not in dt.ALL_DTYPES:
        raise Unsupported(f"arange of {d} inside a kernel")
    # eager arange's rule (ops/factories.py ``_arange``): float64 when the dtype or any
    # of start, end, step is floating, else int64
    in_float = d.is_floating_point or any(isinstance(v, float) for v in (start, end, step))
    return ArangeRef(None, 0, tuple(node.meta["shape"]), (1,), d, start, step, in_float)


def dtype_rule(node: Node) -> tuple:
    """(casts, output dtypes) of a sub-graph node, by its op's dtype rule."""
    args = tuple(empty_meta(a.meta["shape"], a.meta["dtype"]) if isinstance(a, Node) else a
                 for a in node.args)
    return node.target.dtype_rule(node.target.name, *args, **node.kwargs)


def apply(node: Node, args: tuple) -> Apply:
    """``node``'s op on the expressions ``args``, in the dtype its rule computes in."""
    op = node.target
    if op.emit is None:
        raise Unsupported(f"{op.name} has no LLVM lowering")
    casts, outs = dtype_rule(node)
    inputs = [a.dtype if hasattr(a, "dtype") else None for a in args]
    compute = next((c for c in casts if c is not None), None) or next(
        (d for d in inputs if d is not None), outs[0])
    return Apply(op, tuple(args), dict(node.kwargs), compute, tuple(casts), outs[0], node.name)


def cast(value, dtype):
    """``value`` as ``dtype`` (itself when it has that dtype already, or for None)."""
    if dtype is None or value.dtype is dtype:
        return value
    return Apply(OPS.cast, (value,), {"dtype": dtype}, value.dtype, (None,), dtype, "cast")


class SubGraph:
    """A fused kernel's sub-graph with the Refs of its inputs and of views of them.

    A view that no strides can express (reshaping a transposed input) needs a copy: with
    ``scratch`` the input is copied into a contiguous scratch buffer first (``copies``,
    loops the scheduler puts before its own), else the kernel is Unsupported.
    """

    def __init__(self, fk: FusedKernel, in_refs: list[Ref], out_refs: list[Ref],
                 scratch: Scratch | None = None):
        self.graph = fk.graph
        self.refs: dict[Node, Ref] = dict(zip(self.graph.placeholders, in_refs))
        self.copies: list = []
        # index values: computed from aranges alone (no input), so the same at every
        # position they broadcast to; Values computes them where they are used
        self.index_values: set[Node] = set()
        for n in self.graph.nodes:  # views of inputs are read in place
            if n.op != "call_function":
                continue
            if n.target is OPS.arange:
                self.refs[n] = arange_ref(n)
                self.index_values.add(n)
            elif Flag.ELEMENTWISE in n.target.flags and n.all_input_nodes and \
                    all(i in self.index_values for i in n.all_input_nodes):
                self.index_values.add(n)
            if Flag.VIEW in n.target.flags and n.args[0] in self.refs:
                try:
                    self.refs[n] = meta_view(self.refs[n.args[0]], n)
                except Unsupported:
                    if scratch is None:
                        raise
                    self.refs[n] = meta_view(self._copy(self.refs[n.args[0]], scratch), n)
                if n.args[0] in self.index_values:
                    self.index_values.add(n)
        out = self.graph.output_node.args[0]
        self.outputs = list(out) if isinstance(out, tuple) else [out]
        self.out_refs = dict(zip(self.outputs, out_refs))
        self.members = [n for n in self.graph.nodes
                        if n.op == "call_function" and n not in self.refs]

    def shape(self, n: Node) -> tuple:
        return tuple(n.meta["shape"])

    def members_with(self, flag: Flag) -> list[Node]:
        return [n for n in self.members if flag in n.target.flags]

    def _copy(self, src: Ref, scratch: Scratch) -> Ref:
        """``src`` copied into a contiguous scratch buffer (the loops go in ``copies``)."""
        dst = contiguous(scratch.alloc(max(numel(src.shape), 1) * src.dtype.itemsize, False),
                         src.shape, src.dtype)
        self.copies += copy_nest(src, 0, dst, src.shape)
        return dst


class Values:
    """The kernel-IR expression of each value of a sub-graph, at one point of the kernel's
    loops: ``of(n, use_shape)`` is ``n``'s expression where an op of ``use_shape`` uses it.

    A constant is itself; an input is what ``read`` loads; a value the kind holds already
    (a matmul's result, an accumulator, a scratch row) is what ``given`` says; a
    reshape-like view inside the kernel (where ``views``) is its input at the same flat
    position; an op the kind can compute here (``computable``) is applied to its
    operands' expressions. Each value is built once per ``key``, and so is each read of an
    input where ``keep_reads`` (else every use of an input is a load of its own).
    """

    where = "inside a kernel"  # how the error names an op the kind cannot compute
    views = False
    keep_reads = True

    def __init__(self, sub: SubGraph):
        self.sub = sub
        self.memo: dict = {}

    def read(self, ref: Ref, use_shape: tuple):
        raise NotImplementedError

    def key(self, n: Node):
        return n

    def given(self, n: Node):
        return None

    def computable(self, n: Node) -> bool:
        return Flag.ELEMENTWISE in n.target.flags

    def operand(self, a, use_shape: tuple):
        """An argument's expression, where an op with ``use_shape`` reads it."""
        return self.of(a, use_shape)

    def of(self, n, use_shape: tuple):
        if not isinstance(n, Node):
            return None if n is None else Const(n, dt.scalar_dtype(n))
        key = self.key(n)
        if n in self.sub.index_values:  # the same everywhere: built where each use reads it
            key = key, use_shape
        if key in self.memo:
            return self.memo[key]
        if n in self.sub.refs and not self.keep_reads:
            return self.read(self.sub.refs[n], use_shape)
        value = self.given(n)
        if value is None:
            value = self._build(n, use_shape)
        self.memo[key] = value
        return value

    def _build(self, n: Node, use_shape: tuple):
        if n in self.sub.refs:
            return self.read(self.sub.refs[n], use_shape)
        if self.views and Flag.VIEW in n.target.flags:  # a reshape-like view inside
            return self.of(n.args[0], self.sub.shape(n.args[0]))
        if self.computable(n):
            # an index value may broadcast where it is used: its operands are read there
            shape = use_shape if n in self.sub.index_values else self.sub.shape(n)
            return apply(n, tuple(self.operand(a, shape) for a in n.args))
        raise Unsupported(f"{n.target.name} {self.where}")
