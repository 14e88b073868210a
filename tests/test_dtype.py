"""dtypes and PyTorch's type promotion, written out as a table of expected results."""

from __future__ import annotations

import numpy as np
import pytest

import graphc
from graphc import dtype as dt

B, I32, I64, F32, F64 = dt.bool_, dt.int32, dt.int64, dt.float32, dt.float64
ORDER = [B, I32, I64, F32, F64]


def t(d, ndim=1):
    return graphc.zeros((2,) * ndim, dtype=d)


def test_promote_types_is_the_lattice():
    for i, a in enumerate(ORDER):
        for j, b in enumerate(ORDER):
            assert dt.promote_types(a, b) is ORDER[max(i, j)]


# (operand descriptions, expected result): "T:<dtype>" a tensor with dims, "Z:<dtype>" a 0-d
# tensor, Python numbers as themselves
PROMOTION = [
    (["T:int64", 2.5], F32),          # int64 tensor + Python float -> default float
    (["T:int32", "T:int64"], I64),
    (["T:int32", 7], I32),            # a Python int does not widen an int tensor
    (["T:bool", 7], I64),             # ...but it does lift bool to int64
    (["T:bool", True], B),
    (["T:bool", 1.5], F32),
    (["T:float32", "Z:float64"], F32),  # a 0-d tensor does not widen within its category
    (["T:int32", "Z:int64"], I32),
    (["T:int32", "Z:float64"], F64),    # ...but it does when its category is higher
    (["T:float32", 2], F32),
    (["T:float64", 2.5], F64),
    (["Z:int32", 2.5], F32),
    (["Z:float64", 2], F64),
    (["Z:int32", "Z:int64"], I64),
    (["T:bool", "Z:int32"], I32),
    (["T:int64", "T:float32"], F32),
    (["T:bool", "T:bool"], B),
    ([1, 2.0], F32),
    ([True, 1], I64),
]


def _operand(spec):
    if isinstance(spec, str):
        kind, name = spec.split(":")
        return t(dt.as_dtype(name), ndim=1 if kind == "T" else 0)
    return spec


@pytest.mark.parametrize("operands, expected", PROMOTION, ids=str)
def test_result_type_table(operands, expected):
    assert dt.result_type(*[_operand(s) for s in operands]) is expected


@pytest.mark.parametrize("operands, expected", [p for p in PROMOTION
                                                 if any(isinstance(s, str) for s in p[0])], ids=str)
def test_add_follows_the_table(operands, expected):
    a, b = [_operand(s) for s in operands]
    if expected is B:
        return  # bool + bool is logical or; checked below
    assert graphc.add(a, b).dtype is expected
    assert graphc.mul(b, a).dtype is expected


def test_op_dtype_rules():
    i = t(I64)
    assert (i / 2).dtype is F32 and graphc.exp(i).dtype is F32 and graphc.sqrt(t(B)).dtype is F32
    assert (i // 2).dtype is I64 and (i % 3).dtype is I64
    assert (i == 1.5).dtype is B and graphc.isnan(i).dtype is B
    assert graphc.sum(t(B)).dtype is I64 and graphc.sum(t(I32)).dtype is I64
    assert graphc.prod(t(I32)).dtype is I64 and graphc.amax(t(I32)).dtype is I32
    assert graphc.argmax(t(F32)).dtype is I64 and graphc.all(t(F32)).dtype is B
    assert graphc.square(t(B)).dtype is I64 and graphc.sign(t(B)).dtype is B
    assert graphc.where(t(B), 1.0, 0).dtype is F32 and graphc.where(t(B), 1, 0).dtype is I64
    assert graphc.clamp(t(I64), min=0.5).dtype is F32
    assert graphc.cat([t(I32), t(F32)]).dtype is F32
    assert graphc.mean(t(I64), dtype=F64).dtype is F64
    assert graphc.tensor([True]) + graphc.tensor([True]) == graphc.tensor([True])


def test_default_dtype_can_be_float64():
    try:
        graphc.set_default_dtype(graphc.float64)
        assert graphc.tensor([1.0]).dtype is F64 and graphc.zeros(2).dtype is F64
        assert (t(I64) + 1.5).dtype is F64
    finally:
        graphc.set_default_dtype(graphc.float32)
    with pytest.raises(TypeError, match="floating"):
        graphc.set_default_dtype(graphc.int64)


def test_conversions():
    x = graphc.tensor([1.7, -2.7, 0.0])
    assert x.long().tolist() == [1, -2, 0] and x.long().dtype is I64  # truncation toward zero
    assert x.int().dtype is I32 and x.double().dtype is F64 and x.bool().tolist() == [True, True, False]
    assert x.to(graphc.float32) is x and x.to("float64").dtype is F64
    assert x.to(graphc.float32, copy=True) is not x
    assert x.to(graphc.zeros(1, dtype=I32)).dtype is I32
    assert x.type() == "float32" and x.type(graphc.int64).dtype is I64
    assert graphc.tensor([True, False]).float().tolist() == [1.0, 0.0]


def test_as_dtype_spellings():
    assert dt.as_dtype(float) is F64 and dt.as_dtype(int) is I64 and dt.as_dtype(bool) is B
    assert dt.as_dtype("torch.float32") is F32 and dt.as_dtype(np.int32) is I32
    assert graphc.float is F32 and graphc.double is F64 and graphc.long is I64 and graphc.int is I32
    with pytest.raises(TypeError, match="unknown dtype"):
        dt.as_dtype("complex64")  # float16 and bfloat16 exist: tests/test_device_dtypes.py
    assert repr(F32) == "graphc.float32" and F32.short == "f32" and F32.itemsize == 4
