"""Products written in matmuls: einsum, addmm, baddbmm.

``einsum`` decomposes into graphc ops, so it traces, compiles (a matmul with views and
reductions around it) and differentiates like them. Its plan, per equation:

1. each operand's repeated labels become a diagonal (``'ii->i'``), and labels no other
   operand and not the output has are summed away at once;
2. operands are joined left to right: labels both share and still needed later are batch
   dims, labels both share and no longer needed are contracted by one ``matmul`` (a plain
   broadcast product when there are none), the rest are kept;
3. the result is permuted into the output's order.

Ellipsis dims broadcast as in PyTorch (right-aligned); a label may be size 1 in one
operand and n in another (it broadcasts).
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass

import numpy as np

from .. import dtype as dt
from ..errors import OpValueError, ShapeError
from ..layout import broadcast_shapes
from . import functions as F
from . import samples
from .dispatch import dispatch
from .linalg import _same_dtype, matmul_shape
from .registry import OPS, REQUIRED, Expose, Flag, Sample, register

NUMERIC = dt.NUMERIC_DTYPES
LETTERS = set(string.ascii_letters)


# ---- the equation ----------------------------------------------------------------------

@dataclass(frozen=True)
class Equation:
    """An einsum equation with its ellipses expanded into labels of their own
    (``0``, ``1``, ... for the broadcast dims, left to right)."""

    inputs: tuple[tuple, ...]  # labels of each operand's dims
    output: tuple              # labels of the result's dims
    sizes: dict                # label -> size (broadcast over the operands)


def _error(equation, shapes, why) -> ShapeError:
    return ShapeError("einsum", f"equation {equation!r} with operand shapes "
                      f"{', '.join(str(tuple(s)) for s in shapes)}: {why}")


def _terms(equation, shapes, term: str, ndim: int | None, ellipsis: int) -> tuple:
    """One side's labels; ``...`` becomes the last ``dims`` of the ``ellipsis`` broadcast labels."""
    if term.count("...") > 1 or "." in term.replace("...", ""):
        raise _error(equation, shapes, f"{term!r} has a '.' that is not part of one '...'")
    head, dots, tail = term.partition("...")
    for c in head + tail:
        if c not in LETTERS:
            raise _error(equation, shapes, f"{c!r} is not a subscript (letters a-z, A-Z)")
    if not dots:
        if ndim is not None and len(head) != ndim:
            raise _error(equation, shapes, f"{term!r} names {len(head)} dims for an operand "
                         f"with {ndim}")
        return tuple(head)
    dims = ellipsis if ndim is None else ndim - len(head) - len(tail)
    if dims < 0:
        raise _error(equation, shapes, f"{term!r} names more dims than the operand's {ndim}")
    return tuple(head) + tuple(range(ellipsis - dims, ellipsis)) + tuple(tail)


def parse(equation: str, shapes) -> Equation:
    """The equation's labels per operand and output, with every size checked."""
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(shapes):
        raise _error(equation, shapes, f"{len(terms)} operand term(s) for {len(shapes)} operand(s)")
    ellipsis = 0
    for term, shape in zip(terms, shapes):
        if "..." in term:
            named = len(term.replace("...", ""))
            ellipsis = max(ellipsis, len(shape) - named)
    inputs = tuple(_terms(equation, shapes, t, len(s), ellipsis) for t, s in zip(terms, shapes))
    sizes: dict = {}
    for labels, shape in zip(inputs, shapes):
        for label, n in zip(labels, shape):
            have = sizes.get(label, 1)
            if have != n and 1 not in (have, n):
                what = "the '...' dims" if isinstance(label, int) else f"subscript {label!r}"
                raise _error(equation, shapes, f"{what} has sizes {have} and {n}, which do not "
                             "broadcast")
            sizes[label] = n if have == 1 else have
    if arrow:
        output = _terms(equation, shapes, rhs, None, ellipsis)
        for label in output:
            if label not in sizes and not isinstance(label, int):
                raise _error(equation, shapes, f"output subscript {label!r} is not in any operand")
        if len(set(output)) != len(output):
            raise _error(equation, shapes, f"output subscripts {rhs!r} repeat a subscript")
    else:  # implicit: the broadcast dims, then the labels used once, in alphabetical order
        counts = [label for labels in inputs for label in labels]
        once = sorted(c for c in set(counts) if isinstance(c, str) and counts.count(c) == 1)
        output = tuple(range(ellipsis)) + tuple(once)
    for label in output:
        sizes.setdefault(label, 1)
    return Equation(inputs, output, sizes)


