"""Numeric composites PyTorch code reaches for: hypot, nan_to_num, isclose, addcmul,
addcdiv, count_nonzero, diff; and the functions built on them or on reductions:
allclose, equal, var_mean, std_mean.

Each op decomposes into elementwise primitives and reductions (compiled natively through
fusion) and is differentiated through that decomposition unless it has a rule of its own.
"""

from __future__ import annotations

import math
import operator

import numpy as np

from .. import dtype as dt
from ..errors import DTypeError, OpTypeError, OpValueError, ShapeError
from ..layout import normalize_dim
from ..tensor import Tensor
from . import functions as F
from . import samples
from .dispatch import dispatch
from .registry import APPROX, OPS, ROUNDED, Accuracy, Expose, Flag, Sample, register
from .rules import (broadcast, check_inputs, compare, describe, floating_only, no_none, promote,
                    reduced_shape, same_as_first)

ALL, NUMERIC, FLOATS = dt.ALL_DTYPES, dt.NUMERIC_DTYPES, dt.FLOAT_DTYPES
EW, COMPOSITE = Flag.ELEMENTWISE, Flag.COMPOSITE


# ---- hypot ------------------------------------------------------------------------------

def _hypot_decomposition(a, b):
    """big·sqrt(1 + (small/big)²): no overflow where a² would; inf wins over nan."""
    like = a if isinstance(a, Tensor) else b
    a, b = (v if isinstance(v, Tensor) else F.full((), v, dtype=like.dtype) for v in (a, b))
    big, small = F.maximum(F.abs(a), F.abs(b)), F.minimum(F.abs(a), F.abs(b))
    ratio = F.where(F.eq(big, 0), 0.0, small / big)
    out = big * F.sqrt(1 + ratio * ratio)
    return F.where(F.logical_or(F.isinf(a), F.isinf(b)), math.inf, out)


def _hypot_grad(ctx, g):
    out = ctx.output
    return g * ctx.input(0) / out, g * ctx.input(1) / out


# ---- nan_to_num ----------------------------------------------------------------------------

def _replacements(x_dtype: dt.dtype, nan, posinf, neginf):
    info = dt.finfo(x_dtype)
    return (0.0 if nan is None else nan, float(info.max) if posinf is None else posinf,
            float(info.min) if neginf is None else neginf)


def _nan_to_num(x, nan=0.0, posinf=None, neginf=None):
    if x.dtype.kind != "f":
        return x.copy()
    nan, posinf, neginf = _replacements(dt.as_dtype(x.dtype), nan, posinf, neginf)
    return np.nan_to_num(x, nan=nan, posinf=posinf, neginf=neginf)


def _nan_to_num_decomposition(x, nan=0.0, posinf=None, neginf=None):
    if not x.dtype.is_floating_point:
        return F.clone(x)
    nan, posinf, neginf = _replacements(x.dtype, nan, posinf, neginf)
    x = F.where(F.isnan(x), nan, x)  # (one number per where: two would make a float32)
    x = F.where(F.eq(x, math.inf), posinf, x)
    return F.where(F.eq(x, -math.inf), neginf, x)


# ---- isclose ---------------------------------------------------------------------------------

def _isclose_rule(name, a, b, rtol=1e-5, atol=1e-8, equal_nan=False):
    check_inputs(name, (a, b))
    if isinstance(a, Tensor) and isinstance(b, Tensor) and a.dtype is not b.dtype:
        raise DTypeError(name, f"expected both tensors to have one dtype, got {describe(a)} and "
                         f"{describe(b)}")
    if rtol < 0 or atol < 0:
        raise OpValueError(name, f"rtol and atol must be non-negative, got rtol={rtol}, atol={atol}")
    return compare(name, a, b)


def _isclose(a, b, rtol=1e-5, atol=1e-8, equal_nan=False):
    if a.dtype.kind != "f":  # integers and bools compare their difference in float64
        a, b = a.astype(np.float64), np.asarray(b).astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        error = np.abs(a - b)
        close = (a == b) | (np.isfinite(error) & (error <= atol + rtol * np.abs(b)))
    if equal_nan:
        close |= np.isnan(a) & np.isnan(b)
    return close


