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
from . import functions as F
from . import samples
from .registry import Flag, Sample, register
from .rules import (
    broadcast,
    check_inputs,
    compare,
    describe,
    floating_only,
    is_tensor,
    logical,
    no_bool,
    predicate,
    promote,
    promote_float,
    same_as_first,
)

ALL = dt.ALL_DTYPES
NUMERIC = dt.NUMERIC_DTYPES
FLOATS = dt.FLOAT_DTYPES
EW = Flag.ELEMENTWISE
POSITIVE = (0.05, 4.0)


def unary(name, kernel, rule=promote_float, domain=None, dtypes=ALL, flags=(), attrs=None,
          attr_sets=None, decomposition=None, doc=""):
    return register(name=name, inputs=("self",), kernel=kernel, dtype_rule=rule,
                    shape_rule=broadcast, flags={EW, *flags}, attrs=attrs or {},
                    samples=samples.elementwise(1, domain, attr_sets=attr_sets), dtypes=dtypes,
                    decomposition=decomposition, doc=doc)


def binary(name, kernel, rule=promote, domain=None, dtypes=ALL, attrs=None, attr_sets=None,
           inputs=("self", "other"), sample_filter=None, doc=""):
    gen = samples.elementwise(2, domain, attr_sets=attr_sets)
    if sample_filter is not None:
        gen = _filtered(gen, sample_filter)
    return register(name=name, inputs=inputs, kernel=kernel, dtype_rule=rule,
                    shape_rule=broadcast, flags={EW}, attrs=attrs or {}, samples=gen,
                    dtypes=dtypes, doc=doc)


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
    if approximate == "tanh":
        inner = math.sqrt(2 / math.pi) * (x + 0.044715 * (x * x * x))
        return 0.5 * x * (1 + F.tanh(inner))
    return 0.5 * x * (1 + F.erf(x * math.sqrt(0.5)))


def _check_gelu(name, x, approximate="none"):
    if approximate not in ("none", "tanh"):
        raise OpValueError(name, f"approximate must be 'none' or 'tanh', got {approximate!r}")
    return floating_only(promote_float)(name, x)


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
    if np.asarray(b).dtype.kind in "iu" and np.any(np.asarray(b) < 0):
        raise OpValueError("pow", "integers to negative integer powers are not allowed; "
                           "convert the base to float first")
    return np.power(a, b)


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


# ---- unary -------------------------------------------------------------------------

unary("neg", np.negative, no_bool(promote, "negation of a bool tensor is not supported; to "
                                  "invert a mask use ~ or logical_not()"), dtypes=NUMERIC)
unary("abs", np.abs, no_bool(promote), dtypes=NUMERIC)
unary("exp", np.exp)
unary("exp2", np.exp2)
unary("log", np.log, domain=POSITIVE)
unary("log2", np.log2, domain=POSITIVE)
unary("log1p", np.log1p, domain=(-0.9, 4.0))
unary("expm1", np.expm1)
unary("sqrt", np.sqrt, domain=(0.0, 9.0))
unary("rsqrt", lambda x: 1 / np.sqrt(x), domain=POSITIVE)
unary("sin", np.sin)
unary("cos", np.cos)
unary("tan", np.tan, domain=(-1.4, 1.4))
unary("tanh", np.tanh)
unary("sigmoid", _sigmoid)
unary("erf", _erf)
unary("relu", lambda x: np.maximum(x, x.dtype.type(0)), no_bool(promote), dtypes=NUMERIC)
unary("gelu", _gelu, _check_gelu, dtypes=FLOATS, attrs={"approximate": "none"},
      attr_sets=[{"approximate": "none"}, {"approximate": "tanh"}], flags={Flag.COMPOSITE},
      decomposition=_gelu_decomposition,
      doc="x·Φ(x); approximate='tanh' uses 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))")
unary("silu", lambda x: x * _sigmoid(x), floating_only(promote_float), dtypes=FLOATS,
      flags={Flag.COMPOSITE}, decomposition=lambda x: x * F.sigmoid(x))
unary("floor", np.floor, no_bool(same_as_first), dtypes=NUMERIC)
unary("ceil", np.ceil, no_bool(same_as_first), dtypes=NUMERIC)
unary("trunc", np.trunc, no_bool(same_as_first), dtypes=NUMERIC)
unary("round", _round, no_bool(same_as_first), dtypes=NUMERIC, attrs={"decimals": 0},
      attr_sets=[{"decimals": 0}, {"decimals": 2}], doc="round half to even")
