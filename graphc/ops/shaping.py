"""Rearranging ops: flip, roll, repeat, repeat_interleave, tile, diagonal, diag,
tensor_split, meshgrid.

flip, roll, repeat and repeat_interleave are composites of views and one copy, so the
compiler sees strided reads it lowers natively: flip is a slice with step -1 per dim;
roll picks, by position, from the dim's two parts padded into place; repeat and
repeat_interleave expand a size-1 dim placed before (repeat) or after
(repeat_interleave) each dim and merge the two (a copy: natively on its own; fused into a
consumer, that kernel runs in numpy, as ``explain()`` says). ``diagonal`` is a view, as in PyTorch;
``diag`` builds a matrix from a vector with a mask, or copies a matrix's diagonal.
"""

from __future__ import annotations

import operator

import numpy as np

from .. import dtype as dt
from ..errors import OpTypeError, OpValueError, ShapeError
from ..layout import normalize_dim
from ..tensor import Tensor
from . import functions as F
from . import samples
from .dispatch import dispatch
from .registry import OPS, REQUIRED, Flag, Sample, register
from .rules import same_as_first

ALL = dt.ALL_DTYPES
COMPOSITE = Flag.COMPOSITE


def _int_tuple(name: str, what: str, values) -> tuple[int, ...]:
    if isinstance(values, Tensor):
        values = values.tolist()
    if isinstance(values, (int, np.integer)) and not isinstance(values, bool):
        return (int(values),)
    try:
        return tuple(operator.index(v) for v in values)
    except TypeError:
        raise OpTypeError(name, f"{what} must be an int or a sequence of ints, got "
                          f"{values!r}") from None


def _dims_of(name: str, dims, ndim: int) -> tuple[int, ...]:
    """Distinct dims, wrapped; a 0-d tensor takes dim 0 and -1 (it has nothing to move)."""
    out = tuple(normalize_dim(name, d, ndim) for d in dims)
    if len(set(out)) != len(out):
        raise OpValueError(name, f"dims {tuple(dims)} name a dim more than once")
    return out if ndim else ()


def _slice(x, dim, start, end, step):
    return dispatch(OPS.slice, x, dim=dim, start=start, end=end, step=step)


# ---- flip ----------------------------------------------------------------------------

def _flip_shape(name, x, dims=()):
    _dims_of(name, dims, x.ndim)
    return tuple(x.shape)


def _flip(a, dims=()):
    return np.flip(a, _dims_of("flip", dims, a.ndim)).copy()


def _flip_decomposition(x, dims=()):
    for d in _dims_of("flip", dims, x.ndim):
        x = _slice(x, d, None, None, -1)
    return F.clone(x)


# ---- roll ----------------------------------------------------------------------------

def _roll_pairs(name, shape, shifts, dims):
    if dims is None:
        if len(shifts) != 1:
            raise OpValueError(name, f"without dims, shifts must be one int, got {shifts}")
        return None
    if len(shifts) != len(dims):
        raise OpValueError(name, f"shifts {shifts} and dims {dims} must have the same length")
    return list(zip(shifts, _dims_of(name, dims, len(shape)) if shape else [0] * len(dims)))


def _roll_shape(name, x, shifts=(), dims=None):
    if not shifts:
        raise OpValueError(name, "shifts must name at least one shift")
    _roll_pairs(name, tuple(x.shape), shifts, dims)
    return tuple(x.shape)


def _roll(a, shifts=(), dims=None):
    if dims is None or a.ndim == 0:
        return np.roll(a.reshape(-1), shifts[0]).reshape(a.shape)
    return np.roll(a, shifts, dims)


def _roll_one(x, shift, d):
    """x rolled by ``shift`` along ``d``: its last ``shift`` positions padded to the front
    part, the others to the back part, and a where picking by position (pads and a where
    fuse into one kernel; -0.0 and nan pass unchanged)."""
    n = x.shape[d]
    shift = shift % n if n else 0
    if shift == 0:
        return x
    after = [0, 0] * (x.ndim - 1 - d)  # pad's pairs start from the last dim
    head = F.pad(F.narrow(x, d, n - shift, shift), after + [0, n - shift])
    tail = F.pad(F.narrow(x, d, 0, n - shift), after + [shift, 0])
    position = F.reshape(F.arange(n), n, *[1] * (x.ndim - 1 - d))
    return F.where(position < shift, head, tail)


