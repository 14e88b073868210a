"""graphc.compile: results against eager, module behaviour, guards and recompiles, eager
fallback with reasons, fullgraph, autograd calls, the cache limit."""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest

import graphc
import graphc.nn as nn
import graphc.nn.functional as F
from graphc.compiler import CaptureError, CompiledFunction, CompiledModule


def here() -> str:
    """``file:line`` of the caller's line."""
    frame = inspect.currentframe().f_back
    return f"test_compile.py:{frame.f_lineno}"


def assert_close(got, want, tol=1e-5):
    got, want = (got if isinstance(got, (tuple, list)) else [got]), \
        (want if isinstance(want, (tuple, list)) else [want])
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, a.dtype, b.shape, b.dtype)
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=tol, atol=tol, equal_nan=True)


def mlp() -> nn.Module:
    graphc.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.LayerNorm(32), nn.Linear(32, 4))


# ---- the API ------------------------------------------------------------------------------------

def test_decorator_forms_and_mode_switch():
    def f(x, y):
        return (x * y).relu() + 1

    x, y = graphc.randn(4, 5), graphc.randn(5)
    plain = graphc.compile(f)

    @graphc.compile
    def bare(x, y):
        return (x * y).relu() + 1

    @graphc.compile(fullgraph=True)
    def called(x, y):
        return (x * y).relu() + 1

    eager = graphc.compile(f, mode="eager")
    for c in (plain, bare, called, eager):
        assert isinstance(c, CompiledFunction)
        assert_close(c(x, y), f(x, y))
    assert len(plain.entries) == len(bare.entries) == len(called.entries) == 1
    assert not eager.entries  # the same code, run in dynamic mode
    assert bare.__name__ == "bare" and bare.__wrapped__(x, y) is not None


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="mode must be 'static' or 'eager', got 'fast'"):
        graphc.compile(lambda x: x, mode="fast")
    with pytest.raises(ValueError, match="dynamic must be True, False or None, got 'yes'"):
        graphc.compile(lambda x: x, dynamic="yes")
    with pytest.raises(ValueError, match="cache_limit must be a positive int"):
        graphc.compile(lambda x: x, cache_limit=0)
    with pytest.raises(TypeError, match="expected a function or a graphc.nn.Module, got int"):
        graphc.compile(3)
    star = graphc.compile(lambda *xs: xs[0] + xs[1])  # *args compile (test_calling_conventions)
    assert_close(star(graphc.ones(2), graphc.ones(2)), graphc.full((2,), 2.0))
    f = graphc.compile(lambda x, y: x + y)
    with pytest.raises(TypeError, match="missing a required argument: 'y'"):
        f(graphc.ones(2))


def test_keyword_arguments_and_defaults_bind_to_one_signature():
    @graphc.compile
    def f(x, scale=2.0, *, shift=None):
        y = x * scale
        return y if shift is None else y + shift

    x = graphc.randn(3)
    assert_close(f(x), x * 2.0)
    assert_close(f(x, scale=2.0), x * 2.0)
    assert len(f.entries) == 1  # f(x) and f(x, scale=2.0) are the same call
    assert_close(f(x, 3.0, shift=x), x * 3.0 + x)
    assert len(f.entries) == 2


# ---- results against eager ----------------------------------------------------------------------

CASES = {
    "broadcast": (lambda a, b: (a - b).exp() / (1 + b.abs()), lambda: (graphc.randn(4, 1, 6),
                                                                      graphc.randn(5, 6))),
    "transposed": (lambda a, b: (a.T @ b).tanh().sum(0), lambda: (graphc.randn(7, 5),
                                                                 graphc.randn(7, 3))),
    "negative_step": (lambda a, b: a[::-1] * b[:, ::2], lambda: (graphc.randn(4, 3),
                                                               graphc.randn(4, 6))),
    "float64": (lambda a, b: F.softmax(a * b, dim=0), lambda: (graphc.randn(6, 3).double(),
                                                               graphc.randn(3).double())),
    "int64": (lambda a, b: (a * b + 3) // 2 - a.abs().sum(), lambda: (
        graphc.arange(12).reshape(3, 4), graphc.tensor([1, -2, 3, 4]))),
    "bool": (lambda a, b: (a > 0) & (b < 0) | (a == b), lambda: (graphc.randn(3, 4),
                                                                graphc.randn(4))),
    "size_one_and_empty": (lambda a, b: (a + b).sum(-1), lambda: (graphc.randn(1, 0),
                                                                  graphc.randn(3, 1, 1))),
    "nan_inf": (lambda a, b: graphc.maximum(a, b) + a.exp(), lambda: (
        graphc.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -0.0]),
        graphc.tensor([1.0, float("nan"), 2.0, -0.0, 0.0]))),
    "two_outputs": (lambda a, b: (a.relu(), {"s": (a * b).sum()}), lambda: (
        graphc.randn(4, 4), graphc.randn(4))),
}


