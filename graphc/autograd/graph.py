"""The backward graph and its recording: autograd as a dispatch hook.

When grad mode is on and an op gets an input that requires grad, the hook runs the op
below itself, then records an ``OpBackward`` node as the result's ``grad_fn``. The node
keeps the op, its attributes, its inputs (checked against their version counters when
backward reads them) and edges to the inputs' own ``grad_fn`` (``AccumulateGrad`` for
leaves). Gradient rules come from the op table (``op.grad``); a composite op without a
rule of its own runs its decomposition under autograd instead.

In-place ops rebase the written tensor's history onto the new node; writing into a view
records a ``CopySlices`` node on the view's base, as PyTorch does.
"""

from __future__ import annotations

import math
import weakref

import numpy as np

from ..errors import OpError
from ..layout import same_shape
from ..ops.dispatch import add_backend_hook, modes_disabled, run_backend
from ..ops.registry import Flag, OpDef
from ..tensor import Tensor, wrap_array
from .grad_mode import is_grad_enabled

_FREED = ("Trying to backward through the graph a second time (or to read saved tensors after "
          "they were freed). Saved values are freed when backward() or autograd.grad() "
          "finishes; pass retain_graph=True to backward through the graph again.")


class SavedTensor:
    """A tensor a node needs in backward, with the version it had when it was saved."""

    __slots__ = ("tensor", "version")

    def __init__(self, t: Tensor):
        self.tensor = t
        self.version = t._storage.version

    def unpack(self, node: Node) -> Tensor:
        t = self.tensor
        if t is None:
            raise RuntimeError(_FREED)
        if t._storage.version != self.version:
            raise RuntimeError(
                f"one of the tensors needed for gradient computation has been modified by an "
                f"in-place operation: the input of {node.name()} ({t.dtype.name}{list(t.shape)}) "
                f"is at version {t._storage.version}; expected version {self.version}. Clone it "
                f"before modifying it, or do the in-place op out of place.")
        return t


class Node:
    """One step of the backward graph: a tensor's ``grad_fn``.

    ``next_functions`` holds ``(node, 0)`` per input (``(None, 0)`` where no gradient
    flows), as in PyTorch.
    """

    # how many tensors this node made: a node of several (a compiled program's) receives a
    # tuple of gradients, one per output (None where none arrived); tensor i's edge is (node, i)
    num_outputs = 1

    def __init__(self, next_functions=()):
        self.next_functions = tuple(next_functions)
        self.tensor_hooks: dict[int, object] = {}  # hooks of the tensor this node made
        self.output_hooks: dict[int, dict] = {}  # a node of several: output -> its hooks

    def name(self) -> str:
        return type(self).__name__

    def apply(self, grad: Tensor) -> tuple:
        raise NotImplementedError

    def release(self) -> None:
        """Free what backward needed (after a backward without retain_graph)."""

    def register_hook(self, fn, output: int = 0):
        """Run ``fn(grad_output)`` before this node's backward (a hook of the tensor it made;
        of its tensor ``output`` when it made several)."""
        if self.num_outputs == 1:
            return RemovableHandle(self.tensor_hooks, fn)
        return RemovableHandle(self.output_hooks.setdefault(output, {}), fn)

    def __repr__(self) -> str:
        return f"<{self.name()} object>"


class RemovableHandle:
    """Returned by ``register_hook``; ``remove()`` takes the hook away."""

    _next_id = 0

    def __init__(self, hooks: dict, fn):
        RemovableHandle._next_id += 1
        self.id = RemovableHandle._next_id
        self._hooks = hooks
        hooks[self.id] = fn

    def remove(self) -> None:
        self._hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


