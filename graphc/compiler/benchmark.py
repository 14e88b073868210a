"""``graphc.benchmark(model, *inputs)``: eager against compiled, measured in one run.

    r = graphc.benchmark(model, x)         # prints a table; verbose=False to keep quiet
    r.speedup, r.cold_compile_ms           # the same as fields; r.as_dict() for all of them

What each figure is:

- **time per call**: the median over ``repeat`` samples, eager and compiled interleaved
  (alternating which goes first) so that both see the same machine; a sample times
  enough back-to-back calls to last about a millisecond. All calls run under
  ``graphc.no_grad()`` (a call autograd records would run eagerly), after ``warmup``
  calls of each.
- **compile times**: what the compiler spends (trace, passes, fusion, lowering, LLVM),
  as it times each stage. *Cold* is a fresh process compiling into an empty temporary
  ``GRAPHC_CACHE_DIR``; *cached* is a second fresh process reading that directory (the
  disk cache warm, nothing in memory). Both exclude the one-time start-up of a process
  (LLVM's target and engine, libm, BLAS), which a trivial graph compiled first absorbs
  and ``init_ms`` reports. A fresh process must rebuild the model: from ``source``
  ("file.py:NAME", as the CLI passes) or, when ``model`` is a global of an importable
  module, from that module's file, with this model's state_dict and these inputs
  loaded. Otherwise (or with ``fresh_processes=False``) both are measured in this
  process and ``compile_measured_in`` says so: cold with the disk cache bypassed (an
  empty temporary directory), cached a second compile, which the in-memory cache of
  ``graphc.codegen.target`` answers (it keeps the modules in use and the recent ones),
  so it is faster than a new process would be.
- **peak memory**: tracemalloc's peak (numpy's buffers included) during one call, above
  what was allocated before it, with the previous call's result still alive, as in a
  loop ``y = model(x)``. The compiled figure adds the program's workspace: intermediate
  buffers allocated when it was compiled and held between calls.
- **max_abs_diff**: the largest ``|compiled - eager|`` over every output tensor;
  ``matches`` is whether it is within ``1e-4 * max(1, max |eager|)`` (fused float32
  kernels round differently) with the same shapes and dtypes.
"""

from __future__ import annotations

import gc
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from ..autograd import no_grad
from ..nn.module import Module
from ..tensor import tensors_in
from .compiled import CompiledFunction, CompiledModule, compile, compiled_function
from .check import copies_of

SAMPLE_SECONDS = 1e-3    # a timing sample lasts at least this long (calls back to back)
MAX_CALLS_PER_SAMPLE = 1000
CHILD_TIMEOUT = 600      # seconds for one fresh-process compile
CHILD_ENV = "GRAPHC_BENCHMARK_CHILD"  # set in the fresh processes; stops a benchmark loop
TOLERANCE = 1e-4