@pytest.mark.parametrize("name", CASES)
def test_compiled_function_matches_eager(name):
    fn, inputs = CASES[name]
    args = inputs()
    c = graphc.compile(fn, fullgraph=True)
    got, want = c(*args), fn(*args)
    if isinstance(want, tuple):
        assert_close(got[0], want[0])
        assert_close(got[1]["s"], want[1]["s"], tol=1e-4)
    else:
        assert_close(got, want, tol=1e-4)
    assert len(c.entries) == 1 and not c.eager_runs


def small_cnn() -> nn.Module:
    graphc.manual_seed(1)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 4 * 4, 10))


@pytest.mark.parametrize("make, shape", [(mlp, (8, 16)), (small_cnn, (2, 3, 8, 8)),
                                         (lambda: nn.TransformerEncoderLayer(32, 4, 64,
                                                                             dropout=0.0,
                                                                             batch_first=True),
                                          (2, 6, 32))])
def test_compiled_models_match_eager(make, shape):
    model = make().eval()
    x = graphc.randn(*shape)
    cm = graphc.compile(model)
    with graphc.no_grad():
        assert_close(cm(x), model(x), tol=1e-4)
    assert not cm.compiled.eager_runs and len(cm.compiled.entries) == 1


# ---- a compiled module is the module --------------------------------------------------------------

def test_compiled_module_behaves_like_the_module():
    model = mlp()
    cm = graphc.compile(model)
    assert isinstance(cm, CompiledModule) and isinstance(cm, nn.Module)
    assert cm[0] is model[0] and cm.compiled.module is model
    assert list(cm.state_dict()) == list(model.state_dict())
    assert [p for p in cm.parameters()] == [p for p in model.parameters()]
    cm.eval()
    assert not model.training and not model[2].training and not cm.training
    cm.train()
    assert model.training
    cm.extra = 5  # attributes are set on the module
    assert model.extra == 5
    assert "Linear(in_features=16" in repr(cm)
    assert graphc.compile(cm).compiled.module is model  # compiling twice: one module
    # loading a state dict copies in place: the compiled graph sees it without recompiling
    other = mlp()
    for p in other.parameters():
        p.data.mul_(0.5)
    x = graphc.randn(4, 16)
    with graphc.no_grad():
        cm(x)
        cm.load_state_dict(other.state_dict())
        assert_close(cm(x), other(x))
    assert not cm.compiled.recompiles and len(cm.compiled.entries) == 1


def test_in_place_weight_updates_are_seen_without_recompiling():
    model = mlp().eval()
    cm = graphc.compile(model)
    x = graphc.randn(4, 16)
    opt = graphc.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        loss = model(x).square().mean()  # eager autograd trains the same module
        opt.zero_grad()
        loss.backward()
        opt.step()
        with graphc.no_grad():
            assert_close(cm(x), model(x))
    with graphc.no_grad():
        model[0].weight.mul_(-1)
        model[3].bias.data = graphc.randn(4)  # a .data swap: the same Parameter, new memory
        assert_close(cm(x), model(x))
    assert len(cm.compiled.entries) == 1 and not cm.compiled.recompiles


def test_replacing_a_parameter_is_a_guard_failure():
    model = mlp().eval()
    cm = graphc.compile(model)
    x = graphc.randn(4, 16)
    with graphc.no_grad():
        cm(x)
        model[0].weight = nn.Parameter(graphc.randn(32, 16))
        line = here(); got = cm(x)  # noqa: E702
        assert_close(got, model(x))
    (r,) = cm.compiled.recompiles
    assert (r.guard, r.name, r.location) == ("weight", "0.weight", line)
    assert "float32[32, 16]" in r.old and r.old != r.new
    assert "in place" in r.suggestion


def test_train_eval_switch_compiles_each_mode_once():
    graphc.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5), nn.BatchNorm1d(8))
    cm = graphc.compile(model)
    x = graphc.randn(16, 8)
    with graphc.no_grad():
        for mode in (False, True, False, True):
            cm.train(mode)
            graphc.manual_seed(3)
            got = cm(x)
            graphc.manual_seed(3)
            want = model(x)
            if not mode:
                assert_close(got, want)
            else:
                assert got.shape == want.shape  # training: dropout draws and batch statistics
    assert len(cm.compiled.entries) == 2
    (r,) = cm.compiled.recompiles
    assert (r.guard, r.old, r.new) == ("training", "False", "True")


