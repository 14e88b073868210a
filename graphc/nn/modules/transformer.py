"""Attention layers: ``MultiheadAttention``, ``TransformerEncoderLayer`` and ``TransformerEncoder``.

Shapes follow PyTorch: sequences are (L, N, E) by default, (N, L, E) with
``batch_first=True``, or (L, E) unbatched. Masks follow PyTorch's MultiheadAttention: a
bool mask is True where attention is NOT allowed (the opposite of
``scaled_dot_product_attention``'s bool masks); a float mask is added to the scores.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import numpy as np

from ... import dtype as dt
from ...errors import DTypeError, ShapeError
from ...ops import functions as F
from ...tensor import Tensor, from_numpy
from .. import functional as nnF
from .. import init
from ..module import Module
from ..parameter import Parameter
from .container import ModuleList
from .dropout import Dropout
from .linear import Linear, NonDynamicallyQuantizableLinear
from .normalization import LayerNorm


def _additive_mask(mask: Tensor | None, name: str, dtype: dt.dtype, where: str) -> Tensor | None:
    """A mask as scores to add, in ``dtype``: bool True -> -inf, False -> 0; float masks as they are."""
    if mask is None:
        return None
    if mask.dtype is dt.bool_:
        return F.masked_fill(F.zeros(tuple(mask.shape), dtype=dtype), mask, -math.inf)
    if not mask.dtype.is_floating_point:
        raise DTypeError(where, f"only bool and floating types of {name} are supported, got {mask.dtype}")
    return mask.to(dtype)


def _causal_mask(rows: int, cols: int, dtype: dt.dtype) -> Tensor:
    """-inf above the diagonal, 0 on and below it (top-left aligned, as PyTorch's is_causal)."""
    return from_numpy(np.triu(np.full((rows, cols), -np.inf), 1).astype(dtype.np))


class MultiheadAttention(Module):
    """Attention with ``num_heads`` heads: out_proj(concat_h softmax(q_h k_hᵀ/√d + mask) v_h).

    ``in_proj_weight`` (3·E, E) stacks the query, key and value projections. ``forward``
    returns ``(output, weights)``; the weights are averaged over heads unless
    ``average_attn_weights=False``, and None with ``need_weights=False``.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False, kdim: int | None = None,
                 vdim: int | None = None, batch_first: bool = False, device=None, dtype=None) -> None:
        super().__init__()
        name = f"MultiheadAttention({embed_dim}, {num_heads})"
        if embed_dim <= 0 or num_heads <= 0 or embed_dim % num_heads:
            raise ValueError(f"{name}: embed_dim must be divisible by num_heads (both positive)")
        if kdim not in (None, embed_dim) or vdim not in (None, embed_dim):
            raise NotImplementedError(f"{name}: kdim={kdim}, vdim={vdim} is not supported by graphc; "
                                      "key and value must have embed_dim features")
        if add_bias_kv or add_zero_attn:
            raise NotImplementedError(f"{name}: add_bias_kv and add_zero_attn are not supported by graphc")
        self.embed_dim = embed_dim
        self.kdim = embed_dim
        self.vdim = embed_dim
        self._qkv_same_embed_dim = True
        self.num_heads = num_heads
        self.dropout = dropout
        self.batch_first = batch_first
        self.head_dim = embed_dim // num_heads
        self.in_proj_weight = Parameter(F.empty((3 * embed_dim, embed_dim), dtype=dtype, device=device))
        self.register_parameter("q_proj_weight", None)
        self.register_parameter("k_proj_weight", None)
        self.register_parameter("v_proj_weight", None)
        if bias:
            self.in_proj_bias = Parameter(F.empty(3 * embed_dim, dtype=dtype, device=device))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = NonDynamicallyQuantizableLinear(embed_dim, embed_dim, bias=bias, device=device,
                                                        dtype=dtype)
        self.bias_k = self.bias_v = None
        self.add_zero_attn = False
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        init.xavier_uniform_(self.in_proj_weight)
        if self.in_proj_bias is not None:
            init.constant_(self.in_proj_bias, 0.0)
            init.constant_(self.out_proj.bias, 0.0)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Tensor | None = None,
                need_weights: bool = True, attn_mask: Tensor | None = None,
                average_attn_weights: bool = True, is_causal: bool = False) -> tuple[Tensor, Tensor | None]:
        batched = self._check_shapes(query, key, value, key_padding_mask, attn_mask)
        packed = query is key and key is value  # self-attention: one projection, 3·E wide
        if not batched:  # (L, E) -> (L, 1, E)
            query, key, value = (F.unsqueeze(t, 1) for t in (query, key, value))
            if key_padding_mask is not None:
                key_padding_mask = F.unsqueeze(key_padding_mask, 0)
        elif self.batch_first:  # (N, L, E) -> (L, N, E)
            query, key, value = (F.transpose(t, 0, 1) for t in (query, key, value))
        tgt_len, bsz, embed_dim = query.shape
        src_len = key.shape[0]
        heads, head_dim = self.num_heads, self.head_dim
        where = self._get_name()

        if is_causal and attn_mask is None:
            raise RuntimeError("Need attn_mask if specifying the is_causal hint. You may use the Transformer "
                               "module method `generate_square_subsequent_mask` to create this mask.")
        padding = _additive_mask(key_padding_mask, "key_padding_mask", query.dtype, where)
        if is_causal and padding is None and not need_weights:
            # PyTorch trusts the hint here and uses a causal mask in place of attn_mask
            mask = _causal_mask(tgt_len, src_len, query.dtype)
        else:
            mask = _additive_mask(attn_mask, "attn_mask", query.dtype, where)
        if mask is not None and mask.ndim == 3:  # (N·heads, L, S) -> (N, heads, L, S)
            mask = F.reshape(mask, bsz, heads, tgt_len, src_len)
        if padding is not None:  # (N, S) -> (N, 1, 1, S)
            padding = F.reshape(padding, bsz, 1, 1, src_len)
            mask = padding if mask is None else mask + padding

        def split_heads(x: Tensor, length: int) -> Tensor:  # (length, N, E) -> (N, heads, length, d)
            return F.permute(F.reshape(x, length, bsz, heads, head_dim), 1, 2, 0, 3)

        if packed:  # one matmul instead of three; q, k and v are views of its result
            q, k, v = (split_heads(t, tgt_len) for t in F.chunk(
                nnF.linear(query, self.in_proj_weight, self.in_proj_bias), 3, -1))
        else:
            w_q, w_k, w_v = F.chunk(self.in_proj_weight, 3)
            b_q, b_k, b_v = (None,) * 3 if self.in_proj_bias is None else \
                F.chunk(self.in_proj_bias, 3)
            q = split_heads(nnF.linear(query, w_q, b_q), tgt_len)
            k = split_heads(nnF.linear(key, w_k, b_k), src_len)
            v = split_heads(nnF.linear(value, w_v, b_v), src_len)
        scores = F.matmul(q * math.sqrt(1.0 / head_dim), F.transpose(k, -2, -1))
        if mask is not None:
            scores = scores + mask
        weights = nnF.softmax(scores, dim=-1)
        weights = nnF.dropout(weights, self.dropout, self.training)
        out = F.reshape(F.permute(F.matmul(weights, v), 2, 0, 1, 3), tgt_len, bsz, embed_dim)
        out = self.out_proj(out)
        if not batched:
            out = F.squeeze(out, 1)
        elif self.batch_first:
            out = F.transpose(out, 0, 1)
        if not need_weights:
            return out, None
        if average_attn_weights:
            weights = F.mean(weights, 1)
        return out, (weights if batched else F.squeeze(weights, 0))

    def _check_shapes(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Tensor | None,
                      attn_mask: Tensor | None) -> bool:
        """Raise for inconsistent shapes; return whether the input is batched."""
        name = f"MultiheadAttention(embed_dim={self.embed_dim}, num_heads={self.num_heads}, " \
               f"batch_first={self.batch_first})"
        shapes = f"query {tuple(query.shape)}, key {tuple(key.shape)}, value {tuple(value.shape)}"
        if query.ndim not in (2, 3) or key.ndim != query.ndim or value.ndim != query.ndim:
            raise ShapeError(name, f"expected query, key and value all 3-D (batched) or all 2-D "
                             f"(unbatched), got {shapes}")
        if query.shape[-1] != self.embed_dim or tuple(key.shape) != tuple(value.shape) \
                or key.shape[-1] != self.embed_dim:
            raise ShapeError(name, f"expected query, key and value with {self.embed_dim} features and "
                             f"key and value of one shape, got {shapes}")
        batched = query.ndim == 3
        seq_dim = 1 if batched and self.batch_first else 0
        bsz = query.shape[1 - seq_dim] if batched else 1
        tgt_len, src_len = query.shape[seq_dim], key.shape[seq_dim]
        if batched and key.shape[1 - seq_dim] != bsz:
            raise ShapeError(name, f"query and key have different batch sizes: {shapes}")
        if key_padding_mask is not None:
            expected = (bsz, src_len) if batched else (src_len,)
            if tuple(key_padding_mask.shape) != expected:
                raise ShapeError(name, f"expected key_padding_mask of shape {expected} (batch, source "
                                 f"length), got {tuple(key_padding_mask.shape)}")
        if attn_mask is not None:
            allowed = [(tgt_len, src_len), (bsz * self.num_heads, tgt_len, src_len)]
            if tuple(attn_mask.shape) not in allowed:
                raise ShapeError(name, f"expected attn_mask of shape {allowed[0]} or {allowed[1]} "
                                 f"(batch·num_heads, target length, source length), got "
                                 f"{tuple(attn_mask.shape)}")
        return batched


_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {"relu": nnF.relu, "gelu": nnF.gelu}


class TransformerEncoderLayer(Module):
    """Self-attention then a feed-forward block, each with a residual connection and LayerNorm.

    ``norm_first=False`` (post-norm): x = norm1(x + sa(x)); x = norm2(x + ff(x)).
    ``norm_first=True`` (pre-norm): x = x + sa(norm1(x)); x = x + ff(norm2(x)).
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: str | Callable[[Tensor], Tensor] = nnF.relu, layer_norm_eps: float = 1e-5,
                 batch_first: bool = False, norm_first: bool = False, bias: bool = True, device=None,
                 dtype=None) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias,
                                            batch_first=batch_first, **factory)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, **factory)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, **factory)
        self.norm_first = norm_first
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **factory)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **factory)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        if isinstance(activation, str):
            if activation not in _ACTIVATIONS:
                raise RuntimeError(f"activation should be relu/gelu, not {activation}")
            activation = _ACTIVATIONS[activation]
        self.activation = activation

    def forward(self, src: Tensor, src_mask: Tensor | None = None,
                src_key_padding_mask: Tensor | None = None, is_causal: bool = False) -> Tensor:
        x = src
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            x = x + self._ff_block(self.norm2(x))
        else:
            x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask, is_causal))
            x = self.norm2(x + self._ff_block(x))
        return x

    def _sa_block(self, x: Tensor, attn_mask: Tensor | None, key_padding_mask: Tensor | None,
                  is_causal: bool) -> Tensor:
        x = self.self_attn(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                           need_weights=False, is_causal=is_causal)[0]
        return self.dropout1(x)

    def _ff_block(self, x: Tensor) -> Tensor:
        return self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x)))))


