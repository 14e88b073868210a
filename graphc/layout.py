"""Shape and stride arithmetic shared by tensors, view ops and (later) codegen.

Strides are in elements, as in PyTorch. Nothing here touches data.
"""

from __future__ import annotations

import functools
import math
import operator

from .errors import OpIndexError, OpTypeError, ShapeError
from .symbolic import SymInt, exact_div, known

Shape = tuple[int, ...]


def numel(shape: Shape) -> int:
    return math.prod(shape)


@functools.lru_cache(maxsize=4096)
def contiguous_strides(shape: Shape) -> Shape:
    """Row-major strides; a dim of size 0 or 1 gets the stride it would have with size 1."""
    strides = []
    acc = 1
    for size in reversed(shape):
        strides.append(acc)
        acc *= max(size, 1)
    return tuple(reversed(strides))


def reach(shape: Shape, stride: Shape) -> tuple[int, int]:
    """The lowest and highest element a non-empty view reaches, relative to its offset
    (negative strides reach below it)."""
    lo = sum((n - 1) * s for n, s in zip(shape, stride) if s < 0)
    hi = sum((n - 1) * s for n, s in zip(shape, stride) if s > 0)
    return lo, hi


def is_contiguous(shape: Shape, stride: Shape) -> bool:
    """PyTorch's definition: strides of size-1 dims do not matter; empty tensors are contiguous."""
    expected = 1
    for size, st in zip(reversed(shape), reversed(stride)):
        if size == 0:
            return True
        if size != 1:
            if st != expected:
                return False
            expected *= size
    return True


def normalize_dim(op: str, dim, ndim: int, *, extra: int = 0) -> int:
    """Wrap a negative dim; ``extra`` allows dims one past the end (unsqueeze, stack)."""
    try:
        dim = operator.index(dim)
    except TypeError:
        raise OpTypeError(op, f"dim must be an int, got {type(dim).__name__} {dim!r}") from None
    limit = max(ndim + extra, 1)  # a 0-d tensor accepts dim 0 and -1, as in PyTorch
    if not -limit <= dim < limit:
        raise OpIndexError(
            op, f"dim {dim} is out of range for a tensor of {ndim} dims "
            f"(expected a dim in [{-limit}, {limit - 1}])")
    return dim + limit if dim < 0 else dim


def normalize_dims(op: str, dims, ndim: int) -> tuple[int, ...]:
    """A dim, a sequence of dims, or None (all dims) → sorted tuple of distinct dims."""
    if dims is None:
        return tuple(range(ndim))
    if isinstance(dims, (list, tuple)):
        out = tuple(normalize_dim(op, d, ndim) for d in dims)
        if len(set(out)) != len(out):
            raise ShapeError(op, f"dim {tuple(dims)} names a dim more than once")
        return tuple(sorted(out))
    return (normalize_dim(op, dims, ndim),)


def as_shape(op: str, size) -> Shape:
    """Accept ``(2, 3)``, ``[2, 3]``, a Size, or ``2`` → a tuple of non-negative ints (-1 kept)."""
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size,)
    try:
        shape = tuple(s if type(s) is SymInt else operator.index(s) for s in size)
    except TypeError:
        raise OpTypeError(op, f"expected a shape of ints, got {size!r}") from None
    return shape


def size_args(op: str, size) -> Shape:
    """Factories and view/reshape accept ``f(2, 3)`` and ``f((2, 3))``."""
    if len(size) == 1 and not isinstance(size[0], (int, SymInt)):
        size = size[0]
    shape = as_shape(op, size)
    return shape


def infer_size(op: str, shape: Shape, total: int) -> Shape:
    """Resolve one ``-1`` in ``shape`` so that it holds ``total`` elements."""
    unknown = [i for i, s in enumerate(shape) if s == -1]
    if len(unknown) > 1:
        raise ShapeError(op, f"only one dimension can be inferred (-1), got shape {shape}")
    bad = [s for s in shape if s < -1]
    if bad:
        raise ShapeError(op, f"invalid shape dimension {bad[0]} in {shape}")
    known = math.prod(s for s in shape if s != -1)
    if unknown:
        q = _quotient(total, known) if known != 0 else None
        if q is None:
            raise ShapeError(op, f"shape {shape} is invalid for input of size {total}")
        shape = tuple(q if s == -1 else s for s in shape)
    elif known != total:
        raise ShapeError(op, f"shape {shape} is invalid for input of size {total}")
    return shape


