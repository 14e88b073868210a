"""LLVM emission: kernel IR to LLVM IR, and the program's ``main`` around the kernels.

Every buffer is reached through the program's pointer table (``i8** ptrs``; slot k holds
the address of buffer k's first element). A kernel becomes one function per top-level
statement (a *stage*):

    void stage(i8** ptrs, i64 start, i64 end, i32* err, i64 tid)

A parallel stage runs its outer loop over ``[start, end)``; the program splits that range
over threads (``parallel_for``, pthreads). ``main`` calls the stages in order and the
fallbacks (numpy kernels, through a callback in the pointer table), and returns the first
nonzero error code:

    i32 main(i8** ptrs)

Fast-math policy (per op, no global flags): sums and products of floats carry
``reassoc`` so they vectorize (the order of additions differs from numpy's pairwise
summation; float32 sums accumulate in float64, so the result stays within a few ULPs of
float32); float max/min reductions use ``maxnum`` with ``nnan nsz`` plus a separate
"any nan" reduction, so nan still propagates; the math library uses FMA where it only
rounds less. Everything else is IEEE: no ``nnan``, ``ninf`` or ``afn``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import re
from pathlib import Path

from llvmlite import ir

from .. import dtype as dt
from .emitters import EMITTERS, F32, F64, I1, I8, I32, I64, Scalar, convert, lltype, memtype
from .kernel_ir import (TID, Acc, AccumStore, AccValue, Affine, Apply, Const, Gemm, Kernel, Load,
                        Loop, Reduce, Store, Unravel, Var)
from ..ops.registry import OpDef
from ..symbolic import SymInt
from .target import PREFIX

I8P = I8.as_pointer()
I8PP = I8P.as_pointer()
VOID = ir.VoidType()
STAGE_TYPE = ir.FunctionType(VOID, [I8PP, I64, I64, I32.as_pointer(), I64])
CALLBACK_TYPE = ir.FunctionType(I32, [I64])
MAX_THREADS = 64
REDUCE_FLAGS = ("reassoc", "contract")
EPILOGUE_THRESHOLD_FACTOR = 32  # see ProgramEmitter.runs_parallel
INTERLEAVE_COUNT = 2
SUM_BLOCK = 256  # elements per float32 partial sum (see FunctionEmitter.reduce)

_DTYPE_OF = {I1: dt.bool_, I32: dt.int32, I64: dt.int64,
             ir.FloatType(): dt.float32, ir.DoubleType(): dt.float64}


def dtype_of(ty: ir.Type) -> dt.dtype:
    return _DTYPE_OF[ty]


def c64(v) -> ir.Value:
    """An i64: a constant, or for a symbolic size its value computed from the size slots
    (see ``Sizes``) by the function being emitted."""
    if type(v) is SymInt:
        v = v.simplified()
        if type(v) is SymInt:
            return _sizes[-1].value(v)
    if isinstance(v, ir.Value):  # an extent computed at run time (see FunctionEmitter.reduce)
        return v
    return ir.Constant(I64, int(v))


class Sizes:
    """The symbolic sizes of one LLVM function: each symbol is read once from its slot of
    the pointer table (which holds the integer itself, not an address), and each
    polynomial of them is computed once, in the entry block, so it dominates every use."""

    def __init__(self, builder: ir.IRBuilder, ptrs, slots: dict[str, int]):
        self.b, self.ptrs, self.slots = builder, ptrs, slots
        self.values: dict[str, ir.Value] = {}

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


_sizes: list[Sizes] = []  # the function being emitted (c64 reads its sizes)


def constant(value, d: dt.dtype) -> ir.Value:
    if type(value) is SymInt:  # a size used as a number (x / x.shape[0]): read per call
        v, b = c64(value), _sizes[-1].b
        if isinstance(v, ir.Constant):
            value = v.constant
        elif d is dt.bool_:
            return b.icmp_signed("!=", v, c64(0))
        elif d.is_floating_point:
            return b.sitofp(v, lltype(d))
        else:
            return b.trunc(v, lltype(d)) if lltype(d).width < 64 else v
    if d is dt.bool_:
        return ir.Constant(I1, int(bool(value)))
    if d.is_floating_point:
        return ir.Constant(lltype(d), float(value))
    return ir.Constant(lltype(d), int(value))


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


GRANULE = 64      # iterations per thread chunk of a flat elementwise loop: whole cache lines
ROW_GRANULE = 16  # ... of a loop over rows or tiles (see _granule)


def _granule(stage: Stage) -> int:
    """Thread chunks of a flat loop over elements are whole cache lines (two threads
    writing one line slow each other down), and so are those of a loop around BLAS calls
    (OpenBLAS threads each gemm itself). A loop over rows or tiles is cut in chunks of
    ROW_GRANULE: with 64 as well, 64 rows (softmax over (64, 8192), the tile rows of a
    1024-row transpose) ran on one thread; with 1, W6's loops of 8 iterations, each
    after a gemm whose OpenBLAS threads were still spinning, made it 30% slower."""
    body = stage.stmts[0].body
    if _has_gemm(body) or not any(isinstance(x, (Loop, Reduce)) for x in body):
        return GRANULE
    return ROW_GRANULE


def _has_gemm(body: list) -> bool:
    return any(isinstance(s, Gemm) or (isinstance(s, Loop) and _has_gemm(s.body)) for s in body)


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
        return stmt.m * stmt.n * stmt.k
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
        self.err = self.alloca(I32, "err")
        self.b.store(ir.Constant(I32, 0), self.err)
        self.stage = stage
        self.sizes = Sizes(self.entry, self.ptrs, size_slots or {})

    # ---- plumbing ---------------------------------------------------------------------
    def alloca(self, ty, name: str):
        return self.entry.alloca(ty, name=name)

    def pointer(self, slot: int, d: dt.dtype):
        """Buffer ``slot`` as a typed pointer (loaded once, in the entry block)."""
        key = (slot, d)
        if key not in self.base:
            e = self.entry
            raw = e.load(e.gep(self.ptrs, [c64(slot)], inbounds=True), name=f"buf{slot}")
            self.base[key] = e.bitcast(raw, memtype(d).as_pointer())
        return self.base[key]

    def index(self, idx) -> ir.Value:
        b = self.b
        if isinstance(idx, Affine):
            acc = c64(idx.offset)
            for var, stride in idx.terms:
                term = self.vars[var] if stride == 1 else b.mul(self.vars[var], c64(stride))
                acc = b.add(acc, term)
            return acc
        assert isinstance(idx, Unravel)
        flat = self.index(idx.flat)
        acc = c64(idx.offset)
        dims = [(n, s) for n, s in zip(idx.shape, idx.strides) if n != 1]
        for k, (n, s) in enumerate(reversed(dims)):
            outermost = k == len(dims) - 1  # what is left of a position in the shape is
            if s != 0:                      # the digit: no remainder (by a symbolic size
                digit = flat if outermost else b.urem(flat, c64(n))  # it is a division)
                acc = b.add(acc, b.mul(digit, c64(s)))
            if not outermost:
                flat = b.udiv(flat, c64(n))
        return acc

    def address(self, ref, idx):
        return self.b.gep(self.pointer(ref.slot, ref.dtype), [self.index(idx)], inbounds=True)

    def load(self, ref, idx) -> ir.Value:
        v = self.b.load(self.address(ref, idx), align=ref.dtype.itemsize)
        if ref.dtype is dt.bool_:
            return self.b.icmp_unsigned("!=", v, ir.Constant(I8, 0))
        return v

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
            return constant(e.value, e.dtype)
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
                args.append(constant(a.value, target))
            else:
                args.append(convert(self.b, self.value(a), a.dtype, target))
        s = Scalar(self.b, e.compute, self.err)
        s.site = self.sites.get(id(e), 0)
        r = e.op.emit(s, args, e.attrs)
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
        nxt = b.add(i, c64(1), name=f"{var.name}.next", flags=["nsw", "nuw"])
        i.add_incoming(nxt, b.block)
        b.cbranch(b.icmp_signed("<", nxt, hi, name=f"{var.name}.again"), head, done)
        b.position_at_end(done)
        del self.vars[var]

    def loop(self, stmt: Loop) -> None:
        if stmt.parallel and self.stage.parallel and stmt is self.stage.stmts[0]:
            lo, hi = self.start, self.end
        else:
            lo, hi = c64(0), c64(stmt.var.extent)
        innermost = not any(isinstance(x, (Loop, Reduce, Gemm)) for x in stmt.body)
        tag = INTERLEAVE_TAG if innermost and self.stage.kernel.kind == "elementwise" else ""
        self.counted_loop(stmt.var, lo, hi, lambda: self.emit_body(stmt.body), tag)

    def nest(self, loops: list, body, tag: str = "") -> None:
        """``loops`` nested around ``body``; the innermost loop carries ``tag``."""
        if not loops:
            body()
            return
        self.counted_loop(loops[0], c64(0), c64(loops[0].extent),
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
            count = e.udiv(e.add(c64(inner.extent), c64(SUM_BLOCK - 1)), c64(SUM_BLOCK))
        else:
            count = -(-inner.extent // SUM_BLOCK)
        blocks = Var(f"{inner.name}.block", count)

        def block_body():
            lo = b.mul(self.vars[blocks], c64(SUM_BLOCK))
            hi = b.add(lo, c64(SUM_BLOCK))
            if sized or inner.extent % SUM_BLOCK:  # a shorter last block
                hi = b.select(b.icmp_signed("<", hi, c64(inner.extent)), hi, c64(inner.extent))
            for a in blocked:
                b.store(ir.Constant(F32, 0.0), partial[a])
            self.counted_loop(inner, lo, hi, body)
            for a in blocked:
                total = b.fadd(b.load(a.llvm_slots["acc"]), b.fpext(b.load(partial[a]), F64))
                b.store(total, a.llvm_slots["acc"])
        self.nest(loops[:-1] + [blocks], block_body, NO_UNROLL_TAG)

    def init_acc(self, acc: Acc) -> None:
        from .schedule import identity

        slots = {}
        if acc.kind in ("argmax", "argmin"):
            vdt = acc.value.dtype
            slots["best"] = self.alloca(lltype(vdt), f"{acc.name}.best")
            slots["index"] = self.alloca(I64, f"{acc.name}.index")
            self.b.store(constant(0, vdt), slots["best"])
            self.b.store(c64(-1), slots["index"])
        else:
            slots["acc"] = self.alloca(lltype(acc.acc_dtype), f"{acc.name}.acc")
            self.b.store(constant(identity(acc.kind, acc.acc_dtype), acc.acc_dtype), slots["acc"])
            if acc.kind in ("max", "min") and acc.acc_dtype.is_floating_point:
                mask = I64 if acc.acc_dtype is dt.float64 else I32
                slots["nan"] = self.alloca(mask, f"{acc.name}.nan")
                self.b.store(ir.Constant(mask, 0), slots["nan"])
        acc.llvm_slots = slots  # this emission's storage for the accumulator

    def update_acc(self, acc: Acc, loops, partial=None) -> None:
        """Fold this iteration's value into the accumulator (or a float32 ``partial`` sum)."""
        b, slots = self.b, acc.llvm_slots
        if partial is not None:
            b.store(self.combine("sum", dt.float32, b.load(partial), self.value(acc.value), True),
                    partial)
            return
        x = self.value(acc.value)
        if acc.kind in ("argmax", "argmin"):
            vdt = acc.value.dtype
            pos = c64(0)
            for var in loops or ():
                pos = b.add(b.mul(pos, c64(var.extent)), self.vars[var])
            best, idx = b.load(slots["best"]), b.load(slots["index"])
            s = Scalar(b, vdt)
            better = s.cmp(">" if acc.kind == "argmax" else "<", x, best)
            first = b.icmp_signed("<", idx, c64(0))
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
        b, slots = self.b, acc.llvm_slots
        if acc.kind in ("argmax", "argmin"):
            idx = b.load(slots["index"])
            return convert(b, b.select(b.icmp_signed("<", idx, c64(0)), c64(0), idx),
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
        args = [ir.Constant(I32, row_major),
                ir.Constant(I32, trans if g.trans_a else no_trans),
                ir.Constant(I32, trans if g.trans_b else no_trans),
                self.blas_int(n, g.m), self.blas_int(n, g.n), self.blas_int(n, g.k),
                ir.Constant(fty, 1.0), self.address(g.a, g.a_index), self.blas_int(n, g.lda),
                self.address(g.b, g.b_index), self.blas_int(n, g.ldb), ir.Constant(fty, 0.0),
                self.address(g.c, g.c_index), self.blas_int(n, g.ldc)]
        b.call(fn, args)

    def blas_int(self, ty: ir.IntType, v) -> ir.Value:
        """A BLAS size argument (32- or 64-bit ints, as the library was built)."""
        if type(v) is not SymInt:
            return ir.Constant(ty, v)
        v = c64(v)
        return v if ty.width == 64 else self.entry.trunc(v, ty)

    # ---- the function -------------------------------------------------------------------
    def emit(self) -> ir.Function:
        _sizes.append(self.sizes)
        try:
            self.emit_body(list(self.stage.stmts))
        finally:
            _sizes.pop()
        self.b.store(self.b.load(self.err), self.err_out)
        self.b.ret_void()
        self.entry.branch(self.fn.blocks[1])
        return self.fn


# ---- the text cache's key -----------------------------------------------------------------

def fingerprint(kernel: Kernel, sites: dict) -> str:
    """Every attribute of ``kernel``'s IR, spelled out: two kernels with the same fingerprint
    emit the same LLVM IR. Shared objects (a sub-expression used twice, a loop variable)
    are spelled once and then referred to by number, since the emitter treats shared and
    equal-but-separate objects differently. Raises TypeError on a value it cannot spell,
    and on an op whose emitter is not graphc's own (one patched or registered at run
    time is not in ``codegen_digest``)."""
    out: list[str] = []
    ids: dict[int, int] = {}

    def walk(x) -> None:
        t = type(x)
        if t in _ATOMS:
            out.append(f"{t.__name__}:{x!r}")
        elif t is SymInt:  # as emitted: symbols a guard pinned are their values
            v = x.simplified()
            out.append(f"sym:{v}" if type(v) is SymInt else f"int:{v!r}")
        elif t is tuple or t is list:
            out.append("[" if t is list else "(")
            for v in x:
                walk(v)
                out.append(",")
            out.append("]" if t is list else ")")
        elif isinstance(x, dt.dtype):
            out.append(f"dtype:{x}")
        elif isinstance(x, OpDef):
            if x.emit is not EMITTERS.get(x.name):  # replaced or added at run time: the
                raise TypeError(f"{x.name} has an emitter of its own")  # digest cannot see it
            out.append(f"op:{x.name}")
        elif _dataclass_kind(t):
            if _dataclass_kind(t) == "shared":
                if id(x) in ids:
                    out.append(f"#{ids[id(x)]}")
                    return
                ids[id(x)] = len(ids)
            out.append(t.__name__ + "(")
            for name, value in sorted(vars(x).items()):  # fields and any attribute set later
                out.append(name + "=")
                walk(value)
                out.append(",")
            if t is Apply:
                out.append(f"site={sites.get(id(x), 0)}")
            out.append(")")
        elif t is dict:
            out.append("{")
            for k in sorted(x, key=repr):
                out.append(repr(k) + ":")
                walk(x[k])
                out.append(",")
            out.append("}")
        else:
            raise TypeError(f"cannot fingerprint {t.__name__}")
    walk(kernel)
    return "".join(out)


_ATOMS = frozenset({int, float, str, bool, type(None)})


@functools.cache
def _dataclass_kind(t: type) -> str:
    """"frozen" (a value: spelled each time), "shared" (identity matters), or ""."""
    if not dataclasses.is_dataclass(t):
        return ""
    return "frozen" if t.__dataclass_params__.frozen else "shared"


@functools.cache
def codegen_digest() -> str:
    """sha256 of the code that turns kernel IR into LLVM IR (this package, and the dtypes
    and op table it reads), so a changed emitter never meets an old text."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.glob("*.py")) + [root.parent / "dtype.py",
                                               root.parent / "ops" / "registry.py"]:
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


# ---- the program ------------------------------------------------------------------------

class ProgramEmitter:
    """The module of one compiled graph: every stage, ``parallel_for`` and ``main``."""

    def __init__(self, name: str, triple: str, data_layout: str, threads: int,
                 parallel_threshold: int, blas, size_slots: dict | None = None):
        self.module = ir.Module(name)
        self.size_slots = dict(size_slots or {})  # symbol -> the table slot holding its value
        self.module.triple = triple
        self.module.data_layout = data_layout
        self.threads = max(1, min(threads, MAX_THREADS))
        self.threshold = parallel_threshold
        self.blas = blas
        self.steps: list = []  # ("stage", (Stage, sites)) or ("callback", (number, slot))
        self._parallel_for = None
        # what the text depends on besides this package's code (see finish)
        self._fingerprint: list | None = [repr((
            name, triple, data_layout, self.threads, parallel_threshold,
            blas and (blas.sgemm, blas.dgemm, blas.int_bits), sorted(self.size_slots.items())))]

    def add_kernel(self, kernel: Kernel, sites: dict) -> list[Stage]:
        """Stages for ``kernel`` (emitted by ``finish``); ``sites`` numbers the Applies
        that can raise."""
        # a parallel loop is a stage of its own; serial statements in between share one
        # (a reduction's accumulator and the store that reads it must be in one function)
        groups: list[list] = []
        for stmt in kernel.body:
            if isinstance(stmt, Loop) and stmt.parallel:
                groups.append([stmt])
            elif groups and not (isinstance(groups[-1][0], Loop) and groups[-1][0].parallel):
                groups[-1].append(stmt)
            else:
                groups.append([stmt])
        stages = [Stage(kernel, k, g) for k, g in enumerate(groups)]
        self.steps.extend(("stage", (st, sites)) for st in stages)
        if self._fingerprint is not None:
            try:
                self._fingerprint.append(fingerprint(kernel, sites))
            except TypeError:  # something it cannot spell: this program is not cached
                self._fingerprint = None
        return stages

    def add_callback(self, number: int, slot: int) -> None:
        self.steps.append(("callback", (number, slot)))
        if self._fingerprint is not None:
            self._fingerprint.append(f"callback {number} {slot}")

    def runs_parallel(self, st: Stage):
        """Whether a stage runs on threads: True, False, or for a stage whose size is
        symbolic the condition as an LLVM value (decided per call, not guarded)."""
        threshold = self.threshold
        if _has_gemm(st.kernel.body):
            # a matmul's epilogue: OpenBLAS's threads are still spinning after the gemm,
            # so threads of ours only contend with them unless the epilogue is large
            threshold *= EPILOGUE_THRESHOLD_FACTOR
        if not (st.parallel and self.threads > 1):
            return False
        if type(st.extent) is SymInt or type(st.work) is SymInt:
            b = _sizes[-1].b
            return b.and_(b.icmp_signed(">", c64(st.extent), c64(1)),
                          b.icmp_signed(">=", c64(st.work), c64(threshold)))
        return st.extent > 1 and st.work >= threshold

    def finish(self) -> str:
        """The module's text. Building it with llvmlite is most of a cached compile's
        time, so the text is kept in the disk cache under a key made of the kernels' full
        structure (``fingerprint``), the program's steps and settings, and a digest of the
        code that emits them."""
        from . import cache

        key = None
        if self._fingerprint is not None:
            key = cache.cache_key("\n".join([codegen_digest()] + self._fingerprint))
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
        entry = main.append_basic_block("entry")
        b = ir.IRBuilder(main.append_basic_block("start"))
        _sizes.append(Sizes(ir.IRBuilder(entry), ptrs, self.size_slots))
        try:
            err = _sizes[-1].b.alloca(I32, name="err")
            fail = main.append_basic_block("fail")
            for kind, what in self.steps:
                if kind == "stage":
                    code = self._call_stage(main, b, what[0], ptrs, err)
                else:
                    number, slot = what
                    raw = b.load(b.gep(ptrs, [c64(slot)], inbounds=True))
                    code = b.call(b.bitcast(raw, CALLBACK_TYPE.as_pointer()), [c64(number)])
                ok = main.append_basic_block("ok")
                b.store(code, err)
                b.cbranch(b.icmp_signed("!=", code, ir.Constant(I32, 0)), fail, ok)
                b.position_at_end(ok)
            b.ret(ir.Constant(I32, 0))
            b.position_at_end(fail)
            b.ret(b.load(err))
            _sizes[-1].b.branch(main.blocks[1])
        finally:
            _sizes.pop()
        return _loop_metadata(str(self.module))

    def _call_stage(self, main, b, stage: Stage, ptrs, err) -> ir.Value:
        """Call one stage, on threads or not (decided here, or per call for symbolic sizes);
        returns its error code."""
        fn = self.module.globals[stage.symbol]

        def threaded():
            return b.call(self.parallel_for(), [fn, ptrs, c64(stage.extent),
                                                c64(self.threads), c64(_granule(stage))])

        def serial():
            b.store(ir.Constant(I32, 0), err)
            b.call(fn, [ptrs, c64(0), c64(stage.extent), err, c64(0)])
            return b.load(err)
        parallel = self.runs_parallel(stage)
        if parallel is True or parallel is False:
            return threaded() if parallel else serial()
        with b.if_else(parallel) as (then, otherwise):
            with then:
                on_threads, then_block = threaded(), b.block
            with otherwise:
                alone, else_block = serial(), b.block
        code = b.phi(I32)
        code.add_incoming(on_threads, then_block)
        code.add_incoming(alone, else_block)
        return code

    def parallel_for(self) -> ir.Function:
        """``i32 parallel_for(stage, ptrs, extent, threads, granule)``: split [0, extent)
        into ``threads`` chunks (each a multiple of ``granule`` iterations), run chunk 0
        here and the others on new threads, join, and return the first nonzero error
        code."""
        if self._parallel_for is not None:
            return self._parallel_for
        m = self.module
        stage_ptr = STAGE_TYPE.as_pointer()
        task = ir.LiteralStructType([stage_ptr, I8PP, I64, I64, I32, I64])
        worker_ty = ir.FunctionType(I8P, [I8P])
        worker = ir.Function(m, worker_ty, PREFIX + "worker")
        worker.linkage = "internal"
        wb = ir.IRBuilder(worker.append_basic_block("entry"))
        t = wb.bitcast(worker.args[0], task.as_pointer())

        def field(builder, base, k):
            return builder.gep(base, [ir.Constant(I32, 0), ir.Constant(I32, k)], inbounds=True)
        wb.call(wb.load(field(wb, t, 0)), [wb.load(field(wb, t, 1)), wb.load(field(wb, t, 2)),
                                            wb.load(field(wb, t, 3)), field(wb, t, 4),
                                            wb.load(field(wb, t, 5))])
        wb.ret(ir.Constant(I8P, None))

        create = ir.Function(m, ir.FunctionType(I32, [I64.as_pointer(), I8P,
                                                      worker_ty.as_pointer(), I8P]),
                             "pthread_create")
        join = ir.Function(m, ir.FunctionType(I32, [I64, I8P.as_pointer()]), "pthread_join")

        fn = ir.Function(m, ir.FunctionType(I32, [stage_ptr, I8PP, I64, I64, I64]),
                         PREFIX + "parallel_for")
        fn.linkage = "internal"
        stage, ptrs, extent, threads, granule = fn.args
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        tasks = b.alloca(ir.ArrayType(task, MAX_THREADS), name="tasks")
        handles = b.alloca(ir.ArrayType(I64, MAX_THREADS), name="handles")
        started = b.alloca(ir.ArrayType(I1, MAX_THREADS), name="started")
        # chunk = ceil(extent / threads), rounded up to a multiple of the granule
        chunk = b.udiv(b.add(extent, b.sub(threads, c64(1))), threads)
        chunk = b.mul(b.udiv(b.add(chunk, b.sub(granule, c64(1))), granule), granule)

        def task_at(builder, k):
            return builder.gep(tasks, [ir.Constant(I32, 0), k], inbounds=True)

        def spawn_body(builder, k):
            lo = builder.mul(k, chunk)
            lo = builder.select(builder.icmp_signed("<", lo, extent), lo, extent)
            hi = builder.add(lo, chunk)
            hi = builder.select(builder.icmp_signed("<", hi, extent), hi, extent)
            tk = task_at(builder, k)
            for idx, v in enumerate((stage, ptrs, lo, hi, ir.Constant(I32, 0), k)):
                builder.store(v, field(builder, tk, idx))
            return lo, hi, tk

        # for k in 1..threads-1: start a thread when its chunk is not empty
        self._loop(fn, b, c64(1), threads, lambda bb, k: self._spawn(
            fn, bb, k, spawn_body, handles, started, create, worker))
        lo, hi, tk0 = spawn_body(b, c64(0))
        b.call(worker, [b.bitcast(tk0, I8P)])
        result = b.alloca(I32, name="result")
        b.store(b.load(field(b, tk0, 4)), result)

        def join_one(bb, k):
            flag = bb.load(bb.gep(started, [ir.Constant(I32, 0), k], inbounds=True))
            with bb.if_then(flag):
                h = bb.load(bb.gep(handles, [ir.Constant(I32, 0), k], inbounds=True))
                bb.call(join, [h, ir.Constant(I8P.as_pointer(), None)])
            code = bb.load(field(bb, task_at(bb, k), 4))
            cur = bb.load(result)
            bb.store(bb.select(bb.icmp_signed("==", cur, ir.Constant(I32, 0)), code, cur), result)
        self._loop(fn, b, c64(1), threads, join_one)
        b.ret(b.load(result))
        self._parallel_for = fn
        return fn

    def _spawn(self, fn, b, k, spawn_body, handles, started, create, worker):
        lo, hi, tk = spawn_body(b, k)
        flag_ptr = b.gep(started, [ir.Constant(I32, 0), k], inbounds=True)
        b.store(ir.Constant(I1, 0), flag_ptr)
        with b.if_then(b.icmp_signed("<", lo, hi)):
            h = b.gep(handles, [ir.Constant(I32, 0), k], inbounds=True)
            rc = b.call(create, [h, ir.Constant(I8P, None), worker, b.bitcast(tk, I8P)])
            ok = b.icmp_signed("==", rc, ir.Constant(I32, 0))
            with b.if_else(ok) as (then, otherwise):
                with then:
                    b.store(ir.Constant(I1, 1), flag_ptr)
                with otherwise:  # no thread available: run the chunk here
                    b.call(worker, [b.bitcast(tk, I8P)])

    @staticmethod
    def _loop(fn, b, lo, hi, body) -> None:
        pre = b.block
        head = fn.append_basic_block("t.loop")
        done = fn.append_basic_block("t.done")
        b.cbranch(b.icmp_signed("<", lo, hi), head, done)
        b.position_at_end(head)
        k = b.phi(I64)
        k.add_incoming(lo, pre)
        body(b, k)
        nxt = b.add(k, c64(1))
        k.add_incoming(nxt, b.block)
        b.cbranch(b.icmp_signed("<", nxt, hi), head, done)
        b.position_at_end(done)
