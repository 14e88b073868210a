"""``arange`` computed inside the fused kernels that read it (no buffer, no fallback).

Element i of an arange is ``start + i·step``, formed as eager forms it (float64 for float
dtypes or float arguments, else int64), so compiled results equal eager's bit for bit.
Index values computed from aranges alone (a causal mask) are computed where each kernel
reads them: attention's scores kernel compares indices instead of reading a T×T mask.

Static aranges fold to constants in the default passes, so the static cases here compile
with the passes minus constant folding; the symbolic ones (``dynamic=True``) keep them.
"""

from __future__ import annotations

import numpy as np
import pytest

import graphc
import graphc.nn.functional as F
from graphc.passes import PassManager
from graphc.passes.cse import cse
from graphc.passes.dce import dce
from graphc.passes.decompose import decompose
from graphc.passes.functionalize import functionalize
from graphc.passes.shape_prop import refresh_shapes
from graphc.passes.simplify import simplify


@pytest.fixture(autouse=True, scope="module")
def private_cache_dir(tmp_path_factory):
    """Compile into a cache of this module's own (never the user's ~/.cache/graphc)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRAPHC_CACHE_DIR", str(tmp_path_factory.mktemp("graphc-cache")))
        yield


def no_folding() -> PassManager:
    """The default passes without constant folding: static aranges stay in the graph."""
    return PassManager([functionalize, decompose, simplify, cse, dce, refresh_shapes])


def assert_bit_exact(actual, expected) -> None:
    actual = actual if isinstance(actual, tuple) else (actual,)
    expected = expected if isinstance(expected, tuple) else (expected,)
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert a.dtype == e.dtype and tuple(a.shape) == tuple(e.shape), (a, e)
        np.testing.assert_array_equal(a.numpy(), e.numpy())


def assert_native(f, *args, computes_arange: bool = True) -> graphc.compiler.explain.Explanation:
    """No fallback, no arange left outside a kernel, and (``computes_arange``) a kernel
    computing one."""
    e = graphc.explain(f, *args)
    assert e.compiled and not e.fallbacks, str(e)
    assert "= arange(" not in e.graphs["optimized"], e.graphs["optimized"]
    if computes_arange:
        assert any("arange" in k["ops"].split(" -> ") for k in e.kernels), e.kernels
    return e


DTYPES = [graphc.int64, graphc.int32, graphc.float32, graphc.float64]
RANGES = [  # start, end, step
    (0, 5, 1), (3, 17, 4), (5, -4, -3), (-2, 7, 2), (0, 0, 1), (7, 8, 1), (9, 4, -1),
    (0.5, 4.0, 0.3), (-1.25, 3, 0.75), (2, -1.5, -0.35),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("start, end, step", RANGES, ids=str)
def test_static_arange_forms_match_eager_bit_for_bit(dtype, start, end, step):
    def fn(x):
        a = graphc.arange(start, end, step, dtype=dtype)
        return a, x.to(dtype) + a, graphc.ge(a.unsqueeze(-1), a), a * 3, x.to(dtype) - a.flip(0)
    n = graphc.arange(start, end, step, dtype=dtype).shape[0]
    x = graphc.randn(2, n)
    f = graphc.compile(fn, fullgraph=True, passes=no_folding())
    with graphc.no_grad():
        assert_bit_exact(f(x), fn(x))
    assert_native(f, x)


def test_float_arange_rounds_as_eager_forms_it():
    """start + i·step in float64 then rounded: large starts and awkward steps expose any
    other order (a float32 sum, a fused multiply-add)."""
    def fn(x):
        return (graphc.arange(1e7 + 0.1, 1e7 + 50, 0.7, dtype=graphc.float32) + x,
                graphc.arange(0.1, 30.0, 0.1, dtype=graphc.float64) + x.double(),
                graphc.arange(-3.3, 40.0, 1.1, dtype=graphc.int64) + x.long())
    x = graphc.zeros(())
    f = graphc.compile(fn, fullgraph=True, passes=no_folding())
    with graphc.no_grad():
        assert_bit_exact(f(x), fn(x))
    assert_native(f, x)


SYMBOLIC = {
    "broadcast add": lambda x: x + graphc.arange(x.shape[-1]),
    "start and step": lambda x: x * graphc.arange(2, 3 * x.shape[-1] + 2, 3),
    "negative step from a size": lambda x: x - graphc.arange(x.shape[-1], 0, -1),
    "float32": lambda x: x + graphc.arange(x.shape[-1], dtype=graphc.float32) * 0.1,
    "float64": lambda x: x.double() + graphc.arange(x.shape[-1], dtype=graphc.float64) / 3,
    "int32": lambda x: (graphc.arange(x.shape[-1], dtype=graphc.int32) * 7).unsqueeze(0) + x.int(),
    "size 0": lambda x: (graphc.arange(x.shape[-1], x.shape[-1]), x * 2),
    "size 1": lambda x: x + graphc.arange(x.shape[-1], x.shape[-1] + 1),
    "an output on its own": lambda x: graphc.arange(x.shape[-1]),
    "mask": lambda x: x.masked_fill(graphc.arange(x.shape[-1]) < graphc.arange(x.shape[0])
                                    .unsqueeze(-1), 0.0),
    "views": lambda x: x + graphc.arange(x.shape[0]).unsqueeze(1).expand(*x.shape).t().t(),
    "sliced": lambda x: x[:, 1:] + graphc.arange(x.shape[-1])[1:],
    "row reduction": lambda x: (x + graphc.arange(x.shape[-1])).amax(-1),
    "arange reduced": lambda x: graphc.arange(x.shape[-1]).sum() + x.long(),
}


@pytest.mark.parametrize("name", list(SYMBOLIC))
def test_symbolic_arange_in_kernels_matches_eager_with_one_program(name):
    fn = SYMBOLIC[name]
    f = graphc.compile(fn, dynamic=True, fullgraph=True)
    with graphc.no_grad():
        for n in (4, 7, 5):  # the third size reuses the program
            x = graphc.randn(n + 1, n)
            assert_bit_exact(f(x), fn(x))
    assert len(f.entries) == 1
    assert_native(f, x)


def test_a_mask_is_an_index_comparison_in_the_kernel_reading_it():
    """The mask broadcast over a batch is computed in the masked_fill's kernel: one
    kernel, no (T, T) buffer."""
    def fn(x):
        t = x.shape[-2]
        return x.masked_fill(~graphc.ge(graphc.arange(t).unsqueeze(-1), graphc.arange(t)), 0.0)
    f = graphc.compile(fn, dynamic=True, fullgraph=True)
    with graphc.no_grad():
        for n in (5, 6, 7):
            x = graphc.randn(2, n, n)
            np.testing.assert_array_equal(f(x).numpy(), np.tril(x.numpy()))
    e = assert_native(f, x)
    assert [k["ops"] for k in e.kernels] == ["arange -> unsqueeze -> ge -> logical_not -> masked_fill"]


def test_causal_attention_and_tril_compile_with_no_fallback_and_one_program():
    def attend(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    def triangles(x):
        return graphc.tril(x) - graphc.triu(x, 2)
    fa = graphc.compile(attend, dynamic=True, fullgraph=True)
    ft = graphc.compile(triangles, dynamic=True, fullgraph=True)
    with graphc.no_grad():
        for t in (6, 9):
            q, k, v = (graphc.randn(2, 3, t, 8) for _ in range(3))
            np.testing.assert_allclose(fa(q, k, v).numpy(), attend(q, k, v).numpy(),
                                       rtol=1e-5, atol=1e-6)
            x = graphc.randn(2, t, t + 1)
            xn = x.numpy()
            np.testing.assert_array_equal(ft(x).numpy(), np.tril(xn) - np.triu(xn, 2))
    assert len(fa.entries) == 1 and len(ft.entries) == 1
    e = assert_native(fa, q, k, v)
    # the mask is compared in the scores' matmul kernel: no kernel stores it
    assert [k["kind"] for k in e.kernels] == ["matmul", "reduction", "matmul"], e.kernels
    assert "ge" in e.kernels[0]["ops"].split(" -> ")
    assert_native(ft, x)


def test_an_index_value_some_reader_cannot_compute_is_stored_by_a_kernel():
    """A matmul operand, a graph output and a mask inside a non-innermost reduction's
    kernel are stored (natively), and their decisions say why."""
    def fn(x):
        a = graphc.arange(x.shape[-1], dtype=graphc.float32)
        return x @ a, x.masked_fill(graphc.arange(x.shape[-1]) > 2, 0).sum(0), a
    f = graphc.compile(fn, dynamic=True, fullgraph=True)
    with graphc.no_grad():
        for n in (3, 5):
            x = graphc.randn(4, n)
            for a, b in zip(f(x), fn(x)):
                np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    e = assert_native(f, x)
    stored = [d for d in e.fusion if "index value stored" in str(d)]
    assert any("matmul operand" in str(d) for d in stored), e.fusion
    assert any("reduction kernels" in str(d) for d in stored), e.fusion
