"""``graphc.backends`` and the process-wide switches PyTorch code sets before it runs.

PyTorch programs tune their backends at start-up (``torch.backends.cudnn.benchmark = True``,
``torch.set_float32_matmul_precision("high")``); with graphc they run unchanged. graphc has
one CPU backend whose results these switches do not change: the flags keep what was set
and answer what PyTorch answers on a CPU-only build; each switch's docstring says what,
if anything, it does in graphc.

    import graphc.backends.cudnn as cudnn
    cudnn.benchmark = True               # kept, has no effect
    graphc.set_num_threads(4)            # compiled programs built from now on use 4 threads
"""

from __future__ import annotations

import os
import warnings

_PRECISIONS = ("highest", "high", "medium")
_matmul_precision = "highest"
_deterministic = False
_deterministic_warn_only = False


def set_float32_matmul_precision(precision: str) -> None:
    """Record ``"highest"``, ``"high"`` or ``"medium"`` (another value warns and is ignored,
    as in PyTorch). graphc's float32 matmuls are always full float32 ("highest"): there
    is no TF32 or bfloat16 shortcut to allow."""
    global _matmul_precision
    if precision not in _PRECISIONS:
        warnings.warn(f"set_float32_matmul_precision: expected one of {', '.join(_PRECISIONS)}, "
                      f"got {precision!r}; ignored", stacklevel=2)
        return
    _matmul_precision = precision


def get_float32_matmul_precision() -> str:
    return _matmul_precision


def use_deterministic_algorithms(mode: bool, *, warn_only: bool = False) -> None:
    """Record the mode. graphc's ops are deterministic whatever it says: eager kernels are
    numpy's, and a compiled program gives the same result on every run of one machine."""
    global _deterministic, _deterministic_warn_only
    _deterministic, _deterministic_warn_only = bool(mode), bool(warn_only)


def are_deterministic_algorithms_enabled() -> bool:
    return _deterministic


def is_deterministic_algorithms_warn_only_enabled() -> bool:
    return _deterministic_warn_only


def set_num_threads(n: int) -> None:
    """Threads of the compiled programs built from now on (graphc's ``GRAPHC_NUM_THREADS``,
    which this sets); programs already compiled keep theirs. Eager ops run on numpy, whose
    BLAS keeps its own thread count."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise RuntimeError(f"set_num_threads expects a positive integer, got {n!r}")
    os.environ["GRAPHC_NUM_THREADS"] = str(n)


def get_num_threads() -> int:
    """The threads compiled programs use: ``GRAPHC_NUM_THREADS``, else the usable cores."""
    from ..codegen import thread_count

    return thread_count()


from . import cuda, cudnn, mps  # noqa: E402  (cuda reads the matmul precision above)

__all__ = ["cuda", "cudnn", "mps", "set_float32_matmul_precision", "get_float32_matmul_precision",
           "use_deterministic_algorithms", "are_deterministic_algorithms_enabled",
           "is_deterministic_algorithms_warn_only_enabled", "set_num_threads", "get_num_threads"]
