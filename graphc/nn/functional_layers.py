"""The functions of ``graphc.nn.functional`` that are written with other ops: 1-D convolution
and pooling (through their 2-D ops with a height of 1), transposed convolution, channel
dropout, pixel shuffle, bilinear forms, instance and RMS normalisation.

Signatures follow ``torch.nn.functional``; ``interpolate`` lives in ``graphc/ops/resample.py``.
"""

from __future__ import annotations

import warnings

from ..autograd import no_grad
from ..errors import OpValueError, ShapeError
from ..ops import OPS, dispatch
from ..ops import functions as F
from ..ops.conv import pair
from ..tensor import Tensor

# ---- 1-D convolution and pooling: the 2-D ops over (N, C, 1, L) ---------------------


def _single(name: str, value, what: str) -> int:
    v = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    if len(v) != 1 or not isinstance(v[0], int):
        raise OpValueError(name, f"{what} must be an int or a 1-tuple, got {value!r}")
    return v[0]


def _as_2d(name: str, input: Tensor, layout: str) -> tuple[Tensor, bool]:
    """(N, C, L) -> (N, C, 1, L) and (C, L) -> (1, C, 1, L); whether it was unbatched."""
    if not isinstance(input, Tensor) or input.ndim not in (2, 3):
        shape = tuple(input.shape) if isinstance(input, Tensor) else type(input).__name__
        raise ShapeError(name, f"expected a 2-D or 3-D input {layout}, got {shape}")
    unbatched = input.ndim == 2
    x = F.unsqueeze(input, 0) if unbatched else input
    return F.unsqueeze(x, 2), unbatched


def _as_1d(out: Tensor, unbatched: bool) -> Tensor:
    out = F.squeeze(out, 2)
    return F.squeeze(out, 0) if unbatched else out


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups: int = 1):
    """1-D convolution (cross-correlation) of (N, C, L) or (C, L) input with weight
    (out_channels, in_channels / groups, k); ``padding`` an int or 'same' / 'valid'."""
    name = "conv1d"
    x, unbatched = _as_2d(name, input, "(N, C, L) or (C, L)")
    if weight.ndim != 3:
        raise ShapeError(name, f"expected a 3-D weight (out_channels, in_channels/groups, k), "
                         f"got {tuple(weight.shape)}")
    pad = padding if isinstance(padding, str) else (0, _single(name, padding, "padding"))
    out = F.conv2d(x, F.unsqueeze(weight, 2), bias, (1, _single(name, stride, "stride")), pad,
                   (1, _single(name, dilation, "dilation")), groups)
    return _as_1d(out, unbatched)


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
               return_indices: bool = False):
    name = "max_pool1d"
    if return_indices:
        raise OpValueError(name, "return_indices=True is not supported")
    x, unbatched = _as_2d(name, input, "(N, C, L) or (C, L)")
    k = _single(name, kernel_size, "kernel_size")
    s = k if stride is None or stride == () else _single(name, stride, "stride")
    out = F.max_pool2d(x, (1, k), (1, s), (0, _single(name, padding, "padding")),
                       (1, _single(name, dilation, "dilation")), ceil_mode)
    return _as_1d(out, unbatched)


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True):
    name = "avg_pool1d"
    x, unbatched = _as_2d(name, input, "(N, C, L) or (C, L)")
    k = _single(name, kernel_size, "kernel_size")
    s = k if stride is None or stride == () else _single(name, stride, "stride")
    out = F.avg_pool2d(x, (1, k), (1, s), (0, _single(name, padding, "padding")), ceil_mode,
                       count_include_pad)
    return _as_1d(out, unbatched)


def adaptive_avg_pool1d(input, output_size):
    x, unbatched = _as_2d("adaptive_avg_pool1d", input, "(N, C, L) or (C, L)")
    size = _single("adaptive_avg_pool1d", output_size, "output_size")
    return _as_1d(F.adaptive_avg_pool2d(x, (1, size)), unbatched)


def adaptive_max_pool1d(input, output_size, return_indices: bool = False):
    x, unbatched = _as_2d("adaptive_max_pool1d", input, "(N, C, L) or (C, L)")
    size = _single("adaptive_max_pool1d", output_size, "output_size")
    return _as_1d(adaptive_max_pool2d(x, (1, size), return_indices), unbatched)


