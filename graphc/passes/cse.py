"""Common-subexpression elimination: a pure op applied twice to the same inputs with the
same attributes is computed once.

Impure ops are never merged, and an in-place write ends what is known (values computed
before it may differ from the same expression after it). Attribute values compare by type
and bits, so ``mul(x, 0.0)`` and ``mul(x, -0.0)`` (or ``add(x, 1)`` and ``add(x, True)``)
stay apart.
"""

from __future__ import annotations

from ..ir.graph_module import GraphModule
from ..ir.node import Node
from ..ops.registry import Flag


def key_of(value):
    """A hashable key that tells apart values equal under == but not the same (0.0, -0.0)."""
    if isinstance(value, Node):
        return ("node", id(value))
    if isinstance(value, (tuple, list)):
        return (type(value).__name__,) + tuple(key_of(v) for v in value)
    if isinstance(value, dict):
        return ("dict",) + tuple((k, key_of(v)) for k, v in value.items())
    if isinstance(value, float):
        return ("float", value.hex())
    if isinstance(value, slice):
        return ("slice", key_of(value.start), key_of(value.stop), key_of(value.step))
    try:
        hash(value)
    except TypeError:
        return ("id", id(value))
    return (type(value).__name__, value)


def cse(gm: GraphModule) -> bool:
    seen: dict = {}
    changed = False
    for node in list(gm.graph.nodes):
        if node.op == "call_function":
            if Flag.MUTATES in node.target.flags:
                seen.clear()
                continue
            if Flag.IMPURE in node.target.flags:
                continue
        elif node.op != "get_attr":
            continue
        key = (node.op, key_of(node.target) if node.op == "get_attr" else id(node.target),
               key_of(node.args), key_of(node.kwargs))
        first = seen.get(key)
        if first is None:
            seen[key] = node
            continue
        node.replace_all_uses_with(first)
        gm.graph.erase_node(node)
        changed = True
    return changed
