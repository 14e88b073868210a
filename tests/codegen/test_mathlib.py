"""The backend's transcendentals (codegen/mathlib.py) against numpy: ULP accuracy, special
values, vectorization of compiled kernels, and the fast-math policy of codegen/emitters.py.

Every op is compiled as a one-op graph and run over a dense sweep of its input range (with
nan, infinities, signed zeros, subnormals and huge magnitudes mixed in). References:
float32 results against numpy in float64 rounded to float32 (correctly rounded in practice);
float64 results against numpy in long double where that is the x87 80-bit type, else numpy in
float64; erf against ``math.erf``.
"""

from __future__ import annotations

import math
import re
from functools import cache

import numpy as np
import pytest

import graphc
from graphc.compiler import compile_graph
from graphc.codegen.target import current
from graphc.nn import functional as F
from tests.codegen.vectors import X86, lanes, needs_fma, packed, vector_lanes

# Max error in ULPs over sweep(dtype); the comment is the value measured on x86-64 with AVX2
# and where the worst case was. Bounds equal the measurements: a regression fails at once.
ULP_BOUNDS = {
    ("exp", "float32"): 1,      # measured 1 (x = 6.9e-4)
    ("exp", "float64"): 1,      # measured 1 (x = 5.0e-6)
    ("exp2", "float32"): 1,     # measured 1 (x = 0.0163)
    ("exp2", "float64"): 1,     # measured 1 (x = 0.0922)
    ("expm1", "float32"): 3,    # measured 3 (x = 0.3472, just above the Taylor switch at ln2/2)
    ("expm1", "float64"): 3,    # measured 3 (x = 0.3652, same place: exp(x) - 1 cancels)
    ("log", "float32"): 3,      # measured 3 (x = 1.0134)
    ("log", "float64"): 3,      # measured 3 (x = 1.1299)
    ("log2", "float32"): 4,     # measured 4 (x = 1.4140: log's error times 1/ln2, rounded again)
    ("log2", "float64"): 3,     # measured 3 (x = 1.0205)
    ("log10", "float32"): 4,    # measured 4 (x = 1.0081: log's error times 1/ln10, rounded again)
    ("log10", "float64"): 5,    # measured 5 (x = 0.9917; log10(100) is 2 - 1 ulp, as log2(8))
    ("log1p", "float32"): 3,    # measured 3 (x = 8.88e-4)
    ("log1p", "float64"): 3,    # measured 3 (x = 0.0311)
    ("tanh", "float32"): 3,     # measured 3 (x = -0.2541)
    ("tanh", "float64"): 3,     # measured 3 (x = 0.1964)
    ("sigmoid", "float32"): 2,  # measured 2 (x = -4.24e-4)
    ("sigmoid", "float64"): 2,  # measured 2 (x = -1.84e-8)
    ("erf", "float32"): 0,      # measured 0 (computed in float64, then rounded)
    ("erf", "float64"): 0,      # measured 0 (libm's erf, as the reference)
    ("softplus", "float32"): 4,  # measured 4 (x = -1.2829: log1p of exp's result)
    ("softplus", "float64"): 3,  # measured 3 (x = -0.9632)
}

# Composites built on the functions above, against float64 references without the
# cancellation of their textbook formulas: (ULPs for x >= -1, where the result is well
# conditioned; error over the whole sweep in units of eps·max(|x|, tiny), since gelu's
# 1 + erf(x/√2) cancels for negative x and silu's sigmoid underflows before x·sigmoid(x)).
COMPOSITE_BOUNDS = {
    ("gelu", "float32"): (2, 1.0),       # measured 2 (x = -0.5217), 0.87 (x = 1.186)
    ("gelu", "float64"): (2, 1.0),       # measured 2 (x = -0.5595), 0.99 (x = 2.049)
    ("gelu_tanh", "float32"): (3, 1.25),  # measured 3 (x = -0.3126), 1.19 (x = 1.191)
    ("gelu_tanh", "float64"): (3, 1.25),  # measured 3 (x = -0.9983), 1.13 (x = 1.168)
    ("silu", "float32"): (3, 1.25),       # measured 3 (x = -0.7922), 1.16 (x = 8.685)
    ("silu", "float64"): (3, 1.25),       # measured 3 (x = -0.8116), 1.17 (x = 18.16)
    ("elu", "float32"): (1, 1.0),         # measured 1 (x = -5.97e-8), 0.95 (x = -0.3591)
    ("elu", "float64"): (2, 1.25),        # measured 2 (x = -0.4242), 1.21 (x = -0.3470)
    ("mish", "float32"): (4, 1.6),        # measured 4 (x = 3.93e-4), 1.59 (x = 4.426)
    ("mish", "float64"): (5, 1.65),       # measured 5 (x = -0.6086), 1.61 (x = 4.377)
}

