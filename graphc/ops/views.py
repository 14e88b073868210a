"""View ops: new shape, stride and storage offset over the same storage; no data moves.

A view op's ``view_rule(name, x, **attrs)`` returns ``(shape, stride, offset)``; eager
and meta mode run the same rule, so a view's strides are exact in both. ``reshape``'s
rule returns None when no view exists, and dispatch copies to a contiguous tensor first
(PyTorch's "copies only when it must"). The numpy kernel beside each rule is the
reference the tests compare the view's values against.
"""

from __future__ import annotations

import operator

import numpy as np

from .. import dtype as dt
from ..tensor import wrap_array
from ..errors import OpIndexError, OpValueError, ShapeError
from ..layout import as_shape, infer_size, normalize_dim, numel, reach, view_strides
from ..symbolic import SymInt
from . import functions as F
from . import samples
from .registry import REQUIRED, Flag, Sample, register
from .rules import same_as_first

ALL = dt.ALL_DTYPES


def _geometry(x):
    return tuple(x._shape), tuple(x._stride), x._offset


def _view_rule(name, x, size=()):
    shape, stride, offset = _geometry(x)
    new_shape = infer_size(name, as_shape(name, size), numel(shape))
    new_stride = view_strides(shape, stride, new_shape)
    if new_stride is None:
        raise ShapeError(
            name, f"view size {new_shape} is not compatible with the input's size {shape} and "
            f"stride {stride} (its dims cannot be merged or split without copying, e.g. it is "
            "transposed); use .reshape(...) or call .contiguous() before .view(...)")
    return new_shape, new_stride, offset


def _reshape_rule(name, x, size=()):
    shape, stride, offset = _geometry(x)
    new_shape = infer_size(name, as_shape(name, size), numel(shape))
    new_stride = view_strides(shape, stride, new_shape)
    if new_stride is None:
        return None
    return new_shape, new_stride, offset


def _permute_rule(name, x, dims=()):
    shape, stride, offset = _geometry(x)
    dims = tuple(normalize_dim(name, d, len(shape)) for d in dims)
    if sorted(dims) != list(range(len(shape))):
        raise ShapeError(name, f"dims {dims} are not a permutation of the {len(shape)} dims of "
                         f"a tensor of shape {shape}")
    return tuple(shape[d] for d in dims), tuple(stride[d] for d in dims), offset


def _expand_rule(name, x, size=()):
    shape, stride, offset = _geometry(x)
    size = as_shape(name, size)
    if len(size) < len(shape):
        raise ShapeError(name, f"the expanded size {size} has fewer dims than the tensor's "
                         f"shape {shape}")
    lead = len(size) - len(shape)
    out_shape, out_stride = [], []
    for i, want in enumerate(size):
        if i < lead:
            if want < 0:
                raise ShapeError(name, f"size -1 is not allowed in a new leading dim ({size})")
            out_shape.append(want)
            out_stride.append(0)
            continue
        have, st = shape[i - lead], stride[i - lead]
        if want == -1 or want == have:
            out_shape.append(have)
            out_stride.append(st)
        elif have == 1:
            out_shape.append(want)
            out_stride.append(0)
        else:
            raise ShapeError(name, f"the expanded size {want} must match the existing size "
                             f"{have} at non-singleton dim {i} (shape {shape}, size {size})")
    return tuple(out_shape), tuple(out_stride), offset


def _squeeze_rule(name, x, dim=None):
    shape, stride, offset = _geometry(x)
    if dim is None:
        dims = {i for i, s in enumerate(shape) if s == 1}
    else:
        dims = {normalize_dim(name, d, len(shape)) for d in dim}
        dims = {d for d in dims if shape and shape[d] == 1}  # other dims stay (PyTorch)
    keep = [i for i in range(len(shape)) if i not in dims]
    return tuple(shape[i] for i in keep), tuple(stride[i] for i in keep), offset


def _unsqueeze_rule(name, x, dim=0):
    shape, stride, offset = _geometry(x)
    d = normalize_dim(name, dim, len(shape), extra=1)
    new_stride = shape[d] * stride[d] if d < len(shape) else 1
    return shape[:d] + (1,) + shape[d:], stride[:d] + (new_stride,) + stride[d:], offset


