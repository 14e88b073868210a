"""``Bilinear``: y = x1ᵀ A x2 + b for a pair of inputs."""

from __future__ import annotations

import math

from ...errors import ShapeError
from ...ops import functions as F
from ...tensor import Tensor
from .. import functional as nnF
from .. import init
from ..module import Module
from ..parameter import Parameter


class Bilinear(Module):
    """y_k = x1 · weight[k] · x2 + bias[k]: (*, in1_features), (*, in2_features) -> (*, out_features).

    ``weight`` (out_features, in1_features, in2_features) and ``bias`` (out_features,) start
    uniform in ±1/√in1_features, as in PyTorch."""

    def __init__(self, in1_features: int, in2_features: int, out_features: int, bias: bool = True,
                 device=None, dtype=None) -> None:
        super().__init__()
        self.in1_features = in1_features
        self.in2_features = in2_features
        self.out_features = out_features
        self.weight = Parameter(F.empty((out_features, in1_features, in2_features), dtype=dtype,
                                        device=device))
        self.register_parameter("bias", Parameter(F.empty(out_features, dtype=dtype, device=device))
                                if bias else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1 / math.sqrt(self.weight.shape[1])
        init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input1: Tensor, input2: Tensor) -> Tensor:
        if input1.ndim == 0 or input2.ndim == 0 or input1.shape[-1] != self.in1_features \
                or input2.shape[-1] != self.in2_features:
            raise ShapeError(f"Bilinear({self.in1_features}, {self.in2_features}, {self.out_features})",
                             f"got inputs of shapes {tuple(input1.shape)} and {tuple(input2.shape)}; "
                             f"expected (*, {self.in1_features}) and (*, {self.in2_features})")
        return nnF.bilinear(input1, input2, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"in1_features={self.in1_features}, in2_features={self.in2_features}, "
                f"out_features={self.out_features}, bias={self.bias is not None}")
