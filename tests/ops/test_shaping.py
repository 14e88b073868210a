"""flip, roll, repeat, repeat_interleave, tile, diagonal, diag, tensor_split, meshgrid:
against numpy and (where installed) torch, eager and compiled, with gradients."""

from __future__ import annotations

import numpy as np
import pytest

import graphc
from graphc.errors import OpValueError, ShapeError


def _t(a):
    return graphc.from_numpy(np.asarray(a))


RNG = np.random.default_rng(0)
A = RNG.standard_normal((3, 4, 5))


def test_flip_roll_repeat_tile_match_numpy():
    x = _t(A)
    np.testing.assert_array_equal(graphc.flip(x, (0, 2)).numpy(), np.flip(A, (0, 2)))
    np.testing.assert_array_equal(x.flip(-1).numpy(), A[..., ::-1])
    np.testing.assert_array_equal(graphc.fliplr(x).numpy(), np.fliplr(A))
    np.testing.assert_array_equal(graphc.flipud(x).numpy(), np.flipud(A))
    np.testing.assert_array_equal(graphc.roll(x, 2, 1).numpy(), np.roll(A, 2, 1))
    np.testing.assert_array_equal(x.roll((1, -7), (0, 2)).numpy(), np.roll(A, (1, -7), (0, 2)))
    np.testing.assert_array_equal(graphc.roll(x, 4).numpy(), np.roll(A, 4))
    np.testing.assert_array_equal(x.repeat(2, 1, 1, 3).numpy(), np.tile(A, (2, 1, 1, 3)))
    np.testing.assert_array_equal(x.repeat((1, 2, 1)).numpy(), np.tile(A, (1, 2, 1)))
    np.testing.assert_array_equal(graphc.tile(x, (2,)).numpy(), np.tile(A, (1, 1, 2)))
    np.testing.assert_array_equal(x.tile(2, 1, 1, 1).numpy(), np.tile(A, (2, 1, 1, 1)))
    assert not hasattr(graphc, "repeat")  # Tensor.repeat only, as in PyTorch


def test_flip_and_repeat_copy_not_view():
    x = _t(A.copy())
    for y in (x.flip(0), x.repeat(1, 1, 1), x.roll(1, 0), x.repeat_interleave(1, 0)):
        assert not np.shares_memory(y.numpy(), x.numpy())


def test_repeat_interleave_int_and_tensor_repeats():
    x = _t(A)
    np.testing.assert_array_equal(graphc.repeat_interleave(x, 2, dim=1).numpy(),
                                  np.repeat(A, 2, 1))
    np.testing.assert_array_equal(x.repeat_interleave(3).numpy(), np.repeat(A, 3))
    counts = np.array([1, 0, 3])
    got = x.repeat_interleave(_t(counts), dim=0)
    np.testing.assert_array_equal(got.numpy(), np.repeat(A, counts, 0))
    np.testing.assert_array_equal(graphc.repeat_interleave(_t(np.array([2, 1]))).numpy(),
                                  [0, 0, 1])
    np.testing.assert_array_equal(x.repeat_interleave(_t(np.array([2])), dim=2).numpy(),
                                  np.repeat(A, 2, 2))
    with pytest.raises(OpValueError, match="repeat_interleave: repeats must hold 3"):
        x.repeat_interleave(_t(np.array([1, 2])), dim=0)


def test_repeat_with_too_few_sizes_is_an_error():
    with pytest.raises(ShapeError, match="repeat: the number of repeats"):
        _t(A).repeat(2, 2)


def test_diagonal_is_a_view_with_torch_strides():
    base = _t(A.copy())
    d = base.diagonal(1, 0, 2)
    np.testing.assert_array_equal(d.numpy(), np.diagonal(A, 1, 0, 2))
    assert d.untyped_storage().data_ptr() == base.untyped_storage().data_ptr()
    assert d.stride() == (5, 21) and d.storage_offset() == 1
    d.zero_()  # writes through to the base, as in torch
    assert (np.diagonal(base.numpy(), 1, 0, 2) == 0).all()
    assert graphc.diagonal(base, -5).shape == (5, 0)


def test_diag_vector_and_matrix():
    v = np.array([1.0, -2.0, 3.0])
    for k in (0, 2, -1):
        np.testing.assert_array_equal(graphc.diag(_t(v), k).numpy(), np.diag(v, k))
    m = A[0]
    np.testing.assert_array_equal(_t(m).diag(1).numpy(), np.diag(m, 1))
    with pytest.raises(ShapeError, match="diag: expected a 1-D or 2-D"):
        graphc.diag(_t(A))


def test_tensor_split_and_meshgrid():
    x = _t(np.arange(7))
    assert [p.tolist() for p in graphc.tensor_split(x, 3)] == [[0, 1, 2], [3, 4], [5, 6]]
    assert [p.tolist() for p in x.tensor_split([1, 5])] == [[0], [1, 2, 3, 4], [5, 6]]
    assert [p.tolist() for p in graphc.tensor_split(x, (2, 9))] == [[0, 1], [2, 3, 4, 5, 6], []]
    a, b = _t(np.arange(3)), _t(np.arange(4) * 10)
    for indexing in ("ij", "xy"):
        ours = graphc.meshgrid(a, b, indexing=indexing)
        theirs = np.meshgrid(np.arange(3), np.arange(4) * 10, indexing=indexing)
        for o, t in zip(ours, theirs):
            np.testing.assert_array_equal(o.numpy(), t)
    assert [g.shape for g in graphc.meshgrid([a, b, a])] == [(3, 4, 3)] * 3


def test_compiled_matches_eager():
    x = _t(A.astype(np.float32))

    def f(x):
        return (x.flip(0, 2) + x.roll(1, -1) + x.diagonal(0, 1, 2).sum(-1, keepdim=True)
                .unsqueeze(-1), x.repeat(1, 2, 1), x.repeat_interleave(2, 1), graphc.diag(x[0]))

    eager = f(x)
    compiled = graphc.compile(f, fullgraph=True)(x)
    for e, c in zip(eager, compiled):
        np.testing.assert_allclose(c.numpy(), e.numpy(), rtol=1e-6, atol=1e-6)


def test_gradients_match_torch():
    torch = pytest.importorskip("torch")
    ours = graphc.tensor(A, requires_grad=True)
    theirs = torch.tensor(A, requires_grad=True)
    cot = RNG.standard_normal((3, 5, 4))

    def run(lib, x, diag_first):
        y = lib.flip(x, (0,)).roll(2, 1).repeat(1, 1, 2)[..., :5].repeat_interleave(2, 0)[:3]
        y = y + lib.diagonal(x, 0, 1, 2).unsqueeze(-1)
        return y.transpose(1, 2) * diag_first

    run(graphc, ours, graphc.tensor(cot)).sum().backward()
    run(torch, theirs, torch.tensor(cot)).sum().backward()
    np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=1e-12, atol=1e-12)