def _isclose_decomposition(a, b, rtol=1e-5, atol=1e-8, equal_nan=False):
    if not a.dtype.is_floating_point:
        a, b = a.to(dt.float64), b.to(dt.float64) if isinstance(b, Tensor) else b
    error = F.abs(a - b)
    within = F.logical_and(F.isfinite(error), F.le(error, atol + rtol * F.abs(b)))
    close = F.logical_or(F.eq(a, b), within)
    if equal_nan:
        close = F.logical_or(close, F.logical_and(F.isnan(a), F.isnan(b)))
    return close


# ---- addcmul, addcdiv -------------------------------------------------------------------------

def _pointwise_rule(divides: bool):
    def rule(name, x, t1, t2, value=1):
        casts, outs = no_none(promote)(name, x, t1, t2)
        if divides and not outs[0].is_floating_point:
            raise DTypeError(name, f"integer division is not supported "
                             f"({', '.join(describe(v) for v in (x, t1, t2))}); convert to float")
        if outs[0] is dt.bool_ or not outs[0].is_floating_point and isinstance(value, float):
            raise DTypeError(name, f"value must be an integer for {outs[0].name} inputs "
                             f"(and bool inputs are not supported), got value={value!r}")
        return casts, outs
    return rule


def _addcmul(x, t1, t2, value=1):
    return x + np.asarray(value, x.dtype) * t1 * t2


def _addcdiv(x, t1, t2, value=1):
    return x + np.asarray(value, x.dtype) * t1 / t2


def _addcmul_decomposition(x, t1, t2, value=1):
    return x + (t1 if value == 1 else value * t1) * t2


def _addcdiv_decomposition(x, t1, t2, value=1):
    return x + (t1 if value == 1 else value * t1) / t2


# ---- count_nonzero, diff ------------------------------------------------------------------------

def _count_shape(name, x, dim=None):
    return reduced_shape(name, x, dim)


def _count_nonzero(a, dim=None):
    return np.asarray(np.count_nonzero(a, axis=None if dim is None else tuple(
        d % a.ndim for d in dim) if a.ndim else None), np.int64)


def _count_decomposition(x, dim=None):
    return F.sum(F.ne(x, 0), dim if dim else None)


def _diff_shape(name, x, n=1, dim=-1):
    if x.ndim == 0:
        raise ShapeError(name, "expected a tensor with at least 1 dim, got a 0-d tensor")
    if n < 0:
        raise OpValueError(name, f"order n must be non-negative, got {n}")
    d = normalize_dim(name, dim, x.ndim)
    shape = list(x.shape)
    shape[d] = max(shape[d] - n, 0)
    return tuple(shape)


def _diff(a, n=1, dim=-1):
    return np.diff(a, n, axis=dim)


def _diff_decomposition(x, n=1, dim=-1):
    d = normalize_dim("diff", dim, x.ndim)
    for _ in range(n):
        size = x.shape[d]
        if size == 0:
            break
        later, earlier = F.narrow(x, d, 1, size - 1), F.narrow(x, d, 0, size - 1)
        x = F.ne(later, earlier) if x.dtype is dt.bool_ else later - earlier
    return F.clone(x) if n == 0 else x


# ---- samples ------------------------------------------------------------------------------------

def _pointwise_samples(dtype, rng):
    base = samples.elementwise(3, domain=((-3.0, 3.0), (-3.0, 3.0), (1.0, 3.0)))(dtype, rng)
    v = 0.5 if dtype.is_floating_point else -2
    return base + [Sample(s.inputs, {"value": v}, f"{s.desc}, value={v}") for s in base[:4]]


def _nan_to_num_samples(dtype, rng):
    """Infinities only with explicit replacements: the default ones are the dtype's limits,
    which a float64 run of a float32 sample (the accuracy test) cannot reproduce."""
    out = samples.elementwise(1, specials=False)(dtype, rng)
    if dtype.is_floating_point:
        a = samples.with_specials(samples.array(rng, (3, 4), dtype))
        out += [Sample((a,), {"nan": 1.5, "posinf": 100.0, "neginf": -7.0}, "special values"),
                Sample((np.where(np.isinf(a), 1.0, a).astype(a.dtype),), {"nan": -2.0},
                       "nan, default infinities")]
    return out


