"""The fuzzer's tolerance policy: how close a compiled result must be to the interpreter's.

Every element of every output gets a bound ``E`` (float64) from an analysis of the graph,
run next to the interpreter (bounds.py): ``E`` bounds how far ANY correct implementation of the graph
may be from the exact result, given each op's accuracy class below. The compiled result
``got`` and the interpreter's ``ref`` must then satisfy, element by element:

- integers and bools: ``got == ref`` exactly (wrapping arithmetic included), wherever the
  result is determined (see "not compared");
- floats with ``E == 0`` ("exact"): ``got == ref`` bit for bit, nan where ``ref`` is nan,
  and the same sign of zero, except for "free" zeros (below);
- floats with ``E > 0``: nan exactly where ``ref`` is nan, ``±inf`` exactly where ``ref``
  has it, and ``|got - ref| <= 2·E`` elsewhere (each is within E of the exact value). A
  result within ``2·E`` of the largest finite value may overflow to inf of the same sign.

How E is built, per op family (the op table's flags choose the rule):

- inputs, Python numbers and constants are exact (E = 0).
- elementwise ops: the op's numpy kernel is evaluated in float64 at the centre, at
  every corner of the box ``[centre - E, centre + E]`` of its inputs, and at points inside
  the box along each input, zero included where the box holds it (a wide box may hide
  an extremum, a jump of remainder's sawtooth, or a pole: 0 / x for x within its error
  of 0 may be nan); the spread is the propagated error. Then the op's own error is added, by
  accuracy class (its declaration's ``accuracy``):
    * exact (neg, abs, relu, max/min, floor/ceil/trunc, sign, where, clamp,
      masked_fill, comparisons, logical ops, isnan/isinf/isfinite, clone): no error;
      exact inputs give an exact result;
    * rounded (add, sub, mul, div with every rounding mode, remainder, sqrt, square,
      reciprocal, cast, lerp, round with decimals): 1 ulp of the result (2 for the few
      that round more than once, relative to the largest operand); exact inputs give an
      exact result, because IEEE defines it (the backend emits no FMA contraction or
      fast-math flags on elementwise ops, see codegen/emitters.py);
    * transcendental (exp, exp2, expm1, log, log2, log1p, rsqrt, sin, cos, tan, tanh,
      sigmoid, erf, atan2, pow): 4 ulp of the result (test_mathlib measures at most 4);
    * any elementwise op that declares none: 16 ulp.
  One ulp here is ``eps(dtype)·|result|`` plus the smallest subnormal (so results in the
  subnormal range have an absolute tolerance of a few subnormal steps).
- reductions: ``sum`` (and unknown reductions): the sum of the inputs' E plus
  ``n·eps·Σ|x|`` over the ``n`` elements reduced (any summation order: numpy's pairwise
  sum, the backend's blocked, reassociated and float64-accumulated sums); ``prod``:
  ``Π(|x| + E) - Π|x|`` plus ``n·(eps·Π(|x| + E) + subnormal)`` (a product that sinks
  into the subnormal range rounds by half a subnormal step each time, and numpy's
  float32 product sticks at the smallest subnormal where a float64 one goes on to 0);
  ``amax``/``amin``: the spread over the box, no error of their own; ``all``/``any``:
  exact where every element's truth is certain; ``argmax``/``argmin``: exact where no
  other element can reach the extreme within the errors (exact ties are exact: the
  first index wins, as in numpy).
- matmul/bmm: ``|A|·E_B + E_A·|B| + E_A·E_B + K·(eps·|A|·|B| + subnormal)`` for a
  contraction of length ``K`` (BLAS, blocked loops, float64 accumulation for small
  products; a float32 product below the normal range rounds to a subnormal step in
  numpy and not in float64).
- views: the same view of the bounds. Other data movement (cat, stack, pad, gather,
  index_select, index, unfold, fold, index_put): the op applied to the bounds (the op
  applied to E minus the op applied to zeros); where several values are summed into
  one element (fold, index_put with accumulate) the rounding of a sum is added.
- composites (softmax, log_softmax, layer_norm, gelu, silu, var, std, mean, linear, ...)
  are analysed through their op-table decomposition, which is what the backend compiles;
  the reference stays the composite's own numpy kernel. So a decomposition that
  disagrees with its kernel shows up as a mismatch, like a codegen bug. Where a kernel
  is known to be less accurate than its decomposition, its ``reference_ulps`` adds its error
  (gelu: 2 ulp of max(|x|, |result|), for the cancellation in 1 + erf(x/√2)).

Not compared (the element's bound is "unknown"), and why:

- an integer or bool computed from inexact floats, where the error box reaches a
  different result (a comparison of two values within their errors, a cast to int, an
  argmax of a near tie), and everything computed from such an element;
- a cast of nan, ±inf or an out-of-range float to an integer dtype (implementation-
  defined in C and numpy; the backend mimics x86, but that is not a contract);
- a float32 or float64 sum whose finite magnitudes add up beyond the dtype's range, and a
  product whose partial products may overflow or underflow (the summation order decides
  whether an intermediate overflows);
- a matmul element that reads an inf or nan operand (BLAS may skip zero multipliers, so
  nan-vs-inf there depends on the library), or whose ``Σ|a|·|b|`` exceeds the dtype's
  range (whether a product or a partial sum overflows depends on the order and on the
  precision of the accumulation: the backend multiplies small float32 matmuls in
  float64, so where numpy's float32 products give inf - inf = nan it may give a finite
  value or inf);
- an element where two float operands of a comparison are within their errors of each
  other (``tanh(x) == 1.0``: a 1-ulp tanh may round to 1.0 where numpy's does not);
- a transcendental result that overflowed from a finite input of magnitude >= 1 in
  float64 (the last ulp before overflow decides between MAX and inf); in float32 the
  float64 centre decides, unless it lies within E of the overflow threshold;
- results whose bound comes out infinite or nan (errors that blew up).

Signed zeros: compared only where the value is exact and its sign is determined by IEEE.
The sign of an exact zero produced by a reduction (sum of zeros, max of +0.0 and -0.0
with ``nsz``, see codegen/emitters.py) or a matmul is free, and ops on a free zero
evaluate both signs (so ``1 / free_zero`` is not compared, ``free_zero * 2`` is a free
zero again).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..ops.registry import APPROX, EXACT, ROUNDED, Accuracy, OpDef  # noqa: F401  (the classes, re-exported)
from ..tensor import Tensor

if TYPE_CHECKING:
    from .bounds import Bound

# ---- the policy as data ----------------------------------------------------------------------

# each op's class and ulps are its declaration's ``accuracy`` field (graphc/ops); an
# elementwise op that declares none is transcendental with 16 ulp
UNLISTED = Accuracy(APPROX, 16)
# a reduction's bound follows its kind (the op's ``reduce_kind``; composites and unknown ones sum)
_BOUND_KIND = {"max": "select", "min": "select", "all": "logical", "any": "logical",
               "argmax": "index", "argmin": "index", "prod": "prod"}


def reduction_kind(op: OpDef) -> str:
    """How a reduction's bound is computed: sum, prod, select, logical or index."""
    return _BOUND_KIND.get(op.reduce_kind, "sum")


