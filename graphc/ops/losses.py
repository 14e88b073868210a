"""Loss ops beyond mse_loss and cross_entropy (composites.py): nll, l1, smooth L1, Huber,
binary cross entropy (on probabilities and on logits) and KL divergence.

Each is a composite: a numpy kernel computing in float64 (the eager path and the
reference) and a decomposition into primitive ops (what fusion compiles), with PyTorch's
reductions: ``'none'``, ``'sum'`` and ``'mean'`` (nll_loss's mean is weighted: the sum
of the picked, weighted values over the sum of their weights; kl_div also takes
``'batchmean'``, the sum over the size of dim 0).
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from .. import dtype as dt
from ..errors import DTypeError, OpValueError, ShapeError
from ..layout import broadcast_shapes
from . import functions as F
from . import samples
from .composites import REDUCTIONS, _ce_classes, _check_param, _check_reduction, _loss_shape
from .dispatch import dispatch
from .registry import OPS, Flag, Sample, register
from .rules import describe, floating_only, is_tensor, promote

FLOATS = dt.FLOAT_DTYPES
COMPOSITE = Flag.COMPOSITE
LOG_FLOOR = -100.0  # binary_cross_entropy clamps its logs here, as PyTorch does
BCE_EPS = float(np.float32(1e-12))  # its gradient's floor for x·(1 - x): PyTorch's, in float32


def _reduce_np(loss, reduction, dtype):
    if reduction == "sum":
        loss = np.sum(loss)
    elif reduction == "mean":
        loss = np.sum(loss) / loss.size if loss.size else np.float64(np.nan)
    return np.asarray(loss).astype(dtype)


def _reduce(loss, reduction):
    if reduction == "sum":
        return F.sum(loss)
    return F.mean(loss) if reduction == "mean" else loss


def _same_shape(name, x, target):
    """PyTorch refuses targets of another shape for the binary cross entropies (ValueError)."""
    if tuple(target.shape) != tuple(x.shape):
        raise OpValueError(name, f"expected a target of the input's shape {tuple(x.shape)}, "
                           f"got {tuple(target.shape)}")


def _pair_samples(name, attr_sets, low=-3.0, high=3.0, target=(-3.0, 3.0)):
    """(input, target, *Nones) samples in every reduction."""
    def gen(dtype, rng):
        a = lambda shape, lo=low, hi=high, layout="contiguous": samples.array(
            rng, shape, dtype, lo, hi, layout)
        t = lambda shape, layout="contiguous": a(shape, *target, layout=layout)
        rest = (None,) * (len(OPS[name].inputs) - 2)
        out = [Sample((a((3, 4)), t((3, 4), "transposed"), *rest), {"reduction": r, **attr_sets[0]},
                      r) for r in REDUCTIONS]
        out += [Sample((a((2, 3, 4)), t((2, 3, 4)), *rest), more, f"{more}") for more in attr_sets[1:]]
        out += [Sample((a((0,)), t((0,)), *rest), attr_sets[0], "empty"),
                Sample((a(()), t(()), *rest), attr_sets[0], "0-d")]
        return out
    return gen


# ---- nll_loss ------------------------------------------------------------------------

def _nll_rule(name, x, target, weight=None, ignore_index=-100, reduction="mean"):
    floating_only(promote)(name, x)
    if not is_tensor(target) or target.dtype not in dt.INT_DTYPES:
        raise DTypeError(name, f"expected target to hold class indices (int64), got "
                         f"{describe(target)}")
    if weight is not None and not is_tensor(weight):
        raise DTypeError(name, f"expected a weight tensor or None, got {describe(weight)}")
    return (None, None, None if weight is None else x.dtype), (x.dtype,)


def _nll_shape(name, x, target, weight=None, ignore_index=-100, reduction="mean"):
    _check_reduction(name, reduction)
    if x.ndim == 0:
        raise ShapeError(name, "expected an input of shape (C,), (N, C) or (N, C, d1, ...), got ()")
    cdim = 1 if x.ndim >= 2 else 0
    batch = tuple(s for i, s in enumerate(x.shape) if i != cdim)
    if x.ndim >= 2 and (target.ndim == 0 or target.shape[0] != x.shape[0]):
        raise OpValueError(name, f"expected input batch_size ({x.shape[0]}) to match target "
                           f"batch_size ({target.shape[0] if target.ndim else 'a 0-d target'}): "
                           f"input {tuple(x.shape)}, target {tuple(target.shape)}")
    if tuple(target.shape) != batch:
        raise ShapeError(name, f"expected a target of shape {batch} for input of shape "
                         f"{tuple(x.shape)}, got {tuple(target.shape)}")
    _check_param(name, "weight", weight, (x.shape[cdim],))
    return batch if reduction == "none" else ()


def _nll_loss(x, target, weight=None, ignore_index=-100, reduction="mean"):
    cdim = 1 if x.ndim >= 2 else 0
    valid = target != ignore_index
    _ce_classes("nll_loss", target, valid, x.shape[cdim])
    t = np.where(valid, target, 0)
    picked = -np.take_along_axis(x.astype(np.float64), np.expand_dims(t, cdim), cdim).squeeze(cdim)
    w = (np.ones(t.shape) if weight is None else weight.astype(np.float64)[t]) * valid
    loss = picked * w
    if reduction == "sum":
        loss = np.sum(loss)
    elif reduction == "mean":
        with np.errstate(invalid="ignore"):
            loss = np.sum(loss) / np.sum(w)  # every target ignored: 0/0, nan as in PyTorch
    return np.asarray(loss).astype(x.dtype)


def _nll_decomposition(x, target, weight=None, ignore_index=-100, reduction="mean"):
    cdim = 1 if x.ndim >= 2 else 0
    valid = F.ne(target, ignore_index)
    t = F.where(valid, target, 0)
    picked = -F.squeeze(F.gather(x, cdim, F.unsqueeze(t, cdim)), cdim)
    w = valid.to(x.dtype) if weight is None else \
        F.index_select(weight, 0, t.reshape(-1)).reshape(t.shape) * valid
    loss = picked * w
    if reduction == "sum":
        return F.sum(loss)
    return F.sum(loss) / F.sum(w) if reduction == "mean" else loss


def _nll_grad(ctx, g):
    """-g·w at each picked class; where no weight is picked (all targets ignored, the mean
    0/0) the gradient is 0, as in PyTorch."""
    x, target, weight = ctx.inputs
    cdim = 1 if x.ndim >= 2 else 0
    c = x.shape[cdim]
    valid = F.ne(target, ctx.attrs["ignore_index"])
    t = F.where(valid, target, 0)
    w = valid.to(x.dtype) if weight is None else \
        F.index_select(weight, 0, t.reshape(-1)).reshape(t.shape) * valid
    if ctx.attrs["reduction"] == "mean":
        g = g / F.sum(w)
    gx = gw = None
    if ctx.needs(0):
        coefficient = F.where(F.ne(w, 0), -g * w, 0.0)
        classes = F.arange(c).reshape(tuple(c if i == cdim else 1 for i in range(x.ndim)))
        gx = F.where(F.eq(F.unsqueeze(t, cdim), classes), F.unsqueeze(coefficient, cdim), 0.0)
    if ctx.needs(2):  # (PyTorch does not differentiate the weight; graphc does, as for CE)
        loss = -F.squeeze(F.gather(x, cdim, F.unsqueeze(t, cdim)), cdim)
        if ctx.attrs["reduction"] == "mean":  # g is already divided by the weights' sum
            loss = loss - F.sum(loss * w) / F.sum(w)
        per = F.where(valid, g * loss, 0.0)
        gw = F.index_put(F.zeros((c,), dtype=x.dtype), (t.reshape(-1),), per.reshape(-1),
                         accumulate=True)
    return gx, None, gw


def _nll_samples(dtype, rng):
    a = lambda shape, layout="contiguous": samples.array(rng, shape, dtype, layout=layout)
    cls = lambda shape, c: rng.integers(0, c, shape)
    return [Sample((a((4, 5)), cls((4,), 5), None), {"reduction": r}, r) for r in REDUCTIONS] + [
        Sample((a((4, 5), "transposed"), np.array([1, -100, 4, 0]), a((5,)) + 3.5), {},
               "weight, ignore_index"),
        Sample((a((4, 5)), np.array([1, 3, 3, 0]), a((5,)) + 3.5), {"ignore_index": 3,
               "reduction": "sum"}, "ignore_index=3, sum"),
        Sample((a((2, 3, 4)), cls((2, 4), 3), a((3,)) + 3.5), {"reduction": "none"}, "(N, C, d)"),
        Sample((a((2, 3, 2, 2)), cls((2, 2, 2), 3), None), {}, "(N, C, d1, d2)"),
        Sample((a((5,)), np.array(2), None), {}, "unbatched"),
        Sample((a((2, 3)), np.array([-100, -100]), None), {}, "all ignored: nan")]


# ---- l1, smooth l1, huber ---------------------------------------------------------------

def _l1_loss(a, b, reduction="mean"):
    return _reduce_np(np.abs(a.astype(np.float64) - b), reduction, a.dtype)


def _smooth_l1_rule(name, a, b, reduction="mean", beta=1.0):
    if beta < 0:
        raise OpValueError(name, f"beta must not be negative, got {beta}")
    return floating_only(promote)(name, a, b)


def _smooth_l1_loss(a, b, reduction="mean", beta=1.0):
    # each element in the inputs' dtype, as PyTorch computes it; the reduction in float64
    d = np.abs(a - b)
    loss = d if beta == 0 else np.where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta)
    return _reduce_np(loss, reduction, a.dtype)


def _smooth_l1_decomposition(a, b, reduction="mean", beta=1.0):
    d = F.abs(a - b)
    loss = d if beta == 0 else F.where(F.lt(d, beta), 0.5 * d * d / beta, d - 0.5 * beta)
    return _reduce(loss, reduction)


def _huber_rule(name, a, b, reduction="mean", delta=1.0):
    if not delta > 0:
        raise OpValueError(name, f"delta must be positive, got {delta}")
    return floating_only(promote)(name, a, b)


def _huber_loss(a, b, reduction="mean", delta=1.0):
    d = np.abs(a - b)  # (as smooth_l1_loss)
    loss = np.where(d < delta, 0.5 * d * d, delta * (d - 0.5 * delta))
    return _reduce_np(loss, reduction, a.dtype)


def _huber_decomposition(a, b, reduction="mean", delta=1.0):
    d = F.abs(a - b)
    return _reduce(F.where(F.lt(d, delta), 0.5 * (d * d), delta * (d - 0.5 * delta)), reduction)


def _smooth_shape(name, a, b, reduction="mean", **_):
    return _loss_shape(name, a, b, reduction=reduction)


def _pair_scale(ctx, g):
    """The cotangent of each element of input-vs-target loss before its reduction."""
    if ctx.attrs["reduction"] == "mean":
        return g / math.prod(broadcast_shapes("loss gradient", ctx.shape(0), ctx.shape(1)))
    return g


def _pair_grad(slope):
    """The gradient of loss(input - target): slope(d, attrs) is the loss's derivative in d."""
    def rule(ctx, g):
        d = ctx.input(0) - ctx.input(1)
        gd = _pair_scale(ctx, g) * slope(d, ctx.attrs)
        return gd if ctx.needs(0) else None, -gd if ctx.needs(1) else None
    return rule