def _isclose_samples(dtype, rng):
    out = []
    for s in samples.elementwise(2, scalars=False)(dtype, rng):
        a, b = s.inputs
        if isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape \
                and a.size and dtype.is_floating_point:
            near = (a + a * np.asarray(1e-6, a.dtype)).astype(a.dtype)
            b = np.where(rng.random(a.shape) < 0.5, near, b).astype(a.dtype)
        out.append(Sample((a, b), s.attrs, s.desc))
    a = samples.with_specials(samples.array(rng, (3, 4), dtype))
    out += [Sample((a, a.copy()), {"equal_nan": True}, "equal_nan"),
            Sample((a, samples.array(rng, (3, 4), dtype)), {"rtol": 0.5, "atol": 0.5}, "loose")]
    return out


def _count_samples(dtype, rng):
    a = lambda shape, layout="contiguous": np.where(
        rng.random(shape) < 0.4, 0, samples.array(rng, shape, dtype)).astype(dtype.np)
    return [Sample((a((3, 4)),), {}, "all"), Sample((a((3, 4)),), {"dim": (1,)}, "dim 1"),
            Sample((samples.relayout(a((2, 3, 4)), "transposed"),), {"dim": (0, 2)}, "two dims"),
            Sample((a(()),), {}, "0-d"), Sample((a((0, 3)),), {"dim": (0,)}, "empty")]


def _diff_samples(dtype, rng):
    a = lambda shape, layout="contiguous": samples.array(rng, shape, dtype, layout=layout)
    return [Sample((a((5,)),), {}, "1-D"), Sample((a((3, 5), "transposed"),), {"n": 2}, "n=2"),
            Sample((a((4, 3), "strided"),), {"dim": 0}, "dim 0"),
            Sample((a((2, 3, 4), "negstep"),), {"n": 3, "dim": 1}, "n = size"),
            Sample((a((3,)),), {"n": 5}, "n > size"), Sample((a((3,)),), {"n": 0}, "n=0"),
            Sample((a((0, 2)),), {"dim": 0}, "empty")]


# ---- declarations -------------------------------------------------------------------------------

register(name="hypot", inputs=("self", "other"), kernel=np.hypot,
         dtype_rule=no_none(floating_only(promote)), shape_rule=broadcast, flags={EW, COMPOSITE},
         dtypes=FLOATS, samples=samples.elementwise(2), decomposition=_hypot_decomposition,
         # the decomposition rounds 5 times (2 ulp measured); the kernel is libm's hypot
         grad=_hypot_grad, accuracy=Accuracy(APPROX, 4, reference_ulps=2),
         expose=Expose(method=True, inplace=True),
         doc="sqrt(input² + other²) without overflow")
register(name="nan_to_num", inputs=("self",), kernel=_nan_to_num, dtype_rule=no_none(same_as_first),
         shape_rule=broadcast, attrs={"nan": 0.0, "posinf": None, "neginf": None},
         flags={EW, COMPOSITE}, dtypes=ALL,
         samples=_nan_to_num_samples,
         decomposition=_nan_to_num_decomposition,
         doc="nan, +inf and -inf replaced (by 0 and the dtype's largest and lowest values unless "
             "given)")
register(name="isclose", inputs=("self", "other"), kernel=_isclose,
         dtype_rule=no_none(_isclose_rule), shape_rule=broadcast,
         attrs={"rtol": 1e-5, "atol": 1e-8, "equal_nan": False}, flags={EW, COMPOSITE},
         dtypes=ALL, samples=_isclose_samples, decomposition=_isclose_decomposition,
         doc="|input - other| <= atol + rtol·|other| (or equal); nan equal to nan with equal_nan")
for _name, _kernel, _decomposition, _divides in (
        ("addcmul", _addcmul, _addcmul_decomposition, False),
        ("addcdiv", _addcdiv, _addcdiv_decomposition, True)):
    register(name=_name, inputs=("self", "tensor1", "tensor2"), kernel=_kernel,
             dtype_rule=_pointwise_rule(_divides), shape_rule=broadcast, attrs={"value": 1},
             flags={EW, COMPOSITE}, dtypes=FLOATS if _divides else NUMERIC,
             samples=_pointwise_samples, decomposition=_decomposition,
             accuracy=Accuracy(ROUNDED, 3), expose=Expose(method=True, inplace=True),
             doc=f"input + value·tensor1 {'/' if _divides else '·'} tensor2")
