"""The compile pipeline of a captured graph: passes, fusion, memory plan, lowering, LLVM.

``compile_graph(gm, *example_inputs)`` runs the passes and the fusion planner on a copy
of ``gm`` (``prepare``), plans its memory, lowers it for the example inputs' layouts
(``codegen.program.lower``) and JIT-compiles the program (``codegen.target``). The
returned ``CompiledGraph`` is called like the graph; inputs with another layout (shape,
strides, dtype) compile another specialisation (``codegen.runtime.Specialization``).

    cg = compile_graph(gm, x)
    y = cg(x)
    print(cg.explain())
    print(cg.dump("asm"))
"""

from __future__ import annotations

import sys
import threading
import time

from ..codegen.program import lower
from ..codegen.runtime import Specialization
from ..codegen.target import PREFIX, compile_ir
from ..ir.graph import GraphError
from ..ir.graph_module import GraphModule
from ..ir.node import Node, nodes_in
from ..passes import PassManager, fuse, plan_memory
from ..passes.functionalize import is_functional, protect_copy_backs
from ..ir.aliasing import view_root
from ..passes.shape_prop import refresh_shapes
from ..tensor import Tensor

DUMP_STAGES = ("graph", "kernels", "llvm", "llvm_opt", "asm")


class Unsized(Exception):
    """A graph cannot be compiled with symbolic sizes; the message says why."""


class CompiledGraph:
    """A graph compiled to native code; call it like the graph."""

    def __init__(self, gm: GraphModule, dump: bool = False, passes=None, watch=None):
        self.source = gm
        self.watch = watch  # the module weights are looked up in by name (default: gm)
        self.dump_enabled = dump
        self.passes = passes
        self.specializations: dict[tuple, Specialization] = {}
        self._last: Specialization | None = None

    @staticmethod
    def signature(inputs: tuple) -> tuple:
        return tuple([(t._shape, t._stride, t._storage.dtype, t._storage.device) for t in inputs])

    def __call__(self, *inputs):
        try:
            spec = self.specializations[self.signature(inputs)]
        except (KeyError, AttributeError):
            spec = self.specialize(inputs)
        return spec.run(inputs)

    def specialize(self, inputs: tuple) -> Specialization:
        """Compile (or find) the program for these inputs' layouts."""
        n = len(self.source.graph.placeholders)
        if len(inputs) != n:
            raise TypeError(f"compiled graph takes {n} inputs, got {len(inputs)}")
        for k, t in enumerate(inputs):
            if not isinstance(t, Tensor):
                raise TypeError(f"compiled graph: input {k} must be a graphc.Tensor, got "
                                f"{type(t).__name__}")
            if t._storage.array is None:
                raise ValueError(f"compiled graph: input {k} is a meta tensor (no data)")
        sig = self.signature(inputs)
        if sig not in self.specializations:
            self.specializations[sig] = self._build(inputs)
        return self.specializations[sig]

    def specialize_sized(self, layouts: tuple, shape_env, sizes_given: bool = False
                         ) -> Specialization:
        """Compile one program for inputs laid out as ``layouts`` (tensors, or meta tensors
        whose shapes hold the SymInts of ``shape_env``): it serves every size where the
        guards recorded while compiling hold. Raises ``Unsized`` where every symbol was
        fixed while compiling (a program with fixed sizes does better then).
        ``sizes_given``: each call passes the symbols' values (``run(inputs, values)``)."""
        return self._build(layouts, shape_env, sizes_given)

    def _build(self, layouts: tuple, shape_env=None, sizes_given: bool = False
               ) -> Specialization:
        stages = {}
        gm, history, plan = prepare(self.source, layouts, self.passes, stages)
        t0 = time.perf_counter()
        program = deep_enough(_size(gm), lower, gm, layouts, plan_memory(gm), name="graph",
                              shape_env=shape_env)
        # (it may decide on sizes, as lowering does: before the sizes are checked and frozen)
        copied = aliased_by_passes(self.source.graph, gm.graph)
        t1 = time.perf_counter()
        if shape_env is not None and not shape_env.free():
            raise Unsized("every dynamic size was fixed while compiling: "
                          + "; ".join(shape_env.specialized[:3]))
        stages.update(lower=t1 - t0, llvm=0.0)  # (LLVM runs on the first call)
        dump = self.dump_enabled
        spec = Specialization(gm, self.source, program,
                              lambda: compile_ir(program.ir, program.name, [PREFIX + "main"],
                                                 dump=dump),
                              stages, history, plan, self.watch, copied, sizes_given)
        self._last = spec
        return spec

    @property
    def last(self) -> Specialization:
        if self._last is None:
            raise RuntimeError("the graph has not been compiled yet: call it once first")
        return self._last

    def explain(self) -> str:
        spec = self.last
        c = spec.compiled
        how = "from the disk cache" if c.from_cache else "compiled"
        return (spec.program.explain() +
                f"\n  LLVM: {how} in {1e3 * c.seconds:.1f} ms; whole specialisation "
                f"{1e3 * spec.compile_seconds:.1f} ms")

    def dump(self, stage: str) -> str:
        """The text of one stage: graph, kernels, llvm, llvm_opt or asm."""
        spec = self.last
        if stage == "graph":
            return str(spec.gm.graph)
        if stage == "kernels":
            return spec.program.kernel_ir()
        if stage not in DUMP_STAGES:
            raise ValueError(f"unknown dump stage {stage!r}; expected one of {DUMP_STAGES}")
        if not spec.compiled.ir:
            spec.compiled = compile_ir(spec.program.ir, spec.program.name, [PREFIX + "main"],
                                       dump=True)
        return {"llvm": spec.compiled.ir, "llvm_opt": spec.compiled.optimized_ir,
                "asm": spec.compiled.assembly}[stage]