# ---- the decomposition -----------------------------------------------------------------

def _unique(x, labels: list):
    """Repeated labels of one operand become one diagonal dim (at the label's first place)."""
    while len(set(labels)) != len(labels):
        label = next(c for c in labels if labels.count(c) > 1)
        i = labels.index(label)
        j = labels.index(label, i + 1)
        x = F.movedim(F.diagonal(x, 0, i, j), -1, i)  # diagonal appends its dim last
        labels = [c for k, c in enumerate(labels) if k != j]
    return x, labels


def _sum_out(x, labels: list, drop, promote: bool = False):
    """Sum the ``drop`` labels away; integers keep their dtype unless ``promote`` (as in
    PyTorch, whose one-operand einsum is a sum, int32 becoming int64)."""
    dims = [i for i, c in enumerate(labels) if c in drop]
    if not dims:
        return x, labels
    return (F.sum(x, dims, dtype=None if promote else x.dtype),
            [c for c in labels if c not in drop])


def _sums_one_operand(eq: Equation) -> bool:
    return len(eq.inputs) == 1 and bool(set(eq.inputs[0]) - set(eq.output))


def _arrange(x, labels: list, order: list):
    """x with its dims in ``order`` (labels it lacks become size-1 dims)."""
    x = F.permute(x, *[labels.index(c) for c in order if c in labels])
    present = [c for c in order if c in labels]
    return F.reshape(x, *[x.shape[present.index(c)] if c in labels else 1 for c in order])


def _join(a, la: list, b, lb: list, needed: set, sizes: dict):
    """Two operands as one: batch labels kept, shared labels not needed contracted."""
    shared = [c for c in la if c in lb]
    batch = [c for c in shared if c in needed]
    contracted = [c for c in shared if c not in needed]
    # a contracted label of size 1 in one operand: sum the other over it first
    for c in list(contracted):
        na, nb = a.shape[la.index(c)], b.shape[lb.index(c)]
        if na != nb:
            if na == 1:
                b, lb = _sum_out(b, lb, {c})
                a = F.squeeze(a, la.index(c))
                la = [x for x in la if x != c]
            else:
                a, la = _sum_out(a, la, {c})
                b = F.squeeze(b, lb.index(c))
                lb = [x for x in lb if x != c]
            contracted.remove(c)
    only_a = [c for c in la if c not in lb]
    only_b = [c for c in lb if c not in la]
    if not contracted:  # a broadcast product
        order = batch + only_a + only_b
        return _arrange(a, la, order) * _arrange(b, lb, order), order
    a = _arrange(a, la, batch + only_a + contracted)
    b = _arrange(b, lb, batch + contracted + only_b)
    nb = len(batch)
    bshape_a, bshape_b = tuple(a.shape[:nb]), tuple(b.shape[:nb])
    m = math.prod(a.shape[nb:nb + len(only_a)])
    k = math.prod(a.shape[nb + len(only_a):])
    n = math.prod(b.shape[nb + len(contracted):])
    product = F.matmul(F.reshape(a, *bshape_a, m, k), F.reshape(b, *bshape_b, k, n))
    out_batch = tuple(product.shape[:nb])
    shape = out_batch + tuple(a.shape[nb:nb + len(only_a)]) + tuple(b.shape[nb + len(contracted):])
    return F.reshape(product, *shape), batch + only_a + only_b


