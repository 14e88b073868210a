"""Each pass on its own: what it rewrites, what it must leave alone, and that the graph
still lints and computes the same values."""

from __future__ import annotations

import math

import numpy as np
import pytest

import graphc
import graphc.nn as nn
import graphc.nn.functional as F
from graphc.ir import GraphError, Interpreter
from graphc.ops import OPS
from graphc.passes import (PassCheckError, PassManager, cse, dce, decompose, fold_constants,
                           freeze_parameters, plan_memory, refresh_shapes, replace_pattern,
                           simplify)
from graphc.trace import TensorSpec


def ops_in(gm) -> list[str]:
    return [n.target.name for n in gm.graph.nodes if n.op == "call_function"]


def same_values(gm, fn, *inputs, seed=0, tol=1e-6):
    graphc.manual_seed(seed)
    expected = fn(*inputs)
    graphc.manual_seed(seed)
    with graphc.no_grad():
        got = gm(*inputs)
    exp = expected if isinstance(expected, tuple) else (expected,)
    out = got if isinstance(got, tuple) else (got,)
    for a, b in zip(out, exp):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=tol, atol=tol)


def test_decompose_leaves_only_primitives_and_keeps_locations():
    def f(x, w):
        return F.layer_norm(F.gelu(x @ w), (4,)).softmax(-1).var(0)

    x, w = graphc.randn(3, 5), graphc.randn(5, 4)
    gm = graphc.trace(f, x, w)
    location = next(n for n in gm.graph.nodes if n.op == "call_function").meta["location"]
    assert decompose(gm)
    gm.graph.lint(gm, require_meta=True)
    flags = [n.target.flags for n in gm.graph.nodes if n.op == "call_function"]
    assert not any(graphc.ops.Flag.COMPOSITE in f for f in flags)
    assert {"layer_norm", "gelu", "softmax", "var"} <= {n.meta["origin"] for n in gm.graph.nodes
                                                         if "origin" in n.meta}
    assert all(n.meta.get("location", "").startswith("test_passes.py") for n in gm.graph.nodes
               if n.op == "call_function") and location.startswith("test_passes.py")
    same_values(gm, f, x, w, tol=1e-5)
    assert not decompose(gm)


def test_decompose_can_keep_named_composites():
    gm = graphc.trace(lambda x: F.softmax(F.silu(x), -1), TensorSpec((2, 3)))
    decompose(gm, keep=("softmax",))
    assert "softmax" in ops_in(gm) and "silu" not in ops_in(gm)


def test_cse_merges_pure_duplicates_only():
    def f(x):
        a = (x * 2.0).exp()
        b = (x * 2.0).exp()
        z = x * 0.0 + x * -0.0  # different attributes by their bits: not merged
        noise = graphc.rand(3) + graphc.rand(3)  # random draws are never merged
        return a + b + z, noise

    gm = graphc.trace(f, TensorSpec((3,)))
    assert cse(gm)
    assert ops_in(gm).count("exp") == 1 and ops_in(gm).count("uniform") == 2
    assert ops_in(gm).count("mul") == 3  # x*2.0 once, x*0.0 and x*-0.0
    gm.graph.lint(gm)
    same_values(gm, f, graphc.tensor([1.0, -2.0, 0.5]))


def test_cse_does_not_merge_across_in_place_writes():
    def f(x):
        buf = x * 1.0
        a = buf + 1
        buf.add_(5)
        b = buf + 1
        return a, b

    gm = graphc.trace(f, TensorSpec((2,)))
    cse(gm)
    a, b = gm(graphc.ones(2))
    assert a.tolist() == [2.0, 2.0] and b.tolist() == [7.0, 7.0]


def test_dce_removes_dead_pure_code_and_keeps_impure():
    def f(x, running):
        x.exp().sum()  # dead
        F.dropout(x, 0.5)  # dead but random: kept (it advances the generator)
        running.copy_(x)  # dead but writes: kept
        return x + 1

    gm = graphc.trace(f, TensorSpec((3,)), TensorSpec((3,)))
    assert dce(gm)
    names = ops_in(gm)
    assert "exp" not in names and "sum" not in names
    assert "dropout" in names and "copy_" in names
    running = graphc.zeros(3)
    gm(graphc.ones(3), running)
    assert running.tolist() == [1.0, 1.0, 1.0]


