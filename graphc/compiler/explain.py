"""``graphc.explain(fn, *args)``: what compiling ``fn`` for these arguments does.

    e = graphc.explain(model, x)
    print(e)                 # target, graphs, guards, fusion decisions, kernels, fallbacks, timings
    e.kernels[0]["flops"]    # the same as data; e.as_dict() for all of it

Kernel costs are estimates from the graph: bytes are the kernel's inputs and outputs
read and written once; FLOPs count one per element per scalar op (a reduction's over
its input), and 2·M·N·K per matmul.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from ..autograd import no_grad
from ..codegen.target import current
from ..ir.fused import FusedKernel
from ..ir.graph_module import fetch
from ..ir.node import Node, nodes_in
from ..ops.registry import Flag
from ..passes.fusion import nbytes
from ..symbolic import SymInt, describing
from ..tensor import tensors_in


@dataclass
class Explanation:
    name: str
    compiled: bool                      # False: the call ran eagerly (see eager_runs)
    graphs: dict = field(default_factory=dict)       # traced, optimized (fused) graph text
    guards: list = field(default_factory=list)       # str of each guard
    passes: list = field(default_factory=list)       # {name, ms, nodes_before, nodes_after}
    fusion: list = field(default_factory=list)       # each producer -> consumer decision
    kernels: list = field(default_factory=list)      # {name, kind, node, ops, bytes, flops}
    fallbacks: list = field(default_factory=list)    # {node, reason, location}
    eager_runs: list = field(default_factory=list)   # str of each
    recompiles: list = field(default_factory=list)   # Recompile.as_dict() of each
    layout_copies: int = 0              # calls whose strided inputs were copied to contiguous
    stages_ms: dict = field(default_factory=dict)    # trace, passes, fuse, lower, llvm
    sizes: dict = field(default_factory=dict)        # symbolic sizes: their values here
    writes: list = field(default_factory=list)       # str of each input or weight written
    llvm_from_cache: bool = False
    target: str = ""                    # the CPU, features and vector width compiled for
    training: list = field(default_factory=list)     # each training program's description

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        out = [f"explain {self.name}: " + ("compiled" if self.compiled else "runs eagerly")]
        for r in self.eager_runs:
            out.append(f"  {r}")
        for r in self.recompiles:
            also = f" (also changed: {', '.join(r['also'])})" if r["also"] else ""
            out.append(f"  recompile: {r['guard']} guard on {r['name']}: {r['old']} -> {r['new']}"
                       f"{also}{' at ' + r['location'] if r['location'] else ''}. "
                       f"{r['suggestion']}")
        if self.layout_copies:
            out.append(f"  {self.layout_copies} calls copied strided inputs to contiguous to reuse "
                       "a program (instead of compiling one per stride)")
        if not self.compiled:
            return "\n".join(out)
        out.append(f"target: {self.target}")
        out.append("guards (checked on every call):")
        out += [f"  {g}" for g in self.guards]
        out.append("traced graph:")
        out += ["  " + line for line in self.graphs["traced"].splitlines()]
        out.append("passes:")
        out += [f"  {p['name']:<20} {p['ms']:8.2f} ms  nodes {p['nodes_before']} -> "
                f"{p['nodes_after']}" for p in self.passes]
        out.append(f"writes ({len(self.writes)}):")
        out += [f"  {w}" for w in self.writes]
        out.append("fusion decisions (producer -> consumer):")
        out += [f"  {d}" for d in self.fusion]
        out.append("optimized graph:")
        out += ["  " + line for line in self.graphs["optimized"].splitlines()]
        out.append(f"kernels ({len(self.kernels)}), estimated cost:")
        for k in self.kernels:
            out.append(f"  {k['name']:<22} {k['kind']:<11} {_si(k['bytes'])}B "
                       f"{_si(k['flops'])}FLOP  {k['ops']}")
        out.append(f"fallbacks ({len(self.fallbacks)}):")
        out += [f"  %{f['node']}: {f['reason']}"
                f"{' at ' + f['location'] if f['location'] else ''}" for f in self.fallbacks]
        how = " (LLVM from the disk cache)" if self.llvm_from_cache else ""
        out.append("time per stage: " + ", ".join(
            f"{k} {v:.1f} ms" for k, v in self.stages_ms.items()) + how)
        if not self.training:
            out.append("training: no call with gradients yet (a call in grad mode with an input "
                       "or weight that requires grad builds forward and backward programs)")
        for text in self.training:
            out += text.splitlines()
        return "\n".join(out)


def explain(fn, *args, **kwargs) -> Explanation:
    """Compile ``fn`` (a function, module, or what ``graphc.compile`` returned) for these
    arguments, without gradients, and describe every stage."""
    from .compiled import compiled_function

    compiled = compiled_function(fn)
    step = _step_for(compiled, args, kwargs)
    if step is not None:
        return _explain_step(compiled, step, compiled._bind(args, kwargs))
    try:
        with no_grad():
            compiled(*args, **kwargs)
    except Exception as err:
        if any(type(c).__name__ == "BackwardInTrace" for c in _chain(err)):
            raise ValueError(
                f"graphc.explain: {compiled.__name__} calls backward(), so it is a training step "
                "(compiled when called in grad mode, and its eager run under no_grad raises); "
                "call it once with these arguments, then explain or dump describes its "
                "compiled step") from err
        raise
    e = Explanation(compiled.__name__, compiled=False,
                    eager_runs=[str(r) for r in compiled.eager_runs],
                    recompiles=[r.as_dict() for r in compiled.recompiles],
                    layout_copies=compiled.layout_copies)
    if compiled.mode == "eager" or compiled._last is None:
        return e
    args = compiled._bind(args, kwargs)
    from . import guards as G
    try:
        sig = G.signature(args, compiled.owner.training if compiled.owner is not None
                          else None)
    except TypeError:
        return e
    entry = compiled.entries.get(sig) or compiled.sized.served.get(sig)
    if entry is None:
        return e
    spec = entry.spec
    e.compiled = True
    e.graphs = {"traced": str(entry.traced.graph), "optimized": str(spec.gm.graph)}
    e.guards = [str(g) for g in entry.guards] + [
        f"weight   {p.target} is the tensor compiled with (replacing it recompiles)"
        for p in spec.params if p.holder is not None]
    e.passes = [dict(name=r.name, ms=1e3 * r.seconds, nodes_before=r.nodes_before,
                     nodes_after=r.nodes_after) for r in spec.history.records]
    e.fusion = [str(d) for d in spec.plan.decisions]
    env = spec.program.shape_env
    with describing(env):  # symbolic sizes: the estimates at this call's sizes
        if env is not None:
            _call_sizes(e, spec.sizes, args, "the program")
        e.kernels = kernel_costs(spec, e.sizes)
    e.fallbacks = [dict(node=f.node.name, reason=f.reason, location=f.node.meta.get("location"))
                   for f in spec.program.fallbacks]
    e.writes = _writes(spec.gm, [path for path, _ in G.tensor_keys(compiled.names, sig)])
    e.stages_ms = entry.stages_ms
    e.llvm_from_cache = bool(spec.compiled.from_cache)
    e.target = current().summary()
    e.training = [p.describe() for k, p in entry.training.items()  # (sized: its pattern)
                  if k[0] in (sig, entry.pattern) and hasattr(p, "describe")]
    return e


def _call_sizes(e: Explanation, sizes, args, what: str) -> None:
    """This call's values of a program's symbolic sizes (``sizes``: its SizeBinding) into
    ``e.sizes``, and a guard line saying so."""
    e.sizes = dict(zip(sizes.names, sizes.bind(tensors_in(args)).values))
    e.guards.append("size     " + ", ".join(f"{k} = {v}" for k, v in e.sizes.items())
                    + f" in this call ({what} serves every size its guards allow)")


def _step_for(compiled, args, kwargs):
    """The compiled training step that serves these arguments, if one was built."""
    from . import guards as G

    if not compiled.steps:
        return None
    try:
        bound = compiled._bind(args, kwargs)
        sig = G.signature(bound, compiled.owner.training if compiled.owner is not None else None)
    except TypeError:
        return None
    key = sig if sig in compiled.steps else compiled._sized_step(sig, bound)
    return compiled.steps.get(key) if key is not None else None


def _explain_step(compiled, step, args) -> Explanation:
    """A compiled training step (not called again: a call would train): its joint graph
    (as the traced graph), the split, and each program's optimized graph, kernels and
    fallbacks."""
    e = Explanation(compiled.__name__, compiled=True,
                    eager_runs=[str(r) for r in compiled.eager_runs],
                    recompiles=[r.as_dict() for r in compiled.recompiles],
                    layout_copies=compiled.layout_copies, target=current().summary(),
                    training=[step.describe()])
    e.guards = ["signature: each argument's dtype, shape and strides (a dim seen with two sizes "
                "is symbolic)",
                "weights  the tensors and requires_grad flags traced (a change builds the step "
                "again)"]
    if step.sized:  # symbolic sizes: the estimates at this call's sizes
        _call_sizes(e, step.sized[0].sizes, args, "the step")
    optimized = []
    for name, cg in (("forward", step.forward), ("backward", step.backward)):
        spec = cg._last
        if spec is None:
            continue
        optimized.append(f"# {name} program\n{spec.gm.graph}")
        with describing(spec.program.shape_env):
            costs = kernel_costs(spec, e.sizes)
        e.kernels += [dict(k, name=f"{name}:{k['name']}") for k in costs]
        e.fallbacks += [dict(node=f.node.name, reason=f"({name}) {f.reason}",
                             location=f.node.meta.get("location"))
                        for f in spec.program.fallbacks]
    e.graphs = {"traced": str(step.gm.graph), "optimized": "\n".join(optimized)}
    e.stages_ms = {"trace": 1e3 * step.trace_seconds, **{
        f"compile {name}": 1e3 * cg._last.compile_seconds
        for name, cg in (("forward", step.forward), ("backward", step.backward))
        if cg._last is not None}}
    return e


def _chain(err: BaseException):
    while err is not None:
        yield err
        err = err.__cause__ or err.__context__


def _writes(gm, tensor_names: list) -> list[str]:
    """The inputs and weights the program writes into (its copy-backs), and what that means
    for calls whose arguments share memory. ``tensor_names``: the tensor arguments' paths."""
    from ..ir.aliasing import COPY_BACK

    placeholders = gm.graph.placeholders
    out = []
    for n in gm.graph.nodes:
        if n.op != "call_function" or not n.meta.get(COPY_BACK):
            continue
        dst, count = n.args[0], n.meta.get("writes", 1)
        if dst.op == "placeholder":
            what = f"argument {tensor_names[placeholders.index(dst)]!r}"
            note = ("; a call in which another argument shares its memory runs eagerly, "
                    "so that reads see the writes as in eager")
        else:
            what, note = f"weight {dst.target}", ""
        out.append(f"{what}: {count} in-place write(s), copied back at the end of the "
                   f"program (%{n.name}){note}")
    return out


