"""Autograd semantics: leaves, grad_fn graph, backward, accumulation, retain_graph, grad
mode, hooks, in-place version checks, views, higher-order gradients."""

from __future__ import annotations

import numpy as np
import pytest

import graphc
from graphc import autograd
from graphc.errors import OpError


def leaf(*values, dtype=graphc.float64):
    return graphc.tensor(list(values), dtype=dtype, requires_grad=True)


def test_leaves_and_non_leaves():
    x = leaf(1.0, 2.0)
    c = graphc.ones(2)
    y = x * 2 + c
    assert x.is_leaf and x.requires_grad and x.grad_fn is None
    assert c.is_leaf and not c.requires_grad
    assert not y.is_leaf and y.requires_grad and y.grad_fn is not None
    assert (x > 1).requires_grad is False  # comparisons are not differentiable
    assert x.argmax().requires_grad is False
    assert x.detach().requires_grad is False and x.detach().is_leaf
    assert graphc.tensor([1, 2]).requires_grad is False
    with pytest.raises(OpError, match="only floating-point"):
        graphc.tensor([1, 2]).requires_grad_()


def test_grad_fn_names_and_next_functions():
    x = leaf(1.0, 2.0)
    w = leaf(3.0, 4.0)
    y = (x * w).sum()
    assert y.grad_fn.name() == "SumBackward0"
    (mul, _), = y.grad_fn.next_functions
    assert mul.name() == "MulBackward0"
    (ax, _), (aw, _) = mul.next_functions
    assert ax.name() == aw.name() == "AccumulateGrad"
    assert ax.variable is x and aw.variable is w
    z = x * 3.0
    assert z.grad_fn.next_functions[1] == (None, 0)  # a number gets no edge
    assert repr(y) == "tensor(11., dtype=graphc.float64, grad_fn=<SumBackward0>)"
    assert graphc.softmax(x, 0).grad_fn.name() == "SoftmaxBackward0"
    assert x.T.grad_fn.name() == "PermuteBackward0"


def test_backward_scalar_and_with_a_gradient():
    x = leaf(1.0, 2.0, 3.0)
    (x * x).sum().backward()
    assert x.grad.tolist() == [2.0, 4.0, 6.0]
    y = leaf(1.0, 2.0)
    (y * 3).backward(graphc.tensor([1.0, 10.0], dtype=graphc.float64))
    assert y.grad.tolist() == [3.0, 30.0]
    with pytest.raises(RuntimeError, match="only for scalar outputs"):
        (y * 3).backward()
    with pytest.raises(RuntimeError, match="does not require grad"):
        graphc.ones(2).sum().backward()


def test_gradients_accumulate_until_zeroed():
    x = leaf(1.0, 2.0)
    for _ in range(3):
        (x * x).sum().backward()
    assert x.grad.tolist() == [6.0, 12.0]
    x.grad = None
    x.sum().backward()
    assert x.grad.tolist() == [1.0, 1.0]


def test_a_tensor_used_twice_gets_both_gradients():
    x = leaf(3.0)
    y = x * x + x.exp() + x
    y.backward()
    assert x.grad.item() == pytest.approx(2 * 3 + np.exp(3) + 1)


def test_broadcasting_is_undone_and_dtypes_follow_the_inputs():
    x = graphc.ones(3, 1, requires_grad=True)
    b = graphc.zeros(4, dtype=graphc.float64, requires_grad=True)
    (x + b).sum().backward()
    assert x.grad.shape == (3, 1) and x.grad.tolist() == [[4.0]] * 3
    assert b.grad.shape == (4,) and b.grad.dtype is graphc.float64 and b.grad.tolist() == [3.0] * 4
    assert x.grad.dtype is graphc.float32


def test_retain_graph():
    x = leaf(2.0)
    y = x * x
    y.backward(retain_graph=True)
    y.backward()
    assert x.grad.item() == 8.0
    with pytest.raises(RuntimeError, match="a second time"):
        y.backward()


def test_no_grad_enable_grad_set_grad_enabled():
    x = leaf(1.0)
    with graphc.no_grad():
        y = x * 2
        with graphc.enable_grad():
            z = x * 2
    assert not y.requires_grad and z.requires_grad

    @graphc.no_grad()
    def f(t):
        return t * 2
    assert not f(x).requires_grad and graphc.is_grad_enabled()
    with graphc.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    assert graphc.is_grad_enabled()
    graphc.set_grad_enabled(False)
    try:
        assert not (x * 2).requires_grad
    finally:
        graphc.set_grad_enabled(True)


