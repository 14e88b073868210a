"""Matrix products: matmul (1-D, 2-D, batched with broadcasting), bmm, linear, outer."""

from __future__ import annotations

import numpy as np

from .. import dtype as dt
from ..errors import DTypeError, ShapeError
from ..layout import broadcast_shapes
from . import functions as F
from . import samples
from .registry import Flag, Sample, register
from .rules import check_inputs, describe, is_tensor, promote

NUMERIC = dt.NUMERIC_DTYPES


def _same_dtype(name, *inputs, **attrs):
    """Matrix products need one dtype (as in PyTorch): no implicit promotion inside BLAS."""
    check_inputs(name, inputs)
    present = [x for x in inputs if x is not None]
    for x in present:
        if not is_tensor(x):
            raise DTypeError(name, f"expected tensors, got {describe(x)}")
    d = present[0].dtype
    if any(x.dtype is not d for x in present):
        raise DTypeError(name, "expected all operands to have the same dtype, got "
                         f"{', '.join(describe(x) for x in present)}; convert with .to(dtype)")
    if d is dt.bool_:
        raise DTypeError(name, f"not supported for bool tensors ({describe(present[0])})")
    return tuple(None for _ in inputs), (d,)


def matmul_shape(name, a, b, **attrs):
    sa, sb = tuple(a.shape), tuple(b.shape)
    if not sa or not sb:
        raise ShapeError(name, f"both arguments need at least 1 dim, got shapes {sa} and {sb}")
    a2 = sa if len(sa) > 1 else (1,) + sa
    b2 = sb if len(sb) > 1 else sb + (1,)
    if a2[-1] != b2[-2]:
        raise ShapeError(name, f"shapes {sa} and {sb} cannot be multiplied "
                         f"({a2[-1]} columns vs {b2[-2]} rows)")
    batch = broadcast_shapes(name, a2[:-2], b2[:-2])
    return batch + ((a2[-2],) if len(sa) > 1 else ()) + ((b2[-1],) if len(sb) > 1 else ())


def _bmm_shape(name, a, b):
    sa, sb = tuple(a.shape), tuple(b.shape)
    if len(sa) != 3 or len(sb) != 3:
        raise ShapeError(name, f"expected two 3-D tensors, got shapes {sa} and {sb}")
    if sa[0] != sb[0]:
        raise ShapeError(name, f"batch sizes differ: {sa[0]} vs {sb[0]} (shapes {sa} and {sb})")
    return matmul_shape(name, a, b)


def _linear_shape(name, x, weight, bias=None):
    sx, sw = tuple(x.shape), tuple(weight.shape)
    if len(sw) not in (1, 2):
        raise ShapeError(name, f"expected a 1-D or 2-D weight, got shape {sw}")
    if not sx or sx[-1] != sw[-1]:
        raise ShapeError(name, f"input of shape {sx} does not fit weight of shape {sw} "
                         f"(expected input's last dim to be {sw[-1]})")
    out = sx[:-1] + sw[:-1]
    if bias is not None:
        broadcast_shapes(name, out, tuple(bias.shape))
    return out


def _linear(x, weight, bias=None):
    out = np.matmul(x, weight.T)
    return out if bias is None else out + bias


def _linear_decomposition(x, weight, bias=None):
    out = F.matmul(x, F.t(weight) if weight.ndim == 2 else weight)
    return out if bias is None else out + bias


