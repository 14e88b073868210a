"""``python -m graphc <command>``: the demo, and benchmark, explain or dump a model in a file.

    python -m graphc demo
    python -m graphc bench model.py:MLP [--repeat 20] [--warmup 3] [--json [PATH]]
    python -m graphc explain model.py:MLP [--json [PATH]]
    python -m graphc dump model.py:MLP out/
    python -m graphc fuzz [--count 1000] [--seed 0] [--save DIR]

``FILE:OBJ`` names a Python file and a name in it: a ``graphc.nn.Module`` instance, a
function, or a zero-argument factory returning a module (a function, or a Module class).
The file runs as a module of its own (not ``__main__``), with its folder on ``sys.path``.
Example inputs are ``OBJ.example_inputs`` if it exists, else ``example_inputs`` in FILE:
a tuple of tensors, or a zero-argument function returning one.

Exit status: 0 done; 1 the model failed on its example inputs; 2 a wrong command line,
FILE:OBJ or example inputs (one line on stderr says what was expected).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import importlib.util
import inspect
import json
import math
import os
import sys
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

import graphc
import graphc.nn as nn
import graphc.nn.functional as F
from graphc.debug import debug_level
from graphc.ops import OPS, Flag


class TransformerBlock(nn.Module):
    """A pre-norm transformer encoder block written with graphc ops."""

    def __init__(self, d: int, heads: int, ff: int):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, ff), nn.Linear(ff, d)

    def forward(self, x):
        b, s, d = x.shape
        qkv = self.qkv(self.ln1(x)).view(b, s, 3, self.heads, d // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        ctx = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, s, d)
        x = x + self.proj(ctx)
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x)), approximate="tanh"))


def _median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def demo(out=sys.stdout) -> None:
    say = lambda *a: print(*a, file=out)
    say(f"graphc {graphc.__version__} - dynamic mode: ops run at once on numpy\n")

    kinds = Counter(f.value for op in OPS for f in op.flags if f in (
        Flag.ELEMENTWISE, Flag.REDUCTION, Flag.VIEW, Flag.MATMUL, Flag.COMPOSITE, Flag.FACTORY))
    say(f"The op table: {len(OPS)} ops, each declared once ("
        + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) + ")\n")

    say("1. Views are strided windows onto one storage")
    A = graphc.arange(12).reshape(3, 4)
    say(f"   A = arange(12).reshape(3, 4)   stride {A.stride()}")
    say(f"   A.T                            stride {A.T.stride()}, contiguous {A.T.is_contiguous()}, "
        f"shares A's storage {A.T.untyped_storage().data_ptr() == A.untyped_storage().data_ptr()}")
    say(f"   A[1:3, 0:2]                    storage_offset {A[1:3, 0:2].storage_offset()}")
    try:
        A.T.view(1, 12)
    except graphc.ShapeError as e:
        say(f"   A.T.view(1, 12)  ->  ShapeError: {e}")
    A[0, ::2] = -1
    say(f"   after A[0, ::2] = -1, A.T[0] is {A.T[0].tolist()} (writes go through views)\n")

    graphc.manual_seed(0)
    batch, seq, d, heads = 8, 128, 256, 4
    block = TransformerBlock(d, heads, 4 * d).eval()
    x = graphc.randn(batch, seq, d)
    say(f"2. A transformer encoder block in eager mode (d_model {d}, {heads} heads, seq {seq}, "
        f"batch {batch})")
    with graphc.no_grad():
        y = block(x)
        ms = _median_ms(lambda: block(x), 5)
    say(f"   output {tuple(y.shape)} {y.dtype.name}, mean {y.mean().item():+.5f}, "
        f"std {y.std().item():.5f}")
    say(f"   eager: {ms:.1f} ms per call (median of 5)\n")

    say("3. Meta mode: the same code on meta tensors gives shapes and dtypes, no data")
    t0 = time.perf_counter()
    with graphc.no_grad():
        m = copy.deepcopy(block).to("meta")(x.to("meta"))
    say(f"   {m!r}  in {1e3 * (time.perf_counter() - t0):.2f} ms\n")

    say("4. Static mode begins: graphc.trace records the block into the graph IR")
    t0 = time.perf_counter()
    gm = graphc.trace(block, graphc.TensorSpec((batch, seq, d)))
    ms_trace = 1e3 * (time.perf_counter() - t0)
    for line in str(gm.graph).splitlines():
        say("   " + line)
    with graphc.no_grad():
        diff = (gm(x) - y).abs().max().item()
    say(f"   {len(gm.graph.nodes)} nodes, traced in {ms_trace:.1f} ms; the GraphModule's output "
        f"differs from eager by {diff:.1e}\n")

    say("5. Passes (decompose, simplify, CSE, constant folding, DCE) and the fusion planner")
    from graphc.passes import PassManager, fuse

    history = PassManager.default().run(gm)
    for line in str(history).splitlines():
        say("   " + line)
    plan = fuse(gm)
    before, after = plan.bytes_moved()
    say(f"   {len(plan.kernels)} kernels; intermediate traffic {before / 2**20:.1f} MiB unfused, "
        f"{after / 2**20:.1f} MiB fused:")
    for target, kernel, members in plan.kernels:
        say(f"     {target:<9} {kernel.name:<22} {kernel.kind:<11} {len(members)} ops")
    for line in str(gm.graph).splitlines():
        say("   " + line)
    with graphc.no_grad():
        diff = (gm(x) - y).abs().max().item()
    say(f"   the fused graph (run by the interpreter) differs from eager by {diff:.1e}\n")

    say("6. graphc.compile: the block compiled; each kernel native code, the graph one call")
    compiled = graphc.compile(block)
    t0 = time.perf_counter()
    with graphc.no_grad():
        got = compiled(x)
    ms_compile = 1e3 * (time.perf_counter() - t0)
    e = graphc.explain(compiled, x)
    say(f"   first call (trace, passes, fusion, LLVM) {ms_compile:.0f} ms: " + ", ".join(
        f"{k} {v:.1f}" for k, v in e.stages_ms.items()) + " ms" +
        (" (LLVM from the disk cache)" if e.llvm_from_cache else ""))
    say(f"   guards checked on every call: {len(e.guards)} (" + "; ".join(e.guards[:4]) + "; ...)")
    say(f"   {len(e.kernels)} native kernels, {len(e.fallbacks)} numpy fallbacks; estimated cost:")
    for k in e.kernels:
        say(f"     {k['name']:<22} {k['kind']:<11} {k['bytes'] / 2**20:7.2f} MiB "
            f"{k['flops'] / 1e6:8.1f} MFLOP")
    kernels = compiled.compiled.stage_text("kernels").split("\n\n")
    say("   the kernel IR of one kernel (all stages: graphc.dump(compiled, dir); or "
        "GRAPHC_DEBUG=1..4):")
    row = next((k for k in kernels if k.startswith("kernel R_")), kernels[0])
    for line in row.splitlines():
        say("     " + line)
    with graphc.no_grad():
        diff = (got - y).abs().max().item()
        compiled(graphc.randn(2, seq, d))  # a new batch size: a guard miss, explained
        ms_eager = _median_ms(lambda: block(x), 5)
        ms_compiled = _median_ms(lambda: compiled(x), 20)
    say(f"   differs from eager by {diff:.1e}")
    say(f"   a call with batch 2: {compiled.compiled.recompiles[-1]}\n")
    say("   speed, median per call (eager: numpy op by op; compiled: one native call)")
    say(f"     eager    {ms_eager:8.2f} ms")
    ratio = ms_eager / ms_compiled
    say(f"     compiled {ms_compiled:8.2f} ms   " + (f"{ratio:.1f}x faster" if ratio >= 1
                                                     else f"{1 / ratio:.1f}x slower"))
    say("\n   More: python3 -m graphc bench|explain|dump FILE:OBJ, and python3 benchmarks/run.py "
        "(W1-W6 against numpy, and torch when installed)")


# ---- FILE:OBJ targets ----------------------------------------------------------------------
class TargetError(Exception):
    """A FILE:OBJ or its example inputs cannot be used; the message says what was expected."""


EXPECTED = ("a graphc.nn.Module instance, a function, or a zero-argument factory returning "
            "a module")
INPUTS_EXPECTED = "a tuple of graphc tensors, or a zero-argument function returning one"


def load_target(spec: str) -> tuple[object, tuple, str]:
    """The model ``FILE:OBJ`` names, its example inputs, and its label (``file.py:OBJ``)."""
    module, obj, label = _load_object(spec)
    model = _as_model(obj, label, module.__file__)
    return model, _example_inputs(module, obj, model, label), label


def load_model(spec: str):
    """The model ``FILE:OBJ`` names (a factory is called); no inputs."""
    module, obj, label = _load_object(spec)
    return _as_model(obj, label, module.__file__)


def _load_object(spec: str):
    file, sep, name = spec.rpartition(":")
    if not sep or not file or not name:
        raise TargetError(f"expected FILE:OBJ (a Python file and a name in it, e.g. "
                          f"model.py:MLP), got {spec!r}")
    module = _run_file(file)
    label = f"{Path(file).name}:{name}"
    obj = module
    for part in name.split("."):
        if not hasattr(obj, part):
            found = _candidates(module)
            listed = (f"; it defines {', '.join(found)}" if found else
                      f"; it defines no module, function or factory (expected {EXPECTED})")
            raise TargetError(f"{file} has no {name!r}{listed}")
        obj = getattr(obj, part)
    return module, obj, label


def _run_file(file: str):
    path = Path(file)
    if not path.exists():
        raise TargetError(f"no such file: {file} (expected FILE:OBJ, FILE a Python file)")
    if not path.is_file():
        raise TargetError(f"{file} is not a file (expected FILE:OBJ, FILE a Python file)")
    path = path.resolve()
    # a name of its own, not __main__: the file's `if __name__ == "__main__":` part does not run
    name = "_graphc_target_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise TargetError(f"{file} is not a Python file (expected FILE:OBJ, FILE ending in .py)")
    module = importlib.util.module_from_spec(spec)
    if str(path.parent) not in sys.path:  # as `python FILE` would: its neighbours import
        sys.path.insert(0, str(path.parent))
    sys.modules[name] = module  # dataclasses and pickling look their module up here
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        del sys.modules[name]
        raise TargetError(f"{file}:{e.lineno}: SyntaxError: {e.msg}") from None
    except (Exception, SystemExit) as e:
        del sys.modules[name]
        raise TargetError(f"running {file} raised {_one_line(e)}{_line_in(e, path)}") from None
    return module


def _candidates(module) -> list[str]:
    """The names in a file that could be an OBJ: modules, and functions and Module classes
    defined there."""
    from .nn.module import Module
    out = []
    for name, value in vars(module).items():
        here = getattr(value, "__module__", None) == module.__name__
        if name.startswith("_"):
            continue
        if isinstance(value, Module) or (here and inspect.isfunction(value)) or \
                (here and isinstance(value, type) and issubclass(value, Module)):
            out.append(name)
    return out


def _as_model(obj, label: str, file: str):
    from .compiler import CompiledFunction
    from .nn.module import Module
    if isinstance(obj, (Module, CompiledFunction)):
        return obj
    if isinstance(obj, type):
        if not issubclass(obj, Module):
            raise TargetError(f"{label} is a class, not a graphc.nn.Module subclass; expected "
                              f"{EXPECTED}")
        required = _required(obj)
        if required:
            raise TargetError(f"{label} is a Module class whose constructor needs arguments "
                              f"({', '.join(required)}); expected {EXPECTED}: add e.g. "
                              f"`model = {obj.__name__}(...)` to the file and name that")
        return _build(obj, label, file)
    if not callable(obj):
        raise TargetError(f"{label} is {_a(obj)}; expected {EXPECTED}")
    if _required(obj):
        return obj  # a function: the model itself
    model = _build(obj, label, file)
    if not isinstance(model, Module):
        raise TargetError(f"{label} takes no arguments, so it is a factory, but it returned "
                          f"{_a(model)}; expected a graphc.nn.Module")
    return model


def _required(fn) -> list[str]:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in params if p.default is p.empty
            and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def _build(factory, label: str, file: str):
    try:
        return factory()
    except Exception as e:
        raise TargetError(f"{label}() raised {_one_line(e)}{_line_in(e, file)}") from None


def _example_inputs(module, obj, model, label: str) -> tuple:
    from .compiler.benchmark import original
    from .tensor import Tensor
    holders = [] if isinstance(obj, type) else [(obj, f"{label}.example_inputs")]
    if model is not obj:
        holders.append((model, f"{type(model).__name__}.example_inputs"))
    holders.append((module, f"{label.rpartition(':')[0]}:example_inputs"))
    found = next(((v, where) for holder, where in holders
                  if (v := getattr(holder, "example_inputs", None)) is not None), None)
    if found is None:
        raise TargetError(f"no example inputs for {label}: expected `example_inputs = "
                          f"(graphc.randn(8, 32),)` in {Path(module.__file__).name} "
                          f"({INPUTS_EXPECTED}), or an attribute example_inputs on "
                          f"{label.rpartition(':')[2]}")
    value, where = found
    verb = "is"
    if callable(value) and not isinstance(value, Tensor):
        try:
            value = value()
        except Exception as e:
            raise TargetError(f"{where}() raised {_one_line(e)}{_line_in(e, module.__file__)}"
                              ) from None
        where, verb = where + "()", "returned"
    if isinstance(value, Tensor):
        value = (value,)
    if not isinstance(value, (tuple, list)):
        raise TargetError(f"{where} {verb} {_a(value)}; expected {INPUTS_EXPECTED}")
    for k, v in enumerate(value):
        if isinstance(v, np.ndarray):
            raise TargetError(f"{where}[{k}] is a numpy array; expected a graphc.Tensor "
                              "(wrap it: graphc.from_numpy(a))")
        if not isinstance(v, (Tensor, bool, int, float, str, type(None))):
            raise TargetError(f"{where}[{k}] is {_a(v)}; expected a graphc.Tensor")
    target = original(model)
    try:
        signature = inspect.signature(target.forward if isinstance(target, graphc.nn.Module)
                                      else target)
    except (TypeError, ValueError):
        return tuple(value)  # no signature to check against
    try:
        signature.bind(*value)
    except TypeError as e:
        count = f"{len(value)} value" + ("" if len(value) == 1 else "s")
        raise TargetError(f"{label} takes {signature} but {where} has {count}: {e}") from None
    return tuple(value)


def _a(value) -> str:
    name = type(value).__name__
    return ("an " if name[0].lower() in "aeiou" else "a ") + name


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def _line_in(e: BaseException, file) -> str:
    """`` at file.py:line``: the innermost frame of the traceback in ``file``, unless the
    message names it already (graphc's errors name the user's line)."""
    found = ""
    for frame in traceback.extract_tb(e.__traceback__):
        if frame.filename == str(file):
            found = f"{Path(file).name}:{frame.lineno}"
    return f" at {found}" if found and found not in str(e) else ""


# ---- the commands ----------------------------------------------------------------------------
def progress(message: str) -> None:
    print(f"graphc: {message}", file=sys.stderr, flush=True)


def _report(result, json_to: str | None) -> None:
    """Print ``result``'s text, or with ``--json`` its ``as_dict()`` (to stdout or a file)."""
    if json_to != "-":
        print(result)
    if json_to:
        text = json.dumps(_finite(result.as_dict()), indent=1, default=str)
        if json_to == "-":
            print(text)
        else:
            Path(json_to).write_text(text + "\n")
            progress(f"wrote {json_to}")


