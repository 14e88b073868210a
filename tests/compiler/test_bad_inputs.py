"""The bad-input catalogue for compiled callables: each case gets a clear error (naming the
op or function, what was given and expected, and the caller's line) or the right answer."""

from __future__ import annotations

import faulthandler
import gc
import inspect
import os
import sys
import warnings

import numpy as np
import pytest

import graphc
import graphc.nn as nn
from graphc.compiler import compile_graph


def line(delta: int = 0) -> str:
    return f"test_bad_inputs.py:{inspect.currentframe().f_back.f_lineno + delta}"


def linear_model():
    graphc.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4)).eval()


def same(a, b, tol=1e-5):
    assert a.shape == b.shape and a.dtype == b.dtype
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=tol, atol=tol, equal_nan=True)


# ---- shapes, ranks, dtypes, arguments ----------------------------------------------------------

@pytest.mark.parametrize("x, error, message", [
    (graphc.randn(8, 15), graphc.ShapeError, r"Linear\(in_features=16\): got input of shape "
                                             r"\(8, 15\); expected \(\*, 16\)"),
    (graphc.randn(16), None, None),                    # rank 1: Linear accepts it, like eager
    (graphc.randn(2, 3, 16), None, None),              # rank 3: batched, like eager
    (graphc.randn(8, 16).double(), graphc.DTypeError, r"linear: expected all operands to have "
                                                      r"the same dtype, got float64\[8, 16\]"),
    (graphc.arange(16).reshape(1, 16), graphc.DTypeError, r"got int64\[1, 16\]"),
])
def test_wrong_shape_rank_and_dtype_behave_like_eager(x, error, message):
    model = linear_model()
    cm = graphc.compile(model)
    with graphc.no_grad():
        if error is None:
            same(cm(x), model(x))
            assert not cm.compiled.eager_runs
            return
        with pytest.raises(error, match=message) as info:
            where = line(); cm(x)  # noqa: E702
    assert str(info.value).endswith(f"at {where}")  # the error points at the caller's line
    assert not cm.compiled.entries


def test_too_many_too_few_and_unknown_arguments():
    f = graphc.compile(lambda x, y: x + y)
    x = graphc.ones(2)
    with pytest.raises(TypeError, match=r"<lambda>\(\): missing a required argument: 'y'"):
        f(x)
    with pytest.raises(TypeError, match=r"<lambda>\(\): too many positional arguments"):
        f(x, x, x)
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'z'"):
        f(x, x, z=x)
    cm = graphc.compile(linear_model())
    with pytest.raises(TypeError, match=r"Sequential\(\): too many positional arguments"):
        cm(x, x)


def test_python_scalars_where_tensors_are_expected():
    f = graphc.compile(lambda x, y: x * y + 1)
    assert f(3.0, 2) == 7.0  # no tensors at all: a Python value, as eagerly
    same(f(graphc.ones(3), 2.5), graphc.full((3,), 3.5))
    same(f(2.5, graphc.ones(3)), graphc.full((3,), 3.5))
    same(f(graphc.ones(3), True), graphc.full((3,), 2.0))
    assert len(f.entries) == 4


def test_numpy_arrays_run_eagerly_with_a_hint():
    f = graphc.compile(lambda x: x * 2)
    with pytest.warns(UserWarning, match=r"argument 'x' cannot be guarded: a numpy array; "
                                         r"compiled code takes graphc tensors: pass "
                                         r"graphc.from_numpy"):
        got = f(np.ones(3))
    np.testing.assert_array_equal(got, np.full(3, 2.0))  # the eager answer
    same(f(graphc.from_numpy(np.ones(3))), graphc.full((3,), 2.0, dtype=graphc.float64))


@pytest.mark.parametrize("make", [
    lambda: graphc.randn(6, 4).T,                      # transposed
    lambda: graphc.randn(4, 12)[:, ::3],               # strided
    lambda: graphc.randn(4, 4)[::-1],                  # negative stride
    lambda: graphc.randn(1, 4).expand(5, 4),           # stride 0
    lambda: graphc.randn(0, 4),                        # zero-size
    lambda: graphc.randn(3, 0),
    lambda: graphc.randn(1, 1),
])
def test_non_contiguous_and_zero_size_inputs(make):
    f = graphc.compile(lambda x: (x.exp() - x.mean(-1, keepdim=True)).sum(0) * 2)
    x = make()
    same(f(x), f.__wrapped__(x), tol=1e-4)
    assert not f.eager_runs


