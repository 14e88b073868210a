"""tril and triu: the lower or upper triangle of the last two dims, the rest zeroed.

Each decomposes into an index comparison (``row - col`` against the diagonal, from two
``arange``s broadcast against each other) and a ``masked_fill``, so fusion sees
elementwise ops: with static sizes the mask folds to a constant the fused kernel reads;
with symbolic sizes (``graphc.symbolic``) the aranges take the sizes as symbols, so one
program serves every size.
"""

from __future__ import annotations

import operator

import numpy as np

from .. import dtype as dt
from ..errors import ShapeError
from . import functions as F
from . import samples
from .dispatch import dispatch
from .registry import EXACT, OPS, Accuracy, Flag, Sample, register
from .rules import same_as_first


def _triangle_shape(name, x, diagonal=0):
    if x.ndim < 2:
        raise ShapeError(name, f"input tensor must have at least 2 dimensions, got shape "
                         f"{tuple(x.shape)}")
    return tuple(x.shape)


def _outside(x, diagonal: int, lower: bool):
    """True where ``tril`` (``lower``) or ``triu`` zeroes: row - col compared with -diagonal."""
    rows, cols = x.shape[-2], x.shape[-1]
    offset = F.arange(rows).reshape(rows, 1) - F.arange(cols)  # row - col
    return offset < -diagonal if lower else offset > -diagonal


def _decomposition(lower: bool):
    def decompose(x, diagonal=0):
        return F.masked_fill(x, _outside(x, diagonal, lower), 0)
    return decompose


def _grad(name):
    def grad(ctx, g):
        return (dispatch(OPS[name], g, diagonal=ctx.attrs["diagonal"]),)
    return grad


def _samples(dtype, rng):
    def a(*shape, layout="contiguous"):
        return samples.array(rng, shape, dtype, layout=layout)
    out = [Sample((a(4, 5),), {}, "(4, 5)"),
           Sample((a(5, 3, layout="transposed"),), {"diagonal": 1}, "transposed, diagonal 1"),
           Sample((a(2, 3, 4, layout="negstep"),), {"diagonal": -1}, "batched, diagonal -1"),
           Sample((a(3, 3, layout="strided"),), {"diagonal": 5}, "diagonal past the corner"),
           Sample((a(3, 4),), {"diagonal": -4}, "diagonal below every row"),
           Sample((a(0, 3),), {}, "empty"),
           Sample((a(2, 1, 1),), {}, "size-1 dims")]
    if dtype.is_floating_point:
        out.append(Sample((samples.with_specials(a(4, 4)),), {"diagonal": 0}, "special values"))
    return out


def _declare(name: str, np_kernel, lower: bool, doc: str):
    register(name=name, inputs=("self",),
             kernel=lambda x, diagonal=0: np_kernel(x, diagonal),
             dtype_rule=same_as_first, shape_rule=_triangle_shape, attrs={"diagonal": 0},
             flags={Flag.COMPOSITE}, dtypes=dt.ALL_DTYPES, samples=_samples,
             decomposition=_decomposition(lower), grad=_grad(name),
             accuracy=Accuracy(EXACT, 0), doc=doc)


_declare("tril", np.tril, True, "the lower triangle of the last two dims (col - row <= "
         "diagonal), zeros elsewhere")
_declare("triu", np.triu, False, "the upper triangle of the last two dims (col - row >= "
         "diagonal), zeros elsewhere")


# ---- the public functions ---------------------------------------------------------------

def tril(input, diagonal: int = 0):
    """The lower triangle of the last two dims (``col - row <= diagonal``), zeros elsewhere."""
    return dispatch(OPS.tril, input, diagonal=operator.index(diagonal))


def triu(input, diagonal: int = 0):
    """The upper triangle of the last two dims (``col - row >= diagonal``), zeros elsewhere."""
    return dispatch(OPS.triu, input, diagonal=operator.index(diagonal))
