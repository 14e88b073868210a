"""Every layer against PyTorch: same state_dict, same input -> same output and gradients."""

from __future__ import annotations

import numpy as np
import pytest

import graphc
from graphc import nn
from tests.nn.oracle import assert_close, check_against_torch, load_from_torch, twins

torch = pytest.importorskip("torch")
tnn = torch.nn
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")

DTYPES = ["float64", "float32"]


def randn(*shape, dtype="float64", seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# (id, graphc factory, torch factory, input shapes)
LAYERS = [
    ("linear", lambda: nn.Linear(5, 3), lambda: tnn.Linear(5, 3), [(4, 5)]),
    ("linear-3d-nobias", lambda: nn.Linear(5, 3, bias=False), lambda: tnn.Linear(5, 3, bias=False),
     [(2, 4, 5)]),
    ("identity", nn.Identity, tnn.Identity, [(3, 4)]),
    ("flatten", nn.Flatten, tnn.Flatten, [(2, 3, 4, 5)]),
    ("flatten-range", lambda: nn.Flatten(0, 1), lambda: tnn.Flatten(0, 1), [(2, 3, 4)]),
    ("relu", nn.ReLU, tnn.ReLU, [(3, 7)]),
    ("gelu", nn.GELU, tnn.GELU, [(3, 7)]),
    ("gelu-tanh", lambda: nn.GELU("tanh"), lambda: tnn.GELU("tanh"), [(3, 7)]),
    ("silu", nn.SiLU, tnn.SiLU, [(3, 7)]),
    ("sigmoid", nn.Sigmoid, tnn.Sigmoid, [(3, 7)]),
    ("tanh", nn.Tanh, tnn.Tanh, [(3, 7)]),
    ("softmax", lambda: nn.Softmax(dim=1), lambda: tnn.Softmax(dim=1), [(3, 7, 2)]),
    ("log_softmax", lambda: nn.LogSoftmax(dim=-1), lambda: tnn.LogSoftmax(dim=-1), [(3, 7)]),
    ("conv2d", lambda: nn.Conv2d(3, 4, 3), lambda: tnn.Conv2d(3, 4, 3), [(2, 3, 7, 6)]),
    ("conv2d-strided", lambda: nn.Conv2d(4, 6, (3, 2), stride=2, padding=1, dilation=(1, 2), groups=2),
     lambda: tnn.Conv2d(4, 6, (3, 2), stride=2, padding=1, dilation=(1, 2), groups=2), [(2, 4, 9, 8)]),
    ("conv2d-same-unbatched", lambda: nn.Conv2d(2, 3, 3, padding="same", bias=False),
     lambda: tnn.Conv2d(2, 3, 3, padding="same", bias=False), [(2, 5, 5)]),
    ("conv2d-same-even-kernel", lambda: nn.Conv2d(3, 2, (2, 4), padding="same"),
     lambda: tnn.Conv2d(3, 2, (2, 4), padding="same"), [(2, 3, 6, 7)]),
    ("maxpool2d", lambda: nn.MaxPool2d(2), lambda: tnn.MaxPool2d(2), [(2, 3, 6, 7)]),
    ("maxpool2d-dilated", lambda: nn.MaxPool2d(2, dilation=2), lambda: tnn.MaxPool2d(2, dilation=2),
     [(2, 3, 7, 6)]),
    ("maxpool2d-pad", lambda: nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
     lambda: tnn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True), [(2, 3, 8, 7)]),
    ("avgpool2d", lambda: nn.AvgPool2d(2, stride=1, padding=1, count_include_pad=False),
     lambda: tnn.AvgPool2d(2, stride=1, padding=1, count_include_pad=False), [(2, 3, 5, 4)]),
    ("adaptive_avgpool2d", lambda: nn.AdaptiveAvgPool2d((3, 2)), lambda: tnn.AdaptiveAvgPool2d((3, 2)),
     [(2, 3, 7, 5)]),
    ("adaptive_avgpool2d-keep-dim", lambda: nn.AdaptiveAvgPool2d((None, 2)),
     lambda: tnn.AdaptiveAvgPool2d((None, 2)), [(3, 7, 5)]),
    ("layernorm", lambda: nn.LayerNorm(6), lambda: tnn.LayerNorm(6), [(3, 4, 6)]),
    ("layernorm-2d-nobias", lambda: nn.LayerNorm((4, 6), bias=False),
     lambda: tnn.LayerNorm((4, 6), bias=False), [(3, 4, 6)]),
    ("layernorm-noaffine", lambda: nn.LayerNorm(6, elementwise_affine=False, eps=1e-3),
     lambda: tnn.LayerNorm(6, elementwise_affine=False, eps=1e-3), [(3, 6)]),
    ("groupnorm", lambda: nn.GroupNorm(2, 6), lambda: tnn.GroupNorm(2, 6), [(3, 6, 4, 2)]),
    ("groupnorm-noaffine", lambda: nn.GroupNorm(3, 6, affine=False),
     lambda: tnn.GroupNorm(3, 6, affine=False), [(3, 6, 5)]),
    ("instancenorm2d", lambda: nn.InstanceNorm2d(3), lambda: tnn.InstanceNorm2d(3), [(2, 3, 4, 5)]),
    ("instancenorm2d-affine-unbatched", lambda: nn.InstanceNorm2d(3, affine=True),
     lambda: tnn.InstanceNorm2d(3, affine=True), [(3, 4, 5)]),
    ("batchnorm1d", lambda: nn.BatchNorm1d(4), lambda: tnn.BatchNorm1d(4), [(6, 4)]),
    ("batchnorm1d-3d", lambda: nn.BatchNorm1d(4), lambda: tnn.BatchNorm1d(4), [(3, 4, 5)]),
    ("batchnorm2d", lambda: nn.BatchNorm2d(3), lambda: tnn.BatchNorm2d(3), [(2, 3, 4, 5)]),
    ("batchnorm2d-noaffine", lambda: nn.BatchNorm2d(3, affine=False),
     lambda: tnn.BatchNorm2d(3, affine=False), [(2, 3, 4, 5)]),
]


