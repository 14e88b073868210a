"""Activation ops beyond relu, sigmoid, tanh, gelu, silu and softplus (elementwise.py).

Each is one declaration: a numpy kernel (the eager path and the reference), a scalar LLVM
emitter written with the backend's ``Scalar`` helpers, a gradient rule, an accuracy class
and the generated wrappers (``graphc.nn.functional.<name>``, with ``inplace=`` where the op
has an in-place form, as in PyTorch). ``glu`` and ``prelu`` are not elementwise in one
input, so they are composites with a decomposition.
"""

from __future__ import annotations

import math

import numpy as np

from .. import dtype as dt
from ..errors import OpValueError, ShapeError
from ..layout import normalize_dim
from . import functions as F
from . import samples
from .dispatch import dispatch
from .expose import functional
from .elementwise import ONE_ROUNDING, POLYNOMIAL, SELECTS, unary
from .registry import APPROX, OPS, REQUIRED, ROUNDED, Accuracy, Expose, Flag, Sample, register
from .rules import describe, floating_only, is_tensor, no_bool, promote, promote_float

FLOATS = dt.FLOAT_DTYPES
NUMERIC = dt.NUMERIC_DTYPES
# F.<name>(input, ..., inplace=False), F.<name>_ and Tensor.<name>_
IN_PLACE = Expose(function=False, inplace=True, functional=True)
FUNCTIONAL = Expose(function=False, functional=True)
FLOAT_RULE = floating_only(promote_float)

# SELU's constants (Klambauer et al., 2017), as PyTorch uses them
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


# ---- numpy kernels (negative branches see min(x, 0), so exp never overflows) ---------

def _elu(x, alpha=1.0):
    return np.where(x > 0, x, x.dtype.type(alpha) * np.expm1(np.minimum(x, 0)))


def _selu(x):
    t = x.dtype.type
    return np.where(x > 0, t(SELU_SCALE) * x,
                    t(SELU_ALPHA * SELU_SCALE) * np.expm1(np.minimum(x, 0)))


def _celu(x, alpha=1.0):
    t = x.dtype.type
    return np.where(x > 0, x, t(alpha) * np.expm1(np.minimum(x, 0) * t(1 / alpha)))


def _softplus(x):
    """log(1 + exp(x)) without overflow or cancellation."""
    with np.errstate(over="ignore"):
        return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def _mish(x):
    return x * np.tanh(np.where(x > 20, x, _softplus(x)))


def _hardswish(x):
    t = x.dtype.type
    return x * np.minimum(np.maximum(x + t(3), t(0)), t(6)) / t(6)


def _hardsigmoid(x):
    t = x.dtype.type
    return np.minimum(np.maximum(x + t(3), t(0)), t(6)) / t(6)


def _logsigmoid(x):
    with np.errstate(over="ignore"):
        return np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))


def _threshold(x, threshold=REQUIRED, value=REQUIRED):
    return np.where(x <= threshold, x.dtype.type(value), x)


def _hardtanh(x, min_val=-1.0, max_val=1.0):
    t = x.dtype.type
    return np.minimum(np.maximum(x, t(min_val)), t(max_val))


# ---- scalar emitters ----------------------------------------------------------------

def _emit_expm1_branch(s, x, coefficient, pos):
    """x > 0 ? pos : coefficient·expm1(x) (nan takes the second branch, and stays nan)."""
    return s.b.select(s.cmp(">", x, s.c(0)), pos, s.b.fmul(s.c(coefficient), s.math.expm1(x)))


def _emit_softplus(s, x):
    return s.b.fadd(s.relu(x), s.math.log1p(s.math.exp(s.neg(s.abs(x)))))


def _emit_mish(s, x):
    sp = s.b.select(s.cmp(">", x, s.c(20)), x, _emit_softplus(s, x))
    return s.b.fmul(x, s.math.tanh(sp))


def _emit_relu6_of(s, x):
    """min(max(x, 0), 6), nan passing through (numpy's maximum and minimum)."""
    return s.minimum(s.maximum(x, s.c(0)), s.c(6))


# ---- gradient rules -----------------------------------------------------------------

def _positive(x):
    return F.gt(x, 0)


def _elu_grad(ctx, g):
    x, alpha = ctx.input(0), ctx.attrs["alpha"]
    return (F.where(_positive(x), g, g * alpha * F.exp(F.minimum(x, 0.0))),)


def _selu_grad(ctx, g):
    x = ctx.input(0)
    return (F.where(_positive(x), g * SELU_SCALE,
                    g * (SELU_ALPHA * SELU_SCALE) * F.exp(F.minimum(x, 0.0))),)


def _celu_grad(ctx, g):
    x, alpha = ctx.input(0), ctx.attrs["alpha"]
    return (F.where(_positive(x), g, g * F.exp(F.minimum(x, 0.0) * (1 / alpha))),)