def test_meta_tensors_are_refused_before_native_code():
    cm = graphc.compile(linear_model())
    with pytest.raises(ValueError, match="'input' is a meta tensor; compiled code needs data"):
        with graphc.no_grad():
            cm(graphc.randn(2, 16).to("meta"))
    cg = compile_graph(graphc.trace(lambda x: x + 1, graphc.TensorSpec((2,))))
    with pytest.raises(ValueError, match="input 0 is a meta tensor"):
        cg(graphc.ones(2).to("meta"))
    with pytest.raises(TypeError, match="input 0 must be a graphc.Tensor, got ndarray"):
        cg(np.ones(2, np.float32))
    with pytest.raises(TypeError, match="compiled graph takes 1 inputs, got 2"):
        cg(graphc.ones(2), graphc.ones(2))


# ---- sizes beyond 32-bit indexing -------------------------------------------------------------

def test_more_elements_than_int32_indexes():
    x = graphc.ones(1).expand(2**31 + 5)  # a broadcast view: 2^31 + 5 elements, 4 bytes
    f = graphc.compile(lambda x: (x * 2).sum())
    assert f(x).item() == pytest.approx(2.0 * (2**31 + 5), rel=1e-6)


def test_storage_offsets_beyond_int32():
    big = graphc.from_numpy(np.zeros(2**31 + 64, np.bool_))  # untouched pages: no real memory
    tail = big[2**31:]
    assert tail.storage_offset() == 2**31
    tail[5] = True
    tail[63] = True
    f = graphc.compile(lambda x: (x.float() * 3).sum())
    assert f(tail).item() == 6.0


HUGE = (1 << 32, 1 << 32)  # 2**64 elements: past int64, as a broadcast view of one element


def raises_like_eager(fn, *args, fullgraph=False):
    """``fn`` compiled raises eager's exception, with eager's message, and never hangs
    (native code counting 2**64 elements would: the run is stopped after two minutes)."""
    with pytest.raises(Exception) as eager:
        fn(*args)
    faulthandler.dump_traceback_later(120, exit=True)
    try:
        with graphc.no_grad(), pytest.raises(Exception) as compiled:
            graphc.compile(fn, fullgraph=fullgraph)(*args)
    finally:
        faulthandler.cancel_dump_traceback_later()
    assert type(compiled.value) is type(eager.value)
    assert str(compiled.value) == str(eager.value)
    return compiled.value


@pytest.mark.parametrize("name", ["sum", "amax", "amin", "any", "all", "mean", "prod",
                                  "argmax", "var", "std", "norm"])
def test_reductions_over_more_elements_than_int64_raise_as_eager(name):
    x = graphc.ones(1, 1).expand(*HUGE)
    where = line(1)
    error = raises_like_eager(lambda x: getattr(x, name)(), x)
    assert isinstance(error, ValueError)
    assert str(error) == (f"{name}: the input float32[4294967296, 4294967296] spans "
                          f"73786976294838206464 bytes, more than an array can address "
                          f"(2**63 - 1 bytes) at {where}")


@pytest.mark.parametrize("fn", [
    lambda x: x.expand(*HUGE).sum(),                     # the view made inside the graph
    lambda x: x.expand(1 << 31, 1 << 31).amax(),         # 2**62 elements, 2**64 bytes
    lambda x: (x.expand(1 << 31, 1) + x.expand(1, 1 << 31)).any(),  # a broadcast result
    lambda x: x.expand(*HUGE) * 2,
])
@pytest.mark.parametrize("fullgraph", [False, True])
def test_values_past_int64_inside_the_graph_raise_as_eager(fn, fullgraph):
    error = raises_like_eager(fn, graphc.ones(1, 1), fullgraph=fullgraph)
    assert isinstance(error, ValueError) and "more than an array can address" in str(error)


def test_views_of_a_huge_broadcast_still_compute():
    fn = lambda x: x[0, :5] * 2  # noqa: E731
    x = graphc.ones(1, 1).expand(*HUGE)
    with graphc.no_grad():
        same(graphc.compile(fn)(x), fn(x))


# ---- 0-d tensors: dim 0 and -1 are their only dim ---------------------------------------------

