"""Property tests (hypothesis): indexing, reshaping and broadcasting agree with numpy on
random shapes and keys, and views stay views."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphc
from graphc.errors import ShapeError
from graphc.layout import broadcast_shapes, view_strides

shapes = st.lists(st.integers(0, 5), min_size=0, max_size=4).map(tuple)


@st.composite
def basic_keys(draw, shape):
    """A basic-indexing key for ``shape``: ints, slices (any step sign), None, one Ellipsis."""
    key = []
    dims = list(shape)
    used_ellipsis = False
    while dims:
        kind = draw(st.sampled_from(["int", "slice", "slice", "none", "ellipsis", "stop"]))
        if kind == "stop":
            if used_ellipsis:  # after '...' the key must name every remaining (trailing) dim
                continue
            break
        if kind == "none":
            key.append(None)
        elif kind == "ellipsis" and not used_ellipsis:
            used_ellipsis = True
            key.append(Ellipsis)
            dims = dims[draw(st.integers(0, len(dims))):]
            continue
        elif kind == "int" and dims[0] > 0:
            key.append(draw(st.integers(-dims[0], dims[0] - 1)))
            dims.pop(0)
        else:
            n = dims.pop(0)
            bound = st.one_of(st.none(), st.integers(-n - 2, n + 2))
            step = draw(st.one_of(st.none(), st.integers(-3, 3).filter(lambda s: s != 0)))
            key.append(slice(draw(bound), draw(bound), step))
    return tuple(key)


@st.composite
def array_and_key(draw):
    shape = draw(shapes)
    layout = draw(st.sampled_from(["contiguous", "transposed", "strided", "negstep"]))
    a = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    from graphc.ops.samples import relayout
    return relayout(a, layout if a.ndim else "contiguous"), draw(basic_keys(shape))


@settings(max_examples=400, deadline=None)
@given(array_and_key())
def test_basic_indexing_is_a_view_with_numpy_values(case):
    a, key = case
    t = graphc.from_numpy(a)
    v = t[key]
    expected = a[key]
    assert tuple(v.shape) == expected.shape
    np.testing.assert_array_equal(v.numpy(), expected)
    assert v.untyped_storage().data_ptr() == t.untyped_storage().data_ptr()
    if v.numel() and isinstance(expected, np.ndarray):
        assert v.data_ptr() == expected.ctypes.data  # the same first element


@settings(max_examples=300, deadline=None)
@given(array_and_key(), st.data())
def test_setitem_through_basic_keys_matches_numpy(case, data):
    a, key = case
    ours, theirs = a.copy(), a.copy()
    value = data.draw(st.floats(-10, 10, allow_nan=False, width=32))
    t = graphc.from_numpy(ours)
    t[key] = value
    theirs[key] = value
    np.testing.assert_array_equal(ours, theirs)


@st.composite
def reshapes(draw):
    shape = draw(st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple))
    perm = draw(st.permutations(range(len(shape))))
    n = int(np.prod(shape))
    # a random factorisation of n as the new shape
    new, rest = [], n
    while rest > 1:
        d = draw(st.sampled_from([k for k in range(1, rest + 1) if rest % k == 0]))
        new.append(d)
        rest //= d
    new += [1] * draw(st.integers(0, 2))
    draw(st.randoms()).shuffle(new)
    return shape, tuple(perm), tuple(new)


# (data_too_large: the shapes' factorizations draw many values; on a fresh example
# database the health check failed a clean clone's run)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.data_too_large])
@given(reshapes())
def test_reshape_matches_numpy_and_views_when_strides_allow(case):
    shape, perm, new = case
    base = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
    t = graphc.from_numpy(base).permute(*perm)
    r = t.reshape(new)
    np.testing.assert_array_equal(r.numpy(), base.transpose(perm).reshape(new))
    viewable = view_strides(tuple(t.shape), t.stride(), new) is not None
    shares = r.untyped_storage().data_ptr() == t.untyped_storage().data_ptr()
    assert shares == viewable
    if viewable:
        assert t.view(new).stride() == r.stride()
    else:
        try:
            t.view(new)
            raise AssertionError("view should have refused a layout that needs a copy")
        except ShapeError:
            pass
    # a contiguous tensor can always be viewed
    assert view_strides(tuple(t.contiguous().shape), t.contiguous().stride(), new) is not None


@settings(max_examples=400, deadline=None)
@given(shapes, shapes)
def test_broadcasting_matches_numpy(a, b):
    try:
        expected = np.broadcast_shapes(a, b)
    except ValueError:
        try:
            broadcast_shapes("add", a, b)
            raise AssertionError(f"{a} and {b} should not broadcast")
        except ShapeError:
            return
    assert broadcast_shapes("add", a, b) == expected
    out = graphc.zeros(a) + graphc.ones(b)
    assert tuple(out.shape) == expected