DTYPES = (np.float32, np.float64)
WIDE = np.longdouble if np.finfo(np.longdouble).nmant >= 63 else np.float64


# ---- helpers -------------------------------------------------------------------------------

def ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """How many representable floats lie between a and b (uint64 per element).

    The bit patterns are mapped to integers in float order, so +0.0 and -0.0 are 0 apart,
    the smallest subnormal is 1 from zero and the largest float is 1 from infinity. Two
    nans are 0 apart; a nan and a number are as far apart as possible.
    """
    a, b = np.broadcast_arrays(np.asarray(a), np.asarray(b))
    assert a.dtype == b.dtype and a.dtype in (np.float32, np.float64), (a.dtype, b.dtype)
    bits = a.dtype.itemsize * 8
    unsigned = np.uint32 if bits == 32 else np.uint64

    def ordered(v):
        raw = np.ascontiguousarray(v).view(unsigned).astype(np.uint64)
        sign = raw >> np.uint64(bits - 1)
        magnitude = raw & np.uint64((1 << (bits - 1)) - 1)
        middle = np.uint64(1 << (bits - 1))
        return np.where(sign == 1, middle - magnitude, middle + magnitude)

    ka, kb = ordered(a), ordered(b)
    d = np.where(ka > kb, ka - kb, kb - ka)
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    d = np.where(nan_a & nan_b, np.uint64(0), d)
    return np.where(nan_a ^ nan_b, np.uint64(np.iinfo(np.uint64).max), d)


def test_ulp_distance():
    f32 = np.float32
    one = np.array([1.0], f32)
    assert ulp_distance(one, np.nextafter(one, f32(2))) == 1
    assert ulp_distance(np.array([0.0], f32), np.array([-0.0], f32)) == 0
    tiny = np.finfo(f32).smallest_subnormal
    assert ulp_distance(np.array([-tiny]), np.array([tiny])) == 2  # across zero (float64 here)
    assert ulp_distance(np.array([-tiny], f32), np.array([tiny], f32)) == 2
    assert ulp_distance(np.array([np.nan], f32), np.array([-np.nan], f32)) == 0
    assert ulp_distance(np.array([np.inf]), np.array([np.inf])) == 0
    assert ulp_distance(np.array([np.nan]), np.array([1.0])) == np.iinfo(np.uint64).max
    big = np.finfo(np.float64).max
    assert ulp_distance(np.array([-big]), np.array([big])) == 2 * (2 ** 63 - 2 ** 52) - 2
    assert ulp_distance(np.array([1.0, 2.0], f32), np.array([1.0, 1.0], f32)).tolist() == [0, 2 ** 23]


def as_numpy(out):
    return tuple(t.numpy() for t in out) if isinstance(out, tuple) else out.numpy()


def compiled(fn, *arrays: np.ndarray):
    """fn compiled for the arrays: (the compiled graph, its result as numpy)."""
    tensors = [graphc.from_numpy(a) for a in arrays]
    cg = compile_graph(graphc.trace(fn, *tensors), *tensors)
    return cg, as_numpy(cg(*tensors))