def _smooth_l1_slope(d, attrs):
    beta = attrs["beta"]
    return F.sign(d) if beta == 0 else F.where(F.lt(F.abs(d), beta), d / beta, F.sign(d))


def _huber_slope(d, attrs):
    delta = attrs["delta"]
    return F.where(F.lt(F.abs(d), delta), d, delta * F.sign(d))


# ---- binary cross entropy -------------------------------------------------------------

def _weight_rule(name, x, target, *weights, **attrs):
    casts, outs = floating_only(promote)(name, x, target)
    for w in weights:
        if w is not None and not is_tensor(w):
            raise DTypeError(name, f"expected weight tensors or None, got {describe(w)}")
    return casts + tuple(None if w is None else outs[0] for w in weights), outs


def _bce_shape(name, x, target, weight=None, reduction="mean"):
    _check_reduction(name, reduction)
    _same_shape(name, x, target)
    if weight is not None:
        if broadcast_shapes(name, tuple(weight.shape), tuple(x.shape)) != tuple(x.shape):
            raise ShapeError(name, f"weight of shape {tuple(weight.shape)} does not broadcast "
                             f"to the input's shape {tuple(x.shape)}")
    return tuple(x.shape) if reduction == "none" else ()


def _bce(x, target, weight=None, reduction="mean"):
    if not np.all((x >= 0) & (x <= 1)):
        raise OpValueError("binary_cross_entropy", "all elements of input should be between "
                           "0 and 1 (probabilities; for logits use binary_cross_entropy_with_logits)")
    xd, t = x.astype(np.float64), target.astype(np.float64)
    with np.errstate(divide="ignore"):
        loss = -(t * np.maximum(np.log(xd), LOG_FLOOR) + (1 - t) * np.maximum(np.log1p(-xd),
                                                                              LOG_FLOOR))
    if weight is not None:
        loss = loss * weight
    return _reduce_np(loss, reduction, x.dtype)


