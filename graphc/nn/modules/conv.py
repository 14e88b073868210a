"""Convolutions over 1 or 2 spatial dims: ``Conv1d``, ``Conv2d`` (cross-correlation) and
``ConvTranspose1d``, ``ConvTranspose2d`` (their input gradients, as layers).

Inputs are (N, C, *spatial) or unbatched (C, *spatial). ``padding_mode`` other than
'zeros' pads the input with ``F.pad`` first ('reflect', 'replicate', 'circular'), as
PyTorch does.
"""

from __future__ import annotations

from ...errors import ShapeError
from ...ops import functions as F
from ...tensor import Tensor
from .. import functional as nnF
from ..module import Module
from ..parameter import Parameter
from .linear import register_weight_and_bias, reset_weight_and_bias

_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _tuple(value, n: int) -> tuple[int, ...]:
    return (value,) * n if isinstance(value, int) else tuple(value)


class _ConvNd(Module):
    """The parameters, checks and repr shared by the convolutions (``_dims`` spatial dims)."""

    _dims = 2
    _transposed = False

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 device=None, dtype=None, output_padding=0) -> None:
        super().__init__()
        n = self._dims
        name = f"{type(self).__name__}({in_channels}, {out_channels})"
        if groups <= 0:
            raise ValueError(f"{name}: groups must be a positive integer, got {groups}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: in_channels and out_channels must be divisible by groups, "
                             f"got groups={groups}")
        if isinstance(padding, str):
            if padding not in ("valid", "same") or self._transposed:
                raise ValueError(f"{name}: invalid padding string {padding!r}, should be one of "
                                 "{'valid', 'same'}" + (" (and none for transposed convolutions)"
                                                        if self._transposed else ""))
            if padding == "same" and _tuple(stride, n) != (1,) * n:
                raise ValueError(f"{name}: padding='same' is not supported for strided convolutions "
                                 f"(stride={stride})")
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"{name}: padding_mode must be one of {', '.join(map(repr, _PADDING_MODES))}, "
                             f"got {padding_mode!r}")
        if self._transposed and padding_mode != "zeros":
            raise ValueError(f"{name}: only 'zeros' padding mode is supported for {type(self).__name__}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _tuple(kernel_size, n)
        self.stride = _tuple(stride, n)
        self.padding = padding if isinstance(padding, str) else _tuple(padding, n)
        self.dilation = _tuple(dilation, n)
        self.transposed = self._transposed
        self.output_padding = _tuple(output_padding, n)
        self.groups = groups
        self.padding_mode = padding_mode
        if padding == "same":  # F.pad's (left, right) pairs from the last dim, split as PyTorch
            pads = []
            for d, k in zip(reversed(self.dilation), reversed(self.kernel_size)):
                total = d * (k - 1)
                pads += [total // 2, total - total // 2]
            self._reversed_padding_repeated_twice = tuple(pads)
        elif padding == "valid":
            self._reversed_padding_repeated_twice = (0, 0) * n
        else:
            self._reversed_padding_repeated_twice = tuple(p for p in reversed(self.padding) for _ in (0, 1))
        shape = (in_channels, out_channels // groups) if self._transposed else \
            (out_channels, in_channels // groups)
        register_weight_and_bias(self, shape + self.kernel_size, bias and not self._transposed, device,
                                 dtype)
        if self._transposed:  # the bias has out_channels entries, not weight.shape[0]
            self.register_parameter("bias", Parameter(F.empty(out_channels, dtype=dtype, device=device))
                                    if bias else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        reset_weight_and_bias(self.weight, self.bias)

    def _check(self, input: Tensor) -> None:
        n = self._dims
        if input.ndim not in (n + 1, n + 2) or input.shape[-n - 1] != self.in_channels:
            dims = "L" if n == 1 else "H, W"
            raise ShapeError(f"{type(self).__name__}(in_channels={self.in_channels})",
                             f"got input of shape {tuple(input.shape)}; expected (N, {self.in_channels}, "
                             f"{dims}) or ({self.in_channels}, {dims})")

    def extra_repr(self) -> str:
        n = self._dims
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0,) * n:
            s += f", padding={self.padding}"
        if self.dilation != (1,) * n:
            s += f", dilation={self.dilation}"
        if self.output_padding != (0,) * n:
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s


class _Conv(_ConvNd):
    _conv = None

    def forward(self, input: Tensor) -> Tensor:
        self._check(input)
        conv = type(self)._conv
        if self.padding_mode != "zeros":
            padded = nnF.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return conv(padded, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)
        return conv(input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class Conv1d(_Conv):
    """1-D convolution: ``weight`` (out_channels, in_channels / groups, k), ``bias`` (out_channels,).

    ``padding`` is an int or ``'valid'`` / ``'same'`` (stride 1 only)."""

    _dims = 1
    _conv = staticmethod(nnF.conv1d)


class Conv2d(_Conv):
    """2-D convolution: ``weight`` (out_channels, in_channels / groups, kh, kw), ``bias`` (out_channels,).

    ``padding`` is an int, a pair, or ``'valid'`` / ``'same'`` (stride 1 only)."""

    _dims = 2
    _conv = staticmethod(nnF.conv2d)


class _ConvTranspose(_ConvNd):
    _transposed = True
    _conv = None

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 output_padding=0, groups: int = 1, bias: bool = True, dilation=1,
                 padding_mode: str = "zeros", device=None, dtype=None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, device, dtype, output_padding=output_padding)

    def forward(self, input: Tensor, output_size=None) -> Tensor:
        self._check(input)
        output_padding = self.output_padding
        if output_size is not None:  # the output_padding that reaches the requested size
            n = self._dims
            wanted = tuple(output_size)[-n:]
            smallest = [(input.shape[-n + i] - 1) * self.stride[i] - 2 * self.padding[i]
                        + self.dilation[i] * (self.kernel_size[i] - 1) + 1 for i in range(n)]
            output_padding = tuple(w - s for w, s in zip(wanted, smallest))
            if any(not 0 <= p < max(s, d) for p, s, d in zip(output_padding, self.stride, self.dilation)):
                raise ValueError(f"{type(self).__name__}: requested output size {tuple(output_size)} is "
                                 f"not reachable from input of shape {tuple(input.shape)} (smallest "
                                 f"{tuple(smallest)})")
        return type(self)._conv(input, self.weight, self.bias, self.stride, self.padding, output_padding,
                                self.groups, self.dilation)


class ConvTranspose1d(_ConvTranspose):
    """Transposed 1-D convolution: ``weight`` (in_channels, out_channels / groups, k)."""

    _dims = 1
    _conv = staticmethod(nnF.conv_transpose1d)


class ConvTranspose2d(_ConvTranspose):
    """Transposed 2-D convolution: ``weight`` (in_channels, out_channels / groups, kh, kw)."""

    _dims = 2
    _conv = staticmethod(nnF.conv_transpose2d)