def test_constant_folding_and_live_parameters():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            pos = graphc.arange(4).float() / 4 + 1  # known at compile time
            return self.fc(x) * pos

    model = M()
    gm = graphc.trace(model, TensorSpec((2, 4)))
    decompose(gm)
    assert fold_constants(gm)
    dce(gm)
    assert "arange" not in ops_in(gm) and "div" not in ops_in(gm)
    folded = [n for n in gm.graph.nodes if n.op == "get_attr" and n.target.startswith("_folded")]
    assert folded and folded[0].meta["shape"] == (4,)
    assert "permute" in ops_in(gm)  # the weight's transpose reads a live parameter
    x = graphc.randn(2, 4)
    same_values(gm, model, x)
    assert "_folded0" not in gm.state_dict()  # compiler constants are not model state
    with graphc.no_grad():
        model.fc.weight.mul_(2)
    same_values(gm, model, x)  # still live


def test_freezing_folds_weight_work_and_stops_tracking_updates():
    model = nn.Linear(4, 3)
    gm = graphc.trace(model, TensorSpec((2, 4)))
    decompose(gm)
    assert freeze_parameters(gm)
    dce(gm)
    assert "permute" not in ops_in(gm)
    x = graphc.randn(2, 4)
    same_values(gm, model, x)
    with graphc.no_grad():
        before = gm(x)
        model.weight.mul_(2)
        assert np.allclose(gm(x).numpy(), before.numpy())  # frozen: the update is not seen


@pytest.mark.parametrize("fn, gone", [
    (lambda x: x * 1 + 0, None),  # x * 1 goes; x + 0 stays (int 0: exact, but keep the rule simple)
    (lambda x: (x * 1.0) / 1 ** 1, "mul"),
    (lambda x: x + -0.0, "add"),
    (lambda x: x - 0.0, "sub"),
    (lambda x: graphc.neg(graphc.neg(x)), "neg"),
    (lambda x: x.T.T + 1, "permute"),
    (lambda x: x.reshape(6).reshape(2, 3).view(3, 2), "view"),
    (lambda x: x.reshape(2, 3).expand(2, 3), "expand"),
    (lambda x: x.to(graphc.float32).clone() * 2, "clone"),
    (lambda x: F.pad(x, (0, 0, 0, 0)) * 2, "pad"),  # max/avg pooling without padding
])
def test_simplify_rules_are_exact(fn, gone):
    x = graphc.tensor([[-0.0, 0.0, math.nan], [math.inf, -math.inf, 2.5]])
    gm = graphc.trace(fn, x)
    simplify(gm)
    dce(gm)
    gm.graph.lint(gm)
    if gone:
        assert gone not in ops_in(gm), ops_in(gm)
    expected = fn(x).numpy()
    got = gm(x).numpy()
    assert got.shape == expected.shape
    assert np.array_equal(np.signbit(got), np.signbit(expected))  # -0.0 stays -0.0
    np.testing.assert_array_equal(got, expected)


def _slice_inputs(gm) -> list:
    """For each elementwise node reading a slice: the shapes it reads."""
    return [[tuple(a.meta["shape"]) for a in n.all_input_nodes] for n in gm.graph.nodes
            if n.op == "call_function" and any(a.op == "call_function" and a.target is OPS.slice
                                               for a in n.all_input_nodes)
            and n.target is not OPS.slice]


