"""Reverse-mode differentiation of a graph: the joint forward + backward graph.

``differentiate(gm, sources)`` takes a pure graph (functionalized and decomposed: only
primitives, copy-backs at the end) and the nodes gradients are wanted for (inputs and
weights that require grad). It adds a placeholder per differentiable output (its
gradient, a *tangent*) and, walking the forward nodes backwards, each op's gradient rule
from the op table, traced into the graph (the rules eager autograd runs, on proxies;
broadcast gradients summed to their input's shape and dtype as eager's ``_fit`` does).
The result is one graph computing the outputs and the sources' gradients, which the
partitioner then splits into a forward and a backward program.

What eager autograd would not differentiate is not differentiated here either: ops
recorded under ``no_grad`` (``meta["no_grad"]``), ``detach``, integer results. What
the joint graph cannot express raises ``NotDifferentiable`` with the reason (the call
then runs eagerly): an op without a gradient rule on the gradient's path, a rule that
needs values the graph does not have, an in-place write under ``no_grad`` into a value
that requires grad.
"""

from __future__ import annotations

from ..autograd.graph import _fit
from ..ir.aliasing import COPY_BACK, is_write, view_root
from ..ir.graph_module import GraphModule
from ..ir.node import Node
from ..ops.registry import Flag
from ..trace.proxy import TraceError
from ..trace.tracer import trace_into

TANGENT = "tangent"  # placeholder.meta: the position of the output whose gradient it is


class NotDifferentiable(TraceError):
    """A graph whose gradient cannot be built as a graph; the message says why."""


def requiring_grad(graph, sources) -> set[Node]:
    """The nodes whose value depends, differentiably, on a source (eager's requires_grad)."""
    req = set(sources)
    for n in graph.nodes:
        if n.op != "call_function" or n in req or n.meta.get("no_grad"):
            continue
        op = n.target
        if op.flags & {Flag.NO_GRAD, Flag.MUTATES} or not _floating(n):
            continue
        if any(a in req for a in n.all_input_nodes):
            req.add(n)
    return req


def _floating(n: Node) -> bool:
    d = n.meta.get("dtype")
    return d is not None and d.is_floating_point


def check_writes(traced_graph, requires) -> None:
    """Refuse writes whose gradient semantics the pure graph cannot keep: an in-place op
    under ``no_grad`` into a value that requires grad (eager's gradient skips the write;
    the pure graph would differentiate through it)."""
    for n in traced_graph.nodes:
        if is_write(n) and n.meta.get("no_grad") and not n.meta.get(COPY_BACK):
            root = view_root(n.args[0])
            if root.op in ("placeholder", "get_attr") and not requires(root):
                continue
            where = n.meta.get("location") or ""
            raise NotDifferentiable(
                f"%{n.name} ({n.target.name}) writes under no_grad into a tensor that takes part "
                "in the gradient; compiled training does not express that yet", where)


def differentiate(gm: GraphModule, sources: list[Node], also=()) -> tuple[dict, list[Node | None]]:
    """Add the backward of ``gm``'s graph for ``sources``; returns ({each distinct output
    that requires grad: its tangent placeholder}, each source's gradient node, None where
    no gradient reaches it). ``also``: outputs that get a tangent though no source reaches
    them (eager says they require grad). The graph's output is left as it was: the caller
    decides what to return."""
    graph = gm.graph
    req = requiring_grad(graph, sources)
    # (an input or weight returned as it is keeps its own history: it needs no tangent)
    outputs = [n for n in _flat_outputs(graph)
               if (n in req or n in also) and n.op == "call_function"]
    tangents = []
    with graph.inserting_before(graph.placeholders[-1].next if graph.placeholders
                                else next(iter(graph.nodes))):
        for k, out in enumerate(dict.fromkeys(outputs)):
            t = graph.placeholder(f"tangent_{k}")
            t.meta.update(shape=out.meta["shape"], dtype=out.meta["dtype"],
                          stride=out.meta.get("stride"), **{TANGENT: k})
            tangents.append(t)
    grads: dict[Node, Node] = {}
    for out, t in zip(dict.fromkeys(outputs), tangents):
        grads[out] = t
    end = next((n for n in graph.nodes if is_write(n) and n.meta.get(COPY_BACK)),
               graph.output_node)
    forward = [n for n in graph.nodes if n in req and n.op == "call_function"]
    for node in reversed(forward):
        g = grads.pop(node, None)
        if g is None:
            continue
        with graph.inserting_before(end) as created:
            input_grads = _rule(gm, node, g, req)
        for new in created:
            new.meta["location"] = node.meta.get("location")
            new.meta["grad_of"] = node.name
        for a, ga in zip(node.args, input_grads):
            if ga is None or not isinstance(a, Node) or a not in req:
                continue
            if a in grads:
                with graph.inserting_before(end) as created:
                    grads[a] = trace_into(gm, lambda x, y: x + y, (grads[a], ga))
                for new in created:
                    new.meta["grad_of"] = a.name
            else:
                grads[a] = ga
    return dict(zip(dict.fromkeys(outputs), tangents)), [grads.get(s) for s in sources]


def _flat_outputs(graph) -> list[Node]:
    from ..ir.node import nodes_in
    return nodes_in(graph.output_node.args)


class _Context:
    """What a gradient rule reads (eager's ``GradContext``), on the graph's proxies."""

    __slots__ = ("inputs", "output", "attrs", "_shapes", "_needs")

    def __init__(self, inputs, output, attrs, shapes, needs):
        self.inputs, self.output, self.attrs = tuple(inputs), output, attrs
        self._shapes, self._needs = shapes, needs

    def input(self, i: int):
        return self.inputs[i]

    def shape(self, i: int) -> tuple:
        return self._shapes[i]

    def needs(self, i: int) -> bool:
        return self._needs[i]

    @property
    def arity(self) -> int:
        return len(self.inputs)


def _rule(gm: GraphModule, node: Node, g: Node, req: set) -> tuple:
    op = node.target
    if op.grad is None:
        raise NotDifferentiable(f"%{node.name} ({op.name}) has no gradient rule, and the "
                                "gradient flows through it", node.meta.get("location") or "")
    args = node.args
    metas = [(tuple(a.meta["shape"]), a.meta["dtype"]) if isinstance(a, Node) else None
             for a in args]
    needs = [isinstance(a, Node) and a in req for a in args]
    n = len(args)

    def rule(*values):
        ins, out, grad = values[:n], values[n], values[n + 1]
        ctx = _Context(ins, out, node.kwargs, [m[0] if m else None for m in metas], needs)
        result = op.grad(ctx, grad)
        if not isinstance(result, tuple):
            result = (result,)
        return tuple(_fit(r, m) if r is not None and need else None
                     for r, m, need in zip(result, metas, needs))

    try:
        return trace_into(gm, rule, (*args, node, g)) or ()
    except NotDifferentiable:
        raise
    except Exception as e:
        raise NotDifferentiable(f"the gradient rule of %{node.name} ({op.name}) cannot be "
                                f"traced: {type(e).__name__}: {e}",
                                node.meta.get("location") or "") from e
