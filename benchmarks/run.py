"""Benchmark the llvmlite backend: eager graphc, compiled graphc, numpy (and torch, JAX).

    python3 benchmarks/run.py                 # all inference workloads, table + ratios
    python3 benchmarks/run.py W1 W2 --json out.json
    python3 benchmarks/run.py --no-compile-times   # skip the cold/cached compile runs
    python3 benchmarks/run.py --training      # the training workloads T1..T3 instead
    python3 benchmarks/run.py W4 T1 --steps 5 --no-torch-compile

Everything in the table is measured in this one run: first graphc (eager, and compiled
through ``graphc.compile``: guards checked on every call) and numpy for every workload,
then torch and JAX (their thread pools keep spinning after a call and would slow what
runs next). Each implementation is warmed up and then timed
over repeated calls; the figure is the median.
Speed-ups are numpy's (or eager's) median divided by compiled's. Compile times are
measured in fresh subprocesses, after the process has compiled one trivial graph (the
one-time start-up: LLVM's target and engine, libm, BLAS, first use of the passes; shown
as "init"): "cold" with an empty disk cache, "cached" a second process reading the same
cache directory. Both include tracing, the passes, fusion and lowering (Python).
The training workloads (T1..T3: forward, backward, optimizer step) are measured and
printed as ``training.py`` says, after the inference ones; they are not in the default
run (torch.compile compiles each model's backward too, which takes minutes here).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import graphc  # noqa: E402
from graphc.codegen import thread_count  # noqa: E402
from graphc.codegen.target import current  # noqa: E402
from graphc.compiler.benchmark import compare  # noqa: E402
from table import fmt_time, print_table  # noqa: E402
from workloads import build  # noqa: E402
import training  # noqa: E402


def _batch(fn) -> tuple[int, float]:
    """Calls per sample (each sample at least ~2 ms) and the time of one call."""
    fn()
    fn()
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-7)
    return max(1, int(2e-3 / once)), once


def medians(fns: dict, budget: float = 3.0, min_rounds: int = 7) -> dict:
    """Median time of one call of each function, sampled in interleaved rounds so that
    all of them see the same machine (these machines are noisy)."""
    plan = {name: _batch(fn) for name, fn in fns.items()}
    per_round = sum(batch * once for batch, once in plan.values())
    rounds = max(min_rounds, min(100, int(budget / per_round)))
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            batch = plan[name][0]
            t0 = time.perf_counter()
            for _ in range(batch):
                fn()
            times[name].append((time.perf_counter() - t0) / batch)
    return {name: statistics.median(ts) for name, ts in times.items()}


def median_seconds(fn, budget: float = 1.0) -> float:
    return medians({"fn": fn}, budget)["fn"]


def optional(name: str):
    try:
        return __import__(name)
    except Exception:
        return None


def check(w, compiled_out, eager_out):
    err, ok = compare(compiled_out, eager_out)  # graphc.benchmark's check
    if not ok:
        raise SystemExit(f"{w.name}: compiled result differs from eager by {err:g}")
    return err


def run_graphc(w) -> dict:
    row = {"name": w.name, "title": w.title, "target": w.target}
    with graphc.no_grad():
        compiled = graphc.compile(w.model)  # what users call: guards, then one native call
        eager_out = w.model(*w.inputs)
        row["max_abs_err"] = check(w, compiled(*w.inputs), eager_out)
        fn = graphc.compiler.compiled.compiled_function(compiled)
        if fn.eager_runs:
            raise SystemExit(f"{w.name}: the compiled model ran eagerly: {fn.eager_runs}")
        spec = fn.last.spec
        row["kernels"] = len(spec.program.kernels)
        row["fallbacks"] = [f.node.name for f in spec.program.fallbacks]
        fns = {"compiled": lambda: compiled(*w.inputs), "eager": lambda: w.model(*w.inputs)}
        if w.numpy_fn is not None:
            xs = w.numpy_inputs()
            ref = w.numpy_fn(*xs)
            err = float(np.max(np.abs(ref - eager_out.numpy())))
            if not err <= 1e-3 * max(1.0, float(np.max(np.abs(ref)))):
                raise SystemExit(f"{w.name}: the numpy version differs from graphc eager by {err:g}")
            fns["numpy"] = lambda: w.numpy_fn(*xs)
        row.update(medians(fns))
    return row


def run_others(w, row: dict, torch, jax_mods) -> None:
    """torch eager, torch.compile and JAX, after every graphc and numpy timing (torch's
    OpenMP threads keep spinning after its calls, which would slow what runs next)."""
    if torch is not None and w.torch_fn is not None:
        fn = w.torch_fn(torch)
        xs = tuple(torch.from_numpy(t.numpy()) for t in w.inputs)
        with torch.inference_mode():
            row["torch"] = median_seconds(lambda: fn(*xs))
            try:
                cfn = torch.compile(fn)
                cfn(*xs)
                row["torch.compile"] = median_seconds(lambda: cfn(*xs))
            except Exception as e:  # no C++ compiler, etc.
                row["torch.compile"] = None
                row["torch.compile_error"] = f"{type(e).__name__}: {str(e)[:100]}"
    if jax_mods is not None and w.jax_fn is not None:
        jax, jnp = jax_mods
        fn = jax.jit(w.jax_fn(jnp, jax))
        xs = tuple(jnp.asarray(t.numpy()) for t in w.inputs)
        row["jax.jit"] = median_seconds(lambda: fn(*xs).block_until_ready())


COMPILE_SCRIPT = """
import sys, time
sys.path[:0] = {paths!r}
import graphc
from graphc.codegen import cache_stats
from graphc.compiler import compile_graph
from workloads import build
w, = build([{name!r}])
t0 = time.perf_counter()  # once per process: LLVM's target and engine, libm, BLAS, passes
x = graphc.ones(3)
salt = 1.0 + time.time() % 1  # a constant of its own: the warm-up graph is never cached
compile_graph(graphc.trace(lambda x: x * salt, x), x)
init = time.perf_counter() - t0
with graphc.no_grad():
    t0 = time.perf_counter()
    gm = graphc.trace(w.model, *w.inputs)
    cg = compile_graph(gm, *w.inputs)
    total = time.perf_counter() - t0  # trace, passes, fusion, lowering, LLVM
