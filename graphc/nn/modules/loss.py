"""Loss layers: ``MSELoss`` and ``CrossEntropyLoss``.

``reduction`` is ``'mean'`` (default), ``'sum'`` or ``'none'``. The legacy
``size_average`` / ``reduce`` arguments are accepted in their PyTorch positions and
mapped to a reduction with a warning.
"""

from __future__ import annotations

import warnings

from ...tensor import Tensor
from .. import functional as nnF
from ..module import Module

_REDUCTIONS = ("none", "mean", "sum")


def _legacy_reduction(size_average: bool | None, reduce: bool | None) -> str:
    warnings.warn("size_average and reduce args will be deprecated, please use reduction='mean', "
                  "'sum' or 'none' instead.", stacklevel=4)
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    if not reduce:
        return "none"
    return "mean" if size_average else "sum"


class _Loss(Module):
    def __init__(self, size_average: bool | None = None, reduce: bool | None = None,
                 reduction: str = "mean") -> None:
        super().__init__()
        if size_average is not None or reduce is not None:
            reduction = _legacy_reduction(size_average, reduce)
        if reduction not in _REDUCTIONS:
            raise ValueError(f"{self._get_name()}: {reduction!r} is not a valid value for reduction; "
                             f"expected one of {_REDUCTIONS}")
        self.reduction = reduction


class MSELoss(_Loss):
    """Mean squared error between ``input`` and ``target`` (of the same shape)."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return nnF.mse_loss(input, target, reduction=self.reduction)


class CrossEntropyLoss(_Loss):
    """log_softmax over the class dim 1 plus negative log likelihood.

    ``target`` holds class indices (targets equal to ``ignore_index`` count for nothing)
    or class probabilities. ``weight`` (one per class, a buffer) rescales each class.
    """

    def __init__(self, weight: Tensor | None = None, size_average: bool | None = None,
                 ignore_index: int = -100, reduce: bool | None = None, reduction: str = "mean",
                 label_smoothing: float = 0.0) -> None:
        super().__init__(size_average, reduce, reduction)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"CrossEntropyLoss: label_smoothing must be in [0, 1], got {label_smoothing}")
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return nnF.cross_entropy(input, target, weight=self.weight, ignore_index=self.ignore_index,
                                 reduction=self.reduction, label_smoothing=self.label_smoothing)