def _bce_decomposition(x, target, weight=None, reduction="mean"):
    loss = -(target * F.clamp(F.log(x), LOG_FLOOR) + (1 - target) * F.clamp(F.log1p(-x), LOG_FLOOR))
    return _reduce(loss if weight is None else loss * weight, reduction)


def _reduction_scale(ctx, g):
    """The cotangent of each element of an elementwise loss before its reduction."""
    if ctx.attrs["reduction"] == "mean":
        return g / math.prod(ctx.shape(0))
    return g


def _bce_grad(ctx, g):
    # PyTorch's: (x - t) / max(x·(1 - x), 1e-12), finite at x = 0 and x = 1 where the
    # clamped logs would give none
    x, t, w = ctx.inputs
    g = _reduction_scale(ctx, g)
    gw = None
    if ctx.needs(2):  # (PyTorch does not differentiate the weight; graphc does, as for CE)
        gw = -g * (t * F.clamp(F.log(x), LOG_FLOOR) + (1 - t) * F.clamp(F.log1p(-x), LOG_FLOOR))
    if w is not None:
        g = g * w
    return (g * (x - t) / F.clamp((1 - x) * x, BCE_EPS) if ctx.needs(0) else None,
            g * (F.log1p(-x) - F.log(x)) if ctx.needs(1) else None, gw)


