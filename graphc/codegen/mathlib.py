"""Vectorizable transcendentals, emitted as straight-line LLVM IR.

LLVM's ``llvm.exp.f32`` and friends become scalar libm calls, which stop the loop
vectorizer. These functions are branch-free instruction sequences instead (polynomials,
bit manipulation, selects), so a loop using them vectorizes to the target's width (8 float32
lanes with AVX2, 16 with AVX-512 at 512 bits, 4 with NEON).

    exp    x = n·ln2 + r (Cody-Waite, |r| <= ln2/2), e^r by Taylor (degree 7 / 13),
           2^n applied in two halves so results that are subnormal stay exact-rounded
    expm1  Taylor for |x| < ln2/2 (no cancellation), else exp(x) - 1
    log    x = m·2^e with m in [√½, √2), log m = 2·atanh(s), s = (m-1)/(m+1) (series)
    log1p  log(1+x) corrected by the rounding of 1+x
    tanh   -expm1(-2|x|) / (2 + expm1(-2|x|)), with x's sign
    sigmoid  e = exp(-|x|): 1/(1+e) for x >= 0, e/(1+e) below (no overflow, no cancellation)
    erf    float32: computed in float64 as x·P(x²) on [0, 1) and 1 - exp(-x²)·Q(x) on
           [1, 4) (Chebyshev fits, relative error < 2e-14), 1 beyond; float64: libm's erf.

Accuracy against numpy, in ULPs over the whole range with nan, ±inf, subnormals and
large magnitudes, is measured in tests/codegen/test_mathlib.py.
"""

from __future__ import annotations

import math

from llvmlite import ir

F32, F64 = ir.FloatType(), ir.DoubleType()
I32, I64 = ir.IntType(32), ir.IntType(64)

# Chebyshev coefficients (float.hex) of erf(x)/x in u = 2x²-1 on [0, 1), and of
# erfc(x)·exp(x²) in t = (x - 2.5)/1.5 on [1, 4); fitted to math.erf/erfc with numpy.
_ERF_P = ['0x1.f371b6a14d255p-1', '-0x1.2359d7bb47ad0p-3', '0x1.48d890a56244ap-7',
          '-0x1.2e730c943d009p-11', '0x1.cc07b53e9f964p-16', '-0x1.28701fcde9898p-20',
          '0x1.4a9dab171c2fdp-25', '-0x1.4497820e7fbefp-30', '0x1.1c6a33af6f816p-35',
          '-0x1.c1d373599bc3bp-41', '0x1.44fc7ca01cfe2p-46']
_ERFC_Q = ['0x1.f4957d364d19ep-3', '-0x1.165205361f2fep-3', '0x1.23ec403b6e0f3p-5',
           '-0x1.231d388285ab6p-7', '0x1.15aa8393bd243p-9', '-0x1.fcfa3d136cf96p-12',
           '0x1.c1f0511e0b63ep-14', '-0x1.80d018509c7b7p-16', '0x1.3f3a7c241b96cp-18',
           '-0x1.016d995d6e798p-20', '0x1.94598f5e93acep-23', '-0x1.35c7d476be6f6p-25',
           '0x1.cfb11243cb8c8p-28', '-0x1.5372dade14faap-30', '0x1.e6ad44787dd84p-33',
           '-0x1.55fce5ee080acp-35', '0x1.d7919bcdf36d2p-38', '-0x1.3f3ed6099bd00p-40',
           '0x1.a8cb5db8389cep-43']

# e^r on |r| <= ln2/2 for float32: a degree-6 polynomial with 1 + r exact, least-squares
# fitted (relative error) on Chebyshev nodes with numpy; error 3.8e-9 before rounding
_EXP_F32 = [1.0, 1.0] + [float.fromhex(h) for h in (
    '0x1.fffff8p-2', '0x1.55548ep-3', '0x1.555b58p-5', '0x1.123b8ep-7', '0x1.687c22p-10')]


