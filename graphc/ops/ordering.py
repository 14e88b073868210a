"""Ops that order values or draw positions: argsort (behind sort and topk), multinomial,
randperm, bernoulli.

Ordering follows PyTorch: nan is larger than every number (last ascending, first
descending), -0.0 equals 0.0, and sorting is always stable (``stable=True`` only promises
it; PyTorch's unstable CPU sort also keeps equal values in order). ``sort`` and ``topk``
are an ``argsort`` and a ``gather`` at its indices (int64), so the gradient of their
values goes back to the positions they came from through gather's rule, and the op table
holds no op with two outputs.

The draws use graphc's generator (``graphc.random``): ``multinomial`` without
replacement is an exponential race (each category's key is an Exp(1) draw divided by its
weight; the smallest keys in order are a draw without replacement, as if drawn one at a
time), with replacement an inverse-CDF lookup of uniform draws.
"""

from __future__ import annotations

import operator
from collections import namedtuple

import numpy as np

from .. import dtype as dt
from .. import random as rnd
from ..errors import DTypeError, OpIndexError, OpValueError, ShapeError
from ..layout import normalize_dim
from . import functions as F
from . import samples
from .dispatch import dispatch
from .registry import OPS, REQUIRED, Flag, Sample, register
from ..tensor import Tensor
from .rules import describe, floating_only, promote

RANDOM = {Flag.RANDOM, Flag.IMPURE}


# ---- sort, argsort, topk ----------------------------------------------------------------

def stable_order(x: np.ndarray, axis: int, descending: bool) -> np.ndarray:
    """Indices that sort ``x`` along ``axis``, equal values in their original order, nan
    largest. Descending sorts the reversed array ascending and reverses the answer back,
    which keeps ties in order (negating would not: integers overflow, nan stays last)."""
    if not descending:
        return np.argsort(x, axis=axis, kind="stable")
    n = x.shape[axis]
    return (n - 1) - np.flip(np.argsort(np.flip(x, axis), axis=axis, kind="stable"), axis)


def _argsort(x, dim=-1, descending=False, stable=False):
    if x.ndim == 0:
        return np.zeros((), np.int64)
    return stable_order(x, dim % x.ndim, descending)


def _argsort_rule(name, x, **attrs):
    if not hasattr(x, "dtype"):
        raise DTypeError(name, f"expected a tensor, got {describe(x)}")
    return (None,), (dt.int64,)


def _argsort_shape(name, x, dim=-1, **attrs):
    normalize_dim(name, dim, x.ndim)
    return tuple(x.shape)


def _argsort_samples(dtype, rng):
    def a(*shape, layout="contiguous"):
        return samples.array(rng, shape, dtype, layout=layout)

    out = [Sample((a(3, 5),), {}, "last dim, ties"),
           Sample((a(4, 3, layout="transposed"),), {"dim": 0, "descending": True},
                  "dim 0 descending, transposed"),
           Sample((a(2, 3, 6, layout="strided"),), {"dim": 1, "stable": True}, "stable"),
           Sample((a(7, layout="negstep"),), {"descending": True, "stable": True},
                  "stable descending keeps ties in order"),
           Sample((a(),), {}, "0-d"),
           Sample((a(0, 3),), {"dim": 0}, "empty")]
    if dtype.is_floating_point:
        out.append(Sample((samples.with_specials(a(2, 12)),), {"descending": True},
                          "special values descending"))
        out.append(Sample((samples.with_specials(a(2, 12)),), {}, "special values"))
    return out


register(name="argsort", inputs=("self",), kernel=_argsort, dtype_rule=_argsort_rule,
         shape_rule=_argsort_shape, attrs={"dim": -1, "descending": False, "stable": False},
         dtypes=dt.ALL_DTYPES, samples=_argsort_samples,
         doc="int64 indices that sort self along dim: nan largest, equal values in order "
             "(sort and topk gather with them)")


# ---- multinomial ------------------------------------------------------------------------

def _multinomial_rule(name, p, num_samples=1, replacement=False, generator=None):
    if not hasattr(p, "dtype") or not p.dtype.is_floating_point:
        raise DTypeError(name, f"only supports floating-point probabilities, got {describe(p)}")
    return (None,), (dt.int64,)


