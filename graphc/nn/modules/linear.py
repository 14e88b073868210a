"""Linear layers: ``Linear``, and the shape-only ``Identity`` and ``Flatten``."""

from __future__ import annotations

import math
from typing import Any

from ...errors import ShapeError
from ...ops import functions as F
from ...tensor import Tensor
from .. import functional as nnF
from .. import init
from ..module import Module
from ..parameter import Parameter


class Identity(Module):
    """Returns its input unchanged (arguments are accepted and ignored)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def forward(self, input: Tensor) -> Tensor:
        return input


def register_weight_and_bias(module: Module, weight_shape: tuple[int, ...], bias: bool, device,
                             dtype) -> None:
    """Parameters ``weight`` of ``weight_shape`` and ``bias`` of (weight_shape[0],), or a bias of
    None when not ``bias`` (uninitialised: the caller's ``reset_parameters`` fills them)."""
    module.register_parameter("weight", Parameter(F.empty(weight_shape, dtype=dtype, device=device)))
    module.register_parameter("bias", Parameter(F.empty(weight_shape[0], dtype=dtype, device=device))
                              if bias else None)


def reset_weight_and_bias(weight: Parameter, bias: Parameter | None) -> None:
    """Linear's and Conv2d's default: weight ~ kaiming_uniform_(a=√5), i.e. U(-1/√fan_in, 1/√fan_in),
    and bias ~ U(-1/√fan_in, 1/√fan_in)."""
    init.kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in, _ = init._calculate_fan_in_and_fan_out(weight)
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        init.uniform_(bias, -bound, bound)


class Linear(Module):
    """y = x Wᵀ + b over the last dim: (*, in_features) -> (*, out_features).

    ``weight`` has shape (out_features, in_features), ``bias`` (out_features,).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None,
                 dtype=None) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        register_weight_and_bias(self, (out_features, in_features), bias, device, dtype)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        reset_weight_and_bias(self.weight, self.bias)

    def forward(self, input: Tensor) -> Tensor:
        if input.ndim == 0 or input.shape[-1] != self.in_features:
            raise ShapeError(f"Linear(in_features={self.in_features})",
                             f"got input of shape {tuple(input.shape)}; expected (*, {self.in_features})")
        return nnF.linear(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class NonDynamicallyQuantizableLinear(Linear):
    """``MultiheadAttention.out_proj``: a Linear under the class name PyTorch gives it (so reprs match)."""


class Flatten(Module):
    """Merge dims ``start_dim``..``end_dim`` into one (by default all but the batch dim)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, input: Tensor) -> Tensor:
        return F.flatten(input, self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