class Math:
    """Emits math on one float type at the builder's position."""

    def __init__(self, builder: ir.IRBuilder, ty: ir.Type):
        self.b = builder
        self.ty = ty
        self.f64 = isinstance(ty, ir.DoubleType)
        self.ity = I64 if self.f64 else I32
        self.mbits = 52 if self.f64 else 23
        self.bias = 1023 if self.f64 else 127

    # ---- helpers -----------------------------------------------------------------
    def c(self, v: float) -> ir.Constant:
        return ir.Constant(self.ty, v)

    def intrinsic(self, name: str, *args, fastmath=()):
        module = self.b.module
        full = f"llvm.{name}.{'f64' if self.f64 else 'f32'}"
        fn = module.globals.get(full)
        if fn is None:
            fn = ir.Function(module, ir.FunctionType(self.ty, [self.ty] * len(args)), full)
        return self.b.call(fn, list(args), fastmath=fastmath)

    def fma(self, a, x, c):
        return self.intrinsic("fma", a, x, c)

    def horner(self, x, coefficients):
        """c0 + x·(c1 + x·(c2 + ...)) with FMAs; coefficients low order first."""
        acc = self.c(coefficients[-1])
        for k in reversed(coefficients[:-1]):
            acc = self.fma(acc, x, self.c(k))
        return acc

    def clenshaw(self, u, coefficients):
        """Σ c_k·T_k(u) (Chebyshev series) with Clenshaw's recurrence."""
        b1 = b2 = self.c(0.0)
        two_u = self.b.fmul(u, self.c(2.0))
        for k in reversed(coefficients[1:]):
            b1, b2 = self.b.fadd(self.fma(two_u, b1, self.b.fneg(b2)), self.c(k)), b1
        return self.b.fadd(self.fma(u, b1, self.b.fneg(b2)), self.c(coefficients[0]))

    def select(self, cond, a, b):
        return self.b.select(cond, a, b)

    def is_nan(self, x):
        return self.b.fcmp_unordered("uno", x, x)

    def fabs(self, x):
        return self.intrinsic("fabs", x)

    # ---- functions ---------------------------------------------------------------
    def clamp(self, x, lo=None, hi=None):
        """x limited to [lo, hi] by compare and select (one vmaxps/vminps each; a nan x
        comes out as some number, so callers restore nan themselves)."""
        b = self.b
        if lo is not None:
            x = self.select(b.fcmp_ordered("<", x, self.c(lo)), self.c(lo), x)
        if hi is not None:
            x = self.select(b.fcmp_ordered(">", x, self.c(hi)), self.c(hi), x)
        return x

    def exp(self, x, nonpositive: bool = False):
        """e^x; ``nonpositive`` when the caller knows x <= 0 (or nan): no upper clamp."""
        b = self.b
        hi, lo = (709.8, -745.2) if self.f64 else (88.8, -104.0)
        xc = self.clamp(x, lo, None if nonpositive else hi)
        n = self.intrinsic("rint", b.fmul(xc, self.c(1 / math.log(2))))
        ln2_hi, ln2_lo = (float.fromhex("0x1.62e42fee00000p-1"), float.fromhex("0x1.a39ef35793c76p-33"))
        if not self.f64:
            ln2_hi, ln2_lo = 0.693145751953125, 1.428606765330187e-06
        r = self.fma(b.fneg(n), self.c(ln2_hi), xc)
        r = self.fma(b.fneg(n), self.c(ln2_lo), r)
        return self._scaled_exp(n, r)  # a nan x stays nan through r and the polynomial

    def _scaled_exp(self, n, r):
        """e^r · 2^n, for |r| <= ln2/2 and an integer-valued n."""
        b = self.b
        if self.f64:
            p = self.horner(r, [1.0 / math.factorial(k) for k in range(14)])
        else:
            p = self.horner(r, _EXP_F32)
        # a nan n (from a nan x) must not reach fptosi: its result would be poison, and
        # where LLVM can see the nan (a constant, 0/0 over an empty dim) it folded the whole
        # exp to 0. nan > -2048 is false, so it becomes -2048 (one vmaxps); p is nan anyway.
        floor = self.c(-2048.0)
        e = b.fptosi(self.select(b.fcmp_ordered(">", n, floor), n, floor), self.ity)
        half = b.ashr(e, ir.Constant(self.ity, 1))  # 2^n in two factors: subnormals stay exact
        return b.fmul(b.fmul(p, self._pow2_int(half)), self._pow2_int(b.sub(e, half)))

    def _pow2_int(self, e):
        """2^e for an integer e in the normal exponent range."""
        e = self.b.add(e, ir.Constant(self.ity, self.bias))
        return self.b.bitcast(self.b.shl(e, ir.Constant(self.ity, self.mbits)), self.ty)

    def exp2(self, x):
        b = self.b
        hi, lo = (1024.5, -1075.5) if self.f64 else (128.5, -150.5)
        xc = self.clamp(x, lo, hi)
        n = self.intrinsic("rint", xc)
        r = b.fmul(b.fsub(xc, n), self.c(math.log(2.0)))  # x - n is exact
        return self._scaled_exp(n, r)  # a nan x stays nan through r and the polynomial

    def expm1(self, x):
        b = self.b
        degree = 14 if self.f64 else 8
        # x·(1 + x/2 + ...): the same roundings as a Horner sum with a zero constant term,
        # but -0.0 stays -0.0 (an FMA adding +0.0 would turn it into +0.0)
        small = b.fmul(x, self.horner(x, [1.0 / math.factorial(k) for k in range(1, degree + 1)]))
        big = b.fsub(self.exp(x), self.c(1.0))
        return self.select(b.fcmp_ordered("<", self.fabs(x), self.c(0.34657359027997264)), small, big)

    def log(self, x):
        b = self.b
        tiny = float.fromhex("0x1p-1022") if self.f64 else float.fromhex("0x1p-126")
        sub = b.fcmp_ordered("<", x, self.c(tiny))  # subnormals: scale into the normal range
        scale = 54 if self.f64 else 25
        xs = self.select(sub, b.fmul(x, self.c(2.0 ** scale)), x)
        bits = b.bitcast(xs, self.ity)
        mask = (1 << self.mbits) - 1
        e = b.sub(b.lshr(bits, ir.Constant(self.ity, self.mbits)), ir.Constant(self.ity, self.bias))
        m = b.bitcast(b.or_(b.and_(bits, ir.Constant(self.ity, mask)),
                            ir.Constant(self.ity, self.bias << self.mbits)), self.ty)
        big = b.fcmp_ordered(">", m, self.c(math.sqrt(2.0)))
        m = self.select(big, b.fmul(m, self.c(0.5)), m)
        ef = b.sitofp(e, self.ty)
        ef = b.fadd(ef, self.select(big, self.c(1.0), self.c(0.0)))
        ef = b.fsub(ef, self.select(sub, self.c(float(scale)), self.c(0.0)))
        s = b.fdiv(b.fsub(m, self.c(1.0)), b.fadd(m, self.c(1.0)))
        z = b.fmul(s, s)
        terms = 12 if self.f64 else 6
        series = self.horner(z, [2.0 / (2 * k + 1) for k in range(terms)])
        log_m = b.fmul(s, series)
        ln2_hi, ln2_lo = (0.6931471803691238, 1.9082149292705877e-10) if self.f64 else \
            (0.693145751953125, 1.428606765330187e-06)
        result = self.fma(ef, self.c(ln2_hi), self.fma(ef, self.c(ln2_lo), log_m))
        result = self.select(b.fcmp_ordered("==", x, self.c(0.0)), self.c(-math.inf), result)
        result = self.select(b.fcmp_ordered("==", x, self.c(math.inf)), x, result)
        return self.select(b.fcmp_unordered("<", x, self.c(0.0)), self.c(math.nan), result)

    def log1p(self, x):
        b = self.b
        u = b.fadd(x, self.c(1.0))
        correction = b.fdiv(b.fsub(b.fsub(u, self.c(1.0)), x), u)
        result = b.fsub(self.log(u), correction)
        result = self.select(b.fcmp_ordered("==", u, self.c(1.0)), x, result)
        result = self.select(b.fcmp_ordered("==", u, self.c(0.0)), self.c(-math.inf), result)
        return self.select(b.fcmp_ordered("==", x, self.c(math.inf)), x, result)

    def tanh(self, x):
        b = self.b
        t = self.expm1(b.fmul(self.fabs(x), self.c(-2.0)))
        r = b.fdiv(b.fneg(t), b.fadd(t, self.c(2.0)))
        return self.intrinsic("copysign", r, x)

    def sigmoid(self, x):
        b = self.b
        e = self.exp(b.fneg(self.fabs(x)), nonpositive=True)
        s = b.fdiv(self.c(1.0), b.fadd(e, self.c(1.0)))
        return self.select(b.fcmp_ordered(">=", x, self.c(0.0)), s, b.fmul(e, s))

    def erf(self, x):
        if self.f64:
            return self.libm("erf", x)
        b = self.b
        d = Math(b, F64)
        xd = b.fpext(x, F64)
        a = d.fabs(xd)
        u = b.fsub(b.fmul(b.fmul(a, a), d.c(2.0)), d.c(1.0))
        near = b.fmul(a, d.clenshaw(u, [float.fromhex(h) for h in _ERF_P]))
        t = b.fdiv(b.fsub(a, d.c(2.5)), d.c(1.5))
        q = d.clenshaw(t, [float.fromhex(h) for h in _ERFC_Q])
        far = b.fsub(d.c(1.0), b.fmul(q, d.exp(b.fneg(b.fmul(a, a)))))
        r = d.select(b.fcmp_ordered("<", a, d.c(1.0)), near, far)
        r = d.select(b.fcmp_ordered(">=", a, d.c(4.0)), d.c(1.0), r)
        r = d.select(d.is_nan(xd), xd, r)
        return b.fptrunc(d.intrinsic("copysign", r, xd), F32)

    def libm(self, name: str, *args):
        """A scalar C math library call (sin, cos, pow, ...): exact but not vectorized."""
        symbol = name if self.f64 else name + "f"
        module = self.b.module
        fn = module.globals.get(symbol)
        if fn is None:
            fn = ir.Function(module, ir.FunctionType(self.ty, [self.ty] * len(args)), symbol)
        return self.b.call(fn, list(args))