def kernel_costs(spec, sizes: dict | None = None) -> list[dict]:
    """Each native kernel: name, kind, node, its ops, estimated bytes and FLOPs (with
    symbolic sizes, at ``sizes``)."""
    gm = spec.gm
    nodes = {n.name: n for n in gm.graph.nodes}
    out = []
    for node_name, kernel in spec.program.kernels:
        n = nodes.get(node_name)
        sub = fetch(gm, n.target) if n is not None and n.op == "call_module" else None
        if isinstance(sub, FusedKernel):
            members = [m for m in sub.graph.nodes if m.op == "call_function"]
        else:
            members = [n] if n is not None else []
        values = [a for a in nodes_in((n.args, n.kwargs)) if "shape" in a.meta] if n else []
        outputs = [n] if n is not None and "shape" in n.meta else []
        outputs += [u for u in (n.users if n else ()) if u.op == "call_method" and "shape" in u.meta]
        out.append(dict(name=kernel.name, kind=kernel.kind, node=node_name,
                        ops=" -> ".join(m.target.name for m in members),
                        bytes=_at(sum(nbytes(v) for v in values + outputs), sizes),
                        flops=_at(sum(_flops(m) for m in members), sizes)))
    return out


def _at(value, sizes: dict | None) -> int:
    """An estimate as a number: a polynomial of symbolic sizes evaluated at ``sizes``."""
    if not isinstance(value, SymInt):
        return value
    return eval(str(value), {}, dict(sizes))  # the text of a polynomial of the symbols


def _flops(n: Node) -> int:
    op = n.target
    if Flag.VIEW in op.flags:
        return 0
    shape = n.meta.get("shape")
    if not isinstance(shape, tuple):
        return 0
    if Flag.MATMUL in op.flags:
        a = n.args[0] if n.args and isinstance(n.args[0], Node) else None
        k = a.meta["shape"][-1] if a is not None and a.meta.get("shape") else 1
        return 2 * math.prod(shape) * k
    sizes = [math.prod(a.meta["shape"]) for a in nodes_in(n.args)
             if isinstance(a.meta.get("shape"), tuple)]
    return max([math.prod(shape)] + sizes)


def _si(x: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:6.1f} {unit}"
    return f"{x:6.0f} "
