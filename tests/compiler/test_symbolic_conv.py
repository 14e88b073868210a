"""Strided windows with symbolic sizes: a stride-2 conv or pool names its output size as a
derived symbol (``d0 = (s0 - 1) // 2``) instead of pinning the input size, so one program
serves the resolutions its guards allow; a derived size below 2 is refused (a program for
those sizes compiles), never computed wrong. Every result is checked against eager."""

from __future__ import annotations

import numpy as np
import pytest

import graphc
import graphc.nn as nn
import graphc.nn.functional as F
from graphc.errors import ShapeError
from tests.models.zoo import load


def check(cf, fn, shapes, tol=1e-5):
    """Call ``cf`` and ``fn`` on a random input of each shape; the outputs must match."""
    with graphc.no_grad():
        for shape in shapes:
            x = graphc.randn(*shape)
            got, want = cf(x), fn(x)
            assert got.shape == want.shape, (shape, got.shape, want.shape)
            np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=tol, atol=tol)


def inner(cf):
    """The CompiledFunction of ``graphc.compile(f)`` or of a compiled module."""
    return getattr(cf, "compiled", cf)


def size_guards(cf) -> list[list[str]]:
    """Each compiled entry's size guards (an empty list for a program with fixed sizes)."""
    return [[g.value for g in e.guards if g.kind == "size"] for e in inner(cf).entries.values()]


def test_a_stride_2_conv_then_pool_serves_odd_and_even_sizes_with_one_program():
    graphc.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)

    def f(x):
        return F.max_pool2d(conv(x).relu(), 3, 2, 1)

    cf = graphc.compile(f)
    check(cf, f, [(2, 3, n, n + 1) for n in (16, 24, 33, 17, 40, 9, 64)])
    assert len(inner(cf).entries) == 2  # the first size, then one program for the rest
    sized = [e for e in inner(cf).entries.values() if e.pattern is not None]
    env = sized[0].spec.sizes.env
    assert env.free() == ["s0", "s1"] and set(env.derived) == {"d0", "d1", "d2", "d3"}
    assert env.definition("d0") == "(s0 - 1) // 2"  # conv: (n + 2 - 2 - 1) // 2 + 1
    assert not any("//" in g for gs in size_guards(cf) for g in gs)  # nothing pinned


def test_a_derived_size_below_two_is_refused_and_compiled_apart():
    graphc.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, stride=2)
    cf = graphc.compile(conv)
    check(cf, conv, [(1, 3, n, n) for n in (16, 12, 20)])
    assert len(inner(cf).entries) == 2
    check(cf, conv, [(1, 3, 5, 5)])  # (5 - 3) // 2 = 1: the program assumed at least 2
    refusal = inner(cf).recompiles[-1]
    assert refusal.guard == "size" and refusal.name == "input.shape[2]"
    assert "fail the program's guard d0 >= 2 (d0 = (s0 - 3) // 2 was " in refusal.new
    check(cf, conv, [(1, 3, 4, 4), (1, 3, 3, 3), (1, 3, 12, 12), (1, 3, 31, 30)])
    assert len(inner(cf).entries) == 4  # 5 and 4 (output size 1), 3 (output 0): apart
    with graphc.no_grad(), pytest.raises(ShapeError, match="does not fit"):
        cf(graphc.randn(1, 3, 2, 2))  # no window fits: eager's error


def test_a_pool_whose_output_becomes_one_after_a_conv():
    graphc.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, stride=2, padding=1)

    def f(x):
        return F.max_pool2d(conv(x), 2) * 2

    cf = graphc.compile(f)
    # 8 -> 4 -> 2 (compiled), 12 -> 6 -> 3; then 4 -> 2 -> 1 and 6 -> 3 -> 1: refused
    check(cf, f, [(1, 2, n, n) for n in (8, 12, 4, 6, 20, 3)])
    pooled = [e for e in inner(cf).entries.values() if e.pattern is not None]
    assert any(">= 2 (d" in str(r.new) for r in inner(cf).recompiles)  # a refusal, said
    assert len(inner(cf).entries) <= 4 and pooled


@pytest.mark.parametrize("pool", [
    lambda x: F.max_pool2d(x, 3, 2, ceil_mode=True),
    lambda x: F.max_pool2d(x, 2, ceil_mode=True),
    lambda x: F.avg_pool2d(x, 3, 2, padding=1),
    lambda x: F.avg_pool2d(x, 3, 2, padding=1, ceil_mode=True, count_include_pad=False),
], ids=["max_k3s2_ceil", "max_k2_ceil", "avg_k3s2p1", "avg_k3s2p1_ceil_nopad"])
def test_pools_with_ceil_mode_and_padding_match_eager_across_sizes(pool):
    cf = graphc.compile(lambda x: pool(x) * 2)
    check(cf, lambda x: pool(x) * 2, [(2, 3, n, n + 2) for n in (8, 11, 9, 10, 21, 5)])


def test_ceil_mode_max_pool_shares_a_program_per_parity():
    cf = graphc.compile(lambda x: F.max_pool2d(x, 3, 2, ceil_mode=True) * 2)
    sizes = (8, 11, 9, 13, 21, 10, 14, 20)
    check(cf, lambda x: F.max_pool2d(x, 3, 2, ceil_mode=True) * 2,
          [(2, 3, n, n + 2) for n in sizes])
    assert len(inner(cf).entries) == 3  # the first size, then odd sizes, then even ones


def test_adaptive_average_over_a_derived_size():
    graphc.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)

    def f(x):
        return F.adaptive_avg_pool2d(conv(x), 1).flatten(1)

    cf = graphc.compile(f)
    check(cf, f, [(2, 3, n, n) for n in (16, 24, 13, 40, 31)])
    assert len(inner(cf).entries) == 2


def test_resnet_reuses_one_program_for_new_resolutions():
    m = load("resnet")
    graphc.manual_seed(0)
    model = m.ResNet(m.BasicBlock, [1, 1, 1, 1], small_inputs=False).eval()
    cm = graphc.compile(model)
    check(cm, model, [(2, 3, n, n) for n in (64, 96, 128, 80)], tol=1e-4)
    assert len(inner(cm).entries) <= 2
    first = inner(cm).recompiles[0]
    assert "reuse one program" in first.suggestion and "pin" not in first.suggestion
    check(cm, model, [(2, 3, 97, 97), (2, 3, 72, 88)], tol=1e-4)  # odd, and not square
    assert len(inner(cm).entries) <= 2


def test_the_advice_says_when_a_guard_still_pins_a_size():
    def f(x):
        y = F.max_pool2d(x, 2)
        return y * float(y.shape[3])  # the pooled width, used as a number: pinned

    cf = graphc.compile(f)
    check(cf, f, [(1, 2, 8, 8), (1, 2, 12, 12)])
    advice = cf.recompiles[0].suggestion
    assert "only where its guards hold" in advice and "pin a size" in advice
    assert "fixed to 6 by float()" in advice
    check(cf, f, [(1, 2, 16, 16)])  # and indeed: the pinned width compiles again
    assert cf.recompiles[-1].guard == "size" and len(cf.entries) == 3
    check(cf, f, [(1, 2, 12, 13), (1, 2, 13, 12)])  # the same pooled width: served
    assert len(cf.entries) == 3
