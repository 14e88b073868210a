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

from typing import TYPE_CHECKING

import os
from dataclasses import dataclass, field

from ..ir.fused import FusedKernel
from ..ir.graph_module import GraphModule, fetch
from ..ir.node import Node, nodes_in
from ..ops.registry import Flag
from ..layout import surely_same_shape
from ..ir.aliasing import COPY_BACK, aliases_input, read_in_place, view_root
from ..tensor import Tensor
from .kernel_ir import Apply, Kernel, Ref, contiguous, numel, walk_expressions
from .llvm_emit import ProgramEmitter
from .schedule import schedule
from .schedule_copy import (schedule_copy_back, schedule_gather, schedule_indexed,
                            schedule_reshape_copy, schedule_scatter)
from .subgraph import Scratch, Unsupported, meta_view
from .target import module_target

if TYPE_CHECKING:  # the plan is the passes' (graphc.passes.memory); lowering only reads it
    from ..passes.memory import MemoryPlan

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
    detail: str = ""  # what failed, where the op knows it when compiled


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
    profiled: list | None = None  # GRAPHC_PROFILE: the step of each timed native call

    def profile(self, counts) -> list[tuple[str, str, int, float]]:
        """(name, kind, calls, seconds) per step, from ``counts`` (the int64 array the
        program adds its steps' nanoseconds and calls to; see ``llvm_emit._Clock``)."""
        rows: dict[int, list] = {}
        for k, step in enumerate(self.profiled or ()):
            kind, what = self.steps[step]
            row = rows.setdefault(step, [what.name if kind == "kernel" else
                                         what.kernel_name or what.node.name,
                                         what.kind if kind == "kernel" else "numpy", 0, 0.0])
            row[2] = max(row[2], int(counts[2 * k + 1]))
            row[3] += counts[2 * k] * 1e-9
        return [tuple(r) for r in rows.values()]

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


def lower(gm: GraphModule, inputs: tuple, plan: MemoryPlan, name: str = "graph",
          shape_env=None) -> Program:
    """The program for ``gm`` (already fused, its intermediates placed by ``plan``) on
    inputs with these layouts (shapes may be symbolic: then ``shape_env`` holds their
    symbols)."""
    return _Lowering(gm, inputs, plan, name, shape_env).program()


