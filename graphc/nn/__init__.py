"""Neural-network building blocks. ``graphc.nn.functional`` holds the functions."""

from . import functional

__all__ = ["functional"]
