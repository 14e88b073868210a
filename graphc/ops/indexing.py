"""Ops that gather or scatter by index: cat, stack, gather, index_select, masked_fill,
advanced indexing (``index``) and indexed writes (``index_put_``).

Advanced indexing follows PyTorch: integers and slices apply first as views (see
``graphc/ops/subscript.py``), then the remaining index tensors select with numpy's
rules — adjacent index tensors put their dims in place, separated ones put them first.
A boolean mask's result size depends on its values, so meta mode cannot know it.
"""

from __future__ import annotations

import functools

import numpy as np

from .. import dtype as dt
from ..errors import DTypeError, OpIndexError, OpValueError, ShapeError
from ..layout import as_shape, broadcast_shapes, normalize_dim, numel, reach
from . import functions as F
from . import samples
from .registry import EXACT, REQUIRED, Accuracy, Expose, Flag, Sample, register
from .rules import check_inputs, describe, is_tensor, same_as_first

ALL = dt.ALL_DTYPES


# ---- cat and stack -----------------------------------------------------------------

def _promote_all(name, *tensors, dim=0):
    if not tensors:
        raise OpValueError(name, "expected a non-empty sequence of tensors")
    for i, t in enumerate(tensors):
        if not is_tensor(t):
            raise DTypeError(name, f"expected tensors, got {describe(t)} at position {i}")
    d = functools.reduce(dt.promote_types, (t.dtype for t in tensors))  # all inputs count alike
    return tuple(d for _ in tensors), (d,)


def _is_legacy_empty(shape) -> bool:
    return tuple(shape) == (0,)  # PyTorch's cat skips 1-D empty tensors of any other rank


def _cat_shape(name, *tensors, dim=0):
    shapes = [tuple(t.shape) for t in tensors]
    kept = [(i, s) for i, s in enumerate(shapes) if not _is_legacy_empty(s)]
    if not kept:
        return (0,)
    i0, ref = kept[0]
    if not ref:
        raise ShapeError(name, "zero-dimensional tensors cannot be concatenated; use stack")
    d = normalize_dim(name, dim, len(ref))
    total = 0
    for i, s in kept:
        if len(s) != len(ref) or any(a != b for k, (a, b) in enumerate(zip(s, ref)) if k != d):
            raise ShapeError(name, f"expected matching sizes except in dim {d}, but tensor {i} has "
                             f"shape {s} and tensor {i0} has shape {ref}")
        total += s[d]
    return ref[:d] + (total,) + ref[d + 1:]


def _cat(*arrays, dim=0):
    kept = [a for a in arrays if not _is_legacy_empty(a.shape)]
    if not kept:
        return np.empty((0,), arrays[0].dtype)
    return np.concatenate(kept, axis=normalize_dim("cat", dim, kept[0].ndim))


def _stack_shape(name, *tensors, dim=0):
    ref = tuple(tensors[0].shape)
    for i, t in enumerate(tensors):
        if tuple(t.shape) != ref:
            raise ShapeError(name, f"expected tensors of equal shape, got {ref} at position 0 and "
                             f"{tuple(t.shape)} at position {i}")
    d = normalize_dim(name, dim, len(ref), extra=1)
    return ref[:d] + (len(tensors),) + ref[d:]


def _stack(*arrays, dim=0):
    return np.stack(arrays, axis=normalize_dim("stack", dim, arrays[0].ndim, extra=1))


def _seq_samples(kind):
    def gen(dtype, rng):
        a = lambda shape, layout="contiguous": samples.array(rng, shape, dtype, layout=layout)
        if kind == "cat":
            return [Sample((a((2, 3)), a((4, 3), "transposed")), {"dim": 0}, "dim 0"),
                    Sample((a((2, 3)), a((2, 1)), a((2, 0))), {"dim": -1}, "dim -1 with empty"),
                    Sample((a((0,)), a((2, 3))), {"dim": 0}, "legacy empty skipped"),
                    Sample((a((3,), "negstep"),), {"dim": 0}, "single")]
        return [Sample((a((2, 3)), a((2, 3), "strided")), {"dim": 0}, "dim 0"),
                Sample((a((2, 3)), a((2, 3)), a((2, 3))), {"dim": 2}, "new last dim"),
                Sample((a(()), a(())), {"dim": 0}, "0-d"),
                Sample((a((0, 2)),), {"dim": 1}, "empty")]
    return gen


# ---- gather, index_select, masked_fill ---------------------------------------------

