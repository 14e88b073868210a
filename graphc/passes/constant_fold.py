"""Constant folding: pure ops whose inputs are all known at compile time are computed once
and replaced by a constant.

Known at compile time: constants the tracer captured (``_tensor_constant*``), results of
folding, and deterministic factories (full, arange, eye...). Parameters and buffers are
not — they are live, the program reads their current values — unless frozen with
``freeze_parameters`` (for inference: weight transposes and the like then fold too).
Results above ``max_elements`` stay computed at run time (a large constant costs memory
that a cheap factory does not). A result with one value everywhere (``full``, ``zeros``,
``ones``, and what is computed from them) of any size becomes a 0-d constant expanded to
its shape: a stride-0 view that kernels read without memory.
"""

from __future__ import annotations

import numpy as np

from ..autograd import no_grad
from ..ir.graph_module import GraphModule, fetch
from ..ir.node import Node, map_arg
from ..ops.dispatch import dispatch
from ..ops.registry import OPS, Flag
from ..symbolic import is_symbolic
from ..tensor import Tensor

MAX_ELEMENTS = 1 << 20
_CONSTANT_PREFIXES = ("_tensor_constant", "_folded")


def _is_constant_attr(gm: GraphModule, node: Node) -> bool:
    if node.op != "get_attr":
        return False
    if gm.__dict__.get("_frozen", False):
        return True
    return node.target.rsplit(".", 1)[-1].startswith(_CONSTANT_PREFIXES)


def fold_constants(gm: GraphModule, max_elements: int = MAX_ELEMENTS) -> bool:
    graph = gm.graph
    known: dict[Node, Tensor] = {}
    changed = False
    for node in list(graph.nodes):
        if _is_constant_attr(gm, node):
            known[node] = fetch(gm, node.target)
            continue
        if node.op != "call_function" or Flag.IMPURE in node.target.flags:
            continue
        inputs = node.all_input_nodes
        if any(i not in known for i in inputs):
            continue
        if not inputs and Flag.FACTORY not in node.target.flags:
            continue
        sized = is_symbolic(node.meta.get("shape")) or is_symbolic((node.args, node.kwargs))
        if sized and (inputs or "fill_value" not in node.kwargs or _storage_read(node)):
            continue  # its size is known only at run time (a fill of one value is folded)
        with no_grad():
            if sized:  # full(size, value) of a symbolic size: its one value
                value = dispatch(node.target, **{**node.kwargs, "size": ()})
            else:
                value = dispatch(node.target, *map_arg(node.args, known.__getitem__),
                                 **map_arg(node.kwargs, known.__getitem__))
        if not isinstance(value, Tensor):
            continue
        if sized:
            _replace(gm, node, value, tuple(node.kwargs["size"]))
            changed = True
            continue
        known[node] = value
        fill = node.target is not OPS.expand and _uniform(value) and not _storage_read(node)
        if value.numel() > max_elements and not fill:
            continue  # keep big results computed at run time
        const = _replace(gm, node, value.reshape(-1)[0] if fill else value,
                         tuple(value.shape) if fill else None)
        known[const] = value
        changed = True
    return changed


def _replace(gm: GraphModule, node: Node, value: Tensor, expand_to) -> Node:
    """Put ``value`` on ``gm`` as a constant in place of ``node``, expanded to the shape
    ``expand_to`` when given (a 0-d value read with stride 0); returns the get_attr."""
    graph = gm.graph
    name = _fresh_name(gm)
    gm._install(name, value.detach().contiguous())
    with graph.inserting_before(node):
        const = replacement = graph.get_attr(name)
        if expand_to is not None:
            replacement = graph.call_function(OPS.expand, (const,), {"size": expand_to})
            replacement.meta = {k: v for k, v in node.meta.items() if k != "stride"}
    const.meta = {**node.meta, "folded_from": node.target.name}
    if expand_to is not None:
        const.meta.update(shape=(), stride=())
    node.replace_all_uses_with(replacement)
    graph.erase_node(node)
    return const


def _storage_read(node: Node) -> bool:
    """An ``as_strided`` reads ``node``'s memory (directly or through views of it), so the
    value needs all of its elements in memory, not one expanded."""
    users = list(node.users)
    while users:
        u = users.pop()
        if u.op != "call_function":
            continue
        if u.target is OPS.as_strided:
            return True
        if Flag.VIEW in u.target.flags:
            users.extend(u.users)
    return False


def _uniform(t: Tensor) -> bool:
    """Every element has the same bits (so a 0-d constant expanded to the shape equals it)."""
    a = np.ascontiguousarray(t.numpy()).reshape(-1)
    if a.size <= 1:
        return False
    rows = a.view(np.uint8).reshape(a.size, a.itemsize)
    return bool((rows == rows[0]).all())


def _fresh_name(gm: GraphModule) -> str:
    i = gm.__dict__.get("_next_folded", 0)  # where the last search ended: folding k
    while hasattr(gm, f"_folded{i}"):       # constants is not k² lookups
        i += 1
    object.__setattr__(gm, "_next_folded", i + 1)
    return f"_folded{i}"


def freeze_parameters(gm: GraphModule) -> bool:
    """Treat parameters and buffers as constants from now on and fold what depends only on
    them. The graph no longer sees later changes to the weights (inference only)."""
    object.__setattr__(gm, "_frozen", True)
    return fold_constants(gm)
