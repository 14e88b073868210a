"""Lowering a fused graph to a program: pointer-table slots, kernels, fallbacks, ``main``.

The program is specialised to one input signature (shapes, strides, dtypes), so every
layout is a constant in the generated code. Slots of the pointer table:

    input k     the k-th input's first element (set on every call)
    param       a weight or folded constant (set on every call, checked unchanged)
    output      a fresh buffer per call for each output
    buffer      an intermediate (the memory plan's buffers, allocated once)
    scratch     per-kernel scratch (per-thread rows, accumulators)
    callback    the fallback dispatcher: ``i32 callback(i64 step)``
    size        a symbolic size's value for this call (an integer, not an address)

With symbolic sizes (``env``, see ``graphc.symbolic``) shapes, strides, extents and
buffer sizes are polynomials of the size symbols; the code reads the symbols' values
from their ``size`` slots, and the runtime sizes the buffers per call.

A fused kernel that cannot be scheduled, and every node that is not a fused kernel or a
view, runs through eager graphc (its numpy kernel) from inside ``main``; each such
fallback is listed with its reason.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..ir.fused import FusedKernel
from ..ir.graph_module import GraphModule, fetch
from ..ir.node import Node, nodes_in
from ..ops.registry import Flag
from ..layout import same_shape
from ..passes.functionalize import COPY_BACK, aliases_input
from ..passes.memory import plan_memory, read_in_place, view_root
from ..tensor import Tensor
from .kernel_ir import Apply, Kernel, Ref, contiguous, numel
from .llvm_emit import ProgramEmitter
from .schedule import (GATHER_OPS, Scratch, Unsupported, _meta_view, schedule, schedule_copy_back,
                       schedule_gather, schedule_reshape_copy, schedule_scatter)
from .target import module_target

PARALLEL_THRESHOLD = 1 << 16  # element operations a stage needs before it uses threads


def thread_count() -> int:
    """``GRAPHC_NUM_THREADS``, else the cores this process may run on."""
    value = os.environ.get("GRAPHC_NUM_THREADS")
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            raise ValueError(f"GRAPHC_NUM_THREADS must be a positive integer, got {value!r}") from None
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@dataclass
class Slot:
    kind: str           # input, param, output, buffer, scratch, callback, size
    nbytes: object = 0  # an int, or a SymInt
    index: int = 0      # input number / output number
    target: str = ""    # a param's attribute path
    per_thread: bool = False


@dataclass
class Fallback:
    node: Node
    reason: str
    kernel_name: str = ""


@dataclass
class Site:
    """An op in a native kernel that can fail at run time (integer division by zero...)."""

    op: str
    node: str
    location: str | None


@dataclass
class Program:
    name: str
    ir: str
    slots: list[Slot]
    refs: dict           # Node -> Ref (where each value lives)
    kernels: list        # (node name, Kernel)
    steps: list          # ("kernel", Kernel) or ("fallback", Fallback), in order
    fallbacks: list[Fallback]
    sites: list[Site]
    outputs: object      # the graph's output structure (Nodes inside)
    env_nodes: set = field(default_factory=set)  # values that live in Python (not tensors)
    threads: int = 1
    shape_env: object = None  # the ShapeEnv of a program with symbolic sizes

    def explain(self) -> str:
        lines = [f"program {self.name}: {len(self.kernels)} native kernels, "
                 f"{len(self.fallbacks)} fallbacks, {self.threads} threads"]
        for kind, what in self.steps:
            if kind == "kernel":
                lines.append(f"  native   {what.name:<22} {what.kind}")
            else:
                name = what.kernel_name or what.node.name
                lines.append(f"  fallback {name:<22} numpy: {what.reason}")
        return "\n".join(lines)

    def kernel_ir(self) -> str:
        return "\n\n".join(k.format() for _, k in self.kernels)


def _is_tensor_node(n: Node) -> bool:
    return "shape" in n.meta and "dtype" in n.meta


def lower(gm: GraphModule, inputs: tuple, name: str = "graph", shape_env=None) -> Program:
    """The program for ``gm`` (already fused) on inputs with these layouts (shapes may be
    symbolic: then ``shape_env`` holds their symbols)."""
    from .blas import find as find_blas

    graph = gm.graph
    slots: list[Slot] = []
    refs: dict[Node, Ref] = {}

    def new_slot(slot: Slot) -> int:
        slots.append(slot)
        return len(slots) - 1

    def tensor_ref(slot: int, t: Tensor) -> Ref:
        return Ref(slot, 0, t._shape, t._stride, t.dtype)

    size_slots = {}
    for k, symbol in enumerate(shape_env.hints if shape_env is not None else ()):
        size_slots[symbol] = new_slot(Slot("size", index=k))
    for k, (p, t) in enumerate(zip(graph.placeholders, inputs)):
        refs[p] = tensor_ref(new_slot(Slot("input", index=k)), t)
    for n in graph.nodes:
        if n.op == "get_attr":
            value = fetch(gm, n.target)
            if isinstance(value, Tensor):
                refs[n] = tensor_ref(new_slot(Slot("param", target=n.target)), value)

    # where each computed value lives: outputs get fresh buffers, the rest the plan's
    out_nodes = [n for n in nodes_in(graph.output_node.args) if isinstance(n, Node)]
    out_roots = []
    for n in out_nodes:
        r = view_root(n)
        if r not in refs and r not in out_roots and r.op != "output":
            out_roots.append(r)
    dest: dict[Node, Ref] = {}
    for k, r in enumerate(out_roots):
        if _is_tensor_node(r):
            dest[r] = contiguous(new_slot(Slot("output", _nbytes(r), index=k)),
                                 tuple(r.meta["shape"]), r.meta["dtype"])
    plan = plan_memory(gm)
    buffer_slots = [new_slot(Slot("buffer", size)) for size in plan.buffer_sizes]
    by_name = {n.name: n for n in graph.nodes}
    for value, buf in plan.assignment.items():
        n = by_name[value]
        if n not in dest and _is_tensor_node(n):
            dest[n] = contiguous(buffer_slots[buf], tuple(n.meta["shape"]), n.meta["dtype"])

    # a copy-back of an elementwise kernel's result: the kernel stores into the argument
    written_by_kernel = _written_by_kernels(gm, refs, out_nodes)
    for value, back in written_by_kernel.items():
        dest[value] = refs[back.args[0]]

    def destination(n: Node) -> Ref:
        if n not in dest:  # a value the plan left out: a buffer of its own
            dest[n] = contiguous(new_slot(Slot("buffer", _nbytes(n))), tuple(n.meta["shape"]),
                                 n.meta["dtype"])
        return dest[n]

    triple, layout = module_target()
    threads = thread_count()
    blas = find_blas()
    emitter = ProgramEmitter(name, triple, layout, threads, PARALLEL_THRESHOLD, blas, size_slots)
    callback_slot = None
    steps, kernels, fallbacks, sites = [], [], [], []
    env_nodes: set[Node] = set()
    site_ids: dict[int, int] = {}

    def fallback(n: Node, reason: str, kernel_name: str = "") -> None:
        nonlocal callback_slot
        if callback_slot is None:
            callback_slot = new_slot(Slot("callback"))
        fb = Fallback(n, reason, kernel_name)
        fallbacks.append(fb)
        steps.append(("fallback", fb))
        emitter.add_callback(len(steps) - 1, callback_slot)
        if _is_tensor_node(n) and not (n.op == "call_function" and Flag.MUTATES in n.target.flags):
            refs[n] = destination(n)
        else:  # a Python value, or a write (its result is the tensor it wrote)
            env_nodes.add(n)
            for u in n.users:  # a tuple's elements: each getitem gets a buffer
                if u.op == "call_method" and u.target == "__getitem__" and _is_tensor_node(u):
                    refs[u] = destination(u)

    def add_kernel(n: Node, kernel: Kernel) -> None:
        emitter.add_kernel(kernel, site_ids)
        kernels.append((n.name, kernel))
        steps.append(("kernel", kernel))

    for n in graph.nodes:
        if n.op in ("placeholder", "output") or n in refs:
            continue
        if n.op == "get_attr":
            env_nodes.add(n)  # a non-tensor attribute: Python's business
            continue
        if n.op == "call_method" and n.target == "__getitem__" and n.args[0] not in env_nodes:
            continue  # an output of a fused kernel: placed with its kernel
        if n.op == "call_function" and Flag.VIEW in n.target.flags and n.args[0] in refs:
            try:
                refs[n] = _meta_view(refs[n.args[0]], n)
            except Unsupported as e:
                if n.target.name != "reshape":
                    fallback(n, str(e))
                    continue
                add_kernel(n, schedule_reshape_copy(n, refs[n.args[0]], destination(n)))
                refs[n] = dest[n]  # no view of this layout: a contiguous copy, as eager
            continue
        module = gm.graph.module_at(n.target) if n.op == "call_module" else None
        if isinstance(module, FusedKernel) and all(a in refs for a in n.args):
            outs = _kernel_outputs(n)
            out_refs = [destination(o) if o is not None else
                        contiguous(new_slot(Slot("buffer", _nbytes(sub))), tuple(sub.meta["shape"]),
                                   sub.meta["dtype"])
                        for o, sub in zip(outs, _sub_outputs(module))]
            first = len(slots)
            scratch = Scratch(first)
            try:
                kernel = schedule(module, [refs[a] for a in n.args], out_refs, scratch,
                                  blas is not None)
            except Unsupported as e:
                fallback(n, str(e), module.name)
                continue
            for slot, nbytes, per_thread in scratch.buffers:
                assert slot == len(slots)
                new_slot(Slot("scratch", nbytes * (threads if per_thread else 1),
                              per_thread=per_thread))
            for o, ref in zip(outs, out_refs):
                if o is not None:
                    refs[o] = ref
            _number_sites(kernel, module, site_ids, sites)
            emitter.add_kernel(kernel, site_ids)
            kernels.append((n.name, kernel))
            steps.append(("kernel", kernel))
            continue
        if n in written_by_kernel.values() or n.meta.get(COPY_BACK) and n.args[1] is n.args[0]:
            refs[n] = refs[n.args[0]]  # its kernel stored the value there, or x.copy_(x)
            continue
        try:
            moved = _data_movement(n, refs, destination)
        except Unsupported as e:
            fallback(n, str(e))
            continue
        if moved is not None:
            kernel, refs[n] = moved
            add_kernel(n, kernel)
            continue
        fallback(n, _reason(n, module))
    text = emitter.finish()
    return Program(name, text, slots, refs, kernels, steps, fallbacks, sites,
                   graph.output_node.args[0], env_nodes, threads, shape_env)


def _written_by_kernels(gm: GraphModule, refs: dict, out_nodes: list) -> dict[Node, Node]:
    """Copy-backs whose value an elementwise kernel can store straight into the argument
    (value -> copy-back): the value is that kernel's only output (with more, another
    output's loads of the argument may come after this one's store), read by nothing but
    the copy-back; the kernel reads the argument only at the element it writes; and nothing
    after the kernel reads the argument's old value."""
    graph = gm.graph
    order = {n: i for i, n in enumerate(graph.nodes)}
    found = {}
    for back in graph.nodes:
        if not (back.op == "call_function" and back.meta.get(COPY_BACK)):
            continue
        dst, value = back.args
        module = graph.module_at(value.target) if value.op == "call_module" else None
        if not (isinstance(module, FusedKernel) and module.kind == "elementwise"
                and dst in refs and set(value.users) == {back} and value not in out_nodes
                and same_shape(tuple(value.meta["shape"]), tuple(dst.meta["shape"]))
                and value.meta["dtype"] is dst.meta["dtype"]):
            continue
        readers = [m for m in graph.nodes if m is not back and m.op != "output"
                   and not aliases_input(m)
                   and any(view_root(a) is dst for a in m.all_input_nodes)]
        if any(order[m] > order[value] for m in readers):
            continue
        if all(a is dst and read_in_place(module, i) for i, a in enumerate(value.args)
               if isinstance(a, Node) and view_root(a) is dst):
            found[value] = back
    return found