def _check_index_dtype(name, index, what="index"):
    if not is_tensor(index) or index.dtype not in dt.INT_DTYPES:
        raise DTypeError(name, f"expected {what} to be an int64 or int32 tensor, got {describe(index)}")


def _check_bounds(name, index: np.ndarray, size: int, dim: int, negative: bool = False):
    """Indices must lie in [0, size) (gather, index_select), or [-size, size) with
    ``negative`` (advanced indexing, where -1 is the last); returns them non-negative."""
    if index.size:
        low = -size if negative else 0
        bad = index[(index < low) | (index >= size)]
        if bad.size:
            raise OpIndexError(name, f"index {bad.reshape(-1)[0]} is out of bounds for dim {dim} "
                               f"with size {size}")
    return np.where(index < 0, index + size, index) if negative else index


def _gather_rule(name, x, index, dim=0):
    _check_index_dtype(name, index)
    return same_as_first(name, x, index)


def _gather_shape(name, x, index, dim=0):
    sx, si = tuple(x.shape), tuple(index.shape)
    d = normalize_dim(name, dim, len(sx))
    if len(si) != len(sx) and not (len(si) <= 1 and len(sx) <= 1):
        raise ShapeError(name, f"index {si} and input {sx} must have the same number of dims")
    for k, (a, b) in enumerate(zip(si, sx)):
        if k != d and a > b:
            raise ShapeError(name, f"index size {a} exceeds the input's size {b} in dim {k} "
                             f"(index {si}, input {sx}, dim {d})")
    return si


def _gather(x, index, dim=0):
    if x.ndim == 0:
        x = x.reshape(1)
    d = dim % x.ndim
    idx = _check_bounds("gather", index.reshape(index.shape or (1,)), x.shape[d], d)
    if idx.size == 0:
        return np.empty(index.shape, x.dtype)
    part = x[tuple(slice(0, n) if k != d else slice(None) for k, n in enumerate(idx.shape))]
    return np.take_along_axis(part, idx, axis=d).reshape(index.shape)


def _index_select_rule(name, x, index, dim=0):
    _check_index_dtype(name, index)
    if index.ndim > 1:
        raise ShapeError(name, f"expected a 1-D index, got shape {tuple(index.shape)}")
    return same_as_first(name, x, index)


def _index_select_shape(name, x, index, dim=0):
    sx = tuple(x.shape)
    d = normalize_dim(name, dim, len(sx))
    if not sx:
        return ()
    return sx[:d] + (index.numel(),) + sx[d + 1:]


def _index_select(x, index, dim=0):
    if x.ndim == 0:
        _check_bounds("index_select", index, 1, 0)
        return x.copy()
    d = dim % x.ndim
    return np.take(x, _check_bounds("index_select", index.reshape(-1), x.shape[d], d), axis=d)


def _masked_fill_rule(name, x, mask, value):
    if not (is_tensor(mask) and mask.dtype is dt.bool_):
        raise DTypeError(name, f"expected a bool mask, got {describe(mask)}")
    if is_tensor(value) and value.ndim != 0:
        raise ShapeError(name, f"expected a 0-d value tensor or a number, got {describe(value)}")
    check_inputs(name, (x, mask, value))
    return (None, None, x.dtype), (x.dtype,)


def _masked_fill_shape(name, x, mask, value):
    return broadcast_shapes(name, tuple(x.shape), tuple(mask.shape))


def _index_samples(kind):
    def gen(dtype, rng):
        a = lambda shape, layout="contiguous": samples.array(rng, shape, dtype, layout=layout)
        i = lambda shape, high: rng.integers(0, high, shape)
        if kind == "gather":
            return [Sample((a((3, 4)), i((3, 2), 4)), {"dim": 1}, "dim 1"),
                    Sample((a((3, 4), "transposed"), i((2, 4), 3)), {"dim": 0}, "dim 0"),
                    Sample((a((5,)), i((3,), 5).astype(np.int32)), {"dim": 0}, "1-D, int32 index"),
                    Sample((a((2, 3)), i((2, 0), 3)), {"dim": 1}, "empty index")]
        if kind == "index_select":
            return [Sample((a((3, 4)), i((5,), 4)), {"dim": 1}, "dim 1"),
                    Sample((a((3, 4), "negstep"), i((2,), 3)), {"dim": 0}, "dim 0"),
                    Sample((a((3, 4)), i((), 3)), {"dim": 0}, "0-d index"),
                    Sample((a((3, 4)), i((0,), 3)), {"dim": 0}, "empty index")]
        mask = lambda shape: rng.random(shape) < 0.5
        return [Sample((a((3, 4)), mask((3, 4)), samples.scalar(rng, dtype, -3, 3)), {}, "same shape"),
                Sample((a((3, 4), "strided"), mask((4,)), a(())), {}, "broadcast mask, 0-d value"),
                Sample((a((4,)), mask((2, 4)), 1), {}, "mask broadcasts self"),
                Sample((a((0, 4)), mask((4,)), 0), {}, "empty")]
    return gen