class _Lowering:
    """One program being lowered: its slots, where each value lives (``refs``, and
    ``dest`` for values not computed yet), and its steps in order."""

    def __init__(self, gm: GraphModule, inputs: tuple, plan: MemoryPlan, name: str, shape_env):
        from .blas import find as find_blas

        self.gm, self.graph, self.name, self.shape_env = gm, gm.graph, name, shape_env
        self.slots: list[Slot] = []
        self.refs: dict[Node, Ref] = {}
        self.dest: dict[Node, Ref] = {}
        if shape_env is not None:  # a derived symbol made from here on would have no slot
            shape_env.deriving = False
        size_slots = {symbol: self.new_slot(Slot("size", index=k))
                      for k, symbol in enumerate(shape_env.hints if shape_env is not None else ())}
        self._place_arguments(inputs)
        self.out_nodes = [n for n in nodes_in(self.graph.output_node.args) if isinstance(n, Node)]
        self._place_outputs()
        self._place_intermediates(plan)
        # a copy-back of an elementwise kernel's result: the kernel stores into the argument
        self.written_by_kernel = _written_by_kernels(gm, self.refs, self.out_nodes)
        for value, back in self.written_by_kernel.items():
            self.dest[value] = self.refs[back.args[0]]
        triple, layout = module_target()
        self.threads = thread_count()
        self.blas = find_blas()
        self.profiled = [] if os.environ.get("GRAPHC_PROFILE", "0") != "0" else None
        profile_slot = self.new_slot(Slot("profile")) if self.profiled is not None else None
        # one thread budget: where BLAS's thread count can be set, a program with fixed
        # sizes runs BLAS on one thread and splits its gemms over its own threads (BLAS's
        # threads, spinning after each call, slowed the program's parallel loops)
        self.gemm_threads = self.threads if self.blas is not None and \
            self.blas.set_threads is not None and shape_env is None else 0
        self.emitter = ProgramEmitter(name, triple, layout, self.threads, PARALLEL_THRESHOLD,
                                      self.blas, size_slots, profile_slot,
                                      bool(self.gemm_threads))
        self.callback_slot: int | None = None
        self.steps: list = []
        self.kernels: list = []
        self.fallbacks: list[Fallback] = []
        self.sites: list[Site] = []
        self.site_ids: dict[int, int] = {}
        self.env_nodes: set[Node] = set()

    def new_slot(self, slot: Slot) -> int:
        self.slots.append(slot)
        return len(self.slots) - 1

    def _tensor_slot(self, slot: Slot, t: Tensor) -> Ref:
        return Ref(self.new_slot(slot), 0, t._shape, t._stride, t.dtype)

    def _buffer(self, slot: Slot, n: Node) -> Ref:
        return contiguous(self.new_slot(slot), tuple(n.meta["shape"]), n.meta["dtype"])

    # ---- where values live ----------------------------------------------------------------
    def _place_arguments(self, inputs: tuple) -> None:
        for k, (p, t) in enumerate(zip(self.graph.placeholders, inputs)):
            self.refs[p] = self._tensor_slot(Slot("input", index=k), t)
        for n in self.graph.nodes:
            if n.op == "get_attr":
                value = fetch(self.gm, n.target)
                if isinstance(value, Tensor):
                    self.refs[n] = self._tensor_slot(Slot("param", target=n.target), value)

    def _place_outputs(self) -> None:
        """Outputs get fresh buffers (one per memory they view)."""
        out_roots = []
        for n in self.out_nodes:
            r = view_root(n)
            if r not in self.refs and r not in out_roots and r.op != "output":
                out_roots.append(r)
        for k, r in enumerate(out_roots):
            if _is_tensor_node(r):
                self.dest[r] = self._buffer(Slot("output", _nbytes(r), index=k), r)

    def _place_intermediates(self, plan: MemoryPlan) -> None:
        buffer_slots = [self.new_slot(Slot("buffer", size)) for size in plan.buffer_sizes]
        by_name = {n.name: n for n in self.graph.nodes}
        for value, buf in plan.assignment.items():
            n = by_name[value]
            if n not in self.dest and _is_tensor_node(n):
                self.dest[n] = contiguous(buffer_slots[buf], tuple(n.meta["shape"]),
                                          n.meta["dtype"])

    def destination(self, n: Node) -> Ref:
        if n not in self.dest:  # a value the plan left out: a buffer of its own
            self.dest[n] = self._buffer(Slot("buffer", _nbytes(n)), n)
        return self.dest[n]

    # ---- steps ----------------------------------------------------------------------------
    def fallback(self, n: Node, reason: str, kernel_name: str = "") -> None:
        if self.callback_slot is None:
            self.callback_slot = self.new_slot(Slot("callback"))
        fb = Fallback(n, reason, kernel_name)
        self.fallbacks.append(fb)
        self.steps.append(("fallback", fb))
        self.emitter.add_callback(len(self.steps) - 1, self.callback_slot)
        if self.profiled is not None:
            self.profiled.append(len(self.steps) - 1)
        if _is_tensor_node(n) and not (n.op == "call_function" and Flag.MUTATES in n.target.flags):
            self.refs[n] = self.destination(n)
        else:  # a Python value, or a write (its result is the tensor it wrote)
            self.env_nodes.add(n)
            for u in n.users:  # a tuple's elements: each getitem gets a buffer
                if u.op == "call_method" and u.target == "__getitem__" and _is_tensor_node(u):
                    self.refs[u] = self.destination(u)

    def add_kernel(self, n: Node, kernel: Kernel) -> None:
        stages = self.emitter.add_kernel(kernel, self.site_ids)
        self.kernels.append((n.name, kernel))
        self.steps.append(("kernel", kernel))
        if self.profiled is not None:
            self.profiled.extend([len(self.steps) - 1] * len(stages))

    def program(self) -> Program:
        for n in self.graph.nodes:
            self._lower_node(n)
        if self.profiled is not None:
            self.slots[self.emitter.profile_slot].nbytes = 16 * len(self.profiled)
        return Program(self.name, self.emitter.finish(), self.slots, self.refs, self.kernels,
                       self.steps, self.fallbacks, self.sites, self.graph.output_node.args[0],
                       self.env_nodes, self.threads, self.shape_env, self.profiled)

    def _lower_node(self, n: Node) -> None:
        refs = self.refs
        if n.op in ("placeholder", "output") or n in refs:
            return
        if n.op == "get_attr":
            self.env_nodes.add(n)  # a non-tensor attribute: Python's business
            return
        if n.op == "call_method" and n.target == "__getitem__" and n.args[0] not in self.env_nodes:
            return  # an output of a fused kernel: placed with its kernel
        if n.op == "call_function" and Flag.VIEW in n.target.flags and n.args[0] in refs:
            self._view(n)
            return
        module = self.graph.module_at(n.target) if n.op == "call_module" else None
        if isinstance(module, FusedKernel) and all(a in refs for a in n.args):
            self._fused_kernel(n, module)
            return
        if n in self.written_by_kernel.values() or n.meta.get(COPY_BACK) and n.args[1] is n.args[0]:
            refs[n] = refs[n.args[0]]  # its kernel stored the value there, or x.copy_(x)
            return
        self._move_or_fall_back(n, module)

    def _move_or_fall_back(self, n: Node, module) -> None:
        """A copy kernel for a node that only moves data, else a fallback."""
        try:
            moved = self._data_movement(n)
        except Unsupported as e:
            self.fallback(n, str(e))
            return
        if moved is None:
            self.fallback(n, _reason(n, module))
            return
        kernel, self.refs[n] = moved
        self.add_kernel(n, kernel)

    def _view(self, n: Node) -> None:
        """A view of a value the program holds: a Ref of the same memory, else (a reshape
        no strides express) a contiguous copy, as eager makes."""
        try:
            self.refs[n] = meta_view(self.refs[n.args[0]], n)
        except Unsupported as e:
            if n.target.name != "reshape":
                self.fallback(n, str(e))
                return
            self.add_kernel(n, schedule_reshape_copy(n, self.refs[n.args[0]], self.destination(n)))
            self.refs[n] = self.dest[n]

    def _fused_kernel(self, n: Node, module: FusedKernel) -> None:
        outs = _kernel_outputs(n)
        out_refs = [self.destination(o) if o is not None else
                    self._buffer(Slot("buffer", _nbytes(sub)), sub)
                    for o, sub in zip(outs, _sub_outputs(module))]
        scratch = Scratch(len(self.slots))
        try:
            kernel = schedule(module, [self.refs[a] for a in n.args], out_refs, scratch,
                              self.blas is not None, self.gemm_threads)
        except Unsupported as e:
            self.fallback(n, str(e), module.name)
            return
        for slot, nbytes, per_thread in scratch.buffers:
            assert slot == len(self.slots)
            self.new_slot(Slot("scratch", nbytes * (self.threads if per_thread else 1),
                               per_thread=per_thread))
        for o, ref in zip(outs, out_refs):
            if o is not None:
                self.refs[o] = ref
        _number_sites(kernel, module, self.site_ids, self.sites)
        self.add_kernel(n, kernel)

    def _data_movement(self, n: Node) -> tuple | None:
        """The copy kernel of a node that only moves data (a copy-back into an input or
        weight, view_scatter, pad, unfold) and where its result lives; None for others."""
        refs = self.refs
        if n.op != "call_function":
            return None
        gather = n.target.gather
        tensors = n.args[:1] if gather else n.args  # (the rest: attributes)
        if not all(isinstance(a, Node) and a in refs for a in tensors):
            return None  # a number to scatter, or an input the program does not hold: numpy
        if n.meta.get(COPY_BACK):
            dst = refs[n.args[0]]
            return schedule_copy_back(n, refs[n.args[1]], dst), dst
        if n.target.name == "view_scatter":
            out = self.destination(n)
            return schedule_scatter(n, refs[n.args[0]], refs[n.args[1]], out), out
        if n.target.name in ("gather", "index_select"):
            src = refs[n.args[0]]
            d = n.kwargs["dim"] % max(len(src.shape), 1)
            self.sites.append(Site(n.target.name, n.name, n.meta.get("location"),
                                   f"dim {d} with size {src.shape[d] if src.shape else 1}"))
            out = self.destination(n)
            return schedule_indexed(n, src, refs[n.args[1]], out, len(self.sites)), out
        if gather:
            out = self.destination(n)
            return schedule_gather(n, refs[n.args[0]], out), out
        return None


