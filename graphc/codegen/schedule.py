"""Scheduling: a FusedKernel's sub-graph and the layouts of its inputs and outputs become
a loop nest in kernel IR.

- elementwise: one loop nest over the output's shape, dims merged where every access
  allows (often a single loop), the outermost loop split across threads;
- row reductions (innermost dims): a parallel loop over rows; per row, one pass per level
  of dependent reductions (independent ones share a pass), then a loop storing the
  row's outputs. Row values needed again in a later pass are kept in a per-thread
  scratch row instead of being recomputed;
- other reductions: accumulate into a buffer in memory order (the inner loop runs over
  kept dims and vectorizes), then an epilogue loop over the reduced values;
- matmul: BLAS gemm per batch position for float operands whose matrix dims have a unit
  stride (else a dot-product loop), then the epilogue as an elementwise loop.

A kernel that cannot be scheduled raises ``Unsupported``; the program then runs that
kernel through its numpy kernels and lists it as a fallback.
"""

from __future__ import annotations

import math

from ..ir.fused import FusedKernel
from ..ir.node import Node
from ..layout import same_shape
from ..symbolic import is_symbolic
from ..ops.registry import Flag
from ..tensor import Storage, Tensor
from .kernel_ir import (TID, Acc, AccumStore, AccValue, Affine, Apply, Const, Gemm, Kernel, Load,
                        Loop, Reduce, Ref, Store, Unravel, Var, contiguous, merge_dims, numel)

REDUCE_KINDS = {"sum": "sum", "prod": "prod", "amax": "max", "amin": "min", "all": "all",
                "any": "any", "argmax": "argmax", "argmin": "argmin"}


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


# ---- index spaces ---------------------------------------------------------------------

class _Pending:
    """An index being built: strides over the space's dims (finalised after merging)."""

    def __init__(self, offset: int, strides: list[int], unravel=None):
        self.offset, self.strides, self.unravel = offset, list(strides), unravel


class Space:
    """The dims of a loop nest; accesses register stride vectors, then dims merge."""

    def __init__(self, extents: tuple, groups: list[int] | None = None):
        self.extents = tuple(extents)
        self.groups = groups or [0] * len(extents)
        self.pending: list[tuple[object, str, _Pending]] = []
        self.vars: list[Var] = []

    def index(self, holder, attr: str, offset: int, strides) -> None:
        p = _Pending(offset, strides)
        self.pending.append((holder, attr, p))
        setattr(holder, attr, p)

    def unravel_index(self, holder, attr: str, shape: tuple, strides: tuple, offset: int) -> None:
        flat = [numel(self.extents[k + 1:]) for k in range(len(self.extents))]
        p = _Pending(0, flat, unravel=(tuple(shape), tuple(strides), offset))
        self.pending.append((holder, attr, p))
        setattr(holder, attr, p)

    def finalize(self, names: str = "i") -> list[Var]:
        maps = [p.strides for _, _, p in self.pending]
        extents, merged, groups = merge_dims(list(self.extents), maps, self.groups)
        self.vars = [Var(f"{names}{k}", n) for k, n in enumerate(extents)]
        self.var_groups = groups
        for (holder, attr, p), strides in zip(self.pending, merged):
            affine = Affine(p.offset, tuple((v, s) for v, s in zip(self.vars, strides) if s))
            if p.unravel is not None:
                shape, st, off = p.unravel
                affine = Unravel(affine, shape, st, off)
            setattr(holder, attr, affine)
        return self.vars


def _aligned(strides: tuple, use_shape: tuple, domain: tuple, reduced: tuple) -> list[int]:
    """Strides over ``use_shape`` placed on the domain's dims (a reduced shape without
    its reduced dims lines up with the kept ones)."""
    if len(use_shape) == len(domain):
        return list(strides)
    kept = [d for d in range(len(domain)) if d not in reduced]
    out = [0] * len(domain)
    for s, d in zip(strides, kept):
        out[d] = s
    return out


# ---- building expressions ---------------------------------------------------------------

def _meta_view(ref: Ref, node: Node) -> Ref:
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
    return Ref(ref.slot, offset, shape, stride, ref.dtype)


def _meta_args(args: tuple) -> tuple:
    from ..tensor import empty_meta

    return tuple(empty_meta(a.meta["shape"], a.meta["dtype"]) if isinstance(a, Node) else a
                 for a in args)


def _apply(node: Node, args: tuple) -> Apply:
    op = node.target
    if op.emit is None:
        raise Unsupported(f"{op.name} has no LLVM lowering")
    casts, outs = op.dtype_rule(op.name, *_meta_args(node.args), **node.kwargs)
    inputs = [a.dtype if hasattr(a, "dtype") else None for a in args]
    compute = next((c for c in casts if c is not None), None) or next(
        (d for d in inputs if d is not None), outs[0])
    return Apply(op, tuple(args), dict(node.kwargs), compute, tuple(casts), outs[0], node.name)


