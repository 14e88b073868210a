"""The fusion planner: group counts for the benchmark workloads, the rules it must keep,
the decision log, and that fused graphs still compute the same values."""

from __future__ import annotations

import math

import numpy as np
import pytest

import graphc
import graphc.nn as nn
import graphc.nn.functional as F
from graphc.passes import PassManager, fuse
from graphc.trace import TensorSpec


def prepared(fn, *specs):
    gm = graphc.trace(fn, *specs)
    PassManager.default().run(gm)
    return gm


def kernels(plan) -> list[tuple[str, str, list[str]]]:
    return [(k.kind, k.name, members) for _, k, members in plan.kernels]


def check_fused(gm, plan, fn, *inputs, tol=1e-5):
    gm.graph.lint(gm, require_meta=True)
    assert all(n.op != "call_function" or n.target.name not in {"add", "mul", "exp", "relu"}
               for n in gm.graph.nodes), "elementwise work left outside kernels"
    graphc.manual_seed(0)
    with graphc.no_grad():
        expected = fn(*inputs)
        graphc.manual_seed(0)
        got = gm(*inputs)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=tol, atol=tol)


def w1(x):
    return F.gelu(x * 1.5 + 0.25, approximate="tanh") * graphc.sigmoid(x)


def test_w1_is_one_elementwise_kernel():
    gm = prepared(w1, TensorSpec((1024,)))
    plan = fuse(gm)
    assert [(k, n) for k, n, _ in kernels(plan)] == [("elementwise", "E_1024")]
    check_fused(gm, plan, w1, graphc.randn(1024))
    assert all(d.bytes_fused == 0 for d in plan.decisions if d.fused)  # nothing reaches memory
    unfused, fused = plan.bytes_moved()
    assert fused < unfused


def test_softmax_over_rows_is_one_row_kernel():
    fn = lambda x: F.softmax(x, -1)
    gm = prepared(fn, TensorSpec((64, 32)))
    plan = fuse(gm)
    (kind, name, members), = kernels(plan)
    assert (kind, name) == ("reduction", "R_64_32") and {"amax", "exp", "sum", "div"} <= set(members)
    assert gm.fused_0.reduced_dims == (1,)
    check_fused(gm, plan, fn, graphc.randn(64, 32))


def test_layer_norm_with_affine_is_one_row_kernel():
    ln = nn.LayerNorm(32)
    with graphc.no_grad():
        ln.weight.normal_()
        ln.bias.normal_()
    gm = prepared(ln, TensorSpec((16, 32)))
    plan = fuse(gm)
    assert [(k, n) for k, n, _ in kernels(plan)] == [("reduction", "R_16_32")]
    check_fused(gm, plan, ln, graphc.randn(16, 32))


def test_mlp_is_three_matmuls_with_fused_epilogues():
    mlp = nn.Sequential(*[m for _ in range(3) for m in (nn.Linear(64, 64), nn.ReLU())])
    gm = prepared(mlp, TensorSpec((8, 64)))
    plan = fuse(gm)
    assert [(k, m) for k, _, m in kernels(plan)] == [
        ("matmul", ["matmul", "add", "relu"]), ("matmul", ["matmul_1", "add_1", "relu_1"]),
        ("matmul", ["matmul_2", "add_2", "relu_2"])]
    check_fused(gm, plan, mlp, graphc.randn(8, 64))


def test_transformer_encoder_layer_kernel_count():
    layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True).eval()
    gm = prepared(layer, TensorSpec((2, 8, 32)))
    plan = fuse(gm)
    kinds = [k for k, _, _ in kernels(plan)]
    # the packed q/k/v projection (1), scale, q@kT, softmax, @v, out-proj, residual+LN1,
    # FFN1+relu, FFN2+residual, LN2; and for each layer norm the first element of each row
    # of its input (the shift of its one-pass statistics), from slices of the residual sum
    assert len(plan.kernels) == 12
    assert kinds.count("matmul") == 6 and kinds.count("reduction") == 3
    small = [k for k in plan.kernels if k[1].kind == "elementwise" and math.prod(k[1].domain) == 16]
    assert len(small) == 2
    check_fused(gm, plan, layer, graphc.randn(2, 8, 32), tol=1e-4)


def test_conv_bn_relu_fuses_its_epilogue():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()).eval()
    gm = prepared(model, TensorSpec((2, 3, 8, 8)))
    plan = fuse(gm)
    (kind, _, members), = [k for k in kernels(plan) if k[0] == "matmul"]
    assert {"matmul", "add", "relu"} <= set(members)  # bias, batch norm and relu ride along
    assert any(n.target.name in ("unfold", "pad") for n in gm.graph.nodes
               if n.op == "call_function")  # im2col stays a data-movement op of its own
    check_fused(gm, plan, model, graphc.randn(2, 3, 8, 8), tol=1e-4)


def test_never_fuses_across_impure_ops():
    def f(x):
        return F.dropout(x.exp(), 0.5) * 2 + 1

    gm = prepared(f, TensorSpec((16,)))
    plan = fuse(gm)
    assert any(n.op == "call_function" and n.target.name == "uniform" for n in gm.graph.nodes)
    for _, _, members in kernels(plan):
        assert "uniform" not in members
    assert any("impure" in d.rule for d in plan.decisions if d.producer == "uniform")
    check_fused(gm, plan, f, graphc.randn(16))


