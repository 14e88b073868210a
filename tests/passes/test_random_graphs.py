"""Random programs (hypothesis): every pass of the default pipeline, then fusion, keeps
the graph valid and its values equal to eager."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphc
import graphc.nn.functional as F
from graphc.ir import Interpreter
from graphc.passes import PassManager, fuse, plan_memory
from graphc.trace import TensorSpec

FULL, ROWS, COLS = (4, 6), (4, 1), (6,)

UNARY = [graphc.tanh, graphc.sigmoid, graphc.relu, graphc.neg, lambda v: v.abs().sqrt(),
         lambda v: v * 1.0, lambda v: v.T.T, lambda v: (v * 0.1).exp(), lambda v: v - 0.0,
         lambda v: F.gelu(v, approximate="tanh"), lambda v: v.clamp(-1.0, 1.0)]
BINARY = [graphc.add, graphc.mul, graphc.sub, graphc.maximum, lambda a, b: a * 0.5 + b,
          lambda a, b: graphc.where(a > b, a, b)]
REDUCE = [lambda v: v.sum(-1, keepdim=True), lambda v: v.amax(-1, keepdim=True),
          lambda v: v.mean(0) if v.ndim == 2 else v.mean(-1, keepdim=True),
          lambda v: v.logsumexp(-1, keepdim=True)]
LAST_DIM_6 = [lambda v: F.softmax(v, -1), lambda v: F.layer_norm(v, (6,))]
CONSTANTS = [lambda: graphc.arange(6, dtype=graphc.float64) / 6]


def run(steps, x, w):
    values = [x]
    for kind, a, b in steps:
        u = values[a % len(values)]
        v = values[b % len(values)]
        if kind == "unary":
            values.append(UNARY[b % len(UNARY)](u))
        elif kind == "binary":
            values.append(BINARY[a % len(BINARY)](u, v))
        elif kind == "reduce" and u.ndim >= 1 and u.numel() > 1:
            values.append(REDUCE[b % len(REDUCE)](u))
        elif kind == "rowwise" and u.ndim >= 1 and u.shape[-1] == 6:
            values.append(LAST_DIM_6[b % len(LAST_DIM_6)](u))
        elif kind == "matmul" and u.ndim >= 1 and u.shape[-1] == 6:
            values.append(u @ w)
        elif kind == "constant":
            values.append(CONSTANTS[0]() + u)
        elif kind == "dead":
            (u * 3.0).exp()  # computed and dropped: dead code
    return values[-1] + values[len(values) // 2].sum()


steps = st.lists(st.tuples(st.sampled_from(
    ["unary", "binary", "reduce", "rowwise", "matmul", "constant", "dead"]),
    st.integers(0, 50), st.integers(0, 50)), min_size=1, max_size=12)


def _close(got, expected):
    g, e = got.detach().numpy(), expected.detach().numpy()
    scale = max(1.0, float(np.nanmax(np.abs(e[np.isfinite(e)]), initial=0.0)))
    np.testing.assert_allclose(g, e, rtol=1e-7, atol=1e-9 * scale)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps, st.integers(0, 2**31 - 1))
def test_passes_and_fusion_preserve_random_programs(program, seed):
    rng = np.random.default_rng(seed)
    x = graphc.tensor(rng.standard_normal(FULL))
    w = graphc.tensor(rng.standard_normal((6, 6)))
    fn = lambda x, w: run(program, x, w)
    expected = fn(x, w)
    gm = graphc.trace(fn, TensorSpec(FULL, graphc.float64), TensorSpec((6, 6), graphc.float64))
    PassManager.default().run(gm, check_inputs=(x, w), rtol=1e-7, atol=1e-9)
    plan = fuse(gm)
    gm.graph.lint(gm, require_meta=True)
    with graphc.no_grad():
        _close(gm(x, w), expected)
        _close(Interpreter(gm).run(x, w), expected)
    kernel_members = [m for _, _, members in plan.kernels for m in members]
    assert len(kernel_members) == len(set(kernel_members))  # no node computed twice
    plan_memory(gm)  # the planner accepts every fused graph