def _roll_decomposition(x, shifts=(), dims=None):
    if dims is None or x.ndim == 0:
        flat = F.reshape(x, -1)
        return F.clone(F.reshape(_roll_one(flat, shifts[0], 0), *x.shape))
    for shift, d in _roll_pairs("roll", tuple(x.shape), shifts, dims):
        x = _roll_one(x, shift, d)
    return F.clone(x)


def _roll_grad(ctx, g):
    return (roll(g, [-s for s in ctx.attrs["shifts"]], ctx.attrs["dims"]),)


# ---- repeat, repeat_interleave ----------------------------------------------------------

def _repeat_shape(name, x, repeats=()):
    shape = tuple(x.shape)
    if len(repeats) < len(shape):
        raise ShapeError(name, f"the number of repeats ({len(repeats)}) cannot be smaller than "
                         f"the number of dims of the tensor (shape {shape})")
    if any(r < 0 for r in repeats):
        raise OpValueError(name, f"repeats must be non-negative, got {tuple(repeats)}")
    shape = (1,) * (len(repeats) - len(shape)) + shape
    return tuple(r * s for r, s in zip(repeats, shape))


def _repeat_decomposition(x, repeats=()):
    shape = (1,) * (len(repeats) - x.ndim) + tuple(x.shape)
    pairs = [v for s in shape for v in (1, s)]        # (1, s0, 1, s1, ...)
    expanded = [v for r, s in zip(repeats, shape) for v in (r, s)]  # (r0, s0, r1, s1, ...)
    y = F.reshape(x, *pairs).expand(*expanded)
    return F.reshape(y, *(r * s for r, s in zip(repeats, shape))).contiguous()


def _interleave_shape(name, x, repeats=1, dim=None):
    if repeats < 0:
        raise OpValueError(name, f"repeats must be non-negative, got {repeats}")
    if dim is None:
        return (x.numel() * repeats,)
    d = normalize_dim(name, dim, x.ndim)
    shape = tuple(x.shape) or (1,)
    return shape[:d] + (shape[d] * repeats,) + shape[d + 1:] if x.ndim else (repeats,)


def _interleave(a, repeats=1, dim=None):
    return np.repeat(a, repeats, axis=None if dim is None or a.ndim == 0 else dim)


def _interleave_decomposition(x, repeats=1, dim=None):
    if dim is None or x.ndim == 0:
        x, d = F.reshape(x, -1), 0
    else:
        d = normalize_dim("repeat_interleave", dim, x.ndim)
    shape = tuple(x.shape)
    y = F.unsqueeze(x, d + 1).expand(*shape[:d + 1], repeats, *shape[d + 1:])
    return F.reshape(y, *shape[:d], shape[d] * repeats, *shape[d + 1:]).contiguous()


# ---- diagonal (a view), diag ---------------------------------------------------------------

def _diagonal_rule(name, x, offset=0, dim1=0, dim2=1):
    shape, stride, start = tuple(x._shape), tuple(x._stride), x._offset
    if len(shape) < 2:
        raise ShapeError(name, f"expected a tensor with at least 2 dims, got shape {shape}")
    d1, d2 = normalize_dim(name, dim1, len(shape)), normalize_dim(name, dim2, len(shape))
    if d1 == d2:
        raise OpValueError(name, f"dim1 and dim2 cannot be the same dim ({dim1}, {dim2})")
    if offset >= 0:
        n = max(min(shape[d1], shape[d2] - offset), 0)
        moved = offset * stride[d2]
    else:
        n = max(min(shape[d1] + offset, shape[d2]), 0)
        moved = -offset * stride[d1]
    keep = [i for i in range(len(shape)) if i not in (d1, d2)]
    return (tuple(shape[i] for i in keep) + (n,),
            tuple(stride[i] for i in keep) + (stride[d1] + stride[d2],),
            start + moved if n else start)


def _diagonal(a, offset=0, dim1=0, dim2=1):
    return np.diagonal(a, offset, dim1, dim2)


def _diagonal_grad(ctx, g):
    """g written into the diagonal of zeros of the input's shape (a contiguous tensor)."""
    zeros = F.zeros(ctx.shape(0), dtype=g.dtype)
    size, stride, offset = _diagonal_rule("diagonal", zeros, **ctx.attrs)
    return (F.view_scatter(zeros, g, size, stride, offset),)


