"""MultiheadAttention and TransformerEncoderLayer against PyTorch, with every kind of mask."""

from __future__ import annotations

import numpy as np
import pytest

import graphc
from graphc import nn
from tests.nn.oracle import check_against_torch, load_from_torch, twins

torch = pytest.importorskip("torch")
tnn = torch.nn

E, HEADS, N, L, S = 8, 2, 3, 4, 5


def randn(*shape, dtype="float64", seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def mha_pair(dtype="float64", **kwargs):
    gm, tm = twins(lambda: nn.MultiheadAttention(E, HEADS, **kwargs),
                   lambda: tnn.MultiheadAttention(E, HEADS, **kwargs), dtype)
    with torch.no_grad():  # non-zero biases, so a wrong bias slice shows
        for name, p in tm.named_parameters():
            if "bias" in name:
                p.copy_(torch.from_numpy(randn(*p.shape, dtype=dtype, seed=11)))
    load_from_torch(gm, tm)
    return gm, tm


def qkv(batch_first=False, dtype="float64", batched=True):
    def seq(length, seed):
        if not batched:
            return randn(length, E, dtype=dtype, seed=seed)
        return randn(N, length, E, dtype=dtype, seed=seed) if batch_first else \
            randn(length, N, E, dtype=dtype, seed=seed)
    return seq(L, 1), seq(S, 2), seq(S, 3)


def padding_mask():
    mask = np.zeros((N, S), bool)
    mask[0, -2:] = True
    mask[2, 0] = True
    return mask


def bool_attn_mask():
    mask = np.zeros((L, S), bool)
    mask[1, 2:] = True
    mask[3, 0] = True
    return mask


MASKS = {
    "none": {},
    "key_padding": {"key_padding_mask": padding_mask()},
    "float_key_padding": {"key_padding_mask": np.where(padding_mask(), -1e9, 0.0)},
    "bool_attn": {"attn_mask": bool_attn_mask()},
    "float_attn": {"attn_mask": randn(L, S, seed=4)},
    "3d_float_attn": {"attn_mask": randn(N * HEADS, L, S, seed=5)},
    "both": {"attn_mask": bool_attn_mask(), "key_padding_mask": padding_mask()},
}


@pytest.mark.parametrize("mask", MASKS, ids=list(MASKS))
@pytest.mark.parametrize("need_weights,average", [(True, True), (True, False), (False, True)])
def test_mha_matches_torch(mask, need_weights, average):
    gm, tm = mha_pair()
    kwargs = dict(MASKS[mask], need_weights=need_weights, average_attn_weights=average)
    out = check_against_torch(gm, tm, *qkv(), kwargs=kwargs)
    assert len(out) == (2 if need_weights else 1)
    if need_weights:
        assert tuple(out[1].shape) == ((N, L, S) if average else (N, HEADS, L, S))
        if mask == "key_padding":  # masked keys get exactly zero weight
            assert not out[1].detach().numpy()[0, ..., -2:].any()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_mha_batch_first_without_bias_matches_torch(dtype):
    gm, tm = mha_pair(dtype, batch_first=True, bias=False)
    assert gm.in_proj_bias is None and gm.out_proj.bias is None
    out = check_against_torch(gm, tm, *qkv(batch_first=True, dtype=dtype), dtype=dtype,
                              kwargs={"key_padding_mask": padding_mask()})
    assert tuple(out[0].shape) == (N, L, E)


def test_mha_self_attention_unbatched_matches_torch():
    gm, tm = mha_pair()
    x = randn(L, E)
    kpm = np.array([0.0, 0.0, -np.inf, 0.0])
    out = check_against_torch(gm, tm, x, x, x, kwargs={"key_padding_mask": kpm,
                                                       "attn_mask": randn(HEADS, L, L, seed=3)})
    assert tuple(out[0].shape) == (L, E) and tuple(out[1].shape) == (L, L)


@pytest.mark.parametrize("need_weights", [True, False])
def test_mha_is_causal_hint_matches_torch(need_weights):
    gm, tm = mha_pair()
    x = randn(L, N, E)
    causal = np.triu(np.ones((L, L), bool), 1)
    check_against_torch(gm, tm, x, x, x, kwargs={"attn_mask": causal, "is_causal": True,
                                                 "need_weights": need_weights})
    with pytest.raises(RuntimeError, match="Need attn_mask"):
        gm(*(graphc.from_numpy(x),) * 3, is_causal=True)


def test_mha_dropout_is_off_in_eval_and_on_in_training():
    gm, tm = mha_pair(dropout=0.5)
    gm.eval()
    tm.eval()
    check_against_torch(gm, tm, *qkv())
    q, k, v = (graphc.from_numpy(a) for a in qkv())
    kept = gm(q, k, v, average_attn_weights=False)[1].detach().numpy()
    gm.train()
    graphc.manual_seed(0)
    dropped = gm(q, k, v, average_attn_weights=False)[1].detach().numpy()
    zero = dropped == 0
    assert 0.3 < zero.mean() < 0.7
    np.testing.assert_allclose(dropped[~zero], kept[~zero] * 2, rtol=1e-12)  # survivors scaled by 1/(1-p)


def test_mha_default_init_matches_torch_rules():
    gm = nn.MultiheadAttention(16, 4)
    bound = np.sqrt(6.0 / (16 + 48))  # xavier_uniform_ on (3E, E)
    w = gm.in_proj_weight.detach().numpy()
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
    assert not gm.in_proj_bias.detach().numpy().any() and not gm.out_proj.bias.detach().numpy().any()
    names = [n for n, _ in tnn.MultiheadAttention(16, 4).named_parameters()]
    assert [n for n, _ in gm.named_parameters()] == names


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_encoder_layer_matches_torch(norm_first, activation, batch_first):
    kwargs = dict(dim_feedforward=16, dropout=0.0, activation=activation, batch_first=batch_first,
                  norm_first=norm_first)
    gm, tm = twins(lambda: nn.TransformerEncoderLayer(E, HEADS, **kwargs),
                   lambda: tnn.TransformerEncoderLayer(E, HEADS, **kwargs))
    gm.eval()
    tm.eval()
    assert list(gm.state_dict()) == list(tm.state_dict())
    src = randn(N, L, E) if batch_first else randn(L, N, E)
    mask = np.zeros((N, L))
    mask[1, -1] = -np.inf
    check_against_torch(gm, tm, src, kwargs={"src_key_padding_mask": mask,
                                             "src_mask": randn(L, L, seed=3)})


def test_encoder_layer_callable_activation_and_no_bias_match_torch():
    gm, tm = twins(lambda: nn.TransformerEncoderLayer(E, HEADS, 16, 0.0, nn.GELU("tanh"), bias=False),
                   lambda: tnn.TransformerEncoderLayer(E, HEADS, 16, 0.0, tnn.GELU("tanh"), bias=False))
    assert "activation" in dict(gm.named_children())  # a module activation is registered, as in torch
    assert repr(gm) == repr(tm)
    check_against_torch(gm, tm, randn(L, N, E), kwargs={"src_mask": np.triu(np.ones((L, L), bool), 1),
                                                        "is_causal": True})


def test_encoder_layer_trains_with_dropout():
    layer = nn.TransformerEncoderLayer(E, HEADS, 16, dropout=0.5)
    x = graphc.from_numpy(randn(L, N, E, dtype="float32"))
    a, b = layer(x).detach().numpy(), layer(x).detach().numpy()
    assert not np.allclose(a, b)  # dropout is random in training
    layer.eval()
    np.testing.assert_array_equal(layer(x).detach().numpy(), layer(x).detach().numpy())