print(total, cg.last.compiled.seconds, cg.last.compiled.from_cache, init)
"""


def compile_times(name: str) -> dict:
    here = Path(__file__).resolve().parent
    script = COMPILE_SCRIPT.format(paths=[str(here), str(here.parent)], name=name)
    out = {}
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, GRAPHC_CACHE_DIR=d, GRAPHC_CACHE="1")
        for mode in ("cold", "cached"):
            res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                                 text=True, timeout=300)
            if res.returncode:
                raise SystemExit(f"compile-time run for {name} failed:\n{res.stderr}")
            total, llvm_seconds, from_cache, init = res.stdout.split()
            out[mode] = float(total)
            out[mode + "_init"] = float(init)
            out[mode + "_llvm"] = float(llvm_seconds)
            out[mode + "_hit"] = from_cache == "True"
    return out


INFERENCE = ("W1", "W2", "W3", "W4", "W5", "W6")
TRAINING = ("T1", "T2", "T3")


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workloads", nargs="*",
                    help="W1..W6 (inference), T1..T3 (training); default: W1..W6")
    ap.add_argument("--training", action="store_true", help="run T1..T3 (with no W named: only them)")
    ap.add_argument("--steps", type=int, default=7, help="timed training steps (default 7)")
    ap.add_argument("--warmup", type=int, default=2, help="training steps after the first, untimed")
    ap.add_argument("--json", help="write the results to this file")
    ap.add_argument("--no-compile-times", action="store_true")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-torch-compile", action="store_true", help="training: skip torch.compile")
    args = ap.parse_args(argv)
    unknown = [n for n in args.workloads if n not in INFERENCE + TRAINING]
    if unknown:
        ap.error(f"unknown workloads {unknown}: expected names among {INFERENCE + TRAINING}")
    if args.steps < 1 or args.warmup < 0:
        ap.error("--steps must be at least 1 and --warmup at least 0")
    inference = [n for n in args.workloads if n in INFERENCE]
    trained = [n for n in args.workloads if n in TRAINING] or list(TRAINING if args.training else ())
    if not inference and not trained:
        inference = list(INFERENCE)
    torch = None if args.no_torch else optional("torch")
    jax = optional("jax")
    jax_mods = (jax, __import__("jax.numpy").numpy) if jax is not None else None
    if torch is not None:
        torch.set_num_threads(thread_count())
    rows = []
    workloads = build(inference) if inference else []
    for w in workloads:
        say(f"{w.name}: {w.title} ...")
        rows.append(run_graphc(w))
    for w, row in zip(workloads, rows):
        if not args.no_compile_times and w.name != "W6":
            say(f"{w.name}: compile times (fresh processes) ...")
            row.update(compile_times(w.name))
    train_workloads = training.build_training(trained) if trained else []
    if train_workloads:
        training.absorb_llvm_start_up()
    train_rows = []
    for w in train_workloads:  # graphc before any torch call (its threads keep spinning)
        say(f"{w.name}: {w.title}: graphc eager and compiled ...")
        train_rows.append(training.run_graphc(w, args.warmup, args.steps))
    for w, row in zip(workloads, rows):
        if torch is not None or jax_mods is not None:
            say(f"{w.name}: torch / JAX ...")
            run_others(w, row, torch, jax_mods)
    if train_workloads and torch is not None and not args.no_torch_compile:
        training.absorb_torch_compile_start_up(torch)
    for w, row in zip(train_workloads, train_rows):
        if torch is not None:
            say(f"{w.name}: torch" + ("" if args.no_torch_compile else " and torch.compile") + " ...")
            training.run_torch(w, row, torch, args.warmup, args.steps, not args.no_torch_compile)

    print(f"graphc {graphc.__version__}, {thread_count()} threads, numpy {np.__version__}"
          + (f", torch {torch.__version__}" if torch else "") + (f", jax {jax.__version__}" if jax else ""))
    print(f"target: {current().summary()}")
    if rows:
        print_inference(rows)
    if train_rows:
        training.print_training(train_rows, args.steps)
    if args.json:
        Path(args.json).write_text(json.dumps(rows + train_rows, indent=1))
    return 0


def print_inference(rows: list[dict]) -> None:
    cols = ["numpy", "eager", "compiled", "torch", "torch.compile", "jax.jit"]
    cols = [c for c in cols if any(r.get(c) is not None for r in rows)]
    head = ["workload"] + cols + ["vs numpy", "target", "vs eager", "cold", "cached", "init",
                                  "kernels"]
    table = []
    for r in rows:
        vs_np = r["numpy"] / r["compiled"] if r.get("numpy") else None
        line = [r["name"]] + [fmt_time(r.get(c)) for c in cols]
        line += [f"{vs_np:.2f}x" if vs_np else "-",
                 f">={r['target']}x" if r.get("target") else "-",
                 f"{r['eager'] / r['compiled']:.1f}x",
                 fmt_time(r.get("cold")), fmt_time(r.get("cached")), fmt_time(r.get("cold_init")),
                 str(r["kernels"]) + (f" +{len(r['fallbacks'])} fallback" if r["fallbacks"] else "")]
        r["speedup_vs_numpy"] = vs_np
        r["speedup_vs_eager"] = r["eager"] / r["compiled"]
        table.append(line)
    print_table(head, table)
    for r in rows:
        if r.get("torch.compile_error"):
            print(f"{r['name']}: torch.compile failed: {r['torch.compile_error']}")


if __name__ == "__main__":
    sys.exit(main())
