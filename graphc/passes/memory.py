"""Memory planning: when each intermediate is live, and which buffer holds it.

A value needs storage from the node that computes it to its last reader; a view keeps its
base alive as long as the view is read. Walking the nodes in order, a value takes a
freed buffer that is large enough (the smallest such), or a new one. An elementwise op
whose input dies at that op, with the same size and dtype, writes in place into the
input's buffer. Graph inputs, weights and outputs are never planned: outputs are fresh
tensors, inputs belong to the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ir.graph_module import GraphModule
from ..ir.node import Node, nodes_in
from ..ops.registry import Flag
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


def _root(node: Node) -> Node:
    while node.op == "call_function" and Flag.VIEW in node.target.flags \
            and isinstance(node.args[0], Node):
        node = node.args[0]
    return node


def plan_memory(gm: GraphModule) -> MemoryPlan:
    nodes = gm.graph.nodes
    index = {n: i for i, n in enumerate(nodes)}
    outputs = {_root(n) for n in nodes_in(gm.graph.output_node.args)}
    last_use: dict[Node, int] = {}
    for n in nodes:
        for i in n.all_input_nodes:
            r = _root(i)
            last_use[r] = max(last_use.get(r, 0), index[n])
    plannable = [n for n in nodes if n.op in ("call_function", "call_module")
                 and _root(n) is n and n not in outputs and "shape" in n.meta
                 and not (n.op == "call_function" and Flag.MUTATES in n.target.flags)]
    plan = MemoryPlan()
    free: list[int] = []
    holder: dict[Node, int] = {}
    for n in plannable:
        i = index[n]
        for value, buf in list(holder.items()):  # buffers whose value died before n
            if last_use.get(value, index[value]) < i and buf not in free:
                free.append(buf)
                del holder[value]
        size = nbytes(n)
        buf = None
        if kind_of(n) == "elementwise" or (n.op == "call_module" and getattr(
                gm.graph.module_at(n.target), "kind", "") == "elementwise"):
            for inp in n.all_input_nodes:  # write over an input that dies here
                r = _root(inp)
                if r in holder and last_use.get(r) == i and nbytes(r) == size \
                        and r.meta.get("dtype") is n.meta.get("dtype") and r is inp:
                    buf = holder.pop(r)
                    plan.in_place[n.name] = r.name
                    break
        if buf is None:
            fitting = [b for b in free if plan.buffer_sizes[b] >= size]
            if fitting:
                buf = min(fitting, key=lambda b: plan.buffer_sizes[b])
                free.remove(buf)
            else:
                buf = len(plan.buffer_sizes)
                plan.buffer_sizes.append(size)
        holder[n] = buf
        plan.assignment[n.name] = buf
        plan.live[n.name] = (i, last_use.get(n, i))
        plan.unplanned_bytes += size
    return plan