def eager(fn, *arrays: np.ndarray):
    with graphc.no_grad():
        return as_numpy(fn(*[graphc.from_numpy(a) for a in arrays]))


def specials(dtype) -> np.ndarray:
    fi = np.finfo(dtype)
    denormal = 1e-40 if dtype == np.float32 else 5e-324
    return np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, fi.smallest_subnormal,
                     -fi.smallest_subnormal, denormal, -denormal, fi.tiny, fi.max, -fi.max,
                     1e30, -1e30, 1.0, -1.0], dtype)


@cache
def sweep(dtype) -> np.ndarray:
    """About 1.6M inputs: the interesting ranges densely, random bit patterns, specials."""
    fi = np.finfo(dtype)
    rng = np.random.default_rng(7)
    with np.errstate(over="ignore"):
        magnitudes = np.geomspace(float(fi.smallest_subnormal), float(fi.max), 150_000)
    limits = [float(fi.max), float(fi.tiny), float(fi.smallest_subnormal)]
    # where exp and exp2 overflow, become subnormal and underflow to zero
    edges = [math.log(v) for v in limits] + [math.log2(v) for v in limits]
    dense = np.concatenate([
        magnitudes, -magnitudes,
        np.linspace(-1, 1, 200_001),                    # near zero
        np.geomspace(1e-12, 1e-1, 50_000) * rng.choice([-1, 1], 50_000),
        np.linspace(-45, 45, 200_001),                  # tanh and sigmoid saturate
        np.linspace(0.5, 2, 200_001),                   # log's reduced range and either side
        1 + np.linspace(-1e-3, 1e-3, 20_001),
        -1 + np.geomspace(1e-12, 1, 20_000),            # log1p near -1
        *[np.linspace(e - 0.05, e + 0.05, 10_001) for e in edges],
    ]).astype(dtype)
    unsigned = np.uint32 if dtype == np.float32 else np.uint64
    bits = rng.integers(0, np.iinfo(unsigned).max, 1 << 19, dtype=unsigned, endpoint=True)
    return np.concatenate([dense, bits.view(dtype), np.tile(specials(dtype), 9)])


def _sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _erf(x):
    return np.frompyfunc(math.erf, 1, 1)(x.astype(np.float64)).astype(np.float64)


def _erfc(x):
    return np.frompyfunc(math.erfc, 1, 1)(x.astype(np.float64)).astype(np.float64)


REFERENCES = {
    "exp": np.exp, "exp2": np.exp2, "expm1": np.expm1, "log": np.log, "log2": np.log2,
    "log10": np.log10, "log1p": np.log1p, "tanh": np.tanh, "sigmoid": _sigmoid, "erf": _erf,
    # no cancellation: gelu as x·erfc(-x/√2)/2, its tanh form as x·sigmoid(2z)
    "gelu": lambda x: 0.5 * x * _erfc(-x * math.sqrt(0.5)),
    "gelu_tanh": lambda x: x * _sigmoid(2 * math.sqrt(2 / math.pi) * (x + 0.044715 * x * x * x)),
    "silu": lambda x: x * _sigmoid(x),
    # PyTorch's definition: x itself above the threshold (20), where log1p(exp(-x)) < 2e-9
    "softplus": lambda x: np.where(x > 20, x, np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))),
    # softplus without PyTorch's threshold switch (tanh(x) is 1 there, in any precision)
    "mish": lambda x: x * np.tanh(np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))),
}

ULP_OPS = sorted({op for op, _ in ULP_BOUNDS})
COMPOSITES = sorted({op for op, _ in COMPOSITE_BOUNDS})
FUNCTIONS = {name: getattr(graphc, name, None) or getattr(F, name) for name in ULP_OPS} | {
    "gelu": F.gelu, "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"), "silu": F.silu,
    "elu": F.elu, "mish": F.mish}


def exact(name: str, x: np.ndarray) -> np.ndarray:
    """name(x) computed wider than x: float64 for float32, long double for float64."""
    wide = np.float64 if x.dtype == np.float32 else WIDE
    with np.errstate(all="ignore"):
        return np.asarray(REFERENCES[name](x.astype(wide)))


