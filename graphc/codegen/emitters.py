"""Scalar emitters: how each elementwise op is computed on one element, in LLVM IR.

Every entry is ``emit(s, args, attrs) -> value`` where ``s`` is a ``Scalar`` context (the
builder, the op's compute dtype, helpers) and ``args`` are the inputs already converted to
that dtype (as the op's dtype rule says). ``install()`` stores them in the op table's
``emit`` slot; an op without one runs through its numpy kernel (a reported fallback).

Fast-math policy, per op (tests/codegen/test_mathlib.py checks the flags in the IR):
  - elementwise ops carry no fast-math flags: each rounds as numpy's does (x*a + b is a
    multiply and an add, not an FMA), so nan, inf and -0.0 behave as in eager mode;
  - transcendentals are our own polynomials (mathlib.py), 1-4 ulp from the correctly
    rounded result, measured in the tests; erf(float32) is exact;
  - float sums and products use ``reassoc contract`` so they vectorize: the rounding
    differs from numpy's pairwise sum within the tests' tolerance; float32 sums add
    8-lane float32 partial sums over blocks of 256 elements, blocks in float64;
  - float max/min reductions use ``maxnum nnan nsz`` with nan tracked separately, so a
    nan anywhere still gives nan (argmax/argmin: the first nan, as numpy).
Integer division by zero and negative integer powers set the kernel's error flag instead
of computing garbage; the runtime raises the same error as eager mode.
"""

from __future__ import annotations

import math

from llvmlite import ir

from .. import dtype as dt
from ..ops.registry import OPS
from .mathlib import Math

I1, I8, I32, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
F32, F64 = ir.FloatType(), ir.DoubleType()

ERR_INTEGER_DIVISION = 1
ERR_NEGATIVE_POWER = 2
ERROR_SITE_SHIFT = 4  # an error code is kind | site << 4, the site naming the op


def lltype(d: dt.dtype) -> ir.Type:
    """The register type of a dtype (bool is i1 in registers, i8 in memory)."""
    return {dt.bool_: I1, dt.int32: I32, dt.int64: I64, dt.float32: F32, dt.float64: F64}[d]


def memtype(d: dt.dtype) -> ir.Type:
    return I8 if d is dt.bool_ else lltype(d)


class Scalar:
    """What an emitter needs: the builder, the dtype it computes in, and helpers."""

    def __init__(self, builder: ir.IRBuilder, dtype: dt.dtype, err_ptr=None):
        self.b = builder
        self.dtype = dtype
        self.ty = lltype(dtype)
        self.err_ptr = err_ptr
        self.is_float = dtype.is_floating_point
        self.site = 0  # which op of the program this is (error codes name it)

    @property
    def math(self) -> Math:
        return Math(self.b, self.ty)

    def c(self, value) -> ir.Constant:
        if self.dtype is dt.bool_:
            return ir.Constant(I1, int(bool(value)))
        if self.is_float:
            return ir.Constant(self.ty, float(value))
        return ir.Constant(self.ty, int(value))

    def intrinsic(self, name: str, *args):
        return self.math.intrinsic(name, *args)

    def flag(self, condition, code: int) -> None:
        """Set the kernel's error flag to ``code`` where ``condition`` holds."""
        if self.err_ptr is None:
            return
        old = self.b.load(self.err_ptr)
        code = ir.Constant(I32, code | self.site << ERROR_SITE_SHIFT)
        self.b.store(self.b.select(condition, code, old), self.err_ptr)

    def cmp(self, op: str, a, b):
        if self.is_float:
            return self.b.fcmp_unordered("!=", a, b) if op == "!=" else self.b.fcmp_ordered(op, a, b)
        if self.dtype is dt.bool_:
            return self.b.icmp_unsigned(op, a, b)
        return self.b.icmp_signed(op, a, b)