# ---- guards and recompiles -------------------------------------------------------------------------

def test_each_guard_miss_is_explained():
    @graphc.compile
    def f(x, k):
        return x * k + x.sum()

    x = graphc.randn(4, 6)
    f(x, 2)
    cases = [  # (arguments, guard, name, old, new)
        ((graphc.randn(5, 6), 2), "shape", "x.shape[0]", "4", "5"),
        ((graphc.randn(5, 7), 2), "shape", "x.shape[1]", "6", "7"),
        ((graphc.randn(5, 7).double(), 2), "dtype", "x", "float32", "float64"),
        ((graphc.randn(5, 7).double(), 3), "value", "k", "2", "3"),
        ((graphc.randn(7, 5, 1).double(), 3), "rank", "x", "2 dims [5, 7]", "3 dims [7, 5, 1]"),
    ]
    for args, *expected in cases:
        line = here(); got = f(*args)  # noqa: E702
        assert_close(got, f.__wrapped__(*args))
        r = f.recompiles[-1]
        assert [r.guard, r.name, r.old, r.new] == expected
        assert r.location == line and r.suggestion
        assert r.as_dict()["guard"] == expected[0]
    assert len(f.recompiles) == len(cases) and len(f.entries) == len(cases) + 1
    # every signature stays cached: calling an earlier one again does not compile
    f(x, 2)
    f(graphc.randn(5, 6), 2)
    # a transposed input is copied to serve the contiguous program (strides are a layout
    # guard only where no such program exists: test_recompile_messages)
    xt = graphc.randn(7, 5).double().T
    assert_close(f(xt, 3), f.__wrapped__(xt, 3))
    assert len(f.recompiles) == len(cases) and f.layout_copies == 1


def test_python_values_are_baked_and_guarded():
    @graphc.compile
    def f(x, mode, sizes):
        return x.sum(dim=sizes) if mode == "sum" else x.amax(dim=sizes)

    x = graphc.randn(3, 4, 5)
    assert_close(f(x, "sum", (0, 2)), x.sum(dim=(0, 2)))
    assert_close(f(x, "max", (0, 2)), x.amax(dim=(0, 2)))
    assert_close(f(x, "max", [1]), x.amax(dim=1))
    assert [r.name for r in f.recompiles] == ["mode", "sizes"]
    assert f(x, True, (0,)).shape == (4, 5)  # True is not 1: separately guarded
    assert len(f.entries) == 4


def test_cache_limit_warns_and_runs_eagerly():
    f = graphc.compile(lambda x: x * 2 + 1, cache_limit=2, dynamic=False)
    for n in (1, 2):
        f(graphc.ones(n))
    with pytest.warns(UserWarning, match="cache limit of 2 compiled signatures"):
        got = f(graphc.ones(3))
    assert_close(got, graphc.full((3,), 3.0))
    assert len(f.entries) == 2 and "cache limit" in f.eager_runs[-1].reason
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once
        assert_close(f(graphc.ones(4)), graphc.full((4,), 3.0))
    assert_close(f(graphc.ones(2)), graphc.full((2,), 3.0))  # cached ones still run compiled


# ---- capture failures ------------------------------------------------------------------------------

def data_dependent(x):
    if x.sum() > 0:  # the line capture fails at
        return x * 2
    return -x


def test_capture_failure_runs_eagerly_with_the_reason_and_line():
    f = graphc.compile(data_dependent)
    x = graphc.ones(3)
    with pytest.warns(UserWarning, match="capture failed"):
        assert_close(f(x), x * 2)
    assert_close(f(-x), x)  # eager follows the values
    (run,) = f.eager_runs
    line = inspect.getsourcelines(data_dependent)[1] + 1
    assert run.location == f"test_compile.py:{line}"
    assert "Python control flow cannot depend on tensor values" in run.reason
    assert not f.entries


def test_fullgraph_raises_where_capture_fails():
    f = graphc.compile(data_dependent, fullgraph=True)
    line = inspect.getsourcelines(data_dependent)[1] + 1
    with pytest.raises(CaptureError, match="fullgraph=True, but capture failed") as info:
        f(graphc.ones(3))
    assert info.value.location == f"test_compile.py:{line}"
    g = graphc.compile(lambda x: graphc.cat([x, x.exp()]), fullgraph=True)  # cat: a fallback
    with pytest.raises(CaptureError, match="no native lowering: %cat"):
        g(graphc.ones(3))
    assert_close(graphc.compile(g.__wrapped__)(graphc.ones(3)),
                 graphc.cat([graphc.ones(3), graphc.ones(3).exp()]))


