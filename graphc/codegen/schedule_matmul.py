"""Matmul kernels: BLAS gemm per batch position for float operands whose matrix dims have
a unit stride (else a dot-product loop), then the epilogue (bias, activation) as an
elementwise loop over the product."""

from __future__ import annotations

from .. import dtype as dt
from ..ir.fused import FusedKernel
from ..layout import same_shape
from ..ops.registry import OPS, Flag
from ..symbolic import is_symbolic, known
from .kernel_ir import (Acc, AccValue, Affine, Apply, Gemm, Kernel, Load, Loop, Reduce, Ref, Store,
                        Var, contiguous, numel)
from .loop_space import Space, nest
from .schedule_elementwise import elementwise_stores
from .schedule_reduce import acc_dtype
from .subgraph import Scratch, SubGraph, Unsupported

BLAS_MIN_WORK = 1 << 15  # multiply-adds below which a call into BLAS costs more than loops
BLAS_SPLIT_WORK = 1 << 21  # ... below which one product is not split across threads


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


def _batch_strides(ref: Ref, batch: tuple) -> list[int]:
    """The strides of a matrix operand over the batch dims (broadcast)."""
    if not batch:
        return []
    return list(Ref(ref.slot, ref.offset, ref.shape[:-2], ref.strides[:-2],
                    ref.dtype).broadcast(batch))


def _gemm_nest(g: Gemm, extents: tuple, strides: tuple, threads: int = 0) -> list:
    """``g`` at every position of a loop nest over ``extents``; A, B and C step by
    ``strides`` (one list each). With ``threads`` (the program runs BLAS on one thread and
    splits the work itself, see ``threads.py``), the nest is a parallel loop, and one
    product alone is split into ``threads`` blocks (see ``_split``)."""
    if threads > 1 and all(e == 1 for e in extents) and type(g.m) is int and \
            type(g.n) is int and g.m * g.n * g.k >= BLAS_SPLIT_WORK:
        return _split(g, threads)
    space = Space(extents)
    for attr, ref, steps in zip(("a_index", "b_index", "c_index"), (g.a, g.b, g.c), strides):
        space.index(g, attr, ref.offset, steps)
    return nest(space.finalize("b"), [g], parallel=threads > 1)


