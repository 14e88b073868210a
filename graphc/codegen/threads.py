"""Stages on threads: ``main`` calls a large parallel stage through the process's worker
pool (``pool.RUN``), and any other stage directly.

Every stage has one signature, so that a thread can run any chunk of it:

    void stage(i8** ptrs, i64 start, i64 end, i32* err, i64 tid)

The pool splits ``[0, extent)`` into one chunk per thread (whole granules, see
``granule``), runs chunk 0 on the calling thread and the others on its workers, waits
for them, and returns the first nonzero error code.
"""

from __future__ import annotations

from llvmlite import ir

from ..symbolic import SymInt
from .emitters import I8, I32
from .kernel_ir import Gemm, Loop, Reduce
from .pool import MAX_WORKERS, RUN, RUN_TYPE

I8P = I8.as_pointer()
I8PP = I8P.as_pointer()
MAX_THREADS = MAX_WORKERS + 1
EPILOGUE_THRESHOLD_FACTOR = 32  # see ThreadedCalls.runs_parallel
GRANULE = 64      # iterations per thread chunk of a flat elementwise loop: whole cache lines
ROW_GRANULE = 16  # ... of a loop over rows or tiles (see granule)
LONG_ROW = 4096   # element operations per row from which rows are split one by one


def has_gemm(body: list) -> bool:
    return any(isinstance(s, Gemm) or (isinstance(s, Loop) and has_gemm(s.body)) for s in body)


def granule(stage) -> int:
    """Thread chunks of a loop around BLAS calls are single gemms (each is much work).
    Thread chunks of a flat loop over elements are whole cache lines (two threads
    writing one line slow each other down). A loop over rows or tiles is cut in chunks of
    ROW_GRANULE: with 64 as well, 64 rows (softmax over (64, 8192), the tile rows of a
    1024-row transpose) ran on one thread; with 1, W6's loops of 8 iterations, each
    after a gemm whose OpenBLAS threads were still spinning, made it 30% slower. Rows of
    at least LONG_ROW operations are split one by one (batch_norm's 16 channel rows of
    32768 elements ran on one thread)."""
    body = stage.stmts[0].body
    extent, work = stage.extent, stage.work
    if type(extent) is int and type(work) is int and extent and work // extent >= LONG_ROW:
        return 1
    if has_gemm(body):
        return 1
    if not any(isinstance(x, (Loop, Reduce)) for x in body):
        return GRANULE
    return ROW_GRANULE


class ThreadedCalls:
    """How ``main`` calls the stages of one module on ``threads`` threads: a stage with
    at least ``threshold`` element operations through the pool, others directly."""

    def __init__(self, module: ir.Module, threads: int, threshold: int,
                 owns_blas_threads: bool = False):
        self.module, self.threads, self.threshold = module, threads, threshold
        self.owns_blas_threads = owns_blas_threads
        self._pool_run: ir.Function | None = None

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
            return b.call(self.pool_run(), [fn, ptrs, c64(stage.extent),
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

    def pool_run(self) -> ir.Function:
        """``i32 graphc_pool_run(stage, ptrs, extent, threads, granule)``: the process's
        worker pool runs the stage's chunks (see ``pool``)."""
        if self._pool_run is None:
            self._pool_run = ir.Function(self.module, RUN_TYPE, RUN)
        return self._pool_run