def _perturb_affine(gm, tm, dtype):
    """Move weights away from their (ones/zeros) defaults so the test sees them act."""
    rng = np.random.default_rng(7)
    with torch.no_grad():
        for name, p in tm.named_parameters():
            if name.endswith(("weight", "bias")) and p.ndim == 1:
                p.add_(torch.from_numpy(rng.standard_normal(tuple(p.shape)).astype(dtype)))
    load_from_torch(gm, tm)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("make,torch_make,shapes", [case[1:] for case in LAYERS],
                         ids=[case[0] for case in LAYERS])
def test_layer_matches_torch(make, torch_make, shapes, dtype):
    gm, tm = twins(make, torch_make, dtype)
    _perturb_affine(gm, tm, dtype)
    inputs = [randn(*s, dtype=dtype, seed=i) for i, s in enumerate(shapes)]
    check_against_torch(gm, tm, *inputs, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_embedding_matches_torch(dtype):
    gm, tm = twins(lambda: nn.Embedding(10, 4, padding_idx=2), lambda: tnn.Embedding(10, 4, padding_idx=2),
                   dtype)
    idx = np.array([[1, 2, 3], [2, 9, 1]], dtype=np.int64)
    check_against_torch(gm, tm, idx, dtype=dtype)
    assert not gm.weight.grad.numpy()[2].any()  # the padding row gets no gradient


@pytest.mark.parametrize("dtype", DTYPES)
def test_mse_loss_matches_torch(dtype):
    for reduction in ("mean", "sum", "none"):
        gm, tm = nn.MSELoss(reduction=reduction), tnn.MSELoss(reduction=reduction)
        check_against_torch(gm, tm, randn(3, 4, dtype=dtype), randn(3, 4, dtype=dtype, seed=1), dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kwargs", [{}, {"reduction": "sum", "label_smoothing": 0.2},
                                    {"ignore_index": 1, "reduction": "none"}], ids=str)
def test_cross_entropy_loss_matches_torch(kwargs, dtype):
    weight = np.array([0.5, 1.0, 2.0, 1.5], dtype=dtype)
    gm = nn.CrossEntropyLoss(weight=graphc.from_numpy(weight.copy()), **kwargs)
    tm = tnn.CrossEntropyLoss(weight=torch.from_numpy(weight.copy()), **kwargs)
    assert list(gm.state_dict()) == list(tm.state_dict()) == ["weight"]
    target = np.array([0, 3, 1, 1, 2], dtype=np.int64)
    check_against_torch(gm, tm, randn(5, 4, dtype=dtype), target, dtype=dtype)


def test_cross_entropy_loss_with_probabilities_and_spatial_dims():
    probs = np.abs(randn(2, 3, 4, seed=3))
    probs /= probs.sum(1, keepdims=True)
    check_against_torch(nn.CrossEntropyLoss(), tnn.CrossEntropyLoss(), randn(2, 3, 4), probs)