# ---- advanced indexing -------------------------------------------------------------

def index_key(spec, indices, full=None) -> tuple:
    """The key for x[key]: ``full`` (None, or slice(None) for numpy) where ``spec`` has None,
    index ``j`` for entry j."""
    return tuple(full if e is None else indices[e] for e in spec)


def advanced_shape(name, shape, spec, indices, *, data_ok: bool = True,
                   unknown_count: int | None = None) -> tuple:
    """Result shape of x[key] for a key of full slices and index tensors (numpy's rules).
    A mask whose values meta mode does not know counts ``unknown_count`` if given (a
    write of one value broadcasts to any count), else it is refused."""
    dims_used = [t.ndim if t.dtype is dt.bool_ else 1 for t in indices]
    slots = []  # per spec entry: (dims of x it consumes)
    pos = 0
    for e in spec:
        n = 1 if e is None else dims_used[e]
        slots.append((e, pos, n))
        pos += n
    if pos > len(shape):
        raise OpIndexError(name, f"too many indices for a tensor of {len(shape)} dims")
    index_shapes = []
    for e, start, n in slots:
        if e is None:
            continue
        t = indices[e]
        if t.dtype is dt.bool_:
            covered = tuple(shape[start:start + n])
            if tuple(t.shape) != covered:
                raise OpIndexError(name, f"the mask of shape {tuple(t.shape)} does not match the "
                                   f"indexed tensor's shape {covered} at dim {start}")
            if (t.is_meta or not data_ok) and unknown_count is not None:
                index_shapes.append((unknown_count,))
            elif t.is_meta or not data_ok:
                raise ShapeError(name, "indexing with a boolean mask gives a result whose size "
                                 "depends on the mask's values, which meta mode does not know")
            else:
                index_shapes.append((int(np.count_nonzero(t._data())),))
        elif t.dtype in dt.INT_DTYPES:
            index_shapes.append(tuple(t.shape))
        else:
            raise OpIndexError(name, f"tensors used as indices must be int64, int32 or bool, got "
                               f"{describe(t)}")
    bshape = broadcast_shapes(name, *index_shapes)
    tensor_slots = [k for k, (e, _, _) in enumerate(slots) if e is not None]
    adjacent = tensor_slots == list(range(tensor_slots[0], tensor_slots[-1] + 1))
    before = [shape[start] for e, start, n in slots[:tensor_slots[0]] if e is None]
    after = [shape[start] for k, (e, start, n) in enumerate(slots)
             if e is None and k > tensor_slots[0]]
    rest = list(shape[pos:])
    if adjacent:
        return tuple(before) + bshape + tuple(after) + tuple(rest)
    return bshape + tuple(before) + tuple(after) + tuple(rest)


def _index_rule(name, x, *indices, spec=()):
    return (None,) * (1 + len(indices)), (x.dtype,)


def _index_shape(name, x, *indices, spec=()):
    return advanced_shape(name, tuple(x.shape), spec, indices)


def _bounds_key(name, x, indices, spec):
    """numpy key with integer indices checked against their dims (negative ones wrapped)."""
    out = list(indices)
    pos = 0
    for e in spec:
        if e is None:
            pos += 1
            continue
        t = indices[e]
        if t.dtype == np.bool_:
            pos += t.ndim
        else:
            out[e] = _check_bounds(name, t, x.shape[pos], pos, negative=True)
            pos += 1
    return index_key(spec, out, slice(None))


def _index(x, *indices, spec=()):
    return x[_bounds_key("index", x, indices, spec)]


def _index_put_rule(name, x, values, *indices, spec=(), accumulate=False):
    check_inputs(name, (x, values))
    return (None, x.dtype) + (None,) * len(indices), (x.dtype,)