def _leaky_relu_grad(ctx, g):
    return (F.where(_positive(ctx.input(0)), g, g * ctx.attrs["negative_slope"]),)


def _hardtanh_grad(ctx, g):
    x, lo, hi = ctx.input(0), ctx.attrs["min_val"], ctx.attrs["max_val"]
    return (F.where(F.logical_and(F.gt(x, lo), F.lt(x, hi)), g, 0.0),)


def _threshold_grad(ctx, g):
    return (F.where(F.gt(ctx.input(0), ctx.attrs["threshold"]), g, 0.0),)


def _mish_grad(ctx, g):
    x = ctx.input(0)
    t = F.tanh(dispatch(OPS.softplus, x))
    return (g * (t + x * F.sigmoid(x) * (1 - t * t)),)


def _hardswish_grad(ctx, g):
    # PyTorch's convention at the kinks: 0 up to -3, x/3 + 1/2 on (-3, 3), 1 from 3 on
    x = ctx.input(0)
    return (F.where(F.le(x, -3.0), 0.0, F.where(F.lt(x, 3.0), g * (x / 3 + 0.5), g)),)


def _hardsigmoid_grad(ctx, g):
    x = ctx.input(0)
    return (F.where(F.logical_and(F.gt(x, -3.0), F.lt(x, 3.0)), g / 6, 0.0),)


def _softsign_grad(ctx, g):
    d = 1 + F.abs(ctx.input(0))
    return (g / (d * d),)


def _tanhshrink_grad(ctx, g):
    t = F.tanh(ctx.input(0))
    return (g * t * t,)


# ---- dtype rules --------------------------------------------------------------------

def _celu_rule(name, x, alpha=1.0):
    if alpha == 0:
        raise OpValueError(name, "alpha must not be 0 (celu divides by it)")
    return FLOAT_RULE(name, x)


def _threshold_rule(name, x, threshold=REQUIRED, value=REQUIRED):
    return FLOAT_RULE(name, x)


def _hardtanh_rule(name, x, min_val=-1.0, max_val=1.0):
    if min_val > max_val:
        raise OpValueError(name, f"min_val ({min_val}) must be less than or equal to "
                           f"max_val ({max_val})")
    return no_bool(promote)(name, x)


# ---- declarations -------------------------------------------------------------------

SPREAD = (-5.0, 5.0)  # past the kinks of hardswish and hardsigmoid at ±3
# expm1 (3 ulp) times a constant (one rounding more)
EXPM1_SCALED = Accuracy(APPROX, 4)

unary("elu", _elu, FLOAT_RULE, _elu_grad, dtypes=FLOATS, attrs={"alpha": 1.0},
      attr_sets=[{}, {"alpha": 0.5}], accuracy=EXPM1_SCALED, expose=IN_PLACE,
      emit=lambda s, x, alpha=1.0: _emit_expm1_branch(s, x, alpha, x),
      doc="x where x > 0, else alpha·(exp(x) - 1)")
unary("selu", _selu, FLOAT_RULE, _selu_grad, dtypes=FLOATS, accuracy=EXPM1_SCALED, expose=IN_PLACE,
      emit=lambda s, x: _emit_expm1_branch(s, x, SELU_ALPHA * SELU_SCALE,
                                           s.b.fmul(s.c(SELU_SCALE), x)),
      doc="scale·elu(x, alpha) with SELU's fixed alpha ≈ 1.6733 and scale ≈ 1.0507")
unary("celu", _celu, _celu_rule, _celu_grad, dtypes=FLOATS, attrs={"alpha": 1.0},
      attr_sets=[{}, {"alpha": 2.0}], accuracy=Accuracy(APPROX, 5), expose=IN_PLACE,
      emit=lambda s, x, alpha=1.0: s.b.select(
          s.cmp(">", x, s.c(0)), x,
          s.b.fmul(s.c(alpha), s.math.expm1(s.b.fmul(x, s.c(1 / alpha))))),
      doc="x where x > 0, else alpha·(exp(x/alpha) - 1)")
unary("leaky_relu", lambda x, negative_slope=0.01: np.where(
          x > 0, x, x * x.dtype.type(negative_slope)),
      FLOAT_RULE, _leaky_relu_grad, dtypes=FLOATS, attrs={"negative_slope": 0.01},
      attr_sets=[{}, {"negative_slope": 0.2}], accuracy=ONE_ROUNDING, cheap=True, expose=IN_PLACE,
      emit=lambda s, x, negative_slope=0.01: s.b.select(
          s.cmp(">", x, s.c(0)), x, s.b.fmul(x, s.c(negative_slope))),
      doc="x where x > 0, else negative_slope·x")
