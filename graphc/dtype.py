"""dtypes and PyTorch's type-promotion rules.

graphc has five compute dtypes, ordered by promotion: bool < int32 < int64 < float32 <
float64, and two storage-only floats, float16 (``half``) and bfloat16, between int64 and
float32 (float16 with bfloat16 gives float32, as in PyTorch). Ops on float16/bfloat16
compute in float32 and round the result to the storage dtype (``dtype.compute``; the
dispatcher does the conversion), which is what PyTorch's CPU kernels do for most ops.
bfloat16 arrays are numpy arrays of ``ml_dtypes.bfloat16``.
Promotion follows PyTorch (c10's ResultTypeState): operands fall in three tiers —
tensors with dimensions, zero-dimensional tensors, and Python scalars — and a lower
tier only changes the result when it belongs to a higher category (bool < integer <
floating). A Python float counts as the default float dtype, a Python int as int64.

    >>> result_type(arange(3), 2.5)            # int64 tensor + Python float
    graphc.float32
    >>> result_type(ones(3, dtype=int32), ones(3, dtype=int64))
    graphc.int64
"""

from __future__ import annotations

import numbers

import ml_dtypes  # numpy has no bfloat16; ml_dtypes (from the JAX project) gives it one
import numpy as np

BOOL, INTEGER, FLOATING = 0, 1, 2  # categories, in promotion order


class dtype:
    """A graphc element type. Compare by identity: ``x.dtype is graphc.float32``."""

    __slots__ = ("name", "short", "np", "itemsize", "category", "rank", "compute")

    def __init__(self, name: str, short: str, np_dtype, category: int, rank: int, compute=None):
        self.name = name
        self.short = short  # the spelling used in IR dumps: f32[8, 64]
        self.np = np.dtype(np_dtype)
        self.itemsize = self.np.itemsize
        self.category = category
        self.rank = rank
        self.compute = self if compute is None else compute  # the dtype kernels compute in

    @property
    def is_floating_point(self) -> bool:
        return self.category == FLOATING

    @property
    def is_signed(self) -> bool:
        return self.category != BOOL

    def __repr__(self) -> str:
        return f"graphc.{self.name}"

    def __reduce__(self):
        return (as_dtype, (self.name,))


bool_ = dtype("bool", "b8", np.bool_, BOOL, 0)
int32 = dtype("int32", "i32", np.int32, INTEGER, 1)
int64 = dtype("int64", "i64", np.int64, INTEGER, 2)
float32 = dtype("float32", "f32", np.float32, FLOATING, 4)
float64 = dtype("float64", "f64", np.float64, FLOATING, 5)
# storage-only: one rank, so that promoting one with the other gives float32
float16 = dtype("float16", "f16", np.float16, FLOATING, 3, compute=float32)
bfloat16 = dtype("bfloat16", "bf16", ml_dtypes.bfloat16, FLOATING, 3, compute=float32)

# the compute dtypes: the op table's declared dtypes and its test samples
ALL_DTYPES: tuple[dtype, ...] = (bool_, int32, int64, float32, float64)
FLOAT_DTYPES: tuple[dtype, ...] = (float32, float64)
INT_DTYPES: tuple[dtype, ...] = (int32, int64)
NUMERIC_DTYPES: tuple[dtype, ...] = (int32, int64, float32, float64)
HALF_DTYPES: tuple[dtype, ...] = (float16, bfloat16)  # stored in 16 bits, computed in float32
STORAGE_DTYPES: tuple[dtype, ...] = ALL_DTYPES + HALF_DTYPES  # every dtype a tensor may have
_BY_NAME = {d.name: d for d in STORAGE_DTYPES} | {
    "float": float32, "double": float64, "int": int32, "long": int64, "half": float16,
}
_BY_NP = {d.np: d for d in STORAGE_DTYPES}

_default_float = float32


def get_default_dtype() -> dtype:
    """The dtype of Python floats and of float factories without a dtype (float32)."""
    return _default_float


def set_default_dtype(d) -> None:
    """Set the default float dtype; only float32 and float64 are allowed (as in PyTorch)."""
    global _default_float
    d = as_dtype(d)
    if not d.is_floating_point:
        raise TypeError(f"set_default_dtype: only floating-point dtypes are allowed, got {d}")
    _default_float = d


def as_dtype(d) -> dtype:
    """Accept a graphc dtype, a numpy dtype, a name ('float32') or a Python type.

    Python types follow PyTorch: ``float`` is float64, ``int`` is int64, ``bool`` is bool.
    """
    if isinstance(d, dtype):
        return d
    if d is float:
        return float64
    if d is int:
        return int64
    if d is bool:
        return bool_
    if isinstance(d, str):
        name = d.removeprefix("graphc.").removeprefix("torch.")
        if name in _BY_NAME:
            return _BY_NAME[name]
        raise TypeError(f"unknown dtype {d!r}; expected one of "
                        f"{', '.join(x.name for x in STORAGE_DTYPES)}")
    try:
        npd = np.dtype(d)
    except TypeError:
        raise TypeError(f"expected a dtype, got {d!r}") from None
    return from_numpy_dtype(npd)


