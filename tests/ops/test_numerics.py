"""isclose, allclose, equal, nan_to_num, addcmul, addcdiv, addmm, baddbmm, log10, hypot,
var_mean, std_mean, count_nonzero, diff, and the small helpers (is_tensor, numel,
is_floating_point, detach_): against numpy and (where installed) torch."""

from __future__ import annotations

import math

import numpy as np
import pytest

import graphc
from graphc.errors import DTypeError

RNG = np.random.default_rng(2)


def _t(a):
    return graphc.from_numpy(np.asarray(a))


def test_isclose_allclose_equal_match_numpy():
    a = np.array([1.0, math.nan, math.inf, -math.inf, 1.0, 0.0])
    b = np.array([1.0 + 1e-9, math.nan, math.inf, math.inf, 1.1, 1e-9])
    for kw in ({}, {"equal_nan": True}, {"rtol": 0.2}, {"atol": 0.0, "rtol": 0.0}):
        np.testing.assert_array_equal(graphc.isclose(_t(a), _t(b), **kw).numpy(),
                                      np.isclose(a, b, **kw))
    np.testing.assert_array_equal(_t(a).isclose(_t(b), 1e-5, 1e-8, True).numpy(),
                                  np.isclose(a, b, equal_nan=True))
    assert graphc.allclose(_t(a[:1]), _t(b[:1])) is True
    assert graphc.allclose(_t(a), _t(b)) is False
    assert _t(a[:2]).allclose(_t(b[:2]), equal_nan=True) is True
    assert graphc.equal(_t([1, 2]), _t([1, 2])) is True
    assert graphc.equal(_t([1, 2]), _t([1, 3])) is False
    assert _t([1, 2]).equal(_t([[1, 2]])) is False  # shapes differ
    with pytest.raises(DTypeError, match="isclose: expected both tensors to have one dtype"):
        graphc.isclose(_t([1, 2]), _t([1.0, 2.0]))


def test_nan_to_num_defaults_methods_and_in_place():
    a = np.array([math.nan, math.inf, -math.inf, 2.0], np.float32)
    np.testing.assert_array_equal(graphc.nan_to_num(_t(a)).numpy(), np.nan_to_num(a))
    np.testing.assert_array_equal(_t(a).nan_to_num(1.0, 2.0, -3.0).numpy(), [1, 2, -3, 2])
    x = _t(a.copy())
    assert x.nan_to_num_(posinf=5.0) is x
    np.testing.assert_array_equal(x.numpy(), [0, 5, np.finfo(np.float32).min, 2])
    np.testing.assert_array_equal(graphc.nan_to_num(_t([1, 2])).numpy(), [1, 2])


def test_pointwise_products_and_in_place_forms():
    x, a, b = (RNG.standard_normal((3, 4)) for _ in range(3))
    np.testing.assert_allclose(graphc.addcmul(_t(x), _t(a), _t(b), value=0.5).numpy(),
                               x + 0.5 * a * b)
    np.testing.assert_allclose(_t(x).addcdiv(_t(a), _t(b), value=-2).numpy(), x - 2 * a / b)
    y = _t(x.copy())
    y.addcmul_(_t(a), _t(b))
    np.testing.assert_allclose(y.numpy(), x + a * b)
    with pytest.raises(DTypeError, match="addcdiv: integer division is not supported"):
        graphc.addcdiv(_t([1]), _t([1]), _t([2]))
    m1, m2 = RNG.standard_normal((3, 5)), RNG.standard_normal((5, 4))
    np.testing.assert_allclose(graphc.addmm(_t(x), _t(m1), _t(m2), beta=0.5, alpha=2).numpy(),
                               0.5 * x + 2 * m1 @ m2)
    nan = _t(np.full((3, 4), math.nan))
    np.testing.assert_allclose(nan.addmm(_t(m1), _t(m2), beta=0).numpy(), m1 @ m2)
    b1, b2 = RNG.standard_normal((2, 3, 5)), RNG.standard_normal((2, 5, 4))
    z = _t(np.zeros((2, 3, 4)))
    z.baddbmm_(_t(b1), _t(b2), alpha=3)
    np.testing.assert_allclose(z.numpy(), 3 * b1 @ b2)