def test_tensor_hooks_see_and_replace_gradients():
    x = leaf(1.0, 2.0)
    seen = []
    handle = x.register_hook(lambda g: seen.append(g.tolist()))
    y = x * 3
    y.register_hook(lambda g: g * 10)  # doubles as: hooks on non-leaves can replace the grad
    y.sum().backward()
    assert seen == [[30.0, 30.0]] and x.grad.tolist() == [30.0, 30.0]
    handle.remove()
    x.grad = None
    (x * 1).sum().backward()
    assert seen == [[30.0, 30.0]] and x.grad.tolist() == [1.0, 1.0]
    with pytest.raises(RuntimeError, match="does not require grad"):
        graphc.ones(1).register_hook(print)


def test_retain_grad_keeps_non_leaf_gradients():
    x = leaf(1.0, 2.0)
    y = x * 2
    y.retain_grad()
    (y * y).sum().backward()
    assert y.retains_grad and y.grad.tolist() == [4.0, 8.0]
    z = x * 2
    (z * z).sum().backward()
    assert z.grad is None


def test_autograd_grad_does_not_touch_dot_grad():
    x = leaf(1.0, 2.0)
    h = x * x
    y = (h * 3).sum()
    gx, gh = autograd.grad(y, [x, h])
    assert gx.tolist() == [6.0, 12.0] and gh.tolist() == [3.0, 3.0] and x.grad is None
    unused = leaf(1.0)
    with pytest.raises(RuntimeError, match="not used"):
        autograd.grad((x * 2).sum(), [unused])
    assert autograd.grad((x * 2).sum(), [unused], allow_unused=True) == (None,)


def test_second_order_gradients_with_create_graph():
    x = leaf(1.5)
    y = x ** 3
    (g,) = autograd.grad(y, [x], create_graph=True)
    assert g.item() == pytest.approx(3 * 1.5 ** 2) and g.requires_grad
    (gg,) = autograd.grad(g, [x])
    assert gg.item() == pytest.approx(6 * 1.5)
    z = leaf(0.3)
    s = graphc.sigmoid(z)  # its rule uses the forward output: recomputed with history
    (gs,) = autograd.grad(s, [z], create_graph=True)
    (gss,) = autograd.grad(gs, [z])
    sig = 1 / (1 + np.exp(-0.3))
    assert gss.item() == pytest.approx(sig * (1 - sig) * (1 - 2 * sig))


def test_modified_saved_tensor_is_detected():
    a = leaf(1.0, 2.0)
    x = a * 1
    y = x * x
    x.add_(1)
    with pytest.raises(RuntimeError, match="modified by an in-place operation.*version 1; "
                                           "expected version 0"):
        y.sum().backward()
    b = leaf(1.0, 2.0)
    w = b * 1
    z = w + 1  # add does not read its inputs in backward: modifying w is harmless
    w.mul_(5)
    z.sum().backward()
    assert b.grad.tolist() == [1.0, 1.0]  # z was computed before the in-place mul
    b.grad = None
    w.sum().backward()
    assert b.grad.tolist() == [5.0, 5.0]  # w's history now includes the mul


def test_inplace_on_leaves_is_refused():
    x = leaf(1.0, 2.0)
    with pytest.raises(OpError, match="leaf tensor that requires grad"):
        x.add_(1)
    with pytest.raises(OpError, match="view of a leaf"):
        x[0:1].mul_(2)
    with graphc.no_grad():
        x.add_(1)  # what optimizers do
    assert x.tolist() == [2.0, 3.0]


def test_inplace_on_non_leaf_rebases_history():
    a = leaf(1.0, 2.0)
    y = leaf(3.0, 4.0)
    x = a * 2
    x.mul_(y)
    x.exp_()
    x.sum().backward()
    e = np.exp(np.array([2 * 3.0, 4 * 4.0]))
    np.testing.assert_allclose(a.grad.numpy(), e * 2 * np.array([3.0, 4.0]))
    np.testing.assert_allclose(y.grad.numpy(), e * np.array([2.0, 4.0]))
    assert x.grad_fn.name() == "CopyBackward0"


def test_setitem_on_a_non_leaf_records_copy_slices():
    w = leaf(1.0, 2.0, 3.0, 4.0)
    v = leaf(10.0)
    x = w * 2
    first = x[:2]
    x[1] = v * 5
    assert x.grad_fn.name() == "CopySlices"
    (x * graphc.tensor([1.0, 2.0, 3.0, 4.0], dtype=graphc.float64)).sum().backward(retain_graph=True)
    assert w.grad.tolist() == [2.0, 0.0, 6.0, 8.0]  # position 1 was overwritten
    assert v.grad.tolist() == [10.0]
    w.grad = v.grad = None
    first.sum().backward()  # `first` sees the write: its gradient now reaches v
    assert w.grad.tolist() == [2.0, 0.0, 0.0, 0.0] and v.grad.tolist() == [5.0]