def _quotient(total, known):
    """``total / known`` where it divides, else None. With symbolic sizes: the exact
    polynomial quotient, or else the quotient of their values in the compiling call,
    guarded by ``total == known * q`` (which ties a size to the others: ``y.view(n, -1)``
    for a y of 6n elements)."""
    if not isinstance(total, SymInt) and not isinstance(known, SymInt):
        return None if total % known else total // known
    exact = exact_div(total, known)  # a polynomial quotient needs no guard
    if exact is not None:
        return exact
    t = total.hint if isinstance(total, SymInt) else total
    k = known.hint if isinstance(known, SymInt) else known
    if t % k:
        return None
    return t // k if total == known * (t // k) else None


def view_strides(old_shape: Shape, old_stride: Shape, new_shape: Shape) -> Shape | None:
    """Strides for viewing (old_shape, old_stride) as new_shape without copying, or None.

    A view exists when each run of new dims covers whole runs of old dims that are laid
    out contiguously with respect to each other (old dims may be split or merged only
    within such runs). This is the rule PyTorch's ``view`` follows.
    """
    if numel(old_shape) == 0:
        if numel(new_shape) != 0:
            return None
        return tuple(old_stride) if tuple(old_shape) == tuple(new_shape) else contiguous_strides(new_shape)
    if not old_shape:
        old_shape, old_stride = (1,), (1,)
    new_stride = [0] * len(new_shape)
    view_d = len(new_shape) - 1
    # walk old dims from the innermost, accumulating "chunks" of mutually contiguous dims
    chunk_base_stride = old_stride[-1]
    tensor_numel = 1
    view_numel = 1
    for tensor_d in range(len(old_shape) - 1, -1, -1):
        tensor_numel *= old_shape[tensor_d]
        chunk_ends = tensor_d == 0 or (
            old_shape[tensor_d - 1] != 1
            and old_stride[tensor_d - 1] != tensor_numel * chunk_base_stride)
        if chunk_ends:
            while view_d >= 0 and (view_numel < tensor_numel or new_shape[view_d] == 1):
                new_stride[view_d] = view_numel * chunk_base_stride
                view_numel *= new_shape[view_d]
                view_d -= 1
            if view_numel != tensor_numel:
                return None
            if tensor_d > 0:
                chunk_base_stride = old_stride[tensor_d - 1]
                tensor_numel = 1
                view_numel = 1
    if view_d != -1:
        return None
    return tuple(new_stride)


def same_shape(a, b) -> bool:
    """``a == b`` for shapes, lengths first: tuples compare items before lengths, and a
    symbolic size compared with another (``graphc.symbolic``) leaves a guard behind."""
    return a is not None and b is not None and len(a) == len(b) and tuple(a) == tuple(b)


def surely_same_shape(a, b) -> bool:
    """``a == b`` for every value of the size symbols, decided without a guard (False where
    it depends on them): for choices that have a safe default."""
    return a is not None and b is not None and len(a) == len(b) and \
        all(known(x, "==", y) for x, y in zip(a, b))


def broadcast_shapes(op: str, *shapes: Shape) -> Shape:
    """NumPy/PyTorch broadcasting of several shapes, with an error naming the clashing dim."""
    if len(shapes) == 2 and same_shape(shapes[0], shapes[1]):
        return tuple(shapes[0])
    ndim = max((len(s) for s in shapes), default=0)
    out = [1] * ndim
    for s in shapes:
        for i, size in enumerate(s):
            j = ndim - len(s) + i
            if size == out[j] or size == 1:
                continue
            if out[j] == 1:
                out[j] = size
            else:
                given = " and ".join(str(tuple(x)) for x in shapes)
                raise ShapeError(
                    op, f"shapes {given} do not broadcast "
                    f"(dim {j - ndim}: {out[j]} vs {size})")
    return tuple(out)
