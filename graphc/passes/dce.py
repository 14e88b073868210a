"""Dead-code elimination: a reverse walk erasing pure nodes nobody reads.

Impure nodes stay (random draws, in-place writes, anything flagged IMPURE), and so do
inputs, the output, module calls and method calls.
"""

from __future__ import annotations

from ..ir.graph_module import GraphModule


def dce(gm: GraphModule) -> bool:
    changed = False
    for node in reversed(gm.graph.nodes):
        if not node.users and not node.is_impure():
            gm.graph.erase_node(node)
            changed = True
    return changed
