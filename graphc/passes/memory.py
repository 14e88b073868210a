"""Memory planning: when each intermediate is live, and which buffer holds it.

A value needs storage from the node that computes it to its last reader; a view keeps its
base alive as long as the view is read. Walking the nodes in order, a value takes a
freed buffer that is large enough (the smallest such), or a new one. An elementwise op
whose input dies at that op, with the same size and dtype, writes in place into the
input's buffer. Graph inputs, weights and outputs are never planned: outputs are fresh
tensors, inputs belong to the caller.
"""

from __future__ import annotations

import functools
import heapq
import itertools
from dataclasses import dataclass, field

from ..ir.aliasing import read_in_place, view_root
from ..ir.graph_module import GraphModule
from ..ir.node import Node, nodes_in
from ..ops.registry import Flag
from ..symbolic import known
from .fusion import kind_of, nbytes


@dataclass
class MemoryPlan:
    buffer_sizes: list[int] = field(default_factory=list)   # bytes per buffer
    assignment: dict[str, int] = field(default_factory=dict)  # value -> buffer
    in_place: dict[str, str] = field(default_factory=dict)    # value -> input it overwrites
    live: dict[str, tuple[int, int]] = field(default_factory=dict)  # value -> (def, last use)
    unplanned_bytes: int = 0  # every intermediate in a buffer of its own

    @property
    def planned_bytes(self) -> int:
        return sum(self.buffer_sizes)

    def __str__(self) -> str:
        lines = [f"{len(self.assignment)} intermediates in {len(self.buffer_sizes)} buffers: "
                 f"{self.planned_bytes} bytes (without reuse {self.unplanned_bytes})"]
        for name, b in self.assignment.items():
            first, last = self.live[name]
            extra = f", in place of %{self.in_place[name]}" if name in self.in_place else ""
            lines.append(f"  %{name:<24} buffer {b}  live {first}..{last}{extra}")
        return "\n".join(lines)


def _kernel_output(n: Node) -> bool:
    """An output of a multi-output kernel (``call[k]`` of a call_module)."""
    return n.op == "call_method" and n.target == "__getitem__" \
        and isinstance(n.args[0], Node) and n.args[0].op == "call_module"


def plan_memory(gm: GraphModule) -> MemoryPlan:
    nodes = gm.graph.nodes
    index = {n: i for i, n in enumerate(nodes)}
    outputs = {view_root(n) for n in nodes_in(gm.graph.output_node.args)}
    last_use: dict[Node, int] = {}
    for n in nodes:
        for i in n.all_input_nodes:
            r = view_root(i)
            last_use[r] = max(last_use.get(r, 0), index[n])

    def plannable(n: Node) -> bool:
        return view_root(n) is n and n not in outputs and "shape" in n.meta and not (
            n.op == "call_function" and Flag.MUTATES in n.target.flags)

    # values in the order they are made; a multi-output kernel makes all of them at once
    made: list[tuple[Node, int]] = []
    for n in nodes:
        if n.op == "call_module" and "shape" not in n.meta:
            made += [(u, index[n]) for u in sorted(n.users, key=index.__getitem__)
                     if _kernel_output(u) and plannable(u)]
        elif n.op in ("call_function", "call_module") and plannable(n):
            made.append((n, index[n]))
    plan = MemoryPlan()
    free: list[int] = []
    holder: dict[Node, int] = {}
    # (last use, when taken, value) of the values holding buffers, the first to die on top:
    # each value is looked at when it dies, not at every step (a backward graph keeps
    # thousands of activations live)
    dying: list[tuple[int, int, Node]] = []
    taken = itertools.count()
    for n, i in made:
        died = []
        while dying and dying[0][0] < i:  # buffers whose value died before n
            _, order, value = heapq.heappop(dying)
            if value in holder:  # (not overwritten in place meanwhile)
                died.append((order, value))
        for _, value in sorted(died, key=lambda d: d[0]):  # freed in the order taken
            free.append(holder.pop(value))
        size = nbytes(n)
        buf = None
        module = gm.graph.module_at(n.target) if n.op == "call_module" else None
        if kind_of(n) == "elementwise" or getattr(module, "kind", "") == "elementwise":
            for inp in n.all_input_nodes:  # write over an input that dies here
                r = view_root(inp)
                if r in holder and last_use.get(r) == i and known(nbytes(r), "==", size) \
                        and r.meta.get("dtype") is n.meta.get("dtype") and r is inp \
                        and (module is None or read_in_place(module, n.args.index(inp))):
                    buf = holder.pop(r)
                    plan.in_place[n.name] = r.name
                    break
        if buf is None:  # the smallest free buffer that surely fits (sizes may be symbolic)
            fitting = [b for b in free if known(plan.buffer_sizes[b], ">=", size)]
            if fitting:
                buf = min(fitting, key=functools.cmp_to_key(lambda a, b: -1 if known(
                    plan.buffer_sizes[a], "<", plan.buffer_sizes[b]) else 1))
                free.remove(buf)
            else:
                buf = len(plan.buffer_sizes)
                plan.buffer_sizes.append(size)
        holder[n] = buf
        heapq.heappush(dying, (last_use.get(n, index[n]), next(taken), n))
        plan.assignment[n.name] = buf
        plan.live[n.name] = (i, last_use.get(n, i))
        plan.unplanned_bytes += size
    return plan