def _multinomial_shape(name, p, num_samples=1, replacement=False, generator=None):
    shape = tuple(p.shape)
    if len(shape) not in (1, 2):
        raise ShapeError(name, f"expected 1-D or 2-D probabilities, got shape {shape}")
    if num_samples <= 0:
        raise OpValueError(name, f"cannot sample num_samples <= 0 samples (got {num_samples})")
    if not replacement and num_samples > shape[-1]:
        raise OpValueError(name, f"cannot sample {num_samples} > {shape[-1]} categories "
                           f"without replacement (probabilities of shape {shape})")
    return shape[:-1] + (num_samples,)


def _multinomial(p, num_samples=1, replacement=False, generator=None):
    rows = p.reshape(-1, p.shape[-1]).astype(np.float64)
    if not np.isfinite(rows).all() or (rows < 0).any():
        raise OpValueError("multinomial", "the probabilities contain inf, nan or a negative "
                           "value")
    empty = np.flatnonzero(rows.sum(-1) <= 0)
    if empty.size:
        raise OpValueError("multinomial", f"row {empty[0]} of the probabilities sums to 0: "
                           "invalid distribution")
    u = rnd.uniform((rows.shape[0], num_samples if replacement else rows.shape[1]), np.float64,
                    generator=generator)
    if replacement:
        cdf = np.cumsum(rows, -1)
        cdf /= cdf[:, -1:]
        out = np.stack([np.searchsorted(c, v, side="right") for c, v in zip(cdf, u)])
    else:
        with np.errstate(divide="ignore"):
            keys = np.where(rows > 0, -np.log1p(-u) / rows, np.inf)
        out = np.argsort(keys, axis=-1, kind="stable")[:, :num_samples]
    return out.reshape(p.shape[:-1] + (num_samples,)).astype(np.int64)


def _multinomial_samples(dtype, rng):
    w = lambda *shape: samples.array(rng, shape, dtype, 0.0, 2.0)
    sparse = w(2, 6)
    sparse[:, ::2] = 0
    return [Sample((w(5),), {"num_samples": 3}, "1-D without replacement"),
            Sample((w(3, 4),), {"num_samples": 7, "replacement": True}, "2-D with replacement"),
            Sample((sparse,), {"num_samples": 3}, "zeros never drawn"),
            Sample((w(4, 3)[::-1],), {"num_samples": 3}, "reversed rows, all drawn")]


register(name="multinomial", inputs=("self",), kernel=_multinomial, dtype_rule=_multinomial_rule,
         shape_rule=_multinomial_shape,
         attrs={"num_samples": REQUIRED, "replacement": False, "generator": None}, flags=RANDOM,
         dtypes=dt.FLOAT_DTYPES, samples=_multinomial_samples,
         doc="category indices drawn with the given (unnormalised) weights, per row")


# ---- randperm, bernoulli ----------------------------------------------------------------

def _randperm_rule(name, n=0, dtype=None, **attrs):
    if dtype is None:
        raise OpValueError(name, "dtype is required (the public function fills it in)")
    return (), (dt.as_dtype(dtype),)


def _randperm_shape(name, n=0, **attrs):
    if n < 0:
        raise OpValueError(name, f"n must be non-negative, got {n}")
    return (n,)


def _randperm(n=0, dtype=None, device=None, generator=None):
    return (generator or rnd.default_generator).numpy.permutation(n).astype(dt.as_dtype(dtype).np)


register(name="randperm", inputs=(), kernel=_randperm, dtype_rule=_randperm_rule,
         shape_rule=_randperm_shape,
         attrs={"n": REQUIRED, "dtype": None, "device": None, "generator": None},
         flags={Flag.FACTORY, *RANDOM}, dtypes=dt.NUMERIC_DTYPES,
         samples=lambda dtype, rng: [Sample((), {"n": n, "dtype": dtype}, f"n={n}")
                                     for n in (5, 1, 0)],
         doc="a random permutation of 0..n-1")


def _bernoulli_rule(name, x, p=None, generator=None):
    if p is not None and not 0.0 <= p <= 1.0:
        raise OpValueError(name, f"expected p in [0, 1], got {p}")
    return floating_only(promote)(name, x)


def _bernoulli(x, p=None, generator=None):
    probs = x if p is None else np.full(x.shape, p, x.dtype)
    if not ((probs >= 0) & (probs <= 1)).all():
        raise OpValueError("bernoulli", "expected every probability in [0, 1]")
    return (rnd.uniform(x.shape, x.dtype, generator=generator) < probs).astype(x.dtype)


