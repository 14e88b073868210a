"""``graphc.nn.init``: fill tensors in place with the standard initial values.

Every function works under ``no_grad`` through the tensor's in-place methods
(``uniform_``, ``normal_``, ``fill_``, ``copy_``), returns the tensor, and draws from
graphc's default generator unless ``generator=`` is given. Names, arguments and
formulas are PyTorch's (``torch.nn.init``); the random values themselves differ, since
graphc's generator is not PyTorch's.

    >>> w = graphc.empty(64, 32)
    >>> graphc.nn.init.kaiming_uniform_(w, a=math.sqrt(5))   # Linear's default
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from .. import dtype as dt
from ..autograd import no_grad
from ..ops import functions as F
from ..random import Generator
from ..tensor import Tensor, from_numpy

_LINEAR_FNS = {"linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
               "conv_transpose3d", "sigmoid"}


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The recommended gain for ``nonlinearity`` (linear/conv/sigmoid 1, tanh 5/3, relu √2,
    leaky_relu √(2 / (1 + slope²)) with ``param`` the slope (default 0.01), selu 3/4)."""
    if nonlinearity in _LINEAR_FNS:
        return 1
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, (int, float)) and not isinstance(param, bool):
            slope = param
        else:
            raise ValueError(f"negative_slope {param} not a valid number")
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"Unsupported nonlinearity {nonlinearity}; expected one of "
                     f"{sorted(_LINEAR_FNS | {'tanh', 'relu', 'leaky_relu', 'selu'})}")


