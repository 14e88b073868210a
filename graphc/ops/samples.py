"""Sample inputs for testing ops (an OpInfo-like generator).

Each op in the table carries ``samples(dtype, rng) -> list[Sample]``. Samples are numpy
arrays and Python scalars, covering the cases every stage must get right: scalars and
0-d tensors, broadcasting, transposed / strided / negative-step (non-contiguous)
layouts, empty and size-1 dims, and for floats nan, ±inf, -0.0, denormals and large
magnitudes. The same samples test eager, meta, traced and compiled execution.
"""

from __future__ import annotations

import numpy as np

from .. import dtype as dt
from .registry import Sample

LAYOUTS = ("contiguous", "transposed", "strided", "negstep")


def array(rng: np.random.Generator, shape, dtype: dt.dtype, low: float = -3.0, high: float = 3.0,
          layout: str = "contiguous") -> np.ndarray:
    """Random values of ``dtype`` in [low, high] with the given memory layout (same values)."""
    shape = tuple(shape)
    if dtype is dt.bool_:
        a = rng.random(shape) < 0.5
    elif dtype.is_floating_point:
        a = rng.uniform(low, high, shape).astype(dtype.np)
    else:
        a = rng.integers(int(np.ceil(low)), int(np.floor(high)) + 1, shape).astype(dtype.np)
    return relayout(a, layout)


def relayout(a: np.ndarray, layout: str) -> np.ndarray:
    """The same values as ``a`` in a different memory layout."""
    a = np.asarray(a)
    if layout == "contiguous" or a.ndim == 0:
        return np.array(a, order="C")  # (np.ascontiguousarray would make 0-d arrays 1-d)
    if layout == "transposed":  # stored with dims reversed, read back in a's order
        return np.ascontiguousarray(a.transpose()).transpose()
    if layout == "strided":  # every other element of a larger buffer along the last dim
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        big[..., ::2] = a
        return big[..., ::2]
    if layout == "negstep":  # stored reversed along the last dim
        return np.ascontiguousarray(a[..., ::-1])[..., ::-1]
    raise ValueError(layout)


SPECIALS = (np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-40, -1e-40, 1e30, -1e30, 88.5, -88.5, 1e-7)


def with_specials(a: np.ndarray) -> np.ndarray:
    """``a`` with special float values written over its first elements (floats only)."""
    a = np.array(a)
    if a.dtype.kind != "f":
        return a
    flat = a.reshape(-1)
    for i, v in enumerate(SPECIALS[:flat.size]):
        flat[i] = v
    return a


def scalar(rng: np.random.Generator, dtype: dt.dtype, low: float, high: float):
    """A Python scalar of the same category as ``dtype`` (promotion keeps the tensor's dtype)."""
    if dtype is dt.bool_:
        return bool(rng.random() < 0.5)
    if dtype.is_floating_point:
        return float(np.round(rng.uniform(low, high), 2))
    return int(rng.integers(int(np.ceil(low)), int(np.floor(high)) + 1))


def _domain(domain, i):
    if domain is None:
        return (-3.0, 3.0)
    if isinstance(domain[0], tuple):
        return domain[i]
    return domain


def elementwise(arity: int = 1, domain=None, scalars: bool = True, specials: bool = True,
                attr_sets: list[dict] | None = None):
    """Samples for elementwise ops: layouts, broadcasting, scalars, empty, size-1, specials.

    ``domain`` is (low, high) for every input, or one (low, high) per input. The first of
    ``attr_sets`` is used throughout; each further one gets a sample of its own.
    """
    attr_sets = attr_sets or [{}]
    attrs = attr_sets[0]

    def gen(dtype: dt.dtype, rng: np.random.Generator) -> list[Sample]:
        def arr(shape, i=0, layout="contiguous"):
            low, high = _domain(domain, i)
            return array(rng, shape, dtype, low, high, layout)

        out = []
        shapes_same = [(), (5,), (3, 4), (2, 3, 4), (0,), (1, 1), (0, 3)]
        for shape in shapes_same:
            out.append(Sample(tuple(arr(shape, i) for i in range(arity)), attrs, f"{shape}"))
        for layout in LAYOUTS[1:]:
            out.append(Sample(tuple(arr((4, 5), i, layout) for i in range(arity)), attrs, layout))
        if arity >= 2:
            broadcasts = [((3, 1), (1, 4)), ((2, 3, 4), (4,)), ((5,), ()), ((0, 3), (3,)),
                          ((1,), (2, 1, 3))]
            for a_shape, b_shape in broadcasts:
                shapes = [a_shape, b_shape] + [a_shape] * (arity - 2)
                out.append(Sample(tuple(arr(s, i) for i, s in enumerate(shapes)), attrs,
                                  f"broadcast {a_shape} {b_shape}"))
            if scalars:
                for i in range(arity):
                    ins = [arr((3, 4), j) for j in range(arity)]
                    low, high = _domain(domain, i)
                    ins[i] = scalar(rng, dtype, low, high)
                    out.append(Sample(tuple(ins), attrs, f"scalar input {i}"))
        if specials and dtype.is_floating_point:
            ins = [arr((3, 4), i) for i in range(arity)]
            ins[0] = with_specials(ins[0])
            out.append(Sample(tuple(ins), attrs, "special values"))
        for more in attr_sets[1:]:
            ins = [arr((3, 4), i) for i in range(arity)]
            if specials and dtype.is_floating_point:
                ins[0] = with_specials(ins[0])
            out.append(Sample(tuple(ins), more, f"{more}"))
        return out

    return gen


def reduction(attr_sets=None, domain=(-3.0, 3.0), specials: bool = True, empty: bool = True,
              single_dim: bool = False):
    """Samples for reductions over one dim, several dims, all dims, with and without keepdim.

    ``single_dim`` ops (argmax) take ``dim`` as one int or None.
    """

    def gen(dtype: dt.dtype, rng: np.random.Generator) -> list[Sample]:
        low, high = domain
        cases = [
            ((3, 4), {"dim": None}),
            ((3, 4), {"dim": (1,)}),
            ((3, 4), {"dim": (0,), "keepdim": True}),
            ((2, 3, 4), {"dim": (0, 2)}),
            ((2, 3, 4), {"dim": (-1,), "keepdim": True}),
            ((), {"dim": None}),
            ((5,), {"dim": (0,)}),
            ((1, 1), {"dim": (1,)}),
        ]
        if empty:
            cases.append(((0, 3), {"dim": (1,)}))
        if single_dim:
            cases = [(shape, {**attrs, "dim": attrs["dim"] and attrs["dim"][0]})
                     for shape, attrs in cases
                     if attrs["dim"] is None or len(attrs["dim"]) == 1]
        out = []
        extra = attr_sets or [{}]
        first_dim = 0 if single_dim else (0,)
        for shape, attrs in cases:
            for more in extra:
                out.append(Sample((array(rng, shape, dtype, low, high),), {**attrs, **more},
                                  f"{shape} {attrs} {more}"))
        for layout in LAYOUTS[1:]:
            out.append(Sample((array(rng, (4, 5), dtype, low, high, layout),),
                              {"dim": first_dim, **extra[0]}, layout))
        if specials and dtype.is_floating_point:
            out.append(Sample((with_specials(array(rng, (3, 4), dtype, low, high)),),
                              {"dim": 1 if single_dim else (1,), **extra[0]}, "special values"))
        return out

    return gen
