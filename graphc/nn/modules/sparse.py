"""``Embedding``: a lookup table of vectors, indexed by integer tensors."""

from __future__ import annotations

from ...autograd import no_grad
from ...errors import DTypeError
from ...ops import functions as F
from ...tensor import Tensor
from .. import functional as nnF
from .. import init
from ..module import Module
from ..parameter import Parameter


class Embedding(Module):
    """Row ``i`` of ``weight`` (num_embeddings, embedding_dim) for each index ``i`` of the input.

    ``weight`` starts as N(0, 1); the ``padding_idx`` row starts at zero and gets no gradient.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 max_norm: float | None = None, norm_type: float = 2.0, scale_grad_by_freq: bool = False,
                 sparse: bool = False, _weight: Tensor | None = None, _freeze: bool = False,
                 device=None, dtype=None) -> None:
        super().__init__()
        for flag, value in (("max_norm", max_norm), ("scale_grad_by_freq", scale_grad_by_freq),
                            ("sparse", sparse)):
            if value:
                raise NotImplementedError(f"Embedding({flag}={value!r}) is not supported by graphc")
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(f"Embedding({num_embeddings}, {embedding_dim}): padding_idx={padding_idx} "
                                 f"must be within num_embeddings")
            padding_idx %= num_embeddings
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.padding_idx = padding_idx
        self.max_norm = max_norm
        self.norm_type = norm_type
        self.scale_grad_by_freq = scale_grad_by_freq
        self.sparse = sparse
        if _weight is None:
            self.weight = Parameter(F.empty((num_embeddings, embedding_dim), dtype=dtype, device=device),
                                    requires_grad=not _freeze)
            self.reset_parameters()
        else:
            if tuple(_weight.shape) != (num_embeddings, embedding_dim):
                raise ValueError(f"Embedding({num_embeddings}, {embedding_dim}): _weight has shape "
                                 f"{tuple(_weight.shape)}, expected ({num_embeddings}, {embedding_dim})")
            self.weight = Parameter(_weight, requires_grad=not _freeze)

    def reset_parameters(self) -> None:
        init.normal_(self.weight)
        if self.padding_idx is not None:
            with no_grad():
                self.weight[self.padding_idx].fill_(0)

    def forward(self, input: Tensor) -> Tensor:
        if isinstance(input, Tensor) and input.dtype.is_floating_point:
            raise DTypeError(f"Embedding({self.num_embeddings}, {self.embedding_dim})",
                             f"expected integer indices, got a {input.dtype} input")
        return nnF.embedding(input, self.weight, self.padding_idx)

    def extra_repr(self) -> str:
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            s += f", padding_idx={self.padding_idx}"
        return s

    @classmethod
    def from_pretrained(cls, embeddings: Tensor, freeze: bool = True,
                        padding_idx: int | None = None) -> Embedding:
        """An Embedding whose weight is ``embeddings`` (2-D); ``freeze`` stops its gradient."""
        if embeddings.ndim != 2:
            raise ValueError(f"Embeddings parameter is expected to be 2-dimensional, got shape "
                             f"{tuple(embeddings.shape)}")
        rows, cols = embeddings.shape
        return cls(rows, cols, padding_idx=padding_idx, _weight=embeddings, _freeze=freeze)