unary("hardtanh", _hardtanh, _hardtanh_rule, _hardtanh_grad, dtypes=NUMERIC,
      attrs={"min_val": -1.0, "max_val": 1.0},
      attr_sets=[{}, {"min_val": 0.0, "max_val": 6.0}, {"min_val": -2.0, "max_val": 0.5}],
      accuracy=SELECTS, cheap=True, expose=IN_PLACE,
      emit=lambda s, x, min_val=-1.0, max_val=1.0: s.clamp(x, s.c(min_val), s.c(max_val)),
      doc="x clamped to [min_val, max_val] (relu6 is hardtanh(x, 0, 6))")
unary("threshold", _threshold, _threshold_rule, _threshold_grad, dtypes=FLOATS,
      attrs={"threshold": REQUIRED, "value": REQUIRED},
      attr_sets=[{"threshold": 0.5, "value": -2.0}, {"threshold": -1.0, "value": 7.0}],
      accuracy=SELECTS, cheap=True, expose=IN_PLACE,
      emit=lambda s, x, threshold=REQUIRED, value=REQUIRED: s.b.select(
          s.cmp("<=", x, s.c(threshold)), s.c(value), x),
      doc="value where x <= threshold, else x (nan stays nan)")
# mish: 5 ulp measured (tests/codegen/test_mathlib.py), more where softplus(x) is subnormal
unary("mish", _mish, FLOAT_RULE, _mish_grad, dtypes=FLOATS, accuracy=Accuracy(APPROX, 5),
      expose=IN_PLACE, emit=_emit_mish, doc="x·tanh(softplus(x))")
unary("hardswish", _hardswish, FLOAT_RULE, _hardswish_grad, dtypes=FLOATS, domain=SPREAD,
      accuracy=Accuracy(ROUNDED, 3), cheap=True, expose=IN_PLACE,
      emit=lambda s, x: s.b.fdiv(s.b.fmul(x, _emit_relu6_of(s, s.b.fadd(x, s.c(3)))), s.c(6)),
      doc="x·min(max(x + 3, 0), 6)/6")
unary("hardsigmoid", _hardsigmoid, FLOAT_RULE, _hardsigmoid_grad, dtypes=FLOATS, domain=SPREAD,
      accuracy=Accuracy(ROUNDED, 2), cheap=True, expose=IN_PLACE,
      emit=lambda s, x: s.b.fdiv(_emit_relu6_of(s, s.b.fadd(x, s.c(3))), s.c(6)),
      doc="min(max(x + 3, 0), 6)/6")
unary("logsigmoid", _logsigmoid, FLOAT_RULE,
      lambda ctx, g: (g * F.sigmoid(-ctx.input(0)),), dtypes=FLOATS, accuracy=POLYNOMIAL,
      expose=FUNCTIONAL,
      emit=lambda s, x: s.b.fsub(s.minimum(x, s.c(0)), s.math.log1p(s.math.exp(s.neg(s.abs(x))))),
      doc="log(sigmoid(x)) = min(x, 0) - log(1 + exp(-|x|)), without overflow")
unary("softsign", lambda x: x / (1 + np.abs(x)), FLOAT_RULE, _softsign_grad, dtypes=FLOATS,
      accuracy=Accuracy(ROUNDED, 2), expose=FUNCTIONAL,
      emit=lambda s, x: s.b.fdiv(x, s.b.fadd(s.c(1), s.abs(x))), doc="x / (1 + |x|)")
unary("tanhshrink", lambda x: x - np.tanh(x), FLOAT_RULE, _tanhshrink_grad, dtypes=FLOATS,
      # x - tanh(x) cancels near 0: tanh's error is relative to x, not to the result
      accuracy=Accuracy(APPROX, 4, operand_scaled=True), expose=FUNCTIONAL,
      emit=lambda s, x: s.b.fsub(x, s.math.tanh(x)), doc="x - tanh(x)")


# ---- glu and prelu: composites -------------------------------------------------------

