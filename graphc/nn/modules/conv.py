"""``Conv2d``: 2-D convolution (cross-correlation) over (N, C, H, W) or (C, H, W) input."""

from __future__ import annotations

from ...errors import ShapeError
from ...tensor import Tensor
from .. import functional as nnF
from ..module import Module
from .linear import register_weight_and_bias, reset_weight_and_bias

_TORCH_ONLY_PADDING_MODES = ("reflect", "replicate", "circular")


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


class Conv2d(Module):
    """2-D convolution: ``weight`` (out_channels, in_channels / groups, kh, kw), ``bias`` (out_channels,).

    ``padding`` is an int, a pair, or ``'valid'`` / ``'same'`` (stride 1 only). Only
    ``padding_mode='zeros'`` is supported.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] | str = 0,
                 dilation: int | tuple[int, int] = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", device=None, dtype=None) -> None:
        super().__init__()
        name = f"Conv2d({in_channels}, {out_channels})"
        if groups <= 0:
            raise ValueError(f"{name}: groups must be a positive integer, got {groups}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: in_channels and out_channels must be divisible by groups, "
                             f"got groups={groups}")
        if isinstance(padding, str):
            if padding not in ("valid", "same"):
                raise ValueError(f"{name}: invalid padding string {padding!r}, should be one of "
                                 "{'valid', 'same'}")
            if padding == "same" and _pair(stride) != (1, 1):
                raise ValueError(f"{name}: padding='same' is not supported for strided convolutions "
                                 f"(stride={stride})")
        if padding_mode in _TORCH_ONLY_PADDING_MODES:
            raise NotImplementedError(f"{name}: padding_mode={padding_mode!r} is not supported by graphc; "
                                      "use padding_mode='zeros', or pad the input beforehand")
        if padding_mode != "zeros":
            raise ValueError(f"{name}: padding_mode must be one of 'zeros', 'reflect', 'replicate' or "
                             f"'circular', got {padding_mode!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding = padding if isinstance(padding, str) else _pair(padding)
        self.dilation = _pair(dilation)
        self.transposed = False
        self.output_padding = (0, 0)
        self.groups = groups
        self.padding_mode = padding_mode
        register_weight_and_bias(self, (out_channels, in_channels // groups) + self.kernel_size, bias,
                                 device, dtype)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        reset_weight_and_bias(self.weight, self.bias)

    def forward(self, input: Tensor) -> Tensor:
        if input.ndim not in (3, 4) or input.shape[-3] != self.in_channels:
            raise ShapeError(f"Conv2d(in_channels={self.in_channels})",
                             f"got input of shape {tuple(input.shape)}; expected (N, {self.in_channels}, "
                             f"H, W) or ({self.in_channels}, H, W)")
        return nnF.conv2d(input, self.weight, self.bias, self.stride, self.padding, self.dilation,
                          self.groups)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s
