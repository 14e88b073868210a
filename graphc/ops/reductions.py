"""Reductions over one dim, several dims or all dims, with ``keepdim``.

The ``dim`` attribute is a tuple of dims or None (all dims). Composite reductions
(mean, var, std, logsumexp, norm) carry a decomposition into sum/amax and elementwise ops.

Precision policy: sums of squares (var, std, norm, and the statistics of layer_norm and
group_norm) accumulate in float64 and round once at the end, so a float32 input such as
[1e30, 1, 2] has a finite std and norm (PyTorch gives inf for its norm). ``sum`` and
``mean`` accumulate in the input's dtype, pairwise, as numpy and PyTorch do.
"""

from __future__ import annotations

import math

import numpy as np

from .. import dtype as dt
from ..errors import DTypeError, OpValueError
from . import functions as F
from . import samples
from .registry import Flag, register
from .rules import (
    check_inputs,
    describe,
    fixed,
    floating_only,
    promote_float,
    reduce_dims,
    reduced_shape,
    same_as_first,
)

ALL = dt.ALL_DTYPES
NUMERIC = dt.NUMERIC_DTYPES
FLOATS = dt.FLOAT_DTYPES
RED = Flag.REDUCTION
KEEP = {"dim": None, "keepdim": False}


def _axis(x: np.ndarray, dim) -> tuple[int, ...] | None:
    return reduce_dims("", dim, x.ndim) if x.ndim else None


def _accumulate_rule(name, x, dim=None, keepdim=False, dtype=None):
    """sum/prod: bool and integers accumulate in int64, as in PyTorch; ``dtype`` overrides."""
    check_inputs(name, (x,))
    if dtype is not None:
        out = dt.as_dtype(dtype)
    else:
        out = dt.int64 if x.dtype.category != dt.FLOATING else x.dtype
    return (out,), (out,)


def _mean_rule(name, x, dim=None, keepdim=False, dtype=None):
    check_inputs(name, (x,))
    out = dt.as_dtype(dtype) if dtype is not None else x.dtype
    if not out.is_floating_point:
        raise DTypeError(name, f"could not infer the output dtype: expected a floating-point "
                         f"tensor, got {describe(x)}; pass dtype= or convert with .float()")
    return (out,), (out,)


def _reduce_shape(name, x, dim=None, keepdim=False, **attrs):
    return reduced_shape(name, x, dim, keepdim)


def _nonempty_shape(name, x, dim=None, keepdim=False, **attrs):
    return reduced_shape(name, x, dim, keepdim, nonempty=True)


def _arg_shape(name, x, dim=None, keepdim=False):
    """argmax/argmin: dim=None reduces the flattened tensor (keepdim keeps every dim as 1)."""
    if dim is None:
        if x.numel() == 0:
            raise OpValueError(name, "expected a reduction dim for an empty input "
                               f"(input shape {tuple(x.shape)})")
        return tuple(1 for _ in x.shape) if keepdim else ()
    return reduced_shape(name, x, (dim,), keepdim, nonempty=True)


def _arg(kernel):
    def run(x, dim=None, keepdim=False):
        if dim is None:
            idx = kernel(x.reshape(-1))
            return np.reshape(idx, (1,) * x.ndim if keepdim else ())
        if x.ndim == 0:
            return np.zeros((), np.int64)
        return kernel(x, axis=dim, keepdims=keepdim)
    return run


def _std_var_rule(name, x, dim=None, correction=1, keepdim=False):
    return floating_only(promote_float)(name, x)


def _var(x, dim=None, correction=1, keepdim=False):
    return _var64(x, dim, correction, keepdim).astype(x.dtype)


def _std(x, dim=None, correction=1, keepdim=False):
    return np.sqrt(_var64(x, dim, correction, keepdim)).astype(x.dtype)


def _var64(x, dim, correction, keepdim):
    """The variance in float64 (a float32 variance can overflow where its std does not)."""
    axis = _axis(x, dim)
    n = math.prod(x.shape[a] for a in axis) if axis is not None else 1
    mean = np.sum(x, axis=axis, keepdims=True, dtype=np.float64) / n
    ss = np.sum(np.square(x - mean), axis=axis, keepdims=keepdim, dtype=np.float64)
    return ss / max(n - correction, 0)