def _einsum_decomposition(*operands, equation=""):
    eq = parse(equation, [tuple(x.shape) for x in operands])
    output = list(eq.output)
    terms = []
    for x, labels in zip(operands, eq.inputs):
        x, labels = _unique(x, list(labels))
        terms.append((x, labels))
    # labels only one operand has, and the output lacks, are summed before any product
    for i, (x, labels) in enumerate(terms):
        others = {c for j, (_, ls) in enumerate(terms) if j != i for c in ls}
        terms[i] = _sum_out(x, labels, set(labels) - others - set(output), len(terms) == 1)
    x, labels = terms[0]
    for i in range(1, len(terms)):
        needed = set(output) | {c for _, ls in terms[i + 1:] for c in ls}
        x, labels = _join(x, labels, *terms[i], needed, eq.sizes)
    x, labels = _sum_out(x, labels, set(labels) - set(output))
    x = _arrange(x, labels, output)
    # broadcast dims only some operands had, and size-1 labels, to their full size
    full = tuple(eq.sizes[c] for c in output)
    if tuple(x.shape) != full:
        x = x.expand(*full)
    return F.contiguous(x) if len(operands) == 1 else x


# ---- op declaration ---------------------------------------------------------------------

def _einsum_shape(name, *operands, equation=""):
    eq = parse(equation, [tuple(x.shape) for x in operands])
    return tuple(eq.sizes[c] for c in eq.output)


def _einsum_rule(name, *operands, equation=""):
    if not operands:
        raise OpValueError(name, f"equation {equation!r}: expected at least one operand")
    casts, outs = _same_dtype(name, *operands)
    if not outs[0].is_floating_point and _sums_one_operand(
            parse(equation, [tuple(x.shape) for x in operands])):
        outs = (dt.int64,)
    return casts, outs


def _einsum(*arrays, equation=""):
    out = np.einsum(equation, *arrays)
    integer_sum = arrays[0].dtype.kind != "f" and _sums_one_operand(
        parse(equation, [a.shape for a in arrays]))
    return np.array(out, dtype=np.int64 if integer_sum else arrays[0].dtype)


EINSUM_CASES = [  # (equation, operand shapes)
    ("ij,jk->ik", [(3, 4), (4, 5)]),
    ("bhqd,bhkd->bhqk", [(2, 3, 4, 5), (2, 3, 6, 5)]),
    ("bi,bi->b", [(4, 5), (4, 5)]),
    ("ii->i", [(4, 4)]),
    ("ii", [(3, 3)]),
    ("...ij->...ji", [(2, 3, 4)]),
    ("...ij,...jk->...ik", [(2, 1, 3, 4), (5, 4, 2)]),
    ("i,j->ij", [(3,), (4,)]),
    ("ij->", [(3, 4)]),
    ("bij,bjk,bkl->bil", [(2, 3, 4), (2, 4, 5), (2, 5, 3)]),
    ("iij->j", [(3, 3, 2)]),
    ("ij,ij->ij", [(3, 4), (3, 4)]),
    ("ik,kj", [(2, 0), (0, 3)]),
]


def _einsum_samples(dtype, rng):
    layouts = samples.LAYOUTS
    out = []
    for i, (eq, shapes) in enumerate(EINSUM_CASES):
        arrays = tuple(samples.array(rng, s, dtype, layout=layouts[(i + j) % 4])
                       for j, s in enumerate(shapes))
        out.append(Sample(arrays, {"equation": eq}, eq))
    return out


register(name="einsum", inputs=("*operands",), kernel=_einsum, dtype_rule=_einsum_rule,
         shape_rule=_einsum_shape, attrs={"equation": REQUIRED}, flags={Flag.COMPOSITE},
         dtypes=NUMERIC, samples=_einsum_samples, decomposition=_einsum_decomposition,
         doc="Einstein summation: products of the operands summed over the subscripts the "
             "output lacks")


