"""Reduction kernels.

- over the innermost dims (``RowReduction``): a parallel loop over rows; per row, one
  pass per level of dependent reductions (independent ones share a pass), then a loop
  storing the row's outputs. Row values needed again in a later pass are kept in a
  per-thread scratch row instead of being recomputed, unless recomputing costs less;
- over other dims (``Accumulation``): accumulate into a buffer in memory order (the
  inner loop runs over kept dims and vectorizes), then an epilogue loop over the reduced
  values.
"""

from __future__ import annotations

import math

from .. import dtype as dt
from ..ir.fused import FusedKernel
from ..ir.node import Node
from ..layout import same_shape
from ..ops.registry import Flag
from .kernel_ir import (TID, Acc, AccumStore, AccValue, Affine, Const, Kernel, Load, Reduce, Ref,
                        Store, contiguous, numel)
from .loop_space import Space, aligned, nest
from .schedule_elementwise import elementwise_stores
from .subgraph import Scratch, SubGraph, Unsupported, Values, cast, dtype_rule

def acc_dtype(kind: str, out_dtype: dt.dtype) -> dt.dtype:
    if kind in ("sum", "prod") and out_dtype is dt.float32:
        return dt.float64  # float32 sums accumulate in float64 (see emitters)
    return out_dtype


def identity(kind: str, dtype: dt.dtype):
    """The value a ``kind`` accumulator of ``dtype`` starts from."""
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


class ReductionValues(Values):
    """Values at one element of a reduction's domain: a value of a reduced shape (without
    its reduced dims) is indexed by the kept dims."""

    def __init__(self, sub: SubGraph, space: Space, reduced: tuple):
        super().__init__(sub)
        self.space, self.reduced = space, reduced

    def place(self, holder, ref: Ref, use_shape: tuple) -> None:
        """``holder.index`` at ``ref``'s element for the domain position, ``ref`` read as
        ``use_shape``."""
        strides = aligned(ref.broadcast(use_shape), use_shape, self.space.extents, self.reduced)
        self.space.index(holder, "index", ref.offset, strides)

    def read(self, ref: Ref, use_shape: tuple) -> Load:
        ld = Load(ref, None)
        self.place(ld, ref, use_shape)
        return ld


# ---- over the innermost dims ------------------------------------------------------------

class RowValues(ReductionValues):
    """Values in one pass over a row (``pass_``; 0: the loop storing the row's outputs):
    a reduction of an earlier pass is its accumulator, a value cached by an earlier pass
    is read from its scratch row, and an input is read afresh by every op using it."""

    where = "inside a reduction kernel"

    def __init__(self, rows: RowReduction):
        super().__init__(rows.sub, rows.space, rows.reduced)
        self.rows = rows
        self.pass_ = 0
        self.accs: dict[Node, Acc] = {}

    def key(self, n: Node):
        return n, self.pass_ if self.rows.row_level(n) else -1

    def given(self, n: Node):
        rows = self.rows
        if n in self.accs:
            return AccValue(self.accs[n])
        if n in rows.cached and (self.pass_ == 0 or self.pass_ > rows.first_pass[n]):
            return rows.scratch_load(n)
        return None

    def operand(self, a, use_shape: tuple):
        if isinstance(a, Node) and a in self.sub.refs:
            return self.read(self.sub.refs[a], use_shape)
        return self.of(a, use_shape)