def _bce_samples(dtype, rng):
    lo, hi = (0.02, 0.98) if dtype.is_floating_point else (0, 1)
    p = lambda shape, layout="contiguous": samples.array(rng, shape, dtype, lo, hi, layout)
    out = [Sample((p((3, 4)), p((3, 4), "transposed"), None), {"reduction": r}, r)
           for r in REDUCTIONS]
    # (0 and 1 themselves, where the logs clamp, are tested in tests/nn: a gradient check
    # cannot step outside [0, 1])
    edges = np.array([[1e-3, 0.999, 1e-4, 0.5], [0.998, 2e-3, 0.3, 1 - 1e-4]], dtype.np)
    return out + [Sample((p((2, 3, 4)), p((2, 3, 4)), p((3, 4)) + 1), {}, "weight"),
                  Sample((edges, p((2, 4)), None), {"reduction": "none"}, "near 0 and 1"),
                  Sample((p((0,)), p((0,)), None), {}, "empty")]


def _bce_logits_shape(name, x, target, weight=None, pos_weight=None, reduction="mean"):
    _check_reduction(name, reduction)
    _same_shape(name, x, target)
    for what, w in (("weight", weight), ("pos_weight", pos_weight)):
        if w is not None and broadcast_shapes(name, tuple(w.shape), tuple(x.shape)) != tuple(x.shape):
            raise ShapeError(name, f"{what} of shape {tuple(w.shape)} does not broadcast to the "
                             f"input's shape {tuple(x.shape)}")
    return tuple(x.shape) if reduction == "none" else ()