def _select_rule(name, x, dim=0, index=0):
    shape, stride, offset = _geometry(x)
    if not shape:
        raise OpIndexError(name, "cannot index a 0-d tensor (it has no dims)")
    d = normalize_dim(name, dim, len(shape))
    i = _index(index)
    if not -shape[d] <= i < shape[d]:
        raise OpIndexError(name, f"index {i} is out of bounds for dim {d} with size {shape[d]}")
    if i < 0:
        i += shape[d]
    return (shape[:d] + shape[d + 1:], stride[:d] + stride[d + 1:], offset + i * stride[d])


def _index(i):
    """An index argument: an int, or a symbolic size (``x[x.shape[0] - 1]``) kept symbolic."""
    return i if type(i) is SymInt else operator.index(i)


def _slice_indices(start, end, step: int, n):
    """``slice(start, end, step).indices(n)``, written out so that ``n`` may be a symbolic
    size (each comparison with it is then a guard, not an int() of it)."""
    step = operator.index(step)

    def clamp(i, default, low, high):
        if i is None:
            return default
        i = _index(i)
        if i < 0:
            i += n
            return low if i < low else i
        return high if i > high else i
    if step > 0:
        return clamp(start, 0, 0, n), clamp(end, n, 0, n), step
    return clamp(start, n - 1, -1, n - 1), clamp(end, -1, -1, n - 1), step


def _slice_rule(name, x, dim=0, start=None, end=None, step=1):
    shape, stride, offset = _geometry(x)
    if not shape:
        raise OpIndexError(name, "cannot slice a 0-d tensor (it has no dims)")
    d = normalize_dim(name, dim, len(shape))
    if step == 0:
        raise OpValueError(name, "slice step cannot be zero")
    lo, hi, st = _slice_indices(start, end, step, shape[d])
    n = (hi - lo + st - (1 if st > 0 else -1)) // st if (hi > lo if st > 0 else hi < lo) else 0
    # PyTorch moves the offset to `start` even for an empty slice; keep it in range
    moved = n or (lo >= 0 and stride[d] >= 0)
    new_offset = offset + lo * stride[d] if moved else offset
    return (shape[:d] + (n,) + shape[d + 1:], stride[:d] + (stride[d] * st,) + stride[d + 1:],
            new_offset)


def _as_strided_rule(name, x, size=(), stride=(), storage_offset=None):
    size, stride = as_shape(name, size), as_shape(name, stride)
    if len(size) != len(stride):
        raise ShapeError(name, f"size {size} and stride {stride} have different lengths")
    if any(s < 0 for s in size):
        raise ShapeError(name, f"negative size in {size}")
    offset = x._offset if storage_offset is None else operator.index(storage_offset)
    if numel(size):
        lo, hi = (offset + e for e in reach(size, stride))
        if lo < 0 or hi >= x._storage.size:
            raise OpIndexError(name, f"the view (size {size}, stride {stride}, offset {offset}) "
                               f"reaches elements {lo}..{hi} of a storage of "
                               f"{x._storage.size} elements")
    return size, stride, offset


# ---- numpy references (what the view's values must equal) --------------------------

def _slice_ref(a, dim=0, start=None, end=None, step=1):
    return a[(slice(None),) * (dim % a.ndim) + (slice(start, end, step),)]


def _expand_ref(a, size=()):
    lead = len(size) - a.ndim
    full = tuple(a.shape[i - lead] if s == -1 else s for i, s in enumerate(size))
    return np.broadcast_to(a, full)


def _squeeze_ref(a, dim=None):
    if dim is None:
        return np.squeeze(a)
    axes = tuple(d % a.ndim for d in dim if a.ndim and a.shape[d] == 1)
    return np.squeeze(a, axis=axes)


def _as_strided_ref(a, size=(), stride=(), storage_offset=None):
    flat = np.ascontiguousarray(a).reshape(-1)[storage_offset or 0:]
    return np.lib.stride_tricks.as_strided(flat, size, [s * a.itemsize for s in stride])


# ---- samples -----------------------------------------------------------------------

def _sampler(cases):
    """cases: list of (shape, layout, attrs) -> samples for every dtype."""
    def gen(dtype, rng):
        return [Sample((samples.array(rng, shape, dtype, layout=layout),), attrs,
                       f"{shape} {layout} {attrs}") for shape, layout, attrs in cases]
    return gen


# ---- gradient rules: put the gradient back where the view came from ------------------