@dataclass
class BenchmarkResult:
    """What ``graphc.benchmark`` measured; ``str()`` is the table it prints."""

    name: str
    eager_ms: float                  # median time per call
    compiled_ms: float
    speedup: float                   # eager_ms / compiled_ms
    cold_compile_ms: float           # trace + passes + fuse + lower + LLVM, empty caches
    cached_compile_ms: float         # the same with the disk cache warm (see the notes)
    compile_measured_in: str         # "fresh processes" or "this process (...)"
    init_ms: float                   # a process's one-time start-up, not in the above
    eager_peak_bytes: int
    compiled_peak_bytes: int         # includes compiled_workspace_bytes
    compiled_workspace_bytes: int
    max_abs_diff: float
    matches: bool
    kernels: int
    fallbacks: int                   # nodes run by their numpy kernel inside the program
    repeat: int
    warmup: int
    calls_per_sample: dict = field(default_factory=dict)   # {"eager": n, "compiled": m}
    compile_stages_ms: dict = field(default_factory=dict)  # {"cold": {...}, "cached": {...}}
    cached_llvm_from: str = ""       # where the cached compile found its code: disk/memory
    threads: int = 1
    eager_runs: list = field(default_factory=list)  # why compiled calls ran eagerly, if so
    notes: list = field(default_factory=list)
    target: str = field(default_factory=lambda: _target())  # CPU, features, vector width

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        from .. import __version__
        out = [f"benchmark {self.name}: median of {self.repeat} interleaved samples after "
               f"{self.warmup} warm-up calls, under no_grad (graphc {__version__}, "
               f"{self.threads} threads)", f"  target: {self.target}"]
        ratio = (f"{self.speedup:.2f}x faster" if self.speedup >= 1
                 else f"{1 / self.speedup:.2f}x slower")
        per_call = self.compiled_peak_bytes - self.compiled_workspace_bytes
        rows = [("", "eager", "compiled", ""),
                ("time per call", _ms(self.eager_ms), _ms(self.compiled_ms), ratio),
                ("peak memory", _bytes(self.eager_peak_bytes), _bytes(self.compiled_peak_bytes),
                 f"compiled: {_bytes(self.compiled_workspace_bytes)} workspace held between "
                 f"calls + {_bytes(per_call)} per call")]
        origin = {"disk": "LLVM code from the disk cache", "memory": "LLVM code from memory",
                  "compiled": "LLVM compiled again"}
        for kind, ms in (("cold", self.cold_compile_ms), ("cached", self.cached_compile_ms)):
            stages = self.compile_stages_ms.get(kind) or {}
            remark = ", ".join(f"{k} {v:.1f}" for k, v in stages.items()) + " ms" if stages else ""
            if kind == "cached" and self.cached_llvm_from:
                remark += f" ({origin.get(self.cached_llvm_from, self.cached_llvm_from)})"
            rows.append((f"compile, {kind}", "", _ms(ms), remark))
        rows.append(("max |difference|", "", f"{self.max_abs_diff:.3g}",
                     "matches eager" if self.matches else "DIFFERS from eager"))
        rows.append(("kernels", "", str(self.kernels),
                     f"native, {self.fallbacks} fallbacks (numpy inside the program)"))
        widths = [max(len(r[k]) for r in rows) for k in range(3)]
        for r in rows:
            out.append(f"  {r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}"
                       f"  {r[3]}".rstrip())
        out.append(f"  compile times measured in {self.compile_measured_in}; a process's "
                   f"one-time start-up ({_ms(self.init_ms)}) not included")
        out += [f"  compiled calls {r}" for r in self.eager_runs]
        out += [f"  note: {n}" for n in self.notes]
        return "\n".join(out)


def benchmark(model, *inputs, repeat: int = 20, warmup: int = 3, verbose: bool = True,
              source: str | None = None, fresh_processes: bool = True,
              progress: Callable[[str], None] | None = None) -> BenchmarkResult:
    """Time ``model(*inputs)`` eager and compiled, measure compile times and peak memory,
    and check that compiled equals eager; print the table when ``verbose``.

    ``model`` is a function or a module (or what ``graphc.compile`` returned: its
    original is benchmarked). ``source`` ("path/file.py:NAME", NAME a module, function
    or zero-argument factory) lets a fresh process rebuild the model for honest compile
    times; ``fresh_processes=False`` measures them in this process. ``progress`` is
    called with a short message at each step (the CLI prints them on stderr).

        r = graphc.benchmark(model, graphc.randn(64, 128), repeat=50)
        r.speedup
    """
    if os.environ.get(CHILD_ENV):
        raise RuntimeError("graphc.benchmark was called while a fresh process rebuilt the model "
                           "to time its compilation: guard the call in your file with "
                           "`if __name__ == \"__main__\":`")
    if not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f"graphc.benchmark: repeat must be a positive int, got {repeat!r}")
    if not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"graphc.benchmark: warmup must be an int >= 0, got {warmup!r}")
    model = original(model)
    say = progress or (lambda message: None)
    notes = []
    if isinstance(model, Module) and model.training:
        notes.append("the module is in training mode (dropout and batch statistics make "
                      "calls differ); call .eval() to benchmark inference")

    compiled, cold, cached, where = _measure_compilation(model, inputs, source,
                                                         fresh_processes, notes, say)

    fn = compiled_function(compiled)
    entry = fn.last if fn.entries else None
    with no_grad():  # each on its own copy of the inputs: a model may write into them
        got = compiled(*copies_of(inputs))
        expected = model(*copies_of(inputs))
    diff, matches = compare(got, expected)
    del got, expected

    eager_ms, compiled_ms, numbers = _time_interleaved(
        lambda: model(*inputs), lambda: compiled(*inputs), repeat, warmup, say)
    say("measuring peak memory...")
    workspace = sum(a.nbytes for a in entry.spec.arrays.values()) if entry else 0
    with no_grad():
        eager_peak = peak_bytes(lambda: model(*inputs))
        compiled_peak = peak_bytes(lambda: compiled(*inputs)) + workspace

    result = BenchmarkResult(
        name=_name(model), eager_ms=eager_ms, compiled_ms=compiled_ms,
        speedup=eager_ms / compiled_ms, cold_compile_ms=cold.get("ms", math.nan),
        cached_compile_ms=cached.get("ms", math.nan), compile_measured_in=where,
        init_ms=cold.get("init_ms", math.nan), eager_peak_bytes=eager_peak,
        compiled_peak_bytes=compiled_peak, compiled_workspace_bytes=workspace,
        max_abs_diff=diff, matches=matches,
        kernels=len(entry.spec.program.kernels) if entry else 0,
        fallbacks=len(entry.spec.program.fallbacks) if entry else 0,
        repeat=repeat, warmup=warmup, calls_per_sample=numbers,
        compile_stages_ms={"cold": cold.get("stages_ms", {}), "cached": cached.get("stages_ms", {})},
        cached_llvm_from=cached.get("llvm", ""), threads=_threads(),
        eager_runs=[str(r) for r in fn.eager_runs], notes=notes)
    for kind, run in (("cold", cold), ("cached", cached)):
        if run.get("eager_runs"):
            result.notes.append(f"the {kind} compile ran eagerly: {run['eager_runs'][0]}")
    if verbose:
        print(result)
    return result


