"""Check mode (``graphc.compile(..., check=True)``): every fused kernel next to the interpreter.

On the first call of each signature, the optimised graph is run node by node by the
interpreter. Each fused kernel is also compiled on its own and run natively on the same
inputs, and its outputs are compared with its sub-graph interpreted in float64 (floating
inputs widened), rounded to the output dtype. The first kernel outside the tolerance
raises a ``CheckError`` naming the kernel, its sub-graph and the user's lines. Then the
whole compiled program runs next to eager, each on copies of the arguments: outputs,
arguments after the call and written weights must agree (so a write applied in the wrong
order is caught even where every kernel is right).

Tolerance per element: ``|got - ref| <= tol * (|ref| + max|ref|)`` with tol 1e-3 for
float32 and 1e-9 for float64 outputs (transcendentals are a few ulp, sums reassociate);
integer and bool outputs must be equal; nan must appear exactly where the reference has it.
"""

from __future__ import annotations

import numpy as np

from .. import dtype as dt
from ..autograd import no_grad
from ..ir.fused import FusedKernel
from ..ir.graph import Graph
from ..ir.graph_module import GraphModule, fetch
from ..ir.interpreter import Interpreter
from ..ir.node import Node, map_arg
from ..random import get_rng_state, set_rng_state
from ..tensor import Storage, Tensor, tensors_in

TOLERANCE = {"float32": 1e-3, "float64": 1e-9}


class CheckError(AssertionError):
    """A compiled kernel disagrees with the float64 reference. ``kernel`` is its name,
    ``node`` the fused node, ``subgraph`` its ops as text, ``locations`` the user's lines."""

    def __init__(self, message: str, kernel: str, node: str, subgraph: str, locations: list):
        super().__init__(message)
        self.kernel, self.node, self.subgraph, self.locations = kernel, node, subgraph, locations


def check_entry(entry, args: tuple, eager, module=None) -> None:
    """Check a compiled entry before its first real call; raise CheckError.

    With fixed sizes, every fused kernel first runs alone against its float64 reference.
    Then the whole program runs next to eager (``eager(args)``), each on its own copies of
    the arguments: the outputs, every argument after the call (a program may write into
    its inputs) and the module's parameters and buffers (running statistics) must agree.
    Weights and the random generator are restored after each run, so the real call that
    follows starts from where this one started.
    """
    weights = _Weights(module)
    rng = get_rng_state()
    with no_grad():
        if entry.spec.sizes is None:
            _KernelChecker(entry.spec.gm).run(*copies_of(args, tensors_only=True))
            weights.restore()
        set_rng_state(rng)
        eager_args = copies_of(args)
        expected = eager(eager_args)
        expected_weights = weights.values()
        weights.restore()
        set_rng_state(rng)
        compiled_args = copies_of(args, tensors_only=True)
        got = entry.spec.run(compiled_args)
        got_weights = weights.values()
        weights.restore()
        set_rng_state(rng)
    eager_inputs = [a for a in eager_args if isinstance(a, Tensor)]
    for what, actual, reference in (("output", got, expected),
                                    ("argument (after the call)", compiled_args, eager_inputs),
                                    ("weight (after the call)", got_weights, expected_weights)):
        for i, (a, b) in enumerate(zip(tensors_in(actual), tensors_in(reference))):
            bad = _mismatch(a, b)
            if bad:
                raise CheckError(_whole_program_message(entry, f"{what} {i}", bad), "", "", "", [])


def _whole_program_message(entry, what: str, bad: str) -> str:
    kernels = ", ".join(name for name, _ in entry.spec.program.kernels) or "none"
    sizes = f"symbolic sizes {dict(entry.spec.sizes.env.hints)}, " \
        if entry.spec.sizes is not None else "every kernel agrees alone, "
    return (f"check: {what} of the compiled program differs from eager ({sizes}kernels "
            f"{kernels}): {bad}; a scheduling, runtime or memory-planning bug, or an in-place "
            f"write applied in the wrong order; graphc.dump(...) writes a repro")


def copies_of(args, tensors_only: bool = False) -> list:
    """Each tensor copied with its own shape, strides and offset over a copy of its storage
    (arguments that share memory share the copy); other arguments as they are."""
    storages: dict[int, Storage] = {}
    out = []
    for a in args:
        if not isinstance(a, Tensor):
            if not tensors_only:
                out.append(a)
            continue
        s = a._storage
        if id(s) not in storages:
            storages[id(s)] = Storage(s.array.copy(), s.dtype, s.size)
        out.append(Tensor._make(storages[id(s)], a._shape, a._stride, a._offset))
    return out


