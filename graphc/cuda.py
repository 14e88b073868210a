"""``graphc.cuda``: what PyTorch code asks about CUDA, answered for a CPU-only library.

graphc runs on the CPU only, so this module answers as a PyTorch build without CUDA does:
nothing is available, and anything that needs a GPU raises ``graphc.tensor.DeviceError``
(an ``AssertionError`` too, as PyTorch's "Torch not compiled with CUDA enabled" is). Code
that checks before it uses the GPU runs unchanged:

    device = "cuda" if graphc.cuda.is_available() else "cpu"   # "cpu"
    graphc.cuda.manual_seed_all(0)                              # nothing to seed

Differences from PyTorch's CPU build, on purpose: ``synchronize()`` does nothing (PyTorch
raises), since there is no device work to wait for and benchmark code calls it
unconditionally; ``reset_peak_memory_stats()`` does nothing (PyTorch fails with an
AttributeError).
"""

from __future__ import annotations

from typing import NoReturn

from .tensor import unavailable

__all__ = ["is_available", "device_count", "is_initialized", "init", "manual_seed",
           "manual_seed_all", "seed", "seed_all", "synchronize", "empty_cache",
           "is_bf16_supported", "memory_allocated", "max_memory_allocated", "memory_reserved",
           "max_memory_reserved", "reset_peak_memory_stats", "get_device_name",
           "get_device_capability", "get_device_properties", "current_device", "set_device"]


def is_available() -> bool:
    """False: graphc has no CUDA."""
    return False


def device_count() -> int:
    return 0


def is_initialized() -> bool:
    return False


def is_bf16_supported(including_emulation: bool = True) -> bool:
    """False, as PyTorch answers without CUDA (graphc's own bfloat16 works on the cpu)."""
    return False


# ---- calls that are no-ops without a GPU (as in PyTorch, except synchronize) -------------

def manual_seed(seed: int) -> None:
    """Nothing to seed: there is no CUDA generator (PyTorch's CPU build does nothing too).
    Seed graphc's generator with ``graphc.manual_seed``."""


def manual_seed_all(seed: int) -> None:
    """Nothing to seed (see ``manual_seed``)."""


def seed() -> None:
    """Nothing to seed (see ``manual_seed``)."""


def seed_all() -> None:
    """Nothing to seed (see ``manual_seed``)."""


def synchronize(device=None) -> None:
    """Nothing to wait for: every graphc op has finished when it returns (PyTorch's CPU
    build raises here; graphc lets timing code that calls it unconditionally run)."""


def empty_cache() -> None:
    """No GPU memory to release."""


def reset_peak_memory_stats(device=None) -> None:
    """No GPU memory statistics to reset."""


def memory_allocated(device=None) -> int:
    """0 bytes: there is no GPU memory."""
    return 0


def max_memory_allocated(device=None) -> int:
    return 0


def memory_reserved(device=None) -> int:
    return 0


def max_memory_reserved(device=None) -> int:
    return 0


# ---- calls that need a GPU: a DeviceError, as PyTorch raises without CUDA -----------------

def init() -> NoReturn:
    unavailable("cuda.init")


def get_device_name(device=None) -> NoReturn:
    unavailable("cuda.get_device_name")


def get_device_capability(device=None) -> NoReturn:
    unavailable("cuda.get_device_capability")


def get_device_properties(device=None) -> NoReturn:
    unavailable("cuda.get_device_properties")


def current_device() -> NoReturn:
    unavailable("cuda.current_device")


def set_device(device) -> NoReturn:
    unavailable("cuda.set_device")