unary("sign", _sign, same_as_first, doc="-1, 0 or 1; sign(nan) is 0 as in PyTorch")
unary("reciprocal", np.reciprocal)
unary("square", lambda x: x * x, _square_rule)
unary("logical_not", np.logical_not, logical)
unary("isnan", _float_test(np.isnan, False), predicate)
unary("isinf", _float_test(np.isinf, False), predicate)
unary("isfinite", _float_test(np.isfinite, True), predicate)
unary("cast", lambda x, dtype=None: x.astype(dt.as_dtype(dtype).np), _cast_rule,
      attrs={"dtype": None}, attr_sets=[{"dtype": d} for d in ALL],
      doc="convert to another dtype (float to int truncates toward zero)")
unary("clone", np.copy, same_as_first, doc="a copy with its own storage")

# ---- binary ------------------------------------------------------------------------

NONZERO = ((-3.0, 3.0), (1.0, 3.0))  # second input positive: no integer division by zero
binary("add", np.add)
binary("sub", np.subtract, no_bool(promote, "subtracting two bool tensors is not supported; "
                                   "use ^ or logical_xor()"), dtypes=NUMERIC)
binary("mul", np.multiply)
binary("div", _div, _div_rule, domain=NONZERO, attrs={"rounding_mode": None},
       attr_sets=[{}, {"rounding_mode": "floor"}, {"rounding_mode": "trunc"}],
       sample_filter=lambda dtype, s: dtype is not dt.bool_ or not s.attrs.get("rounding_mode"),
       doc="true division; rounding_mode 'floor' or 'trunc' rounds the quotient")
binary("remainder", _remainder, no_bool(promote), domain=NONZERO, dtypes=NUMERIC,
       doc="Python's %: the result has the divisor's sign")
binary("pow", _pow, _pow_rule, domain=((0.5, 3.0), (0.0, 3.0)), dtypes=NUMERIC,
       inputs=("self", "exponent"))
binary("maximum", np.maximum, doc="propagates nan")
binary("minimum", np.minimum, doc="propagates nan")
binary("atan2", np.arctan2, promote_float)
for _name, _ufunc in (("eq", np.equal), ("ne", np.not_equal), ("lt", np.less),
                      ("le", np.less_equal), ("gt", np.greater), ("ge", np.greater_equal)):
    binary(_name, _ufunc, compare)
binary("logical_and", np.logical_and, logical)
binary("logical_or", np.logical_or, logical)
binary("logical_xor", np.logical_xor, logical)

# ---- ternary and writes ------------------------------------------------------------

register(name="where", inputs=("condition", "self", "other"), kernel=np.where,
         dtype_rule=_where_rule, shape_rule=broadcast, flags={EW}, dtypes=ALL,
         samples=lambda dtype, rng: [
             Sample((np.asarray(s.inputs[0] > 0) if s.inputs[0].dtype != np.bool_ else s.inputs[0],
                     *s.inputs[1:]), {}, s.desc)
             for s in samples.elementwise(3, scalars=False)(dtype, rng)
             if isinstance(s.inputs[0], np.ndarray)])
register(name="clamp", inputs=("self", "min", "max"), kernel=_clamp, dtype_rule=_clamp_rule,
         shape_rule=broadcast, flags={EW}, dtypes=NUMERIC,
         samples=lambda dtype, rng: [
             *samples.elementwise(3, domain=((-3.0, 3.0), (-2.0, 0.0), (0.0, 2.0)))(dtype, rng),
             Sample((samples.array(rng, (3, 4), dtype), None, 1), {}, "max only"),
             Sample((samples.array(rng, (3, 4), dtype), -1, None), {}, "min only")],
         doc="min(max(x, min), max); with min > max every value is max")
register(name="lerp", inputs=("self", "end", "weight"), kernel=_lerp,
         dtype_rule=floating_only(promote), shape_rule=broadcast, flags={EW}, dtypes=FLOATS,
         samples=samples.elementwise(3, domain=((-3.0, 3.0), (-3.0, 3.0), (0.0, 1.0))),
         doc="start + weight·(end - start)")
register(name="copy_", inputs=("self", "src"), kernel=_copy_, dtype_rule=_copy_rule,
         shape_rule=_copy_shape, flags={EW, Flag.MUTATES, Flag.IMPURE}, dtypes=ALL,
         samples=_copy_samples,
         doc="write src (broadcast, converted to self's dtype) into self; returns self")
