"""tril/triu, sort/argsort/topk, multinomial/randperm/bernoulli, cumsum/cumprod and
scatter/take_along_dim/index_fill/index_add: the public calling conventions, against numpy
(and against torch where it is installed), the random draws' statistics with a fixed
seed, and tril's causal mask compiled natively.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import graphc
from graphc import dtype as dt
from graphc.autograd import gradcheck

RNG = np.random.default_rng(7)


def t(a):
    return graphc.tensor(np.asarray(a))


# ---- tril / triu --------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(4, 6), (6, 4), (2, 3, 5, 5)])
@pytest.mark.parametrize("diagonal", [-2, 0, 1, 7])
def test_tril_triu_match_numpy(shape, diagonal):
    x = RNG.standard_normal(shape)
    np.testing.assert_array_equal(graphc.tril(t(x), diagonal).numpy(), np.tril(x, diagonal))
    np.testing.assert_array_equal(t(x).triu(diagonal=diagonal).numpy(), np.triu(x, diagonal))
    y = t(x)
    assert y.tril_(diagonal) is y
    np.testing.assert_array_equal(y.numpy(), np.tril(x, diagonal))


def test_tril_of_a_vector_is_an_error_naming_the_shape():
    with pytest.raises(graphc.ShapeError, match=r"tril: .*at least 2 dimensions.*\(3,\)"):
        graphc.tril(graphc.ones(3))


def test_tril_zeroes_nan_above_the_diagonal_and_keeps_bool():
    x = t(np.full((3, 3), np.nan))
    np.testing.assert_array_equal(np.isnan(graphc.tril(x).numpy()), np.tril(np.ones((3, 3))) == 1)
    b = graphc.ones(2, 2, dtype=graphc.bool).triu()
    assert b.dtype is dt.bool_ and b.tolist() == [[True, True], [False, True]]


def _causal(x):
    n = x.shape[-1]
    return x.masked_fill(graphc.tril(graphc.ones(n, n))[:n, :n] == 0, -math.inf).softmax(-1)


def _causal_reference(x):
    n = x.shape[-1]
    s = np.where(np.tril(np.ones((n, n))) == 0, -np.inf, x)
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_causal_mask_compiles_natively_and_matches_eager():
    f = graphc.compile(_causal, dynamic=False)
    x = graphc.randn(2, 5, 5)
    with graphc.no_grad():
        y = f(x)
    np.testing.assert_allclose(y.numpy(), _causal_reference(x.numpy()), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y.numpy(), _causal(x).numpy(), rtol=1e-5, atol=1e-6)
    e = graphc.explain(f, x)
    assert e.compiled and e.fallbacks == [], str(e)


def test_causal_mask_with_symbolic_sizes_serves_every_size_with_one_program():
    """The aranges behind tril's mask take the size as a symbol: after a second size the
    program is compiled once for all sizes, and it keeps matching eager."""
    f = graphc.compile(_causal, dynamic=True)
    for n in (4, 6, 9, 5):
        x = graphc.randn(2, n, n)
        with graphc.no_grad():
            y = f(x)
        np.testing.assert_allclose(y.numpy(), _causal_reference(x.numpy()), rtol=1e-5,
                                   atol=1e-6)
    e = graphc.explain(f, x)
    assert e.compiled and e.sizes, str(e)
    assert len(f.recompiles) == 0, f.recompiles
    # the one remaining fallback: arange of a symbolic size (no native lowering yet)
    assert {fb["reason"] for fb in e.fallbacks} <= {"arange has no LLVM lowering"}, str(e)


def test_tril_gradient_is_tril_of_the_gradient():
    x = graphc.tensor(RNG.standard_normal((3, 4)), requires_grad=True)
    assert gradcheck(lambda v: graphc.triu(v, -1), [x])
    g = RNG.standard_normal((3, 4))
    graphc.tril(x, 1).backward(t(g))
    np.testing.assert_array_equal(x.grad.numpy(), np.tril(g, 1))


# ---- sort / argsort / topk ----------------------------------------------------------------

def test_sort_returns_named_values_and_int64_indices():
    x = t([3.0, np.nan, 1.0, 3.0, -0.0, 0.0, -np.inf])
    values, indices = graphc.sort(x)
    out = x.sort(descending=True)
    assert indices.dtype is dt.int64 and out.indices.dtype is dt.int64
    np.testing.assert_array_equal(indices.numpy(), [6, 4, 5, 2, 0, 3, 1])  # nan last, ties in order
    np.testing.assert_array_equal(out.indices.numpy(), [1, 0, 3, 2, 4, 5, 6])  # nan first
    np.testing.assert_array_equal(values.numpy(), x.numpy()[indices.numpy()])
    np.testing.assert_array_equal(graphc.argsort(x, descending=True, stable=True).numpy(),
                                  out.indices.numpy())


def test_stable_sort_keeps_equal_values_in_order_along_any_dim():
    x = RNG.integers(0, 3, (5, 8)).astype(np.int32)
    for dim in (0, 1, -1):
        got = graphc.sort(t(x), dim, stable=True).indices.numpy()
        np.testing.assert_array_equal(got, np.argsort(x, axis=dim, kind="stable"))
        down = graphc.argsort(t(x), dim, descending=True, stable=True).numpy()
        expected = np.argsort(-x.astype(np.int64), axis=dim, kind="stable")
        np.testing.assert_array_equal(down, expected)


def test_topk_values_indices_and_errors():
    x = RNG.permutation(20).astype(np.float64).reshape(4, 5)
    values, indices = graphc.topk(t(x), 2)
    np.testing.assert_array_equal(values.numpy(), -np.sort(-x, axis=1)[:, :2])
    np.testing.assert_array_equal(np.take_along_axis(x, indices.numpy(), 1), values.numpy())
    small = t(x).topk(3, dim=0, largest=False)
    np.testing.assert_array_equal(small.values.numpy(), np.sort(x, axis=0)[:3])
    assert graphc.topk(t([1.0, np.nan, 2.0]), 1).indices.tolist() == [1]
    with pytest.raises(graphc.OpIndexError, match="topk: selected index k=6 out of range"):
        graphc.topk(t(x), 6)
    with pytest.raises(graphc.DTypeError, match="topk: .*bool"):
        graphc.topk(graphc.ones(3, dtype=graphc.bool), 1)


def test_sort_and_topk_gradients_go_back_to_their_positions():
    x = graphc.tensor(RNG.permutation(12).astype(np.float64).reshape(3, 4), requires_grad=True)
    assert gradcheck(lambda v: graphc.sort(v, 0, descending=True).values, [x])
    assert gradcheck(lambda v: graphc.topk(v, 2).values, [x])
    g = RNG.standard_normal((3, 2))
    vals, idx = graphc.topk(x, 2)
    vals.backward(t(g))
    expected = np.zeros((3, 4))
    np.put_along_axis(expected, idx.numpy(), g, 1)
    np.testing.assert_array_equal(x.grad.numpy(), expected)


def test_sort_topk_argsort_match_torch():
    torch = pytest.importorskip("torch")
    x = RNG.integers(-3, 4, (4, 9)).astype(np.float32)
    x[0, 2], x[1, 5], x[3, 0] = np.nan, np.inf, -0.0
    for dim in (0, 1):
        for descending in (False, True):
            ours = graphc.sort(t(x), dim, descending)
            theirs = torch.sort(torch.from_numpy(x), dim, descending)
            np.testing.assert_array_equal(ours.values.numpy(), theirs.values.numpy())
            np.testing.assert_array_equal(ours.indices.numpy(), theirs.indices.numpy())
            stable = torch.argsort(torch.from_numpy(x), dim=dim, descending=descending,
                                   stable=True)
            np.testing.assert_array_equal(
                graphc.argsort(t(x), dim, descending, stable=True).numpy(), stable.numpy())
    distinct = RNG.permutation(36).astype(np.float64).reshape(4, 9)
    for largest in (True, False):
        ours = graphc.topk(t(distinct), 3, 1, largest)
        theirs = torch.topk(torch.from_numpy(distinct), 3, 1, largest)
        np.testing.assert_array_equal(ours.values.numpy(), theirs.values.numpy())
        np.testing.assert_array_equal(ours.indices.numpy(), theirs.indices.numpy())


# ---- multinomial / randperm / bernoulli ---------------------------------------------------

def test_multinomial_is_reproducible_with_a_seeded_generator():
    p = t([0.1, 0.2, 0.3, 0.4])
    a = graphc.multinomial(p, 10, True, generator=graphc.Generator(5))
    b = graphc.multinomial(p, 10, True, generator=graphc.Generator(5))
    assert a.dtype is dt.int64 and a.shape == (10,)
    assert a.tolist() == b.tolist()
    graphc.manual_seed(3)
    c = p.multinomial(4)
    graphc.manual_seed(3)
    assert graphc.multinomial(p, 4).tolist() == c.tolist()


def test_multinomial_with_replacement_follows_the_weights():
    weights = np.array([1.0, 2.0, 3.0, 0.0, 4.0])
    draws = graphc.multinomial(t(weights), 20000, replacement=True,
                               generator=graphc.Generator(11)).numpy()
    counts = np.bincount(draws, minlength=5)
    expected = 20000 * weights / weights.sum()
    assert counts[3] == 0
    keep = expected > 0
    chi2 = ((counts[keep] - expected[keep]) ** 2 / expected[keep]).sum()
    assert chi2 < 20.0, (counts, expected)  # 3 degrees of freedom: p(chi2 > 20) < 0.0002


def test_multinomial_without_replacement_draws_distinct_categories_in_weight_order():
    weights = np.array([[5.0, 1.0, 0.0, 3.0, 1.0], [1.0, 1.0, 1.0, 1.0, 1.0]])
    gen = graphc.Generator(2)
    firsts = []
    for _ in range(3000):
        rows = graphc.multinomial(t(weights), 4, generator=gen).numpy()
        for row in rows:
            assert len(set(row.tolist())) == 4
        assert 2 not in rows[0]  # a zero weight is drawn only after every positive one
        firsts.append(rows[0][0])
    counts = np.bincount(firsts, minlength=5)
    expected = 3000 * weights[0] / weights[0].sum()
    keep = expected > 0
    assert ((counts[keep] - expected[keep]) ** 2 / expected[keep]).sum() < 20.0, counts


def test_multinomial_errors_match_pytorch_cases():
    with pytest.raises(graphc.OpValueError, match="multinomial: row 0 .* sums to 0"):
        graphc.multinomial(graphc.zeros(2), 1)
    with pytest.raises(graphc.OpValueError, match="multinomial: .*negative"):
        graphc.multinomial(t([-1.0, 2.0]), 1)
    with pytest.raises(graphc.OpValueError, match="multinomial: .*inf, nan"):
        graphc.multinomial(t([np.inf, 1.0]), 1)
    with pytest.raises(graphc.OpValueError, match="multinomial: cannot sample 3 > 2"):
        graphc.multinomial(t([1.0, 1.0]), 3)
    with pytest.raises(graphc.OpValueError, match="num_samples <= 0"):
        graphc.multinomial(t([1.0, 1.0]), 0)
    with pytest.raises(graphc.ShapeError, match="1-D or 2-D"):
        graphc.multinomial(graphc.ones(2, 2, 2), 1)
    with pytest.raises(graphc.DTypeError, match="floating-point"):
        graphc.multinomial(t([1, 1]), 1)
    # PyTorch draws zero-weight categories once the others are used up (no error)
    assert sorted(graphc.multinomial(t([1.0, 0.0, 0.0]), 2).tolist())[0] == 0


def test_randperm_and_bernoulli():
    p = graphc.randperm(50, generator=graphc.Generator(1))
    assert p.dtype is dt.int64 and sorted(p.tolist()) == list(range(50))
    assert p.tolist() == graphc.randperm(50, generator=graphc.Generator(1)).tolist()
    assert graphc.randperm(4, dtype=graphc.float32).dtype is dt.float32
    with pytest.raises(graphc.OpValueError, match="randperm: n must be non-negative"):
        graphc.randperm(-1)
    probs = t(np.array([0.0, 1.0, 0.25] * 4000))
    draws = graphc.bernoulli(probs, generator=graphc.Generator(4)).numpy().reshape(-1, 3)
    assert (draws[:, 0] == 0).all() and (draws[:, 1] == 1).all()
    assert abs(draws[:, 2].mean() - 0.25) < 0.03
    x = graphc.zeros(10000, dtype=graphc.int64)
    assert x.bernoulli_(0.7, generator=graphc.Generator(9)) is x
    assert set(x.tolist()) == {0, 1} and abs(x.float().mean().item() - 0.7) < 0.03
    with pytest.raises(graphc.OpValueError, match=r"bernoulli: expected every probability"):
        graphc.bernoulli(t([1.5]))


# ---- cumsum / cumprod ---------------------------------------------------------------------

def test_cumsum_cumprod_dtypes_and_values():
    x = RNG.integers(-3, 4, (3, 4)).astype(np.int32)
    assert graphc.cumsum(t(x), 1).dtype is dt.int64
    assert graphc.cumprod(graphc.ones(3, dtype=graphc.bool), 0).dtype is dt.int64
    assert t(x).cumsum(0, dtype=graphc.float64).dtype is dt.float64
    np.testing.assert_array_equal(graphc.cumsum(t(x), 0).numpy(), np.cumsum(x, 0))
    np.testing.assert_array_equal(t(x).cumprod(-1).numpy(), np.cumprod(x, -1))
    y = t(x)
    y.cumsum_(1)
    assert y.dtype is dt.int32
    np.testing.assert_array_equal(y.numpy(), np.cumsum(x, 1))


def test_cumprod_gradient_is_right_with_zeros():
    x = RNG.standard_normal((3, 6))
    x[0, 2] = 0.0
    x[1, 1] = x[1, 4] = 0.0
    leaf = graphc.tensor(x, requires_grad=True)
    assert gradcheck(lambda v: graphc.cumprod(v, 1), [leaf])
    assert gradcheck(lambda v: graphc.cumsum(v, 0), [leaf])


def test_cumsum_cumprod_gradients_match_torch():
    torch = pytest.importorskip("torch")
    x = RNG.standard_normal((4, 5))
    x[1, 2] = 0.0
    g = RNG.standard_normal((4, 5))
    for name in ("cumsum", "cumprod"):
        ours = graphc.tensor(x, requires_grad=True)
        getattr(graphc, name)(ours, 1).backward(t(g))
        theirs = torch.tensor(x, requires_grad=True)
        getattr(torch, name)(theirs, 1).backward(torch.from_numpy(g))
        np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=1e-12,
                                   atol=1e-12)


# ---- scatter / take_along_dim / index_fill / index_add ------------------------------------

def test_scatter_forms():
    x = np.zeros((3, 5))
    index = np.array([[0, 1, 2, 0, 0], [2, 0, 0, 1, 2]])
    src = np.arange(1.0, 11.0).reshape(2, 5)
    expected = x.copy()
    for i in range(2):
        for j in range(5):
            expected[index[i, j], j] = src[i, j]
    np.testing.assert_array_equal(graphc.scatter(t(x), 0, t(index), t(src)).numpy(), expected)
    y = t(x)
    assert y.scatter_(0, t(index), t(src)) is y
    np.testing.assert_array_equal(y.numpy(), expected)
    filled = graphc.scatter(t(x), 1, t(np.array([[4], [0], [2]])), value=7.0).numpy()
    assert filled.sum() == 21.0 and filled[0, 4] == filled[1, 0] == filled[2, 2] == 7.0
    added = t(np.zeros(4)).scatter_add(0, t(np.array([1, 1, 3])), t(np.ones(3)))
    assert added.tolist() == [0.0, 2.0, 0.0, 1.0]
    mult = graphc.scatter(t(np.full(3, 2.0)), 0, t(np.array([0, 0])), t(np.array([3.0, 5.0])),
                          reduce="multiply")
    assert mult.tolist() == [30.0, 2.0, 2.0]


def test_scatter_errors():
    x = graphc.zeros(3, 4)
    with pytest.raises(graphc.OpIndexError, match="scatter: index 3 is out of bounds"):
        graphc.scatter(x, 0, t(np.array([[3]])), graphc.ones(1, 1))
    with pytest.raises(graphc.DTypeError, match="scatter: expected src of the tensor's dtype"):
        graphc.scatter(x, 0, t(np.array([[0]])), t(np.ones((1, 1), np.float32)).double())
    with pytest.raises(graphc.DTypeError, match="scatter: expected index"):
        graphc.scatter(x, 0, t(np.array([[0.0]])), t(np.ones((1, 1), np.float32)))
    with pytest.raises(graphc.OpTypeError, match="scatter: expected exactly one of src"):
        graphc.scatter(x, 0, t(np.array([[0]])))


def test_scatter_gradient_with_a_larger_src():
    x = graphc.tensor(RNG.standard_normal((3, 5)), requires_grad=True)
    src = graphc.tensor(RNG.standard_normal((4, 3)), requires_grad=True)
    index = t(np.array([[0, 2], [4, 1], [3, 0]]))
    assert gradcheck(lambda a, b: graphc.scatter(a, 1, index, b), [x, src])
    assert gradcheck(lambda a, b: graphc.scatter_add(a, 1, index, b), [x, src])


def test_take_along_dim_index_fill_index_add_match_numpy():
    x = RNG.standard_normal((3, 4))
    idx = np.argsort(x, axis=1)[:, :2]
    np.testing.assert_array_equal(graphc.take_along_dim(t(x), t(idx), 1).numpy(),
                                  np.take_along_axis(x, idx, 1))
    np.testing.assert_array_equal(t(x).take_along_dim(t(np.array([11, 0]))).numpy(),
                                  x.reshape(-1)[[11, 0]])
    filled = t(x).index_fill(1, t(np.array([0, -1])), -5.0).numpy()
    expected = x.copy()
    expected[:, [0, -1]] = -5.0
    np.testing.assert_array_equal(filled, expected)
    y = t(x)
    y.index_add_(0, t(np.array([2, 2])), t(np.ones((2, 4))), alpha=3)
    expected = x.copy()
    expected[2] += 6.0
    np.testing.assert_allclose(y.numpy(), expected)
    with pytest.raises(graphc.OpIndexError, match="index_add: index -1 is out of bounds"):
        graphc.index_add(t(x), 0, t(np.array([-1])), t(np.ones((1, 4))))