def _bernoulli_samples(dtype, rng):
    # (inside (0, 1): the gradient check moves each probability a little either way)
    def probs(*shape, layout="contiguous"):
        return samples.relayout(rng.uniform(0.05, 0.95, shape).astype(dtype.np), layout)

    return [Sample((probs(4, 5),), {}, "probabilities"),
            Sample((probs(3, 2, layout="transposed"),), {"p": 0.3}, "p=0.3"),
            Sample((samples.array(rng, (0, 2), dtype),), {}, "empty")]


register(name="bernoulli", inputs=("self",), kernel=_bernoulli, dtype_rule=_bernoulli_rule,
         shape_rule=lambda name, x, **a: tuple(x.shape), attrs={"p": None, "generator": None},
         flags=RANDOM, dtypes=dt.FLOAT_DTYPES, samples=_bernoulli_samples,
         grad=lambda ctx, g: (F.zeros_like(g),),
         doc="1 with probability self (or p), else 0; the gradient is zero, as in PyTorch")


# ---- the public functions ---------------------------------------------------------------

Sorted = namedtuple("sort", ["values", "indices"])  # torch.return_types.sort
TopK = namedtuple("topk", ["values", "indices"])    # torch.return_types.topk


def sort(input, dim: int = -1, descending: bool = False, *, stable: bool = False) -> Sorted:
    """(values, indices) sorted along ``dim``; nan is the largest value; equal values keep
    their order. The values are a gather at the indices, so their gradient goes back to
    the positions they came from."""
    indices = argsort(input, dim, descending, stable=stable)
    return Sorted(F.gather(input, dim, indices), indices)


def argsort(input, dim: int = -1, descending: bool = False, *, stable: bool = False):
    """The int64 indices that sort ``input`` along ``dim`` (``sort(...).indices``)."""
    return dispatch(OPS.argsort, input, dim=operator.index(dim), descending=bool(descending),
                    stable=bool(stable))


def topk(input, k: int, dim: int = -1, largest: bool = True, sorted: bool = True) -> TopK:
    """(values, indices) of the ``k`` largest (``largest=False``: smallest) along ``dim``,
    nan counting as the largest; always in sorted order (PyTorch allows any order when
    ``sorted=False``)."""
    if input.dtype is dt.bool_:
        raise DTypeError("topk", f"not implemented for bool tensors (got {describe(input)})")
    d = normalize_dim("topk", dim, input.ndim)
    size = input.shape[d] if input.ndim else 1
    if not 0 <= k <= size:
        raise OpIndexError("topk", f"selected index k={k} out of range: dim {d} of shape "
                           f"{tuple(input.shape)} has {size} elements")
    indices = argsort(input, d, descending=largest, stable=True)
    if input.ndim and k < size:
        indices = F.narrow(indices, d, 0, k)
    elif not input.ndim and k == 0:
        indices = F.reshape(indices, 1)[:0]
    return TopK(F.gather(input, d, indices), indices)


def multinomial(input, num_samples: int, replacement: bool = False, *, generator=None):
    """int64 category indices drawn from the (unnormalised, non-negative) weights of each
    row of a 1-D or 2-D ``input``; without replacement each row's draws are distinct."""
    return dispatch(OPS.multinomial, input, num_samples=operator.index(num_samples),
                    replacement=bool(replacement), generator=generator)


def randperm(n: int, *, generator=None, dtype=None, device=None, requires_grad: bool = False):
    """A random permutation of 0..n-1 (int64 unless ``dtype`` says otherwise)."""
    out = dispatch(OPS.randperm, n=operator.index(n),
                   dtype=dt.int64 if dtype is None else dt.as_dtype(dtype), device=device,
                   generator=generator)
    return out.requires_grad_() if requires_grad else out


def bernoulli(input, p=None, *, generator=None):
    """1 with probability ``input`` (or ``p`` everywhere, with input giving the shape and
    dtype), else 0."""
    return dispatch(OPS.bernoulli, input, p=None if p is None else float(p), generator=generator)


def bernoulli_(self, p=0.5, *, generator=None):
    """Fill self with 1 with probability ``p`` (a number, or a tensor broadcast to self's
    shape), else 0."""
    if isinstance(p, Tensor):
        probs = F.expand(p.to(dt.to_float(p.dtype)), *self.shape)
        draws = dispatch(OPS.bernoulli, probs, generator=generator)
    else:
        like = F.zeros(tuple(self.shape), dtype=self.dtype if self.dtype.is_floating_point
                       else dt.get_default_dtype())
        draws = dispatch(OPS.bernoulli, like, p=float(p), generator=generator)
    return dispatch(OPS.copy_, self, draws)
