"""FusedKernel: a group of nodes that will run as one kernel, holding its own sub-graph.

The fusion planner replaces each group by ``call_module[fused_3](inputs...)`` whose module
is a FusedKernel; the backend lowers ``kernel.graph`` to loops. Until then (and as the
reference) a FusedKernel runs its sub-graph with the Interpreter.
"""

from __future__ import annotations

from ..nn.module import Module
from .graph import Graph
from .interpreter import Interpreter

KINDS = ("elementwise", "reduction", "matmul")


class FusedKernel(Module):
    """``kind`` is elementwise, reduction or matmul; ``name`` says kind and shape
    (E_4194304, R_4096_1024, M_256_1024_1024); ``domain`` is the iteration shape and
    ``reduced_dims`` the dims a reduction kernel reduces over."""

    pure = True

    def __init__(self, graph: Graph, kind: str, name: str, domain: tuple,
                 reduced_dims: tuple = ()):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown kernel kind {kind!r}")
        object.__setattr__(self, "graph", graph)
        self.kind, self.name, self.domain, self.reduced_dims = kind, name, domain, reduced_dims

    def forward(self, *inputs):
        return Interpreter(self, self.graph).run(*inputs)

    def extra_repr(self) -> str:
        ops = [n.target.name for n in self.graph.nodes if n.op == "call_function"]
        return f"{self.name}: {' -> '.join(ops)}"
