"""The gradient mode's tolerance: how close a compiled gradient must be to eager's.

The forward policy (tolerance.py) bounds each output element by an analysis of the graph.
A gradient has no such analysis: its graph is built by the code under test. And the
gradient's own size says little about its rounding: a gradient element sums products
along every path from the loss, and the rounding of each path's values is relative to
those terms, which may cancel (``tanh``'s gradient ``1 - tanh(x)²`` loses the digits of
``tanh(x)``'s last ulps; ``1 / sum(x)`` of a cancelling sum amplifies its rounding). So
the tolerance is measured, per element, by the policy's own yardstick:

- ``rounding_spread``: eager autograd is run again ``RUNS`` times, with every rounding a
  correct implementation may make replaced by a random one of the policy's size: the
  result of each op that computes new values (forward and backward alike) gets noise
  drawn in ``[-E, E]``, ``E = ulps · eps · magnitude``, where ``ulps`` is the op's
  accuracy class (tolerance.py; exact ops, views and data movement get none) and the
  magnitude is ``|result|``, or for sums and contractions (reductions, matmuls) the same
  op applied to the operands' absolute values, with ``ulps`` the number of terms summed
  (the policy's ``n · eps · Σ|x|``). How far each gradient element moves is its
  *spread*; an element whose nan or inf moves is not compared (its finiteness depends on
  rounding, as the forward policy's "not compared" elements do).
- ``compare_grad``: nan exactly where eager's is nan, ±inf where eager's is, and
  elsewhere ``|got - ref| <= SPREAD_FACTOR · spread + base``, where ``base`` is an
  absolute tolerance scaled by the gradient's magnitude, ``BASE_ULPS`` per step of the
  program of ``eps · max|ref|`` (roundings the noise does not reach: writes in place).
  A reference within the tolerance of the largest finite value may overflow to inf of
  the same sign; the sign of a zero gradient is free (a gradient is a sum in any order).

Real bugs (a wrong rule, a lost write, a gradient sent to the wrong element) move
elements by about their own size; rounding moves them by a few ulps of their terms.
"""

from __future__ import annotations

import math

import numpy as np

from ..autograd import no_grad
from ..ops import OPS, Flag
from ..ops.dispatch import DispatchMode, dispatch, modes_disabled, redispatch
from ..ops.registry import EXACT, OpDef
from ..tensor import Tensor, from_numpy
from .tolerance import accuracy, reduction_kind

RUNS = 3             # eager runs with random roundings
SPREAD_FACTOR = 4.0  # a few samples of the spread, not its maximum
BASE_ULPS = 4.0      # per step: the transcendental class's bound
_NOT_ROUNDED = frozenset({Flag.VIEW, Flag.MUTATES, Flag.FACTORY, Flag.NO_GRAD})


def _rounds(op: OpDef) -> bool:
    """Whether ``op`` computes values a correct implementation may round differently."""
    if op.flags & _NOT_ROUNDED:
        return False
    if Flag.ELEMENTWISE in op.flags:
        return accuracy(op).kind != EXACT
    if Flag.REDUCTION in op.flags:
        return reduction_kind(op) in ("sum", "prod")
    if Flag.MATMUL in op.flags:
        return True
    # composites that compute (softmax, layer_norm, losses): not the exact data movement ones
    return Flag.COMPOSITE in op.flags and (op.accuracy is None or op.accuracy.kind != EXACT)


def _sums(op: OpDef) -> bool:
    """Whether ``op``'s error is relative to its terms (a sum, a contraction)."""
    return bool(op.flags & {Flag.REDUCTION, Flag.MATMUL})


