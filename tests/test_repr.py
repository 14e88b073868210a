"""repr(tensor) in PyTorch's format (golden strings, taken from PyTorch 2.13's output)."""

from __future__ import annotations

import numpy as np
import pytest

import graphc

GOLDEN = [
    (np.array([[1., 2.], [3., 4.]], np.float32), "tensor([[1., 2.],\n        [3., 4.]])"),
    (np.array([1, 2], np.int32), "tensor([1, 2], dtype=graphc.int32)"),
    (np.zeros(0, np.int64), "tensor([], dtype=graphc.int64)"),
    (np.zeros((0, 3), np.float32), "tensor([], size=(0, 3))"),
    (np.array([True, False]), "tensor([ True, False])"),
    (np.array(3.5, np.float32), "tensor(3.5000)"),
    (np.array(3, np.int64), "tensor(3)"),
    (np.array(3.5), "tensor(3.5000, dtype=graphc.float64)"),
    (np.array([1e-5, 1.0, 1e5], np.float32), "tensor([1.0000e-05, 1.0000e+00, 1.0000e+05])"),
    (np.array([1.5, np.nan, np.inf], np.float32), "tensor([1.5000,    nan,    inf])"),
    (np.array([123456789.0, 1.0], np.float32), "tensor([1.2346e+08, 1.0000e+00])"),
    (np.arange(2000, dtype=np.float32),
     "tensor([0.0000e+00, 1.0000e+00, 2.0000e+00,  ..., 1.9970e+03, 1.9980e+03,\n"
     "        1.9990e+03])"),
    (np.arange(12).reshape(3, 4),
     "tensor([[ 0,  1,  2,  3],\n        [ 4,  5,  6,  7],\n        [ 8,  9, 10, 11]])"),
    (np.zeros((2, 2, 2), np.float32),
     "tensor([[[0., 0.],\n         [0., 0.]],\n\n        [[0., 0.],\n         [0., 0.]]])"),
]


@pytest.mark.parametrize("array, expected", GOLDEN, ids=lambda v: str(getattr(v, "shape", "")))
def test_repr_matches_pytorch(array, expected):
    assert repr(graphc.from_numpy(array)) == expected


def test_repr_of_meta_and_grad_tensors():
    assert repr(graphc.empty(2, 3, device="meta")) == "tensor(..., device='meta', size=(2, 3))"
    assert repr(graphc.ones(2).requires_grad_()) == "tensor([1., 1.], requires_grad=True)"


def test_printoptions():
    try:
        graphc.set_printoptions(precision=2)
        assert repr(graphc.tensor([0.123456])) == "tensor([0.12])"
        graphc.set_printoptions(threshold=5, edgeitems=1)
        assert repr(graphc.arange(10)) == "tensor([0,  ..., 9])"
    finally:
        graphc.set_printoptions(profile="default")
    assert repr(graphc.tensor([0.123456])) == "tensor([0.1235])"