def _written_by_kernels(gm: GraphModule, refs: dict, out_nodes: list) -> dict[Node, Node]:
    """Copy-backs whose value an elementwise kernel can store straight into the argument
    (value -> copy-back), see ``_stores_into_argument``."""
    graph = gm.graph
    order = {n: i for i, n in enumerate(graph.nodes)}
    readers: dict[Node, list[Node]] = {}  # root -> the nodes reading it (through views too)
    for m in graph.nodes:
        if m.op != "output" and not aliases_input(m):
            for root in {view_root(a) for a in m.all_input_nodes}:
                readers.setdefault(root, []).append(m)
    by_call: dict[Node, dict[int, Node]] = {}  # kernel call -> its output number -> copy-back
    for back in graph.nodes:
        if back.op == "call_function" and back.meta.get(COPY_BACK):
            call, number = _kernel_output(back.args[1])
            if call is not None:
                by_call.setdefault(call, {})[number] = back
    written = {}
    for call, backs in by_call.items():
        backs = {k: b for k, b in backs.items()
                 if _stores_into_argument(b, call, k, graph, order, readers, refs, out_nodes)}
        if len({b.args[0] for b in backs.values()}) == len(backs) and \
                _stores_before_fresh_reads(graph.module_at(call.target), call, backs):
            written.update({b.args[1]: b for b in backs.values()})
    return written


