"""Questions PyTorch code asks about tensors: ``is_tensor``, ``numel``, ``is_floating_point``
(a dtype's limits, ``finfo`` and ``iinfo``, live in graphc/dtype.py), where the nonzero values
are (``nonzero``, ``argwhere``), and the check model code keeps in traced programs,
``_assert``."""

from __future__ import annotations

import numpy as np

from .. import dtype as dt
from ..errors import ShapeError
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


def _nonzero_shape(name, x):
    if x.is_meta:
        raise ShapeError(name, "the number of nonzero values depends on the data, which meta mode "
                         "(and tracing) does not know")
    return (int(np.count_nonzero(x._data())), x.ndim)


register(name="nonzero", inputs=("input",), kernel=lambda x: np.argwhere(x).astype(np.int64),
         dtype_rule=lambda name, x: ((None,), (dt.int64,)), shape_rule=_nonzero_shape,
         dtypes=dt.ALL_DTYPES,
         samples=lambda dtype, rng: [
             Sample(((rng.random((3, 4)) < 0.5).astype(dtype.np),), {}, "2-d", True),
             Sample((np.zeros((0, 2), dtype.np),), {}, "empty", True),
             Sample((np.array([0, 3, 0, 1], dtype.np),), {}, "1-d", True)],
         doc="the index of every nonzero value, one row each, in row-major order: (n, ndim)")


def nonzero(input: Tensor, *, as_tuple: bool = False):
    """The indices of the nonzero values of ``input``: an (n, ndim) int64 tensor, or with
    ``as_tuple=True`` one 1-d tensor per dim (what ``x[mask]`` indexes with)."""
    out = dispatch(OPS.nonzero, input)
    if not as_tuple:
        return out
    if input.ndim == 0:
        return (out.reshape(-1),)
    return tuple(out.unbind(1))


def argwhere(input: Tensor) -> Tensor:
    """``nonzero(input)``."""
    return dispatch(OPS.nonzero, input)