def _bce_logits(x, target, weight=None, pos_weight=None, reduction="mean"):
    xd, t = x.astype(np.float64), target.astype(np.float64)
    with np.errstate(over="ignore"):
        softplus_neg = np.log1p(np.exp(-np.abs(xd))) + np.maximum(-xd, 0)  # log(1 + exp(-x))
    scale = 1.0 if pos_weight is None else 1 + (pos_weight.astype(np.float64) - 1) * t
    loss = (1 - t) * xd + scale * softplus_neg
    if weight is not None:
        loss = loss * weight
    return _reduce_np(loss, reduction, x.dtype)


def _bce_logits_decomposition(x, target, weight=None, pos_weight=None, reduction="mean"):
    softplus_neg = dispatch(OPS.softplus, -x, threshold=math.inf)  # log(1 + exp(-x)), stably
    if pos_weight is not None:
        softplus_neg = (1 + (pos_weight - 1) * target) * softplus_neg
    loss = (1 - target) * x + softplus_neg
    return _reduce(loss if weight is None else loss * weight, reduction)


def _bce_logits_grad(ctx, g):
    # in x: lw·sigmoid(x) - pos_weight·t with lw = 1 + (pos_weight - 1)·t (sigmoid(x) - t
    # without pos_weight), PyTorch's form
    x, t, w, pw = ctx.inputs
    g = _reduction_scale(ctx, g)
    gw = g * dispatch(OPS.binary_cross_entropy_with_logits, x, t, None, pw, reduction="none") \
        if ctx.needs(2) else None
    if w is not None:
        g = g * w
    softplus_neg = dispatch(OPS.softplus, -x, threshold=math.inf) if \
        ctx.needs(3) or (ctx.needs(1) and pw is not None) else None
    if pw is None:
        gx = g * (F.sigmoid(x) - t) if ctx.needs(0) else None
        gt = -g * x if ctx.needs(1) else None
    else:
        gx = g * ((1 + (pw - 1) * t) * F.sigmoid(x) - pw * t) if ctx.needs(0) else None
        gt = g * ((pw - 1) * softplus_neg - x) if ctx.needs(1) else None
    return gx, gt, gw, g * t * softplus_neg if ctx.needs(3) else None


def _bce_logits_samples(dtype, rng):
    a = lambda shape, layout="contiguous", lo=-4.0, hi=4.0: samples.array(rng, shape, dtype, lo, hi,
                                                                          layout)
    p = lambda shape: a(shape, lo=0.0, hi=1.0)
    out = [Sample((a((3, 4)), p((3, 4)), None, None), {"reduction": r}, r) for r in REDUCTIONS]
    big = np.array([[-40.0, 40.0, 0.0, 1e-3], [800.0, -800.0, 3.0, -3.0]], dtype.np)
    return out + [
        Sample((a((2, 3, 4), "transposed"), p((2, 3, 4)), p((3, 4)) + 1, a((4,), lo=0.5, hi=3.0)),
               {}, "weight and pos_weight"),
        Sample((a((4, 5)), p((4, 5)), None, a((5,), lo=0.5, hi=3.0)), {"reduction": "sum"},
               "pos_weight per class"),
        Sample((big, p((2, 4)), None, None), {"reduction": "none"}, "large logits"),
        Sample((a((0, 3)), p((0, 3)), None, None), {}, "empty")]


# ---- kl_div ----------------------------------------------------------------------------

KL_REDUCTIONS = ("none", "batchmean", "sum", "mean")


def _kl_shape(name, x, target, reduction="mean", log_target=False):
    if reduction not in KL_REDUCTIONS:
        raise OpValueError(name, f"reduction must be one of {KL_REDUCTIONS}, got {reduction!r}")
    shape = broadcast_shapes(name, tuple(x.shape), tuple(target.shape))
    return shape if reduction == "none" else ()


