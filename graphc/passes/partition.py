"""Partition a joint forward + backward graph into a forward and a backward program.

The backward needs some forward values. Each one is either *saved* (the forward program
returns it, and it stays in memory until backward) or *recomputed* inside the backward
program from values it has (cheap elementwise and view ops only: they fuse into the
backward's kernels). Inputs and weights cost nothing to keep (the caller holds them).
The choice is a minimum cut (as rematerializing partitioners do): every forward node is
an edge ``in -> out`` whose capacity is the bytes it would take to save; an op that must
not be recomputed (a matmul, a reduction, a random draw) is fed from the source, so the
backward can only have it saved; every value the backward reads drains to the sink. The
cheapest cut is the set of values saved; what lies past it is recomputed.

Values written by the forward program's copy-backs (a BatchNorm's running statistics)
are not readable by the backward (they have changed by then): what the backward needs of
them is saved from before the write.
"""

from __future__ import annotations

import math

import networkx as nx

from ..ir.aliasing import COPY_BACK, is_write, view_root
from ..ir.graph import Graph
from ..ir.graph_module import GraphModule
from ..ir.node import Node, map_arg, nodes_in
from ..ops.registry import Flag
from .autodiff import TANGENT, NotDifferentiable


class Partition:
    """The two programs and what passes between them."""

    def __init__(self, forward: GraphModule, backward: GraphModule, saved: list[Node],
                 kept: list[Node], recomputed: list[Node]):
        self.forward, self.backward = forward, backward
        self.saved = saved            # joint-graph nodes the forward returns for the backward
        self.kept = kept              # inputs (placeholders) the backward reads, held by the caller
        self.recomputed = recomputed  # forward nodes the backward computes again

    def describe(self) -> str:
        lines = [f"saved for backward: {len(self.saved)} values, {_mib(self.saved)}"]
        lines += [f"  %{n.name}: {_type(n)} ({n.target.name}, {_bytes(n)} bytes: "
                  + ("cheaper than what recomputing it needs)" if recomputable(n)
                     else "not recomputed: not a cheap elementwise or view op)")
                  for n in self.saved]
        if self.kept:
            lines.append("kept by reference: " + ", ".join(f"%{n.name}" for n in self.kept))
        if self.recomputed:
            lines.append(f"recomputed in backward ({len(self.recomputed)} cheap ops, cheaper "
                         "than saving them): " + ", ".join(f"%{n.name}" for n in self.recomputed))
        return "\n".join(lines)


def _type(n: Node) -> str:
    from ..ir.printer import type_str
    return type_str(n)


def _bytes(n: Node) -> int:
    size = 1
    for d in n.meta.get("shape", ()):
        size *= getattr(d, "hint", d)  # a symbolic size: its value when compiled (no guard)
    return size * n.meta["dtype"].itemsize


def _mib(nodes) -> str:
    return f"{sum(_bytes(n) for n in nodes) / 2**20:.3f} MiB"


def recomputable(n: Node) -> bool:
    if n.op != "call_function":
        return False
    op = n.target
    if op.flags & {Flag.IMPURE, Flag.RANDOM, Flag.MUTATES}:
        return False
    return bool(op.flags & {Flag.ELEMENTWISE, Flag.VIEW, Flag.FACTORY}) or op.cheap


