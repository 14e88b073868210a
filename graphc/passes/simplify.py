"""Algebraic simplification, exact under IEEE arithmetic. Each rule replaces a node by a
value it always equals (same shape and dtype, bit for bit, nan and -0.0 included):

    x * 1, 1 * x, x / 1, x ** 1       -> x
    x + (-0.0), (-0.0) + x, x - 0.0   -> x      (x + 0.0 is NOT x: -0.0 + 0.0 is +0.0)
    neg(neg(x))                       -> x
    permute(permute(x, p), q)         -> permute(x, p∘q), or x when that is the identity
    reshape/view(reshape/view(x))     -> reshape(x)
    reshape/view/expand to x's shape  -> x
    cast(x, x.dtype), clone(x),
    pad(x, all widths 0)              -> x      (where no in-place write writes x's memory)
    slice(f(a, b), d)                 -> f(slice(a, d), slice(b, d))   for an elementwise f,
                                         when the slice keeps at most 1/8 of f's elements
                                         (and no in-place writes): only those are computed,
                                         and f's kernel is not materialized for the slice

Rules that would change a value in any case (x * 0 -> 0 breaks for nan/inf, x - x -> 0
likewise) are not applied, nor rules that would change the memory layout a ``view`` or
an ``as_strided`` reads (clone(x) -> x, when x is transposed and the clone is viewed).
"""

from __future__ import annotations

import math

from ..ir.aliasing import view_root
from ..ir.graph_module import GraphModule
from ..layout import contiguous_strides, same_shape
from ..ir.node import Node
from ..ops.registry import OPS, Flag
from ..symbolic import known


def _same_type(node: Node, x) -> bool:
    return isinstance(x, Node) and same_shape(x.meta.get("shape"), node.meta.get("shape")) \
        and x.meta.get("dtype") is node.meta.get("dtype") and "shape" in node.meta


def _is(value, number: float, negative_zero: bool | None = None) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != number:
        return False
    if negative_zero is not None:
        return math.copysign(1.0, value) < 0 if negative_zero else math.copysign(1.0, value) > 0
    return True


def _identity_operand(node: Node):
    """The x of x*1, x/1, x**1, x+(-0.0), x-0.0 (and the mirrored forms), if it keeps type."""
    name = node.target.name
    if len(node.args) != 2 or any(node.kwargs.get(k) for k in ("rounding_mode",)):
        return None
    a, b = node.args
    candidates = []
    if name == "mul":
        candidates = [(a, b), (b, a)]
    elif name in ("div", "pow"):
        candidates = [(a, b)]
    elif name == "add":
        candidates = [(a, b), (b, a)]
    elif name == "sub":
        candidates = [(a, b)]
    for x, other in candidates:
        if name in ("mul", "div", "pow") and not _is(other, 1):
            continue
        if name == "add" and not _is(other, 0, negative_zero=True):
            continue
        if name == "sub" and not (_is(other, 0, negative_zero=False) or
                                  (isinstance(other, int) and other == 0)):
            continue
        if _same_type(node, x):
            return x
    return None


def _double_negation(node: Node):
    if node.target is not OPS.neg:
        return None
    x = node.args[0]
    if isinstance(x, Node) and x.op == "call_function" and x.target is OPS.neg:
        return x.args[0]
    return None


def _compose_permutes(gm, node: Node, writes: set):
    if node.target is not OPS.permute:
        return None
    x = node.args[0]
    dims = tuple(d % len(node.kwargs["dims"]) if node.kwargs["dims"] else d
                 for d in node.kwargs["dims"])
    if dims == tuple(range(len(dims))) and _same_type(node, x):
        return x
    if isinstance(x, Node) and x.op == "call_function" and x.target is OPS.permute:
        inner = tuple(d % len(dims) for d in x.kwargs["dims"])
        composed = tuple(inner[d] for d in dims)
        node.args = (x.args[0],)
        node.kwargs = {**node.kwargs, "dims": composed}
        return node
    return None


_RESHAPES = ("reshape", "view")


def _reshapes(gm, node: Node, writes: set):
    name = node.target.name
    if name not in _RESHAPES and name != "expand":
        return None
    x = node.args[0]
    if _same_type(node, x):
        return x
    if name in _RESHAPES and isinstance(x, Node) and x.op == "call_function" \
            and x.target.name in _RESHAPES:
        node.target = OPS.reshape
        node.args = (x.args[0],)
        node.kwargs = {"size": node.meta["shape"]} if "shape" in node.meta else node.kwargs
        return node
    return None


def _copies(gm, node: Node, writes: set):
    copy = node.target is OPS.clone or node.target is OPS.cast or (
        node.target is OPS.pad and all(known(w, "==", 0) for w in node.kwargs.get("pad", (1,))))
    if copy and _same_type(node, node.args[0]) and node not in writes and \
            view_root(node.args[0]) not in writes:
        return node.args[0]  # neither the copy nor what it copies is written: the same values
    return None