STACK_FRAMES_PER_NODE = 8  # kernel building recurses over a fused chain, a few frames per op
SHALLOW = 100              # nodes a graph may have before its lowering needs a deeper stack


def deep_enough(nodes: int, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` with room to recurse over a graph of ``nodes`` nodes.

    Scheduling and emission recurse along a fused kernel's chain of ops, and a chain of a
    few hundred elementwise ops (an unrolled loop) would exceed Python's default limit of
    1000 frames. A large graph is lowered on a thread of its own with a stack to match
    (its pages are only touched as deep as the recursion goes) and a recursion limit to
    match; exceptions reach the caller as raised.
    """
    frames = 1000 + STACK_FRAMES_PER_NODE * nodes
    if nodes <= SHALLOW or frames <= sys.getrecursionlimit():
        return fn(*args, **kwargs)
    outcome = {}

    def run():
        try:
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as e:  # noqa: B036  (re-raised in the caller's thread)
            outcome["error"] = e

    with _lock:
        limit, size = sys.getrecursionlimit(), threading.stack_size()
        sys.setrecursionlimit(frames)
        threading.stack_size(min(frames * 4096, 1 << 30))  # ~4 KiB of C stack per frame
        try:
            worker = threading.Thread(target=run, name="graphc-lower")
            worker.start()
        finally:
            threading.stack_size(size)
        worker.join()
        sys.setrecursionlimit(limit)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


_lock = threading.Lock()


def _size(gm: GraphModule) -> int:
    """Nodes of the graph and of its fused kernels' sub-graphs."""
    return sum(1 + (len(gm.graph.module_at(n.target).graph) if n.op == "call_module" else 0)
               for n in gm.graph.nodes)


def prepare(gm: GraphModule, inputs: tuple, passes=None, stages: dict | None = None):
    """A copy of ``gm`` with shapes for ``inputs``, optimised and fused; with the pass
    history and the fusion plan. ``stages`` receives the seconds of passes and fusion."""
    t0 = time.perf_counter()
    gm = GraphModule(gm, gm.graph.copy()[0])  # weights shared with the source, not copied
    for p, t in zip(gm.graph.placeholders, inputs):
        p.meta.update(shape=tuple(t._shape), dtype=t.dtype, stride=tuple(t._stride))
    refresh_shapes(gm)
    history = (passes or PassManager.default()).run(gm)
    if not is_functional(gm.graph):  # fusion and kernels assume pure dataflow
        raise GraphError("the graph still writes in place after the passes; a custom pass "
                         "list must start with graphc.passes.functionalize")
    protect_copy_backs(gm)
    t1 = time.perf_counter()
    plan = fuse(gm)
    if stages is not None:
        stages.update(passes=t1 - t0, fuse=time.perf_counter() - t1)
    return gm, history, plan


def compile_graph(gm: GraphModule, *example_inputs, dump: bool = False,
                  passes=None, watch=None) -> CompiledGraph:
    """Compile ``gm`` for native execution; with example inputs, compile now. ``watch`` is
    the module whose attributes the weights are read from by name (default ``gm``): a
    weight replaced there is noticed on the next call.

        cg = compile_graph(gm, x)
        y = cg(x)
    """
    cg = CompiledGraph(gm, dump=dump, passes=passes, watch=watch)
    if example_inputs:
        cg.specialize(example_inputs)
    return cg


def aliased_by_passes(source, compiled) -> frozenset[int]:
    """Output positions whose value the passes made share memory where eager's does not:
    a computation simplified to an input or weight (``clone(x)`` to ``x``), or two outputs
    merged into one (CSE of ``x.exp(), x.exp()``). These are returned as copies."""
    def leaves(graph):
        return [view_root(n) if isinstance(n, Node) else None
                for n in nodes_in(graph.output_node.args)]
    before, after = leaves(source), leaves(compiled)
    if len(before) != len(after):
        return frozenset()
    copied = set()
    for j, (s, c) in enumerate(zip(before, after)):
        if c is None:
            continue
        if c.op in ("placeholder", "get_attr") and s.op not in ("placeholder", "get_attr"):
            copied.add(j)
        elif any(after[i] is c and before[i] is not s and i not in copied for i in range(j)):
            copied.add(j)
    return frozenset(copied)
