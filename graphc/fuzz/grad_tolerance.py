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
  of size ``E / 2`` to ``E`` (up in the first run, down in the second, either way in the
  others), written into the result (so gradient rules that read it, as
  tanh's does, see it), with ``E = ulps · eps · magnitude``: ``ulps`` from the op's
  accuracy class (tolerance.py; exact ops, views and data movement get none), the
  magnitude ``|result|``, or for sums and contractions (reductions, matmuls) the same op
  applied to the operands' absolute values, with ``ulps`` the number of terms summed
  (the policy's ``n · eps · Σ|x|``). Where the policy does not compare a sum (a matmul
  reading inf or nan, finite terms adding up beyond the range, a product whose partial
  products may leave the normal range) the runs take turns at
  its outcomes, nan, the largest finite value and zero, so that what is computed from it
  moves and is not compared either (and where the gradients are nan or inf is then not
  compared: comparisons and selections in gradient rules, amax's, do not carry the
  doubt along as arithmetic does). A composite without a gradient rule of its own runs
  as its decomposition (as autograd and the compiled program run it). How far each
  gradient element moves is its *spread*; an element whose nan or inf moves is not
  compared (its finiteness depends on rounding, as the forward policy's "not compared"
  elements' does).
- ``compare_grad``: nan exactly where eager's is nan, ±inf where eager's is, and
  elsewhere ``|got - ref| <= SPREAD_FACTOR · spread + base``, where ``base`` is an
  absolute tolerance scaled by the gradient's magnitude, ``BASE_ULPS`` per step of the
  program of ``eps · max|ref|`` (roundings the noise does not reach: writes in place).
  A reference within the tolerance of the largest finite value may overflow to inf of
  the same sign; the sign of a zero gradient is free (a gradient is a sum in any order).
  A gradient is None in both or a tensor in both (None and zeros differ: an optimizer
  skips a parameter whose .grad is None), but an empty one and None are alike.

Real bugs (a wrong rule, a lost write, a gradient sent to the wrong element) move
elements by about their own size; rounding moves them by a few ulps of their terms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..autograd import no_grad
from ..ops import Flag
from ..ops.dispatch import DispatchMode, dispatch, modes_disabled, modes_replaced, redispatch
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
    (the module docstring), written into the result itself: the gradient rules that read
    an op's result (tanh's, exp's, sqrt's) see the value as rounded."""

    def __init__(self, rng: np.random.Generator, run: int = 0):
        self.rng = rng
        self.run = run  # which way it rounds, which outcome of an undetermined sum it takes
        self.undetermined = False  # whether a sum the policy does not compare was met

    def handle(self, op: OpDef, inputs: tuple, attrs: dict):
        if op.grad is None and op.decomposition is not None:
            # autograd runs such a composite as its decomposition below every mode; here
            # its primitives round (as compiled code, which runs the decomposition, does)
            with modes_replaced(self):
                return op.decomposition(*inputs, **attrs)
        out = redispatch(op, inputs, attrs)
        if isinstance(out, Tensor) and out.dtype.is_floating_point and out.numel() and \
                _rounds(op) and not any(_shared(x, out) for x in inputs):
            self._round(op, inputs, attrs, out)
        return out

    def _round(self, op: OpDef, inputs: tuple, attrs: dict, out: Tensor) -> None:
        value = out._data()
        fi = np.finfo(value.dtype)
        magnitude, ulps = np.abs(value.astype(np.float64)), accuracy(op).ulps
        if accuracy(op).operand_scaled:  # (tanhshrink: x - tanh(x), relative to x)
            for x in inputs:
                if isinstance(x, Tensor) and x.dtype.is_floating_point:
                    magnitude = np.maximum(magnitude, np.abs(x.detach().numpy().astype(np.float64)))
        undetermined = np.zeros(value.shape, bool)
        if _sums(op):
            terms = _of_magnitudes(op, inputs, attrs, out)
            # the policy's "not compared" sums: a matmul reading inf or nan, a sum of finite
            # terms beyond the range (the order and precision of the sum decide the result)
            undetermined = ~(terms <= float(fi.max))
            if Flag.REDUCTION in op.flags and reduction_kind(op) == "prod":
                undetermined |= _partials_leave_range(op, inputs[0], attrs, out, fi)
            magnitude = np.maximum(magnitude, np.where(undetermined, 0.0, terms))
            ulps = max(ulps, math.ceil(sum(x.numel() for x in inputs if isinstance(x, Tensor))
                                       / out.numel()))
        with np.errstate(all="ignore"):
            noise = self._signs(value.shape) * self.rng.uniform(0.5, 1.0, value.shape) * \
                ulps * (float(fi.eps) * magnitude + float(fi.smallest_subnormal))
            noise = np.where(np.isfinite(noise), noise, 0.0)
            rounded = (value + noise).astype(value.dtype)
            if undetermined.any():  # runs take turns at the outcomes such a sum may have
                self.undetermined = True
                outcome = (np.nan, np.copysign(fi.max, value), 0.0)[self.run % 3]
                rounded = np.where(undetermined, outcome, rounded).astype(value.dtype)
            try:
                value[...] = rounded
            except ValueError:  # a read-only result (a broadcast): left as it is
                pass

    def _signs(self, shape: tuple) -> np.ndarray:
        """Run 0 rounds every result up, run 1 down (so a value exactly at a jump of the
        gradient, floor(x / y) at x == y, crosses it in one of them), later runs either way."""
        if self.run < 2:
            return np.full(shape, 1.0 if self.run == 0 else -1.0)
        return self.rng.choice((-1.0, 1.0), shape)


def _shared(x, out: Tensor) -> bool:
    """Whether ``out`` may be ``x``'s memory (a kernel that returned its input): no noise
    is written there."""
    return isinstance(x, Tensor) and x.numel() > 0 and (
        x._storage is out._storage or np.may_share_memory(x._data(), out._data()))


def _of_magnitudes(op: OpDef, inputs: tuple, attrs: dict, out: Tensor) -> np.ndarray:
    """``op`` on the operands' absolute values (Σ|x|, |A|·|B|), or 0 where that fails; a
    reduction's inf and nan operands count as 0 (an inf sum is inf in any order), a
    matmul's as themselves (their products' nan-or-inf depends on the library)."""
    finite_only = Flag.MATMUL not in op.flags
    try:
        with no_grad(), modes_disabled(), np.errstate(all="ignore"):
            absolute = [_absolute(x, finite_only) for x in inputs]
            result = dispatch(op, *absolute, **attrs)
        if tuple(result.shape) == tuple(out.shape):
            return result.numpy().astype(np.float64)
    except Exception:  # noqa: BLE001 - no magnitude: the result's own is used
        pass
    return np.zeros(tuple(out.shape))


def _partials_leave_range(op: OpDef, x: Tensor, attrs: dict, out: Tensor, fi) -> np.ndarray:
    """Where a product's partial products may leave the normal range in some order (the
    policy does not compare those: the order decides how much an intermediate rounds, or
    whether it overflows): the product of its factors below 1 in magnitude, or of those
    above, is beyond the normal range. Zeros and non-finite factors do not count (their
    product is the same in any order)."""
    a = np.abs(x.detach().numpy().astype(np.float64))
    usable = np.isfinite(a) & (a != 0)
    try:
        with no_grad(), modes_disabled(), np.errstate(all="ignore"):
            small, large = (dispatch(op, from_numpy(np.where(usable & keep, a, 1.0)), **attrs)
                            for keep in (a < 1, a > 1))
            small, large = small.numpy(), large.numpy()
    except Exception:  # noqa: BLE001 - not a plain reduction of one input: no such elements
        return np.zeros(tuple(out.shape), bool)
    if small.shape != tuple(out.shape):
        return np.zeros(tuple(out.shape), bool)
    return (small < float(fi.tiny)) | (large > float(fi.max))


def _absolute(x, finite_only: bool):
    if not (isinstance(x, Tensor) and x.dtype.is_floating_point):
        return x
    a = np.abs(x.detach().numpy())
    return from_numpy(np.where(np.isfinite(a), a, 0).astype(a.dtype) if finite_only else a)


# ---- the comparison ------------------------------------------------------------------------------

@dataclass
class Spread:
    """How far a gradient's elements moved in the randomly rounded runs (``width``), where
    their nan or inf moved (``moved``), and whether the runs met a sum the policy does not
    compare (``free``: then where a gradient is nan or inf is the backend's business)."""

    width: np.ndarray
    moved: np.ndarray
    free: bool = False


def rounding_spread(ref, perturbed: list, free: bool = False) -> Spread | None:
    """The ``Spread`` of the gradient ``ref`` over the randomly rounded runs' gradients
    (``perturbed``, None where a run has none); ``free`` as ``Spread``'s."""
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
    return Spread(spread, moved, free)


def compare_grad(got, ref, spread, steps: int, what: str = "grad") -> str | None:
    """Why ``got`` breaks the gradient tolerance against ``ref`` (None when it does not);
    ``spread`` is ``rounding_spread``'s for ``ref``, ``steps`` the program's length."""
    if ref is None or got is None:
        other = got if ref is None else ref
        if other is None or other.numel() == 0:  # None and an empty gradient: no element
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
    spread = spread or Spread(np.zeros(r.shape), np.zeros(r.shape, bool))
    width, moved = spread.width, spread.moved
    if spread.free:
        moved = moved | ~np.isfinite(r64) | ~np.isfinite(g64)
    finite = np.isfinite(r64)
    scale = float(np.abs(r64[finite]).max()) if finite.any() else 0.0
    base = BASE_ULPS * max(steps, 1) * (float(fi.eps) * scale + float(fi.smallest_subnormal))
    known = ~moved
    with np.errstate(all="ignore"):
        tol = SPREAD_FACTOR * width + base
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
