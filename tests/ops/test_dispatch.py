"""Every public entry point routes through the one dispatch function; modes see every call."""

from __future__ import annotations

import pytest

import graphc
import graphc.nn.functional as F
from graphc.ops import OPS, DispatchMode, dispatch, redispatch
from graphc.ops.dispatch import _hooks, add_backend_hook


class Recorder(DispatchMode):
    def __init__(self):
        self.calls = []

    def handle(self, op, inputs, attrs):
        self.calls.append(op.name)
        return redispatch(op, inputs, attrs)


ENTRY_POINTS = [
    (lambda x: x + 1, ["add"]),
    (lambda x: 1 + x, ["add"]),
    (lambda x: 2 - x, ["sub"]),
    (lambda x: 2 ** x, ["pow"]),
    (lambda x: x @ x.T, ["permute", "matmul"]),
    (lambda x: -x, ["neg"]),
    (lambda x: x > 0, ["gt"]),
    (lambda x: x.sum(1), ["sum"]),
    (lambda x: x.max(1), ["amax", "argmax"]),
    (lambda x: graphc.exp(x), ["exp"]),
    (lambda x: graphc.sub(x, x, alpha=2), ["mul", "sub"]),
    (lambda x: F.relu(x), ["relu"]),
    (lambda x: F.softmax(x, -1), ["softmax"]),
    (lambda x: F.layer_norm(x, (4,)), ["layer_norm"]),
    (lambda x: x[0, 1:], ["select", "slice"]),
    (lambda x: x[x > 0], ["gt", "index"]),
    (lambda x: x.view(4, 3), ["view"]),
    (lambda x: x.float(), []),  # already float32: returns self, no op
    (lambda x: x.double(), ["cast"]),
    (lambda x: graphc.cat([x, x]), ["cat"]),
    (lambda x: graphc.where(x > 0, x, 0.0), ["gt", "where"]),
    (lambda x: x.clamp(min=0), ["clamp"]),
    (lambda x: graphc.zeros(2), ["full"]),
    (lambda x: graphc.arange(3), ["arange"]),
    (lambda x: graphc.randn(2), ["normal"]),
]


@pytest.mark.parametrize("fn, expected", ENTRY_POINTS)
def test_entry_points_route_through_dispatch(fn, expected):
    x = graphc.randn(3, 4)
    with Recorder() as rec:
        fn(x)
    assert rec.calls == expected


def test_inplace_and_setitem_route_through_dispatch():
    x = graphc.zeros(3, 4)
    with Recorder() as rec:
        x += 1
        x[0] = 5
        x[x > 2] = 0
        x.zero_()
    assert rec.calls == ["add", "copy_", "select", "copy_", "gt", "index_put_", "copy_"]


def test_modes_nest_innermost_first():
    order = []

    class Tag(DispatchMode):
        def __init__(self, tag):
            self.tag = tag

        def handle(self, op, inputs, attrs):
            order.append(self.tag)
            return redispatch(op, inputs, attrs)

    x = graphc.ones(2)
    with Tag("outer"), Tag("inner"):
        graphc.exp(x)
    assert order == ["inner", "outer"]


def test_a_mode_can_replace_the_result():
    class Zeros(DispatchMode):
        def handle(self, op, inputs, attrs):
            out = redispatch(op, inputs, attrs)
            return out * 0 if op is OPS.exp else out

    with Zeros():
        y = graphc.exp(graphc.ones(3))
    assert y.tolist() == [0.0, 0.0, 0.0]


def test_backend_hooks_see_calls_below_the_modes():
    seen = []

    def hook(op, inputs, attrs):
        seen.append(op.name)
        return NotImplemented

    add_backend_hook(hook)
    try:
        graphc.ones(2).relu()
    finally:
        _hooks.remove(hook)
    assert seen == ["full", "relu"]


def test_unknown_attributes_are_rejected_with_the_accepted_ones():
    with pytest.raises(TypeError, match=r"sum: unexpected argument\(s\) dims \(accepted: dim, keepdim"):
        dispatch(OPS.sum, graphc.ones(2), dims=0)


def test_required_attributes_must_be_given():
    with pytest.raises(TypeError, match="select: missing required argument.*index"):
        dispatch(OPS.select, graphc.ones(2), dim=0)
