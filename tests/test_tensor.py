"""Tensor layout facts (shape, stride, storage offset, contiguity) and aliasing through views."""

from __future__ import annotations

import numpy as np
import pytest

import graphc
from graphc.errors import OpError, OpIndexError, ShapeError


def test_the_pytorch_stride_facts():
    A = graphc.arange(12).reshape(3, 4)
    assert A.stride() == (4, 1) and A.shape == (3, 4) and A.is_contiguous()
    B = A.transpose(0, 1)
    assert B.untyped_storage().data_ptr() == A.untyped_storage().data_ptr()
    assert B.stride() == (1, 4) and not B.is_contiguous()
    with pytest.raises(ShapeError) as info:
        B.view(1, 12)
    message = str(info.value)
    assert "reshape" in message and "contiguous()" in message and "stride" in message
    C = B.contiguous().view(1, 12)
    assert C.tolist() == [[0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]]
    assert A[1:3, 0:2].storage_offset() == 4


def test_geometry_accessors():
    x = graphc.zeros(2, 3, 4)
    assert x.shape == graphc.Size([2, 3, 4]) and x.size() == (2, 3, 4) and x.size(-1) == 4
    assert x.ndim == 3 and x.dim() == 3 and x.numel() == 24 and x.dtype is graphc.float32
    assert x.stride() == (12, 4, 1) and x.stride(1) == 4 and x.storage_offset() == 0
    assert x.element_size() == 4 and x.nbytes == 96
    assert repr(x.shape) == "graphc.Size([2, 3, 4])" and x.shape.numel() == 24
    assert x.data_ptr() == x.untyped_storage().data_ptr()
    y = x[1, 2]
    assert y.data_ptr() == x.data_ptr() + (12 + 8) * 4


def test_storage_views():
    A = graphc.arange(6, dtype=graphc.int32).reshape(2, 3)
    T = A.T
    assert T.storage().tolist() == [0, 1, 2, 3, 4, 5]
    assert T.storage().data_ptr() == A.storage().data_ptr()
    assert len(T.untyped_storage()) == 24 and T.untyped_storage().tolist()[:8] == [0, 0, 0, 0, 1, 0, 0, 0]
    assert A.storage().size() == 6