@pytest.mark.parametrize("fn", [
    lambda x: x.mean(-1), lambda x: x.mean(0, keepdim=True), lambda x: x.sum(-1),
    lambda x: x.var(-1), lambda x: x.var(0, correction=0), lambda x: x.std(-1),
    lambda x: x.std(-1, correction=0), lambda x: x.prod(-1), lambda x: x.amax(-1),
    lambda x: x.amin(0), lambda x: x.argmax(-1), lambda x: x.argmin(0), lambda x: x.any(-1),
    lambda x: x.all(0), lambda x: x.logsumexp(-1), lambda x: x.norm(dim=-1),
    lambda x: x.norm(1, dim=0), lambda x: x.norm(float("inf"), dim=-1),
    lambda x: x.softmax(-1), lambda x: x.log_softmax(0), lambda x: x.max(-1).values,
])
def test_reductions_of_a_0d_tensor_over_dim_0_or_minus_1(fn):
    x = graphc.tensor(1.5)
    with graphc.no_grad():
        same(graphc.compile(fn)(x), fn(x))


# ---- Python values as arguments --------------------------------------------------------------

@pytest.mark.parametrize("y", [None, "a", [1, 2, 3], (1, 2), {"a": 1}, 1j, 2.5, 2, True,
                               np.float32(2.5), np.int64(2), np.bool_(True)],
                         ids=lambda y: type(y).__name__)
def test_python_arguments_behave_as_in_eager(y):
    where = line(1)
    fn = lambda x, y: x + y  # noqa: E731
    x = graphc.ones(3)
    try:
        want = fn(x, y)
    except Exception:
        error = raises_like_eager(fn, x, y)  # (a dict is guarded: test_calling_conventions)
        assert isinstance(error, TypeError) and str(error).startswith("add: expected tensors")
        assert str(error).endswith(f" at {where}")
        return
    with graphc.no_grad():
        same(graphc.compile(fn)(x, y), want)


@pytest.mark.parametrize("fn, op", [
    (lambda x, y: x + y, "add"), (lambda x, y: y * x, "mul"), (lambda x, y: x.pow(y), "pow"),
    (lambda x, y: graphc.where(x > 0, x, y), "where"), (lambda x, y: x.lerp(x, y), "lerp"),
    (lambda x, y: graphc.clamp(y, 0, 1), "clamp"), (lambda x, y: graphc.maximum(x, y), "maximum"),
])
def test_none_where_a_number_or_tensor_is_needed(fn, op):
    error = raises_like_eager(fn, graphc.ones(3), None)
    assert isinstance(error, TypeError)
    assert str(error).startswith(f"{op}: expected tensors or numbers, got None at ")


# ---- as_strided reaches the input's storage ---------------------------------------------------

def test_as_strided_past_the_view_reads_the_storage_as_eager():
    fn = lambda x: x.as_strided((4,), (1,), 8) * 1  # noqa: E731
    x = graphc.arange(16.)[:10]
    f = graphc.compile(fn)
    with graphc.no_grad():
        with pytest.warns(UserWarning, match="as_strided"):
            same(f(x), fn(x))
        assert "as_strided" in f.eager_runs[-1].reason  # the program would not know the storage
        same(f(x), fn(x))
        small = graphc.arange(10.)  # the same shape and strides, a smaller storage: eager refuses
        with pytest.raises(graphc.OpIndexError, match="reaches elements 8..11 of a storage of 10"):
            f(small)


@pytest.mark.parametrize("fn, x", [
    (lambda x: x.as_strided((4,), (1,), 5) * 1, graphc.arange(16.)[3:13]),  # an offset input
    (lambda x: x.as_strided((2, 2), (1, 2)) * 1, graphc.arange(16.)[3:13]),
    (lambda x: x[2:].as_strided((3,), (2,), 1) * 1, graphc.arange(16.)[:10]),
    (lambda x: x.as_strided((2,), (1,), 1) * 1, graphc.arange(16.)[8:12]),  # before the view
])
def test_as_strided_of_inputs_with_offsets(fn, x):
    with graphc.no_grad():
        same(graphc.compile(fn)(x), fn(x))


# ---- weights changed between calls ------------------------------------------------------------