def einsum(equation: str, *operands):
    """Einstein summation, e.g. ``einsum('bhqd,bhkd->bhqk', q, k)``; the operands may also
    be given as one list."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    if not isinstance(equation, str):
        raise OpValueError("einsum", f"the first argument must be the equation string, got "
                           f"{type(equation).__name__}")
    return dispatch(OPS.einsum, *[F.operand(x) for x in operands], equation=equation)


# ---- addmm, baddbmm: beta·input + alpha·(a @ b) --------------------------------------------

def _scaled_product_shape(ndim):
    def rule(name, x, a, b, beta=1, alpha=1):
        if a.ndim != ndim or b.ndim != ndim:
            raise ShapeError(name, f"expected two {ndim}-D tensors, got shapes {tuple(a.shape)} "
                             f"and {tuple(b.shape)}")
        if ndim == 3 and a.shape[0] != b.shape[0]:
            raise ShapeError(name, f"batch sizes differ: shapes {tuple(a.shape)} and "
                             f"{tuple(b.shape)}")
        shape = matmul_shape(name, a, b)
        if broadcast_shapes(name, tuple(x.shape), shape) != shape:
            raise ShapeError(name, f"input of shape {tuple(x.shape)} does not broadcast to the "
                             f"product's shape {shape}")
        return shape
    return rule


def _scaled_product_rule(name, x, a, b, beta=1, alpha=1):
    casts, outs = _same_dtype(name, x, a, b)
    if not outs[0].is_floating_point and (isinstance(beta, float) or isinstance(alpha, float)):
        raise OpValueError(name, f"beta and alpha must be integers for {outs[0].name} inputs, "
                           f"got beta={beta!r}, alpha={alpha!r}")
    return casts, outs


def _scaled_product(x, a, b, beta=1, alpha=1):
    p = np.matmul(a, b)
    p = p if alpha == 1 else p * p.dtype.type(alpha)
    if beta == 0:  # the input is not read: its nan and inf do not reach the result
        return np.array(p)
    return (p + (x if beta == 1 else x * x.dtype.type(beta))).astype(p.dtype)


def _scaled_product_decomposition(x, a, b, beta=1, alpha=1):
    p = F.matmul(a, b)
    if alpha != 1:
        p = p * alpha
    if beta == 0:  # the input's values are not read, but its gradient (zeros) is recorded,
        # as PyTorch's addmm records its input whatever beta is
        return F.where(F.zeros((), dtype=dt.bool_), x, p)
    return p + (x if beta == 1 else x * beta)


def _scaled_product_samples(ndim):
    def gen(dtype, rng):
        a = lambda *shape, layout="contiguous": samples.array(rng, shape, dtype, layout=layout)
        lead = (2,) * (ndim - 2)
        scale = (lambda v: float(v)) if dtype.is_floating_point else int
        nan = samples.with_specials(a(*lead, 3, 5))
        return [Sample((a(*lead, 3, 5), a(*lead, 3, 4), a(*lead, 4, 5)), {}, "plain"),
                Sample((a(5), a(*lead, 3, 4, layout="transposed"), a(*lead, 4, 5)),
                       {"beta": scale(2), "alpha": scale(-1)}, "broadcast input, scaled"),
                Sample((nan, a(*lead, 3, 4), a(*lead, 4, 5, layout="strided")),
                       {"beta": scale(0)}, "beta 0 ignores the input"),
                Sample((a(*lead, 1, 1), a(*lead, 1, 0), a(*lead, 0, 2)), {}, "empty inner")]
    return gen


for _name, _ndim, _doc in (("addmm", 2, "beta·input + alpha·(mat1 @ mat2) of 2-D matrices"),
                           ("baddbmm", 3, "beta·input + alpha·(batch1 @ batch2), batched 3-D")):
    register(name=_name, inputs=("self",) + (("mat1", "mat2") if _ndim == 2 else ("batch1", "batch2")),
             kernel=_scaled_product, dtype_rule=_scaled_product_rule,
             shape_rule=_scaled_product_shape(_ndim), attrs={"beta": 1, "alpha": 1},
             flags={Flag.COMPOSITE}, dtypes=NUMERIC, samples=_scaled_product_samples(_ndim),
             decomposition=_scaled_product_decomposition,
             expose=Expose(method=True, inplace=True), doc=_doc)
