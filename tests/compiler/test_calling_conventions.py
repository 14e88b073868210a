"""graphc.compile takes what a Python function takes: *args, **kwargs, keyword-only
parameters and defaults; nested tuples, lists, dicts and namedtuples of tensors as inputs
and outputs; Python values as guarded constants; bound methods, methods decorated in a
class, lambdas and modules whose forward takes **kwargs. Every result is compared with
the same function run eagerly; size-1 strides never enter the signature."""

from __future__ import annotations

import copy
import warnings
from collections import OrderedDict, namedtuple

import numpy as np
import pytest

import graphc
import graphc.nn as nn
from graphc.compiler import CaptureError

Pair = namedtuple("Pair", "first second")


def assert_same(got, want, tol=1e-5):
    """Same containers (types, keys), same constants, tensors close."""
    assert type(got) is type(want), (type(got), type(want))
    if isinstance(want, graphc.Tensor):
        assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, want.shape)
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=tol, atol=tol,
                                   equal_nan=True)
    elif isinstance(want, dict):
        assert list(got) == list(want)
        for k in want:
            assert_same(got[k], want[k], tol)
    elif isinstance(want, (tuple, list)):
        assert len(got) == len(want)
        for a, b in zip(got, want):
            assert_same(a, b, tol)
    else:
        assert got == want


def run_both(fn, *args, **kwargs):
    """fn compiled (fullgraph) and eager on the same arguments: the compiled function."""
    c = graphc.compile(fn, fullgraph=True)
    with graphc.no_grad():
        assert_same(c(*args, **kwargs), fn(*args, **kwargs))
    assert not c.eager_runs, c.eager_runs
    return c


# ---- parameters ---------------------------------------------------------------------------

def test_var_positional_arguments():
    def f(x, *rest):
        out = x
        for r in rest:
            out = out * 2 + r
        return out

    x = graphc.randn(3, 4)
    c = run_both(f, x, graphc.randn(3, 4), graphc.randn(4))
    with graphc.no_grad():
        assert_same(c(x), f(x))  # no *rest: another structure
        y, z = graphc.randn(3, 4), graphc.randn(4)
        assert_same(c(x, y, z), f(x, y, z))  # the first structure again: cached
    assert len(c.entries) == 2
    r = c.recompiles[0]
    assert (r.guard, r.name, r.old, r.new) == ("structure", "rest", "tuple of 2", "tuple of 0")
    assert [n.name for n in c.last.traced.graph.placeholders] == ["x"]
    assert [n.name for n in c.entries[next(iter(c.entries))].traced.graph.placeholders] == [
        "x", "rest_0", "rest_1"]


def test_var_keyword_keyword_only_and_defaults():
    def f(x, scale=2.0, *args, shift, bias=None, **extra):
        y = x * scale + shift
        if bias is not None:
            y = y + bias
        for name in sorted(extra):
            y = y - extra[name] if name.startswith("sub") else y + extra[name]
        return y + sum(args) if args else y

    x = graphc.randn(5)
    c = run_both(f, x, shift=1.5)
    with graphc.no_grad():
        for args, kwargs in [((x,), dict(shift=1.5)),  # the same call: cached
                             ((x, 2.0), dict(shift=1.5)),  # the default given: the same call
                             ((x, 3.0, 1, 2), dict(shift=x, sub_a=x, add_b=graphc.ones(5))),
                             ((x,), dict(shift=x, bias=x * 3))]:
            assert_same(c(*args, **kwargs), f(*args, **kwargs))
    assert len(c.entries) == 3 and not c.eager_runs


def test_keyword_order_of_kwargs_is_part_of_the_signature():
    def f(**parts):
        out = None
        for v in parts.values():
            out = v if out is None else out * 2 - v
        return out

    a, b = graphc.randn(4), graphc.randn(4)
    c = run_both(f, a=a, b=b)
    with graphc.no_grad():
        assert_same(c(b=b, a=a), f(b=b, a=a))  # order matters to the function: recompiled
    r = c.recompiles[-1]
    assert r.guard == "structure" and r.name == "parts"
    assert (r.old, r.new) == ("dict with keys ['a', 'b']", "dict with keys ['b', 'a']")