@pytest.mark.parametrize("cls", ["BatchNorm1d", "BatchNorm2d"])
@pytest.mark.parametrize("momentum", [0.1, 0.5, None])
def test_batchnorm_training_steps_then_eval_match_torch(cls, momentum):
    shape = (5, 3, 4) if cls == "BatchNorm1d" else (4, 3, 2, 3)
    gm, tm = twins(lambda: getattr(nn, cls)(3, momentum=momentum),
                   lambda: getattr(tnn, cls)(3, momentum=momentum))
    _perturb_affine(gm, tm, "float64")
    for step in range(4):
        x = randn(*shape, seed=step) * (step + 1) + step  # statistics that move between steps
        check_against_torch(gm, tm, x, seed=step)
        for name, buf in tm.named_buffers():
            assert_close(gm.get_buffer(name).numpy(), buf.numpy(), "float64", f"{name} after step {step}")
    assert gm.num_batches_tracked.item() == 4 and gm.num_batches_tracked.dtype is graphc.int64
    gm.eval()
    tm.eval()
    out = check_against_torch(gm, tm, randn(*shape, seed=9))
    batch_stats = nn.functional.batch_norm(graphc.from_numpy(randn(*shape, seed=9)), None, None,
                                           training=True)
    assert not np.allclose(out[0].detach().numpy(), batch_stats.numpy())  # eval used running stats
    assert gm.num_batches_tracked.item() == 4  # eval does not count


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_without_running_stats_matches_torch(training):
    gm, tm = twins(lambda: nn.BatchNorm2d(3, track_running_stats=False),
                   lambda: tnn.BatchNorm2d(3, track_running_stats=False))
    gm.train(training)
    tm.train(training)
    assert list(gm.state_dict()) == list(tm.state_dict()) == ["weight", "bias"]
    check_against_torch(gm, tm, randn(2, 3, 4, 4))


def test_instancenorm_with_running_stats_matches_torch():
    gm, tm = twins(lambda: nn.InstanceNorm2d(3, affine=True, track_running_stats=True),
                   lambda: tnn.InstanceNorm2d(3, affine=True, track_running_stats=True))
    assert list(gm.state_dict()) == list(tm.state_dict())
    for step in range(3):
        check_against_torch(gm, tm, randn(2, 3, 4, 5, seed=step) + step, seed=step)
    for name, buf in tm.named_buffers():
        assert_close(gm.get_buffer(name).numpy(), buf.numpy(), "float64", name)
    gm.eval()
    tm.eval()
    check_against_torch(gm, tm, randn(2, 3, 4, 5, seed=5))


def test_dropout_eval_is_identity_and_train_matches_torch_statistics():
    x = randn(200, 100) + 3.0
    d = nn.Dropout(0.3).eval()
    out = d(graphc.from_numpy(x))
    np.testing.assert_array_equal(out.numpy(), x)
    d.train()
    out = d(graphc.from_numpy(x)).numpy()
    zero = out == 0
    assert abs(zero.mean() - 0.3) < 0.02
    np.testing.assert_allclose(out[~zero], x[~zero] / 0.7, rtol=1e-12)  # survivors scaled like torch
    t_out = tnn.Dropout(0.3)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(t_out[t_out != 0], x[t_out != 0] / 0.7, rtol=1e-12)


def test_state_dict_keys_match_torch():
    pairs = [(nn.Linear(3, 2), tnn.Linear(3, 2)), (nn.Conv2d(2, 4, 3), tnn.Conv2d(2, 4, 3)),
             (nn.BatchNorm1d(3), tnn.BatchNorm1d(3)), (nn.LayerNorm(3), tnn.LayerNorm(3)),
             (nn.GroupNorm(1, 3), tnn.GroupNorm(1, 3)), (nn.Embedding(5, 2), tnn.Embedding(5, 2)),
             (nn.InstanceNorm2d(3, affine=True), tnn.InstanceNorm2d(3, affine=True)),
             (nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.BatchNorm1d(2)),
              tnn.Sequential(tnn.Linear(2, 2), tnn.ReLU(), tnn.BatchNorm1d(2)))]
    for g, t in pairs:
        g_state, t_state = g.state_dict(), t.state_dict()
        assert list(g_state) == list(t_state), type(g).__name__
        for key in g_state:
            assert tuple(g_state[key].shape) == tuple(t_state[key].shape), key
            assert g_state[key].dtype.name == str(t_state[key].dtype).replace("torch.", ""), key
        assert [n for n, _ in g.named_parameters()] == [n for n, _ in t.named_parameters()]