class _Weights:
    """A module's parameters and buffers, saved so that a checking run's writes (running
    statistics) can be undone."""

    def __init__(self, module):
        self.tensors = [] if module is None else \
            [t for _, t in module.named_parameters()] + [t for _, t in module.named_buffers()]
        self.saved = [t.detach().clone() for t in self.tensors]

    def values(self) -> list:
        return [t.detach().clone() for t in self.tensors]

    def restore(self) -> None:
        for t, s in zip(self.tensors, self.saved):
            t.detach().copy_(s)


class _KernelChecker(Interpreter):
    def call_module(self, node: Node, args, kwargs):
        module = fetch(self.module, node.target)
        value = module(*args, **kwargs)
        if isinstance(module, FusedKernel):
            _check_kernel(node, module, args)
        return value


def _check_kernel(node: Node, kernel: FusedKernel, args) -> None:
    native = _run_alone(node, kernel, args)
    reference = _interpret_f64(kernel, args)
    for out, want, got in zip(range(1 << 30), tensors_in(reference), tensors_in(native)):
        bad = _mismatch(got, want)
        if not bad:
            continue
        ops = [n for n in kernel.graph.nodes if n.op == "call_function"]
        locations = sorted({n.meta["location"] for n in ops if n.meta.get("location")})
        sub = str(kernel.graph)
        where = f" from your code at {', '.join(locations)}" if locations else ""
        raise CheckError(
            f"check: kernel {kernel.name} (%{node.name}: "
            f"{' -> '.join(n.target.name for n in ops)}) output {out} differs from the float64 "
            f"reference: {bad}{where}\n{sub}", kernel.name, node.name, sub, locations)


def _run_alone(node: Node, kernel: FusedKernel, args) -> object:
    """The fused kernel compiled as a program of its own, run on ``args``."""
    from ..codegen.program import lower
    from ..codegen.runtime import Specialization
    from ..codegen.target import PREFIX, compile_ir
    from ..passes import plan_memory

    g = Graph()
    tensors = [a for a in args if isinstance(a, Tensor)]
    placeholders = iter(g.placeholder(f"in{i}") for i in range(len(tensors)))
    mapped = []
    for a in args:
        if isinstance(a, Tensor):
            p = next(placeholders)
            p.meta.update(shape=tuple(a.shape), dtype=a.dtype, stride=tuple(a.stride()))
            mapped.append(p)
        else:
            mapped.append(a)
    call = g.call_module("kernel", tuple(mapped))
    call.meta.update({k: v for k, v in node.meta.items() if k in ("shape", "dtype", "stride")})
    parts = [u for u in node.users if u.op == "call_method" and u.target == "__getitem__"]
    if parts:
        outs = {}
        for u in parts:
            item = g.call_method("__getitem__", (call, u.args[1]))
            item.meta.update({k: v for k, v in u.meta.items() if k in ("shape", "dtype", "stride")})
            outs[u.args[1]] = item
        g.output(tuple(outs[i] for i in sorted(outs)))
    else:
        g.output(call)
    alone = GraphModule({"kernel": kernel}, g)
    program = lower(alone, tuple(tensors), plan_memory(alone), name=kernel.name)
    compiled = compile_ir(program.ir, program.name, [PREFIX + "main"])
    return Specialization(alone, alone, program, compiled, {}).run(tuple(tensors))


def _interpret_f64(kernel: FusedKernel, args) -> object:
    def widen(a):
        if isinstance(a, Tensor) and a.dtype.is_floating_point:
            return a.to(dt.float64)
        return a
    return Interpreter(kernel, kernel.graph).run(*map_arg(tuple(args), widen))


def _mismatch(got: Tensor, want: Tensor) -> str:
    """'' when ``got`` matches the reference ``want``, else what differs."""
    if tuple(got.shape) != tuple(want.shape):
        return f"shape {list(got.shape)}, expected {list(want.shape)}"
    a = got.numpy()
    b = want.numpy().astype(a.dtype) if want.dtype != got.dtype else want.numpy()
    if a.size == 0:
        return ""
    if not np.issubdtype(a.dtype, np.floating):
        wrong = a != b
    else:
        tol = TOLERANCE.get(got.dtype.name, 1e-3)
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        finite = np.isfinite(b64)
        scale = np.abs(b64[finite]).max() if finite.any() else 0.0
        with np.errstate(invalid="ignore", over="ignore"):
            close = (a64 == b64) | (np.abs(a64 - b64) <= tol * (np.abs(b64) + scale))
        wrong = ~(close | (np.isnan(a64) & np.isnan(b64)))
    if not wrong.any():
        return ""
    at = np.unravel_index(int(np.argmax(wrong)), a.shape)
    return (f"{int(wrong.sum())} of {a.size} elements wrong; first at index "
            f"{tuple(int(i) for i in at)}: got {a[at].item()!r}, expected {b[at].item()!r}")