def _diag_shape(name, x, diagonal=0):
    if x.ndim == 1:
        n = x.shape[0] + abs(diagonal)
        return (n, n)
    if x.ndim == 2:
        return _diagonal_rule(name, x, diagonal)[0]
    raise ShapeError(name, f"expected a 1-D or 2-D tensor, got shape {tuple(x.shape)}")


def _diag(a, diagonal=0):
    return np.diag(a, diagonal).copy()


def _diag_decomposition(x, diagonal=0):
    if x.ndim == 2:
        return F.clone(dispatch(OPS.diagonal, x, offset=diagonal, dim1=0, dim2=1))
    m, k = x.shape[0], diagonal
    n = m + abs(k)
    on = F.arange(n).reshape(n, 1) - F.arange(n) == -k  # col - row == k
    # the vector padded to n along the axis it is read by: rows for k >= 0, columns below
    padded = F.pad(x, (0, abs(k))) if k else x
    values = F.reshape(padded, n, 1) if k >= 0 else F.reshape(padded, 1, n)
    return F.where(on, values, F.zeros((), dtype=x.dtype))


# ---- samples ------------------------------------------------------------------------------

def _cases(cases):
    def gen(dtype, rng):
        return [Sample((samples.array(rng, shape, dtype, layout=layout),), attrs,
                       f"{shape} {layout} {attrs}") for shape, layout, attrs in cases]
    return gen


C, T, S, N = samples.LAYOUTS

register(name="flip", inputs=("self",), kernel=_flip, dtype_rule=same_as_first,
         shape_rule=_flip_shape, attrs={"dims": REQUIRED}, flags={COMPOSITE}, dtypes=ALL,
         decomposition=_flip_decomposition,
         grad=lambda ctx, g: (flip(g, ctx.attrs["dims"]),),
         samples=_cases([((3, 4), C, {"dims": (0,)}), ((3, 4), T, {"dims": (0, 1)}),
                         ((2, 3, 4), S, {"dims": (-1, 0)}), ((5,), N, {"dims": (0,)}),
                         ((), C, {"dims": ()}), ((0, 3), C, {"dims": (1,)})]),
         doc="a copy with the order of the values along each of dims reversed")
register(name="roll", inputs=("self",), kernel=_roll, dtype_rule=same_as_first,
         shape_rule=_roll_shape, attrs={"shifts": REQUIRED, "dims": None}, flags={COMPOSITE},
         dtypes=ALL, decomposition=_roll_decomposition, grad=_roll_grad,
         samples=_cases([((3, 4), C, {"shifts": (1,), "dims": (1,)}),
                         ((3, 4), T, {"shifts": (-1, 5), "dims": (0, 1)}),
                         ((3, 4), C, {"shifts": (5,), "dims": None}),
                         ((2, 3, 4), S, {"shifts": (2, 1), "dims": (-1, 0)}),
                         ((5,), N, {"shifts": (0,), "dims": (0,)}),
                         ((0, 3), C, {"shifts": (1,), "dims": (0,)})]),
         doc="values moved by shifts along dims, wrapping around (flattened when dims is None)")
register(name="repeat", inputs=("self",), kernel=lambda a, repeats=(): np.tile(a, repeats),
         dtype_rule=same_as_first, shape_rule=_repeat_shape, attrs={"repeats": REQUIRED},
         flags={COMPOSITE}, dtypes=ALL, decomposition=_repeat_decomposition,
         samples=_cases([((3, 4), C, {"repeats": (2, 3)}), ((3, 4), T, {"repeats": (2, 1, 2)}),
                         ((2, 3), S, {"repeats": (1, 1)}), ((), C, {"repeats": (3,)}),
                         ((4,), N, {"repeats": (0, 2)}), ((0, 2), C, {"repeats": (2, 2)})]),
         doc="the tensor tiled repeats[i] times along dim i (leading repeats add dims); "
             "Tensor.repeat(*sizes)")
register(name="repeat_interleave", inputs=("self",), kernel=_interleave,
         dtype_rule=same_as_first, shape_rule=_interleave_shape,
         attrs={"repeats": REQUIRED, "dim": None}, flags={COMPOSITE}, dtypes=ALL,
         decomposition=_interleave_decomposition,
         samples=_cases([((3, 4), C, {"repeats": 2, "dim": 0}), ((3, 4), T, {"repeats": 3, "dim": -1}),
                         ((2, 3), S, {"repeats": 2, "dim": None}), ((), C, {"repeats": 3, "dim": None}),
                         ((4,), N, {"repeats": 0, "dim": 0}), ((0, 2), C, {"repeats": 2, "dim": 1})]),
         doc="each value repeated repeats times in place along dim (flattened when dim is None)")