def _data_movement(n: Node, refs: dict, destination) -> tuple | None:
    """The copy kernel of a node that only moves data (a copy-back into an input or weight,
    view_scatter, pad, unfold) and where its result lives; None for other nodes."""
    if n.op != "call_function":
        return None
    tensors = n.args[:1] if n.target.name in GATHER_OPS else n.args  # (the rest: attributes)
    if not all(isinstance(a, Node) and a in refs for a in tensors):
        return None  # a number to scatter, or an input the program does not hold: numpy
    if n.meta.get(COPY_BACK):
        dst = refs[n.args[0]]
        return schedule_copy_back(n, refs[n.args[1]], dst), dst
    if n.target.name == "view_scatter":
        out = destination(n)
        return schedule_scatter(n, refs[n.args[0]], refs[n.args[1]], out), out
    if n.target.name in GATHER_OPS:
        out = destination(n)
        return schedule_gather(n, refs[n.args[0]], out), out
    return None


def _reason(n: Node, module) -> str:
    if n.op == "call_function":
        return f"{n.target.name} has no LLVM lowering"
    if n.op == "call_module":
        return f"module {type(module).__name__} is not compiled"
    return f"{n.op} {n.target}"


def _sub_outputs(fk: FusedKernel) -> list[Node]:
    out = fk.graph.output_node.args[0]
    return list(out) if isinstance(out, tuple) else [out]


def _kernel_outputs(call: Node) -> list[Node | None]:
    """The main-graph nodes holding a fused call's outputs (None for an unused one)."""
    module = call.graph.module_at(call.target)
    n_out = len(_sub_outputs(module))
    if n_out == 1:
        return [call]
    outs: list[Node | None] = [None] * n_out
    for u in call.users:
        if u.op == "call_method" and u.target == "__getitem__":
            outs[u.args[1]] = u
    return outs


def _nbytes(n: Node) -> int:
    return max(numel(n.meta["shape"]), 1) * n.meta["dtype"].itemsize


def _number_sites(kernel: Kernel, fk: FusedKernel, site_ids: dict, sites: list) -> None:
    """Give every Apply that can raise a site number (its error code names it)."""
    from .kernel_ir import walk_expressions

    nodes = {n.name: n for n in fk.graph.nodes}
    for e in walk_expressions(kernel):
        if isinstance(e, Apply) and id(e) not in site_ids and e.op.name in ("div", "remainder",
                                                                            "pow"):
            node = nodes.get(e.name)
            sites.append(Site(e.op.name, e.name, node.meta.get("location") if node else None))
            site_ids[id(e)] = len(sites)  # 0 means "no site"

