"""Shared test helpers: running op-table samples in graphc and as numpy references."""

from __future__ import annotations

import numpy as np

import graphc
from graphc import dtype as dt
from graphc.ops import OPS, Flag, dispatch

SEED = 1234


def op_cases(predicate=lambda op: True):
    """(op, dtype) pairs for every op in the table and every dtype it accepts."""
    return [(op, d) for op in OPS if predicate(op) for d in op.dtypes]


def case_id(case) -> str:
    op, d = case
    return f"{op.name}-{d.name}"


def samples_of(op, dtype):
    return op.samples(dtype, np.random.default_rng(SEED))


def to_graphc(x, device=None):
    """numpy arrays become tensors sharing their memory (same strides); scalars pass through."""
    if isinstance(x, np.ndarray):
        t = graphc.from_numpy(x)
        return t.to(device) if device is not None else t
    return x


def graphc_inputs(sample, device=None):
    return tuple(to_graphc(x, device) for x in sample.inputs)


def copy_same_layout(a: np.ndarray) -> np.ndarray:
    """A copy of ``a`` with the same strides (so numpy kernels see the same memory order)."""
    t = graphc.from_numpy(a)
    flat = t._storage.array.copy()
    item = a.itemsize
    return np.ndarray(a.shape, a.dtype, buffer=flat, offset=t.storage_offset() * item,
                      strides=a.strides) if a.size else a.copy()


def run_eager(op, sample):
    """Run a sample through dispatch; for ops that write, return the written tensor's values."""
    if Flag.RANDOM in op.flags:
        graphc.manual_seed(SEED)
    inputs = sample.inputs
    if Flag.MUTATES in op.flags:
        inputs = (copy_same_layout(inputs[0]),) + tuple(inputs[1:])
    g = tuple(to_graphc(x) for x in inputs)
    return dispatch(op, *g, **sample.attrs), g


def kernel_reference(op, sample, upcast: bool = False):
    """The op's numpy kernel on the sample, with the inputs converted as the dtype rule says.

    ``upcast`` evaluates float32 work in float64 (an accuracy reference).
    """
    if Flag.RANDOM in op.flags:
        graphc.manual_seed(SEED)
    g = tuple(to_graphc(x) for x in sample.inputs)
    casts, out_dtypes = op.dtype_rule(op.name, *g, **sample.attrs)
    arrays = []
    for x, c in zip(sample.inputs, casts):
        if isinstance(x, np.ndarray):
            x = copy_same_layout(x)
            a = x if c is None else x.astype(c.np)
        elif c is not None and x is not None:
            a = np.asarray(x, c.np)
        else:
            a = x
        if upcast and isinstance(a, np.ndarray) and a.dtype == np.float32:
            a = a.astype(np.float64)
        arrays.append(a)
    attrs = dict(sample.attrs)
    if upcast and attrs.get("dtype") is dt.float32:
        attrs["dtype"] = dt.float64
    with np.errstate(all="ignore"):
        result = op.kernel(*arrays, **attrs)
    if Flag.MUTATES in op.flags:
        result = arrays[0]
    results = (result,) if op.outputs == 1 else tuple(result)
    with np.errstate(all="ignore"):
        return [np.asarray(r).astype(d.np) for r, d in zip(results, out_dtypes)]


def as_list(out):
    return list(out) if isinstance(out, tuple) else [out]


def assert_same(actual: np.ndarray, expected: np.ndarray, exact: bool = True, rtol=1e-5, atol=1e-6,
                msg: str = ""):
    assert actual.shape == expected.shape, f"{msg}: shape {actual.shape} != {expected.shape}"
    assert actual.dtype == expected.dtype, f"{msg}: dtype {actual.dtype} != {expected.dtype}"
    if exact or actual.dtype.kind != "f":
        np.testing.assert_array_equal(actual, expected, err_msg=msg)
    else:
        np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True,
                                   err_msg=msg)
