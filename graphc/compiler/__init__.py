"""graphc.compile and what explains it: guards, the compiled-graph cache, eager fallback,
explain, check mode, dumps and benchmarks.

    model = graphc.compile(model)         # mode="eager" runs the same model in dynamic mode
    with graphc.no_grad():
        y = model(x)
    print(graphc.explain(model, x))       # graphs, guards, fusion, kernels, fallbacks, times
    model.compiled.recompiles             # each guard miss: guard, old, new, line, fix
    compiled_function(model).entries      # any compiled thing's record (model.compile())
    graphc.dump(model, "out/")            # every stage and a repro script with saved inputs
    graphc.benchmark(model, x)            # eager vs compiled, compile times, peak memory
    GRAPHC_PROFILE=1 python3 train.py     # time per kernel (profile_report)

Underneath, ``compile_graph(gm, *inputs)`` (``pipeline``) compiles one captured graph:
passes, fusion, memory plan, then the backend (``graphc.codegen``).
"""

from .benchmark import BenchmarkResult, benchmark
from .check import CheckError
from .compiled import (CaptureError, CompiledFunction, CompiledModule, EagerRun, compile,
                       compiled_function)
from .dump import dump
from .explain import Explanation, explain
from .guards import Guard, Recompile
from .pipeline import CompiledGraph, Unsized, compile_graph
from .profile import profile_report

__all__ = ["compile", "explain", "dump", "benchmark", "BenchmarkResult", "CompiledFunction",
           "CompiledModule", "compiled_function", "CaptureError", "EagerRun", "CheckError",
           "Explanation", "Guard", "Recompile", "CompiledGraph", "Unsized", "compile_graph",
           "profile_report"]