def _finite(data):
    """NaN and infinities (what was not measured) as null: JSON has no such numbers."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_finite(v) for v in data]
    return data


def bench(args) -> None:
    from .compiler.benchmark import benchmark
    model, inputs, _ = load_target(args.target)
    file, _, name = args.target.rpartition(":")
    result = benchmark(model, *inputs, repeat=args.repeat, warmup=args.warmup, verbose=False,
                       source=f"{Path(file).resolve()}:{name}",
                       fresh_processes=not args.in_process, progress=progress)
    _report(result, args.json)


def explain(args) -> None:
    model, inputs, _ = load_target(args.target)
    progress("tracing and compiling...")
    _report(graphc.explain(model, *inputs), args.json)


def dump(args) -> None:
    model, inputs, _ = load_target(args.target)
    progress(f"tracing and compiling, writing every stage into {args.dir}...")
    path = graphc.dump(graphc.compile(model), args.dir, *inputs)
    print(path)


def fuzz(args) -> int:
    """Random graphs compiled vs the interpreter (graphc/fuzz); 1 if any failed."""
    from .fuzz import fuzz as run_fuzz
    summary = run_fuzz(args.count, seed=args.seed, save=args.save, shrink=not args.no_shrink)
    print(summary.report())
    return 1 if summary.failures else 0


def _show_warning(message, category, *_, **__) -> None:
    print(f"graphc: {category.__name__}: {message}", file=sys.stderr, flush=True)


COMMANDS = {"bench": bench, "explain": explain, "dump": dump}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m graphc", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="run the demo: views, an eager transformer block, meta mode, "
                                "its traced and fused graph, compiled vs eager")
    target = dict(metavar="FILE:OBJ", help="a Python file and a name in it: a module, a "
                  "function, or a zero-argument factory returning a module")
    as_json = dict(nargs="?", const="-", metavar="PATH",
                   help="write the data as JSON to PATH (alone: print it instead of the text)")
    p = sub.add_parser("bench", help="eager vs compiled: time per call, compile times, peak "
                       "memory, max difference")
    p.add_argument("target", **target)
    p.add_argument("--repeat", type=int, default=20, help="timing samples of each (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="calls of each before timing (default 3)")
    p.add_argument("--in-process", action="store_true",
                   help="time compilation in this process, not in fresh ones (faster; the "
                        "cached figure then comes from the in-memory cache)")
    p.add_argument("--json", **as_json)
    p = sub.add_parser("explain", help="graphs, guards, fusion, kernels, fallbacks, times")
    p.add_argument("target", **target)
    p.add_argument("--json", **as_json)
    p = sub.add_parser("dump", help="write every stage and a repro script into DIR")
    p.add_argument("target", **target)
    p.add_argument("dir", metavar="DIR", help="the directory to write into")
    p = sub.add_parser("fuzz", help="random graphs over the op table, compiled and compared "
                       "with the interpreter; exit status 1 if any case failed")
    p.add_argument("--count", type=int, default=1000, help="graphs to check (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="which stream of graphs (default 0)")
    p.add_argument("--save", metavar="DIR", help="write each failure, shrunk, into DIR as JSON")
    p.add_argument("--no-shrink", action="store_true", help="report failures as found")
    args = parser.parse_args(argv)
    if args.command == "demo":
        demo()
        return 0
    if args.command == "fuzz":
        return fuzz(args)
    if args.command == "bench" and (args.repeat < 1 or args.warmup < 0):
        parser.error("bench: --repeat must be at least 1 and --warmup at least 0")
    try:
        with warnings.catch_warnings():  # one line each; their frame would be runpy's
            warnings.showwarning = _show_warning
            COMMANDS[args.command](args)
    except TargetError as e:
        print(f"graphc {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `... | head` closed the pipe: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as e:
        if debug_level():  # GRAPHC_DEBUG: the whole traceback
            raise
        file, _, name = args.target.rpartition(":")
        print(f"graphc {args.command}: error: {name} failed: {_one_line(e)}"
              f"{_line_in(e, Path(file).resolve())} (GRAPHC_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
