"""Elementwise ops: unary, binary and ternary, plus casts, copies and in-place writes.

Each declaration is one call; kernels are numpy. Inputs reach a kernel already converted
to the dtype its rule chose, so kernels only compute.
"""

from __future__ import annotations

import math

import numpy as np

from .. import dtype as dt
from ..errors import DTypeError, OpValueError, ShapeError
from ..layout import broadcast_shapes
from ..tensor import Tensor
from . import functions as F
from . import samples
from .registry import APPROX, EXACT, REQUIRED, ROUNDED, Accuracy, Expose, Flag, Sample, register
from .rules import (
    broadcast,
    check_inputs,
    compare,
    describe,
    floating_only,
    is_tensor,
    logical,
    no_bool,
    no_none,
    predicate,
    reject_none,
    promote,
    promote_float,
    same_as_first,
)

ALL = dt.ALL_DTYPES
NUMERIC = dt.NUMERIC_DTYPES
FLOATS = dt.FLOAT_DTYPES
EW = Flag.ELEMENTWISE
POSITIVE = (0.05, 4.0)


# accuracy classes (the fuzzer's and the op tests' policy, see graphc/fuzz/tolerance.py)
SELECTS = Accuracy(EXACT, 0)               # picks, compares or moves values: bit-exact
ONE_ROUNDING = Accuracy(ROUNDED, 1)        # one correctly rounded IEEE operation
POLYNOMIAL = Accuracy(APPROX, 4)           # the math library's polynomials (measured 1-4 ulp)
# the generated wrappers of an elementwise op: graphc.<name>, Tensor.<name> (+ Tensor.<name>_)
METHOD = Expose(method=True)
INPLACE = Expose(method=True, inplace=True)
ACTIVATION = Expose(method=True, inplace=True, functional=True)


def unary(name, kernel, rule=promote_float, grad=None, domain=None, dtypes=ALL, flags=(),
          attrs=None, attr_sets=None, decomposition=None, doc="", **facts):
    """An elementwise op of one tensor; ``facts`` are further OpDef fields (emit, accuracy,
    cheap, expose ...)."""
    return register(name=name, inputs=("self",), kernel=kernel, dtype_rule=no_none(rule),
                    shape_rule=broadcast, flags={EW, *flags}, attrs=attrs or {},
                    samples=samples.elementwise(1, domain, attr_sets=attr_sets), dtypes=dtypes,
                    decomposition=decomposition, grad=grad, doc=doc, **facts)


def binary(name, kernel, rule=promote, grad=None, domain=None, dtypes=ALL, attrs=None,
           attr_sets=None, inputs=("self", "other"), sample_filter=None, doc="", **facts):
    gen = samples.elementwise(2, domain, attr_sets=attr_sets)
    if sample_filter is not None:
        gen = _filtered(gen, sample_filter)
    return register(name=name, inputs=inputs, kernel=kernel, dtype_rule=no_none(rule),
                    shape_rule=broadcast, flags={EW}, attrs=attrs or {}, samples=gen,
                    dtypes=dtypes, grad=grad, doc=doc, **facts)


def _filtered(gen, keep):
    return lambda dtype, rng: [s for s in gen(dtype, rng) if keep(dtype, s)]


# ---- kernels that need more than one numpy call ------------------------------------

def _erf(x):
    # exact (libm's erf) per element; numpy has no erf. ~170 ns/element.
    return np.asarray(np.frompyfunc(math.erf, 1, 1)(x.astype(np.float64))).astype(x.dtype)


def _sigmoid(x):
    e = np.exp(-np.abs(x))  # never overflows
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype)


def _gelu(x, approximate="none"):
    if approximate == "tanh":
        inner = x.dtype.type(math.sqrt(2 / math.pi)) * (x + x.dtype.type(0.044715) * x * x * x)
        return x.dtype.type(0.5) * x * (1 + np.tanh(inner))
    return x.dtype.type(0.5) * x * (1 + _erf(x * x.dtype.type(math.sqrt(0.5))))


def _gelu_decomposition(x, approximate="none"):
    if approximate == "tanh":  # 0.5·(1 + tanh(z)) = sigmoid(2z): one exp, no cancellation
        return x * F.sigmoid(2 * math.sqrt(2 / math.pi) * (x + 0.044715 * (x * x * x)))
    return 0.5 * x * (1 + F.erf(x * math.sqrt(0.5)))


