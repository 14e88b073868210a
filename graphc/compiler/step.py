"""Compiled training steps: a function that calls ``loss.backward()`` (and the optimizer).

``@graphc.compile`` on ::

    def train_step(x, y):
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step(); opt.zero_grad()
        return loss

traces the step in grad mode (``trace.step``): the forward, where ``backward()`` starts,
and a tape of the optimizer, module and scheduler calls. From the op table's gradient
rules the graph is differentiated (``passes.autodiff``, as compiled training does) into
one program that computes the outputs and the gradient of every weight the loss reaches.
A call runs that program (one native call), accumulates the gradients into ``.grad`` as
eager autograd does, then replays the tape: ``opt.step()`` runs the optimizer's own code
(with ``fused=True`` one more native call), with the live learning rate and state.

The outputs do not require grad (eager's loss would carry its history; the step already
ran the backward). Guards: the call's signature (as for any compiled call: a dim seen
with two sizes becomes symbolic, and one step serves every size its guards allow), the
weights and their ``requires_grad`` flags; a change builds the step again.
"""

from __future__ import annotations

import time

from ..autograd.grad_mode import no_grad
from ..autograd.graph import grad_accumulator
from ..ir.aliasing import COPY_BACK, is_write
from ..ir.graph_module import GraphModule, fetch
from ..ops import functions as F
from ..passes.autodiff import NotDifferentiable, check_writes, differentiate, requiring_grad
from ..passes.partition import partition, reached_within
from ..tensor import Tensor
from ..trace.proxy import TraceError
from ..trace.tracer import trace_bound, trace_into
from .pipeline import compile_graph
from .pipeline import Unsized
from .training import (Programs, describe_programs, make_pure, refuse_backward_hooks,
                       refuse_rebasing_writes, refuse_written_grads)


class StepProgram(Programs):
    """One signature's compiled step: its forward and backward programs (split as compiled
    training splits them) and the tape replayed after them."""

    def __init__(self, gm: GraphModule, part, targets: list[str], kept: list[int],
                 tangent: tuple, tape: list, weights: list, passes, owner,
                 trace_seconds: float, check: bool = False):
        self.gm, self.partition = gm, part
        self.targets = targets  # the weights the program returns gradients for, in order
        self.kept = kept  # the positions of the arguments the backward reads
        self.tangent = tangent  # the loss's (shape, dtype): its gradient is ones
        self.tape = tape
        self.weights = weights  # (target, requires_grad when traced) of every weight read
        self.forward = compile_graph(part.forward, passes=passes, watch=owner)
        self.backward = compile_graph(part.backward, passes=passes, watch=owner)
        self.trace_seconds = trace_seconds
        self.out_structure = getattr(gm, "output_structure", None)
        self.unchecked = {self.forward, self.backward} if check else set()
        self.one_backward = sum(entry[0] == "backward" for entry in tape) == 1

    def current(self) -> bool:
        """Every weight it read still has the requires_grad flag it was traced with."""
        try:
            return all(fetch(self.gm, t).requires_grad == flag for t, flag in self.weights)
        except AttributeError:
            return False

    def run(self, tensors: list):
        """The programs, then gradients into ``.grad`` and the tape, in the traced order.
        Raises ``WeightChanged`` (before any effect) when a weight was replaced."""
        ((out, gradient), saved), sizes = self.run_forward(tensors)
        if gradient is None:
            gradient = F.ones(self.tangent[0], dtype=self.tangent[1])
        inputs = (*saved, *(tensors[k] for k in self.kept), gradient)
        grads = self.run_backward(inputs, sizes)
        # a gradient becomes .grad itself only where no later backward adds it again (an
        # effect in between may scale .grad in place)
        owned = _owned(grads, inputs) if self.one_backward else [False] * len(grads)
        for entry in self.tape:
            if entry[0] == "backward":
                with no_grad():
                    for target, g, own in zip(self.targets, grads, owned):
                        grad_accumulator(fetch(self.gm, target)).apply(g, own)
            else:
                entry[2]()
        return out

    def describe(self) -> str:
        effects = ["backward (gradients into .grad)" if e[0] == "backward" else e[1]
                   for e in self.tape]
        out = [f"compiled step: gradients for {len(self.targets)} weights ("
               + ", ".join(self.targets) + ")",
               "after the programs, in order: " + ", ".join(effects),
               self.partition.describe()]
        return "\n".join(out + describe_programs(self))


