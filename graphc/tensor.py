"""Tensor: a strided view (shape, stride, storage offset) of a flat numpy storage.

Views share their base's ``Storage``; writes through one are seen by all. Strides are
in elements. On the ``meta`` device a storage has a size but no data, so the same view
arithmetic and shape rules run without computing anything.

Op methods (``x.add``, ``x + y``, ``x.sum()``, ``x.view(...)``) are attached by
``graphc/ops/methods.py`` so that every one of them goes through the op dispatcher.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import NoReturn

import numpy as np

from . import dtype as dt
from .errors import OpError, OpTypeError
from .layout import contiguous_strides, is_contiguous, normalize_dim, numel, reach


class device:
    """A device, as ``torch.device``: ``cpu`` (numpy) or ``meta`` (shapes and dtypes only).

    Accelerator devices (``cuda``, ``mps``, ``xpu``) can be named, compared and printed,
    as in a PyTorch build without them, but making or moving a tensor there raises a
    ``DeviceError``: graphc runs on the CPU only. ``device("cpu:0")`` and
    ``device("cpu", 0)`` have index 0 and, as in PyTorch, differ from ``device("cpu")``.
    """

    __slots__ = ("type", "index")
    _KNOWN = ("cpu", "meta", "cuda", "mps", "xpu")
    _AVAILABLE = ("cpu", "meta")

    def __init__(self, type: str | device = "cpu", index: int | None = None):
        if isinstance(type, device):
            type, index = type.type, type.index if index is None else index
        text = str(type)
        name, _, number = text.partition(":")
        if name not in self._KNOWN:
            raise ValueError(f"unknown device {type!r}; graphc has 'cpu' and 'meta' "
                             "('cuda', 'mps' and 'xpu' can be named but not used)")
        if number:
            if index is not None or not number.isdigit():
                raise ValueError(f"invalid device string {text!r}; expected 'type' or 'type:index'")
            index = int(number)
        if index is not None and (not isinstance(index, int) or index < 0):
            raise ValueError(f"device index must be a non-negative int, got {index!r}")
        self.type = name
        self.index = index

    def __eq__(self, other) -> bool:
        if isinstance(other, str):
            other = device(other)
        return isinstance(other, device) and other.type == self.type and other.index == self.index

    def __hash__(self) -> int:
        return hash((self.type, self.index))

    def __repr__(self) -> str:
        index = "" if self.index is None else f", index={self.index}"
        return f"device(type='{self.type}'{index})"

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"


class DeviceError(OpError, AssertionError):
    """A tensor made on or moved to a device graphc does not have (cuda, mps). Also an
    ``AssertionError``, which is what a PyTorch build without CUDA raises ("Torch not
    compiled with CUDA enabled")."""


def require_available(call: str, dev) -> device:
    """``dev`` as a device, if tensors can live there (cpu, meta); else a ``DeviceError``
    naming ``call``."""
    d = dev if isinstance(dev, device) else device(dev)
    if d.type not in device._AVAILABLE:
        unavailable(call, d)
    return d


def unavailable(call: str, dev: device | str = "cuda") -> NoReturn:
    """Raise the ``DeviceError`` of ``call`` needing ``dev``, a device graphc does not have."""
    raise DeviceError(call, f"device '{dev}' is not available: graphc runs on the CPU only "
                      f"(as a PyTorch build without CUDA: 'Torch not compiled with CUDA "
                      f"enabled'); use device='cpu' (graphc.cuda.is_available() is False)")


CPU = device("cpu")
META = device("meta")


class Size(tuple):
    """A tensor's shape: a tuple of ints that prints as ``graphc.Size([2, 3])``."""

    def numel(self) -> int:
        return numel(self)

    def __repr__(self) -> str:
        return f"graphc.Size({list(self)})"

    def __getitem__(self, item):
        out = super().__getitem__(item)
        return Size(out) if isinstance(item, slice) else out

    def __add__(self, other):
        return Size(tuple(self) + tuple(other))

    def __radd__(self, other):
        return Size(tuple(other) + tuple(self))


_births: list[set] = []  # the ids of storages made while ``storages_made()`` blocks run


@contextmanager
def storages_made():
    """The ids of the storages made while the block runs (a tracer tells the tensors a
    traced function makes, which are its constants, from the ones that existed before,
    which are state the compiled program must read live)."""
    made: set[int] = set()
    _births.append(made)
    try:
        yield made
    finally:
        _births.remove(made)


class Storage:
    """The flat buffer behind a tensor and its views: a 1-D numpy array (None on meta).

    ``version`` counts writes (in-place ops bump it); autograd uses it to detect a tensor
    saved for backward being modified.
    """

    __slots__ = ("array", "dtype", "size", "device", "version", "_address", "__weakref__")

    def __init__(self, array: np.ndarray | None, dtype: dt.dtype, size: int, device_: device = CPU):
        self.array = array
        self.dtype = dtype
        self.size = size
        self.device = device_
        self.version = 0
        self._address = None
        if _births:
            for made in _births:
                made.add(id(self))

    @classmethod
    def from_array(cls, flat: np.ndarray) -> Storage:
        return cls(flat, dt.from_numpy_dtype(flat.dtype), flat.shape[0])

    @classmethod
    def meta(cls, dtype: dt.dtype, size: int) -> Storage:
        return cls(None, dtype, size, META)

    def data_ptr(self) -> int:
        address = self._address
        if address is None:  # the array never changes: look its address up once
            address = self._address = 0 if self.array is None else self.array.ctypes.data
        return address

    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize


class _StorageView:
    __slots__ = ("_storage",)

    def __init__(self, storage: Storage):
        self._storage = storage

    @property
    def device(self) -> device:
        return self._storage.device

    def data_ptr(self) -> int:
        return self._storage.data_ptr()

    def nbytes(self) -> int:
        return self._storage.nbytes()

    def __len__(self) -> int:
        return self.size()


class TypedStorage(_StorageView):
    """Element view of a storage, as ``Tensor.storage()`` returns it."""

    __slots__ = ()

    @property
    def dtype(self) -> dt.dtype:
        return self._storage.dtype

    def size(self) -> int:
        return self._storage.size

    def tolist(self) -> list:
        return _require_data(self._storage, "storage().tolist()").tolist()

    def __getitem__(self, i):
        return _require_data(self._storage, "storage()[i]")[i].tolist()

    def untyped(self) -> UntypedStorage:
        return UntypedStorage(self._storage)

    def __repr__(self) -> str:
        body = " ".join(str(v) for v in self.tolist()) if self._storage.array is not None else "..."
        return f"[graphc.storage.TypedStorage(dtype={self.dtype}, size={self.size()})] {body}"


class UntypedStorage(_StorageView):
    """Byte view of a storage, as ``Tensor.untyped_storage()`` returns it."""

    __slots__ = ()

    def size(self) -> int:
        return self._storage.nbytes()

    def tolist(self) -> list[int]:
        return _require_data(self._storage, "untyped_storage().tolist()").view(np.uint8).tolist()

    def __repr__(self) -> str:
        return f"[graphc.storage.UntypedStorage(device={self.device}, nbytes={self.nbytes()})]"


def _require_data(storage: Storage, what: str) -> np.ndarray:
    if storage.array is None:
        raise OpError(what, "a meta tensor has no data; it carries only shape and dtype")
    return storage.array


class Tensor:
    """An n-dimensional strided array with PyTorch's semantics.

    Make tensors with factories (``graphc.tensor``, ``zeros``, ``arange``, ``from_numpy``...);
    ``Tensor`` itself is not a public constructor.

        >>> A = graphc.arange(12).reshape(3, 4)
        >>> A.stride(), A.T.stride(), A[1:3, 0:2].storage_offset()
        ((4, 1), (1, 4), 4)
    """

    __slots__ = ("_storage", "_shape", "_stride", "_offset", "_np", "requires_grad", "grad",
                 "grad_fn", "_base", "__weakref__", "__dict__")

    # how many times some tensor's memory was swapped (``t.data = ...``): compiled graphs
    # recheck their weights' storages only when this has changed
    data_swaps = 0

    # numpy defers to our reflected operators instead of converting us with __array__
    __array_ufunc__ = None
    __array_priority__ = 1000

    def __init__(self, *args, **kwargs):
        raise TypeError("graphc.Tensor is not constructed directly; use graphc.tensor(data), "
                        "graphc.zeros(shape), graphc.from_numpy(array), ...")

    @classmethod
    def _make(cls, storage: Storage, shape, stride, offset: int = 0, base: Tensor | None = None):
        t = object.__new__(cls)
        t._storage = storage
        t._shape = tuple(shape)
        t._stride = tuple(stride)
        t._offset = offset
        t._np = None  # the numpy view, built on first use (geometry never changes)
        t._base = base
        t.requires_grad = False
        t.grad = None
        t.grad_fn = None
        return t

    # ---- geometry -----------------------------------------------------------------
    @property
    def shape(self) -> Size:
        return Size(self._shape)

    def size(self, dim: int | None = None):
        if dim is None:
            return Size(self._shape)
        return self._shape[normalize_dim("size", dim, len(self._shape))]

    def stride(self, dim: int | None = None):
        if dim is None:
            return self._stride
        return self._stride[normalize_dim("stride", dim, len(self._shape))]

    def storage_offset(self) -> int:
        return self._offset

    @property
    def dtype(self) -> dt.dtype:
        return self._storage.dtype

    @property
    def device(self) -> device:
        return self._storage.device

    @property
    def is_meta(self) -> bool:
        return self._storage.array is None

    is_cuda = False  # graphc tensors live on the cpu (or meta); never on an accelerator
    is_mps = False

    def get_device(self) -> int:
        """-1: the cpu, as PyTorch answers for cpu tensors."""
        return -1

    def cuda(self, device=None, non_blocking: bool = False) -> Tensor:
        """Always a ``DeviceError``: graphc has no CUDA (PyTorch's CPU build raises too)."""
        unavailable("Tensor.cuda")

    def pin_memory(self) -> Tensor:
        """``self``: pinned memory only speeds copies to an accelerator, which graphc does
        not have, so there is nothing to pin (PyTorch without one raises instead)."""
        return self

    def is_pinned(self) -> bool:
        return False

    @property
    def ndim(self) -> int:
        return len(self._shape)

    def dim(self) -> int:
        return len(self._shape)

    def numel(self) -> int:
        return numel(self._shape)

    nelement = numel

    def element_size(self) -> int:
        return self._storage.dtype.itemsize

    @property
    def itemsize(self) -> int:
        return self._storage.dtype.itemsize

    @property
    def nbytes(self) -> int:
        return self.numel() * self._storage.dtype.itemsize

    def is_contiguous(self) -> bool:
        return is_contiguous(self._shape, self._stride)

    def is_floating_point(self) -> bool:
        return self._storage.dtype.is_floating_point

    def data_ptr(self) -> int:
        """Address of the first element (storage address + offset × itemsize)."""
        return self._storage.data_ptr() + self._offset * self._storage.dtype.itemsize

    def untyped_storage(self) -> UntypedStorage:
        return UntypedStorage(self._storage)

    def storage(self) -> TypedStorage:
        return TypedStorage(self._storage)

    @property
    def _version(self) -> int:
        return self._storage.version

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    def detach(self) -> Tensor:
        """The same data (shared storage), cut from the autograd graph."""
        return Tensor._make(self._storage, self._shape, self._stride, self._offset, self._base)

    @property
    def data(self) -> Tensor:
        """The data without autograd history; assigning replaces it (keeping this object)."""
        return self.detach()

    @data.setter
    def data(self, new: Tensor) -> None:
        if not isinstance(new, Tensor):
            raise TypeError(f"data must be a Tensor, got {type(new).__name__}")
        Tensor.data_swaps += 1
        self._storage, self._shape, self._stride, self._offset = \
            new._storage, new._shape, new._stride, new._offset
        self._base = new._base
        self._np = None

    # ---- data access --------------------------------------------------------------
    def numpy(self, *, force: bool = False) -> np.ndarray:
        """The tensor's data as a numpy array sharing its memory (zero-copy)."""
        if self.requires_grad and not force:
            raise OpError("numpy", "can't call numpy() on a tensor that requires grad; "
                          "use tensor.detach().numpy()")
        if self._storage.dtype is dt.bfloat16:  # numpy has no bfloat16 (PyTorch refuses too)
            raise TypeError("numpy: got unsupported dtype bfloat16 (numpy has no bfloat16); "
                            "convert first: tensor.float().numpy()")
        return self._data().view()  # a fresh array object: callers may change its metadata

    def _data(self) -> np.ndarray:
        """The numpy view over the storage, for graphc's own kernels (cached; no grad check)."""
        a = self._np
        if a is None:
            st = self._storage
            if st.array is None:
                raise OpError("numpy", "a meta tensor has no data; it carries only shape and dtype")
            item = st.dtype.itemsize
            if 0 in self._shape:  # an empty view may sit past its storage's end (as in PyTorch)
                a = np.empty(self._shape, dtype=st.array.dtype)
            else:
                a = np.ndarray(self._shape, dtype=st.array.dtype, buffer=st.array,
                               offset=self._offset * item,
                               strides=tuple(s * item for s in self._stride))
            self._np = a
        return a

    def __array__(self, dtype=None, copy=None):
        arr = self._data()
        if dtype is not None and np.dtype(dtype) != arr.dtype:
            return arr.astype(dtype)
        return arr.copy() if copy else arr

    def tolist(self):
        return self._data().tolist()

    def item(self):
        if self.numel() != 1:
            raise OpError("item", f"a Tensor with {self.numel()} elements cannot be converted to "
                          "a Python scalar (expected exactly one element)")
        return self._data().reshape(()).item()

    def __bool__(self) -> bool:
        if self.numel() != 1:
            raise OpError("bool", f"the truth value of a Tensor with {self.numel()} elements is "
                          "ambiguous; use .any() or .all()")
        return bool(self.item())

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        if self.dtype.category != dt.INTEGER or self.numel() != 1:
            raise OpTypeError("__index__", "only integer tensors of a single element can be "
                              f"used as an index, got {self.dtype} of shape {tuple(self._shape)}")
        return int(self.item())

    def __complex__(self) -> complex:
        return complex(self.item())

    def __len__(self) -> int:
        if not self._shape:
            raise TypeError("len() of a 0-d tensor")
        return self._shape[0]

    def __iter__(self):
        if not self._shape:
            raise TypeError("iteration over a 0-d tensor")
        return iter(self.unbind(0))

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        from .tensor_repr import tensor_repr

        return tensor_repr(self)

    def __format__(self, spec: str) -> str:
        if self.ndim == 0 and not self.is_meta:
            return format(self.item(), spec)
        return object.__format__(self, spec)

    def __reduce_ex__(self, protocol):
        raise TypeError("graphc tensors are not picklable; use graphc.save / graphc.load "
                        "(a safe format that never runs code)")

    def __copy__(self):
        return self.clone()

    def __deepcopy__(self, memo):
        """A new leaf with copied data (and a copied ``.grad``), as in PyTorch."""
        if id(self) in memo:
            return memo[id(self)]
        out = self.detach().clone()
        out.requires_grad = self.requires_grad
        memo[id(self)] = out
        if self.grad is not None:
            out.grad = self.grad.__deepcopy__(memo)
        return out


def _check_numpy_strides(arr: np.ndarray) -> tuple[int, ...]:
    item = arr.itemsize
    if any(s % item for s in arr.strides):
        raise OpError("from_numpy", f"array strides {arr.strides} are not a multiple of the "
                      f"element size {item}; copy it with np.ascontiguousarray first")
    return tuple(s // item for s in arr.strides)


def from_numpy(arr: np.ndarray) -> Tensor:
    """A tensor sharing ``arr``'s memory (zero-copy), with the same shape and strides.

    Writes through either are seen by both. Negative strides (``a[::-1]``) are kept.
    """
    if not isinstance(arr, np.ndarray):
        raise OpTypeError("from_numpy", f"expected np.ndarray, got {type(arr).__name__}")
    dtype = dt.from_numpy_dtype(arr.dtype)
    if arr.size == 0:
        return Tensor._make(Storage(np.empty(0, arr.dtype), dtype, 0), arr.shape,
                            contiguous_strides(arr.shape))
    stride = _check_numpy_strides(arr)
    lo, hi = reach(arr.shape, stride)
    if arr.ndim == 0:
        first = arr.reshape(1)
    else:  # a one-element view whose address is the lowest element's
        first = arr[tuple(slice(n - 1, n) if s < 0 else slice(0, 1) for n, s in zip(arr.shape, stride))]
    flat = np.lib.stride_tricks.as_strided(first, shape=(hi - lo + 1,), strides=(arr.itemsize,))
    return Tensor._make(Storage(flat, dtype, flat.shape[0]), arr.shape, stride, -lo)


def wrap_array(arr: np.ndarray, dtype: dt.dtype | None = None) -> Tensor:
    """A tensor owning a contiguous copy of ``arr`` (no copy when it already is one we own)."""
    arr = np.asarray(arr)
    if dtype is not None and arr.dtype != dtype.np:
        arr = arr.astype(dtype.np)
    elif dtype is None:
        dtype = dt.from_numpy_dtype(arr.dtype)
    if not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    flat = arr.reshape(-1)
    shape = arr.shape
    t = Tensor._make(Storage(flat, dtype, flat.shape[0]), shape, contiguous_strides(shape))
    t._np = arr
    return t


def tensors_in(value) -> list[Tensor]:
    """The tensors in a (nested) tuple, list or dict, in order: a model's outputs."""
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in tensors_in(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in tensors_in(v)]
    return []


def empty_meta(shape, dtype: dt.dtype) -> Tensor:
    shape = tuple(shape)
    return Tensor._make(Storage.meta(dtype, numel(shape)), shape, contiguous_strides(shape))


def view_of(base: Tensor, shape, stride, offset: int) -> Tensor:
    """A tensor sharing ``base``'s storage with new geometry."""
    root = base._base if base._base is not None else base
    t = Tensor._make(base._storage, shape, stride, offset, base=root)
    t.__dict__["_made_at"] = base._storage.version  # (a base given history later: autograd)
    return t


