"""What a recompile says: the guard kind (training, structure, value, dtype, rank, shape,
layout, size), the argument path and dim, old and new value, the other guards that
failed in the same call, and advice that fits (dynamic sizes are suggested only where
they would serve the new sizes). The text is asserted, as users read it."""

from __future__ import annotations

import warnings

import numpy as np

import graphc
import graphc.nn as nn
from graphc.tensor import tensors_in


def call(c, *args, **kwargs):
    """c(...) without gradients, checked against the function it compiles."""
    cf = getattr(c, "compiled", c)
    with graphc.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = c(*args, **kwargs)
        want = cf._target(*args, **kwargs)
    for a, b in zip(tensors_in(got), tensors_in(want)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)
    return got


def last(c):
    return getattr(c, "compiled", c).recompiles[-1]


def text(r) -> str:
    """A recompile's text after its location (the line in ``call``)."""
    assert r.location.startswith("test_recompile_messages.py:")
    return str(r).split(f"recompile at {r.location}: ", 1)[1]


def test_a_strided_input_reuses_the_contiguous_program_through_a_copy():
    """A window of a growing sequence has new strides on every call: it is copied to
    contiguous rather than compiled again, unless the program writes into it."""
    f = graphc.compile(lambda x: x * 2)
    call(f, graphc.randn(3, 16))
    call(f, graphc.randn(5, 16))  # dim 0 becomes dynamic
    for n in (20, 21, 22):
        call(f, graphc.randn(7, n)[:, :16])
    call(f, graphc.randn(16, 7).t())
    assert len(f.recompiles) == 1 and len(f.entries) == 2 and f.layout_copies == 4

    g = graphc.compile(lambda x: x.mul_(2))  # writes into x: must see the caller's memory
    call(g, graphc.randn(4, 16))
    base = graphc.randn(4, 20)
    before = base.clone()
    with graphc.no_grad():
        g(base[:, :16])
    assert len(g.entries) == 2 and g.layout_copies == 0
    assert graphc.equal(base[:, :16], before[:, :16] * 2)
    assert graphc.equal(base[:, 16:], before[:, 16:])


def test_a_stride_change_is_a_layout_guard_when_no_contiguous_program_serves_it():
    f = graphc.compile(lambda x: x * 2)
    call(f, graphc.randn(16, 7).t())
    call(f, graphc.randn(7, 32)[:, ::2])
    assert text(last(f)) == ("layout guard on x failed: strides (1, 7) -> "
                      "strides (32, 2). the kernels read x in place with its strides (those of "
                      "size-1 dims do not count); pass x.contiguous() to always hit the "
                      "contiguous graph")


def test_a_resolution_change_names_both_dims_and_their_sizes():
    graphc.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1).eval()
    cm = graphc.compile(conv)
    call(cm, graphc.randn(3, 3, 64, 64))
    call(cm, graphc.randn(2, 3, 64, 64))  # the batch becomes dynamic
    call(cm, graphc.randn(2, 3, 96, 96))
    first, second = cm.compiled.recompiles
    assert (first.guard, first.name, first.old, first.new) == ("shape", "input.shape[0]", "3",
                                                               "2")
    assert (second.guard, second.name, second.old, second.new) == (
        "shape", "input.shape[2], input.shape[3]", "64, 64", "96, 96")
    assert second.suggestion.startswith("input.shape[2], input.shape[3] compile with symbolic "
                                        "sizes from now on")
    assert not second.also  # the batch's size is the program's to vary, not a failure
    call(cm, graphc.randn(5, 3, 80, 72))  # served by the program with dims 0, 2, 3 dynamic
    assert len(cm.compiled.recompiles) == 2


def test_a_size_that_cannot_be_dynamic_is_not_promised_one_program():
    def by_index(x):
        return sum(x[i] * i for i in range(x.shape[0]))  # range() fixes the size

    f = graphc.compile(by_index)
    call(f, graphc.randn(4))
    call(f, graphc.randn(6))
    r = last(f)
    assert (r.guard, r.name, r.old, r.new) == ("shape", "x.shape[0]", "4", "6")
    assert r.suggestion.startswith("each new size of x.shape[0] compiles once (then is "
                                   "cached): it stays a fixed size, because every dynamic "
                                   "size was fixed while compiling: s0 fixed to 6 by a use as "
                                   "an index or a count at test_recompile_messages.py:")
    assert "reuse one program" not in r.suggestion
    call(f, graphc.randn(7))  # the pattern is known not to work: said again, not retried
    assert "it stays a fixed size, because every dynamic size was fixed" in last(f).suggestion

    strided = graphc.compile(lambda x: x * 2)
    call(strided, graphc.randn(7, 4).t())
    call(strided, graphc.randn(7, 5).t())
    assert last(strided).suggestion == (
        "each new size of x.shape[0] compiles once (then is cached): it stays a fixed size, "
        "because x is not contiguous (strides (1, 5)); symbolic sizes need contiguous inputs")