def test_log10_hypot():
    x = RNG.uniform(0.1, 10, (3, 4))
    np.testing.assert_allclose(graphc.log10(_t(x)).numpy(), np.log10(x), rtol=1e-14)
    np.testing.assert_allclose(_t(x).hypot(_t(-x.T.copy().T)).numpy(), np.hypot(x, -x))
    big = np.array([1e300, 3.0, math.inf, 0.0])
    other = np.array([1e300, 4.0, math.nan, 0.0])
    np.testing.assert_array_equal(graphc.hypot(_t(big), _t(other)).numpy(), np.hypot(big, other))


def test_var_mean_std_mean_count_nonzero_diff():
    x = RNG.standard_normal((3, 4))
    var, mean = graphc.var_mean(_t(x), 1, keepdim=True)
    np.testing.assert_allclose(var.numpy(), x.var(1, ddof=1, keepdims=True))
    np.testing.assert_allclose(mean.numpy(), x.mean(1, keepdims=True))
    std, mean = graphc.std_mean(_t(x), correction=0)
    np.testing.assert_allclose(std.numpy(), x.std())
    np.testing.assert_allclose(mean.numpy(), x.mean())
    z = np.array([[0, 1, 2], [0, 0, 3]])
    assert graphc.count_nonzero(_t(z)).item() == 3
    np.testing.assert_array_equal(_t(z).count_nonzero(0).numpy(), [0, 1, 2])
    np.testing.assert_array_equal(graphc.diff(_t(z)).numpy(), np.diff(z))
    np.testing.assert_array_equal(_t(z).diff(n=2, dim=1, prepend=_t([[5], [6]])).numpy(),
                                  np.diff(z, 2, 1, prepend=[[5], [6]]))
    np.testing.assert_array_equal(graphc.diff(_t([True, False, False])).numpy(), [True, False])


def test_small_helpers():
    x = graphc.zeros(2, 3)
    assert graphc.is_tensor(x) and not graphc.is_tensor(np.zeros(2))
    assert graphc.numel(x) == 6
    assert graphc.is_floating_point(x) and not graphc.is_floating_point(_t([1]))
    assert x.is_cuda is False
    y = graphc.ones(3, requires_grad=True) * 2
    assert y.grad_fn is not None
    assert y.detach_() is y and y.grad_fn is None and not y.requires_grad


def test_values_and_gradients_match_torch():
    torch = pytest.importorskip("torch")
    arrays = [RNG.uniform(0.5, 2, (3, 4)) for _ in range(3)] + [RNG.standard_normal((4, 4))]
    ours = [graphc.tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]

    def run(lib, x, a, b, m):
        return (lib.addcdiv(x, a, b, value=0.3) * lib.hypot(a, b) + lib.log10(x)
                + lib.addmm(x, a, m, beta=0.5, alpha=-1) + lib.nan_to_num(a / b)
                + lib.diff(x, dim=0).sum() + lib.var_mean(x, 1, keepdim=True)[0])

    out, expected = run(graphc, *ours), run(torch, *theirs)
    np.testing.assert_allclose(out.detach().numpy(), expected.detach().numpy(), rtol=1e-12)
    cot = RNG.standard_normal((3, 4))
    out.backward(graphc.tensor(cot))
    expected.backward(torch.tensor(cot))
    for o, t in zip(ours, theirs):
        np.testing.assert_allclose(o.grad.numpy(), t.grad.numpy(), rtol=1e-10, atol=1e-12)
    t = torch.tensor([math.nan, math.inf, -math.inf, 1.0], dtype=torch.float32)
    np.testing.assert_array_equal(graphc.nan_to_num(_t(t.numpy())).numpy(),
                                  torch.nan_to_num(t).numpy())
    assert graphc.finfo(graphc.float32).eps == torch.finfo(torch.float32).eps
