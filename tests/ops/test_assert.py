"""``graphc._assert`` (torch._assert): checks model code keeps when it is traced."""

from __future__ import annotations

import pytest

import graphc


def test_eager_checks_python_and_tensor_conditions():
    graphc._assert(True, "unused")
    graphc._assert(graphc.ones(2, dtype=graphc.bool), "unused")
    with pytest.raises(AssertionError, match="too long"):
        graphc._assert(3 > 4, "too long")
    with pytest.raises(AssertionError, match="negative"):
        graphc._assert(graphc.tensor([1.0, -1.0]) > 0, "negative")


def test_compiled_program_keeps_a_tensor_check_and_guards_a_size_check():
    @graphc.compile  # (not fullgraph: the check is a numpy step inside the program)
    def f(x):
        graphc._assert(x.shape[0] <= 4, "sequence longer than 4")
        graphc._assert((x > 0).all(), "x must be positive")
        return x * 2

    with graphc.no_grad():
        assert f(graphc.ones(3)).tolist() == [2.0, 2.0, 2.0]
        with pytest.raises(AssertionError, match="x must be positive"):
            f(-graphc.ones(3))  # the same program: the check runs on every call
        with pytest.raises(AssertionError, match="longer than 4"):
            f(graphc.ones(6))
    assert len(f.entries) == 1 and f.eager_runs == []
    assert "assert_true" in str(f.entries[next(iter(f.entries))].traced.graph)
