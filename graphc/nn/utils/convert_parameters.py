"""One flat vector of all parameters, and back (``torch.nn.utils.convert_parameters``)."""

from __future__ import annotations

from collections.abc import Iterable

from ...ops import functions as F
from ...tensor import Tensor


def parameters_to_vector(parameters: Iterable[Tensor]) -> Tensor:
    """The parameters flattened and concatenated, in order (a new tensor, with autograd)."""
    return F.cat([p.reshape(-1) for p in parameters])


def vector_to_parameters(vec: Tensor, parameters: Iterable[Tensor]) -> None:
    """Make each parameter's data the next ``numel`` values of ``vec`` (shared, not copied:
    the parameters become views of ``vec``, as in PyTorch)."""
    if not isinstance(vec, Tensor):
        raise TypeError(f"expected graphc.Tensor, but got: {type(vec).__name__}")
    offset = 0
    for param in parameters:
        n = param.numel()
        param.data = vec[offset:offset + n].view_as(param).data
        offset += n