def _kl_div(x, target, reduction="mean", log_target=False):
    xd, t = x.astype(np.float64), target.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        if log_target:
            loss = np.exp(t) * (t - xd)
        else:  # t·log(t) is 0 at t = 0 (and nan for t < 0)
            loss = t * np.log(np.where(t == 0, 1.0, t)) - t * xd
    if reduction == "batchmean":
        n = x.shape[0] if x.ndim else 1
        return np.asarray(np.sum(loss) / n).astype(x.dtype)
    return _reduce_np(loss, reduction, x.dtype)


def _kl_decomposition(x, target, reduction="mean", log_target=False):
    if log_target:
        loss = F.exp(target) * (target - x)
    else:
        loss = target * F.log(F.where(F.eq(target, 0), 1.0, target)) - target * x
    if reduction == "batchmean":
        return F.sum(loss) / (x.shape[0] if x.ndim else 1)
    return _reduce(loss, reduction)


def _kl_grad(ctx, g):
    x, t = ctx.inputs
    reduction = ctx.attrs["reduction"]
    if reduction == "mean":
        g = g / math.prod(broadcast_shapes("kl_div", ctx.shape(0), ctx.shape(1)))
    elif reduction == "batchmean" and x.ndim:
        g = g / x.shape[0]
    if ctx.attrs["log_target"]:
        e = F.exp(t)
        return (-g * e if ctx.needs(0) else None,
                g * e * (t - x + 1) if ctx.needs(1) else None)
    # d/dt of t·log(t) is log(t) + t/t: nan at t = 0, as PyTorch's xlogy gives
    return (-g * t if ctx.needs(0) else None,
            g * (F.log(t) + t / t - x) if ctx.needs(1) else None)


def _kl_samples(dtype, rng):
    a = lambda shape, lo=-3.0, hi=0.0, layout="contiguous": samples.array(rng, shape, dtype, lo, hi,
                                                                          layout)
    p = lambda shape: a(shape, 0.0, 1.0)
    return [Sample((a((3, 4)), p((3, 4))), {"reduction": r}, r) for r in KL_REDUCTIONS] + [
        Sample((a((3, 4), layout="transposed"), a((3, 4))), {"reduction": "batchmean",
               "log_target": True}, "log_target"),
        Sample((a((2, 3, 4)), p((3, 4))), {"reduction": "none"}, "broadcast"),
        Sample((a((0, 3)), p((0, 3))), {"reduction": "batchmean"}, "empty")]


def kl_div_warn(reduction: str) -> None:
    if reduction == "mean":
        warnings.warn("kl_div: reduction='mean' divides the summed loss by the number of "
                      "elements, not by the batch size; reduction='batchmean' gives the KL "
                      "divergence as defined (PyTorch plans to make 'mean' behave like it).",
                      UserWarning, stacklevel=3)


# ---- declarations -------------------------------------------------------------------

register(name="nll_loss", inputs=("input", "target", "weight"), kernel=_nll_loss,
         dtype_rule=_nll_rule, shape_rule=_nll_shape,
         attrs={"ignore_index": -100, "reduction": "mean"}, flags={COMPOSITE}, dtypes=FLOATS,
         samples=_nll_samples, decomposition=_nll_decomposition, grad=_nll_grad,
         doc="-input[n, target[n]] weighted by weight[target[n]]; 'mean' divides by the sum "
             "of the weights of the targets not ignored")
register(name="l1_loss", inputs=("input", "target"), kernel=_l1_loss,
         dtype_rule=floating_only(promote), shape_rule=_loss_shape, attrs={"reduction": "mean"},
         flags={COMPOSITE}, dtypes=FLOATS, samples=_pair_samples("l1_loss", [{}]),
         decomposition=lambda a, b, reduction="mean": _reduce(F.abs(a - b), reduction),
         grad=_pair_grad(lambda d, attrs: F.sign(d)),
         doc="|input - target|")
