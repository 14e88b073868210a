"""What aliases what in a graph: the queries the passes and the backend must agree on.

A view op's result shares its input's memory (``aliases_input``; a reshape only where its
strides allow), a write returns the tensor it wrote into (``is_write``), so every value has
a root whose memory it lives in (``view_root``). The ``functionalize`` pass marks the
copy-backs it makes into arguments and weights with ``COPY_BACK``, and the backend stores
a kernel's result straight into an argument only where the kernel reads that argument at
the element it writes (``read_in_place``).
"""

from __future__ import annotations

from ..layout import surely_same_shape, view_strides
from ..ops.registry import OPS, Flag
from .node import Node

COPY_BACK = "copy_back"  # node.meta key marking the copy-backs functionalize makes


def is_write(n: Node) -> bool:
    """A write: returns the tensor it wrote into (its first argument)."""
    return n.op == "call_function" and Flag.MUTATES in n.target.flags


def _described(v) -> bool:
    return isinstance(v, Node) and "shape" in v.meta and "dtype" in v.meta


def aliases_input(n: Node) -> bool:
    """A view op whose result shares its input's memory (reshape may copy instead: known
    from the strides in its input's meta; without them, taken as a view)."""
    if n.op != "call_function" or Flag.VIEW not in n.target.flags or not _described(n.args[0]):
        return False
    if n.target is OPS.reshape:
        src = n.args[0]
        stride = src.meta.get("stride")
        return stride is None or "shape" not in n.meta or view_strides(
            tuple(src.meta["shape"]), tuple(stride), tuple(n.meta["shape"])) is not None
    return True


def view_root(node: Node) -> Node:
    """The value whose memory ``node`` shares: through views, and through writes (a write
    returns the tensor it wrote)."""
    while aliases_input(node) or is_write(node):
        node = node.args[0]
    return node


def read_in_place(kernel, position: int, output: int | None = None) -> bool:
    """Whether a kernel reads its input ``position`` only at the element it writes (so it
    may write its output, or its output number ``output``, over that input): no view of
    it, no broadcast."""
    graph = getattr(kernel, "graph", None)
    if graph is None:
        return False
    p = graph.placeholders[position]
    out = graph.output_node.args[0]
    if output is not None:
        out = out[output] if isinstance(out, tuple) else None
    shape = tuple(out.meta["shape"]) if isinstance(out, Node) else None
    return surely_same_shape(p.meta.get("shape", ()), shape) and all(
        u.op == "call_function" and Flag.ELEMENTWISE in u.target.flags for u in p.users)