def _index_put_shape(name, x, values, *indices, spec=(), accumulate=False):
    vshape = tuple(values.shape) if is_tensor(values) else ()
    # x[mask] = v with one v broadcasts to however many places the mask selects
    one = all(n == 1 for n in vshape)
    target = advanced_shape(name, tuple(x.shape), spec, indices, unknown_count=1 if one else None)
    if broadcast_shapes(name, target, vshape) != target:
        raise ShapeError(name, f"values of shape {vshape} do not broadcast to the indexed "
                         f"shape {target}")
    return tuple(x.shape)


def _index_put_(x, values, *indices, spec=(), accumulate=False):
    key = _bounds_key("index_put_", x, indices, spec)
    if accumulate:
        np.add.at(x, key, values)
    else:
        x[key] = values


def _advanced_samples(put: bool):
    """Index samples; for writes, indices do not repeat (a repeated write has no defined
    winner) except in the accumulate sample, and some values are tensors."""
    def gen(dtype, rng):
        a = lambda shape, layout="contiguous": samples.array(rng, shape, dtype, layout=layout)

        def i(shape, high):
            if not put:
                return rng.integers(-high, high, shape)
            n = int(np.prod(shape))
            return (rng.permutation(high)[:n] - high * rng.integers(0, 2, n)).reshape(shape)

        cases = [
            (a((5, 4)), (i((3,), 5),), (0, None), "rows", (3, 4)),
            (a((3, 4, 5), "transposed"), (i((2,), 4), i((2,), 5)), (None, 0, 1), "adjacent", (3, 2)),
            (a((3, 4, 5)), (i((2,), 3), i((2,), 5)), (0, None, 1), "separated: dims go first",
             (2, 4)),
            (a((3, 4)), (i((2, 1), 3),), (0,), "2-D index", (2, 1, 4)),
            (a((3, 4)), (i((0,), 3),), (0,), "empty index", (0, 4)),
            (a((3, 4)), (rng.random((3, 4)) < 0.5,), (0,), "bool mask", None),
        ]
        out = []
        for k, (x, idx, spec, desc, result_shape) in enumerate(cases):
            # x[mask] reads a count meta mode cannot know; x[mask] = v with one v does not
            data_dependent = desc == "bool mask" and not put
            if put:
                vals = a(result_shape) if k % 2 == 0 and result_shape else \
                    samples.scalar(rng, dtype, -3, 3)
                out.append(Sample((x, vals, *idx), {"spec": spec}, desc, data_dependent))
            else:
                out.append(Sample((x, *idx), {"spec": spec}, desc, data_dependent))
        if put:
            out.append(Sample((a((5,)), a((3,)), np.array([0, 2, 0])), {"spec": (0,),
                              "accumulate": True}, "accumulate repeats"))
        return out
    return gen


# ---- gradient rules ----------------------------------------------------------------

def _cat_grad(ctx, g):
    shapes = [ctx.shape(i) for i in range(ctx.arity)]
    kept = [s for s in shapes if not _is_legacy_empty(s)]
    if not kept:
        return tuple(None for _ in shapes)
    d = normalize_dim("cat", ctx.attrs["dim"], len(kept[0]))
    out, start = [], 0
    for s in shapes:
        if _is_legacy_empty(s):
            out.append(None)
            continue
        out.append(F.narrow(g, d, start, s[d]))
        start += s[d]
    return tuple(out)


def _stack_grad(ctx, g):
    d = normalize_dim("stack", ctx.attrs["dim"], len(ctx.shape(0)), extra=1)
    return F.unbind(g, d)


def _index_grids(index, dim: int):
    """Index tensors that address ``x`` at (index along dim, own position elsewhere)."""
    grids = []
    for k in range(index.ndim):
        if k == dim:
            grids.append(index)
        else:
            shape = [1] * index.ndim
            shape[k] = index.shape[k]
            grids.append(F.arange(index.shape[k]).reshape(shape))
    return grids


def _gather_grad(ctx, g):
    shape, index = ctx.shape(0), ctx.input(1)
    zeros = F.zeros(shape, dtype=g.dtype)
    if len(shape) == 0:
        return (F.sum(g).reshape(()), None)
    d = normalize_dim("gather", ctx.attrs["dim"], len(shape))
    index = index.reshape(index.shape or (1,))
    grids = _index_grids(index, d)
    return (F.index_put(zeros, tuple(grids), g.reshape(index.shape), accumulate=True), None)