class AccumulateGrad(Node):
    """The node of a leaf that requires grad: adds the incoming gradient to ``leaf.grad``."""

    def __init__(self, leaf: Tensor):
        super().__init__()
        self.variable = leaf

    def apply(self, grad: Tensor, owned: bool = False) -> tuple:
        """``owned``: nothing else refers to ``grad``'s memory (a compiled step's fresh
        output), so a first gradient with the leaf's strides becomes ``.grad`` as it is,
        not a copy (as PyTorch's AccumulateGrad steals such a gradient)."""
        leaf = self.variable
        for hook in list(leaf_hooks(leaf).values()):
            out = hook(grad)
            if out is not None:
                grad, owned = out, False
        if not is_grad_enabled():
            grad = grad.detach()
        if grad.shape != leaf.shape:
            raise RuntimeError(f"gradient of shape {tuple(grad.shape)} for a leaf of shape "
                               f"{tuple(leaf.shape)}")
        if leaf.grad is not None:
            leaf.grad = leaf.grad + grad
        elif owned and grad.stride() == leaf.stride() and grad.dtype is leaf.dtype:
            leaf.grad = grad
        else:
            leaf.grad = grad.clone()
        return ()


def leaf_hooks(leaf: Tensor) -> dict:
    hooks = leaf.__dict__.get("_leaf_hooks")
    if hooks is None:
        hooks = leaf.__dict__["_leaf_hooks"] = {}
    return hooks


def grad_accumulator(leaf: Tensor) -> AccumulateGrad:
    """The leaf's AccumulateGrad node (one per leaf while a graph refers to it)."""
    ref = leaf.__dict__.get("_grad_accumulator")
    node = ref() if ref is not None else None
    if node is None:
        node = AccumulateGrad(leaf)
        leaf.__dict__["_grad_accumulator"] = weakref.ref(node)
    return node


def edge_of(x) -> tuple:
    """Where the gradient of input ``x`` goes: (node, which of its outputs x is), or
    (None, 0) when nowhere."""
    if not (isinstance(x, Tensor) and x.requires_grad):
        return (None, 0)
    if x.grad_fn is not None:
        return (x.grad_fn, x.__dict__.get("_output_nr", 0))
    return (grad_accumulator(x), 0)


class GradContext:
    """What a gradient rule reads: ``inputs``, ``attrs`` and ``output`` of the forward call."""

    __slots__ = ("node",)

    def __init__(self, node: OpBackward):
        self.node = node

    @property
    def inputs(self) -> tuple:
        """Every input (each saved tensor checked against its version)."""
        return tuple(self.input(i) for i in range(len(self.node.saved_inputs)))

    def input(self, i: int):
        """Input ``i`` alone: a rule that reads only what it needs lets the others change."""
        s = self.node.saved_inputs[i]
        return s.unpack(self.node) if isinstance(s, SavedTensor) else s

    def shape(self, i: int) -> tuple | None:
        """The shape input ``i`` had (no version check: shapes do not change in place);
        None where it is not a tensor."""
        meta = self.node.input_meta[i]
        return None if meta is None else meta[0]

    @property
    def arity(self) -> int:
        """How many inputs the call had (a variadic op's vary)."""
        return len(self.node.input_meta)

    def needs(self, i: int) -> bool:
        """Whether a gradient for input ``i`` is wanted."""
        return self.node.next_functions[i][0] is not None

    @property
    def attrs(self) -> dict:
        return self.node.attrs

    @property
    def output(self) -> Tensor:
        node = self.node
        if is_grad_enabled() and Flag.MUTATES not in node.op.flags:
            # create_graph: recompute the output with its history, so that rules using it
            # are differentiable again (the saved copy has no grad_fn, to avoid a cycle)
            from ..ops.dispatch import dispatch
            return dispatch(node.op, *self.inputs, **node.attrs)
        return node.saved_output.unpack(node)


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.strip("_").split("_"))


