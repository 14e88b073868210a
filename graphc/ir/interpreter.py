"""Interpreter: run a graph node by node. The reference every later stage is checked against.

Subclass it and override a per-opcode method (``call_function``, ``get_attr`` ...) or
``run_node`` to observe or change execution; ``ShapeProp`` does so to record shapes.

Each value is dropped from ``env`` once the last node reading it has run (as torch.fx's
``garbage_collect_values``), so running a long chain holds a few values at a time, not
all of them; ``free_values=False`` keeps every value until the run ends (for debugging).
"""

from __future__ import annotations

from typing import Any

from ..ops.dispatch import dispatch
from ..symbolic import concrete
from .graph_module import fetch
from .node import Node, map_arg


class Interpreter:
    def __init__(self, module, graph=None, free_values: bool = True):
        self.module = module
        self.graph = graph if graph is not None else module.graph
        self.free_values = free_values
        self.env: dict[Node, Any] = {}

    def run(self, *args) -> Any:
        """Run the graph on ``args`` (one per placeholder) and return the output value."""
        placeholders = self.graph.placeholders
        if len(args) != len(placeholders):
            raise TypeError(f"the graph takes {len(placeholders)} inputs "
                            f"({', '.join(n.name for n in placeholders)}), got {len(args)}")
        self.env = {}
        self._args = iter(args)
        dying = last_uses(self.graph) if self.free_values else {}
        try:
            for node in self.graph.nodes:
                value = self.run_node(node)
                if node.op == "output":
                    return value
                if node.users or not self.free_values:
                    self.env[node] = value
                for done in dying.get(node, ()):
                    del self.env[done]
        finally:
            self.env = {}
        raise RuntimeError("the graph has no output node")

    def run_node(self, node: Node) -> Any:
        args = map_arg(node.args, self.env.__getitem__)
        kwargs = map_arg(node.kwargs, self.env.__getitem__)
        args, kwargs = concrete((args, kwargs))  # a symbolic graph run for one call's sizes
        return getattr(self, node.op)(node, args, kwargs)

    # ---- one method per opcode ---------------------------------------------------
    def placeholder(self, node: Node, args, kwargs) -> Any:
        return next(self._args)

    def get_attr(self, node: Node, args, kwargs) -> Any:
        return fetch(self.module, node.target)

    def call_function(self, node: Node, args, kwargs) -> Any:
        return dispatch(node.target, *args, **kwargs)

    def call_method(self, node: Node, args, kwargs) -> Any:
        return getattr(args[0], node.target)(*args[1:], **kwargs)

    def call_module(self, node: Node, args, kwargs) -> Any:
        return fetch(self.module, node.target)(*args, **kwargs)

    def output(self, node: Node, args, kwargs) -> Any:
        return args[0]


def last_uses(graph) -> dict[Node, list[Node]]:
    """For each node, the values it is the last reader of (in the graph's order)."""
    last: dict[Node, Node] = {}
    for node in graph.nodes:
        for i in node.all_input_nodes:
            last[i] = node
    dying: dict[Node, list[Node]] = {}
    for value, reader in last.items():
        dying.setdefault(reader, []).append(value)
    return dying