def _outer_shape(name, a, b):
    if a.ndim != 1 or b.ndim != 1:
        raise ShapeError(name, f"expected two 1-D tensors, got shapes {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    return (a.shape[0], b.shape[0])


# ---- gradient rules ----------------------------------------------------------------

def _matmul_grad(ctx, g):
    """1-D operands take part as a row (first) or a column (second), then lose that dim."""
    a, b = ctx.input(0), ctx.input(1)
    a2 = F.unsqueeze(a, 0) if a.ndim == 1 else a
    b2 = F.unsqueeze(b, 1) if b.ndim == 1 else b
    batch = broadcast_shapes("matmul", tuple(a2.shape[:-2]), tuple(b2.shape[:-2]))
    g2 = F.reshape(g, batch + (a2.shape[-2], b2.shape[-1]))
    ga = gb = None
    if ctx.needs(0):
        ga = F.matmul(g2, F.transpose(b2, -1, -2))
        ga = F.squeeze(ga, -2) if a.ndim == 1 else ga
    if ctx.needs(1):
        gb = F.matmul(F.transpose(a2, -1, -2), g2)
        gb = F.squeeze(gb, -1) if b.ndim == 1 else gb
    return ga, gb


def _linear_grad(ctx, g):
    x, w, bias = ctx.inputs
    w2 = F.unsqueeze(w, 0) if w.ndim == 1 else w
    g2 = F.unsqueeze(g, -1) if w.ndim == 1 else g
    gx = F.matmul(g2, w2) if ctx.needs(0) else None
    gw = None
    if ctx.needs(1):
        rows = F.reshape(g2, -1, w2.shape[0])
        gw = F.reshape(F.matmul(F.t(rows), F.reshape(x, -1, w2.shape[1])), tuple(w.shape))
    return gx, gw, g if bias is not None else None


def _pairs(cases):
    def gen(dtype, rng):
        out = []
        for sa, sb, la, lb in cases:
            ins = (samples.array(rng, sa, dtype, layout=la), samples.array(rng, sb, dtype, layout=lb))
            out.append(Sample(ins, {}, f"{sa}@{sb} {la}/{lb}"))
        return out
    return gen


C, T, S, N = samples.LAYOUTS
register(name="matmul", inputs=("self", "other"), kernel=np.matmul, dtype_rule=_same_dtype,
         shape_rule=matmul_shape, flags={Flag.MATMUL}, dtypes=NUMERIC, grad=_matmul_grad,
         samples=_pairs([
             ((4,), (4,), C, C), ((3, 4), (4,), C, C), ((4,), (4, 5), C, T), ((3, 4), (4, 5), C, C),
             ((3, 4), (4, 5), T, T), ((2, 1, 3, 4), (5, 4, 2), C, C), ((2, 3, 4), (4, 2), S, N),
             ((0, 3), (3, 4), C, C), ((3, 0), (0, 4), C, C), ((1, 1), (1, 1), C, C)]),
         doc="numpy/PyTorch matmul: 1-D operands are promoted and the added dim removed")
register(name="bmm", inputs=("self", "mat2"), kernel=np.matmul, dtype_rule=_same_dtype,
         shape_rule=_bmm_shape, flags={Flag.MATMUL}, dtypes=NUMERIC, grad=_matmul_grad,
         samples=_pairs([
             ((2, 3, 4), (2, 4, 5), C, C), ((3, 2, 2), (3, 2, 1), T, S), ((0, 2, 3), (0, 3, 1), C, C)]))
register(name="linear", inputs=("input", "weight", "bias"), kernel=_linear,
         dtype_rule=_same_dtype, shape_rule=_linear_shape, flags={Flag.MATMUL, Flag.COMPOSITE},
         decomposition=_linear_decomposition, grad=_linear_grad, dtypes=NUMERIC,
         samples=lambda dtype, rng: [
             Sample((samples.array(rng, (4, 3), dtype), samples.array(rng, (5, 3), dtype),
                     samples.array(rng, (5,), dtype)), {}, "2-D input with bias"),
             Sample((samples.array(rng, (2, 4, 3), dtype, layout=T),
                     samples.array(rng, (5, 3), dtype), None), {}, "3-D input, no bias"),
             Sample((samples.array(rng, (3,), dtype), samples.array(rng, (2, 3), dtype, layout=T),
                     samples.array(rng, (2,), dtype)), {}, "1-D input"),
             Sample((samples.array(rng, (0, 3), dtype), samples.array(rng, (5, 3), dtype),
                     samples.array(rng, (5,), dtype)), {}, "empty batch")],
         doc="input @ weight.T + bias")
register(name="outer", inputs=("self", "vec2"), kernel=np.outer, dtype_rule=promote,
         shape_rule=_outer_shape, flags={Flag.COMPOSITE}, dtypes=dt.ALL_DTYPES,
         decomposition=lambda a, b: F.unsqueeze(a, 1) * F.unsqueeze(b, 0),
         samples=_pairs([((3,), (4,), C, N), ((0,), (2,), C, C), ((1,), (1,), C, C)]))