def _kernel_output(value: Node) -> tuple[Node | None, int | None]:
    """(the fused kernel call, output number; None for a kernel of one output) of a value."""
    if value.op == "call_method" and value.target == "__getitem__":
        value, number = value.args[0], value.args[1]
    else:
        number = None
    module = value.graph.module_at(value.target) if value.op == "call_module" else None
    if not (isinstance(module, FusedKernel) and module.kind == "elementwise"):
        return None, None
    if (number is None) != (len(_sub_outputs(module)) == 1):
        return None, None
    return value, number


def _stores_into_argument(back: Node, call: Node, number: int | None, graph, order: dict,
                          readers: dict, refs: dict, out_nodes: list) -> bool:
    """The value is an output of an elementwise kernel read by nothing but the copy-back,
    of the argument's shape and dtype; the kernel reads the argument only at the element
    it writes; and nothing after the kernel reads the argument's old value."""
    dst, value = back.args
    module = graph.module_at(call.target)
    if dst not in refs or set(value.users) != {back} or value in out_nodes or \
            not _same_type(value, dst):
        return False
    if any(order[m] > order[call] for m in readers.get(dst, ()) if m is not back):
        return False
    return all(a is dst and read_in_place(module, i, number) for i, a in enumerate(call.args)
               if isinstance(a, Node) and view_root(a) is dst)


def _stores_before_fresh_reads(module: FusedKernel, call: Node, backs: dict) -> bool:
    """A kernel computes its outputs' values in order and stores them together, except
    that a value reading an input an earlier output was stored over makes the earlier
    stores happen first (``FunctionEmitter.emit_body``). An output stored over an argument
    must therefore come after every output whose value reads that argument for the first
    time. ``backs``: output number (None: the only one) -> copy-back."""
    if not backs or None in backs:  # (None: a kernel of one output, stored last)
        return True
    outs = _sub_outputs(module)
    placeholders = module.graph.placeholders
    over = {placeholders[i] for i, a in enumerate(call.args)
            if any(a is b.args[0] for b in backs.values())}
    written: set = set()  # placeholders an earlier output was stored over
    computed: set = set()
    for k, out in enumerate(outs):
        fresh = _ancestors(out, computed)
        if any(p in written for n in fresh for p in ([n] if n.op == "placeholder" else
                                                     n.all_input_nodes)):
            return False
        computed |= fresh
        if k in backs:
            written |= {placeholders[i] for i, a in enumerate(call.args)
                        if a is backs[k].args[0]} & over
    return True


def _ancestors(n: Node, known: set) -> set:
    """``n`` and the nodes it is computed from, without those in ``known``."""
    seen, todo = set(), [n]
    while todo:
        m = todo.pop()
        if m in seen or m in known:
            continue
        seen.add(m)
        todo.extend(m.all_input_nodes)
    return seen


def _same_type(a: Node, b: Node) -> bool:
    """(a choice for speed, made without a guard where sizes are symbolic)"""
    return surely_same_shape(tuple(a.meta["shape"]), tuple(b.meta["shape"])) and \
        a.meta["dtype"] is b.meta["dtype"]


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
    nodes = {n.name: n for n in fk.graph.nodes}
    for e in walk_expressions(kernel):
        if isinstance(e, Apply) and id(e) not in site_ids and e.op.error_site:
            node = nodes.get(e.name)
            sites.append(Site(e.op.name, e.name, node.meta.get("location") if node else None))
            site_ids[id(e)] = len(sites)  # 0 means "no site"