def test_writing_a_grad_tensor_into_a_plain_buffer():
    w = leaf(2.0)
    buf = graphc.zeros(3, dtype=graphc.float64)
    buf[1] = w * w
    assert buf.requires_grad
    buf.sum().backward()
    assert w.grad.item() == 4.0


def test_views_made_before_a_write_gave_their_base_history_read_the_new_base():
    """As in torch: a view taken of a plain buffer before a write put a value that requires
    grad into the buffer (through itself or another view) differentiates through the
    buffer from its next use. (Reading ``v.requires_grad`` before any use still says False:
    graphc's flag is an attribute, torch asks the base.)"""
    w = leaf(1.0, 2.0, 3.0, 4.0)
    buf = graphc.zeros(4, dtype=graphc.float64)
    head, tail = buf[:2], buf[1:][1:]
    buf.copy_(w * 2)
    (head.sum() * 3 + tail.sum()).backward()
    assert w.grad.tolist() == [6.0, 6.0, 2.0, 2.0]
    assert head.requires_grad and head.grad_fn.name() == "AsStridedBackward0"

    w.grad = None
    buf = graphc.zeros(3, dtype=graphc.float64)
    first, rest = buf[:1], buf[1:]
    rest.add_(w[:2])  # the write goes through another view of the buffer
    (first * 7 + rest.sum()).sum().backward()
    assert w.grad.tolist() == [1.0, 1.0, 0.0, 0.0]

    w.grad = None
    buf = graphc.zeros(3, dtype=graphc.float64)
    view = buf[1:]
    buf.copy_(w[1:] * 5)
    view.sum().backward()  # the view itself as the root of backward
    assert w.grad.tolist() == [0.0, 0.0, 5.0, 5.0]

    buf = graphc.zeros(3, dtype=graphc.float64)
    made_after, detached = buf[1:], buf[1:].detach()
    with graphc.no_grad():
        buf.copy_(w[1:])  # no history given: views stay plain
    assert not (made_after * 1).requires_grad
    buf.copy_(w[1:])
    assert not (detached * 1).requires_grad  # detach() is not a differentiable view


def test_views_carry_gradients_back():
    x = graphc.arange(12.0, dtype=graphc.float64).reshape(3, 4).requires_grad_()
    y = x.T[1:, ::2].reshape(-1) * graphc.arange(1.0, 7.0, dtype=graphc.float64)
    y.sum().backward()
    expected = np.zeros((3, 4))
    expected.T[1:, ::2] = np.arange(1, 7).reshape(3, 2)
    np.testing.assert_array_equal(x.grad.numpy(), expected)


def test_composite_without_rule_differentiates_through_its_decomposition():
    x = graphc.randn(4, 5, dtype=graphc.float64, requires_grad=True)
    w = graphc.randn(5, dtype=graphc.float64, requires_grad=True)
    y = graphc.nn.functional.layer_norm(x, (5,), weight=w)
    y.sum().backward()
    assert x.grad is not None and w.grad is not None and w.grad.shape == (5,)
    assert autograd.gradcheck(lambda a, b: graphc.nn.functional.layer_norm(a, (5,), weight=b), [x, w])


def test_gradcheck_catches_a_wrong_rule():
    from graphc.ops import OPS

    original = OPS.sin.grad
    OPS.sin.grad = lambda ctx, g: (g * graphc.sin(ctx.input(0)),)  # wrong: should be cos
    try:
        with pytest.raises(AssertionError, match="differ"):
            autograd.gradcheck(graphc.sin, [leaf(0.3, 1.2)])
    finally:
        OPS.sin.grad = original
    assert autograd.gradcheck(graphc.sin, [leaf(0.3, 1.2)])


def test_inference_mode_as_context_and_decorator():
    w = graphc.ones(2, requires_grad=True)
    with graphc.inference_mode():
        assert not (w * 2).requires_grad
    with graphc.inference_mode(False):
        assert (w * 2).requires_grad

    @graphc.inference_mode
    def bare(x):
        return x * 2

    @graphc.inference_mode()
    def called(x):
        return x * 2

    assert not bare(w).requires_grad and not called(w).requires_grad
    assert graphc.is_grad_enabled()
