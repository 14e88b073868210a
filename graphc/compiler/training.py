"""Compiled training: a call that autograd records runs a forward and a backward program.

When grad mode is on and an input or weight requires grad, the function is traced again
in grad mode (``detach()`` and ``no_grad`` regions kept), made pure and decomposed, and
differentiated into one joint graph from the op table's gradient rules
(``passes.autodiff``), which ``passes.partition`` splits by a minimum cut into:

- the forward program: the outputs, plus the values the backward needs saved;
- the backward program: from the saved values, the inputs it keeps by reference, and the
  outputs' gradients, the gradients of every input and weight that requires grad
  (recomputing cheap elementwise values inside its fused kernels instead of saving them).

Both go through the usual pipeline (passes, fusion, LLVM). The outputs carry one autograd
node, ``CompiledFunctionBackward``, whose edges lead to the inputs' and weights' own
nodes, so a compiled module composes with eager code: an eager loss, hooks,
``retain_graph``, ``autograd.grad`` and accumulation into ``.grad`` behave as in eager.
With fixed sizes the backward program is compiled on the first backward (specialised to
the layouts of the gradients it receives). With symbolic sizes (the call's entry has
them) both programs are specialised when built, the backward for contiguous inputs, in
one ShapeEnv: the forward's guards are the pair's (lowering the backward may add none),
so ``fits`` tells whether the pair serves a call's sizes.
"""

from __future__ import annotations

import itertools
import time

from ..autograd.grad_mode import is_grad_enabled, no_grad
from ..autograd.graph import _FREED, Node, edge_of
from ..ir.graph_module import GraphModule, fetch
from ..ir.node import Node as IRNode, map_arg, nodes_in
from ..ops import functions as F
from ..ops.registry import OPS
from ..passes.autodiff import NotDifferentiable, check_writes, differentiate, requiring_grad
from ..passes.dce import dce
from ..passes.decompose import decompose
from ..passes.functionalize import functionalize
from ..ir.aliasing import COPY_BACK, is_write, view_root
from ..passes.partition import partition
from ..tensor import empty_meta, tensors_in
from ..trace.tracer import trace_bound, trace_into
from ..codegen.sizes import SizeMismatch
from .pipeline import Unsized, compile_graph


_serials = itertools.count()


class NothingToDifferentiate(Exception):
    """No output of the call needs a gradient: the inference program gives eager's result
    (outputs that do not require grad)."""


class Programs:
    """A forward and a backward program (``forward``, ``backward``: CompiledGraphs of
    ``partition``'s two graphs), with fixed sizes or, once ``size`` has run, symbolic ones."""

    forward = backward = partition = None
    sized = None  # with symbolic sizes: their (forward, backward) Specializations
    unchecked: set = frozenset()  # check=True: the programs not checked yet

    def size(self, env, layouts: tuple) -> None:
        """Specialise both programs with the symbolic sizes of ``env`` (the forward for
        inputs laid out as ``layouts``; the backward for contiguous inputs, given the sizes
        of the forward call: its inputs may not carry them all), so that one pair serves
        every size the forward's guards allow. Raises ``Unsized`` where that
        cannot be done (then fixed sizes do)."""
        forward = self.forward.specialize_sized(layouts, env)
        decided = list(env.guards), dict(env.fixed)
        env.frozen = False  # (lowering the backward may not decide on a size either)
        try:
            backward = self.backward.specialize_sized(tuple(
                empty_meta(p.meta["shape"], p.meta["dtype"])
                for p in self.partition.backward.graph.placeholders), env, sizes_given=True)
        finally:
            env.frozen = True
        if (list(env.guards), dict(env.fixed)) != decided:
            raise Unsized("lowering the backward program decided on a size: "
                          + "; ".join(g for g in env.guards if g not in decided[0]))
        self.sized = forward, backward

    def fits(self, tensors) -> bool:
        """These inputs' sizes meet the guards of the programs' symbolic sizes."""
        try:
            self.sized[0].sizes.bind(tensors)
        except SizeMismatch:
            return False
        return True

    def run_forward(self, tensors) -> tuple:
        """The forward program's outputs and saved values, and the sizes the backward
        program will need (None with fixed sizes)."""
        if self.sized:  # (the sizes read once, for both programs)
            sizes = self.sized[0].sizes.values_of(tensors)
            return self.sized[0].run(tensors, sizes), sizes
        check_once(self, self.forward, tensors)
        return self.forward(*tensors), None

    def run_backward(self, inputs: tuple, sizes: tuple | None) -> tuple:
        """The backward program on ``inputs`` (``sizes``: what ``run_forward`` gave)."""
        if self.sized:  # laid out as the program takes them; the sizes the forward's were
            return self.sized[1].run(tuple(t.contiguous() for t in inputs), sizes)
        check_once(self, self.backward, inputs)
        return self.backward(*inputs)


