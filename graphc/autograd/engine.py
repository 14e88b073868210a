"""The backward engine: run a graph of nodes from the outputs back to the leaves.

Nodes run in dependency order (every gradient a node will receive has arrived before it
runs). ``backward`` accumulates into the leaves' ``.grad``; ``grad`` returns the
gradients of chosen tensors instead and leaves ``.grad`` alone. Unless
``retain_graph=True``, every node that ran frees its saved tensors afterwards.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence

from ..tensor import Tensor
from .grad_mode import set_grad_enabled
from .graph import AccumulateGrad, Node, _refresh_view, edge_of, grad_accumulator, leaf_hooks, RemovableHandle


def _as_list(x) -> list:
    if x is None:
        return []
    if isinstance(x, Tensor):
        return [x]
    return list(x)


def _roots(outputs: Sequence[Tensor], grad_outputs, what: str) -> list[tuple[Node, Tensor]]:
    from ..ops import functions as F

    grads = _as_list(grad_outputs) or [None] * len(outputs)
    if len(grads) != len(outputs):
        raise RuntimeError(f"{what}: got {len(outputs)} outputs but {len(grads)} gradients")
    roots = []
    for i, (t, g) in enumerate(zip(outputs, grads)):
        if t._base is not None:  # a view whose base was written since it was made
            _refresh_view(t)
        if not t.requires_grad:
            raise RuntimeError(f"{what}: element {i} of the outputs does not require grad and "
                               "has no grad_fn (was it computed under no_grad, or from tensors "
                               "without requires_grad=True?)")
        if g is None:
            if t.numel() != 1:
                raise RuntimeError(f"{what}: grad can be implicitly created only for scalar "
                                   f"outputs; output {i} has shape {tuple(t.shape)}, so pass a "
                                   "gradient of that shape")
            g = F.ones_like(t)
        elif tuple(g.shape) != tuple(t.shape):
            raise RuntimeError(f"{what}: gradient {i} has shape {tuple(g.shape)} but the output "
                               f"has shape {tuple(t.shape)}")
        roots.append((*edge_of(t), g))
    return roots


def _graph(roots) -> tuple[dict[Node, int], list[Node]]:
    """Nodes reachable from the roots, with how many edges point at each."""
    deps: dict[Node, int] = {}
    seen = []
    stack = [n for n, _, _ in roots]
    visited = set(stack)
    while stack:
        node = stack.pop()
        seen.append(node)
        for nxt, _ in node.next_functions:
            if nxt is None:
                continue
            deps[nxt] = deps.get(nxt, 0) + 1
            if nxt not in visited:
                visited.add(nxt)
                stack.append(nxt)
    return deps, seen


def _needed(nodes: list[Node], targets: set) -> set:
    """Nodes from which a target can be reached (only they need to run)."""
    needed = set()
    changed = True
    while changed:
        changed = False
        for node in nodes:
            if node in needed:
                continue
            if any(nxt is not None and (nxt in targets or nxt in needed)
                   for nxt, _ in node.next_functions):
                needed.add(node)
                changed = True
    return needed


def run(roots, retain_graph: bool, create_graph: bool, capture: dict | None = None) -> None:
    """Propagate gradients from ``roots`` [(node, grad)]. With ``capture`` (node -> grad),
    record the gradients arriving at those nodes and do not touch leaves' ``.grad``."""
    deps, nodes = _graph(roots)
    needed = _needed(nodes, set(capture)) if capture is not None else None
    buffers: dict[Node, object] = {}
    for node, index, g in roots:
        _receive(buffers, node, index, g)
    ready = [n for n in dict.fromkeys(n for n, _, _ in roots) if deps.get(n, 0) == 0]
    ran = []
    with set_grad_enabled(create_graph):
        while ready:
            node = ready.pop()
            grad = buffers.pop(node, None)
            grads = ()
            if grad is not None:
                grad = _run_hooks(node, grad)
                if capture is not None and node in capture:
                    capture[node] = grad
                if capture is None or node in needed:
                    if capture is None or not isinstance(node, AccumulateGrad):
                        grads = node.apply(grad)
                        ran.append(node)
            for i, (nxt, index) in enumerate(node.next_functions):
                if nxt is None:
                    continue
                g = grads[i] if i < len(grads) else None
                if g is not None:
                    _receive(buffers, nxt, index, g)
                deps[nxt] -= 1
                if deps[nxt] == 0:
                    ready.append(nxt)
    if not retain_graph:
        for node in ran:
            node.release()