register(name="diagonal", inputs=("self",), kernel=_diagonal, dtype_rule=same_as_first,
         view_rule=_diagonal_rule, attrs={"offset": 0, "dim1": 0, "dim2": 1}, flags={Flag.VIEW},
         dtypes=ALL, grad=_diagonal_grad,
         samples=_cases([((3, 4), C, {}), ((3, 4), T, {"offset": 1}),
                         ((4, 3), C, {"offset": -2}), ((2, 3, 4), S, {"dim1": 2, "dim2": 0}),
                         ((3, 4, 4), C, {"offset": -1, "dim1": -1, "dim2": -2}),
                         ((3, 4), N, {"offset": 5}), ((0, 3), C, {})]),
         doc="a view of the diagonal of dims dim1 and dim2 (offset above it when positive), "
             "as the last dim")
register(name="diag", inputs=("self",), kernel=_diag, dtype_rule=same_as_first,
         shape_rule=_diag_shape, attrs={"diagonal": 0}, flags={COMPOSITE}, dtypes=ALL,
         decomposition=_diag_decomposition,
         samples=_cases([((4,), C, {}), ((3,), N, {"diagonal": 2}), ((3,), C, {"diagonal": -1}),
                         ((3, 4), T, {}), ((3, 4), C, {"diagonal": 1}), ((4, 3), S, {"diagonal": -2}),
                         ((0,), C, {})]),
         doc="1-D: a square matrix with the vector on a diagonal; 2-D: a copy of a diagonal")


# ---- the public functions ------------------------------------------------------------------

def _varargs(values: tuple):
    """``x.flip(0, 1)`` and ``flip(x, (0, 1))``: the dims as varargs or as one sequence."""
    return values[0] if len(values) == 1 else values


def flip(input, *dims):
    """A copy with the values along each of ``dims`` in reverse order."""
    return dispatch(OPS.flip, input, dims=_int_tuple("flip", "dims", _varargs(dims)))


def fliplr(input):
    """flip(input, (1,)) of a tensor with at least 2 dims."""
    if input.ndim < 2:
        raise ShapeError("fliplr", f"expected at least 2 dims, got shape {tuple(input.shape)}")
    return flip(input, (1,))


def flipud(input):
    """flip(input, (0,)) of a tensor with at least 1 dim."""
    if input.ndim < 1:
        raise ShapeError("flipud", "expected at least 1 dim, got a 0-d tensor")
    return flip(input, (0,))


def roll(input, shifts, dims=None):
    """Values moved by ``shifts`` along ``dims`` (the flattened tensor when dims is None),
    the ones that fall off the end coming back at the start."""
    shifts = _int_tuple("roll", "shifts", shifts)
    return dispatch(OPS.roll, input, shifts=shifts,
                    dims=None if dims is None else _int_tuple("roll", "dims", dims))


def repeat(input, *sizes):
    """``x.repeat(2, 3)``: the tensor tiled 2 times along dim 0 and 3 along dim 1."""
    return dispatch(OPS.repeat, input, repeats=_int_tuple("repeat", "sizes", _varargs(sizes)))


def tile(input, *dims):
    """repeat, with ones prepended to ``dims`` when it is shorter than input's dims."""
    dims = _int_tuple("tile", "dims", _varargs(dims))
    return dispatch(OPS.repeat, input, repeats=(1,) * (input.ndim - len(dims)) + dims)


def repeat_interleave(input, repeats=None, dim=None, *, output_size=None):
    """Each value repeated ``repeats`` times in place along ``dim`` (of the flattened
    tensor when dim is None). ``repeats`` is an int or a tensor of one count per position;
    ``repeat_interleave(counts)`` repeats 0, 1, ... counts[i] times each."""
    if repeats is None:  # repeat_interleave(repeats): the indices, each counts[i] times
        counts = input
        input, dim = F.arange(counts.numel()), 0
        repeats = counts
    if isinstance(repeats, Tensor) and repeats.numel() == 1 and repeats.ndim <= 1:
        repeats = int(repeats.item())
    if isinstance(repeats, Tensor):
        out = _interleave_by_counts(input, repeats, dim)
    else:
        out = dispatch(OPS.repeat_interleave, input, repeats=operator.index(repeats), dim=dim)
    if output_size is not None and out.shape[0 if dim is None else dim] != output_size:
        raise OpValueError("repeat_interleave", f"output_size {output_size} does not match the "
                           f"result's size {out.shape[0 if dim is None else dim]}")
    return out


