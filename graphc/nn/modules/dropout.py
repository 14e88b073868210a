"""``Dropout`` (single values) and ``Dropout1d/2d/3d`` (whole channels): zero at random during
training; the identity in evaluation."""

from __future__ import annotations

from ...tensor import Tensor
from .. import functional as nnF
from ..module import Module


class Dropout(Module):
    """In training mode, zero each value with probability ``p`` and scale the rest by 1/(1-p),
    so the expected value is unchanged; in evaluation mode, return the input."""

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = p
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        return nnF.dropout(input, self.p, self.training, self.inplace)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"


class _ChannelDropout(Dropout):
    _fn = None

    def forward(self, input: Tensor) -> Tensor:
        return type(self)._fn(input, self.p, self.training, self.inplace)


class Dropout1d(_ChannelDropout):
    """Zero whole channels of (N, C, L) or (C, L) input with probability ``p`` in training."""

    _fn = staticmethod(nnF.dropout1d)


class Dropout2d(_ChannelDropout):
    """Zero whole channels of (N, C, H, W) or (C, H, W) input with probability ``p`` in training."""

    _fn = staticmethod(nnF.dropout2d)


class Dropout3d(_ChannelDropout):
    """Zero whole channels of (N, C, D, H, W) or (C, D, H, W) input with probability ``p`` in training."""

    _fn = staticmethod(nnF.dropout3d)