register(name="smooth_l1_loss", inputs=("input", "target"), kernel=_smooth_l1_loss,
         dtype_rule=_smooth_l1_rule, shape_rule=_smooth_shape,
         attrs={"reduction": "mean", "beta": 1.0}, flags={COMPOSITE}, dtypes=FLOATS,
         samples=_pair_samples("smooth_l1_loss", [{}, {"beta": 0.5}, {"beta": 0.0}]),
         decomposition=_smooth_l1_decomposition, grad=_pair_grad(_smooth_l1_slope),
         doc="0.5·d²/beta where d = |input - target| < beta, else d - 0.5·beta")
register(name="huber_loss", inputs=("input", "target"), kernel=_huber_loss,
         dtype_rule=_huber_rule, shape_rule=_smooth_shape,
         attrs={"reduction": "mean", "delta": 1.0}, flags={COMPOSITE}, dtypes=FLOATS,
         samples=_pair_samples("huber_loss", [{}, {"delta": 0.5}, {"delta": 2.0}]),
         decomposition=_huber_decomposition, grad=_pair_grad(_huber_slope),
         doc="0.5·d² where d = |input - target| < delta, else delta·(d - 0.5·delta)")
register(name="binary_cross_entropy", inputs=("input", "target", "weight"), kernel=_bce,
         dtype_rule=_weight_rule, shape_rule=_bce_shape, attrs={"reduction": "mean"},
         flags={COMPOSITE}, dtypes=FLOATS, samples=_bce_samples, decomposition=_bce_decomposition,
         grad=_bce_grad,
         doc="-weight·(t·log(x) + (1 - t)·log(1 - x)) for probabilities x, each log clamped "
             "at -100 (PyTorch's choice, so that x = 0 or 1 gives a finite loss)")
register(name="binary_cross_entropy_with_logits", inputs=("input", "target", "weight", "pos_weight"),
         kernel=_bce_logits, dtype_rule=_weight_rule, shape_rule=_bce_logits_shape,
         attrs={"reduction": "mean"}, flags={COMPOSITE}, dtypes=FLOATS,
         samples=_bce_logits_samples, decomposition=_bce_logits_decomposition,
         grad=_bce_logits_grad,
         doc="binary cross entropy of sigmoid(x), computed from x without overflow: "
             "(1 - t)·x + (1 + (pos_weight - 1)·t)·log(1 + exp(-x)), times weight")
register(name="kl_div", inputs=("input", "target"), kernel=_kl_div,
         dtype_rule=floating_only(promote), shape_rule=_kl_shape,
         attrs={"reduction": "mean", "log_target": False}, flags={COMPOSITE}, dtypes=FLOATS,
         samples=_kl_samples, decomposition=_kl_decomposition, grad=_kl_grad,
         doc="target·(log(target) - input) for log-probabilities input (log_target: target "
             "is a log-probability too); 'batchmean' divides the sum by the batch size")


# ---- the functions of graphc.nn.functional, with PyTorch's signatures -----------------------

def legacy_reduction(size_average: bool | None, reduce: bool | None, reduction: str,
                     stacklevel: int = 3) -> str:
    """The reduction PyTorch's deprecated ``size_average`` / ``reduce`` flags stand for (with
    its warning); ``reduction`` itself when neither is given."""
    if size_average is None and reduce is None:
        return reduction
    warnings.warn("size_average and reduce args will be deprecated, please use reduction='mean', "
                  "'sum' or 'none' instead.", UserWarning, stacklevel=stacklevel)
    if reduce is False:
        return "none"
    return "sum" if size_average is False else "mean"