def _calculate_fan_in_and_fan_out(tensor: Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of shape (out, in, *kernel)."""
    if tensor.dim() < 2:
        raise ValueError("Fan in and fan out can not be computed for tensor with fewer than 2 "
                         f"dimensions (got shape {tuple(tensor.shape)})")
    receptive_field = math.prod(tensor.shape[2:])
    return tensor.shape[1] * receptive_field, tensor.shape[0] * receptive_field


def _calculate_correct_fan(tensor: Tensor, mode: str) -> int:
    mode = mode.lower()
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"Mode {mode} not supported, please use one of fan_in, fan_out")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def _no_op_on_empty(tensor: Tensor) -> bool:
    if 0 in tuple(tensor.shape):
        warnings.warn("Initializing zero-element tensors is a no-op", stacklevel=3)
        return True
    return False


@no_grad()
def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0, generator: Generator | None = None) -> Tensor:
    """Fill with values drawn uniformly from [a, b)."""
    return tensor.uniform_(a, b, generator=generator)


@no_grad()
def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0,
            generator: Generator | None = None) -> Tensor:
    """Fill with values drawn from N(mean, std²)."""
    return tensor.normal_(mean, std, generator=generator)


@no_grad()
def constant_(tensor: Tensor, val: float) -> Tensor:
    """Fill with ``val``."""
    return tensor.fill_(val)


def ones_(tensor: Tensor) -> Tensor:
    """Fill with ones."""
    return constant_(tensor, 1.0)


def zeros_(tensor: Tensor) -> Tensor:
    """Fill with zeros."""
    return constant_(tensor, 0.0)


@no_grad()
def eye_(tensor: Tensor) -> Tensor:
    """Fill a 2-D tensor with the identity (ones on the diagonal)."""
    if tensor.ndim != 2:
        raise ValueError(f"Only tensors with 2 dimensions are supported, got shape {tuple(tensor.shape)}")
    return tensor.copy_(F.eye(*tensor.shape, dtype=tensor.dtype))


@no_grad()
def xavier_uniform_(tensor: Tensor, gain: float = 1.0, generator: Generator | None = None) -> Tensor:
    """Glorot uniform: U(-a, a) with a = gain · √(6 / (fan_in + fan_out))."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    bound = math.sqrt(3.0) * gain * math.sqrt(2.0 / float(fan_in + fan_out))
    return tensor.uniform_(-bound, bound, generator=generator)


@no_grad()
def xavier_normal_(tensor: Tensor, gain: float = 1.0, generator: Generator | None = None) -> Tensor:
    """Glorot normal: N(0, std²) with std = gain · √(2 / (fan_in + fan_out))."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return tensor.normal_(0.0, gain * math.sqrt(2.0 / float(fan_in + fan_out)), generator=generator)


def _kaiming_std(tensor: Tensor, a: float, mode: str, nonlinearity: str) -> float:
    return calculate_gain(nonlinearity, a) / math.sqrt(_calculate_correct_fan(tensor, mode))


@no_grad()
def kaiming_uniform_(tensor: Tensor, a: float = 0.0, mode: str = "fan_in",
                     nonlinearity: str = "leaky_relu", generator: Generator | None = None) -> Tensor:
    """He uniform: U(-b, b) with b = gain · √(3 / fan) (fan_in or fan_out by ``mode``).

    ``a`` is the negative slope of leaky_relu; ``a=√5`` gives Linear's and Conv2d's default.
    """
    if _no_op_on_empty(tensor):
        return tensor
    bound = math.sqrt(3.0) * _kaiming_std(tensor, a, mode, nonlinearity)
    return tensor.uniform_(-bound, bound, generator=generator)


@no_grad()
def kaiming_normal_(tensor: Tensor, a: float = 0.0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu", generator: Generator | None = None) -> Tensor:
    """He normal: N(0, std²) with std = gain / √fan."""
    if _no_op_on_empty(tensor):
        return tensor
    return tensor.normal_(0.0, _kaiming_std(tensor, a, mode, nonlinearity), generator=generator)


def _erfinv(y: Tensor) -> Tensor:
    """Inverse error function of a float64 tensor in (-1, 1).

    Winitzki's closed-form approximation (relative error < 2e-3), then Newton steps on
    erf(x) = y, each of which squares the error.
    """
    a = 0.147
    log_term = F.log(1 - y * y)
    t = 2 / (math.pi * a) + log_term / 2
    x = F.sign(y) * F.sqrt(F.sqrt(t * t - log_term / a) - t)
    for _ in range(4):
        x = x - (F.erf(x) - y) * (math.sqrt(math.pi) / 2) * F.exp(x * x)
    return x


@no_grad()
def trunc_normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0,
                  generator: Generator | None = None) -> Tensor:
    """Fill with N(mean, std²) truncated to [a, b] (inverse-CDF sampling, as in PyTorch)."""
    if not a < b:
        raise ValueError(f"trunc_normal_: expected a < b, got a={a}, b={b}")
    if mean < a - 2 * std or mean > b + 2 * std:
        warnings.warn("mean is more than 2 std from [a, b] in nn.init.trunc_normal_. The distribution "
                      "of values may be incorrect.", stacklevel=2)
    cdf = lambda x: (1.0 + math.erf(x / math.sqrt(2.0))) / 2.0
    lo, hi = cdf((a - mean) / std), cdf((b - mean) / std)
    y = F.empty(tuple(tensor.shape), dtype=dt.float64).uniform_(2 * lo - 1, 2 * hi - 1, generator=generator)
    values = _erfinv(y) * (std * math.sqrt(2.0)) + mean
    return tensor.copy_(F.clamp(values, a, b))


@no_grad()
def orthogonal_(tensor: Tensor, gain: float = 1.0, generator: Generator | None = None) -> Tensor:
    """Fill with a (semi-)orthogonal matrix (dims after the first are flattened), times ``gain``."""
    if tensor.ndim < 2:
        raise ValueError(f"Only tensors with 2 or more dimensions are supported, got shape "
                         f"{tuple(tensor.shape)}")
    if tensor.numel() == 0:
        return tensor
    rows = tensor.shape[0]
    cols = tensor.numel() // rows
    draws = F.empty((rows, cols), dtype=dt.float64).normal_(0.0, 1.0, generator=generator).numpy()
    flip = rows < cols
    q, r = np.linalg.qr(draws.T if flip else draws)
    q = q * np.sign(np.diag(r))  # makes the decomposition unique, so q is uniformly distributed
    q = q.T if flip else q
    return tensor.copy_(from_numpy(np.ascontiguousarray(q * gain)).reshape(tuple(tensor.shape)))


__all__ = ["calculate_gain", "uniform_", "normal_", "constant_", "ones_", "zeros_", "eye_",
           "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_",
           "trunc_normal_", "orthogonal_"]
