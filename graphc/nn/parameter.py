"""``Parameter``: a tensor that a ``Module`` registers as one of its learnable weights;
``Buffer``: one it registers as a buffer.

A Parameter is a leaf tensor (``requires_grad=True`` by default) that shares its storage
with the tensor it was made from. Assigning one as a module attribute registers it, so it
appears in ``module.parameters()`` and ``module.state_dict()``. Ops on a Parameter return
plain tensors.
"""

from __future__ import annotations

from ..ops import functions as F
from ..tensor import Tensor


class Parameter(Tensor):
    """A tensor that is a module parameter (PyTorch's ``torch.nn.Parameter``).

        >>> w = graphc.nn.Parameter(graphc.zeros(3, 4))
        >>> w.requires_grad, w.is_leaf
        (True, True)

    ``data`` is shared, not copied: writes to either are seen by both. ``Parameter()``
    gives an empty float tensor.
    """

    def __new__(cls, data: Tensor | None = None, requires_grad: bool = True) -> Parameter:
        if data is None:
            data = F.empty(0)
        if not isinstance(data, Tensor):
            raise TypeError(f"Parameter(data) expects a graphc.Tensor, got {type(data).__name__}; "
                            "wrap the values with graphc.tensor(...) first")
        param = cls._make(data._storage, data._shape, data._stride, data._offset)
        if requires_grad:
            param.requires_grad_(True)  # raises for integer and bool data, as in PyTorch
        return param

    def __init__(self, data: Tensor | None = None, requires_grad: bool = True) -> None:
        pass  # everything happens in __new__ (Tensor.__init__ refuses direct construction)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()

    def __deepcopy__(self, memo: dict) -> Parameter:
        if id(self) in memo:
            return memo[id(self)]
        result = type(self)(F.clone(self.detach()), self.requires_grad)
        memo[id(self)] = result
        return result


class Buffer(Tensor):
    """A tensor that, assigned as a module attribute, is registered as a buffer
    (``torch.nn.Buffer``): ``self.mask = nn.Buffer(mask, persistent=False)`` is
    ``self.register_buffer("mask", mask, persistent=False)``. The module keeps a plain
    tensor sharing ``data``'s storage."""

    def __new__(cls, data: Tensor, *, persistent: bool = True) -> Buffer:
        if not isinstance(data, Tensor):
            raise TypeError(f"Buffer(data) expects a graphc.Tensor, got {type(data).__name__}")
        buf = cls._make(data._storage, data._shape, data._stride, data._offset)
        buf.persistent = persistent
        return buf

    def __init__(self, data: Tensor, *, persistent: bool = True) -> None:
        pass  # everything happens in __new__