def _reshape_back(ctx, g):
    return (F.reshape(g, ctx.shape(0)),)


def _permute_back(ctx, g):
    dims = [normalize_dim("permute", d, len(ctx.shape(0))) for d in ctx.attrs["dims"]]
    return (F.permute(g, *np.argsort(dims).tolist()),)


def _scatter_back(shape, dim, index: np.ndarray, g):
    """Zeros of ``shape`` with ``g`` at positions ``index`` of ``dim``."""
    zeros = F.zeros(shape, dtype=g.dtype)
    return F.index_put(zeros, (None,) * dim + (wrap_array(index),), g)


def _padded_back(shape, dim, start: int, g):
    """Zeros of ``shape`` with ``g`` at ``start:start+len`` of ``dim``: a constant pad (a
    gather the backend lowers natively; a scatter into zeros would not be)."""
    after = shape[dim] - start - g.shape[dim]
    return F.pad(g, (0, 0) * (len(shape) - 1 - dim) + (start, after))


def _select_back(ctx, g):
    shape = ctx.shape(0)
    d = normalize_dim("select", ctx.attrs["dim"], len(shape))
    index = ctx.attrs["index"] % shape[d]
    if _concrete(shape):
        return (_padded_back(shape, d, index, F.unsqueeze(g, d)),)
    return (_scatter_back(shape, d, np.array([index]), F.unsqueeze(g, d)),)


def _slice_back(ctx, g):
    shape, a = ctx.shape(0), ctx.attrs
    d = normalize_dim("slice", a["dim"], len(shape))
    start, stop, step = _slice_indices(a["start"], a["end"], a["step"], shape[d])
    if step == 1:  # (symbolic sizes stay symbolic: a pad by sizes computed from them)
        return (_padded_back(shape, d, start, g),)
    return (_scatter_back(shape, d, np.arange(start, stop, step), g),)


def _concrete(shape) -> bool:
    return all(type(s) is int for s in shape)


def _as_strided_back(ctx, g):
    from ..autograd.graph import view_positions

    x = ctx.input(0)
    if x.is_meta:  # a traced graph: the positions depend on the memory of the call's input
        raise OpValueError("as_strided", "its gradient is found from the input's memory "
                           "(storage positions), which a traced graph does not know")
    positions = view_positions(x, ctx.output)
    if positions.size and positions.min() < 0:
        raise OpValueError("as_strided", "the view reaches storage outside its input, which has "
                           "no gradient there")
    flat = F.index_put(F.zeros(x.numel(), dtype=g.dtype), (wrap_array(positions),),
                       F.reshape(g, -1), accumulate=True)
    return (F.reshape(flat, ctx.shape(0)),)


GRADS = {"detach": None,  # the point of it: no gradient flows back (Flag.NO_GRAD)
         "view": _reshape_back, "reshape": _reshape_back, "permute": _permute_back,
         "expand": lambda ctx, g: (g,),  # autograd sums the broadcast dims away
         "squeeze": _reshape_back, "unsqueeze": _reshape_back, "select": _select_back,
         "slice": _slice_back, "as_strided": _as_strided_back}


def view_op(name, rule, ref, attrs, cases, doc="", reshape_like=False, flags=()):
    return register(name=name, inputs=("self",), kernel=ref, dtype_rule=same_as_first,
                    view_rule=rule, attrs=attrs, flags={Flag.VIEW, *flags}, dtypes=ALL,
                    samples=_sampler(cases), grad=GRADS[name], doc=doc,
                    reshape_like=reshape_like)