def test_lambdas_compile():
    c = run_both(lambda x, *ys, k=3: x * k + sum(ys), graphc.randn(2, 3), graphc.randn(3))
    assert len(c.entries) == 1


# ---- containers of tensors ----------------------------------------------------------------

def test_nested_containers_in_and_out():
    def f(batch, pair, extra=()):
        h = batch["x"] @ batch["w"][0] + batch["w"][1]
        out = {"h": h.relu(), "parts": [pair.first * 2, (pair.second.sum(), None)],
               "n": len(extra), "name": "ok"}
        return out, Pair(h, pair.first + 1)

    batch = {"x": graphc.randn(4, 3), "w": [graphc.randn(3, 5), graphc.randn(5)]}
    pair = Pair(graphc.randn(2), graphc.randn(2, 2))
    c = run_both(f, batch, pair)
    entry = c.last
    assert [n.name for n in entry.traced.graph.placeholders] == [
        "batch_x", "batch_w_0", "batch_w_1", "pair_first", "pair_second"]
    with graphc.no_grad():
        got = c(batch, pair)
        assert isinstance(got[1], Pair) and got[0]["parts"][1][1] is None
        # new values of the same structure: cached
        b2 = {"x": graphc.randn(4, 3), "w": [graphc.randn(3, 5), graphc.randn(5)]}
        assert_same(c(b2, pair), f(b2, pair))
    assert len(c.entries) == 1


def test_container_types_and_subclasses_round_trip():
    def f(d, seq):
        return OrderedDict((k, v * 2) for k, v in d.items()), [t + 1 for t in seq], tuple(seq)

    d = OrderedDict(b=graphc.randn(2), a=graphc.randn(3))
    c = run_both(f, d, [graphc.randn(1), graphc.randn(2, 2)])
    out = c(d, [graphc.randn(1), graphc.randn(2, 2)])
    assert type(out[0]) is OrderedDict and list(out[0]) == ["b", "a"]


def test_structure_changes_are_guarded():
    def f(xs):
        return sum(x.sum() for x in xs if x is not None)

    c = graphc.compile(f)
    a = graphc.randn(3)
    with graphc.no_grad():
        for xs in ([a, a], (a, a), [a, a, a], [a], [a, None], [a, a]):
            assert_same(c(xs), f(xs))
    assert [(r.guard, r.name, r.old, r.new) for r in c.recompiles] == [
        ("structure", "xs", "list of 2", "tuple of 2"),
        ("structure", "xs", "tuple of 2", "list of 3"),  # the nearest: the latest of equals
        ("structure", "xs", "list of 3", "list of 1"),
        ("value", "xs[1]", "tensor float32[3]", "None")]  # nearer: [a, a]
    assert len(c.entries) == 5


def test_a_tensor_used_twice_is_two_inputs():
    c = run_both(lambda xs: xs[0] * xs[1] + xs[0], [graphc.randn(3)] * 2)
    assert len(c.last.traced.graph.placeholders) == 2


# ---- Python values ------------------------------------------------------------------------

def test_python_constants_are_baked_and_guarded_by_value():
    def f(x, n, scale, flag, mode, nothing):
        y = x * scale if flag else x - scale
        y = y.sum(n) if mode == "sum" else y.amax(n)
        return y if nothing is None else y + 1

    x = graphc.randn(3, 4)
    c = run_both(f, x, 0, 2.0, True, "sum", None)
    with graphc.no_grad():
        for args in [(x, 1, 2.0, True, "sum", None), (x, 1, -0.0, True, "sum", None),
                     (x, 1, 0.0, True, "sum", None), (x, 1, 0.0, False, "sum", None),
                     (x, 1, 0.0, False, "max", None), (x, 1, 0.0, False, "max", 1),
                     (x, 0, 2.0, True, "sum", None)]:
            assert_same(c(*args), f(*args))
    assert [(r.name, r.old, r.new) for r in c.recompiles] == [
        ("n", "0", "1"), ("scale", "2.0", "-0.0"), ("scale", "-0.0", "0.0"),
        ("flag", "True", "False"), ("mode", "'sum'", "'max'"), ("nothing", "None", "1")]
    assert all(r.guard == "value" for r in c.recompiles)
    assert len(c.entries) == 7  # the last call is the first signature: cached