def _layout_read(node: Node) -> bool:
    """Whether a view that depends on ``node``'s memory layout reads it (directly or
    through views): ``as_strided`` addresses its storage with absolute offsets, ``view``
    needs strides it can merge or split. A fresh result (clone(x), x * 1, neg(neg(x)))
    is contiguous in storage of its own, x may not be: it may not stand in for it."""
    if Flag.VIEW in node.target.flags:
        return False  # a view rule keeps the storage
    todo, seen = list(node.users), set()
    while todo:
        u = todo.pop()
        if u in seen or u.op != "call_function" or Flag.VIEW not in u.target.flags:
            continue
        if u.target is OPS.as_strided or u.target is OPS.view:
            return True
        seen.add(u)
        todo.extend(u.users)
    return False


def _written(gm) -> set:
    """The memory the graph's writes write into (their roots; empty: a pure graph)."""
    return {view_root(n.args[0]) for n in gm.graph.nodes
            if n.op == "call_function" and Flag.MUTATES in n.target.flags}


SLICE_PUSH_FRACTION = 8  # a slice is pushed into its elementwise producer when it keeps
                         # at most 1/8 of the elements (recomputing them costs that much)


def _slice_of_elementwise(gm, node: Node, writes: set):
    if node.target is not OPS.slice or writes or "shape" not in node.meta:
        return None
    x = node.args[0]
    if not (isinstance(x, Node) and x.op == "call_function" and "shape" in x.meta
            and Flag.ELEMENTWISE in x.target.flags
            and not {Flag.IMPURE, Flag.RANDOM, Flag.MUTATES} & set(x.target.flags)
            and not any(isinstance(v, Node) for v in x.kwargs.values())):
        return None
    shape, kept = tuple(x.meta["shape"]), tuple(node.meta["shape"])
    if math.prod(kept) * SLICE_PUSH_FRACTION > math.prod(shape):
        return None
    d = node.kwargs["dim"] % len(shape)
    graph = gm.graph
    with graph.inserting_before(node):
        args = []
        for a in x.args:
            if isinstance(a, Node) and "shape" in a.meta:
                own = tuple(a.meta["shape"])
                da = d - (len(shape) - len(own))
                # an operand broadcast along d (size 1 where f's dim is not) is used as
                # it is; one of f's size along d is sliced with it (the slice may empty it)
                if da >= 0 and (own[da] != 1 or shape[d] == 1):
                    a_slice = graph.call_function(OPS.slice, (a,), {**node.kwargs, "dim": da})
                    a_slice.meta.update(_provenance(node), dtype=a.meta["dtype"],
                                        shape=own[:da] + (kept[d],) + own[da + 1:])
                    if "stride" in a.meta:  # its input's strides, the sliced one by step
                        stride = list(a.meta["stride"])
                        stride[da] *= node.kwargs.get("step") or 1
                        a_slice.meta["stride"] = tuple(stride)
                    a = a_slice
            args.append(a)
        new = graph.call_function(x.target, tuple(args), dict(x.kwargs))
        new.meta.update(_provenance(x), shape=kept, dtype=x.meta["dtype"],
                        stride=contiguous_strides(kept))
    return new


def _provenance(node: Node) -> dict:
    return {k: node.meta[k] for k in ("location", "origin") if k in node.meta}


# rule(gm, node, writes) -> a replacement, or None; ``writes``: the memory the graph's
# in-place writes write (empty: none)
RULES = [
    ("identity operand", lambda gm, n, writes: _identity_operand(n)),
    ("double negation", lambda gm, n, writes: _double_negation(n)),
    ("permute of permute", _compose_permutes),
    ("reshape chain / no-op reshape", _reshapes),
    ("no-op copy", _copies),
    ("slice of an elementwise result", _slice_of_elementwise),
]


def simplify(gm: GraphModule) -> bool:
    """Apply the rules until none applies; rewritten nodes keep their meta."""
    changed = False
    progress = True
    writes = _written(gm)  # the rules neither add nor remove writes
    while progress:
        progress = False
        for node in list(gm.graph.nodes):
            if node.op != "call_function" or node not in gm.graph.nodes:
                continue
            if not node.args:  # factories: nothing to simplify
                continue
            for _, rule in RULES:
                replacement = rule(gm, node, writes)
                if replacement is None:
                    continue
                if replacement is not node and _layout_read(node):
                    continue  # the same values, but not the same memory layout
                if replacement is not node:
                    node.replace_all_uses_with(replacement)
                    if not node.users:
                        gm.graph.erase_node(node)
                changed = progress = True
                gm.graph.touch()
                break
    return changed
