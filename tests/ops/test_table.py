"""Every op in the table, every dtype it accepts, every sample: eager, meta, decomposition."""

from __future__ import annotations

import numpy as np
import pytest

import graphc
from graphc import dtype as dt
from graphc.errors import DTypeError, ShapeError
from graphc.ops import OPS, Flag, dispatch
from tests.helpers import (
    as_list,
    assert_same,
    case_id,
    graphc_inputs,
    kernel_reference,
    op_cases,
    run_eager,
    samples_of,
)

ALL_CASES = op_cases()


def test_table_is_complete():
    """The ops the design asks for are all declared, each with kernel, rules and samples."""
    required = """
        neg abs exp exp2 log log2 log1p expm1 sqrt rsqrt sin cos tan tanh sigmoid relu gelu silu erf
        floor ceil round trunc sign reciprocal square logical_not isnan isinf isfinite
        add sub mul div remainder pow maximum minimum eq ne lt le gt ge logical_and logical_or atan2
        where clamp lerp sum mean prod amax amin argmax argmin var std logsumexp all any norm
        matmul bmm linear outer cat stack gather index_select masked_fill
        softmax log_softmax layer_norm batch_norm group_norm dropout mse_loss cross_entropy embedding
    """.split()
    missing = [name for name in required if name not in OPS]
    assert not missing, f"ops missing from the table: {missing}"
    for op in OPS:
        assert callable(op.kernel) and callable(op.dtype_rule), op
        assert (op.shape_rule is None) != (op.view_rule is None), f"{op}: one of shape/view rule"
        assert op.samples is not None and op.dtypes, f"{op} has no samples or dtypes"
        assert (Flag.COMPOSITE in op.flags) == (op.decomposition is not None), op


def test_flags_are_sets_passes_can_query():
    elementwise = OPS.with_flag(Flag.ELEMENTWISE)
    assert OPS.add in elementwise and OPS.sum not in elementwise
    assert OPS.dropout in OPS.with_flag(Flag.IMPURE)
    assert OPS.copy_ in OPS.with_flag(Flag.MUTATES)
    assert OPS.permute in OPS.with_flag(Flag.VIEW)


@pytest.mark.parametrize("case", ALL_CASES, ids=case_id)
def test_eager_matches_kernel_reference(case):
    """dispatch (from_numpy inputs in every layout) == the op's numpy kernel on the same data."""
    op, dtype = case
    for sample in samples_of(op, dtype):
        out, inputs = run_eager(op, sample)
        expected = kernel_reference(op, sample)
        for actual, exp in zip(as_list(out), expected):
            assert isinstance(actual, graphc.Tensor)
            assert_same(actual.numpy(), exp, msg=f"{op.name} {sample.desc}")
        if Flag.VIEW in op.flags:
            x = inputs[0]
            # reshape copies exactly when no view exists; every other view op always aliases
            aliases = op.view_rule(op.name, x, **sample.attrs) is not None
            same = out.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()
            assert same == aliases, f"{op.name} {sample.desc}"
        elif Flag.MUTATES in op.flags:
            assert out is inputs[0]
        else:  # an out-of-place op never shares memory with its inputs
            for x in inputs:
                if isinstance(x, graphc.Tensor) and x.numel() and out.numel():
                    assert not np.shares_memory(out.numpy(), x.numpy()), f"{op.name} aliases"


NOT_SMOOTH = {"div"}  # rounding modes: floor(a/b) may flip when a/b is rounded differently


# random ops draw different streams for float32 and float64, so there is nothing to compare
FLOAT32_CASES = [(op, d) for op, d in op_cases(lambda op: Flag.RANDOM not in op.flags)
                 if d is dt.float32]


@pytest.mark.parametrize("case", FLOAT32_CASES, ids=case_id)
def test_float32_accuracy_against_float64(case):
    """float32 results stay within 2e-5 (relative) of the same computation in float64."""
    op, dtype = case
    for sample in samples_of(op, dtype):
        if op.name in NOT_SMOOTH and sample.attrs.get("rounding_mode"):
            continue
        out, _ = run_eager(op, sample)
        for actual, exp in zip(as_list(out), kernel_reference(op, sample, upcast=True)):
            assert_same(actual.numpy(), exp.astype(actual.numpy().dtype), exact=False,
                        rtol=2e-5, atol=2e-6, msg=f"{op.name} {sample.desc}")


@pytest.mark.parametrize("case", ALL_CASES, ids=case_id)
def test_meta_matches_eager(case):
    """Meta mode gives every output's shape, dtype (and a view's strides) without computing."""
    op, dtype = case
    for sample in samples_of(op, dtype):
        meta_inputs = graphc_inputs(sample, device="meta")
        if sample.data_dependent:
            with pytest.raises(ShapeError, match="depends on"):
                dispatch(op, *meta_inputs, **{**sample.attrs, **_meta_device(op)})
            continue
        out, _ = run_eager(op, sample)
        meta = dispatch(op, *meta_inputs, **{**sample.attrs, **_meta_device(op)})
        for m, e in zip(as_list(meta), as_list(out)):
            assert m.is_meta and m.device == graphc.device("meta")
            assert m.shape == e.shape and m.dtype is e.dtype, f"{op.name} {sample.desc}"
            if Flag.VIEW in op.flags:
                assert m.stride() == e.stride() and m.storage_offset() == e.storage_offset()


def _meta_device(op):
    return {"device": "meta"} if Flag.FACTORY in op.flags else {}


COMPOSITES = op_cases(lambda op: Flag.COMPOSITE in op.flags)


@pytest.mark.parametrize("case", COMPOSITES, ids=case_id)
def test_decomposition_matches_kernel(case):
    """A composite's decomposition into primitive ops computes what its kernel computes."""
    op, dtype = case
    for sample in samples_of(op, dtype):
        out, _ = run_eager(op, sample)
        if Flag.RANDOM in op.flags:
            graphc.manual_seed(1234)
        decomposed = op.decomposition(*graphc_inputs(sample), **sample.attrs)
        for d, e in zip(as_list(decomposed), as_list(out)):
            assert d.dtype is e.dtype and d.shape == e.shape, f"{op.name} {sample.desc}"
            tol = 1e-5 if dtype is dt.float32 else 1e-12
            assert_same(d.numpy(), e.numpy(), exact=False, rtol=tol, atol=tol,
                        msg=f"{op.name} {sample.desc}")


UNSUPPORTED = [(op, d) for op in OPS for d in dt.ALL_DTYPES
               if d not in op.dtypes and Flag.FACTORY not in op.flags]


@pytest.mark.parametrize("case", UNSUPPORTED, ids=case_id)
def test_unsupported_dtype_is_a_clear_error(case):
    """An op given a dtype it does not take says so, naming itself and the dtype given."""
    op, dtype = case
    sample = samples_of(op, dtype)[0]
    with pytest.raises(DTypeError) as info:
        dispatch(op, *graphc_inputs(sample), **sample.attrs)
    message = str(info.value)
    assert message.startswith(op.name + ":"), message
    assert dtype.name in message or "bool" in message, message
    assert "test_table.py" in message, "the error should point at the caller's line"


def test_every_op_has_many_samples():
    counts = {op.name: len(samples_of(op, op.dtypes[-1])) for op in OPS}
    assert min(counts.values()) >= 2, counts
