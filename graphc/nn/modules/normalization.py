"""Normalization layers: LayerNorm, RMSNorm, BatchNorm1d/2d/3d, InstanceNorm1d/2d, GroupNorm.

BatchNorm keeps running statistics as buffers (``running_mean``, ``running_var``,
``num_batches_tracked``): training normalises with the batch's statistics and moves the
running ones toward them by ``momentum`` (``momentum=None``: a cumulative average);
evaluation normalises with the running ones.
"""

from __future__ import annotations

import warnings

from ... import dtype as dt
from ...autograd import no_grad
from ...errors import OpValueError, ShapeError
from ...ops import functions as F
from ...tensor import Tensor
from .. import functional as nnF
from .. import init
from ..module import Module
from ..parameter import Parameter


def _register_affine(module: Module, shape: tuple[int, ...] | int, affine: bool, bias: bool, device,
                     dtype) -> None:
    """Parameters ``weight`` (ones) and ``bias`` (zeros) of ``shape``; None when not ``affine``
    (both) or not ``bias`` (the bias)."""
    module.register_parameter("weight", Parameter(F.ones(shape, dtype=dtype, device=device))
                              if affine else None)
    module.register_parameter("bias", Parameter(F.zeros(shape, dtype=dtype, device=device))
                              if affine and bias else None)


def _reset_affine(module: Module) -> None:
    if module.weight is not None:
        init.ones_(module.weight)
    if module.bias is not None:
        init.zeros_(module.bias)


class LayerNorm(Module):
    """Normalise over the trailing ``normalized_shape`` dims, then scale and shift elementwise."""

    def __init__(self, normalized_shape: int | tuple[int, ...], eps: float = 1e-5,
                 elementwise_affine: bool = True, bias: bool = True, device=None, dtype=None) -> None:
        super().__init__()
        if isinstance(normalized_shape, int):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        _register_affine(self, self.normalized_shape, elementwise_affine, bias, device, dtype)

    def reset_parameters(self) -> None:
        _reset_affine(self)

    def forward(self, input: Tensor) -> Tensor:
        n = len(self.normalized_shape)
        if tuple(input.shape[input.ndim - n:]) != self.normalized_shape or input.ndim < n:
            raise ShapeError(f"LayerNorm(normalized_shape={self.normalized_shape})",
                             f"got input of shape {tuple(input.shape)}; expected its last {n} dim(s) "
                             f"to be {self.normalized_shape}")
        return nnF.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}, "
                f"bias={self.bias is not None}")


class _NormBase(Module):
    """Per-channel affine parameters and running statistics (BatchNorm's and InstanceNorm's state)."""

    _version = 2  # version 1 checkpoints (before num_batches_tracked) still load


    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, device=None, dtype=None, *,
                 bias: bool = True) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        _register_affine(self, num_features, affine, bias, device, dtype)
        if track_running_stats:
            self.register_buffer("running_mean", F.zeros(num_features, dtype=dtype, device=device))
            self.register_buffer("running_var", F.ones(num_features, dtype=dtype, device=device))
            self.register_buffer("num_batches_tracked", F.zeros((), dtype=dt.int64, device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs) -> None:
        key = prefix + "num_batches_tracked"
        if (local_metadata.get("version") or 1) < 2 and self.track_running_stats \
                and key not in state_dict:
            # an old checkpoint kept no count: the module keeps its own, as torch does
            state_dict[key] = self.num_batches_tracked
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def reset_running_stats(self) -> None:
        """running_mean = 0, running_var = 1, num_batches_tracked = 0."""
        if self.track_running_stats:
            with no_grad():
                self.running_mean.zero_()
                self.running_var.fill_(1)
                self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        _reset_affine(self)

    def _check_input(self, input: Tensor, ranks: tuple[int, ...], layout: str, channel_dim: int = 1) -> None:
        """Raise for an input of the wrong rank or (when it matters) the wrong channel count."""
        name = f"{self._get_name()}(num_features={self.num_features})"
        if input.ndim not in ranks:
            wanted = " or ".join(f"{r}-D" for r in ranks)
            raise OpValueError(name, f"expected {wanted} input {layout}, got {input.ndim}-D input of "
                               f"shape {tuple(input.shape)}")
        channels = input.shape[channel_dim]
        if channels == self.num_features:
            return
        detail = (f"got input of shape {tuple(input.shape)} with {channels} channels in dim "
                  f"{channel_dim}; expected {self.num_features}")
        if self.affine or self.track_running_stats:
            raise ShapeError(name, detail)
        # without per-channel state any channel count works; PyTorch warns
        warnings.warn(f"{name} {detail}; the layer has no per-channel state, so it runs anyway",
                      stacklevel=3)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}")


