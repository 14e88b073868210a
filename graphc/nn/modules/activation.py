"""Activation layers: elementwise nonlinearities and softmax over a dim.

Constructor arguments, defaults and printed forms follow ``torch.nn``; ``inplace=True``
writes the result into the input (``graphc.nn.functional.<name>(x, inplace=True)``).
"""

from __future__ import annotations

import warnings

from ...autograd import no_grad
from ...errors import ShapeError
from ...ops import functions as F
from ...tensor import Tensor
from .. import functional as nnF
from ..module import Module
from ..parameter import Parameter


class ReLU(Module):
    """max(x, 0). ``inplace=True`` writes the result into the input."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        return input.relu_() if self.inplace else F.relu(input)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class GELU(Module):
    """x·Φ(x), exactly (``approximate='none'``) or with the tanh approximation (``'tanh'``)."""

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU(approximate={approximate!r}): expected 'none' or 'tanh'")
        self.approximate = approximate

    def forward(self, input: Tensor) -> Tensor:
        return F.gelu(input, approximate=self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class SiLU(Module):
    """x·sigmoid(x). ``inplace=True`` writes the result into the input."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        return nnF.silu(input, inplace=self.inplace)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class Sigmoid(Module):
    """1 / (1 + exp(-x))."""

    def forward(self, input: Tensor) -> Tensor:
        return F.sigmoid(input)


class Tanh(Module):
    """tanh(x)."""

    def forward(self, input: Tensor) -> Tensor:
        return F.tanh(input)


def _softmax_dim(name: str, dim: int | None, ndim: int) -> int:
    if dim is not None:
        return dim
    # PyTorch's legacy choice when no dim is given
    warnings.warn(f"Implicit dimension choice for {name} has been deprecated. Change the call to "
                  "include dim=X as an argument.", stacklevel=3)
    return 0 if ndim in (0, 1, 3) else 1


class _AlongDim(Module):
    """An activation computed along one dim (``dim=None``: PyTorch's legacy implicit choice)."""

    _function = staticmethod(F.softmax)

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, input: Tensor) -> Tensor:
        return self._function(input, _softmax_dim(self._function.__name__, self.dim, input.ndim))

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Softmax(_AlongDim):
    """exp(x) / Σ exp(x) along ``dim``: the values along ``dim`` sum to 1."""

    _function = staticmethod(F.softmax)


class LogSoftmax(_AlongDim):
    """log(softmax(x)) along ``dim``, computed stably."""

    _function = staticmethod(F.log_softmax)


def _inplace_suffix(module) -> str:
    return ", inplace=True" if module.inplace else ""


class _InPlace(Module):
    """An elementwise activation without parameters of its own and an ``inplace`` flag."""

    _name = ""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        return getattr(nnF, self._name)(input, inplace=self.inplace)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class SELU(_InPlace):
    """scale·elu(x, alpha) with SELU's fixed constants (self-normalising networks)."""

    _name = "selu"


class Mish(_InPlace):
    """x·tanh(softplus(x))."""

    _name = "mish"


class Hardswish(_InPlace):
    """x·relu6(x + 3)/6."""

    _name = "hardswish"

    def extra_repr(self) -> str:  # PyTorch prints no inplace flag for this one
        return ""


class Hardsigmoid(_InPlace):
    """relu6(x + 3)/6."""

    _name = "hardsigmoid"

    def extra_repr(self) -> str:
        return ""


class ELU(Module):
    """x where x > 0, else alpha·(exp(x) - 1)."""

    def __init__(self, alpha: float = 1.0, inplace: bool = False) -> None:
        super().__init__()
        self.alpha = alpha
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        return nnF.elu(input, self.alpha, self.inplace)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}{_inplace_suffix(self)}"


class CELU(ELU):
    """x where x > 0, else alpha·(exp(x/alpha) - 1)."""

    def forward(self, input: Tensor) -> Tensor:
        return nnF.celu(input, self.alpha, self.inplace)


class LeakyReLU(Module):
    """x where x > 0, else negative_slope·x."""

    def __init__(self, negative_slope: float = 1e-2, inplace: bool = False) -> None:
        super().__init__()
        self.negative_slope = negative_slope
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        return nnF.leaky_relu(input, self.negative_slope, self.inplace)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}{_inplace_suffix(self)}"


class Hardtanh(Module):
    """x clamped to [min_val, max_val]."""

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> None:
        super().__init__()
        if min_val > max_val:
            raise ValueError(f"Hardtanh: min_val ({min_val}) must not exceed max_val ({max_val})")
        self.min_val = min_val
        self.max_val = max_val
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        return nnF.hardtanh(input, self.min_val, self.max_val, self.inplace)

    def extra_repr(self) -> str:
        return f"min_val={self.min_val}, max_val={self.max_val}{_inplace_suffix(self)}"


class ReLU6(Hardtanh):
    """min(max(x, 0), 6)."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__(0.0, 6.0, inplace)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class Threshold(Module):
    """value where x <= threshold, else x."""

    def __init__(self, threshold: float, value: float, inplace: bool = False) -> None:
        super().__init__()
        self.threshold = threshold
        self.value = value
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        return nnF.threshold(input, self.threshold, self.value, self.inplace)

    def extra_repr(self) -> str:
        return f"threshold={self.threshold}, value={self.value}{_inplace_suffix(self)}"


class Softplus(Module):
    """log(1 + exp(beta·x))/beta; x itself where beta·x > threshold."""

    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        super().__init__()
        self.beta = beta
        self.threshold = threshold

    def forward(self, input: Tensor) -> Tensor:
        return nnF.softplus(input, beta=self.beta, threshold=self.threshold)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"


class _Plain(Module):
    _name = ""

    def forward(self, input: Tensor) -> Tensor:
        return getattr(nnF, self._name)(input)


class LogSigmoid(_Plain):
    """log(sigmoid(x)), without overflow."""

    _name = "logsigmoid"


class Softsign(_Plain):
    """x / (1 + |x|)."""

    _name = "softsign"


class Tanhshrink(_Plain):
    """x - tanh(x)."""

    _name = "tanhshrink"


class GLU(Module):
    """a·sigmoid(b) for the two halves a, b of the input along ``dim``."""

    def __init__(self, dim: int = -1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, input: Tensor) -> Tensor:
        return nnF.glu(input, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Softmax2d(Module):
    """Softmax over the channels of each location of a (C, H, W) or (N, C, H, W) input."""

    def forward(self, input: Tensor) -> Tensor:
        if input.ndim not in (3, 4):
            raise ShapeError("Softmax2d", f"expected an input of shape (C, H, W) or "
                             f"(N, C, H, W), got {tuple(input.shape)}")
        return F.softmax(input, -3)


class PReLU(Module):
    """x where x > 0, else a·x, with ``a`` learned: one for all channels or one per channel
    (``num_parameters`` = the input's dim 1), starting at ``init``."""

    def __init__(self, num_parameters: int = 1, init: float = 0.25, device=None,
                 dtype=None) -> None:
        super().__init__()
        self.num_parameters = num_parameters
        self.init = init
        self.weight = Parameter(F.full((num_parameters,), float(init), dtype=dtype,
                                       device=device))

    def reset_parameters(self) -> None:
        with no_grad():
            self.weight.fill_(self.init)

    def forward(self, input: Tensor) -> Tensor:
        return nnF.prelu(input, self.weight)

    def extra_repr(self) -> str:
        return f"num_parameters={self.num_parameters}"
