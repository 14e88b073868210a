"""Spatial ops on (N, C, H, W) tensors: pad, unfold (im2col), fold (col2im), conv2d, and
the 2-D poolings.

conv2d and the poolings are composites: their decompositions are unfold + matmul or a
reduction over the window dim, so autograd and fusion see primitives (and matmul keeps
conv's bias/activation epilogue). unfold and fold are each other's gradient.
"""

from __future__ import annotations

import math

import numpy as np

from .. import dtype as dt
from ..errors import DTypeError, OpValueError, ShapeError
from ..symbolic import SymInt
from ..tensor import wrap_array
from . import functions as F
from . import samples
from .dispatch import dispatch
from .registry import OPS, REQUIRED, Flag, Sample, register
from .rules import (describe, floating_only, is_tensor, no_bool, promote, require_ndim,
                    same_as_first)

FLOATS = dt.FLOAT_DTYPES


def pair(name: str, value, what: str) -> tuple[int, int]:
    """An int or a pair of ints (kernel_size=3 or (3, 5))."""
    v = (value, value) if isinstance(value, int) else tuple(value)
    if len(v) != 2 or not all(isinstance(x, int) for x in v):
        raise OpValueError(name, f"{what} must be an int or a pair of ints, got {value!r}")
    return v


def out_size(size: int, k: int, s: int, p: int, d: int, ceil: bool = False) -> int:
    """Output length of a window of k (dilation d) sliding by s over size + 2p (PyTorch's)."""
    span = size + 2 * p - d * (k - 1) - 1
    n = (-(-span // s) if ceil else span // s) + 1
    if ceil and (n - 1) * s >= size + p:  # the last window must start inside the input or pad
        n -= 1
    return n


def _window_args(name, x, kernel_size, dilation, padding, stride):
    require_ndim(name, x, (4,), "input (N, C, H, W)")
    k, d, p, s = (pair(name, v, w) for v, w in ((kernel_size, "kernel_size"), (dilation, "dilation"),
                                                 (padding, "padding"), (stride, "stride")))
    if min(k) <= 0 or min(d) <= 0 or min(s) <= 0 or min(p) < 0:
        raise OpValueError(name, f"kernel_size, dilation and stride must be positive and padding "
                           f"non-negative, got kernel_size={k}, dilation={d}, stride={s}, padding={p}")
    oh, ow = (out_size(n, k[i], s[i], p[i], d[i]) for i, n in enumerate(x.shape[2:]))
    if oh <= 0 or ow <= 0:
        raise ShapeError(name, f"the {k[0]}x{k[1]} window (dilation {d}, padding {p}) does not fit "
                         f"the input of shape {tuple(x.shape)}")
    return k, d, p, s, (oh, ow)


# ---- pad ---------------------------------------------------------------------------

def _pad_widths(name, ndim: int, pad) -> list[tuple[int, int]]:
    pad = tuple(pad)
    if len(pad) % 2 or len(pad) // 2 > ndim:
        raise OpValueError(name, f"pad must hold (left, right) pairs for at most {ndim} dims, "
                           f"got {pad}")
    if any(not isinstance(v, (int, SymInt)) or v < 0 for v in pad):  # (sizes: a guard)
        raise OpValueError(name, f"pad widths must be non-negative ints, got {pad}")
    widths = [(0, 0)] * ndim
    for i in range(len(pad) // 2):  # pairs start from the last dim, as in PyTorch
        widths[ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    return widths


def _pad_rule(name, x, pad=(), value=0.0):
    if not is_tensor(x):
        raise DTypeError(name, f"expected a tensor, got {describe(x)}")
    return (None,), (x.dtype,)


def _pad_shape(name, x, pad=(), value=0.0):
    return tuple(n + a + b for n, (a, b) in zip(x.shape, _pad_widths(name, x.ndim, pad)))


def _pad(x, pad=(), value=0.0):
    return np.pad(x, _pad_widths("pad", x.ndim, pad), constant_values=x.dtype.type(value))


def _pad_grad(ctx, g):
    for d, (a, b) in enumerate(_pad_widths("pad", g.ndim, ctx.attrs["pad"])):
        if a or b:
            g = F.narrow(g, d, a, g.shape[d] - a - b)
    return (g,)


# ---- reflect, replicate and circular padding ---------------------------------------
# Each is a composite: per padded dim, the border pieces are views of the input (reversed
# slices, an expanded edge, or the opposite end), placed by constant pads and chosen by
# constant masks, so the result compiles to copy kernels and one fused select.

EDGE_MODES = {"reflection_pad": "reflect", "replication_pad": "replicate", "circular_pad": "circular"}


def _edge_widths(name, x, pad) -> list[tuple[int, int]]:
    """The (before, after) widths per dim of a non-constant pad, checked as PyTorch does."""
    pad = tuple(pad)
    k = len(pad) // 2
    if len(pad) % 2 or not 1 <= k <= 3 or x.ndim not in (k + 1, k + 2):
        raise OpValueError(name, f"padding of {len(pad)} values in mode {EDGE_MODES[name]!r} needs "
                           f"a {k + 1}-D or {k + 2}-D input (1 to 3 padded trailing dims), got "
                           f"input of shape {tuple(x.shape)}")
    widths = _pad_widths(name, x.ndim, pad)
    for d in range(x.ndim - k, x.ndim):
        n, (a, b) = x.shape[d], widths[d]
        if name == "reflection_pad" and max(a, b) >= n:
            raise OpValueError(name, f"reflect padding ({a}, {b}) of dim {d} must be less than "
                               f"its size {n} (input of shape {tuple(x.shape)})")
        if name == "circular_pad" and max(a, b) > n:
            raise OpValueError(name, f"circular padding ({a}, {b}) of dim {d} must be at most "
                               f"its size {n} (input of shape {tuple(x.shape)})")
        if name == "replication_pad" and n == 0 and (a or b):
            raise OpValueError(name, f"cannot replicate the edge of empty dim {d} "
                               f"(input of shape {tuple(x.shape)})")
    return widths


def _edge_rule(name, x, pad=()):
    return floating_only(same_as_first)(name, x)


def _edge_shape(name, x, pad=()):
    return tuple(n + a + b for n, (a, b) in zip(x.shape, _edge_widths(name, x, pad)))


def _edge_kernel(name):
    def kernel(x, pad=()):
        return np.pad(x, _edge_widths(name, x, pad),
                      mode={"reflect": "reflect", "replicate": "edge", "circular": "wrap"}[
                          EDGE_MODES[name]])
    return kernel


def _edge_pieces(mode, x, d, a, b):
    """The views of x that fill the ``a`` places before and the ``b`` places after dim d."""
    n = x.shape[d]
    if mode == "reflect":  # positions a..1 and n-2..n-1-b
        rev = lambda t: dispatch(OPS.slice, t, dim=d, start=None, end=None, step=-1)
        return rev(F.narrow(x, d, 1, a)), rev(F.narrow(x, d, n - 1 - b, b))
    if mode == "replicate":
        grow = lambda t, m: F.expand(t, *(m if i == d else s for i, s in enumerate(t.shape)))
        return grow(F.narrow(x, d, 0, 1), a), grow(F.narrow(x, d, n - 1, 1), b)
    return F.narrow(x, d, n - a, a), F.narrow(x, d, 0, b)


def _edge_decomposition(name):
    mode = EDGE_MODES[name]

    def decomposition(x, pad=()):
        for d, (a, b) in enumerate(_edge_widths(name, x, pad)):
            if not (a or b):
                continue
            n, total = x.shape[d], x.shape[d] + a + b
            before, after = _edge_pieces(mode, x, d, a, b)
            position = np.arange(total).reshape(tuple(total if i == d else 1 for i in range(x.ndim)))
            out = F.pad(x, _dim_pad(x.ndim, d, a, b))
            if a:
                out = F.where(wrap_array(position < a), F.pad(before, _dim_pad(x.ndim, d, 0, n + b)),
                              out)
            if b:
                out = F.where(wrap_array(position >= a + n),
                              F.pad(after, _dim_pad(x.ndim, d, a + n, 0)), out)
            x = out
        return x
    return decomposition


def _dim_pad(ndim, d, a, b) -> tuple[int, ...]:
    """F.pad's argument that pads dim d of an ndim-D tensor by (a, b) and nothing else."""
    return (0, 0) * (ndim - 1 - d) + (a, b)


# ---- unfold and fold ---------------------------------------------------------------

WINDOW = {"kernel_size": REQUIRED, "dilation": (1, 1), "padding": (0, 0), "stride": (1, 1)}


def _unfold_shape(name, x, **w):
    k, _, _, _, (oh, ow) = _window_args(name, x, **w)
    return (x.shape[0], x.shape[1] * k[0] * k[1], oh * ow)


def _unfold(x, kernel_size=1, dilation=1, padding=0, stride=1):
    k, d, p, s, (oh, ow) = _window_args("unfold", x, kernel_size, dilation, padding, stride)
    xp = np.pad(x, [(0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])])
    cols = np.empty((x.shape[0], x.shape[1], k[0], k[1], oh, ow), x.dtype)
    for i in range(k[0]):
        for j in range(k[1]):
            cols[:, :, i, j] = xp[:, :, i * d[0]:i * d[0] + s[0] * (oh - 1) + 1:s[0],
                                  j * d[1]:j * d[1] + s[1] * (ow - 1) + 1:s[1]]
    return cols.reshape(x.shape[0], -1, oh * ow)


def _fold_geometry(name, x, output_size, kernel_size, dilation, padding, stride):
    require_ndim(name, x, (3,), "input (N, C*kh*kw, L)")
    size = pair(name, output_size, "output_size")
    probe = _Probe((x.shape[0], 1, *size))
    k, d, p, s, (oh, ow) = _window_args(name, probe, kernel_size, dilation, padding, stride)
    if x.shape[1] % (k[0] * k[1]) or x.shape[2] != oh * ow:
        raise ShapeError(name, f"input of shape {tuple(x.shape)} does not hold {k[0]}x{k[1]} "
                         f"blocks for {oh}x{ow} positions of an output of size {size}")
    return size, k, d, p, s, (oh, ow)


class _Probe:
    """A stand-in with just a shape, to reuse the window arithmetic for fold's output."""

    def __init__(self, shape):
        self.shape = shape
        self.ndim = len(shape)


def _fold_shape(name, x, output_size=(1, 1), **w):
    size, k, *_ = _fold_geometry(name, x, output_size, **w)
    return (x.shape[0], x.shape[1] // (k[0] * k[1]), *size)


def _fold(x, output_size=(1, 1), kernel_size=1, dilation=1, padding=0, stride=1):
    size, k, d, p, s, (oh, ow) = _fold_geometry("fold", x, output_size, kernel_size, dilation,
                                                 padding, stride)
    n, c = x.shape[0], x.shape[1] // (k[0] * k[1])
    cols = x.reshape(n, c, k[0], k[1], oh, ow)
    out = np.zeros((n, c, size[0] + 2 * p[0], size[1] + 2 * p[1]), x.dtype)
    for i in range(k[0]):
        for j in range(k[1]):
            out[:, :, i * d[0]:i * d[0] + s[0] * (oh - 1) + 1:s[0],
                j * d[1]:j * d[1] + s[1] * (ow - 1) + 1:s[1]] += cols[:, :, i, j]
    return out[:, :, p[0]:p[0] + size[0], p[1]:p[1] + size[1]]


def _fold_decomposition(x, output_size=(1, 1), kernel_size=1, dilation=1, padding=0, stride=1):
    """fold as native ops: each kernel offset's block of columns, spread by the stride
    (a pad after each element) and placed at its offset (a pad around it), summed: a
    gather per offset and adds, which fuse (the numpy kernel adds into one array)."""
    size, k, d, p, s, (oh, ow) = _fold_geometry("fold", x, output_size, kernel_size, dilation,
                                                 padding, stride)
    n, c = x.shape[0], x.shape[1] // (k[0] * k[1])
    full = (size[0] + 2 * p[0], size[1] + 2 * p[1])
    cols = F.reshape(x, n, c, k[0], k[1], oh, ow)
    out = None
    for i in range(k[0]):
        for j in range(k[1]):
            block = cols[:, :, i, j]  # (n, c, oh, ow)
            if s != (1, 1):  # s - 1 zeros after each element: (oh * s0, ow * s1)
                block = F.reshape(F.pad(F.reshape(block, n, c, oh, 1, ow, 1),
                                        (0, s[1] - 1, 0, 0, 0, s[0] - 1)),
                                  n, c, oh * s[0], ow * s[1])
            top, left = i * d[0], j * d[1]
            rows, wide = min(block.shape[2], full[0] - top), min(block.shape[3], full[1] - left)
            block = block[:, :, :rows, :wide]
            block = F.pad(block, (left, full[1] - left - wide, top, full[0] - top - rows))
            out = block if out is None else out + block
    return out[:, :, p[0]:p[0] + size[0], p[1]:p[1] + size[1]]


def _unfold_grad(ctx, g):
    h, w = ctx.shape(0)[2:]
    return (F.fold(g, (h, w), **ctx.attrs),)


def _fold_grad(ctx, g):
    a = dict(ctx.attrs)
    del a["output_size"]
    return (F.unfold(g, **a),)


# ---- conv2d ------------------------------------------------------------------------

CONV = {"stride": (1, 1), "padding": (0, 0), "dilation": (1, 1), "groups": 1}


def _conv_padding(name, x, weight, padding, dilation, stride):
    """Explicit (left, right, top, bottom) padding for 'same'/'valid'/int/pair."""
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        if pair(name, stride, "stride") != (1, 1):
            raise OpValueError(name, "padding='same' needs stride 1")
        d = pair(name, dilation, "dilation")
        total = [d[i] * (weight.shape[2 + i] - 1) for i in range(2)]
        return (total[1] // 2, total[1] - total[1] // 2, total[0] // 2, total[0] - total[0] // 2)
    ph, pw = pair(name, padding, "padding")
    return (pw, pw, ph, ph)


def _conv_rule(name, x, weight, bias=None, **attrs):
    present = [t for t in (x, weight, bias) if t is not None]
    if any(not is_tensor(t) or t.dtype is not x.dtype for t in present):
        raise DTypeError(name, "expected input, weight and bias of one dtype, got "
                         + ", ".join(describe(t) for t in present))
    return floating_only(promote)(name, x, weight, bias)


def _conv_shape(name, x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    require_ndim(name, x, (4,), "input (N, C, H, W)")
    require_ndim(name, weight, (4,), "weight (out_channels, in_channels/groups, kh, kw)")
    c, o = x.shape[1], weight.shape[0]
    if groups <= 0 or c % groups or o % groups:
        raise ShapeError(name, f"groups={groups} must divide the {c} input and {o} output channels")
    if weight.shape[1] * groups != c:
        raise ShapeError(name, f"weight of shape {tuple(weight.shape)} expects "
                         f"{weight.shape[1] * groups} input channels (groups={groups}), but the "
                         f"input of shape {tuple(x.shape)} has {c}")
    if bias is not None and tuple(bias.shape) != (o,):
        raise ShapeError(name, f"expected bias of shape ({o},), got {tuple(bias.shape)}")
    left, right, top, bottom = _conv_padding(name, x, weight, padding, dilation, stride)
    padded = _Probe((x.shape[0], c, x.shape[2] + top + bottom, x.shape[3] + left + right))
    _, _, _, _, (oh, ow) = _window_args(name, padded, tuple(weight.shape[2:]), dilation, 0, stride)
    return (x.shape[0], o, oh, ow)


def _conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    left, right, top, bottom = _conv_padding("conv2d", x, weight, padding, dilation, stride)
    xp = np.pad(x, [(0, 0), (0, 0), (top, bottom), (left, right)])
    cols = _unfold(xp, tuple(weight.shape[2:]), dilation, 0, stride)
    n, o = x.shape[0], weight.shape[0]
    cols = cols.reshape(n, groups, -1, cols.shape[-1])
    out = np.matmul(weight.reshape(groups, o // groups, -1), cols).reshape(n, o, -1)
    if bias is not None:
        out = out + bias[:, None]
    oh = out_size(xp.shape[2], weight.shape[2], pair("", stride, "")[0], 0, pair("", dilation, "")[0])
    return out.reshape(n, o, oh, -1)


def _conv2d_decomposition(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    left, right, top, bottom = _conv_padding("conv2d", x, weight, padding, dilation, stride)
    if left or right or top or bottom:
        x = F.pad(x, (left, right, top, bottom))
    cols = F.unfold(x, tuple(weight.shape[2:]), dilation=dilation, stride=stride)
    n, o = x.shape[0], weight.shape[0]
    cols = F.reshape(cols, n, groups, -1, cols.shape[-1])
    out = F.reshape(F.matmul(F.reshape(weight, groups, o // groups, -1), cols), n, o, -1)
    if bias is not None:
        out = out + F.unsqueeze(bias, 1)
    oh = out_size(x.shape[2], weight.shape[2], pair("", stride, "")[0], 0, pair("", dilation, "")[0])
    return F.reshape(out, n, o, oh, -1)


# ---- pooling -----------------------------------------------------------------------

POOL = {"kernel_size": REQUIRED, "stride": None, "padding": (0, 0), "ceil_mode": False}


def _pool_geometry(name, x, kernel_size, stride, padding, dilation=1, ceil_mode=False):
    require_ndim(name, x, (4,), "input (N, C, H, W)")
    k = pair(name, kernel_size, "kernel_size")
    s = k if stride is None else pair(name, stride, "stride")
    p, d = pair(name, padding, "padding"), pair(name, dilation, "dilation")
    if min(k) <= 0 or min(s) <= 0 or min(d) <= 0 or min(p) < 0:
        raise OpValueError(name, f"invalid window: kernel_size={k}, stride={s}, padding={p}")
    if p[0] * 2 > k[0] or p[1] * 2 > k[1]:
        raise OpValueError(name, f"padding {p} should be at most half of kernel_size {k}")
    o = tuple(out_size(x.shape[2 + i], k[i], s[i], p[i], d[i], ceil_mode) for i in range(2))
    if min(o) <= 0:
        raise ShapeError(name, f"the {k[0]}x{k[1]} window does not fit the input of shape "
                         f"{tuple(x.shape)}")
    # right/bottom padding so that ceil mode's last window lies in the array (in floor
    # mode (o-1)*s <= size + 2p - d(k-1) - 1 by the floor: none, and no decision on a size)
    extra = (0, 0)
    if ceil_mode:
        over = [(o[i] - 1) * s[i] + d[i] * (k[i] - 1) + 1 - (x.shape[2 + i] + 2 * p[i])
                for i in range(2)]
        extra = tuple(int(e) if e > 0 else 0 for e in over)  # (pad widths are ints)
    return k, s, p, d, o, extra


def _pool_shape(name, x, kernel_size=1, stride=None, padding=0, ceil_mode=False, **attrs):
    *_, o, _ = _pool_geometry(name, x, kernel_size, stride, padding, attrs.get("dilation", 1),
                              ceil_mode)
    return (x.shape[0], x.shape[1], *o)


def _windows(x, k, s, p, d, o, extra, fill):
    """(N, C, kh*kw, oh, ow): every window's values, padding filled with ``fill``."""
    xp = np.pad(x, [(0, 0), (0, 0), (p[0], p[0] + extra[0]), (p[1], p[1] + extra[1])],
                constant_values=fill)
    cols = _unfold(xp, k, d, 0, s)
    return cols.reshape(x.shape[0], x.shape[1], k[0] * k[1], o[0], o[1])


def _max_pool2d(x, kernel_size=1, stride=None, padding=0, ceil_mode=False, dilation=1):
    k, s, p, d, o, extra = _pool_geometry("max_pool2d", x, kernel_size, stride, padding, dilation,
                                          ceil_mode)
    return _windows(x, k, s, p, d, o, extra, -np.inf).max(axis=2)


def _max_pool2d_decomposition(x, kernel_size=1, stride=None, padding=0, ceil_mode=False,
                              dilation=1):
    k, s, p, d, o, extra = _pool_geometry("max_pool2d", x, kernel_size, stride, padding, dilation,
                                          ceil_mode)
    xp = F.pad(x, (p[1], p[1] + extra[1], p[0], p[0] + extra[0]), value=-math.inf)
    cols = F.reshape(F.unfold(xp, k, dilation=d, stride=s), x.shape[0], x.shape[1], k[0] * k[1], -1)
    return F.reshape(F.amax(cols, 2), x.shape[0], x.shape[1], *o)


def _avg_divisor(x, k, s, p, o, count_include_pad, divisor_override) -> np.ndarray:
    """The divisor of each window, as PyTorch's avg_pool2d computes it."""
    if divisor_override:
        return np.full(o, float(divisor_override))
    size = x.shape[2:]
    out = np.empty(o)
    for i in range(o[0]):
        for j in range(o[1]):
            h0, w0 = i * s[0] - p[0], j * s[1] - p[1]
            h1, w1 = min(h0 + k[0], size[0] + p[0]), min(w0 + k[1], size[1] + p[1])
            pool = (h1 - h0) * (w1 - w0)
            h0, w0, h1, w1 = max(h0, 0), max(w0, 0), min(h1, size[0]), min(w1, size[1])
            out[i, j] = pool if count_include_pad else (h1 - h0) * (w1 - w0)
    return out


AVG = {**POOL, "count_include_pad": True, "divisor_override": None}


def _avg_pool2d(x, kernel_size=1, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                divisor_override=None):
    k, s, p, d, o, extra = _pool_geometry("avg_pool2d", x, kernel_size, stride, padding, 1,
                                          ceil_mode)
    total = _windows(x, k, s, p, d, o, extra, 0).sum(axis=2, dtype=np.float64)
    return (total / _avg_divisor(x, k, s, p, o, count_include_pad, divisor_override)).astype(x.dtype)


def _avg_pool2d_decomposition(x, kernel_size=1, stride=None, padding=0, ceil_mode=False,
                              count_include_pad=True, divisor_override=None):
    k, s, p, d, o, extra = _pool_geometry("avg_pool2d", x, kernel_size, stride, padding, 1,
                                          ceil_mode)
    xp = F.pad(x, (p[1], p[1] + extra[1], p[0], p[0] + extra[0]))
    cols = F.reshape(F.unfold(xp, k, stride=s), x.shape[0], x.shape[1], k[0] * k[1], -1)
    if divisor_override or extra == (0, 0) and (count_include_pad or p == (0, 0)):
        # every window counts k[0]*k[1] places (none reaches past the padding): one number,
        # for any output size
        return F.reshape(F.sum(cols, 2) / float(divisor_override or k[0] * k[1]),
                         x.shape[0], x.shape[1], *o)
    divisor = _avg_divisor(x, k, s, p, o, count_include_pad, divisor_override).reshape(-1)
    return F.reshape(F.sum(cols, 2) / wrap_array(divisor.astype(x.dtype.np)),
                     x.shape[0], x.shape[1], *o)


def _adaptive_sizes(name, x, output_size):
    require_ndim(name, x, (4,), "input (N, C, H, W)")
    size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    size = tuple(x.shape[2 + i] if v is None else v for i, v in enumerate(size))
    if len(size) != 2 or min(size) <= 0:
        raise OpValueError(name, f"output_size must be positive ints (or None), got {output_size!r}")
    return size


def _adaptive_avg_pool2d(x, output_size=1):
    """Each bin's mean over its own window (in float64): a nan or inf stays in the bins
    that hold it (averaging matrices spread it: 0·nan is nan)."""
    oh, ow = _adaptive_sizes("adaptive_avg_pool2d", x, output_size)
    wide = x.astype(np.float64)
    rows = np.stack([wide[:, :, a:b].mean(axis=2) for a, b in _bins(x.shape[2], oh)], axis=2)
    out = np.stack([rows[..., a:b].mean(axis=3) for a, b in _bins(x.shape[3], ow)], axis=3)
    return out.astype(x.dtype)


def _adaptive_avg_pool2d_decomposition(x, output_size=1):
    oh, ow = _adaptive_sizes("adaptive_avg_pool2d", x, output_size)
    h, w = x.shape[2:]
    if h % oh == 0 and w % ow == 0:  # equal bins: a mean over windows, for any size of them
        windows = F.reshape(x, x.shape[0], x.shape[1], oh, h // oh, ow, w // ow)
        return F.mean(windows, (3, 5))
    # unequal bins: each bin's elements picked into k slots (index_select), the slots past
    # the bin's end masked out by a select (not a product: a nan stays in its own bins),
    # summed and divided by the bin's size
    for d, m in ((2, oh), (3, ow)):
        n = x.shape[d]
        if n % m == 0:
            x = F.mean(F.reshape(x, *x.shape[:d], m, n // m, *x.shape[d + 1:]), d + 1)
            continue
        bins = _bins(n, m)
        k = max(b - a for a, b in bins)
        picks = np.array([min(a + j, n - 1) for a, _ in bins for j in range(k)], np.int64)
        inside = np.array([[j < b - a for j in range(k)] for a, b in bins])
        sizes = np.array([b - a for a, b in bins], x.dtype.np)
        after = (1,) * (x.ndim - d - 1)
        picked = F.reshape(F.index_select(x, d, wrap_array(picks)),
                           *x.shape[:d], m, k, *x.shape[d + 1:])
        kept = F.where(wrap_array(inside.reshape(m, k, *after)), picked, 0.0)
        x = F.sum(kept, d + 1) / wrap_array(sizes.reshape(m, *after))
    return x


def _bins(n_in: int, n_out: int) -> list[tuple[int, int]]:
    """Adaptive pooling's bins [floor(i·n/m), ceil((i+1)·n/m))."""
    return [((i * n_in) // n_out, -(-((i + 1) * n_in) // n_out)) for i in range(n_out)]


def _adaptive_max_pool2d(x, output_size=1):
    oh, ow = _adaptive_sizes("adaptive_max_pool2d", x, output_size)
    if x.size == 0:
        raise ShapeError("adaptive_max_pool2d", f"cannot pool the empty input of shape {x.shape}")
    rows = np.stack([x[:, :, a:b].max(axis=2) for a, b in _bins(x.shape[2], oh)], axis=2)
    return np.stack([rows[..., a:b].max(axis=3) for a, b in _bins(x.shape[3], ow)], axis=3)


def _adaptive_max_pool2d_decomposition(x, output_size=1):
    for d, m in zip((2, 3), _adaptive_sizes("adaptive_max_pool2d", x, output_size)):
        n = x.shape[d]
        if n % m == 0:  # equal bins: a reshape, natively compiled
            x = F.amax(F.reshape(x, *x.shape[:d], m, n // m, *x.shape[d + 1:]), d + 1)
            continue
        # unequal bins: each padded to the widest by repeating its last position
        bins = _bins(n, m)
        width = max(b - a for a, b in bins)
        index = np.array([min(a + j, b - 1) for a, b in bins for j in range(width)])
        picked = F.index_select(x, d, wrap_array(index))
        x = F.amax(F.reshape(picked, *x.shape[:d], m, width, *x.shape[d + 1:]), d + 1)
    return x


# ---- samples -----------------------------------------------------------------------

def _spatial_samples(kind):
    def gen(dtype, rng):
        a = lambda *shape, layout="contiguous": samples.array(rng, shape, dtype, layout=layout)
        if kind == "pad":
            return [Sample((a(2, 3, 4),), {"pad": (1, 2)}, "last dim"),
                    Sample((a(1, 2, 3, 3, layout="transposed"),), {"pad": (1, 0, 2, 1), "value": 1.5},
                           "two dims, value"),
                    Sample((a(3),), {"pad": (0, 0)}, "no padding")]
        if kind == "unfold":
            return [Sample((a(2, 3, 5, 6),), {"kernel_size": (2, 3), "stride": (1, 2), "padding": 1},
                           "padded, strided"),
                    Sample((a(1, 2, 6, 6, layout="strided"),), {"kernel_size": 2, "dilation": 2},
                           "dilated")]
        if kind == "fold":
            return [Sample((a(2, 3 * 6, 18),), {"output_size": (5, 6), "kernel_size": (2, 3),
                                                "stride": (1, 2), "padding": 1}, "overlapping"),
                    Sample((a(1, 8, 4),), {"output_size": (4, 4), "kernel_size": 2, "stride": 2},
                           "tiles")]
        if kind == "conv2d":
            return [Sample((a(2, 3, 7, 6), a(4, 3, 3, 3), a(4)), {"padding": 1}, "3x3 same size"),
                    Sample((a(1, 4, 8, 8, layout="transposed"), a(6, 2, 3, 2), None),
                           {"stride": (2, 1), "dilation": (1, 2), "groups": 2}, "groups, dilation"),
                    Sample((a(2, 2, 5, 5), a(3, 2, 2, 2), a(3)), {"padding": "same"}, "'same'"),
                    Sample((a(1, 3, 4, 4), a(2, 3, 1, 1), None), {}, "1x1")]
        if kind == "max_pool2d":
            return [Sample((a(2, 3, 6, 7),), {"kernel_size": 2}, "2x2"),
                    Sample((a(1, 2, 7, 7, layout="negstep"),), {"kernel_size": 3, "stride": 2,
                                                               "padding": 1}, "padded"),
                    Sample((a(1, 1, 7, 5),), {"kernel_size": (3, 2), "stride": 2, "ceil_mode": True},
                           "ceil mode"),
                    Sample((a(1, 2, 9, 9),), {"kernel_size": 2, "dilation": 2}, "dilated")]
        if kind == "avg_pool2d":
            return [Sample((a(2, 3, 6, 7),), {"kernel_size": 2}, "2x2"),
                    Sample((a(1, 2, 7, 7, layout="strided"),), {"kernel_size": 3, "stride": 2,
                                                                "padding": 1}, "padded"),
                    Sample((a(1, 2, 7, 7),), {"kernel_size": 3, "stride": 2, "padding": 1,
                                              "count_include_pad": False}, "exclude padding"),
                    Sample((a(1, 1, 7, 5),), {"kernel_size": (3, 2), "stride": 2, "ceil_mode": True},
                           "ceil mode"),
                    Sample((a(1, 1, 4, 4),), {"kernel_size": 2, "divisor_override": 3}, "divisor")]
        if kind == "adaptive_max":
            return [Sample((a(2, 3, 6, 8),), {"output_size": (3, 4)}, "equal bins"),
                    Sample((a(1, 2, 7, 5, layout="transposed"),), {"output_size": (3, 2)},
                           "uneven bins"),
                    Sample((a(1, 1, 5, 4),), {"output_size": (None, 1)}, "keep height")]
        return [Sample((a(2, 3, 7, 9),), {"output_size": (3, 4)}, "uneven bins"),
                Sample((a(1, 2, 6, 6, layout="transposed"),), {"output_size": 1}, "global"),
                Sample((a(1, 1, 5, 4),), {"output_size": (None, 2)}, "keep height")]
    return gen


register(name="pad", inputs=("self",), kernel=_pad, dtype_rule=_pad_rule, shape_rule=_pad_shape,
         attrs={"pad": REQUIRED, "value": 0.0}, dtypes=dt.ALL_DTYPES, samples=_spatial_samples("pad"),
         grad=_pad_grad, gather=True,
         doc="constant padding; pad holds (before, after) pairs from the last dim")
register(name="unfold", inputs=("self",), kernel=_unfold, dtype_rule=no_bool(same_as_first),
         shape_rule=_unfold_shape, attrs=dict(WINDOW), dtypes=dt.NUMERIC_DTYPES,
         samples=_spatial_samples("unfold"), grad=_unfold_grad, gather=True,
         doc="im2col: (N, C, H, W) -> (N, C*kh*kw, L), one column per window position")
register(name="fold", inputs=("self",), kernel=_fold, dtype_rule=no_bool(same_as_first),
         shape_rule=_fold_shape, attrs={"output_size": REQUIRED, **WINDOW}, dtypes=dt.NUMERIC_DTYPES,
         samples=_spatial_samples("fold"), grad=_fold_grad, flags={Flag.COMPOSITE},
         decomposition=_fold_decomposition,
         doc="col2im: sums each column back into its window (overlaps add up)")
register(name="conv2d", inputs=("input", "weight", "bias"), kernel=_conv2d, dtype_rule=_conv_rule,
         shape_rule=_conv_shape, attrs=dict(CONV), flags={Flag.COMPOSITE, Flag.MATMUL},
         dtypes=FLOATS, samples=_spatial_samples("conv2d"), decomposition=_conv2d_decomposition,
         doc="2-D cross-correlation (stride, padding incl. 'same'/'valid', dilation, groups)")
register(name="max_pool2d", inputs=("self",), kernel=_max_pool2d,
         dtype_rule=floating_only(same_as_first), shape_rule=_pool_shape,
         attrs={**POOL, "dilation": (1, 1)}, flags={Flag.COMPOSITE}, dtypes=FLOATS,
         samples=_spatial_samples("max_pool2d"), decomposition=_max_pool2d_decomposition)
def _adaptive_shape(name, x, output_size=1):
    return (x.shape[0], x.shape[1], *_adaptive_sizes(name, x, output_size))


register(name="avg_pool2d", inputs=("self",), kernel=_avg_pool2d,
         dtype_rule=floating_only(same_as_first), shape_rule=_pool_shape, attrs=dict(AVG),
         flags={Flag.COMPOSITE}, dtypes=FLOATS, samples=_spatial_samples("avg_pool2d"),
         decomposition=_avg_pool2d_decomposition)
register(name="adaptive_avg_pool2d", inputs=("self",), kernel=_adaptive_avg_pool2d,
         dtype_rule=floating_only(same_as_first),
         shape_rule=_adaptive_shape,
         attrs={"output_size": REQUIRED}, flags={Flag.COMPOSITE}, dtypes=FLOATS,
         samples=_spatial_samples("adaptive"), decomposition=_adaptive_avg_pool2d_decomposition,
         doc="average over bins [floor(i·H/oh), ceil((i+1)·H/oh)), as two averaging matmuls")


def _edge_samples(dtype, rng):
    a = lambda *shape, layout="contiguous": samples.array(rng, shape, dtype, layout=layout)
    return [Sample((a(2, 3, 5),), {"pad": (2, 3)}, "1-d"),
            Sample((a(3, 4, layout="transposed"),), {"pad": (3, 1)}, "1-d unbatched"),
            Sample((a(2, 2, 4, 5, layout="strided"),), {"pad": (1, 2, 3, 0)}, "2-d"),
            Sample((a(1, 2, 3, 3, 4),), {"pad": (1, 1, 2, 0, 0, 2)}, "3-d"),
            Sample((a(2, 3, 4, layout="negstep"),), {"pad": (0, 0, 1, 2)}, "2-d unbatched")]


for _name, _mode in EDGE_MODES.items():
    register(name=_name, inputs=("self",), kernel=_edge_kernel(_name), dtype_rule=_edge_rule,
             shape_rule=_edge_shape, attrs={"pad": REQUIRED}, flags={Flag.COMPOSITE},
             dtypes=FLOATS, samples=_edge_samples, decomposition=_edge_decomposition(_name),
             doc=f"F.pad(mode={_mode!r}): pad holds (before, after) pairs from the last dim, "
                 "for 1 to 3 trailing dims")
register(name="adaptive_max_pool2d", inputs=("self",), kernel=_adaptive_max_pool2d,
         dtype_rule=floating_only(same_as_first),
         shape_rule=_adaptive_shape,
         attrs={"output_size": REQUIRED}, flags={Flag.COMPOSITE}, dtypes=FLOATS,
         samples=_spatial_samples("adaptive_max"), decomposition=_adaptive_max_pool2d_decomposition,
         doc="maximum over bins [floor(i·H/oh), ceil((i+1)·H/oh)); equal bins are a reshape")