def _owned(grads, inputs) -> list[bool]:
    """Per gradient: its memory is its own (no other gradient, no input of the backward
    program shares it), so it may become a ``.grad`` without a copy."""
    count: dict = {}
    for t in (*grads, *inputs):
        if isinstance(t, Tensor):
            count[id(t._storage)] = count.get(id(t._storage), 0) + 1
    return [isinstance(g, Tensor) and count[id(g._storage)] == 1 for g in grads]


def build_step(call, params, bound, tensors: list, *, owner, leaf_modules,
               passes, check: bool = False, sized=None) -> StepProgram:
    """Trace ``call`` as a training step and compile it; raises a TraceError (the call then
    runs eagerly) where the step cannot be captured. ``sized``: (a ShapeEnv, the inputs'
    layouts) where ``bound`` holds its symbolic sizes (raises ``Unsized`` where they
    cannot serve)."""
    refuse_backward_hooks(owner)
    t0 = time.perf_counter()
    gm = trace_bound(call, params, bound, root=owner, leaf_modules=leaf_modules,
                     training=True, step=True)
    trace_seconds = time.perf_counter() - t0
    capture = gm.step_capture
    if capture.loss is None:
        raise TraceError("the step's backward() was not reached when traced in grad mode", "")
    graph = gm.graph
    for marker in capture.markers:
        if marker.users:
            raise TraceError("the step returns a .grad, which it fills after its program: "
                             "return it from outside the compiled function", "")
        graph.erase_node(marker)
    if any(t.requires_grad for t in tensors):
        raise NotDifferentiable("an argument requires grad: a compiled step accumulates "
                                "gradients into weights only", "")

    def requires(n) -> bool:
        return n.op == "get_attr" and getattr(fetch(gm, n.target), "requires_grad", False)

    check_writes(graph, requires)
    traced_sources = [n for n in graph.nodes if n.op == "get_attr" and requires(n)]
    traced_req = requiring_grad(graph, traced_sources)
    if capture.loss not in traced_req:
        raise TraceError("backward() of a value that does not require grad (eager raises)", "")
    refuse_rebasing_writes(graph, traced_req)
    in_graph = {n.name for n in reached_within([capture.loss], traced_req)}
    user_out = graph.output_node.args[0]
    graph.output_node.args = ((user_out, capture.loss, capture.gradient),)
    make_pure(gm)
    user_out, loss, gradient = graph.output_node.args[0]
    sources = [n for n in graph.nodes if n.op == "get_attr" and requires(n)
               and n.meta["dtype"].is_floating_point]
    refuse_written_grads(graph, requires, requiring_grad(graph, sources))
    graph.output_node.args = ((loss,),)
    tangents, grads = differentiate(gm, sources)
    if not tangents:
        raise TraceError("backward() of a value that does not require grad (eager raises)", "")
    ((out, tangent),) = tangents.items()
    end = next((n for n in graph.nodes if is_write(n) and n.meta.get(COPY_BACK)),
               graph.output_node)
    for k, (source, g) in enumerate(zip(sources, grads)):
        if g is None and source.name in in_graph:  # every path cut by a write: zeros
            with graph.inserting_before(end):
                grads[k] = trace_into(gm, lambda x: F.zeros_like(x), (source,))
    kept = [(s.target, g) for s, g in zip(sources, grads) if g is not None]
    graph.output_node.args = (((user_out, gradient), tuple(g for _, g in kept)),)
    part = partition(gm, len(kept))  # saved or recomputed, as compiled training splits
    graph.lint(gm)
    positions = {p.name: k for k, p in enumerate(graph.placeholders)}
    weights = sorted({(n.target, bool(fetch(gm, n.target).requires_grad))
                      for n in graph.nodes if n.op == "get_attr"
                      and hasattr(fetch(gm, n.target), "requires_grad")})
    program = StepProgram(gm, part, [t for t, _ in kept],
                          [positions[n.name] for n in part.kept],
                          (tuple(out.meta["shape"]), out.meta["dtype"]), capture.tape, weights,
                          passes, owner, trace_seconds, check)
    if sized:
        if any(not isinstance(n, int) for n in program.tangent[0]):
            raise Unsized("backward(gradient) of a loss of symbolic shape")
        program.size(*sized)
    return program