def from_numpy_dtype(npd) -> dtype:
    npd = np.dtype(npd)
    found = _BY_NP.get(npd) if npd.isnative else None
    if found is None:
        supported = ", ".join(x.name for x in STORAGE_DTYPES)
        hint = ""
        if npd.kind == "f":
            hint = " (convert with .astype(np.float32))"
        elif npd.kind in "iu":
            hint = " (convert with .astype(np.int64))"
        order = "" if npd.isnative else " in non-native byte order"
        raise TypeError(f"graphc does not support numpy dtype {npd}{order}; supported: {supported}{hint}")
    return found


def promote_types(a: dtype, b: dtype) -> dtype:
    """The smallest dtype both ``a`` and ``b`` convert to: bool < int32 < int64 < float16 or
    bfloat16 < float32 < float64; float16 with bfloat16 gives float32 (neither holds the other)."""
    if a.rank != b.rank:
        return a if a.rank > b.rank else b
    return a if a is b else float32


def scalar_category(x) -> int | None:
    """The category of a Python (or numpy) scalar, or None if ``x`` is not a scalar."""
    t = type(x)
    if t is float:
        return FLOATING
    if t is int:
        return INTEGER
    if isinstance(x, (bool, np.bool_)):
        return BOOL
    if isinstance(x, numbers.Integral):
        return INTEGER
    if isinstance(x, numbers.Real):
        return FLOATING
    return None


def is_scalar(x) -> bool:
    return scalar_category(x) is not None


def scalar_dtype(x) -> dtype:
    """The dtype a Python scalar stands for: bool, int64, or the default float."""
    cat = scalar_category(x)
    if cat is None:
        raise TypeError(f"expected a Python number, got {type(x).__name__}")
    return (bool_, int64, _default_float)[cat]


def _combine(higher: dtype | None, lower: dtype | None) -> dtype | None:
    """Combine a result from a higher tier with one from a lower tier (PyTorch's rule)."""
    if higher is None:
        return lower
    if lower is None:
        return higher
    if higher.category == FLOATING:
        return higher
    if higher is bool_ or lower.category == FLOATING:
        return promote_types(higher, lower)
    return higher


def result_type(*operands) -> dtype:
    """PyTorch's result type for tensors and Python scalars (``None`` operands are ignored).

    Anything with ``.dtype`` and ``.ndim`` (Tensor, TensorMeta) counts as a tensor.
    """
    if len(operands) == 2:  # the common case: two tensors with dims of one dtype
        a, b = operands
        da, db = getattr(a, "dtype", None), getattr(b, "dtype", None)
        if da is db and isinstance(da, dtype) and a.ndim and b.ndim:
            return da
    dim = zero = wrapped = None
    for x in operands:
        if x is None:
            continue
        d = getattr(x, "dtype", None)
        if isinstance(d, dtype):
            if x.ndim > 0:
                dim = d if dim is None else promote_types(dim, d)
            else:
                zero = d if zero is None else promote_types(zero, d)
        else:
            s = scalar_dtype(x)
            wrapped = s if wrapped is None else promote_types(wrapped, s)
    out = _combine(dim, _combine(zero, wrapped))
    if out is None:
        raise TypeError("result_type: expected at least one tensor or number")
    return out


def to_float(d: dtype) -> dtype:
    """``d`` if floating, else the default float dtype (used by exp, sqrt, true division...)."""
    return d if d.category == FLOATING else _default_float


class finfo:
    """Machine limits of a floating dtype, as ``torch.finfo``: ``bits``, ``eps``, ``max``,
    ``min``, ``tiny`` (= ``smallest_normal``), ``resolution`` and ``dtype`` (its name).

        >>> graphc.finfo(graphc.float16).max
        65504.0
    """

    def __init__(self, type=None):
        d = _default_float if type is None else as_dtype(type)
        if not d.is_floating_point:
            raise TypeError(f"finfo: expected a floating-point dtype, got {d}")
        info = ml_dtypes.finfo(d.np)  # numpy's finfo, extended to bfloat16
        self.bits = d.itemsize * 8
        self.eps, self.max, self.min = float(info.eps), float(info.max), float(info.min)
        self.tiny = self.smallest_normal = float(info.tiny)
        self.resolution = 10.0 ** -int(info.precision)
        self.dtype = d.name

    def __repr__(self) -> str:
        return (f"finfo(resolution={self.resolution}, min={self.min}, max={self.max}, "
                f"eps={self.eps}, smallest_normal={self.tiny}, tiny={self.tiny}, dtype={self.dtype})")


class iinfo:
    """Limits of an integer dtype, as ``torch.iinfo``: ``bits``, ``min``, ``max``, ``dtype``."""

    def __init__(self, type):
        d = as_dtype(type)
        if d.category != INTEGER:
            raise TypeError(f"iinfo: expected an integer dtype, got {d}")
        info = np.iinfo(d.np)
        self.bits, self.min, self.max, self.dtype = info.bits, int(info.min), int(info.max), d.name

    def __repr__(self) -> str:
        return f"iinfo(min={self.min}, max={self.max}, dtype={self.dtype})"
