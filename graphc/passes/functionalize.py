"""Functionalization: in-place ops and writes through views become pure ops.

A traced program may write: ``y.relu_()``, ``out += identity``, ``x[:, 0] = v``,
``y.view(-1).mul_(2)``, ``x[idx] = v``. In the graph these are the two MUTATES ops,
``copy_(dst, src)`` (every in-place method computes its result, then copies it into
``self``) and ``index_put_``. This pass runs before any other: afterwards the graph is
pure dataflow, except for copy-backs at its end, so no later pass, fusion decision or
kernel schedule has to reason about effects.

How, in one walk over the nodes in program order:

- Every tensor value has a *root*: the node that made its memory (a placeholder, a
  parameter or buffer, or a computed value). A view (an aliasing VIEW op: ``reshape``
  only where it did not copy) shares its input's root; the *chain* of a value is the
  list of views from its root down to it.
- A write ``dst <- v`` makes a new value of dst's whole root: the written region put
  back through the chain's inverses (``reshape``/``permute`` back; ``select``/``slice``/
  ``as_strided`` scattered into the value they were taken from). That value is the
  root's *current* value from then on.
- Every later read of a written root, or of any view of it (made before or after the
  write), reads the current value, with its chain replayed on it (``view`` replayed as
  ``reshape``: the chain is applied to a value, not to memory).
- Roots that are inputs, parameters or buffers and were written get a copy-back at the
  end, ``copy_(root, current value)``, in the order of their first writes (eager's
  order: a copy-back never reads memory a later one has changed). A returned view of
  such a root stays a view of it, so the caller sees eager's aliasing.

What cannot be expressed is refused with a ``FunctionalizeError`` naming the user's line
(``graphc.compile`` then runs the call eagerly and says why): writes through a view that
broadcasts (``expand``) or whose elements overlap, ``as_strided`` views of an argument or
a weight that is written (their memory layout is the caller's), and writes into a tensor
that is neither an input, a parameter, a buffer nor made inside the program (a global
tensor: eager would keep the change across calls).
"""

from __future__ import annotations

import numpy as np

from ..ir.aliasing import COPY_BACK, aliases_input, is_write
from ..ir.graph_module import GraphModule
from ..ir.node import Node, map_arg
from ..layout import contiguous_strides, numel, same_shape
from ..dtype import bool_ as dtype_bool
from ..ops.registry import OPS
from ..tensor import Tensor
from ..trace.proxy import TraceError

KEPT_VIEWS = "written_input_views"  # output.meta: positions that are views of written inputs


class FunctionalizeError(TraceError):
    """A write the pure graph cannot express; ``graphc.compile`` runs the call eagerly."""


def functionalize(gm: GraphModule) -> bool:
    """Make ``gm``'s graph pure: in-place ops and writes through views become out-of-place
    ops, and writes to inputs, parameters and buffers become copy-backs at the end."""
    writes = [n for n in gm.graph.nodes if is_write(n) and not n.meta.get(COPY_BACK)]
    if not writes:
        return False
    _Functionalizer(gm).run()
    return True


def is_functional(graph) -> bool:
    """No writes but copy-backs, and those only after every other computation."""
    seen_copy_back = False
    for n in graph.nodes:
        if is_write(n):
            if not n.meta.get(COPY_BACK):
                return False
            seen_copy_back = True
        elif seen_copy_back and n.op not in ("output", "placeholder", "get_attr"):
            return False
    return True


def protect_copy_backs(gm: GraphModule) -> bool:
    """Run after the other passes: a value read after the first copy-back that still reads a
    written input's or weight's memory (a pass may have simplified ``x * 1`` to ``x``; or
    ``x.copy_(x.t())``) is copied before the copy-backs overwrite it. Outputs that are the
    written input itself after the call (eager's aliases, kept by ``functionalize``) stay
    views of it."""
    from ..layout import contiguous_strides
    from .memory import view_root

    graph = gm.graph
    backs = [n for n in graph.nodes if is_write(n) and n.meta.get(COPY_BACK)]
    if not backs:
        return False
    written = {b.args[0] for b in backs}
    copies: dict[Node, Node] = {}

    def copied(a: Node) -> Node:
        if a not in copies:
            with graph.inserting_before(backs[0]):
                c = copies[a] = graph.call_function(OPS.clone, (a,))
            shape = tuple(a.meta["shape"])
            c.meta.update(shape=shape, dtype=a.meta["dtype"], stride=contiguous_strides(shape),
                          location=a.meta.get("location"))
        return copies[a]
    for b in backs:  # (a view of its own destination too: a copy loop must not overlap)
        src = b.args[1]
        if _is_tensor(src) and view_root(src) in written and src is not b.args[0]:
            b.args = (b.args[0], copied(src))
    output = graph.output_node
    kept = output.meta.get(KEPT_VIEWS, set())
    position = iter(range(1 << 62))

    def guard(v):
        i = next(position)
        if _is_tensor(v) and i not in kept and view_root(v) in written:
            return copied(v)
        return v
    output.args = map_arg(output.args, guard)
    return bool(copies)