def convert(b: ir.IRBuilder, v, src: dt.dtype, dst: dt.dtype):
    """A value of ``src`` as ``dst``, with numpy's results (float to int of nan or an
    out-of-range value gives the smallest integer, as x86's conversion does)."""
    if src is dst:
        return v
    if dst is dt.bool_:
        if src.is_floating_point:
            return b.fcmp_unordered("!=", v, ir.Constant(lltype(src), 0.0))
        return b.icmp_signed("!=", v, ir.Constant(lltype(src), 0))
    if src is dt.bool_:
        return b.uitofp(v, lltype(dst)) if dst.is_floating_point else b.zext(v, lltype(dst))
    if src.is_floating_point and dst.is_floating_point:
        return b.fpext(v, lltype(dst)) if dst.itemsize > src.itemsize else b.fptrunc(v, lltype(dst))
    if not src.is_floating_point and not dst.is_floating_point:
        return b.sext(v, lltype(dst)) if dst.itemsize > src.itemsize else b.trunc(v, lltype(dst))
    if not src.is_floating_point:
        return b.sitofp(v, lltype(dst))
    ity, fty = lltype(dst), lltype(src)
    bits = dst.itemsize * 8
    name = f"llvm.fptosi.sat.i{bits}.{'f64' if src is dt.float64 else 'f32'}"
    module = b.module
    fn = module.globals.get(name) or ir.Function(module, ir.FunctionType(ity, [fty]), name)
    sat = b.call(fn, [v])
    limit = ir.Constant(fty, float(2 ** (bits - 1)))
    bad = b.or_(b.fcmp_unordered("uno", v, v),
                b.or_(b.fcmp_ordered(">=", v, limit), b.fcmp_ordered("<", v, b.fneg(limit))))
    return b.select(bad, ir.Constant(ity, -(2 ** (bits - 1))), sat)


# ---- the table ---------------------------------------------------------------------

def _float_or_int(float_fn, int_fn):
    return lambda s, a, attrs: float_fn(s, *a) if s.is_float else int_fn(s, *a)


def _maximum(s, a, b, pick_max=True):
    if s.is_float:  # numpy's rule: nan wins, and of equal values (0.0, -0.0) the second
        bld = s.b
        first = bld.or_(bld.fcmp_ordered(">" if pick_max else "<", a, b),
                        bld.fcmp_unordered("uno", a, a))
        return bld.select(first, a, b)
    if s.dtype is dt.bool_:
        return s.b.or_(a, b) if pick_max else s.b.and_(a, b)
    return s.b.select(s.b.icmp_signed(">" if pick_max else "<", a, b), a, b)


def _sign(s, x):
    b = s.b
    if s.dtype is dt.bool_:
        return x
    pos = b.select(s.cmp(">", x, s.c(0)), s.c(1), s.c(0))
    return b.select(s.cmp("<", x, s.c(0)), s.c(-1), pos)  # nan compares false: 0, as PyTorch


def _round(s, x, decimals=0):
    if not s.is_float:
        return x
    if decimals == 0:
        return s.intrinsic("roundeven", x)
    scale = s.c(10.0 ** decimals)
    return s.b.fdiv(s.intrinsic("roundeven", s.b.fmul(x, scale)), scale)


def _int_divmod(s, a, b, mode):
    """Python-style floor (or trunc) division and remainder of integers, flagging zero."""
    bld = s.b
    zero = bld.icmp_signed("==", b, s.c(0))
    s.flag(zero, ERR_INTEGER_DIVISION)
    minus_one = bld.icmp_signed("==", b, s.c(-1))
    safe = bld.select(bld.or_(zero, minus_one), s.c(1), b)  # no UB: x/0 and MIN/-1
    q = bld.sdiv(a, safe)
    r = bld.srem(a, safe)
    q = bld.select(minus_one, bld.sub(s.c(0), a), q)
    r = bld.select(minus_one, s.c(0), r)
    if mode == "floor":
        adjust = bld.and_(bld.icmp_signed("!=", r, s.c(0)),
                          bld.icmp_signed("!=", bld.icmp_signed("<", r, s.c(0)),
                                          bld.icmp_signed("<", b, s.c(0))))
        q = bld.select(adjust, bld.sub(q, s.c(1)), q)
        r = bld.select(adjust, bld.add(r, b), r)
    return bld.select(zero, s.c(0), q), bld.select(zero, s.c(0), r)