def test_unsupported_python_falls_back_and_user_errors_surface():
    def uses_numpy(x):
        return graphc.from_numpy(np.sin(x.numpy()))  # leaves graphc: cannot be traced

    f = graphc.compile(uses_numpy)
    x = graphc.randn(4)
    with pytest.warns(UserWarning, match="capture failed"):
        assert_close(f(x), graphc.from_numpy(np.sin(x.numpy())))
    assert f.eager_runs[0].location.startswith("test_compile.py:")

    g = graphc.compile(lambda a, b: a @ b)
    with pytest.raises(graphc.ShapeError, match=r"matmul: shapes \(2, 3\) and \(2, 3\)"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            g(graphc.ones(2, 3), graphc.ones(2, 3))  # the user's error, raised by eager


def test_meta_and_unguardable_arguments():
    f = graphc.compile(lambda x: x + 1)
    with pytest.raises(ValueError, match="'x' is a meta tensor"):
        f(graphc.ones(2).to("meta"))
    g = graphc.compile(lambda xs: xs[0] + len(xs[1]))
    assert_close(g([graphc.ones(2), (1,)]), graphc.full((2,), 2.0))  # a list holding a tensor
    assert len(g.entries) == 1 and not g.eager_runs
    with pytest.warns(UserWarning, match=r"argument xs\[1\] cannot be guarded: a set of "
                                         "tensors"):
        assert_close(g([graphc.ones(2), {graphc.ones(1)}]), graphc.full((2,), 2.0))


# ---- autograd ---------------------------------------------------------------------------------------

def test_calls_autograd_records_run_compiled_forward_and_backward_programs():
    model = mlp()
    cm = graphc.compile(model)
    x = graphc.randn(4, 16)
    y = cm(x)
    assert y.requires_grad and y.grad_fn.name() == "CompiledFunctionBackward"
    y.sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model(x).sum().backward()
    assert_close(grads, [p.grad for p in model.parameters()])
    with graphc.no_grad():
        z = cm(x)
    assert not z.requires_grad and len(cm.compiled.entries) == 1
    assert_close(z, y.detach())
    model.requires_grad_(False)  # nothing to record: the values program, with grad mode on
    z = cm(x)
    assert not z.requires_grad
    assert_close(z, y.detach())
    assert cm.compiled.eager_runs == []


def test_the_root_modules_hooks_are_compiled_too():
    model = nn.Linear(4, 4).eval()
    model.register_forward_pre_hook(lambda mod, inp: (inp[0] + 1,))
    model.register_forward_hook(lambda mod, inp, out: out * 10)
    x = graphc.randn(2, 4)
    cm = graphc.compile(model)
    with graphc.no_grad():
        assert_close(cm(x), model(x))
        assert_close(cm(x), (model.weight @ (x + 1).T).T * 10 + model.bias * 10, tol=1e-4)


def test_an_optional_tensor_given_or_omitted_is_explained():
    @graphc.compile
    def f(x, mask=None, bias=None):
        x = x if mask is None else x * mask
        return x if bias is None else x + bias

    x = graphc.randn(4)
    f(x, bias=x)
    assert_close(f(x, graphc.ones(4)), x)
    r = f.recompiles[-1]
    assert (r.guard, r.name, r.old, r.new) == ("value", "mask", "None", "tensor float32[4]")
    assert "optional argument given or omitted" in r.suggestion and r.also == ["bias"]
    assert "(also changed: bias)" in str(r)


def test_self_attention_projects_q_k_v_with_one_matmul():
    graphc.manual_seed(0)
    mha = nn.MultiheadAttention(32, 4, batch_first=True).eval()
    x, other = graphc.randn(2, 5, 32), graphc.randn(2, 5, 32)
    self_attention = graphc.compile(lambda x: mha(x, x, x, need_weights=False)[0])
    cross = graphc.compile(lambda x, y: mha(x, y, y, need_weights=False)[0])
    with graphc.no_grad():
        assert_close(self_attention(x), mha(x, x, x, need_weights=False)[0])
        assert_close(cross(x, other), mha(x, other, other, need_weights=False)[0])
    projections = lambda f, *a: [k["name"] for k in graphc.explain(f, *a).kernels
                                 if k["name"].startswith("M_10_")]
    assert projections(self_attention, x) == ["M_10_96_32", "M_10_32_32"]  # qkv, out_proj
    assert len(projections(cross, x, other)) == 4
