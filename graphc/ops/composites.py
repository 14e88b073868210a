"""Composite ops: softmax, normalisations, losses, dropout, embedding.

Each has a numpy kernel (the eager path and the reference; statistics are computed in
float64) and a decomposition into primitive ops, which is what fusion later sees.
"""

from __future__ import annotations

import math

import numpy as np

from .. import dtype as dt
from .. import random as rnd
from ..errors import DTypeError, OpIndexError, OpValueError, ShapeError
from ..layout import broadcast_shapes, normalize_dim
from . import functions as F
from . import samples
from .registry import REQUIRED, Flag, Sample, register
from .rules import describe, floating_only, is_tensor, promote, same_shape

FLOATS = dt.FLOAT_DTYPES
COMPOSITE = Flag.COMPOSITE
REDUCTIONS = ("none", "mean", "sum")


def _check_reduction(name, reduction):
    if reduction not in REDUCTIONS:
        raise OpValueError(name, f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


# ---- softmax and log_softmax -------------------------------------------------------

def _softmax_rule(name, x, dim=None, dtype=None):
    if dim is None:
        raise OpValueError(name, "dim is required (the dim the probabilities sum over)")
    if not is_tensor(x):
        raise DTypeError(name, f"expected a tensor, got {describe(x)}")
    out = dt.as_dtype(dtype) if dtype is not None else x.dtype
    if not out.is_floating_point:
        raise DTypeError(name, f"expected a floating-point tensor, got {describe(x)}; pass "
                         "dtype= or convert with .float()")
    normalize_dim(name, dim, x.ndim)
    return (out,), (out,)


def _shifted(x, dim):
    """x minus its max along dim (the max of an all -inf row is taken as 0)."""
    m = np.max(x, axis=dim, keepdims=True)
    return x - np.where(np.isneginf(m), 0, m)


def _softmax(x, dim=None, dtype=None):
    x1 = x.reshape(x.shape or (1,))
    d = dim % x1.ndim
    if x1.shape[d] == 0:
        return x.copy()
    e = np.exp(_shifted(x1, d))
    return (e / np.sum(e, axis=d, keepdims=True)).reshape(x.shape)


def _log_softmax(x, dim=None, dtype=None):
    x1 = x.reshape(x.shape or (1,))
    d = dim % x1.ndim
    if x1.shape[d] == 0:
        return x.copy()
    s = _shifted(x1, d)
    return (s - np.log(np.sum(np.exp(s), axis=d, keepdims=True))).reshape(x.shape)


def _shifted_decomposition(x, dim, dtype):
    """x minus its max along dim, in ops (the max of an all -inf row is taken as 0)."""
    if dtype is not None:
        x = x.to(dtype)
    m = F.amax(x, dim, keepdim=True)
    return x - F.where(F.eq(m, -math.inf), 0.0, m)


def _softmax_decomposition(x, dim=None, dtype=None):
    if x.numel() == 0:
        return F.clone(x.to(dtype or x.dtype))
    e = F.exp(_shifted_decomposition(x, dim, dtype))
    return e / F.sum(e, dim, keepdim=True)


def _log_softmax_decomposition(x, dim=None, dtype=None):
    if x.numel() == 0:
        return F.clone(x.to(dtype or x.dtype))
    s = _shifted_decomposition(x, dim, dtype)
    return s - F.log(F.sum(F.exp(s), dim, keepdim=True))


def _softmax_samples(dtype, rng):
    a = lambda shape, layout="contiguous": samples.array(rng, shape, dtype, -4, 4, layout)
    return [Sample((a((4, 5)),), {"dim": -1}, "rows"),
            Sample((a((4, 5), "transposed"),), {"dim": 0}, "columns, transposed"),
            Sample((a((2, 3, 4)),), {"dim": 1}, "middle dim"),
            Sample((samples.with_specials(a((3, 4))),), {"dim": 1}, "special values"),
            Sample((np.full((2, 3), -np.inf if dtype.is_floating_point else 0, dtype.np),),
                   {"dim": 1}, "all -inf"),
            Sample((a(()),), {"dim": 0}, "0-d"),
            Sample((a((2, 0)),), {"dim": 1}, "empty dim"),
            Sample((a((3, 4)).astype(np.float32),), {"dim": 1, "dtype": dtype}, "dtype=")]


# ---- normalisations ----------------------------------------------------------------

def _norm_rule(name, x, *params, **attrs):
    floating_only(promote)(name, x)
    for p in params:
        if p is not None and not is_tensor(p):
            raise DTypeError(name, f"expected tensors or None, got {describe(p)}")
    return (None,) + tuple(None if p is None else x.dtype for p in params), (x.dtype,)


def _check_param(name, what, p, shape):
    if p is not None and tuple(p.shape) != tuple(shape):
        raise ShapeError(name, f"expected {what} of shape {tuple(shape)}, got {tuple(p.shape)}")


def _layer_norm_shape(name, x, weight=None, bias=None, normalized_shape=(), eps=1e-5):
    ns = tuple(normalized_shape)
    if not ns:
        raise ShapeError(name, "normalized_shape must name at least one dim")
    if tuple(x.shape[len(x.shape) - len(ns):]) != ns or x.ndim < len(ns):
        raise ShapeError(name, f"expected an input of shape (*, {', '.join(map(str, ns))}), "
                         f"got {tuple(x.shape)}")
    _check_param(name, "weight", weight, ns)
    _check_param(name, "bias", bias, ns)
    return tuple(x.shape)


def _normalize(xd, axes, eps):
    n = math.prod(xd.shape[a] for a in axes)
    mean = xd.sum(axis=axes, keepdims=True) / n
    var = np.square(xd - mean).sum(axis=axes, keepdims=True) / n
    return (xd - mean) / np.sqrt(var + eps)


def _affine(y, weight, bias, shape):
    if weight is not None:
        y = y * weight.astype(np.float64).reshape(shape)
    if bias is not None:
        y = y + bias.astype(np.float64).reshape(shape)
    return y


def _layer_norm(x, weight=None, bias=None, normalized_shape=(), eps=1e-5):
    k = len(normalized_shape)
    axes = tuple(range(x.ndim - k, x.ndim))
    if x.size == 0:
        return x.copy()
    y = _normalize(x.astype(np.float64), axes, eps)
    return _affine(y, weight, bias, normalized_shape).astype(x.dtype)


def _standardize(x, dims, eps):
    """(x - mean) / sqrt(var + eps) with the statistics in float64 (the reductions' policy).

    A float32 input takes both statistics in one pass over x: with d = x - x0, x0 the
    block's first element, mean = x0 + E[d] and var = E[d²] - E[d]². The subtraction loses
    at most E[d²]/var ≤ n ulps of float64 (x0 is one of the n values, so (x0 - mean)² ≤
    n·var): under float32's half ulp for any n below 2^26. A float64 input keeps two
    passes (mean, then the centred squares), which float64 results need; so does an
    empty block."""
    xd = x.to(dt.float64)
    if x.dtype is not dt.float32 or any(x.shape[d] == 0 for d in dims):
        mean = F.mean(xd, dims, keepdim=True)
        centered = xd - mean
        rstd = F.rsqrt(F.mean(centered * centered, dims, keepdim=True) + eps)
        return (x - mean.to(x.dtype)) * rstd.to(x.dtype)
    x0 = x  # float32: its view is read in place, and promoted inside the row kernel
    for d in dims:
        x0 = F.narrow(x0, d, 0, 1)
    d = xd - x0
    shift = F.mean(d, dims, keepdim=True)
    var = F.clamp(F.mean(d * d, dims, keepdim=True) - shift * shift, 0.0)
    rstd = F.rsqrt(var + eps)
    # x - x0 is exact in float32 for x within a factor 2 of x0 (Sterbenz), so data far from
    # zero keeps its digits; x - mean rounded to float32 first lost them (1e4 + N(0, 0.01)
    # came out 4% wrong)
    return ((x - x0) - shift.to(x.dtype)) * rstd.to(x.dtype)


def _layer_norm_decomposition(x, weight=None, bias=None, normalized_shape=(), eps=1e-5):
    y = _standardize(x, tuple(range(x.ndim - len(normalized_shape), x.ndim)), eps)
    if weight is not None:
        y = y * weight
    return y + bias if bias is not None else y


def _rms_eps(x, eps):
    """PyTorch's default eps of rms_norm: the input dtype's machine epsilon."""
    if eps is not None:
        return eps
    return float(np.finfo(getattr(x.dtype, "np", x.dtype)).eps)  # a Tensor's or an array's


def _rms_norm_shape(name, x, weight=None, normalized_shape=(), eps=None):
    return _layer_norm_shape(name, x, weight, None, normalized_shape)


def _rms_norm(x, weight=None, normalized_shape=(), eps=None):
    axes = tuple(range(x.ndim - len(normalized_shape), x.ndim))
    if x.size == 0:
        return x.copy()
    xd = x.astype(np.float64)
    y = xd / np.sqrt(np.square(xd).mean(axis=axes, keepdims=True) + _rms_eps(x, eps))
    return _affine(y, weight, None, normalized_shape).astype(x.dtype)


def _rms_norm_decomposition(x, weight=None, normalized_shape=(), eps=None):
    dims = tuple(range(x.ndim - len(normalized_shape), x.ndim))
    xd = x.to(dt.float64)  # the mean square in float64, as layer_norm's statistics
    rstd = F.rsqrt(F.mean(xd * xd, dims, keepdim=True) + _rms_eps(x, eps))
    y = x * rstd.to(x.dtype)
    return y * weight if weight is not None else y


def _channel_shape(x) -> tuple:
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


def _batch_norm_shape(name, x, mean, var, weight=None, bias=None, eps=1e-5):
    if x.ndim < 2:
        raise ShapeError(name, f"expected an input of shape (N, C, *), got {tuple(x.shape)}")
    c = x.shape[1]
    for what, p in (("mean", mean), ("var", var), ("weight", weight), ("bias", bias)):
        _check_param(name, what, p, (c,))
    return tuple(x.shape)


def _batch_norm(x, mean, var, weight=None, bias=None, eps=1e-5):
    cs = _channel_shape(x)
    y = (x.astype(np.float64) - mean.astype(np.float64).reshape(cs)) / \
        np.sqrt(var.astype(np.float64).reshape(cs) + eps)
    return _affine(y, weight, bias, cs).astype(x.dtype)


def _batch_norm_decomposition(x, mean, var, weight=None, bias=None, eps=1e-5):
    cs = _channel_shape(x)
    y = (x - mean.reshape(cs)) * F.rsqrt(var.reshape(cs) + eps)
    if weight is not None:
        y = y * weight.reshape(cs)
    return y + bias.reshape(cs) if bias is not None else y


def _group_norm_shape(name, x, weight=None, bias=None, num_groups=1, eps=1e-5):
    if x.ndim < 2:
        raise ShapeError(name, f"expected an input of shape (N, C, *), got {tuple(x.shape)}")
    c = x.shape[1]
    if num_groups <= 0 or c % num_groups:
        raise ShapeError(name, f"{c} channels cannot be split into {num_groups} groups")
    _check_param(name, "weight", weight, (c,))
    _check_param(name, "bias", bias, (c,))
    return tuple(x.shape)


def _group_norm(x, weight=None, bias=None, num_groups=1, eps=1e-5):
    if x.size == 0:
        return x.copy()
    grouped = x.astype(np.float64).reshape(x.shape[0], num_groups, -1)
    y = _normalize(grouped, (2,), eps).reshape(x.shape)
    return _affine(y, weight, bias, _channel_shape(x)).astype(x.dtype)


def _group_norm_decomposition(x, weight=None, bias=None, num_groups=1, eps=1e-5):
    y = _standardize(x.reshape(x.shape[0], num_groups, -1), (2,), eps).reshape(x.shape)
    cs = _channel_shape(x)
    if weight is not None:
        y = y * weight.reshape(cs)
    return y + bias.reshape(cs) if bias is not None else y


def _norm_samples(kind):
    def gen(dtype, rng):
        a = lambda shape, layout="contiguous": samples.array(rng, shape, dtype, layout=layout)
        if kind == "layer_norm":
            return [Sample((a((4, 5)), a((5,)), a((5,))), {"normalized_shape": (5,)}, "affine"),
                    Sample((a((2, 3, 4), "transposed"), None, None), {"normalized_shape": (3, 4),
                           "eps": 1e-3}, "two dims, no affine"),
                    Sample((samples.with_specials(a((3, 4))), a((4,)), None),
                           {"normalized_shape": (4,)}, "special values"),
                    Sample((a((0, 4)), a((4,)), a((4,))), {"normalized_shape": (4,)}, "empty")]
        if kind == "rms_norm":
            return [Sample((a((4, 5)), a((5,))), {"normalized_shape": (5,)}, "affine"),
                    Sample((a((2, 3, 4), "transposed"), None), {"normalized_shape": (3, 4),
                           "eps": 1e-3}, "two dims, no affine"),
                    Sample((a((3, 8)), a((8,))), {"normalized_shape": (8,), "eps": 1e-6},
                           "eps"),
                    Sample((a((0, 4)), a((4,))), {"normalized_shape": (4,)}, "empty")]
        if kind == "batch_norm":
            var = lambda shape: samples.array(rng, shape, dtype, 0.1, 2.0)
            return [Sample((a((4, 3)), a((3,)), var((3,)), a((3,)), a((3,))), {}, "(N, C)"),
                    Sample((a((2, 3, 4, 5), "strided"), a((3,)), var((3,)), None, None),
                           {"eps": 1e-3}, "(N, C, H, W), no affine"),
                    Sample((a((0, 3)), a((3,)), var((3,)), a((3,)), a((3,))), {}, "empty")]
        return [Sample((a((2, 6, 4)), a((6,)), a((6,))), {"num_groups": 3}, "3 groups"),
                Sample((a((2, 4, 3, 3), "transposed"), None, None), {"num_groups": 1}, "1 group"),
                Sample((a((3, 4)), a((4,)), None), {"num_groups": 2, "eps": 1e-3}, "no spatial dims")]
    return gen


# ---- dropout, losses, embedding ----------------------------------------------------

def _dropout_rule(name, x, p=0.5, generator=None):
    if not 0.0 <= p <= 1.0:
        raise OpValueError(name, f"dropout probability has to be between 0 and 1, got {p}")
    return floating_only(promote)(name, x)


def _dropout(x, p=0.5, generator=None):
    keep = rnd.uniform(x.shape, x.dtype, generator=generator) >= x.dtype.type(p)
    if p == 1.0:
        return np.zeros_like(x)
    return x * keep / x.dtype.type(1.0 - p)


def _dropout_decomposition(x, p=0.5, generator=None):
    keep = F.rand(x.shape, dtype=x.dtype, generator=generator) >= p
    if p == 1.0:
        return x * 0.0  # (not zeros_like: the result stays connected to x, with zero gradient)
    return x * keep / (1.0 - p)


def _loss_shape(name, a, b, reduction="mean"):
    _check_reduction(name, reduction)
    shape = broadcast_shapes(name, tuple(a.shape), tuple(b.shape))
    return shape if reduction == "none" else ()


def _mse_loss(a, b, reduction="mean"):
    sq = np.square(a - b)
    return sq if reduction == "none" else (np.sum(sq) if reduction == "sum" else
                                           np.sum(sq) / sq.dtype.type(sq.size))


def _mse_decomposition(a, b, reduction="mean"):
    d = a - b
    sq = d * d
    return sq if reduction == "none" else (F.sum(sq) if reduction == "sum" else F.mean(sq))


def _ce_rule(name, x, target, weight=None, ignore_index=-100, reduction="mean",
             label_smoothing=0.0):
    floating_only(promote)(name, x)
    if not is_tensor(target):
        raise DTypeError(name, f"expected a target tensor, got {describe(target)}")
    if target.dtype is dt.bool_ or (target.dtype.is_floating_point and target.dtype is not x.dtype):
        raise DTypeError(name, "expected target to hold class indices (int64) or probabilities "
                         f"of the input's dtype {x.dtype.name}, got {describe(target)}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise OpValueError(name, f"label_smoothing must be in [0, 1], got {label_smoothing}")
    return (None, None, None if weight is None else x.dtype), (x.dtype,)


def _ce_shape(name, x, target, weight=None, ignore_index=-100, reduction="mean",
              label_smoothing=0.0):
    _check_reduction(name, reduction)
    if x.ndim == 0:
        raise ShapeError(name, "expected an input of shape (C,), (N, C) or (N, C, d1, ...), got ()")
    cdim = 1 if x.ndim >= 2 else 0
    c = x.shape[cdim]
    batch = tuple(s for i, s in enumerate(x.shape) if i != cdim)
    if target.dtype.is_floating_point:
        if tuple(target.shape) != tuple(x.shape):
            raise ShapeError(name, f"probability targets must have the input's shape "
                             f"{tuple(x.shape)}, got {tuple(target.shape)}")
    elif tuple(target.shape) != batch:
        raise ShapeError(name, f"expected class-index targets of shape {batch} for input of "
                         f"shape {tuple(x.shape)}, got {tuple(target.shape)}")
    _check_param(name, "weight", weight, (c,))
    return batch if reduction == "none" else ()


def _ce_classes(name, target, valid, c):
    bad = target[valid & ((target < 0) | (target >= c))]
    if bad.size:
        raise OpIndexError(name, f"target {bad.reshape(-1)[0]} is out of bounds for {c} classes")


def _cross_entropy(x, target, weight=None, ignore_index=-100, reduction="mean",
                   label_smoothing=0.0):
    cdim = 1 if x.ndim >= 2 else 0
    c = x.shape[cdim]
    logp = _log_softmax(x.astype(np.float64), cdim)
    wshape = tuple(c if i == cdim else 1 for i in range(x.ndim))
    w_class = 1.0 if weight is None else weight.astype(np.float64).reshape(wshape)
    if target.dtype.kind == "f":
        t = target.astype(np.float64)
        if label_smoothing:
            t = t * (1 - label_smoothing) + label_smoothing / c
        loss = -np.sum(logp * t * w_class, axis=cdim)
        if reduction == "mean":
            loss = np.sum(loss) / (x.size // c) if x.size else np.float64(np.nan)
        elif reduction == "sum":
            loss = np.sum(loss)
        return loss.astype(x.dtype)
    valid = target != ignore_index
    _ce_classes("cross_entropy", target, valid, c)
    t = np.where(valid, target, 0)
    picked = -np.take_along_axis(logp, np.expand_dims(t, cdim), axis=cdim).squeeze(cdim)
    w = (np.ones(t.shape) if weight is None else weight.astype(np.float64)[t]) * valid
    loss = picked * w
    if label_smoothing:
        smooth = -np.sum(logp * w_class, axis=cdim) * valid
        loss = (1 - label_smoothing) * loss + (label_smoothing / c) * smooth
    if reduction == "sum":
        loss = np.sum(loss)
    elif reduction == "mean":
        loss = np.sum(loss) / np.sum(w)
    return np.asarray(loss).astype(x.dtype)


def _cross_entropy_decomposition(x, target, weight=None, ignore_index=-100, reduction="mean",
                                 label_smoothing=0.0):
    cdim = 1 if x.ndim >= 2 else 0
    c = x.shape[cdim]
    logp = F.log_softmax(x, cdim)
    wshape = tuple(c if i == cdim else 1 for i in range(x.ndim))
    w_class = None if weight is None else weight.reshape(wshape)
    if target.dtype.is_floating_point:
        t = target * (1 - label_smoothing) + label_smoothing / c if label_smoothing else target
        terms = logp * t if w_class is None else logp * t * w_class
        loss = -F.sum(terms, (cdim,))
        if reduction == "mean":
            return F.sum(loss) / (x.numel() // c) if x.numel() else F.sum(loss) * math.nan
        return F.sum(loss) if reduction == "sum" else loss
    valid = target != ignore_index
    t = F.where(valid, target, 0)
    picked = -F.squeeze(F.gather(logp, cdim, F.unsqueeze(t, cdim)), cdim)
    w = valid.to(x.dtype) if weight is None else \
        F.index_select(weight, 0, t.reshape(-1)).reshape(t.shape) * valid
    loss = picked * w
    if label_smoothing:
        smooth = -F.sum(logp if w_class is None else logp * w_class, (cdim,)) * valid
        loss = (1 - label_smoothing) * loss + (label_smoothing / c) * smooth
    if reduction == "sum":
        return F.sum(loss)
    return F.sum(loss) / F.sum(w) if reduction == "mean" else loss


def _loss_samples(kind):
    def gen(dtype, rng):
        a = lambda shape, layout="contiguous": samples.array(rng, shape, dtype, layout=layout)
        if kind == "mse_loss":
            return [Sample((a((3, 4)), a((3, 4), "transposed")), {"reduction": r}, r)
                    for r in REDUCTIONS] + [Sample((a((0,)), a((0,))), {}, "empty")]
        cls = lambda shape, c: rng.integers(0, c, shape)
        probs = lambda shape: _softmax(a(shape), 1)
        return [Sample((a((4, 5)), cls((4,), 5), None), {"reduction": r}, f"indices {r}")
                for r in REDUCTIONS] + [
            Sample((a((4, 5)), np.array([1, -100, 4, 0]), a((5,)) + 3.5),
                   {"label_smoothing": 0.1}, "weight, ignore_index, smoothing"),
            Sample((a((2, 3, 4)), cls((2, 4), 3), None), {"reduction": "none"}, "(N, C, d)"),
            Sample((a((5,)), np.array(2), None), {}, "unbatched"),
            Sample((a((4, 5)), probs((4, 5)), a((5,)) + 3.5), {"label_smoothing": 0.2},
                   "probability targets")]
    return gen


def _embedding_rule(name, indices, weight, padding_idx=None):
    if not is_tensor(indices) or indices.dtype not in dt.INT_DTYPES:
        raise DTypeError(name, f"expected int64 or int32 indices, got {describe(indices)}")
    if not is_tensor(weight):
        raise DTypeError(name, f"expected a weight tensor, got {describe(weight)}")
    return (None, None), (weight.dtype,)


def _embedding_shape(name, indices, weight, padding_idx=None):
    if weight.ndim != 2:
        raise ShapeError(name, f"expected a 2-D weight (num_embeddings, dim), got "
                         f"{tuple(weight.shape)}")
    return tuple(indices.shape) + (weight.shape[1],)


def _embedding(indices, weight, padding_idx=None):
    n = weight.shape[0]
    bad = indices[(indices < 0) | (indices >= n)]
    if bad.size:
        raise OpIndexError("embedding", f"index {bad.reshape(-1)[0]} is out of range for "
                           f"{n} embeddings")
    return weight[indices]


def _embedding_decomposition(indices, weight, padding_idx=None):
    rows = F.index_select(weight, 0, indices.reshape(-1))
    return rows.reshape(tuple(indices.shape) + (weight.shape[1],))


# ---- gradient rules (composites without one run their decomposition under autograd) ----

def _softmax_grad(ctx, g):
    y, d = ctx.output, ctx.attrs["dim"]
    return (y * (g - F.sum(g * y, d, keepdim=True)),)


def _log_softmax_grad(ctx, g):
    d = ctx.attrs["dim"]
    return (g - F.exp(ctx.output) * F.sum(g, d, keepdim=True),)


def _embedding_grad(ctx, g):
    indices, pad = ctx.input(0), ctx.attrs["padding_idx"]
    n, dim = ctx.shape(1)
    rows = F.reshape(g, -1, dim)
    flat = F.reshape(indices, -1)
    if pad is not None:  # the padding row gets no gradient
        rows = F.where(F.unsqueeze(F.ne(flat, pad % n), 1), rows, 0.0)
    zeros = F.zeros((n, dim), dtype=g.dtype)
    return None, F.index_put(zeros, (flat,), rows, accumulate=True)


# ---- attention ---------------------------------------------------------------------

def _sdpa_rule(name, q, k, v, attn_mask=None, is_causal=False, scale=None):
    if any(not is_tensor(t) or t.dtype is not q.dtype for t in (q, k, v)):
        raise DTypeError(name, "expected query, key and value of one floating dtype, got "
                         + ", ".join(describe(t) for t in (q, k, v)))
    if attn_mask is not None and not (is_tensor(attn_mask) and (
            attn_mask.dtype is dt.bool_ or attn_mask.dtype is q.dtype)):
        raise DTypeError(name, f"attn_mask must be bool or {q.dtype.name}, got {describe(attn_mask)}")
    floating_only(promote)(name, q)
    return (None, None, None, None), (q.dtype,)


def _sdpa_shape(name, q, k, v, attn_mask=None, is_causal=False, scale=None):
    if q.ndim < 2 or k.ndim < 2 or v.ndim < 2:
        raise ShapeError(name, f"expected query, key, value of shape (..., L, E), got "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ShapeError(name, f"query {tuple(q.shape)}, key {tuple(k.shape)} and value "
                         f"{tuple(v.shape)} do not fit (E of query and key, S of key and value)")
    if is_causal and attn_mask is not None:
        raise OpValueError(name, "pass either attn_mask or is_causal=True, not both")
    batch = broadcast_shapes(name, tuple(q.shape[:-2]), tuple(k.shape[:-2]), tuple(v.shape[:-2]))
    if attn_mask is not None:
        broadcast_shapes(name, batch + (q.shape[-2], k.shape[-2]), tuple(attn_mask.shape))
    return batch + (q.shape[-2], v.shape[-1])


def _sdpa(q, k, v, attn_mask=None, is_causal=False, scale=None):
    s = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = np.matmul(q, np.swapaxes(k, -1, -2)) * q.dtype.type(s)
    if is_causal:
        L, S = q.shape[-2], k.shape[-2]
        attn_mask = np.tril(np.ones((L, S), bool))
    if attn_mask is not None:
        scores = np.where(attn_mask, scores, -np.inf) if attn_mask.dtype == np.bool_ \
            else scores + attn_mask
    e = np.exp(scores - np.max(scores, axis=-1, keepdims=True))
    return np.matmul(e / np.sum(e, axis=-1, keepdims=True), v)


def _sdpa_decomposition(q, k, v, attn_mask=None, is_causal=False, scale=None):
    s = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = F.matmul(q, F.transpose(k, -2, -1)) * s
    if is_causal:  # query i sees keys j <= i: an index comparison, so sizes stay symbolic
        attn_mask = F.ge(F.unsqueeze(F.arange(q.shape[-2]), -1), F.arange(k.shape[-2]))
    if attn_mask is not None:
        scores = F.where(attn_mask, scores, -math.inf) if attn_mask.dtype is dt.bool_ \
            else scores + attn_mask
    return F.matmul(F.softmax(scores, -1), v)


def _sdpa_samples(dtype, rng):
    a = lambda *shape, layout="contiguous": samples.array(rng, shape, dtype, layout=layout)
    mask = np.tril(np.ones((4, 5), bool), k=1)
    return [Sample((a(2, 3, 4, 8), a(2, 3, 5, 8), a(2, 3, 5, 6), None), {}, "heads"),
            Sample((a(4, 8, layout="transposed"), a(4, 8), a(4, 8), None), {"is_causal": True},
                   "causal"),
            Sample((a(2, 4, 8), a(2, 5, 8), a(1, 5, 3), mask), {"scale": 0.5}, "bool mask"),
            Sample((a(2, 4, 8), a(2, 5, 8), a(2, 5, 3), a(4, 5)), {}, "additive mask")]


register(name="softmax", inputs=("self",), kernel=_softmax, dtype_rule=_softmax_rule,
         shape_rule=same_shape, attrs={"dim": REQUIRED, "dtype": None}, flags={COMPOSITE},
         dtypes=FLOATS, samples=_softmax_samples, decomposition=_softmax_decomposition,
         grad=_softmax_grad,
         doc="exp(x - max) / sum(exp(x - max)) along dim")
register(name="log_softmax", inputs=("self",), kernel=_log_softmax, dtype_rule=_softmax_rule,
         shape_rule=same_shape, attrs={"dim": REQUIRED, "dtype": None}, flags={COMPOSITE},
         dtypes=FLOATS, samples=_softmax_samples, decomposition=_log_softmax_decomposition,
         grad=_log_softmax_grad)
register(name="layer_norm", inputs=("input", "weight", "bias"), kernel=_layer_norm,
         dtype_rule=_norm_rule, shape_rule=_layer_norm_shape,
         attrs={"normalized_shape": REQUIRED, "eps": 1e-5}, flags={COMPOSITE}, dtypes=FLOATS,
         samples=_norm_samples("layer_norm"), decomposition=_layer_norm_decomposition,
         doc="normalise over the trailing normalized_shape dims (biased variance)")
register(name="rms_norm", inputs=("input", "weight"), kernel=_rms_norm, dtype_rule=_norm_rule,
         shape_rule=_rms_norm_shape, attrs={"normalized_shape": REQUIRED, "eps": None},
         flags={COMPOSITE}, dtypes=FLOATS, samples=_norm_samples("rms_norm"),
         decomposition=_rms_norm_decomposition,
         doc="x / sqrt(mean(x²) + eps) over the trailing normalized_shape dims, times weight; "
             "eps=None: the dtype's machine epsilon")
register(name="batch_norm", inputs=("input", "mean", "var", "weight", "bias"), kernel=_batch_norm,
         dtype_rule=_norm_rule, shape_rule=_batch_norm_shape, attrs={"eps": 1e-5},
         flags={COMPOSITE}, dtypes=FLOATS, samples=_norm_samples("batch_norm"),
         decomposition=_batch_norm_decomposition,
         doc="normalise channel dim 1 with the given statistics; nn.functional.batch_norm "
             "computes batch statistics and updates running ones in training mode")
register(name="group_norm", inputs=("input", "weight", "bias"), kernel=_group_norm,
         dtype_rule=_norm_rule, shape_rule=_group_norm_shape, attrs={"num_groups": REQUIRED, "eps": 1e-5},
         flags={COMPOSITE}, dtypes=FLOATS, samples=_norm_samples("group_norm"),
         decomposition=_group_norm_decomposition)
register(name="dropout", inputs=("self",), kernel=_dropout, dtype_rule=_dropout_rule,
         shape_rule=same_shape, attrs={"p": 0.5, "generator": None},
         flags={COMPOSITE, Flag.RANDOM, Flag.IMPURE}, dtypes=FLOATS,
         samples=lambda dtype, rng: [Sample((samples.array(rng, (4, 5), dtype),), {"p": p}, f"p={p}")
                                     for p in (0.0, 0.3, 1.0)],
         decomposition=_dropout_decomposition,
         doc="zero each value with probability p, scale the rest by 1/(1-p)")
register(name="mse_loss", inputs=("input", "target"), kernel=_mse_loss,
         dtype_rule=floating_only(promote), shape_rule=_loss_shape, attrs={"reduction": "mean"},
         flags={COMPOSITE}, dtypes=FLOATS, samples=_loss_samples("mse_loss"),
         decomposition=_mse_decomposition)
register(name="cross_entropy", inputs=("input", "target", "weight"), kernel=_cross_entropy,
         dtype_rule=_ce_rule, shape_rule=_ce_shape,
         attrs={"ignore_index": -100, "reduction": "mean", "label_smoothing": 0.0},
         flags={COMPOSITE}, dtypes=FLOATS, samples=_loss_samples("cross_entropy"),
         decomposition=_cross_entropy_decomposition,
         doc="log_softmax over dim 1 (dim 0 for 1-D input) + negative log likelihood; "
             "targets are class indices or probabilities")
register(name="embedding", inputs=("input", "weight"), kernel=_embedding,
         dtype_rule=_embedding_rule, shape_rule=_embedding_shape, attrs={"padding_idx": None},
         flags={COMPOSITE}, dtypes=dt.ALL_DTYPES,
         samples=lambda dtype, rng: [
             Sample((rng.integers(0, 6, (2, 3)), samples.array(rng, (6, 4), dtype)), {}, "2-D"),
             Sample((np.array(5), samples.array(rng, (6, 4), dtype, layout="transposed")), {}, "0-d"),
             Sample((np.zeros((0,), np.int64), samples.array(rng, (6, 4), dtype)), {}, "empty")],
         decomposition=_embedding_decomposition, grad=_embedding_grad,
         doc="weight[input]: rows of weight by index (the padding_idx row gets no gradient)")
register(name="scaled_dot_product_attention", inputs=("query", "key", "value", "attn_mask"),
         kernel=_sdpa, dtype_rule=_sdpa_rule, shape_rule=_sdpa_shape,
         attrs={"is_causal": False, "scale": None}, flags={COMPOSITE}, dtypes=FLOATS,
         samples=_sdpa_samples, decomposition=_sdpa_decomposition,
         doc="softmax(query @ keyᵀ · scale + mask) @ value; a bool mask keeps where True")