# ---- the model, its outputs ----------------------------------------------------------------
def original(model):
    """The function or module under ``graphc.compile``'s wrapper, if any."""
    if isinstance(model, CompiledModule):
        return model._orig_mod
    if isinstance(model, CompiledFunction):
        return model.module if model.module is not None else model.fn
    if not callable(model):
        raise TypeError(f"graphc.benchmark: expected a function or a graphc.nn.Module, got "
                        f"{type(model).__name__}")
    return model


def rebuild_source(model) -> str | None:
    """``"file.py:NAME"`` naming ``model`` where a fresh process can load it, or None."""
    names = {type(model).__module__} if isinstance(model, Module) else set()
    names.add(getattr(model, "__module__", None))
    for modname in names:
        mod = sys.modules.get(modname) if modname else None
        path = getattr(mod, "__file__", None)
        if mod is None or modname == "__main__" or not path or not path.endswith(".py"):
            continue
        for name, value in list(vars(mod).items()):
            if value is model:
                return f"{path}:{name}"
    return None


def _name(model) -> str:
    if isinstance(model, Module):
        return type(model).__name__
    return getattr(model, "__qualname__", None) or getattr(model, "__name__", repr(model))


def compare(got, expected) -> tuple[float, bool]:
    """The largest ``|got - expected|`` over the output tensors, and whether it is within
    tolerance with the same structure, shapes and dtypes (NaNs in the same places match)."""
    a, b = tensors_in(got), tensors_in(expected)
    if len(a) != len(b) or any(x.shape != y.shape for x, y in zip(a, b)):
        return math.inf, False
    same_dtypes = all(x.dtype == y.dtype for x, y in zip(a, b))
    diff, scale = 0.0, 1.0
    for x, y in zip(a, b):
        u, v = x.numpy().astype(np.float64), y.numpy().astype(np.float64)
        same = (u == v) | (np.isnan(u) & np.isnan(v))  # equal infinities too
        with np.errstate(invalid="ignore"):  # inf - inf: not the same, nan below
            d = np.where(same, 0.0, np.abs(u - v))
        if d.size:
            diff = max(diff, float(np.max(np.where(np.isnan(d), np.inf, d))))
            finite = np.abs(v[np.isfinite(v)])
            scale = max(scale, float(finite.max()) if finite.size else 1.0)
    return diff, same_dtypes and diff <= TOLERANCE * scale


