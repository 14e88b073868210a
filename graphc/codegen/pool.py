"""The process's worker threads: one pool that every compiled program's parallel stages run on.

Creating a thread per parallel stage cost about 60 us a stage here (a 64K-element kernel
took 75 us on two threads and 13 us on one). The pool starts its workers once and hands
them each stage through shared memory:

    i32 graphc_pool_run(stage, ptrs, extent, threads, granule)

splits ``[0, extent)`` into ``threads`` chunks (each a multiple of ``granule`` iterations),
runs chunk 0 on the calling thread and chunk k on worker k, waits for them, and returns the
first nonzero error code. A chunk whose worker has not started it when the caller is done
with its own runs on the caller (a worker descheduled under load, by another process or
by OpenBLAS's threads still spinning after numpy's matmul, would otherwise hold the stage
up: a program is never much slower than on one thread). A worker spins briefly for the
next stage (a program's stages follow each other closely), then sleeps on a condition
variable, so an idle pool takes no CPU from numpy or BLAS between calls. Two calls at once
(Python threads each running a program) cannot share the workers: the second runs its
chunks on its own thread, one after another (the same results).

The pool is LLVM IR compiled once per process into an engine that is never freed (workers
may still be spinning in its code at exit); programs find ``graphc_pool_run`` as an external
symbol. After ``fork`` the child has no workers: its pool starts them again.
"""

from __future__ import annotations

from llvmlite import ir

from .emitters import I8, I32, I64

I8P = I8.as_pointer()
STAGE_TYPE = ir.FunctionType(ir.VoidType(), [I8P.as_pointer(), I64, I64, I32.as_pointer(), I64])
RUN = "graphc_pool_run"
RUN_TYPE = ir.FunctionType(I32, [STAGE_TYPE.as_pointer(), I8P.as_pointer(), I64, I64, I64])
MAX_WORKERS = 63
SPIN = 4000          # pauses a worker waits for the next stage before it sleeps (~0.1-0.5 ms)
MUTEX_BYTES, COND_BYTES = 64, 64  # more than glibc's pthread_mutex_t (40) and _cond_t (48)
SEQ = "seq_cst"