def _check_gelu(name, x, approximate="none"):
    if approximate not in ("none", "tanh"):
        raise OpValueError(name, f"approximate must be 'none' or 'tanh', got {approximate!r}")
    return floating_only(promote_float)(name, x)


def _softplus(x, beta=1.0, threshold=20.0):
    z = x * x.dtype.type(beta)
    with np.errstate(over="ignore"):
        soft = (np.log1p(np.exp(-np.abs(z))) + np.maximum(z, 0)) / x.dtype.type(beta)
    return np.where(z > threshold, x, soft).astype(x.dtype)


def _sign(x):
    if x.dtype == np.bool_:
        return x.copy()
    out = np.sign(x)
    if x.dtype.kind == "f":
        out = np.where(np.isnan(x), x.dtype.type(0), out)  # PyTorch: sign(nan) == 0
    return out


def _round(x, decimals=0):
    if x.dtype.kind != "f":
        return x
    return np.round(x, decimals)


def _float_test(test, default):
    def kernel(x):
        if x.dtype.kind == "f":
            return test(x)
        return np.full(x.shape, default)
    return kernel


def _nonzero_divisor(name, b):
    if b.dtype.kind in "iu" and np.any(b == 0):
        raise OpValueError(name, "integer division by zero")


def _div(a, b, rounding_mode=None):
    if rounding_mode is None:
        return np.true_divide(a, b)
    _nonzero_divisor("div", b)
    if rounding_mode == "floor":
        return np.floor_divide(a, b)
    if a.dtype.kind == "f":
        return np.trunc(np.true_divide(a, b))
    q = np.floor_divide(a, b)  # integer trunc division: round the floored quotient toward 0
    return q + ((q < 0) & (q * b != a))


def _div_rule(name, a, b, rounding_mode=None):
    if rounding_mode not in (None, "trunc", "floor"):
        raise OpValueError(name, f"rounding_mode must be None, 'trunc' or 'floor', got {rounding_mode!r}")
    if rounding_mode is None:
        return promote_float(name, a, b)
    return no_bool(promote)(name, a, b)


def _remainder(a, b):
    _nonzero_divisor("remainder", b)
    return np.remainder(a, b)


def _pow(a, b):
    b = np.asarray(b)
    if b.dtype.kind in "iu" and np.any(b < 0):
        raise OpValueError("pow", "integers to negative integer powers are not allowed; "
                           "convert the base to float first")
    out = np.power(a, b)
    if b.dtype.kind == "f" and b.size == 1 and b.reshape(()) == 0.5:
        # numpy computes a one-element exponent of 0.5 as sqrt, so pow(-inf, 0.5) would be
        # nan and pow(-0.0, 0.5) -0.0; C's pow (numpy's for any other exponent, and the
        # compiled code's) gives inf and +0.0. One answer, whatever the exponent's size.
        out = np.where(np.isneginf(a), np.inf, np.where(a == 0, 0.0, out)).astype(out.dtype)
    return out


def _pow_rule(name, a, b):
    casts, outs = promote(name, a, b)
    if outs[0] is dt.bool_:
        raise DTypeError(name, f"not supported for two bool inputs ({describe(a)}, {describe(b)})")
    return casts, outs


def _square_rule(name, x):
    check_inputs(name, (x,))
    d = dt.result_type(x, 2)  # square is x ** 2: bool becomes int64, as in PyTorch
    return (d,), (d,)


def _where_rule(name, condition, a, b):
    check_inputs(name, (condition, a, b))
    if not (is_tensor(condition) and condition.dtype is dt.bool_):
        raise DTypeError(name, f"expected condition to be a bool tensor, got {describe(condition)}")
    d = dt.result_type(a, b)
    return (None, d, d), (d,)


def _clamp(x, min=None, max=None):
    if min is not None:
        x = np.maximum(x, min)
    if max is not None:
        x = np.minimum(x, max)
    return x


def _clamp_rule(name, x, min=None, max=None):
    if min is None and max is None:
        raise OpValueError(name, "at least one of min and max must be given")
    reject_none(name, (x,))  # the bounds are optional, the input is not
    return no_bool(promote)(name, x, min, max)


def _lerp(start, end, weight):
    diff = end - start
    return np.where(np.abs(weight) < 0.5, start + weight * diff, end - diff * (1 - weight))


def _cast_rule(name, x, dtype=None):
    if dtype is None:
        raise OpValueError(name, "dtype is required")
    return (None,), (dt.as_dtype(dtype),)


