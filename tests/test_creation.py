"""Factories, dtype inference from data, and seeded random numbers."""

from __future__ import annotations

import numpy as np
import pytest

import graphc
from graphc import dtype as dt
from graphc.errors import OpError


def test_tensor_infers_pytorch_dtypes():
    assert graphc.tensor([1, 2]).dtype is dt.int64
    assert graphc.tensor([1, 2.5]).dtype is dt.float32
    assert graphc.tensor([[True], [False]]).dtype is dt.bool_
    assert graphc.tensor(3).shape == () and graphc.tensor(3.0).dtype is dt.float32
    assert graphc.tensor(np.zeros(2)).dtype is dt.float64  # numpy keeps its dtype
    assert graphc.tensor([1, 2], dtype=graphc.float64).tolist() == [1.0, 2.0]
    assert graphc.tensor([]).shape == (0,) and graphc.tensor([]).dtype is dt.float32
    assert graphc.tensor([graphc.tensor(1.0), 2.0]).tolist() == [1.0, 2.0]


def test_tensor_copies_and_as_tensor_shares():
    a = np.ones(3, np.float32)
    t = graphc.tensor(a)
    t[0] = 5
    assert a[0] == 1
    s = graphc.as_tensor(a)
    s[0] = 5
    assert a[0] == 5
    assert graphc.as_tensor(s) is s
    assert graphc.as_tensor(a, dtype=graphc.float64).dtype is dt.float64


def test_tensor_rejects_bad_data():
    with pytest.raises(TypeError, match="inconsistent|could not"):
        graphc.tensor([[1, 2], [3]])
    with pytest.raises(TypeError, match="str"):
        graphc.tensor(["a"])


def test_factories():
    assert graphc.zeros(2, 3).tolist() == [[0.0] * 3] * 2
    assert graphc.zeros((2, 3)).shape == (2, 3) and graphc.ones([4]).shape == (4,)
    assert graphc.full((2,), 7).dtype is dt.int64 and graphc.full((2,), 7.0).dtype is dt.float32
    assert graphc.full((1,), True).dtype is dt.bool_
    assert graphc.empty(3, dtype=graphc.int32).dtype is dt.int32
    x = graphc.ones(2, 3, dtype=graphc.float64)
    for like in (graphc.zeros_like, graphc.ones_like, graphc.empty_like, graphc.rand_like,
                 graphc.randn_like):
        y = like(x)
        assert y.shape == x.shape and y.dtype is dt.float64
    assert graphc.full_like(x, 3).tolist() == [[3.0] * 3] * 2
    assert graphc.eye(2).tolist() == [[1, 0], [0, 1]] and graphc.eye(2, 3).shape == (2, 3)
    assert x.new_zeros(4).dtype is dt.float64 and x.new_ones((1, 2)).shape == (1, 2)


def test_arange_and_linspace():
    assert graphc.arange(5).tolist() == [0, 1, 2, 3, 4] and graphc.arange(5).dtype is dt.int64
    assert graphc.arange(1, 2.5, 0.5).tolist() == [1.0, 1.5, 2.0]
    assert graphc.arange(1, 2.5, 0.5).dtype is dt.float32
    assert graphc.arange(5, 0, -2).tolist() == [5, 3, 1]
    assert graphc.arange(0, 0).shape == (0,)
    assert graphc.arange(3, dtype=graphc.float64).dtype is dt.float64
    assert graphc.linspace(0, 1, 5).tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert graphc.linspace(0, 10, 5, dtype=graphc.int64).tolist() == [0, 2, 5, 7, 10]
    assert graphc.linspace(2, 3, 1).tolist() == [2.0]
    with pytest.raises(OpError, match="inconsistent signs"):
        graphc.arange(0, 5, -1)
    with pytest.raises(OpError, match="non-zero"):
        graphc.arange(0, 5, 0)


def test_manual_seed_reproduces_every_random_factory():
    def draw():
        return [graphc.rand(3).tolist(), graphc.randn(2, 2).tolist(),
                graphc.randint(0, 10, (4,)).tolist(), graphc.normal(2.0, 3.0, (2,)).tolist(),
                graphc.nn.functional.dropout(graphc.ones(8), 0.5).tolist(),
                graphc.empty(3).uniform_(-1, 1).tolist(), graphc.empty(2).normal_().tolist()]

    graphc.manual_seed(7)
    first = draw()
    graphc.manual_seed(7)
    assert draw() == first
    graphc.manual_seed(8)
    assert draw() != first


def test_random_values_have_the_right_distribution():
    graphc.manual_seed(0)
    u = graphc.rand(100_000)
    assert 0.0 <= u.amin().item() and u.amax().item() < 1.0 and abs(u.mean().item() - 0.5) < 0.01
    n = graphc.randn(100_000, dtype=graphc.float64)
    assert abs(n.mean().item()) < 0.02 and abs(n.std().item() - 1) < 0.02
    r = graphc.randint(3, 6, (1000,))
    assert r.dtype is dt.int64 and set(r.tolist()) == {3, 4, 5}
    mean, std = graphc.zeros(1000) + 5.0, graphc.ones(1000) * 0.1
    m = graphc.normal(mean, std)
    assert abs(m.mean().item() - 5.0) < 0.05


def test_generators_are_independent_and_stateful():
    g = graphc.Generator().manual_seed(3)
    a = graphc.rand(4, generator=g).tolist()
    state = g.get_state()
    b = graphc.rand(4, generator=g).tolist()
    g.set_state(state)
    assert graphc.rand(4, generator=g).tolist() == b != a
    assert graphc.Generator().manual_seed(3).initial_seed() == 3
    graphc.manual_seed(1)
    saved = graphc.get_rng_state()
    x = graphc.rand(2).tolist()
    graphc.set_rng_state(saved)
    assert graphc.rand(2).tolist() == x


def test_meta_device():
    m = graphc.zeros(2, 3, device="meta")
    assert m.is_meta and m.device == graphc.device("meta") and m.shape == (2, 3)
    y = (m @ graphc.ones(3, 4).to("meta")).relu().sum(0)
    assert y.is_meta and y.shape == (4,) and y.dtype is dt.float32
    with pytest.raises(OpError, match="meta tensor has no data"):
        y.numpy()
    with pytest.raises(OpError, match="one device"):
        graphc.ones(2) + graphc.ones(2, device="meta")
    t = graphc.ones(3, 4).T.to("meta")
    assert t.stride() == (1, 4) and t[1:].storage_offset() == 1
