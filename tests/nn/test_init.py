"""Parameter, graphc.nn.init, and every layer's default initialisation."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

import graphc
from graphc import nn
from graphc.nn import init


def values(t) -> np.ndarray:
    return t.detach().numpy()


# ---- Parameter ------------------------------------------------------------------------

def test_parameter_shares_storage_and_is_a_leaf_requiring_grad():
    data = graphc.zeros(2, 3)
    p = nn.Parameter(data)
    assert isinstance(p, graphc.Tensor) and p.requires_grad and p.is_leaf
    assert p.data_ptr() == data.data_ptr() and tuple(p.shape) == (2, 3)
    data.fill_(4.0)
    assert values(p).tolist() == [[4.0] * 3] * 2
    assert not nn.Parameter(data, requires_grad=False).requires_grad


def test_parameter_of_a_view_keeps_its_geometry():
    base = graphc.arange(12.0).reshape(3, 4)
    p = nn.Parameter(base.T)
    assert p.stride() == (1, 4) and values(p).tolist() == base.numpy().T.tolist()


def test_empty_parameter_and_bad_data():
    p = nn.Parameter()
    assert tuple(p.shape) == (0,) and p.dtype is graphc.float32 and p.requires_grad
    with pytest.raises(TypeError, match="expects a graphc.Tensor, got list"):
        nn.Parameter([1.0, 2.0])
    with pytest.raises(graphc.DTypeError, match="only floating-point tensors can require gradients"):
        nn.Parameter(graphc.arange(3))
    assert nn.Parameter(graphc.arange(3), requires_grad=False).dtype is graphc.int64


def test_parameter_repr_and_ops_return_plain_tensors():
    p = nn.Parameter(graphc.zeros(2))
    assert repr(p) == "Parameter containing:\ntensor([0., 0.], requires_grad=True)"
    for out in (p * 2, p + p, p.detach(), p.data, p.sum(), p[0], p.view(2, 1), p.clone()):
        assert type(out) is graphc.Tensor


def test_parameter_deepcopy_is_an_independent_parameter():
    p = nn.Parameter(graphc.ones(3), requires_grad=False)
    q = copy.deepcopy(p)
    assert type(q) is nn.Parameter and not q.requires_grad and q.data_ptr() != p.data_ptr()
    memo = {}
    assert copy.deepcopy([p, p], memo)[1] is memo[id(p)]


def test_data_setter_keeps_the_parameter_object():
    p = nn.Parameter(graphc.zeros(2))
    p.data = graphc.ones(3, dtype=graphc.float64)
    assert type(p) is nn.Parameter and tuple(p.shape) == (3,) and p.dtype is graphc.float64


# ---- nn.init --------------------------------------------------------------------------

def test_calculate_gain():
    assert init.calculate_gain("linear") == 1 and init.calculate_gain("conv2d") == 1
    assert init.calculate_gain("sigmoid") == 1
    assert init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert init.calculate_gain("leaky_relu") == pytest.approx(math.sqrt(2 / (1 + 0.01 ** 2)))
    assert init.calculate_gain("leaky_relu", 0.2) == pytest.approx(math.sqrt(2 / 1.04))
    assert init.calculate_gain("selu") == 0.75
    with pytest.raises(ValueError, match="Unsupported nonlinearity softplus"):
        init.calculate_gain("softplus")
    with pytest.raises(ValueError, match="negative_slope"):
        init.calculate_gain("leaky_relu", "x")


def test_fan_in_and_fan_out():
    assert init._calculate_fan_in_and_fan_out(graphc.empty(8, 4)) == (4, 8)
    assert init._calculate_fan_in_and_fan_out(graphc.empty(8, 4, 3, 5)) == (60, 120)
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.xavier_uniform_(graphc.empty(5))


def _check_uniform(t, bound):
    v = values(t)
    assert np.abs(v).max() <= bound
    assert np.abs(v).max() > 0.95 * bound  # the whole range is used
    assert abs(v.std() - bound / math.sqrt(3)) < 0.05 * bound


def _check_normal(t, mean, std):
    v = values(t)
    assert abs(v.mean() - mean) < 0.05 * std and abs(v.std() - std) < 0.05 * std


def test_uniform_normal_constant_ones_zeros_eye():
    t = graphc.empty(200, 100)
    assert init.uniform_(t, -2.0, 3.0) is t
    assert values(t).min() >= -2.0 and values(t).max() < 3.0 and abs(values(t).mean() - 0.5) < 0.05
    _check_normal(init.normal_(t, 1.5, 0.5), 1.5, 0.5)
    assert (values(init.constant_(t, 0.25)) == 0.25).all()
    assert (values(init.ones_(t)) == 1).all() and not values(init.zeros_(t)).any()
    np.testing.assert_array_equal(values(init.eye_(graphc.empty(3, 4))), np.eye(3, 4))
    with pytest.raises(ValueError, match="Only tensors with 2 dimensions"):
        init.eye_(graphc.empty(2, 2, 2))


def test_xavier_and_kaiming_use_pytorch_formulas():
    t = graphc.empty(300, 200)
    _check_uniform(init.xavier_uniform_(t, gain=2.0), 2.0 * math.sqrt(6 / 500))
    _check_normal(init.xavier_normal_(t), 0.0, math.sqrt(2 / 500))
    gain = init.calculate_gain("leaky_relu", 0)
    _check_uniform(init.kaiming_uniform_(t), math.sqrt(3) * gain / math.sqrt(200))
    _check_uniform(init.kaiming_uniform_(t, mode="fan_out", nonlinearity="relu"), math.sqrt(6 / 300))
    _check_normal(init.kaiming_normal_(t, a=0.1, nonlinearity="leaky_relu"), 0.0,
                  init.calculate_gain("leaky_relu", 0.1) / math.sqrt(200))
    with pytest.raises(ValueError, match="Mode fan_avg not supported"):
        init.kaiming_normal_(t, mode="fan_avg")


def test_trunc_normal_stays_in_bounds_with_the_truncated_moments():
    t = init.trunc_normal_(graphc.empty(200, 200), mean=1.0, std=2.0, a=-1.0, b=5.0,
                           generator=graphc.Generator(5))
    v = values(t)
    assert v.min() >= -1.0 and v.max() <= 5.0
    # moments of N(1, 2²) truncated to [-1, 5], i.e. standardised bounds [-1, 2]
    pdf = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    cdf = lambda z: (1 + math.erf(z / math.sqrt(2))) / 2
    mass = cdf(2) - cdf(-1)
    mean = 1.0 + 2.0 * (pdf(-1) - pdf(2)) / mass
    std = 2.0 * math.sqrt(1 + (-1 * pdf(-1) - 2 * pdf(2)) / mass - ((pdf(-1) - pdf(2)) / mass) ** 2)
    assert abs(v.mean() - mean) < 0.03 and abs(v.std() - std) < 0.03


def test_the_inverse_error_function_behind_trunc_normal_is_exact():
    y = np.linspace(-0.999999, 0.999999, 2001)
    x = init._erfinv(graphc.from_numpy(y)).numpy()
    np.testing.assert_allclose(np.vectorize(math.erf)(x), y, rtol=0, atol=1e-14)


def test_orthogonal_gives_orthonormal_rows_or_columns():
    wide = values(init.orthogonal_(graphc.empty(3, 7)))
    np.testing.assert_allclose(wide @ wide.T, np.eye(3), atol=1e-5)
    tall = values(init.orthogonal_(graphc.empty(4, 2, 3), gain=2.0)).reshape(4, 6)
    np.testing.assert_allclose(tall @ tall.T, 4 * np.eye(4), atol=1e-5)


def test_init_draws_from_the_given_or_default_generator():
    a, b = graphc.empty(5, 5), graphc.empty(5, 5)
    init.kaiming_uniform_(a, generator=graphc.Generator(3))
    init.kaiming_uniform_(b, generator=graphc.Generator(3))
    np.testing.assert_array_equal(values(a), values(b))
    graphc.manual_seed(11)
    init.normal_(a)
    graphc.manual_seed(11)
    init.normal_(b)
    np.testing.assert_array_equal(values(a), values(b))


def test_init_works_on_parameters_without_recording_history():
    p = nn.Parameter(graphc.empty(4, 4))
    for fn in (init.xavier_uniform_, init.kaiming_normal_, init.trunc_normal_, init.zeros_, init.eye_,
               init.orthogonal_):
        assert fn(p) is p
        assert p.is_leaf and p.grad_fn is None and p.requires_grad


def test_zero_element_tensors_warn_and_stay_unchanged():
    with pytest.warns(UserWarning, match="zero-element tensors is a no-op"):
        init.kaiming_uniform_(graphc.empty(0, 3))


# ---- default initialisation of the layers --------------------------------------------

def test_linear_and_conv_default_init_bounds():
    lin = nn.Linear(64, 256)
    _check_uniform(lin.weight, 1 / 8)  # kaiming_uniform_(a=√5) is U(-1/√fan_in, 1/√fan_in)
    assert np.abs(values(lin.bias)).max() <= 1 / 8 and values(lin.bias).std() > 0.03
    conv = nn.Conv2d(4, 64, 3)
    _check_uniform(conv.weight, 1 / 6)  # fan_in = 4·3·3
    assert np.abs(values(conv.bias)).max() <= 1 / 6 and values(conv.bias).std() > 0.05
    assert nn.Linear(3, 2, bias=False).bias is None


def test_embedding_default_init_is_standard_normal_with_zero_padding_row():
    emb = nn.Embedding(1000, 32, padding_idx=-3)
    assert emb.padding_idx == 997
    v = values(emb.weight)
    assert not v[997].any()
    _check_normal(graphc.from_numpy(np.delete(v, 997, 0)), 0.0, 1.0)


def test_norm_layers_start_at_identity():
    for layer in (nn.LayerNorm(5), nn.GroupNorm(1, 5), nn.BatchNorm1d(5), nn.InstanceNorm2d(5, affine=True)):
        assert (values(layer.weight) == 1).all() and not values(layer.bias).any()
    bn = nn.BatchNorm2d(4)
    assert not values(bn.running_mean).any() and (values(bn.running_var) == 1).all()
    assert bn.num_batches_tracked.dtype is graphc.int64 and bn.num_batches_tracked.item() == 0
    assert nn.BatchNorm2d(4, affine=False).weight is None
    assert nn.LayerNorm(4, bias=False).bias is None and nn.GroupNorm(2, 4, bias=False).bias is None


def test_multihead_attention_default_init():
    mha = nn.MultiheadAttention(64, 4)
    _check_uniform(mha.in_proj_weight, math.sqrt(6.0 / (64 + 192)))  # xavier_uniform_ on (3E, E)
    assert not values(mha.in_proj_bias).any() and not values(mha.out_proj.bias).any()
    _check_uniform(mha.out_proj.weight, 1 / 8)  # Linear's default


def test_reset_parameters_redraws():
    lin = nn.Linear(4, 4)
    before = values(lin.weight).copy()
    lin.reset_parameters()
    assert not np.array_equal(before, values(lin.weight))
    bn = nn.BatchNorm1d(3)
    bn(graphc.randn(4, 3))
    bn.reset_running_stats()
    assert not values(bn.running_mean).any() and bn.num_batches_tracked.item() == 0


def test_factory_dtype_argument():
    for layer in (nn.Linear(2, 2, dtype=graphc.float64), nn.Conv2d(1, 1, 1, dtype=graphc.float64),
                  nn.LayerNorm(2, dtype=graphc.float64), nn.Embedding(3, 2, dtype=graphc.float64),
                  nn.BatchNorm1d(2, dtype=graphc.float64), nn.MultiheadAttention(4, 2, dtype=graphc.float64)):
        assert all(p.dtype is graphc.float64 for p in layer.parameters()), type(layer).__name__
