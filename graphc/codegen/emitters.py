"""The helpers scalar emitters are written with: ``Scalar`` and dtype conversions.

An elementwise op's ``OpDef.emit`` is ``emit(s, *args, **attrs) -> value``, where ``s`` is a
``Scalar`` (the builder ``s.b``, the compute dtype, the math library ``s.math``, constants
``s.c``, comparisons and numpy-exact helpers such as ``s.maximum`` or ``s.div``) and ``args``
are the inputs already converted to the compute dtype (as the op's dtype rule says). The
emitters live with the op declarations (graphc/ops); an op without one runs through its
numpy kernel (a reported fallback).

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


from llvmlite import ir

from .. import dtype as dt
from ..ops.registry import OPS
from .mathlib import Math

I1, I8, I32, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
F32, F64 = ir.FloatType(), ir.DoubleType()

ERR_INTEGER_DIVISION = 1
ERR_NEGATIVE_POWER = 2
ERR_INDEX = 3  # an index outside its dim (gather, index_select)
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

    def bool(self, value: bool) -> ir.Constant:
        return ir.Constant(I1, int(value))

    def arith(self, float_op: str, int_op: str, a, b, bool_op: str | None = None):
        """``a (op) b`` with the builder method the compute dtype needs (fadd / add / or_)."""
        if self.is_float:
            return getattr(self.b, float_op)(a, b)
        return getattr(self.b, bool_op if self.dtype is dt.bool_ and bool_op else int_op)(a, b)

    def neg(self, x):
        return self.b.fneg(x) if self.is_float else self.b.sub(self.c(0), x)

    def abs(self, x):
        if self.is_float:
            return self.intrinsic("fabs", x)
        return self.b.select(self.cmp("<", x, self.c(0)), self.neg(x), x)

    def maximum(self, a, b, pick_max: bool = True):
        """numpy's rule: nan wins, and of equal values (0.0, -0.0) the second."""
        if self.is_float:
            first = self.b.or_(self.b.fcmp_ordered(">" if pick_max else "<", a, b),
                               self.b.fcmp_unordered("uno", a, a))
            return self.b.select(first, a, b)
        if self.dtype is dt.bool_:
            return self.b.or_(a, b) if pick_max else self.b.and_(a, b)
        return self.b.select(self.b.icmp_signed(">" if pick_max else "<", a, b), a, b)

    def minimum(self, a, b):
        return self.maximum(a, b, pick_max=False)

    def relu(self, x):
        if self.is_float:  # maximum(x, 0) as numpy computes it: nan passes, -0.0 becomes 0.0
            return self.b.select(self.b.fcmp_ordered("<=", x, self.c(0)), self.c(0), x)
        return self.b.select(self.cmp("<", x, self.c(0)), self.c(0), x)

    def clamp(self, x, lo=None, hi=None):
        if lo is not None:
            x = self.maximum(x, lo)
        if hi is not None:
            x = self.minimum(x, hi)
        return x

    def sign(self, x):
        if self.dtype is dt.bool_:
            return x
        pos = self.b.select(self.cmp(">", x, self.c(0)), self.c(1), self.c(0))
        return self.b.select(self.cmp("<", x, self.c(0)), self.c(-1), pos)  # sign(nan) is 0

    def round(self, x, decimals: int = 0):
        """Half to even, to ``decimals`` places (x·10^d rounded, then divided)."""
        if not self.is_float:
            return x
        if decimals == 0:
            return self.intrinsic("roundeven", x)
        scale = self.c(10.0 ** decimals)
        return self.b.fdiv(self.intrinsic("roundeven", self.b.fmul(x, scale)), scale)

    def div(self, a, b, rounding_mode: str | None = None):
        if rounding_mode is None:
            return self.b.fdiv(a, b)
        if not self.is_float:
            return _int_divmod(self, a, b, rounding_mode)[0]
        if rounding_mode == "trunc":
            return self.intrinsic("trunc", self.b.fdiv(a, b))
        return _float_floordiv(self, a, b)

    def remainder(self, a, b):
        """Python's %: the result has the divisor's sign."""
        if not self.is_float:
            return _int_divmod(self, a, b, "floor")[1]
        bld = self.b
        mod = bld.frem(a, b)
        wrong_sign = bld.and_(self.cmp("!=", mod, self.c(0.0)),
                              bld.icmp_unsigned("!=", self.cmp("<", b, self.c(0.0)),
                                                self.cmp("<", mod, self.c(0.0))))
        mod = bld.select(wrong_sign, bld.fadd(mod, b), mod)
        return bld.select(self.cmp("==", mod, self.c(0.0)), self.intrinsic("copysign", self.c(0.0), b),
                          mod)

    def pow(self, a, b):
        return self.math.libm("pow", a, b) if self.is_float else _int_pow(self, a, b)

    def lerp(self, a, b, w):
        """a + w·(b - a) for |w| < 0.5, else b - (b - a)·(1 - w): exact at both ends."""
        bld = self.b
        diff = bld.fsub(b, a)
        low = bld.fadd(a, bld.fmul(w, diff))
        high = bld.fsub(b, bld.fmul(diff, bld.fsub(self.c(1.0), w)))
        return bld.select(self.cmp("<", self.intrinsic("fabs", w), self.c(0.5)), low, high)


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


# ---- integer division and powers, flagging errors -----------------------------------

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


# ---- the op table's emitters, checked when the backend loads -------------------------------

_BUILTIN: dict = {}


def check_table(gathers) -> None:
    """Check every declared emitter against its op, and remember graphc's own: an emitter
    replaced or added at run time is not in the code digest, so a program using it is not
    keyed by its fingerprint alone (``cache.fingerprint``). The ops marked ``gather`` are
    the ones with an index map in ``gathers``."""
    marked = {op.name for op in OPS if op.gather}
    if marked != set(gathers):
        raise RuntimeError(f"the op table's gather ops {sorted(marked)} are not the backend's "
                           f"{sorted(gathers)}")
    for op in OPS:
        op.check_emitter()
        if not op.custom:
            _BUILTIN[op.name] = op.emit


def builtin_emitter(op):
    """The emitter graphc declared for ``op`` (None for an op declared by a user)."""
    return None if op.custom else _BUILTIN.get(op.name)