def _copy_(dst, src):
    dst[...] = src


def _copy_rule(name, dst, src):
    if not is_tensor(dst):
        raise DTypeError(name, f"expected a tensor to copy into, got {describe(dst)}")
    check_inputs(name, (dst, src))
    return (None, dst.dtype), (dst.dtype,)


def _copy_shape(name, dst, src):
    dshape = tuple(dst.shape)
    sshape = tuple(src.shape) if is_tensor(src) else ()
    if broadcast_shapes(name, dshape, sshape) != dshape:
        raise ShapeError(name, f"source of shape {sshape} does not broadcast to the "
                         f"destination's shape {dshape}")
    return dshape


def _copy_samples(dtype, rng):
    arr = lambda shape, layout="contiguous": samples.array(rng, shape, dtype, layout=layout)
    return [Sample((arr((3, 4)), arr((3, 4), "transposed")), {}, "same shape"),
            Sample((arr((3, 4), "strided"), arr((4,))), {}, "broadcast source"),
            Sample((arr((2, 3)), samples.scalar(rng, dtype, -3, 3)), {}, "scalar source"),
            Sample((arr((0, 3)), arr((3,))), {}, "empty")]


# ---- gradient rules (vector-Jacobian products, written in ops) ------------------------
# x: the input, out: the forward result, g: the gradient of the result

LN2 = math.log(2.0)


def _on_x(fn):
    """A unary rule that needs the input: g -> fn(x, g)."""
    return lambda ctx, g: (fn(ctx.input(0), g),)


def _on_out(fn):
    """A unary rule that needs the result: g -> fn(out, g)."""
    return lambda ctx, g: (fn(ctx.output, g),)


def _zero_grad(ctx, g):
    """Piecewise-constant functions (floor, sign, ...): the gradient is zero."""
    return (F.zeros_like(g),)


def _gelu_grad(ctx, g):
    x = ctx.input(0)
    if ctx.attrs["approximate"] == "tanh":
        k = math.sqrt(2 / math.pi)
        t = F.tanh(k * (x + 0.044715 * (x * x * x)))
        return (g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * (x * x))),)
    cdf = 0.5 * (1 + F.erf(x * math.sqrt(0.5)))
    pdf = F.exp(-0.5 * (x * x)) * (1 / math.sqrt(2 * math.pi))
    return (g * (cdf + x * pdf),)


def _silu_grad(ctx, g):
    x = ctx.input(0)
    s = F.sigmoid(x)
    return (g * s * (1 + x * (1 - s)),)


def _softplus_grad(ctx, g):
    x, beta = ctx.input(0), ctx.attrs["beta"]
    return (F.where(x * beta > ctx.attrs["threshold"], g, g * F.sigmoid(x * beta)),)


def _mul_grad(ctx, g):
    return (g * ctx.input(1) if ctx.needs(0) else None,
            g * ctx.input(0) if ctx.needs(1) else None)


def _div_grad(ctx, g):
    if ctx.attrs["rounding_mode"] is not None:
        return (F.zeros_like(g), F.zeros_like(g))
    b = ctx.input(1)
    return (g / b if ctx.needs(0) else None,
            -g * ctx.input(0) / (b * b) if ctx.needs(1) else None)


def _remainder_grad(ctx, g):
    a, b = ctx.input(0), ctx.input(1)
    return (g, -g * F.floor_divide(a, b) if ctx.needs(1) else None)


def _pow_grad(ctx, g):
    a, b = ctx.input(0), ctx.input(1)  # one of them may be a Python number
    ga = gb = None
    if ctx.needs(0):  # b·a^(b-1), and 0 where b == 0 (so that 0^0 has no nan gradient)
        ga = g * b * F.pow(a, b - 1)
        if isinstance(b, Tensor):
            ga = F.where(F.eq(b, 0), 0.0, ga)
        elif b == 0:
            ga = F.zeros_like(g)
    if ctx.needs(1):  # a^b·log(a), and 0 where a == 0 and b >= 0
        log_a = F.log(a) if isinstance(a, Tensor) else math.log(a) if a > 0 else math.nan
        gb = g * ctx.output * log_a
        if isinstance(a, Tensor):
            gb = F.where(F.logical_and(F.eq(a, 0), F.ge(b, 0)), 0.0, gb)
        elif a == 0:
            gb = F.where(F.ge(b, 0), 0.0, gb)
    return ga, gb


