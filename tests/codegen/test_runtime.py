"""The compiled runtime against eager graphc: results, threads, BLAS, layouts, errors, dumps."""

from __future__ import annotations

import os
import re
import threading

import numpy as np
import pytest

import graphc
from graphc import nn
from graphc.codegen import blas, find_blas
from graphc.compiler import compile_graph
from graphc.nn import functional as F


def randn(*shape, dtype=np.float32, seed=0) -> graphc.Tensor:
    return graphc.from_numpy(np.random.default_rng(seed).standard_normal(shape).astype(dtype))


def compiled(fn, *inputs):
    return compile_graph(graphc.trace(fn, *inputs), *inputs)


def eager(fn, *inputs):
    with graphc.no_grad():
        return fn(*inputs)


def as_tuple(out) -> tuple:
    return out if isinstance(out, tuple) else (out,)


def assert_close(actual: graphc.Tensor, expected: graphc.Tensor, rtol=1e-5, atol=1e-6):
    assert actual.shape == expected.shape
    assert actual.dtype == expected.dtype
    np.testing.assert_allclose(actual.detach().numpy(), expected.detach().numpy(), rtol=rtol,
                               atol=atol)


# ---- results equal eager -------------------------------------------------------------------

def test_mlp_matches_eager():
    graphc.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(),
                          nn.Linear(16, 4))
    x = randn(5, 8)
    cg = compiled(model, x)
    assert_close(cg(x), eager(model, x))
    other = randn(5, 8, seed=1)
    assert_close(cg(other), eager(model, other))


def test_softmax_layer_norm_matches_eager():
    def f(x, w, b):
        h = F.layer_norm(x, (x.shape[-1],), w, b)
        return graphc.softmax(h * 3.0, dim=-1), F.layer_norm(x, (x.shape[-1],))

    x, w, b = randn(6, 40), randn(40, seed=1), randn(40, seed=2)
    cg = compiled(f, x, w, b)
    for actual, expected in zip(cg(x, w, b), eager(f, x, w, b)):
        assert_close(actual, expected, rtol=1e-5, atol=1e-5)
    assert "0 fallbacks" in cg.explain()


# ---- threads -------------------------------------------------------------------------------

def _elementwise(x, y):
    return graphc.exp(x) * y + graphc.tanh(x - y)


def _row_reduction(x):
    return x.sum(-1), graphc.softmax(x, dim=-1), x.amax(-1)


@pytest.mark.parametrize("fn, shapes", [(_elementwise, [(512, 1024), (512, 1024)]),
                                        (_row_reduction, [(512, 1024)])],
                         ids=["elementwise", "row-reduction"])
def test_thread_count_does_not_change_results(fn, shapes, monkeypatch):
    inputs = [randn(*s, seed=k) for k, s in enumerate(shapes)]
    gm = graphc.trace(fn, *inputs)
    results = {}
    for threads in ("1", "2"):
        monkeypatch.setenv("GRAPHC_NUM_THREADS", threads)
        cg = compile_graph(gm, *inputs)
        assert f", {threads} threads" in cg.explain()
        assert "parallel for" in cg.dump("kernels")  # large enough to be split across threads
        out = cg(*inputs)
        results[threads] = [t.numpy() for t in as_tuple(out)]
    for one, two in zip(results["1"], results["2"]):
        np.testing.assert_array_equal(one, two)
    for one, ref in zip(results["1"], as_tuple(eager(fn, *inputs))):
        np.testing.assert_allclose(one, ref.numpy(), rtol=1e-5, atol=1e-4)


