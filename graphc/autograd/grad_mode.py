"""Grad mode: whether ops on tensors that require grad are recorded for backward.

``no_grad()``, ``enable_grad()`` and ``set_grad_enabled(mode)`` work as context managers
and as decorators, per thread, as in PyTorch; ``set_grad_enabled(False)`` called as a
statement also switches the mode from then on.
"""

from __future__ import annotations

import functools
import threading


class _GradState(threading.local):
    enabled = True


_state = _GradState()


def is_grad_enabled() -> bool:
    return _state.enabled


class _GradMode:
    def __init__(self, mode: bool):
        self.mode = bool(mode)

    def __enter__(self):
        self.prev = _state.enabled
        _state.enabled = self.mode
        return self

    def __exit__(self, *exc):
        _state.enabled = self.prev

    def __call__(self, fn):
        mode = self.mode

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with _GradMode(mode):
                return fn(*args, **kwargs)
        return wrapper


class no_grad(_GradMode):
    """Ops in this block are not recorded; their results do not require grad."""

    def __init__(self):
        super().__init__(False)


class enable_grad(_GradMode):
    """Record ops in this block, even inside ``no_grad``."""

    def __init__(self):
        super().__init__(True)


class inference_mode(_GradMode):
    """``torch.inference_mode(mode=True)``: as ``no_grad`` here (graphc keeps no separate
    inference tensors); ``mode=False`` leaves grad mode as it is. Also a decorator, with
    or without the call: ``@inference_mode`` and ``@inference_mode()``."""

    def __new__(cls, mode=True):
        if callable(mode):  # @inference_mode without parentheses
            return cls(True)(mode)
        return super().__new__(cls)

    def __init__(self, mode: bool = True):
        super().__init__(False)
        self.active = bool(mode)

    def __enter__(self):
        self.prev = _state.enabled
        if self.active:
            _state.enabled = False
        return self

    def __call__(self, fn):
        active = self.active

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with inference_mode(active):
                return fn(*args, **kwargs)
        return wrapper


class set_grad_enabled(_GradMode):
    """Switch grad mode now; as a context manager, restore it on exit."""

    def __init__(self, mode: bool):
        super().__init__(mode)
        self.prev = _state.enabled
        _state.enabled = self.mode

    def __enter__(self):
        return self  # already switched in __init__

    def __call__(self, fn):
        _state.enabled = self.prev  # as a decorator it must not switch the mode now
        return super().__call__(fn)
