"""``python -m graphc <command>``: the demo, and benchmark, explain or dump a model in a file.

    python -m graphc demo
    python -m graphc bench model.py:MLP [--repeat 20] [--warmup 3] [--json [PATH]]
    python -m graphc explain model.py:MLP [--json [PATH]]
    python -m graphc dump model.py:MLP out/
    python -m graphc fuzz [--count 1000] [--seed 0] [--save DIR] [--ops A,B] [--dynamic | --mutation | --grad]

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
import json
import math
import os
import sys
import warnings
from pathlib import Path

import graphc
from graphc.compiler.model_file import TargetError, line_in, load_target, one_line
from graphc.debug import debug_level


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
    if args.grad:
        from .fuzz import fuzz_grad
        summary = fuzz_grad(args.count, seed=args.seed, save=args.save, shrink=not args.no_shrink,
                            ops=[n for n in args.ops.split(",") if n])
        print(summary.report())
        return 1 if summary.failures else 0
    if args.mutation:
        from .fuzz import fuzz_mutation
        summary = fuzz_mutation(args.count, seed=args.seed, save=args.save,
                                shrink=not args.no_shrink)
        print(summary.report())
        return 1 if summary.failures else 0
    from .fuzz import fuzz as run_fuzz
    summary = run_fuzz(args.count, seed=args.seed, save=args.save, shrink=not args.no_shrink,
                       dynamic=args.dynamic, ops=[n for n in args.ops.split(",") if n])
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
    p.add_argument("--dynamic", action="store_true", help="also compile each graph with "
                   "symbolic sizes and run it on the inputs and on resized ones")
    p.add_argument("--ops", default="", metavar="A,B", help="build most steps around these ops "
                   "(names in the op table)")
    p.add_argument("--mutation", action="store_true", help="programs that write in place and "
                   "through views, compiled and traced vs eager: outputs, inputs after the "
                   "call, output aliasing; eager fallbacks are counted apart")
    p.add_argument("--grad", action="store_true", help="compiled training vs eager autograd: "
                   "graphs and in-place programs whose float inputs (some) require grad; "
                   "outputs and every input's .grad after backward of a random tangent are "
                   "compared; calls that ran eagerly are counted apart, by reason "
                   "(grad_NNNN.json)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import demo
        demo()
        return 0
    if args.command == "fuzz":
        if args.mutation + args.dynamic + args.grad > 1:
            parser.error("fuzz: --mutation, --dynamic and --grad cannot be combined")
        if args.mutation and args.ops:
            parser.error("fuzz: --ops applies to graph fuzzing, not --mutation")
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
        print(f"graphc {args.command}: error: {name} failed: {one_line(e)}"
              f"{line_in(e, Path(file).resolve())} (GRAPHC_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