class OpBackward(Node):
    """The backward of one op call; its gradient rule is ``op.grad``."""

    def __init__(self, op: OpDef, inputs: tuple, attrs: dict, output: Tensor):
        super().__init__(edge_of(x) for x in inputs)
        self.op = op
        self.attrs = attrs
        self.saved_inputs = tuple(SavedTensor(x) if isinstance(x, Tensor) else x for x in inputs)
        self.input_meta = tuple((tuple(x._shape), x.dtype) if isinstance(x, Tensor) else None
                                for x in inputs)
        self.saved_output = SavedTensor(output.detach())

    def name(self) -> str:
        return _camel(self.op.name) + "Backward0"

    def apply(self, grad: Tensor) -> tuple:
        grads = self.op.grad(GradContext(self), grad)
        if not isinstance(grads, tuple):
            grads = (grads,)
        return tuple(_fit(g, meta) if isinstance(g, Tensor) and fn is not None else None
                     for g, meta, (fn, _) in zip(grads, self.input_meta, self.next_functions))

    def release(self) -> None:
        for s in (*self.saved_inputs, self.saved_output):
            if isinstance(s, SavedTensor):
                s.tensor = None


def _fit(g: Tensor, meta) -> Tensor:
    """Undo broadcasting (sum to the input's shape) and match the input's dtype."""
    shape, dtype = meta
    if not same_shape(g._shape, shape):
        g = sum_to(g, shape)
    if g.dtype is not dtype:
        g = g.to(dtype)
    return g


def sum_to(g: Tensor, shape: tuple) -> Tensor:
    """Sum ``g`` over the dims that broadcasting added or expanded to reach its shape."""
    from ..ops import functions as F

    lead = g.ndim - len(shape)
    dims = tuple(range(lead)) + tuple(lead + i for i, s in enumerate(shape)
                                      if s == 1 and g._shape[lead + i] != 1)
    if dims:
        g = F.sum(g, dims, keepdim=True)
    return F.reshape(g, shape) if tuple(g._shape) != tuple(shape) else g


# ---- in-place writes into views ----------------------------------------------------

def view_positions(base: Tensor, view: Tensor) -> np.ndarray:
    """Flat indices (in base's logical order) of the elements ``view`` sees."""
    storage = np.arange(base._storage.size, dtype=np.int64)
    logical = np.lib.stride_tricks.as_strided(storage[base._offset:], base._shape,
                                              [s * 8 for s in base._stride]).reshape(-1)
    inverse = np.full(base._storage.size, -1, dtype=np.int64)
    inverse[logical] = np.arange(logical.size, dtype=np.int64)
    seen = np.lib.stride_tricks.as_strided(storage[view._offset:], view._shape,
                                           [s * 8 for s in view._stride]).reshape(-1)
    return inverse[seen]


class CopySlices(Node):
    """The base's node after an in-place op wrote into one of its views."""

    def __init__(self, base: Tensor, inner: OpBackward, positions: np.ndarray, view_shape):
        super().__init__((edge_of(base),) + inner.next_functions[1:])
        self.inner = inner
        self.base_shape = tuple(base._shape)
        self.positions = positions
        self.view_shape = tuple(view_shape)

    def name(self) -> str:
        return "CopySlices"

    def apply(self, grad: Tensor) -> tuple:
        from ..ops import functions as F

        pos = wrap_array(self.positions)
        flat = F.reshape(grad, -1)
        grads = self.inner.apply(F.reshape(F.index_select(flat, 0, pos), self.view_shape))
        region = grads[0] if grads[0] is not None else F.zeros(self.view_shape, dtype=grad.dtype)
        base_grad = F.reshape(F.index_put(flat, (pos,), F.reshape(region, -1)), self.base_shape)
        return (base_grad,) + tuple(grads[1:])

    def release(self) -> None:
        self.inner.release()


class ViewOfBase(Node):
    """A view's node after its base was written in place (``AsStridedBackward0``)."""

    def __init__(self, base: Tensor, positions: np.ndarray):
        super().__init__((edge_of(base),))
        self.base_shape = tuple(base._shape)
        self.positions = positions

    def name(self) -> str:
        return "AsStridedBackward0"

    def apply(self, grad: Tensor) -> tuple:
        from ..ops import functions as F

        zeros = F.zeros(math.prod(self.base_shape), dtype=grad.dtype)
        out = F.index_put(zeros, (wrap_array(self.positions),), F.reshape(grad, -1), accumulate=True)
        return (F.reshape(out, self.base_shape),)


