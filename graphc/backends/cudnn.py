"""``graphc.backends.cudnn``: cuDNN's flags, as a PyTorch build without CUDA has them.

graphc has no cuDNN: the flags keep what code sets and change nothing
(``benchmark = True`` is a common first line of a training script).
"""

from __future__ import annotations

from contextlib import contextmanager

enabled = True
benchmark = False
benchmark_limit = 10
deterministic = False
allow_tf32 = True


def is_available() -> bool:
    return False


def version() -> None:
    """None: no cuDNN."""
    return None


@contextmanager
def flags(enabled: bool = False, benchmark: bool = False, benchmark_limit: int = 10,
          deterministic: bool = False, allow_tf32: bool = True):
    """Set the flags inside the block, then restore them (as ``torch.backends.cudnn.flags``)."""
    g = globals()
    names = ("enabled", "benchmark", "benchmark_limit", "deterministic", "allow_tf32")
    saved = {k: g[k] for k in names}
    g.update(zip(names, (enabled, benchmark, benchmark_limit, deterministic, allow_tf32)))
    try:
        yield
    finally:
        g.update(saved)