def test_programs_on_threads_at_once_share_the_worker_pool(monkeypatch):
    """Two programs called at once from Python threads: one call has the pool's workers,
    the other runs its chunks on its own thread; both results are eager's."""
    monkeypatch.setenv("GRAPHC_NUM_THREADS", "2")
    x, y = randn(256, 1024), randn(256, 1024, seed=1)
    programs = [compiled(_elementwise, x, y), compiled(_row_reduction, x)]
    assert all("parallel for" in cg.dump("kernels") for cg in programs)
    expected = [eager(_elementwise, x, y).numpy(), eager(_row_reduction, x)[1].numpy()]
    wrong = []

    def work(k: int) -> None:
        for _ in range(200):
            got = programs[k](x, y) if k == 0 else programs[k](x)[1]
            if not np.allclose(got.numpy(), expected[k], rtol=1e-5, atol=1e-5):
                wrong.append(k)

    threads = [threading.Thread(target=work, args=(k,)) for k in (0, 1, 0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []


def _child_runs(cg, x, expected, pipe) -> None:
    pipe.send(bool(np.array_equal(cg(x).numpy(), expected)))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork: POSIX only")
def test_a_forked_child_starts_its_own_workers(monkeypatch):
    """A child made by fork has none of its parent's workers: its pool starts them again
    (it would wait for ever on workers that do not exist)."""
    import multiprocessing

    monkeypatch.setenv("GRAPHC_NUM_THREADS", "2")
    x = randn(512, 1024)
    cg = compiled(lambda t: t * 2 + 1, x)
    assert "parallel for" in cg.dump("kernels")
    expected = cg(x).numpy()  # the parent's workers are running
    ctx = multiprocessing.get_context("fork")
    here, there = ctx.Pipe()
    child = ctx.Process(target=_child_runs, args=(cg, x, expected, there))
    child.start()
    child.join(60)
    assert child.exitcode == 0 and here.poll(1) and here.recv() is True


def test_thread_count_must_be_an_integer(monkeypatch):
    x = randn(4)
    monkeypatch.setenv("GRAPHC_NUM_THREADS", "two")
    with pytest.raises(ValueError, match="GRAPHC_NUM_THREADS"):
        compiled(lambda x: x + 1, x)


# ---- BLAS ----------------------------------------------------------------------------------

@pytest.fixture
def blas_off(monkeypatch):
    """GRAPHC_BLAS=0 for this test; ``find`` is cached, so clear it on the way in and out."""
    monkeypatch.setenv("GRAPHC_BLAS", "0")
    blas.find.cache_clear()
    yield
    monkeypatch.undo()
    blas.find.cache_clear()


def _linear_relu(x, w, b):
    return graphc.relu(F.linear(x, w, b))


def _matmul_transposed(a, b):
    return a @ b.T + 1.0


def _blas_cases():
    cases = []
    for d in (np.float32, np.float64):
        name = np.dtype(d).name
        cases.append(pytest.param(_linear_relu, [randn(33, 70, dtype=d), randn(45, 70, dtype=d, seed=1),
                                                 randn(45, dtype=d, seed=2)], id=f"linear-relu-{name}"))
        cases.append(pytest.param(_matmul_transposed, [randn(20, 64, dtype=d),
                                                       randn(30, 64, dtype=d, seed=1)],
                                  id=f"matmul-bT-{name}"))
        # a transposed input: the operand's layout is column-major
        cases.append(pytest.param(_matmul_transposed, [randn(64, 20, dtype=d).T,
                                                       randn(30, 64, dtype=d, seed=1)],
                                  id=f"matmul-aT-input-{name}"))
    return cases


def _run_blas_case(fn, inputs):
    cg = compiled(fn, *inputs)
    return cg, cg(*inputs).numpy()


@pytest.mark.parametrize("fn, inputs", _blas_cases())
def test_blas_and_loops_agree(fn, inputs, request):
    if not blas._library_files():
        pytest.skip("this numpy ships no OpenBLAS: there is no BLAS path to compare")
    assert find_blas() is not None, "numpy's OpenBLAS is present but find() did not load it"
    with_blas, got_blas = _run_blas_case(fn, inputs)
    assert "gemm" in with_blas.dump("kernels")
    request.getfixturevalue("blas_off")
    assert find_blas() is None
    loops, got_loops = _run_blas_case(fn, inputs)
    assert "gemm" not in loops.dump("kernels")
    reference = eager(fn, *[graphc.from_numpy(t.numpy().astype(np.float64)) for t in inputs])
    tol = 1e-4 if got_blas.dtype == np.float32 else 1e-10
    np.testing.assert_allclose(got_blas, got_loops, rtol=tol, atol=tol)
    np.testing.assert_allclose(got_blas, reference.numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(got_loops, reference.numpy(), rtol=tol, atol=tol)


def _blas_threads():
    """OpenBLAS's (set, get) of its thread count through ctypes, or skip."""
    import ctypes

    found = find_blas()
    if found is None or found.set_threads is None:
        pytest.skip("no BLAS whose thread count graphc can set")
    lib = ctypes.CDLL(found.library)
    return getattr(lib, found.set_threads), getattr(lib, found.get_threads)


@pytest.mark.parametrize("threads", ["1", "2", "3"])
def test_gemms_are_split_over_the_programs_threads(threads, monkeypatch):
    """One thread budget: a program runs BLAS on one thread and splits the gemms itself, a
    single product into blocks of C's rows (the last one shorter: 257 rows), or of its
    columns where B is the larger operand (513 columns; a transposed A or B), a batch of
    products over its positions; results as eager's."""
    _blas_threads()
    monkeypatch.setenv("GRAPHC_NUM_THREADS", threads)

    def fn(x, w, a, b, t, u, v):
        return F.linear(x, w), a @ b, t.T @ w.T, u @ v, u @ v.T.contiguous().T

    x, w = randn(257, 300), randn(200, 300, seed=1)
    a, b, t = randn(6, 40, 50, seed=2), randn(6, 50, 30, seed=3), randn(300, 129, seed=4)
    u, v = randn(64, 300, seed=5), randn(300, 513, seed=6)
    args = (x, w, a, b, t, u, v)
    cg = compiled(fn, *args)
    kernels = cg.dump("kernels")
    if threads != "1":
        blocks = lambda n: -(-n // int(threads))  # noqa: E731
        assert f"rows r0·{blocks(257)}" in kernels and f"cols r0·{blocks(513)}" in kernels, kernels
        assert f"cols r0·{blocks(200)}" in kernels, kernels  # t.T @ w.T: 129 x 200
        assert "parallel for" in kernels.split("M_6_")[-1], kernels
    for got, want in zip(cg(*args), eager(fn, *args)):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-4)


def test_a_program_gives_blas_its_thread_count_back():
    """BLAS's thread count is the caller's again after a call, and after a call that
    raised (numpy's own matmuls keep their threads)."""
    set_threads, get_threads = _blas_threads()
    before = get_threads()
    try:
        set_threads(2)

        def fn(x, w, n):
            return x @ w, n // 0  # integer division by zero: an error from native code

        x, w, n = randn(64, 64), randn(64, 64, seed=1), graphc.tensor([3, 4])
        cg = compiled(lambda x, w: x @ w + 1, x, w)
        cg(x, w)
        assert get_threads() == 2
        raising = compiled(fn, x, w, n)
        with pytest.raises(graphc.OpValueError, match="integer division by zero"):
            raising(x, w, n)
        assert get_threads() == 2
    finally:
        set_threads(before)


def test_profile_times_every_step(monkeypatch):
    """GRAPHC_PROFILE=1: each native kernel and fallback is timed, with its calls."""
    from graphc.compiler import profile_report

    monkeypatch.setenv("GRAPHC_PROFILE", "1")

    def fn(x):
        y = graphc.relu(x @ x.T)
        return y.sum(1), graphc.cat([y, x @ x.T], dim=0)  # cat: a fallback

    x = randn(32, 32)
    cg = compiled(fn, x)
    for _ in range(3):
        cg(x)
    rows = [r for r in graphc.codegen.runtime.profile_rows() if r[0] == cg.last.program.name]
    steps = cg.last.program.steps
    assert len([r for r in rows if r[3] == 3]) == len(steps), (rows, steps)
    assert any(r[2] == "numpy" for r in rows) and any(r[2] == "matmul" for r in rows)
    assert all(r[4] > 0 for r in rows)
    report = profile_report()
    assert "us/call" in report and rows[0][1] in report


# ---- outputs and parameters ----------------------------------------------------------------

def test_outputs_are_fresh_each_call():
    def f(x):
        y = x * 2.0
        return y, graphc.relu(y).sum(0), y.T, graphc.cat([x, y], dim=0)  # cat: a fallback

    x = randn(8, 16)
    cg = compiled(f, x)
    first, second = cg(x), cg(x)
    for a, b in zip(first, second):
        assert not np.shares_memory(a.numpy(), b.numpy())
        assert not np.shares_memory(a.numpy(), x.numpy())
    expected = [t.numpy().copy() for t in second]
    with graphc.no_grad():
        for a in (first[0], first[1], first[3]):  # first[2] is a view of first[0]
            a.add_(100.0)
    for b, e in zip(second, expected):
        np.testing.assert_array_equal(b.numpy(), e)
    for a, e in zip(first, eager(f, x)):
        np.testing.assert_array_equal(a.numpy(), e.numpy() + 100.0)


def test_calls_from_several_threads():
    def f(x):
        return graphc.softmax(x @ x, dim=-1) + x.sum(0)

    xs = [randn(32, 32, seed=k) for k in range(4)]
    cg = compiled(f, xs[0])
    expected = [eager(f, x).numpy() for x in xs]
    wrong = []

    def work(k: int) -> None:
        for _ in range(30):
            if not np.allclose(cg(xs[k]).numpy(), expected[k], rtol=1e-5, atol=1e-6):
                wrong.append(k)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []


class _Affine(nn.Module):
    """Parameters used through views and arithmetic: folding them would freeze old values."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(randn(16, 8))
        self.b = nn.Parameter(randn(16, seed=1))

    def forward(self, x):
        return x @ self.w.T + self.b * 2.0


@pytest.mark.parametrize("make", [lambda: nn.Linear(8, 16), _Affine], ids=["Linear", "w.T-and-b*2"])
def test_in_place_weight_updates_are_seen(make):
    graphc.manual_seed(0)
    model = make()
    x = randn(4, 8)
    cg = compiled(model, x)
    before = eager(model, x)
    assert_close(cg(x), before)
    with graphc.no_grad():
        for p in model.parameters():
            p.mul_(2.0)
    updated = eager(model, x)
    assert not np.allclose(updated.numpy(), before.numpy())
    assert_close(cg(x), updated)


@pytest.mark.parametrize("make, owner_path", [(lambda: nn.Linear(8, 16), ""),
                                               (lambda: nn.Sequential(nn.Linear(8, 16), nn.ReLU()), "0")],
                         ids=["Linear", "Sequential"])
def test_replaced_parameter_raises(make, owner_path):
    # The traced GraphModule holds the parameters (as torch.fx does): replacing one there is
    # what the compiled graph must notice; silently reading the old tensor would be wrong.
    graphc.manual_seed(0)
    x = randn(4, 8)
    gm = graphc.trace(make(), x)
    cg = compile_graph(gm, x)
    cg(x)
    owner = getattr(gm, owner_path) if owner_path else gm
    owner.weight = nn.Parameter(randn(16, 8, seed=3))
    with pytest.raises(RuntimeError, match=r"'weight' was replaced.*compile again"):
        cg(x)


def test_data_swap_is_followed_and_a_new_layout_raises():
    graphc.manual_seed(0)
    lin = nn.Linear(8, 16)
    x = randn(4, 8)
    cg = compiled(lin, x)
    cg(x)
    lin.weight.data = randn(16, 8, seed=4)  # the same Parameter over new memory
    assert_close(cg(x), eager(lin, x))
    lin.weight.data = randn(5, 8, seed=4)
    with pytest.raises(RuntimeError, match=r"'weight' changed from shape \[16, 8\].*compile again"):
        cg(x)


# ---- specialisations -----------------------------------------------------------------------

def _layouts():
    base = np.random.default_rng(5).standard_normal((12, 24)).astype(np.float32)
    return {
        "transposed": graphc.from_numpy(base.T.copy()).T,   # (12, 24) with column-major strides
        "offset-strided-slice": graphc.from_numpy(base)[2:, ::2],
        "broadcast-stride-0": graphc.from_numpy(base[:1]).expand(12, 24),
        "other-shape": graphc.from_numpy(base[:5, :7].copy()),
        "float64": graphc.from_numpy(base.astype(np.float64)),
    }


@pytest.mark.parametrize("name", list(_layouts()))
def test_new_layout_compiles_a_new_specialisation(name):
    def f(x):
        return graphc.exp(x) * 2.0 + x.sum(-1, keepdim=True)

    x = randn(12, 24, seed=9)
    cg = compiled(f, x)
    assert len(cg.specializations) == 1
    first = cg.last
    other = _layouts()[name]
    assert_close(cg(other), eager(f, other), rtol=1e-5, atol=1e-5)
    assert len(cg.specializations) == 2
    assert cg.last is not first
    assert_close(cg(x), eager(f, x), rtol=1e-5, atol=1e-5)  # the first is still there
    assert len(cg.specializations) == 2


def test_wrong_number_of_inputs_raises_type_error():
    x = randn(3, 4)
    cg = compiled(lambda a, b: a + b, x, x)
    with pytest.raises(TypeError, match="takes 2 inputs, got 1"):
        cg(x)
    with pytest.raises(TypeError, match="takes 2 inputs, got 3"):
        cg(x, x, x)


@pytest.mark.parametrize("bad", [np.ones((3, 4), np.float32), 1.5, [[1.0] * 4] * 3],
                         ids=["ndarray", "float", "list"])
def test_non_tensor_input_raises_type_error(bad):
    x = randn(3, 4)
    cg = compiled(lambda a, b: a + b, x, x)
    with pytest.raises(TypeError, match=f"input 1 must be a graphc.Tensor, got {type(bad).__name__}"):
        cg(x, bad)


# ---- run-time errors -----------------------------------------------------------------------

def _floor_divide(x, y):
    return x // y + 1


def _remainder(x, y):
    return x % y * 2


def _power(x, y):
    return x ** y - 1


@pytest.mark.parametrize("fn, op, bad_value, detail", [
    (_floor_divide, "div", 0, "integer division by zero"),
    (_remainder, "remainder", 0, "integer division by zero"),
    (_power, "pow", -1, "integers to negative integer powers are not allowed"),
], ids=["floor-divide", "remainder", "negative-power"])
@pytest.mark.parametrize("n", [4, 1 << 18], ids=["small", "large-threaded"])
def test_integer_errors_name_the_op(fn, op, bad_value, detail, n, monkeypatch):
    monkeypatch.setenv("GRAPHC_NUM_THREADS", "2")
    x = graphc.from_numpy(np.arange(7, n + 7, dtype=np.int32) % 50)
    good = graphc.from_numpy(np.arange(n, dtype=np.int32) % 3 + 1)
    cg = compiled(fn, x, good)
    for where in sorted({1, n // 2 + 1, n - 1}):  # in each thread's share of the elements
        bad = good.numpy().copy()
        bad[where] = bad_value
        with pytest.raises(graphc.OpValueError, match=detail) as info:
            cg(x, graphc.from_numpy(bad))
        assert info.value.op == op
        assert str(info.value).startswith(f"{op}: ")
        assert "test_runtime.py:" in str(info.value)  # where the user wrote the op
        np.testing.assert_array_equal(cg(x, good).numpy(), eager(fn, x, good).numpy())


def test_fallback_exception_keeps_its_type():
    def f(x, i):
        y = x * 2.0
        y[i] = 0.0  # index_put: a numpy fallback
        return y

    x = randn(4, 5)
    good, bad = graphc.tensor([0, 2]), graphc.tensor([0, 9])
    cg = compiled(f, x, good)
    assert "fallback index_put" in cg.explain()
    with pytest.raises(graphc.OpIndexError, match="index_put_: index 9 is out of bounds"):
        cg(x, bad)
    assert_close(cg(x, good), eager(f, x, good))


# ---- explain and dumps ---------------------------------------------------------------------

def test_explain_lists_fallbacks_by_node_and_reason():
    def f(x, i):
        h = graphc.cat([x, x * 2.0], dim=0)
        return graphc.stack([h, h + 1.0], dim=0).relu() * graphc.index_select(h, 0, i).sum()

    x, i = randn(4, 5), graphc.tensor([0, 5, 7])
    cg = compiled(f, x, i)
    assert_close(cg(x, i), eager(f, x, i))
    text = cg.explain()
    assert ", 2 fallbacks," in text
    assert re.search(r"fallback cat\s+numpy: cat has no LLVM lowering", text), text
    assert re.search(r"fallback stack\s+numpy: stack has no LLVM lowering", text), text
    assert re.search(r"native   \S*index_select\s+copy", text), text  # a native copy kernel


def test_explain_without_fallbacks():
    x = randn(4, 5)
    cg = compiled(lambda x: graphc.relu(x) * 2.0, x)
    assert "0 fallbacks" in cg.explain()
    assert "fallback " not in cg.explain()


def test_dumps():
    def f(x, w):
        return graphc.relu(x @ w).sum(-1) + graphc.exp(x).sum(-1), graphc.tanh(w) * 3.0

    x, w = randn(6, 8), randn(8, 8, seed=1)
    cg = compiled(f, x, w)
    cg(x, w)
    dumps = {stage: cg.dump(stage) for stage in ("graph", "kernels", "llvm", "llvm_opt", "asm")}
    for stage, text in dumps.items():
        assert text.strip(), stage
    assert dumps["graph"].startswith("graph(")
    names = re.findall(r"^kernel ([ERM]_\d+(?:_\d+)*)\b", dumps["kernels"], re.M)
    assert {n[0] for n in names} == {"E", "R", "M"}, dumps["kernels"]
    assert "E_64" in names  # the kind, then the shape: tanh(w) * 3 over 8 x 8 elements
    assert all(n in cg.explain() for n in names)
    assert "define" in dumps["llvm"]
    assert "define" in dumps["llvm_opt"]
    assert re.search(r"^\s+(mov|vmov|ret|call|jmp|add|lea|push)\w*\s", dumps["asm"], re.M)
    with pytest.raises(ValueError, match="unknown dump stage 'bogus'"):
        cg.dump("bogus")


def test_explain_before_first_call_raises():
    x = randn(3)
    cg = compile_graph(graphc.trace(lambda x: x + 1, x))
    with pytest.raises(RuntimeError, match="call it once first"):
        cg.explain()
    assert_close(cg(x), x + 1)


def test_lru_cache_drops_the_least_recently_used_past_its_budget():
    from graphc.codegen.sizes import LRUCache

    cache = LRUCache(budget=10)
    cache.put("a", 1, 4)
    cache.put("b", 2, 4)
    assert cache.get("a") == 1  # now "b" is the least recently used
    cache.put("c", 3, 4)
    assert "b" not in cache and cache.get("a") == 1 and cache.get("c") == 3
    assert cache.total == 8
    cache.put("c", 3, 7)  # re-weighed past the budget: "a" goes
    assert "a" not in cache and len(cache) == 1 and cache.total == 7
    cache.put("d", 4, 50)  # over budget alone: kept, as the one just stored
    assert len(cache) == 1 and cache.get("d") == 4 and cache.get("c") is None