def _float_floordiv(s, a, b):
    """numpy's floor division of floats (through fmod, as npy_divmod does)."""
    bld = s.b
    mod = bld.frem(a, b)
    div = bld.fdiv(bld.fsub(a, mod), b)
    wrong_sign = bld.and_(s.cmp("!=", mod, s.c(0.0)),
                          bld.icmp_unsigned("!=", s.cmp("<", b, s.c(0.0)), s.cmp("<", mod, s.c(0.0))))
    div = bld.select(wrong_sign, bld.fsub(div, s.c(1.0)), div)
    floor = s.intrinsic("floor", div)
    floor = bld.select(s.cmp(">", bld.fsub(div, floor), s.c(0.5)), bld.fadd(floor, s.c(1.0)), floor)
    zero = s.intrinsic("copysign", s.c(0.0), bld.fdiv(a, b))
    result = bld.select(s.cmp("!=", div, s.c(0.0)), floor, zero)
    return bld.select(s.cmp("==", b, s.c(0.0)), bld.fdiv(a, b), result)


def _div(s, args, attrs):
    a, b = args
    mode = attrs.get("rounding_mode")
    if mode is None:
        return s.b.fdiv(a, b)
    if not s.is_float:
        return _int_divmod(s, a, b, mode)[0]
    if mode == "trunc":
        return s.intrinsic("trunc", s.b.fdiv(a, b))
    return _float_floordiv(s, a, b)


def _remainder(s, args, attrs):
    a, b = args
    if not s.is_float:
        return _int_divmod(s, a, b, "floor")[1]
    bld = s.b
    mod = bld.frem(a, b)
    wrong_sign = bld.and_(s.cmp("!=", mod, s.c(0.0)),
                          bld.icmp_unsigned("!=", s.cmp("<", b, s.c(0.0)), s.cmp("<", mod, s.c(0.0))))
    mod = bld.select(wrong_sign, bld.fadd(mod, b), mod)
    return bld.select(s.cmp("==", mod, s.c(0.0)), s.intrinsic("copysign", s.c(0.0), b), mod)


def _int_pow(s, base, exponent):
    """Square-and-multiply, a loop over the exponent's bits (a negative exponent sets the
    error flag; the loop still ends, shifting it as unsigned)."""
    bld = s.b
    s.flag(bld.icmp_signed("<", exponent, s.c(0)), ERR_NEGATIVE_POWER)
    before = bld.block
    loop = bld.append_basic_block("pow.loop")
    done = bld.append_basic_block("pow.done")
    bld.branch(loop)
    bld.position_at_end(loop)
    result, x, e = bld.phi(s.ty), bld.phi(s.ty), bld.phi(s.ty)
    odd = bld.icmp_signed("!=", bld.and_(e, s.c(1)), s.c(0))
    result_next = bld.select(odd, bld.mul(result, x), result)
    x_next, e_next = bld.mul(x, x), bld.lshr(e, s.c(1))
    for phi, start, nxt in ((result, s.c(1), result_next), (x, base, x_next), (e, exponent, e_next)):
        phi.add_incoming(start, before)
        phi.add_incoming(nxt, loop)
    bld.cbranch(bld.icmp_signed("!=", e_next, s.c(0)), loop, done)
    bld.position_at_end(done)
    return result_next


def _lerp(s, args, attrs):
    a, b, w = args
    bld = s.b
    diff = bld.fsub(b, a)
    low = bld.fadd(a, bld.fmul(w, diff))
    high = bld.fsub(b, bld.fmul(diff, bld.fsub(s.c(1.0), w)))
    return bld.select(s.cmp("<", s.intrinsic("fabs", w), s.c(0.5)), low, high)


def _clamp(s, args, attrs):
    x, lo, hi = args
    if lo is not None:
        x = _maximum(s, x, lo)
    if hi is not None:
        x = _maximum(s, x, hi, pick_max=False)
    return x


def _relu(s, args, attrs):
    x = args[0]
    if s.is_float:  # maximum(x, 0) as numpy computes it: nan passes, -0.0 becomes 0.0
        return s.b.select(s.b.fcmp_ordered("<=", x, s.c(0)), s.c(0), x)
    return s.b.select(s.cmp("<", x, s.c(0)), s.c(0), x)


def _arith(float_op, int_op, bool_op=None):
    def emit(s, args, attrs):
        a, b = args
        if s.is_float:
            return getattr(s.b, float_op)(a, b)
        if s.dtype is dt.bool_ and bool_op:
            return getattr(s.b, bool_op)(a, b)
        return getattr(s.b, int_op)(a, b)
    return emit


