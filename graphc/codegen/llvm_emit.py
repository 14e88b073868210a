"""LLVM emission: kernel IR to LLVM IR, and the program's ``main`` around the kernels.

Every buffer is reached through the program's pointer table (``i8** ptrs``; slot k holds
the address of buffer k's first element). A kernel becomes one function per top-level
statement (a *stage*):

    void stage(i8** ptrs, i64 start, i64 end, i32* err, i64 tid)

A parallel stage runs its outer loop over ``[start, end)``; the program splits that range
over threads (``threads.ThreadedCalls``: the worker pool, ``pool``). ``main`` calls the
stages in order and the fallbacks (numpy kernels, through a callback in the pointer table),
and returns the first nonzero error code:

    i32 main(i8** ptrs)

Fast-math policy (per op, no global flags): sums and products of floats carry
``reassoc`` so they vectorize (the order of additions differs from numpy's pairwise
summation; float32 sums accumulate in float64, so the result stays within a few ULPs of
float32); float max/min reductions use ``maxnum`` with ``nnan nsz`` plus a separate
"any nan" reduction, so nan still propagates; the math library uses FMA where it only
rounds less. Everything else is IEEE: no ``nnan``, ``ninf`` or ``afn``.
"""

from __future__ import annotations

import re

from llvmlite import ir

from .. import dtype as dt
from . import cache
from .emitters import (ERR_INDEX, ERROR_SITE_SHIFT, F32, F64, I1, I8, I32, I64, Scalar, convert,
                       lltype, memtype)
from .kernel_ir import (TID, Acc, AccumStore, AccValue, Affine, Apply, ArangeRef, Const, Gemm,
                        Indirect,
                        Kernel, Load, Loop, Reduce, Store, Unravel, Var)
from ..symbolic import SymInt
from .schedule_reduce import identity
from .target import PREFIX
from .pool import STAGE_TYPE
from .threads import I8PP, MAX_THREADS, ThreadedCalls, has_gemm

CALLBACK_TYPE = ir.FunctionType(I32, [I64])
REDUCE_FLAGS = ("reassoc", "contract")
INTERLEAVE_COUNT = 2
SUM_BLOCK = 256  # elements per float32 partial sum (see FunctionEmitter.reduce)

_DTYPE_OF = {I1: dt.bool_, I32: dt.int32, I64: dt.int64,
             ir.FloatType(): dt.float32, ir.DoubleType(): dt.float64}


def dtype_of(ty: ir.Type) -> dt.dtype:
    return _DTYPE_OF[ty]


class Sizes:
    """The symbolic sizes of one LLVM function: each symbol is read once from its slot of
    the pointer table (which holds the integer itself, not an address), and each
    polynomial of them is computed once, in the entry block (``builder``), so it dominates
    every use. ``c64`` and ``constant`` spell numbers that may be such sizes."""

    def __init__(self, builder: ir.IRBuilder, ptrs, slots: dict[str, int]):
        self.b, self.ptrs, self.slots = builder, ptrs, slots
        self.values: dict[str, ir.Value] = {}

    def c64(self, v) -> ir.Value:
        """An i64: a constant, or for a symbolic size its value this call."""
        if type(v) is SymInt:
            v = v.simplified()
            if type(v) is SymInt:
                return self.value(v)
        if isinstance(v, ir.Value):  # an extent computed at run time (FunctionEmitter.reduce)
            return v
        return ir.Constant(I64, int(v))

    def constant(self, value, d: dt.dtype) -> ir.Value:
        """``value`` as a ``d`` (a size used as a number, x / x.shape[0]: read per call)."""
        if type(value) is SymInt:
            v, b = self.c64(value), self.b
            if isinstance(v, ir.Constant):
                value = v.constant
            elif d is dt.bool_:
                return b.icmp_signed("!=", v, self.c64(0))
            elif d.is_floating_point:
                return b.sitofp(v, lltype(d))
            else:
                return b.trunc(v, lltype(d)) if lltype(d).width < 64 else v
        if d is dt.bool_:
            return ir.Constant(I1, int(bool(value)))
        if d.is_floating_point:
            return ir.Constant(lltype(d), float(value))
        return ir.Constant(lltype(d), int(value))

    def symbol(self, name: str) -> ir.Value:
        if name not in self.values:
            b = self.b
            raw = b.load(b.gep(self.ptrs, [ir.Constant(I64, self.slots[name])], inbounds=True))
            self.values[name] = b.ptrtoint(raw, I64, name=name)
        return self.values[name]

    def value(self, v: SymInt) -> ir.Value:
        key = str(v)
        if key not in self.values:
            b, total = self.b, None
            for monomial, coef in v.terms.items():
                term = None
                for name in monomial:
                    s = self.symbol(name)
                    term = s if term is None else b.mul(term, s, flags=["nsw"])
                if term is None:
                    term = ir.Constant(I64, coef)
                elif coef != 1:
                    term = b.mul(term, ir.Constant(I64, coef), flags=["nsw"])
                total = term if total is None else b.add(total, term, flags=["nsw"])
            self.values[key] = total
        return self.values[key]


