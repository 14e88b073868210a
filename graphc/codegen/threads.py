"""Stages on threads: ``main`` calls a large parallel stage through ``parallel_for``
(pthreads, emitted into the module once), and any other stage directly.

Every stage has one signature, so that a thread can run any chunk of it:

    void stage(i8** ptrs, i64 start, i64 end, i32* err, i64 tid)

``parallel_for`` splits ``[0, extent)`` into one chunk per thread (whole granules, see
``granule``), runs chunk 0 on the calling thread and the others on new threads, joins
them, and returns the first nonzero error code.
"""

from __future__ import annotations

from llvmlite import ir

from ..symbolic import SymInt
from .emitters import I1, I8, I32, I64
from .kernel_ir import Gemm, Loop, Reduce
from .target import PREFIX

I8P = I8.as_pointer()
I8PP = I8P.as_pointer()
STAGE_TYPE = ir.FunctionType(ir.VoidType(), [I8PP, I64, I64, I32.as_pointer(), I64])
MAX_THREADS = 64
EPILOGUE_THRESHOLD_FACTOR = 32  # see ThreadedCalls.runs_parallel
GRANULE = 64      # iterations per thread chunk of a flat elementwise loop: whole cache lines
ROW_GRANULE = 16  # ... of a loop over rows or tiles (see granule)


def _i64(n: int) -> ir.Constant:
    return ir.Constant(I64, n)


def has_gemm(body: list) -> bool:
    return any(isinstance(s, Gemm) or (isinstance(s, Loop) and has_gemm(s.body)) for s in body)


def granule(stage) -> int:
    """Thread chunks of a loop around BLAS calls are single gemms (each is much work).
    Thread chunks of a flat loop over elements are whole cache lines (two threads
    writing one line slow each other down). A loop over rows or tiles is cut in chunks of
    ROW_GRANULE: with 64 as well, 64 rows (softmax over (64, 8192), the tile rows of a
    1024-row transpose) ran on one thread; with 1, W6's loops of 8 iterations, each
    after a gemm whose OpenBLAS threads were still spinning, made it 30% slower."""
    body = stage.stmts[0].body
    if has_gemm(body):
        return 1
    if not any(isinstance(x, (Loop, Reduce)) for x in body):
        return GRANULE
    return ROW_GRANULE


class ThreadedCalls:
    """How ``main`` calls the stages of one module on ``threads`` threads: a stage with
    at least ``threshold`` element operations through ``parallel_for``, others directly."""

    def __init__(self, module: ir.Module, threads: int, threshold: int,
                 owns_blas_threads: bool = False):
        self.module, self.threads, self.threshold = module, threads, threshold
        self.owns_blas_threads = owns_blas_threads
        self._parallel_for: ir.Function | None = None

    def runs_parallel(self, stage, sizes):
        """Whether a stage runs on threads: True, False, or for a stage whose size is
        symbolic the condition as an LLVM value (decided per call, not guarded; ``sizes``:
        the calling function's ``llvm_emit.Sizes``)."""
        threshold = self.threshold
        if has_gemm(stage.kernel.body) and not self.owns_blas_threads:
            # a matmul's epilogue: OpenBLAS's threads are still spinning after the gemm,
            # so threads of ours only contend with them unless the epilogue is large
            threshold *= EPILOGUE_THRESHOLD_FACTOR
        if not (stage.parallel and self.threads > 1):
            return False
        if type(stage.extent) is SymInt or type(stage.work) is SymInt:
            b, c64 = sizes.b, sizes.c64
            return b.and_(b.icmp_signed(">", c64(stage.extent), c64(1)),
                          b.icmp_signed(">=", c64(stage.work), c64(threshold)))
        return stage.extent > 1 and stage.work >= threshold

    def call(self, b: ir.IRBuilder, sizes, stage, ptrs, err) -> ir.Value:
        """Call one stage, on threads or not (decided here, or per call for symbolic sizes);
        returns its error code."""
        fn = self.module.globals[stage.symbol]
        c64 = sizes.c64

        def threaded():
            return b.call(self.parallel_for(), [fn, ptrs, c64(stage.extent),
                                                c64(self.threads), c64(granule(stage))])

        def serial():
            b.store(ir.Constant(I32, 0), err)
            b.call(fn, [ptrs, c64(0), c64(stage.extent), err, c64(0)])
            return b.load(err)
        parallel = self.runs_parallel(stage, sizes)
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
        stage, ptrs, extent, threads, granule_ = fn.args
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        tasks = b.alloca(ir.ArrayType(task, MAX_THREADS), name="tasks")
        handles = b.alloca(ir.ArrayType(I64, MAX_THREADS), name="handles")
        started = b.alloca(ir.ArrayType(I1, MAX_THREADS), name="started")
        # chunk = ceil(extent / threads), rounded up to a multiple of the granule
        chunk = b.udiv(b.add(extent, b.sub(threads, _i64(1))), threads)
        chunk = b.mul(b.udiv(b.add(chunk, b.sub(granule_, _i64(1))), granule_), granule_)

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
        _loop(fn, b, _i64(1), threads, lambda bb, k: _spawn(
            bb, k, spawn_body, handles, started, create, worker))
        lo, hi, tk0 = spawn_body(b, _i64(0))
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
        _loop(fn, b, _i64(1), threads, join_one)
        b.ret(b.load(result))
        self._parallel_for = fn
        return fn


def _spawn(b, k, spawn_body, handles, started, create, worker) -> None:
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


def _loop(fn, b, lo, hi, body) -> None:
    """``for k in [lo, hi): body(b, k)`` (k an i64 phi)."""
    pre = b.block
    head = fn.append_basic_block("t.loop")
    done = fn.append_basic_block("t.done")
    b.cbranch(b.icmp_signed("<", lo, hi), head, done)
    b.position_at_end(head)
    k = b.phi(I64)
    k.add_incoming(lo, pre)
    body(b, k)
    nxt = b.add(k, _i64(1))
    k.add_incoming(nxt, b.block)
    b.cbranch(b.icmp_signed("<", nxt, hi), head, done)
    b.position_at_end(done)
