"""Making tensors from Python data and numpy arrays: ``tensor``, ``as_tensor``, ``from_numpy``."""

from __future__ import annotations

import numpy as np

from . import dtype as dt
from .errors import OpTypeError
from .tensor import Tensor, empty_meta, from_numpy, require_available, wrap_array

__all__ = ["tensor", "as_tensor", "from_numpy", "asarray"]


def _infer_dtype(data) -> dt.dtype:
    """PyTorch's inference: any float -> default float, else any int -> int64, else bool."""
    category = None
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, Tensor):
            c = item.dtype
            return c if category is None else dt.promote_types(c, _category_dtype(category))
        if isinstance(item, np.ndarray):
            c = dt.from_numpy_dtype(item.dtype).category
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
            continue
        else:
            c = dt.scalar_category(item)
            if c is None:
                raise OpTypeError("tensor", f"could not make a tensor from {type(item).__name__} "
                                  f"{item!r}; expected numbers, nested lists or numpy arrays")
        category = c if category is None else max(category, c)
    return _category_dtype(dt.FLOATING if category is None else category)


def _category_dtype(category: int) -> dt.dtype:
    return (dt.bool_, dt.int64, dt.get_default_dtype())[category]


def _to_numpy(data, dtype: dt.dtype) -> np.ndarray:
    if isinstance(data, Tensor):
        return np.array(data._data(), dtype=dtype.np)
    if isinstance(data, (list, tuple)) and any(isinstance(x, Tensor) for x in _flat(data)):
        data = [_to_numpy(x, dtype) if isinstance(x, (Tensor, list, tuple)) else x for x in data]
    try:
        with np.errstate(over="ignore"):  # 1e5 as float16 is inf, as in PyTorch
            arr = np.array(data, dtype=dtype.np)
    except (ValueError, TypeError) as e:
        raise OpTypeError("tensor", f"could not make a tensor from the given data: {e}") from None
    if arr.dtype == object:
        raise OpTypeError("tensor", "the nested sequences have inconsistent lengths")
    return arr


def _flat(data):
    for x in data:
        if isinstance(x, (list, tuple)):
            yield from _flat(x)
        else:
            yield x


def tensor(data, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A new tensor holding a copy of ``data`` (numbers, nested lists, numpy arrays, tensors).

        >>> graphc.tensor([[1., 2.], [3., 4.]])
        tensor([[1., 2.],
                [3., 4.]])
    """
    d = dt.as_dtype(dtype) if dtype is not None else (
        dt.from_numpy_dtype(data.dtype) if isinstance(data, np.ndarray) else _infer_dtype(data))
    if isinstance(data, np.ndarray) and data.dtype == object:
        raise OpTypeError("tensor", "numpy arrays of dtype object are not supported")
    arr = _to_numpy(data, d)
    out = empty_meta(arr.shape, d) if device is not None and _is_meta(device) else wrap_array(arr, d)
    if requires_grad:
        out.requires_grad_(True)
    return out


def _is_meta(dev) -> bool:
    return require_available("tensor", dev).type == "meta"


def as_tensor(data, dtype=None, device=None) -> Tensor:
    """Like ``tensor`` but shares memory when it can (a tensor or numpy array of that dtype)."""
    if device is not None:
        require_available("as_tensor", device)
    if isinstance(data, Tensor):
        return data if dtype is None else data.to(dtype)
    if isinstance(data, np.ndarray):
        t = from_numpy(data)
        return t if dtype is None or dt.as_dtype(dtype) is t.dtype else t.to(dtype)
    return tensor(data, dtype=dtype, device=device)


asarray = as_tensor