def test_weights_mutated_replaced_and_retyped_between_calls():
    model = linear_model()
    cm = graphc.compile(model)
    x = graphc.randn(3, 16)
    with graphc.no_grad():
        cm(x)
        model[0].weight.add_(1.0)  # in place: seen, no recompile
        same(cm(x), model(x))
        assert not cm.compiled.recompiles
        model[2].bias = nn.Parameter(graphc.zeros(4))  # replaced: a guard failure, recompiled
        same(cm(x), model(x))
        assert cm.compiled.recompiles[-1].name == "2.bias"
        model[0].weight.data = graphc.randn(8, 16).double()  # re-typed: the eager error
        with pytest.raises(graphc.DTypeError, match=r"float64\[8, 16\]") as info:
            where = line(); cm(x)  # noqa: E702
        assert str(info.value).endswith(f"at {where}")
        r = cm.compiled.recompiles[-1]
        assert (r.name, r.old, r.new) == ("0.weight", "float32[8, 16]", "float64[8, 16]")
        model[0].weight.data = graphc.randn(8, 16)  # back to float32: compiles and runs
        same(cm(x), model(x))


def test_a_weight_written_into_the_registry_directly_is_noticed():
    """The per-call check is two counters (module assignments, ``.data`` swaps); writes
    that bypass ``Module.__setattr__`` (into ``_parameters``) must move them too."""
    model = linear_model()
    cm = graphc.compile(model)
    x = graphc.randn(3, 16)
    with graphc.no_grad():
        cm(x)
        cm(x)  # the fast path is armed
        model[0]._parameters["weight"] = nn.Parameter(graphc.randn(8, 16))
        same(cm(x), model(x))
        model[2]._parameters.update(bias=nn.Parameter(graphc.randn(4)))
        same(cm(x), model(x))
    assert [r.name for r in cm.compiled.recompiles] == ["0.weight", "2.bias"]


def test_compile_graph_refuses_a_replaced_weight_with_the_name():
    model = nn.Linear(4, 2)
    gm = graphc.trace(model, graphc.TensorSpec((1, 4)))
    cg = compile_graph(gm, graphc.randn(1, 4), watch=model)
    model.weight = nn.Parameter(graphc.randn(2, 4))
    with pytest.raises(graphc.errors.WeightChanged, match="'weight' was replaced after compiling"):
        cg(graphc.randn(1, 4))


# ---- a long-running process -------------------------------------------------------------------

def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_a_thousand_distinct_graphs_in_one_process(capsys, tmp_path, monkeypatch):
    """Every graph compiles (an empty disk cache: LLVM optimises each), runs correctly and
    is freed with its last user: compiled modules go to rotating engines, each with its
    own LLVM context, and a retired engine (code, IR, constants) is freed. Growth is
    measured once the recent-module cache and the engines are full (after 500 graphs).
    What stays per graph is llvmlite's pass-instrumentation object (under 2 KiB; a pass
    builder cannot be reused safely). Before the pass managers were disposed explicitly
    it was about 115 KiB per graph, and before engines rotated about 175 KiB. The figure
    is printed."""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    from graphc.codegen import target
    gc.collect()
    earlier = {id(o) for o in gc.get_objects() if type(o) is target._Engine}  # other tests'
    x = graphc.randn(64)
    marks = {}
    for k in range(1000):
        f = graphc.compile(lambda x, k=k: (x * (k + 0.5)).exp() + k)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            got = f(x)
        if k % 97 == 0:
            same(got, (x * (k + 0.5)).exp() + k, tol=1e-5)
        if k in (499, 999):
            gc.collect()
            marks[k + 1] = rss_mib()
    engines = sum(type(o) is target._Engine and id(o) not in earlier for o in gc.get_objects())
    per_graph = (marks[1000] - marks[500]) / 500 * 1024
    with capsys.disabled():
        print(f"\n1000 graphs: RSS {marks[500]:.0f} MiB after 500, {marks[1000]:.0f} MiB after "
              f"1000 ({per_graph:.0f} KiB per graph); {engines} LLVM engines alive")
    assert engines <= 1 + target.RECENT // target.MODULES_PER_ENGINE + 1
    assert per_graph < 24
    # each engine parses into its own LLVM context (the global one would keep every
    # module's constants and types for the life of the process)
    alive = [e for e in gc.get_objects() if type(e) is target._Engine]
    assert len({id(e.context) for e in alive}) == len(alive)
