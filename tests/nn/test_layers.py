"""Every layer's output shape and values against a numpy reference, and its errors (no torch)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import graphc
from graphc import nn


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def run(layer, *arrays):
    """Run ``layer`` in float64 on numpy inputs; return the output as numpy."""
    layer.double()
    out = layer(*(graphc.from_numpy(a) for a in arrays))
    return out.detach().numpy()


def p(t) -> np.ndarray:
    return t.detach().numpy()


def close(actual, expected):
    np.testing.assert_allclose(actual, expected, rtol=1e-10, atol=1e-12)


def standardize(x, axes, eps=1e-5):
    return (x - x.mean(axes, keepdims=True)) / np.sqrt(x.var(axes, keepdims=True) + eps)


# ---- linear, activations ----------------------------------------------------------------

def test_linear():
    lin = nn.Linear(5, 3)
    x = rand(2, 4, 5)
    out = run(lin, x)
    assert out.shape == (2, 4, 3)
    close(out, x @ p(lin.weight).T + p(lin.bias))
    close(run(nn.Linear(5, 3, bias=False), x).shape, (2, 4, 3))


def test_identity_and_flatten():
    x = rand(2, 3, 4, 5)
    assert run(nn.Identity(54, unused=True), x) is not None
    close(run(nn.Identity(), x), x)
    close(run(nn.Flatten(), x), x.reshape(2, 60))
    close(run(nn.Flatten(1, 2), x), x.reshape(2, 12, 5))


SIGMOID = lambda x: 1 / (1 + np.exp(-x))
ERF = np.vectorize(math.erf)
ACTIVATIONS = [
    (nn.ReLU(), lambda x: np.maximum(x, 0)),
    (nn.GELU(), lambda x: x * (1 + ERF(x / math.sqrt(2))) / 2),
    (nn.GELU("tanh"), lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))),
    (nn.SiLU(), lambda x: x * SIGMOID(x)),
    (nn.Sigmoid(), SIGMOID),
    (nn.Tanh(), np.tanh),
    (nn.Softmax(dim=1), lambda x: np.exp(x) / np.exp(x).sum(1, keepdims=True)),
    (nn.LogSoftmax(dim=-1), lambda x: x - np.log(np.exp(x).sum(-1, keepdims=True))),
]


@pytest.mark.parametrize("layer,reference", ACTIVATIONS, ids=[type(a).__name__ for a, _ in ACTIVATIONS])
def test_activation(layer, reference):
    x = rand(3, 4, 2)
    out = run(layer, x)
    assert out.shape == x.shape
    close(out, reference(x))


def test_inplace_activations_write_into_the_input():
    for layer, reference in ((nn.ReLU(inplace=True), lambda x: np.maximum(x, 0)),
                             (nn.SiLU(inplace=True), lambda x: x * SIGMOID(x))):
        x = rand(3, 4)
        t = graphc.from_numpy(x.copy())
        out = layer(t)
        close(t.numpy(), reference(x))
        assert out.data_ptr() == t.data_ptr()
    assert repr(nn.ReLU(inplace=True)) == "ReLU(inplace=True)"


def test_softmax_without_dim_uses_the_legacy_choice_with_a_warning():
    x = rand(3, 4)
    with pytest.warns(UserWarning, match="Implicit dimension choice for softmax"):
        out = run(nn.Softmax(), x)
    close(out.sum(1), np.ones(3))


def test_gelu_rejects_unknown_approximation():
    with pytest.raises(ValueError, match="GELU\\(approximate='fast'\\): expected 'none' or 'tanh'"):
        nn.GELU("fast")


# ---- convolution and pooling --------------------------------------------------------------

def conv2d_reference(x, w, b, stride, padding, dilation=(1, 1)):
    x = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    oh = (h - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((n, o, oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = x[:, :, i * stride[0]:i * stride[0] + dilation[0] * (kh - 1) + 1:dilation[0],
                      j * stride[1]:j * stride[1] + dilation[1] * (kw - 1) + 1:dilation[1]]
            out[:, :, i, j] = np.einsum("nchw,ochw->no", patch, w)
    return out + (0 if b is None else b[None, :, None, None])


def test_conv2d():
    conv = nn.Conv2d(3, 4, (3, 2), stride=(2, 1), padding=1, dilation=(1, 2))
    x = rand(2, 3, 7, 6)
    out = run(conv, x)
    expected = conv2d_reference(x, p(conv.weight), p(conv.bias), (2, 1), (1, 1), (1, 2))
    assert out.shape == expected.shape == (2, 4, 4, 6)
    close(out, expected)
    assert conv.kernel_size == (3, 2) and conv.stride == (2, 1) and conv.padding == (1, 1)
    assert tuple(conv.weight.shape) == (4, 3, 3, 2)


def test_conv2d_groups_and_unbatched_input():
    conv = nn.Conv2d(4, 6, 3, groups=2, bias=False, padding="same")
    assert tuple(conv.weight.shape) == (6, 2, 3, 3) and conv.bias is None
    x = rand(4, 5, 5)
    out = run(conv, x)
    assert out.shape == (6, 5, 5)
    w = p(conv.weight)
    expected = np.concatenate([conv2d_reference(x[None, :2], w[:3], None, (1, 1), (1, 1)),
                               conv2d_reference(x[None, 2:], w[3:], None, (1, 1), (1, 1))], 1)[0]
    close(out, expected)


def test_conv2d_argument_errors():
    with pytest.raises(ValueError, match="divisible by groups"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="padding='same' is not supported for strided convolutions"):
        nn.Conv2d(3, 4, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="invalid padding string 'full'"):
        nn.Conv2d(3, 4, 3, padding="full")
    with pytest.raises(ValueError, match="only 'zeros' padding mode is supported for ConvTranspose2d"):
        nn.ConvTranspose2d(3, 4, 3, padding_mode="reflect")  # (Conv2d takes reflect since F.pad does)
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        nn.Conv2d(3, 4, 3, padding_mode="mirror")
    with pytest.raises(graphc.ShapeError, match=r"Conv2d\(in_channels=3\): got input of shape "
                                                r"\(2, 4, 8, 8\); expected \(N, 3, H, W\) or \(3, H, W\)"):
        nn.Conv2d(3, 4, 3)(graphc.randn(2, 4, 8, 8))


def test_max_and_avg_pooling():
    x = rand(2, 3, 6, 4)
    windows = x.reshape(2, 3, 3, 2, 2, 2)
    out = run(nn.MaxPool2d(2), x)
    assert out.shape == (2, 3, 3, 2)
    close(out, windows.max((3, 5)))
    close(run(nn.AvgPool2d(2), x), windows.mean((3, 5)))
    close(run(nn.AdaptiveAvgPool2d(1), x), x.mean((2, 3), keepdims=True))
    close(run(nn.AdaptiveAvgPool2d((3, 2)), x), windows.mean((3, 5)))
    assert run(nn.MaxPool2d(3, stride=1, padding=1), x).shape == x.shape
    assert run(nn.AvgPool2d((2, 1), stride=(1, 2)), x[0]).shape == (3, 5, 2)  # unbatched
    with pytest.raises(NotImplementedError, match="return_indices=True"):
        nn.MaxPool2d(2, return_indices=True)


# ---- normalization --------------------------------------------------------------------------

def _affine(layer, shape, seed=5):
    """Give the layer non-trivial weight and bias; return them as numpy arrays."""
    layer.double()
    with graphc.no_grad():
        layer.weight.copy_(graphc.from_numpy(rand(*shape, seed=seed)))
        layer.bias.copy_(graphc.from_numpy(rand(*shape, seed=seed + 1)))
    return p(layer.weight), p(layer.bias)


def test_layer_norm():
    ln = nn.LayerNorm((3, 4), eps=1e-3)
    w, b = _affine(ln, (3, 4))
    x = rand(2, 3, 4)
    close(run(ln, x), standardize(x, (1, 2), 1e-3) * w + b)
    close(run(nn.LayerNorm(4, elementwise_affine=False), x), standardize(x, -1))
    with pytest.raises(graphc.ShapeError, match=r"LayerNorm\(normalized_shape=\(3, 4\)\): got input of shape "
                                                r"\(2, 4, 3\); expected its last 2 dim\(s\) to be \(3, 4\)"):
        ln(graphc.randn(2, 4, 3, dtype=graphc.float64))


def test_group_norm():
    gn = nn.GroupNorm(2, 4)
    w, b = _affine(gn, (4,))
    x = rand(3, 4, 5)
    expected = standardize(x.reshape(3, 2, 10), -1).reshape(3, 4, 5) * w[:, None] + b[:, None]
    close(run(gn, x), expected)
    with pytest.raises(ValueError, match="num_channels must be divisible by num_groups"):
        nn.GroupNorm(3, 4)
    with pytest.raises(graphc.ShapeError, match=r"GroupNorm\(2, 4\): got input of shape \(3, 5\)"):
        gn(graphc.randn(3, 5, dtype=graphc.float64))


def test_instance_norm():
    x = rand(2, 3, 4, 5)
    close(run(nn.InstanceNorm2d(3), x), standardize(x, (2, 3)))
    close(run(nn.InstanceNorm2d(3), x[0]), standardize(x[0], (1, 2)))  # unbatched
    inorm = nn.InstanceNorm2d(3, affine=True)
    w, b = _affine(inorm, (3,))
    close(run(inorm, x), standardize(x, (2, 3)) * w[:, None, None] + b[:, None, None])
    assert "running_mean" not in nn.InstanceNorm2d(3).state_dict()
    with pytest.warns(UserWarning, match="no per-channel state"):  # like PyTorch, it still runs
        run(nn.InstanceNorm2d(5), x)
    with pytest.raises(graphc.OpValueError, match=r"InstanceNorm2d\(num_features=3\): expected 3-D or 4-D"):
        nn.InstanceNorm2d(3)(graphc.randn(2, 3))


def test_instance_norm_running_stats():
    inorm = nn.InstanceNorm2d(3, momentum=0.5, track_running_stats=True)
    x = rand(2, 3, 4, 5)
    close(run(inorm, x), standardize(x, (2, 3)))  # training: instance statistics
    close(p(inorm.running_mean), 0.5 * x.mean((2, 3)).mean(0))
    close(p(inorm.running_var), 0.5 + 0.5 * x.var((2, 3), ddof=1).mean(0))
    inorm.eval()
    rm, rv = p(inorm.running_mean), p(inorm.running_var)
    close(run(inorm, x), (x - rm[:, None, None]) / np.sqrt(rv[:, None, None] + 1e-5))


def test_batch_norm_training_and_eval():
    bn = nn.BatchNorm2d(3, momentum=0.2)
    w, b = _affine(bn, (3,))
    x = rand(4, 3, 2, 5) * 2 + 1
    out = run(bn, x)
    close(out, standardize(x, (0, 2, 3)) * w[:, None, None] + b[:, None, None])
    close(p(bn.running_mean), 0.2 * x.mean((0, 2, 3)))
    close(p(bn.running_var), 0.8 + 0.2 * x.var((0, 2, 3), ddof=1))  # unbiased, as in PyTorch
    assert bn.num_batches_tracked.item() == 1
    bn.eval()
    rm, rv = p(bn.running_mean)[:, None, None], p(bn.running_var)[:, None, None]
    close(run(bn, x), (x - rm) / np.sqrt(rv + 1e-5) * w[:, None, None] + b[:, None, None])
    assert bn.num_batches_tracked.item() == 1


def test_batch_norm_cumulative_average_when_momentum_is_none():
    bn = nn.BatchNorm1d(2, momentum=None)
    batches = [rand(5, 2, seed=s) + s for s in range(3)]
    for x in batches:
        run(bn, x)
    close(p(bn.running_mean), np.mean([x.mean(0) for x in batches], 0))
    close(p(bn.running_var), np.mean([x.var(0, ddof=1) for x in batches], 0))


def test_batch_norm_without_tracking_uses_batch_statistics_in_eval():
    bn = nn.BatchNorm1d(3, affine=False, track_running_stats=False).eval()
    x = rand(6, 3)
    close(run(bn, x), standardize(x, 0))
    assert bn.running_mean is None and bn.num_batches_tracked is None
    assert list(bn.state_dict()) == []


def test_batch_norm_rank_and_channel_errors():
    with pytest.raises(graphc.OpValueError, match=r"BatchNorm1d\(num_features=3\): expected 2-D or 3-D input "
                                                  r"\(N, C\) or \(N, C, L\), got 4-D input of shape "
                                                  r"\(2, 3, 4, 4\)"):
        nn.BatchNorm1d(3)(graphc.randn(2, 3, 4, 4))
    with pytest.raises(graphc.OpValueError, match=r"BatchNorm2d\(num_features=3\): expected 4-D input "
                                                  r"\(N, C, H, W\), got 3-D"):
        nn.BatchNorm2d(3)(graphc.randn(2, 3, 4))
    with pytest.raises(graphc.ShapeError, match=r"BatchNorm2d\(num_features=3\): got input of shape "
                                                r"\(2, 4, 5, 5\) with 4 channels in dim 1; expected 3"):
        nn.BatchNorm2d(3)(graphc.randn(2, 4, 5, 5))


# ---- dropout, embedding, losses ---------------------------------------------------------------

def test_dropout_train_and_eval():
    x = np.full((100, 100), 2.0)
    d = nn.Dropout(0.25)
    out = run(d, x)
    assert abs((out == 0).mean() - 0.25) < 0.03
    close(out[out != 0], np.full((out != 0).sum(), 2.0 / 0.75))
    close(run(d.eval(), x), x)
    close(run(nn.Dropout(0.0), x), x)
    t = graphc.from_numpy(x.copy())
    nn.Dropout(0.5, inplace=True)(t)
    assert (t.numpy() == 0).any()
    with pytest.raises(ValueError, match="between 0 and 1, but got 1.5"):
        nn.Dropout(1.5)


def test_embedding():
    emb = nn.Embedding(10, 3, padding_idx=0)
    idx = np.array([[0, 4], [9, 4]])
    out = run(emb, idx)
    assert out.shape == (2, 2, 3)
    close(out, p(emb.weight)[idx])
    pre = graphc.from_numpy(rand(4, 2))
    frozen = nn.Embedding.from_pretrained(pre)
    assert not frozen.weight.requires_grad and frozen.weight.data_ptr() == pre.data_ptr()
    assert repr(frozen) == "Embedding(4, 2)"
    with pytest.raises(graphc.DTypeError, match=r"Embedding\(10, 3\): expected integer indices"):
        emb(graphc.zeros(2, dtype=graphc.float64))
    with pytest.raises(ValueError, match="padding_idx=10 must be within num_embeddings"):
        nn.Embedding(10, 3, padding_idx=10)
    with pytest.raises(NotImplementedError, match="max_norm"):
        nn.Embedding(10, 3, max_norm=1.0)


def test_losses():
    x, y = rand(4, 3), rand(4, 3, seed=1)
    close(run(nn.MSELoss(), x, y), ((x - y) ** 2).mean())
    close(run(nn.MSELoss(reduction="sum"), x, y), ((x - y) ** 2).sum())
    close(run(nn.MSELoss(reduction="none"), x, y), (x - y) ** 2)
    target = np.array([0, 2, 1, 2])
    logp = x - np.log(np.exp(x).sum(1, keepdims=True))
    ce = nn.CrossEntropyLoss()
    close(run(ce, x, target), -logp[np.arange(4), target].mean())
    weight = np.array([1.0, 2.0, 0.5])
    weighted = nn.CrossEntropyLoss(weight=graphc.from_numpy(weight))
    assert "weight" in dict(weighted.named_buffers())
    picked = -logp[np.arange(4), target] * weight[target]
    close(run(weighted, x, target), picked.sum() / weight[target].sum())
    close(run(nn.CrossEntropyLoss(ignore_index=2, reduction="sum"), x, target), -logp[[0, 2], [0, 1]].sum())
    with pytest.raises(ValueError, match="'avg' is not a valid value for reduction"):
        nn.MSELoss(reduction="avg")


def test_legacy_loss_arguments_map_to_a_reduction():
    with pytest.warns(UserWarning, match="size_average and reduce args will be deprecated"):
        assert nn.MSELoss(size_average=False).reduction == "sum"
    with pytest.warns(UserWarning):
        assert nn.CrossEntropyLoss(None, None, -100, False).reduction == "none"


# ---- attention --------------------------------------------------------------------------------

def mha_reference(mha, q, k, v, mask=None):
    """(L, N, E) numpy reference of multi-head attention with an additive (L, S) mask."""
    w, b = p(mha.in_proj_weight), p(mha.in_proj_bias)
    e, h = mha.embed_dim, mha.num_heads
    d = e // h
    proj = [x @ w[i * e:(i + 1) * e].T + b[i * e:(i + 1) * e] for i, x in enumerate((q, k, v))]
    qh, kh, vh = (x.reshape(x.shape[0], x.shape[1], h, d).transpose(1, 2, 0, 3) for x in proj)
    scores = qh @ kh.transpose(0, 1, 3, 2) / math.sqrt(d) + (0 if mask is None else mask)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    out = (weights @ vh).transpose(2, 0, 1, 3).reshape(q.shape[0], q.shape[1], e)
    return out @ p(mha.out_proj.weight).T + p(mha.out_proj.bias), weights.mean(1)


def test_multihead_attention():
    mha = nn.MultiheadAttention(8, 2).double()
    with graphc.no_grad():
        mha.in_proj_bias.copy_(graphc.from_numpy(rand(24, seed=3)))
    q, k = rand(4, 3, 8), rand(5, 3, 8, seed=1)
    bool_mask = np.zeros((4, 5), bool)
    bool_mask[0, 1:] = True  # True means "do not attend", as in PyTorch's MultiheadAttention
    out, weights = mha(graphc.from_numpy(q), graphc.from_numpy(k), graphc.from_numpy(k),
                       attn_mask=graphc.from_numpy(bool_mask))
    ref_out, ref_weights = mha_reference(mha, q, k, k, np.where(bool_mask, -np.inf, 0.0))
    assert tuple(out.shape) == (4, 3, 8) and tuple(weights.shape) == (3, 4, 5)
    close(p(out), ref_out)
    close(p(weights), ref_weights)
    close(p(weights)[:, 0, 0], np.ones(3))  # row 0 may only attend to key 0


def test_multihead_attention_errors():
    mha = nn.MultiheadAttention(8, 2)
    x = graphc.randn(4, 3, 8)
    with pytest.raises(ValueError, match="embed_dim must be divisible by num_heads"):
        nn.MultiheadAttention(8, 3)
    with pytest.raises(NotImplementedError, match="kdim=4, vdim=None is not supported"):
        nn.MultiheadAttention(8, 2, kdim=4)
    with pytest.raises(NotImplementedError, match="add_bias_kv"):
        nn.MultiheadAttention(8, 2, add_bias_kv=True)
    with pytest.raises(graphc.ShapeError, match="with 8 features"):
        mha(graphc.randn(4, 3, 6), x, x)
    with pytest.raises(graphc.ShapeError, match=r"expected key_padding_mask of shape \(3, 4\)"):
        mha(x, x, x, key_padding_mask=graphc.zeros(4, 3, dtype=graphc.bool))
    with pytest.raises(graphc.ShapeError, match=r"expected attn_mask of shape \(4, 4\) or \(6, 4, 4\)"):
        mha(x, x, x, attn_mask=graphc.zeros(3, 4, 4))
    with pytest.raises(graphc.DTypeError, match="only bool and floating types of attn_mask"):
        mha(x, x, x, attn_mask=graphc.zeros(4, 4, dtype=graphc.int64))
    with pytest.raises(RuntimeError, match="Need attn_mask if specifying the is_causal hint"):
        mha(x, x, x, is_causal=True)


def test_transformer_encoder_layer_structure_and_shapes():
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True)
    assert [n for n, _ in layer.named_children()] == ["self_attn", "linear1", "dropout", "linear2", "norm1",
                                                      "norm2", "dropout1", "dropout2"]
    assert list(layer.state_dict())[:4] == ["self_attn.in_proj_weight", "self_attn.in_proj_bias",
                                            "self_attn.out_proj.weight", "self_attn.out_proj.bias"]
    x = graphc.randn(3, 5, 8)
    assert tuple(layer(x).shape) == (3, 5, 8)
    out = layer(x).detach().numpy()  # post-norm: each position is LayerNorm'ed
    np.testing.assert_allclose(out.mean(-1), np.zeros((3, 5)), atol=1e-6)
    with pytest.raises(RuntimeError, match="activation should be relu/gelu, not swish"):
        nn.TransformerEncoderLayer(8, 2, activation="swish")


# ---- errors name the layer ----------------------------------------------------------------------

def test_linear_shape_error_names_the_layer_and_the_call_site():
    with pytest.raises(graphc.ShapeError) as info:
        nn.Linear(64, 10)(graphc.randn(8, 32))
    message = str(info.value)
    assert message.startswith("Linear(in_features=64): got input of shape (8, 32); expected (*, 64)")
    assert "test_layers.py" in message