class _Builder:
    """A fused kernel's sub-graph with the Refs of its inputs and of views of them.

    A view that no strides can express (reshaping a transposed input) needs a copy: with
    ``scratch`` the input is copied into a contiguous scratch buffer first (``copies``,
    loops the scheduler puts before its own), else the kernel is Unsupported.
    """

    def __init__(self, fk: FusedKernel, in_refs: list[Ref], out_refs: list[Ref],
                 scratch: Scratch | None = None):
        self.fk = fk
        self.graph = fk.graph
        self.refs: dict[Node, Ref] = {}
        self.copies: list = []
        for p, ref in zip(self.graph.placeholders, in_refs):
            self.refs[p] = ref
        for n in self.graph.nodes:  # views of inputs are read in place
            if n.op == "call_function" and Flag.VIEW in n.target.flags and n.args[0] in self.refs:
                try:
                    self.refs[n] = _meta_view(self.refs[n.args[0]], n)
                except Unsupported:
                    if scratch is None:
                        raise
                    self.refs[n] = _meta_view(self._copy(self.refs[n.args[0]], scratch), n)
        out = self.graph.output_node.args[0]
        self.outputs = list(out) if isinstance(out, tuple) else [out]
        self.out_refs = dict(zip(self.outputs, out_refs))
        self.members = [n for n in self.graph.nodes
                        if n.op == "call_function" and n not in self.refs]

    def shape(self, n: Node) -> tuple:
        return tuple(n.meta["shape"])

    def _copy(self, src: Ref, scratch: Scratch) -> Ref:
        """``src`` copied into a contiguous scratch buffer (the loops go in ``copies``)."""
        dst = contiguous(scratch.alloc(max(numel(src.shape), 1) * src.dtype.itemsize, False),
                         src.shape, src.dtype)
        self.copies += _copy_nest(src, 0, dst, src.shape)
        return dst


def _scalar(value, like_dtype) -> Const:
    from .. import dtype as dt

    return Const(value, dt.scalar_dtype(value) if value is not None else like_dtype)


# ---- elementwise ------------------------------------------------------------------------

def _elementwise(bld: _Builder, name: str, domain: tuple, overrides: dict | None = None,
                 members=None) -> tuple[list, Space, list]:
    """Stores of the kernel's outputs over ``domain``; ``overrides`` give some nodes'
    values directly (a matmul's result, read back from memory)."""
    space = Space(domain)
    memo: dict[Node, object] = dict(overrides or {})
    loads: list = []

    def load(ref: Ref, use_shape: tuple):
        ld = Load(ref, None)
        strides = ref.broadcast(use_shape)
        if same_shape(use_shape, domain):
            space.index(ld, "index", ref.offset, strides)
        else:
            space.unravel_index(ld, "index", use_shape, strides, ref.offset)
        loads.append(ld)
        return ld

    def expr(n, use_shape):
        if not isinstance(n, Node):
            return None if n is None else _scalar(n, None)
        if n in memo:
            return memo[n]
        if n in bld.refs:
            return load(bld.refs[n], use_shape)
        if Flag.VIEW in n.target.flags:  # a reshape-like view inside: same flat position
            value = expr(n.args[0], bld.shape(n.args[0]))
        elif Flag.ELEMENTWISE in n.target.flags:
            value = _apply(n, tuple(expr(a, bld.shape(n)) for a in n.args))
        else:
            raise Unsupported(f"{n.target.name} inside an elementwise kernel")
        memo[n] = value
        return value

    stores = []
    for out in bld.outputs:
        ref = bld.out_refs[out]
        st = Store(ref, None, expr(out, bld.shape(out)))
        if same_shape(bld.shape(out), domain):
            space.index(st, "index", ref.offset, ref.broadcast(domain))
        else:
            space.unravel_index(st, "index", bld.shape(out), ref.strides, ref.offset)
        stores.append(st)
    return stores, space, loads


def _nest(vars_: list[Var], body: list, parallel: bool = True) -> list:
    for k in reversed(range(len(vars_))):
        body = [Loop(vars_[k], body, parallel=parallel and k == 0)]
    return body


def schedule_elementwise(fk: FusedKernel, in_refs, out_refs) -> Kernel:
    bld = _Builder(fk, in_refs, out_refs)
    domain = bld.shape(bld.outputs[0])
    stores, space, loads = _elementwise(bld, fk.name, domain)
    vars_ = _tile_transposed(space, space.finalize())
    return Kernel(fk.name, fk.kind, list(in_refs), list(out_refs), _nest(vars_, stores),
                  work=numel(domain))


TILE = 16  # elements per side of a tile (see _tile_transposed)