class TrainingProgram(Programs):
    """The forward and backward programs of one signature (and requires_grad flags)."""

    def __init__(self, owner, gm: GraphModule, part, sources: list, output_slots: list,
                 tangents: list, passes, trace_seconds: float, check: bool = False):
        self.owner, self.gm, self.partition = owner, gm, part
        self.sources = sources  # ("input", position) or ("weight", target), one per gradient
        self.tangents = tangents  # (shape, dtype) of each differentiable output
        self.output_slots = output_slots  # (flattened output position, its tangent)
        self.positions = {p.name: k for k, p in enumerate(gm.graph.placeholders)}
        self.kept = [self.positions[n.name] for n in part.kept]  # inputs the backward reads
        self.backward_weights = sorted({n.target for n in part.backward.graph.nodes
                                        if n.op == "get_attr"})
        self.forward = compile_graph(part.forward, passes=passes, watch=owner)
        self.backward = compile_graph(part.backward, passes=passes, watch=owner)
        self.trace_seconds = trace_seconds
        self.out_structure = getattr(gm, "output_structure", None)
        self.serial = next(_serials)  # which was built last
        self.unchecked = {self.forward, self.backward} if check else set()

    def describe(self) -> str:
        """What the training programs do: the joint graph's split (saved, kept, recomputed)
        and each program's kernels and fallbacks (once compiled)."""
        out = [f"training programs: gradients for {len(self.sources)} inputs and weights ("
               + ", ".join(f"{'input ' if k == 'input' else ''}{w}" for k, w in self.sources)
               + f"), from {len(self.tangents)} differentiable outputs",
               self.partition.describe()]
        return "\n".join(out + describe_programs(self))

    def run(self, tensors: list):
        (out, saved), sizes = self.run_forward(tensors)
        flat = tensors_in(out)
        weights = {t: fetch(self.partition.backward, t) for t in self.backward_weights}
        edges = [edge_of(tensors[where] if kind == "input" else fetch(self.partition.forward, where))
                 for kind, where in self.sources]
        tangents = self.tangents  # (shape, dtype) of each output's gradient: this call's
        if sizes is not None:
            tangents = list(tangents)
            for i, slot in self.output_slots:
                tangents[slot] = (flat[i].shape, flat[i].dtype)
        node = CompiledFunctionBackward(self, tuple(saved), [tensors[k] for k in self.kept],
                                        weights, edges, tangents, sizes)
        for i, slot in self.output_slots:
            t = flat[i]
            t.requires_grad = True
            t.grad_fn = node
            t.__dict__["_output_nr"] = slot
        return out