def written_inputs(graph) -> tuple[int, ...]:
    """The positions of the placeholders a functional graph's copy-backs write into."""
    written = {n.args[0] for n in graph.nodes if is_write(n) and n.meta.get(COPY_BACK)}
    return tuple(i for i, p in enumerate(graph.placeholders) if p in written)


def _is_tensor(v) -> bool:
    return isinstance(v, Node) and "shape" in v.meta and "dtype" in v.meta


class _Functionalizer:
    def __init__(self, gm: GraphModule):
        self.gm = gm
        self.graph = gm.graph
        self.current: dict[Node, Node] = {}   # written root -> node of its current value
        self.version: dict[Node, int] = {}    # written root -> how many writes so far
        self.derived: dict[tuple, Node] = {}  # (view, root version) -> the view re-derived
        self.written_roots: list[Node] = []   # in the order of their first write
        # decided on the graph as traced: a reshape that copied stays a copy once its input
        # is rewritten to a (contiguous) current value
        self.views = {n for n in gm.graph.nodes if aliases_input(n)}

    # ---- aliasing ------------------------------------------------------------------
    @staticmethod
    def resolve(v: Node) -> Node:
        """A write returns the tensor it wrote: the same value as its destination."""
        while is_write(v):
            v = v.args[0]
        return v

    def chain(self, v: Node) -> tuple[Node, list[Node]]:
        """(root, the views from the root down to v)."""
        views = []
        v = self.resolve(v)
        while v in self.views:
            views.append(v)
            v = self.resolve(v.args[0])
        return v, views[::-1]

    # ---- reading -------------------------------------------------------------------
    def read(self, v):
        """The node holding v's value at this point of the program."""
        if not _is_tensor(v):
            return v
        root, views = self.chain(v)
        if root not in self.current:
            return self.resolve(v)
        value = self.current[root]
        for w in views:
            value = self.derive(w, value, root)
        return value

    def derive(self, w: Node, base: Node, root: Node) -> Node:
        key = (w, self.version[root])
        if key not in self.derived:
            self.derived[key] = self.record(w, lambda b: self.replay(w, b, root), base)
        return self.derived[key]

    def replay(self, w: Node, base, root: Node):
        """The view ``w`` taken of a value (``base``, a Proxy) instead of of memory."""
        import graphc.ops.functions as F

        kwargs = dict(w.kwargs)
        if w.target is OPS.as_strided:
            offset = self._strided_offset(w, root)
            return F.as_strided(F.clone(base), kwargs["size"], kwargs["stride"], offset)
        if w.target is OPS.view:
            return F.reshape(base, *kwargs["size"])
        from ..ops.dispatch import dispatch
        return dispatch(w.target, base, **kwargs)

    @staticmethod
    def _strided_offset(w: Node, root: Node):
        """as_strided addresses memory. A computed root is contiguous from the start of its
        memory, so there the view is the same geometry over the root's value; an input's
        or a weight's memory layout is not part of the graph."""
        if root.op in ("placeholder", "get_attr"):
            raise FunctionalizeError(
                f"{w.name}: as_strided of an input or weight that the program writes to is not "
                f"compiled (%{root.name}'s memory layout is the caller's)", w.meta.get("location"))
        return w.kwargs.get("storage_offset")

    # ---- writing -------------------------------------------------------------------
    def write(self, dst: Node, value: Node, at: Node) -> None:
        """Make ``value`` (dst's shape and dtype) the new content of dst's region."""
        root, views = self.chain(dst)
        if root.op == "get_attr" and root.meta.get("constant"):
            raise FunctionalizeError(
                f"{at.name}: the program writes into a constant (%{root.name}: a tensor the "
                "function makes from data, such as graphc.tensor([...])), which compiled "
                "programs keep read-only, so it runs eagerly. Clone it before writing, or make "
                "it with a factory (zeros, full, arange)",
                at.meta.get("location"))
        bases = [self.read(root)]
        for w in views[:-1]:
            bases.append(self.derive(w, bases[-1], root) if root in self.current
                         else w)
        for w, base in zip(reversed(views), reversed(bases)):
            value = self.record(at, lambda b, v, w=w: self.put_back(w, b, v, root), base, value)
        if root not in self.current:
            self.written_roots.append(root)
            self.version[root] = 0
        self.current[root] = value
        self.version[root] += 1

    def put_back(self, w: Node, base, value, root: Node):
        """The value ``base`` becomes once its view ``w`` holds ``value``."""
        import graphc.ops.functions as F

        src_shape = tuple(w.args[0].meta["shape"])
        op, kwargs = w.target, w.kwargs
        if op in (OPS.view, OPS.reshape, OPS.squeeze, OPS.unsqueeze):
            return F.reshape(value, *src_shape)
        if op is OPS.permute:
            dims = [d % len(src_shape) for d in kwargs["dims"]]
            return F.permute(value, *np.argsort(dims).tolist())
        if op is OPS.expand:
            if numel(src_shape) == numel(tuple(w.meta["shape"])):
                return F.reshape(value, *src_shape)
            raise FunctionalizeError(
                f"{w.name}: a write through a broadcast view (expand {src_shape} -> "
                f"{tuple(w.meta['shape'])}) is not compiled", w.meta.get("location"))
        if op in (OPS.select, OPS.slice, OPS.as_strided):
            size, stride, offset = self.region(w, root)
            return F.view_scatter(base, value, size, stride, offset)
        raise FunctionalizeError(f"{w.name}: a write through a {op.name} view is not compiled",
                                 w.meta.get("location"))

    def region(self, w: Node, root: Node) -> tuple:
        """Where a select, slice or as_strided view lies in its input's value (contiguous):
        (size, stride, offset) in elements."""
        src_shape = tuple(w.args[0].meta["shape"])
        strides = contiguous_strides(src_shape)
        size, kwargs = tuple(w.meta["shape"]), w.kwargs
        if w.target is OPS.as_strided:
            _check_strided_write(w, self._strided_offset(w, root), numel(src_shape))
            return size, tuple(kwargs["stride"]), kwargs.get("storage_offset") or 0
        d = kwargs["dim"] % len(src_shape)
        if w.target is OPS.select:
            index = kwargs["index"] % src_shape[d]
            return size, strides[:d] + strides[d + 1:], index * strides[d]
        from ..ops.views import _slice_indices
        lo, _, step = _slice_indices(kwargs["start"], kwargs["end"], kwargs["step"], src_shape[d])
        stride = strides[:d] + (strides[d] * step,) + strides[d + 1:]
        return size, stride, lo * strides[d] if numel(size) else 0

    def new_value(self, node: Node):
        """The value a write puts into its destination (dst's shape and dtype)."""
        import graphc.ops.functions as F

        dst = node.args[0]
        shape, dtype = tuple(dst.meta["shape"]), dst.meta["dtype"]
        if node.target is OPS.index_put_:
            values, *indices = (self.read(a) for a in node.args[1:])
            mask = indices[0] if len(indices) == 1 else None
            if mask is not None and mask.meta["dtype"] is dtype_bool and node.kwargs["spec"] == (0,) \
                    and same_shape(tuple(mask.meta["shape"]), shape) and (
                        not _is_tensor(values) or numel(tuple(values.meta["shape"])) == 1):
                # x[mask] = v with a mask over all of x: elementwise, so it fuses
                def select(x, m, v):  # v converted to x's dtype first, as index_put_ does
                    v = F.cast(F.reshape(v, ()), dtype) if isinstance(v, Tensor) else \
                        np.asarray(v, dtype=dtype.np).item()
                    out = F.where(m, F.add(x, v) if node.kwargs["accumulate"] else v, x)
                    return out if out.dtype is dtype else F.cast(out, dtype)
                return self.record(node, select, self.read(dst), mask, values)

            def put(x, v, *idx):
                from ..ops.dispatch import dispatch
                return dispatch(OPS.index_put, x, v, *idx, **node.kwargs)
            return self.record(node, put, self.read(dst), values, *indices)
        src = self.read(node.args[1])

        def convert(s):
            if not isinstance(s, Tensor):
                return F.full(shape, s, dtype=dtype)
            if s.dtype is not dtype:
                s = F.cast(s, dtype)
            if not same_shape(tuple(s.shape), shape):
                s = F.expand(s, *shape)
            return s
        return self.record(node, convert, src)

    # ---- recording -----------------------------------------------------------------
    def record(self, at: Node, fn, *args):
        """Trace ``fn(*args)`` (nodes become Proxies) into the graph before the node being
        rewritten; new nodes take ``at``'s source line."""
        from ..trace.tracer import trace_into

        with self.graph.inserting_before(self.here) as created:
            out = trace_into(self.gm, fn, args)
        for n in created:
            n.meta["location"] = at.meta.get("location")
        if not isinstance(out, Node):  # fn returned one of its arguments unchanged
            raise AssertionError(f"graphc internal error: functionalizing {at.name} gave {out!r}")
        return out

    # ---- the walk ------------------------------------------------------------------
    def run(self) -> None:
        graph = self.graph
        writes = []
        for node in list(graph.nodes):
            self.here = node
            if node.op == "output":
                self.finish(node)
                break
            if is_write(node):
                self.write(node.args[0], self.new_value(node), node)
                writes.append(node)
                continue
            if node in self.views:  # a view stays a description of memory; reads of it
                node.args = (self.resolve(node.args[0]),) + node.args[1:]  # go through read
                continue
            if node.op in ("placeholder", "get_attr"):
                continue
            args = map_arg(node.args, self.read)
            kwargs = map_arg(node.kwargs, self.read)
            if args != node.args or kwargs != node.kwargs:
                node.args, node.kwargs = args, kwargs
        written = set(writes)
        for node in reversed(graph.nodes):  # the writes, and views nobody reads any more
            if (node in written or node in self.views) and not node.users:
                graph.erase_node(node)
        leftover = [n for n in writes if n in graph.nodes]
        if leftover:
            raise AssertionError(f"graphc internal error: writes still read after "
                                 f"functionalization: {leftover}")

    def finish(self, output: Node) -> None:
        """Outputs read current values (a view of a written input stays its view); then the
        copy-backs, in the order of the first writes."""
        position = iter(range(1 << 62))
        kept = output.meta[KEPT_VIEWS] = set()

        def out(v):
            i = next(position)
            if not _is_tensor(v):
                return v
            root, _ = self.chain(v)
            if root in self.current and root.op in ("placeholder", "get_attr"):
                kept.add(i)  # the written input itself, after the call: eager's alias
                return self.resolve(v)
            return self.read(v)
        output.args = map_arg(output.args, out)
        for root in self.written_roots:
            if root.op not in ("placeholder", "get_attr"):
                continue
            with self.graph.inserting_before(output):
                back = self.graph.call_function(OPS.copy_, (root, self.current[root]))
            back.meta.update(shape=root.meta["shape"], dtype=root.meta["dtype"],
                             stride=root.meta.get("stride"), location=None)
            back.meta[COPY_BACK] = True
            back.meta["writes"] = self.version[root]  # eager bumps the version once per write


def _check_strided_write(w: Node, offset, count: int) -> None:
    """Refuse a write through an as_strided view two of whose elements share a place, or
    that reaches outside its tensor's ``count`` elements."""
    size, stride = (tuple(int(v) for v in w.kwargs[k]) for k in ("size", "stride"))
    start = 0 if offset is None else int(offset)
    positions = start + sum((np.arange(n) * s).reshape((1,) * i + (n,) + (1,) * (len(size) - i - 1))
                            for i, (n, s) in enumerate(zip(size, stride)))
    positions = np.broadcast_to(positions, size).reshape(-1).astype(np.int64)
    if len(np.unique(positions)) != positions.size:
        raise FunctionalizeError(f"{w.name}: a write through an as_strided view whose elements "
                                 "overlap is not compiled", w.meta.get("location"))
    if positions.size and (positions.min() < 0 or positions.max() >= count):
        raise FunctionalizeError(f"{w.name}: a write through an as_strided view that reaches "
                                 "outside its tensor is not compiled", w.meta.get("location"))
