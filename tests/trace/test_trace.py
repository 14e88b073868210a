"""graphc.trace on every layer and on whole models: the GraphModule and the Interpreter
equal eager, lint passes, parameters are live, and untraceable code fails at its line."""

from __future__ import annotations

import inspect

import networkx as nx
import numpy as np
import pytest

import graphc
import graphc.nn as nn
import graphc.nn.functional as F
from graphc.ir import Interpreter, propagate_shapes, to_networkx
from graphc.trace import TensorSpec, TraceError


def _same(a, b, tol=0.0):
    if isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y, tol)
        return
    assert a.shape == b.shape and a.dtype is b.dtype
    np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=tol, atol=tol)


def check(model, *inputs, tol=0.0, **trace_kwargs):
    """Trace, lint, and compare GraphModule and Interpreter with eager (same random state)."""
    gm = graphc.trace(model, *inputs, **trace_kwargs)
    gm.graph.lint(gm, require_meta=True)
    graphc.manual_seed(7)
    eager = model(*inputs)
    graphc.manual_seed(7)
    _same(gm(*inputs), eager, tol)
    graphc.manual_seed(7)
    _same(Interpreter(gm).run(*inputs), eager, tol)
    return gm


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(16, 32), nn.Linear(32, 32), nn.Linear(32, 4)])

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:  # control flow on Python values is fine
                x = F.relu(x)
        return x


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.bn(self.conv(x))))
        return self.head(x.flatten(1))


class Residual(nn.Module):
    def __init__(self, c=4):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + x)


MODELS = [
    ("mlp", lambda: MLP(), (4, 16)),
    ("cnn_bn_eval", lambda: CNN().eval(), (2, 3, 8, 8)),
    ("cnn_bn_train", lambda: CNN(), (2, 3, 8, 8)),
    ("residual", lambda: Residual().eval(), (2, 4, 6, 6)),
    ("transformer_layer", lambda: nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0,
                                                             batch_first=True).eval(), (2, 5, 16)),
    ("transformer_norm_first", lambda: nn.TransformerEncoderLayer(
        16, 4, 32, dropout=0.0, norm_first=True, activation="gelu").eval(), (5, 2, 16)),
]


@pytest.mark.parametrize("name, make, shape", MODELS, ids=[m[0] for m in MODELS])
def test_models_trace_and_match_eager(name, make, shape):
    graphc.manual_seed(0)
    model = make()
    x = graphc.randn(*shape)
    if name == "cnn_bn_train":  # BatchNorm in training updates running stats: use a copy
        import copy
        gm = graphc.trace(copy.deepcopy(model), x)
        gm.graph.lint(gm)
        _same(gm(x), model(x), 1e-6)
        assert any(n.target.name == "copy_" for n in gm.graph.find_nodes("call_function"))
        return
    gm = check(model, x, tol=1e-6)
    assert gm.graph.find_nodes("get_attr") and not gm.graph.find_nodes("call_module")


LAYERS = [
    (lambda: nn.Linear(8, 4), (3, 8)), (lambda: nn.Conv2d(3, 4, 3, stride=2, groups=1), (1, 3, 7, 7)),
    (lambda: nn.MaxPool2d(2), (1, 2, 6, 6)), (lambda: nn.AvgPool2d(3, 2, 1), (1, 2, 7, 7)),
    (lambda: nn.AdaptiveAvgPool2d((2, 3)), (1, 2, 7, 8)), (lambda: nn.Flatten(), (2, 3, 4)),
    (lambda: nn.Identity(), (3,)), (lambda: nn.ReLU(), (3, 4)), (lambda: nn.GELU("tanh"), (3, 4)),
    (lambda: nn.SiLU(), (3, 4)), (lambda: nn.Sigmoid(), (3,)), (lambda: nn.Tanh(), (3,)),
    (lambda: nn.Softmax(1), (2, 5)), (lambda: nn.LogSoftmax(-1), (2, 5)),
    (lambda: nn.Dropout(0.3), (4, 5)), (lambda: nn.Dropout(0.3).eval(), (4, 5)),
    (lambda: nn.LayerNorm(6), (2, 6)), (lambda: nn.BatchNorm1d(5).eval(), (4, 5)),
    (lambda: nn.BatchNorm2d(3).eval(), (2, 3, 4, 4)), (lambda: nn.InstanceNorm2d(3), (2, 3, 4, 4)),
    (lambda: nn.GroupNorm(2, 4), (2, 4, 3, 3)),
    (lambda: nn.Sequential(nn.Linear(4, 4), nn.ReLU()), (2, 4)),
]


@pytest.mark.parametrize("make, shape", LAYERS, ids=lambda v: getattr(v, "__name__", str(v)))
def test_every_layer_traces(make, shape):
    graphc.manual_seed(1)
    check(make(), graphc.randn(*shape), tol=1e-6)