@pytest.mark.parametrize("make, reference, shape, stride, offset", [
    (lambda x: x[:, 1], lambda a: a[:, 1], (3,), (4,), 1),
    (lambda x: x[1], lambda a: a[1], (4,), (1,), 4),
    (lambda x: x[::2, ::3], lambda a: a[::2, ::3], (2, 2), (8, 3), 0),
    (lambda x: x[..., None], lambda a: a[..., None], (3, 4, 1), (4, 1, 1), 0),
    (lambda x: x[None, 1:], lambda a: a[None, 1:], (1, 2, 4), (12, 4, 1), 4),
    (lambda x: x.permute(1, 0), lambda a: a.T, (4, 3), (1, 4), 0),
    (lambda x: x.T, lambda a: a.T, (4, 3), (1, 4), 0),
    (lambda x: x.mT, lambda a: a.T, (4, 3), (1, 4), 0),
    (lambda x: x.unsqueeze(1), lambda a: a[:, None], (3, 1, 4), (4, 4, 1), 0),
    (lambda x: x.unsqueeze(-1), lambda a: a[..., None], (3, 4, 1), (4, 1, 1), 0),
    (lambda x: x[:1].squeeze(0), lambda a: a[0], (4,), (1,), 0),
    (lambda x: x[:, :1].expand(3, 5), lambda a: np.broadcast_to(a[:, :1], (3, 5)), (3, 5),
     (4, 0), 0),
    (lambda x: x[1].expand(2, 4), lambda a: np.broadcast_to(a[1], (2, 4)), (2, 4), (0, 1), 4),
    (lambda x: x.narrow(1, 1, 2), lambda a: a[:, 1:3], (3, 2), (4, 1), 1),
    (lambda x: x.select(1, 3), lambda a: a[:, 3], (3,), (4,), 3),
    (lambda x: x.flatten(), lambda a: a.reshape(-1), (12,), (1,), 0),
    (lambda x: x.view(2, 6), lambda a: a.reshape(2, 6), (2, 6), (6, 1), 0),
    (lambda x: x.view(-1, 2, 2), lambda a: a.reshape(3, 2, 2), (3, 2, 2), (4, 2, 1), 0),
    (lambda x: x.reshape(4, 3), lambda a: a.reshape(4, 3), (4, 3), (3, 1), 0),
    (lambda x: x.unbind(1)[2], lambda a: a[:, 2], (3,), (4,), 2),
    (lambda x: x.split(2, 1)[1], lambda a: a[:, 2:4], (3, 2), (4, 1), 2),
    (lambda x: x.chunk(2, 0)[1], lambda a: a[2:], (1, 4), (4, 1), 8),
    (lambda x: x.as_strided((2, 2), (1, 4), 1), lambda a: a.T[1:3, :2], (2, 2), (1, 4), 1),
    (lambda x: x.movedim(0, 1), lambda a: a.T, (4, 3), (1, 4), 0),
    (lambda x: x[:, ::-1], lambda a: a[:, ::-1], (3, 4), (4, -1), 3),
    (lambda x: x.T.unflatten(0, (2, 2)), lambda a: a.T.reshape(2, 2, 3), (2, 2, 3), (2, 1, 4), 0),
])
def test_views_have_pytorch_geometry_and_share_storage(make, reference, shape, stride, offset):
    base = graphc.arange(12.0).reshape(3, 4)
    v = make(base)
    assert (tuple(v.shape), v.stride(), v.storage_offset()) == (shape, stride, offset)
    assert v.untyped_storage().data_ptr() == base.untyped_storage().data_ptr()
    expected = reference(np.arange(12.0, dtype=np.float32).reshape(3, 4))
    np.testing.assert_array_equal(v.numpy(), expected)


def test_writes_through_views_are_seen_by_the_base():
    base = graphc.zeros(3, 4)
    base[1:, ::2].fill_(7.0)
    base.T[0].add_(1.0)  # column 0
    base[0][3] = 5
    row = base[2]
    row *= 2
    assert base.tolist() == [[1, 0, 0, 5], [8, 0, 7, 0], [16, 0, 14, 0]]
    v = base.view(12)
    v.zero_()
    assert base.sum().item() == 0.0
    assert base._version > 0 and v._version == base._version


def test_reshape_copies_only_when_it_must():
    A = graphc.arange(12).reshape(3, 4)
    assert A.reshape(4, 3).untyped_storage().data_ptr() == A.untyped_storage().data_ptr()
    T = A.T
    R = T.reshape(12)
    assert R.untyped_storage().data_ptr() != A.untyped_storage().data_ptr()
    assert R.tolist() == [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]
    assert T.reshape(2, 2, 3).tolist() == T.contiguous().view(2, 2, 3).tolist()
    # merging only dims that are laid out together keeps a view
    X = graphc.zeros(2, 3, 4).permute(1, 0, 2)  # (3, 2, 4) with strides (4, 12, 1)
    assert X.reshape(3, 8).untyped_storage().data_ptr() != X.untyped_storage().data_ptr()
    assert X.reshape(6, 4).untyped_storage().data_ptr() != X.untyped_storage().data_ptr()
    Y = graphc.zeros(4, 6)[:, :4]  # rows are not adjacent
    assert Y.reshape(2, 2, 4).untyped_storage().data_ptr() == Y.untyped_storage().data_ptr()
    assert Y.reshape(2, 2, 4).stride() == (12, 6, 1)


def test_contiguous_returns_self_when_already_contiguous():
    A = graphc.ones(2, 3)
    assert A.contiguous() is A
    assert A.T.contiguous() is not A and A.T.contiguous().is_contiguous()
    assert graphc.zeros(3, 1).expand(3, 4).contiguous().stride() == (4, 1)