def _var64_decomposition(x, dim=None, correction=1, keepdim=False):
    """The variance in float64 (see the precision policy above)."""
    dims = reduce_dims("var", dim, x.ndim)
    n = math.prod(x.shape[d] for d in dims)
    xd = x.to(dt.float64)
    centered = xd - F.mean(xd, dims, keepdim=True)
    return F.sum(centered * centered, dims, keepdim=keepdim) / max(n - correction, 0)


def _logsumexp(x, dim=None, keepdim=False):
    axis = _axis(x, dim)
    if x.size == 0:
        return np.log(np.sum(np.exp(x), axis=axis, keepdims=keepdim))
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isinf(m), 0, m)  # all -inf (or an inf): shift by 0 to avoid inf - inf
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdim else np.squeeze(out, axis=axis)


def _logsumexp_decomposition(x, dim=None, keepdim=False):
    dims = reduce_dims("logsumexp", dim, x.ndim)
    x = x.to(dt.to_float(x.dtype))
    if x.numel() == 0:  # shapes are static here; an empty reduction has no max to shift by
        return F.log(F.sum(F.exp(x), dims, keepdim=keepdim))
    m = F.amax(x, dims, keepdim=True)
    m = F.where(F.isinf(m), 0.0, m)
    out = F.log(F.sum(F.exp(x - m), dims, keepdim=True)) + m
    return F.squeeze(out, dims) if not keepdim else out


def _norm(x, p=2.0, dim=None, keepdim=False):
    axis = _axis(x, dim)
    a = np.abs(x.astype(np.float64))
    if p == math.inf:
        return np.max(a, axis=axis, keepdims=keepdim)
    if p == -math.inf:
        return np.min(a, axis=axis, keepdims=keepdim)
    if p == 0:
        return np.sum(a != 0, axis=axis, keepdims=keepdim).astype(x.dtype)
    if p == 1:
        return np.sum(a, axis=axis, keepdims=keepdim)
    if p == 2:
        return np.sqrt(np.sum(a * a, axis=axis, keepdims=keepdim))
    return np.power(np.sum(np.power(a, p), axis=axis, keepdims=keepdim), 1.0 / p)


def _norm_rule(name, x, p=2.0, dim=None, keepdim=False):
    if not isinstance(p, (int, float)) or isinstance(p, bool):
        raise OpValueError(name, f"p must be a number (or 'fro', inf), got {p!r}")
    return floating_only(promote_float)(name, x)


def _norm_shape(name, x, p=2.0, dim=None, keepdim=False):
    return reduced_shape(name, x, dim, keepdim, nonempty=abs(p) == math.inf)


def _norm_decomposition(x, p=2.0, dim=None, keepdim=False):
    dims = reduce_dims("norm", dim, x.ndim)
    if p == math.inf:
        return F.amax(F.abs(x), dims, keepdim=keepdim)
    if p == -math.inf:
        return F.amin(F.abs(x), dims, keepdim=keepdim)
    a = F.abs(x).to(dt.float64)
    if p == 0:
        out = F.sum(F.ne(a, 0).to(dt.float64), dims, keepdim=keepdim)
    elif p == 1:
        out = F.sum(a, dims, keepdim=keepdim)
    elif p == 2:
        out = F.sqrt(F.sum(a * a, dims, keepdim=keepdim))
    else:
        out = F.sum(a ** p, dims, keepdim=keepdim) ** (1.0 / p)
    return out.to(x.dtype)


def _bool_reduce_rule(name, x, dim=None, keepdim=False):
    check_inputs(name, (x,))
    return (None,), (dt.bool_,)


def _wrap_dims(kernel):
    """numpy's ``axis=`` from our ``dim`` attribute (None and () mean every dim)."""
    def run(x, dim=None, keepdim=False, **attrs):
        return kernel(x, axis=_axis(x, dim), keepdims=keepdim, **attrs)
    return run


def _with_dtype(kernel):
    def run(x, dim=None, keepdim=False, dtype=None):
        return kernel(x, axis=_axis(x, dim), keepdims=keepdim, dtype=x.dtype)
    return run