def _extreme_grad(pick):
    """maximum/minimum: the gradient goes to the chosen input; ties share it equally."""
    def rule(ctx, g):
        a, b = ctx.input(0), ctx.input(1)
        first = pick(a, b).to(g.dtype) + 0.5 * F.eq(a, b).to(g.dtype)
        return g * first, g * (1 - first)
    return rule


def _atan2_grad(ctx, g):
    a, b = ctx.input(0), ctx.input(1)
    denom = a * a + b * b
    return g * b / denom, -g * a / denom


def _where_grad(ctx, g):
    cond = ctx.input(0)
    return None, F.where(cond, g, 0.0), F.where(cond, 0.0, g)


def _clamp_grad(ctx, g):
    x, lo, hi = ctx.inputs
    inside = F.ones_like(g, dtype=dt.bool_)
    if lo is not None:
        inside = F.logical_and(inside, F.ge(x, lo))
    if hi is not None:
        inside = F.logical_and(inside, F.le(x, hi))
    g_lo = F.where(F.logical_and(F.lt(x, lo), F.le(lo, hi) if hi is not None else True), g, 0.0) \
        if ctx.needs(1) else None
    g_hi = F.where(F.logical_or(F.gt(x, hi), F.gt(lo, hi) if lo is not None else False), g, 0.0) \
        if ctx.needs(2) else None
    return F.where(inside, g, 0.0), g_lo, g_hi


def _lerp_grad(ctx, g):
    a, b, w = ctx.inputs
    return (g * (1 - w) if ctx.needs(0) else None, g * w if ctx.needs(1) else None,
            g * (b - a) if ctx.needs(2) else None)


# ---- unary -------------------------------------------------------------------------

unary("neg", np.negative, no_bool(promote, "negation of a bool tensor is not supported; to invert "
                                  "a mask use ~ or logical_not()"), lambda ctx, g: (-g,), dtypes=NUMERIC,
      emit=lambda s, x: s.neg(x), accuracy=SELECTS, cheap=True,
      expose=Expose(method=True, inplace=True, aliases=("negative",)))
unary("abs", np.abs, no_bool(promote), _on_x(lambda x, g: g * F.sign(x)), dtypes=NUMERIC,
      emit=lambda s, x: s.abs(x), accuracy=SELECTS, cheap=True, expose=INPLACE)
unary("exp", np.exp, grad=_on_out(lambda out, g: g * out), emit=lambda s, x: s.math.exp(x),
      accuracy=POLYNOMIAL, expose=INPLACE)
unary("exp2", np.exp2, grad=_on_out(lambda out, g: g * out * LN2),
      emit=lambda s, x: s.math.exp2(x), accuracy=POLYNOMIAL, expose=METHOD)
unary("log", np.log, grad=_on_x(lambda x, g: g / x), domain=POSITIVE,
      emit=lambda s, x: s.math.log(x), accuracy=POLYNOMIAL, expose=INPLACE)
unary("log2", np.log2, grad=_on_x(lambda x, g: g / (x * LN2)), domain=POSITIVE,
      emit=lambda s, x: s.b.fmul(s.math.log(x), s.c(1 / LN2)), accuracy=POLYNOMIAL, expose=METHOD)
unary("log10", np.log10, grad=_on_x(lambda x, g: g / (x * math.log(10.0))), domain=POSITIVE,
      emit=lambda s, x: s.b.fmul(s.math.log(x), s.c(1 / math.log(10.0))), accuracy=POLYNOMIAL,
      expose=INPLACE)
unary("log1p", np.log1p, grad=_on_x(lambda x, g: g / (1 + x)), domain=(-0.9, 4.0),
      emit=lambda s, x: s.math.log1p(x), accuracy=POLYNOMIAL, expose=METHOD)
unary("expm1", np.expm1, grad=_on_out(lambda out, g: g * (out + 1)),
      emit=lambda s, x: s.math.expm1(x), accuracy=POLYNOMIAL, expose=METHOD)
unary("sqrt", np.sqrt, grad=_on_out(lambda out, g: g / (2 * out)), domain=(0.0, 9.0),
      emit=lambda s, x: s.intrinsic("sqrt", x), accuracy=ONE_ROUNDING, expose=INPLACE)
