"""Scans along one dim: cumsum and cumprod.

As ``sum`` and ``prod``: bool and integer inputs accumulate in int64, ``dtype`` converts
the input first. They run through numpy inside compiled programs (no native lowering).

Gradients: cumsum's is the reversed cumulative sum of the gradient. cumprod's must stay
right where inputs are 0 (dividing the output by the input would give nan): the
derivative of out[j] by x[k] (k <= j) is prod(x[:k]) · prod(x[k+1 : j+1]), so the rule
builds, for every k, the scan of x with x[k] and everything before it replaced by 1.
That costs n² elements per scanned row (n the size of dim): exact, not cheap.
"""

from __future__ import annotations

import operator

import numpy as np

from .. import dtype as dt
from ..layout import normalize_dim
from . import functions as F
from . import samples
from .dispatch import dispatch
from .registry import OPS, REQUIRED, Sample, register
from .reductions import _accumulate_rule


def _scan_rule(name, x, dim=0, dtype=None):
    """As sum and prod: bool and integers accumulate in int64; ``dtype`` overrides."""
    return _accumulate_rule(name, x, dtype=dtype)


def _scan_shape(name, x, dim=0, dtype=None):
    normalize_dim(name, dim, x.ndim)
    return tuple(x.shape)


def _scan(kernel):
    def run(x, dim=0, dtype=None):
        if x.ndim == 0:
            return x.copy()
        return kernel(x, axis=dim % x.ndim, dtype=x.dtype)
    return run


def _flip(x, d: int):
    return x[(slice(None),) * d + (slice(None, None, -1),)]


def _cumsum_grad(ctx, g):
    if g.ndim == 0:
        return (g,)
    d = normalize_dim("cumsum", ctx.attrs["dim"], g.ndim)
    return (_flip(F.cumsum(_flip(g, d), d), d),)


def _cumprod_grad(ctx, g):
    x = ctx.input(0)
    if x.ndim == 0:
        return (g,)
    if ctx.attrs["dtype"] is not None:
        x = x.to(ctx.attrs["dtype"])
    d = normalize_dim("cumprod", ctx.attrs["dim"], x.ndim)
    n = x.shape[d]
    xm, gm = F.movedim(x, d, -1), F.movedim(g, d, -1)  # (..., n): scan the last dim
    k = F.arange(n).reshape(n, 1)  # which input the derivative is taken by
    i = F.arange(n)
    # row k: x with x[k] and everything before it replaced by 1, scanned: prod(x[k+1 : j+1])
    after = F.cumprod(F.where(i > k, F.unsqueeze(xm, -2), 1.0), -1)
    # prod(x[:k]): the exclusive scan
    before = F.cumprod(F.cat([F.ones_like(xm[..., :1]), xm[..., :-1]], -1), -1)
    # sum over j >= k of g[j] · prod(x[k+1 : j+1])
    tail = F.sum(F.where(i >= k, F.unsqueeze(gm, -2) * after, 0.0), -1)
    return (F.movedim(before * tail, -1, d),)


def _scan_samples(domain):
    def gen(dtype, rng):
        def a(*shape, layout="contiguous"):
            return samples.array(rng, shape, dtype, *domain, layout=layout)

        out = [Sample((a(3, 5),), {"dim": 1}, "dim 1"),
               Sample((a(4, 3, layout="transposed"),), {"dim": 0}, "dim 0, transposed"),
               Sample((a(2, 3, 4, layout="negstep"),), {"dim": -2}, "middle dim"),
               Sample((a(6, layout="strided"),), {"dim": 0}, "1-D"),
               Sample((a(),), {"dim": 0}, "0-d"),
               Sample((a(0, 3),), {"dim": 1}, "empty"),
               Sample((a(3, 4),), {"dim": 1, "dtype": dt.float64}, "dtype float64")]
        if dtype.is_floating_point:
            zeros = a(3, 5)
            zeros[0, 1], zeros[1, 0], zeros[1, 3], zeros[2, 4] = 0, 0, 0, 0
            out.append(Sample((zeros,), {"dim": 1}, "zeros"))
            out.append(Sample((samples.with_specials(a(2, 6)),), {"dim": 1}, "special values"))
        return out
    return gen


register(name="cumsum", inputs=("self",), kernel=_scan(np.cumsum), dtype_rule=_scan_rule,
         shape_rule=_scan_shape, attrs={"dim": REQUIRED, "dtype": None}, dtypes=dt.ALL_DTYPES,
         samples=_scan_samples((-3.0, 3.0)), grad=_cumsum_grad,
         doc="running sums along dim (bool and integers in int64)")
register(name="cumprod", inputs=("self",), kernel=_scan(np.cumprod), dtype_rule=_scan_rule,
         shape_rule=_scan_shape, attrs={"dim": REQUIRED, "dtype": None}, dtypes=dt.ALL_DTYPES,
         samples=_scan_samples((-2.0, 2.0)), grad=_cumprod_grad,
         doc="running products along dim (bool and integers in int64)")


# ---- the public functions ---------------------------------------------------------------

def cumsum(input, dim: int, *, dtype=None):
    """Running sums along ``dim``; bool and integer inputs sum in int64 unless ``dtype``."""
    return dispatch(OPS.cumsum, input, dim=operator.index(dim),
                    dtype=None if dtype is None else dt.as_dtype(dtype))


def cumprod(input, dim: int, *, dtype=None):
    """Running products along ``dim``; bool and integer inputs in int64 unless ``dtype``."""
    return dispatch(OPS.cumprod, input, dim=operator.index(dim),
                    dtype=None if dtype is None else dt.as_dtype(dtype))
