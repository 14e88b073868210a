"""Activation and loss functions and layers against PyTorch: values, gradients, in-place
writes (``inplace=True``, ``F.<name>_``) in eager, autograd and compiled code, printed
forms, and errors. The op-table tests cover each op's samples; these cover the
``torch.nn.functional`` signatures and the layers."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import graphc
from graphc import nn
from graphc.errors import DTypeError, OpError
from graphc.nn import functional as F

torch = pytest.importorskip("torch")
TF = torch.nn.functional

RNG = np.random.default_rng(7)


def values(*shape, low=-4.0, high=4.0, dtype=np.float64):
    return RNG.uniform(low, high, shape).astype(dtype)


def pair(a: np.ndarray, grad: bool = False):
    """The same values as a graphc and a torch tensor (leaves, requiring grad if asked)."""
    g = graphc.tensor(a, requires_grad=grad)
    t = torch.tensor(a, requires_grad=grad)
    return g, t


def close(ours, theirs, rtol=None):
    expected = theirs.detach().numpy()
    rtol = rtol or (1e-5 if expected.dtype == np.float32 else 1e-11)
    np.testing.assert_allclose(ours.detach().numpy() if hasattr(ours, "detach") else ours,
                               expected, rtol=rtol, atol=rtol, equal_nan=True)


# ---- activation functions: values and gradients ---------------------------------------------

ACTIVATIONS = [  # (name, positional args after the input, keyword args)
    ("relu", (), {}), ("relu6", (), {}), ("elu", (), {}), ("elu", (0.5,), {}),
    ("selu", (), {}), ("celu", (), {"alpha": 2.0}), ("leaky_relu", (), {}),
    ("leaky_relu", (0.2,), {}), ("hardtanh", (), {}), ("hardtanh", (-2.0, 0.5), {}),
    ("threshold", (0.5, -3.0), {}), ("mish", (), {}), ("hardswish", (), {}),
    ("hardsigmoid", (), {}), ("logsigmoid", (), {}), ("softsign", (), {}),
    ("tanhshrink", (), {}), ("silu", (), {}), ("softplus", (), {"beta": 2.0}),
    ("glu", (), {}), ("glu", (0,), {}), ("gelu", (), {"approximate": "tanh"}),
]
ACTIVATION_IDS = [f"{n}{a}{k or ''}" for n, a, k in ACTIVATIONS]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name, args, kwargs", ACTIVATIONS, ids=ACTIVATION_IDS)
def test_activation_values_and_gradients_match_torch(name, args, kwargs, dtype):
    a = values(6, 8, low=-7, high=7, dtype=dtype)
    a[0, :4] = [0.0, -3.0, 3.0, 30.0]  # kinks and the saturated range
    x, tx = pair(a, grad=True)
    out = getattr(F, name)(x, *args, **kwargs)
    tout = getattr(TF, name)(tx, *args, **kwargs)
    rtol = 2e-6 if dtype == np.float32 else 1e-11
    assert out.dtype.name == str(tout.dtype).removeprefix("torch.")
    close(out, tout, rtol)
    cot = values(*out.shape, dtype=dtype)
    out.backward(graphc.tensor(cot))
    tout.backward(torch.tensor(cot))
    # torch's float64 hardsigmoid backward multiplies by 1/6 rounded to float32
    close(x.grad, tx.grad, 1e-7 if name == "hardsigmoid" else rtol)


IN_PLACE = [(n, a, k) for n, a, k in ACTIVATIONS if n in (
    "relu", "relu6", "elu", "selu", "celu", "leaky_relu", "hardtanh", "threshold", "mish",
    "hardswish", "hardsigmoid", "silu")]
IN_PLACE_IDS = [f"{n}{a}{k or ''}" for n, a, k in IN_PLACE]


@pytest.mark.parametrize("name, args, kwargs", IN_PLACE, ids=IN_PLACE_IDS)
def test_inplace_writes_into_the_input(name, args, kwargs):
    a = values(4, 5)
    expected = getattr(TF, name)(torch.tensor(a), *args, **kwargs).numpy()
    x = graphc.tensor(a)
    storage = x.untyped_storage().data_ptr()
    out = getattr(F, name)(x, *args, **kwargs, inplace=True)
    assert out is x and x.untyped_storage().data_ptr() == storage
    np.testing.assert_allclose(x.numpy(), expected, rtol=1e-12)
    # a view is written through to its base
    base = graphc.tensor(a)
    getattr(F, name)(base[1:3], *args, **kwargs, inplace=True)
    np.testing.assert_allclose(base.numpy()[1:3], expected[1:3], rtol=1e-12)
    np.testing.assert_array_equal(base.numpy()[0], a[0])


@pytest.mark.parametrize("name, args", [("relu_", ()), ("elu_", (0.5,)), ("leaky_relu_", (0.2,)),
                                        ("hardtanh_", (-0.5, 0.5)), ("threshold_", (0.1, 9.0)),
                                        ("celu_", (2.0,)), ("selu_", ())])
def test_underscore_functions_write_in_place(name, args):
    a = values(3, 4)
    tx = torch.tensor(a)
    getattr(TF, name)(tx, *args)
    x = graphc.tensor(a)
    assert getattr(F, name)(x, *args) is x
    np.testing.assert_allclose(x.numpy(), tx.numpy(), rtol=1e-12)


@pytest.mark.parametrize("name, args, kwargs", IN_PLACE, ids=IN_PLACE_IDS)
def test_inplace_under_autograd_matches_torch(name, args, kwargs):
    a, w = values(4, 5), values(4, 5)
    x, tx = pair(a, grad=True)
    # in place on an intermediate: tracked, and the gradient is the out-of-place one
    y = x * 1.5
    assert getattr(F, name)(y, *args, **kwargs, inplace=True) is y
    ty = tx * 1.5
    getattr(TF, name)(ty, *args, **kwargs, inplace=True)
    (y * graphc.tensor(w)).sum().backward()
    (ty * torch.tensor(w)).sum().backward()
    close(y, ty)
    close(x.grad, tx.grad, 1e-7 if name == "hardsigmoid" else None)
    # in place on a leaf that requires grad: refused, as in torch
    with pytest.raises(RuntimeError):
        getattr(TF, name)(torch.tensor(a, requires_grad=True), *args, **kwargs, inplace=True)
    leaf = graphc.tensor(a, requires_grad=True)
    with pytest.raises(OpError, match="leaf"):
        getattr(F, name)(leaf, *args, **kwargs, inplace=True)
    np.testing.assert_array_equal(leaf.detach().numpy(), a)


def test_inplace_activations_compiled_match_eager():
    def block(x, w):
        h = x @ w
        F.relu(h, inplace=True)
        g = F.leaky_relu(h * 2 - 1, 0.1, True)
        F.hardtanh_(g, -0.5, 0.5)
        F.elu(g, 0.7, inplace=True)
        return F.silu(h + g, inplace=True) + F.mish(g) + F.hardswish(g * 3)

    x, w = graphc.tensor(values(8, 16)), graphc.tensor(values(16, 16) / 4)
    compiled = graphc.compile(block, fullgraph=True)
    np.testing.assert_allclose(compiled(x, w).numpy(), block(x, w).numpy(), rtol=1e-12,
                               atol=1e-12)
    # inputs untouched
    xt = torch.tensor(x.numpy())
    h = xt @ torch.tensor(w.numpy())
    TF.relu(h, inplace=True)
    g = TF.leaky_relu(h * 2 - 1, 0.1, True)
    TF.hardtanh_(g, -0.5, 0.5)
    TF.elu(g, 0.7, inplace=True)
    expected = TF.silu(h + g, inplace=True) + TF.mish(g) + TF.hardswish(g * 3)
    close(compiled(x, w), expected)


def test_inplace_on_a_compiled_input_writes_it_back():
    def f(x):
        return F.relu(x, inplace=True) * 2

    a = values(5, 6)
    x = graphc.tensor(a)
    out = graphc.compile(f)(x)
    np.testing.assert_array_equal(x.numpy(), np.maximum(a, 0))
    np.testing.assert_array_equal(out.numpy(), 2 * np.maximum(a, 0))


def test_attributes_by_position_and_keyword_and_bad_calls():
    x = graphc.tensor(values(3, 4))
    assert np.array_equal(F.leaky_relu(x, 0.3).numpy(), F.leaky_relu(x, negative_slope=0.3).numpy())
    assert np.array_equal(F.hardtanh(x, -0.5, max_val=0.5).numpy(),
                          np.clip(x.numpy(), -0.5, 0.5))
    with pytest.raises(TypeError, match="leaky_relu"):
        F.leaky_relu(x, 0.3, False, 7)
    with pytest.raises(TypeError, match="threshold"):
        F.threshold(x, 0.5)
    with pytest.raises(DTypeError, match="elu"):
        F.elu(graphc.tensor([1, 2]))
    with pytest.raises(ValueError, match="min_val"):
        F.hardtanh(x, 1.0, -1.0)
    with pytest.raises(OpError, match="halving dimension must be even.*size 5"):
        F.glu(graphc.tensor(values(2, 5)))


def test_relu6_and_hardtanh_on_integers_as_torch():
    a = np.arange(-4, 9)
    assert np.array_equal(F.relu6(graphc.tensor(a)).numpy(), TF.relu6(torch.tensor(a)).numpy())
    assert F.relu6(graphc.tensor(a)).dtype is graphc.int64


# ---- activation layers ----------------------------------------------------------------------

LAYERS = [  # (class name, constructor args, input shape)
    ("ELU", (), (3, 4)), ("ELU", (0.5, True), (3, 4)), ("SELU", (True,), (3, 4)),
    ("CELU", (1.5,), (3, 4)), ("LeakyReLU", (0.2,), (3, 4)), ("LeakyReLU", (0.01, True), (3, 4)),
    ("Hardtanh", (-2.0, 2.0), (3, 4)), ("ReLU6", (True,), (3, 4)), ("ReLU6", (), (3, 4)),
    ("Threshold", (0.1, 20.0), (3, 4)), ("Threshold", (0.1, 20.0, True), (3, 4)),
    ("Mish", (), (3, 4)), ("Mish", (True,), (3, 4)), ("Hardswish", (True,), (3, 4)),
    ("Hardsigmoid", (), (3, 4)), ("Hardsigmoid", (True,), (3, 4)), ("LogSigmoid", (), (3, 4)),
    ("Softsign", (), (3, 4)), ("Tanhshrink", (), (3, 4)), ("GLU", (), (3, 4)), ("GLU", (0,), (4, 3)),
    ("Softplus", (2.0, 5.0), (3, 4)), ("Softmax2d", (), (2, 3, 4, 5)), ("Softmax2d", (), (3, 4, 5)),
    ("PReLU", (), (2, 3, 4)), ("PReLU", (3, 0.1), (2, 3, 4)), ("SiLU", (True,), (3, 4)),
    ("ReLU", (True,), (3, 4)),
]


@pytest.mark.parametrize("cls, args, shape", LAYERS, ids=[f"{c}{a}" for c, a, _ in LAYERS])
def test_activation_layers_match_torch(cls, args, shape):
    ours, theirs = getattr(nn, cls)(*args), getattr(torch.nn, cls)(*args)
    assert repr(ours) == repr(theirs)
    a = values(*shape, dtype=np.float32)
    x, tx = pair(a, grad=True)
    out, tout = ours(x * 1.0), theirs(tx * 1.0)  # (an intermediate: inplace layers may write)
    close(out, tout)
    out.sum().backward()
    tout.sum().backward()
    close(x.grad, tx.grad)
    for (name, p), (tname, tp) in zip(ours.named_parameters(), theirs.named_parameters()):
        assert name == tname
        close(p.grad, tp.grad)


def test_prelu_layer_trains_and_checks_channels():
    m = nn.PReLU(4)
    assert [n for n, _ in m.named_parameters()] == ["weight"] and m.weight.shape == (4,)
    with pytest.raises(OpError, match=r"1 or 3 elements.*\(2, 3, 5\).*\(4,\)"):
        m(graphc.tensor(values(2, 3, 5)))
    with pytest.raises(OpError, match="Softmax2d"):
        nn.Softmax2d()(graphc.tensor(values(3, 4)))


# ---- losses: values, gradients, reductions ----------------------------------------------------

REDUCTIONS = ("mean", "sum", "none")


def _log_probs(*shape):
    a = values(*shape)
    return a - np.log(np.exp(a).sum(axis=1 if len(shape) > 1 else 0, keepdims=True))


LOSSES = [  # (name, input maker, target maker, extra positional args, keyword args)
    ("nll_loss", lambda: _log_probs(5, 4), lambda: np.array([0, 3, -100, 1, 3]), (), {}),
    ("nll_loss", lambda: _log_probs(2, 4, 3, 2), lambda: RNG.integers(0, 4, (2, 3, 2)), (), {}),
    ("nll_loss", lambda: _log_probs(4), lambda: np.array(2), (), {}),
    ("nll_loss", lambda: _log_probs(5, 4), lambda: np.array([0, 3, 2, 1, 3]),
     (np.array([0.5, 1.0, 2.0, 0.1]),), {"ignore_index": 3}),
    ("l1_loss", lambda: values(3, 4), lambda: values(3, 4), (), {}),
    ("smooth_l1_loss", lambda: values(3, 4), lambda: values(3, 4), (), {"beta": 0.5}),
    ("smooth_l1_loss", lambda: values(3, 4), lambda: values(3, 4), (), {"beta": 0.0}),
    ("huber_loss", lambda: values(3, 4), lambda: values(3, 4), (), {"delta": 1.5}),
    ("binary_cross_entropy", lambda: values(3, 4, low=0.01, high=0.99),
     lambda: values(3, 4, low=0, high=1), (), {}),
    ("binary_cross_entropy", lambda: values(3, 4, low=0.01, high=0.99),
     lambda: values(3, 4, low=0, high=1), (values(4, low=0, high=2),), {}),
    ("binary_cross_entropy_with_logits", lambda: values(3, 4, low=-30, high=30),
     lambda: values(3, 4, low=0, high=1), (), {}),
    ("binary_cross_entropy_with_logits", lambda: values(3, 4), lambda: values(3, 4, low=0, high=1),
     (values(3, 4, low=0, high=2),), {"pos_weight": values(4, low=0.5, high=3)}),
    ("kl_div", lambda: _log_probs(3, 4), lambda: np.exp(_log_probs(3, 4)), (), {}),
    ("kl_div", lambda: _log_probs(3, 4), lambda: _log_probs(3, 4), (), {"log_target": True}),
]


def _as_torch(v):
    return torch.tensor(v) if isinstance(v, np.ndarray) else v


def _as_graphc(v):
    return graphc.tensor(v) if isinstance(v, np.ndarray) else v


@pytest.mark.parametrize("reduction", REDUCTIONS + ("batchmean",))
@pytest.mark.parametrize("case", LOSSES, ids=[f"{c[0]}{c[4] or ''}" for c in LOSSES])
def test_loss_values_and_gradients_match_torch(case, reduction):
    name, make_input, make_target, extra, kwargs = case
    if reduction == "batchmean" and name != "kl_div":
        return
    a, t = make_input(), make_target()
    x, tx = pair(a, grad=True)
    kw = {k: _as_graphc(v) for k, v in kwargs.items()}
    tkw = {k: _as_torch(v) for k, v in kwargs.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # kl_div's warning about 'mean'
        out = getattr(F, name)(x, graphc.tensor(t), *map(_as_graphc, extra), **kw,
                               reduction=reduction)
        tout = getattr(TF, name)(tx, torch.tensor(t), *map(_as_torch, extra), **tkw,
                                 reduction=reduction)
    assert tuple(out.shape) == tuple(tout.shape)
    close(out, tout)
    cot = values(*out.shape)
    out.backward(graphc.tensor(cot))
    tout.backward(torch.tensor(cot))
    close(x.grad, tx.grad)


@pytest.mark.parametrize("case", LOSSES, ids=[f"{c[0]}{c[4] or ''}" for c in LOSSES])
def test_losses_compiled_match_eager(case):
    name, make_input, make_target, extra, kwargs = case
    x, t = graphc.tensor(make_input()), graphc.tensor(make_target())
    extra = tuple(map(_as_graphc, extra))
    kw = {k: _as_graphc(v) for k, v in kwargs.items()}

    def f(x, t):
        return getattr(F, name)(x * 1.0, t, *extra, **kw, reduction="sum")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_allclose(graphc.compile(f)(x, t).numpy(), f(x, t).numpy(), rtol=1e-12)


LOSS_LAYERS = [  # (class, constructor args, input maker, target maker)
    ("NLLLoss", (), lambda: _log_probs(5, 4), lambda: np.array([0, 3, -100, 1, 3])),
    ("NLLLoss", ((np.array([0.5, 1.0, 2.0, 0.1]),), {"ignore_index": 1, "reduction": "sum"}),
     lambda: _log_probs(5, 4), lambda: np.array([0, 3, 2, 1, 3])),
    ("L1Loss", (), lambda: values(3, 4), lambda: values(3, 4)),
    ("SmoothL1Loss", ((), {"beta": 0.3}), lambda: values(3, 4), lambda: values(3, 4)),
    ("HuberLoss", ((), {"delta": 0.3, "reduction": "none"}), lambda: values(3, 4),
     lambda: values(3, 4)),
    ("BCELoss", ((values(4, low=0, high=1),), {}), lambda: values(3, 4, low=0, high=1),
     lambda: values(3, 4, low=0, high=1)),
    ("BCEWithLogitsLoss", ((), {"pos_weight": values(4, low=0.5, high=2)}), lambda: values(3, 4),
     lambda: values(3, 4, low=0, high=1)),
    ("KLDivLoss", ((), {"reduction": "batchmean"}), lambda: _log_probs(3, 4),
     lambda: np.exp(_log_probs(3, 4))),
    ("KLDivLoss", ((), {"reduction": "sum", "log_target": True}), lambda: _log_probs(3, 4),
     lambda: _log_probs(3, 4)),
    ("CosineSimilarity", ((), {"dim": 0}), lambda: values(3, 4), lambda: values(3, 4)),
]


@pytest.mark.parametrize("case", LOSS_LAYERS, ids=[c[0] for c in LOSS_LAYERS])
def test_loss_layers_match_torch(case):
    cls, ctor, make_input, make_target = case
    args, kwargs = ctor if ctor else ((), {})
    ours = getattr(nn, cls)(*map(_as_graphc, args), **{k: _as_graphc(v) for k, v in kwargs.items()})
    theirs = getattr(torch.nn, cls)(*map(_as_torch, args),
                                    **{k: _as_torch(v) for k, v in kwargs.items()})
    assert repr(ours) == repr(theirs)
    x, tx = pair(make_input(), grad=True)
    t = make_target()
    out, tout = ours(x, graphc.tensor(t)), theirs(tx, torch.tensor(t))
    close(out, tout)
    out.sum().backward()
    tout.sum().backward()
    close(x.grad, tx.grad)
    assert sorted(dict(ours.named_buffers())) == sorted(dict(theirs.named_buffers()))


def test_legacy_size_average_and_reduce():
    a, t = values(3, 4), values(3, 4)
    with pytest.warns(UserWarning, match="size_average"):
        out = F.l1_loss(graphc.tensor(a), graphc.tensor(t), False)
    assert out.item() == pytest.approx(np.abs(a - t).sum(), rel=1e-12)
    with pytest.warns(UserWarning, match="size_average"):
        m = nn.SmoothL1Loss(reduce=False)
    assert m.reduction == "none"
    with pytest.warns(UserWarning, match="'mean'"):
        F.kl_div(graphc.tensor(a), graphc.tensor(np.abs(t)))


def test_kl_div_zero_targets_as_torch():
    a = _log_probs(3, 4)
    t = np.exp(_log_probs(3, 4))
    t[0, :2] = 0.0
    x, tx = pair(a, grad=True)
    out = F.kl_div(x, graphc.tensor(t), reduction="none")
    tout = TF.kl_div(tx, torch.tensor(t), reduction="none")
    close(out, tout)
    assert (out.detach().numpy()[0, :2] == 0).all()
    out.sum().backward()
    tout.sum().backward()
    close(x.grad, tx.grad)


def test_bce_at_zero_and_one_is_finite_as_torch():
    a = np.array([0.0, 1.0, 1e-30, 0.5])
    t = np.array([0.3, 0.5, 0.9, 1.0])
    x, tx = pair(a, grad=True)
    out = F.binary_cross_entropy(x, graphc.tensor(t), reduction="none")
    tout = TF.binary_cross_entropy(tx, torch.tensor(t), reduction="none")
    close(out, tout)
    out.sum().backward()
    tout.sum().backward()
    close(x.grad, tx.grad)


def test_nll_loss_with_every_target_ignored_is_nan_with_zero_gradient():
    x, tx = pair(_log_probs(2, 3), grad=True)
    out = F.nll_loss(x, graphc.tensor([-100, -100]))
    tout = TF.nll_loss(tx, torch.tensor([-100, -100]))
    assert np.isnan(out.item()) and np.isnan(tout.item())
    out.backward()
    tout.backward()
    close(x.grad, tx.grad)


def test_loss_errors_name_the_op_and_shapes():
    x = graphc.tensor(_log_probs(2, 5))
    with pytest.raises(DTypeError, match="nll_loss.*int64.*float32"):
        F.nll_loss(x, graphc.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"nll_loss.*batch_size \(2\).*batch_size \(3\)"):
        F.nll_loss(x, graphc.tensor([1, 2, 3]))
    with pytest.raises(IndexError, match="nll_loss.*out of bounds"):
        F.nll_loss(x, graphc.tensor([1, 7]))
    p = graphc.tensor(values(2, 5, low=0, high=1))
    with pytest.raises(ValueError, match=r"binary_cross_entropy.*\(2, 5\).*\(2, 4\)"):
        F.binary_cross_entropy(p, graphc.tensor(values(2, 4, low=0, high=1)))
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.binary_cross_entropy(p + 1, p)
    with pytest.raises(ValueError, match=r"binary_cross_entropy_with_logits.*\(2, 4\)"):
        F.binary_cross_entropy_with_logits(p, graphc.tensor(values(2, 4)))
    with pytest.raises(ValueError, match="huber_loss.*delta"):
        F.huber_loss(p, p, delta=0.0)
    with pytest.raises(ValueError, match="smooth_l1_loss.*beta"):
        F.smooth_l1_loss(p, p, beta=-1.0)
    with pytest.raises(ValueError, match="kl_div.*reduction"):
        F.kl_div(p, p, reduction="batch")
    with pytest.raises(ValueError, match="KLDivLoss"):
        nn.KLDivLoss(reduction="batch")


# ---- similarity, normalize, one_hot -------------------------------------------------------------

@pytest.mark.parametrize("shapes, dim, eps", [
    (((4, 5), (4, 5)), 1, 1e-8), (((4, 5), (5,)), -1, 1e-8), (((2, 3, 4), (2, 1, 4)), 0, 1e-8),
    (((4, 5), (4, 5)), 1, 10.0)], ids=["same shape", "broadcast", "dim 0", "large eps"])
def test_cosine_similarity_matches_torch(shapes, dim, eps):
    (a1, a2) = (values(*s) for s in shapes)
    a1[0] = 1e-9  # a tiny vector: its norm is clamped at eps
    x1, t1 = pair(a1, grad=True)
    x2, t2 = pair(a2, grad=True)
    out, tout = F.cosine_similarity(x1, x2, dim, eps), TF.cosine_similarity(t1, t2, dim, eps)
    close(out, tout)
    # gradients where no norm is clamped: where one is, torch's gradient still flows through
    # the clamp (graphc's is the derivative of the clamped function it computes)
    x1, t1 = pair(values(*shapes[0]), grad=True)
    out, tout = F.cosine_similarity(x1, x2, dim), TF.cosine_similarity(t1, t2, dim)
    out.sum().backward()
    tout.sum().backward()
    close(x1.grad, t1.grad, 1e-9)
    close(x2.grad, t2.grad, 1e-9)


@pytest.mark.parametrize("p, dim", [(2.0, 1), (1.0, 0), (3.0, -1)])
def test_normalize_matches_torch(p, dim):
    a = values(3, 4)
    a[1] = 0.0  # a zero row: divided by eps, stays 0
    x, tx = pair(a, grad=True)
    out, tout = F.normalize(x, p, dim), TF.normalize(tx, p, dim)
    close(out, tout)
    out.sum().backward()
    tout.sum().backward()
    close(x.grad, tx.grad, 1e-9)


def test_one_hot_matches_torch():
    idx = np.array([[0, 3], [2, 1]])
    for n in (-1, 6):
        out = F.one_hot(graphc.tensor(idx), n)
        expected = TF.one_hot(torch.tensor(idx), n)
        assert out.dtype is graphc.int64 and tuple(out.shape) == tuple(expected.shape)
        np.testing.assert_array_equal(out.numpy(), expected.numpy())
    with pytest.raises(DTypeError, match="one_hot.*int64"):
        F.one_hot(graphc.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="one_hot.*smaller than num_classes"):
        F.one_hot(graphc.tensor([0, 5]), 3)
    with pytest.raises(ValueError, match="one_hot.*non-negative"):
        F.one_hot(graphc.tensor([0, -1]), 3)