unary("rsqrt", lambda x: 1 / np.sqrt(x), grad=_on_out(lambda out, g: -0.5 * g * out * out * out),
      domain=POSITIVE, emit=lambda s, x: s.b.fdiv(s.c(1.0), s.intrinsic("sqrt", x)),
      accuracy=POLYNOMIAL, expose=METHOD)
unary("sin", np.sin, grad=_on_x(lambda x, g: g * F.cos(x)), emit=lambda s, x: s.math.libm("sin", x),
      accuracy=POLYNOMIAL, expose=METHOD)
unary("cos", np.cos, grad=_on_x(lambda x, g: -g * F.sin(x)), emit=lambda s, x: s.math.libm("cos", x),
      accuracy=POLYNOMIAL, expose=METHOD)
unary("tan", np.tan, grad=_on_out(lambda out, g: g * (1 + out * out)), domain=(-1.4, 1.4),
      emit=lambda s, x: s.math.libm("tan", x), accuracy=POLYNOMIAL, expose=METHOD)
unary("tanh", np.tanh, grad=_on_out(lambda out, g: g * (1 - out * out)),
      emit=lambda s, x: s.math.tanh(x), accuracy=POLYNOMIAL, expose=ACTIVATION)
unary("sigmoid", _sigmoid, grad=_on_out(lambda out, g: g * out * (1 - out)),
      emit=lambda s, x: s.math.sigmoid(x), accuracy=POLYNOMIAL, expose=ACTIVATION)
unary("erf", _erf, grad=_on_x(lambda x, g: g * (2 / math.sqrt(math.pi)) * F.exp(-(x * x))),
      emit=lambda s, x: s.math.erf(x), accuracy=POLYNOMIAL, expose=METHOD)
unary("relu", lambda x: np.maximum(x, x.dtype.type(0)), no_bool(promote),
      _on_out(lambda out, g: F.where(F.gt(out, 0), g, 0.0)), dtypes=NUMERIC,
      emit=lambda s, x: s.relu(x), accuracy=SELECTS, cheap=True, expose=ACTIVATION)
unary("gelu", _gelu, _check_gelu, _gelu_grad, dtypes=FLOATS, attrs={"approximate": "none"},
      attr_sets=[{"approximate": "none"}, {"approximate": "tanh"}], flags={Flag.COMPOSITE},
      decomposition=_gelu_decomposition, accuracy=Accuracy(APPROX, 16, reference_ulps=2),
      expose=Expose(method=True, functional=True),
      doc="x·Φ(x); approximate='tanh' uses 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))")
unary("silu", lambda x: x * _sigmoid(x), floating_only(promote_float), _silu_grad, dtypes=FLOATS,
      flags={Flag.COMPOSITE}, decomposition=lambda x: x * F.sigmoid(x),
      expose=ACTIVATION)  # F.silu(x, inplace=True), as in PyTorch
unary("softplus", _softplus, floating_only(promote_float), _softplus_grad, dtypes=FLOATS,
      attrs={"beta": 1.0, "threshold": 20.0},
      attr_sets=[{}, {"beta": 2.0, "threshold": 1.0}, {"beta": 0.5, "threshold": 20.0}],
      emit=lambda s, x, beta=1.0, threshold=20.0: s.b.select(
          s.cmp(">", s.b.fmul(x, s.c(beta)), s.c(threshold)), x,
          s.b.fdiv(s.b.fadd(s.math.log1p(s.math.exp(s.neg(s.abs(s.b.fmul(x, s.c(beta)))))),
                            s.relu(s.b.fmul(x, s.c(beta)))), s.c(beta))),
      accuracy=POLYNOMIAL, expose=Expose(function=False, functional=True),
      doc="log(1 + exp(beta·x)) / beta; x itself where beta·x > threshold (as PyTorch)")
for _name in ("floor", "ceil", "trunc"):
    unary(_name, getattr(np, _name), no_bool(same_as_first), _zero_grad, dtypes=NUMERIC,
          emit=lambda s, x, _fn=_name: s.intrinsic(_fn, x) if s.is_float else x,
          accuracy=SELECTS, expose=INPLACE)
unary("round", _round, no_bool(same_as_first), _zero_grad, dtypes=NUMERIC, attrs={"decimals": 0},
      attr_sets=[{"decimals": 0}, {"decimals": 2}], doc="round half to even",
      emit=lambda s, x, decimals=0: s.round(x, decimals),
      accuracy=Accuracy(ROUNDED, 2, operand_scaled=True),  # x·10^d rounded, then divided
      expose=INPLACE)