def test_embedding_attention_and_losses_trace():
    emb = nn.Embedding(10, 4, padding_idx=0)
    check(emb, graphc.tensor([[1, 2], [0, 9]]))
    mha = nn.MultiheadAttention(8, 2, batch_first=True).eval()
    q = graphc.randn(2, 3, 8)
    mask = graphc.tensor([[False, False, True], [False, False, False]])
    check(lambda q, m: mha(q, q, q, key_padding_mask=m), q, mask, tol=1e-6)
    target = graphc.tensor([1, 0, 3])
    check(nn.CrossEntropyLoss(label_smoothing=0.1), graphc.randn(3, 4), target, tol=1e-6)
    check(nn.MSELoss(), graphc.randn(3, 4), graphc.randn(3, 4))


def test_golden_text_ir():
    class Small(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return graphc.softmax(F.relu(self.fc(x)) * 2.0, dim=-1).sum(0)

    gm = graphc.trace(Small(), TensorSpec((8, 4)))
    assert str(gm.graph) == (
        "graph(%x : f32[8, 4]):\n"
        "  %fc_weight : f32[3, 4] = get_attr[fc.weight]\n"
        "  %fc_bias : f32[3] = get_attr[fc.bias]\n"
        "  %linear : f32[8, 3] = linear(%x, %fc_weight, %fc_bias)\n"
        "  %relu : f32[8, 3] = relu(%linear)\n"
        "  %mul : f32[8, 3] = mul(%relu, 2.0)\n"
        "  %softmax : f32[8, 3] = softmax(%mul, dim=-1)\n"
        "  %sum : f32[3] = sum(%softmax, dim=(0,))\n"
        "  return %sum")
    assert gm.code == (
        "def forward(self, x):\n"
        "    fc_weight = self.fc.weight\n"
        "    fc_bias = self.fc.bias\n"
        f"    linear = ops.linear(x, fc_weight, fc_bias)  # test_trace.py:{_line(Small.forward)}\n"
        f"    relu = ops.relu(linear)  # test_trace.py:{_line(Small.forward)}\n"
        f"    mul = ops.mul(relu, 2.0)  # test_trace.py:{_line(Small.forward)}\n"
        f"    softmax = ops.softmax(mul, dim=-1)  # test_trace.py:{_line(Small.forward)}\n"
        f"    sum = ops.sum(softmax, dim=(0,))  # test_trace.py:{_line(Small.forward)}\n"
        "    return sum\n")
    table = gm.graph.format(locations=True)
    assert f"%relu : f32[8, 3] = relu(%linear)  # test_trace.py:{_line(Small.forward)}" in table


def _line(fn) -> int:
    """The line of the body of a one-line forward."""
    return inspect.getsourcelines(fn)[1] + 1


def test_parameters_stay_live():
    model = nn.Linear(3, 2)
    gm = graphc.trace(model, TensorSpec((1, 3)))
    x = graphc.ones(1, 3)
    before = gm(x)
    with graphc.no_grad():
        model.weight.add_(1.0)
    assert np.allclose(gm(x).detach().numpy(), before.detach().numpy() + 3.0)
    assert gm.weight is model.weight


def test_leaf_modules_become_call_module():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    gm = check(model, graphc.randn(3, 4), leaf_modules=(nn.Linear,))
    targets = [n.target for n in gm.graph.find_nodes("call_module")]
    assert targets == ["0", "2"] and gm.graph.find_nodes("call_function")[0].target.name == "relu"
    mha = nn.MultiheadAttention(8, 2).eval()

    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = mha

        def forward(self, q):
            out, weights = self.attn(q, q, q)
            return out + 1, weights

    gm = check(Wrap(), graphc.randn(3, 2, 8), leaf_modules=(nn.MultiheadAttention,))
    assert len(gm.graph.find_nodes("call_method", "__getitem__")) == 2


def test_concrete_args_and_python_values():
    def f(x, scale, mode):
        return x * scale if mode == "mul" else x + scale

    gm = graphc.trace(f, graphc.ones(2), concrete_args={"scale": 3.0, "mode": "add"})
    assert gm(graphc.ones(2)).tolist() == [4.0, 4.0]
    assert [n.name for n in gm.graph.placeholders] == ["x"]
    with pytest.raises(TraceError, match="concrete_args"):
        graphc.trace(f, graphc.ones(2), 3.0, "add")


def test_shape_arithmetic_and_factories_are_recorded():
    def f(x):
        b, n = x.shape
        pos = graphc.arange(n).float() / n
        noise = graphc.randn(b, n)
        return x.reshape(b * n // 2, 2) + 1, x + pos, noise

    gm = graphc.trace(f, TensorSpec((4, 6)))
    names = [n.target.name for n in gm.graph.find_nodes("call_function")]
    assert {"arange", "normal", "reshape"} <= set(names)
    graphc.manual_seed(3)
    a = gm(graphc.ones(4, 6))
    graphc.manual_seed(3)
    b = f(graphc.ones(4, 6))
    _same(a, b)


def _raises_at(fn, *inputs, what):
    with pytest.raises(TraceError) as info:
        graphc.trace(fn, *inputs)
    message = str(info.value)
    assert what in message and "concrete_args" in message and "mode='example'" in message, message
    assert info.value.location.startswith("test_trace.py:"), message
    return info.value.location


def data_dependent_if(x):
    if x.sum() > 0:  # needs a value
        return x
    return -x


@pytest.mark.parametrize("fn, what", [
    (data_dependent_if, "bool()"),
    (lambda x: x * int(x[0]), "int()"),
    (lambda x: x * x.max().item(), ".item()"),
    (lambda x: x[: len(x)], "len()"),
    (lambda x: sum(row for row in x), "iteration"),
    (lambda x: x * float(x.mean()), "float()"),
])
def test_value_dependent_control_flow_is_a_trace_error_at_the_users_line(fn, what):
    where = _raises_at(fn, TensorSpec((3, 2)), what=what)
    if fn is data_dependent_if:
        assert where == f"test_trace.py:{inspect.getsourcelines(data_dependent_if)[1] + 1}"


def test_boolean_mask_needs_example_mode():
    def f(x):
        return x[x > 0]

    with pytest.raises(TraceError, match="depends on tensor values"):
        graphc.trace(f, TensorSpec((5,)))
    x = graphc.tensor([1.0, -2.0, 3.0])
    gm = graphc.trace(f, x, mode="example")
    assert gm(graphc.tensor([-1.0, 5.0, 6.0])).tolist() == [5.0, 6.0]  # re-evaluated, not frozen


def test_example_mode_records_the_decisions_it_specialised_on():
    x = graphc.tensor([1.0, 2.0])
    gm = graphc.trace(data_dependent_if, x, mode="example")
    assert gm.trace_mode == "example" and len(gm.specializations) == 1
    line = inspect.getsourcelines(data_dependent_if)[1] + 1
    assert gm.specializations[0].startswith(f"test_trace.py:{line}: bool() of %gt was True")
    assert gm(-x).tolist() == [-1.0, -2.0]  # the recorded path: the other branch is not taken
    assert graphc.trace(lambda t: [r * 2 for r in t], x, mode="example").specializations == [
        f"test_trace.py:{inspect.currentframe().f_lineno - 1}: iteration of %t was 2 items"]


def test_shape_propagation_after_tracing_with_other_specs():
    gm = graphc.trace(MLP(), TensorSpec((4, 16)))
    propagate_shapes(gm, TensorSpec((9, 16)))
    out = gm.graph.output_node.args[0]
    assert out.meta["shape"] == (9, 4)
    gm.graph.lint(gm, require_meta=True)
    # float32 parameters, float64 input: linear refuses mixed dtypes in meta mode as in eager
    with pytest.raises(graphc.DTypeError, match="linear: expected all operands"):
        propagate_shapes(gm, TensorSpec((9, 16), graphc.float64))


def test_networkx_export_round_trips_nodes_and_edges():
    gm = graphc.trace(CNN().eval(), TensorSpec((1, 3, 8, 8)))
    g = to_networkx(gm.graph)
    assert g.number_of_nodes() == len(gm.graph.nodes)
    assert g.number_of_edges() == sum(len(n.all_input_nodes) for n in gm.graph.nodes)
    assert nx.is_directed_acyclic_graph(g)
    conv = next(n for n in gm.graph.nodes if n.op == "call_function" and n.target.name == "conv2d")
    assert g.nodes[conv.name]["shape"] == (1, 8, 8, 8) and g.nodes[conv.name]["target"] == "conv2d"
    assert list(nx.topological_sort(g))[-1] == "output"


def test_dot_and_picture():
    gm = graphc.trace(nn.Linear(2, 2), TensorSpec((1, 2)))
    dot = graphc.ir.to_dot(gm.graph)
    assert dot.startswith('digraph "graph" {') and '"input" -> "linear";' in dot
    assert 'label="%linear = linear(%input, %weight, %bias)\\nf32[1, 2]"' in dot


def test_render_without_graphviz_says_what_to_do(tmp_path, monkeypatch):
    gm = graphc.trace(nn.Linear(2, 2), TensorSpec((1, 2)))
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(graphc.ir.GraphvizMissing, match="apt-get install graphviz.*to_dot"):
        graphc.ir.render(gm.graph, str(tmp_path / "g.svg"))


def test_print_readable_and_repr():
    gm = graphc.trace(nn.Linear(2, 2), TensorSpec((1, 2)))
    text = gm.print_readable(print_output=False)
    assert text.startswith("class Linear(graphc.nn.Module):\n    def forward(self, input):")
    assert "Linear(" in repr(gm) and str(gm) == str(gm.graph)


def test_traced_module_keeps_training_flag_and_state_dict():
    model = CNN().eval()
    gm = graphc.trace(model, TensorSpec((1, 3, 8, 8)))
    assert not gm.training
    assert set(gm.state_dict()) <= set(model.state_dict())
    assert gm.state_dict()["conv.weight"] is not None


@pytest.mark.skipif(__import__("shutil").which("dot") is None, reason="graphviz is not installed")
def test_render_draws_an_svg_with_graphviz(tmp_path):
    gm = graphc.trace(nn.Sequential(nn.Linear(2, 3), nn.ReLU()), TensorSpec((1, 2)))
    path = graphc.ir.render(gm.graph, str(tmp_path / "g.svg"))
    text = open(path).read()
    assert "<svg" in text and "%relu = relu(%linear)" in text
