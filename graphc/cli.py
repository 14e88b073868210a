"""``python -m graphc <command>``: the demo, and benchmark, explain or dump a model in a file.

    python -m graphc demo
    python -m graphc bench model.py:MLP [--repeat 20] [--warmup 3] [--json [PATH]]
    python -m graphc explain model.py:MLP [--json [PATH]]
    python -m graphc dump model.py:MLP out/
    python -m graphc fuzz [--count 1000] [--seed 0] [--save DIR] [--dynamic | --mutation]

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
import hashlib
import importlib.util
import inspect
import json
import math
import os
import sys
import traceback
import warnings
from pathlib import Path

import numpy as np

import graphc
from graphc.debug import debug_level


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
    if args.mutation:
        from .fuzz import fuzz_mutation
        summary = fuzz_mutation(args.count, seed=args.seed, save=args.save,
                                shrink=not args.no_shrink)
        print(summary.report())
        return 1 if summary.failures else 0
    from .fuzz import fuzz as run_fuzz
    summary = run_fuzz(args.count, seed=args.seed, save=args.save, shrink=not args.no_shrink,
                       dynamic=args.dynamic)
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
    p.add_argument("--mutation", action="store_true", help="programs that write in place and "
                   "through views, compiled and traced vs eager: outputs, inputs after the "
                   "call, output aliasing; eager fallbacks are counted apart")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import demo
        demo()
        return 0
    if args.command == "fuzz":
        if args.mutation and args.dynamic:
            parser.error("fuzz: --mutation and --dynamic cannot be combined")
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