unary("sign", _sign, same_as_first, _zero_grad, doc="-1, 0 or 1; sign(nan) is 0 as in PyTorch",
      emit=lambda s, x: s.sign(x), accuracy=SELECTS, expose=INPLACE)
unary("reciprocal", np.reciprocal, grad=_on_out(lambda out, g: -g * out * out),
      emit=lambda s, x: s.b.fdiv(s.c(1.0), x), accuracy=ONE_ROUNDING, expose=INPLACE)
unary("square", lambda x: x * x, _square_rule, _on_x(lambda x, g: 2 * x * g),
      emit=lambda s, x: s.b.fmul(x, x) if s.is_float else s.b.mul(x, x), accuracy=ONE_ROUNDING,
      expose=INPLACE)
unary("logical_not", np.logical_not, logical, emit=lambda s, x: s.b.xor(x, s.bool(True)),
      accuracy=SELECTS, expose=METHOD)
unary("isnan", _float_test(np.isnan, False), predicate, accuracy=SELECTS, expose=METHOD,
      emit=lambda s, x: s.b.fcmp_unordered("uno", x, x) if s.is_float else s.bool(False))
unary("isinf", _float_test(np.isinf, False), predicate, accuracy=SELECTS, expose=METHOD,
      emit=lambda s, x: s.b.fcmp_ordered("==", s.abs(x), s.c(math.inf)) if s.is_float
      else s.bool(False))
unary("isfinite", _float_test(np.isfinite, True), predicate, accuracy=SELECTS, expose=METHOD,
      emit=lambda s, x: s.b.fcmp_ordered("<", s.abs(x), s.c(math.inf)) if s.is_float
      else s.bool(True))
unary("cast", lambda x, dtype=None: x.astype(dt.as_dtype(dtype).np), _cast_rule,
      lambda ctx, g: (g,),
      attrs={"dtype": REQUIRED}, attr_sets=[{"dtype": d} for d in reversed(ALL)],
      doc="convert to another dtype (float to int truncates toward zero)",
      emit=lambda s, x, dtype=None: x,  # the conversion happens on the way out
      accuracy=ONE_ROUNDING, cheap=True)
unary("clone", np.copy, same_as_first, lambda ctx, g: (g,), doc="a copy with its own storage",
      emit=lambda s, x: x, accuracy=SELECTS, expose=METHOD)

# ---- binary ------------------------------------------------------------------------

NONZERO = ((-3.0, 3.0), (1.0, 3.0))  # second input positive: no integer division by zero
binary("add", np.add, grad=lambda ctx, g: (g, g), emit=lambda s, a, b: s.arith("fadd", "add", a, b, "or_"),
       accuracy=ONE_ROUNDING, cheap=True)
binary("sub", np.subtract, no_bool(promote, "subtracting two bool tensors is not supported; use ^ "
                                   "or logical_xor()"), lambda ctx, g: (g, -g), dtypes=NUMERIC,
       emit=lambda s, a, b: s.arith("fsub", "sub", a, b), accuracy=ONE_ROUNDING, cheap=True)
binary("mul", np.multiply, grad=_mul_grad, emit=lambda s, a, b: s.arith("fmul", "mul", a, b, "and_"),
       accuracy=ONE_ROUNDING, cheap=True, expose=Expose(method=True, inplace=True, aliases=("multiply",)))
binary("div", _div, _div_rule, _div_grad, domain=NONZERO, attrs={"rounding_mode": None},
       attr_sets=[{}, {"rounding_mode": "floor"}, {"rounding_mode": "trunc"}],
       sample_filter=lambda dtype, s: dtype is not dt.bool_ or not s.attrs.get("rounding_mode"),
       doc="true division; rounding_mode 'floor' or 'trunc' rounds the quotient",
       emit=lambda s, a, b, rounding_mode=None: s.div(a, b, rounding_mode), accuracy=ONE_ROUNDING,
       error_site=True)
binary("remainder", _remainder, no_bool(promote), _remainder_grad, domain=NONZERO, dtypes=NUMERIC,
       doc="Python's %: the result has the divisor's sign", emit=lambda s, a, b: s.remainder(a, b),
       accuracy=ONE_ROUNDING, error_site=True, expose=INPLACE)