def test_a_small_slice_of_an_elementwise_result_is_computed_from_slices():
    a = graphc.tensor([[1.5, -0.0, math.nan, math.inf] * 4] * 3)
    b = graphc.tensor([0.5, 2.0, -1.0, 0.0] * 4)  # broadcast along rows: used as it is
    fn = lambda a, b: ((a * b)[:, 1:2], a * b + 1)
    gm = graphc.trace(fn, a, b)
    assert simplify(gm)
    dce(gm)
    gm.graph.lint(gm)
    # mul reads a[:, 1:2] and b[1:2]: 3 elements are computed for the slice, not 48
    assert [(3, 1), (1,)] in _slice_inputs(gm)
    for got, want in zip(gm(a, b), fn(a, b)):
        np.testing.assert_array_equal(got.numpy(), want.numpy())
        assert np.array_equal(np.signbit(got.numpy()), np.signbit(want.numpy()))


@pytest.mark.parametrize("fn", [
    lambda x: (x * 2)[:, 0:0],                          # (1, 1) -> (1, 0)
    lambda x: graphc.logical_and(x, 0.0)[:, -1:0:-1],   # the fuzzer's case: also empty
    lambda x: (x + graphc.ones(4, 1, dtype=graphc.float64))[:, :0],  # (4, 1) -> (4, 0)
])
def test_a_slice_pushed_down_slices_operands_whose_dim_is_the_results(fn):
    # a size-1 dim of an operand is a broadcast only where the result's dim is larger
    x = graphc.ones(1, 1, dtype=graphc.float64)
    gm = graphc.trace(fn, x)
    simplify(gm)
    dce(gm)
    gm.graph.lint(gm)
    got, want = gm(x), fn(x)
    assert got.shape == want.shape and got.dtype is want.dtype


@pytest.mark.parametrize("fn", [
    lambda a: (a * 2)[:, :3],                    # keeps 3/8 of the elements: not worth it
    lambda a: F.dropout(a, 0.5, True)[:, :1],    # random: slicing would change the draws
])
def test_slices_that_stay_slices(fn):
    gm = graphc.trace(fn, TensorSpec((4, 8)))
    ops = ops_in(gm)
    simplify(gm)
    assert ops_in(gm) == ops


def test_slice_push_down_is_off_in_graphs_with_in_place_writes():
    def fn(a):
        y = a * 2
        y[:, :1].add_(1)  # the slice is a view of y: writing through it changes y
        return y
    gm = graphc.trace(fn, TensorSpec((4, 16)))
    ops = ops_in(gm)
    simplify(gm)
    assert ops_in(gm) == ops
    a = graphc.randn(4, 16)
    np.testing.assert_array_equal(gm(a).numpy(), fn(a).numpy())


def _pad_then_write(x, b):
    y = F.pad(x * 2, (0, 0)) + 1  # max-pool's pad of nothing, in a graph that writes b
    b.add_(1)
    return y


def _copy_then_write_it(x):
    y = x.clone()
    y.add_(1)  # the copy is written: it is not x
    return y + x


def _copy_then_write_what_it_copied(x):
    y = F.pad(x, (0, 0))
    x.mul_(2)  # what it copied is written: the copy keeps the old values
    return y + x


@pytest.mark.parametrize("fn, gone", [(_pad_then_write, True), (_copy_then_write_it, False),
                                      (_copy_then_write_what_it_copied, False)])
def test_no_op_copies_go_where_nothing_writes_them_or_what_they_copy(fn, gone):
    """In a graph with in-place writes (BatchNorm's running statistics in a training
    program), a copy of memory no write touches is its input; a copy that is written, or
    whose input is written, stays."""
    args = [graphc.randn(3, 4) for _ in range(fn.__code__.co_argcount)]
    copied = [a.clone() for a in args]
    gm = graphc.trace(fn, *args)
    ops = ops_in(gm)
    simplify(gm)
    dce(gm)
    gm.graph.lint(gm)
    assert (("pad" not in ops_in(gm) and "clone" not in ops_in(gm)) if gone else
            ops_in(gm) == ops), ops_in(gm)
    want = fn(*copied)
    got = graphc.compile(fn, fullgraph=True)(*args)
    np.testing.assert_array_equal(got.numpy(), want.numpy())
    for a, b in zip(args, copied):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_fills_fold_to_an_expanded_scalar_and_small_factories_to_constants():
    def f(x):
        return x + graphc.full((64, 64), 2.0) + graphc.ones(64) + graphc.arange(64.0)

    gm = graphc.trace(f, TensorSpec((64, 64)))
    assert fold_constants(gm)
    dce(gm)
    gm.graph.lint(gm)
    assert not {"full", "arange", "ones"} & set(ops_in(gm)), ops_in(gm)
    scalars = [n for n in gm.graph.nodes if n.op == "get_attr" and n.meta["shape"] == ()]
    assert len(scalars) == 2 and all(u.target.name == "expand" for n in scalars for u in n.users)
    x = graphc.randn(64, 64)
    np.testing.assert_array_equal(gm(x).numpy(), f(x).numpy())


