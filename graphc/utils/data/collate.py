"""How a DataLoader turns a list of samples into a batch: ``default_collate`` (with
batching) and ``default_convert`` (without), as in PyTorch.

``collate`` dispatches on the first sample's type through ``default_collate_fn_map``
(type -> function); containers are walked recursively. Pass your own map to
``collate(batch, collate_fn_map=...)`` to batch another type.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping, MutableMapping, MutableSequence, Sequence
from typing import Any

import numpy as np

from ... import dtype as dt
from ...creation import as_tensor, tensor
from ...ops.functions import stack
from ...tensor import Tensor

__all__ = ["collate", "default_collate", "default_collate_fn_map", "default_convert"]

_ERROR = ("default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; "
          "found {}")
_STRING_OR_OBJECT = re.compile(r"[SaUO]")  # numpy dtype kinds with no tensor equivalent

CollateMap = dict[type | tuple[type, ...], Callable[..., Any]]


def _collate_tensors(batch: list, *, collate_fn_map: CollateMap | None = None) -> Tensor:
    return stack(batch, 0)


def _collate_arrays(batch: list, *, collate_fn_map: CollateMap | None = None) -> Tensor:
    if _STRING_OR_OBJECT.search(batch[0].dtype.str) is not None:
        raise TypeError(_ERROR.format(batch[0].dtype))
    return collate([as_tensor(b) for b in batch], collate_fn_map=collate_fn_map)


def _collate_numpy_scalars(batch: list, *, collate_fn_map: CollateMap | None = None) -> Tensor:
    return as_tensor(np.asarray(batch))


def _collate_floats(batch: list, *, collate_fn_map: CollateMap | None = None) -> Tensor:
    return tensor(batch, dtype=dt.float64)  # Python floats are doubles


def _collate_ints(batch: list, *, collate_fn_map: CollateMap | None = None) -> Tensor:
    return tensor(batch)  # int64, or bool for bools


def _collate_strings(batch: list, *, collate_fn_map: CollateMap | None = None) -> list:
    return batch


default_collate_fn_map: CollateMap = {
    Tensor: _collate_tensors,
    np.ndarray: _collate_arrays,
    (np.bool_, np.number): _collate_numpy_scalars,
    float: _collate_floats,
    int: _collate_ints,
    (str, bytes): _collate_strings,
}


def collate(batch: Sequence, *, collate_fn_map: CollateMap | None = None) -> Any:
    """Batch ``batch`` (a list of samples of one structure): leaves go through
    ``collate_fn_map`` (exact type first, then ``isinstance``); dicts, named tuples and
    sequences are batched field by field (a tuple gives a list, as in PyTorch)."""
    elem = batch[0]
    elem_type = type(elem)
    if collate_fn_map is not None:
        if elem_type in collate_fn_map:
            return collate_fn_map[elem_type](batch, collate_fn_map=collate_fn_map)
        for kind, fn in collate_fn_map.items():
            if isinstance(elem, kind):
                return fn(batch, collate_fn_map=collate_fn_map)

    def field(samples: Sequence) -> Any:
        return collate(samples, collate_fn_map=collate_fn_map)

    if isinstance(elem, Mapping):
        fields = {key: field([d[key] for d in batch]) for key in elem}
        try:
            if isinstance(elem, MutableMapping):
                clone = copy.copy(elem)  # keeps the mapping's type and any extra attributes
                clone.update(fields)
                return clone
            return elem_type(fields)
        except TypeError:  # a mapping type that cannot be rebuilt this way
            return fields
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):  # a namedtuple
        return elem_type(*(field(samples) for samples in zip(*batch)))
    if isinstance(elem, Sequence):
        size = len(elem)
        if any(len(sample) != size for sample in batch):
            raise RuntimeError("each element in list of batch should be of equal size")
        columns = list(zip(*batch))
        if isinstance(elem, tuple):
            return [field(samples) for samples in columns]
        try:
            if isinstance(elem, MutableSequence):
                clone = copy.copy(elem)
                for i, samples in enumerate(columns):
                    clone[i] = field(samples)
                return clone
            return elem_type([field(samples) for samples in columns])
        except TypeError:
            return [field(samples) for samples in columns]
    raise TypeError(_ERROR.format(elem_type))


def default_collate(batch: Sequence) -> Any:
    """The DataLoader's batching: tensors are stacked (a new first dimension), numpy
    arrays and numpy scalars become tensors and are stacked, Python floats give a float64
    tensor and ints an int64 one, strings stay a list; dicts, named tuples, lists and tuples
    are batched per field::

        >>> default_collate([(graphc.zeros(2), 1), (graphc.ones(2), 2)])
        [tensor([[0., 0.], [1., 1.]]), tensor([1, 2])]
    """
    return collate(batch, collate_fn_map=default_collate_fn_map)


def default_convert(data: Any) -> Any:
    """The DataLoader's conversion without batching (``batch_size=None``): numpy arrays
    and numpy scalars become tensors, containers are converted field by field, everything
    else is left as it is."""
    if isinstance(data, Tensor):
        return data
    if isinstance(data, np.ndarray):
        return data if _STRING_OR_OBJECT.search(data.dtype.str) is not None else as_tensor(data)
    if isinstance(data, (np.bool_, np.number)):
        return as_tensor(np.asarray(data))
    if isinstance(data, Mapping):
        fields = {key: default_convert(value) for key, value in data.items()}
        try:
            if isinstance(data, MutableMapping):
                clone = copy.copy(data)
                clone.update(fields)
                return clone
            return type(data)(fields)
        except TypeError:
            return fields
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return type(data)(*(default_convert(d) for d in data))
    if isinstance(data, tuple):
        return [default_convert(d) for d in data]
    if isinstance(data, Sequence) and not isinstance(data, (str, bytes)):
        try:
            if isinstance(data, MutableSequence):
                clone = copy.copy(data)
                for i, d in enumerate(data):
                    clone[i] = default_convert(d)
                return clone
            return type(data)([default_convert(d) for d in data])
        except TypeError:
            return [default_convert(d) for d in data]
    return data