class RowReduction:
    """The schedule of a kernel reducing over its innermost dims (see the module's doc)."""

    def __init__(self, fk: FusedKernel, in_refs: list[Ref], out_refs: list[Ref],
                 scratch: Scratch):
        self.fk, self.in_refs, self.out_refs, self.scratch = fk, in_refs, out_refs, scratch
        self.sub = SubGraph(fk, in_refs, out_refs)
        self.domain, self.reduced = tuple(fk.domain), tuple(fk.reduced_dims)
        self.space = Space(self.domain, [int(i in self.reduced) for i in range(len(self.domain))])
        self.cols = numel(self.domain[i] for i in self.reduced)
        self.kinds = self._kinds()
        self.level = self._levels()
        self.first_pass, later_use = self._first_and_later_uses()
        self.cached = {n for n in later_use if n.op == "call_function" and not self._cheap(n)}
        self.scratch_rows: dict[Node, Ref] = {}  # the cached values a later pass reads
        self.per_thread: list = []  # accesses of scratch rows (a row per thread)
        self.values = RowValues(self)

    def _kinds(self) -> dict[Node, str]:
        kinds = {}
        for r in self.sub.members_with(Flag.REDUCTION):
            kind = r.target.reduce_kind
            if kind is None:
                raise Unsupported(f"{r.target.name} reduction")
            if kind in ("argmax", "argmin") and len(self.reduced) != 1:
                raise Unsupported("argmax over several dims")
            kinds[r] = kind
        return kinds

    def _levels(self) -> dict[Node, int]:
        """The pass of each reduction: 1 + the pass of the deepest reduction it depends on."""
        level: dict[Node, int] = {}
        depends: dict[Node, set] = {}
        for n in self.sub.graph.nodes:
            deps = set()
            for i in n.all_input_nodes:
                deps |= depends.get(i, set())
                if i in self.kinds:
                    deps.add(i)
            depends[n] = deps
            if n in self.kinds:
                level[n] = 1 + max((level[d] for d in deps), default=0)
        return level

    def row_level(self, n) -> bool:
        """A value with one element per element of the row (not an input)."""
        return isinstance(n, Node) and same_shape(self.sub.shape(n), self.domain) and \
            n not in self.sub.refs

    def _row_ancestors(self, n, acc: set) -> set:
        if self.row_level(n) and n not in acc:
            acc.add(n)
            for i in n.all_input_nodes:
                self._row_ancestors(i, acc)
        return acc

    def _first_and_later_uses(self) -> tuple[dict[Node, int], set]:
        """The first pass needing each row value, and the values needed again later (by a
        later pass, or by the store loop)."""
        ancestors = {r: self._row_ancestors(r.args[0], set()) for r in self.kinds}
        first_pass: dict[Node, int] = {}
        for r, row_values in ancestors.items():
            for a in row_values:
                first_pass[a] = min(first_pass.get(a, 99), self.level[r])
        later_use = {a for r, row_values in ancestors.items() for a in row_values
                     if self.level[r] > first_pass[a]}
        for out in self.sub.outputs:
            later_use |= {a for a in self._row_ancestors(out, set()) if a in first_pass}
        return first_pass, later_use

    def _cheap(self, n, depth: int = 0) -> bool:
        """Recomputing n from the input row costs less than a scratch round trip."""
        if not self.row_level(n):
            return True
        return depth < 4 and n.target.cheap and all(  # the op table's ``cheap``: a later pass
            # over the row recomputes it rather than keeping it in scratch
            self._cheap(a, depth + 1) for a in n.all_input_nodes)

    def _column_index(self, holder) -> None:
        """Index ``holder`` into a scratch row (this thread's: see ``kernel``)."""
        strides = [0] * len(self.domain)
        step = 1
        for d in reversed(self.reduced):
            strides[d] = step
            step *= self.domain[d]
        self.space.index(holder, "index", 0, strides)
        self.per_thread.append(holder)

    def scratch_load(self, n: Node) -> Load:
        if n not in self.scratch_rows:
            slot = self.scratch.alloc(self.cols * n.meta["dtype"].itemsize, per_thread=True)
            self.scratch_rows[n] = Ref(slot, 0, (self.cols,), (1,), n.meta["dtype"])
        ld = Load(self.scratch_rows[n], None)
        self._column_index(ld)
        return ld

    def _pass(self, p: int, side: list) -> Reduce:
        """The accumulators of the reductions of pass ``p``; ``side``: the stores of the
        values it caches for later passes (added once every pass is built)."""
        values = self.values
        values.pass_ = p
        accs = []
        for r in [r for r in self.kinds if self.level[r] == p]:
            casts, outs = dtype_rule(r)
            value = values.of(r.args[0], self.domain)
            kind = self.kinds[r]
            acc = Acc(r.name, kind, acc_dtype(kind, outs[0]), outs[0], cast(value, casts[0]))
            accs.append(acc)
            values.accs[r] = acc
        return Reduce(accs, [], side)

    def _output_stores(self) -> tuple[list[Store], list[Store]]:
        """Stores of the outputs with one value per row, and of those with one per element."""
        sub, domain = self.sub, self.domain
        keep = tuple(1 if i in self.reduced else s for i, s in enumerate(domain))
        drop = tuple(s for i, s in enumerate(domain) if i not in self.reduced)
        self.values.pass_ = 0
        per_row, per_element = [], []
        for out in sub.outputs:
            ref, shape = sub.out_refs[out], sub.shape(out)
            one_per_row = (same_shape(shape, keep) or same_shape(shape, drop)) and \
                not same_shape(shape, domain)
            st = Store(ref, None, self.values.of(out, domain))
            self.values.place(st, ref, shape if one_per_row else domain)
            (per_row if one_per_row else per_element).append(st)
        return per_row, per_element

    def kernel(self) -> Kernel:
        sides: dict[int, list] = {p: [] for p in sorted(set(self.level.values()))}
        body = [self._pass(p, side) for p, side in sides.items()]
        per_row, per_element = self._output_stores()
        for n, ref in self.scratch_rows.items():  # store what later passes read, as computed
            st = Store(ref, None, self.values.memo[n, self.first_pass[n]])
            self._column_index(st)
            sides[self.first_pass[n]].append(st)
        self.space.finalize()
        rows, cols = self.space.group(0), self.space.group(1)
        for stmt in body:
            stmt.loops = cols
        for holder in self.per_thread:  # each thread has a scratch row of its own
            if self.cols:
                idx = holder.index
                holder.index = Affine(idx.offset, idx.terms + ((TID, self.cols),))
        inner = body + per_row + (nest(cols, per_element, parallel=False) if per_element else [])
        return Kernel(self.fk.name, self.fk.kind, list(self.in_refs), list(self.out_refs),
                      nest(rows, inner), work=numel(self.domain))