REPRS = [
    (lambda m: m.Linear(4, 8, bias=False)),
    (lambda m: m.Conv2d(3, 8, 3, stride=2, padding=1, groups=1, bias=False)),
    (lambda m: m.Conv2d(4, 8, (3, 5), dilation=2, groups=2, padding="same")),
    (lambda m: m.MaxPool2d(2)), (lambda m: m.AvgPool2d(3, stride=2)),
    (lambda m: m.AdaptiveAvgPool2d((1, 1))),
    (lambda m: m.BatchNorm2d(16, momentum=None)), (lambda m: m.InstanceNorm2d(4)),
    (lambda m: m.LayerNorm((4, 5), eps=1e-6)), (lambda m: m.GroupNorm(2, 8, affine=False)),
    (lambda m: m.Dropout(0.25)), (lambda m: m.Embedding(10, 3, padding_idx=-1)),
    (lambda m: m.GELU("tanh")), (lambda m: m.ReLU(inplace=True)), (lambda m: m.Softmax(dim=-1)),
    (lambda m: m.Flatten()), (lambda m: m.Identity()), (lambda m: m.MSELoss()),
    (lambda m: m.CrossEntropyLoss(label_smoothing=0.1)),
    (lambda m: m.MultiheadAttention(8, 2)),
    (lambda m: m.TransformerEncoderLayer(8, 2, dim_feedforward=16)),
    (lambda m: m.Sequential(m.Linear(4, 8), m.ReLU(), m.Sequential(m.Linear(8, 8), m.Tanh()))),
    (lambda m: m.ModuleList([m.Linear(2, 2), m.Linear(2, 2), m.Linear(2, 2), m.ReLU(), m.Linear(2, 2)])),
    (lambda m: m.ModuleDict({"a": m.Linear(2, 3), "b": m.ModuleList()})),
]


@pytest.mark.parametrize("make", REPRS, ids=range(len(REPRS)))
def test_repr_matches_torch(make):
    assert repr(make(nn)) == repr(make(tnn))


def _cnn(m):
    return m.Sequential(m.Conv2d(3, 8, 3, padding=1), m.BatchNorm2d(8), m.ReLU(), m.MaxPool2d(2),
                        m.Conv2d(8, 4, 3, groups=4, bias=False), m.GroupNorm(2, 4), m.SiLU(),
                        m.AdaptiveAvgPool2d(1), m.Flatten(), m.Linear(4, 5), m.LogSoftmax(dim=1))


def test_torch_model_state_dict_loads_by_key_into_the_graphc_model():
    gm, tm = twins(lambda: _cnn(nn), lambda: _cnn(tnn))
    assert list(gm.state_dict()) == list(tm.state_dict())
    for step in range(2):
        check_against_torch(gm, tm, randn(4, 3, 8, 8, seed=step), seed=step)
        gm.zero_grad()
        tm.zero_grad()
    gm.eval()
    tm.eval()
    check_against_torch(gm, tm, randn(2, 3, 8, 8, seed=7))
    # without version metadata a checkpoint is "old": a missing count is not an error and
    # each module keeps its own (torch's rule); with version 2 metadata it is missing
    tstate = tm.state_dict()
    state = {k: graphc.from_numpy(v.numpy()) for k, v in tstate.items()}
    del state["1.num_batches_tracked"]
    gm.load_state_dict(state)
    tm.load_state_dict({k: v for k, v in tstate.items() if k != "1.num_batches_tracked"})
    key = "1.num_batches_tracked"
    assert gm.state_dict()[key].item() == tm.state_dict()[key].item() == 2
    state = gm.state_dict()
    del state["1.num_batches_tracked"]
    with pytest.raises(RuntimeError, match=r'Missing key\(s\) in state_dict: "1.num_batches_tracked"'):
        gm.load_state_dict(state)


def test_graphc_state_dict_loads_into_torch():
    gm = _cnn(nn).double()
    tm = _cnn(tnn).double()
    tm.load_state_dict({k: torch.from_numpy(v.numpy().copy()) for k, v in gm.state_dict().items()})
    x = randn(2, 3, 8, 8)
    assert_close(gm.eval()(graphc.from_numpy(x)).detach().numpy(), tm.eval()(torch.from_numpy(x)).detach(),
                 "float64", "outputs")


def test_load_state_dict_error_message_matches_torch_with_graphc_names():
    bad = {"weight": np.zeros((3, 4)), "extra": np.zeros(1)}
    with pytest.raises(RuntimeError) as t_err:
        tnn.Linear(2, 3).load_state_dict({k: torch.from_numpy(v) for k, v in bad.items()})
    with pytest.raises(RuntimeError) as g_err:
        nn.Linear(2, 3).load_state_dict({k: graphc.from_numpy(v) for k, v in bad.items()})
    assert str(g_err.value) == str(t_err.value).replace("torch.", "graphc.")
