"""``graphc.nn.functional``: the neural-network functions, each one op-table call.

Signatures follow ``torch.nn.functional``.
"""

from __future__ import annotations

from ..errors import OpValueError, ShapeError
from ..ops import OPS, dispatch
from ..ops import functions as _F
from ..ops.expose import functional_wrappers
from ..ops.functions import operand
from ..symbolic import SymInt

globals().update(functional_wrappers())  # relu, sigmoid, tanh, silu, gelu (an op's ``expose``)
softmax = _F.softmax
log_softmax = _F.log_softmax
pad = _F.pad
unfold = _F.unfold
fold = _F.fold
conv2d = _F.conv2d
max_pool2d = _F.max_pool2d
avg_pool2d = _F.avg_pool2d
adaptive_avg_pool2d = _F.adaptive_avg_pool2d
scaled_dot_product_attention = _F.scaled_dot_product_attention
from ..ops.resample import interpolate, upsample, upsample_bilinear, upsample_nearest  # noqa: E402, F401
from .functional_layers import (  # noqa: E402, F401  (re-exported)
    adaptive_avg_pool1d, adaptive_max_pool1d, adaptive_max_pool2d, avg_pool1d, bilinear, conv1d,
    conv_transpose1d, conv_transpose2d, dropout1d, dropout2d, dropout3d, instance_norm, max_pool1d,
    pixel_shuffle, pixel_unshuffle, rms_norm)
from ..ops.activations import relu6  # noqa: E402, F401
from ..ops.losses import (  # noqa: E402, F401  (torch's signatures, legacy arguments too)
    binary_cross_entropy, binary_cross_entropy_with_logits, cosine_similarity, huber_loss,
    kl_div, l1_loss, nll_loss, normalize, one_hot, smooth_l1_loss,
)


def linear(input, weight, bias=None):
    """input @ weight.T + bias."""
    return dispatch(OPS.linear, input, weight, bias)


def layer_norm(input, normalized_shape, weight=None, bias=None, eps: float = 1e-5):
    if isinstance(normalized_shape, int):
        normalized_shape = (normalized_shape,)
    return dispatch(OPS.layer_norm, input, weight, bias,
                    normalized_shape=tuple(normalized_shape), eps=eps)


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training: bool = False,
               momentum: float | None = 0.1, eps: float = 1e-5):
    """Normalise over the channel dim 1.

    In training mode the batch's statistics normalise, and the running ones (when given)
    move toward them by ``momentum`` (the variance unbiased, as in PyTorch); otherwise
    the running statistics normalise.
    """
    if not training:
        if running_mean is None or running_var is None:
            raise OpValueError("batch_norm", "running_mean and running_var are required when "
                               "training=False")
        return dispatch(OPS.batch_norm, input, running_mean, running_var, weight, bias, eps=eps)
    if input.ndim < 2:
        raise ShapeError("batch_norm", f"expected an input of shape (N, C, *), got "
                         f"{tuple(input.shape)}")
    dims = (0,) + tuple(range(2, input.ndim))
    n = input.numel() // input.shape[1] if input.shape[1] else 0
    if n <= 1:
        raise OpValueError("batch_norm", f"expected more than 1 value per channel when training, "
                           f"got input of shape {tuple(input.shape)}")
    mean = _F.mean(input, dims)
    var = _F.var(input, dims, correction=0)
    if running_mean is not None and running_var is not None:
        m = 0.1 if momentum is None else momentum
        stats_mean, stats_var = mean.detach(), var.detach()
        running_mean.copy_(running_mean * (1 - m) + stats_mean * m)
        if isinstance(n, SymInt):  # a size known per call (compiled): tensor arithmetic
            unbiased = stats_var * n / (n - 1) * m
        else:
            unbiased = stats_var * (m * n / (n - 1))
        running_var.copy_(running_var * (1 - m) + unbiased)
    return dispatch(OPS.batch_norm, input, mean, var, weight, bias, eps=eps)


def group_norm(input, num_groups: int, weight=None, bias=None, eps: float = 1e-5):
    return dispatch(OPS.group_norm, input, weight, bias, num_groups=num_groups, eps=eps)


def dropout(input, p: float = 0.5, training: bool = True, inplace: bool = False, *,
            generator=None):
    """Zero values with probability ``p`` and scale the rest by 1/(1-p); identity in eval."""
    if not 0.0 <= p <= 1.0:
        raise OpValueError("dropout", f"dropout probability has to be between 0 and 1, got {p}")
    if not training or p == 0.0:
        return input
    out = dispatch(OPS.dropout, input, p=float(p), generator=generator)
    return input.copy_(out) if inplace else out


def mse_loss(input, target, reduction: str = "mean"):
    return dispatch(OPS.mse_loss, input, operand(target), reduction=reduction)


def cross_entropy(input, target, weight=None, ignore_index: int = -100, reduction: str = "mean",
                  label_smoothing: float = 0.0):
    """log_softmax over the class dim + negative log likelihood (class indices or probabilities)."""
    return dispatch(OPS.cross_entropy, input, operand(target), weight, ignore_index=ignore_index,
                    reduction=reduction, label_smoothing=float(label_smoothing))


def embedding(input, weight, padding_idx: int | None = None):
    """Rows of ``weight`` picked by the integer tensor ``input``."""
    return dispatch(OPS.embedding, operand(input), weight, padding_idx=padding_idx)