def test_is_contiguous_follows_pytorch():
    assert graphc.zeros(0, 3).T.is_contiguous()  # empty tensors are contiguous
    assert graphc.zeros(4, 1).T.is_contiguous()  # size-1 dims do not matter
    assert not graphc.zeros(3, 4)[:, ::2].is_contiguous()


def test_advanced_indexing_copies():
    A = graphc.arange(12).reshape(3, 4)
    rows = A[graphc.tensor([0, 2])]
    mask = A[A > 5]
    listed = A[[1, 1]]
    assert rows.tolist() == [[0, 1, 2, 3], [8, 9, 10, 11]]
    assert mask.tolist() == [6, 7, 8, 9, 10, 11]
    assert listed.tolist() == [[4, 5, 6, 7], [4, 5, 6, 7]]
    for t in (rows, mask, listed):
        assert t.untyped_storage().data_ptr() != A.untyped_storage().data_ptr()
    rows[0, 0] = 100
    assert A[0, 0].item() == 0


def test_advanced_indexing_follows_pytorch_not_numpy():
    z = graphc.zeros(3, 4, 5)
    assert z[0, :, [1, 2]].shape == (4, 2)  # numpy would give (2, 4)
    assert z[:, [0, 1], [1, 2]].shape == (3, 2)
    assert z[[0, 1], :, [1, 2]].shape == (2, 4)
    assert z[None, [0]].shape == (1, 1, 4, 5)
    assert z[..., [1]].shape == (3, 4, 1)
    assert z[graphc.tensor(1)].shape == (4, 5)
    x = graphc.arange(12).reshape(3, 4)
    assert x[graphc.tensor([[0, 1], [2, 0]])].shape == (2, 2, 4)
    assert x[1, [3, 0]].tolist() == [7, 4]
    assert x[-1, -1].item() == 11


def test_setitem_basic_and_advanced():
    x = graphc.zeros(3, 4, dtype=graphc.int64)
    x[0] = 1
    x[1, 1:3] = graphc.tensor([5, 6])
    x[x == 0] = 9
    x[[2, 2], [0, 1]] = graphc.tensor([7, 8])
    x[:, -1] = 2.9  # float into int64 truncates, as in PyTorch
    assert x.tolist() == [[1, 1, 1, 2], [9, 5, 6, 2], [7, 8, 9, 2]]
    y = graphc.zeros(4)
    y[graphc.tensor([0, 0, 3])] = graphc.tensor([1.0, 2.0, 3.0])
    assert y[3].item() == 3.0 and y[0].item() in (1.0, 2.0)


def test_indexing_errors_are_clear():
    x = graphc.zeros(3, 4)
    with pytest.raises(OpIndexError, match="index 3 is out of bounds for dim 0 with size 3"):
        x[3]
    with pytest.raises(OpIndexError, match="index 7 is out of bounds for dim 1 with size 4"):
        x[:, [0, 7]]
    with pytest.raises(OpIndexError, match="too many indices"):
        x[0, 0, 0]
    with pytest.raises(OpIndexError, match="mask of shape"):
        x[graphc.tensor([True, False])]
    with pytest.raises(TypeError, match="valid indices"):
        x["a"]


def test_inplace_ops_write_storage_and_return_self():
    x = graphc.ones(2, 3)
    alias = x.view(6)
    assert x.add_(1) is x and x.mul_(3) is x and x.sub_(1) is x and x.div_(5) is x
    assert alias.tolist() == [1.0] * 6
    x.clamp_(0, 0.5)
    assert alias.tolist() == [0.5] * 6
    x.copy_(graphc.tensor([1.0, 2.0, 3.0]))  # broadcasts
    assert x.tolist() == [[1, 2, 3], [1, 2, 3]]
    x.zero_()
    assert alias.sum().item() == 0
    x += 2
    x **= 2
    assert x.tolist() == [[4, 4, 4], [4, 4, 4]]


