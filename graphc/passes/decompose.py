"""Decomposition: composite ops become the primitives their op-table decomposition uses,
so that fusion sees elementwise ops, reductions and matmuls.

Each composite call is traced through its decomposition into the graph, in place;
new nodes keep the composite's source location and record it in ``meta["origin"]``.
Repeats until no composite is left (a decomposition may use composites itself).
"""

from __future__ import annotations

from ..ir.graph_module import GraphModule
from ..ops.registry import Flag
from ..trace.tracer import trace_into


def decompose(gm: GraphModule, keep: tuple[str, ...] = ()) -> bool:
    """Expand every composite op except those named in ``keep``."""
    graph = gm.graph
    changed = False
    while True:
        todo = [n for n in graph.nodes if n.op == "call_function"
                and Flag.COMPOSITE in n.target.flags and n.target.name not in keep]
        if not todo:
            return changed
        for node in todo:
            with graph.inserting_before(node) as created:
                out = trace_into(gm, node.target.decomposition, node.args, node.kwargs)
            for new in created:
                new.meta["location"] = node.meta.get("location")
                new.meta.setdefault("origin", node.meta.get("origin", node.target.name))
            node.replace_all_uses_with(out)
            graph.erase_node(node)
            changed = True
