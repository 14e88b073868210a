"""Resampling of (N, C, W) and (N, C, H, W) tensors: ``interpolate``'s nearest, linear,
bilinear and bicubic modes.

Each spatial dim is resampled on its own, by the source positions PyTorch's kernels
compute (``_source_positions``). The interpolating modes decompose into one matmul per
dim with a constant (out, in) weight matrix, so they compile natively and take their
gradient from matmul's; nearest is a copy (an expand, a strided slice, or an
index_select of constant indices).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .. import dtype as dt
from ..errors import OpValueError, ShapeError
from ..tensor import wrap_array
from . import functions as F
from . import samples
from .dispatch import dispatch
from .registry import OPS, REQUIRED, Flag, Sample, register
from .rules import floating_only, same_as_first

FLOATS = dt.FLOAT_DTYPES
CUBIC_A = -0.75  # the cubic convolution kernel's parameter PyTorch (and OpenCV) use


def _scale_of(n_in: int, n_out: int, scale, align_corners: bool, ftype):
    """Source distance between two output positions, in the compute type ``ftype``."""
    if align_corners:
        return ftype(n_in - 1) / ftype(n_out - 1) if n_out > 1 else ftype(0)
    if scale is not None and scale > 0:  # the scale_factor the caller gave, not in/out
        return ftype(1.0 / scale)
    return ftype(n_in) / ftype(n_out)


def _source_positions(n_in, n_out, scale, align_corners, ftype, cubic=False) -> np.ndarray:
    """Where each output position samples the input (fractional), as PyTorch computes it:
    align_corners maps the corner pixels' centres onto each other, otherwise pixel centres
    (i + 0.5) are scaled; linear clamps positions before the first centre to 0."""
    s = _scale_of(n_in, n_out, scale, align_corners, ftype)
    dst = np.arange(n_out).astype(ftype)
    if align_corners:
        return s * dst
    src = s * (dst + ftype(0.5)) - ftype(0.5)
    return src if cubic else np.maximum(src, ftype(0))


def _nearest_index(n_in: int, n_out: int, scale, exact: bool) -> np.ndarray:
    """The input index each output position copies: floor(i·s) ('nearest', PyTorch's
    historical choice) or floor((i + 0.5)·s) ('nearest-exact'), with s in float32."""
    s = np.float32(1.0 / scale) if scale is not None and scale > 0 else \
        np.float32(n_in) / np.float32(n_out)
    dst = np.arange(n_out)
    src = ((dst + 0.5) * np.float64(s)).astype(np.float32) if exact else dst.astype(np.float32) * s
    return np.minimum(np.floor(src).astype(np.int64), n_in - 1)


def _cubic_weights(t):
    """The four cubic convolution weights for fractional offset t (taps at -1, 0, 1, 2)."""
    a = t.dtype.type(CUBIC_A)

    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):   # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    one = t.dtype.type(1)
    return far(t + one), near(t), near(one - t), far(2 * one - t)


def _taps(n_in, n_out, scale, align_corners, ftype, cubic) -> list[tuple[np.ndarray, np.ndarray]]:
    """(input index, weight) per tap: each output is the weighted sum over its taps."""
    src = _source_positions(n_in, n_out, scale, align_corners, ftype, cubic)
    if cubic:
        i = np.floor(src).astype(np.int64)
        weights = _cubic_weights((src - i).astype(ftype))
        return [(np.clip(i - 1 + k, 0, n_in - 1), w) for k, w in enumerate(weights)]
    i0 = src.astype(np.int64)  # src >= 0: truncation is floor
    i1 = i0 + (i0 < n_in - 1)
    l1 = (src - i0).astype(ftype)
    return [(i0, (ftype(1) - l1).astype(ftype)), (i1, l1)]


def _weight_matrix(n_in, n_out, scale, align_corners, ftype, cubic) -> np.ndarray:
    """(n_out, n_in): the taps as a dense matrix (repeated indices at an edge add up)."""
    m = np.zeros((n_out, n_in), ftype)
    rows = np.arange(n_out)
    for index, weight in _taps(n_in, n_out, scale, align_corners, ftype, cubic):
        np.add.at(m, (rows, index), weight)
    return m


# ---- shapes and checks -------------------------------------------------------------

def _check(name, x, output_size, scales, ranks):
    k = len(output_size)
    if x.ndim != k + 2 or x.ndim not in ranks:
        raise ShapeError(name, f"expected an input (N, C, {', '.join('d' * k)}) of "
                         f"{' or '.join(f'{r}-D' for r in ranks)} for output_size {tuple(output_size)}, "
                         f"got input of shape {tuple(x.shape)}")
    if any(not isinstance(n, int) or n <= 0 for n in output_size):
        raise OpValueError(name, f"output_size must be positive ints, got {tuple(output_size)}")
    if any(n == 0 for n in x.shape[2:]):
        raise ShapeError(name, f"cannot resample the empty input of shape {tuple(x.shape)}")
    if scales is not None and len(scales) != k:
        raise OpValueError(name, f"expected {k} scales (one per spatial dim), got {scales}")


def _shape_rule(ranks):
    def rule(name, x, output_size=(), scales=None, **attrs):
        _check(name, x, output_size, scales, ranks)
        return tuple(x.shape[:2]) + tuple(output_size)
    return rule


def _scale(scales, i, n_in=None, n_out=None):
    """The scale factor of spatial dim i; None (in/out) where PyTorch ignores it: a dim
    whose size stays the same, in the kernels that copy it (2-D nearest, linear, bilinear)."""
    return None if scales is None or (n_in is not None and n_in == n_out) else scales[i]


# ---- nearest -----------------------------------------------------------------------

def _nearest_scale(scales, i, x, n_out, exact):
    # PyTorch's 2-D 'nearest' kernel copies a dim of unchanged size whatever the scale
    # factor; its 1-D one and 'nearest-exact' apply it (4 -> 4 by 1.1 reads 0, 0, 1, 2)
    if x.ndim == 4 and not exact:
        return _scale(scales, i, x.shape[2 + i], n_out)
    return _scale(scales, i)


def _nearest(x, output_size=(), scales=None, exact=False):
    for i, n_out in enumerate(output_size):
        d = 2 + i
        x = np.take(x, _nearest_index(x.shape[d], n_out, _nearest_scale(scales, i, x, n_out, exact), exact),
                    axis=d)
    return np.ascontiguousarray(x)


def _nearest_decomposition(x, output_size=(), scales=None, exact=False):
    copied = False
    for i, n_out in enumerate(output_size):
        index = _nearest_index(x.shape[2 + i], n_out, _nearest_scale(scales, i, x, n_out, exact), exact)
        x, copy = _copy_positions(x, 2 + i, index)
        copied = copied or copy
    return x if copied else F.clone(x)


def _copy_positions(x, d: int, index: np.ndarray):
    """(x's positions ``index`` along dim d, whether that is a copy): a view or an
    expand+reshape when the index has one (every position repeated r times, or every r-th
    position), else an index_select."""
    n, m = x.shape[d], len(index)
    if m == n and (index == np.arange(n)).all():
        return x, False
    if m % n == 0 and (index == np.arange(m) // (m // n)).all():
        r = m // n
        grown = F.expand(F.unsqueeze(x, d + 1), *x.shape[:d + 1], r, *x.shape[d + 1:])
        return F.reshape(grown, *x.shape[:d], m, *x.shape[d + 1:]), True
    step = index[1] - index[0] if m > 1 else 1
    if step > 0 and (index == index[0] + step * np.arange(m)).all():
        return dispatch(OPS.slice, x, dim=d, start=int(index[0]), end=int(index[-1]) + 1,
                        step=int(step)), False
    return F.index_select(x, d, wrap_array(index)), True


# ---- linear, bilinear, bicubic -----------------------------------------------------

def _interpolating(cubic):
    def _interp_scale(scales, i, x, n_out):
        # PyTorch's linear and bilinear kernels copy a dim of unchanged size whatever the
        # scale factor; its bicubic kernel applies it
        return _scale(scales, i) if cubic else _scale(scales, i, x.shape[2 + i], n_out)

    def kernel(x, output_size=(), scales=None, align_corners=False):
        ftype = x.dtype.type
        for i in reversed(range(len(output_size))):  # the last dim first, as PyTorch sums
            d = 2 + i
            taps = _taps(x.shape[d], output_size[i], _interp_scale(scales, i, x, output_size[i]),
                         align_corners, ftype, cubic)
            shape = [1] * x.ndim
            shape[d] = output_size[i]
            out = None
            for index, w in taps:
                term = np.take(x, index, axis=d) * w.reshape(shape)
                out = term if out is None else out + term
            x = out
        return x.astype(ftype)

    def decomposition(x, output_size=(), scales=None, align_corners=False):
        ftype = x.dtype.np.type
        for i in reversed(range(len(output_size))):
            d = 2 + i
            m = _weight_matrix(x.shape[d], output_size[i],
                               _interp_scale(scales, i, x, output_size[i]), align_corners, ftype,
                               cubic)
            if d == x.ndim - 1:
                x = F.matmul(x, wrap_array(np.ascontiguousarray(m.T)))
            else:
                x = F.matmul(wrap_array(m), x)
        return x
    return kernel, decomposition


_linear, _linear_decomposition = _interpolating(cubic=False)
_bicubic, _bicubic_decomposition = _interpolating(cubic=True)


# ---- samples -----------------------------------------------------------------------

def _samples(kind):
    def gen(dtype, rng):
        a = lambda *shape, layout="contiguous": samples.array(rng, shape, dtype, layout=layout)
        if kind == "nearest":
            return [Sample((a(2, 3, 4),), {"output_size": (8,)}, "1-d twice"),
                    Sample((a(1, 2, 3, 4, layout="transposed"),), {"output_size": (6, 12)},
                           "2-d by 2 and 3"),
                    Sample((a(1, 2, 6, 8),), {"output_size": (3, 4)}, "2-d halved"),
                    Sample((a(2, 2, 5, 3),), {"output_size": (7, 4)}, "2-d uneven"),
                    Sample((a(1, 1, 5, 4, layout="strided"),), {"output_size": (7, 6),
                           "scales": (1.5, 1.7)}, "scale factors"),
                    Sample((a(1, 2, 5, 3),), {"output_size": (7, 4), "exact": True}, "exact")]
        if kind == "linear":
            return [Sample((a(2, 3, 4),), {"output_size": (7,)}, "1-d"),
                    Sample((a(2, 3, 5),), {"output_size": (3,), "align_corners": True},
                           "1-d down, align corners"),
                    Sample((a(1, 2, 3, 4, layout="transposed"),), {"output_size": (6, 8)},
                           "bilinear twice"),
                    Sample((a(1, 2, 4, 5, layout="negstep"),), {"output_size": (7, 3),
                           "align_corners": True}, "bilinear align corners"),
                    Sample((a(2, 1, 4, 4),), {"output_size": (6, 10), "scales": (1.5, 2.5)},
                           "scale factors")]
        return [Sample((a(1, 2, 4, 5),), {"output_size": (8, 10)}, "twice"),
                Sample((a(1, 2, 5, 4, layout="strided"),), {"output_size": (7, 3),
                       "align_corners": True}, "align corners"),
                Sample((a(2, 1, 4, 4),), {"output_size": (6, 10), "scales": (1.5, 2.5)},
                       "scale factors")]
    return gen


register(name="upsample_nearest", inputs=("self",), kernel=_nearest,
         dtype_rule=floating_only(same_as_first), shape_rule=_shape_rule((3, 4)),
         attrs={"output_size": REQUIRED, "scales": None, "exact": False}, flags={Flag.COMPOSITE},
         dtypes=FLOATS, samples=_samples("nearest"), decomposition=_nearest_decomposition,
         doc="interpolate(mode='nearest' or 'nearest-exact') over 1 or 2 spatial dims")
register(name="upsample_linear", inputs=("self",), kernel=_linear,
         dtype_rule=floating_only(same_as_first), shape_rule=_shape_rule((3, 4)),
         attrs={"output_size": REQUIRED, "scales": None, "align_corners": False},
         flags={Flag.COMPOSITE}, dtypes=FLOATS, samples=_samples("linear"),
         decomposition=_linear_decomposition,
         doc="interpolate(mode='linear' (1 spatial dim) or 'bilinear' (2)): a matmul per dim")
register(name="upsample_bicubic", inputs=("self",), kernel=_bicubic,
         dtype_rule=floating_only(same_as_first), shape_rule=_shape_rule((4,)),
         attrs={"output_size": REQUIRED, "scales": None, "align_corners": False},
         flags={Flag.COMPOSITE}, dtypes=FLOATS, samples=_samples("bicubic"),
         decomposition=_bicubic_decomposition,
         doc="interpolate(mode='bicubic'): cubic convolution (a = -0.75), edges clamped")


# ---- interpolate -------------------------------------------------------------------

_MODES = {"nearest": (3, 4), "nearest-exact": (3, 4), "area": (3, 4), "linear": (3,),
          "bilinear": (4,), "bicubic": (4,)}


def _per_dim(name, value, k: int, what: str, x) -> tuple:
    if isinstance(value, Sequence):
        if len(value) != k:
            raise OpValueError(name, f"input of shape {tuple(x.shape)} has {k} spatial dim(s), "
                               f"but {what} is {tuple(value)}; give one value per spatial dim")
        return tuple(value)
    return (value,) * k


def interpolate(input, size=None, scale_factor=None, mode: str = "nearest", align_corners=None,
                recompute_scale_factor=None, antialias: bool = False):
    """Resample (N, C, W) or (N, C, H, W) input to ``size``, or by ``scale_factor``
    (output size floor(in · scale)); modes 'nearest', 'nearest-exact', 'area', 'linear'
    (3-D), 'bilinear' and 'bicubic' (4-D). ``align_corners`` applies to the interpolating
    modes. Without ``recompute_scale_factor`` a given scale_factor (not in/out) sets the
    source positions, as in PyTorch.

        >>> F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    """
    name = "interpolate"
    if mode not in _MODES:
        raise OpValueError(name, f"mode must be one of {', '.join(map(repr, _MODES))}, got {mode!r}")
    if input.ndim not in _MODES[mode]:
        raise OpValueError(name, f"mode {mode!r} needs a {' or '.join(f'{r}-D' for r in _MODES[mode])} "
                           f"input, got input of shape {tuple(input.shape)}")
    interpolating = mode in ("linear", "bilinear", "bicubic")
    if align_corners is not None and not interpolating:
        raise OpValueError(name, "align_corners can only be set with the interpolating modes "
                           f"linear, bilinear and bicubic, got mode={mode!r}")
    if antialias:
        raise OpValueError(name, "antialias=True is not supported by graphc")
    k = input.ndim - 2
    if (size is None) == (scale_factor is None):
        raise OpValueError(name, "give exactly one of size and scale_factor, got "
                           f"size={size!r}, scale_factor={scale_factor!r}")
    if size is not None:
        if recompute_scale_factor:
            raise OpValueError(name, "recompute_scale_factor=True needs scale_factor, not size")
        output_size, scales = tuple(int(n) for n in _per_dim(name, size, k, "size", input)), None
    else:
        scales = tuple(float(s) for s in _per_dim(name, scale_factor, k, "scale_factor", input))
        output_size = tuple(math.floor(float(n) * s) for n, s in zip(input.shape[2:], scales))
        if recompute_scale_factor:
            scales = None
    if mode == "area":
        pool = F.adaptive_avg_pool2d
        if k == 1:
            return F.squeeze(pool(F.unsqueeze(input, 2), (1, output_size[0])), 2)
        return pool(input, output_size)
    if mode in ("nearest", "nearest-exact"):
        return dispatch(OPS.upsample_nearest, input, output_size=output_size, scales=scales,
                        exact=mode == "nearest-exact")
    op = OPS.upsample_bicubic if mode == "bicubic" else OPS.upsample_linear
    return dispatch(op, input, output_size=output_size, scales=scales,
                    align_corners=bool(align_corners))


def upsample(input, size=None, scale_factor=None, mode: str = "nearest", align_corners=None):
    """``interpolate`` under its older name."""
    return interpolate(input, size, scale_factor, mode, align_corners)


def upsample_nearest(input, size=None, scale_factor=None):
    return interpolate(input, size, scale_factor, mode="nearest")


def upsample_bilinear(input, size=None, scale_factor=None):
    """Bilinear with align_corners=True (the deprecated function's behaviour)."""
    return interpolate(input, size, scale_factor, mode="bilinear", align_corners=True)
