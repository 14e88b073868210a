"""``Dropout``: zero random values during training; the identity in evaluation."""

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