def _split(g: Gemm, threads: int) -> list:
    """One product as ``threads`` products of blocks of C's rows (each thread reads all of
    B) or, where B is the larger operand (n > m), of C's columns (each reads all of A).
    (Alone, a product runs faster on OpenBLAS's own threads, which share its packed
    panels; inside a program, the threads it leaves spinning slowed the loops after it
    more: T3's training step took 48 ms with BLAS threading each product, 38.4 ms split.)"""
    axis, size = ("cols", g.n) if g.n > g.m else ("rows", g.m)
    if size < 2 * threads:
        return [g]
    block = -(-size // threads)
    var = Var("r0", -(-size // block))
    if axis == "rows":  # elements between rows of A, of C
        a_step, b_step, c_step = (1 if g.trans_a else g.lda) * block, 0, g.ldc * block
    else:  # ... between columns of B, of C
        a_step, b_step, c_step = 0, (g.ldb if g.trans_b else 1) * block, block
    g.split = (var, block, axis)
    g.a_index = Affine(g.a.offset, ((var, a_step),) if a_step else ())
    g.b_index = Affine(g.b.offset, ((var, b_step),) if b_step else ())
    g.c_index = Affine(g.c.offset, ((var, c_step),))
    return [Loop(var, [g], parallel=True)]


class Matmul:
    """The schedule of a kernel around one matmul: the product into C, then the epilogue."""

    def __init__(self, fk: FusedKernel, in_refs: list[Ref], out_refs: list[Ref],
                 scratch: Scratch, use_blas: bool = True, threads: int = 0):
        self.fk, self.in_refs, self.out_refs, self.use_blas = fk, in_refs, out_refs, use_blas
        self.threads = threads  # > 0: BLAS runs on one thread, the gemm loops on ours
        self.sub = sub = SubGraph(fk, in_refs, out_refs, scratch)
        self.mm = mm = sub.members_with(Flag.MATMUL)[0]
        if not all(a in sub.refs for a in mm.args[:2]):
            raise Unsupported("a matmul operand is computed inside the kernel")
        self.a, a_shape = _matrix(sub.refs[mm.args[0]], True)
        self.b, b_shape = _matrix(sub.refs[mm.args[1]], False)
        if self.a.dtype is not self.b.dtype:
            raise Unsupported("matmul operands of different dtypes")
        self.m, self.k, self.n = a_shape[-2], a_shape[-1], b_shape[-1]
        self.out_shape = out_shape = tuple(mm.meta["shape"])
        self.batch = out_shape[:len(out_shape) - (len(mm.args[0].meta["shape"]) > 1) -
                               (len(mm.args[1].meta["shape"]) > 1)]
        self.c_shape = self.batch + (self.m, self.n)
        self.c = self._c_buffer(scratch)

    def _c_buffer(self, scratch: Scratch) -> Ref:
        """Where the product goes: the matmul's own output, or the kernel's only output
        when the matmul is not exported and it has the same size and dtype (its element
        is read before it is stored; with several outputs, the store of one may come
        before a read of the product for another), else a scratch buffer."""
        sub, mm, c_shape = self.sub, self.mm, self.c_shape
        dtype = mm.meta["dtype"]
        if mm not in sub.outputs:
            for out in sub.outputs[:1] if len(sub.outputs) == 1 else ():
                ref = sub.out_refs[out]
                if numel(ref.shape) == numel(c_shape) and ref.dtype is dtype:
                    return contiguous(ref.slot, c_shape, ref.dtype, ref.offset)
        elif same_shape(sub.out_refs[mm].shape, self.out_shape):
            return contiguous(sub.out_refs[mm].slot, c_shape, dtype, sub.out_refs[mm].offset)
        return contiguous(scratch.alloc(numel(c_shape) * dtype.itemsize, per_thread=False),
                          c_shape, dtype)

    def _gemm(self, la: tuple, lb: tuple) -> list:
        """The product as BLAS calls (``la``, ``lb``: the operands' BLAS layouts)."""
        a, b, c, batch, m, n, k = self.a, self.b, self.c, self.batch, self.m, self.n, self.k
        a_batch, b_batch, c_batch = (_batch_strides(r, batch) or [0] for r in (a, b, c))
        if len(batch) == 1 and b_batch == [0] and not la[0] and a_batch[0] == m * la[1] \
                and c_batch[0] == m * n:
            # one weight, and the batch's rows follow each other in A and C: one product
            # of batch·m rows (a Linear on a 3-D input)
            g = Gemm(a, None, b, None, c, None, batch[0] * m, n, k, False, lb[0], la[1], lb[1], n)
            return _gemm_nest(g, (1,), ([0], [0], [0]), self.threads)
        if len(batch) == 1 and known(batch[0], ">", m) and b_batch == [0] \
                and a.strides[-1] == 1 and a_batch[0] >= k:
            # one weight for a batch of few-row matrices (x.transpose(0, 1) @ w): the batch
            # is the rows of m larger products, B·m rows apart in C (a choice for speed, made
            # without a guard where sizes are symbolic)
            g = Gemm(a, None, b, None, c, None, batch[0], n, k, False, lb[0], a_batch[0], lb[1],
                     c.strides[0])
            return _gemm_nest(g, (m,), ([a.strides[-2]], [0], [c.strides[-2]]), self.threads)
        g = Gemm(a, None, b, None, c, None, m, n, k, la[0], lb[0], la[1], lb[1], n)
        return _gemm_nest(g, batch or (1,), (a_batch, b_batch, c_batch), self.threads)

    def _dot_loops(self) -> list:
        """C[..., i, j] = Σ_k A[..., i, k]·B[..., k, j] as loops (integers, odd layouts)."""
        a, b, c, batch = self.a, self.b, self.c, self.batch
        space = Space(batch + (self.m, self.n, self.k), [0] * (len(batch) + 2) + [1])

        def strides(ref: Ref, dims: str) -> list[int]:
            sr, sc = ref.strides[-2], ref.strides[-1]
            return _batch_strides(ref, batch) + {"ik": [sr, 0, sc], "kj": [0, sc, sr],
                                                 "ij": [sr, sc, 0]}[dims]

        la, lb = Load(a, None), Load(b, None)
        space.index(la, "index", a.offset, strides(a, "ik"))
        space.index(lb, "index", b.offset, strides(b, "kj"))
        # products and sums in the accumulator's dtype (float64 for floats): a float32
        # product is exact there, so no overflow depends on the order of the sum (BLAS's
        # FMAs agree)
        wide = acc_dtype("sum", c.dtype)
        product = Apply(OPS.mul, (la, lb), {}, wide, (wide, wide), wide, "product")
        acc = Acc(self.mm.name, "sum", wide, c.dtype, product)
        store = Store(c, None, AccValue(acc))
        space.index(store, "index", c.offset, strides(c, "ij"))
        space.finalize("d")  # size-1 dims are dropped: split by group, not position
        return nest(space.group(0), [Reduce([acc], space.group(1)), store], parallel=True)

    def _epilogue(self) -> list:
        """The kernel's outputs from the product: C read back (no copy of C onto itself
        when C is the matmul's own output)."""
        sub, mm, c = self.sub, self.mm, self.c
        in_place = mm in sub.outputs and c.slot == sub.out_refs[mm].slot
        epilogue = [x for x in sub.members if x is not mm and Flag.VIEW not in x.target.flags]
        if not epilogue and all(o is mm and in_place for o in sub.outputs):
            return []
        product = Load(c, None)
        stores, space = elementwise_stores(sub, self.out_shape, given={mm: product})
        space.at(product, 0, self.c_shape, c.strides)
        if in_place:
            stores = [st for st in stores if not (st.value is product and st.ref.slot == c.slot)]
        return nest(space.finalize("e"), stores)

    def kernel(self) -> Kernel:
        la, lb = _blas_layout(self.a, self.m, self.k), _blas_layout(self.b, self.k, self.n)
        mnk = self.m * self.n * self.k
        if self.use_blas and self.a.dtype in (dt.float32, dt.float64) and la is not None and \
                lb is not None and (is_symbolic(mnk) or mnk >= BLAS_MIN_WORK):
            # a size known only at run time may be large: BLAS, rather than a guard
            # splitting the sizes
            body = self._gemm(la, lb)
        else:
            body = self._dot_loops()
        return Kernel(self.fk.name, self.fk.kind, list(self.in_refs), list(self.out_refs),
                      self.sub.copies + body + self._epilogue(), work=mnk)