def test_a_fill_that_as_strided_reads_keeps_its_memory():
    """as_strided addresses the storage: a fill it reads (directly or through a view) stays
    a whole constant, not one element expanded (the fuzzer's --grad mode found the crash)."""
    def f(x):
        c = graphc.full((2, 3), 1.5, dtype=graphc.float64)
        return (x + c.as_strided((2, 2), (1, 0), 3),
                c.view(3, 2).as_strided((2, 2), (2, 1), 2), graphc.zeros(4) + 1)

    gm = graphc.trace(f, TensorSpec(()))
    assert fold_constants(gm)
    read = [n for n in gm.graph.nodes if any(u.target is OPS.as_strided for u in n.users)]
    assert all(n.op != "call_function" or n.target is not OPS.expand for n in read)
    x = graphc.tensor(2.0)
    for got, folded, want in zip(graphc.compile(f)(x), gm(x), f(x)):
        np.testing.assert_array_equal(got.numpy(), want.numpy())
        np.testing.assert_array_equal(folded.numpy(), want.numpy())


def test_adding_positive_zero_is_not_simplified():
    gm = graphc.trace(lambda x: x + 0.0, TensorSpec((1,)))
    assert not simplify(gm)
    assert gm(graphc.tensor([-0.0])).numpy()[0] == 0.0 and not np.signbit(
        gm(graphc.tensor([-0.0])).numpy()[0])


def test_replace_pattern():
    def model(x, w, v):
        return graphc.relu(x @ w) + graphc.relu(x @ v) * 2

    def pattern(a, b):
        return graphc.relu(a @ b)

    def replacement(a, b):
        return graphc.clamp(a @ b, min=0.0)

    gm = graphc.trace(model, TensorSpec((3, 4)), TensorSpec((4, 5)), TensorSpec((4, 5)))
    matches = replace_pattern(gm, pattern, replacement)
    assert len(matches) == 2 and "relu" not in ops_in(gm) and ops_in(gm).count("clamp") == 2
    gm.graph.lint(gm)
    x, w, v = graphc.randn(3, 4), graphc.randn(4, 5), graphc.randn(4, 5)
    same_values(gm, model, x, w, v)


def test_replace_pattern_leaves_matches_whose_intermediates_are_used():
    def model(x, w):
        y = x @ w
        return graphc.relu(y), y

    gm = graphc.trace(model, TensorSpec((2, 2)), TensorSpec((2, 2)))
    assert replace_pattern(gm, lambda a, b: graphc.relu(a @ b),
                           lambda a, b: graphc.clamp(a @ b, min=0.0)) == []


def test_memory_plan_reuses_buffers_and_writes_in_place():
    def f(x):
        a = x.exp()          # dies at b: b can write over it
        b = a * 2
        c = b.sin() + x      # b dies here too
        t = c.T              # a view keeps c alive until d
        d = t.sum()
        return d

    gm = graphc.trace(f, TensorSpec((64, 64)))
    plan = plan_memory(gm)
    assert plan.in_place == {"mul": "exp", "sin": "mul", "add": "sin"}
    assert plan.buffer_sizes == [64 * 64 * 4] and plan.unplanned_bytes == 4 * 64 * 64 * 4
    sum_index = gm.graph.nodes.index(next(n for n in gm.graph.nodes if n.name == "sum"))
    assert plan.live["add"] == (4, sum_index)  # the permute view keeps add alive until sum
    assert "sum" not in plan.assignment and "permute" not in plan.assignment
    assert str(plan).startswith("4 intermediates in 1 buffers: 16384 bytes (without reuse 65536)")