def reference(name: str, x: np.ndarray) -> np.ndarray:
    """name(x) correctly rounded to x's dtype (up to the wide reference's own error)."""
    with np.errstate(over="ignore"):  # results beyond the dtype's range round to infinity
        return exact(name, x).astype(x.dtype)


def worst(x, got, want, err) -> str:
    i = int(np.argmax(err))
    return f"worst at x={x[i]!r}: got {got[i]!r}, numpy {want[i]!r}"


# ---- ULP accuracy --------------------------------------------------------------------------

def test_the_table_covers_the_transcendental_ops():
    from graphc.ops import OPS
    names = {op.name for op in OPS}
    expected = {"exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "tanh", "sigmoid", "erf",
                "softplus"}
    assert {op for op, _ in ULP_BOUNDS} == expected & names
    composites = {"gelu", "silu", "elu", "mish"} & names
    assert {op.removesuffix("_tanh") for op, _ in COMPOSITE_BOUNDS} == composites


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", ULP_OPS)
def test_ulp_error_over_the_whole_range(name, dtype):
    x = sweep(dtype)
    cg, got = compiled(FUNCTIONS[name], x)
    assert "0 fallbacks" in cg.explain(), cg.explain()
    want = reference(name, x)
    err = ulp_distance(got, want)
    bound = ULP_BOUNDS[name, np.dtype(dtype).name]
    assert err.max() <= bound, f"{name} {np.dtype(dtype).name}: {err.max()} ULPs > {bound}; " \
                               + worst(x, got, want, err)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", COMPOSITES)
def test_composite_error(name, dtype):
    x = sweep(dtype)
    x = x[np.isfinite(x)]
    cg, got = compiled(FUNCTIONS[name], x)
    assert "0 fallbacks" in cg.explain(), cg.explain()
    ulps, input_ulps = COMPOSITE_BOUNDS[name, np.dtype(dtype).name]
    wide = exact(name, x)
    with np.errstate(over="ignore"):
        want = wide.astype(dtype)
    conditioned = x >= -1
    err = ulp_distance(got[conditioned], want[conditioned])
    assert err.max() <= ulps, f"{name}: {err.max()} ULPs > {ulps} for x >= -1; " + \
        worst(x[conditioned], got[conditioned], want[conditioned], err)
    eps, tiny = np.finfo(dtype).eps, np.finfo(dtype).tiny
    scale = eps * np.maximum(np.abs(x.astype(wide.dtype)), tiny)
    scaled = np.abs(got.astype(wide.dtype) - wide) / scale
    np.testing.assert_array_equal(np.isfinite(got), np.isfinite(want))
    assert scaled.max() <= input_ulps, f"{name}: error {float(scaled.max()):.3g}·eps·|x| > " \
                                       f"{input_ulps}; " + worst(x, got, want, scaled)


# ---- special values ------------------------------------------------------------------------

NAN, INF = math.nan, math.inf


class Limit:
    """A value that depends on the dtype: its largest float, or a subnormal (1e-40 for
    float32, 5e-324 for float64); negates like a number."""

    def __init__(self, kind: str, sign: float = 1.0):
        self.kind, self.sign = kind, sign

    def __neg__(self) -> Limit:
        return Limit(self.kind, -self.sign)

    def value(self, dtype) -> float:
        magnitude = float(np.finfo(dtype).max) if self.kind == "max" else \
            1e-40 if dtype == np.float32 else 5e-324
        return self.sign * magnitude