C, T, S, N = samples.LAYOUTS
view_op("view", _view_rule, lambda a, size=(): a.reshape(size), {"size": REQUIRED}, [
    ((3, 4), C, {"size": (12,)}), ((3, 4), C, {"size": (2, -1, 2)}), ((12,), C, {"size": (3, 4)}),
    ((), C, {"size": (1, 1)}), ((0, 4), C, {"size": (4, 0)}), ((3, 4), S, {"size": (3, 2, 2)}),
    ((3, 4), T, {"size": (3, 2, 2)}), ((4, 1), C, {"size": (4,)}),
], doc="same data, new shape; fails where the layout needs a copy (use reshape)", reshape_like=True)
view_op("reshape", _reshape_rule, lambda a, size=(): a.reshape(size), {"size": REQUIRED}, [
    ((3, 4), C, {"size": (12,)}), ((3, 4), T, {"size": (12,)}), ((3, 4), N, {"size": (2, 6)}),
    ((2, 3, 4), S, {"size": (6, -1)}), ((), C, {"size": (1,)}), ((0, 3), C, {"size": (3, 0)}),
], doc="a view when the layout allows, else a contiguous copy", reshape_like=True)
view_op("permute", _permute_rule, lambda a, dims=(): np.transpose(a, dims), {"dims": REQUIRED}, [
    ((3, 4), C, {"dims": (1, 0)}), ((2, 3, 4), T, {"dims": (2, 0, 1)}), ((), C, {"dims": ()}),
    ((2, 0, 3), C, {"dims": (-1, 0, 1)}), ((4, 5), N, {"dims": (1, 0)}),
])
view_op("expand", _expand_rule, _expand_ref, {"size": REQUIRED}, [
    ((3, 1), C, {"size": (3, 4)}), ((1,), C, {"size": (2, 3, 5)}), ((3, 1), T, {"size": (2, -1, 4)}),
    ((), C, {"size": (2, 2)}), ((1, 0), C, {"size": (3, 0)}), ((2, 3), C, {"size": (2, 3)}),
], doc="size-1 dims repeat with stride 0; new dims are added in front")
view_op("squeeze", _squeeze_rule, _squeeze_ref, {"dim": None}, [
    ((3, 1, 4, 1), C, {"dim": None}), ((3, 1, 4), C, {"dim": (1,)}), ((3, 1, 4), C, {"dim": (0,)}),
    ((1, 1), T, {"dim": (0, 1)}), ((), C, {"dim": None}), ((1, 0), C, {"dim": None}),
], doc="drop size-1 dims (dim: which ones; others named are left alone)", reshape_like=True)
view_op("unsqueeze", _unsqueeze_rule, lambda a, dim=0: np.expand_dims(a, dim), {"dim": REQUIRED}, [
    ((3, 4), C, {"dim": 0}), ((3, 4), T, {"dim": 1}), ((3, 4), C, {"dim": -1}), ((), C, {"dim": 0}),
    ((0, 2), C, {"dim": 2}),
], reshape_like=True)
view_op("select", _select_rule, lambda a, dim=0, index=0: np.take(a, index, axis=dim),
        {"dim": REQUIRED, "index": REQUIRED}, [
    ((3, 4), C, {"dim": 0, "index": 1}), ((3, 4), T, {"dim": 1, "index": -1}),
    ((2, 3, 4), S, {"dim": 2, "index": 3}), ((5,), N, {"dim": 0, "index": 0}),
], doc="index one position of a dim, removing the dim")
view_op("slice", _slice_rule, _slice_ref, {"dim": REQUIRED, "start": None, "end": None, "step": 1}, [
    ((6, 4), C, {"dim": 0, "start": 1, "end": 5, "step": 2}),
    ((6, 4), T, {"dim": 1, "start": -3, "end": None, "step": 1}),
    ((6, 4), C, {"dim": 0, "start": 10, "end": 20, "step": 1}),
    ((6,), N, {"dim": 0, "start": None, "end": None, "step": -2}),
    ((3, 5), S, {"dim": -1, "start": 1, "end": -1, "step": 3}),
], doc="start:end:step along one dim (negative steps are allowed, unlike PyTorch)")
view_op("detach", lambda name, x: _geometry(x), lambda a: a, {}, [
    ((3, 4), C, {}), ((3, 4), T, {}), ((), C, {}), ((0, 2), C, {}),
], doc="the same view, cut from the gradient graph: ``Tensor.detach()`` in a traced training "
    "program (eager detach makes no op)", flags=(Flag.NO_GRAD,))
view_op("as_strided", _as_strided_rule, _as_strided_ref,
        {"size": REQUIRED, "stride": REQUIRED, "storage_offset": None}, [
    ((12,), C, {"size": (3, 3), "stride": (3, 1), "storage_offset": 1}),
    ((4, 3), C, {"size": (2, 2), "stride": (1, 2), "storage_offset": 0}),
    ((5,), C, {"size": (3, 2), "stride": (1, 1), "storage_offset": 0}),
    ((6,), C, {"size": (0, 2), "stride": (2, 1), "storage_offset": 0}),
], doc="any geometry over the storage, checked against the storage's bounds")