def test_memory_plan_does_not_reuse_a_buffer_that_is_still_live():
    def f(x):
        a = x.exp()
        b = x.sin()      # a is still needed: b cannot take its buffer
        c = a * b
        return c.sum()

    plan = plan_memory(graphc.trace(f, TensorSpec((8,))))
    assert plan.assignment["exp"] != plan.assignment["sin"]
    assert plan.in_place == {"mul": "exp"}


def test_pass_manager_history_and_user_passes():
    calls = []

    def count_nodes(gm):
        calls.append(len(gm.graph.nodes))
        return False

    pm = PassManager.default()
    pm.insert(0, count_nodes)
    gm = graphc.trace(lambda x: F.softmax(x * 1.0, -1).sum(), TensorSpec((2, 3)))
    history = pm.run(gm, check_inputs=(graphc.randn(2, 3),))
    names = [r.name for r in history.records]
    assert names == ["count_nodes", "functionalize", "decompose", "simplify", "cse",
                     "fold_constants", "dce", "refresh_shapes"]
    assert not history.records[1].changed  # nothing is written in place
    dec = history.records[2]
    assert dec.changed and dec.nodes_after > dec.nodes_before and "+  %amax" in dec.diff
    assert "-  %softmax" in dec.diff and history.records[3].changed  # x * 1.0 removed
    assert calls == [history.records[0].nodes_before]
    text = history.format(ir=True)
    assert "decompose" in text and "ms" in text and "+  %exp" in text


def wrong(gm):
    """A wrong pass: exp becomes sin."""
    for n in gm.graph.nodes:
        if n.op == "call_function" and n.target is OPS.exp:
            n.target = OPS.sin
            return True
    return False


def test_check_mode_catches_a_pass_that_changes_the_result():

    gm = graphc.trace(lambda x: x.exp() + 1, TensorSpec((4,)))
    with pytest.raises(PassCheckError, match="after pass wrong: output 0 differs"):
        PassManager([wrong]).run(gm, check_inputs=(graphc.randn(4),))


def test_check_mode_catches_a_pass_that_breaks_the_graph():
    def break_links(gm):
        node = next(n for n in gm.graph.nodes if n.op == "call_function")
        gm.graph.move_before(node, gm.graph.nodes[0])
        return True

    gm = graphc.trace(lambda x: x.exp() + 1, TensorSpec((4,)))
    with pytest.raises(GraphError, match="before it is defined"):
        PassManager([break_links]).run(gm, check_inputs=(graphc.randn(4),))


def test_refresh_shapes_reruns_meta():
    gm = graphc.trace(lambda x: x.sum(0), TensorSpec((3, 4)))
    out = gm.graph.output_node.args[0]
    out.meta["shape"] = (99,)
    assert refresh_shapes(gm) and out.meta["shape"] == (4,)
    assert not refresh_shapes(gm)


def test_interpreter_agrees_after_the_default_pipeline_on_models():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4).eval(), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 4 * 4, 3)).eval()
    x = graphc.randn(2, 3, 8, 8)
    gm = graphc.trace(model, x)
    PassManager.default().run(gm, check_inputs=(x,), rtol=1e-4, atol=1e-5)
    with graphc.no_grad():
        np.testing.assert_allclose(Interpreter(gm).run(x).numpy(), model(x).numpy(), rtol=1e-4,
                                   atol=1e-5)


def test_debug_mode_checks_every_pass_with_random_inputs(monkeypatch, capsys):

    monkeypatch.setenv("GRAPHC_DEBUG", "2")
    gm = graphc.trace(lambda x: x.exp() * 1.0, TensorSpec((4,)))
    PassManager.default().run(gm)
    assert "simplify" in capsys.readouterr().err  # the history is printed (on stderr)
    gm = graphc.trace(lambda x: x.exp() + 1, TensorSpec((4,)))
    with pytest.raises(PassCheckError, match="after pass wrong"):
        PassManager([wrong]).run(gm)