def build(call, params, bound, tensors: list, *, owner, leaf_modules, passes,
          check: bool = False, sized=None) -> TrainingProgram:
    """Trace ``call`` in grad mode and build its forward and backward programs; raises
    ``NotDifferentiable`` (or a TraceError) where that cannot be done. ``sized``: (a
    ShapeEnv, the inputs' layouts) where ``bound`` holds the env's symbolic sizes: both
    programs are specialised with them (raises ``Unsized`` where they cannot be)."""
    refuse_backward_hooks(owner)
    t0 = time.perf_counter()
    gm = trace_bound(call, params, bound, root=owner, leaf_modules=leaf_modules, training=True)
    trace_seconds = time.perf_counter() - t0
    joint = GraphModule(gm, gm.graph.copy()[0])
    graph = joint.graph
    placeholders = graph.placeholders

    def requires(n) -> bool:
        if n.op == "placeholder":
            return tensors[placeholders.index(n)].requires_grad
        return n.op == "get_attr" and getattr(fetch(joint, n.target), "requires_grad", False)

    check_writes(graph, requires)
    # what eager autograd records, read off the traced graph before writes are made pure:
    # outputs that require grad, and sources in the graph of some output (those get a
    # gradient, zeros where a write cut every path: ``v.zero_()``, an overwriting copy)
    traced_sources = [n for n in graph.nodes if n.op in ("placeholder", "get_attr")
                      and requires(n)]
    traced_req = requiring_grad(graph, traced_sources)
    eager_outputs = [n in traced_req for n in nodes_in(graph.output_node.args)]
    computed = [n.op == "call_function" for n in nodes_in(graph.output_node.args)]
    in_graph = {n.name for n in _reaching(graph, traced_req)}
    refuse_rebasing_writes(graph, traced_req)
    make_pure(joint)
    _computed_outputs(joint, computed)
    sources = [n for n in graph.nodes if n.op in ("placeholder", "get_attr") and requires(n)
               and n.meta["dtype"].is_floating_point]
    req = requiring_grad(graph, sources)
    refuse_written_grads(graph, requires, req)
    out_value = graph.output_node.args[0]
    flat = nodes_in(out_value)
    if len(flat) != len(eager_outputs):
        raise NotDifferentiable("the pure graph's outputs differ from the traced graph's")
    # (an output eager says requires grad, whose value a write made constant: it gets a
    # tangent its gradient never reads, so it requires grad and its sources get zeros)
    also = {n for n, eager in zip(flat, eager_outputs)
            if eager and n not in req and n.op == "call_function"}
    tangents, grads = differentiate(joint, sources, also)
    end = next((n for n in graph.nodes if is_write(n) and n.meta.get(COPY_BACK)),
               graph.output_node)
    for k, (source, g) in enumerate(zip(sources, grads)):
        if g is None and source.name in in_graph:
            with graph.inserting_before(end):
                grads[k] = trace_into(joint, lambda x: F.zeros_like(x), (source,))
    kept = [(s, g) for s, g in zip(sources, grads) if g is not None]
    if not tangents or not kept:
        raise NothingToDifferentiate()
    graph.output_node.args = ((out_value, tuple(g for _, g in kept)),)
    part = partition(joint, len(kept))
    out_nodes = nodes_in(out_value)
    index = {n: k for k, n in enumerate(tangents)}  # output -> its gradient's slot
    origin = [(("input", placeholders.index(s)) if s.op == "placeholder" else ("weight", s.target))
              for s, _ in kept]
    slots = [(i, index[n]) for i, n in enumerate(out_nodes) if n in index]
    shapes = [(tuple(t.meta["shape"]), t.meta["dtype"]) for t in tangents.values()]
    program = TrainingProgram(owner, gm, part, origin, slots, shapes, passes, trace_seconds,
                              check)
    program.joint = joint
    if sized:
        program.size(*sized)
    return program


def describe_programs(programs) -> list[str]:
    """Lines for the forward and backward programs of ``programs`` (a TrainingProgram or a
    StepProgram): kernels, compile time and fallbacks, once compiled."""
    out = []
    for name, cg in (("forward", programs.forward), ("backward", programs.backward)):
        spec = cg._last
        if spec is None:
            out.append(f"{name} program: not compiled yet (on the first backward)")
            continue
        out.append(f"{name} program: {len(spec.program.kernels)} kernels, "
                   f"{1e3 * spec.compile_seconds:.0f} ms to compile")
        out += [f"  fallback %{f.node.name}: {f.reason}" for f in spec.program.fallbacks]
    return out


def check_once(programs, program, inputs) -> None:
    """``check=True``, on the first run of ``program`` (the forward or backward program of
    ``programs``, while in ``programs.unchecked``): each fused kernel alone, on these inputs'
    copies, against its sub-graph interpreted in float64 (``CheckError`` names the kernel
    and the forward lines whose values or gradients it computes)."""
    if program not in programs.unchecked:
        return
    from ..random import get_rng_state, set_rng_state
    from .check import _KernelChecker, copies_of

    spec = program.specialize(tuple(inputs))
    rng = get_rng_state()
    with no_grad():
        _KernelChecker(spec.gm).run(*copies_of(list(inputs), tensors_only=True))
    set_rng_state(rng)
    programs.unchecked.discard(program)


def refuse_backward_hooks(owner) -> None:
    """Module backward hooks are not called by compiled programs: NotDifferentiable."""
    if owner is None:
        return
    for name, m in owner.named_modules():
        if m.__dict__.get("_backward_hooks") or m.__dict__.get("_backward_pre_hooks"):
            raise NotDifferentiable(f"module {name or type(owner).__name__!r} has backward "
                                    "hooks, which compiled training does not call", "")