class _BatchNorm(_NormBase):
    """BatchNorm's forward; subclasses give the accepted input ranks."""

    _ranks: tuple[int, ...] = ()
    _layout = ""

    def forward(self, input: Tensor) -> Tensor:
        self._check_input(input, self._ranks, self._layout)
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            with no_grad():
                self.num_batches_tracked.add_(1)
            if self.momentum is None:  # the cumulative average of every batch seen
                momentum = 1.0 / float(self.num_batches_tracked)
        # eval without running statistics normalises with the batch's, as in PyTorch
        use_batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        pass_running = not self.training or self.track_running_stats
        return nnF.batch_norm(input, self.running_mean if pass_running else None,
                              self.running_var if pass_running else None, self.weight, self.bias,
                              use_batch_stats, momentum, self.eps)


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of (N, C) or (N, C, L) input over the batch (and length) dims."""

    _ranks = (2, 3)
    _layout = "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of (N, C, H, W) input over the batch and spatial dims."""

    _ranks = (4,)
    _layout = "(N, C, H, W)"


class BatchNorm3d(_BatchNorm):
    """Batch normalisation of (N, C, D, H, W) input over the batch and spatial dims."""

    _ranks = (5,)
    _layout = "(N, C, D, H, W)"


class _InstanceNorm(_NormBase):
    """Normalise each (sample, channel) of the input on its own (``_spatial`` dims after C).

    With ``track_running_stats=True`` training also keeps running averages of the
    per-instance statistics, which evaluation then uses.
    """

    _spatial = 2
    _layout = ""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = False, track_running_stats: bool = False, device=None, dtype=None, *,
                 bias: bool = True) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype, bias=bias)

    def forward(self, input: Tensor) -> Tensor:
        n = self._spatial
        self._check_input(input, (n + 1, n + 2), self._layout, channel_dim=input.ndim - n - 1)
        if input.ndim == n + 1:
            return F.squeeze(self._normalize(F.unsqueeze(input, 0)), 0)
        return self._normalize(input)

    def _normalize(self, input: Tensor) -> Tensor:
        # PyTorch averages the per-instance statistics (variance unbiased) over the batch;
        # momentum=None means 0 here (PyTorch's InstanceNorm keeps no batch count)
        use_input_stats = self.training or not self.track_running_stats
        return nnF.instance_norm(input, self.running_mean, self.running_var, self.weight, self.bias,
                                 use_input_stats, 0.0 if self.momentum is None else self.momentum,
                                 self.eps)


class InstanceNorm1d(_InstanceNorm):
    """Instance normalisation of (N, C, L) or (C, L) input."""

    _spatial = 1
    _layout = "(N, C, L) or (C, L)"


class InstanceNorm2d(_InstanceNorm):
    """Instance normalisation of (N, C, H, W) or (C, H, W) input."""

    _spatial = 2
    _layout = "(N, C, H, W) or (C, H, W)"


class RMSNorm(Module):
    """Divide by the root mean square over the trailing ``normalized_shape`` dims, then scale
    elementwise; ``eps=None`` is the input dtype's machine epsilon (as PyTorch)."""

    def __init__(self, normalized_shape: int | tuple[int, ...], eps: float | None = None,
                 elementwise_affine: bool = True, device=None, dtype=None) -> None:
        super().__init__()
        if isinstance(normalized_shape, int):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        _register_affine(self, self.normalized_shape, elementwise_affine, False, device, dtype)
        del self._parameters["bias"]  # RMSNorm has no bias entry at all

    def reset_parameters(self) -> None:
        if self.weight is not None:
            init.ones_(self.weight)

    def forward(self, input: Tensor) -> Tensor:
        n = len(self.normalized_shape)
        if tuple(input.shape[input.ndim - n:]) != self.normalized_shape or input.ndim < n:
            raise ShapeError(f"RMSNorm(normalized_shape={self.normalized_shape})",
                             f"got input of shape {tuple(input.shape)}; expected its last {n} dim(s) "
                             f"to be {self.normalized_shape}")
        return nnF.rms_norm(input, self.normalized_shape, self.weight, self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


class GroupNorm(Module):
    """Normalise each group of ``num_channels // num_groups`` channels of (N, C, *) input."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True,
                 device=None, dtype=None, *, bias: bool = True) -> None:
        super().__init__()
        if num_groups <= 0 or num_channels % num_groups:
            raise ValueError(f"GroupNorm({num_groups}, {num_channels}): num_channels must be divisible "
                             "by num_groups")
        self.num_groups = num_groups
        self.num_channels = num_channels
        self.eps = eps
        self.affine = affine
        _register_affine(self, num_channels, affine, bias, device, dtype)

    def reset_parameters(self) -> None:
        _reset_affine(self)

    def forward(self, input: Tensor) -> Tensor:
        if input.ndim < 2 or input.shape[1] != self.num_channels:
            raise ShapeError(f"GroupNorm({self.num_groups}, {self.num_channels})",
                             f"got input of shape {tuple(input.shape)}; expected (N, {self.num_channels}, *)")
        return nnF.group_norm(input, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}, "
                f"bias={self.bias is not None}")
