"""Fused optimizer steps: a parameter group's whole update as one compiled program call.

``SGD(params, fused=True)``, ``Adam(..., fused=True)`` and ``AdamW(..., fused=True)`` update
every parameter of a group, and its state, with one call of a program ``graphc.compile``
builds from the optimizer's list update (``sgd.sgd_update_all_``, ``adam.adam_update_all_``)::

    update(params, grads, states..., scalars, flags...)   # writes params and states in place

The program's arguments are chosen so that it compiles once per group:

- tensors: the parameters, their gradients and state (written in place: the compiler turns
  the writes into copy-backs), and a 0-d float64 tensor for every number that may change
  between steps: lr, momentum and betas (schedulers move them), bias corrections. The
  program casts each to the parameter's dtype, which rounds it as an eager op rounds a
  Python float, so the fused update is bitwise the eager one;
- Python values: what decides the shape of the computation (maximize, nesterov, amsgrad,
  whether there is weight decay). They are baked into the program; changing one compiles
  another, as does a new set of parameters with gradients (past ``graphc.compile``'s cache
  limit of 8 programs per group, the group's update runs eagerly, with a warning).

The list update calls the same per-parameter function the eager step loops over, and native
kernels round each elementwise op as numpy does (no FMA contraction), so both paths compute
the same bits. ``opt.fused_programs[i]`` is group i's ``CompiledFunction`` (its ``entries``,
``explain()``, ``eager_runs``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from .. import dtype as dt
from ..creation import tensor
from ..tensor import Tensor

FUSED_DTYPES = (dt.float32, dt.float64)  # what native code computes in


def check_fused_options(options: dict[str, Any], optimizer: str) -> None:
    """Raise ValueError for what ``fused=True`` cannot do: ``differentiable`` and ``foreach``
    (as in PyTorch), and parameters native code does not compute in (float16, bfloat16)."""
    if not options.get("fused"):
        return
    why = {"differentiable": "the fused update is a compiled program, which autograd does not record",
           "foreach": "they are two ways of running the update: choose one"}
    for name, reason in why.items():
        if options.get(name):
            raise ValueError(f"{optimizer}: fused=True does not support {name}=True ({reason})")
    for i, p in enumerate(options.get("params", ())):
        if p.dtype not in FUSED_DTYPES:
            raise ValueError(f"{optimizer}: fused=True compiles float32 and float64 updates, but "
                             f"parameter {i} of the group is {p.dtype.name}; use fused=False for "
                             f"{p.dtype.name} parameters")


def in_dtype(scalars: NamedTuple, dtype: dt.dtype) -> NamedTuple:
    """A tuple of 0-d float64 tensors cast to ``dtype`` (inside the traced update): the
    rounding an eager op gives a Python float of the same value."""
    return scalars._make(x.to(dtype) for x in scalars)


def next_step(step: Tensor) -> float:
    """The value ``step.add_(1)`` will give the state's step tensor (in its own dtype, as the
    eager update counts: a float32 count stops at 2**24)."""
    return float(step.dtype.np.type(step.item()) + 1)


class FusedGroups:
    """Mixin of the optimizers with ``fused=True``: a compiled update per parameter group.

    ``fused_programs[i]`` compiles group i's update on its first fused step. ``dynamic=False``:
    a group's shapes do not change, so its kernels are specialised to them."""

    @property
    def fused_programs(self) -> list:
        """Each parameter group's ``CompiledFunction`` (made on the group's first fused step)."""
        return self.__dict__.setdefault("_fused_programs", [])

    def _run_fused(self, group: dict[str, Any], update: Callable, *args: Any) -> None:
        from ..compiler import compile  # (the compiler sits above the optimizers)

        index = next(i for i, g in enumerate(self.param_groups) if g is group)
        programs = self.fused_programs
        while len(programs) <= index:
            programs.append(compile(update, dynamic=False))
        programs[index](*args)

    def _scalar(self, value: float | bool) -> Tensor:
        """``value`` as a 0-d tensor (float64, or bool for a bool); one per value, reused
        across steps (programs only read them)."""
        cache = self.__dict__.setdefault("_scalars", {})
        key = repr(value) if type(value) is bool else float(value).hex()  # 0.0 and -0.0 apart
        t = cache.get(key)
        if t is None:
            if len(cache) > 256:  # (a scheduler makes a new lr every step)
                cache.clear()
            t = cache[key] = tensor(value) if type(value) is bool else \
                tensor(float(value), dtype=dt.float64)
        return t

    def _scalars_of(self, values: NamedTuple) -> NamedTuple:
        return values._make(self._scalar(v) for v in values)

    def _fused_grads(self, params: Sequence[Tensor]) -> list[Tensor]:
        """The parameters' gradients, each checked to have its parameter's dtype (the update
        rounds its numbers to the parameter's dtype)."""
        grads = [p.grad for p in params]
        for p, g in zip(params, grads):
            if g.dtype is not p.dtype:
                raise ValueError(f"{type(self).__name__}(fused=True).step: a parameter of dtype "
                                 f"{p.dtype.name} has a grad of dtype {g.dtype.name}; fused "
                                 "updates need grads in their parameter's dtype")
        return grads