# ---- the recording hook ------------------------------------------------------------

def _differentiable(x) -> bool:
    return isinstance(x, Tensor) and (x.requires_grad or (x._base is not None and _base_given_history(x)))


def _base_given_history(x: Tensor) -> bool:
    """A view made before a write gave its base gradient history (``v = buf[:2];
    buf.copy_(w)``): it reads the new base, as in torch, from its next use."""
    return x._base.requires_grad and x.dtype.is_floating_point and \
        x.__dict__.get("_made_at", 1 << 62) < x._base.__dict__.get("_history_at", 0)


def _refresh_view(x: Tensor) -> None:
    """A view whose base was written since its grad_fn was made (or that was made before a
    write gave its base history) now reads the new base."""
    base = x._base
    if base is None or not base.requires_grad:
        return
    if x.requires_grad:
        if x.__dict__.get("_grad_version", x._storage.version) == x._storage.version:
            return
    elif not _base_given_history(x):
        return
    x.requires_grad = True
    x.grad_fn = ViewOfBase(base, view_positions(base, x))
    x.__dict__["_grad_version"] = x._storage.version


def _mark(out: Tensor, node: Node) -> None:
    out.requires_grad = True
    out.grad_fn = node
    if out._base is not None:
        out.__dict__["_grad_version"] = out._storage.version


def record(op: OpDef, inputs: tuple, attrs: dict):
    """The autograd hook: compute below, then record the backward node."""
    if not is_grad_enabled() or Flag.NO_GRAD in op.flags or not any(_differentiable(x) for x in inputs):
        return NotImplemented
    for x in inputs:
        if _differentiable(x) and x._base is not None:
            _refresh_view(x)
    if Flag.MUTATES in op.flags:
        return _record_inplace(op, inputs, attrs)
    if op.grad is None:
        if op.decomposition is not None:
            with modes_disabled():
                return op.decomposition(*inputs, **attrs)
        return _without_gradient(op, inputs, attrs)
    out = run_backend(op, inputs, attrs)
    outs = out if isinstance(out, tuple) else (out,)
    floating = [o for o in outs if o.dtype.is_floating_point]
    if floating:
        node = OpBackward(op, inputs, attrs, outs[0])
        for o in floating:
            _mark(o, node)
    return out


def _without_gradient(op: OpDef, inputs: tuple, attrs: dict):
    out = run_backend(op, inputs, attrs)
    outs = out if isinstance(out, tuple) else (out,)
    if any(o.dtype.is_floating_point for o in outs):
        raise OpError(op.name, "has no gradient rule, so its result cannot be differentiated; "
                      "call it under graphc.no_grad() or on detached inputs")
    return out


def _record_inplace(op: OpDef, inputs: tuple, attrs: dict):
    x = inputs[0]
    if x.requires_grad and x.is_leaf:
        raise OpError(op.name, "a leaf tensor that requires grad is being used in an in-place "
                      "operation; write into a clone, or do it under graphc.no_grad()")
    base = x._base
    if base is not None and base.requires_grad and base.is_leaf:
        raise OpError(op.name, "a view of a leaf tensor that requires grad is being used in an "
                      "in-place operation")
    if not x.dtype.is_floating_point:
        return NotImplemented
    inner = OpBackward(op, inputs, attrs, x)  # edges read x's history before it is replaced
    out = run_backend(op, inputs, attrs)
    root = x if base is None else base
    if not root.requires_grad:  # views of it made before now read it (``_base_given_history``)
        root.__dict__["_history_at"] = root._storage.version
    if base is None:
        _mark(x, inner)
        return out
    positions = view_positions(base, x)
    node = CopySlices(base, inner, positions, x._shape)
    _mark(base, node)
    base.__dict__["_grad_version"] = base._storage.version
    _mark(x, ViewOfBase(base, positions))
    return out


add_backend_hook(record)