def refuse_rebasing_writes(graph, traced_req: set) -> None:
    """A write (with grad) of a value that requires grad into a tensor that does not: eager
    rebases the written tensor's history, which the pure graph does not express."""
    for n in graph.nodes:
        if is_write(n) and not n.meta.get("no_grad") and any(
                a in traced_req for a in n.all_input_nodes[1:]) and \
                view_root(n.args[0]) not in traced_req:
            raise NotDifferentiable(f"%{n.name} ({n.target.name}) writes a value that requires "
                                    f"grad into %{view_root(n.args[0]).name}, which does not: "
                                    "compiled training does not rebase its history",
                                    n.meta.get("location") or "")


def make_pure(joint: GraphModule) -> None:
    """Functionalize, decompose (composites with a gradient rule of their own are kept and
    differentiated by it, as in eager) and remove dead code."""
    functionalize(joint)
    decompose(joint, keep=tuple(op.name for op in OPS if op.grad is not None))
    dce(joint)


def refuse_written_grads(graph, requires, req: set) -> None:
    """A copy-back into a tensor that requires grad, or of a value that does: eager
    autograd would rebase its history."""
    for n in graph.nodes:
        if is_write(n) and n.meta.get(COPY_BACK) and (requires(view_root(n.args[0]))
                                                       or n.args[1] in req):
            raise NotDifferentiable(f"the program writes in place into %{n.args[0].name} "
                                    "a value that requires grad (or into a tensor that does), "
                                    "and eager autograd would rebase its history; compiled "
                                    "training does not", n.meta.get("location") or "")


def _computed_outputs(joint: GraphModule, computed: list) -> None:
    """Outputs eager computes (a tensor of their own, with its own history) that the pure
    graph made an input or a weight (``v.copy_(x); return v`` is ``x``) become copies."""
    graph = joint.graph
    position = iter(range(1 << 62))

    def own(v):
        if isinstance(v, IRNode) and computed[next(position)] and v.op in ("placeholder", "get_attr"):
            with graph.inserting_before(graph.output_node):
                return trace_into(joint, lambda x: x.clone(), (v,))
        return v
    graph.output_node.args = map_arg(graph.output_node.args, own)


def _reaching(graph, req: set) -> set:
    """The nodes of ``req`` from which an output can be reached through nodes of ``req``
    (and through writes into a tensor read later)."""
    live = {n for n in nodes_in(graph.output_node.args) if n in req}
    for n in reversed(list(graph.nodes)):
        if is_write(n) and view_root(n.args[0]) in live:  # what it wrote is read later
            live.add(n)
        if n in live:
            live.update(a for a in n.all_input_nodes if a in req)
    return live


class CompiledFunctionBackward(Node):
    """The autograd node of a compiled call: runs its backward program."""

    def __init__(self, program: TrainingProgram, saved: tuple, kept: list, weights: dict,
                 edges: list, tangents: list, sizes: tuple | None):
        super().__init__(edges)
        self.program = program
        self.tangents = tangents  # (shape, dtype) of each output's gradient
        self.sizes = sizes  # the symbolic sizes' values of the forward call, if any
        self.num_outputs = len(tangents)
        self.saved = saved
        self.kept = [(t, t._storage.version) for t in kept]
        self.weights = {name: (t, t._storage.version) for name, t in weights.items()}

    def apply(self, grads) -> tuple:
        if self.saved is None:
            raise RuntimeError(_FREED)
        if is_grad_enabled():  # create_graph=True: the backward would itself need a backward
            raise RuntimeError(
                "backward(create_graph=True) through a compiled call: its backward program is "
                "not differentiable (higher-order gradients run eagerly: call the model "
                "uncompiled, or compile with mode='eager', for them)")
        for what, (t, version) in [*((f"input {i}", k) for i, k in enumerate(self.kept)),
                                   *((f"weight {n}", w) for n, w in self.weights.items())]:
            if t._storage.version != version:
                raise RuntimeError(
                    f"one of the tensors needed for gradient computation has been modified by an "
                    f"in-place operation: the {what} of {self.name()} ({t.dtype.name}"
                    f"{list(t.shape)}) is at version {t._storage.version}; expected version "
                    f"{version}. Clone it before modifying it, or do the in-place op out of place.")
        if not isinstance(grads, tuple):
            grads = (grads,)
        tangents = []
        for g, (shape, dtype) in zip(grads, self.tangents):
            if g is None:
                g = F.zeros(shape, dtype=dtype)
            elif g.dtype is not dtype:
                g = g.to(dtype)
            tangents.append(g.detach())
        return tuple(self.program.run_backward((*self.saved, *(t for t, _ in self.kept),
                                                *tangents), self.sizes))

    def release(self) -> None:
        self.saved = None