def partition(joint: GraphModule, n_grads: int) -> Partition:
    """Split ``joint`` (output ``(user outputs, (gradients...))``, tangent placeholders
    marked ``meta["tangent"]``) into a forward program returning ``(user outputs, (saved
    values...))`` and a backward program taking ``(*saved, *kept inputs, *tangents)`` and
    returning the ``n_grads`` gradients."""
    graph = joint.graph
    out_value, grad_value = graph.output_node.args[0]
    tangents = [p for p in graph.placeholders if TANGENT in p.meta]
    backward = _depending_on(graph, tangents)
    written = {view_root(n.args[0]) for n in graph.nodes if is_write(n) and n.meta.get(COPY_BACK)}
    needed = set()  # forward values the backward reads
    for n in graph.nodes:
        if n in backward:
            needed.update(a for a in n.all_input_nodes if a not in backward)
    needed.update(n for n in nodes_in(grad_value) if n not in backward)

    g = nx.DiGraph()
    for n in graph.nodes:
        if n in backward or n.op == "output" or is_write(n):
            continue
        if n.op in ("placeholder", "get_attr"):
            g.add_edge("source", (n, "in"))
            if n in written:  # changed by the time backward runs: never read there
                g.add_edge("source", (n, "out"))
            else:
                g.add_edge((n, "in"), (n, "out"), capacity=0)  # the caller holds it
            continue
        if not recomputable(n):
            g.add_edge("source", (n, "in"))
        g.add_edge((n, "in"), (n, "out"), capacity=_bytes(n))
        for a in n.all_input_nodes:
            if recomputable(n) and a not in backward:
                g.add_edge((a, "out"), (n, "in"))
    for n in needed:
        g.add_edge((n, "out"), "sink")
    if not needed:
        cut_value, reachable = 0, set(g.nodes) - {"sink"}
    else:
        cut_value, (reachable, _) = nx.minimum_cut(g, "source", "sink")
    if math.isinf(cut_value):
        raise NotDifferentiable("the backward needs a value the forward overwrites in place "
                                "before it ends (a buffer written and read by the gradient)")
    saved, kept, recompute = [], [], set()
    for n in graph.nodes:
        if (n, "in") in reachable and (n, "out") in g and (n, "out") not in reachable:
            if n.op == "call_function":
                saved.append(n)
            elif n.op == "placeholder":
                kept.append(n)  # (weights are read by the backward program itself)
        elif (n, "in") in g and (n, "in") not in reachable and n.op == "call_function":
            recompute.add(n)
    # only what the backward actually reaches is recomputed
    recompute = reached_within(needed, recompute)
    fwd = _forward_graph(graph, backward, out_value, saved)
    bwd = _backward_graph(graph, backward, recompute, saved, kept, tangents, grad_value)
    recomputed = [n for n in graph.nodes if n in recompute]
    return Partition(GraphModule(joint, fwd, class_name=joint._get_name() + "Forward"),
                     GraphModule(joint, bwd, class_name=joint._get_name() + "Backward"),
                     saved, kept, recomputed)


def _depending_on(graph, roots) -> set[Node]:
    dep = set(roots)
    for n in graph.nodes:
        if n.op != "output" and any(a in dep for a in n.all_input_nodes):
            dep.add(n)
    return dep


def reached_within(needed, recompute: set) -> set:
    """The nodes of ``recompute`` that ``needed`` reads, directly or through others of it."""
    reached, stack = set(), [n for n in needed if n in recompute]
    while stack:
        n = stack.pop()
        if n in reached:
            continue
        reached.add(n)
        stack.extend(a for a in n.all_input_nodes if a in recompute)
    return reached


def _copy(new: Graph, n: Node, env: dict) -> Node:
    c = new.create_node(n.op, n.target, map_arg(n.args, env.__getitem__),
                        map_arg(n.kwargs, env.__getitem__), name=n.name)
    c.meta = dict(n.meta)
    env[n] = c
    return c


def _forward_graph(graph, backward: set, out_value, saved: list) -> Graph:
    new, env = Graph(), {}
    for n in graph.nodes:
        if n in backward or n.op == "output":
            continue
        _copy(new, n, env)
    out = new.output((map_arg(out_value, env.__getitem__), tuple(env[n] for n in saved)))
    out.meta = dict(graph.output_node.meta)  # (which outputs stay views of written inputs)
    return new


def _backward_graph(graph, backward: set, recompute: set, saved: list, kept: list,
                    tangents: list, grad_value) -> Graph:
    new, env = Graph(), {}
    for n in [*saved, *kept]:
        p = new.placeholder(f"saved_{n.name}")
        p.meta = {k: v for k, v in n.meta.items() if k in ("shape", "dtype", "stride")}
        env[n] = p
    for t in tangents:
        _copy(new, t, env)
    for n in graph.nodes:
        if n.op == "get_attr" and any(u in backward or u in recompute for u in n.users):
            _copy(new, n, env)
        elif n in recompute or (n in backward and n.op != "placeholder" and n.op != "output"):
            _copy(new, n, env)
    new.output(map_arg(grad_value, env.__getitem__))
    return new