# ---- over other dims --------------------------------------------------------------------

class AccumulateValues(ReductionValues):
    """Values before the reduction: ``before``, the kernel's values over the whole domain."""

    where = "before a non-innermost reduction"

    def __init__(self, sub: SubGraph, space: Space, reduced: tuple, before: set):
        super().__init__(sub, space, reduced)
        self.before = before

    def computable(self, n: Node) -> bool:
        return n in self.before


class Accumulation:
    """The schedule of a kernel reducing over dims that are not innermost (see the module's
    doc): fill, accumulate, epilogue."""

    def __init__(self, fk: FusedKernel, in_refs: list[Ref], out_refs: list[Ref],
                 scratch: Scratch):
        self.fk, self.in_refs, self.out_refs = fk, in_refs, out_refs
        self.sub = sub = SubGraph(fk, in_refs, out_refs)
        self.domain, self.reduced = tuple(fk.domain), tuple(fk.reduced_dims)
        reductions = sub.members_with(Flag.REDUCTION)
        kinds = [r.target.reduce_kind for r in reductions]
        if len(kinds) != 1 or kinds[0] in (None, "argmax", "argmin"):
            raise Unsupported("this reduction over non-innermost dims")
        self.r = r = reductions[0]
        self.kind = kinds[0]
        self.casts, self.outs = dtype_rule(r)
        self.acc_dtype = acc_dtype(self.kind, self.outs[0])
        self.kept_shape = tuple(s for i, s in enumerate(self.domain) if i not in self.reduced)
        slot = scratch.alloc(max(numel(self.kept_shape), 1) * self.acc_dtype.itemsize,
                             per_thread=False)
        self.acc = contiguous(slot, self.kept_shape, self.acc_dtype)
        self.before = {n for n in sub.members
                       if n is not r and same_shape(sub.shape(n), self.domain)}

    def _fill(self) -> list:
        """The buffer starts at the reduction's identity."""
        fill = Store(self.acc, None, Const(identity(self.kind, self.acc_dtype), self.acc_dtype))
        space = Space(self.kept_shape or (1,))
        space.index(fill, "index", 0, list(self.acc.strides) or [0])
        return nest(space.finalize("f"), [fill], parallel=False)

    def _accumulate(self) -> list:
        """One loop nest in memory order folding the reduction's input into the buffer;
        outputs computed before the reduction are stored in the same loop."""
        sub, domain = self.sub, self.domain
        space = Space(domain, [int(i in self.reduced) for i in range(len(domain))])
        values = AccumulateValues(sub, space, self.reduced, self.before)
        value = cast(cast(values.of(self.r.args[0], domain), self.casts[0]), self.acc_dtype)
        accum = AccumStore(self.acc, None, self.kind, value)
        space.index(accum, "index", 0, aligned(self.acc.strides, self.kept_shape, domain,
                                               self.reduced))
        side = []
        for out in sub.outputs:
            if out in self.before:
                st = Store(sub.out_refs[out], None, values.of(out, domain))
                values.place(st, sub.out_refs[out], domain)
                side.append(st)
        return nest(space.finalize("a"), side + [accum], parallel=False)

    def _epilogue(self) -> list:
        """The other outputs, from the reduced values."""
        reduced_value = Load(self.acc, None)
        outputs = [o for o in self.sub.outputs if o not in self.before]
        stores, space = elementwise_stores(self.sub, self.kept_shape or (1,), outputs,
                                           given={self.r: cast(reduced_value, self.outs[0])})
        space.index(reduced_value, "index", 0, list(self.acc.strides) or [0])
        return nest(space.finalize("e"), stores, parallel=False)

    def kernel(self) -> Kernel:
        return Kernel(self.fk.name, self.fk.kind, list(self.in_refs), list(self.out_refs),
                      self._fill() + self._accumulate() + self._epilogue(),
                      work=numel(self.domain))