def _compare(op):
    return lambda s, args, attrs: s.cmp(op, *args)


def _unary_math(name):
    return lambda s, args, attrs: getattr(s.math, name)(args[0])


def _libm(name):
    return lambda s, args, attrs: s.math.libm(name, *args)


LN2 = math.log(2.0)

EMITTERS = {
    "neg": lambda s, a, at: s.b.fneg(a[0]) if s.is_float else s.b.sub(s.c(0), a[0]),
    "abs": lambda s, a, at: s.intrinsic("fabs", a[0]) if s.is_float else
    s.b.select(s.cmp("<", a[0], s.c(0)), s.b.sub(s.c(0), a[0]), a[0]),
    "exp": _unary_math("exp"),
    "exp2": _unary_math("exp2"),
    "log": _unary_math("log"),
    "log2": lambda s, a, at: s.b.fmul(s.math.log(a[0]), s.c(1 / LN2)),
    "log1p": _unary_math("log1p"),
    "expm1": _unary_math("expm1"),
    "sqrt": lambda s, a, at: s.intrinsic("sqrt", a[0]),
    "rsqrt": lambda s, a, at: s.b.fdiv(s.c(1.0), s.intrinsic("sqrt", a[0])),
    "sin": _libm("sin"),
    "cos": _libm("cos"),
    "tan": _libm("tan"),
    "tanh": _unary_math("tanh"),
    "sigmoid": _unary_math("sigmoid"),
    "erf": _unary_math("erf"),
    "relu": _relu,
    "floor": lambda s, a, at: s.intrinsic("floor", a[0]) if s.is_float else a[0],
    "ceil": lambda s, a, at: s.intrinsic("ceil", a[0]) if s.is_float else a[0],
    "trunc": lambda s, a, at: s.intrinsic("trunc", a[0]) if s.is_float else a[0],
    "round": lambda s, a, at: _round(s, a[0], at.get("decimals", 0)),
    "sign": lambda s, a, at: _sign(s, a[0]),
    "reciprocal": lambda s, a, at: s.b.fdiv(s.c(1.0), a[0]),
    "square": lambda s, a, at: s.b.fmul(a[0], a[0]) if s.is_float else s.b.mul(a[0], a[0]),
    "logical_not": lambda s, a, at: s.b.xor(a[0], ir.Constant(I1, 1)),
    "isnan": lambda s, a, at: s.b.fcmp_unordered("uno", a[0], a[0]) if s.is_float else
    ir.Constant(I1, 0),
    "isinf": lambda s, a, at: s.b.fcmp_ordered("==", s.intrinsic("fabs", a[0]), s.c(math.inf))
    if s.is_float else ir.Constant(I1, 0),
    "isfinite": lambda s, a, at: s.b.fcmp_ordered("<", s.intrinsic("fabs", a[0]), s.c(math.inf))
    if s.is_float else ir.Constant(I1, 1),
    "cast": lambda s, a, at: a[0],  # the conversion happens on the way out
    "clone": lambda s, a, at: a[0],
    "add": _arith("fadd", "add", "or_"),
    "sub": _arith("fsub", "sub"),
    "mul": _arith("fmul", "mul", "and_"),
    "div": _div,
    "remainder": _remainder,
    "pow": lambda s, a, at: s.math.libm("pow", *a) if s.is_float else _int_pow(s, *a),
    "maximum": lambda s, a, at: _maximum(s, *a),
    "minimum": lambda s, a, at: _maximum(s, *a, pick_max=False),
    "atan2": _libm("atan2"),
    "eq": _compare("=="), "ne": _compare("!="), "lt": _compare("<"), "le": _compare("<="),
    "gt": _compare(">"), "ge": _compare(">="),
    "logical_and": lambda s, a, at: s.b.and_(*a),
    "logical_or": lambda s, a, at: s.b.or_(*a),
    "logical_xor": lambda s, a, at: s.b.xor(*a),
    "where": lambda s, a, at: s.b.select(*a),
    "clamp": _clamp,
    "lerp": _lerp,
    "masked_fill": lambda s, a, at: s.b.select(a[1], a[2], a[0]),
}


def install() -> None:
    """Fill the op table's ``emit`` slot."""
    for name, emit in EMITTERS.items():
        OPS[name].emit = emit
