"""Padding layers: ``ZeroPad1d/2d``, ``ConstantPad1d/2d``, ``ReflectionPad1d/2d``,
``ReplicationPad1d/2d`` and ``CircularPad1d/2d``, each ``F.pad`` with a fixed mode.

``padding`` is an int (every side) or (left, right) for 1-D, (left, right, top, bottom)
for 2-D, as in PyTorch.
"""

from __future__ import annotations

from ...tensor import Tensor
from .. import functional as nnF
from ..module import Module


class _PadNd(Module):
    _mode = "constant"
    _sides = 2  # values in `padding`: 2 for 1-D, 4 for 2-D

    def __init__(self, padding: int | tuple[int, ...], value: float | None = None) -> None:
        super().__init__()
        self.padding = (padding,) * self._sides if isinstance(padding, int) else tuple(padding)
        if len(self.padding) != self._sides:
            raise ValueError(f"{type(self).__name__}: padding must be an int or {self._sides} ints, "
                             f"got {padding!r}")
        if value is not None:
            self.value = value

    def forward(self, input: Tensor) -> Tensor:
        if self._mode == "constant":
            return nnF.pad(input, self.padding, "constant", self.value)
        return nnF.pad(input, self.padding, self._mode)

    def extra_repr(self) -> str:
        if self._mode == "constant":
            return f"padding={self.padding}, value={self.value}"
        return f"{self.padding}"


class ConstantPad1d(_PadNd):
    """Pad the last dim with ``value``."""

    def __init__(self, padding: int | tuple[int, int], value: float) -> None:
        super().__init__(padding, value)


class ConstantPad2d(_PadNd):
    """Pad the last two dims with ``value``."""

    _sides = 4

    def __init__(self, padding: int | tuple[int, int, int, int], value: float) -> None:
        super().__init__(padding, value)


class ZeroPad1d(ConstantPad1d):
    """Pad the last dim with zeros."""

    def __init__(self, padding: int | tuple[int, int]) -> None:
        super().__init__(padding, 0.0)

    def extra_repr(self) -> str:
        return f"{self.padding}"


class ZeroPad2d(ConstantPad2d):
    """Pad the last two dims with zeros."""

    def __init__(self, padding: int | tuple[int, int, int, int]) -> None:
        super().__init__(padding, 0.0)

    def extra_repr(self) -> str:
        return f"{self.padding}"


class ReflectionPad1d(_PadNd):
    """Pad the last dim with its mirror image (the edge value not repeated)."""

    _mode = "reflect"


class ReflectionPad2d(_PadNd):
    """Pad the last two dims with their mirror image (the edge value not repeated)."""

    _mode = "reflect"
    _sides = 4


class ReplicationPad1d(_PadNd):
    """Pad the last dim by repeating its edge values."""

    _mode = "replicate"


class ReplicationPad2d(_PadNd):
    """Pad the last two dims by repeating their edge values."""

    _mode = "replicate"
    _sides = 4


class CircularPad1d(_PadNd):
    """Pad the last dim with values from its other end (wrapping around)."""

    _mode = "circular"


class CircularPad2d(_PadNd):
    """Pad the last two dims with values from their other end (wrapping around)."""

    _mode = "circular"
    _sides = 4