def _index_select_grad(ctx, g):
    shape, index = ctx.shape(0), ctx.input(1)
    if len(shape) == 0:
        return (F.sum(g).reshape(()), None)
    d = normalize_dim("index_select", ctx.attrs["dim"], len(shape))
    zeros = F.zeros(shape, dtype=g.dtype)
    return (F.index_put(zeros, (None,) * d + (index.reshape(-1),), g, accumulate=True), None)


def _masked_fill_grad(ctx, g):
    mask = ctx.input(1)
    return (F.where(mask, 0.0, g), None,
            F.sum(F.where(mask, g, 0.0)) if ctx.needs(2) else None)


def _index_grad(ctx, g):
    indices = ctx.inputs[1:]
    zeros = F.zeros(ctx.shape(0), dtype=g.dtype)
    key = index_key(ctx.attrs["spec"], indices)
    return (F.index_put(zeros, key, g, accumulate=True), *(None for _ in indices))


def _index_put_grad(ctx, g):
    """self: the gradient, minus the written places unless they accumulated; values: the
    gradient at the written places (summed over repeats and broadcasting)."""
    indices = [ctx.input(i) for i in range(2, ctx.arity)]  # self may have changed
    spec = ctx.attrs["spec"]
    g_self = g if ctx.attrs["accumulate"] else F.index_put(g, index_key(spec, indices), 0.0)
    g_values = _take(g, indices, spec) if ctx.needs(1) else None
    return (g_self, g_values, *(None for _ in indices))


def _take(x, indices, spec):
    """x[key] for an index spec (the ``index`` op)."""
    from .dispatch import dispatch
    from .registry import OPS

    return dispatch(OPS.index, x, *indices, spec=spec)


def _index_put(x, values, *indices, spec=(), accumulate=False):
    out = x.copy()
    _index_put_(out, values, *indices, spec=spec, accumulate=accumulate)
    return out


# ---- view_scatter: a write through a view, as a pure op -------------------------------

def _strided_scatter_rule(name, x, src, size=(), stride=(), storage_offset=0):
    check_inputs(name, (x, src))
    if not is_tensor(x):
        raise DTypeError(name, f"expected a tensor to scatter into, got {describe(x)}")
    return (None, x.dtype), (x.dtype,)


def _strided_scatter_shape(name, x, src, size=(), stride=(), storage_offset=0):
    size, stride = as_shape(name, size), as_shape(name, stride)
    if len(size) != len(stride):
        raise ShapeError(name, f"size {size} and stride {stride} have different lengths")
    sshape = tuple(src.shape) if is_tensor(src) else ()
    if broadcast_shapes(name, size, sshape) != size:
        raise ShapeError(name, f"source of shape {sshape} does not broadcast to the view's "
                         f"size {size}")
    if numel(size):
        lo, hi = (storage_offset + e for e in reach(size, stride))
        if lo < 0 or hi >= numel(tuple(x.shape)):
            raise OpIndexError(name, f"the view (size {size}, stride {stride}, offset "
                               f"{storage_offset}) reaches elements {lo}..{hi} of a tensor of "
                               f"{numel(tuple(x.shape))} elements")
    return tuple(x.shape)


def _strided_scatter(x, src, size=(), stride=(), storage_offset=0):
    out = np.array(x, order="C", copy=True)
    flat = out.reshape(-1)[storage_offset:]
    np.lib.stride_tricks.as_strided(flat, size, [st * out.itemsize for st in stride])[...] = src
    return out


def _strided_scatter_samples(dtype, rng):
    a = lambda *shape, layout="contiguous": samples.array(rng, shape, dtype, layout=layout)
    return [Sample((a(4, 5), a(5)), {"size": (5,), "stride": (1,), "storage_offset": 10}, "a row"),
            Sample((a(4, 5, layout="transposed"), a(4, 2)),
                   {"size": (4, 2), "stride": (5, 2), "storage_offset": 1}, "a strided slice"),
            Sample((a(3, 3), samples.scalar(rng, dtype, -3, 3)),
                   {"size": (3,), "stride": (4,), "storage_offset": 0}, "the diagonal, a number"),
            Sample((a(2, 3), a(0)), {"size": (0,), "stride": (1,), "storage_offset": 0}, "empty")]


def _strided_positions(ctx):
    """The positions of self's (contiguous) elements the view covers, as an index tensor of
    the view's shape: offset + Σ arange(size_d)·stride_d, broadcast over the dims (sizes
    may be symbolic: nothing here needs their values)."""
    a = ctx.attrs
    size, rank = a["size"], len(a["size"])
    positions = F.full((), a["storage_offset"], dtype=dt.int64)
    for d, (n, st) in enumerate(zip(size, a["stride"])):
        along = F.arange(n, dtype=dt.int64) * st
        positions = positions + F.reshape(along, *(n if k == d else 1 for k in range(rank)))
    return positions