def _interleave_by_counts(input, repeats, dim):
    """Position i of ``dim`` repeated repeats[i] times: an index_select (its size depends
    on the counts' values, as in PyTorch)."""
    if repeats.dtype not in dt.INT_DTYPES or repeats.ndim != 1:
        raise OpTypeError("repeat_interleave", f"repeats must be an int or a 1-D integer "
                          f"tensor, got {repeats.dtype.name}{list(repeats.shape)}")
    x = F.reshape(input, -1) if dim is None else input
    d = 0 if dim is None else normalize_dim("repeat_interleave", dim, x.ndim)
    counts = repeats.numpy()
    if counts.shape[0] != x.shape[d] or (counts < 0).any():
        raise OpValueError("repeat_interleave", f"repeats must hold {x.shape[d]} non-negative "
                           f"counts (the size of dim {d} of shape {tuple(x.shape)}), got "
                           f"{counts.tolist()}")
    index = np.repeat(np.arange(x.shape[d]), counts)
    return F.index_select(x, d, F.from_numpy(index))


def diagonal(input, offset: int = 0, dim1: int = 0, dim2: int = 1):
    """A view of the diagonal of ``dim1`` and ``dim2`` (``offset`` above it when positive),
    appended as the last dim."""
    return dispatch(OPS.diagonal, input, offset=operator.index(offset),
                    dim1=operator.index(dim1), dim2=operator.index(dim2))


def diag(input, diagonal: int = 0):
    """1-D input: a square matrix with the vector on diagonal ``diagonal``; 2-D input: a
    copy of that diagonal."""
    return dispatch(OPS.diag, input, diagonal=operator.index(diagonal))


def tensor_split(input, indices_or_sections, dim: int = 0):
    """Views along ``dim``: ``sections`` parts as equal as possible (the first ones one
    longer), or the parts between the given indices."""
    d = normalize_dim("tensor_split", dim, input.ndim)
    n = input.shape[d]
    if isinstance(indices_or_sections, Tensor):
        if indices_or_sections.ndim == 0:
            indices_or_sections = int(indices_or_sections.item())
        else:
            indices_or_sections = indices_or_sections.tolist()
    if isinstance(indices_or_sections, (int, np.integer)):
        sections = int(indices_or_sections)
        if sections <= 0:
            raise OpValueError("tensor_split", f"sections must be positive, got {sections}")
        size, extra = divmod(n, sections)
        bounds = np.cumsum([0] + [size + (i < extra) for i in range(sections)]).tolist()
    else:
        indices = [operator.index(i) for i in indices_or_sections]
        bounds = [0] + indices + [n]
    return tuple(_slice(input, d, lo, max(lo, hi), 1) for lo, hi in zip(bounds, bounds[1:]))


def meshgrid(*tensors, indexing: str = "ij"):
    """Coordinate grids: output i holds tensors[i] along dim i, repeated along the others
    (views); ``indexing='xy'`` swaps the first two dims (the Cartesian convention)."""
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    if indexing not in ("ij", "xy"):
        raise OpValueError("meshgrid", f"indexing must be 'ij' or 'xy', got {indexing!r}")
    for t in tensors:
        if not isinstance(t, Tensor) or t.ndim > 1:
            raise ShapeError("meshgrid", "expected 0-D or 1-D tensors, got "
                             + ", ".join(f"{x.dtype.name}{list(x.shape)}" if isinstance(x, Tensor)
                                         else type(x).__name__ for x in tensors))
    axes = list(range(len(tensors)))
    if indexing == "xy" and len(tensors) >= 2:
        axes[0], axes[1] = 1, 0
    shape = [0] * len(tensors)
    for t, a in zip(tensors, axes):
        shape[a] = t.numel()
    out = []
    for t, a in zip(tensors, axes):
        along = [1] * len(tensors)
        along[a] = -1
        out.append(F.reshape(t, *along).expand(*shape))
    return tuple(out)
