"""Pooling layers over (N, C, H, W) or (C, H, W) input, and (N, C, L) or (C, L) for the 1-D ones."""

from __future__ import annotations

from ...tensor import Tensor
from .. import functional as nnF
from ..module import Module


class _MaxPoolNd(Module):
    """The maximum over each ``kernel_size`` window (``stride`` defaults to ``kernel_size``)."""

    _fn = None  # the functional form

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1,
                 return_indices: bool = False, ceil_mode: bool = False) -> None:
        super().__init__()
        if return_indices:
            raise NotImplementedError(f"{type(self).__name__}(return_indices=True) is not "
                                      "supported by graphc")
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = padding
        self.dilation = dilation
        self.return_indices = return_indices
        self.ceil_mode = ceil_mode

    def forward(self, input: Tensor) -> Tensor:
        return type(self)._fn(input, self.kernel_size, self.stride, self.padding, self.dilation,
                              ceil_mode=self.ceil_mode)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class MaxPool2d(_MaxPoolNd):
    """Max pooling of (N, C, H, W) or (C, H, W) input; sizes are ints or pairs."""

    _fn = staticmethod(nnF.max_pool2d)


class MaxPool1d(_MaxPoolNd):
    """Max pooling of (N, C, L) or (C, L) input."""

    _fn = staticmethod(nnF.max_pool1d)


class AvgPool2d(Module):
    """The mean over each ``kernel_size`` window (``stride`` defaults to ``kernel_size``)."""

    def __init__(self, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None,
                 padding: int | tuple[int, int] = 0, ceil_mode: bool = False,
                 count_include_pad: bool = True, divisor_override: int | None = None) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = padding
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad
        self.divisor_override = divisor_override

    def forward(self, input: Tensor) -> Tensor:
        return nnF.avg_pool2d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                              self.count_include_pad, self.divisor_override)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    """Average pooling to a fixed ``output_size`` (an int, a pair, or None in a pair to keep a dim)."""

    def __init__(self, output_size: int | tuple[int | None, int | None]) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, input: Tensor) -> Tensor:
        return nnF.adaptive_avg_pool2d(input, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AvgPool1d(Module):
    """The mean over each ``kernel_size`` window of (N, C, L) or (C, L) input."""

    def __init__(self, kernel_size: int, stride: int | None = None, padding: int = 0,
                 ceil_mode: bool = False, count_include_pad: bool = True) -> None:
        super().__init__()
        self.kernel_size = _one(kernel_size)
        self.stride = _one(stride if stride is not None else kernel_size)
        self.padding = _one(padding)
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad

    def forward(self, input: Tensor) -> Tensor:
        return nnF.avg_pool1d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                              self.count_include_pad)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


def _one(value) -> tuple[int]:
    """PyTorch's AvgPool1d keeps its sizes as 1-tuples."""
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


class _AdaptivePool(Module):
    _fn = None

    def __init__(self, output_size, return_indices: bool = False) -> None:
        super().__init__()
        if return_indices:
            raise NotImplementedError(f"{type(self).__name__}(return_indices=True) is not supported by "
                                      "graphc")
        self.output_size = output_size
        self.return_indices = return_indices

    def forward(self, input: Tensor) -> Tensor:
        return type(self)._fn(input, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveAvgPool1d(_AdaptivePool):
    """Average pooling of (N, C, L) or (C, L) input to ``output_size`` bins."""

    _fn = staticmethod(nnF.adaptive_avg_pool1d)

    def __init__(self, output_size: int) -> None:
        Module.__init__(self)
        self.output_size = output_size


class AdaptiveMaxPool1d(_AdaptivePool):
    """Max pooling of (N, C, L) or (C, L) input to ``output_size`` bins."""

    _fn = staticmethod(nnF.adaptive_max_pool1d)


class AdaptiveMaxPool2d(_AdaptivePool):
    """Max pooling to a fixed ``output_size`` (an int, a pair, or None in a pair to keep a dim)."""

    _fn = staticmethod(nnF.adaptive_max_pool2d)
