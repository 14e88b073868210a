"""Factory ops: tensors made from attributes alone (full, arange, eye, random draws).

They are ops so that tracing records them and meta mode knows their shapes. The
``device`` attribute picks the backend ('meta' makes no data).
"""

from __future__ import annotations

import math
import operator

import numpy as np

from .. import dtype as dt
from .. import random as rnd
from ..errors import OpValueError
from ..layout import as_shape
from ..symbolic import SymInt
from ..tensor import require_available
from .registry import REQUIRED, Flag, Sample, register

FACTORY = Flag.FACTORY
RANDOM = {Flag.FACTORY, Flag.RANDOM, Flag.IMPURE}
DEVICE = {"dtype": None, "device": None}


def _dtype_attr(name, dtype=None, device=None, **attrs):
    if dtype is None:
        raise OpValueError(name, "dtype is required (the public functions fill it in)")
    if device is not None:  # 'cpu', 'cpu:0', 'meta' or a graphc.device; 'cuda' raises here
        require_available(name, device)
    return (), (dt.as_dtype(dtype),)


def _size_shape(name, size=(), **attrs):
    shape = as_shape(name, size)
    if any(s < 0 for s in shape):
        raise OpValueError(name, f"sizes must be non-negative, got {shape}")
    return shape


def arange_length(name, start, end, step) -> int:
    if step == 0:
        raise OpValueError(name, "step must be non-zero")
    if any(type(v) is SymInt for v in (start, end, step)) and \
            all(isinstance(v, (int, SymInt)) for v in (start, end, step)):
        # integers, one of them a symbolic size (arange(x.shape[0])): integer arithmetic
        n = (end - start + step - 1) // step if step > 0 else (start - end - step - 1) // -step
        return n if n >= 0 else 0
    if not all(math.isfinite(v) for v in (start, end, step)):
        raise OpValueError(name, f"start, end and step must be finite, got {start}, {end}, {step}")
    if (end - start) / step < 0:
        raise OpValueError(name, f"upper bound and step have inconsistent signs "
                           f"(start={start}, end={end}, step={step})")
    return max(math.ceil((end - start) / step), 0)


def _arange_shape(name, start=0, end=None, step=1, **attrs):
    return (arange_length(name, start, end, step),)


def _arange(start=0, end=None, step=1, dtype=None, device=None):
    n = arange_length("arange", start, end, step)
    d = dt.as_dtype(dtype)
    if d.is_floating_point or any(isinstance(v, float) for v in (start, end, step)):
        return (start + step * np.arange(n, dtype=np.float64)).astype(d.np)
    return np.arange(start, start + n * step, step, dtype=np.int64)[:n].astype(d.np)


def _linspace_shape(name, start=0.0, end=0.0, steps=0, **attrs):
    steps = operator.index(steps)
    if steps < 0:
        raise OpValueError(name, f"number of steps must be non-negative, got {steps}")
    return (steps,)