def _mean(x, dim=None, keepdim=False, dtype=None):
    axis = _axis(x, dim)
    n = math.prod(x.shape[a] for a in axis) if axis is not None else 1
    return np.sum(x, axis=axis, keepdims=keepdim, dtype=x.dtype) / x.dtype.type(n)


def _mean_decomposition(x, dim=None, keepdim=False, dtype=None):
    if dtype is not None:
        x = x.to(dtype)
    dims = reduce_dims("mean", dim, x.ndim)
    n = math.prod(x.shape[d] for d in dims)
    return F.sum(x, dims, keepdim=keepdim) / n


# ---- gradient rules ----------------------------------------------------------------

def _kept(g, x, dim, keepdim):
    """``g`` with the reduced dims put back as size 1, so it broadcasts against ``x``."""
    if keepdim or x.ndim == 0:
        return g
    dims = reduce_dims("", dim, x.ndim)
    return F.reshape(g, tuple(1 if i in dims else n for i, n in enumerate(x.shape)))


def _count(x, dim) -> int:
    return math.prod(x.shape[d] for d in reduce_dims("", dim, x.ndim)) if x.ndim else 1


def _sum_grad(ctx, g):
    x, a = ctx.input(0), ctx.attrs
    return (F.expand(_kept(g, x, a["dim"], a["keepdim"]), *x.shape),)


def _mean_grad(ctx, g):
    x, a = ctx.input(0), ctx.attrs
    return (F.expand(_kept(g, x, a["dim"], a["keepdim"]), *x.shape) / _count(x, a["dim"]),)


def _prod_grad(ctx, g):
    """∂/∂x_i of the product is the product of the others, which is also right when zeros
    occur: with one zero only that element gets a gradient, with two none does."""
    x, a = ctx.input(0), ctx.attrs
    dims = reduce_dims("", a["dim"], x.ndim) if x.ndim else ()
    zero = F.eq(x, 0)
    nonzero_prod = F.prod(F.where(zero, 1.0, x), dims, keepdim=True) if dims else F.where(zero, 1.0, x)
    zeros = F.sum(zero, dims, keepdim=True) if dims else zero.long()
    others = F.where(zero, F.where(F.eq(zeros, 1), nonzero_prod, 0.0),
                     F.where(F.eq(zeros, 0), nonzero_prod / F.where(zero, 1.0, x), 0.0))
    return (_kept(g, x, a["dim"], a["keepdim"]) * others,)


def _extreme_grad(ctx, g):
    """amax/amin: the gradient is shared equally by the elements equal to the result."""
    x, a = ctx.input(0), ctx.attrs
    out = _kept(ctx.output, x, a["dim"], a["keepdim"])
    hit = F.eq(x, out).to(g.dtype)
    dims = reduce_dims("", a["dim"], x.ndim) if x.ndim else ()
    count = F.sum(hit, dims, keepdim=True) if dims else hit
    return (_kept(g, x, a["dim"], a["keepdim"]) * hit / count,)


def _logsumexp_grad(ctx, g):
    x, a = ctx.input(0), ctx.attrs
    out = _kept(ctx.output, x, a["dim"], a["keepdim"])
    return (_kept(g, x, a["dim"], a["keepdim"]) * F.exp(x - out),)


def _std_grad(ctx, g):
    """(x - mean) / ((n - correction)·std), taken as 0 where the std is 0 (as in PyTorch)."""
    x, a = ctx.input(0), ctx.attrs
    dims = reduce_dims("", a["dim"], x.ndim) if x.ndim else ()
    mean = F.mean(x, dims, keepdim=True) if dims else x
    std = _kept(ctx.output, x, a["dim"], a["keepdim"])
    scale = max(_count(x, a["dim"]) - a["correction"], 0)
    safe = F.where(F.eq(std, 0), 1.0, std)
    return (F.where(F.eq(std, 0), 0.0, _kept(g, x, a["dim"], a["keepdim"]) * (x - mean) / (safe * scale)),)


