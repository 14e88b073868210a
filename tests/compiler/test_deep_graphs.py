"""Graphs deeper than Python's recursion limit compile natively (kernel building recurses
along a fused chain of ops: a long unrolled loop of elementwise ops is one chain)."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest

import graphc


def unrolled(x, steps: int):
    for i in range(steps):
        x = x * 1.0001 + 0.001 if i % 2 else (x - 0.5).abs()
    return x


def test_a_chain_of_1200_ops_is_one_native_kernel():
    limit = sys.getrecursionlimit()
    f = graphc.compile(lambda x: unrolled(x, 600), fullgraph=True)
    x = graphc.randn(1000)
    with graphc.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error")  # no eager fallback, no warning
        got = f(x)
    np.testing.assert_array_equal(got.numpy(), unrolled(x, 600).numpy())
    e = graphc.explain(f, x)
    assert not e.fallbacks and len(e.kernels) == 1, str(e)
    assert sys.getrecursionlimit() == limit  # raised for the lowering only


def test_an_error_while_lowering_deep_reaches_the_caller(monkeypatch):
    from graphc.compiler import pipeline

    def broken(*args, **kwargs):
        raise ValueError("lowering broke")

    monkeypatch.setattr(pipeline, "lower", broken)
    x = graphc.randn(4)
    with pytest.raises(ValueError, match="lowering broke"):  # lowered on a thread of its own
        pipeline.compile_graph(graphc.trace(lambda x: unrolled(x, 100), x), x)