class Stage:
    """One function of the program: a kernel's top-level statement."""

    def __init__(self, kernel: Kernel, index: int, stmts: list):
        self.kernel = kernel
        self.stmts = stmts
        self.symbol = f"{PREFIX}{kernel.name}_{index}"
        first = stmts[0]
        self.parallel = isinstance(first, Loop) and first.parallel
        self.extent = first.var.extent if self.parallel else 1
        self.work = sum(_work(s) for s in stmts)


INTERLEAVE_TAG = ".ilv"  # an elementwise kernel's innermost loop: see _loop_metadata
NO_UNROLL_TAG = ".nounroll"  # a float32 sum's loop over blocks: see FunctionEmitter.reduce
_LOOP_HINTS = {INTERLEAVE_TAG: f'!{{!"llvm.loop.interleave.count", i32 {INTERLEAVE_COUNT}}}',
               NO_UNROLL_TAG: '!{!"llvm.loop.unroll.disable"}'}


def _loop_metadata(text: str) -> str:
    """Loop hints for the loops whose blocks carry a tag of ``_LOOP_HINTS``. llvmlite cannot
    build the self-referential node a loop ID needs, so the metadata is added to the text.

    - INTERLEAVE_TAG: the loop vectorizer interleaves two vectors per iteration. Its cost
      model declines for long expressions (register pressure), but two independent chains
      of a transcendental hide each other's latency (W1: 11% faster, measured).
    - NO_UNROLL_TAG: the loop stays a loop. Unrolled, each copy of the blocked sum's inner
      loop was vectorized on its own (W2's module grew to 8 copies of exp, 110 ms of LLVM).
    """
    defs = []

    def tag(m: re.Match) -> str:
        k = 2 * len(defs) + 100000
        defs.append(f'!{k} = distinct !{{!{k}, !{k + 1}}}\n!{k + 1} = {_LOOP_HINTS[m.group(1)]}')
        return m.group(0) + f", !llvm.loop !{k}"
    tags = "|".join(re.escape(t) for t in _LOOP_HINTS)
    text = re.sub(r'br i1 %"?[\w.]+\.again"?, label %"?[\w.]+?(' + tags +
                  r')"?, label %"?[\w.]+"?', tag, text)
    return text + "\n" + "\n".join(defs) + "\n" if defs else text


def _work(stmt) -> int:
    """Roughly how many element operations a statement performs."""
    if isinstance(stmt, Loop):
        return stmt.var.extent * sum(_work(s) for s in stmt.body)
    if isinstance(stmt, Reduce):
        n = 1
        for v in stmt.loops:
            n *= v.extent
        return n * (len(stmt.accs) + len(stmt.side))
    if isinstance(stmt, Gemm):
        return stmt.m * stmt.n * stmt.k // (stmt.split[0].extent if stmt.split else 1)
    return 1