def _strided_scatter_grad(ctx, g):
    flat = F.reshape(g, -1)
    where = _strided_positions(ctx)
    g_self = F.reshape(F.index_put(flat, (F.reshape(where, -1),), 0.0), *ctx.shape(0)) \
        if ctx.needs(0) else None
    g_src = F.reshape(F.index_select(flat, 0, F.reshape(where, -1)), *ctx.attrs["size"]) \
        if ctx.needs(1) else None
    return (g_self, g_src)


register(name="view_scatter", inputs=("self", "src"), kernel=_strided_scatter,
         dtype_rule=_strided_scatter_rule, shape_rule=_strided_scatter_shape,
         attrs={"size": REQUIRED, "stride": REQUIRED, "storage_offset": 0}, dtypes=ALL,
         samples=_strided_scatter_samples, grad=_strided_scatter_grad,
         doc="a contiguous copy of self whose elements at as_strided(size, stride, offset) "
             "(over that copy) are src: a write through a view, as a pure op "
             "(torch.as_strided_scatter of self.contiguous())")
register(name="cat", inputs=("*tensors",), kernel=_cat, dtype_rule=_promote_all,
         shape_rule=_cat_shape, attrs={"dim": 0}, dtypes=ALL, samples=_seq_samples("cat"),
         grad=_cat_grad,
         doc="join along an existing dim; 1-D empty tensors are skipped (PyTorch's legacy rule)")
register(name="stack", inputs=("*tensors",), kernel=_stack, dtype_rule=_promote_all,
         shape_rule=_stack_shape, attrs={"dim": 0}, dtypes=ALL, samples=_seq_samples("stack"),
         grad=_stack_grad,
         doc="join along a new dim")
register(name="gather", inputs=("self", "index"), kernel=_gather, dtype_rule=_gather_rule,
         shape_rule=_gather_shape, attrs={"dim": REQUIRED}, dtypes=ALL, samples=_index_samples("gather"),
         grad=_gather_grad,
         doc="out[i][j] = self[index[i][j]][j] (dim 0), and likewise for other dims")
register(name="index_select", inputs=("self", "index"), kernel=_index_select,
         dtype_rule=_index_select_rule, shape_rule=_index_select_shape, attrs={"dim": REQUIRED},
         dtypes=ALL, samples=_index_samples("index_select"), grad=_index_select_grad)
register(name="masked_fill", inputs=("self", "mask", "value"),
         kernel=lambda x, mask, value: np.where(mask, value, x), dtype_rule=_masked_fill_rule,
         shape_rule=_masked_fill_shape, flags={Flag.ELEMENTWISE}, dtypes=ALL,
         samples=_index_samples("masked_fill"),
         grad=_masked_fill_grad, emit=lambda s, x, mask, value: s.b.select(mask, value, x),
         accuracy=Accuracy(EXACT, 0), expose=Expose(method=True, inplace=True),
         doc="value where mask is true (self and mask broadcast)")
register(name="index", inputs=("self", "*indices"), kernel=_index, dtype_rule=_index_rule,
         shape_rule=_index_shape, attrs={"spec": REQUIRED}, dtypes=ALL,
         samples=_advanced_samples(put=False), grad=_index_grad,
         doc="self[key] for index tensors; spec maps each indexed dim to a full slice (None) "
             "or to index tensor j")
register(name="index_put_", inputs=("self", "values", "*indices"), kernel=_index_put_,
         dtype_rule=_index_put_rule, shape_rule=_index_put_shape,
         attrs={"spec": REQUIRED, "accumulate": False}, flags={Flag.MUTATES, Flag.IMPURE}, dtypes=ALL,
         samples=_advanced_samples(put=True), grad=_index_put_grad,
         doc="self[key] = values (accumulate: +=, repeated indices add up)")
register(name="index_put", inputs=("self", "values", "*indices"), kernel=_index_put,
         dtype_rule=_index_put_rule, shape_rule=_index_put_shape,
         attrs={"spec": REQUIRED, "accumulate": False}, dtypes=ALL,
         samples=_advanced_samples(put=True), grad=_index_put_grad,
         doc="a copy of self with self[key] = values (accumulate: +=); the out-of-place "
             "index_put_, which gradients of indexing use")
