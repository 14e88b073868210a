"""Utilities, as ``torch.utils``: ``data`` (datasets, samplers, ``DataLoader``) and
``hooks`` (hook handles and module backward hooks)."""

from . import data, hooks

__all__ = ["data", "hooks"]