class _Builder:
    """The pool's module: its globals and its three functions."""

    def __init__(self, triple: str, data_layout: str):
        m = self.m = ir.Module("graphc_pool")
        m.triple, m.data_layout = triple, data_layout
        self.x86 = triple.startswith(("x86_64", "i686", "i386"))

        def var(name, ty, align=8):
            g = ir.GlobalVariable(m, ty, name)
            g.initializer = ir.Constant(ty, None)
            g.align = align
            return g
        self.mutex = var("pool_mutex", ir.ArrayType(I8, MUTEX_BYTES), 16)
        self.cond = var("pool_cond", ir.ArrayType(I8, COND_BYTES), 16)
        self.busy = var("pool_busy", I64)         # a call is using the workers
        self.started = var("pool_started", I64)   # workers running
        self.generation = var("pool_generation", I64)  # bumped once per stage
        self.finished = var("pool_finished", I64)  # chunks workers finished this stage
        # per chunk, the last generation it was claimed in: a worker claims its chunk, or
        # the caller, done with its own, takes a chunk no worker has started
        self.claimed = var("pool_claimed", ir.ArrayType(I64, MAX_WORKERS + 1), 16)
        self.sleepers = var("pool_sleepers", I64)
        self.stage = var("pool_stage", STAGE_TYPE.as_pointer())
        self.ptrs = var("pool_ptrs", I8P.as_pointer())
        self.extent, self.chunk, self.threads = (var(n, I64) for n in
                                                 ("pool_extent", "pool_chunk", "pool_threads"))
        self.errors = var("pool_errors", ir.ArrayType(I32, MAX_WORKERS + 1), 16)
        # the generation each worker was created in: the stages it has not seen come after
        self.born = var("pool_born", ir.ArrayType(I64, MAX_WORKERS + 1), 16)
        voidp = I8P
        self.lock = ir.Function(m, ir.FunctionType(I32, [voidp]), "pthread_mutex_lock")
        self.unlock = ir.Function(m, ir.FunctionType(I32, [voidp]), "pthread_mutex_unlock")
        self.wait = ir.Function(m, ir.FunctionType(I32, [voidp, voidp]), "pthread_cond_wait")
        self.broadcast = ir.Function(m, ir.FunctionType(I32, [voidp]), "pthread_cond_broadcast")
        self.worker_type = ir.FunctionType(I8P, [I8P])
        self.create = ir.Function(m, ir.FunctionType(I32, [I64.as_pointer(), I8P,
                                                           self.worker_type.as_pointer(), I8P]),
                                  "pthread_create")
        self.detach = ir.Function(m, ir.FunctionType(I32, [I64]), "pthread_detach")
        self.pause = ir.Function(m, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse2.pause") \
            if self.x86 else None

    # ---- helpers ------------------------------------------------------------------------
    @staticmethod
    def c(n: int, ty=I64) -> ir.Constant:
        return ir.Constant(ty, n)

    def load(self, b, g):
        return b.load_atomic(g, SEQ, 8)

    def store(self, b, value, g):
        b.store_atomic(value, g, SEQ, 8)

    def relax(self, b) -> None:
        if self.pause is not None:
            b.call(self.pause, [])

    def claim(self, b, k, generation) -> ir.Value:
        """Whether this thread takes chunk ``k`` of ``generation`` (i1): one of the
        worker and the caller does, whichever comes first."""
        slot = b.gep(self.claimed, [self.c(0, I32), k], inbounds=True)
        old = b.load_atomic(slot, SEQ, 8)
        fresh = b.icmp_signed("<", old, generation)
        got = b.cmpxchg(slot, old, generation, SEQ, SEQ)
        return b.and_(fresh, b.extract_value(got, 1))

    def error_slot(self, b, k):
        return b.gep(self.errors, [self.c(0, I32), k], inbounds=True)

    def chunk_size(self, b, extent, threads, granule):
        """ceil(extent / threads), rounded up to a multiple of the granule."""
        chunk = b.udiv(b.add(extent, b.sub(threads, self.c(1))), threads)
        return b.mul(b.udiv(b.add(chunk, b.sub(granule, self.c(1))), granule), granule)

    @staticmethod
    def bounds(b, k, chunk, extent):
        """Chunk ``k``'s [lo, hi), cut at ``extent``."""
        lo = b.mul(k, chunk)
        lo = b.select(b.icmp_signed("<", lo, extent), lo, extent)
        hi = b.add(lo, chunk)
        return lo, b.select(b.icmp_signed("<", hi, extent), hi, extent)

    def run_chunk(self, b, k) -> None:
        """Chunk ``k`` of the current stage (nothing when it is empty)."""
        lo, hi = self.bounds(b, k, b.load(self.chunk), b.load(self.extent))
        slot = self.error_slot(b, k)
        b.store(self.c(0, I32), slot)
        with b.if_then(b.icmp_signed("<", lo, hi)):
            b.call(b.load(self.stage), [b.load(self.ptrs), lo, hi, slot, k])

    def loop(self, fn, b, name: str):
        """A block to loop back to, entered now."""
        head = fn.append_basic_block(name)
        b.branch(head)
        b.position_at_end(head)
        return head

    # ---- the worker ---------------------------------------------------------------------
    def worker(self) -> ir.Function:
        fn = ir.Function(self.m, self.worker_type, "pool_worker")
        fn.linkage = "internal"
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        k = b.ptrtoint(fn.args[0], I64)
        seen = b.alloca(I64)
        spins = b.alloca(I64)
        b.store(b.load(b.gep(self.born, [self.c(0, I32), k], inbounds=True)), seen)
        top = self.loop(fn, b, "next")
        b.store(self.c(0), spins)
        wait = self.loop(fn, b, "wait")
        fresh = b.icmp_unsigned("!=", self.load(b, self.generation), b.load(seen))
        work, idle = fn.append_basic_block("work"), fn.append_basic_block("idle")
        b.cbranch(fresh, work, idle)
        b.position_at_end(idle)
        n = b.add(b.load(spins), self.c(1))
        b.store(n, spins)
        spin, sleep = fn.append_basic_block("spin"), fn.append_basic_block("sleep")
        b.cbranch(b.icmp_unsigned("<", n, self.c(SPIN)), spin, sleep)
        b.position_at_end(spin)
        self.relax(b)
        b.branch(wait)
        b.position_at_end(sleep)  # sleepers is counted before the generation is read again
        mutex, cond = b.bitcast(self.mutex, I8P), b.bitcast(self.cond, I8P)
        b.call(self.lock, [mutex])
        b.atomic_rmw("add", self.sleepers, self.c(1), SEQ)
        check = self.loop(fn, b, "check")
        same = b.icmp_unsigned("==", self.load(b, self.generation), b.load(seen))
        wait_more, woken = fn.append_basic_block("wait_more"), fn.append_basic_block("woken")
        b.cbranch(same, wait_more, woken)
        b.position_at_end(wait_more)
        b.call(self.wait, [cond, mutex])
        b.branch(check)
        b.position_at_end(woken)
        b.atomic_rmw("sub", self.sleepers, self.c(1), SEQ)
        b.call(self.unlock, [mutex])
        b.branch(work)
        b.position_at_end(work)
        generation = self.load(b, self.generation)
        b.store(generation, seen)
        # a claimed chunk is of the stage the caller waits for: the fields are its own
        with b.if_then(self.claim(b, k, generation)):
            self.run_chunk(b, k)
            b.atomic_rmw("add", self.finished, self.c(1), SEQ)
        b.branch(top)
        return fn

    # ---- graphc_pool_run ----------------------------------------------------------------
    def run(self, worker: ir.Function) -> ir.Function:
        fn = ir.Function(self.m, RUN_TYPE, RUN)
        stage, ptrs, extent, threads, granule = fn.args
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        result = b.alloca(I32)
        chunk = self.chunk_size(b, extent, threads, granule)
        got = b.cmpxchg(self.busy, self.c(0), self.c(1), SEQ, SEQ)
        alone = b.extract_value(got, 1)
        shared, serial = fn.append_basic_block("shared"), fn.append_basic_block("serial")
        b.cbranch(alone, shared, serial)

        # busy: every chunk here, one after another (error slots on this stack)
        b.position_at_end(serial)
        err = b.alloca(I32)
        b.store(self.c(0, I32), result)

        def one_chunk(bb, k):
            lo, hi = self.bounds(bb, k, chunk, extent)
            bb.store(self.c(0, I32), err)
            with bb.if_then(bb.icmp_signed("<", lo, hi)):
                bb.call(stage, [ptrs, lo, hi, err, k])
            cur = bb.load(result)
            bb.store(bb.select(bb.icmp_signed("==", cur, self.c(0, I32)), bb.load(err), cur),
                     result)
        count_loop(fn, b, self.c(0), threads, one_chunk)
        b.ret(b.load(result))

        b.position_at_end(shared)
        # start the workers this call needs (once per process, or after a fork)
        need = b.sub(threads, self.c(1))
        need = b.select(b.icmp_signed("<", need, self.c(MAX_WORKERS)), need, self.c(MAX_WORKERS))
        handle = b.alloca(I64)
        start = self.loop(fn, b, "start")
        have = b.load(self.started)
        more, ready = fn.append_basic_block("more"), fn.append_basic_block("ready")
        b.cbranch(b.icmp_signed("<", have, need), more, ready)
        b.position_at_end(more)
        number = b.add(have, self.c(1))  # workers are 1, 2, ...: chunk 0 is the caller's
        b.store(self.load(b, self.generation), b.gep(self.born, [self.c(0, I32), number],
                                                     inbounds=True))
        rc = b.call(self.create, [handle, ir.Constant(I8P, None), worker,
                                  b.inttoptr(number, I8P)])
        created, failed = fn.append_basic_block("created"), fn.append_basic_block("failed")
        b.cbranch(b.icmp_signed("==", rc, self.c(0, I32)), created, failed)
        b.position_at_end(created)
        b.call(self.detach, [b.load(handle)])
        b.store(number, self.started)
        b.branch(start)
        b.position_at_end(failed)  # no thread to be had: the workers there are will do
        b.branch(ready)

        b.position_at_end(ready)
        workers = b.load(self.started)
        usable = b.add(workers, self.c(1))
        threads = b.select(b.icmp_signed("<", threads, usable), threads, usable)
        chunk = self.chunk_size(b, extent, threads, granule)
        b.store(stage, self.stage)
        b.store(ptrs, self.ptrs)
        b.store(extent, self.extent)
        b.store(chunk, self.chunk)
        b.store(threads, self.threads)
        self.store(b, self.c(0), self.finished)
        generation = b.add(self.load(b, self.generation), self.c(1))

        def not_this_stage(bb, k):  # the workers past this stage's threads have no chunk
            bb.store_atomic(generation, bb.gep(self.claimed, [self.c(0, I32), k], inbounds=True),
                            SEQ, 8)
        count_loop(fn, b, threads, usable, not_this_stage)
        self.store(b, generation, self.generation)  # publishes the stage
        with b.if_then(b.icmp_unsigned("!=", self.load(b, self.sleepers), self.c(0))):
            mutex = b.bitcast(self.mutex, I8P)
            b.call(self.lock, [mutex])
            b.call(self.broadcast, [b.bitcast(self.cond, I8P)])
            b.call(self.unlock, [mutex])
        self.run_chunk(b, self.c(0))
        # the chunks no worker has started yet run here (a worker descheduled under load
        # would otherwise make the stage wait for it): never slower than one thread
        taken = b.alloca(I64)
        b.store(self.c(0), taken)

        def steal(bb, k):
            with bb.if_then(self.claim(bb, k, generation)):
                self.run_chunk(bb, k)
                bb.store(bb.add(bb.load(taken), self.c(1)), taken)
        count_loop(fn, b, self.c(1), threads, steal)
        waited = b.sub(b.sub(threads, self.c(1)), b.load(taken))
        join = self.loop(fn, b, "join")
        done, spin = fn.append_basic_block("done"), fn.append_basic_block("join_spin")
        b.cbranch(b.icmp_signed(">=", self.load(b, self.finished), waited), done, spin)
        b.position_at_end(spin)
        self.relax(b)
        b.branch(join)
        b.position_at_end(done)
        b.store(self.c(0, I32), result)

        def first_error(bb, k):
            code, cur = bb.load(self.error_slot(bb, k)), bb.load(result)
            bb.store(bb.select(bb.icmp_signed("==", cur, self.c(0, I32)), code, cur), result)
        count_loop(fn, b, self.c(0), threads, first_error)
        self.store(b, self.c(0), self.busy)
        b.ret(b.load(result))
        return fn


def count_loop(fn, b, lo, hi, body) -> None:
    """``for k in [lo, hi): body(b, k)`` (k an i64 phi)."""
    pre = b.block
    head = fn.append_basic_block("k.loop")
    done = fn.append_basic_block("k.done")
    b.cbranch(b.icmp_signed("<", lo, hi), head, done)
    b.position_at_end(head)
    k = b.phi(I64)
    k.add_incoming(lo, pre)
    body(b, k)
    nxt = b.add(k, ir.Constant(I64, 1))
    k.add_incoming(nxt, b.block)
    b.cbranch(b.icmp_signed("<", nxt, hi), head, done)
    b.position_at_end(done)


def pool_ir(triple: str, data_layout: str) -> str:
    """The pool's module as LLVM IR text."""
    builder = _Builder(triple, data_layout)
    builder.run(builder.worker())
    return str(builder.m)


RESET = ("pool_busy", "pool_started", "pool_finished", "pool_sleepers")


def reset_after_fork(address_of) -> None:
    """In a forked child: no worker exists, nothing is running, the lock is free."""
    import ctypes

    for name in RESET:
        ctypes.c_int64.from_address(address_of(name)).value = 0
    for name, size in (("pool_mutex", MUTEX_BYTES), ("pool_cond", COND_BYTES)):
        ctypes.memset(address_of(name), 0, size)


