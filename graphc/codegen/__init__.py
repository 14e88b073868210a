"""The llvmlite backend: fused kernels to native code, a whole graph as one native call.

    from graphc.codegen import compile_graph
    gm = graphc.trace(model, x)
    cg = compile_graph(gm, x)      # passes, fusion, kernel IR, LLVM, machine code
    y = cg(x)                      # one call into the compiled program
    print(cg.explain())            # kernels, threads, fallbacks, compile time
    print(cg.dump("kernels"))      # or "graph", "llvm", "llvm_opt", "asm"

Stages: ``program.lower`` schedules every fused kernel into the loop-level kernel IR
(``kernel_ir``, ``schedule``); ``llvm_emit`` turns the program into one LLVM module whose
``main`` runs the kernels (threaded where large) and the fallbacks in order; ``target``
compiles it for the host CPU, with the caches of ``cache``; ``runtime`` calls it.
"""

from . import emitters
from .blas import find as find_blas
from .cache import cache_dir, stats as cache_stats
from .program import PARALLEL_THRESHOLD, thread_count
from .runtime import CompiledGraph, Specialization, Unsized, compile_graph
from .target import host_description

emitters.install()

__all__ = ["CompiledGraph", "Specialization", "Unsized", "compile_graph", "cache_dir", "cache_stats",
           "find_blas", "host_description", "thread_count", "PARALLEL_THRESHOLD"]