def test_unsupported_arguments_name_their_path():
    def f(*args):
        return args[0] + len(args[1]["mask"])

    c = graphc.compile(f)
    x = graphc.randn(2)
    with pytest.warns(UserWarning, match=r"argument args\[1\]\['mask'\] cannot be guarded: "
                                         r"a set of tensors is not supported"):
        assert_same(c(x, {"mask": {x}}), x + 1)
    with pytest.warns(UserWarning, match=r"argument args\[1\]\['mask'\] cannot be guarded: "
                                         "a bytearray is not supported"):
        c(x, {"mask": bytearray(b"ab")})
    with pytest.warns(UserWarning, match=r"argument args\[1\]\['mask'\] cannot be "
                                         "guarded: a numpy array"):
        c(x, {"mask": np.ones(3)})
    assert not c.entries
    strict = graphc.compile(f, fullgraph=True)
    with pytest.raises(CaptureError, match=r"fullgraph=True, but argument args\[1\]"):
        strict(x, {"mask": {x}})
    # a set of plain values is a constant
    assert_same(run_both(lambda x, s: x * len(s), x, frozenset({1, 2}))(x, frozenset({1, 2})),
                x * 2)


# ---- methods and modules ------------------------------------------------------------------

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.calls = 0

    def step(self, x, *, temperature=1.0):
        return (self.fc(x) / temperature).softmax(-1)

    @graphc.compile
    def decorated(self, x, scale=2.0):
        return self.fc(x) * scale

    def forward(self, x):
        return self.fc(x)


def test_bound_method_sees_the_modules_weights():
    graphc.manual_seed(0)
    net = Net().eval()
    c = graphc.compile(net.step)
    x = graphc.randn(2, 4)
    with graphc.no_grad():
        assert_same(c(x, temperature=0.5), net.step(x, temperature=0.5))
        assert c.owner is net and c.module is None
        targets = [n.target for n in c.last.traced.graph.nodes if n.op == "get_attr"]
        assert sorted(targets) == ["fc.bias", "fc.weight"]  # named, not constants
        net.fc.weight.mul_(-1)  # an in-place update is read
        assert_same(c(x, temperature=0.5), net.step(x, temperature=0.5))
        net.fc.weight = nn.Parameter(graphc.randn(3, 4))  # a replaced weight recompiles
        assert_same(c(x, temperature=0.5), net.step(x, temperature=0.5))
        assert c.recompiles[-1].guard == "weight" and c.recompiles[-1].name == "fc.weight"
        net.train()
        c(x, temperature=0.5)
    assert c.recompiles[-1].guard == "training"


def test_decorated_method_compiles_per_instance():
    graphc.manual_seed(0)
    a, b = Net().eval(), Net().eval()
    x = graphc.randn(2, 4)
    with graphc.no_grad():
        assert_same(a.decorated(x), a.fc(x) * 2.0)
        assert_same(b.decorated(x, 3.0), b.fc(x) * 3.0)
        assert_same(a.decorated(x, scale=3.0), a.fc(x) * 3.0)
    assert a.decorated is a.decorated and a.decorated is not b.decorated
    assert a.decorated.owner is a and len(a.decorated.entries) == 2
    assert len(b.decorated.entries) == 1
    assert isinstance(Net.decorated, graphc.compiler.CompiledFunction)
    twin = copy.deepcopy(a)  # a copy compiles afresh, for its own weights
    with graphc.no_grad():
        twin.fc.weight.mul_(0)
        assert_same(twin.decorated(x), twin.fc(x) * 2.0)
        assert_same(a.decorated(x), a.fc(x) * 2.0)
    assert twin.decorated.owner is twin


