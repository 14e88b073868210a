"""Hook plumbing (PyTorch's ``torch.utils.hooks``): handles, and module backward hooks.

``BackwardHook`` is what ``Module.register_full_backward_hook`` and
``register_full_backward_pre_hook`` run on. Around one module call it threads the
positional tensor inputs and the tensor outputs through identity nodes of the backward
graph, so that the gradients of all outputs, and later of all inputs, are seen together::

    out_i' (what the caller gets) ── slot ─┐
    out_j' ────────────────────────── slot ─┴─ joint: pre-hooks(grad_output) ─▶ out_i, out_j
    x_k' (what forward sees) ──────── slot ─┐
    x_l' ──────────────────────────── slot ─┴─ joint: hooks(grad_input, grad_output) ─▶ x_k, x_l

The engine runs a node once per call with one incoming gradient, and only after every
edge into it has delivered. A slot stores its tensor's gradient on its joint and sends
the joint a token; the joint runs after all reachable slots and hands each stored
gradient to the edge of the tensor it stands for.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from ..autograd.graph import Node, RemovableHandle, edge_of
from ..autograd.grad_mode import is_grad_enabled
from ..ops import functions as F
from ..tensor import Tensor

__all__ = ["RemovableHandle", "BackwardHook"]

# what the engine shows as the grad_fn of a tensor passed through a module's backward hook
_NODE_NAME = "BackwardHookFunctionBackward"


class _Joint(Node):
    """Collects the gradients of several tensors, then gives them (maybe replaced) onward."""

    def __init__(self, tensors: list[Tensor], on_grads: Callable[[tuple], tuple]):
        super().__init__(edge_of(t) for t in tensors)
        self.grads: list[Tensor | None] = [None] * len(tensors)
        self.on_grads = on_grads

    def name(self) -> str:
        return _NODE_NAME

    def apply(self, _token: Tensor) -> tuple:
        grads, self.grads = tuple(self.grads), [None] * len(self.grads)
        return tuple(self.on_grads(grads))


class _Slot(Node):
    """The grad_fn of one tensor passed through: hands its gradient to the joint."""

    def __init__(self, joint: _Joint, index: int):
        super().__init__(((joint, 0),))
        self.joint = joint
        self.index = index

    def name(self) -> str:
        return _NODE_NAME

    def apply(self, grad: Tensor) -> tuple:
        self.joint.grads[self.index] = grad
        return (F.zeros(()),)  # the token: makes the engine run the joint


def _pass_through(tensors: list[Tensor], on_grads: Callable[[tuple], tuple]) -> list[Tensor]:
    """Aliases of ``tensors`` (same storage) whose gradients meet in one joint node."""
    joint = _Joint(tensors, on_grads)
    aliases = []
    for i, t in enumerate(tensors):
        alias = Tensor._make(t._storage, t._shape, t._stride, t._offset)
        alias.requires_grad = True
        alias.grad_fn = _Slot(joint, i)
        aliases.append(alias)
    return aliases


def _rebuilt(values: tuple, replaced: dict[int, Tensor]) -> tuple:
    items = [replaced.get(i, v) for i, v in enumerate(values)]
    return tuple(items) if type(values) is tuple else type(values)(*items)  # namedtuples too


class BackwardHook:
    """The backward hooks of one module call (see the module docstring for the graph).

    Semantics, as PyTorch's: ``grad_input`` has one entry per positional argument (None
    for non-tensors; zeros for a tensor no gradient reached); ``grad_output`` one per output
    (None for non-tensors and outputs that got no gradient). The full hooks fire when the
    gradients of the inputs are known, or, when no input requires grad, right after the
    output gradients (``grad_input`` all None); with no output requiring grad they never fire.
    """

    def __init__(self, module: Any, user_hooks: list[Callable], user_pre_hooks: list[Callable]):
        self.module = module
        self.user_hooks = user_hooks
        self.user_pre_hooks = user_pre_hooks
        self.grad_outputs: tuple | None = None
        self.inputs: tuple = ()
        self.input_index: list[int] | None = None  # positions passed through, when any
        self.n_outputs = 0

    def setup_input_hook(self, args: tuple) -> tuple:
        """The arguments forward should see (inputs that require grad, passed through)."""
        self.inputs = args
        index = [i for i, a in enumerate(args) if isinstance(a, Tensor) and a.requires_grad]
        if not index or not is_grad_enabled():
            return args
        self.input_index = index
        aliases = _pass_through([args[i] for i in index], self._input_grads)
        return _rebuilt(args, dict(zip(index, aliases)))

    def setup_output_hook(self, result: Any) -> Any:
        """The result the caller should get (outputs that require grad, passed through)."""
        is_tuple = isinstance(result, tuple)
        outputs = result if is_tuple else (result,)
        self.n_outputs = len(outputs)
        index = [i for i, o in enumerate(outputs) if isinstance(o, Tensor) and o.requires_grad]
        if not index or not is_grad_enabled():
            return result

        def output_grads(grads: tuple) -> tuple:
            return self._output_grads(index, grads)

        aliases = _pass_through([outputs[i] for i in index], output_grads)
        rebuilt = _rebuilt(outputs, dict(zip(index, aliases)))
        return rebuilt if is_tuple else rebuilt[0]

    def _output_grads(self, index: list[int], grads: tuple) -> tuple:
        packed = [None] * self.n_outputs
        for i, g in zip(index, grads):
            packed[i] = g
        grad_outputs = tuple(packed)
        for hook in self.user_pre_hooks:
            result = hook(self.module, grad_outputs)
            if result is None:
                continue
            result = result if isinstance(result, tuple) else (result,)
            if len(result) != len(grad_outputs):
                raise RuntimeError(f"Backward pre hook returned an invalid number of grad_output, "
                                   f"got {len(result)}, but expected {len(grad_outputs)}")
            grad_outputs = result
        self.grad_outputs = grad_outputs
        if self.input_index is None:
            # no input requires grad: the full hooks fire now, with no input gradients
            warnings.warn("Full backward hook is firing when gradients are computed with respect "
                          "to module outputs since no inputs require gradients.", stacklevel=2)
            grad_inputs = (None,) * len(self.inputs)
            for hook in self.user_hooks:
                result = hook(self.module, grad_inputs, grad_outputs)
                if result is not None and not (isinstance(result, tuple)
                                               and all(r is None for r in result)):
                    raise RuntimeError("Backward hook for Modules where no input requires gradient "
                                       "should always return None or None for all gradients.")
            self.grad_outputs = None
        return tuple(grad_outputs[i] for i in index)

    def _input_grads(self, grads: tuple) -> tuple:
        index = self.input_index
        if self.grad_outputs is None:  # the gradient did not come through the outputs
            return grads
        packed: list = [None] * len(self.inputs)
        for i, arg in enumerate(self.inputs):
            if isinstance(arg, Tensor):
                packed[i] = F.zeros_like(arg)  # materialised, as PyTorch's hook function does
        for i, g in zip(index, grads):
            if g is not None:
                packed[i] = g
        grad_inputs = tuple(packed)
        for hook in self.user_hooks:
            result = hook(self.module, grad_inputs, self.grad_outputs)
            if result is None:
                continue
            if len(result) != len(grad_inputs):
                raise RuntimeError(f"Backward hook returned an invalid number of grad_input, got "
                                   f"{len(result)}, but expected {len(grad_inputs)}")
            grad_inputs = tuple(result)
        self.grad_outputs = None
        return tuple(grad_inputs[i] for i in index)