class FunctionEmitter:
    """Emits one stage: loops, index arithmetic, expressions, stores."""

    def __init__(self, module: ir.Module, stage: Stage, blas, sites: dict,
                 size_slots: dict | None = None):
        self.module = module
        self.fn = ir.Function(module, STAGE_TYPE, stage.symbol)
        self.fn.linkage = "internal"
        self.ptrs, self.start, self.end, self.err_out, self.tid = self.fn.args
        self.blas = blas
        self.sites = sites  # id(Apply) -> site number (for error messages)
        # the entry block holds allocas and buffer pointers; code starts in the next block
        self.entry = ir.IRBuilder(self.fn.append_basic_block("entry"))
        self.b = ir.IRBuilder(self.fn.append_basic_block("start"))
        self.base: dict[int, ir.Value] = {}
        self.vars: dict = {TID: self.tid}
        self.memo: list[dict] = [{}]
        self.acc_slots: dict[Acc, dict] = {}  # each accumulator's allocas (init_acc)
        self.err = self.alloca(I32, "err")
        self.b.store(ir.Constant(I32, 0), self.err)
        self.stage = stage
        self.sizes = Sizes(self.entry, self.ptrs, size_slots or {})

    # ---- plumbing ---------------------------------------------------------------------
    def c64(self, v) -> ir.Value:
        return self.sizes.c64(v)

    def constant(self, value, d: dt.dtype) -> ir.Value:
        return self.sizes.constant(value, d)

    def alloca(self, ty, name: str):
        return self.entry.alloca(ty, name=name)

    def pointer(self, slot: int, d: dt.dtype):
        """Buffer ``slot`` as a typed pointer (loaded once, in the entry block)."""
        key = (slot, d)
        if key not in self.base:
            e = self.entry
            raw = e.load(e.gep(self.ptrs, [self.c64(slot)], inbounds=True), name=f"buf{slot}")
            self.base[key] = e.bitcast(raw, memtype(d).as_pointer())
        return self.base[key]

    def index(self, idx) -> ir.Value:
        b = self.b
        if isinstance(idx, Indirect):
            k = convert(b, self.value(idx.index), idx.index.dtype, dt.int64)
            bad = b.icmp_unsigned(">=", k, self.c64(idx.bound))  # (a negative k is huge)
            code = ir.Constant(I32, ERR_INDEX | idx.site << ERROR_SITE_SHIFT)
            b.store(b.select(bad, code, b.load(self.err)), self.err)
            k = b.select(bad, self.c64(0), k)
            return b.add(self.index(idx.base), b.mul(k, self.c64(idx.stride)))
        if isinstance(idx, Affine):
            acc = self.c64(idx.offset)
            for var, stride in idx.terms:
                term = self.vars[var] if stride == 1 else b.mul(self.vars[var], self.c64(stride))
                acc = b.add(acc, term)
            return acc
        assert isinstance(idx, Unravel)
        flat = self.index(idx.flat)
        acc = self.c64(idx.offset)
        dims = [(n, s) for n, s in zip(idx.shape, idx.strides) if n != 1]
        for k, (n, s) in enumerate(reversed(dims)):
            outermost = k == len(dims) - 1  # what is left of a position in the shape is
            if s != 0:                      # the digit: no remainder (by a symbolic size
                digit = flat if outermost else b.urem(flat, self.c64(n))  # it is a division)
                acc = b.add(acc, b.mul(digit, self.c64(s)))
            if not outermost:
                flat = b.udiv(flat, self.c64(n))
        return acc

    def address(self, ref, idx):
        return self.b.gep(self.pointer(ref.slot, ref.dtype), [self.index(idx)], inbounds=True)

    def load(self, ref, idx) -> ir.Value:
        if isinstance(ref, ArangeRef):
            return self.arange_element(ref, self.index(idx))
        v = self.b.load(self.address(ref, idx), align=ref.dtype.itemsize)
        if ref.dtype is dt.bool_:
            return self.b.icmp_unsigned("!=", v, ir.Constant(I8, 0))
        return v

    def arange_element(self, ref: ArangeRef, k: ir.Value) -> ir.Value:
        """``start + k·step`` as eager ``arange`` computes it: in float64 (no FMA: the
        product is rounded before the sum), or in int64; then converted to the dtype."""
        b = self.b
        if ref.in_float:
            f64 = dt.float64
            v = b.fadd(self.constant(ref.start, f64), b.fmul(self.constant(ref.step, f64),
                                                             b.sitofp(k, F64)))
            return convert(b, v, f64, ref.dtype)
        v = b.add(self.c64(ref.start), b.mul(k, self.c64(ref.step)))
        return convert(b, v, dt.int64, ref.dtype)

    def store(self, ref, idx, value, value_dtype: dt.dtype) -> None:
        value = convert(self.b, value, value_dtype, ref.dtype)
        if ref.dtype is dt.bool_:
            value = self.b.zext(value, I8)
        self.b.store(value, self.address(ref, idx), align=ref.dtype.itemsize)

    # ---- expressions ------------------------------------------------------------------
    def value(self, e) -> ir.Value:
        key = id(e)
        for scope in reversed(self.memo):
            if key in scope:
                return scope[key]
        v = self._compute(e)
        self.memo[-1][key] = v
        return v

    def _compute(self, e) -> ir.Value:
        if isinstance(e, Load):
            return self.load(e.ref, e.index)
        if isinstance(e, Const):
            return self.constant(e.value, e.dtype)
        if isinstance(e, AccValue):
            return self.acc_result(e.acc)
        assert isinstance(e, Apply), e
        args = []
        for k, a in enumerate(e.args):
            if a is None:
                args.append(None)
                continue
            target = (e.casts[k] if k < len(e.casts) else None) or a.dtype
            if isinstance(a, Const):
                args.append(self.constant(a.value, target))
            else:
                args.append(convert(self.b, self.value(a), a.dtype, target))
        s = Scalar(self.b, e.compute, self.err)
        s.site = self.sites.get(id(e), 0)
        r = e.op.emit(s, *args, **e.attrs)
        return convert(self.b, r, dtype_of(r.type), e.dtype)

    # ---- statements -------------------------------------------------------------------
    def emit_body(self, body: list) -> None:
        pending = []  # evaluate a run of stores' values before storing any (in-place safety)
        for stmt in body:
            if isinstance(stmt, Store):
                written = {st.ref.slot for st, _ in pending}
                if written and self._reads_fresh(stmt.value, written):
                    self._flush(pending)  # it reads what an earlier statement wrote
                pending.append((stmt, self.value(stmt.value)))
                continue
            self._flush(pending)
            if isinstance(stmt, Loop):
                self.loop(stmt)
            elif isinstance(stmt, Reduce):
                self.reduce(stmt)
            elif isinstance(stmt, AccumStore):
                self.accum_store(stmt)
            elif isinstance(stmt, Gemm):
                self.gemm(stmt)
            else:
                raise TypeError(f"unknown kernel statement {stmt!r}")
        self._flush(pending)

    def _reads_fresh(self, e, slots: set) -> bool:
        """Whether computing ``e`` loads anew (not from the memo) from one of ``slots``."""
        if e is None or any(id(e) in scope for scope in self.memo):
            return False
        if isinstance(e, Load):
            return e.ref.slot in slots
        if isinstance(e, Apply):
            return any(self._reads_fresh(a, slots) for a in e.args)
        return False

    def _flush(self, pending: list) -> None:
        for stmt, v in pending:
            self.store(stmt.ref, stmt.index, v, stmt.value.dtype)
        pending.clear()

    def counted_loop(self, var, lo, hi, body, tag: str = "") -> None:
        """``for var in [lo, hi): body()`` in the form LLVM's loop passes expect (a ``tag``
        on the loop's block asks for loop metadata, see ``ProgramEmitter.finish``)."""
        b = self.b
        pre = b.block
        head = self.fn.append_basic_block(f"{var.name}.loop{tag}")
        done = self.fn.append_basic_block(f"{var.name}.done")
        b.cbranch(b.icmp_signed("<", lo, hi), head, done)
        b.position_at_end(head)
        i = b.phi(I64, name=var.name)
        i.add_incoming(lo, pre)
        self.vars[var] = i
        self.memo.append({})
        body()
        self.memo.pop()
        nxt = b.add(i, self.c64(1), name=f"{var.name}.next", flags=["nsw", "nuw"])
        i.add_incoming(nxt, b.block)
        b.cbranch(b.icmp_signed("<", nxt, hi, name=f"{var.name}.again"), head, done)
        b.position_at_end(done)
        del self.vars[var]

    def loop(self, stmt: Loop) -> None:
        if stmt.parallel and self.stage.parallel and stmt is self.stage.stmts[0]:
            lo, hi = self.start, self.end
        else:
            lo, hi = self.c64(0), self.c64(stmt.var.extent)
        innermost = not any(isinstance(x, (Loop, Reduce, Gemm)) for x in stmt.body)
        tag = INTERLEAVE_TAG if innermost and self.stage.kernel.kind == "elementwise" else ""
        self.counted_loop(stmt.var, lo, hi, lambda: self.emit_body(stmt.body), tag)

    def nest(self, loops: list, body, tag: str = "") -> None:
        """``loops`` nested around ``body``; the innermost loop carries ``tag``."""
        if not loops:
            body()
            return
        self.counted_loop(loops[0], self.c64(0), self.c64(loops[0].extent),
                          lambda: self.nest(loops[1:], body, tag), tag if len(loops) == 1 else "")

    # ---- reductions -------------------------------------------------------------------
    def reduce(self, stmt: Reduce) -> None:
        for acc in stmt.accs:
            self.init_acc(acc)
        position = None
        if any(a.kind in ("argmax", "argmin") for a in stmt.accs):
            position = stmt.loops
        loops = list(stmt.loops)
        blocked = [a for a in stmt.accs if a.kind == "sum" and a.acc_dtype is dt.float64
                   and a.value.dtype is dt.float32] if loops else []
        b = self.b
        partial = {a: self.alloca(F32, f"{a.name}.partial") for a in blocked}

        def body():
            for acc in stmt.accs:
                self.update_acc(acc, position, partial.get(acc))
            self.emit_body(list(stmt.side))
        if not blocked:
            self.nest(loops, body)
            return
        # float32 sums in blocks: 8-lane float32 partial sums over SUM_BLOCK elements (the
        # loop vectorizes at full width), each block's total added in float64
        inner = loops[-1]
        sized = type(inner.extent) is SymInt
        if sized:  # the number of blocks, computed per call
            e = self.entry
            count = e.udiv(e.add(self.c64(inner.extent), self.c64(SUM_BLOCK - 1)), self.c64(SUM_BLOCK))
        else:
            count = -(-inner.extent // SUM_BLOCK)
        blocks = Var(f"{inner.name}.block", count)

        def block_body():
            lo = b.mul(self.vars[blocks], self.c64(SUM_BLOCK))
            hi = b.add(lo, self.c64(SUM_BLOCK))
            if sized or inner.extent % SUM_BLOCK:  # a shorter last block
                hi = b.select(b.icmp_signed("<", hi, self.c64(inner.extent)), hi, self.c64(inner.extent))
            for a in blocked:
                b.store(ir.Constant(F32, 0.0), partial[a])
            self.counted_loop(inner, lo, hi, body)
            for a in blocked:
                total = b.fadd(b.load(self.acc_slots[a]["acc"]), b.fpext(b.load(partial[a]), F64))
                b.store(total, self.acc_slots[a]["acc"])
        self.nest(loops[:-1] + [blocks], block_body, NO_UNROLL_TAG)

    def init_acc(self, acc: Acc) -> None:
        slots = {}
        if acc.kind in ("argmax", "argmin"):
            vdt = acc.value.dtype
            slots["best"] = self.alloca(lltype(vdt), f"{acc.name}.best")
            slots["index"] = self.alloca(I64, f"{acc.name}.index")
            self.b.store(self.constant(0, vdt), slots["best"])
            self.b.store(self.c64(-1), slots["index"])
        else:
            slots["acc"] = self.alloca(lltype(acc.acc_dtype), f"{acc.name}.acc")
            self.b.store(self.constant(identity(acc.kind, acc.acc_dtype), acc.acc_dtype), slots["acc"])
            if acc.kind in ("max", "min") and acc.acc_dtype.is_floating_point:
                mask = I64 if acc.acc_dtype is dt.float64 else I32
                slots["nan"] = self.alloca(mask, f"{acc.name}.nan")
                self.b.store(ir.Constant(mask, 0), slots["nan"])
        self.acc_slots[acc] = slots

    def update_acc(self, acc: Acc, loops, partial=None) -> None:
        """Fold this iteration's value into the accumulator (or a float32 ``partial`` sum)."""
        b, slots = self.b, self.acc_slots[acc]
        if partial is not None:
            b.store(self.combine("sum", dt.float32, b.load(partial), self.value(acc.value), True),
                    partial)
            return
        x = self.value(acc.value)
        if acc.kind in ("argmax", "argmin"):
            vdt = acc.value.dtype
            pos = self.c64(0)
            for var in loops or ():
                pos = b.add(b.mul(pos, self.c64(var.extent)), self.vars[var])
            best, idx = b.load(slots["best"]), b.load(slots["index"])
            s = Scalar(b, vdt)
            better = s.cmp(">" if acc.kind == "argmax" else "<", x, best)
            first = b.icmp_signed("<", idx, self.c64(0))
            if vdt.is_floating_point:  # the first nan wins, as in numpy
                x_nan, best_nan = b.fcmp_unordered("uno", x, x), b.fcmp_unordered("uno", best, best)
                better = b.and_(b.not_(best_nan), b.or_(x_nan, better))
            take = b.or_(first, better)
            b.store(b.select(take, x, best), slots["best"])
            b.store(b.select(take, pos, idx), slots["index"])
            return
        x = convert(b, x, acc.value.dtype, acc.acc_dtype)
        cur = b.load(slots["acc"])
        b.store(self.combine(acc.kind, acc.acc_dtype, cur, x, reduction=True), slots["acc"])
        if "nan" in slots:  # a mask as wide as the value: the flag vectorizes with it
            mask = b.sext(b.fcmp_unordered("uno", x, x), slots["nan"].allocated_type)
            b.store(b.or_(b.load(slots["nan"]), mask), slots["nan"])

    def combine(self, kind: str, d: dt.dtype, cur, x, reduction: bool):
        b = self.b
        if d.is_floating_point:
            if kind in ("sum", "prod"):
                v = b.fadd(cur, x) if kind == "sum" else b.fmul(cur, x)
                v.flags.extend(REDUCE_FLAGS)
                return v
            if kind in ("max", "min"):
                s = Scalar(b, d)
                if reduction:  # nan is tracked separately (see init_acc)
                    return s.math.intrinsic("maxnum" if kind == "max" else "minnum", cur, x,
                                            fastmath=("nnan", "nsz"))
                return s.intrinsic("maximum" if kind == "max" else "minimum", cur, x)
        if d is dt.bool_:
            if kind in ("all", "prod", "min"):
                return b.and_(cur, x)
            return b.or_(cur, x)
        if kind == "sum":
            return b.add(cur, x)
        if kind == "prod":
            return b.mul(cur, x)
        if kind in ("max", "min"):
            pick = b.icmp_signed(">" if kind == "max" else "<", x, cur)
            return b.select(pick, x, cur)
        raise ValueError(f"cannot combine {kind} of {d}")

    def acc_result(self, acc: Acc) -> ir.Value:
        b, slots = self.b, self.acc_slots[acc]
        if acc.kind in ("argmax", "argmin"):
            idx = b.load(slots["index"])
            return convert(b, b.select(b.icmp_signed("<", idx, self.c64(0)), self.c64(0), idx),
                           dt.int64, acc.out_dtype)
        v = b.load(slots["acc"])
        if "nan" in slots:
            seen = b.icmp_signed("!=", b.load(slots["nan"]), ir.Constant(slots["nan"].allocated_type, 0))
            v = b.select(seen, ir.Constant(v.type, float("nan")), v)
        return convert(b, v, acc.acc_dtype, acc.out_dtype)

    def accum_store(self, stmt: AccumStore) -> None:
        ptr = self.address(stmt.ref, stmt.index)
        d = stmt.ref.dtype
        cur = self.b.load(ptr, align=d.itemsize)
        if d is dt.bool_:
            cur = self.b.icmp_unsigned("!=", cur, ir.Constant(I8, 0))
        x = convert(self.b, self.value(stmt.value), stmt.value.dtype, d)
        v = self.combine(stmt.kind, d, cur, x, reduction=False)
        if d is dt.bool_:
            v = self.b.zext(v, I8)
        self.b.store(v, ptr, align=d.itemsize)

    # ---- BLAS ---------------------------------------------------------------------------
    def gemm(self, g: Gemm) -> None:
        fn = self.blas.declare(self.module, g.c.dtype)
        b = self.b
        fty = lltype(g.c.dtype)
        row_major, no_trans, trans = 101, 111, 112
        n = ir.IntType(self.blas.int_bits)
        m, cols = self.blas_int(n, g.m), self.blas_int(n, g.n)
        if g.split is not None:  # this block of rows or columns: the last may be shorter
            var, block, axis = g.split
            total = g.m if axis == "rows" else g.n
            left = b.sub(self.c64(total), b.mul(self.vars[var], self.c64(block)))
            size = b.select(b.icmp_signed("<", left, self.c64(block)), left, self.c64(block))
            size = size if n.width == 64 else b.trunc(size, n)
            m, cols = (size, cols) if axis == "rows" else (m, size)
        args = [ir.Constant(I32, row_major),
                ir.Constant(I32, trans if g.trans_a else no_trans),
                ir.Constant(I32, trans if g.trans_b else no_trans),
                m, cols, self.blas_int(n, g.k),
                ir.Constant(fty, 1.0), self.address(g.a, g.a_index), self.blas_int(n, g.lda),
                self.address(g.b, g.b_index), self.blas_int(n, g.ldb), ir.Constant(fty, 0.0),
                self.address(g.c, g.c_index), self.blas_int(n, g.ldc)]
        b.call(fn, args)

    def blas_int(self, ty: ir.IntType, v) -> ir.Value:
        """A BLAS size argument (32- or 64-bit ints, as the library was built)."""
        if type(v) is not SymInt:
            return ir.Constant(ty, v)
        v = self.c64(v)
        return v if ty.width == 64 else self.entry.trunc(v, ty)

    # ---- the function -------------------------------------------------------------------
    def emit(self) -> ir.Function:
        self.emit_body(list(self.stage.stmts))
        self.b.store(self.b.load(self.err), self.err_out)
        self.b.ret_void()
        self.entry.branch(self.fn.blocks[1])
        return self.fn


# ---- the program ------------------------------------------------------------------------

class _Clock:
    """Profiling (``GRAPHC_PROFILE``): ``main`` adds each step's nanoseconds (monotonic
    clock) and one call into an int64 array, two entries per step, at a table slot."""

    def __init__(self, module: ir.Module, entry: ir.IRBuilder, ptrs, slot: int, c64):
        timespec = ir.LiteralStructType([I64, I64])
        self.gettime = ir.Function(module, ir.FunctionType(I32, [I32, timespec.as_pointer()]),
                                   "clock_gettime")
        self.spec = entry.alloca(timespec, name="now")
        raw = entry.load(entry.gep(ptrs, [c64(slot)], inbounds=True))
        self.counts = entry.bitcast(raw, I64.as_pointer())

    def now(self, b: ir.IRBuilder) -> ir.Value:
        b.call(self.gettime, [ir.Constant(I32, 1), self.spec])  # CLOCK_MONOTONIC
        zero, one = ir.Constant(I32, 0), ir.Constant(I32, 1)
        seconds = b.load(b.gep(self.spec, [zero, zero], inbounds=True))
        nanos = b.load(b.gep(self.spec, [zero, one], inbounds=True))
        return b.add(b.mul(seconds, ir.Constant(I64, 1_000_000_000)), nanos)

    def add(self, b: ir.IRBuilder, step: int, started: ir.Value) -> None:
        for k, amount in ((2 * step, b.sub(self.now(b), started)),
                          (2 * step + 1, ir.Constant(I64, 1))):
            at = b.gep(self.counts, [ir.Constant(I64, k)], inbounds=True)
            b.store(b.add(b.load(at), amount), at)


def _stage_groups(body: list) -> list[list]:
    """A parallel loop is a stage of its own; serial statements in between share one (a
    reduction's accumulator and the store that reads it must be in one function)."""
    groups: list[list] = []
    for stmt in body:
        if isinstance(stmt, Loop) and stmt.parallel:
            groups.append([stmt])
        elif groups and not (isinstance(groups[-1][0], Loop) and groups[-1][0].parallel):
            groups[-1].append(stmt)
        else:
            groups.append([stmt])
    return groups


class ProgramEmitter:
    """The module of one compiled graph: every stage and ``main``."""

    def __init__(self, name: str, triple: str, data_layout: str, threads: int,
                 parallel_threshold: int, blas, size_slots: dict | None = None,
                 profile_slot: int | None = None, owns_blas_threads: bool = False):
        self.module = ir.Module(name)
        self.owns_blas_threads = owns_blas_threads  # main runs BLAS on one thread
        self.profile_slot = profile_slot  # where main adds each step's nanoseconds and calls
        self.size_slots = dict(size_slots or {})  # symbol -> the table slot holding its value
        self.module.triple = triple
        self.module.data_layout = data_layout
        self.threads = max(1, min(threads, MAX_THREADS))
        self.calls = ThreadedCalls(self.module, self.threads, parallel_threshold,
                                   owns_blas_threads)
        self.blas = blas
        self.steps: list = []  # ("stage", (Stage, sites)) or ("callback", (number, slot))
        # what the text depends on besides this package's code (see finish)
        self._fingerprint: list | None = [repr((
            name, triple, data_layout, self.threads, parallel_threshold,
            blas and (blas.sgemm, blas.dgemm, blas.int_bits), sorted(self.size_slots.items()),
            profile_slot, owns_blas_threads))]

    def add_kernel(self, kernel: Kernel, sites: dict) -> list[Stage]:
        """Stages for ``kernel`` (emitted by ``finish``); ``sites`` numbers the Applies
        that can raise."""
        stages = [Stage(kernel, k, g) for k, g in enumerate(_stage_groups(kernel.body))]
        self.steps.extend(("stage", (st, sites)) for st in stages)
        if self._fingerprint is not None:
            try:
                self._fingerprint.append(cache.fingerprint(kernel, sites))
            except TypeError:  # something it cannot spell: this program is not cached
                self._fingerprint = None
        return stages

    def add_callback(self, number: int, slot: int) -> None:
        self.steps.append(("callback", (number, slot)))
        if self._fingerprint is not None:
            self._fingerprint.append(f"callback {number} {slot}")

    def finish(self) -> str:
        """The module's text. Building it with llvmlite is most of a cached compile's
        time, so the text is kept in the disk cache under a key made of the kernels' full
        structure (``cache.fingerprint``), the program's steps and settings, and a digest of the
        code that emits them."""
        key = None
        if self._fingerprint is not None:
            key = cache.cache_key("\n".join([cache.codegen_digest()] + self._fingerprint))
            # a text kept under this key must define this program's functions
            functions = [PREFIX + "main"] + [what[0].symbol for kind, what in self.steps
                                             if kind == "stage"]
            text = cache.read_text(key, functions)
            if text is not None:
                return text
        text = self._emit()
        if key is not None:
            cache.write_text(key, text)
        return text

    def _emit(self) -> str:
        for kind, what in self.steps:
            if kind == "stage":
                stage, sites = what
                FunctionEmitter(self.module, stage, self.blas, sites, self.size_slots).emit()
        main = ir.Function(self.module, ir.FunctionType(I32, [I8PP]), PREFIX + "main")
        ptrs = main.args[0]
        entry = ir.IRBuilder(main.append_basic_block("entry"))
        b = ir.IRBuilder(main.append_basic_block("start"))
        sizes = Sizes(entry, ptrs, self.size_slots)
        err = entry.alloca(I32, name="err")
        fail = main.append_basic_block("fail")
        clock = _Clock(self.module, entry, ptrs, self.profile_slot, sizes.c64) \
            if self.profile_slot is not None else None
        blas_threads = None
        if self.owns_blas_threads and any(has_gemm(what[0].stmts) for kind, what in self.steps
                                          if kind == "stage"):
            # BLAS on one thread while the program runs (its loops split the gemms); the
            # caller's count back on every return (numpy's matmul keeps its threads)
            set_threads, get_threads = self.blas.thread_controls(self.module)
            blas_threads = b.call(get_threads, [])
            b.call(set_threads, [ir.Constant(I32, 1)])
        for number, (kind, what) in enumerate(self.steps):
            started = clock.now(b) if clock else None
            if kind == "stage":
                code = self.calls.call(b, sizes, what[0], ptrs, err)
            else:
                callback, slot = what
                raw = b.load(b.gep(ptrs, [sizes.c64(slot)], inbounds=True))
                code = b.call(b.bitcast(raw, CALLBACK_TYPE.as_pointer()), [sizes.c64(callback)])
            if clock:
                clock.add(b, number, started)
            ok = main.append_basic_block("ok")
            b.store(code, err)
            b.cbranch(b.icmp_signed("!=", code, ir.Constant(I32, 0)), fail, ok)
            b.position_at_end(ok)
        if blas_threads is not None:
            b.call(set_threads, [blas_threads])
        b.ret(ir.Constant(I32, 0))
        b.position_at_end(fail)
        if blas_threads is not None:
            b.call(set_threads, [blas_threads])
        b.ret(b.load(err))
        entry.branch(main.blocks[1])
        return _loop_metadata(str(self.module))
