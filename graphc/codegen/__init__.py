"""The llvmlite backend: a fused graph to native code, the whole graph as one native call.
``graphc.compiler.pipeline`` drives it (passes and fusion first; codegen runs no pass).

Stages: ``program.lower`` schedules every fused kernel into the loop-level kernel IR
(``kernel_ir``; ``schedule`` and a module per kernel kind, over ``loop_space`` and
``subgraph``); ``llvm_emit`` turns the program into one LLVM module whose ``main`` runs
the kernels (on threads where large: ``threads``) and the fallbacks in order; ``target``
compiles it for the host CPU, with the caches of ``cache``; ``runtime`` calls it.
"""

from . import emitters
from .blas import find as find_blas
from .cache import cache_dir, stats as cache_stats
from .program import PARALLEL_THRESHOLD, thread_count
from .runtime import Specialization
from .schedule_copy import GATHERS
from .target import host_description

emitters.check_table(GATHERS)

__all__ = ["Specialization", "cache_dir", "cache_stats", "find_blas", "host_description",
           "thread_count", "PARALLEL_THRESHOLD"]