# ---- timing ----------------------------------------------------------------------------------
def _time_interleaved(eager, compiled, repeat: int, warmup: int, say):
    """Median milliseconds per call of each, sampled alternately; calls per sample."""
    fns = {"eager": eager, "compiled": compiled}
    numbers, times = {}, {name: [] for name in fns}
    with no_grad():
        for name, fn in fns.items():
            say(f"warming up {name} ({warmup} calls)...")
            for _ in range(warmup):
                fn()
            t0 = time.perf_counter()
            fn()
            once = max(time.perf_counter() - t0, 1e-9)
            numbers[name] = max(1, min(MAX_CALLS_PER_SAMPLE, math.ceil(SAMPLE_SECONDS / once)))
        every = max(1, repeat // 10)
        for k in range(repeat):
            order = list(fns) if k % 2 == 0 else list(reversed(fns))
            for name in order:
                times[name].append(_sample(fns[name], numbers[name]))
            if (k + 1) % every == 0 or k + 1 == repeat:
                say(f"timing eager and compiled {k + 1}/{repeat}")
    eager_ms, compiled_ms = (1e3 * statistics.median(times[n]) for n in fns)
    return eager_ms, compiled_ms, numbers


def _sample(fn, number: int) -> float:
    gc_was_on = gc.isenabled()
    gc.disable()  # as timeit: a collection in one sample is not the code's cost
    try:
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        return (time.perf_counter() - t0) / number
    finally:
        if gc_was_on:
            gc.enable()


def peak_bytes(call) -> int:
    """tracemalloc's peak during one ``call()`` above what was traced before it, with the
    previous call's result alive (as in a loop ``y = call()``)."""
    previous = call()
    gc.collect()
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        result = call()
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        if started:
            tracemalloc.stop()
    del previous, result
    return max(0, peak)


# ---- compile times ---------------------------------------------------------------------------
def _measure_compilation(model, inputs, source, fresh_processes: bool, notes: list, say):
    """The compiled model to time; cold and cached compile runs (see ``_timed_compile``);
    where they were measured. Fresh processes when the model can be rebuilt there."""
    if source is None and fresh_processes:
        source = rebuild_source(model)
        if source is None:
            notes.append("the model is not a global of an importable module, so compile times "
                         "were measured in this process; pass source='file.py:NAME' to "
                         "measure them in fresh processes")
    cold = cached = None
    if source is not None and fresh_processes:
        say("timing compilation in fresh processes (cold cache, then warm)...")
        cold, cached, failure = _compile_in_fresh_processes(model, inputs, source)
        if failure:
            notes.append(f"timing compilation in a fresh process failed ({failure}); "
                         "measured in this process instead")
    if cold is None:
        say("tracing and compiling (cold, in this process)...")
        init_ms = _start_up()
        with tempfile.TemporaryDirectory(prefix="graphc-bench-") as empty:
            compiled, cold = _timed_compile(model, inputs, cache_dir=empty)
        cold["init_ms"] = init_ms
        say("compiling again (cached, in this process)...")
        _, cached = _timed_compile(model, inputs)
        where = ("this process (cold: the disk cache bypassed; cached: LLVM's in-memory cache "
                 "answers, faster than a new process reading the disk cache)")
        if cold.get("llvm") == "memory":
            notes.append("this process had compiled the same program before, so even the "
                         "cold compile found its code in memory; measure in a fresh process")
    else:
        say("tracing and compiling...")
        compiled, _ = _timed_compile(model, inputs)
        where = ("fresh processes (cold: an empty cache directory; cached: a second process "
                 "reading it)")
    return compiled, cold, cached, where


def _timed_compile(model, inputs, cache_dir: str | None = None):
    """A fresh ``graphc.compile(model)`` and its first call; the compiler's time per stage
    and where LLVM's code came from ("compiled", "disk", "memory"). ``cache_dir``
    redirects the disk cache for this compile."""
    from ..codegen import target

    saved = os.environ.get("GRAPHC_CACHE_DIR")
    if cache_dir is not None:
        os.environ["GRAPHC_CACHE_DIR"] = cache_dir
    try:
        known = set(target._compiled)  # the in-memory cache: gains a key unless it answered
        compiled = compile(model)
        with no_grad():
            compiled(*inputs)
    finally:
        if cache_dir is not None:
            if saved is None:
                os.environ.pop("GRAPHC_CACHE_DIR", None)
            else:
                os.environ["GRAPHC_CACHE_DIR"] = saved
    fn = compiled_function(compiled)
    if not fn.entries:
        return compiled, {"eager_runs": [str(r) for r in fn.eager_runs]}
    entry = fn.last
    stages = entry.stages_ms
    # memory first: a module found in memory keeps the from_cache flag of its first load
    llvm = ("memory" if set(target._compiled) <= known else
            "disk" if entry.spec.compiled.from_cache else "compiled")
    return compiled, {"ms": sum(stages.values()), "stages_ms": stages, "llvm": llvm}


def _start_up() -> float:
    """Milliseconds to compile a trivial graph of its own (never cached): in a new
    process, the one-time start-up that compile times should not include."""
    from .. import ones
    t0 = time.perf_counter()
    salt = 1.0 + time.time() % 1
    x = ones(3)
    with no_grad():
        compile(lambda x: x * salt)(x)
    return 1e3 * (time.perf_counter() - t0)


CHILD_SCRIPT = """
import json, sys
args = json.loads(sys.argv[1])
sys.path[:0] = args["path"]
from graphc.compiler.benchmark import compile_in_this_process
print()
print(json.dumps(compile_in_this_process(args)))
"""


def _compile_in_fresh_processes(model, inputs, source: str):
    """(cold, cached, failure): two fresh processes compiling the rebuilt model, the first
    into an empty cache directory, the second reading it."""
    from ..serialization import save

    with tempfile.TemporaryDirectory(prefix="graphc-bench-") as d:
        args = {"path": [p for p in sys.path if isinstance(p, str)], "source": source,
                "inputs": os.path.join(d, "inputs.gc"), "state": None, "training": None}
        try:
            save(list(inputs), args["inputs"])
            if isinstance(model, Module):
                args["state"], args["training"] = os.path.join(d, "state.gc"), model.training
                save(model.state_dict(), args["state"])
        except Exception as e:
            return None, None, f"the inputs or weights could not be saved: {e}"
        env = dict(os.environ, GRAPHC_CACHE="1", GRAPHC_CACHE_DIR=os.path.join(d, "cache"))
        env[CHILD_ENV] = "1"
        runs = []
        for _ in ("cold", "cached"):
            try:
                res = subprocess.run([sys.executable, "-c", CHILD_SCRIPT, json.dumps(args)],
                                     env=env, capture_output=True, text=True,
                                     timeout=CHILD_TIMEOUT, cwd=os.getcwd())
            except subprocess.TimeoutExpired:
                return None, None, f"no result after {CHILD_TIMEOUT} s"
            lines = res.stdout.strip().splitlines()
            if res.returncode or not lines:
                last = (res.stderr.strip().splitlines() or ["no output"])[-1]
                return None, None, f"exit code {res.returncode}: {last}"
            runs.append(json.loads(lines[-1]))
    return runs[0], runs[1], None


def compile_in_this_process(args: dict) -> dict:
    """The fresh process's side: rebuild the model from ``args``, absorb the start-up,
    then time one compile (what ``_timed_compile`` reports, and ``init_ms``)."""
    from .model_file import load_model
    from ..serialization import load

    model = original(load_model(args["source"]))
    if args["state"] is not None:
        model.load_state_dict(load(args["state"]))
        model.train(args["training"])
    inputs = tuple(load(args["inputs"]))
    init_ms = _start_up()
    _, run = _timed_compile(model, inputs)
    return {**run, "init_ms": init_ms}


# ---- formatting ------------------------------------------------------------------------------
def _target() -> str:
    from ..codegen.target import current
    return current().summary()


def _threads() -> int:
    from ..codegen import thread_count
    return thread_count()


def _ms(ms: float) -> str:
    if not math.isfinite(ms):
        return "-"
    if ms < 0.1:
        return f"{1e3 * ms:.1f} us"
    return f"{ms:.3f} ms" if ms < 10 else f"{ms:.1f} ms"


def _bytes(n: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"

