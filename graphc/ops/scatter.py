"""Writes by index along one dim: scatter (and scatter_add), index_fill, index_add, and
the read that pairs with them, take_along_dim.

``scatter(self, dim, index, src)`` writes ``out[index[i][j]][j] = src[i][j]`` (dim 0, and
likewise for other dims); ``reduce='add'`` or ``'multiply'`` combines instead, so repeated
indices add up (``scatter_add``). Without a reduction, repeated indices leave one of the
written values (which is unspecified in PyTorch; here the last). Indices must lie in
[0, size of dim), as in ``gather``. index_fill and index_add decompose into ``index_put``.
"""

from __future__ import annotations

import operator

import numpy as np

from .. import dtype as dt
from ..errors import DTypeError, OpError, OpTypeError, OpValueError, ShapeError
from ..layout import broadcast_shapes, normalize_dim
from . import functions as F
from . import samples
from .indexing import _check_bounds, _check_index_dtype
from .dispatch import dispatch
from .functions import operand
from .registry import OPS, REQUIRED, Flag, Sample, register
from .rules import check_inputs, describe, is_tensor

ALL = dt.ALL_DTYPES
REDUCES = (None, "add", "multiply")


# ---- scatter ----------------------------------------------------------------------------

def _scatter_rule(name, x, index, src, dim=0, reduce=None):
    check_inputs(name, (x, src))
    if not is_tensor(x):
        raise DTypeError(name, f"expected a tensor to scatter into, got {describe(x)}")
    _check_index_dtype(name, index)
    if is_tensor(src) and src.dtype is not x.dtype:
        raise DTypeError(name, f"expected src of the tensor's dtype {x.dtype.name}, got "
                         f"{describe(src)}")
    if reduce not in REDUCES:
        raise OpValueError(name, f"reduce must be None, 'add' or 'multiply', got {reduce!r}")
    return (None, None, x.dtype), (x.dtype,)


def _scatter_shape(name, x, index, src, dim=0, reduce=None):
    sx, si = tuple(x.shape), tuple(index.shape)
    d = normalize_dim(name, dim, len(sx))
    ss = tuple(src.shape) if is_tensor(src) else None
    if index.numel() == 0:
        return sx
    if len(si) != len(sx) or (ss is not None and len(ss) != len(si)):
        raise ShapeError(name, f"index {si}, self {sx} and src {ss} must have the same number "
                         "of dims")
    for k, n in enumerate(si):
        if (k != d and n > sx[k]) or (ss is not None and n > ss[k]):
            raise ShapeError(name, f"index {si} is larger than self {sx} (apart from dim {d}) "
                             f"or than src {ss} in dim {k}")
    return sx


def _positions(index: np.ndarray, d: int, size: int, name: str) -> tuple:
    """The numpy key addressing (index along d, own position elsewhere)."""
    index = _check_bounds(name, index, size, d)
    return tuple(index if k == d else np.arange(n).reshape((1,) * k + (n,) + (1,) * (
        index.ndim - k - 1)) for k, n in enumerate(index.shape))


def _scatter(x, index, src, dim=0, reduce=None):
    out = np.array(x, copy=True)
    if index.size == 0:
        return out
    if out.ndim == 0:
        out, index = out.reshape(1), index.reshape(1)
        src = src.reshape(1) if np.ndim(src) else src
    d = dim % out.ndim
    key = _positions(index, d, out.shape[d], "scatter")
    values = src[tuple(slice(0, n) for n in index.shape)] if np.ndim(src) else src
    if reduce is None:
        out[key] = values
    else:
        (np.add if reduce == "add" else np.multiply).at(out, key, values)
    return out.reshape(x.shape)


def _scatter_grad(ctx, g):
    """self: the gradient where nothing was written (everywhere with reduce='add'); src:
    the gradient at the places its values went to (zero where src was not read)."""
    a = ctx.attrs
    if a["reduce"] == "multiply":
        raise OpError("scatter", "the gradient of scatter with reduce='multiply' is not "
                      "implemented; use reduce='add' or no reduction")
    index = ctx.input(1)
    src_shape = ctx.shape(2)  # None: a number
    g_self = g if a["reduce"] == "add" else F.scatter(g, a["dim"], index, 0)
    g_src = None
    if src_shape is not None and ctx.needs(2):
        g_src = F.gather(g, a["dim"], index) if g.ndim else g
        if tuple(index.shape) != src_shape and index.numel():
            pad = [w for k in reversed(range(len(src_shape)))
                   for w in (0, src_shape[k] - index.shape[k])]
            g_src = F.pad(g_src, pad, value=0.0)
        elif not index.numel():
            g_src = F.zeros(src_shape, dtype=g.dtype)
    return (g_self, None, g_src)


