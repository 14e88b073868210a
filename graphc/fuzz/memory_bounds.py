"""The tolerance policy's bounds (bounds.py) for graphs that write in place.

``BoundInterpreter`` keeps one ``Bound`` per node, which is right while every node is a
new value. A ``copy_`` or ``index_put_`` node changes the memory of an earlier node (and
of every view of it), so here a bound lives in memory, as values do: each storage has a
bound per element, a view reads its elements' bounds, and a write stores the bound of
what it wrote. The bound of a write is that of its out-of-place form: ``copy_(dst, src)``
is ``src`` broadcast (and cast, which rounds); ``index_put_`` is ``index_put``.

    outs, out_bounds, input_bounds = memory_bounds(gm, inputs)  # inputs: changed in place
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir.interpreter import Interpreter
from ..ir.node import Node
from ..ops import OPS, Flag, dispatch
from ..tensor import Tensor
from .bounds import Bound, BoundInterpreter, exact_bound


@dataclass(frozen=True)
class _Call:
    """An op applied to a node's arguments: what ``bound_of`` needs of a node."""

    target: object
    args: tuple
    kwargs: dict


def positions(t: Tensor) -> np.ndarray:
    """The storage index of each element of ``t`` (an int64 array of ``t``'s shape)."""
    pos = np.full((), t._offset, np.int64)
    for n, s in zip(t._shape, t._stride):
        pos = pos[..., None] + np.arange(n, dtype=np.int64) * s
    return pos


def _broadcast(b: Bound, shape: tuple) -> Bound:
    return Bound(*(np.broadcast_to(a, shape) for a in (b.center, b.err, b.free_zero)))


class MemoryBoundInterpreter(BoundInterpreter):
    """Runs a graph as the Interpreter does, with a bound for every element of memory."""

    def __init__(self, module, graph=None):
        super().__init__(module, graph)
        self.memory: dict[int, tuple[object, Bound]] = {}  # id(storage) -> (storage, flat bound)

    def run_node(self, node: Node):
        if node.op == "call_function" and Flag.MUTATES in node.target.flags:
            dst = self.env[node.args[0]]
            written = self.written(node)  # before the write: it reads the old memory
            value = Interpreter.run_node(self, node)
            self.store(dst, written if written is not None else exact_bound(dst.numpy()))
            return value
        value = Interpreter.run_node(self, node)
        if node.op != "output" and isinstance(value, Tensor) and self.flat(value) is None:
            # a new value (a view of known memory needs nothing: its bounds are there)
            bound = self.bound_of(node, value) if node.op == "call_function" \
                else exact_bound(value.numpy())
            self.store(value, bound)
        return value

    def bound(self, x) -> Bound | None:
        """The bound of a node's value as memory holds it now."""
        value = self.env.get(x) if isinstance(x, Node) else None
        return self.read(value) if isinstance(value, Tensor) else None

    # ---- memory ------------------------------------------------------------------------------
    def flat(self, t: Tensor) -> Bound | None:
        entry = self.memory.get(id(t._storage))
        return entry[1] if entry is not None and entry[0] is t._storage else None

    def read(self, t: Tensor) -> Bound:
        flat = self.flat(t)
        if flat is None:  # memory no node made (it is exactly what it holds)
            return exact_bound(t.numpy())
        pos = positions(t)
        return Bound(flat.center[pos], flat.err[pos], flat.free_zero[pos])

    def store(self, t: Tensor, bound: Bound) -> None:
        flat = self.flat(t)
        if flat is None:  # elements outside every view (strided inputs' gaps) are exact
            flat = exact_bound(np.array(t._storage.array[:t._storage.size]))  # a copy
            self.memory[id(t._storage)] = (t._storage, flat)
        b = _broadcast(bound, tuple(t.shape))
        pos = positions(t)
        flat.center[pos], flat.err[pos], flat.free_zero[pos] = b.center, b.err, b.free_zero

    def written(self, node: Node) -> Bound | None:
        """The bound of what a mutating node writes (None: exact, a number)."""
        op = node.target
        dst = self.env[node.args[0]]
        if op is OPS.copy_:
            src = node.args[1]
            if not isinstance(src, Node):
                return None
            value = self.env[src]
            if value.dtype is dst.dtype:
                return _broadcast(self.read(value), tuple(dst.shape))
            call = _Call(OPS.cast, (src,), {"dtype": dst.dtype})
            cast = self.bound_of(call, dispatch(OPS.cast, value, dtype=dst.dtype))
            return _broadcast(cast, tuple(dst.shape))
        if op is OPS.index_put_:
            args = [self.env[a] if isinstance(a, Node) else a for a in node.args]
            out = dispatch(OPS.index_put, *args, **node.kwargs)
            return self.bound_of(_Call(OPS.index_put, node.args, node.kwargs), out)
        shape = tuple(dst.shape)  # a write the policy does not know: not compared
        return Bound(np.zeros(shape), np.full(shape, np.inf), np.zeros(shape, bool))


def memory_bounds(gm, inputs: tuple) -> tuple[tuple, list[Bound], list[Bound]]:
    """Run ``gm`` on ``inputs`` (which it may change); its outputs (a tuple), their
    bounds, and the bounds of the inputs' values afterwards."""
    interp = MemoryBoundInterpreter(gm)
    with np.errstate(all="ignore"):
        outs = interp.run(*inputs)
    outs = outs if isinstance(outs, tuple) else (outs,)
    out_bounds = [interp.read(o) if isinstance(o, Tensor) else None for o in outs]
    return outs, out_bounds, [interp.read(t) for t in inputs]