class RandomRounding(DispatchMode):
    """While active, every op result that rounds gets random noise of the policy's size
    (the module docstring); the noise is an added constant, so gradients flow through."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def handle(self, op: OpDef, inputs: tuple, attrs: dict):
        out = redispatch(op, inputs, attrs)
        if not (isinstance(out, Tensor) and out.dtype.is_floating_point and out.numel()
                and _rounds(op)):
            return out
        with no_grad():
            value = out.detach().numpy().astype(np.float64)
            magnitude, ulps = np.abs(value), accuracy(op).ulps
            if _sums(op):
                magnitude = np.maximum(magnitude, _of_magnitudes(op, inputs, attrs, out))
                terms = sum(x.numel() for x in inputs if isinstance(x, Tensor))
                ulps = max(ulps, math.ceil(terms / out.numel()))
            fi = np.finfo(out.dtype.np)
            noise = self.rng.uniform(-1.0, 1.0, value.shape) * ulps * \
                (float(fi.eps) * magnitude + float(fi.smallest_subnormal))
            noise = np.where(np.isfinite(noise), noise, 0.0).astype(out.dtype.np)
        return dispatch(OPS.add, out, from_numpy(noise))


def _of_magnitudes(op: OpDef, inputs: tuple, attrs: dict, out: Tensor) -> np.ndarray:
    """``op`` on the operands' absolute values (Σ|x|, |A|·|B|), or 0 where that fails."""
    try:
        with no_grad(), modes_disabled():
            absolute = [dispatch(OPS.abs, x.detach()) if isinstance(x, Tensor)
                        and x.dtype.is_floating_point else x for x in inputs]
            result = dispatch(op, *absolute, **attrs)
        if tuple(result.shape) == tuple(out.shape):
            return result.numpy().astype(np.float64)
    except Exception:  # noqa: BLE001 - no magnitude: the result's own is used
        pass
    return np.zeros(tuple(out.shape))


# ---- the comparison ------------------------------------------------------------------------------

def rounding_spread(ref, perturbed: list) -> tuple[np.ndarray, np.ndarray] | None:
    """Per element of the gradient ``ref``: how far the randomly rounded runs' gradients
    (``perturbed``, None where a run has none) moved, and where their nan or inf did."""
    if ref is None:
        return None
    r = ref.detach().numpy().astype(np.float64)
    spread, moved = np.zeros(r.shape), np.zeros(r.shape, bool)
    for g in perturbed:
        if g is None or tuple(g.shape) != r.shape:
            continue
        p = g.detach().numpy().astype(np.float64)
        with np.errstate(all="ignore"):
            moved |= (np.isnan(p) != np.isnan(r)) | ((np.isinf(p) | np.isinf(r)) & (p != r))
            d = np.abs(p - r)
        spread = np.maximum(spread, np.where(np.isfinite(d), d, 0.0))
    return spread, moved


def compare_grad(got, ref, spread, steps: int, what: str = "grad") -> str | None:
    """Why ``got`` breaks the gradient tolerance against ``ref`` (None when it does not);
    ``spread`` is ``rounding_spread``'s for ``ref``, ``steps`` the program's length."""
    if ref is None or got is None:
        if ref is None and got is None:
            return None
        return f"{what}: is None in {'eager' if ref is None else 'the compiled run'} only"
    if tuple(got.shape) != tuple(ref.shape):
        return f"{what}: shape {tuple(got.shape)}, expected {tuple(ref.shape)}"
    if got.dtype != ref.dtype:
        return f"{what}: dtype {got.dtype.name}, expected {ref.dtype.name}"
    g, r = got.detach().numpy(), ref.detach().numpy()
    if not r.size:
        return None
    fi = np.finfo(r.dtype)
    g64, r64 = g.astype(np.float64), r.astype(np.float64)
    width, moved = spread if spread is not None else (np.zeros(r.shape), np.zeros(r.shape, bool))
    finite = np.isfinite(r64)
    scale = float(np.abs(r64[finite]).max()) if finite.any() else 0.0
    base = BASE_ULPS * max(steps, 1) * (float(fi.eps) * scale + float(fi.smallest_subnormal))
    tol = SPREAD_FACTOR * width + base
    known = ~moved
    with np.errstate(all="ignore"):
        nan_bad = known & (np.isnan(g64) != np.isnan(r64))
        overflow_ok = np.isinf(g64) & (np.sign(g64) == np.sign(r64)) & \
            (np.abs(r64) + tol >= float(fi.max))
        inf_bad = known & np.isinf(r64) & (g64 != r64)
        value_bad = known & finite & ~(np.abs(g64 - r64) <= tol) & ~overflow_ok
    for bad, why in ((nan_bad, "nan in other places"), (inf_bad, "inf differs"),
                     (value_bad, "beyond the tolerance")):
        if bad.any():
            where = [tuple(int(i) for i in idx) for idx in np.argwhere(bad)][:3] if bad.ndim else [()]
            parts = [f"at {list(idx)} got {g[idx]!r}, expected {r[idx]!r} (tolerance "
                     f"{tol[idx]:.3g})" for idx in where]
            return f"{what}: {int(bad.sum())} of {bad.size} elements {why}; " + "; ".join(parts)
    return None