def nll_loss(input, target, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
             reduction: str = "mean"):
    """Negative log likelihood of class indices ``target`` under log-probabilities ``input``
    (``(N, C)``, ``(N, C, d1, ...)`` or ``(C,)``); ``'mean'`` is weighted by ``weight``."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    return dispatch(OPS.nll_loss, input, F.operand(target), weight, ignore_index=ignore_index,
                    reduction=reduction)


def l1_loss(input, target, size_average=None, reduce=None, reduction: str = "mean"):
    return dispatch(OPS.l1_loss, input, F.operand(target),
                    reduction=legacy_reduction(size_average, reduce, reduction))


def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction: str = "mean",
                   beta: float = 1.0):
    return dispatch(OPS.smooth_l1_loss, input, F.operand(target),
                    reduction=legacy_reduction(size_average, reduce, reduction), beta=float(beta))


def huber_loss(input, target, reduction: str = "mean", delta: float = 1.0):
    return dispatch(OPS.huber_loss, input, F.operand(target), reduction=reduction,
                    delta=float(delta))


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None,
                         reduction: str = "mean"):
    """Binary cross entropy of probabilities ``input`` (each in [0, 1]) against ``target``."""
    return dispatch(OPS.binary_cross_entropy, input, F.operand(target), weight,
                    reduction=legacy_reduction(size_average, reduce, reduction))


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None,
                                     reduction: str = "mean", pos_weight=None):
    """Binary cross entropy of sigmoid(input), computed stably from the logits."""
    return dispatch(OPS.binary_cross_entropy_with_logits, input, F.operand(target), weight,
                    pos_weight, reduction=legacy_reduction(size_average, reduce, reduction))


def kl_div(input, target, size_average=None, reduce=None, reduction: str = "mean",
           log_target: bool = False):
    """KL divergence of ``target`` from ``input`` (log-probabilities)."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    kl_div_warn(reduction)
    return dispatch(OPS.kl_div, input, F.operand(target), reduction=reduction,
                    log_target=bool(log_target))


def cosine_similarity(x1, x2, dim: int = 1, eps: float = 1e-8):
    """x1·x2 / (max(‖x1‖, eps)·max(‖x2‖, eps)) along ``dim`` (of the broadcast shape)."""
    x1, x2 = F.operand(x1), F.operand(x2)
    shape = broadcast_shapes("cosine_similarity", tuple(x1.shape), tuple(x2.shape))
    if not shape:
        raise ShapeError("cosine_similarity", f"expected inputs of at least 1 dim, got shapes "
                         f"{tuple(x1.shape)} and {tuple(x2.shape)}")
    x1, x2 = F.broadcast_to(x1, shape), F.broadcast_to(x2, shape)
    n1 = F.clamp(F.sqrt(F.sum(x1 * x1, dim)), eps)
    n2 = F.clamp(F.sqrt(F.sum(x2 * x2, dim)), eps)
    return F.sum(x1 * x2, dim) / (n1 * n2)


def normalize(input, p: float = 2.0, dim: int = 1, eps: float = 1e-12, out=None):
    """input / max(‖input‖_p, eps) along ``dim``."""
    result = input / F.clamp(F.norm(input, p, dim, keepdim=True), eps)
    return result if out is None else out.copy_(result)


def one_hot(tensor, num_classes: int = -1):
    """int64 indices of shape ``(*)`` to an int64 tensor of shape ``(*, num_classes)`` with
    a 1 at each index (``num_classes=-1``: one more than the largest index)."""
    if not is_tensor(tensor) or tensor.dtype is not dt.int64:
        raise DTypeError("one_hot", f"expected an int64 (LongTensor) index tensor, got "
                         f"{describe(tensor)}")
    if tensor.numel():
        low, high = int(F.amin(tensor)), int(F.amax(tensor))
        if low < 0:
            raise OpValueError("one_hot", f"class values must be non-negative, got {low}")
        if num_classes == -1:
            num_classes = high + 1
        elif high >= num_classes:
            raise OpValueError("one_hot", f"class values must be smaller than num_classes "
                               f"({num_classes}), got {high}")
    elif num_classes == -1:
        raise OpValueError("one_hot", "cannot infer the number of classes from an empty tensor; "
                           "pass num_classes")
    return F.eq(F.unsqueeze(tensor, -1), F.arange(num_classes)).to(dt.int64)