def test_dynamic_false_suggests_dynamic_sizes_only_where_they_would_help():
    f = graphc.compile(lambda x: x * 2, dynamic=False)
    call(f, graphc.randn(4, 6))
    call(f, graphc.randn(5, 6))
    assert last(f).suggestion == (
        "with dynamic=False kernels are specialised to sizes, so each new size of x.shape[0] "
        "compiles once (then is cached); dynamic=True or the default dynamic=None compile one "
        "program for every size of a dim (or pad x to a few sizes)")
    call(f, graphc.randn(6, 3).t())  # (3, 6), transposed
    r = last(f)
    assert (r.guard, r.name, r.old, r.new) == ("shape", "x.shape[0]", "5", "3")
    assert r.also == ["x: strides (6, 1) -> strides (1, 3)"]
    assert r.suggestion == ("with dynamic=False each new size of x.shape[0] compiles once (then "
                            "is cached); symbolic sizes would not help here: x is not "
                            "contiguous (strides (1, 3)); symbolic sizes need contiguous inputs")


def test_a_size_guard_names_the_dim_behind_the_failing_condition():
    def f(x):
        return x * 2 if x.shape[0] > 10 else x - 1

    c = graphc.compile(f, dynamic=True)
    call(c, graphc.randn(20, 3))
    call(c, graphc.randn(4, 3))
    assert text(last(c)) == (
        "size guard on x.shape[0] failed: within the compiled program's "
        "guards -> sizes {'s0': 4, 's1': 3} fail the program's guard s0 > 10. each range of "
        "sizes the guards allow compiles once (then is cached); the guards come from "
        "size-dependent choices in your code or in the compiler (GRAPHC_DEBUG=1 lists them)")


def test_dtype_with_other_changes_lists_them():
    f = graphc.compile(lambda x, y: x + y, dynamic=False)
    call(f, graphc.randn(3), graphc.randn(3))
    call(f, graphc.randn(4).double(), graphc.randn(4))
    assert text(last(f)) == (
        "dtype guard on x failed: float32 -> float64 (also changed: "
        "x.shape[0]: 3 -> 4, y.shape[0]: 3 -> 4). cast x to float32 before the call to reuse "
        "the compiled graph")


def test_rank_value_structure_and_training_messages():
    @graphc.compile
    def f(x, opts, k=1):
        return x * k + len(opts["names"])

    x = graphc.randn(2, 3)
    call(f, x, {"names": ("a",)})
    call(f, graphc.randn(2, 3, 1), {"names": ("a",)})
    assert text(last(f)) == (
        "rank guard on x failed: 2 dims [2, 3] -> 3 dims [2, 3, 1]. each rank compiles its "
        "own graph")
    call(f, x, {"names": ("a",)}, k=2)
    assert (last(f).guard, last(f).name, last(f).old, last(f).new) == ("value", "k", "1", "2")
    assert "Python values are baked into the graph" in last(f).suggestion
    call(f, x, {"names": ("a", "b")}, k=2)
    r = last(f)
    assert (r.guard, r.name, r.old, r.new) == ("structure", "opts['names']", "tuple of 1",
                                               "tuple of 2")
    call(f, x, {"names": ("a", "b"), "extra": None}, k=2)
    r = last(f)
    assert (r.guard, r.name, r.old, r.new) == ("structure", "opts", "dict with keys ['names']",
                                               "dict with keys ['names', 'extra']")
    assert r.suggestion.startswith("the containers around the tensors (their types, lengths "
                                   "and dict keys) are part of the signature")
    call(f, x, {"names": ("a", "c"), "extra": None}, k=2)
    r = last(f)
    assert (r.guard, r.name, r.old, r.new) == ("value", "opts['names'][1]", "'b'", "'c'")

    graphc.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5)).eval()
    cm = graphc.compile(model)
    call(cm, x)
    model.train()
    with graphc.no_grad():
        cm(x)
    r = last(cm)
    assert (r.guard, r.name, r.old, r.new) == ("training", "self.training", "False", "True")


def test_explain_shows_every_recompile_with_what_else_changed():
    f = graphc.compile(lambda x, y: x * y, dynamic=False)
    call(f, graphc.randn(3), graphc.randn(3))
    call(f, graphc.randn(4).double(), graphc.randn(4))
    text = str(graphc.explain(f, graphc.randn(4).double(), graphc.randn(4)))
    assert ("recompile: dtype guard on x: float32 -> float64 (also changed: x.shape[0]: 3 -> 4, "
            "y.shape[0]: 3 -> 4) at test_recompile_messages.py:") in text
    e = graphc.explain(f, graphc.randn(4).double(), graphc.randn(4))
    assert e.recompiles[0]["also"] == ["x.shape[0]: 3 -> 4", "y.shape[0]: 3 -> 4"]


def test_guards_list_containers_and_paths():
    f = graphc.compile(lambda batch, *rest: batch["x"] * len(rest))
    call(f, {"x": graphc.randn(2)}, 1, "a")
    text = [str(g) for g in f.last.guards]
    assert text == ["structure batch == dict with keys ['x']", "dtype    batch['x'] == float32",
                    "shape    batch['x'] == [2]", "layout   batch['x'] == strides (1,)",
                    "structure rest == tuple of 2", "value    rest[0] == 1",
                    "value    rest[1] == 'a'"]