binary("pow", _pow, _pow_rule, _pow_grad, domain=((0.5, 3.0), (0.0, 3.0)), dtypes=NUMERIC,
       inputs=("self", "exponent"), emit=lambda s, a, b: s.pow(a, b), accuracy=POLYNOMIAL,
       error_site=True)
binary("maximum", np.maximum, grad=_extreme_grad(lambda a, b: F.gt(a, b)), doc="propagates nan",
       emit=lambda s, a, b: s.maximum(a, b), accuracy=SELECTS, cheap=True, expose=METHOD)
binary("minimum", np.minimum, grad=_extreme_grad(lambda a, b: F.lt(a, b)), doc="propagates nan",
       emit=lambda s, a, b: s.minimum(a, b), accuracy=SELECTS, cheap=True, expose=METHOD)
binary("atan2", np.arctan2, promote_float, _atan2_grad, emit=lambda s, a, b: s.math.libm("atan2", a, b),
       accuracy=POLYNOMIAL, expose=METHOD)
for _name, _ufunc, _cmp in (("eq", np.equal, "=="), ("ne", np.not_equal, "!="), ("lt", np.less, "<"),
                            ("le", np.less_equal, "<="), ("gt", np.greater, ">"),
                            ("ge", np.greater_equal, ">=")):
    binary(_name, _ufunc, compare, emit=lambda s, a, b, _cmp=_cmp: s.cmp(_cmp, a, b), accuracy=SELECTS,
           cheap=True, expose=METHOD)
for _name, _method in (("logical_and", "and_"), ("logical_or", "or_"), ("logical_xor", "xor")):
    binary(_name, getattr(np, _name), logical, emit=lambda s, a, b, _m=_method: getattr(s.b, _m)(a, b),
           accuracy=SELECTS, expose=METHOD)

# ---- ternary and writes ------------------------------------------------------------

register(name="where", inputs=("condition", "self", "other"), kernel=np.where,
         dtype_rule=no_none(_where_rule), shape_rule=broadcast, flags={EW}, dtypes=ALL,
         grad=_where_grad, emit=lambda s, c, a, b: s.b.select(c, a, b), accuracy=SELECTS, cheap=True,
         samples=lambda dtype, rng: [
             Sample((np.asarray(s.inputs[0] > 0) if s.inputs[0].dtype != np.bool_ else s.inputs[0],
                     *s.inputs[1:]), {}, s.desc)
             for s in samples.elementwise(3, scalars=False)(dtype, rng)
             if isinstance(s.inputs[0], np.ndarray)])
register(name="clamp", inputs=("self", "min", "max"), kernel=_clamp, dtype_rule=_clamp_rule,
         shape_rule=broadcast, flags={EW}, dtypes=NUMERIC, grad=_clamp_grad,
         samples=lambda dtype, rng: [
             *samples.elementwise(3, domain=((-3.0, 3.0), (-2.0, 0.0), (0.0, 2.0)))(dtype, rng),
             Sample((samples.array(rng, (3, 4), dtype), None, 1), {}, "max only"),
             Sample((samples.array(rng, (3, 4), dtype), -1, None), {}, "min only")],
         doc="min(max(x, min), max); with min > max every value is max",
         emit=lambda s, x, lo, hi: s.clamp(x, lo, hi), accuracy=SELECTS, cheap=True)
register(name="lerp", inputs=("self", "end", "weight"), kernel=_lerp,
         dtype_rule=no_none(floating_only(promote)), shape_rule=broadcast, flags={EW},
         dtypes=FLOATS,
         grad=_lerp_grad,
         samples=samples.elementwise(3, domain=((-3.0, 3.0), (-3.0, 3.0), (0.0, 1.0))),
         doc="start + weight·(end - start)", emit=lambda s, a, b, w: s.lerp(a, b, w),
         accuracy=Accuracy(ROUNDED, 2, operand_scaled=True))  # relative to the largest operand
register(name="copy_", inputs=("self", "src"), kernel=_copy_, dtype_rule=_copy_rule,
         shape_rule=_copy_shape, flags={EW, Flag.MUTATES, Flag.IMPURE}, dtypes=ALL,
         # self's old value is overwritten: its gradient is zeros (as torch's), so a tensor
         # whose every path to the loss was overwritten still gets a .grad of zeros
         grad=lambda ctx, g: (F.zeros_like(g) if ctx.needs(0) else None, g),
         samples=_copy_samples,
         doc="write src (broadcast, converted to self's dtype) into self; returns self")