class TransformerEncoder(Module):
    """``num_layers`` deep copies of ``encoder_layer`` applied in turn, then ``norm`` if given.

        >>> layer = nn.TransformerEncoderLayer(d_model=32, nhead=4, batch_first=True)
        >>> encoder = nn.TransformerEncoder(layer, num_layers=2)
    """

    def __init__(self, encoder_layer: Module, num_layers: int, norm: Module | None = None,
                 enable_nested_tensor: bool = True, mask_check: bool = True) -> None:
        super().__init__()
        self.layers = ModuleList([copy.deepcopy(encoder_layer) for _ in range(num_layers)])
        self.num_layers = num_layers
        self.norm = norm
        self.enable_nested_tensor = False  # (no nested tensors: padded batches stay dense)
        self.mask_check = mask_check

    def forward(self, src: Tensor, mask: Tensor | None = None, src_key_padding_mask: Tensor | None = None,
                is_causal: bool | None = None) -> Tensor:
        # is_causal=None: PyTorch detects a causal mask and only then takes the hint; the
        # mask itself gives the same result, so the hint is passed only when set
        output = src
        for layer in self.layers:
            output = layer(output, src_mask=mask, src_key_padding_mask=src_key_padding_mask,
                           is_causal=bool(is_causal))
        return self.norm(output) if self.norm is not None else output
