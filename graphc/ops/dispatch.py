"""Dispatch: every op call goes through ``dispatch(op, *inputs, **attrs)``.

What happens to a call depends on the active modes, innermost first, then the backend:

    mode stack (tracing, ...)  ->  hooks before the backend (autograd)  ->  backend
                                                                           eager: numpy
                                                                           meta: shapes only

A mode or hook handles a call and may pass it on with ``redispatch``. The backend is
chosen by the inputs' device (a factory's by its ``device`` attribute): ``cpu`` runs the
op's numpy kernel, ``meta`` runs only its dtype and shape rules. Both validate the
inputs with the same rules first, so a bad call fails the same way in both, before any
kernel runs.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

import numpy as np

from .. import dtype as dt
from ..errors import OpError, OpTypeError, OpValueError
from ..tensor import CPU, META, Tensor, device, empty_meta, view_of, wrap_array
from .registry import Flag, OpDef
from .rules import check_addressable


class DispatchMode:
    """A mode sees every op call made while it is active (``with mode:``)."""

    def handle(self, op: OpDef, inputs: tuple, attrs: dict):
        raise NotImplementedError

    def __enter__(self):
        _state.modes.append(self)
        return self

    def __exit__(self, *exc):
        _state.modes.remove(self)


class _State(threading.local):
    def __init__(self):
        self.modes: list[DispatchMode] = []
        self.depth = 0  # how many modes of the stack are being skipped (inside a handler)


_state = _State()
_hooks: list = []  # callables (op, inputs, attrs) -> result | NotImplemented, before the backend


def add_backend_hook(hook) -> None:
    """Install a hook that may handle any call before the backend (autograd uses this)."""
    if hook not in _hooks:
        _hooks.insert(0, hook)


def dispatch(op: OpDef, *inputs, **attrs):
    """Run ``op`` on ``inputs`` (tensors, Python scalars or None) with attributes ``attrs``."""
    attrs = op.bind_attrs(attrs)
    return redispatch(op, inputs, attrs)


def redispatch(op: OpDef, inputs: tuple, attrs: dict):
    """Pass a call to the next handler: the next mode down the stack, then hooks, then backend."""
    modes = _state.modes
    level = len(modes) - _state.depth
    if level > 0:
        _state.depth += 1
        try:
            return modes[level - 1].handle(op, inputs, attrs)
        finally:
            _state.depth -= 1
    for hook in _hooks:
        out = hook(op, inputs, attrs)
        if out is not NotImplemented:
            return out
    return run_backend(op, inputs, attrs)


@contextmanager
def modes_replaced(*modes: DispatchMode):
    """Run code with exactly ``modes`` active (none: below every mode), then restore."""
    saved = _state.modes, _state.depth
    _state.modes, _state.depth = list(modes), 0
    try:
        yield
    finally:
        _state.modes, _state.depth = saved


def modes_disabled():
    """Run code below every active mode (a mode's handler calling ops for real)."""
    return modes_replaced()


# ---- the backend -------------------------------------------------------------------

def device_of(op: OpDef, inputs: tuple, attrs: dict) -> device:
    found = None
    for x in inputs:
        if isinstance(x, Tensor):
            d = x._storage.device
            if found is None:
                found = d
            elif d != found:
                raise OpError(op.name, f"expected all tensors on one device, got {found} and {d}")
    if found is None:
        found = device(attrs.get("device") or CPU)
    return found


def run_backend(op: OpDef, inputs: tuple, attrs: dict):
    """Validate with the op's rules, then compute (cpu) or only describe the result (meta)."""
    on_meta = device_of(op, inputs, attrs) == META
    casts, out_dtypes = op.dtype_rule(op.name, *inputs, **attrs)
    if op.view_rule is not None:
        return _run_view(op, inputs, attrs, out_dtypes)
    shapes = op.shape_rule(op.name, *inputs, **attrs)
    if op.outputs == 1:
        shapes = (shapes,)
    check_addressable(op.name, inputs, shapes, out_dtypes)
    if Flag.MUTATES in op.flags:
        _check_writable(op, inputs[0])
    if on_meta:
        if Flag.MUTATES in op.flags:
            return inputs[0]
        outs = tuple(empty_meta(s, d) for s, d in zip(shapes, out_dtypes))
        return outs[0] if op.outputs == 1 else outs
    arrays = [_as_kernel_input(op, x, c) for x, c in zip(inputs, casts)]
    if Flag.MUTATES in op.flags:  # the kernel writes into this very array, whatever its dtype
        arrays[0] = inputs[0]._data()
    with np.errstate(all="ignore"):
        result = op.kernel(*arrays, **attrs)
    if Flag.MUTATES in op.flags:
        inputs[0]._storage.version += 1
        return inputs[0]
    results = (result,) if op.outputs == 1 else tuple(result)
    outs = tuple(_wrap_output(op, r, s, d, arrays) for r, s, d in zip(results, shapes, out_dtypes))
    return outs[0] if op.outputs == 1 else outs


def _run_view(op: OpDef, inputs: tuple, attrs: dict, out_dtypes):
    x = inputs[0]
    geometry = op.view_rule(op.name, x, **attrs)
    if geometry is None:  # no view exists (reshape of a non-viewable layout): copy first
        check_addressable(op.name, (x,))
        x = _contiguous_copy(x)
        geometry = op.view_rule(op.name, x, **attrs)
    shape, stride, offset = geometry
    return view_of(x, shape, stride, offset)


def _contiguous_copy(x: Tensor) -> Tensor:
    if x.is_meta:
        return empty_meta(x._shape, x.dtype)
    return wrap_array(np.array(x._data(), order="C", copy=True))


def _as_kernel_input(op: OpDef, x, cast: dt.dtype | None):
    """The array a kernel reads. float16 and bfloat16 (the only 2-byte dtypes) compute in
    float32: kernels see float32 and ``_wrap_output`` rounds the result to the op's dtype."""
    if isinstance(x, Tensor):
        a = x._data()
        if cast is None:
            if a.itemsize != 2:
                return a
            cast = dt.float32
        target = cast.compute.np
        return a if a.dtype == target else a.astype(target)
    if cast is None or x is None or isinstance(x, (tuple, list)):
        return x
    try:
        return np.asarray(x, dtype=cast.compute.np)
    except OverflowError:
        raise OpValueError(op.name, f"value {x!r} cannot be converted to {cast} without overflow") from None


def _wrap_output(op: OpDef, result, shape, out_dtype: dt.dtype, arrays) -> Tensor:
    result = np.asarray(result)
    if result.shape != tuple(shape):
        raise AssertionError(f"graphc internal error: {op.name} kernel returned shape "
                             f"{result.shape} but its shape rule says {tuple(shape)}")
    if result.dtype != out_dtype.np:
        with np.errstate(over="ignore"):  # float32 -> float16 overflows to inf, silently
            result = result.astype(out_dtype.np)
    elif any(isinstance(a, np.ndarray) and np.may_share_memory(result, a) for a in arrays):
        result = result.copy()  # an out-of-place op never returns its input's memory
    return wrap_array(result, out_dtype)


def _check_writable(op: OpDef, x) -> None:
    if not isinstance(x, Tensor):
        raise OpTypeError(op.name, f"expected a tensor to write into, got {type(x).__name__}")
    for size, stride in zip(x._shape, x._stride):
        if stride == 0 and size > 1:
            raise OpError(op.name, "unsupported operation: more than one element of the written-to "
                          f"tensor (shape {tuple(x._shape)}, stride {x._stride}) refers to a single "
                          "memory location; call .clone() before writing")
    arr = x._storage.array
    if arr is not None and not arr.flags.writeable:
        raise OpError(op.name, "the tensor's memory is read-only (it came from a read-only "
                      "numpy array); copy it with .clone() before writing")