register(name="count_nonzero", inputs=("self",), kernel=_count_nonzero,
         dtype_rule=lambda name, x, dim=None: ((None,), (dt.int64,)), shape_rule=_count_shape,
         attrs={"dim": None}, flags={COMPOSITE}, dtypes=ALL, samples=_count_samples,
         decomposition=_count_decomposition, doc="how many values are not zero (int64)")
register(name="diff", inputs=("self",), kernel=_diff, dtype_rule=same_as_first,
         shape_rule=_diff_shape, attrs={"n": 1, "dim": -1}, flags={COMPOSITE}, dtypes=ALL,
         samples=_diff_samples, decomposition=_diff_decomposition,
         doc="differences of neighbours along dim, n times (bool: whether they differ)")


# ---- the public functions ------------------------------------------------------------------------

def nan_to_num(input, nan: float = 0.0, posinf: float | None = None, neginf: float | None = None):
    """nan, +inf and -inf replaced by ``nan``, ``posinf`` and ``neginf`` (by default 0 and the
    dtype's largest and lowest finite values)."""
    return dispatch(OPS.nan_to_num, input, nan=nan, posinf=posinf, neginf=neginf)


def isclose(input, other, rtol: float = 1e-05, atol: float = 1e-08, equal_nan: bool = False):
    """Elementwise ``|input - other| <= atol + rtol·|other|`` (infinities close only to
    themselves; nan to nan only with ``equal_nan``)."""
    return dispatch(OPS.isclose, input, F.operand(other), rtol=rtol, atol=atol,
                    equal_nan=equal_nan)


def allclose(input, other, rtol: float = 1e-05, atol: float = 1e-08,
             equal_nan: bool = False) -> bool:
    """Whether ``isclose`` holds everywhere (a Python bool)."""
    return _truth(F.all(isclose(input, other, rtol, atol, equal_nan)))


def equal(input, other) -> bool:
    """Whether both tensors have the same shape and the same values (a Python bool)."""
    if not isinstance(input, Tensor) or not isinstance(other, Tensor):
        raise OpTypeError("equal", f"expected two tensors, got {type(input).__name__} and "
                          f"{type(other).__name__}")
    if tuple(input.shape) != tuple(other.shape):
        return False
    return _truth(F.all(F.eq(input, other)))


def _truth(t: Tensor) -> bool:
    return bool(t.item())


def count_nonzero(input, dim=None):
    """How many values are not zero, over ``dim`` (an int, a tuple, or None for all)."""
    if dim is not None:
        dim = (operator.index(dim),) if not isinstance(dim, (tuple, list)) else tuple(dim)
    return dispatch(OPS.count_nonzero, input, dim=dim)


def diff(input, n: int = 1, dim: int = -1, prepend=None, append=None):
    """Differences of neighbours along ``dim``, taken ``n`` times; ``prepend`` / ``append``
    are joined to the input first."""
    if prepend is not None or append is not None:
        d = normalize_dim("diff", dim, input.ndim)
        parts = [F.operand(p) if isinstance(p, (Tensor, np.ndarray)) else
                 F.full(tuple(1 if i == d else s for i, s in enumerate(input.shape)), p,
                        dtype=input.dtype) for p in (prepend, input, append) if p is not None]
        input = F.cat(parts, d)
    return dispatch(OPS.diff, input, n=operator.index(n), dim=operator.index(dim))


def var_mean(input, dim=None, unbiased: bool | None = None, keepdim: bool = False, *,
             correction=None):
    """(variance, mean) over ``dim``; ``correction=1`` (default) divides the variance by N - 1."""
    if isinstance(dim, bool):
        dim, unbiased = None, dim
    return (F.var(input, dim, unbiased, keepdim, correction=correction),
            F.mean(input, dim, keepdim))


def std_mean(input, dim=None, unbiased: bool | None = None, keepdim: bool = False, *,
             correction=None):
    """(standard deviation, mean) over ``dim``; ``correction=1`` (default) divides by N - 1."""
    if isinstance(dim, bool):
        dim, unbiased = None, dim
    return (F.std(input, dim, unbiased, keepdim, correction=correction),
            F.mean(input, dim, keepdim))
