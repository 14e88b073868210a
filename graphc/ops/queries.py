"""Questions PyTorch code asks about tensors: ``is_tensor``, ``numel``, ``is_floating_point``
(a dtype's limits, ``finfo`` and ``iinfo``, live in graphc/dtype.py), and the check model code
keeps in traced programs, ``_assert``."""

from __future__ import annotations

import numpy as np

from .. import dtype as dt
from ..tensor import Tensor
from .dispatch import dispatch
from .registry import OPS, Flag, Sample, register


def is_tensor(obj) -> bool:
    """Whether ``obj`` is a graphc Tensor."""
    return isinstance(obj, Tensor)


def numel(input: Tensor) -> int:
    """The number of values in ``input``."""
    return input.numel()


def is_floating_point(input: Tensor) -> bool:
    """Whether ``input``'s dtype is a floating-point type."""
    return input.is_floating_point()



def _check(condition, message=""):
    if not np.all(condition):
        raise AssertionError(message)
    return np.ones((), np.bool_)


register(name="assert_true", inputs=("condition",), kernel=_check,
         dtype_rule=lambda name, c, message="": ((None,), (dt.bool_,)),
         shape_rule=lambda name, c, message="": (), attrs={"message": ""},
         flags={Flag.IMPURE}, dtypes=dt.ALL_DTYPES,
         samples=lambda dtype, rng: [Sample((np.ones((2, 3), dtype.np),), {"message": "m"}),
                                     Sample((np.ones((), dtype.np),), {})],
         doc="raise AssertionError(message) unless every value of condition is true (kept in "
             "compiled programs: an effect, never removed)")


def _assert(condition, message: str = "") -> None:
    """``torch._assert``: raise ``AssertionError(message)`` unless ``condition`` holds.

    A tensor condition is an op, so a traced or compiled program keeps the check and runs
    it on every call; a Python or symbolic-size condition is checked while tracing (and
    the sizes it reads are guarded).
    """
    if isinstance(condition, Tensor):
        dispatch(OPS.assert_true, condition, message=str(message))
    elif not condition:
        raise AssertionError(message)
