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
from ..autograd.grad_mode import is_grad_enabled
from ..creation import tensor
from ..layout import reach
from ..tensor import Tensor, tensors_in

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
        index = next(i for i, g in enumerate(self.param_groups) if g is group)
        runners = self.__dict__.setdefault("_fused_runners", [])
        while len(runners) <= index:
            runners.append(FusedProgram(update))
            self.fused_programs.append(runners[-1].compiled)
        runners[index](*args)

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


class FusedProgram:
    """One group's compiled update, called as ``graphc.compile`` would call it, with a
    cheaper check of the arguments' memory.

    A call with a signature the CompiledFunction has compiled, whose written tensors overlap
    no other argument, runs the program directly; everything else (the first call, a new
    signature, overlapping tensors, grad mode) is a call of the CompiledFunction, which
    compiles, runs eagerly and records why, as for any compiled function.

    Why: the CompiledFunction checks on every call that no tensor the program writes shares
    memory with another argument, comparing each written tensor with every argument:
    O(written x arguments) in Python: 0.19 s per step for Adam on 20 parameters (80 written
    tensors, 146 arguments). ``_written_overlap`` makes the same test on sorted byte ranges.
    """

    def __init__(self, update: Callable):
        from ..compiler import compile  # (the compiler sits above the optimizers)
        from ..compiler.guards import signature

        self.compiled = compile(update, dynamic=False)
        self._signature = signature

    def __call__(self, *args: Any) -> None:
        entry = self.compiled.entries.get(self._signature(args, None))
        if entry is None or entry.spec.params or is_grad_enabled():
            self.compiled(*args)
            return
        tensors = args if entry.all_tensors else tensors_in(args)
        if _written_overlap(tensors, entry.written):
            self.compiled(*args)  # (runs eagerly, and says why)
            return
        entry.spec.run(tensors)


def _written_overlap(tensors: Sequence[Tensor], written: Sequence[int]) -> bool:
    """Whether a tensor at a ``written`` position shares a byte with another tensor (two
    read-only ones may share: one 0-d scalar serves every parameter)."""
    spans = []
    writes = set(written)
    for i, t in enumerate(tensors):
        if t.numel():
            lo, hi = reach(t._shape, t._stride)
            size = t.dtype.itemsize
            base = t.data_ptr()
            spans.append((base + lo * size, base + (hi + 1) * size, i in writes))
    spans.sort()
    end_any = end_written = -1  # the furthest byte any (written) earlier span reaches
    for lo, hi, is_written in spans:
        if lo < (end_any if is_written else end_written):
            return True
        end_any = max(end_any, hi)
        if is_written:
            end_written = max(end_written, hi)
    return False