def adaptive_max_pool2d(input, output_size, return_indices: bool = False):
    """The maximum over bins [floor(i·H/oh), ceil((i+1)·H/oh)) of (N, C, H, W) or (C, H, W)."""
    if return_indices:
        raise OpValueError("adaptive_max_pool2d", "return_indices=True is not supported")
    size = (output_size, output_size) if isinstance(output_size, int) or output_size is None \
        else tuple(output_size)
    if isinstance(input, Tensor) and input.ndim == 3:
        return F.squeeze(dispatch(OPS.adaptive_max_pool2d, F.unsqueeze(input, 0),
                                  output_size=size), 0)
    return dispatch(OPS.adaptive_max_pool2d, input, output_size=size)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0,
                     groups: int = 1, dilation=1):
    """The gradient of conv2d with respect to its input, as a layer: each input position
    scatters ``weight`` (in_channels, out_channels / groups, kh, kw) into the output
    (a matmul, then fold summing the overlaps)."""
    name = "conv_transpose2d"
    if input.ndim == 3:
        return F.squeeze(conv_transpose2d(F.unsqueeze(input, 0), weight, bias, stride, padding,
                                          output_padding, groups, dilation), 0)
    if input.ndim != 4 or weight.ndim != 4:
        raise ShapeError(name, f"expected input (N, C, H, W) and weight (C, out/groups, kh, kw), "
                         f"got {tuple(input.shape)} and {tuple(weight.shape)}")
    s, p, op, d = (pair(name, v, w) for v, w in ((stride, "stride"), (padding, "padding"),
                                                 (output_padding, "output_padding"),
                                                 (dilation, "dilation")))
    n, c, h, w = input.shape
    if groups <= 0 or c % groups or weight.shape[0] != c:
        raise ShapeError(name, f"weight of shape {tuple(weight.shape)} does not fit input of shape "
                         f"{tuple(input.shape)} with groups={groups}")
    if op[0] >= max(s[0], d[0]) or op[1] >= max(s[1], d[1]):
        raise OpValueError(name, f"output_padding {op} must be smaller than stride {s} or "
                           f"dilation {d}")
    kh, kw = weight.shape[2:]
    out_c = weight.shape[1] * groups
    size = tuple((n_in - 1) * s[i] - 2 * p[i] + d[i] * (k - 1) + op[i] + 1
                 for i, (n_in, k) in enumerate(((h, kh), (w, kw))))
    # (groups, C/g, out/g·kh·kw)ᵀ @ (N, groups, C/g, H·W) -> (N, groups, out/g·kh·kw, H·W)
    wt = F.transpose(F.reshape(weight, groups, c // groups, -1), 1, 2)
    cols = F.matmul(wt, F.reshape(input, n, groups, c // groups, h * w))
    # fold sums every window into the whole canvas they reach; the output is the canvas
    # less `padding` on each side, plus `output_padding` more at the end (zeros where no
    # window reaches)
    canvas = tuple((n_in - 1) * s[i] + d[i] * (k - 1) + 1 for i, (n_in, k) in enumerate(((h, kh), (w, kw))))
    out = F.fold(F.reshape(cols, n, out_c * kh * kw, h * w), canvas, (kh, kw), d, 0, s)
    for i in range(2):
        dim, kept = 2 + i, min(size[i], canvas[i] - p[i])
        out = F.narrow(out, dim, p[i], kept)
        if kept < size[i]:
            out = F.pad(out, (0, 0) * (1 - i) + (0, size[i] - kept))
    if bias is not None:
        out = out + F.reshape(bias, 1, out_c, 1, 1)
    return out


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0,
                     groups: int = 1, dilation=1):
    name = "conv_transpose1d"
    x, unbatched = _as_2d(name, input, "(N, C, L) or (C, L)")
    out = conv_transpose2d(x, F.unsqueeze(weight, 2), bias, (1, _single(name, stride, "stride")),
                           (0, _single(name, padding, "padding")),
                           (0, _single(name, output_padding, "output_padding")), groups,
                           (1, _single(name, dilation, "dilation")))
    return _as_1d(out, unbatched)


# ---- normalisation -----------------------------------------------------------------

def rms_norm(input, normalized_shape, weight=None, eps: float | None = None):
    """x / sqrt(mean(x²) + eps) over the trailing ``normalized_shape`` dims, times ``weight``;
    ``eps=None`` is the input dtype's machine epsilon (PyTorch's default)."""
    if isinstance(normalized_shape, int):
        normalized_shape = (normalized_shape,)
    return dispatch(OPS.rms_norm, input, weight, normalized_shape=tuple(normalized_shape),
                    eps=None if eps is None else float(eps))


def instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None,
                  use_input_stats: bool = True, momentum: float = 0.1, eps: float = 1e-5):
    """Normalise each (sample, channel) of (N, C, *) input over its own spatial values.

    With ``use_input_stats`` the running statistics (when given) move toward the batch's
    average per-instance ones (variance unbiased); otherwise they normalise."""
    if input.ndim < 3:
        raise ShapeError("instance_norm", f"expected an input (N, C, *) with spatial dims, got "
                         f"{tuple(input.shape)}")
    if not use_input_stats:
        if running_mean is None or running_var is None:
            raise OpValueError("instance_norm", "running_mean and running_var are required when "
                               "use_input_stats=False")
        return dispatch(OPS.batch_norm, input, running_mean, running_var, weight, bias, eps=eps)
    if running_mean is not None and running_var is not None:
        dims = tuple(range(2, input.ndim))
        with no_grad():
            mean = F.mean(F.mean(input.detach(), dims), 0)
            var = F.mean(F.var(input.detach(), dims, correction=1), 0)
            running_mean.copy_(running_mean * (1 - momentum) + mean * momentum)
            running_var.copy_(running_var * (1 - momentum) + var * momentum)
    return dispatch(OPS.group_norm, input, weight, bias, num_groups=input.shape[1], eps=eps)


# ---- channel dropout, pixel shuffle, bilinear ---------------------------------------

def _channel_dropout(name: str, input, p: float, training: bool, inplace: bool, batched_ndim: int):
    if not 0.0 <= p <= 1.0:
        raise OpValueError(name, f"dropout probability has to be between 0 and 1, got {p}")
    if input.ndim not in (batched_ndim - 1, batched_ndim):
        raise ShapeError(name, f"expected a {batched_ndim - 1}-D (unbatched) or {batched_ndim}-D "
                         f"(batched) input, got {tuple(input.shape)}")
    if not training or p == 0.0:
        return input
    # one draw per (sample, channel): the channel dims are the leading 1 or 2
    channel_dims = input.ndim - (batched_ndim - 2)
    mask_shape = tuple(input.shape[:channel_dims]) + (1,) * (input.ndim - channel_dims)
    if p == 1.0:
        out = input * 0.0
    else:
        keep = F.rand(mask_shape, dtype=input.dtype) >= p
        out = input * keep / (1.0 - p)
    return input.copy_(out) if inplace else out


def dropout1d(input, p: float = 0.5, training: bool = True, inplace: bool = False):
    """Zero whole channels of (N, C, L) or (C, L) input with probability p; scale by 1/(1-p)."""
    return _channel_dropout("dropout1d", input, p, training, inplace, 3)


def dropout2d(input, p: float = 0.5, training: bool = True, inplace: bool = False):
    """Zero whole channels of (N, C, H, W) or (C, H, W) input with probability p."""
    if input.ndim == 3:
        warnings.warn("dropout2d: received a 3-D input; it is taken as unbatched (C, H, W), "
                      "so whole channels are zeroed", stacklevel=2)
    return _channel_dropout("dropout2d", input, p, training, inplace, 4)


def dropout3d(input, p: float = 0.5, training: bool = True, inplace: bool = False):
    """Zero whole channels of (N, C, D, H, W) or (C, D, H, W) input with probability p."""
    return _channel_dropout("dropout3d", input, p, training, inplace, 5)


def pixel_shuffle(input, upscale_factor: int):
    """(*, C·r², H, W) -> (*, C, H·r, W·r)."""
    r = upscale_factor
    if input.ndim < 3 or r <= 0 or input.shape[-3] % (r * r):
        raise ShapeError("pixel_shuffle", f"expected an input (*, C·{r}², H, W), got "
                         f"{tuple(input.shape)}")
    *batch, c, h, w = input.shape
    x = F.reshape(input, *batch, c // (r * r), r, r, h, w)
    k = len(batch)
    x = F.permute(x, *range(k), k, k + 3, k + 1, k + 4, k + 2)
    return F.reshape(x, *batch, c // (r * r), h * r, w * r)


def pixel_unshuffle(input, downscale_factor: int):
    """(*, C, H·r, W·r) -> (*, C·r², H, W)."""
    r = downscale_factor
    if input.ndim < 3 or r <= 0 or input.shape[-2] % r or input.shape[-1] % r:
        raise ShapeError("pixel_unshuffle", f"expected an input (*, C, H·{r}, W·{r}), got "
                         f"{tuple(input.shape)}")
    *batch, c, h, w = input.shape
    x = F.reshape(input, *batch, c, h // r, r, w // r, r)
    k = len(batch)
    x = F.permute(x, *range(k), k, k + 2, k + 4, k + 1, k + 3)
    return F.reshape(x, *batch, c * r * r, h // r, w // r)


def bilinear(input1, input2, weight, bias=None):
    """y_k = input1 · weight[k] · input2 + bias[k] over the last dims: (*, in1), (*, in2) ->
    (*, out), weight (out, in1, in2)."""
    if weight.ndim != 3 or input1.shape[-1] != weight.shape[1] or \
            input2.shape[-1] != weight.shape[2] or tuple(input1.shape[:-1]) != tuple(input2.shape[:-1]):
        raise ShapeError("bilinear", f"inputs {tuple(input1.shape)} and {tuple(input2.shape)} do "
                         f"not fit weight {tuple(weight.shape)} (out, in1, in2)")
    out_f, in1, in2 = weight.shape
    # (*, in1) @ (in1, out·in2) -> (*, out, in2), then the dot with input2 over in2
    left = F.matmul(input1, F.reshape(F.permute(weight, 1, 0, 2), in1, out_f * in2))
    left = F.reshape(left, *input1.shape[:-1], out_f, in2)
    out = F.sum(left * F.unsqueeze(input2, -2), -1)
    return out + bias if bias is not None else out


__all__ = ["conv1d", "max_pool1d", "avg_pool1d", "adaptive_avg_pool1d", "adaptive_max_pool1d",
           "adaptive_max_pool2d", "conv_transpose1d", "conv_transpose2d", "rms_norm",
           "instance_norm", "dropout1d", "dropout2d", "dropout3d", "pixel_shuffle",
           "pixel_unshuffle", "bilinear"]