def _glu_shape(name, x, dim=-1):
    if x.ndim == 0:
        raise ShapeError(name, "glu does not take a 0-d input: it halves a dim")
    d = normalize_dim(name, dim, x.ndim)
    if x.shape[d] % 2:
        raise ShapeError(name, f"halving dimension must be even, but dimension {d} is size "
                         f"{x.shape[d]} (input of shape {tuple(x.shape)})")
    return tuple(s // 2 if i == d else s for i, s in enumerate(x.shape))


def _glu(x, dim=-1):
    a, b = np.split(x, 2, axis=dim)
    with np.errstate(over="ignore"):
        e = np.exp(-np.abs(b))
    sig = np.where(b >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype)
    return a * sig


def _glu_decomposition(x, dim=-1):
    d = dim % x.ndim
    half = x.shape[d] // 2
    return F.narrow(x, d, 0, half) * F.sigmoid(F.narrow(x, d, half, half))


def _glu_grad(ctx, g):
    x, d = ctx.input(0), ctx.attrs["dim"] % ctx.input(0).ndim
    half = x.shape[d] // 2
    a, s = F.narrow(x, d, 0, half), F.sigmoid(F.narrow(x, d, half, half))
    return (F.cat([g * s, g * a * s * (1 - s)], d),)


def _glu_samples(dtype, rng):
    a = lambda shape, layout="contiguous": samples.array(rng, shape, dtype, layout=layout)
    return [Sample((a((3, 4)),), {}, "last dim"),
            Sample((a((4, 6), "transposed"),), {"dim": 0}, "dim 0, transposed"),
            Sample((a((2, 4, 3)),), {"dim": 1}, "middle dim"),
            Sample((samples.with_specials(a((3, 8))),), {}, "special values"),
            Sample((a((0, 2)),), {}, "empty")]


def _prelu_rule(name, x, weight):
    if not is_tensor(weight):
        raise OpValueError(name, f"expected a weight tensor, got {describe(weight)}")
    return floating_only(promote)(name, x, weight)


def _prelu_shape(name, x, weight):
    channels = x.shape[1] if x.ndim >= 2 else 1
    n = math.prod(weight.shape)
    if weight.ndim > 1 or n not in (1, channels):
        raise ShapeError(name, f"expected a weight of 1 or {channels} elements (the input's "
                         f"channels, dim 1 of {tuple(x.shape)}), got shape {tuple(weight.shape)}")
    return tuple(x.shape)


def _channel_view(weight, ndim, reshape):
    """weight shaped to broadcast along dim 1 of an ndim-d input."""
    n = math.prod(weight.shape)
    if n == 1 or ndim < 2:
        return reshape(weight, (1,) * ndim) if ndim else reshape(weight, ())
    return reshape(weight, (1, n) + (1,) * (ndim - 2))


def _prelu(x, weight):
    w = _channel_view(weight, x.ndim, np.reshape)
    return np.where(x > 0, x, w * x)


def _prelu_decomposition(x, weight):
    w = _channel_view(weight, x.ndim, F.reshape)
    return F.where(F.gt(x, 0), x, w * x)


def _prelu_grad(ctx, g):
    x, weight = ctx.inputs
    positive = F.gt(x, 0)
    w = _channel_view(weight, x.ndim, F.reshape)
    gx = F.where(positive, g, w * g) if ctx.needs(0) else None
    gw = None
    if ctx.needs(1):
        per = F.where(positive, 0.0, x * g)
        per_channel = math.prod(weight.shape) > 1 and x.ndim >= 2
        dims = tuple(i for i in range(x.ndim) if not (per_channel and i == 1))
        gw = F.sum(per, dims).reshape(weight.shape) if dims else per.reshape(weight.shape)
    return gx, gw


def _prelu_samples(dtype, rng):
    a = lambda shape, layout="contiguous": samples.array(rng, shape, dtype, layout=layout)
    return [Sample((a((4, 3)), a((3,))), {}, "(N, C), one weight per channel"),
            Sample((a((2, 3, 4, 5), "transposed"), a((3,))), {}, "(N, C, H, W)"),
            Sample((a((2, 3, 4)), a((1,))), {}, "one shared weight"),
            Sample((samples.with_specials(a((3, 4))), a((1,))), {}, "special values"),
            Sample((a((5,)), a((1,))), {}, "1-d input"),
            Sample((a(()), a((1,))), {}, "0-d input")]


register(name="glu", inputs=("self",), kernel=_glu, dtype_rule=FLOAT_RULE, shape_rule=_glu_shape,
         attrs={"dim": -1}, flags={Flag.COMPOSITE}, dtypes=FLOATS, samples=_glu_samples,
         decomposition=_glu_decomposition, grad=_glu_grad, expose=FUNCTIONAL,
         doc="a·sigmoid(b), where a and b are the two halves of the input along dim")
register(name="prelu", inputs=("self", "weight"), kernel=_prelu, dtype_rule=_prelu_rule,
         shape_rule=_prelu_shape, flags={Flag.COMPOSITE}, dtypes=FLOATS, samples=_prelu_samples,
         decomposition=_prelu_decomposition, grad=_prelu_grad, expose=FUNCTIONAL,
         doc="x where x > 0, else weight·x, with one weight per channel (dim 1) or one for all")


_hardtanh = functional(OPS.hardtanh)


def relu6(input, inplace: bool = False):
    """min(max(x, 0), 6): hardtanh(x, 0, 6), as in PyTorch."""
    return _hardtanh(input, 0.0, 6.0, inplace=inplace)