def test_a_compiled_method_called_inside_a_compiled_model_is_inlined():
    class Outer(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = Net()

        def forward(self, x):
            return self.inner.decorated(x) + 1

    graphc.manual_seed(0)
    model = Outer().eval()
    cm = graphc.compile(model, fullgraph=True)
    x = graphc.randn(2, 4)
    with graphc.no_grad():
        assert_same(cm(x), model.inner.fc(x) * 2.0 + 1)
    assert len(cm.compiled.entries) == 1


def test_module_whose_forward_takes_kwargs():
    class Mixer(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(4, 4)

        def forward(self, x, **features):
            for name, f in features.items():
                x = x + self.proj(f) * (2.0 if name == "double" else 1.0)
            return {"out": x, "names": tuple(features)}

    graphc.manual_seed(0)
    model = Mixer().eval()
    cm = graphc.compile(model, fullgraph=True)
    x, f = graphc.randn(3, 4), graphc.randn(3, 4)
    with graphc.no_grad():
        assert_same(cm(x, double=f, single=x), model(x, double=f, single=x))
        assert_same(cm(x), model(x))
    assert [r.guard for r in cm.compiled.recompiles] == ["structure"]


# ---- size-1 strides -----------------------------------------------------------------------

def test_size_one_strides_do_not_enter_the_signature():
    def f(x):
        return (x * 2).exp() + x[:, :1]

    c = graphc.compile(f, dynamic=False)
    with graphc.no_grad():
        for T in (65, 66, 67, 70, 8):
            x = graphc.randn(1, T)[:, -8:]  # a cropped window: shape (1, 8), strides (T, 1)
            assert x.stride() == (T, 1)
            assert_same(c(x), f(x))
    assert len(c.entries) == 1 and not c.recompiles


@pytest.mark.parametrize("dynamic", [False, None])
def test_outputs_that_alias_inputs_with_odd_size_one_strides(dynamic):
    """Views of the input returned as outputs, and as_strided over it: compiled with one
    size-1 stride, called with others, always eager's values."""
    def f(x):
        return x.transpose(0, 1), x[0], x.unsqueeze(0) * 3, x.as_strided((2, 2), (1, 2), 1)

    c = graphc.compile(f, dynamic=dynamic)
    base = graphc.randn(300)
    with graphc.no_grad():
        for stride0 in (65, 66, 129, 1, 0):
            x = base.as_strided((1, 8), (stride0, 1), 5)
            got, want = c(x), f(x)
            for a, b in zip(got, want):
                assert a.shape == b.shape
                np.testing.assert_array_equal(a.numpy(), b.numpy())
            assert np.shares_memory(got[0].numpy(), base.numpy())  # still a view, as eager
    assert len(c.entries) == 1


def test_empty_tensors_share_one_signature():
    f = graphc.compile(lambda x: x * 2, dynamic=False)
    with graphc.no_grad():
        for x in (graphc.randn(0, 5), graphc.randn(5, 0).t(), graphc.randn(3, 5)[3:]):
            assert_same(f(x), x * 2)
    assert len(f.entries) == 1


def test_signature_check_stays_one_key_per_argument():
    import graphc.compiler.guards as G

    t = graphc.randn(1, 8)
    view = graphc.randn(1, 66)[:, -8:]
    assert G.tensor_key(t) == G.tensor_key(view)
    assert G.canonical_strides((1, 8), (66, 1)) == (8, 1)
    assert G.canonical_strides((8, 1), (1, 65)) == (1, 1)
    assert G.canonical_strides((3, 1, 4), (4, 99, 1)) == (4, 4, 1)
    assert G.canonical_strides((4, 3), (1, 4)) == (1, 4)  # nothing to change
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert G.signature((t, 3), None) == G.signature((view, 3), None)
