"""``graphc.backends.cuda``: CUDA's switches, as a PyTorch build without CUDA has them.

``matmul.allow_tf32`` follows ``graphc.set_float32_matmul_precision`` as in PyTorch
(True unless the precision is "highest"); the attention-kernel toggles
(``enable_flash_sdp``, ``sdp_kernel``...) keep what is set. None changes graphc's results:
its ``scaled_dot_product_attention`` has one CPU implementation.
"""

from __future__ import annotations

from contextlib import contextmanager

from . import get_float32_matmul_precision, set_float32_matmul_precision


def is_built() -> bool:
    return False


class _Matmul:
    """``graphc.backends.cuda.matmul``: cuBLAS's flags."""

    allow_fp16_reduced_precision_reduction = True
    allow_bf16_reduced_precision_reduction = True

    @property
    def allow_tf32(self) -> bool:
        return get_float32_matmul_precision() != "highest"

    @allow_tf32.setter
    def allow_tf32(self, value: bool) -> None:
        set_float32_matmul_precision("high" if value else "highest")


matmul = _Matmul()

# scaled-dot-product-attention kernels PyTorch may pick on a GPU: flash, memory-efficient,
# math, cuDNN
_sdp = {"flash": True, "mem_efficient": True, "math": True, "cudnn": True}


def enable_flash_sdp(enabled: bool) -> None:
    _sdp["flash"] = bool(enabled)


def enable_mem_efficient_sdp(enabled: bool) -> None:
    _sdp["mem_efficient"] = bool(enabled)


def enable_math_sdp(enabled: bool) -> None:
    _sdp["math"] = bool(enabled)


def enable_cudnn_sdp(enabled: bool) -> None:
    _sdp["cudnn"] = bool(enabled)


def flash_sdp_enabled() -> bool:
    return _sdp["flash"]


def mem_efficient_sdp_enabled() -> bool:
    return _sdp["mem_efficient"]


def math_sdp_enabled() -> bool:
    return _sdp["math"]


def cudnn_sdp_enabled() -> bool:
    return _sdp["cudnn"]


@contextmanager
def sdp_kernel(enable_flash: bool = True, enable_math: bool = True,
               enable_mem_efficient: bool = True, enable_cudnn: bool = True):
    """Set the attention-kernel toggles inside the block, then restore them."""
    saved = dict(_sdp)
    _sdp.update(flash=bool(enable_flash), math=bool(enable_math),
                mem_efficient=bool(enable_mem_efficient), cudnn=bool(enable_cudnn))
    try:
        yield
    finally:
        _sdp.update(saved)
