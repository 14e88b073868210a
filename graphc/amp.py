"""``graphc.amp``: automatic mixed precision, as PyTorch's on the CPU.

Inside ``autocast`` the matrix products run in a 16-bit float (bfloat16 unless ``dtype=``
says float16) and a few numerically touchy ops run in float32; every other op is unchanged:

    with graphc.autocast(device_type="cpu"):          # or graphc.amp.autocast
        y = model(x)                                  # Linear outputs are bfloat16
        loss = F.mse_loss(y, target)                  # float32
    loss.backward()                                   # outside autocast, as in PyTorch

What is cast (the subset of PyTorch's CPU autocast lists whose ops graphc has):

- to the autocast dtype: ``LOWER_PRECISION_OPS`` — linear, matmul (``@``, ``mm``, and
  ``dot``, which graphc runs as matmul: PyTorch keeps ``dot`` in float32), bmm, addmm,
  baddbmm, conv2d, scaled_dot_product_attention;
- to float32: ``FLOAT32_OPS`` — the losses (mse, cross_entropy, nll, l1, smooth_l1, huber,
  kl_div, binary_cross_entropy_with_logits) and prod.

Only floating-point tensors other than float64 are cast, as in PyTorch. Casts are
recorded by autograd, so gradients reach float32 weights in float32. Differences: casted
weights are not cached (``cache_enabled`` is accepted and ignored), and a compiled
function (``graphc.compile``) called inside autocast runs eagerly, so that it computes
what eager code computes.

``GradScaler`` scales the loss so that small float16 gradients do not flush to zero.
Disabled (``enabled=False``, or ``device="cuda"``, which graphc does not have and which
warns, as PyTorch without CUDA does) it passes everything through: ``scale(loss)`` is
``loss``, ``step(opt)`` is ``opt.step()``, ``update()`` does nothing, ``get_scale()`` is 1.0.
"""

from __future__ import annotations

import functools
import threading
import warnings

from . import dtype as dt
from .autograd import no_grad
from .ops.dispatch import DispatchMode, dispatch, redispatch
from .ops.registry import OPS, OpDef
from .tensor import Tensor

__all__ = ["autocast", "GradScaler", "is_autocast_enabled", "get_autocast_dtype",
           "LOWER_PRECISION_OPS", "FLOAT32_OPS"]

LOWER_PRECISION_OPS = frozenset({"linear", "matmul", "bmm", "addmm", "baddbmm", "conv2d",
                                 "scaled_dot_product_attention"})
FLOAT32_OPS = frozenset({"mse_loss", "cross_entropy", "nll_loss", "l1_loss", "smooth_l1_loss",
                         "huber_loss", "kl_div", "binary_cross_entropy_with_logits", "prod"})
_DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu", "meta")


class _State(threading.local):
    def __init__(self):
        self.enabled = False
        self.dtype = dt.bfloat16
        self.mode = None  # the _AutocastMode on this thread's dispatch stack, if any


_state = _State()


class _AutocastMode(DispatchMode):
    """On the dispatch stack while some autocast region is active; casts per ``_state``."""

    def handle(self, op: OpDef, inputs: tuple, attrs: dict):
        if _state.enabled:
            if op.name in LOWER_PRECISION_OPS:
                inputs = _cast(inputs, _state.dtype)
            elif op.name in FLOAT32_OPS:
                inputs = _cast(inputs, dt.float32)
        return redispatch(op, inputs, attrs)


def _cast(inputs: tuple, to: dt.dtype) -> tuple:
    # dispatched from inside the mode's handler: the cast skips this mode (no recursion)
    return tuple(dispatch(OPS.cast, x, dtype=to) if isinstance(x, Tensor)
                 and x.dtype.is_floating_point and x.dtype is not dt.float64 and x.dtype is not to
                 else x for x in inputs)


class autocast:
    """Run matrix products in a 16-bit float inside the block (see the module docstring);
    also a decorator. ``device_type`` is "cpu"; another device (cuda...) warns and
    disables, as PyTorch does without that device.

        >>> with graphc.autocast("cpu", dtype=graphc.bfloat16):
        ...     (a @ b).dtype
        graphc.bfloat16
    """

    def __init__(self, device_type: str, dtype=None, enabled: bool = True,
                 cache_enabled: bool | None = None):
        if not isinstance(device_type, str) or device_type not in _DEVICE_TYPES:
            raise RuntimeError(f"autocast: expected device_type one of {', '.join(_DEVICE_TYPES)}, "
                               f"got {device_type!r}")
        self.device_type = device_type
        self.fast_dtype = dt.bfloat16 if dtype is None else dt.as_dtype(dtype)
        self._enabled = bool(enabled)
        self.cache_enabled = cache_enabled  # accepted; graphc does not cache casted weights
        if self._enabled and device_type != "cpu":
            warnings.warn(f"autocast: device_type {device_type!r} is not available (graphc runs "
                          "on the CPU only); autocast is disabled", stacklevel=2)
            self._enabled = False
        if self._enabled and self.fast_dtype not in dt.HALF_DTYPES:
            warnings.warn(f"autocast: the CPU autocast dtype must be bfloat16 or float16, got "
                          f"{self.fast_dtype}; autocast is disabled", stacklevel=2)
            self._enabled = False
        self._saved: list[tuple] = []

    def __enter__(self):
        pushed = None
        if self._enabled and _state.mode is None:
            pushed = _state.mode = _AutocastMode().__enter__()
        self._saved.append((_state.enabled, _state.dtype, pushed))
        if self.device_type == "cpu":  # another device's autocast leaves the cpu's as it is
            _state.enabled = self._enabled
            if self._enabled:
                _state.dtype = self.fast_dtype
        return self

    def __exit__(self, *exc):
        _state.enabled, _state.dtype, pushed = self._saved.pop()
        if pushed is not None:
            pushed.__exit__(*exc)
            _state.mode = None
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def run_autocast(*args, **kwargs):
            with autocast(self.device_type, self.fast_dtype, self._enabled, self.cache_enabled):
                return fn(*args, **kwargs)
        return run_autocast