def _tile_transposed(space: Space, vars_: list[Var]) -> list[Var]:
    """Loops over TILE x TILE tiles of the two innermost dims when one access walks them
    in the other order (a transposed read or write): in row order, each element of the
    transposed side is on another cache line, and a line is evicted before the next
    element on it is used. Tiled, the lines of one tile stay in L1. Only when both
    extents are multiples of TILE (no remainder loops)."""
    if len(vars_) < 2:
        return vars_
    a, b = vars_[-2], vars_[-1]
    if is_symbolic((a.extent, b.extent)) or a.extent % TILE or b.extent % TILE or \
            a.extent * b.extent < 4 * TILE * TILE:
        return vars_
    maps = [dict(_affine_of(getattr(h, attr)).terms) for h, attr, _ in space.pending]
    walks_b = any(m.get(b) == 1 for m in maps)
    walks_a = any(m.get(a) == 1 and abs(m.get(b, 0)) >= TILE for m in maps)
    if not (walks_a and walks_b):
        return vars_
    ao, bo = Var(f"{a.name}o", a.extent // TILE), Var(f"{b.name}o", b.extent // TILE)
    ai, bi = Var(f"{a.name}i", TILE), Var(f"{b.name}i", TILE)

    def split(idx: Affine) -> Affine:
        terms = []
        for v, st in idx.terms:
            if v is a:
                terms += [(ao, st * TILE), (ai, st)]
            elif v is b:
                terms += [(bo, st * TILE), (bi, st)]
            else:
                terms.append((v, st))
        return Affine(idx.offset, tuple(terms))
    for holder, attr, _ in space.pending:
        idx = getattr(holder, attr)
        if isinstance(idx, Unravel):
            idx = Unravel(split(idx.flat), idx.shape, idx.strides, idx.offset)
        else:
            idx = split(idx)
        setattr(holder, attr, idx)
    return vars_[:-2] + [ao, bo, ai, bi]


def _affine_of(idx) -> Affine:
    return idx.flat if isinstance(idx, Unravel) else idx


# ---- reductions -------------------------------------------------------------------------

def _acc_dtype(kind: str, out_dtype):
    from .. import dtype as dt

    if kind in ("sum", "prod") and out_dtype is dt.float32:
        return dt.float64  # float32 sums accumulate in float64 (see emitters)
    if kind in ("argmax", "argmin"):
        return out_dtype
    return out_dtype


# ops that a later pass over a row recomputes rather than caches in scratch
CHEAP_OPS = frozenset({"cast", "add", "sub", "mul", "neg", "abs", "maximum", "minimum", "where",
                       "eq", "ne", "lt", "le", "gt", "ge", "relu", "clamp"})


def schedule_rows(fk: FusedKernel, in_refs, out_refs, scratch) -> Kernel:
    bld = _Builder(fk, in_refs, out_refs)
    domain, reduced = tuple(fk.domain), tuple(fk.reduced_dims)
    keep = tuple(1 if i in reduced else s for i, s in enumerate(domain))
    drop = tuple(s for i, s in enumerate(domain) if i not in reduced)
    groups = [1 if i in reduced else 0 for i in range(len(domain))]
    space = Space(domain, groups)
    cols = numel(domain[i] for i in reduced)
    reductions = [n for n in bld.members if Flag.REDUCTION in n.target.flags]
    for r in reductions:
        if REDUCE_KINDS.get(r.target.name) is None:
            raise Unsupported(f"{r.target.name} reduction")
        if r.target.name in ("argmax", "argmin") and len(reduced) != 1:
            raise Unsupported("argmax over several dims")

    def row_level(n) -> bool:
        return isinstance(n, Node) and same_shape(bld.shape(n), domain) and n not in bld.refs

    # the level of each reduction: 1 + the deepest reduction it depends on
    level: dict[Node, int] = {}
    depends: dict[Node, set] = {}
    for n in bld.graph.nodes:
        deps = set()
        for i in n.all_input_nodes:
            deps |= depends.get(i, set())
            if i in reductions:
                deps.add(i)
        depends[n] = deps
        if n in reductions:
            level[n] = 1 + max((level[d] for d in deps), default=0)
    passes = sorted(set(level.values()))

    def row_ancestors(n, acc):
        if row_level(n) and n not in acc:
            acc.add(n)
            for i in n.all_input_nodes:
                row_ancestors(i, acc)
        return acc

    first_pass: dict[Node, int] = {}
    for r in reductions:
        for a in row_ancestors(r.args[0], set()):
            first_pass[a] = min(first_pass.get(a, 99), level[r])
    later_use: dict[Node, bool] = {}
    for r in reductions:
        for a in row_ancestors(r.args[0], set()):
            if level[r] > first_pass[a]:
                later_use[a] = True
    for out in bld.outputs:
        for a in row_ancestors(out, set()):
            if a in first_pass:
                later_use[a] = True
    def cheap(n, depth=0) -> bool:
        """Recomputing n from the input row costs less than a scratch round trip."""
        if not row_level(n) or n in bld.refs:
            return True
        return depth < 4 and n.target.name in CHEAP_OPS and all(
            cheap(a, depth + 1) for a in n.all_input_nodes)

    cached = {n for n in later_use if n.op == "call_function" and not cheap(n)}
    scratch_refs: dict[Node, Ref] = {}  # the cached values a later pass reads
    computed: dict[Node, object] = {}    # a cached value as its first pass computes it
    side_stores: dict[int, list] = {p: [] for p in passes}

    def column_index(holder) -> None:
        col_strides = [0] * len(domain)
        acc = 1
        for d in reversed(reduced):
            col_strides[d] = acc
            acc *= domain[d]
        space.index(holder, "index", 0, col_strides)
        holder.thread_stride = cols

    accs: dict[Node, Acc] = {}
    memo: dict[tuple, object] = {}

    def index_of(holder, ref: Ref, use_shape: tuple, attr="index"):
        strides = _aligned(ref.broadcast(use_shape), use_shape, domain, reduced)
        space.index(holder, attr, ref.offset, strides)

    def scratch_load(n):
        if n not in scratch_refs:
            slot = scratch.alloc(cols * n.meta["dtype"].itemsize, per_thread=True)
            scratch_refs[n] = Ref(slot, 0, (cols,), (1,), n.meta["dtype"])
        ld = Load(scratch_refs[n], None)
        column_index(ld)
        return ld

    def expr(n, ctx: int):
        """n's value in pass ``ctx`` (0: after all reductions, the store loop)."""
        if not isinstance(n, Node):
            return None if n is None else _scalar(n, None)
        key = (n, ctx if row_level(n) else -1)
        if key in memo:
            return memo[key]
        if n in bld.refs:
            value = Load(bld.refs[n], None)
            index_of(value, bld.refs[n], domain)
        elif n in accs:
            value = AccValue(accs[n])
        elif n in cached and (ctx == 0 or ctx > first_pass[n]):
            value = scratch_load(n)
        elif Flag.ELEMENTWISE in n.target.flags:
            use = bld.shape(n)

            def arg(a):
                if isinstance(a, Node) and a in bld.refs:
                    ld = Load(bld.refs[a], None)
                    index_of(ld, bld.refs[a], use)
                    return ld
                return expr(a, ctx)
            value = _apply(n, tuple(arg(a) for a in n.args))
            if n in cached and ctx == first_pass[n]:
                computed[n] = value
        else:
            raise Unsupported(f"{n.target.name} inside a reduction kernel")
        memo[key] = value
        return value

    body: list = []
    for p in passes:
        these = [r for r in reductions if level[r] == p]
        pass_accs = []
        for r in these:
            kind = REDUCE_KINDS[r.target.name]
            casts, outs = r.target.dtype_rule(r.target.name, *_meta_args(r.args), **r.kwargs)
            value = expr(r.args[0], p)
            acc = Acc(r.name, kind, _acc_dtype(kind, outs[0]), outs[0],
                      _cast_expr(value, casts[0]) if casts[0] is not None else value)
            pass_accs.append(acc)
            accs[r] = acc
        body.append(Reduce(pass_accs, [], side_stores[p]))
    scalar_stores, row_stores = [], []
    for out in bld.outputs:
        ref = bld.out_refs[out]
        if (same_shape(bld.shape(out), keep) or same_shape(bld.shape(out), drop)) and \
                not same_shape(bld.shape(out), domain):
            st = Store(ref, None, expr(out, 0))
            index_of(st, ref, bld.shape(out))
            scalar_stores.append(st)
        else:
            st = Store(ref, None, expr(out, 0))
            index_of(st, ref, domain)
            row_stores.append(st)
    for n, ref in scratch_refs.items():  # store what later passes read, as it is computed
        st = Store(ref, None, computed[n])
        column_index(st)
        side_stores[first_pass[n]].append(st)
    vars_ = space.finalize()
    row_vars = [v for v, g in zip(vars_, space.var_groups) if g == 0]
    col_vars = [v for v, g in zip(vars_, space.var_groups) if g == 1]
    for stmt in body:
        stmt.loops = col_vars
    inner = body + scalar_stores + (_nest(col_vars, row_stores, parallel=False) if row_stores else [])
    _attach_thread_index(space)
    return Kernel(fk.name, fk.kind, list(in_refs), list(out_refs), _nest(row_vars, inner),
                  work=numel(domain))


def _attach_thread_index(space: Space) -> None:
    """Scratch rows are per thread: add tid·row_length to their indexes."""
    for holder, attr, _ in space.pending:
        stride = getattr(holder, "thread_stride", 0)
        if stride:
            idx = getattr(holder, attr)
            setattr(holder, attr, Affine(idx.offset, idx.terms + ((TID, stride),)))


def _cast_expr(value, dtype):
    from ..ops.registry import OPS

    if value.dtype is dtype:
        return value
    return Apply(OPS.cast, (value,), {"dtype": dtype}, value.dtype, (None,), dtype, "cast")


def schedule_accumulate(fk: FusedKernel, in_refs, out_refs, scratch) -> Kernel:
    """A reduction over non-innermost dims: accumulate in memory order, then the epilogue."""
    bld = _Builder(fk, in_refs, out_refs)
    domain, reduced = tuple(fk.domain), tuple(fk.reduced_dims)
    reductions = [n for n in bld.members if Flag.REDUCTION in n.target.flags]
    if len(reductions) != 1 or REDUCE_KINDS.get(reductions[0].target.name) in (None, "argmax",
                                                                               "argmin"):
        raise Unsupported("this reduction over non-innermost dims")
    r = reductions[0]
    kind = REDUCE_KINDS[r.target.name]
    casts, outs = r.target.dtype_rule(r.target.name, *_meta_args(r.args), **r.kwargs)
    acc_dtype = _acc_dtype(kind, outs[0])
    kept_shape = tuple(s for i, s in enumerate(domain) if i not in reduced)
    acc_slot = scratch.alloc(max(numel(kept_shape), 1) * acc_dtype.itemsize, per_thread=False)
    acc_ref = contiguous(acc_slot, kept_shape, acc_dtype)

    # phase 1: fill with the identity
    fill_space = Space(kept_shape or (1,))
    fill = Store(acc_ref, None, Const(identity(kind, acc_dtype), acc_dtype))
    fill_space.index(fill, "index", 0, list(acc_ref.strides) or [0])
    fill_body = _nest(fill_space.finalize("f"), [fill], parallel=False)

    # phase 2: accumulate, in memory order
    pre = [n for n in bld.members if n is not r and same_shape(bld.shape(n), domain)]
    pre_set = set(pre)
    sub = _Builder(fk, in_refs, [])
    sub.outputs = []
    space = Space(domain, [1 if i in reduced else 0 for i in range(len(domain))])
    memo: dict[Node, object] = {}

    def expr(n):
        if not isinstance(n, Node):
            return None if n is None else _scalar(n, None)
        if n in memo:
            return memo[n]
        if n in bld.refs:
            ld = Load(bld.refs[n], None)
            space.index(ld, "index", bld.refs[n].offset, bld.refs[n].broadcast(domain))
            value = ld
        elif n in pre_set:
            value = _apply(n, tuple(expr(a) for a in n.args))
        else:
            raise Unsupported(f"{n.target.name} before a non-innermost reduction")
        memo[n] = value
        return value

    value = expr(r.args[0])
    if casts[0] is not None:
        value = _cast_expr(value, casts[0])
    accum = AccumStore(acc_ref, None, kind, _cast_expr(value, acc_dtype))
    space.index(accum, "index", 0, _aligned(acc_ref.strides, kept_shape, domain, reduced))
    side = []  # outputs computed before the reduction are stored in the same loop
    for out in bld.outputs:
        if out in pre_set and same_shape(bld.shape(out), domain):
            ref = bld.out_refs[out]
            st = Store(ref, None, expr(out))
            space.index(st, "index", ref.offset, ref.broadcast(domain))
            side.append(st)
    acc_body = _nest(space.finalize("a"), side + [accum], parallel=False)

    # phase 3: the epilogue over the reduced values
    reduced_value = Load(acc_ref, None)
    epi = _Builder(fk, in_refs, out_refs)
    epi.outputs = [o for o in epi.outputs if o not in pre_set]
    post = {r: _cast_expr(reduced_value, outs[0])}
    stores, epi_space, _ = _elementwise(epi, fk.name, kept_shape or (1,), overrides=post)
    epi_space.index(reduced_value, "index", 0, list(acc_ref.strides) or [0])
    epi_body = _nest(epi_space.finalize("e"), stores, parallel=False)
    return Kernel(fk.name, fk.kind, list(in_refs), list(out_refs), fill_body + acc_body + epi_body,
                  work=numel(domain))


def identity(kind: str, dtype):
    from .. import dtype as dt

    if kind == "sum" or kind == "any":
        return 0 if kind == "sum" else False
    if kind == "prod" or kind == "all":
        return 1 if kind == "prod" else True
    if dtype is dt.bool_:
        return kind == "min"
    if dtype.is_floating_point:
        return -math.inf if kind == "max" else math.inf
    bits = dtype.itemsize * 8 - 1
    return -2 ** bits if kind == "max" else 2 ** bits - 1


def schedule_reduction(fk: FusedKernel, in_refs, out_refs, scratch) -> Kernel:
    domain, reduced = tuple(fk.domain), tuple(fk.reduced_dims)
    trailing = reduced == tuple(range(len(domain) - len(reduced), len(domain)))
    if trailing and reduced:
        return schedule_rows(fk, in_refs, out_refs, scratch)
    return schedule_accumulate(fk, in_refs, out_refs, scratch)


# ---- matmul -----------------------------------------------------------------------------

def _matrix(ref: Ref, first: bool) -> tuple[Ref, tuple]:
    """A 1-D operand as a 1-row (first) or 1-column (second) matrix."""
    if len(ref.shape) >= 2:
        return ref, ref.shape
    (k,), (s,) = ref.shape, ref.strides
    if first:
        return Ref(ref.slot, ref.offset, (1, k), (k * s or 1, s), ref.dtype), (1, k)
    return Ref(ref.slot, ref.offset, (k, 1), (s, 1), ref.dtype), (k, 1)


def _blas_layout(ref: Ref, rows: int, cols: int) -> tuple[bool, int] | None:
    """(transposed, leading dimension) for BLAS, or None when neither dim is unit-stride."""
    sr, sc = ref.strides[-2], ref.strides[-1]
    if (sc == 1 or cols == 1) and sr >= max(cols, 1):
        return False, max(sr, cols, 1)
    if (sr == 1 or rows == 1) and sc >= max(rows, 1):
        return True, max(sc, rows, 1)
    return None


BLAS_MIN_WORK = 1 << 15  # multiply-adds below which a call into BLAS costs more than loops


def schedule_matmul(fk: FusedKernel, in_refs, out_refs, scratch, use_blas: bool = True) -> Kernel:
    from .. import dtype as dt

    bld = _Builder(fk, in_refs, out_refs, scratch)
    mm = next(n for n in bld.members if Flag.MATMUL in n.target.flags)
    if not all(a in bld.refs for a in mm.args[:2]):
        raise Unsupported("a matmul operand is computed inside the kernel")
    a_ref, a_shape = _matrix(bld.refs[mm.args[0]], True)
    b_ref, b_shape = _matrix(bld.refs[mm.args[1]], False)
    if a_ref.dtype is not b_ref.dtype:
        raise Unsupported("matmul operands of different dtypes")
    m, k, n = a_shape[-2], a_shape[-1], b_shape[-1]
    out_shape = tuple(mm.meta["shape"])
    batch = out_shape[:len(out_shape) - (len(mm.args[0].meta["shape"]) > 1) -
                      (len(mm.args[1].meta["shape"]) > 1)]
    c_shape = batch + (m, n)
    epilogue = [x for x in bld.members if x is not mm and Flag.VIEW not in x.target.flags]
    exported = mm in bld.outputs
    c_ref = None
    if not exported:  # write C straight into an output of the same size and dtype
        for out in bld.outputs:
            ref = bld.out_refs[out]
            if numel(ref.shape) == numel(c_shape) and ref.dtype is mm.meta["dtype"]:
                c_ref = contiguous(ref.slot, c_shape, ref.dtype, ref.offset)
                break
    elif same_shape(bld.out_refs[mm].shape, out_shape):
        c_ref = contiguous(bld.out_refs[mm].slot, c_shape, mm.meta["dtype"], bld.out_refs[mm].offset)
    if c_ref is None:
        slot = scratch.alloc(numel(c_shape) * mm.meta["dtype"].itemsize, per_thread=False)
        c_ref = contiguous(slot, c_shape, mm.meta["dtype"])

    bspace = Space(batch or (1,))
    la, lb = _blas_layout(a_ref, m, k), _blas_layout(b_ref, k, n)
    body: list
    if use_blas and a_ref.dtype in (dt.float32, dt.float64) and la is not None and lb is not None \
            and (is_symbolic(m * n * k) or m * n * k >= BLAS_MIN_WORK):  # a size known
        # only at run time may be large: BLAS, rather than a guard splitting the sizes
        def batch_strides(ref: Ref) -> list[int]:
            return list(Ref(ref.slot, ref.offset, ref.shape[:-2], ref.strides[:-2],
                            ref.dtype).broadcast(batch)) if batch else [0]

        a_batch, b_batch = batch_strides(a_ref), batch_strides(b_ref)
        c_batch = batch_strides(c_ref)
        if len(batch) == 1 and b_batch == [0] and not la[0] and a_batch[0] == m * la[1] \
                and c_batch[0] == m * n:
            # one weight, and the batch's rows follow each other in A and C: one product
            # of batch·m rows (a Linear on a 3-D input)
            g = Gemm(a_ref, None, b_ref, None, c_ref, None, batch[0] * m, n, k, False, lb[0],
                     la[1], lb[1], n)
            single = Space((1,))
            for attr, ref in (("a_index", a_ref), ("b_index", b_ref), ("c_index", c_ref)):
                single.index(g, attr, ref.offset, [0])
            body = _nest(single.finalize("b"), [g], parallel=False)
        elif len(batch) == 1 and batch[0] > m and b_batch == [0] and a_ref.strides[-1] == 1 \
                and a_batch[0] >= k:
            # one weight for a batch of few-row matrices (x.transpose(0, 1) @ w): the batch
            # is the rows of m larger products, B·m rows apart in C
            g = Gemm(a_ref, None, b_ref, None, c_ref, None, batch[0], n, k, False, lb[0],
                     a_batch[0], lb[1], c_ref.strides[0])
            rows = Space((m,))
            for attr, ref, step in (("a_index", a_ref, a_ref.strides[-2]), ("b_index", b_ref, 0),
                                    ("c_index", c_ref, c_ref.strides[-2])):
                rows.index(g, attr, ref.offset, [step])
            body = _nest(rows.finalize("b"), [g], parallel=False)
        else:
            g = Gemm(a_ref, None, b_ref, None, c_ref, None, m, n, k, la[0], lb[0], la[1], lb[1], n)
            for attr, ref, strides in (("a_index", a_ref, a_batch), ("b_index", b_ref, b_batch),
                                       ("c_index", c_ref, c_batch)):
                bspace.index(g, attr, ref.offset, strides)
            body = _nest(bspace.finalize("b"), [g], parallel=False)
    else:
        body = _dot_loops(a_ref, b_ref, c_ref, batch, m, n, k, mm)
    overrides = {mm: Load(c_ref, None)}
    in_place = exported and c_ref.slot == bld.out_refs[mm].slot  # C is that output already
    if epilogue or any(o is not mm or not in_place for o in bld.outputs):
        load = overrides[mm]
        stores, space, _ = _elementwise(bld, fk.name, out_shape, overrides={mm: load})
        if same_shape(out_shape, c_shape):
            space.index(load, "index", 0, list(c_ref.strides))
        else:
            space.unravel_index(load, "index", c_shape, c_ref.strides, 0)
        if in_place:  # C itself is in place already: no copy onto itself
            stores = [st for st in stores if not (st.value is load and st.ref.slot == c_ref.slot)]
        body += _nest(space.finalize("e"), stores)
    return Kernel(fk.name, fk.kind, list(in_refs), list(out_refs), bld.copies + body,
                  work=m * n * k)



def _dot_loops(a: Ref, b: Ref, c: Ref, batch, m, n, k, mm) -> list:
    """C[..., i, j] = Σ_k A[..., i, k]·B[..., k, j] as loops (integers, odd layouts)."""
    shape = batch + (m, n, k)
    space = Space(shape, [0] * (len(batch) + 2) + [1])

    def strides(ref: Ref, dims: str) -> list[int]:
        bs = list(Ref(ref.slot, ref.offset, ref.shape[:-2], ref.strides[:-2],
                      ref.dtype).broadcast(batch)) if batch else []
        sr, sc = ref.strides[-2], ref.strides[-1]
        return bs + {"ik": [sr, 0, sc], "kj": [0, sc, sr], "ij": [sr, sc, 0]}[dims]

    la, lb = Load(a, None), Load(b, None)
    space.index(la, "index", a.offset, strides(a, "ik"))
    space.index(lb, "index", b.offset, strides(b, "kj"))
    from ..ops.registry import OPS
    # products and sums in the accumulator's dtype (float64 for floats): a float32 product
    # is exact there, so no overflow depends on the order of the sum (BLAS's FMAs agree)
    wide = _acc_dtype("sum", c.dtype)
    product = Apply(OPS.mul, (la, lb), {}, wide, (wide, wide), wide, "product")
    acc = Acc(mm.name, "sum", wide, c.dtype, product)
    store = Store(c, None, AccValue(acc))
    space.index(store, "index", c.offset, strides(c, "ij"))
    vars_ = space.finalize("d")  # size-1 dims are dropped: split by group, not position
    outer = [v for v, g in zip(vars_, space.var_groups) if g == 0]
    inner = [v for v, g in zip(vars_, space.var_groups) if g == 1]
    red = Reduce([acc], inner)
    return _nest(outer, [red, store], parallel=True)


def schedule(fk: FusedKernel, in_refs: list[Ref], out_refs: list[Ref], scratch: Scratch,
             use_blas: bool = True) -> Kernel:
    """The kernel IR for one fused kernel (raises Unsupported when there is none)."""
    if fk.kind == "elementwise":
        return schedule_elementwise(fk, in_refs, out_refs)
    if fk.kind == "reduction":
        return schedule_reduction(fk, in_refs, out_refs, scratch)
    return schedule_matmul(fk, in_refs, out_refs, scratch, use_blas)



# ---- data movement ----------------------------------------------------------------------

GATHER_OPS = ("pad", "unfold")


def _copy_nest(src: Ref, dst_offset: int, dst: Ref, shape: tuple) -> list:
    """dst[dst_offset + Σ i·dst.strides] = src[...] over ``shape`` (a parallel loop nest)."""
    space = Space(shape)
    ld = Load(src, None)
    space.index(ld, "index", src.offset, list(src.strides))
    st = Store(dst, None, ld)
    space.index(st, "index", dst_offset, list(dst.strides))
    return _nest(space.finalize("c"), [st])


def schedule_copy_back(n: Node, src: Ref, dst: Ref) -> Kernel:
    """A copy-back (``copy_(input, value)`` at the end of a functional graph): a copy loop
    into the input's or weight's own memory, in its layout."""
    if src.slot == dst.slot:  # the value reads the memory it overwrites (x.copy_(x.t()))
        raise Unsupported("the copied value is read from the memory it overwrites")
    shape = tuple(n.meta["shape"])
    name = f"C_{'_'.join(map(str, shape))}_{n.name}"
    return Kernel(name, "copy", [src], [dst], _copy_nest(src, dst.offset, dst, shape),
                  work=numel(shape))


def schedule_reshape_copy(n: Node, src: Ref, out: Ref) -> Kernel:
    """A reshape that needs a copy (no view of the layout exists): the elements in
    row-major order into out, which is contiguous."""
    shape = tuple(src.shape)
    name = f"C_{'_'.join(map(str, shape))}_{n.name}"
    body = _copy_nest(src, out.offset, contiguous(out.slot, shape, out.dtype), shape)
    return Kernel(name, "copy", [src], [out], body, work=numel(shape))


def schedule_scatter(n: Node, base: Ref, src: Ref, out: Ref) -> Kernel:
    """view_scatter as two copy loops: base into out, then src into out's window."""
    size, stride = tuple(n.kwargs["size"]), tuple(n.kwargs["stride"])
    if src.dtype is not out.dtype or base.dtype is not out.dtype:
        raise Unsupported("view_scatter with a conversion")
    if not same_shape(tuple(src.shape), size):
        raise Unsupported("view_scatter of a broadcast source")
    shape = tuple(n.meta["shape"])
    window = Ref(out.slot, out.offset, size, stride, out.dtype)
    name = f"C_{'_'.join(map(str, shape))}_{n.name}"
    body = _copy_nest(base, out.offset, out, shape) + \
        _copy_nest(src, out.offset + n.kwargs["storage_offset"], window, size)
    return Kernel(name, "copy", [base, src], [out], body, work=numel(shape) + numel(size))


def schedule_gather(n: Node, src: Ref, out: Ref) -> Kernel:
    """pad and unfold (im2col) as copy loops: unfold reads a strided window view of its
    input (no arithmetic, no bounds checks); pad fills the border, then copies the inside."""
    from ..ops.conv import _pad_widths, _window_args

    x = Tensor._make(Storage.meta(src.dtype, 1), src.shape, src.strides)
    out_shape = tuple(n.meta["shape"])
    name = f"C_{'_'.join(map(str, out_shape))}_{n.name}"
    if n.target.name == "unfold":
        w = {"dilation": 1, "padding": 0, "stride": 1,
             **dict(zip(("kernel_size", "dilation", "padding", "stride"), n.args[1:])), **n.kwargs}
        k, d, p, s, (oh, ow) = _window_args("unfold", x, w["kernel_size"], w["dilation"],
                                            w["padding"], w["stride"])
        if p != (0, 0):
            raise Unsupported("unfold with padding (pad first)")
        sn, sc, sh, sw = src.strides
        domain = (src.shape[0], src.shape[1], k[0], k[1], oh, ow)
        window = Ref(src.slot, src.offset, domain,
                     (sn, sc, d[0] * sh, d[1] * sw, s[0] * sh, s[1] * sw), src.dtype)
        body = _copy_nest(window, out.offset, contiguous(out.slot, domain, out.dtype), domain)
    elif n.target.name == "pad":
        w = {"pad": (), "value": 0.0, **dict(zip(("pad", "value"), n.args[1:])), **n.kwargs}
        widths = _pad_widths("pad", len(src.shape), w["pad"])
        value = w["value"]
        fill = Store(out, None, Const(value if out.dtype.is_floating_point else int(value),
                                      out.dtype))
        space = Space(out_shape)
        space.index(fill, "index", out.offset, list(out.strides))
        inside = out.offset + sum(lo * st for (lo, _), st in zip(widths, out.strides))
        body = _nest(space.finalize("f"), [fill]) + _copy_nest(src, inside, out, src.shape)
    else:
        raise Unsupported(f"{n.target.name} has no LLVM lowering")
    return Kernel(name, "copy", [src], [out], body, work=numel(out_shape))