MAX, DENORMAL = Limit("max"), Limit("denormal")
SPECIAL_VALUES = {  # op: (input, exact result) pairs; not a dict, which merges 0.0 and -0.0
    "exp": [(NAN, NAN), (INF, INF), (-INF, 0.0), (0.0, 1.0), (-0.0, 1.0), (MAX, INF),
            (-MAX, 0.0), (DENORMAL, 1.0)],
    "exp2": [(NAN, NAN), (INF, INF), (-INF, 0.0), (0.0, 1.0), (-0.0, 1.0), (MAX, INF),
             (-MAX, 0.0), (1.0, 2.0), (10.0, 1024.0), (-3.0, 0.125)],
    "expm1": [(NAN, NAN), (INF, INF), (-INF, -1.0), (0.0, 0.0), (-0.0, -0.0), (MAX, INF),
              (-MAX, -1.0), (DENORMAL, DENORMAL), (-DENORMAL, -DENORMAL)],
    "log": [(NAN, NAN), (INF, INF), (-INF, NAN), (0.0, -INF), (-0.0, -INF), (-1.0, NAN),
            (-DENORMAL, NAN), (-MAX, NAN), (1.0, 0.0)],
    "log2": [(NAN, NAN), (INF, INF), (-INF, NAN), (0.0, -INF), (-0.0, -INF), (-1.0, NAN),
             (1.0, 0.0)],
    "log10": [(NAN, NAN), (INF, INF), (-INF, NAN), (0.0, -INF), (-0.0, -INF), (-1.0, NAN),
              (1.0, 0.0)],
    "log1p": [(NAN, NAN), (INF, INF), (-INF, NAN), (-1.0, -INF), (-2.0, NAN), (-MAX, NAN),
              (0.0, 0.0), (-0.0, -0.0), (DENORMAL, DENORMAL), (-DENORMAL, -DENORMAL)],
    "tanh": [(NAN, NAN), (INF, 1.0), (-INF, -1.0), (0.0, 0.0), (-0.0, -0.0), (MAX, 1.0),
             (-MAX, -1.0), (DENORMAL, DENORMAL), (-DENORMAL, -DENORMAL), (30.0, 1.0), (-30.0, -1.0)],
    "sigmoid": [(NAN, NAN), (INF, 1.0), (-INF, 0.0), (0.0, 0.5), (-0.0, 0.5), (MAX, 1.0),
                (-MAX, 0.0), (DENORMAL, 0.5)],
    "erf": [(NAN, NAN), (INF, 1.0), (-INF, -1.0), (0.0, 0.0), (-0.0, -0.0), (MAX, 1.0),
            (-MAX, -1.0), (10.0, 1.0), (-10.0, -1.0)],
}


def _value(v, dtype) -> float:
    return v.value(dtype) if isinstance(v, Limit) else v


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", sorted(SPECIAL_VALUES))
def test_special_values_exactly(name, dtype):
    cases = [(_value(i, dtype), _value(o, dtype)) for i, o in SPECIAL_VALUES[name]]
    inputs = np.array([i for i, _ in cases], dtype)
    expected = np.array([o for _, o in cases], dtype)
    # every value in many vector lanes and in the scalar remainder loop
    x, want = np.tile(inputs, 17), np.tile(expected, 17)
    _, got = compiled(FUNCTIONS[name], x)
    bad = ~((got == want) & (np.signbit(got) == np.signbit(want)) | np.isnan(got) & np.isnan(want))
    assert not bad.any(), f"{name}: " + ", ".join(
        f"{name}({x[i]!r}) = {got[i]!r}, expected {want[i]!r}" for i in np.nonzero(bad)[0][:6])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", COMPOSITES)
def test_composite_special_values_match_eager(name, dtype):
    x = np.tile(specials(dtype), 17)
    _, got = compiled(FUNCTIONS[name], x)
    want = eager(FUNCTIONS[name], x)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=4 * np.finfo(dtype).eps, atol=0)


# ---- vectorization -------------------------------------------------------------------------

def _mul_add(x, y):
    return x * 1.5 + y