def test_broadcast_consumer_does_not_recompute_its_producer():
    def f(x, y):
        small = x.exp()              # (4, 1)
        return (small + y) * 2       # (4, 6): would recompute exp 6 times per row

    gm = prepared(f, TensorSpec((4, 1)), TensorSpec((4, 6)))
    plan = fuse(gm)
    assert len(plan.kernels) == 2
    rule = next(d.rule for d in plan.decisions if d.producer == "exp" and d.consumer == "add")
    assert "larger shape" in rule


def test_non_innermost_reduction_does_not_broadcast_back():
    def f(x):
        return x - x.mean(0, keepdim=True)

    gm = prepared(f, TensorSpec((8, 16)))
    plan = fuse(gm)
    assert len(plan.kernels) == 2
    assert any("non-innermost" in d.rule for d in plan.decisions)
    check_fused(gm, plan, f, graphc.randn(8, 16))


def test_views_of_intermediates_that_reorder_end_the_kernel():
    def f(x):
        y = x.exp()
        return y.T * 2

    gm = prepared(f, TensorSpec((4, 6)))
    plan = fuse(gm)
    assert len(plan.kernels) == 2
    assert any("permute reorders" in d.rule for d in plan.decisions)
    check_fused(gm, plan, f, graphc.randn(4, 6))


def test_kernel_with_two_outputs():
    def f(x):
        y = x.exp() + 1
        return y * 2, y.sum(0)

    gm = prepared(f, TensorSpec((4, 6)))
    plan = fuse(gm)
    x = graphc.randn(4, 6)
    with graphc.no_grad():
        a, b = gm(x)
    e = x.exp() + 1
    np.testing.assert_allclose(a.numpy(), (e * 2).numpy(), rtol=1e-6)
    np.testing.assert_allclose(b.numpy(), e.sum(0).numpy(), rtol=1e-6)
    gm.graph.lint(gm)
    assert len(plan.kernels) >= 1


def test_decision_log_covers_every_edge_and_lives_in_meta():
    gm = prepared(w1, TensorSpec((256,)))
    computed = [n for n in gm.graph.nodes if n.op == "call_function"]
    edges = {(p.name, n.name) for n in computed for p in n.all_input_nodes if p.op == "call_function"}
    plan = fuse(gm)
    logged = {(d.producer, d.consumer) for d in plan.decisions}
    assert edges <= logged
    assert all(d.fused for d in plan.decisions if d.consumer != "output")
    text = str(plan)
    assert text.startswith("1 kernels") and "elementwise, same shape" in text and "bytes]" in text
    sub = gm.fused_0.graph
    assert any("fusion" in n.meta for n in sub.nodes)


def test_fusion_requires_shapes():
    gm = graphc.trace(lambda x: x + 1, TensorSpec((2,)))
    del gm.graph.nodes[1].meta["shape"]
    with pytest.raises(ValueError, match="needs shapes"):
        fuse(gm)


def test_fused_kernels_print_and_are_modules():
    gm = prepared(lambda x: (x * 2).relu(), TensorSpec((8,)))
    fuse(gm)
    text = str(gm.graph)
    assert "= call_module[fused_0](%x)" in text
    assert "E_8: mul -> relu" in repr(gm)
    assert "self.fused_0(x)" in gm.code


def test_kernels_never_depend_on_each_other_in_a_cycle():
    """Found by the random-graph test: joining mul to tanh's kernel would make it read
    sigmoid's kernel, which reads the matmul, which reads tanh's kernel."""
    def f(x, w):
        t, s = x.tanh(), x.sigmoid()
        d = s - t @ w
        return t * s + d.sum()

    gm = prepared(f, TensorSpec((4, 6)), TensorSpec((6, 6)))
    plan = fuse(gm)
    gm.graph.lint(gm)
    assert any("depend on each other" in d.rule for d in plan.decisions)
    x, w = graphc.randn(4, 6), graphc.randn(6, 6)
    with graphc.no_grad():
        np.testing.assert_allclose(gm(x, w).numpy(), f(x, w).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fn", [lambda x: x * 2 - x.mean(-1, keepdim=True),
                                lambda x: x.mean(-1, keepdim=True) - x * 2,
                                lambda x: x.exp() * x.sum(-1, keepdim=True)])
def test_the_order_of_arguments_does_not_decide_the_kernels(fn):
    # the elementwise producer's kernel merges into the row kernel, whichever comes first
    gm = prepared(fn, TensorSpec((16, 32)))
    plan = fuse(gm)
    assert [k for k, _, _ in kernels(plan)] == ["reduction"]
    check_fused(gm, plan, fn, graphc.randn(16, 32))


def test_a_kernel_exports_a_value_once_and_its_reshapes_are_made_outside():
    """A value used outside its kernel both as it is and reshaped (relu's backward in a
    training program) is one output; the reshape is a view of it, made after the kernel
    (the kernel stored the same elements twice)."""
    def fn(x, w, v):
        y = graphc.relu(x @ w) * 2              # (2, 4, 8)
        return y.sum(1), y.reshape(8, 8).T @ v  # y's users: a reduction, a matmul of a view

    x, w, v = graphc.randn(2, 4, 5), graphc.randn(5, 8), graphc.randn(8, 3)
    gm = prepared(fn, x, w, v)
    plan = fuse(gm)
    gm.graph.lint(gm, require_meta=True)
    first = next(k for _, k, _ in plan.kernels if k.kind == "matmul")
    out = first.graph.output_node.args[0]
    assert not isinstance(out, tuple), first.graph.output_node.args
    with graphc.no_grad():
        for got, want in zip(gm(x, w, v), fn(x, w, v)):
            np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5)
        for got, want in zip(graphc.compile(fn)(x, w, v), fn(x, w, v)):
            np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5)