def _linspace(start=0.0, end=0.0, steps=0, dtype=None, device=None):
    d = dt.as_dtype(dtype)
    if steps == 1:
        return np.full(1, start, d.np)
    i = np.arange(steps, dtype=np.float64)
    step = (end - start) / max(steps - 1, 1)
    # PyTorch fills the first half from start and the second from end (symmetric rounding)
    vals = np.where(i < steps // 2, start + step * i, end - step * (steps - 1 - i))
    return (np.trunc(vals) if not d.is_floating_point else vals).astype(d.np)


def _randint_shape(name, size=(), low=0, high=1, **attrs):
    if high <= low:
        raise OpValueError(name, f"expected low < high, got low={low}, high={high}")
    return _size_shape(name, size)


def _eye_shape(name, n=0, m=None, **attrs):
    return _size_shape(name, (n, n if m is None else m))


def _random_attrs(**more):
    return {"size": REQUIRED, **more, **DEVICE, "generator": None}


def _samples(*attr_sets):
    def gen(dtype, rng):
        return [Sample((), {**a, "dtype": dtype}, str(a)) for a in attr_sets]
    return gen


register(name="full", inputs=(), kernel=lambda size=(), fill_value=0, dtype=None, device=None:
         np.full(size, fill_value, dt.as_dtype(dtype).np),
         dtype_rule=_dtype_attr, shape_rule=_size_shape, flags={FACTORY},
         attrs={"size": REQUIRED, "fill_value": REQUIRED, **DEVICE}, dtypes=dt.ALL_DTYPES,
         samples=_samples({"size": (2, 3), "fill_value": 1}, {"size": (0,), "fill_value": 0},
                          {"size": (), "fill_value": True}))
register(name="empty", inputs=(), kernel=lambda size=(), dtype=None, device=None:
         np.zeros(size, dt.as_dtype(dtype).np),
         dtype_rule=_dtype_attr, shape_rule=_size_shape, flags={FACTORY},
         attrs={"size": REQUIRED, **DEVICE}, dtypes=dt.ALL_DTYPES,
         samples=_samples({"size": (2, 3)}, {"size": (0, 4)}),
         doc="uninitialised in PyTorch; graphc fills zeros so results never depend on garbage")
register(name="arange", inputs=(), kernel=_arange, dtype_rule=_dtype_attr,
         shape_rule=_arange_shape, flags={FACTORY},
         attrs={"start": 0, "end": REQUIRED, "step": 1, **DEVICE}, dtypes=dt.ALL_DTYPES[1:],
         samples=_samples({"start": 0, "end": 5, "step": 1}, {"start": 1, "end": 10, "step": 3},
                          {"start": 5, "end": 0, "step": -2}, {"start": 0, "end": 0, "step": 1}),
         doc="start, start+step, ... while below end; length ceil((end-start)/step)")
register(name="linspace", inputs=(), kernel=_linspace, dtype_rule=_dtype_attr,
         shape_rule=_linspace_shape, flags={FACTORY},
         attrs={"start": REQUIRED, "end": REQUIRED, "steps": REQUIRED, **DEVICE}, dtypes=dt.ALL_DTYPES[1:],
         samples=_samples({"start": 0.0, "end": 1.0, "steps": 5}, {"start": -2.0, "end": 2.0,
                          "steps": 1}, {"start": 3.0, "end": -3.0, "steps": 7},
                          {"start": 0.0, "end": 1.0, "steps": 0}))
register(name="eye", inputs=(), kernel=lambda n=0, m=None, dtype=None, device=None:
         np.eye(n, m, dtype=dt.as_dtype(dtype).np),
         dtype_rule=_dtype_attr, shape_rule=_eye_shape, flags={FACTORY},
         attrs={"n": REQUIRED, "m": None, **DEVICE}, dtypes=dt.ALL_DTYPES,
         samples=_samples({"n": 3}, {"n": 2, "m": 4}, {"n": 0}))
register(name="uniform", inputs=(),
         kernel=lambda size=(), low=0.0, high=1.0, dtype=None, device=None, generator=None:
         rnd.uniform(size, dt.as_dtype(dtype).np, low, high, generator),
         dtype_rule=_dtype_attr, shape_rule=_size_shape, flags=RANDOM,
         attrs=_random_attrs(low=0.0, high=1.0), dtypes=dt.FLOAT_DTYPES,
         samples=_samples({"size": (3, 4)}, {"size": (5,), "low": -2.0, "high": 2.0}),
         doc="uniform in [low, high) (rand)")
register(name="normal", inputs=(),
         kernel=lambda size=(), mean=0.0, std=1.0, dtype=None, device=None, generator=None:
         rnd.normal(size, dt.as_dtype(dtype).np, mean, std, generator),
         dtype_rule=_dtype_attr, shape_rule=_size_shape, flags=RANDOM,
         attrs=_random_attrs(mean=0.0, std=1.0), dtypes=dt.FLOAT_DTYPES,
         samples=_samples({"size": (3, 4)}, {"size": (0,), "mean": 1.0, "std": 2.0}),
         doc="normal(mean, std) (randn)")
register(name="randint", inputs=(),
         kernel=lambda size=(), low=0, high=1, dtype=None, device=None, generator=None:
         rnd.integers(size, dt.as_dtype(dtype).np, low, high, generator),
         dtype_rule=_dtype_attr, shape_rule=_randint_shape, flags=RANDOM,
         attrs=_random_attrs(low=0, high=1), dtypes=dt.ALL_DTYPES[1:],
         samples=_samples({"size": (3, 4), "low": 0, "high": 10}, {"size": (2,), "low": -5,
                          "high": 5}), doc="integers in [low, high)")