def _unique_index(rng, shape, size, dim):
    """Indices without repeats along dim (a repeated write has no defined winner)."""
    moved = [rng.permutation(size)[:shape[dim]] for _ in range(int(np.prod(shape)) // shape[dim])]
    rest = shape[:dim] + shape[dim + 1:]
    return np.moveaxis(np.array(moved).reshape(rest + (shape[dim],)), -1, dim)


def _scatter_samples(dtype, rng):
    def a(*shape, layout="contiguous"):
        return samples.array(rng, shape, dtype, layout=layout)

    return [Sample((a(3, 5), _unique_index(rng, (2, 5), 3, 0), a(2, 5)), {"dim": 0}, "dim 0"),
            # (a src larger than index is tested in tests/ops/test_sort_scan_scatter.py:
            # PyTorch's scatter backward refuses it, so the oracle cannot check it)
            Sample((a(3, 5, layout="transposed"), _unique_index(rng, (3, 2), 5, 1),
                    a(3, 2, layout="negstep")), {"dim": 1}, "dim 1"),
            Sample((a(4, 3), _unique_index(rng, (4, 2), 3, 1), samples.scalar(rng, dtype, -3, 3)),
                   {"dim": -1}, "a number"),
            Sample((a(5,), rng.integers(0, 5, (8,)), a(8)), {"dim": 0, "reduce": "add"},
                   "add, repeats add up"),
            Sample((a(2, 3), np.zeros((0, 3), np.int64), a(1, 3)), {"dim": 0}, "empty index")]


register(name="scatter", inputs=("self", "index", "src"), kernel=_scatter,
         dtype_rule=_scatter_rule, shape_rule=_scatter_shape,
         attrs={"dim": REQUIRED, "reduce": None}, dtypes=ALL, samples=_scatter_samples,
         grad=_scatter_grad,
         doc="a copy of self with self[index[i][j]][j] = src[i][j] (dim 0; likewise for other "
             "dims); src may be a number; reduce 'add' or 'multiply' combines")


# ---- take_along_dim ---------------------------------------------------------------------

def _take_rule(name, x, index, dim=None):
    _check_index_dtype(name, index, "indices")
    return (None, None), (x.dtype,)


def _take_shapes(name, x, index, dim):
    """(input shape, index shape) after broadcasting every dim but ``dim``."""
    sx, si = tuple(x.shape), tuple(index.shape)
    if dim is None:
        return (int(np.prod(sx)),), (int(np.prod(si)),)
    d = normalize_dim(name, dim, len(sx))
    if len(si) != len(sx):
        raise ShapeError(name, f"input {sx} and indices {si} should have the same number of "
                         "dims")
    if not sx:
        return sx, si
    b = broadcast_shapes(name, sx[:d] + (1,) + sx[d + 1:], si[:d] + (1,) + si[d + 1:])
    return b[:d] + (sx[d],) + b[d + 1:], b[:d] + (si[d],) + b[d + 1:]


def _take_shape(name, x, index, dim=None):
    return _take_shapes(name, x, index, dim)[1]


def _take_along_dim(x, index, dim=None):
    sx, si = _take_shapes("take_along_dim", x, index, dim)
    x, index = np.broadcast_to(x.reshape(-1) if dim is None else x, sx), \
        np.broadcast_to(index.reshape(-1) if dim is None else index, si)
    d = 0 if dim is None or x.ndim == 0 else dim % x.ndim
    if x.ndim == 0:
        _check_bounds("take_along_dim", index.reshape(1), 1, 0)
        return x.copy()
    return np.take_along_axis(x, _check_bounds("take_along_dim", index, x.shape[d], d), d)


def _take_decomposition(x, index, dim=None):
    sx, si = _take_shapes("take_along_dim", x, index, dim)
    if dim is None:
        return F.gather(F.reshape(x, -1), 0, F.reshape(index, -1))
    if not sx:
        return F.gather(x, 0, index)
    return F.gather(F.expand(x, *sx), dim, F.expand(index, *si))


def _take_samples(dtype, rng):
    def a(*shape, layout="contiguous"):
        return samples.array(rng, shape, dtype, layout=layout)

    return [Sample((a(3, 4), rng.integers(0, 4, (3, 2))), {"dim": 1}, "dim 1"),
            Sample((a(3, 4, layout="transposed"), rng.integers(0, 3, (2, 1))), {"dim": 0},
                   "indices broadcast"),
            Sample((a(1, 5), rng.integers(0, 5, (3, 2))), {"dim": 1}, "input broadcasts"),
            Sample((a(2, 3), rng.integers(0, 6, (4,))), {}, "flattened (dim=None)"),
            Sample((a(2, 3), np.zeros((2, 0), np.int64)), {"dim": 1}, "empty")]


register(name="take_along_dim", inputs=("self", "indices"), kernel=_take_along_dim,
         dtype_rule=_take_rule, shape_rule=_take_shape, attrs={"dim": None}, dtypes=ALL,
         flags={Flag.COMPOSITE},
         samples=_take_samples, decomposition=_take_decomposition,
         doc="gather along dim after broadcasting input and indices in the other dims "
             "(dim=None: of the flattened input)")


# ---- index_fill, index_add --------------------------------------------------------------

def _index_along_rule(name, x, index, other, dim=0, alpha=1):
    check_inputs(name, (x, other))
    _check_index_dtype(name, index)
    if index.ndim > 1:
        raise ShapeError(name, f"expected a 0-D or 1-D index, got shape {tuple(index.shape)}")
    if name == "index_fill" and is_tensor(other) and other.ndim != 0:
        raise ShapeError(name, f"expected a 0-d value tensor or a number, got {describe(other)}")
    if name == "index_add" and is_tensor(other) and other.dtype is not x.dtype:
        raise DTypeError(name, f"expected source of the tensor's dtype {x.dtype.name}, got "
                         f"{describe(other)}")
    return (None, None, x.dtype), (x.dtype,)


def _index_add_shape(name, x, index, source, dim=0, alpha=1):
    sx, ss = tuple(x.shape), tuple(source.shape)
    d = normalize_dim(name, dim, len(sx))
    want = sx[:d] + (index.numel(),) + sx[d + 1:] if sx else ((index.numel(),) if ss else ())
    if ss != want and not (not sx and index.numel() == 1 and ss in ((), (1,))):
        raise ShapeError(name, f"source of shape {ss} does not match self {sx} with "
                         f"{index.numel()} indices along dim {d} (expected {want})")
    return sx


def _key(x, dim, index):
    return (slice(None),) * (dim % x.ndim) + (index,) if x.ndim else ()


def _index_fill(x, index, value, dim=0):
    out = np.array(x, copy=True)
    if out.ndim == 0:
        _check_bounds("index_fill", index.reshape(-1), 1, 0, negative=True)
        out[...] = value if index.size else out
        return out
    d = dim % out.ndim
    out[_key(out, d, _check_bounds("index_fill", index.reshape(-1), out.shape[d], d,
                                   negative=True))] = value
    return out


def _index_add(x, index, source, dim=0, alpha=1):
    out = np.array(x, copy=True)
    if out.ndim == 0:
        _check_bounds("index_add", index.reshape(-1), 1, 0)
        return out + np.sum(source) * alpha if index.size else out
    d = dim % out.ndim
    idx = _check_bounds("index_add", index.reshape(-1), out.shape[d], d)
    np.add.at(out, _key(out, d, idx), source * alpha if alpha != 1 else source)
    return out


def _index_fill_decomposition(x, index, value, dim=0):
    if x.ndim == 0:
        return F.masked_fill(x, F.full((), True), value) if index.numel() else F.clone(x)
    d = normalize_dim("index_fill", dim, x.ndim)
    n = x.shape[d]
    # a mask of the filled positions of dim: a repeated index fills (and differentiates) once
    hit = F.index_put(F.zeros(n, dtype=dt.bool_), (F.reshape(index, -1),), True)
    return F.masked_fill(x, F.reshape(hit, (n,) + (1,) * (x.ndim - d - 1)), value)


def _index_add_decomposition(x, index, source, dim=0, alpha=1):
    if x.ndim == 0:
        return x + F.sum(source) * alpha if index.numel() else F.clone(x)
    d = normalize_dim("index_add", dim, x.ndim)
    return F.index_put(x, (None,) * d + (F.reshape(index, -1),),
                       source * alpha if alpha != 1 else source, accumulate=True)


def _index_along_samples(kind):
    def gen(dtype, rng):
        def a(*shape, layout="contiguous"):
            return samples.array(rng, shape, dtype, layout=layout)

        if kind == "fill":
            return [Sample((a(4, 3), np.array([0, 2]), samples.scalar(rng, dtype, -3, 3)),
                           {"dim": 0}, "rows"),
                    Sample((a(3, 5, layout="transposed"), np.array([4, 0, 1, 4]), a()),
                           {"dim": 1}, "columns, a repeated index, 0-d value"),
                    Sample((a(2, 3), np.zeros((0,), np.int64), 0), {"dim": 0}, "no index")]
        add = [Sample((a(4, 3), np.array([0, 2, 0]), a(3, 3)), {"dim": 0}, "repeats add up"),
               Sample((a(3, 5, layout="negstep"), np.array([4, 1]), a(3, 2, layout="transposed")),
                      {"dim": 1}, "columns")]
        if dtype is not dt.bool_:
            add.append(Sample((a(3, 2), np.array([1]), a(1, 2)), {"dim": 0, "alpha": 2},
                              "alpha 2"))
        return add
    return gen


register(name="index_fill", inputs=("self", "index", "value"), kernel=_index_fill,
         dtype_rule=_index_along_rule, shape_rule=lambda name, x, *rest, **a: tuple(x.shape),
         attrs={"dim": REQUIRED}, dtypes=ALL, samples=_index_along_samples("fill"),
         flags={Flag.COMPOSITE},
         decomposition=_index_fill_decomposition,
         doc="a copy of self with value at the given positions of dim")
register(name="index_add", inputs=("self", "index", "source"), kernel=_index_add,
         dtype_rule=_index_along_rule, shape_rule=_index_add_shape,
         attrs={"dim": REQUIRED, "alpha": 1}, dtypes=ALL, samples=_index_along_samples("add"),
         flags={Flag.COMPOSITE},
         decomposition=_index_add_decomposition,
         doc="a copy of self with alpha·source added at the given positions of dim "
             "(repeats add up)")


# ---- the public functions ---------------------------------------------------------------

def scatter(input, dim: int, index, src=None, *, value=None, reduce: str | None = None):
    """A copy of ``input`` with ``src`` (a tensor, or a number: ``value``) written at
    ``index`` along ``dim``; ``reduce='add'`` or ``'multiply'`` combines with what is there."""
    if (src is None) == (value is None):
        raise OpTypeError("scatter", "expected exactly one of src (a tensor or a number) and "
                          "value")
    return dispatch(OPS.scatter, input, operand(index), operand(value if src is None else src),
                    dim=operator.index(dim), reduce=reduce)


def scatter_add(input, dim: int, index, src):
    """A copy of ``input`` with ``src`` added at ``index`` along ``dim`` (repeats add up)."""
    return dispatch(OPS.scatter, input, operand(index), operand(src), dim=operator.index(dim),
                    reduce="add")


def take_along_dim(input, indices, dim: int | None = None):
    """Values of ``input`` at ``indices`` along ``dim`` (the two broadcast in the other dims);
    of the flattened input when ``dim`` is None."""
    return dispatch(OPS.take_along_dim, input, operand(indices),
                    dim=None if dim is None else operator.index(dim))


def index_fill(input, dim: int, index, value):
    """A copy of ``input`` with ``value`` at positions ``index`` of ``dim``."""
    return dispatch(OPS.index_fill, input, operand(index), operand(value),
                    dim=operator.index(dim))


def index_add(input, dim: int, index, source, *, alpha=1):
    """A copy of ``input`` with ``alpha * source`` added at positions ``index`` of ``dim``."""
    return dispatch(OPS.index_add, input, operand(index), operand(source),
                    dim=operator.index(dim), alpha=alpha)