def _norm_grad(ctx, g):
    x, a = ctx.input(0), ctx.attrs
    p = a["p"]
    out = _kept(ctx.output, x, a["dim"], a["keepdim"])
    gk = _kept(g, x, a["dim"], a["keepdim"])
    if p == 0:
        return (F.zeros_like(x),)
    if p == 1:
        return (gk * F.sign(x),)
    if abs(p) == math.inf:  # like amax of |x|: shared by the elements that reach it
        hit = F.eq(F.abs(x), out).to(g.dtype)
        dims = reduce_dims("", a["dim"], x.ndim) if x.ndim else ()
        count = F.sum(hit, dims, keepdim=True) if dims else hit
        return (gk * F.sign(x) * hit / count,)
    safe = F.where(F.eq(out, 0), 1.0, out)  # at a zero norm the gradient is taken as 0
    if p == 2:
        return (gk * x / safe,)
    return (gk * F.sign(x) * F.abs(x) ** (p - 1) / safe ** (p - 1),)


def _reduction(name, kernel, rule, shape=_reduce_shape, attrs=None, dtypes=ALL, flags=(),
               attr_sets=None, decomposition=None, grad=None, domain=(-3.0, 3.0), empty=True,
               single_dim=False, doc="", kind=None):
    """``kind``: how the backend accumulates it natively (sum prod max min all any argmax
    argmin); None for composites."""
    return register(name=name, inputs=("self",), kernel=kernel, dtype_rule=rule, shape_rule=shape,
                    attrs={**KEEP, **(attrs or {})}, flags={RED, *flags}, dtypes=dtypes,
                    samples=samples.reduction(attr_sets, domain=domain, empty=empty,
                                              single_dim=single_dim),
                    decomposition=decomposition, grad=grad, doc=doc, reduce_kind=kind)


_reduction("sum", _with_dtype(np.sum), _accumulate_rule, attrs={"dtype": None}, grad=_sum_grad,
           doc="bool and integer inputs sum in int64", kind="sum")
_reduction("prod", _with_dtype(np.prod), _accumulate_rule, attrs={"dtype": None}, grad=_prod_grad,
           domain=(-2.0, 2.0), kind="prod")
_reduction("amax", _wrap_dims(np.max), same_as_first, shape=_nonempty_shape, grad=_extreme_grad,
           empty=False, doc="propagates nan", kind="max")
_reduction("amin", _wrap_dims(np.min), same_as_first, shape=_nonempty_shape, empty=False,
           grad=_extreme_grad, doc="propagates nan", kind="min")
_reduction("all", _wrap_dims(np.all), _bool_reduce_rule, kind="all")
_reduction("any", _wrap_dims(np.any), _bool_reduce_rule, kind="any")
_reduction("mean", _mean, _mean_rule, attrs={"dtype": None}, dtypes=FLOATS, grad=_mean_grad,
           flags={Flag.COMPOSITE}, decomposition=_mean_decomposition)
_reduction("var", _var, _std_var_rule, attrs={"correction": 1}, dtypes=FLOATS,
           attr_sets=[{}, {"correction": 0}], flags={Flag.COMPOSITE},
           decomposition=lambda x, **a: _var64_decomposition(x, **a).to(x.dtype),
           doc="correction=1 is the unbiased estimate")
_reduction("std", _std, _std_var_rule, attrs={"correction": 1}, grad=_std_grad,
           dtypes=FLOATS, attr_sets=[{}, {"correction": 0}], flags={Flag.COMPOSITE},
           decomposition=lambda x, **a: F.sqrt(_var64_decomposition(x, **a)).to(x.dtype))
_reduction("logsumexp", _logsumexp, promote_float, grad=_logsumexp_grad,
           flags={Flag.COMPOSITE}, decomposition=_logsumexp_decomposition,
           doc="log(sum(exp(x))) computed stably (shifted by the max)")
_reduction("norm", _norm, _norm_rule, shape=_norm_shape, attrs={"p": 2.0}, dtypes=FLOATS,
           flags={Flag.COMPOSITE},
           attr_sets=[{}, {"p": 1.0}, {"p": math.inf}, {"p": 3.0}, {"p": 0.0}],
           decomposition=_norm_decomposition, grad=_norm_grad,
           doc="vector p-norm over dim (all dims by default)")
for _name, _kernel in (("argmax", np.argmax), ("argmin", np.argmin)):
    _reduction(_name, _arg(_kernel), fixed(dt.int64), shape=_arg_shape, empty=False,
               single_dim=True, doc="index of the first extreme value (nan counts as the extreme)",
               kind=_name)