FMA = r"vfn?m(?:add|sub)\d+{t}"
VECTOR_CASES = [  # (id, function, number of (64, 4096) inputs, packed instruction pattern)
    ("mul_add", _mul_add, 2, r"v?mul{t}|" + FMA),
    ("sum", lambda x: x.sum(-1), 1, r"v?add{t}"),
    *[pytest.param((name, getattr(graphc, name), 1, FMA), marks=needs_fma, id=name)
      for name in ("exp", "expm1", "log", "log1p", "tanh", "sigmoid")],
]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", VECTOR_CASES, ids=lambda c: c[0])
def test_kernels_use_the_targets_widest_vectors(case, dtype):
    """Vectors as wide as the target in use vectorizes to (8 float32 lanes on ymm with AVX2,
    16 on zmm with AVX-512 at 512 bits, 4 with NEON); test_target.py reads other targets'."""
    _, fn, arity, pattern = case
    rng = np.random.default_rng(0)
    inputs = [rng.uniform(0.5, 2.0, (64, 4096)).astype(dtype) for _ in range(arity)]
    cg, _ = compiled(fn, *inputs)
    want = lanes(dtype)
    assert max(vector_lanes(cg.dump("llvm_opt"), dtype), default=0) >= want > 1, current().summary()
    if X86:
        assert packed(cg.dump("asm"), pattern, dtype, current().vector_bits()), \
            f"no packed instruction on {current().vector_bits()}-bit registers"


@needs_fma
def test_float32_erf_vectorizes_in_float64():
    cg, _ = compiled(graphc.erf, np.linspace(-5, 5, 64 * 4096, dtype=np.float32).reshape(64, 4096))
    assert max(vector_lanes(cg.dump("llvm_opt"), np.float64), default=0) >= lanes(np.float64) > 1
    if X86:
        assert packed(cg.dump("asm"), FMA, np.float64, current().vector_bits())
    assert not re.search(r"call [^\n]*@erff?\(", cg.dump("llvm_opt")), "erf became a libm call"


LIBM = {f"{name}{suffix}" for name in ("exp", "exp2", "expm1", "log", "log2", "log1p", "tanh", "erf")
        for suffix in ("", "f")}


@pytest.mark.parametrize("name, dtype", [(op, d) for op in ULP_OPS for d in DTYPES
                                         if (op, d) != ("erf", np.float64)],
                         ids=lambda v: np.dtype(v).name if isinstance(v, type) else v)
def test_transcendentals_are_not_libm_calls(name, dtype):
    """The polynomial versions are the point: a libm call in the loop stops vectorization
    (float64 erf is libm's on purpose)."""
    cg, _ = compiled(FUNCTIONS[name], np.linspace(0.5, 2, 4096, dtype=dtype))
    calls = set(re.findall(r"call [^@\n]*@\"?([\w.]+)", cg.dump("llvm_opt")))
    assert not calls & LIBM, sorted(calls)


# ---- fast-math policy ----------------------------------------------------------------------

FLAG_WORDS = ("fast", "nnan", "ninf", "nsz", "arcp", "contract", "afn", "reassoc")
_FLAGGED = re.compile(r"=\s+(?:tail\s+)?(?:fadd|fsub|fmul|fdiv|frem|fneg|fcmp|call|select|phi)"
                      rf"((?:\s+(?:{'|'.join(FLAG_WORDS)})(?=\s))+)(.*)$", re.M)


def fast_math_flags(llvm_ir: str) -> list[tuple[set[str], str]]:
    """(flags, rest of the instruction) for every instruction carrying fast-math flags."""
    return [(set(flags.split()), rest) for flags, rest in _FLAGGED.findall(llvm_ir)]


def test_fast_math_flags_follow_the_policy():
    """emitters.py and llvm_emit.py: no global fast-math. contract may fuse into FMAs; float
    sums are reassociated to vectorize; max/min reductions use maxnum/minnum with nnan nsz
    and track nan separately. No ninf, afn, arcp or fast anywhere, and nnan only there."""
    x = np.random.default_rng(0).standard_normal((64, 4096)).astype(np.float32)
    cg, _ = compiled(lambda a: graphc.tanh(a) * 2.0 + graphc.maximum(a, graphc.exp(a)), x)
    for flags, instruction in fast_math_flags(cg.dump("llvm_opt")):
        assert flags <= {"contract"}, instruction
    cg, _ = compiled(lambda a: (a.sum(-1), a.amax(-1), a.amin(-1), a.argmax(-1)), x)
    flagged = fast_math_flags(cg.dump("llvm_opt"))
    assert any("reassoc" in flags for flags, _ in flagged), "float sums should reassociate"
    for flags, instruction in flagged:
        assert flags <= {"reassoc", "contract", "nnan", "nsz"}, instruction
        if flags & {"nnan", "nsz"}:
            assert re.search(r"@llvm\.(?:vector\.reduce\.)?(?:maxnum|minnum|fmax|fmin)\.",
                             instruction), instruction