def test_inplace_cannot_lower_the_dtype_category():
    x = graphc.ones(3, dtype=graphc.int64)
    with pytest.raises(OpError, match="cannot be cast"):
        x.add_(1.5)
    with pytest.raises(OpError, match="cannot be cast"):
        x /= 2
    x.add_(graphc.ones(3, dtype=graphc.int32))
    assert x.dtype is graphc.int64 and x.tolist() == [2, 2, 2]


def test_writing_into_an_expanded_tensor_is_refused():
    x = graphc.zeros(1, 3).expand(4, 3)
    with pytest.raises(OpError, match="more than one element"):
        x.add_(1)


def test_from_numpy_and_numpy_are_zero_copy():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = graphc.from_numpy(a)
    assert t.data_ptr() == a.ctypes.data and t.stride() == (3, 1)
    t[0, 0] = 42
    assert a[0, 0] == 42
    n = t.numpy()
    n[1, 2] = -1
    assert t[1, 2].item() == -1
    assert np.shares_memory(np.asarray(t), a)
    # non-contiguous and negative-stride arrays keep their layout
    r = graphc.from_numpy(a[:, ::-1])
    assert r.stride() == (3, -1) and r.tolist() == a[:, ::-1].tolist()
    tt = graphc.from_numpy(a.T)
    assert tt.stride() == (1, 3) and not tt.is_contiguous()


def test_from_numpy_rejects_unsupported_dtypes_clearly():
    with pytest.raises(TypeError, match="does not support numpy dtype.*astype"):
        graphc.from_numpy(np.zeros(3, np.longdouble))  # (float16 is supported: test_device_dtypes)
    with pytest.raises(TypeError, match="uint8"):
        graphc.tensor(np.zeros(3, np.uint8))


def test_read_only_arrays_cannot_be_written():
    a = np.zeros(3, np.float32)
    a.flags.writeable = False
    t = graphc.from_numpy(a)
    assert t.sum().item() == 0
    with pytest.raises(OpError, match="read-only"):
        t.add_(1)


def test_scalars_and_python_protocols():
    x = graphc.tensor([[1.5, 2.0], [3.0, 4.0]])
    assert x[0, 0].item() == 1.5 and float(x[1, 1]) == 4.0 and int(x[0, 1]) == 2
    assert len(x) == 2 and [r.tolist() for r in x] == [[1.5, 2.0], [3.0, 4.0]]
    assert bool(graphc.tensor([True]))
    with pytest.raises(OpError, match="ambiguous"):
        bool(x)
    with pytest.raises(OpError, match="4 elements"):
        x.item()
    assert [10, 20, 30][graphc.tensor(2)] == 30
    assert f"{graphc.tensor(2.5):.2f}" == "2.50"
    with pytest.raises(TypeError, match="picklable"):
        import pickle
        pickle.dumps(x)
    assert {x: 1}[x] == 1  # hashable by identity


def test_numpy_arrays_mix_with_tensors():
    x = graphc.ones(3)
    a = np.arange(3, dtype=np.float32)
    assert isinstance(x + a, graphc.Tensor) and (x + a).tolist() == [1, 2, 3]
    assert isinstance(a + x, graphc.Tensor) and (a * x).tolist() == [0, 1, 2]


def test_empty_views_and_zero_dims():
    x = graphc.arange(10)[::4]  # 3 elements at 0, 4, 8
    e = x[3:]
    assert e.shape == (0,) and e.numel() == 0 and e.tolist() == []
    z = graphc.zeros(0, 3)
    assert z.sum(0).tolist() == [0, 0, 0] and z.T.shape == (3, 0)
    s = graphc.tensor(5.0)
    assert s.shape == () and s.stride() == () and s.unsqueeze(0).shape == (1,)
    assert s.view(1, 1).shape == (1, 1) and s.reshape(-1).shape == (1,)


def test_where_method_keeps_self_where_the_condition_holds():
    x = graphc.tensor([1.0, -2.0, 3.0])
    assert x.where(x > 0, 0.0).tolist() == [1.0, 0.0, 3.0]
    assert x.where(x < 0, graphc.full((3,), 9.0)).tolist() == [9.0, -2.0, 9.0]