def is_autocast_enabled(device_type: str | None = None) -> bool:
    """Whether autocast is on for ``device_type``. Without an argument PyTorch asks about
    CUDA, so ``is_autocast_enabled()`` is always False here; ask ``("cpu")``."""
    return device_type == "cpu" and _state.enabled


def get_autocast_dtype(device_type: str = "cpu") -> dt.dtype:
    """The dtype autocast uses on ``device_type`` (bfloat16 on the cpu unless set)."""
    return _state.dtype if device_type == "cpu" else dt.float16


class GradScaler:
    """Loss scaling for float16 training (see the module docstring).

    Enabled (``device="cpu"``): ``scale(loss)`` multiplies by the scale; ``unscale_(opt)``
    divides the gradients by it and notes any inf or nan; ``step(opt)`` unscales if needed
    and skips ``opt.step()`` when a gradient was not finite; ``update()`` halves the scale
    after a skipped step (``backoff_factor``) and doubles it after ``growth_interval``
    finite steps in a row (``growth_factor``).
    """

    def __init__(self, device: str = "cuda", init_scale: float = 2.0**16, growth_factor: float = 2.0,
                 backoff_factor: float = 0.5, growth_interval: int = 2000, enabled: bool = True):
        self._device = device
        self._enabled = bool(enabled)
        if self._enabled and device != "cpu":
            warnings.warn(f"GradScaler: device {device!r} is not available (graphc runs on the "
                          "CPU only); the scaler is disabled", stacklevel=2)
            self._enabled = False
        if growth_factor <= 1.0 or not 0.0 < backoff_factor < 1.0:
            raise ValueError("GradScaler: expected growth_factor > 1 and 0 < backoff_factor < 1, "
                             f"got {growth_factor} and {backoff_factor}")
        self._scale = float(init_scale)
        self._growth_factor, self._backoff_factor = float(growth_factor), float(backoff_factor)
        self._growth_interval = int(growth_interval)
        self._growth_tracker = 0
        self._per_optimizer: dict[int, dict] = {}  # id(optimizer) -> {"unscaled", "found_inf"}

    def is_enabled(self) -> bool:
        return self._enabled

    def get_scale(self) -> float:
        return self._scale if self._enabled else 1.0

    def scale(self, outputs):
        """``outputs`` (a tensor, or lists/tuples of them) times the scale."""
        if not self._enabled:
            return outputs
        if isinstance(outputs, Tensor):
            return outputs * self._scale
        if isinstance(outputs, (list, tuple)):
            return type(outputs)(self.scale(o) for o in outputs)
        raise TypeError(f"GradScaler.scale: expected a tensor or a list/tuple of tensors, got "
                        f"{type(outputs).__name__}")

    def unscale_(self, optimizer) -> None:
        """Divide ``optimizer``'s gradients by the scale, in place, once per step."""
        if not self._enabled:
            return
        state = self._per_optimizer.setdefault(id(optimizer), {"unscaled": False, "found_inf": False})
        if state["unscaled"]:
            raise RuntimeError("unscale_() has already been called on this optimizer since the "
                               "last update()")
        inv = 1.0 / self._scale
        found_inf = False
        with no_grad():
            for group in optimizer.param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    p.grad.copy_(p.grad * inv)
                    found_inf = found_inf or not bool(p.grad.isfinite().all())
        state["unscaled"], state["found_inf"] = True, found_inf

    def step(self, optimizer, *args, **kwargs):
        """``optimizer.step(...)``, unless a gradient is inf or nan (then None)."""
        if not self._enabled:
            return optimizer.step(*args, **kwargs)
        state = self._per_optimizer.get(id(optimizer))
        if state is None or not state["unscaled"]:
            self.unscale_(optimizer)
            state = self._per_optimizer[id(optimizer)]
        return None if state["found_inf"] else optimizer.step(*args, **kwargs)

    def update(self, new_scale: float | None = None) -> None:
        """Adjust the scale for the next step (or set it to ``new_scale``)."""
        if not self._enabled:
            return
        if new_scale is not None:
            self._scale = float(new_scale.item() if isinstance(new_scale, Tensor) else new_scale)
        elif any(s["found_inf"] for s in self._per_optimizer.values()):
            self._scale *= self._backoff_factor
            self._growth_tracker = 0
        else:
            self._growth_tracker += 1
            if self._growth_tracker == self._growth_interval:
                self._scale *= self._growth_factor
                self._growth_tracker = 0
        self._per_optimizer.clear()

    def state_dict(self) -> dict:
        if not self._enabled:
            return {}
        return {"scale": self._scale, "growth_factor": self._growth_factor,
                "backoff_factor": self._backoff_factor, "growth_interval": self._growth_interval,
                "_growth_tracker": self._growth_tracker}

    def load_state_dict(self, state: dict) -> None:
        if not self._enabled:
            return
        if not state:
            raise RuntimeError("GradScaler.load_state_dict: the state_dict is empty (it came from "
                               "a disabled scaler)")
        self._scale = float(state["scale"])
        self._growth_factor, self._backoff_factor = state["growth_factor"], state["backoff_factor"]
        self._growth_interval, self._growth_tracker = state["growth_interval"], state["_growth_tracker"]