def _receive(buffers: dict, node: Node, index: int, g: Tensor) -> None:
    """Add ``g`` to what ``node`` has received (for its output ``index`` when it has several)."""
    if node.num_outputs == 1:
        buffers[node] = buffers[node] + g if node in buffers else g
        return
    slots = buffers.setdefault(node, [None] * node.num_outputs)
    slots[index] = g if slots[index] is None else slots[index] + g


def _run_hooks(node: Node, grad):
    """The gradient(s) after the hooks of the tensor(s) ``node`` made (a hook's result,
    when not None, replaces it)."""
    if node.num_outputs != 1:
        return tuple(g if g is None else _run_hooks_of(node.output_hooks.get(i, {}), g)
                     for i, g in enumerate(grad))
    return _run_hooks_of(node.tensor_hooks, grad)


def _run_hooks_of(hooks: dict, grad: Tensor) -> Tensor:
    for hook in list(hooks.values()):
        out = hook(grad)
        if out is not None:
            grad = out
    return grad


def backward(tensors, grad_tensors=None, retain_graph: bool | None = None,
             create_graph: bool = False, inputs=None) -> None:
    """Accumulate the gradients of ``tensors`` into the ``.grad`` of the leaves they depend on."""
    outputs = _as_list(tensors)
    roots = _roots(outputs, grad_tensors, "backward")
    retain = create_graph if retain_graph is None else retain_graph
    if inputs is None:
        run(roots, retain, create_graph)
        return
    wanted = _as_list(inputs)
    grads = grad(outputs, wanted, grad_tensors, retain_graph=retain, create_graph=create_graph,
                 allow_unused=True)
    for t, g in zip(wanted, grads):
        if g is not None:
            t.grad = g if t.grad is None else t.grad + g


def grad(outputs, inputs, grad_outputs=None, retain_graph: bool | None = None,
         create_graph: bool = False, allow_unused: bool = False) -> tuple:
    """The gradients of ``outputs`` with respect to ``inputs`` (``.grad`` is not touched)."""
    outs, ins = _as_list(outputs), _as_list(inputs)
    for i, t in enumerate(ins):
        if not t.requires_grad:
            raise RuntimeError(f"grad: input {i} does not require grad")
    targets = [t.grad_fn if t.grad_fn is not None else grad_accumulator(t) for t in ins]
    capture = dict.fromkeys(targets)
    run(_roots(outs, grad_outputs, "grad"), create_graph if retain_graph is None else retain_graph,
        create_graph, capture)
    result = tuple(capture[n] if n.num_outputs == 1 or capture[n] is None
                   else capture[n][t.__dict__.get("_output_nr", 0)] for n, t in zip(targets, ins))
    for i, g in enumerate(result):
        if g is None and not allow_unused:
            raise RuntimeError(f"grad: input {i} was not used to compute the outputs; pass "
                               "allow_unused=True if that is expected")
    return result


def register_hook(t: Tensor, fn) -> RemovableHandle:
    """Call ``fn(grad)`` when the gradient of ``t`` is computed; a returned tensor replaces it."""
    if not t.requires_grad:
        raise RuntimeError("cannot register a hook on a tensor that does not require grad")
    if t.grad_fn is None:
        return RemovableHandle(leaf_hooks(t), fn)
    return t.grad_fn.register_hook(fn, t.__dict__.get("_output_nr", 0))


def retain_grad(t: Tensor) -> None:
    """Keep the gradient of a non-leaf tensor in its ``.grad`` after backward."""
    if not t.requires_grad:
        raise RuntimeError("cannot retain the grad of a tensor that does not require grad")
    if t.grad_fn is None or t.__dict__.get("_retains_grad"):
        return
    ref = weakref.ref(t)

    def keep(g):
        owner = ref()
        if owner is not None:
            owner.grad = g.detach() if owner.grad is None else owner.grad + g.detach()
    t.grad_fn.register_hook(keep, t.__dict__.get("_output_nr", 0))
    t.__dict__["_retains_grad"] = True