# a tensor input whose name says it selects rather than carries data
INDEX_INPUT_NAMES = ("index", "indices", "mask", "target")

TOLERANCE_FACTOR = 2.0  # both results are within E of the exact one


def accuracy(op: OpDef) -> Accuracy:
    return op.accuracy or UNLISTED


# ---- the comparison ---------------------------------------------------------------------------

def compare(got, ref: Tensor, bound: Bound, what: str = "output") -> str | None:
    """Why ``got`` breaks the policy against ``ref`` (None when it does not)."""
    if not isinstance(got, Tensor):
        return f"{what}: got {type(got).__name__}, expected a tensor"
    if tuple(got.shape) != tuple(ref.shape):
        return f"{what}: shape {tuple(got.shape)}, expected {tuple(ref.shape)}"
    if got.dtype != ref.dtype:
        return f"{what}: dtype {got.dtype.name}, expected {ref.dtype.name}"
    g, r = got.numpy(), ref.numpy()
    known = bound.known
    if r.dtype.kind != "f":
        bad = known & (g != r)
        return _report(what, bad, g, r, bound, "differs") if bad.any() else None
    g64, r64 = g.astype(np.float64), r.astype(np.float64)
    tol = TOLERANCE_FACTOR * np.where(known, bound.err, 0.0)
    with np.errstate(all="ignore"):
        nan_bad = known & (np.isnan(g64) != np.isnan(r64))
        inf_r = np.isinf(r64)
        maxfin = float(np.finfo(r.dtype).max)
        overflow_ok = np.isinf(g64) & (np.sign(g64) == np.sign(r64)) & \
            (np.abs(r64) + tol >= maxfin)
        inf_bad = known & inf_r & (g64 != r64)
        finite = known & np.isfinite(r64)
        value_bad = finite & ~(np.abs(g64 - r64) <= tol) & ~overflow_ok
        zero = bound.exact & known & (r64 == 0) & (g64 == 0)
        sign_bad = zero & (np.signbit(g64) != np.signbit(r64))
    for bad, why in ((nan_bad, "nan in other places"), (inf_bad, "inf differs"),
                     (value_bad, "beyond the tolerance"), (sign_bad, "sign of zero differs")):
        if bad.any():
            return _report(what, bad, g, r, bound, why)
    return None


def _report(what: str, bad: np.ndarray, g, r, bound: Bound, why: str) -> str:
    where = [tuple(int(i) for i in idx) for idx in np.argwhere(bad)][:4] if bad.ndim else [()]
    parts = []
    for idx in where:
        tol = TOLERANCE_FACTOR * bound.err[idx]
        detail = "" if why != "beyond the tolerance" else \
            f" (tolerance {tol:.3g})" if tol else " (exact)"
        parts.append(f"at {list(idx)} got {g[idx]!r}, expected {r[idx]!r}{detail}")
    return f"{what}: {int(bad.sum())} of {bad.size} elements {why}; " + "; ".join(parts)
