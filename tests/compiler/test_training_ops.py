"""Compiled training, op by op: every differentiable op of the table (a gradient rule, or
a decomposition into ops that have one), every sample of its float dtypes, through
``graphc.compile`` with inputs that require grad: the forward values and the gradients
of every input must equal eager autograd's, and the call must run compiled.

One compiled function per (op, dtype) holds all of its samples (each sample its own
inputs and output), so a test costs one trace and two LLVM compiles.
"""

from __future__ import annotations

import numpy as np
import pytest

import graphc
from graphc import dtype as dt
from graphc.ops import Flag, dispatch
from tests.helpers import case_id, op_cases, samples_of, to_graphc


@pytest.fixture(autouse=True, scope="module")
def private_cache_dir(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRAPHC_CACHE_DIR", str(tmp_path_factory.mktemp("graphc-cache")))
        yield


def differentiable(op) -> bool:
    return (op.grad is not None or Flag.COMPOSITE in op.flags) and not op.flags & {
        Flag.MUTATES, Flag.RANDOM, Flag.IMPURE, Flag.FACTORY}


CASES = [c for c in op_cases(differentiable) if c[1] in (dt.float32, dt.float64)]

# Ops whose gradient cannot be a graph yet, and why (compiled training runs them eagerly,
# with this reason): a new op that silently stops compiling in training fails the test.
EAGER_IN_TRAINING = {
    "index": "a sample indexes with a boolean mask: the result's size depends on its values, "
             "which a traced program does not know (inference runs it eagerly too)",
    "as_strided": "its gradient finds the view's elements in the input's memory, a numpy "
                  "computation on the storage",
}

TOLERANCE = {dt.float32: 2e-5, dt.float64: 1e-10}


def _leaf(x, dtype):
    t = to_graphc(x)
    if isinstance(t, graphc.Tensor) and t.dtype.is_floating_point:
        t = t.detach().clone() if t.is_contiguous() else t.detach()
        t.requires_grad_(True)
    return t


def expected_outs(fn, inputs):
    return [o for o in fn(*inputs)]


def _grads(fn, inputs, tangents):
    outs = fn(*inputs)
    loss = None
    for o, t in zip(outs, tangents):
        if t is not None and o.requires_grad:
            term = (o * t).sum()
            loss = term if loss is None else loss + term
    if loss is not None:
        loss.backward()
    return [o.detach().numpy() for o in outs], [
        x.grad.numpy() if isinstance(x, graphc.Tensor) and x.grad is not None else None
        for x in inputs]


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_compiled_gradients_equal_eager(case):
    op, dtype = case
    samples = [s for s in samples_of(op, dtype)]
    spans, flat = [], []
    for s in samples:
        spans.append((len(flat), len(s.inputs), s.attrs))
        flat.extend(s.inputs)

    def fn(*xs):
        return tuple(dispatch(op, *xs[start:start + n], **attrs) for start, n, attrs in spans)

    def fresh():
        return [_leaf(x, dtype) for x in flat]

    rng = np.random.default_rng(0)
    eager_in = fresh()
    with graphc.no_grad():
        shapes = [o for o in fn(*eager_in)]
    tangents = [graphc.from_numpy(rng.standard_normal(tuple(o.shape)).astype(o.dtype.np))
                if o.dtype.is_floating_point else None for o in shapes]
    expected, expected_grads = _grads(fn, eager_in, tangents)
    compiled = graphc.compile(fn)
    got, got_grads = _grads(compiled, fresh(), tangents)
    if op.name in EAGER_IN_TRAINING:
        assert compiled.eager_runs, f"{op.name} compiles in training now: drop it from the list"
        return
    assert not compiled.eager_runs, [str(r) for r in compiled.eager_runs]
    if any(o.requires_grad for o in expected_outs(fn, fresh())):
        assert compiled.last_training.forward.last.program, "no training programs ran"
    tol = TOLERANCE[dtype]
    for k, (a, b) in enumerate(zip(got, expected)):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol, equal_nan=True,
                                   err_msg=f"{op.name} output of sample {k}")
    for k, (a, b) in enumerate(zip(got_grads, expected_grads)):
        if b is None:
            assert a is None or not np.any(a), f"{op.name}: input {k} got a gradient eager has not"
            continue
        assert a is not None, f"{op.name}: no gradient for input {k}"
        finite = np.abs(b[np.isfinite(b)])
        scale = max(1.0, float(finite.max()) if finite.size else 1.0)
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol * scale, equal_nan=True,
                                   err_msg=f"{op.name}: gradient of input {k}")
