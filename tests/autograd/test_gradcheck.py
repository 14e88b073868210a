"""A gradient check (central differences, float64) for every differentiable op in the table."""

from __future__ import annotations

import numpy as np
import pytest

import graphc
from graphc import dtype as dt
from graphc.autograd import gradcheck
from graphc.ops import OPS, Flag, dispatch
from tests.helpers import samples_of


def _float_valued(op) -> bool:
    """Ops that give float results for float64 inputs (comparisons, argmax... do not)."""
    if dt.float64 not in op.dtypes or op.flags & {Flag.FACTORY, Flag.NO_GRAD}:
        return False
    sample = samples_of(op, dt.float64)[0]
    with graphc.no_grad():
        out = dispatch(op, *(graphc.tensor(x) if isinstance(x, np.ndarray) else x
                             for x in sample.inputs), **sample.attrs)
    return any(o.dtype.is_floating_point for o in (out if isinstance(out, tuple) else (out,)))


GRAD_OPS = [op for op in OPS if _float_valued(op)]


def test_a_no_grad_op_gives_results_that_do_not_require_grad():
    x = graphc.randn(3, requires_grad=True)
    out = dispatch(OPS.detach, x * 2)
    assert not out.requires_grad and out.grad_fn is None
# std and a norm have no derivative where they are 0 (std of a single element, say)
NOT_DIFFERENTIABLE_AT_ZERO = {"std", "norm"}


def _checkable(sample) -> bool:
    """Central differences need finite inputs and finite float64 outputs."""
    return all(not isinstance(x, np.ndarray) or x.dtype.kind != "f" or np.isfinite(x).all()
               for x in sample.inputs)


def _prepare(op, sample):
    inputs = []
    for x in sample.inputs:
        if isinstance(x, np.ndarray) and x.dtype == np.float64:
            inputs.append(graphc.tensor(x).requires_grad_())
        elif isinstance(x, np.ndarray):
            inputs.append(graphc.tensor(x))
        else:
            inputs.append(x)

    def fn(*args):
        if Flag.RANDOM in op.flags:
            graphc.manual_seed(0)  # the same dropout mask on every evaluation
        if Flag.MUTATES in op.flags:  # write into a copy: a leaf cannot be written in place
            args = (args[0].clone(),) + tuple(args[1:])
        return dispatch(op, *args, **sample.attrs)
    return fn, inputs


def test_every_float_op_is_differentiable():
    """Every op with float outputs has a gradient rule or a decomposition to differentiate."""
    missing = [op.name for op in GRAD_OPS if op.grad is None and op.decomposition is None]
    assert missing == [], missing
    assert len(GRAD_OPS) > 60


@pytest.mark.parametrize("op", GRAD_OPS, ids=lambda op: op.name)
def test_gradcheck(op):
    checked = 0
    for sample in samples_of(op, dt.float64):
        if not _checkable(sample):
            continue
        fn, inputs = _prepare(op, sample)
        if not any(isinstance(x, graphc.Tensor) and x.requires_grad for x in inputs):
            continue
        with graphc.no_grad():
            out = fn(*inputs)
        outs = out if isinstance(out, tuple) else (out,)
        if any(o.dtype is not dt.float64 or not np.isfinite(o.numpy()).all() for o in outs):
            continue
        if op.name in NOT_DIFFERENTIABLE_AT_ZERO and any((o.numpy() == 0).any() for o in outs):
            continue
        assert gradcheck(fn, inputs), f"{op.name} {sample.desc}"
        checked += 1
    assert checked >= 1, f"no sample of {op.name} could be checked"