def _pairs(dtype):
    """Every pair of special values, in vector lanes and in the remainder loop."""
    v = specials(dtype)
    a, b = np.repeat(v, len(v)), np.tile(v, len(v))
    return np.tile(a, 5)[:-3], np.tile(b, 5)[:-3]


ELEMENTWISE_POLICY = {
    "maximum": (graphc.maximum, 2),
    "minimum": (graphc.minimum, 2),
    "clamp": (lambda x: graphc.clamp(x, -1.0, 2.0), 1),
    "clamp_min_tensor": (lambda x, y: graphc.clamp(x, min=y), 2),
    "clamp_max_tensor": (lambda x, y: graphc.clamp(x, max=y), 2),
    "isnan": (graphc.isnan, 1),
    "self_ne": (lambda x: x != x, 1),
    "self_eq": (lambda x: x == x, 1),
    "lt": (lambda x, y: x < y, 2),
    "ge": (lambda x, y: x >= y, 2),
    "isinf": (graphc.isinf, 1),
    "isfinite": (graphc.isfinite, 1),
    "where_gt": (lambda x, y: graphc.where(x > y, x, y), 2),
    "sign": (graphc.sign, 1),
    "relu": (F.relu, 1),
    "nan_to_zero": (lambda x: graphc.where(graphc.isnan(x), 0.0, x), 1),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", sorted(ELEMENTWISE_POLICY))
def test_nan_and_inf_handling_matches_eager(name, dtype):
    fn, arity = ELEMENTWISE_POLICY[name]
    inputs = _pairs(dtype)[:arity]
    cg, got = compiled(fn, *inputs)
    assert "0 fallbacks" in cg.explain(), cg.explain()
    want = eager(fn, *inputs)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)  # nan where eager has nan; +0.0 == -0.0 here


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_reductions_propagate_nan_like_eager(dtype):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((24, 4099)).astype(dtype)  # 4099: vector body and a remainder
    for row, col in enumerate([0, 1, 7, 8, 100, 2048, 4095, 4096, 4098]):
        x[row, col] = np.nan
    x[9, 5], x[9, 4097] = np.nan, np.nan
    x[10, 3], x[11, 4098], x[12, 17] = np.inf, -np.inf, np.inf
    x[12, 4000] = -np.inf  # inf + -inf in one sum: nan
    x[13, :] = -np.inf
    x[14, :] = np.nan

    def f(a):
        return a.amax(-1), a.amin(-1), a.argmax(-1), a.argmin(-1), a.sum(-1), a.max(-1).values

    cg, got = compiled(f, x)
    assert "0 fallbacks" in cg.explain(), cg.explain()
    want = eager(f, x)
    names = ("amax", "amin", "argmax", "argmin", "sum", "max")
    for name, g, w in zip(names, got, want, strict=True):
        assert g.dtype == w.dtype, name
        if name == "sum":  # reassociated: values within rounding, nan and inf exactly
            np.testing.assert_array_equal(np.isnan(g), np.isnan(w), err_msg=name)
            np.testing.assert_array_equal(g == np.inf, w == np.inf, err_msg=name)
            np.testing.assert_array_equal(g == -np.inf, w == -np.inf, err_msg=name)
            np.testing.assert_allclose(g, w, rtol=1e-4, err_msg=name)
        else:
            np.testing.assert_array_equal(g, w, err_msg=name)
