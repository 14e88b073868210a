"""``x[key]`` and ``x[key] = value`` with PyTorch's semantics.

Integers, slices, None and Ellipsis apply first, as views (select / slice / unsqueeze),
so ``x[1:3, 0:2]`` shares storage with ``x``. Index tensors (integer or boolean; lists
and numpy arrays become tensors) then select with numpy's advanced-indexing rules
through the ``index`` op, which copies. Writes go through ``copy_`` on the view, or
``index_put_`` when index tensors are involved, so a write is seen by every view of the
same storage.
"""

from __future__ import annotations

import operator

import numpy as np

from .. import dtype as dt
from ..errors import OpIndexError, OpTypeError
from ..symbolic import SymInt
from ..tensor import Tensor
from .dispatch import dispatch
from .functions import operand
from .registry import OPS


def _as_index_tensor(item):
    if isinstance(item, Tensor):
        return item
    if isinstance(item, (bool, np.bool_)):
        return operand(np.array(bool(item)))
    arr = np.asarray(item)
    if arr.dtype == object or arr.dtype.kind not in "biu":
        raise OpIndexError("index", f"tensors used as indices must hold integers or bools, got "
                           f"{item!r}")
    return operand(arr if arr.dtype.kind == "b" else arr.astype(np.int64))


def _normalize(key) -> list:
    if not isinstance(key, tuple):
        key = (key,)
    items = []
    for k in key:
        if k is None or k is Ellipsis or isinstance(k, slice):
            items.append(k)
        elif isinstance(k, Tensor) or isinstance(k, (list, np.ndarray, bool, np.bool_)):
            items.append(_as_index_tensor(k))
        else:
            try:  # a symbolic size stays one (x[x.shape[0] - 1])
                items.append(k if type(k) is SymInt else operator.index(k))
            except TypeError:
                raise OpTypeError("index", f"only integers, slices, None, ..., and integer or "
                                  f"bool tensors are valid indices, got {type(k).__name__} {k!r}"
                                  ) from None
    return items


def _consumed(item) -> int:
    if item is None:
        return 0
    if isinstance(item, Tensor) and item.dtype is dt.bool_:
        return item.ndim
    return 1


def _apply_basic(x: Tensor, key):
    """Apply ints, slices and None as views; return the view, index tensors and their spec."""
    items = _normalize(key)
    if sum(1 for k in items if k is Ellipsis) > 1:
        raise OpIndexError("index", "an index can only have a single ellipsis ('...')")
    used = sum(_consumed(k) for k in items if k is not Ellipsis)
    if used > x.ndim:
        raise OpIndexError("index", f"too many indices for a tensor of {x.ndim} dims "
                           f"(shape {tuple(x.shape)}): {used} were given")
    if any(k is Ellipsis for k in items):  # (by identity: == on a tensor is elementwise)
        i = next(i for i, k in enumerate(items) if k is Ellipsis)
        items[i:i + 1] = [slice(None)] * (x.ndim - used)
    view, d = x, 0
    tensors, spec = [], []
    for k in items:
        if k is None:
            view = dispatch(OPS.unsqueeze, view, dim=d)
            spec.append(None)
            d += 1
        elif isinstance(k, slice):
            if k != slice(None):
                view = dispatch(OPS.slice, view, dim=d, start=k.start, end=k.stop,
                                step=1 if k.step is None else k.step)
            spec.append(None)
            d += 1
        elif isinstance(k, Tensor):
            spec.append(len(tensors))
            tensors.append(k)
            d += _consumed(k)
        else:
            view = dispatch(OPS.select, view, dim=d, index=k)
    # trailing full slices add nothing to the key
    while spec and spec[-1] is None:
        spec.pop()
    return view, tensors, tuple(spec)


def getitem(x: Tensor, key):
    view, tensors, spec = _apply_basic(x, key)
    if not tensors:
        return view
    return dispatch(OPS.index, view, *tensors, spec=spec)


def setitem(x: Tensor, key, value) -> None:
    view, tensors, spec = _apply_basic(x, key)
    value = operand(value) if not isinstance(value, (list, tuple)) else operand(np.asarray(value))
    if isinstance(value, Tensor) and value.ndim > view.ndim and not tensors:
        # PyTorch drops the value's leading size-1 dims: x[1] = tensor([5.]) works
        lead = value.ndim - view.ndim
        if all(n == 1 for n in value.shape[:lead]):
            value = dispatch(OPS.reshape, value, size=tuple(value.shape[lead:]))
    if not tensors:
        dispatch(OPS.copy_, view, value)
    else:
        dispatch(OPS.index_put_, view, value, *tensors, spec=spec)
